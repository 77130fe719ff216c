//! The admission decision: an `AdmissionReview` body in, the response out.
//!
//! No I/O here, so every case is testable without a server. A request that
//! is not a valid admission.k8s.io/v1 review gets a 400 with a one-line
//! reason; a valid review whose object cannot be read is admitted unchanged
//! with a warning, because a webhook problem must never block a cluster.
//!
//! With `--pin-digest`, a taken candidate arrives pinned (`TARGET:TAG@sha256:…`), and on
//! UPDATE an image whose rewrite is the old image without its digest keeps the old pinned
//! reference ([`Changes::kept_pin`]): a GitOps tool re-applying the tag restarts nothing.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use base64::Engine;
use kube::core::admission::Operation;
use serde_json::Value;
use tracing::{debug, warn};

use super::metrics::Metrics;
use super::patch::{self, PatchOperation};
use crate::k8s::pointer::pointer;
use crate::k8s::review::{Metadata, Object, Request, Review, envelope_problem};
use crate::k8s::update::{Changes, Verdict};
use crate::k8s::workload::{self, ImageField, ORIGINAL_IMAGES_ANNOTATION};
use crate::registry::{Choice, Pin, Resolved};
use crate::rewrite::{Decision, Explanation, RuleSet, Unchanged, excerpt};

/// Behaviour switches of the admission handler.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Record the original images in [`ORIGINAL_IMAGES_ANNOTATION`].
    pub annotate_original: bool,
    /// Where the rules come from (a file or an environment variable), for `FILE:LINE` in the
    /// debug log's explanations.
    pub rules_origin: std::sync::Arc<str>,
    /// (registry, secret): images rewritten to the registry need the secret in
    /// `spec.imagePullSecrets`.
    pub pull_secrets: std::sync::Arc<[(String, String)]>,
    /// `--pin-digest`: on UPDATE, keep an old pinned reference whose tag the new image's
    /// rewrite names ([`Changes::kept_pin`]). (The pins themselves come with the resolution.)
    pub pin_digest: bool,
}

/// What to send back, and how to count it.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status: 200 for every review answered, 400 for a malformed request.
    pub status: StatusCode,
    /// JSON `AdmissionReview` (200) or a one-line reason (400).
    pub body: Vec<u8>,
    /// The object's kind for metrics: one of the kinds mirrorswap rewrites, `other`, or `-`
    /// when unknown (a fixed set, so a stream of odd requests cannot grow the metrics).
    pub kind: &'static str,
    /// The operation, for metrics (`-` when unknown).
    pub operation: &'static str,
    /// `patched`, `unchanged`, `skipped`, `ignored`, `undecodable` or `invalid`.
    pub result: &'static str,
}

impl Answer {
    fn invalid(reason: impl Into<String>) -> Self {
        let mut body = reason.into().into_bytes();
        body.push(b'\n');
        Self { status: StatusCode::BAD_REQUEST, body, kind: "-", operation: "-", result: "invalid" }
    }
}

/// What the webhook decided for a well-formed request.
struct Outcome {
    /// The result label.
    result: &'static str,
    /// The serialized JSON patch, when something changed.
    patch: Option<Vec<u8>>,
    /// Warnings for the client: something went wrong, or an image was kept.
    warnings: Vec<String>,
}

impl Outcome {
    fn allow(result: &'static str) -> Self {
        Self { result, patch: None, warnings: Vec::new() }
    }
}

/// Answers one admission request body, as the rules say (`--swap-policy always`).
pub fn answer(body: &[u8], rules: &RuleSet, settings: &Settings, metrics: &Metrics) -> Answer {
    answer_resolved(body, rules, settings, metrics, None)
}

