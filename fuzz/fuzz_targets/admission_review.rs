//! Structured AdmissionReviews with arbitrary containers and images: the returned patch applies
//! cleanly to the request object, changes nothing but `image` fields (plus `imagePullSecrets`
//! and the original-images annotation when configured), and a second pass over the patched
//! object changes nothing.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use mirrorswap::rewrite::{Options, RuleSet, compile_maps};
use mirrorswap::server::admission::{ORIGINAL_IMAGES_ANNOTATION, Settings, answer};
use mirrorswap::server::metrics::Metrics;
use serde_json::{Value, json};

#[derive(Debug, Arbitrary)]
struct Input {
    kind: u8,
    containers: Vec<(String, String)>,
    init_containers: Vec<(String, String)>,
    labels: Vec<(String, String)>,
    pull_secrets: Option<Vec<String>>,
    annotate: bool,
    pull_secret: bool,
}

fn fixture() -> &'static (RuleSet, Metrics) {
    static FIXTURE: OnceLock<(RuleSet, Metrics)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let text =
            "docker.io::mirror.example.org/hub\nquay.io::mirror.example.org/quay-\ngcr.io/p::m.example.org/gcr\n";
        (compile_maps(text, Options::default()).expect("rules").rules, Metrics::new().expect("metrics"))
    })
}

fn containers(list: &[(String, String)]) -> Value {
    list.iter().map(|(name, image)| json!({"name": name, "image": image, "command": ["run"]})).collect()
}

/// Every string leaf with its pointer, except under `image` keys and the annotation.
fn untouched(value: &Value, pointer: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key != "image" && key != ORIGINAL_IMAGES_ANNOTATION && key != "imagePullSecrets" {
                    untouched(child, format!("{pointer}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                untouched(child, format!("{pointer}/{index}"), out);
            }
        }
        leaf => out.push((pointer, leaf.clone())),
    }
}

fn review(object: &Value, kind: (&str, &str)) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "fuzz", "operation": "CREATE", "namespace": "default",
            "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
            "object": object
        }
    }))
    .expect("review")
}

fn patch_of(body: &[u8]) -> Option<json_patch::Patch> {
    let review: Value = serde_json::from_slice(body).expect("JSON review");
    let patch = review["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(patch).expect("base64 patch");
    Some(serde_json::from_slice(&bytes).expect("a JSON patch"))
}

fuzz_target!(|input: Input| {
    let (rules, metrics) = fixture();
    let mut pod_spec =
        json!({"containers": containers(&input.containers), "initContainers": containers(&input.init_containers)});
    if let Some(names) = &input.pull_secrets {
        pod_spec["imagePullSecrets"] = names.iter().map(|name| json!({"name": name})).collect();
    }
    let labels: serde_json::Map<String, Value> =
        input.labels.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let metadata = json!({"name": "x", "labels": labels});
    let (kind, object) = if input.kind % 2 == 0 {
        (("", "Pod"), json!({"metadata": metadata, "spec": pod_spec}))
    } else {
        (("apps", "Deployment"), json!({"metadata": metadata, "spec": {"template": {"spec": pod_spec}}}))
    };
    let pull_secrets: Vec<(String, String)> =
        if input.pull_secret { vec![("mirror.example.org".into(), "mirror-pull".into())] } else { Vec::new() };
    let settings =
        Settings { annotate_original: input.annotate, pull_secrets: pull_secrets.into(), ..Default::default() };
    let first = answer(&review(&object, kind), rules, &settings, metrics);
    assert_eq!(first.status.as_u16(), 200, "{}", String::from_utf8_lossy(&first.body));
    let Some(patch) = patch_of(&first.body) else {
        return;
    };
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).expect("the patch applies");
    let (mut before, mut after) = (Vec::new(), Vec::new());
    untouched(&object, String::new(), &mut before);
    untouched(&patched, String::new(), &mut after);
    assert_eq!(before, after, "only image fields (and the pull secrets and annotation) change");
    // Existing pull secrets are kept, in order, at the front.
    if let Some(names) = &input.pull_secrets {
        let pointer = if kind.1 == "Pod" { "/spec/imagePullSecrets" } else { "/spec/template/spec/imagePullSecrets" };
        let kept: Vec<&str> = patched
            .pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["name"].as_str())
            .take(names.len())
            .collect();
        assert_eq!(kept, names.iter().map(String::as_str).collect::<Vec<_>>(), "existing pull secrets are kept");
    }
    let second = answer(&review(&patched, kind), rules, &settings, metrics);
    assert!(patch_of(&second.body).is_none(), "a second pass changes nothing");
});
