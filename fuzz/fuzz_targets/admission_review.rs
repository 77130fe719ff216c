//! Structured AdmissionReviews with arbitrary containers and images: the returned patch applies
//! cleanly to the request object, changes nothing but `image` fields (plus `imagePullSecrets`
//! and the original-images annotation when configured), and a second pass over the patched
//! object changes nothing.
//!
//! With `update` (the last field, so inputs of the older CREATE-only corpus decode as before),
//! the review is an UPDATE with an `oldObject` (or none) and a `subResource`, and the answer
//! also keeps to what the API server lets such a request change: an image equal to the old
//! object's container's stays; `pods/ephemeralcontainers` changes only ephemeral containers
//! and no metadata; a Pod UPDATE changes no ephemeral container and adds no pull secret; a
//! Job's template is never touched; any other subresource gets no patch.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use mirrorswap::rewrite::{Options, RuleSet, compile_maps};
use mirrorswap::k8s::workload::ORIGINAL_IMAGES_ANNOTATION;
use mirrorswap::server::admission::{Settings, answer};
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
    update: Option<Update>,
}

/// What makes a review an UPDATE.
#[derive(Debug, Arbitrary)]
struct Update {
    /// `subResource`: 0 none, 1 `ephemeralcontainers`, 2 `status`, 3 `resize`, else the text.
    sub_resource: (u8, String),
    /// No `oldObject` at all (every image counts as changed).
    without_old_object: bool,
    /// Per container, in the order of `containers`, `initContainers`, `ephemeralContainers`:
    /// whether the old object's container had another image (missing entries: the same one).
    changed: Vec<bool>,
    /// The old object's lists in reverse order (containers found by name, not index).
    reordered: bool,
    /// The new object's ephemeral containers (Pods only).
    ephemeral_containers: Vec<(String, String)>,
    /// An odd `kind` is a Job instead of a Deployment.
    job: bool,
}

const LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

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

/// A CREATE review of `object`, or with `update` = (old object, subresource) an UPDATE.
fn review(object: &Value, kind: (&str, &str), update: Option<(Option<&Value>, &str)>) -> Vec<u8> {
    let mut request = json!({
        "uid": "fuzz", "operation": "CREATE", "namespace": "default",
        "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
        "object": object
    });
    if let Some((old, sub_resource)) = update {
        request["operation"] = json!("UPDATE");
        request["oldObject"] = old.cloned().unwrap_or(Value::Null);
        if !sub_resource.is_empty() {
            request["subResource"] = json!(sub_resource);
        }
    }
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}))
        .expect("review")
}

/// The pointer of the pod spec in an object of `kind`.
fn spec_pointer(kind: &str) -> &'static str {
    if kind == "Pod" { "/spec" } else { "/spec/template/spec" }
}

/// The images of one container list of `object`'s pod spec.
fn images<'v>(object: &'v Value, kind: &str, list: &str) -> Vec<Option<&'v str>> {
    let pointer = format!("{}/{list}", spec_pointer(kind));
    let containers = object.pointer(&pointer).and_then(Value::as_array);
    containers.into_iter().flatten().map(|container| container["image"].as_str()).collect()
}

/// The old object of an UPDATE: the new one with the images `update.changed` marks changed.
fn old_object(object: &Value, kind: &str, update: &Update) -> Value {
    let mut old = object.clone();
    let mut changed = update.changed.iter().copied();
    for list in LISTS {
        let pointer = format!("{}/{list}", spec_pointer(kind));
        let Some(containers) = old.pointer_mut(&pointer).and_then(Value::as_array_mut) else { continue };
        for container in containers.iter_mut() {
            if changed.next().unwrap_or(false) {
                let image = container["image"].as_str().unwrap_or_default();
                container["image"] = json!(format!("{image}-old"));
            }
        }
        if update.reordered {
            containers.reverse();
        }
    }
    old
}

