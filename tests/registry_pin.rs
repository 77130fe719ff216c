//! `--pin-digest` and `--require-platforms` end to end: a real `mirrorswap serve` (and
//! `mirrorswap rewrite`) in front of a real registry (Debian's docker-registry, TLS from a
//! test CA, htpasswd auth) holding single-platform images and two-platform indexes pushed with
//! skopeo; every case through `/mutate`, the patch applied. The digests are the registry's,
//! as skopeo reports them. Sources are under `.invalid`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::images::{Platform, inspect_digest, push_image, push_index};
use common::registry::{Auth, Registry};
use common::{Protocol, TestServer, images_of, patched_object, pod, warnings_of};
use serde_json::{Value, json};

const AMD64: Platform<'static> = ("linux", "amd64", None);
const ARM64: Platform<'static> = ("linux", "arm64", None);

/// Rules sending `src.invalid/team/...` first to `MIRROR/specific`, then to `MIRROR/general/team`.
fn rules(mirror: &str) -> String {
    format!("src.invalid/team::{mirror}/specific\nsrc.invalid::{mirror}/general\n")
}

/// The registry's files: an auth file and the rules, in a directory that outlives the server.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(registry: &Registry) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("auth.json"), registry.docker_config()).unwrap();
        std::fs::write(dir.path().join("rules.conf"), rules(&registry.host())).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The registry flags of `serve` and `rewrite`, then `extra`.
    fn flags(&self, registry: &Registry, extra: &[&str]) -> Vec<String> {
        let mut flags: Vec<String> = ["--swap-policy", "exists", "--check-timeout", "5s"].map(String::from).to_vec();
        flags.extend(["--registry-auth".into(), self.path("auth.json")]);
        flags.extend(["--registry-ca".into(), registry.ca_path().display().to_string()]);
        flags.extend(extra.iter().map(|flag| (*flag).to_owned()));
        flags
    }

    async fn serve(&self, registry: &Registry, extra: &[&str]) -> TestServer {
        let mut flags = self.flags(registry, extra);
        flags.extend(["--request-timeout".into(), "10s".into()]);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let text = rules(&registry.host());
        TestServer::start_in(tempfile::tempdir().unwrap(), Some((text.as_str(), "rules.conf")), &flags).await
    }

    /// `mirrorswap rewrite` with the same flags: stdout's lines, and stderr.
    fn rewrite(&self, registry: &Registry, extra: &[&str], images: &[&str]) -> (Vec<String>, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
            .args(["rewrite", "--rules", &self.path("rules.conf")])
            .args(self.flags(registry, extra))
            .args(images)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let lines = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
        (lines, String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

async fn admit(server: &TestServer, review: &Value) -> (Value, Value) {
    let mut client = server.connect(Protocol::Http1).await;
    let response = client.review(review).await;
    (patched_object(review, &response), response)
}

#[tokio::test]
async fn a_tag_and_an_index_are_pinned_to_the_digest_the_registry_reports() {
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    let single = push_image(&registry, "specific/app", "1", "app 1", AMD64).await;
    let index = push_index(&registry, "specific/multi", "2", "multi 2", &[AMD64, ARM64]).await;
    // skopeo's own report: the manifest's digest for a single image, the index's for an index.
    assert_eq!(inspect_digest(&registry, &format!("{mirror}/specific/app:1")).await, single);
    assert_eq!(inspect_digest(&registry, &format!("{mirror}/specific/multi:2")).await, index);
    assert_ne!(single, index);
    let files = Files::new(&registry);
    let server = files.serve(&registry, &["--pin-digest"]).await;
    let by_digest = format!("src.invalid/team/app@{single}");
    let images = ["src.invalid/team/app:1", "src.invalid/team/multi:2", &by_digest, "src.invalid/team/missing:3"];
    let (object, response) = admit(&server, &pod(&images)).await;
    let expected = [
        format!("{mirror}/specific/app:1@{single}"),
        format!("{mirror}/specific/multi:2@{index}"),
        // A reference with a digest is left as it is.
        format!("{mirror}/specific/app@{single}"),
        "src.invalid/team/missing:3".to_owned(),
    ];
    assert_eq!(images_of(&object), expected);
    assert_eq!(warnings_of(&response).len(), 1, "the missing image: {response}");
    assert_eq!(server.metric(r#"mirrorswap_images_pinned_total{result="pinned"}"#).await, 2.0);
    // A second Pod is pinned from the cache, no lookup.
    let before = registry.manifest_requests();
    let (object, _) = admit(&server, &pod(&images[..2])).await;
    assert_eq!(images_of(&object), expected[..2]);
    assert_eq!(registry.manifest_requests(), before, "pinned from the cached answers");
    server.stop().await;
    // `rewrite` decides as the server does.
    let (lines, _) = files.rewrite(&registry, &["--pin-digest"], &images[..3]);
    assert_eq!(lines, expected[..3]);
    // Without --pin-digest nothing is appended.
    let (lines, _) = files.rewrite(&registry, &[], &images[..2]);
    assert_eq!(lines, [format!("{mirror}/specific/app:1"), format!("{mirror}/specific/multi:2")]);
}

#[tokio::test]
async fn a_moved_tag_pins_new_pods_anew_while_an_update_keeps_its_pin() {
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    let first = push_image(&registry, "specific/app", "1", "app 1, first build", AMD64).await;
    let files = Files::new(&registry);
    let server = files.serve(&registry, &["--pin-digest", "--check-cache-ttl", "1s"]).await;
    let created = pod(&["src.invalid/team/app:1"]);
    let (stored, _) = admit(&server, &created).await;
    assert_eq!(images_of(&stored), [format!("{mirror}/specific/app:1@{first}")]);

    // The tag moves to other content; once the cached answer expires a new Pod gets the new digest.
    let moved = push_image(&registry, "specific/app", "1", "app 1, rebuilt", AMD64).await;
    assert_ne!(moved, first);
    assert_eq!(inspect_digest(&registry, &format!("{mirror}/specific/app:1")).await, moved);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (object, _) = admit(&server, &pod(&["src.invalid/team/app:1"])).await;
    assert_eq!(images_of(&object), [format!("{mirror}/specific/app:1@{moved}")]);

    // A GitOps tool re-applies the tag over the stored Pod: the old pin stays, no lookup is made.
    let before = registry.manifest_requests();
    let mut update = created.clone();
    update["request"]["operation"] = json!("UPDATE");
    update["request"]["oldObject"] = stored.clone();
    let (object, response) = admit(&server, &update).await;
    assert_eq!(images_of(&object), [format!("{mirror}/specific/app:1@{first}")], "{response}");
    assert_eq!(registry.manifest_requests(), before);
    assert_eq!(server.metric(r#"mirrorswap_images_pinned_total{result="kept_on_update"}"#).await, 1.0);
    // Another tag on UPDATE is a change like any other: asked, pinned anew.
    push_image(&registry, "specific/app", "2", "app 2", AMD64).await;
    update["request"]["object"]["spec"]["containers"][0]["image"] = json!("src.invalid/team/app:2");
    let (object, _) = admit(&server, &update).await;
    assert!(images_of(&object)[0].starts_with(&format!("{mirror}/specific/app:2@sha256:")), "{object}");
    server.stop().await;
}

#[tokio::test]
async fn required_platforms_skip_a_single_platform_candidate_and_name_the_one_missing() {
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    push_image(&registry, "specific/app", "1", "app amd64 only", AMD64).await;
    let both = push_index(&registry, "general/team/app", "1", "app", &[AMD64, ARM64]).await;
    push_image(&registry, "specific/lonely", "1", "lonely amd64", AMD64).await;
    push_index(&registry, "general/team/lonely", "1", "lonely", &[AMD64, ("linux", "arm", Some("v7"))]).await;
    let files = Files::new(&registry);
    let platforms = ["--pin-digest", "--require-platforms", "linux/amd64,linux/arm64"];
    let server = files.serve(&registry, &platforms).await;
    let review = pod(&["src.invalid/team/app:1", "src.invalid/team/lonely:1"]);
    let (object, response) = admit(&server, &review).await;
    assert_eq!(images_of(&object), [format!("{mirror}/general/team/app:1@{both}"), "src.invalid/team/lonely:1".into()]);
    assert_eq!(
        warnings_of(&response),
        [format!(
            "mirrorswap kept image src.invalid/team/lonely:1 of container c1: {mirror}/specific lacks linux/arm64; \
             {mirror}/general lacks linux/arm64"
        )]
    );
    let misses =
        format!(r#"mirrorswap_registry_platform_misses_total{{platform="linux/arm64",registry="{mirror}/specific"}}"#);
    assert_eq!(server.metric(&misses).await, 2.0);
    // The answers, platforms included, are cached: the same Pod again asks nothing.
    let before = registry.manifest_requests();
    let (again, _) = admit(&server, &review).await;
    assert_eq!(images_of(&again), images_of(&object));
    assert_eq!(registry.manifest_requests(), before);
    server.stop().await;
    // `rewrite --explain` says it candidate by candidate.
    let (lines, _) = files.rewrite(&registry, &[&platforms[..], &["--explain"]].concat(), &["src.invalid/team/app:1"]);
    assert!(lines[0].ends_with("absent: lacks linux/arm64"), "{lines:?}");
    assert!(lines[1].ends_with(": present"), "{lines:?}");
    assert_eq!(lines[2], format!("src.invalid/team/app:1 -> {mirror}/general/team/app:1@{both}"));
    // amd64 alone is what the single image has.
    let (lines, _) = files.rewrite(&registry, &["--require-platforms", "linux/amd64"], &["src.invalid/team/app:1"]);
    assert_eq!(lines, [format!("{mirror}/specific/app:1")]);
}
