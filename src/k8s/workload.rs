//! Where the images are: the pod spec inside each supported kind, the
//! container lists in it, and the opt-out labels and annotations.
//!
//! Used by `/mutate` and `/validate` (`server::admission`, `server::validate`), by `audit` for
//! manifests and for the kinds it lists from a live cluster ([`KINDS`]).

use super::pointer;
use super::review::{Marks, Metadata, Object, Spec};

/// The container lists of a pod spec that carry images.
pub const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Label or annotation that makes mirrorswap leave an object alone (value `"true"`).
pub const SKIP_KEY: &str = "mirrorswap.io/skip";
/// imageswap's opt-out label (value `"disabled"`), honoured so clusters migrate unchanged.
pub const IMAGESWAP_LABEL: &str = "k8s.twr.io/imageswap";
/// The annotation that records original images, with `--annotate-original`.
pub const ORIGINAL_IMAGES_ANNOTATION: &str = "mirrorswap.io/original-images";

const POD: &[&str] = &["spec"];
const TEMPLATE: &[&str] = &["template", "spec"];
const WORKLOAD: &[&str] = &["spec", "template", "spec"];
const CRON_JOB: &[&str] = &["spec", "jobTemplate", "spec", "template", "spec"];

/// The kinds mirrorswap rewrites: (group, kind, path from the object root to the pod spec).
pub const KINDS: [(&str, &str, &[&str]); 9] = [
    ("", "Pod", POD),
    ("", "PodTemplate", TEMPLATE),
    ("", "ReplicationController", WORKLOAD),
    ("apps", "Deployment", WORKLOAD),
    ("apps", "StatefulSet", WORKLOAD),
    ("apps", "DaemonSet", WORKLOAD),
    ("apps", "ReplicaSet", WORKLOAD),
    ("batch", "Job", WORKLOAD),
    ("batch", "CronJob", CRON_JOB),
];

/// A kind mirrorswap rewrites: its name (static, so metric labels stay a bounded set)
/// and the path from the object root to its pod spec.
pub fn known_kind(group: &str, kind: &str) -> Option<(&'static str, &'static [&'static str])> {
    KINDS.iter().find(|(g, k, _)| *g == group && *k == kind).map(|(_, kind, path)| (*kind, *path))
}

/// One image field found in an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageField<'a> {
    /// Path from the object root to the pod spec.
    pub spec_path: &'static [&'static str],
    /// The container list: one of [`CONTAINER_LISTS`].
    pub list: &'static str,
    /// The container's index in its list.
    pub index: usize,
    /// The container's name (empty when it has none).
    pub container: &'a str,
    /// The image as written.
    pub image: &'a str,
}

impl ImageField<'_> {
    /// The field's JSON pointer, such as `/spec/containers/0/image`.
    pub fn pointer(&self) -> String {
        let mut pointer = pointer::pointer(self.spec_path.iter().copied().chain([self.list]));
        pointer::push_index(&mut pointer, self.index);
        pointer::push_token(&mut pointer, "image");
        pointer
    }
}

/// The pod spec at `path` (from [`known_kind`]) in `object`, if it has one.
pub fn pod_spec<'o, 'a>(object: &'o Object<'a>, path: &[&str]) -> Option<&'o Spec<'a>> {
    let (first, rest) = path.split_first()?;
    let mut spec: &Spec<'a> = match *first {
        "spec" => object.spec.as_deref()?,
        "template" => object.template.as_deref()?.spec.as_deref()?,
        _ => return None,
    };
    let mut rest = if *first == "template" { rest.get(1..)? } else { rest };
    // Below a spec, `template`/`jobTemplate` are followed by `spec`.
    while let [holder, _spec, more @ ..] = rest {
        let template = match *holder {
            "template" => spec.template.as_deref()?,
            "jobTemplate" => spec.job_template.as_deref()?,
            _ => return None,
        };
        spec = template.spec.as_deref()?;
        rest = more;
    }
    Some(spec)
}

