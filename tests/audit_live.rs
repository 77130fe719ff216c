//! `mirrorswap audit` of a live cluster: a real kube-apiserver (`common::control_plane`) holding
//! 2,000 Pods and one object of every workload kind, read by a user the chart's audit
//! ClusterRole (`audit.rbac`) allows, in pages of 100 (the API server's audit log shows each
//! `limit`/`continue` request); `--namespace`; the rules read from Palette's `registry-info`
//! Secret; and the API refusing (a missing Secret) as an error naming what was read.

mod common;

use std::process::{Command, Output};

use common::control_plane::{self as cluster, ControlPlane};
use common::kube_objects::{create, create_namespace, pod, workload};
use futures::StreamExt;
use serde_json::{Value, json};

const RULES: &str = "docker.io::harbor.example.org/hub\nquay.io::harbor.example.org/quay\n";
const SHOP_PODS: usize = 1_990;
const OPS_PODS: usize = 10;

/// Pods in `shop` and `ops` (2,000 in all), one object of every other kind in `ops`, and the
/// chart's audit ClusterRole bound to the user `auditor`; once per process.
async fn populate(plane: &ControlPlane) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(async || {
        let client = plane.client().await;
        for namespace in ["shop", "ops", "jet-system"] {
            create_namespace(&client, namespace, json!({})).await;
        }
        let mut pods: Vec<Value> = (0..SHOP_PODS)
            .map(|index| {
                let image = if index % 2 == 0 { "nginx:1.27" } else { "quay.io/shop/api:4" };
                pod("shop", &format!("web-{index}"), &[image])
            })
            .collect();
        pods.extend((0..OPS_PODS).map(|index| pod("ops", &format!("probe-{index}"), &["gcr.io/vendor/probe:1"])));
        let created = futures::stream::iter(pods.iter().map(|pod| create(&client, pod, false)))
            .buffer_unordered(16)
            .filter(|answer| std::future::ready(answer.status != 201))
            .count()
            .await;
        assert_eq!(created, 0, "every Pod created");
        for (kind, name, image) in [
            ("Deployment", "web", "nginx:1.27"),
            ("StatefulSet", "db", "postgres:16"),
            ("DaemonSet", "agent", "gcr.io/vendor/agent:1"),
            ("ReplicaSet", "web-5d8f", "nginx:1.27"),
            ("Job", "seed", "quay.io/shop/seed:1"),
            ("CronJob", "backup", "busybox:1.36"),
        ] {
            create(&client, &workload(kind, "ops", name, &[image]).0, false).await.ok();
        }
        let template = json!({"spec": {"containers": [{"name": "c0", "image": "quay.io/old/legacy:1"}]},
                              "metadata": {"labels": {"app": "legacy"}}});
        let legacy = json!({"apiVersion": "v1", "kind": "ReplicationController",
                            "metadata": {"name": "legacy", "namespace": "ops"},
                            "spec": {"replicas": 1, "selector": {"app": "legacy"}, "template": template}});
        create(&client, &legacy, false).await.ok();
        let tpl = json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "tpl", "namespace": "ops"},
                         "template": {"spec": {"containers": [{"name": "c0", "image": "quay.io/shop/tpl:1"}]}}});
        create(&client, &tpl, false).await.ok();

        let sets = [
            "audit.rbac.enabled=true",
            "audit.rbac.subjects[0].kind=User",
            "audit.rbac.subjects[0].name=auditor",
            "audit.rbac.subjects[0].apiGroup=rbac.authorization.k8s.io",
        ];
        let documents = common::chart::render_with(None, &sets);
        for kind in ["ClusterRole", "ClusterRoleBinding"] {
            for document in common::chart::all_of(&documents, kind) {
                let manifest = common::chart::to_json(document).to_string();
                let output = plane.kubectl(&["apply", "-f", "-"], Some(&manifest));
                assert!(output.status.success(), "{kind}: {}", String::from_utf8_lossy(&output.stderr));
            }
        }
    })
    .await;
}

