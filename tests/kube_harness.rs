//! The real control plane harness (`common::control_plane`) itself: it starts, stores objects, judges
//! RBAC by client certificate, and leaves nothing behind — neither when dropped nor when the
//! process holding it goes away (the watchdog). Its start and stop times are printed for
//! docs/testing.md.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Instant;

use common::control_plane::ControlPlane;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

fn namespace(name: &str) -> Namespace {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_stores_objects_judges_rbac_and_leaves_nothing_behind() {
    let Some(plane) = ControlPlane::start().await else { return };
    let client = plane.client().await;
    let namespaces: Api<Namespace> = Api::all(client);
    namespaces.create(&PostParams::default(), &namespace("harness")).await.unwrap();
    let stored = namespaces.get("harness").await.unwrap();
    assert_eq!(stored.metadata.labels.unwrap()["kubernetes.io/metadata.name"], "harness");

    // A user outside system:masters is refused by RBAC.
    let nobody = common::control_plane::client_from(&plane.kubeconfig_as("nobody", None)).await;
    let error = Api::<Namespace>::all(nobody).list(&Default::default()).await.unwrap_err();
    assert!(error.to_string().contains("forbidden"), "{error}");
    // The audit log saw both.
    let users: Vec<String> =
        plane.audit_events().iter().filter_map(|event| event["user"]["username"].as_str().map(str::to_owned)).collect();
    assert!(users.iter().any(|user| user == "admin") && users.iter().any(|user| user == "nobody"), "{users:?}");
    // Services get loopback ClusterIPs.
    let output = plane.kubectl(&["get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"], None);
    let ip = String::from_utf8(output.stdout).unwrap();
    assert!(ip.starts_with("127."), "{ip}: {}", String::from_utf8_lossy(&output.stderr));

    let dir = plane.dir.clone();
    let begun = Instant::now();
    drop(plane);
    eprintln!("drop took {:.2?}", begun.elapsed());
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_kills_and_removes_when_the_owner_goes_away() {
    let Some(plane) = ControlPlane::start().await else { return };
    let dir = plane.dir.clone();
    let ended = plane.abandon();
    assert_eq!(ended.len(), 2);
    assert!(ended.iter().all(|status| status.signal() == Some(9)), "killed by the watchdog: {ended:?}");
    assert!(!dir.exists(), "{} left behind", dir.display());
}
