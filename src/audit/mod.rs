//! `mirrorswap audit`'s shell: workloads from manifests or a live cluster, the images in
//! them gathered per distinct image, and each judged by the rules without changing anything.
//! `cli/audit.rs` parses the flags into a [`plan::Plan`] and prints the rows; `sync` reads its
//! images through the same plan (and [`input`]'s image lists) and copies what
//! [`output::copy_targets`] says each row needs.
//!
//! - [`plan`]: one audit as the command line hands it over, carried out; [`args`]: where the
//!   rules come from, as `audit` and `sync` take them
//! - [`input`]: manifests from files, directories and stdin, Pods and pod templates through
//!   the Kubernetes API page by page, image lists
//! - [`stream`]: YAML documents, one at a time, `List` items one at a time
//! - [`json`]: JSON input, `List` items one at a time
//! - [`mirror`]: the mirrors asked, as `serve --swap-policy exists` asks them (their digests
//!   and platforms too), and the sources asked for theirs (`--check-source`: drift)
//! - [`output`]: the table, JSON and copy-list formats
//!
//! Memory grows with the distinct images and their locations, never with the input: a
//! document is dropped once its images are recorded.

pub mod args;
pub mod input;
pub mod json;
pub mod mirror;
pub mod output;
pub mod plan;
pub mod stream;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::k8s::review::{Marks, Metadata, Object, Spec, Template};
use crate::k8s::workload;
use crate::registry::Found;
use crate::rewrite::mirrored::{self, AllowedPrefix, Stage, pulls_from_target};
use crate::rewrite::{Decision, Rule, RuleSet, Unchanged, excerpt};

/// Whether the image was found in its mirror (`--check-mirror`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorState {
    /// The registry has the manifest.
    Present,
    /// The registry says it has no such manifest.
    Absent,
    /// The registry could not be asked (unreachable, refused, timed out).
    Error,
    /// The mirror has it, but the source's tag now names other content (`--check-source`):
    /// the tag moved at the source after the copy.
    Drifted,
}

/// What the mirror said of one image pulled from it: its state, and what a present answer
/// learned (its digest, and its platforms when they were read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Look {
    pub state: MirrorState,
    pub found: Option<Found>,
}

/// Where one distinct image is used.
#[derive(Debug, Default)]
struct Usage {
    /// `Kind/namespace/name list/container`, in the order found.
    locations: Vec<String>,
    /// Used by at least one object that does not opt out of rewriting.
    rewritable: bool,
}

/// Every distinct image found so far, with its locations.
#[derive(Debug, Default)]
pub struct Inventory {
    images: BTreeMap<String, Usage>,
    /// Workloads (objects of a kind `/mutate` rewrites) seen.
    pub workloads: u64,
    /// Documents of kinds `/mutate` does not rewrite that carry containers with images (Argo
    /// Rollouts, Knative Services, OpenKruise CloneSets), counted by kind.
    pub unread: BTreeMap<String, u64>,
}

/// How deep [`carries_containers`] looks: pod templates of known CRDs sit 3 to 6 levels down.
const CONTAINERS_DEPTH: usize = 8;

/// Whether `value` holds, within [`CONTAINERS_DEPTH`] levels, a `containers` list with an
/// `image`: a pod spec in a kind mirrorswap does not know.
fn carries_containers(value: &Value, depth: usize) -> bool {
    match value {
        Value::Object(map) if depth < CONTAINERS_DEPTH => map.iter().any(|(key, value)| {
            let listed = key == "containers"
                && value.as_array().is_some_and(|items| items.iter().any(|item| item.get("image").is_some()));
            listed || carries_containers(value, depth + 1)
        }),
        Value::Array(items) if depth < CONTAINERS_DEPTH => items.iter().any(|item| carries_containers(item, depth + 1)),
        _ => false,
    }
}

/// The fields of a workload document `audit` reads (the pod spec shapes are the server's).
#[derive(Debug, Default, Deserialize)]
struct Workload<'a> {
    #[serde(default, borrow)]
    metadata: WorkloadMeta<'a>,
    #[serde(default, borrow)]
    spec: Option<Box<Spec<'a>>>,
    #[serde(default, borrow)]
    template: Option<Box<Template<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkloadMeta<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    generate_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    labels: Option<Marks<'a>>,
    #[serde(default, borrow)]
    annotations: Option<Marks<'a>>,
}