/// The images of a parsed request that the webhook would decide on (none for a request it
/// ignores): what `--swap-policy exists` asks the registries about before [`answer_request`].
/// One per field, in the fields `decide` walks, so that [`Resolved::choose`] can move each
/// taken image into the patch at its last field. A field that keeps its old pin
/// ([`Changes::kept_pin`]) is not asked about.
pub fn images_to_check<'r>(request: &'r Request<'_>, rules: &RuleSet, settings: &Settings) -> Vec<&'r str> {
    let known = workload::known_kind(&request.kind.group, &request.kind.kind);
    let Some(changes) = known.and_then(|known| Changes::of(request, known)) else {
        return Vec::new();
    };
    if workload::opted_out(&changes.object.metadata) {
        return Vec::new();
    }
    changes
        .to_decide()
        .filter(|field| !settings.pin_digest || changes.kept_pin(rules, field).is_none())
        .map(|field| field.image)
        .collect()
}

/// Answers one admission request body; with `resolved` (`--swap-policy exists`), each image
/// takes the candidate the registries confirmed, or stays with a warning saying why.
pub fn answer_resolved(
    body: &[u8],
    rules: &RuleSet,
    settings: &Settings,
    metrics: &Metrics,
    resolved: Option<&mut Resolved>,
) -> Answer {
    match parse(body) {
        Ok(request) => answer_request(&request, rules, settings, metrics, resolved),
        Err(answer) => answer,
    }
}

/// The request of an AdmissionReview body, parsed once (its strings borrow from `body`), or
/// the answer refusing a body that is none.
pub fn parse(body: &[u8]) -> Result<Request<'_>, Answer> {
    // Validating UTF-8 once for the whole body is cheaper than serde_json doing it per string.
    let decoded = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<Review<'_>>(text),
        Err(_) => serde_json::from_slice::<Review<'_>>(body),
    };
    let review = match decoded {
        Ok(review) => review,
        Err(error) => return Err(undecodable(body, &error)),
    };
    if let Some(problem) = envelope_problem(Some(&review.api_version), Some(&review.kind)) {
        return Err(Answer::invalid(problem));
    }
    let Some(request) = review.request else {
        return Err(Answer::invalid("the AdmissionReview has no `request`"));
    };
    if request.uid.is_empty() {
        return Err(Answer::invalid("the AdmissionReview has no `request.uid`"));
    }
    Ok(request)
}

/// Answers a parsed request (see [`answer_resolved`]).
pub fn answer_request(
    request: &Request<'_>,
    rules: &RuleSet,
    settings: &Settings,
    metrics: &Metrics,
    resolved: Option<&mut Resolved>,
) -> Answer {
    let known = workload::known_kind(&request.kind.group, &request.kind.kind);
    let outcome = match known {
        Some(known) => decide(request, known, rules, settings, metrics, resolved),
        None => Outcome::allow("ignored"),
    };
    Answer {
        status: StatusCode::OK,
        body: review_body(&request.uid, outcome.patch.as_deref(), &outcome.warnings),
        kind: known.map_or("other", |(kind, _)| kind),
        operation: operation_name(&request.operation),
        result: outcome.result,
    }
}

/// `mirrorswap_images_unchanged_total` reason: the image equals the old object's.
pub const UNCHANGED_ON_UPDATE: &str = "unchanged_on_update";
/// `mirrorswap_images_unchanged_total` reason: the image changed, but the API server does not
/// let it change in this request (a Job's template, a Pod's ephemeral containers outside their
/// subresource), so the request is rejected whatever mirrorswap does.
pub const IMMUTABLE: &str = "immutable";

/// Per-image "kept" warnings one answer carries; the API server keeps at most 4 KiB of an
/// answer's warnings, and a Pod with thousands of images must not make a megabyte of them.
const MAX_KEPT_WARNINGS: usize = 10;

