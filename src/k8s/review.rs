//! The parts of an admission.k8s.io/v1 `AdmissionReview` that mirrorswap
//! reads, decoded in one pass and borrowing strings from the body.
//!
//! kube's `AdmissionReview<DynamicObject>` buffers the whole object through
//! serde's `flatten` (≈115k instructions for a small Pod, more than the TLS
//! and HTTP work around it); decoding only uid, kind, operation, the opt-out
//! labels and the container images is several times cheaper. Labels and
//! annotations are checked to be string maps but only the keys mirrorswap
//! acts on are kept, so an object with hundreds of labels allocates nothing
//! for them. `deletionTimestamp` is kept as the borrowed string it is, for the leak guard's
//! "being deleted". kube's `Operation` is used as it is. Nothing else is read, so
//! nothing else can be lost: the patch only ever replaces `image` fields. On
//! UPDATE the same parts of `oldObject` are read, to leave unchanged images alone.
//!
//! Used by `/mutate` and `/validate` (`server::admission`, `server::validate`); `audit` reads
//! manifests into the same [`Object`], [`Spec`] and [`Marks`].

use std::borrow::Cow;
use std::fmt;

use kube::core::admission::Operation;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::workload::{IMAGESWAP_LABEL, ORIGINAL_IMAGES_ANNOTATION, SKIP_KEY};

/// The `apiVersion` of the reviews mirrorswap answers.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// Their `kind`.
pub const REVIEW_KIND: &str = "AdmissionReview";

/// Why an envelope with this `apiVersion` and `kind` (empty or `None`: missing) is not an
/// `admission.k8s.io/v1` `AdmissionReview`, or `None` when it is one. The values, which the
/// sender wrote, are quoted cut.
pub fn envelope_problem(api_version: Option<&str>, kind: Option<&str>) -> Option<String> {
    let (api_version, kind) = (api_version.unwrap_or(""), kind.unwrap_or(""));
    if api_version == API_VERSION && kind == REVIEW_KIND {
        return None;
    }
    let expected = format!(
        "expected apiVersion {API_VERSION} and kind {REVIEW_KIND}, as the API server sends them (examples/admission/pod.json is one)"
    );
    let missing: Vec<&str> = [("`apiVersion`", api_version), ("`kind`", kind)]
        .iter()
        .filter(|(_, value)| value.is_empty())
        .map(|(name, _)| *name)
        .collect();
    Some(if missing.is_empty() {
        format!(
            "{expected}; got apiVersion `{}` and kind `{}`",
            crate::rewrite::excerpt(api_version),
            crate::rewrite::excerpt(kind)
        )
    } else {
        format!("the body has no {}: {expected}", missing.join(" and no "))
    })
}

/// The review envelope.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review<'a> {
    /// Must be `admission.k8s.io/v1`.
    #[serde(default, borrow)]
    pub api_version: Cow<'a, str>,
    /// Must be `AdmissionReview`.
    #[serde(default, borrow)]
    pub kind: Cow<'a, str>,
    /// The request; absent in a malformed review.
    #[serde(default, borrow)]
    pub request: Option<Request<'a>>,
}

/// The request attributes mirrorswap uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    /// Copied to the response.
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    /// The object's group and kind.
    #[serde(borrow)]
    pub kind: Kind<'a>,
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: Operation,
    /// The object's namespace, for logs.
    #[serde(default, borrow)]
    pub namespace: Option<Cow<'a, str>>,
    /// The object's name, for logs (empty for generated names).
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    /// The object being admitted.
    #[serde(default, borrow)]
    pub object: Option<Object<'a>>,
    /// The object before an UPDATE (`null` on CREATE, so a CREATE parses nothing more).
    #[serde(default, borrow)]
    pub old_object: Option<Object<'a>>,
    /// The subresource, such as `ephemeralcontainers`; absent for the object itself.
    #[serde(default, borrow)]
    pub sub_resource: Option<Cow<'a, str>>,
    /// `dryRun` as sent, kept as its JSON text and never decoded, so that no value of it can
    /// fail the review (`1e999999` is out of range for every number type); read it through
    /// [`Request::is_dry_run`].
    #[serde(default, borrow)]
    pub dry_run: Option<&'a RawValue>,
}

impl Request<'_> {
    /// A dry run (`kubectl --dry-run=server`): nothing is persisted, and a webhook with side
    /// effects (`serve --copy-on-miss`) must have none. Anything but `false` (or no value)
    /// counts as one, so a malformed `dryRun` never causes a side effect.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.is_some_and(|raw| raw.get() != "false")
    }
}

/// `request.kind` without its version, which does not change where images are.
#[derive(Debug, Deserialize)]
pub struct Kind<'a> {
    /// API group, empty for the core group.
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    /// Kind, such as `Pod` or `Deployment`.
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

/// An object of any supported kind: its metadata and whichever of `spec`/`template` it has.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<'a> {
    /// The object's metadata.
    #[serde(default, borrow)]
    pub metadata: Metadata<'a>,
    /// Pods and workloads.
    #[serde(default, borrow)]
    pub spec: Option<Box<Spec<'a>>>,
    /// PodTemplates.
    #[serde(default, borrow)]
    pub template: Option<Box<Template<'a>>>,
}