impl Inventory {
    /// Records the images of `document` if it is a workload, of each workload among its
    /// `items` (a `List`), or of the object an `AdmissionReview` carries (`request.object`).
    /// A document of another kind that carries containers is counted in [`Self::unread`];
    /// other documents are ignored. The error names the object.
    pub fn record(&mut self, document: &Value) -> Result<(), String> {
        if let Some(items) = document.get("items").and_then(Value::as_array) {
            return items.iter().try_for_each(|item| self.record(item));
        }
        let text = |key: &str| document.get(key).and_then(Value::as_str).unwrap_or("");
        let group = text("apiVersion").rsplit_once('/').map_or("", |(group, _)| group);
        if group == "admission.k8s.io" && text("kind") == "AdmissionReview" {
            let Some(object) = document.pointer("/request/object").filter(|object| object.is_object()) else {
                return Ok(());
            };
            let object_text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or("");
            let group = object_text("apiVersion").rsplit_once('/').map_or("", |(group, _)| group);
            let namespace = document.pointer("/request/namespace").and_then(Value::as_str);
            return match workload::known_kind(group, object_text("kind")) {
                Some((kind, spec_path)) => self.record_workload(kind, spec_path, object, namespace),
                None => {
                    self.count_unread(object);
                    Ok(())
                }
            };
        }
        let Some((kind, spec_path)) = workload::known_kind(group, text("kind")) else {
            self.count_unread(document);
            return Ok(());
        };
        self.record_workload(kind, spec_path, document, None)
    }

    /// Counts a document of a kind `/mutate` does not rewrite when it carries containers.
    fn count_unread(&mut self, document: &Value) {
        if carries_containers(document, 0) {
            let kind = document.get("kind").and_then(Value::as_str).filter(|kind| !kind.is_empty()).unwrap_or("-");
            *self.unread.entry(excerpt(kind).to_string()).or_default() += 1;
        }
    }

    /// `N documents of kinds mirrorswap does not read: Rollout (3), Service (1)`, when any.
    pub fn unread_note(&self) -> Option<String> {
        let total: u64 = self.unread.values().sum();
        (total > 0).then(|| {
            let kinds: Vec<String> = self.unread.iter().map(|(kind, count)| format!("{kind} ({count})")).collect();
            format!(
                "{} of kinds mirrorswap does not read, whose containers are neither audited nor rewritten: {}",
                crate::plural::count_s(usize::try_from(total).unwrap_or(usize::MAX), "document"),
                kinds.join(", ")
            )
        })
    }