/// `mirrorswap audit ARGS` with `kubeconfig`, in a directory holding `rules.conf`.
async fn audit(kubeconfig: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
    std::fs::write(dir.path().join("rules.conf"), RULES).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirrorswap"));
    command.arg("audit").arg("--kubeconfig").arg(dir.path().join("kubeconfig")).args(args).current_dir(dir.path());
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

fn rows(output: &Output) -> Vec<Value> {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice::<Value>(&output.stdout).unwrap().as_array().unwrap().clone()
}

/// The request URIs of `user` in the API server's audit log.
fn requests_of(plane: &ControlPlane, user: &str) -> Vec<String> {
    plane
        .audit_events()
        .iter()
        .filter(|event| event["user"]["username"] == user)
        .filter_map(|event| event["requestURI"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_pods_and_every_kind_page_by_page_with_the_charts_audit_role() {
    let Some(plane) = cluster::shared() else { return };
    populate(plane).await;
    let kubeconfig = plane.kubeconfig_as("auditor", None);
    let output = audit(&kubeconfig, &["--rules", "rules.conf", "--page-size", "100", "-o", "json"]).await;
    let found = rows(&output);
    let images: Vec<&str> = found.iter().map(|row| row["image"].as_str().unwrap()).collect();
    assert_eq!(
        images,
        [
            "busybox:1.36",
            "gcr.io/vendor/agent:1",
            "gcr.io/vendor/probe:1",
            "nginx:1.27",
            "postgres:16",
            "quay.io/old/legacy:1",
            "quay.io/shop/api:4",
            "quay.io/shop/seed:1",
            "quay.io/shop/tpl:1",
        ]
    );
    let locations = |row: &Value| {
        row["locations"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let nginx = &found[3];
    assert_eq!(nginx["rewritten"], "harbor.example.org/hub/nginx:1.27");
    let nginx_locations = locations(nginx);
    assert_eq!(nginx_locations.len(), SHOP_PODS / 2 + 2, "995 Pods, the Deployment and the ReplicaSet");
    for location in ["Pod/shop/web-1988 containers/c0", "Deployment/ops/web containers/c0"] {
        assert!(nginx_locations.iter().any(|seen| seen == location), "{location}: {:?}", &nginx_locations[..3]);
    }
    assert_eq!(locations(&found[2]).len(), OPS_PODS);
    assert_eq!(found[0]["locations"], json!(["CronJob/ops/backup containers/c0"]));
    assert_eq!(found[2]["unmirrored"], true);

    // 2,000 Pods in pages of 100: 20 requests, each after the first resuming with `continue`.
    let requests = requests_of(plane, "auditor");
    let pods: Vec<&String> = requests.iter().filter(|uri| uri.starts_with("/api/v1/pods?")).collect();
    assert_eq!(pods.len(), 20, "{pods:?}");
    assert!(pods.iter().all(|uri| uri.contains("limit=100")), "{pods:?}");
    assert!(!pods[0].contains("continue=") && pods[1..].iter().all(|uri| uri.contains("continue=")), "{pods:?}");
    for path in [
        "/apis/apps/v1/deployments?",
        "/apis/batch/v1/cronjobs?",
        "/api/v1/podtemplates?",
        "/api/v1/replicationcontrollers?",
    ] {
        assert!(requests.iter().any(|uri| uri.starts_with(path)), "{path} listed: {requests:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_rules_from_the_registry_info_secret() {
    let Some(plane) = cluster::shared() else { return };
    populate(plane).await;
    let client = plane.client().await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "registry-info", "namespace": "jet-system"},
        "stringData": {"MIRROR_REGISTRIES": "docker.io::m.example.org/docker.io,quay.io::m.example.org/quay.io"}});
    let path = "/api/v1/namespaces/jet-system/secrets";
    let answer = common::kube_objects::send(&client, "POST", path, "application/json", Some(&secret)).await;
    assert!(answer.status == 201 || answer.status == 409, "{}", answer.body);
    let kubeconfig = plane.kubeconfig_as("reader", Some("system:masters"));
    let args = [
        "--rules-secret",
        "jet-system/registry-info",
        "--namespace",
        "shop",
        "-o",
        "copy-list",
        "--fail-on",
        "unmirrored",
    ];
    let output = audit(&kubeconfig, &args).await;
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "docker.io/library/nginx:1.27 m.example.org/docker.io/nginx:1.27\nquay.io/shop/api:4 m.example.org/quay.io/shop/api:4\n"
    );
    let requests = requests_of(plane, "reader");
    assert!(requests.iter().all(|uri| !uri.starts_with("/api/v1/pods")), "only the namespace is read: {requests:?}");
    assert!(requests.iter().any(|uri| uri.starts_with("/api/v1/namespaces/shop/pods?")), "{requests:?}");

    // The API refusing is an error (exit 2) naming what was read.
    let output = audit(&kubeconfig, &["--rules-secret", "jet-system/absent"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("secret/jet-system/absent"));
}
