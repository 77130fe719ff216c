//! `POST /validate`, the leak guard, for a ValidatingWebhookConfiguration. Validating
//! webhooks run after every mutating one (sidecar injectors included), so this sees the
//! images that will really be pulled, and judges each with the same rules `/mutate` uses
//! ([`crate::rewrite::mirrored`]): an image outside the mirrors — no rule's target, no
//! `--allow-registry` prefix, not left alone on purpose; a wildcard matching past the registry
//! host, a host built by a `-` target or a port the image chose keep nothing inside — or one
//! the rules would rewrite but that arrived unrewritten (the mutating webhook was skipped) is
//! *unmirrored*.
//!
//! `--unmirrored allow` only counts them, `warn` admits with one warning per image, `deny`
//! refuses the object (403) naming each image, container and reason.
//!
//! A pinned mirror reference (`MIRROR/team/app:1@sha256:…`, as `--pin-digest` writes it) is
//! mirrored like its tag alone. `--require-digest` (off by default) also refuses an object that
//! would pull a mirror image by tag only, whatever `--unmirrored` says, for clusters that must
//! prove what runs: only a digest names the bytes a node runs.
//!
//! Only what the request changes is judged, with `/mutate`'s own matching
//! ([`crate::k8s::update::Changes`]): on UPDATE the images that are new or changed against
//! `oldObject` (an unrelated update — a label, `rollout restart`, a finalizer — of an object
//! whose images predate mirrorswap is admitted), on `pods/ephemeralcontainers` the new or
//! changed ephemeral containers; other subresources (`status`, `resize`, …) and kinds `/mutate`
//! does not handle are admitted. An object being deleted (`deletionTimestamp` set, on UPDATE)
//! is never refused: the garbage collector must be able to remove its finalizers, and no
//! controller starts pods from it. A review that cannot be read is a 400, an object that cannot
//! be read is admitted with a warning: like `/mutate`, never a reason for the cluster to stop.
//!
//! An object's own opt-out (label or annotation) is the Pod author's to set, so it does not
//! exempt the object unless `--guard-honors-object-opt-out` says so: exemptions come from the
//! webhook's namespaceSelector. A refusal of an opted-out object says so.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::{Args, ValueEnum};
use kube::core::admission::Operation;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::admission;
use super::metrics::Metrics;
use super::state::State;
use crate::k8s::review::{Review, envelope_problem};
use crate::k8s::update::Changes;
use crate::k8s::workload;
use crate::rewrite::RuleSet;
use crate::rewrite::mirrored::{self, AllowedPrefix, Stage};

/// What `/validate` does with an object that would pull an unmirrored image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Admit it; only count the images (`mirrorswap_unmirrored_images_total{action="allow"}`).
    #[default]
    Allow,
    /// Admit it with one warning per image (kubectl prints them).
    Warn,
    /// Refuse it (403), naming each image, container and reason.
    Deny,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Warn => "warn",
            Self::Deny => "deny",
        }
    }
}

/// `serve` flags of the leak guard.
#[derive(Debug, Clone, Args)]
pub struct ValidationArgs {
    /// What `POST /validate` does with an object pulling an image from outside the mirrors.
    #[arg(long, env = "MIRRORSWAP_UNMIRRORED", value_enum, default_value_t = Mode::Allow)]
    pub unmirrored: Mode,
    /// Registry or registry/path prefix (repeatable) whose images `/validate` accepts as they
    /// are, matched on `/` boundaries against the fully qualified image (`docker.io/library`
    /// covers `nginx`). Wins over a rule that would rewrite the image.
    #[arg(long = "allow-registry", env = "MIRRORSWAP_ALLOW_REGISTRIES", value_delimiter = ',', value_name = "PREFIX",
          value_parser = AllowedPrefix::parse)]
    pub allow_registries: Vec<AllowedPrefix>,
    /// Let an object's own opt-out (the `mirrorswap.io/skip: "true"` label or annotation,
    /// imageswap's `k8s.twr.io/imageswap: disabled` label) exempt it from `/validate` too. Off by
    /// default: a Pod author sets those, so exemptions come from the webhook's namespaceSelector.
    #[arg(long, env = "MIRRORSWAP_GUARD_HONORS_OBJECT_OPT_OUT")]
    pub guard_honors_object_opt_out: bool,
    /// Refuse (403) an object that would pull a mirror image without a digest
    /// (`MIRROR/x:1` rather than `MIRROR/x:1@sha256:…`, which `--pin-digest` writes), whatever
    /// --unmirrored says: for clusters that must prove what runs.
    #[arg(long, env = "MIRRORSWAP_REQUIRE_DIGEST")]
    pub require_digest: bool,
}