    /// Records a workload of a known `kind`; `namespace` stands in when the object has none
    /// (API list items carry theirs).
    pub fn record_workload(
        &mut self,
        kind: &str,
        spec_path: &'static [&'static str],
        document: &Value,
        namespace: Option<&str>,
    ) -> Result<(), String> {
        // The manifest's author wrote the name and the value the error quotes: each is cut.
        let name_of = || document.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("-");
        let parsed = Workload::deserialize(document)
            .map_err(|error| format!("{kind} {}: {}", excerpt(name_of()), excerpt(&error.to_string())))?;
        let WorkloadMeta { name, generate_name, namespace: own_namespace, labels, annotations } = parsed.metadata;
        let namespace = own_namespace.as_deref().or(namespace).filter(|ns| !ns.is_empty()).unwrap_or("-").to_owned();
        let name = name.as_deref().or(generate_name.as_deref()).filter(|n| !n.is_empty()).unwrap_or("-").to_owned();
        let metadata = Metadata { labels, annotations, ..Metadata::default() };
        let opted_out = workload::opted_out(&metadata);
        let object = Object { metadata, spec: parsed.spec, template: parsed.template };
        self.workloads += 1;
        for field in workload::image_fields(&object, spec_path) {
            let container = if field.container.is_empty() { "-" } else { field.container };
            let mut location = format!("{kind}/{namespace}/{name} {}/{container}", field.list);
            if opted_out {
                location.push_str(" (opted out)");
            }
            let usage = match self.images.get_mut(field.image) {
                Some(usage) => usage,
                None => self.images.entry(field.image.to_owned()).or_default(),
            };
            usage.locations.push(location);
            usage.rewritable |= !opted_out;
        }
        Ok(())
    }

    /// Records an image of an image list, used at `location` (`FILE:LINE`).
    pub fn record_image(&mut self, image: &str, location: String) {
        let usage = self.images.entry(image.to_owned()).or_default();
        usage.locations.push(location);
        usage.rewritable = true;
    }

    /// Number of distinct images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// True when no image was found.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The images and what `/mutate` would do with each, sorted by image; rules are named
    /// `FILE:LINE` with `origin`. `mirror` says, for an image pulled from a mirror after the
    /// rules (rewritten, or already under a rule's target), whether that mirror has it; other
    /// images are never looked up. `swap` gives, under `--swap-policy exists`, what the
    /// server's policy decided for an image the rules would rewrite: that decision replaces
    /// the rules' own.
    pub fn judge(
        self,
        rules: &RuleSet,
        origin: &str,
        allowed: &[AllowedPrefix],
        mut mirror: impl FnMut(&str) -> Option<Look>,
        mut swap: impl FnMut(&str) -> Option<Swap>,
    ) -> Vec<Row> {
        let mut rows = Vec::with_capacity(self.images.len());
        for (image, usage) in self.images {
            let verdict = mirrored::judge(rules, allowed, &image);
            let (mut rewritten, mut rule, mut reason, mut unmirrored) = if usage.rewritable {
                let rewritten = verdict.decision.new_image().map(str::to_owned);
                let rule = verdict.rule().map(|rule| RuleRef::of(rule, origin));
                (rewritten, rule, verdict.reason(), verdict.unmirrored(Stage::BeforeMutation))
            } else {
                // Every object using it opts out: /mutate leaves it alone on purpose.
                (None, None, "object_opted_out", false)
            };
            // An image pulled from a registry the rule does not name (a port the image chose, a
            // host a `-` target built) is pulled from no mirror: nothing to ask.
            let outside = verdict.outside.as_ref().filter(|_| usage.rewritable);
            let look = match &rewritten {
                _ if outside.is_some() => None,
                Some(pulled) => mirror(pulled),
                None if reason == "mirrored" => mirror(&image),
                None => None,
            };
            let (mut state, mut found) = match look {
                Some(Look { state, found }) => (Some(state), found),
                None => (None, None),
            };
            let mut why = match (&verdict.decision, outside) {
                (_, Some(outside)) if unmirrored => Some(outside.why()),
                (Decision::Unchanged(Unchanged::InvalidReference(_) | Unchanged::InvalidResult { .. }), None)
                    if usage.rewritable =>
                {
                    Some(excerpt(&verdict.why(Stage::BeforeMutation)).to_string())
                }
                _ => None,
            };
            let mut candidates = None;
            if let Some(decided) = swap(&image).filter(|_| usage.rewritable && outside.is_none()) {
                match decided.taken {
                    Some((taken, taken_rule)) => {
                        (rewritten, rule, reason) = (Some(taken), Some(taken_rule), "rewritten");
                    }
                    None => {
                        // Kept: pulled as it is, from its own registry.
                        (rewritten, rule, reason) = (None, None, "not_in_mirror");
                        unmirrored = verdict.unmirrored(Stage::Admitted);
                        why = decided.kept_because;
                    }
                }
                state = Some(decided.state);
                found = decided.found;
                candidates = Some(decided.candidates);
            }
            let digest = found.as_ref().and_then(|found| found.digest).map(|digest| digest.to_string());
            let platforms = found.and_then(|found| found.platforms).map(|platforms| platforms.names());
            let node_pull = rewritten.as_deref().and_then(|rewritten| node_pull(rules, &image, rewritten));
            rows.push(Row {
                image,
                rewritten,
                rule,
                reason,
                why,
                locations: usage.locations,
                mirror: state,
                digest,
                platforms,
                source_digest: None,
                source_failed: false,
                unmirrored,
                candidates,
                node_pull,
            });
        }
        rows
    }

    /// The images `--swap-policy exists` decides: those used by an object that does not opt
    /// out, which the rules would rewrite, sorted.
    pub fn rewritten_images(&self, rules: &RuleSet) -> Vec<String> {
        self.images
            .iter()
            .filter(|(image, usage)| usage.rewritable && matches!(rules.rewrite(image), Decision::Rewritten { .. }))
            .map(|(image, _)| image.clone())
            .collect()
    }

    /// The images `--check-mirror` asks about: each one as it is pulled from a mirror after
    /// the rules (the rewritten image, or an image already under a rule's target, pulled from
    /// exactly the registry the rule's target names), sorted, once each. Images pulled from
    /// elsewhere (a port the image chose included) are never looked up.
    /// `rewritten`: also the images the rules rewrite (not with `--swap-policy exists`, which
    /// decides those itself).
    pub fn mirror_images(&self, rules: &RuleSet, rewritten: bool) -> Vec<String> {
        let mut pulled: Vec<String> = self
            .images
            .iter()
            .filter(|(_, usage)| usage.rewritable)
            .filter_map(|(image, _)| match rules.rewrite(image) {
                Decision::Rewritten { image: pulled, rule } => {
                    Some(pulled).filter(|pulled| rewritten && pulls_from_target(rule, pulled))
                }
                Decision::Unchanged(Unchanged::AlreadyMirrored(rule)) => {
                    Some(image.clone()).filter(|image| pulls_from_target(rule, image))
                }
                Decision::Unchanged(_) => None,
            })
            .collect();
        pulled.sort_unstable();
        pulled.dedup();
        pulled
    }
}