fn decide(
    request: &Request<'_>,
    (kind, spec_path): (&'static str, &'static [&'static str]),
    rules: &RuleSet,
    settings: &Settings,
    metrics: &Metrics,
    mut resolved: Option<&mut Resolved>,
) -> Outcome {
    let Some(changes) = Changes::of(request, (kind, spec_path)) else {
        return Outcome::allow("ignored");
    };
    let (scope, object) = (changes.scope, changes.object);
    if workload::opted_out(&object.metadata) {
        debug!(uid = %request.uid, "object opted out of image rewriting");
        return Outcome::allow("skipped");
    }
    let mut operations = Vec::new();
    let mut originals = BTreeMap::new();
    let mut secrets_needed: Vec<&str> = Vec::new();
    let mut warnings = Vec::new();
    let mut kept = 0_usize;
    // Counted once per object: the counters are shared by every worker.
    let (mut pinned, mut no_digest) = (0_u64, 0_u64);
    for (field, verdict) in changes.fields() {
        let ImageField { container, image, .. } = field;
        let left_alone = match verdict {
            Verdict::Rewrite => None,
            Verdict::Unchanged => Some(UNCHANGED_ON_UPDATE),
            Verdict::Immutable => Some(IMMUTABLE),
        };
        if let Some(reason) = left_alone {
            debug!(uid = %request.uid, %container, %image, %reason, "image left unchanged on update");
            metrics.unchanged.with_label_values(&[reason]).inc();
            continue;
        }
        if let Some(old) = changes.kept_pin(rules, &field).filter(|_| settings.pin_digest) {
            debug!(uid = %request.uid, %container, %image, %old, "pinned image kept on update");
            metrics.pins.kept_on_update.inc();
            if !settings.pull_secrets.is_empty() {
                secrets_needed.extend(secrets_for(&settings.pull_secrets, old));
            }
            operations.push(PatchOperation::replace(field.pointer(), Value::String(old.to_owned())));
            continue;
        }
        let decision = match resolved.as_deref_mut().and_then(|resolved| resolved.choose(image)) {
            None => rules.rewrite(image),
            Some(Choice::Take(image, rule, pin)) => {
                match pin {
                    Pin::To(_) => pinned += 1,
                    Pin::Unknown => no_digest += 1,
                    Pin::Off => {}
                }
                Decision::Rewritten { image, rule }
            }
            Some(Choice::Keep(why)) => {
                debug!(uid = %request.uid, %container, %image, "image kept: {why}");
                if kept < MAX_KEPT_WARNINGS {
                    warnings.push(format!("mirrorswap kept image {image} of container {container}: {why}"));
                }
                kept += 1;
                metrics.unchanged.with_label_values(&["not_in_mirror"]).inc();
                continue;
            }
            Some(Choice::Unasked) => {
                metrics.unchanged.with_label_values(&["not_checked"]).inc();
                continue;
            }
        };
        // Per-image lines are debug: at info a busy cluster's log would be mostly these;
        // `mirrorswap_images_rewritten_total{rule}` counts them. `rewrite --explain` says the same.
        debug!(
            uid = %request.uid,
            namespace = request.namespace.as_deref().unwrap_or(""),
            name = %object_name(request, object),
            %container,
            "{}",
            Explanation { image, decision: &decision, rules, origin: &settings.rules_origin }
        );
        match decision {
            Decision::Rewritten { image: new_image, rule } => {
                metrics.rewritten.with_label_values(&[&*rule.source]).inc();
                if settings.annotate_original {
                    originals.insert(container.to_owned(), Value::String(image.to_owned()));
                }
                if !settings.pull_secrets.is_empty() {
                    secrets_needed.extend(secrets_for(&settings.pull_secrets, &new_image));
                }
                operations.push(PatchOperation::replace(field.pointer(), Value::String(new_image)));
            }
            Decision::Unchanged(reason) => {
                log_unchanged(&request.uid, image, &reason);
                metrics.unchanged.with_label_values(&[reason.label()]).inc();
            }
        }
    }
    for (counter, count) in [(&metrics.pins.pinned, pinned), (&metrics.pins.no_digest, no_digest)] {
        if count > 0 {
            counter.inc_by(count);
        }
    }
    if kept > MAX_KEPT_WARNINGS {
        warnings.push(format!(
            "mirrorswap kept {} more image(s) of this object for the same kinds of reasons (--log-level debug logs each)",
            kept - MAX_KEPT_WARNINGS
        ));
    }
    if let Some(warning) = resolved.as_deref().and_then(Resolved::limit_warning) {
        warnings.push(warning);
    }
    if operations.is_empty() {
        return Outcome { warnings, ..Outcome::allow("unchanged") };
    }
    let (listed, missing) = missing_secrets(object, spec_path, secrets_needed);
    if scope.pull_secrets {
        operations.extend(pull_secret_operations(spec_path, listed, missing));
    } else if !missing.is_empty() {
        let missing = missing.join(", ");
        warn!(uid = %request.uid, secrets = %missing, "pull secret not added: spec.imagePullSecrets cannot change on a Pod update");
        warnings.push(format!(
            "mirrorswap rewrote images to a registry that needs the pull secret {missing}, which it cannot add: \
             spec.imagePullSecrets cannot change on a Pod update; add it to the ServiceAccount's \
             imagePullSecrets or re-create the Pod"
        ));
    }
    if settings.annotate_original && scope.metadata {
        operations.push(annotation_operation(&object.metadata, originals));
    }
    match patch::to_json(&operations) {
        Ok(patch) => Outcome { result: "patched", patch: Some(patch), warnings },
        Err(error) => Outcome {
            result: "undecodable",
            patch: None,
            warnings: vec![format!("mirrorswap could not encode its patch: {error}")],
        },
    }
}

/// The secrets configured for the registry of `image` (a valid reference: it was just rendered).
fn secrets_for<'s>(pull_secrets: &'s [(String, String)], image: &str) -> impl Iterator<Item = &'s str> {
    let registry = crate::rewrite::reference::parse(image).ok().and_then(|reference| reference.registry);
    pull_secrets.iter().filter(move |(wanted, _)| registry == Some(wanted.as_str())).map(|(_, secret)| secret.as_str())
}

