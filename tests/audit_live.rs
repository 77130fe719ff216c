//! `mirrorswap audit` against a live API: the loopback list server (`common::apiserver`)
//! serving Pods and every workload kind, paged with `limit`/`continue`; `--namespace`; and
//! the rules read from Palette's `registry-info` Secret.

mod common;

use std::process::{Command, Output};

use common::apiserver::FakeApi;
use serde_json::{Value, json};

const RULES: &str = "docker.io::harbor.example.org/hub\nquay.io::harbor.example.org/quay\n";

fn pod_spec(image: &str) -> Value {
    json!({"containers": [{"name": "app", "image": image}]})
}

/// Pods and one object of every other kind in `shop` and `ops`.
fn populate(api: &FakeApi) {
    for index in 0..7 {
        let spec = pod_spec(if index % 2 == 0 { "nginx:1.27" } else { "quay.io/shop/api:4" });
        api.put_object(
            "pods",
            "shop",
            &format!("web-{index}"),
            json!({"apiVersion": "v1", "kind": "Pod", "spec": spec}),
        );
    }
    api.put_object("pods", "ops", "probe", json!({"spec": pod_spec("gcr.io/vendor/probe:1")}));
    let template = |image: &str| json!({"template": {"spec": pod_spec(image)}});
    let workloads: [(&'static str, &str, Value); 8] = [
        ("deployments", "web", json!({"spec": template("nginx:1.27")})),
        ("statefulsets", "db", json!({"spec": template("postgres:16")})),
        ("daemonsets", "agent", json!({"spec": template("gcr.io/vendor/agent:1")})),
        ("replicasets", "web-5d8f", json!({"spec": template("nginx:1.27")})),
        ("jobs", "seed", json!({"spec": template("quay.io/shop/seed:1")})),
        ("cronjobs", "backup", json!({"spec": {"jobTemplate": {"spec": template("busybox:1.36")}}})),
        ("replicationcontrollers", "legacy", json!({"spec": template("quay.io/old/legacy:1")})),
        ("podtemplates", "tpl", template("quay.io/shop/tpl:1")),
    ];
    for (resource, name, object) in workloads {
        api.put_object(resource, "ops", name, object);
    }
}

async fn audit(api: &FakeApi, args: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    api.write_kubeconfig(&dir.path().join("kubeconfig"));
    std::fs::write(dir.path().join("rules.conf"), RULES).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirrorswap"));
    command.arg("audit").arg("--kubeconfig").arg(dir.path().join("kubeconfig")).args(args).current_dir(dir.path());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    (output, dir)
}

fn rows(output: &Output) -> Vec<Value> {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice::<Value>(&output.stdout).unwrap().as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_every_namespace_page_by_page() {
    let api = FakeApi::start().await;
    populate(&api);
    let (output, _dir) = audit(&api, &["--rules", "rules.conf", "--page-size", "3", "-o", "json"]).await;
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
    let nginx = &found[3];
    assert_eq!(nginx["rewritten"], "harbor.example.org/hub/nginx:1.27");
    let locations: Vec<&str> = nginx["locations"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(locations.len(), 6, "4 Pods, the Deployment and the ReplicaSet: {locations:?}");
    assert!(
        locations.contains(&"Pod/shop/web-6 containers/app")
            && locations.contains(&"Deployment/ops/web containers/app")
    );
    assert_eq!(found[0]["locations"], json!(["CronJob/ops/backup containers/app"]));
    assert_eq!(found[2]["unmirrored"], true);

    // 8 Pods in pages of 3: three requests, the later ones resuming with `continue`.
    let log = api.log();
    let pods: Vec<&String> = log.requests.iter().filter(|target| target.starts_with("/api/v1/pods?")).collect();
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(pods.iter().all(|target| target.contains("limit=3")));
    assert!(pods[1].contains("continue=3") && pods[2].contains("continue=6"), "{pods:?}");
    for path in [
        "/apis/apps/v1/deployments?",
        "/apis/batch/v1/cronjobs?",
        "/api/v1/podtemplates?",
        "/api/v1/replicationcontrollers?",
    ] {
        assert!(log.requests.iter().any(|target| target.starts_with(path)), "{path} listed: {:?}", log.requests);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_rules_from_the_registry_info_secret() {
    let api = FakeApi::start().await;
    populate(&api);
    api.put_secret(
        "jet-system",
        "registry-info",
        &[("MIRROR_REGISTRIES", "docker.io::m.example.org/docker.io,quay.io::m.example.org/quay.io")],
    );
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
    let (output, _dir) = audit(&api, &args).await;
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "docker.io/library/nginx:1.27 m.example.org/docker.io/nginx:1.27\nquay.io/shop/api:4 m.example.org/quay.io/shop/api:4\n"
    );
    assert!(api.log().requests.iter().all(|target| !target.starts_with("/api/v1/pods")), "only the namespace is read");
    assert!(api.log().requests.iter().any(|target| target.starts_with("/api/v1/namespaces/shop/pods?")));

    // The API refusing is an error (exit 2) naming what was listed.
    let (output, _dir) = audit(&api, &["--rules-secret", "jet-system/absent"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("secret/jet-system/absent"));
}
