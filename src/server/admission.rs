//! The admission decision: an `AdmissionReview` body in, the response out.
//!
//! No I/O here, so every case is testable without a server. A request that
//! is not a valid admission.k8s.io/v1 review gets a 400 with a one-line
//! reason; a valid review whose object cannot be read is admitted unchanged
//! with a warning, because a webhook problem must never block a cluster.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use kube::core::admission::{AdmissionResponse, Operation};
use serde_json::Value;
use tracing::{debug, info, warn};

use super::metrics::Metrics;
use super::review::{Metadata, Object, Request, Review};
use super::workload::{self, ImageField};
use crate::rewrite::{Decision, RuleSet, Unchanged};

/// The annotation that records original images, with `--annotate-original`.
pub const ORIGINAL_IMAGES_ANNOTATION: &str = "mirrorswap.io/original-images";
const API_VERSION: &str = "admission.k8s.io/v1";
const REVIEW_KIND: &str = "AdmissionReview";

/// Behaviour switches of the admission handler.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    /// Record the original images in [`ORIGINAL_IMAGES_ANNOTATION`].
    pub annotate_original: bool,
}

/// What to send back, and how to count it.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status: 200 for every review answered, 400 for a malformed request.
    pub status: StatusCode,
    /// JSON `AdmissionReview` (200) or a one-line reason (400).
    pub body: Vec<u8>,
    /// The object's kind, for metrics (`-` when unknown).
    pub kind: String,
    /// The operation, for metrics (`-` when unknown).
    pub operation: &'static str,
    /// `patched`, `unchanged`, `skipped`, `ignored`, `undecodable` or `invalid`.
    pub result: &'static str,
}

impl Answer {
    fn invalid(reason: impl Into<String>) -> Self {
        let mut body = reason.into().into_bytes();
        body.push(b'\n');
        Self { status: StatusCode::BAD_REQUEST, body, kind: "-".into(), operation: "-", result: "invalid" }
    }
}

/// Answers one admission request body.
pub fn answer(body: &[u8], rules: &RuleSet, settings: Settings, metrics: &Metrics) -> Answer {
    let review: Review<'_> = match serde_json::from_slice(body) {
        Ok(review) => review,
        Err(error) => return undecodable(body, &error),
    };
    if review.api_version != API_VERSION || review.kind != REVIEW_KIND {
        return Answer::invalid(format!(
            "expected apiVersion {API_VERSION} and kind {REVIEW_KIND}, got `{}` and `{}`",
            review.api_version, review.kind
        ));
    }
    let Some(request) = review.request else {
        return Answer::invalid("the AdmissionReview has no `request`");
    };
    if request.uid.is_empty() {
        return Answer::invalid("the AdmissionReview has no `request.uid`");
    }
    let operation = operation_name(&request.operation);
    let (response, result) = decide(&request, rules, settings, metrics);
    match encode(&response) {
        Ok(body) => Answer { status: StatusCode::OK, body, kind: request.kind.kind, operation, result },
        Err(error) => Answer::invalid(format!("could not encode the response: {error}")),
    }
}

/// An allowing response to the request `uid`, with no patch yet.
fn allow(uid: &str) -> AdmissionResponse {
    // kube builds responses from its own request type; this one starts from `invalid` and is
    // turned into a plain "allowed".
    let mut response = AdmissionResponse::invalid("");
    response.uid = uid.to_owned();
    response.allowed = true;
    response.result = Default::default();
    response
}

/// The response to a well-formed request, and the result label.
fn decide(
    request: &Request<'_>,
    rules: &RuleSet,
    settings: Settings,
    metrics: &Metrics,
) -> (AdmissionResponse, &'static str) {
    let response = allow(&request.uid);
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return (response, "ignored");
    }
    let Some(spec_path) = workload::pod_spec_path(&request.kind.group, &request.kind.kind) else {
        return (response, "ignored");
    };
    let Some(object) = &request.object else {
        return (response, "ignored");
    };
    if workload::opted_out(&object.metadata) {
        debug!(uid = %request.uid, "object opted out of image rewriting");
        return (response, "skipped");
    }
    let fields = workload::image_fields(object, spec_path);
    let mut operations = Vec::new();
    let mut originals = BTreeMap::new();
    for ImageField { path, container, image } in &fields {
        match rules.rewrite(image) {
            Decision::Rewritten { image: new_image, rule } => {
                info!(
                    uid = %request.uid,
                    namespace = request.namespace.as_deref().unwrap_or(""),
                    name = %object_name(request, object),
                    path = %path.join("/"),
                    from = %image,
                    to = %new_image,
                    rule = %rule,
                    "image rewritten"
                );
                metrics.rewritten.with_label_values(&[&*rule.source]).inc();
                originals.insert((*container).to_owned(), Value::String((*image).to_owned()));
                operations.push(PatchOperation::Replace(ReplaceOperation {
                    path: PointerBuf::from_tokens(path),
                    value: Value::String(new_image),
                }));
            }
            Decision::Unchanged(reason) => {
                log_unchanged(&request.uid, image, &reason);
                metrics.unchanged.with_label_values(&[reason.label()]).inc();
            }
        }
    }
    if operations.is_empty() {
        return (response, "unchanged");
    }
    if settings.annotate_original {
        operations.push(annotation_operation(&object.metadata, originals));
    }
    // `with_patch` consumes the response; the rare failure rebuilds a plain one.
    match response.with_patch(Patch(operations)) {
        Ok(patched) => (patched, "patched"),
        Err(error) => {
            let warning = format!("mirrorswap could not encode its patch: {error}");
            (with_warning(allow(&request.uid), &warning), "undecodable")
        }
    }
}

