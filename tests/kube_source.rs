//! Rules from the Kubernetes API (`--rules-secret`, `--rules-configmap`) read and watched
//! through a real kube-apiserver (`common::control_plane`), as the ServiceAccount the chart
//! creates, with the chart's own Role and RoleBinding (`rules.fromSecret.name`) and a token
//! from the TokenRequest API: Palette's `registry-info` Secret is created, edited (valid,
//! broken, emptied, valid), survives the API server being away at start and restarting, is
//! deleted and recreated; each change must reach the rules within 2 s, a broken edit must keep
//! the last good rules, and readiness must mean "rules loaded once", not "API server up". The
//! API server's audit log shows every call names the one object. Without the RoleBinding the
//! API refuses, and the log says so plainly; with it, the rules arrive.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::control_plane::{self as cluster, ControlPlane, free_port};
use common::kube_objects::{create_namespace, send};
use common::{TestServer, eventually, patched_object, sample};
use serde_json::{Value, json};

const NAMESPACE: &str = "jet-system";
const NAME: &str = "registry-info";
const KEY: &str = "MIRROR_REGISTRIES";
const WITHIN: Duration = Duration::from_secs(2);
/// Reconnecting after a restart waits out the watcher's backoff (250 ms doubling, 10 s at most).
const AFTER_RESTART: Duration = Duration::from_secs(20);
const SERVICE_ACCOUNT: &str = "system:serviceaccount:mirrorswap:ms-mirrorswap";

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

/// Creates or replaces `registry-info` as Palette lays it out.
async fn put_registry_info(client: &kube::Client, rules: &str) {
    put_secret(client, NAME, &[("DOMAIN", "harbor.example.org"), ("BASE_PATH", "airgap-images"), (KEY, rules)]).await;
}

async fn put_secret(client: &kube::Client, name: &str, data: &[(&str, &str)]) {
    let data: serde_json::Map<String, Value> =
        data.iter().map(|(key, value)| ((*key).to_owned(), json!(value))).collect();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE},
                        "type": "Opaque", "stringData": data});
    let path = format!("/api/v1/namespaces/{NAMESPACE}/secrets");
    let created = send(client, "POST", &path, "application/json", Some(&secret)).await;
    if created.status == 409 {
        // Replace the whole data (stringData merges into data on update).
        let replaced = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE},
                              "type": "Opaque", "data": {}, "stringData": data});
        send(client, "PUT", &format!("{path}/{name}"), "application/json", Some(&replaced)).await.ok();
    } else {
        created.ok();
    }
}

async fn delete_secret(client: &kube::Client, name: &str) {
    send(client, "DELETE", &format!("/api/v1/namespaces/{NAMESPACE}/secrets/{name}"), "application/json", None)
        .await
        .ok();
}

async fn ready(server: &TestServer) -> (u16, String) {
    server.admin_get("/readyz").await
}