/// Whether the old object's container of the new container `index` of `list` (same name at
/// the same index, else the first of that non-empty name) has the same image.
fn same_as_old(object: &Value, old: &Value, kind: &str, list: &str, index: usize) -> bool {
    let pointer = format!("{}/{list}", spec_pointer(kind));
    let (Some(new), Some(old)) = (object.pointer(&pointer), old.pointer(&pointer)) else { return false };
    let (Some(new), Some(old)) = (new.as_array(), old.as_array()) else { return false };
    let Some(container) = new.get(index) else { return false };
    let name = container["name"].as_str().unwrap_or("");
    let found = match old.get(index).filter(|old| old["name"].as_str().unwrap_or("") == name) {
        Some(same) => Some(same),
        None if name.is_empty() => None,
        None => old.iter().find(|old| old["name"].as_str() == Some(name)),
    };
    found.is_some_and(|found| found["image"] == container["image"])
}

/// What an UPDATE may change, checked against the patched object.
fn check_update(object: &Value, patched: &Value, old: Option<&Value>, kind: &str, sub_resource: &str) {
    let ephemeral = sub_resource == "ephemeralcontainers";
    assert!(sub_resource.is_empty() || (ephemeral && kind == "Pod"), "subresource {sub_resource:?} got a patch");
    for list in LISTS {
        let may_change = match (kind, ephemeral) {
            ("Job", _) => false,
            ("Pod", true) => list == "ephemeralContainers",
            ("Pod", false) => list != "ephemeralContainers",
            _ => true,
        };
        let (before, after) = (images(object, kind, list), images(patched, kind, list));
        for (index, (before, after)) in before.iter().zip(&after).enumerate() {
            let same = old.is_some_and(|old| same_as_old(object, old, kind, list, index));
            if !may_change || same {
                assert_eq!(
                    before, after,
                    "{kind} {sub_resource:?}: {list}[{index}] may not change (same as old: {same})"
                );
            }
        }
    }
    if kind == "Pod" {
        let pointer = "/spec/imagePullSecrets";
        assert_eq!(object.pointer(pointer), patched.pointer(pointer), "a Pod UPDATE adds no pull secret");
    }
    if ephemeral {
        assert_eq!(object.get("metadata"), patched.get("metadata"), "ephemeralcontainers: no metadata change");
    }
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
    let update = input.update.as_ref();
    let (kind, object) = if input.kind % 2 == 0 {
        if let Some(update) = update {
            pod_spec["ephemeralContainers"] = containers(&update.ephemeral_containers);
        }
        (("", "Pod"), json!({"metadata": metadata, "spec": pod_spec}))
    } else if update.is_some_and(|update| update.job) {
        (("batch", "Job"), json!({"metadata": metadata, "spec": {"template": {"spec": pod_spec}}}))
    } else {
        (("apps", "Deployment"), json!({"metadata": metadata, "spec": {"template": {"spec": pod_spec}}}))
    };
    let old = update.filter(|update| !update.without_old_object).map(|update| old_object(&object, kind.1, update));
    let sub_resource = update.map(|update| match update.sub_resource.0 % 5 {
        0 => "",
        1 => "ephemeralcontainers",
        2 => "status",
        3 => "resize",
        _ => update.sub_resource.1.as_str(),
    });
    let as_update = sub_resource.map(|sub_resource| (old.as_ref(), sub_resource));
    let pull_secrets: Vec<(String, String)> =
        if input.pull_secret { vec![("mirror.example.org".into(), "mirror-pull".into())] } else { Vec::new() };
    let settings =
        Settings { annotate_original: input.annotate, pull_secrets: pull_secrets.into(), ..Default::default() };
    let first = answer(&review(&object, kind, as_update), rules, &settings, metrics);
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
    if let Some(sub_resource) = sub_resource {
        check_update(&object, &patched, old.as_ref(), kind.1, sub_resource);
    }
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
    let second = answer(&review(&patched, kind, as_update), rules, &settings, metrics);
    assert!(patch_of(&second.body).is_none(), "a second pass changes nothing");
});