/// The metadata fields mirrorswap reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata<'a> {
    /// `metadata.name`.
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    /// `metadata.generateName`, what pods created by controllers have.
    #[serde(default, borrow)]
    pub generate_name: Option<Cow<'a, str>>,
    /// Labels.
    #[serde(default, borrow)]
    pub labels: Option<Marks<'a>>,
    /// Annotations.
    #[serde(default, borrow)]
    pub annotations: Option<Marks<'a>>,
    /// `metadata.deletionTimestamp`: set (by the API server only) once the object is being
    /// deleted. Borrowed, never parsed: only its presence matters.
    #[serde(default, borrow)]
    pub deletion_timestamp: Option<Cow<'a, str>>,
}

impl Metadata<'_> {
    /// True once the object is being deleted (it waits for its finalizers).
    pub fn is_deleting(&self) -> bool {
        self.deletion_timestamp.is_some()
    }
}

/// A pod spec, or a spec that holds a pod template (workloads) or a job template (CronJob).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec<'a> {
    /// Containers.
    #[serde(default, borrow)]
    pub containers: Option<Vec<Container<'a>>>,
    /// Init containers.
    #[serde(default, borrow)]
    pub init_containers: Option<Vec<Container<'a>>>,
    /// Ephemeral containers.
    #[serde(default, borrow)]
    pub ephemeral_containers: Option<Vec<Container<'a>>>,
    /// The pull secrets (`[{name}]`).
    #[serde(default, borrow)]
    pub image_pull_secrets: Option<Vec<SecretRef<'a>>>,
    /// A workload's pod template.
    #[serde(default, borrow)]
    pub template: Option<Box<Template<'a>>>,
    /// A CronJob's job template.
    #[serde(default, borrow)]
    pub job_template: Option<Box<Template<'a>>>,
}

/// An entry of `imagePullSecrets`.
#[derive(Debug, Default, Deserialize)]
pub struct SecretRef<'a> {
    /// The Secret's name.
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
}

/// A pod or job template: only its spec matters.
#[derive(Debug, Default, Deserialize)]
pub struct Template<'a> {
    /// The template's spec.
    #[serde(default, borrow)]
    pub spec: Option<Box<Spec<'a>>>,
}

/// A container: its name and image.
#[derive(Debug, Default, Deserialize)]
pub struct Container<'a> {
    /// The container's name.
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    /// The image reference.
    #[serde(default, borrow)]
    pub image: Option<Cow<'a, str>>,
}

/// The entries of a labels or annotations map that mirrorswap acts on. Every value must
/// be a string, as in Kubernetes; entries with other keys are checked and dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Marks<'a> {
    /// `mirrorswap.io/skip`.
    pub skip: Option<Cow<'a, str>>,
    /// `k8s.twr.io/imageswap`, the reference implementation's switch.
    pub imageswap: Option<Cow<'a, str>>,
    /// `mirrorswap.io/original-images`, written by `--annotate-original`.
    pub original_images: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Marks<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MarksVisitor)
    }
}

struct MarksVisitor;

impl<'de> Visitor<'de> for MarksVisitor {
    type Value = Marks<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a map of strings")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut marks = Marks::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::Skip => &mut marks.skip,
                Key::Imageswap => &mut marks.imageswap,
                Key::OriginalImages => &mut marks.original_images,
                Key::Other => {
                    map.next_value::<AnyString>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value::<BorrowedStr<'de>>()?.0);
        }
        Ok(marks)
    }
}

/// A map key, classified without allocating.
enum Key {
    Skip,
    Imageswap,
    OriginalImages,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a string key")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    SKIP_KEY => Key::Skip,
                    IMAGESWAP_LABEL => Key::Imageswap,
                    ORIGINAL_IMAGES_ANNOTATION => Key::OriginalImages,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A string value that is not kept: only its type is checked.
struct AnyString;

impl<'de> Deserialize<'de> for AnyString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringVisitor;
        impl Visitor<'_> for StringVisitor {
            type Value = AnyString;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<AnyString, E> {
                Ok(AnyString)
            }
        }
        deserializer.deserialize_str(StringVisitor)
    }
}

/// A string value borrowed from the body when it has no escapes.
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(value)))
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(value.to_owned())))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(json: &str) -> serde_json::Result<Marks<'_>> {
        serde_json::from_str(json)
    }

    #[test]
    fn keeps_only_the_keys_mirrorswap_acts_on() {
        let kept = marks(
            r#"{"app": "web", "mirrorswap.io/skip": "true", "k8s.twr.io/imageswap": "disabled",
            "mirrorswap.io/original-images": "{\"a\":\"b\"}"}"#,
        )
        .unwrap();
        assert_eq!(kept.skip.as_deref(), Some("true"));
        assert_eq!(kept.imageswap.as_deref(), Some("disabled"));
        // An escaped value cannot be borrowed from the body and is copied.
        assert_eq!(kept.original_images.as_deref(), Some(r#"{"a":"b"}"#));
        assert!(matches!(kept.original_images, Some(Cow::Owned(_))));
        assert!(matches!(kept.skip, Some(Cow::Borrowed(_))));
        assert_eq!(marks("{}").unwrap(), Marks::default());
    }

    #[test]
    fn rejects_what_is_not_a_string_map() {
        for bad in [r#"{"app": 1}"#, r#"{"mirrorswap.io/skip": true}"#, r#"["app"]"#, r#""app""#, r#"{"app": null}"#] {
            assert!(marks(bad).is_err(), "{bad}");
        }
    }
}
