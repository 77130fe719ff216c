//! Where the images are: the pod spec inside each supported kind, the
//! container lists in it, and the opt-out labels and annotations.

use super::review::{Metadata, Object, Spec, StringMap};

/// The container lists of a pod spec that carry images.
pub const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Label or annotation that makes mirrorswap leave an object alone (value `"true"`).
pub const SKIP_KEY: &str = "mirrorswap.io/skip";
/// imageswap's opt-out label (value `"disabled"`), honoured so clusters migrate unchanged.
pub const IMAGESWAP_LABEL: &str = "k8s.twr.io/imageswap";

/// The path from the object root to its pod spec, for the kinds mirrorswap rewrites.
pub fn pod_spec_path(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    match (group, kind) {
        ("", "Pod") => Some(&["spec"]),
        ("", "PodTemplate") => Some(&["template", "spec"]),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => Some(&["spec", "template", "spec"]),
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    }
}

/// One image field found in an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageField<'a> {
    /// JSON pointer tokens from the object root to the `image` field.
    pub path: Vec<String>,
    /// The container's name (empty when it has none).
    pub container: &'a str,
    /// The image as written.
    pub image: &'a str,
}

/// The pod spec at `path` (from [`pod_spec_path`]) in `object`, if it has one.
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
pub fn image_fields<'o>(object: &'o Object<'_>, spec_path: &[&str]) -> Vec<ImageField<'o>> {
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
            let mut path: Vec<String> = spec_path.iter().map(|key| (*key).to_owned()).collect();
            path.extend([(*list_name).to_owned(), index.to_string(), "image".to_owned()]);
            fields.push(ImageField { path, container: container.name.as_deref().unwrap_or(""), image });
        }
    }
    fields
}

/// True when labels or annotations opt the object out of rewriting.
pub fn opted_out(metadata: &Metadata<'_>) -> bool {
    let value = |map: &Option<StringMap<'_>>, key: &str, wanted: &str| {
        map.as_ref().and_then(|map| map.get(key)).is_some_and(|value| value == wanted)
    };
    value(&metadata.labels, SKIP_KEY, "true")
        || value(&metadata.annotations, SKIP_KEY, "true")
        || value(&metadata.labels, IMAGESWAP_LABEL, "disabled")
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
            "containers": [{"name": "app", "image": "nginx"}, {"name": "noimage"}],
            "ephemeralContainers": [{"name": "debug", "image": "alpine"}]
        }}"#,
        );
        let fields = image_fields(&pod, &["spec"]);
        let found: Vec<(String, &str, &str)> =
            fields.iter().map(|f| (f.path.join("/"), f.container, f.image)).collect();
        assert_eq!(
            found,
            vec![
                ("spec/containers/0/image".into(), "app", "nginx"),
                ("spec/initContainers/0/image".into(), "init", "busybox"),
                ("spec/ephemeralContainers/0/image".into(), "debug", "alpine"),
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
            let path = pod_spec_path(group, kind).unwrap();
            let parsed = object(json);
            let fields = image_fields(&parsed, path);
            assert_eq!(fields.len(), 1, "{kind}");
            assert_eq!(fields[0].path.join("/"), format!("{}/containers/0/image", path.join("/")));
        }
        assert!(image_fields(&object("{}"), &["spec", "template", "spec"]).is_empty());
    }

    #[test]
    fn kinds_map_to_their_pod_spec() {
        assert_eq!(pod_spec_path("apps", "Deployment"), Some(&["spec", "template", "spec"][..]));
        assert_eq!(pod_spec_path("batch", "CronJob").map(<[_]>::len), Some(5));
        assert_eq!(pod_spec_path("example.com", "Deployment"), None);
        assert_eq!(pod_spec_path("", "Service"), None);
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
