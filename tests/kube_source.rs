//! Rules from the Kubernetes API (`--rules-secret`, `--rules-configmap`)
//! against a real HTTPS list/watch server on loopback (`common::apiserver`):
//! Palette's `registry-info` Secret is created, edited (valid, broken, valid),
//! survives API server restarts (with its history kept, then compacted into a
//! 410 Gone and a relist) and is deleted; each change must reach the rules
//! within 2 s, a broken edit must keep the last good rules, and readiness must
//! mean "rules loaded once", not "API server up".

mod common;

use std::time::Duration;

use common::apiserver::FakeApi;
use common::{TestServer, eventually, patched_object, sample};

const NAMESPACE: &str = "jet-system";
const NAME: &str = "registry-info";
const KEY: &str = "MIRROR_REGISTRIES";
const WITHIN: Duration = Duration::from_secs(2);
/// Reconnecting after a restart waits out the watcher's backoff (250 ms doubling, 10 s at most).
const AFTER_RESTART: Duration = Duration::from_secs(15);

/// Palette's comma-separated `MIRROR_REGISTRIES`, mirroring to `mirror`.
fn mirror_registries(mirror: &str) -> String {
    format!("docker.io::{mirror}/docker.io,quay.io::{mirror}/quay.io,registry.k8s.io::{mirror}/k8s.io")
}

/// What the server turns the sample Pod's `nginx:1.27` into now.
async fn nginx_now(server: &TestServer) -> String {
    let request = sample("pod.json");
    let response = server.connect(common::Protocol::Http1).await.review(&request).await;
    let image = patched_object(&request, &response)["spec"]["containers"][0]["image"].as_str().unwrap().to_owned();
    assert!(!image.contains("wrong.example.org"), "the field selector let another object's rules in: {image}");
    image
}

async fn nginx_becomes(server: &TestServer, within: Duration, expected: &str) {
    let mut seen = String::new();
    let arrived = eventually(within, async || {
        seen = nginx_now(server).await;
        seen == expected
    })
    .await;
    assert!(arrived, "expected nginx to become {expected} within {within:?}; still {seen}");
}

/// Creates or updates `registry-info` as Palette lays it out.
fn put_registry_info(api: &FakeApi, rules: &str) {
    let data = [("DOMAIN", "harbor.example.org"), ("BASE_PATH", "airgap-images"), (KEY, rules)];
    api.put_secret(NAMESPACE, NAME, &data);
}

async fn ready(server: &TestServer) -> (u16, String) {
    server.admin_get("/readyz").await
}

