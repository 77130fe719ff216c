//! End to end: a real HTTPS server on 127.0.0.1, real HTTP/1.1 and HTTP/2
//! clients, and every returned patch applied with the json-patch crate to the
//! request object and compared with the expected object.

mod common;

use common::{Protocol, TestServer, patch_of, patched_object, sample};
use serde_json::{Value, json};

/// `object` with the image at each JSON pointer replaced.
fn with_images(object: &Value, images: &[(&str, &str)]) -> Value {
    let mut expected = object.clone();
    for (pointer, image) in images {
        *expected.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer}")) = json!(image);
    }
    expected
}

const DIGEST: &str = "sha256:15d3b5c4f521a84896ed1ead1b14e4774d02202d5c65ab68f30eeaf310a3b1a7";

#[tokio::test]
async fn samples_are_patched_into_exactly_the_expected_objects_over_http1_and_http2() {
    let server = TestServer::start(&[]).await;
    let shop_api = format!("harbor.example.org/ghcr/example/shop-api@{DIGEST}");
    let cases = [
        (
            "pod.json",
            vec![
                ("/spec/initContainers/0/image", "harbor.example.org/k8s/kubectl:v1.30.0"),
                ("/spec/containers/0/image", "harbor.example.org/hub/nginx:1.27"),
                ("/spec/containers/1/image", "harbor.example.org/quay/prometheus/nginx-exporter:1.3.0"),
            ],
        ),
        (
            "deployment.json",
            vec![
                ("/spec/template/spec/containers/0/image", shop_api.as_str()),
                ("/spec/template/spec/containers/1/image", "harbor.example.org/hub/envoyproxy/envoy:v1.31.0"),
            ],
        ),
        (
            "cronjob.json",
            vec![(
                "/spec/jobTemplate/spec/template/spec/containers/0/image",
                "harbor.example.org/gcr/example/backup-tool:4.2",
            )],
        ),
    ];
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let mut client = server.connect(protocol).await;
        for (name, images) in &cases {
            let request = sample(name);
            let response = client.review(&request).await;
            assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
            assert_eq!(response["kind"], "AdmissionReview");
            assert_eq!(response["response"]["uid"], request["request"]["uid"], "{name}");
            assert_eq!(response["response"]["allowed"], true);
            let patch = patch_of(&response).unwrap();
            assert_eq!(patch.0.len(), images.len(), "{name}: one op per changed image");
            assert!(patch.0.iter().all(|op| matches!(op, json_patch::PatchOperation::Replace(_))), "{name}");
            let expected = with_images(&request["request"]["object"], images);
            assert_eq!(patched_object(&request, &response), expected, "{name} over {protocol:?}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_root_path_is_an_alias_of_mutate() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect(Protocol::Http1).await;
    let (status, body) = client.post("/", "application/json", serde_json::to_vec(&sample("pod.json")).unwrap()).await;
    assert_eq!(status, 200);
    assert!(patch_of(&serde_json::from_slice(&body).unwrap()).is_some());
    server.stop().await;
}

#[tokio::test]
async fn unchanged_objects_get_no_patch_and_reinvocation_changes_nothing() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect(Protocol::Http2).await;
    let request = sample("pod.json");
    let first = client.review(&request).await;
    // Send the patched object again, as the API server does with reinvocationPolicy: IfNeeded.
    let mut again = request.clone();
    again["request"]["object"] = patched_object(&request, &first);
    let second = client.review(&again).await;
    assert_eq!(second["response"]["allowed"], true);
    assert!(second["response"].get("patch").is_none(), "{second}");
    assert!(second["response"].get("patchType").is_none());
    server.stop().await;
}

#[tokio::test]
async fn opt_out_labels_and_annotations_are_honoured() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect(Protocol::Http1).await;
    let opt_outs = [
        ("labels", "mirrorswap.io/skip", "true"),
        ("annotations", "mirrorswap.io/skip", "true"),
        ("labels", "k8s.twr.io/imageswap", "disabled"),
    ];
    for (field, key, value) in opt_outs {
        let mut request = sample("deployment.json");
        request["request"]["object"]["metadata"][field] = json!({ key: value });
        let response = client.review(&request).await;
        assert!(response["response"].get("patch").is_none(), "{field} {key}={value}");
    }
    // A different value is not an opt-out.
    let mut request = sample("deployment.json");
    request["request"]["object"]["metadata"]["labels"] = json!({"mirrorswap.io/skip": "false"});
    assert!(patch_of(&client.review(&request).await).is_some());
    server.stop().await;
}

#[tokio::test]
async fn other_kinds_and_operations_are_allowed_without_patch() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect(Protocol::Http1).await;
    let mut delete = sample("pod.json");
    delete["request"]["operation"] = json!("DELETE");
    let mut service = sample("pod.json");
    service["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Service"});
    let mut foreign = sample("deployment.json");
    foreign["request"]["kind"]["group"] = json!("example.com");
    for request in [delete, service, foreign] {
        let response = client.review(&request).await;
        assert_eq!(response["response"]["allowed"], true);
        assert!(response["response"].get("patch").is_none(), "{}", request["request"]["kind"]);
    }
    server.stop().await;
}

#[tokio::test]
async fn dry_run_requests_are_mutated_like_the_rest() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect(Protocol::Http1).await;
    let request = sample("cronjob.json");
    assert_eq!(request["request"]["dryRun"], true);
    assert!(patch_of(&client.review(&request).await).is_some());
    server.stop().await;
}

