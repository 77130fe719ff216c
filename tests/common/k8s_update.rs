//! The API server's update validation for the kinds mirrorswap patches, on plain JSON:
//! `violations(kind, subresource, old, new)` lists what kube-apiserver would reject (or
//! silently drop) when `old` is updated to `new`. Written from the Kubernetes documentation
//! and the apiserver's validation (pkg/apis/core/validation `ValidatePodUpdate` and
//! `ValidatePodEphemeralContainersUpdate`, pkg/registry/core/pod `dropNonEphemeralContainerUpdates`,
//! pkg/apis/batch/validation `ValidateJobUpdate`, pkg/apis/apps/validation), for the fields a
//! webhook can touch:
//! - every kind: `metadata.name` and `metadata.namespace` are immutable;
//! - Pod: in `spec` only `containers[*].image`, `initContainers[*].image`,
//!   `activeDeadlineSeconds` (set, or lowered, to a positive value),
//!   `terminationGracePeriodSeconds` (to 1 when it was negative), `tolerations` (additions) and
//!   `schedulingGates` (removals) may change; no container may be added or removed; metadata may
//!   change; `status` is not part of the update;
//! - `pods/ephemeralcontainers`: only `spec.ephemeralContainers`, by adding entries (existing
//!   ones may not change or go); every other change, metadata included, is dropped;
//! - Job: `spec.template` and `spec.selector` are immutable (stricter than the API server for
//!   the scheduling fields of a suspended Job, which mirrorswap never touches);
//! - Deployment, ReplicaSet, DaemonSet: `spec.selector` is immutable;
//! - StatefulSet: only `replicas`, `ordinals`, `template`, `updateStrategy`,
//!   `revisionHistoryLimit`, `persistentVolumeClaimRetentionPolicy` and `minReadySeconds` may change;
//! - CronJob (`jobTemplate` included), ReplicationController, PodTemplate: the template may change.

use serde_json::{Map, Value};

/// What the API server would refuse or drop in the update from `old` to `new`; empty when
/// the update is valid.
pub fn violations(kind: &str, sub_resource: &str, old: &Value, new: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for key in ["name", "namespace"] {
        if old["metadata"][key] != new["metadata"][key] {
            found.push(format!("metadata.{key}: field is immutable"));
        }
    }
    match (kind, sub_resource) {
        ("Pod", "") => pod_update(old, new, &mut found),
        ("Pod", "ephemeralcontainers") => ephemeral_update(old, new, &mut found),
        (_, "") => workload_update(kind, old, new, &mut found),
        _ => found.push(format!("{kind}/{sub_resource}: not a subresource this checker knows")),
    }
    found
}