/// Where a node, which names `image` fully qualified (`nginx` is `docker.io/library/nginx`), pulls
/// it through node-level mirrors made from the same rules, when that is not `rewritten`: an
/// official image under `--docker-hub compat`.
fn node_pull(rules: &RuleSet, image: &str, rewritten: &str) -> Option<String> {
    let qualified = mirrored::fully_qualified(image)?;
    let node = rules.rewrite(&qualified).new_image()?.to_owned();
    (node != rewritten).then_some(node)
}

/// A rule as the report names it: `SOURCE::TARGET (FILE:LINE)` in JSON and the wide table,
/// `FILE:LINE` in the narrow one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRef {
    /// The rule as written.
    pub rule: String,
    /// `FILE:LINE`.
    pub at: String,
}

impl RuleRef {
    /// `rule`, read from `origin`.
    pub fn of(rule: &Rule, origin: &str) -> Self {
        Self { rule: excerpt(&rule.to_string()).to_string(), at: format!("{origin}:{}", rule.line) }
    }
}

impl serde::Serialize for RuleRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{} ({})", self.rule, self.at))
    }
}

/// What the server's `--swap-policy exists` decided for one image (`audit --swap-policy exists`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swap {
    /// The candidate taken (pinned with `--pin-digest`) and its rule, or `None`: the
    /// original is kept.
    pub taken: Option<(String, RuleRef)>,
    /// The taken candidate's answer, or for a kept image: `absent` when every candidate said
    /// so (or lacked a required platform), else `error`.
    pub state: MirrorState,
    /// What the taken candidate's present answer learned.
    pub found: Option<Found>,
    /// Every candidate asked, in rule order, and its answer.
    pub candidates: Vec<CandidateAnswer>,
    /// Why the original is kept, candidate by candidate.
    pub kept_because: Option<String>,
}

/// One candidate the policy asked about, as the JSON shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CandidateAnswer {
    /// The candidate image.
    pub image: String,
    /// The rule that makes it.
    pub rule: RuleRef,
    /// `present`, `absent (404)`, `error: …`, `not asked: …`, with `, cached` when it was.
    pub answer: String,
}

/// One distinct image in the report; the JSON output has exactly these keys.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    /// The image as written.
    pub image: String,
    /// What the rules (or, with `--swap-policy exists`, the registries) make of it, `None`
    /// when unchanged.
    pub rewritten: Option<String>,
    /// The deciding rule.
    pub rule: Option<RuleRef>,
    /// Why (see [`mirrored::Verdict::reason`], plus `object_opted_out`, and `not_in_mirror`
    /// with `--swap-policy exists`).
    pub reason: &'static str,
    /// Why, in a sentence, for an image that is invalid, kept by `--swap-policy exists`, or
    /// unmirrored though the rules leave it alone or rewrite it (a wildcard past the host, a
    /// built host name, a port the image chose): the table's notes.
    pub why: Option<String>,
    /// `Kind/namespace/name list/container` of every use.
    pub locations: Vec<String>,
    /// Whether the mirror has it (`None` without `--check-mirror` or `--swap-policy exists`),
    /// or `drifted` (`--check-source`).
    pub mirror: Option<MirrorState>,
    /// The digest the mirror gave for the image as it is pulled (`sha256:…`), when known.
    pub digest: Option<String>,
    /// The platforms the mirror's copy covers (`os/arch[/variant]`), when they were read
    /// (`--require-platforms`).
    pub platforms: Option<Vec<String>>,
    /// The digest the source gave for the image as written (`--check-source`), when asked.
    pub source_digest: Option<String>,
    /// `--check-source` asked the source and got no digest (unreachable, refused, gone):
    /// counted with `--fail-on error`. Not in the JSON (`source_digest` is null).
    #[serde(skip)]
    pub source_failed: bool,
    /// Pulled from outside the mirrors after the rules.
    pub unmirrored: bool,
    /// With `--swap-policy exists`: every candidate asked and its answer.
    pub candidates: Option<Vec<CandidateAnswer>>,
    /// Where a node pulls the image through mirrors rendered from the same rules, when that
    /// is not `rewritten` (`--copy-list-node-paths`). Not in the JSON.
    #[serde(skip)]
    pub node_pull: Option<String>,
}

impl Row {
    /// The copy-list line's SOURCE (and `sync`'s): the image fully qualified as a pull
    /// resolves it.
    pub fn source(&self) -> String {
        mirrored::fully_qualified(&self.image).unwrap_or_else(|| self.image.clone())
    }

    /// The copy-list line's TARGET: the rewritten image without the digest `--pin-digest`
    /// added (a copy goes to the tag; `skopeo copy` takes no tag and digest together).
    pub fn target(&self) -> Option<&str> {
        let rewritten = self.rewritten.as_deref()?;
        if mirrored::pinned(&self.image) {
            return Some(rewritten);
        }
        Some(rewritten.rsplit_once('@').map_or(rewritten, |(unpinned, _)| unpinned))
    }
}