/// Whether the pod spec has an `imagePullSecrets` list, and the `needed` secrets it does not
/// list yet (sorted, each once).
fn missing_secrets<'n>(
    object: &Object<'_>,
    spec_path: &'static [&'static str],
    mut needed: Vec<&'n str>,
) -> (bool, Vec<&'n str>) {
    let existing = workload::pod_spec(object, spec_path).and_then(|spec| spec.image_pull_secrets.as_ref());
    let listed = |name: &str| existing.is_some_and(|list| list.iter().any(|entry| entry.name.as_deref() == Some(name)));
    needed.sort_unstable();
    needed.dedup();
    needed.retain(|name| !listed(name));
    (existing.is_some(), needed)
}

/// `add` operations for the `missing` secrets: one for the whole list when the spec has none
/// (`listed` false), else one append per secret. Existing entries are never touched.
fn pull_secret_operations(spec_path: &'static [&'static str], listed: bool, missing: Vec<&str>) -> Vec<PatchOperation> {
    let entry = |name: &str| Value::Object([("name".to_owned(), Value::String(name.to_owned()))].into_iter().collect());
    let path = pointer(spec_path.iter().copied().chain(["imagePullSecrets"]));
    match listed {
        _ if missing.is_empty() => Vec::new(),
        false => vec![PatchOperation::add(path, missing.into_iter().map(entry).collect())],
        true => missing.into_iter().map(|name| PatchOperation::add(format!("{path}/-"), entry(name))).collect(),
    }
}

/// Merges the originals of the images this request rewrote into the annotation: entries of
/// other containers are kept, a container's earlier entry is replaced (its image changed).
fn annotation_operation(metadata: &Metadata<'_>, originals: BTreeMap<String, Value>) -> PatchOperation {
    let annotations = metadata.annotations.as_ref();
    let mut recorded = annotations
        .and_then(|annotations| annotations.original_images.as_deref())
        .and_then(|json| serde_json::from_str::<BTreeMap<String, Value>>(json).ok())
        .unwrap_or_default();
    recorded.extend(originals);
    let value = Value::String(Value::Object(recorded.into_iter().collect()).to_string());
    match annotations {
        Some(_) => PatchOperation::add(pointer(["metadata", "annotations", ORIGINAL_IMAGES_ANNOTATION]), value),
        None => PatchOperation::add(
            pointer(["metadata", "annotations"]),
            Value::Object([(ORIGINAL_IMAGES_ANNOTATION.to_owned(), value)].into_iter().collect()),
        ),
    }
}