fn object(value: &Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// `ValidatePodUpdate`: the new spec, with the fields that may change set back to the old
/// values ("munged"), must equal the old spec.
fn pod_update(old: &Value, new: &Value, found: &mut Vec<String>) {
    let old_spec = object(&old["spec"]);
    let mut munged = object(&new["spec"]);
    for list in ["containers", "initContainers"] {
        let old_list = old_spec.get(list).and_then(Value::as_array).cloned().unwrap_or_default();
        let Some(new_list) = munged.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        if new_list.len() != old_list.len() {
            found.push(format!("spec.{list}: pod updates may not add or remove containers"));
            return;
        }
        for (container, old_container) in new_list.iter_mut().zip(&old_list) {
            match (container.as_object_mut(), old_container.get("image")) {
                (Some(container), Some(image)) => drop(container.insert("image".into(), image.clone())),
                (Some(container), None) => drop(container.remove("image")),
                _ => {}
            }
        }
    }
    let number = |spec: &Map<String, Value>, key: &str| spec.get(key).and_then(Value::as_i64);
    let (old_deadline, new_deadline) =
        (number(&old_spec, "activeDeadlineSeconds"), number(&munged, "activeDeadlineSeconds"));
    let deadline_ok = match (old_deadline, new_deadline) {
        (_, None) => old_deadline.is_none(),
        (None, Some(new)) => new > 0,
        (Some(old), Some(new)) => new > 0 && new <= old,
    };
    if deadline_ok {
        set(&mut munged, "activeDeadlineSeconds", old_spec.get("activeDeadlineSeconds"));
    }
    let grace = |spec: &Map<String, Value>| number(spec, "terminationGracePeriodSeconds");
    if grace(&old_spec).is_some_and(|old| old < 0) && grace(&munged) == Some(1) {
        set(&mut munged, "terminationGracePeriodSeconds", old_spec.get("terminationGracePeriodSeconds"));
    }
    let entries =
        |spec: &Map<String, Value>, key: &str| spec.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let (old_tolerations, new_tolerations) = (entries(&old_spec, "tolerations"), entries(&munged, "tolerations"));
    if old_tolerations.iter().all(|toleration| new_tolerations.contains(toleration)) {
        set(&mut munged, "tolerations", old_spec.get("tolerations"));
    }
    let (old_gates, new_gates) = (entries(&old_spec, "schedulingGates"), entries(&munged, "schedulingGates"));
    if new_gates.iter().all(|gate| old_gates.contains(gate)) {
        set(&mut munged, "schedulingGates", old_spec.get("schedulingGates"));
    }
    for key in changed_keys(&old_spec, &munged) {
        found.push(format!(
            "spec.{key}: pod updates may not change fields other than `spec.containers[*].image`, \
             `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions \
             to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was \
             previously negative)"
        ));
    }
}

/// `pods/ephemeralcontainers`: entries may be added to `spec.ephemeralContainers`; nothing
/// else changes (the API server resets the rest of the spec, the metadata and the status).
fn ephemeral_update(old: &Value, new: &Value, found: &mut Vec<String>) {
    let (mut old_spec, mut new_spec) = (object(&old["spec"]), object(&new["spec"]));
    let old_list = old_spec.remove("ephemeralContainers").and_then(|list| list.as_array().cloned()).unwrap_or_default();
    let new_list = new_spec.remove("ephemeralContainers").and_then(|list| list.as_array().cloned()).unwrap_or_default();
    for (index, old_container) in old_list.iter().enumerate() {
        if new_list.get(index) != Some(old_container) {
            found.push(format!(
                "spec.ephemeralContainers[{index}]: existing ephemeral containers may not be changed or removed"
            ));
        }
    }
    for key in changed_keys(&old_spec, &new_spec) {
        found.push(format!("spec.{key}: dropped, only spec.ephemeralContainers changes on pods/ephemeralcontainers"));
    }
    if old["metadata"] != new["metadata"] {
        found.push("metadata: dropped, only spec.ephemeralContainers changes on pods/ephemeralcontainers".into());
    }
}

fn workload_update(kind: &str, old: &Value, new: &Value, found: &mut Vec<String>) {
    let (old_spec, new_spec) = (object(&old["spec"]), object(&new["spec"]));
    let immutable: &[&str] = match kind {
        "Job" => &["template", "selector"],
        "Deployment" | "ReplicaSet" | "DaemonSet" => &["selector"],
        "StatefulSet" => {
            const MUTABLE: [&str; 7] = [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            for key in changed_keys(&old_spec, &new_spec).into_iter().filter(|key| !MUTABLE.contains(&key.as_str())) {
                found.push(format!(
                    "spec.{key}: updates to statefulset spec for fields other than {MUTABLE:?} are forbidden"
                ));
            }
            &[]
        }
        "CronJob" | "ReplicationController" | "PodTemplate" => &[],
        _ => {
            found.push(format!("{kind}: not a kind this checker knows"));
            &[]
        }
    };
    for key in immutable {
        if old_spec.get(*key) != new_spec.get(*key) {
            found.push(format!("spec.{key}: field is immutable"));
        }
    }
}

fn set(spec: &mut Map<String, Value>, key: &str, value: Option<&Value>) {
    match value {
        Some(value) => drop(spec.insert(key.to_owned(), value.clone())),
        None => drop(spec.remove(key)),
    }
}

/// The keys whose values differ between two objects.
fn changed_keys(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> =
        old.keys().chain(new.keys()).filter(|key| old.get(*key) != new.get(*key)).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}