impl ValidationArgs {
    /// The settings these flags select.
    pub fn settings(&self) -> Settings {
        Settings {
            mode: self.unmirrored,
            allowed: self.allow_registries.clone().into(),
            honors_object_opt_out: self.guard_honors_object_opt_out,
            require_digest: self.require_digest,
        }
    }
}

/// The leak guard's settings.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Allow, warn or deny.
    pub mode: Mode,
    /// Prefixes whose images are fine as they are.
    pub allowed: Arc<[AllowedPrefix]>,
    /// An object's own opt-out label or annotation exempts it.
    pub honors_object_opt_out: bool,
    /// Mirror images must be pinned (`--require-digest`).
    pub require_digest: bool,
}

/// The `/validate` route: a JSON `AdmissionReview` in, the verdict out.
pub async fn route(Shared(state): Shared<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return (StatusCode::BAD_REQUEST, "the content type must be application/json\n").into_response();
    }
    let rules = state.rules();
    let (status, body) = if body.len() <= 64 * 1024 {
        answer(&body, &rules, &state.validation, &state.metrics)
    } else {
        let shared = Arc::clone(&state);
        match tokio::task::spawn_blocking(move || answer(&body, &rules, &shared.validation, &shared.metrics)).await {
            Ok(answered) => answered,
            Err(error) => {
                tracing::error!(%error, "validation task failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
            }
        }
    };
    let content_type = if status == StatusCode::OK { "application/json" } else { "text/plain; charset=utf-8" };
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

/// One unmirrored, or (`--require-digest`) unpinned, image of an object.
struct Finding<'a> {
    list: &'static str,
    container: &'a str,
    image: &'a str,
    why: String,
    /// A mirror image without a digest: refused under `--require-digest`, whatever the mode.
    unpinned: bool,
}

/// Why a mirror image without a digest is refused.
const UNPINNED: &str = "pulled from the mirror by tag, without a digest: --require-digest wants \
                        `IMAGE:TAG@sha256:…` (serve --pin-digest writes it)";

