//! Objects sent to a real API server as plain JSON, with the whole answer kept: the status,
//! the object (or Status) the API server returned and the `Warning` headers admission webhooks
//! add — what kubectl prints as `Warning: …`, which `kube::Api` does not surface.

use kube::client::Body;
use serde_json::{Value, json};

/// (kind, API prefix, plural) of every kind `/mutate` handles.
const KINDS: [(&str, &str, &str); 9] = [
    ("Pod", "/api/v1", "pods"),
    ("PodTemplate", "/api/v1", "podtemplates"),
    ("ReplicationController", "/api/v1", "replicationcontrollers"),
    ("Deployment", "/apis/apps/v1", "deployments"),
    ("StatefulSet", "/apis/apps/v1", "statefulsets"),
    ("DaemonSet", "/apis/apps/v1", "daemonsets"),
    ("ReplicaSet", "/apis/apps/v1", "replicasets"),
    ("Job", "/apis/batch/v1", "jobs"),
    ("CronJob", "/apis/batch/v1", "cronjobs"),
];

/// The collection path of `kind` in `namespace`.
pub fn collection(kind: &str, namespace: &str) -> String {
    let (_, prefix, plural) = KINDS.iter().find(|(known, _, _)| *known == kind).expect("a known kind");
    format!("{prefix}/namespaces/{namespace}/{plural}")
}

/// The path of one object.
pub fn path(kind: &str, namespace: &str, name: &str) -> String {
    format!("{}/{name}", collection(kind, namespace))
}

/// The API server's answer to one request.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The object, or a Status on failure.
    pub body: Value,
    /// The `Warning` headers' texts.
    pub warnings: Vec<String>,
}

impl Answer {
    /// The body, after checking the request succeeded.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(self.status < 300, "{}: {}", self.status, self.body);
        self.body
    }

    /// The Status message of a refusal.
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }

    /// The images of the pod spec at `pointer` (containers, then init, then ephemeral).
    pub fn images(&self, pointer: &str) -> Vec<String> {
        images(&self.body, pointer)
    }
}

/// The images of the pod spec at `pointer` in `object`: containers, initContainers, ephemeralContainers.
pub fn images(object: &Value, pointer: &str) -> Vec<String> {
    let spec = object.pointer(pointer).unwrap_or(&Value::Null);
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| spec[list].as_array().cloned().unwrap_or_default())
        .filter_map(|container| container["image"].as_str().map(str::to_owned))
        .collect()
}

/// Sends `method path` with `body` (JSON, or a patch of `content_type`).
pub async fn send(client: &kube::Client, method: &str, path: &str, content_type: &str, body: Option<&Value>) -> Answer {
    let bytes = body.map(|body| serde_json::to_vec(body).unwrap()).unwrap_or_default();
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .header("accept", "application/json")
        .body(Body::from(bytes))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(|value| warning_text(value).to_owned())
        .collect();
    let body = response.into_body().collect_bytes().await.unwrap();
    let body = serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
    Answer { status, body, warnings }
}

/// `299 - "text"` → `text`.
fn warning_text(header: &str) -> &str {
    header.split_once(" - ").map_or(header, |(_, text)| text).trim_matches('"')
}

/// Creates `object` (its `kind` and `metadata.namespace` say where); `dry_run` as
/// `--dry-run=server`.
pub async fn create(client: &kube::Client, object: &Value, dry_run: bool) -> Answer {
    let kind = object["kind"].as_str().expect("kind");
    let namespace = object["metadata"]["namespace"].as_str().expect("namespace");
    let mut path = collection(kind, namespace);
    if dry_run {
        path += "?dryRun=All";
    }
    send(client, "POST", &path, "application/json", Some(object)).await
}

/// GETs one object.
pub async fn get(client: &kube::Client, kind: &str, namespace: &str, name: &str) -> Value {
    send(client, "GET", &path(kind, namespace, name), "application/json", None).await.ok()
}

