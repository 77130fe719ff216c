//! `mirrorswap audit --check-source` against two real registries on loopback (Debian's
//! docker-registry, each with its own test CA and htpasswd; images pushed with skopeo): a
//! source and the mirror the rules send it to. A mirror copy whose source tag moved is
//! `drifted`, `--fail-on drifted` exits 1; with `--swap-policy exists --pin-digest
//! --require-platforms`, the report shows the pinned rewrite and the platforms each mirror
//! copy has, and the copy list still names the tag.

mod common;

use std::process::{Command, Output};

use common::images::{Platform, push_image, push_index};
use common::registry::{Auth, PASSWORD, Registry, USER, docker_config};
use serde_json::Value;

const AMD64: Platform<'static> = ("linux", "amd64", None);
const ARM64: Platform<'static> = ("linux", "arm64", None);

struct Setup {
    source: Registry,
    mirror: Registry,
    dir: tempfile::TempDir,
}

impl Setup {
    /// The source holds `team/app:1`, `team/steady:1` (single-platform) and `team/multi:1` (an
    /// index of two platforms); the mirror holds the same bytes under `src/`.
    async fn start() -> Option<Self> {
        let source = Registry::start(Auth::Basic).await?;
        let mirror = Registry::start(Auth::Basic).await?;
        for (repo, content) in [("app", "app 1"), ("steady", "steady 1")] {
            let at_source = push_image(&source, &format!("team/{repo}"), "1", content, AMD64).await;
            let at_mirror = push_image(&mirror, &format!("src/team/{repo}"), "1", content, AMD64).await;
            assert_eq!(at_source, at_mirror, "the same bytes");
        }
        push_index(&source, "team/multi", "1", "multi", &[AMD64, ARM64]).await;
        push_index(&mirror, "src/team/multi", "1", "multi", &[AMD64, ARM64]).await;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("rules.conf", &format!("{}::{}/src\n", source.host(), mirror.host()));
        let containers: String = ["app", "steady", "multi"]
            .iter()
            .map(|repo| format!("        - {{name: {repo}, image: {}/team/{repo}:1}}\n", source.host()))
            .collect();
        write(
            "release.yaml",
            &format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: shop}}\nspec:\n  template:\n    \
                 spec:\n      containers:\n{containers}"
            ),
        );
        write("mirror-auth.json", &mirror.docker_config());
        write("source-auth.json", &docker_config(&source.host(), USER, PASSWORD));
        let cas = [source.ca_path(), mirror.ca_path()].map(|path| std::fs::read_to_string(path).unwrap());
        write("cas.pem", &cas.join("\n"));
        Some(Self { source, mirror, dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn audit(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
            .args(["audit", "--rules", &self.path("rules.conf"), "-f", &self.path("release.yaml")])
            .args(["--registry-auth", &self.path("mirror-auth.json"), "--registry-ca", &self.path("cas.pem")])
            .args(["--check-timeout", "5s", "--check-backoff", "0s"])
            .args(args)
            .output()
            .unwrap()
    }

    /// The JSON rows by the repository of their image (`app`, `steady`, `multi`).
    fn rows(&self, args: &[&str]) -> Vec<(String, Value)> {
        let output = self.audit(&[args, &["-o", "json"]].concat());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let rows: Value = serde_json::from_slice(&output.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let image = row["image"].as_str().unwrap();
                let repo = image.rsplit_once("/team/").unwrap().1.trim_end_matches(":1").to_owned();
                (repo, row.clone())
            })
            .collect()
    }
}

fn source_flags(setup: &Setup) -> Vec<String> {
    ["--check-mirror", "--check-source", "--source-auth"]
        .map(String::from)
        .into_iter()
        .chain([setup.path("source-auth.json")])
        .collect()
}

