//! `--pin-digest` with a real kube-apiserver (`common::control_plane`) calling the chart's
//! webhooks (`webhook.workloads`, the leak guard with `validation.requireDigest`) and a real
//! registry behind `--swap-policy exists`, asserting on what the API server stored: a Pod and a
//! Deployment's template are stored pinned to the digest the registry serves; `kubectl apply`
//! of the same manifest again (what a GitOps tool does), after the tag moved, leaves the
//! stored template as it was (same generation: no rollout) and the Pod's pin in place; and
//! the guard refuses a mirror image written without a digest. Sources are under `.invalid`.

mod common;

use common::control_plane::{self as cluster};
use common::images::push_image;
use common::kube_objects::{self as objects, create, create_namespace, get, images, workload};
use common::registry::{Auth, Registry};
use common::webhooks::{Webhooks, until_rewritten};
use common::{TestServer, eventually};
use serde_json::json;

const AMD64: common::images::Platform<'static> = ("linux", "amd64", None);
const SOURCE: &str = "src.invalid/team/app:1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_objects_are_stored_and_a_re_apply_keeps_their_pin() {
    let Some(plane) = cluster::shared() else { return };
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    let digest = push_image(&registry, "specific/app", "1", "app 1", AMD64).await;
    let pinned = format!("{mirror}/specific/app:1@{digest}");
    let files = tempfile::tempdir().unwrap();
    let auth = files.path().join("auth.json");
    std::fs::write(&auth, registry.docker_config()).unwrap();
    let (auth, ca) = (auth.display().to_string(), registry.ca_path().display().to_string());
    let flags = [
        "--swap-policy",
        "exists",
        "--pin-digest",
        "--registry-auth",
        &auth,
        "--registry-ca",
        &ca,
        "--check-timeout",
        "3s",
        "--request-timeout",
        "8s",
        "--require-digest",
    ];
    let rules = format!("src.invalid/team::{mirror}/specific\n");
    let server = TestServer::start_with_rules(&rules, "rules.conf", &flags).await;
    let client = plane.client().await;
    let namespace = "pinned";
    create_namespace(&client, namespace, json!({})).await;
    let sets = ["webhook.workloads=true", "webhook.timeoutSeconds=10", "validation.enabled=true"];
    let mut webhooks = Webhooks::from_chart(&sets, server.addr, &server.ca.ca_pem, namespace, &[namespace]);
    // The chart sends Pods on CREATE only; imageswap's configuration sends every Pod UPDATE too,
    // which a re-sent Pod needs to reach the webhook.
    webhooks.mutating["webhooks"][0]["rules"][0]["operations"] = json!(["CREATE", "UPDATE"]);
    webhooks.register(&client).await;
    until_rewritten(&client, namespace, SOURCE, &pinned).await;

    // Stored pinned: a Pod, and a Deployment's template.
    let answer = create(&client, &objects::pod(namespace, "web", &[SOURCE]), false).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(images(&get(&client, "Pod", namespace, "web").await, "/spec"), [pinned.as_str()]);
    let (deployment, pointer) = workload("Deployment", namespace, "web", &[SOURCE]);
    let manifest = deployment.to_string();
    let output = plane.kubectl(&["apply", "-f", "-"], Some(&manifest));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stored = get(&client, "Deployment", namespace, "web").await;
    assert_eq!(images(&stored, pointer), [pinned.as_str()]);
    assert_eq!(stored["metadata"]["generation"], 1);

    // The tag moves. Applying the same manifest again (as Argo CD or Flux does) changes nothing
    // stored: the old pin is kept, so no rollout; nor does re-sending the Pod as written (when
    // the configuration sends Pod UPDATEs).
    let moved = push_image(&registry, "specific/app", "1", "app 1, rebuilt", AMD64).await;
    assert_ne!(moved, digest);
    let output = plane.kubectl(&["apply", "-f", "-"], Some(&manifest));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stored = get(&client, "Deployment", namespace, "web").await;
    assert_eq!(images(&stored, pointer), [pinned.as_str()], "{stored}");
    assert_eq!(stored["metadata"]["generation"], 1, "no new generation, no rollout");
    let mut pod = get(&client, "Pod", namespace, "web").await;
    pod["spec"]["containers"][0]["image"] = json!(SOURCE);
    let answer = objects::replace(&client, &pod).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.images("/spec"), [pinned.as_str()]);

    // The guard refuses a mirror image written without a digest (the mutating webhook leaves an
    // image already in the mirror as it is), and admits the pinned one.
    let unpinned = format!("{mirror}/specific/app:1");
    let refused = eventually(std::time::Duration::from_secs(10), async || {
        let answer = create(&client, &objects::pod(namespace, "by-tag", &[&unpinned]), true).await;
        answer.status == 403 && answer.message().contains("without a digest")
    })
    .await;
    assert!(refused, "the guard refuses {unpinned}");
    let answer = create(&client, &objects::pod(namespace, "by-digest", &[&pinned]), false).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    server.stop().await;
}