/// Every `image` field of the pod spec at `spec_path` in `object`, in the order
/// containers, init containers, ephemeral containers.
pub fn image_fields<'o>(object: &'o Object<'_>, spec_path: &'static [&'static str]) -> Vec<ImageField<'o>> {
    let Some(spec) = pod_spec(object, spec_path) else {
        return Vec::new();
    };
    let lists = [&spec.containers, &spec.init_containers, &spec.ephemeral_containers];
    let mut fields = Vec::new();
    for (list_name, list) in CONTAINER_LISTS.iter().zip(lists) {
        for (index, container) in list.iter().flatten().enumerate() {
            let Some(image) = container.image.as_deref() else {
                continue;
            };
            let container = container.name.as_deref().unwrap_or("");
            fields.push(ImageField { spec_path, list: list_name, index, container, image });
        }
    }
    fields
}

/// True when labels or annotations opt the object out of rewriting.
pub fn opted_out(metadata: &Metadata<'_>) -> bool {
    let is = |value: &Option<std::borrow::Cow<'_, str>>, wanted: &str| value.as_deref() == Some(wanted);
    let (labels, annotations) = (&metadata.labels, &metadata.annotations);
    labels.as_ref().is_some_and(|labels: &Marks<'_>| is(&labels.skip, "true") || is(&labels.imageswap, "disabled"))
        || annotations.as_ref().is_some_and(|annotations| is(&annotations.skip, "true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> Object<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn finds_images_of_every_list() {
        let pod = object(
            r#"{"spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx"}, {"name": "noimage"}, {"name": "second", "image": "redis"}],
            "ephemeralContainers": [{"name": "debug", "image": "alpine"}]
        }}"#,
        );
        let fields = image_fields(&pod, &["spec"]);
        let found: Vec<(String, &str, &str)> = fields.iter().map(|f| (f.pointer(), f.container, f.image)).collect();
        assert_eq!(
            found,
            vec![
                ("/spec/containers/0/image".into(), "app", "nginx"),
                ("/spec/containers/2/image".into(), "second", "redis"),
                ("/spec/initContainers/0/image".into(), "init", "busybox"),
                ("/spec/ephemeralContainers/0/image".into(), "debug", "alpine"),
            ]
        );
    }

    #[test]
    fn follows_templates_of_every_kind() {
        let cases = [
            (r#"{"template": {"spec": {"containers": [{"image": "a"}]}}}"#, "", "PodTemplate"),
            (r#"{"spec": {"template": {"spec": {"containers": [{"image": "a"}]}}}}"#, "apps", "Deployment"),
            (
                r#"{"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"image": "a"}]}}}}}}"#,
                "batch",
                "CronJob",
            ),
        ];
        for (json, group, kind) in cases {
            let (_, path) = known_kind(group, kind).unwrap();
            let parsed = object(json);
            let fields = image_fields(&parsed, path);
            assert_eq!(fields.len(), 1, "{kind}");
            assert_eq!(fields[0].pointer(), format!("/{}/containers/0/image", path.join("/")));
        }
        assert!(image_fields(&object("{}"), &["spec", "template", "spec"]).is_empty());
    }

    #[test]
    fn kinds_map_to_their_pod_spec() {
        assert_eq!(known_kind("apps", "Deployment"), Some(("Deployment", &["spec", "template", "spec"][..])));
        assert_eq!(known_kind("batch", "CronJob").map(|(_, path)| path.len()), Some(5));
        assert_eq!(known_kind("example.com", "Deployment"), None);
        assert_eq!(known_kind("", "Service"), None);
    }

    #[test]
    fn opt_outs() {
        let skip = |json: &str| opted_out(&serde_json::from_str::<Metadata<'_>>(json).unwrap());
        assert!(skip(r#"{"labels": {"mirrorswap.io/skip": "true"}}"#));
        assert!(skip(r#"{"annotations": {"mirrorswap.io/skip": "true"}}"#));
        assert!(skip(r#"{"labels": {"k8s.twr.io/imageswap": "disabled"}}"#));
        assert!(!skip(r#"{"labels": {"mirrorswap.io/skip": "false"}}"#));
        assert!(!skip(r#"{"annotations": {"k8s.twr.io/imageswap": "disabled"}}"#));
    }
}