#[tokio::test]
async fn ephemeral_containers_subresource_is_rewritten() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect(Protocol::Http2).await;
    let mut request = sample("pod.json");
    request["request"]["operation"] = json!("UPDATE");
    request["request"]["subResource"] = json!("ephemeralcontainers");
    request["request"]["object"]["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "busybox:1.36", "targetContainerName": "nginx"}]);
    request["request"]["object"]["spec"]["containers"] =
        json!([{"name": "nginx", "image": "harbor.example.org/hub/nginx:1.27"}]);
    request["request"]["object"]["spec"]["initContainers"] = json!([]);
    let response = client.review(&request).await;
    let expected = with_images(
        &request["request"]["object"],
        &[("/spec/ephemeralContainers/0/image", "harbor.example.org/hub/busybox:1.36")],
    );
    assert_eq!(patched_object(&request, &response), expected);
    server.stop().await;
}

#[tokio::test]
async fn annotate_original_records_the_original_images() {
    let server = TestServer::start(&["--annotate-original"]).await;
    let mut client = server.connect(Protocol::Http1).await;
    // The pod has no annotations at all; the deployment already has some.
    for name in ["pod.json", "deployment.json"] {
        let request = sample(name);
        let patched = patched_object(&request, &client.review(&request).await);
        let recorded = patched["metadata"]["annotations"]["mirrorswap.io/original-images"].as_str().unwrap();
        let recorded: Value = serde_json::from_str(recorded).unwrap();
        let expected = match name {
            "pod.json" => json!({
                "migrate": "registry.k8s.io/kubectl:v1.30.0",
                "nginx": "nginx:1.27",
                "exporter": "quay.io/prometheus/nginx-exporter:1.3.0"
            }),
            _ => json!({
                "api": format!("ghcr.io/example/shop-api@{DIGEST}"),
                "proxy": "docker.io/envoyproxy/envoy:v1.31.0"
            }),
        };
        assert_eq!(recorded, expected, "{name}");
        if name == "deployment.json" {
            assert_eq!(patched["metadata"]["annotations"]["team"], "shop", "existing annotations are kept");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    let server = TestServer::start(&[]).await;
    assert_eq!(server.admin_get("/healthz").await, (200, "ok\n".into()));
    assert_eq!(server.admin_get("/readyz").await, (200, "ready\n".into()));
    let mut client = server.connect(Protocol::Http1).await;
    client.review(&sample("pod.json")).await;
    let (status, metrics) = server.admin_get("/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "mirrorswap_admission_requests_total{kind=\"Pod\",operation=\"CREATE\",result=\"patched\"} 1",
        "mirrorswap_images_rewritten_total{rule=\"docker.io\"} 1",
        "mirrorswap_images_unchanged_total{reason=\"no_rule\"} 1",
        "mirrorswap_rules_loaded 5",
        "mirrorswap_reloads_total{result=\"success\",what=\"rules\"} 1",
        "mirrorswap_build_info{version=",
        "mirrorswap_certificate_expiry_timestamp_seconds ",
        "mirrorswap_admission_duration_seconds_count 1",
    ] {
        assert!(metrics.contains(expected), "missing {expected} in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test]
async fn pull_secrets_are_added_for_rewritten_registries_once() {
    let server = TestServer::start(&[
        "--pull-secret",
        "harbor.example.org=harbor-pull",
        "--pull-secret",
        "other.example=unused",
    ])
    .await;
    let mut client = server.connect(Protocol::Http1).await;
    let secrets = |object: &Value, pointer: &str| object.pointer(pointer).cloned().unwrap_or(Value::Null);
    let cases = [
        ("pod.json", "/spec", None, json!([{"name": "harbor-pull"}])),
        ("pod.json", "/spec", Some(json!([{"name": "mine"}])), json!([{"name": "mine"}, {"name": "harbor-pull"}])),
        ("deployment.json", "/spec/template/spec", None, json!([{"name": "harbor-pull"}])),
        (
            "deployment.json",
            "/spec/template/spec",
            Some(json!([{"name": "harbor-pull"}, {"name": "mine"}])),
            json!([{"name": "harbor-pull"}, {"name": "mine"}]),
        ),
    ];
    for (name, spec, existing, expected) in cases {
        let mut request = sample(name);
        if let Some(list) = &existing {
            request["request"]["object"].pointer_mut(spec).unwrap()["imagePullSecrets"] = list.clone();
        }
        let response = client.review(&request).await;
        let patched = patched_object(&request, &response);
        let what = format!("{name} with {existing:?}");
        assert_eq!(secrets(&patched, &format!("{spec}/imagePullSecrets")), expected, "{what}");
        // Only image fields and the pull secrets change.
        let mut without = patched.clone();
        without.pointer_mut(spec).unwrap().as_object_mut().unwrap().remove("imagePullSecrets");
        let mut original = request["request"]["object"].clone();
        original.pointer_mut(spec).unwrap().as_object_mut().unwrap().remove("imagePullSecrets");
        let images = |object: &Value| {
            let mut object = object.clone();
            for list in ["containers", "initContainers"] {
                for container in object.pointer_mut(spec).unwrap()[list].as_array_mut().into_iter().flatten() {
                    container["image"] = json!("-");
                }
            }
            object
        };
        assert_eq!(images(&without), images(&original), "{what}");
        // Reinvocation: the patched object needs nothing more.
        let mut again = request.clone();
        again["request"]["object"] = patched.clone();
        assert!(patch_of(&client.review(&again).await).is_none(), "{what}: reinvocation changes nothing");
    }
    server.stop().await;
}
