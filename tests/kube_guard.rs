//! The leak guard (`/validate`) called by a real kube-apiserver, in `deny` and `warn`, with the
//! chart's mutating and validating configurations (`validation.enabled`, `webhook.workloads`):
//! on CREATE an unmirrored image is refused with a message the client sees, or admitted with a
//! warning in the response headers, while a rewritten one passes silently; on UPDATE of objects
//! from before the webhook (labels, `rollout restart`, `scale`, a Job, finalizers off during a
//! foreground delete) nothing is refused or warned about, and `kubectl debug` is judged on its
//! new ephemeral container only.

mod common;

use common::control_plane::{self as cluster, ControlPlane};
use common::kube_objects::{self as objects, create, create_namespace, get, merge_patch, workload};
use common::webhooks::{Webhooks, until_rewritten};
use common::{RULES, TestServer};
use serde_json::json;

const UNMIRRORED: &str = "vendor.example.com/agent:1";
const SETS: [&str; 2] = ["validation.enabled=true", "webhook.workloads=true"];

/// Namespace `mode` with objects of every kind from before the webhook, then a server in
/// `--unmirrored mode` and the chart's webhooks, active.
async fn setup(plane: &ControlPlane, mode: &str) -> (kube::Client, TestServer) {
    let client = plane.client().await;
    let namespace = mode;
    create_namespace(&client, namespace, json!({})).await;
    for kind in ["Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"] {
        let (mut object, _) = workload(kind, namespace, "old", &["nginx:1.27", UNMIRRORED]);
        object["metadata"]["finalizers"] = json!(["example.com/hold"]);
        create(&client, &object, false).await.ok();
    }
    let server = TestServer::start_with_rules(RULES, "rules.conf", &["--unmirrored", mode]).await;
    let webhooks = Webhooks::from_chart(&SETS, server.addr, &server.ca.ca_pem, namespace, &[namespace]);
    assert!(webhooks.validating.is_some(), "validation.enabled renders the ValidatingWebhookConfiguration");
    webhooks.register(&client).await;
    until_rewritten(&client, namespace, "nginx:1.27", "harbor.example.org/hub/nginx:1.27").await;
    // The validating configuration is read by the API server with the mutating one; wait until
    // it refuses (deny) or warns (warn) too.
    let probe = objects::pod(namespace, "probe", &[UNMIRRORED]);
    let active = common::eventually(std::time::Duration::from_secs(10), async || {
        let answer = create(&client, &probe, true).await;
        answer.status >= 400 || !answer.warnings.is_empty()
    })
    .await;
    assert!(active, "the leak guard never answered");
    (client, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_and_warn_on_create_and_on_the_updates_users_make() {
    let Some(plane) = cluster::shared() else { return };
    for mode in ["deny", "warn"] {
        let (client, server) = setup(plane, mode).await;
        let namespace = mode;

        // CREATE: a rewritten image passes silently.
        let answer = create(&client, &objects::pod(namespace, "mirrored", &["nginx:1.27"]), false).await;
        assert_eq!((answer.status, answer.warnings.len()), (201, 0), "{mode}: {answer:?}");
        // An unmirrored one, in a Pod and in a Deployment.
        for kind in ["Pod", "Deployment"] {
            let (object, _) = workload(kind, namespace, "leaky", &["nginx:1.27", UNMIRRORED]);
            let answer = create(&client, &object, false).await;
            match mode {
                "deny" => {
                    assert_eq!(answer.status, 403, "{kind}: {answer:?}");
                    let message = answer.message();
                    assert!(
                        message.contains("admission webhook \"validate-pods.mirrorswap.io\" denied the request")
                            && message.contains(UNMIRRORED)
                            && message.contains("c1"),
                        "{kind}: {message}"
                    );
                }
                _ => {
                    assert_eq!(answer.status, 201, "{kind}: {answer:?}");
                    assert_eq!(answer.warnings.len(), 1, "{kind}: {:?}", answer.warnings);
                    assert!(answer.warnings[0].contains(UNMIRRORED), "{kind}: {:?}", answer.warnings);
                }
            }
        }

        // UPDATEs of objects from before the webhook: neither refused nor warned about.
        for kind in ["Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"] {
            let answer =
                merge_patch(&client, kind, namespace, "old", &json!({"metadata": {"labels": {"l": "1"}}})).await;
            assert_eq!((answer.status, answer.warnings.clone()), (200, vec![]), "{mode} {kind} label: {}", answer.body);
        }
        for resource in ["deployment/old", "statefulset/old", "daemonset/old"] {
            let output = plane.kubectl(&["-n", namespace, "rollout", "restart", resource], None);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success() && !stderr.contains("Warning"), "{mode} {resource}: {stderr}");
        }
        let output = plane.kubectl(&["-n", namespace, "scale", "deployment/old", "--replicas=2"], None);
        assert!(output.status.success(), "{mode}: {}", String::from_utf8_lossy(&output.stderr));
        let answer = merge_patch(&client, "Job", namespace, "old", &json!({"spec": {"suspend": true}})).await;
        assert_eq!((answer.status, answer.warnings.len()), (200, 0), "{mode} Job: {}", answer.body);
        // Finalizers off during a foreground delete (as the garbage collector would).
        for kind in ["Deployment", "Job"] {
            objects::delete(&client, kind, namespace, "old", "Foreground").await.ok();
            let mut stored = get(&client, kind, namespace, "old").await;
            stored["metadata"]["finalizers"] = json!([]);
            let answer = objects::replace(&client, &stored).await;
            assert_eq!((answer.status, answer.warnings.len()), (200, 0), "{mode} {kind}: {}", answer.body);
        }

        // kubectl debug: a rewritten debug image passes, an unmirrored one is judged.
        let debug = |image: &str, name: &str| {
            plane.kubectl(&["-n", namespace, "debug", "old", &format!("--image={image}"), "-c", name], None)
        };
        let output = debug("busybox:1.36", "rewritten");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success() && !stderr.contains("Warning"), "{mode}: {stderr}");
        let output = debug("vendor.example.com/debug:1", "leaky");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        match mode {
            "deny" => assert!(
                !output.status.success() && stderr.contains("denied the request") && stderr.contains("debug:1"),
                "{stderr}"
            ),
            _ => {
                assert!(output.status.success() && stderr.contains("Warning") && stderr.contains("debug:1"), "{stderr}")
            }
        }
        let pod = get(&client, "Pod", namespace, "old").await;
        let debuggers = pod["spec"]["ephemeralContainers"].as_array().unwrap().len();
        assert_eq!(debuggers, if mode == "deny" { 1 } else { 2 }, "{mode}: {}", pod["spec"]);
        server.stop().await;
    }
}