/// Adds the original images to the annotation, keeping entries an earlier invocation wrote.
fn annotation_operation(metadata: &Metadata<'_>, mut originals: BTreeMap<String, Value>) -> PatchOperation {
    let annotations = metadata.annotations.as_ref();
    let earlier = annotations
        .and_then(|annotations| annotations.get(ORIGINAL_IMAGES_ANNOTATION))
        .and_then(|json| serde_json::from_str::<BTreeMap<String, Value>>(json).ok())
        .unwrap_or_default();
    // The first original recorded for a container is the one to keep.
    originals.extend(earlier);
    let value = Value::String(Value::Object(originals.into_iter().collect()).to_string());
    match annotations {
        Some(_) => PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", ORIGINAL_IMAGES_ANNOTATION]),
            value,
        }),
        None => PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations"]),
            value: Value::Object([(ORIGINAL_IMAGES_ANNOTATION.to_owned(), value)].into_iter().collect()),
        }),
    }
}

fn log_unchanged(uid: &str, image: &str, reason: &Unchanged<'_>) {
    match reason {
        Unchanged::InvalidReference(why) => {
            warn!(%uid, %image, reason = %why, "image left unchanged: not a valid reference")
        }
        Unchanged::InvalidResult { rule, reason } => {
            warn!(%uid, %image, rule = %rule, %reason, "image left unchanged: the rule would give an invalid reference")
        }
        other => debug!(%uid, %image, reason = other.label(), "image left unchanged"),
    }
}

fn with_warning(mut response: AdmissionResponse, warning: &str) -> AdmissionResponse {
    response.warnings.get_or_insert_with(Vec::new).push(warning.to_owned());
    response
}

/// The object's name, its `generateName` (pods often have only that), or `-`.
fn object_name<'r>(request: &'r Request<'_>, object: &'r Object<'_>) -> &'r str {
    [&object.metadata.name, &object.metadata.generate_name, &request.name]
        .into_iter()
        .find_map(|name| name.as_deref().filter(|name| !name.is_empty()))
        .unwrap_or("-")
}

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The response review on the wire. kube's `AdmissionResponse` serializes its patch as an array
/// of numbers; the admission API documents (and `kubectl`, `curl | base64 -d` users expect) a
/// base64 string, so the review is written from the response's fields here.
fn encode(response: &AdmissionResponse) -> serde_json::Result<Vec<u8>> {
    use base64::Engine;
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Review<'a> {
        api_version: &'static str,
        kind: &'static str,
        response: Response<'a>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Response<'a> {
        uid: &'a str,
        allowed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        warnings: Option<&'a Vec<String>>,
    }
    let patch = response.patch.as_ref().map(|patch| base64::engine::general_purpose::STANDARD.encode(patch));
    let patch_type = patch.as_ref().map(|_| "JSONPatch");
    serde_json::to_vec(&Review {
        api_version: API_VERSION,
        kind: REVIEW_KIND,
        response: Response {
            uid: &response.uid,
            allowed: response.allowed,
            patch,
            patch_type,
            warnings: response.warnings.as_ref(),
        },
    })
}

/// The body did not decode as a review: a 400 when it is not a well-formed review envelope,
/// or admitted unchanged with a warning when only the object is unreadable.
fn undecodable(body: &[u8], error: &serde_json::Error) -> Answer {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => return Answer::invalid(format!("the body is not JSON: {error}")),
    };
    let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
    if text("/apiVersion") != Some(API_VERSION) || text("/kind") != Some(REVIEW_KIND) {
        return Answer::invalid(format!("expected apiVersion {API_VERSION} and kind {REVIEW_KIND}"));
    }
    let Some(uid) = text("/request/uid").filter(|uid| !uid.is_empty()) else {
        return Answer::invalid("the AdmissionReview has no `request.uid`");
    };
    let kind = text("/request/kind/kind").unwrap_or("-").to_owned();
    warn!(%uid, %kind, %error, "cannot decode the admission request; admitted unchanged");
    let mut response = AdmissionResponse::invalid("");
    response.uid = uid.to_owned();
    response.allowed = true;
    response.result = Default::default();
    let response =
        with_warning(response, &format!("mirrorswap could not decode the request and left it unchanged: {error}"));
    match encode(&response) {
        Ok(body) => Answer { status: StatusCode::OK, body, kind, operation: "-", result: "undecodable" },
        Err(error) => Answer::invalid(format!("could not encode the response: {error}")),
    }
}