#[tokio::test]
async fn a_tag_moved_at_the_source_is_drifted() {
    let Some(setup) = Setup::start().await else { return };
    let flags = source_flags(&setup);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // In step: every mirror copy present, its digest the source's.
    for (repo, row) in setup.rows(&flags) {
        assert_eq!(row["mirror"], "present", "{repo}: {row}");
        assert!(row["digest"].as_str().is_some_and(|digest| digest.starts_with("sha256:")), "{repo}: {row}");
        assert_eq!(row["digest"], row["source_digest"], "{repo}");
    }
    let gate = [&flags[..], &["--fail-on", "drifted"]].concat();
    assert_eq!(setup.audit(&gate).status.code(), Some(0));

    // The source's tag moves to other content; the mirror keeps the old copy.
    let moved = push_image(&setup.source, "team/app", "1", "app 1, rebuilt", AMD64).await;
    let rows = setup.rows(&flags);
    let (_, app) = rows.iter().find(|(repo, _)| repo == "app").unwrap();
    assert_eq!(app["mirror"], "drifted", "{app}");
    assert_eq!(app["source_digest"], moved.as_str());
    assert_ne!(app["digest"], app["source_digest"]);
    for (repo, row) in rows.iter().filter(|(repo, _)| repo != "app") {
        assert_eq!(row["mirror"], "present", "{repo}: {row}");
    }
    let output = setup.audit(&gate);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("3 images, 3 rewritten, 0 unmirrored, 0 missing, 1 drifted"), "{table}");
    let note = format!("note: {}/team/app:1 drifted: the source's tag is {moved}", setup.source.host());
    assert!(table.contains(&note), "{table}");
    assert!(table.contains(&format!("{}/src/team/app:1 is sha256:", setup.mirror.host())), "{table}");

    // A source that cannot be asked is no drift, but `--fail-on error` sees it.
    setup.source_stopped(|setup| {
        let output = setup.audit(&[&flags[..], &["--fail-on", "drifted"]].concat());
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("warning: the source of 3 images could not be checked for drift"), "{stderr}");
        assert_eq!(setup.audit(&[&flags[..], &["--fail-on", "error"]].concat()).status.code(), Some(1));
    });
}

impl Setup {
    fn source_stopped(mut self, check: impl FnOnce(&Setup)) {
        self.source.stop();
        check(&self);
    }
}

#[tokio::test]
async fn pinned_rewrites_and_platforms_are_reported_and_the_copy_list_names_the_tag() {
    let Some(setup) = Setup::start().await else { return };
    let mirror = setup.mirror.host();
    let server_like = ["--swap-policy", "exists", "--pin-digest", "--require-platforms", "linux/amd64,linux/arm64"];
    let rows = setup.rows(&server_like);
    let (_, multi) = rows.iter().find(|(repo, _)| repo == "multi").unwrap();
    let digest = multi["digest"].as_str().unwrap();
    assert_eq!(multi["rewritten"], format!("{mirror}/src/team/multi:1@{digest}"));
    assert_eq!(multi["platforms"], serde_json::json!(["linux/amd64", "linux/arm64"]));
    let (_, app) = rows.iter().find(|(repo, _)| repo == "app").unwrap();
    assert_eq!((&app["reason"], &app["rewritten"]), (&Value::from("not_in_mirror"), &Value::Null), "{app}");
    assert!(app["why"].as_str().unwrap().ends_with(&format!("{mirror}/src lacks linux/arm64")), "{app}");
    assert!(app["candidates"][0]["answer"].as_str().unwrap().starts_with("absent: lacks linux/arm64"), "{app}");
    // The copy list names the tag, which is what a copy fills.
    let output = setup.audit(&[&server_like[..], &["-o", "copy-list"]].concat());
    let list = String::from_utf8_lossy(&output.stdout);
    assert!(
        list.lines().any(|line| line == format!("{}/team/multi:1 {mirror}/src/team/multi:1", setup.source.host())),
        "{list}"
    );
    // The wide table shows what each mirror copy covers.
    let output = setup.audit(&["--check-mirror", "--require-platforms", "linux/amd64", "-o", "wide"]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.lines().next().unwrap().contains("PLATFORMS"), "{table}");
    assert!(table.contains("linux/amd64,linux/arm64"), "{table}");

    // Flags that would do nothing are refused.
    let refused: [(&[&str], &str); 4] = [
        (&["--pin-digest"], "--pin-digest needs --swap-policy exists"),
        (&["--require-platforms", "linux/arm64"], "--require-platforms needs --check-mirror"),
        (&["--check-source"], "--check-source needs --check-mirror or --swap-policy exists"),
        (&["--check-mirror", "--fail-on", "drifted"], "--fail-on drifted needs --check-source"),
    ];
    for (args, message) in refused {
        let output = setup.audit(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains(message), "{args:?}");
    }
}