/// Answers one validation request body: the HTTP status and the body.
pub fn answer(body: &[u8], rules: &RuleSet, settings: &Settings, metrics: &Metrics) -> (StatusCode, Vec<u8>) {
    let review = match serde_json::from_slice::<Review<'_>>(body) {
        Ok(review) => review,
        Err(error) => return undecodable(body, &error),
    };
    if let Some(problem) = envelope_problem(Some(&review.api_version), Some(&review.kind)) {
        return invalid(&problem);
    }
    let Some(request) = review.request else {
        return invalid("the AdmissionReview has no `request`");
    };
    if request.uid.is_empty() {
        return invalid("the AdmissionReview has no `request.uid`");
    }
    let uid = &*request.uid;
    let known = workload::known_kind(&request.kind.group, &request.kind.kind);
    let Some((kind, changes)) = known.and_then(|known| Some((known.0, Changes::of(&request, known)?))) else {
        return respond(uid, true, &[], None);
    };
    let object = changes.object;
    // Only an UPDATE can be of an object being deleted: the API server clears
    // `deletionTimestamp` on CREATE and keeps the stored one on UPDATE, before validating webhooks.
    let deleting = request.operation == Operation::Update && object.metadata.is_deleting();
    let opted_out = workload::opted_out(&object.metadata);
    if deleting || (opted_out && settings.honors_object_opt_out) {
        return respond(uid, true, &[], None);
    }
    let findings: Vec<Finding<'_>> = changes
        .to_decide()
        .filter_map(|field| {
            let verdict = mirrored::judge(rules, &settings.allowed, field.image);
            let finding = |why: String, unpinned| Finding {
                list: field.list,
                container: field.container,
                image: field.image,
                why,
                unpinned,
            };
            if verdict.unmirrored(Stage::Admitted) {
                Some(finding(verdict.why(Stage::Admitted), false))
            } else if settings.require_digest && verdict.from_mirror() && !mirrored::pinned(field.image) {
                Some(finding(UNPINNED.to_owned(), true))
            } else {
                None
            }
        })
        .collect();
    if findings.is_empty() {
        return respond(uid, true, &[], None);
    }
    let mode = settings.mode;
    let (unpinned, unmirrored): (Vec<&Finding<'_>>, Vec<&Finding<'_>>) =
        findings.iter().partition(|finding| finding.unpinned);
    metrics.unmirrored.with_label_values(&[mode.label()]).inc_by(unmirrored.len() as u64);
    metrics.unpinned.inc_by(unpinned.len() as u64);
    let namespace = request.namespace.as_deref().unwrap_or("-");
    let name = admission::object_name(&request, object);
    for finding in &findings {
        let action = if finding.unpinned { "deny" } else { mode.label() };
        let what = if finding.unpinned { "unpinned" } else { "unmirrored" };
        info!(%uid, %kind, %namespace, %name, container = %finding.container, image = %finding.image,
              %action, "{what} image: {}", finding.why);
    }
    let describe = |finding: &&Finding<'_>| {
        format!("{} `{}` image `{}`: {}", finding.list, display(finding.container), finding.image, finding.why)
    };
    let warnings: Vec<String> = match mode {
        Mode::Warn => {
            unmirrored.iter().map(|finding| format!("mirrorswap: unmirrored image: {}", describe(finding))).collect()
        }
        Mode::Allow | Mode::Deny => Vec::new(),
    };
    let mut refusals = Vec::new();
    if mode == Mode::Deny && !unmirrored.is_empty() {
        let list: Vec<String> = unmirrored.iter().map(describe).collect();
        refusals.push(format!("{} image(s) from outside the mirrors: {}", unmirrored.len(), list.join("; ")));
    }
    if !unpinned.is_empty() {
        let list: Vec<String> = unpinned.iter().map(describe).collect();
        refusals.push(format!("{} mirror image(s) without a digest: {}", unpinned.len(), list.join("; ")));
    }
    if refusals.is_empty() {
        return respond(uid, true, &warnings, None);
    }
    let mut message = format!("mirrorswap: {kind} {namespace}/{name} would pull {}", refusals.join("; and "));
    if opted_out {
        message.push_str(OPT_OUT_IGNORED);
    }
    respond(uid, false, &warnings, Some(&message))
}

/// Said after a refusal of an object that opts out: why that did not exempt it.
const OPT_OUT_IGNORED: &str = " (the object's own opt-out label or annotation does not exempt it from the leak guard: \
                               exempt its namespace through the webhook's namespaceSelector)";

fn display(container: &str) -> &str {
    if container.is_empty() { "-" } else { container }
}

/// The response review.
fn respond(uid: &str, allowed: bool, warnings: &[String], denied: Option<&str>) -> (StatusCode, Vec<u8>) {
    let mut response = json!({"uid": uid, "allowed": allowed});
    if !warnings.is_empty() {
        response["warnings"] = json!(warnings);
    }
    if let Some(message) = denied {
        response["status"] = json!({"code": 403, "reason": "Forbidden", "message": message});
    }
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    (StatusCode::OK, review.to_string().into_bytes())
}

fn invalid(reason: &str) -> (StatusCode, Vec<u8>) {
    (StatusCode::BAD_REQUEST, format!("{reason}\n").into_bytes())
}

/// A well-formed review whose object cannot be read is admitted with a warning; anything
/// else is a 400.
fn undecodable(body: &[u8], error: &serde_json::Error) -> (StatusCode, Vec<u8>) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return invalid(&format!("the body is not JSON: {error}"));
    };
    let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
    if let Some(problem) = envelope_problem(text("/apiVersion"), text("/kind")) {
        return invalid(&problem);
    }
    let Some(uid) = text("/request/uid").filter(|uid| !uid.is_empty()) else {
        return invalid("the AdmissionReview has no `request.uid`");
    };
    warn!(%uid, %error, "cannot decode the object to validate; admitted");
    let warning = format!("mirrorswap could not read the object and did not check its images: {error}");
    respond(uid, true, &[warning], None)
}
