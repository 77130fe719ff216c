//! The Helm chart against a real kube-apiserver (`common::control_plane`):
//! - `helm install` with the default values, then with Palette's values; the release's own
//!   webhook configuration, unchanged (its Service reference, the chart-generated CA in
//!   `caBundle`), admits a Pod, and with Palette's rules rewrites it. There is no kubelet or
//!   kube-proxy, so the test plays both: it runs the stored Deployment's container args (rules
//!   and certificate files written from the stored ConfigMap and Secret) on the Service's
//!   ClusterIP and port — a loopback address here (`common::control_plane`) — which is where the
//!   API server calls a Service webhook. Binding port 443 needs root (CI runs as root);
//!   elsewhere that step says so and is skipped.
//! - `helm upgrade` keeps the generated CA (the chart's `lookup` of its own Secret) and, with
//!   Palette's `registry-info` Secret present, selects it (the chart's other `lookup`).
//! - Every other values file of helm/mirrorswap/ci: `helm template | kubectl apply
//!   --dry-run=server`. Kinds whose CRDs this API server does not have (cert-manager's
//!   Certificate and Issuer, the Prometheus Operator's ServiceMonitor and PrometheusRule) are
//!   left out, and the test checks that those are the only ones.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Output;

use base64::Engine;
use common::control_plane::{self as cluster, ControlPlane};
use common::kube_objects::{self as objects, create, create_namespace, send};
use common::{eventually, serve_args};
use serde_json::{Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/mirrorswap");
const RELEASE_NAMESPACE: &str = "mirrorswap";

fn helm(plane: &ControlPlane, args: &[&str]) -> Output {
    let helm = common::tools::tool("helm", "MIRRORSWAP_HELM");
    let output = std::process::Command::new(helm)
        .arg("--kubeconfig")
        .arg(&plane.kubeconfig)
        .args(args)
        .env("HELM_CACHE_HOME", plane.dir.join("helm/cache"))
        .env("HELM_CONFIG_HOME", plane.dir.join("helm/config"))
        .env("HELM_DATA_HOME", plane.dir.join("helm/data"))
        .output()
        .unwrap();
    assert!(output.status.success(), "helm {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn values(file: &str) -> String {
    format!("{CHART}/ci/{file}")
}

async fn get(client: &kube::Client, path: &str) -> Value {
    send(client, "GET", path, "application/json", None).await.ok()
}

/// The release's Deployment run as the kubelet would, on its Service's ClusterIP:port as
/// kube-proxy would route it; `None` when that port cannot be bound (not root).
async fn run_release(client: &kube::Client, dir: &Path) -> Option<mirrorswap::server::Running> {
    let base = format!("/api/v1/namespaces/{RELEASE_NAMESPACE}");
    let deployment =
        get(client, &format!("/apis/apps/v1/namespaces/{RELEASE_NAMESPACE}/deployments/ms-mirrorswap")).await;
    let service = get(client, &format!("{base}/services/ms-mirrorswap")).await;
    let ip: IpAddr = service["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert!(ip.is_loopback(), "{ip}");
    let port = u16::try_from(service["spec"]["ports"][0]["port"].as_u64().unwrap()).unwrap();
    let address = SocketAddr::new(ip, port);
    if let Err(error) = std::net::TcpListener::bind(address) {
        eprintln!("skipping the webhook call: cannot listen on {address} as the Service ({error}); run as root");
        return None;
    }
    // The volumes: the rules ConfigMap and the TLS Secret, as files.
    let rules = get(client, &format!("{base}/configmaps/ms-mirrorswap-rules")).await;
    let tls = get(client, &format!("{base}/secrets/ms-mirrorswap-tls")).await;
    for (sub, files) in [("rules", &rules["data"]), ("tls", &tls["data"])] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for (name, value) in files.as_object().unwrap() {
            let text = value.as_str().unwrap();
            let bytes = match sub {
                "tls" => base64::engine::general_purpose::STANDARD.decode(text).unwrap(),
                _ => text.as_bytes().to_vec(),
            };
            std::fs::write(dir.join(sub).join(name), bytes).unwrap();
        }
    }
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut argv = vec!["mirrorswap".to_owned()];
    for arg in container["args"].as_array().unwrap().iter().filter_map(Value::as_str) {
        argv.push(match arg.split_once('=') {
            Some(("--listen", _)) => format!("--listen={address}"),
            Some(("--admin-listen", _)) => "--admin-listen=127.0.0.1:0".to_owned(),
            _ => arg.replace("/etc/mirrorswap", &dir.display().to_string()),
        });
    }
    Some(mirrorswap::server::start(serve_args(&argv)).await.expect("the release's container args start"))
}

/// Creates Pods `NAME-N` of `image` in namespace `apps` until the release's webhook answered
/// (a request counted), returning the stored images.
async fn admitted(
    client: &kube::Client,
    name: &str,
    image: &str,
    running: &mirrorswap::server::Running,
) -> Vec<String> {
    let admin = running.admin_addr;
    let mut stored = Vec::new();
    let mut attempt = 0;
    let called = eventually(std::time::Duration::from_secs(10), async || {
        attempt += 1;
        let answer = create(client, &objects::pod("apps", &format!("{name}-{attempt}"), &[image]), false).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        stored = answer.images("/spec");
        let (_, metrics) = common::http_get(admin, "/metrics").await;
        metrics.lines().any(|line| line.starts_with("mirrorswap_admission_requests_total") && !line.ends_with(" 0"))
    })
    .await;
    assert!(called, "the API server never called the release's webhook");
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_default_and_palette_values_and_the_installed_webhook_admits_and_rewrites() {
    let Some(plane) = cluster::shared() else { return };
    let client = plane.client().await;
    create_namespace(&client, "apps", json!({})).await;
    let webhook_path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/ms-mirrorswap";

    // Default values.
    helm(plane, &["install", "ms", CHART, "-n", RELEASE_NAMESPACE, "--create-namespace"]);
    let webhook = get(&client, webhook_path).await;
    let client_config = &webhook["webhooks"][0]["clientConfig"];
    assert_eq!(
        client_config["service"],
        json!({"name": "ms-mirrorswap", "namespace": "mirrorswap", "path": "/mutate", "port": 443})
    );
    let ca_bundle = client_config["caBundle"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    if let Some(running) = run_release(&client, &dir.path().join("default")).await {
        // No rules by default: admitted, unchanged.
        assert_eq!(admitted(&client, "default", "nginx:1.27", &running).await, ["nginx:1.27"]);
        running.shutdown(std::time::Duration::from_secs(2)).await.unwrap();
    }

    // Upgraded to Palette's values: the generated CA is kept (lookup of the release's Secret).
    helm(plane, &["upgrade", "ms", CHART, "-n", RELEASE_NAMESPACE, "--values", &values("palette-values.yaml")]);
    let webhook = get(&client, webhook_path).await;
    assert_eq!(webhook["webhooks"][0]["clientConfig"]["caBundle"], ca_bundle.as_str(), "an upgrade keeps the CA");
    if let Some(running) = run_release(&client, &dir.path().join("palette")).await {
        let stored = admitted(&client, "palette", "nginx:1.27", &running).await;
        assert_eq!(stored, ["harbor.example.org/airgap-images/docker.io/nginx:1.27"]);
        running.shutdown(std::time::Duration::from_secs(2)).await.unwrap();
    }

    // Palette's registry-info Secret present at upgrade: the chart finds it and reads the
    // rules from it, with a Role for that one Secret.
    create_namespace(&client, "jet-system", json!({})).await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry-info", "namespace": "jet-system"},
                        "stringData": {"MIRROR_REGISTRIES": "docker.io::harbor.example.org/airgap-images/docker.io"}});
    send(&client, "POST", "/api/v1/namespaces/jet-system/secrets", "application/json", Some(&secret)).await.ok();
    helm(plane, &["upgrade", "ms", CHART, "-n", RELEASE_NAMESPACE, "--values", &values("palette-values.yaml")]);
    let deployment = get(&client, "/apis/apps/v1/namespaces/mirrorswap/deployments/ms-mirrorswap").await;
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--rules-secret=jet-system/registry-info:MIRROR_REGISTRIES"), "{args}");
    let role =
        get(&client, "/apis/rbac.authorization.k8s.io/v1/namespaces/jet-system/roles/ms-mirrorswap-rules-reader").await;
    assert_eq!(role["rules"][0]["resourceNames"], json!(["registry-info"]));

    helm(plane, &["uninstall", "ms", "-n", RELEASE_NAMESPACE]);
    let gone = send(&client, "GET", webhook_path, "application/json", None).await;
    assert_eq!(gone.status, 404, "uninstall removes the webhook configuration");
}

/// The dry runs' release is `dry` in this namespace, apart from the installed one.
const DRY_RUN_NAMESPACE: &str = "dry-run";

/// Kinds whose CRDs a bare API server does not have.
const NO_CRD: [&str; 4] = ["Certificate", "Issuer", "ServiceMonitor", "PrometheusRule"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_values_file_applies_with_dry_run_server() {
    let Some(plane) = cluster::shared() else { return };
    let client = plane.client().await;
    for namespace in [DRY_RUN_NAMESPACE, "jet-system"] {
        create_namespace(&client, namespace, json!({})).await;
    }
    let mut files: Vec<String> = std::fs::read_dir(format!("{CHART}/ci"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "default-values.yaml" && name != "palette-values.yaml")
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let mut left_out = std::collections::BTreeSet::new();
    for file in &files {
        let documents = common::chart::render_release("dry", DRY_RUN_NAMESPACE, Some(file), &[]);
        let mut manifests = Vec::new();
        for document in &documents {
            let object = common::chart::to_json(document);
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            if NO_CRD.contains(&kind.as_str()) {
                left_out.insert(kind);
            } else if !object.is_null() {
                manifests.push(object);
            }
        }
        let list = json!({"apiVersion": "v1", "kind": "List", "items": manifests}).to_string();
        let output = plane.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&list));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && !stderr.contains("Warning"), "{file}: {stderr}");
        let applied = String::from_utf8_lossy(&output.stdout).lines().count();
        assert_eq!(applied, manifests.len(), "{file}: {}", String::from_utf8_lossy(&output.stdout));
    }
    assert_eq!(left_out.into_iter().collect::<Vec<_>>(), ["Certificate", "Issuer", "PrometheusRule", "ServiceMonitor"]);
}