/// Logs an image left alone for a reason worth a line; the Pod's author wrote the image, so
/// the line quotes at most ~200 characters of it.
fn log_unchanged(uid: &str, image: &str, reason: &Unchanged<'_>) {
    let image = excerpt(image);
    match reason {
        Unchanged::InvalidReference(why) => {
            warn!(%uid, %image, reason = %why, "image left unchanged: not a valid reference")
        }
        Unchanged::InvalidResult { rule, reason } => {
            warn!(%uid, %image, rule = %rule, %reason, "image left unchanged: the rule would give an invalid reference")
        }
        _ => {}
    }
}

/// The object's name, its `generateName` (pods often have only that), or `-`.
pub(super) fn object_name<'r>(request: &'r Request<'_>, object: &'r Object<'_>) -> &'r str {
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

/// The response review on the wire, written directly: kube's `AdmissionResponse` serializes
/// its patch as an array of numbers, while the admission API documents (and `kubectl`,
/// `curl | base64 -d` users expect) a base64 string. The patch was serialized by serde_json
/// ([`patch`]); base64 needs no JSON escaping, and the uid and warning are escaped by serde_json.
fn review_body(uid: &str, patch: Option<&[u8]>, warnings: &[String]) -> Vec<u8> {
    let mut body = Vec::with_capacity(128 + uid.len() + patch.map_or(0, |patch| patch.len() / 3 * 4 + 4));
    body.extend_from_slice(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#);
    push_json_string(&mut body, uid);
    body.extend_from_slice(br#","allowed":true"#);
    if let Some(patch) = patch {
        body.extend_from_slice(br#","patchType":"JSONPatch","patch":""#);
        let start = body.len();
        body.resize(start + base64::encoded_len(patch.len(), true).unwrap_or(0), 0);
        let written = base64::engine::general_purpose::STANDARD.encode_slice(patch, &mut body[start..]).unwrap_or(0);
        body.truncate(start + written);
        body.push(b'"');
    }
    if let Some((first, rest)) = warnings.split_first() {
        body.extend_from_slice(br#","warnings":["#);
        push_json_string(&mut body, first);
        for warning in rest {
            body.push(b',');
            push_json_string(&mut body, warning);
        }
        body.push(b']');
    }
    body.extend_from_slice(b"}}");
    body
}

/// Appends `text` as a JSON string literal.
fn push_json_string(body: &mut Vec<u8>, text: &str) {
    // Serializing a `str` into a Vec cannot fail: there is no I/O and no non-string key.
    let _ = serde_json::to_writer(&mut *body, text);
}

/// The body did not decode as a review: a 400 when it is not a well-formed review envelope,
/// or admitted unchanged with a warning when only the object is unreadable.
fn undecodable(body: &[u8], error: &serde_json::Error) -> Answer {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => return Answer::invalid(format!("the body is not JSON: {error}")),
    };
    let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
    if let Some(problem) = envelope_problem(text("/apiVersion"), text("/kind")) {
        return Answer::invalid(problem);
    }
    let Some(uid) = text("/request/uid").filter(|uid| !uid.is_empty()) else {
        return Answer::invalid("the AdmissionReview has no `request.uid`");
    };
    let kind =
        workload::known_kind(text("/request/kind/group").unwrap_or(""), text("/request/kind/kind").unwrap_or(""))
            .map_or("other", |(kind, _)| kind);
    // serde's message quotes the offending value, which the object's author wrote: cut it.
    let error = excerpt(&error.to_string()).owned();
    warn!(%uid, %kind, %error, "cannot decode the admission request; admitted unchanged");
    let warning = format!("mirrorswap could not decode the request and left it unchanged: {error}");
    Answer {
        status: StatusCode::OK,
        body: review_body(uid, None, std::slice::from_ref(&warning)),
        kind,
        operation: "-",
        result: "undecodable",
    }
}
