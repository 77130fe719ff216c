//! `/mutate` called by a real kube-apiserver (`common::control_plane`), registered as the chart renders
//! it (`common::webhooks`), asserting on what the API server stored:
//! - every kind created with mirrored images, and `--dry-run=server` answering mirrored images
//!   while storing nothing;
//! - UPDATE safety on objects created before the webhook: label updates, `kubectl rollout
//!   restart`, `kubectl scale`, finalizer removal during a foreground delete and a Job's update
//!   pass without a 422 and without their images changing; `kubectl debug` adds an ephemeral
//!   container whose image is rewritten; `--pull-secret` never touches a Pod's
//!   `imagePullSecrets` on UPDATE (the 422 users met), even under a configuration that sends
//!   every Pod UPDATE (imageswap's).
//!
//! The tests share one control plane; each has its own namespace and webhook configuration.

mod common;

use common::control_plane::{self as cluster, ControlPlane};
use common::kube_objects::{self as objects, create, create_namespace, get, images, merge_patch, workload};
use common::webhooks::{Webhooks, until_rewritten};
use common::{RULES, TestServer};
use serde_json::{Value, json};

const KINDS: [&str; 6] = ["Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"];
const IMAGES: [&str; 2] = ["nginx:1.27", "quay.io/shop/api:4"];
const MIRRORED: [&str; 2] = ["harbor.example.org/hub/nginx:1.27", "harbor.example.org/quay/shop/api:4"];
const PULL_SECRET: &str = "harbor-pull";

