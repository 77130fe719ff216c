//! `mirrorswap audit --check-mirror` against a real registry (Debian's docker-registry with a
//! test CA and htpasswd, images pushed with skopeo): present, absent and error in the `mirror`
//! column, the summary's missing count, `--missing-only`, `--fail-on missing` and `error`, and
//! no lookup for an image pulled from outside the mirrors.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::registry::{Auth, Registry};
use serde_json::Value;

/// A Deployment using every case: in the mirror (by rule and as written), not in it, behind a
/// mirror nobody serves, and pulled from a registry no rule covers.
fn release(mirror: &str) -> String {
    format!(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  template:
    spec:
      initContainers:
        - {{name: migrate, image: quay.io/shop/migrate:2.1}}
      containers:
        - {{name: web, image: nginx:1.27}}
        - {{name: pinned, image: {mirror}/hub/nginx:1.27}}
        - {{name: pause, image: registry.k8s.io/pause:3.9}}
        - {{name: agent, image: gcr.io/vendor/agent:1}}
"
    )
}

struct Setup {
    registry: Registry,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Option<Self> {
        let registry = Registry::start(Auth::Basic).await?;
        registry.push("hub/nginx", "1.27").await;
        let dir = tempfile::tempdir().unwrap();
        let mirror = registry.host();
        // registry.k8s.io goes to a loopback port nobody listens on: the lookup fails.
        let rules = format!("docker.io::{mirror}/hub\nquay.io::{mirror}/quay\nregistry.k8s.io::127.0.0.1:9/k8s\n");
        std::fs::write(dir.path().join("rules.conf"), rules).unwrap();
        std::fs::write(dir.path().join("release.yaml"), release(&mirror)).unwrap();
        std::fs::write(dir.path().join("auth.json"), registry.docker_config()).unwrap();
        Some(Self { registry, dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `audit` on the release with the registry flags, plus `args`.
    fn audit(&self, args: &[&str]) -> Output {
        let ca = self.registry.ca_path();
        Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
            .args(["audit", "--rules", &self.path("rules.conf"), "-f", &self.path("release.yaml")])
            .args(["--registry-auth", &self.path("auth.json"), "--registry-ca"])
            .arg(Path::new(&ca))
            .args(["--check-timeout", "5s", "--check-backoff", "0s"])
            .args(args)
            .output()
            .unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mirror_column(output: &Output) -> Vec<(String, Value)> {
    assert!(output.status.success(), "{}", text(&output.stderr));
    let rows: Value = serde_json::from_slice(&output.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| (row["image"].as_str().unwrap().to_owned(), row["mirror"].clone()))
        .collect()
}

#[tokio::test]
async fn check_mirror_reports_present_absent_and_error() {
    let Some(setup) = Setup::start().await else { return };
    let mirror = setup.registry.host();
    let nginx_lookups = || setup.registry.manifest_requests_matching("/hub/nginx/manifests/1.27");
    let pushed = nginx_lookups();
    let output = setup.audit(&["--check-mirror", "-o", "json"]);
    let found = mirror_column(&output);
    let expected: Vec<(String, Value)> = vec![
        (format!("{mirror}/hub/nginx:1.27"), "present".into()),
        ("gcr.io/vendor/agent:1".into(), Value::Null),
        ("nginx:1.27".into(), "present".into()),
        ("quay.io/shop/migrate:2.1".into(), "absent".into()),
        ("registry.k8s.io/pause:3.9".into(), "error".into()),
    ];
    assert_eq!(found, expected);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("could not check 127.0.0.1:9/k8s/pause:3.9"), "{stderr}");
    assert!(!stderr.contains("gcr.io"), "an image outside the mirrors was looked up: {stderr}");
    assert!(!stderr.contains(common::registry::PASSWORD), "{stderr}");
    // nginx as written and as rewritten is one image in the mirror: asked once.
    assert_eq!(nginx_lookups() - pushed, 1, "one lookup for nginx");

    // Without --check-mirror nothing is asked and the column is null.
    let before = setup.registry.manifest_requests();
    let unchecked = mirror_column(&setup.audit(&["-o", "json"]));
    assert!(unchecked.iter().all(|(_, state)| state.is_null()), "{unchecked:?}");
    assert_eq!(setup.registry.manifest_requests(), before);
}

#[tokio::test]
async fn table_summary_copy_list_and_fail_on_missing() {
    let Some(setup) = Setup::start().await else { return };
    let mirror = setup.registry.host();

    let table = setup.audit(&["--check-mirror"]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    assert!(table.lines().next().unwrap().contains("MIRROR"), "{table}");
    assert!(table.trim_end().ends_with("5 images, 3 rewritten, 1 unmirrored, 1 missing"), "{table}");
    let unchecked = text(&setup.audit(&[]).stdout);
    assert!(unchecked.trim_end().ends_with("missing not checked"), "{unchecked}");

    // The copy list of what the mirror lacks: only the absent image (not the unreachable one).
    let missing = setup.audit(&["--check-mirror", "-o", "copy-list", "--missing-only"]);
    assert!(missing.status.success(), "{}", text(&missing.stderr));
    assert_eq!(text(&missing.stdout), format!("quay.io/shop/migrate:2.1 {mirror}/quay/shop/migrate:2.1\n"));

    // Exit codes: 1 while something is missing, 0 once it is pushed, 2 without --check-mirror.
    let failing = setup.audit(&["--check-mirror", "--fail-on", "missing"]);
    assert_eq!(failing.status.code(), Some(1), "{}", text(&failing.stderr));
    setup.registry.push("quay/shop/migrate", "2.1").await;
    let passing = setup.audit(&["--check-mirror", "--fail-on", "missing"]);
    assert_eq!(passing.status.code(), Some(0), "{}{}", text(&passing.stdout), text(&passing.stderr));
    let refused = setup.audit(&["--fail-on", "missing"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("--fail-on missing needs --check-mirror"), "{}", text(&refused.stderr));
    let refused = setup.audit(&["-o", "copy-list", "--missing-only"]);
    assert_eq!(refused.status.code(), Some(2), "--missing-only without --check-mirror");
}

#[tokio::test]
async fn wrong_credentials_are_errors_that_never_print_the_password() {
    let Some(setup) = Setup::start().await else { return };
    let wrong = common::registry::docker_config(&setup.registry.host(), common::registry::USER, "wrong-secret-42");
    std::fs::write(setup.dir.path().join("auth.json"), wrong).unwrap();
    let output = setup.audit(&["--check-mirror", "-o", "json"]);
    let found = mirror_column(&output);
    assert!(found.iter().filter(|(image, _)| image.contains("nginx")).all(|(_, state)| state == "error"), "{found:?}");
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!all.contains("wrong-secret-42"), "{all}");
}

/// An image that chose its registry's port (`ghcr.io:PORT/…` through the bare-host rule
/// `ghcr.io::127.0.0.1`, pulled from `127.0.0.1:PORT`) is never looked up, with or without
/// credentials: nothing connects to that port.
#[tokio::test]
async fn an_image_that_chose_its_port_is_not_looked_up() {
    use common::hostile::{Hostile, Reply};
    let recorder = Hostile::start(None, |_| Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = recorder.addr.port();
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n    - {{name: c, image: 'ghcr.io:{port}/x:1'}}\n"
    );
    std::fs::write(dir.path().join("pod.yaml"), manifest).unwrap();
    std::fs::write(dir.path().join("rules.conf"), "ghcr.io::127.0.0.1\n").unwrap();
    std::fs::write(dir.path().join("auth.json"), common::registry::docker_config("127.0.0.1", "mirror", "s3cret-pass"))
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
        .arg("audit")
        .arg("--rules")
        .arg(dir.path().join("rules.conf"))
        .arg("-f")
        .arg(dir.path().join("pod.yaml"))
        .arg("--registry-auth")
        .arg(dir.path().join("auth.json"))
        .args(["--insecure-registry", "127.0.0.1", "--check-mirror", "-o", "json"])
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    assert_eq!(rows[0]["mirror"], Value::Null, "{rows} {}", text(&output.stderr));
    assert_eq!(recorder.connections(), 0, "{:?}", recorder.seen());
}

/// `--fail-on error`: a gate that fails when a lookup got no answer, so that a mirror nobody
/// serves cannot pass as "nothing missing". Needs no registry: the mirror is a loopback port
/// nobody listens on.
#[test]
fn fail_on_error_fails_when_no_lookup_was_answered() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::registry::free_port();
    let rules = dir.path().join("rules.conf");
    std::fs::write(&rules, format!("docker.io::127.0.0.1:{port}/hub\n")).unwrap();
    let manifests = dir.path().join("release.yaml");
    std::fs::write(&manifests, release("127.0.0.1:1")).unwrap();
    let audit = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
            .args(["audit", "--rules"])
            .arg(&rules)
            .arg("-f")
            .arg(&manifests)
            .args(["--check-timeout", "2s", "--check-backoff", "0s"])
            .args(args)
            .output()
            .unwrap()
    };
    // (arguments, exit code, text on stderr)
    let table: [(&[&str], i32, &str); 5] = [
        // `missing` alone counts only definite `absent` answers: every lookup failed, it passes.
        (&["--check-mirror", "--fail-on", "missing"], 0, "could not be checked"),
        (&["--check-mirror", "--fail-on", "error"], 1, "could not be checked"),
        (&["--check-mirror", "--fail-on", "missing,error"], 1, "could not be checked"),
        (&["--check-mirror"], 0, "could not be checked"),
        (&["--fail-on", "error"], 2, "--fail-on error needs --check-mirror"),
    ];
    for (args, code, says) in table {
        let output = audit(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
