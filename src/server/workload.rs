//! Where the images are: the pod spec inside each supported kind, the
//! container lists in it, and the opt-out labels and annotations.

use serde_json::Value;

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

/// Why an object's images could not be read; the object is then admitted unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// A field on the way to the containers is not an object.
    #[error("`{0}` is not an object")]
    NotAnObject(String),
    /// A container list is not a list.
    #[error("`{0}` is not a list")]
    NotAList(String),
    /// A container is not an object.
    #[error("`{0}` is not an object")]
    ContainerNotAnObject(String),
    /// An image is not a string.
    #[error("`{0}` is not a string")]
    ImageNotAString(String),
}

/// Every `image` field of the pod spec at `spec_path` in `object` (the object without its
/// metadata, as kube's `DynamicObject` keeps it). A missing spec or list has no images.
pub fn image_fields<'a>(object: &'a Value, spec_path: &[&str]) -> Result<Vec<ImageField<'a>>, ShapeError> {
    let mut spec = object;
    for (depth, key) in spec_path.iter().enumerate() {
        let map = spec.as_object().ok_or_else(|| ShapeError::NotAnObject(dotted(&spec_path[..depth])))?;
        match map.get(*key) {
            Some(Value::Null) | None => return Ok(Vec::new()),
            Some(next) => spec = next,
        }
    }
    let spec_map = spec.as_object().ok_or_else(|| ShapeError::NotAnObject(dotted(spec_path)))?;
    let mut fields = Vec::new();
    for list_name in CONTAINER_LISTS {
        let list = match spec_map.get(list_name) {
            Some(Value::Null) | None => continue,
            Some(Value::Array(list)) => list,
            Some(_) => return Err(ShapeError::NotAList(format!("{}.{list_name}", dotted(spec_path)))),
        };
        for (index, container) in list.iter().enumerate() {
            let where_ = || format!("{}.{list_name}[{index}]", dotted(spec_path));
            let container = container.as_object().ok_or_else(|| ShapeError::ContainerNotAnObject(where_()))?;
            let image = match container.get("image") {
                Some(Value::Null) | None => continue,
                Some(Value::String(image)) => image.as_str(),
                Some(_) => return Err(ShapeError::ImageNotAString(format!("{}.image", where_()))),
            };
            let name = container.get("name").and_then(Value::as_str).unwrap_or("");
            let mut path: Vec<String> = spec_path.iter().map(|key| (*key).to_owned()).collect();
            path.extend([list_name.to_owned(), index.to_string(), "image".to_owned()]);
            fields.push(ImageField { path, container: name, image });
        }
    }
    Ok(fields)
}

/// True when labels or annotations opt the object out of rewriting.
pub fn opted_out(
    labels: Option<&std::collections::BTreeMap<String, String>>,
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    let skip = |map: Option<&std::collections::BTreeMap<String, String>>| {
        map.and_then(|map| map.get(SKIP_KEY)).is_some_and(|value| value == "true")
    };
    let imageswap_disabled = labels.and_then(|labels| labels.get(IMAGESWAP_LABEL)).is_some_and(|v| v == "disabled");
    skip(labels) || skip(annotations) || imageswap_disabled
}

fn dotted(path: &[&str]) -> String {
    path.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_images_of_every_list() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx"}, {"name": "noimage"}],
            "ephemeralContainers": [{"name": "debug", "image": "alpine"}]
        }});
        let fields = image_fields(&pod, &["spec"]).unwrap();
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
    fn shape_errors_name_the_field() {
        let table = [
            (json!({"spec": []}), "`spec` is not an object"),
            (json!({"spec": {"containers": {}}}), "`spec.containers` is not a list"),
            (json!({"spec": {"containers": [1]}}), "`spec.containers[0]` is not an object"),
            (json!({"spec": {"containers": [{"image": 5}]}}), "`spec.containers[0].image` is not a string"),
        ];
        for (object, message) in table {
            assert_eq!(image_fields(&object, &["spec"]).unwrap_err().to_string(), message);
        }
        assert_eq!(image_fields(&json!({}), &["spec", "template", "spec"]).unwrap(), vec![]);
    }

    #[test]
    fn kinds_map_to_their_pod_spec() {
        assert_eq!(pod_spec_path("apps", "Deployment"), Some(&["spec", "template", "spec"][..]));
        assert_eq!(pod_spec_path("batch", "CronJob").map(<[_]>::len), Some(5));
        assert_eq!(pod_spec_path("example.com", "Deployment"), None);
        assert_eq!(pod_spec_path("", "Service"), None);
    }
}