async fn start_server(api: &FakeApi, flag: &str, object: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let kubeconfig = kubeconfig.display().to_string();
    TestServer::start_in(dir, None, &[flag, object, "--kubeconfig", &kubeconfig]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_info_secret_drives_the_rules_through_the_api() {
    let mut api = FakeApi::start().await;
    // Same namespace, same key: only the field selector on the name keeps it out.
    api.put_secret(NAMESPACE, "another-secret", &[(KEY, &mirror_registries("wrong.example.org"))]);
    api.stop();

    // The API server is away at start: serving, but not ready, and no rules.
    let server = start_server(&api, "--rules-secret", "jet-system/registry-info").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ready(&server).await, (503, "not ready: no rules loaded yet\n".to_owned()));
    assert_eq!(nginx_now(&server).await, "nginx:1.27");

    // It comes up without the Secret: that is an answer (no rules), so ready.
    api.restart().await;
    assert!(eventually(AFTER_RESTART, async || ready(&server).await.0 == 200).await, "ready once the API answered");
    assert_eq!(nginx_now(&server).await, "nginx:1.27");
    assert_eq!(server.metric("mirrorswap_rules_loaded").await, 0.0);

    // Created.
    put_registry_info(&api, &mirror_registries("a.example.org"));
    nginx_becomes(&server, WITHIN, "a.example.org/docker.io/nginx:1.27").await;
    assert_eq!(server.metric("mirrorswap_rules_loaded").await, 3.0);

    // Edited: valid, broken, valid.
    put_registry_info(&api, &mirror_registries("b.example.org"));
    nginx_becomes(&server, WITHIN, "b.example.org/docker.io/nginx:1.27").await;
    let failures = r#"mirrorswap_reloads_total{result="failure",what="rules"}"#;
    assert_eq!(server.metric(failures).await, 0.0);
    put_registry_info(&api, "docker.io::c.example.org/docker.io,quay.io");
    assert!(eventually(WITHIN, async || server.metric(failures).await == 1.0).await, "the broken edit is counted");
    assert_eq!(
        nginx_now(&server).await,
        "b.example.org/docker.io/nginx:1.27",
        "a broken edit keeps the last good rules"
    );
    assert_eq!(ready(&server).await.0, 200, "a broken edit does not make the server unready");
    // Emptied: no rules in the text is refused like a broken edit (--allow-empty-rules accepts it).
    put_registry_info(&api, "");
    assert!(eventually(WITHIN, async || server.metric(failures).await == 2.0).await, "the empty edit is counted");
    assert_eq!(nginx_now(&server).await, "b.example.org/docker.io/nginx:1.27", "an empty edit keeps the rules");
    put_registry_info(&api, &mirror_registries("d.example.org"));
    nginx_becomes(&server, WITHIN, "d.example.org/docker.io/nginx:1.27").await;

    // The API server restarts, the Secret edited meanwhile: the watch resumes from its last
    // resourceVersion and the history brings the edit. Requests and readiness carry on.
    api.stop();
    put_registry_info(&api, &mirror_registries("e.example.org"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ready(&server).await.0, 200, "readiness does not follow the API server");
    assert_eq!(nginx_now(&server).await, "d.example.org/docker.io/nginx:1.27");
    api.restart().await;
    nginx_becomes(&server, AFTER_RESTART, "e.example.org/docker.io/nginx:1.27").await;

    // Again, with the history compacted while it was away: 410 Gone, then a relist.
    api.stop();
    put_registry_info(&api, &mirror_registries("f.example.org"));
    api.compact();
    api.restart().await;
    nginx_becomes(&server, AFTER_RESTART, "f.example.org/docker.io/nginx:1.27").await;
    assert!(api.log().expired >= 1, "the resumed watch was told 410 Gone");

    // Deleted: no rules.
    api.delete_secret(NAMESPACE, NAME);
    nginx_becomes(&server, WITHIN, "nginx:1.27").await;
    assert_eq!(server.metric("mirrorswap_rules_loaded").await, 0.0);
    assert_eq!(ready(&server).await.0, 200);
    // And back.
    put_registry_info(&api, &mirror_registries("g.example.org"));
    nginx_becomes(&server, WITHIN, "g.example.org/docker.io/nginx:1.27").await;

    let log = api.log();
    let selector = "fieldSelector=metadata.name%3Dregistry-info";
    assert!(
        log.requests.iter().all(|target| target.contains(selector)),
        "every call names the one object: {:?}",
        log.requests
    );
    assert!(
        log.requests.iter().any(|target| target.contains("watch=true") && target.contains("allowWatchBookmarks=true"))
    );
    assert!(log.bookmarks > 0, "bookmarks were sent and did not disturb the watch");
    assert!(server.metric("mirrorswap_rules_source_errors_total").await >= 2.0, "each outage is counted");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_key_in_yaml_and_a_missing_key() {
    let api = FakeApi::start().await;
    // The key is missing at first: an error, not "no rules", so not ready.
    api.put_config_map("platform", "mirror-rules", &[("other.yaml", "{}")]);
    let server = start_server(&api, "--rules-configmap", "platform/mirror-rules:rules.yaml").await;
    let failures = r#"mirrorswap_reloads_total{result="failure",what="rules"}"#;
    assert!(eventually(WITHIN, async || server.metric(failures).await == 1.0).await, "the missing key is counted");
    assert_eq!(ready(&server).await.0, 503);

    // The key's extension picks YAML (Registry Connect's imageReplacementRules shape).
    api.put_config_map("platform", "mirror-rules", &[("rules.yaml", "\"docker.io\": \"y.example.org/hub\"\n")]);
    nginx_becomes(&server, WITHIN, "y.example.org/hub/nginx:1.27").await;
    assert_eq!(ready(&server).await.0, 200);
    server.stop().await;
}