/// A namespace, a server with `extra` flags and the chart's webhooks (`sets`) calling it for
/// that namespace, active.
async fn setup(plane: &ControlPlane, namespace: &str, sets: &[&str], extra: &[&str]) -> (kube::Client, TestServer) {
    let client = plane.client().await;
    create_namespace(&client, namespace, json!({})).await;
    let server = TestServer::start_with_rules(RULES, "rules.conf", extra).await;
    let webhooks = Webhooks::from_chart(sets, server.addr, &server.ca.ca_pem, namespace, &[namespace]);
    webhooks.register(&client).await;
    until_rewritten(&client, namespace, "nginx:1.27", MIRRORED[0]).await;
    (client, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_is_stored_with_mirrored_images_and_dry_run_stores_nothing() {
    let Some(plane) = cluster::shared() else { return };
    let namespace = "created";
    let (client, server) = setup(plane, namespace, &["webhook.workloads=true"], &[]).await;
    for kind in KINDS {
        let (object, pointer) = workload(kind, namespace, "app", &IMAGES);
        let answer = create(&client, &object, true).await;
        assert_eq!(answer.images(pointer), MIRRORED, "{kind} --dry-run=server answers mirrored images");
        let missing = objects::send(&client, "GET", &objects::path(kind, namespace, "app"), "", None).await;
        assert_eq!(missing.status, 404, "{kind}: a dry run stores nothing");

        let answer = create(&client, &object, false).await;
        assert_eq!(answer.status, 201, "{kind}: {}", answer.body);
        let stored = get(&client, kind, namespace, "app").await;
        assert_eq!(images(&stored, pointer), MIRRORED, "{kind} stored");
    }
    // kubectl's own --dry-run=server, as a user types it.
    let manifest = objects::pod(namespace, "typed", &["nginx:1.27"]).to_string();
    let output = plane.kubectl(&["create", "--dry-run=server", "-o", "json", "-f", "-"], Some(&manifest));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answered: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(images(&answered, "/spec"), [MIRRORED[0]]);
    server.stop().await;
}

/// Objects of every kind created before the webhook, with unmirrored images.
async fn created_before(client: &kube::Client, namespace: &str, finalizer: bool) {
    create_namespace(client, namespace, json!({})).await;
    for kind in KINDS {
        let (mut object, _) = workload(kind, namespace, "old", &IMAGES);
        if finalizer {
            object["metadata"]["finalizers"] = json!(["example.com/hold"]);
        }
        create(client, &object, false).await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_from_before_the_webhook_take_updates_without_a_422_or_an_image_change() {
    let Some(plane) = cluster::shared() else { return };
    let namespace = "before";
    let client = plane.client().await;
    created_before(&client, namespace, false).await;
    let pull_secret = format!("harbor.example.org={PULL_SECRET}");
    let flags = ["--pull-secret", &pull_secret, "--annotate-original"];
    let (client, server) = setup(plane, namespace, &["webhook.workloads=true"], &flags).await;

    // Label updates, each kind (a Job's template is immutable: rewriting it would be a 422).
    for kind in KINDS {
        let answer =
            merge_patch(&client, kind, namespace, "old", &json!({"metadata": {"labels": {"team": "a"}}})).await;
        assert_eq!(answer.status, 200, "{kind} label update: {}", answer.body);
        let (_, pointer) = workload(kind, namespace, "old", &[]);
        assert_eq!(answer.images(pointer), IMAGES, "{kind}: a label update changes no image");
        assert!(answer.body.pointer(&format!("{pointer}/imagePullSecrets")).is_none(), "{kind}: no pull secret");
    }
    // kubectl rollout restart (an annotation on the template) and kubectl scale.
    for (kind, resource) in [("Deployment", "deployment"), ("StatefulSet", "statefulset"), ("DaemonSet", "daemonset")] {
        let output = plane.kubectl(&["-n", namespace, "rollout", "restart", &format!("{resource}/old")], None);
        assert!(output.status.success(), "{kind}: {}", String::from_utf8_lossy(&output.stderr));
        let stored = get(&client, kind, namespace, "old").await;
        assert!(stored["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string());
        assert_eq!(images(&stored, "/spec/template/spec"), IMAGES, "{kind}: a restart changes no image");
    }
    for (kind, resource) in [("Deployment", "deployment"), ("StatefulSet", "statefulset")] {
        let output = plane.kubectl(&["-n", namespace, "scale", &format!("{resource}/old"), "--replicas=3"], None);
        assert!(output.status.success(), "{kind}: {}", String::from_utf8_lossy(&output.stderr));
        let stored = get(&client, kind, namespace, "old").await;
        assert_eq!(stored["spec"]["replicas"], 3);
        assert_eq!(images(&stored, "/spec/template/spec"), IMAGES);
    }
    // A Job's other fields (suspend) change; its template stays.
    let answer = merge_patch(&client, "Job", namespace, "old", &json!({"spec": {"suspend": true}})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.images("/spec/template/spec"), IMAGES);

    // kubectl debug: the ephemeral container's image is rewritten, nothing else changes.
    let output = plane.kubectl(&["-n", namespace, "debug", "old", "--image=busybox:1.36", "-c", "debugger"], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let pod = get(&client, "Pod", namespace, "old").await;
    assert_eq!(pod["spec"]["ephemeralContainers"][0]["image"], "harbor.example.org/hub/busybox:1.36");
    assert_eq!(images(&pod, "/spec")[..2], IMAGES);
    assert!(pod["spec"]["imagePullSecrets"].is_null(), "no pull secret added on UPDATE: {}", pod["spec"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_come_off_during_a_foreground_delete() {
    let Some(plane) = cluster::shared() else { return };
    let namespace = "deleting";
    let client = plane.client().await;
    created_before(&client, namespace, true).await;
    let (client, server) = setup(plane, namespace, &["webhook.workloads=true"], &[]).await;
    for kind in KINDS {
        let answer = objects::delete(&client, kind, namespace, "old", "Foreground").await;
        assert!(answer.status < 300, "{kind}: {}", answer.body);
        // As the garbage collector does once the dependents are gone: an UPDATE removing the
        // finalizers of an object being deleted.
        let mut stored = get(&client, kind, namespace, "old").await;
        assert!(stored["metadata"]["deletionTimestamp"].is_string(), "{kind}: {stored}");
        stored["metadata"]["finalizers"] = json!([]);
        let answer = objects::replace(&client, &stored).await;
        assert_eq!(answer.status, 200, "{kind}: {}", answer.body);
        let gone = objects::send(&client, "GET", &objects::path(kind, namespace, "old"), "", None).await;
        assert_eq!(gone.status, 404, "{kind} deleted once its finalizers are off");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_secrets_are_added_on_create_only_even_when_every_pod_update_is_sent() {
    let Some(plane) = cluster::shared() else { return };
    let namespace = "pull-secret";
    let client = plane.client().await;
    create_namespace(&client, namespace, json!({})).await;
    create(&client, &objects::pod(namespace, "old", &IMAGES), false).await.ok();
    let pull_secret = format!("harbor.example.org={PULL_SECRET}");
    let server = TestServer::start_with_rules(RULES, "rules.conf", &["--pull-secret", &pull_secret]).await;
    // imageswap's configuration sends every Pod UPDATE: the chart's first rule, widened.
    let mut webhooks = Webhooks::from_chart(&[], server.addr, &server.ca.ca_pem, namespace, &[namespace]);
    webhooks.mutating["webhooks"][0]["rules"][0]["operations"] = json!(["CREATE", "UPDATE"]);
    webhooks.register(&client).await;
    until_rewritten(&client, namespace, "nginx:1.27", MIRRORED[0]).await;

    // Created with the webhook: rewritten, with the pull secret.
    let answer = create(&client, &objects::pod(namespace, "new", &IMAGES), false).await;
    assert_eq!(answer.images("/spec"), MIRRORED);
    assert_eq!(answer.body["spec"]["imagePullSecrets"], json!([{"name": PULL_SECRET}]));

    // Updated, old and new: no 422 (imagePullSecrets is immutable on a Pod), images as they were.
    for (name, expected) in [("old", IMAGES), ("new", MIRRORED)] {
        let answer = merge_patch(&client, "Pod", namespace, name, &json!({"metadata": {"labels": {"v": "2"}}})).await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);
        assert_eq!(answer.images("/spec"), expected, "{name}");
        let output = plane.kubectl(&["-n", namespace, "debug", name, "--image=busybox:1.36", "-c", "dbg"], None);
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        let pod = get(&client, "Pod", namespace, name).await;
        assert_eq!(pod["spec"]["ephemeralContainers"][0]["image"], "harbor.example.org/hub/busybox:1.36");
    }
    // A Pod's image set by hand on UPDATE is still rewritten (a Pod's images may change).
    let patch = json!({"spec": {"containers": [{"name": "c0", "image": "nginx:1.28"}]}});
    let answer = objects::send(
        &client,
        "PATCH",
        &objects::path("Pod", namespace, "old"),
        "application/strategic-merge-patch+json",
        Some(&patch),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.images("/spec")[..2], ["harbor.example.org/hub/nginx:1.28", IMAGES[1]]);
    assert!(answer.body["spec"]["imagePullSecrets"].is_null());
    server.stop().await;
}
