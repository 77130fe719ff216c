//! The parts of an admission.k8s.io/v1 `AdmissionReview` that mirrorswap
//! reads, decoded in one pass and borrowing strings from the body.
//!
//! kube's `AdmissionReview<DynamicObject>` buffers the whole object through
//! serde's `flatten` (≈115k instructions for a small Pod, more than the TLS
//! and HTTP work around it); decoding only uid, kind, operation, the opt-out
//! labels and the container images is several times cheaper. kube's
//! `GroupVersionKind` and `Operation` are used as they are, and the response
//! is kube's `AdmissionResponse`. Nothing else is read, so nothing else can be
//! lost: the patch only ever replaces `image` fields.

use std::borrow::Cow;
use std::collections::BTreeMap;

use kube::core::GroupVersionKind;
use kube::core::admission::Operation;
use serde::Deserialize;

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
    /// The object's group, version and kind.
    pub kind: GroupVersionKind,
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
}

/// Labels or annotations.
pub type StringMap<'a> = BTreeMap<Cow<'a, str>, Cow<'a, str>>;

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
    pub labels: Option<StringMap<'a>>,
    /// Annotations.
    #[serde(default, borrow)]
    pub annotations: Option<StringMap<'a>>,
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
    /// A workload's pod template.
    #[serde(default, borrow)]
    pub template: Option<Box<Template<'a>>>,
    /// A CronJob's job template.
    #[serde(default, borrow)]
    pub job_template: Option<Box<Template<'a>>>,
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
