//! Failure policies as a real kube-apiserver applies them to the chart's webhook: with
//! mirrorswap stopped, and with mirrorswap slower than `timeoutSeconds` (a registry check
//! (`--swap-policy exists`) against a mirror that never answers, with a check deadline longer
//! than the webhook's timeout), `Ignore` admits the Pod unchanged and `Fail` refuses it with
//! the API server's message.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::control_plane::{self as cluster, ControlPlane};
use common::hostile::{Hostile, Reply};
use common::kube_objects::{self as objects, create, create_namespace};
use common::webhooks::{Webhooks, until_rewritten};
use serde_json::json;

/// A mirror that has every image, and one that never answers; rules for both; a server that
/// checks them (`--check-timeout 4s`) behind the chart's webhook with `policy` and a 1 s
/// timeout, active in namespace `namespace`.
async fn setup(
    plane: &ControlPlane,
    namespace: &str,
    policy: &str,
) -> (kube::Client, TestServer, Webhooks, [Hostile; 2]) {
    let client = plane.client().await;
    create_namespace(&client, namespace, json!({})).await;
    let fast = Hostile::start(None, |_| Reply::status(200)).await;
    let slow = Hostile::start(None, |_| Reply::stall()).await;
    let rules = format!("fast.invalid::{}/m\nslow.invalid::{}/m\n", fast.host(), slow.host());
    let flags = [
        "--swap-policy",
        "exists",
        "--check-timeout",
        "4s",
        "--insecure-registry",
        &fast.host(),
        "--insecure-registry",
        &slow.host(),
    ];
    let server = TestServer::start_with_rules(&rules, "rules.conf", &flags).await;
    let mut webhooks = Webhooks::from_chart(&[], server.addr, &server.ca.ca_pem, namespace, &[namespace]);
    webhooks.set_all("failurePolicy", json!(policy));
    webhooks.set_all("timeoutSeconds", json!(1));
    webhooks.register(&client).await;
    until_rewritten(&client, namespace, "fast.invalid/app:1", &format!("{}/m/app:1", fast.host())).await;
    (client, server, webhooks, [fast, slow])
}

/// What the API server does with a Pod of `image` under `policy`; a refusal names `fault`.
async fn check(client: &kube::Client, namespace: &str, policy: &str, image: &str, fault: &str) {
    let begun = Instant::now();
    let answer = create(client, &objects::pod(namespace, "app", &[image]), false).await;
    let took = begun.elapsed();
    match policy {
        "Ignore" => {
            assert_eq!(answer.status, 201, "{fault}: {answer:?}");
            assert_eq!(answer.images("/spec"), [image], "{fault}: admitted unchanged");
        }
        _ => {
            assert_eq!(answer.status, 500, "{fault}: {answer:?}");
            let message = answer.message();
            assert!(
                message.contains("failed calling webhook \"pods.mirrorswap.io\"") && message.contains(fault),
                "{fault}: {message}"
            );
            let missing = objects::send(client, "GET", &objects::path("Pod", namespace, "app"), "", None).await;
            assert_eq!(missing.status, 404, "{fault}: nothing stored");
        }
    }
    assert!(took < Duration::from_secs(4), "{fault} {policy}: the API server waited {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrorswap_stopped_ignore_admits_unchanged_and_fail_refuses() {
    let Some(plane) = cluster::shared() else { return };
    for policy in ["Ignore", "Fail"] {
        let namespace = format!("stopped-{}", policy.to_lowercase());
        let (client, server, _webhooks, _mirrors) = setup(plane, &namespace, policy).await;
        server.stop().await;
        check(&client, &namespace, policy, "fast.invalid/app:1", "connection refused").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrorswap_slower_than_timeout_seconds_ignore_admits_unchanged_and_fail_refuses() {
    let Some(plane) = cluster::shared() else { return };
    for policy in ["Ignore", "Fail"] {
        let namespace = format!("slow-{}", policy.to_lowercase());
        let (client, server, _webhooks, [_, slow]) = setup(plane, &namespace, policy).await;
        check(&client, &namespace, policy, "slow.invalid/app:1", "context deadline exceeded").await;
        assert!(!slow.seen().is_empty(), "mirrorswap was asking the stalled mirror");
        server.stop().await;
    }
}