/// A merge patch of one object (of `subresource`, when not empty).
pub async fn merge_patch(client: &kube::Client, kind: &str, namespace: &str, name: &str, patch: &Value) -> Answer {
    send(client, "PATCH", &path(kind, namespace, name), "application/merge-patch+json", Some(patch)).await
}

/// A strategic merge patch of `subresource` of one object (`ephemeralcontainers`, `scale`).
pub async fn patch_subresource(
    client: &kube::Client,
    kind: &str,
    namespace: &str,
    name: &str,
    subresource: &str,
    patch: &Value,
) -> Answer {
    let path = format!("{}/{subresource}", path(kind, namespace, name));
    send(client, "PATCH", &path, "application/strategic-merge-patch+json", Some(patch)).await
}

/// A PUT of the whole object (as a controller updates).
pub async fn replace(client: &kube::Client, object: &Value) -> Answer {
    let metadata = &object["metadata"];
    let path = path(
        object["kind"].as_str().expect("kind"),
        metadata["namespace"].as_str().expect("namespace"),
        metadata["name"].as_str().expect("name"),
    );
    send(client, "PUT", &path, "application/json", Some(object)).await
}

/// Deletes one object with `propagationPolicy`.
pub async fn delete(client: &kube::Client, kind: &str, namespace: &str, name: &str, propagation: &str) -> Answer {
    let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation});
    send(client, "DELETE", &path(kind, namespace, name), "application/json", Some(&body)).await
}

/// Creates namespace `name` with `labels`, unless it exists.
pub async fn create_namespace(client: &kube::Client, name: &str, labels: Value) {
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    let answer = send(client, "POST", "/api/v1/namespaces", "application/json", Some(&namespace)).await;
    assert!(answer.status < 300 || answer.status == 409, "namespace {name}: {}", answer.body);
}

/// A Pod named `name` in `namespace` with one container per image (`c0`, `c1`, …).
pub fn pod(namespace: &str, name: &str, images: &[&str]) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
           "spec": pod_spec(images)})
}

/// A pod spec with one container per image.
pub fn pod_spec(images: &[&str]) -> Value {
    let containers: Vec<Value> =
        images.iter().enumerate().map(|(index, image)| json!({"name": format!("c{index}"), "image": image})).collect();
    json!({"containers": containers})
}

/// An object of `kind` named `name` holding a pod template with `images`, and the JSON pointer
/// of its pod spec.
pub fn workload(kind: &str, namespace: &str, name: &str, images: &[&str]) -> (Value, &'static str) {
    let labels = json!({"app": name});
    let template = json!({"metadata": {"labels": labels}, "spec": pod_spec(images)});
    let selector = json!({"matchLabels": labels});
    let (api_version, spec, pointer) = match kind {
        "Pod" => return (pod(namespace, name, images), "/spec"),
        "Deployment" | "ReplicaSet" => {
            ("apps/v1", json!({"replicas": 1, "selector": selector, "template": template}), "/spec/template/spec")
        }
        "StatefulSet" => (
            "apps/v1",
            json!({"replicas": 1, "serviceName": name, "selector": selector, "template": template}),
            "/spec/template/spec",
        ),
        "DaemonSet" => ("apps/v1", json!({"selector": selector, "template": template}), "/spec/template/spec"),
        "Job" => {
            let mut template = template;
            template["spec"]["restartPolicy"] = "Never".into();
            ("batch/v1", json!({"template": template}), "/spec/template/spec")
        }
        "CronJob" => {
            let mut template = template;
            template["spec"]["restartPolicy"] = "OnFailure".into();
            (
                "batch/v1",
                json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}),
                "/spec/jobTemplate/spec/template/spec",
            )
        }
        other => panic!("no workload {other}"),
    };
    let object = json!({"apiVersion": api_version, "kind": kind,
                        "metadata": {"name": name, "namespace": namespace}, "spec": spec});
    (object, pointer)
}