/// The chart's ServiceAccount, and with `bound` its rules Role and RoleBinding, applied; a
/// kubeconfig holding a token of that ServiceAccount.
async fn chart_service_account(plane: &ControlPlane, client: &kube::Client, bound: bool) -> String {
    create_namespace(client, "mirrorswap", json!({})).await;
    create_namespace(client, NAMESPACE, json!({})).await;
    let documents = common::chart::render_with(None, &[&format!("rules.fromSecret.name={NAME}")]);
    let kinds: &[&str] = if bound { &["ServiceAccount", "Role", "RoleBinding"] } else { &["ServiceAccount"] };
    for kind in kinds {
        for document in common::chart::all_of(&documents, kind) {
            let manifest = common::chart::to_json(document).to_string();
            let output = plane.kubectl(&["apply", "-f", "-"], Some(&manifest));
            assert!(output.status.success(), "{kind}: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {"expirationSeconds": 3600}});
    let path = "/api/v1/namespaces/mirrorswap/serviceaccounts/ms-mirrorswap/token";
    let answer = send(client, "POST", path, "application/json", Some(&request)).await.ok();
    plane.kubeconfig_with_token(answer["status"]["token"].as_str().unwrap())
}

/// A child process killed when the test ends, even by a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_server(kubeconfig: &str, flag: &str, object: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    let path = path.display().to_string();
    TestServer::start_in(dir, None, &[flag, object, "--kubeconfig", &path]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_info_secret_drives_the_rules_through_the_api() {
    // A control plane of its own: this test stops and restarts the API server.
    let Some(mut plane) = ControlPlane::start().await else { return };
    let client = plane.client().await;
    let kubeconfig = chart_service_account(&plane, &client, true).await;
    // Same namespace, same key: only the field selector on the name keeps it out.
    put_secret(&client, "another-secret", &[(KEY, &mirror_registries("wrong.example.org"))]).await;
    plane.stop_apiserver();

    // The API server is away at start: serving, but not ready, and no rules.
    let server = start_server(&kubeconfig, "--rules-secret", "jet-system/registry-info").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ready(&server).await, (503, "not ready: no rules loaded yet\n".to_owned()));
    assert_eq!(nginx_now(&server).await, "nginx:1.27");

    // It comes up without the Secret: that is an answer (no rules), so ready.
    plane.start_apiserver().await;
    let client = plane.client().await;
    assert!(eventually(AFTER_RESTART, async || ready(&server).await.0 == 200).await, "ready once the API answered");
    assert_eq!(nginx_now(&server).await, "nginx:1.27");
    assert_eq!(server.metric("mirrorswap_rules_loaded").await, 0.0);

    // Created.
    put_registry_info(&client, &mirror_registries("a.example.org")).await;
    nginx_becomes(&server, WITHIN, "a.example.org/docker.io/nginx:1.27").await;
    assert_eq!(server.metric("mirrorswap_rules_loaded").await, 3.0);

    // Edited: valid, broken, valid.
    put_registry_info(&client, &mirror_registries("b.example.org")).await;
    nginx_becomes(&server, WITHIN, "b.example.org/docker.io/nginx:1.27").await;
    let failures = r#"mirrorswap_reloads_total{result="failure",what="rules"}"#;
    assert_eq!(server.metric(failures).await, 0.0);
    put_registry_info(&client, "docker.io::c.example.org/docker.io,quay.io").await;
    assert!(eventually(WITHIN, async || server.metric(failures).await == 1.0).await, "the broken edit is counted");
    assert_eq!(
        nginx_now(&server).await,
        "b.example.org/docker.io/nginx:1.27",
        "a broken edit keeps the last good rules"
    );
    assert_eq!(ready(&server).await.0, 200, "a broken edit does not make the server unready");
    // Emptied: no rules in the text is refused like a broken edit (--allow-empty-rules accepts it).
    put_registry_info(&client, "").await;
    assert!(eventually(WITHIN, async || server.metric(failures).await == 2.0).await, "the empty edit is counted");
    assert_eq!(nginx_now(&server).await, "b.example.org/docker.io/nginx:1.27", "an empty edit keeps the rules");
    put_registry_info(&client, &mirror_registries("d.example.org")).await;
    nginx_becomes(&server, WITHIN, "d.example.org/docker.io/nginx:1.27").await;

    // The API server restarts (its watch cache is new: the resumed watch relists). Requests and
    // readiness carry on meanwhile; an edit once it is back arrives.
    plane.stop_apiserver();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ready(&server).await.0, 200, "readiness does not follow the API server");
    assert_eq!(nginx_now(&server).await, "d.example.org/docker.io/nginx:1.27");
    plane.start_apiserver().await;
    let client = plane.client().await;
    put_registry_info(&client, &mirror_registries("e.example.org")).await;
    nginx_becomes(&server, AFTER_RESTART, "e.example.org/docker.io/nginx:1.27").await;

    // Deleted: no rules.
    delete_secret(&client, NAME).await;
    nginx_becomes(&server, WITHIN, "nginx:1.27").await;
    assert_eq!(server.metric("mirrorswap_rules_loaded").await, 0.0);
    assert_eq!(ready(&server).await.0, 200);
    // And recreated.
    put_registry_info(&client, &mirror_registries("g.example.org")).await;
    nginx_becomes(&server, WITHIN, "g.example.org/docker.io/nginx:1.27").await;

    assert!(server.metric("mirrorswap_rules_source_errors_total").await >= 2.0, "each outage is counted");
    // A watch is written to the audit log when it ends (a watch cut by the API server's stop is
    // never written): mirrorswap's open one ends when it stops.
    server.stop().await;

    // Every call mirrorswap made names the one object (which is what lets the Role name it).
    let calls = || -> Vec<String> {
        plane
            .audit_events()
            .iter()
            .filter(|event| event["user"]["username"] == SERVICE_ACCOUNT)
            .map(|event| event["requestURI"].as_str().unwrap().to_owned())
            .collect()
    };
    let watched = || calls().iter().any(|uri| uri.contains("watch=true"));
    assert!(eventually(Duration::from_secs(10), async || watched()).await, "{:?}", calls());
    let selector = "fieldSelector=metadata.name%3Dregistry-info";
    assert!(calls().iter().all(|uri| uri.contains(selector)), "every call names the one object: {:?}", calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_key_in_yaml_and_a_missing_key() {
    let Some(plane) = cluster::shared() else { return };
    let client = plane.client().await;
    create_namespace(&client, "platform", json!({})).await;
    let put = async |data: Value| {
        let map = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "mirror-rules", "namespace": "platform"}, "data": data});
        let path = "/api/v1/namespaces/platform/configmaps";
        if send(&client, "POST", path, "application/json", Some(&map)).await.status == 409 {
            send(&client, "PUT", &format!("{path}/mirror-rules"), "application/json", Some(&map)).await.ok();
        }
    };
    // The key is missing at first: an error, not "no rules", so not ready.
    put(json!({"other.yaml": "{}"})).await;
    let kubeconfig = std::fs::read_to_string(&plane.kubeconfig).unwrap();
    let server = start_server(&kubeconfig, "--rules-configmap", "platform/mirror-rules:rules.yaml").await;
    let failures = r#"mirrorswap_reloads_total{result="failure",what="rules"}"#;
    assert!(eventually(WITHIN, async || server.metric(failures).await == 1.0).await, "the missing key is counted");
    assert_eq!(ready(&server).await.0, 503);

    // The key's extension picks YAML (Registry Connect's imageReplacementRules shape).
    put(json!({"rules.yaml": "\"docker.io\": \"y.example.org/hub\"\n"})).await;
    nginx_becomes(&server, WITHIN, "y.example.org/hub/nginx:1.27").await;
    assert_eq!(ready(&server).await.0, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_role_binding_the_refusal_is_logged_plainly_and_the_binding_fixes_it() {
    let Some(plane) = cluster::shared() else { return };
    let client = plane.client().await;
    let kubeconfig = chart_service_account(plane, &client, false).await;
    put_registry_info(&client, &mirror_registries("r.example.org")).await;

    // `mirrorswap serve` as in the cluster, its log on stderr.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig"), &kubeconfig).unwrap();
    let admin = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--rules-secret", "jet-system/registry-info", "--kubeconfig"])
        .arg(dir.path().join("kubeconfig"))
        .arg("--dev-ca-out")
        .arg(dir.path().join("dev-ca.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let readyz =
        async || common::try_http_get(([127, 0, 0, 1], admin).into(), "/readyz").await.map(|(status, _)| status).ok();
    assert!(eventually(Duration::from_secs(10), async || readyz().await == Some(503)).await, "serving, not ready");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The chart's Role and RoleBinding: the watcher's retry finds the Secret.
    chart_service_account(plane, &client, true).await;
    assert!(eventually(Duration::from_secs(15), async || readyz().await == Some(200)).await, "ready once allowed");
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let mut log = String::new();
    child.0.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    let refusal = log
        .lines()
        .find(|line| line.contains("mirrorswap::server::kube_rules") && line.contains("forbidden"))
        .unwrap_or_else(|| panic!("no refusal logged by mirrorswap:\n{log}"));
    for expected in [
        "Kubernetes API watch failed",
        "secrets \"registry-info\" is forbidden",
        SERVICE_ACCOUNT,
        "cannot list resource \"secrets\"",
        "jet-system",
    ] {
        assert!(refusal.contains(expected), "the refusal names {expected}: {refusal}");
    }
}
