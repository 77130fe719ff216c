//! `mirrorswap audit`'s shell: workloads from manifests or a live cluster, the images in
//! them gathered per distinct image, and each judged by the rules without changing anything.
//!
//! - [`stream`]: YAML documents, one at a time, `List` items one at a time
//! - [`json`]: JSON input, `List` items one at a time
//! - [`live`]: Pods and pod templates through the Kubernetes API, page by page
//! - [`output`]: the table, JSON and copy-list formats
//!
//! Memory grows with the distinct images and their locations, never with the input: a
//! document is dropped once its images are recorded.

pub mod json;
pub mod live;
pub mod output;
pub mod stream;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::rewrite::mirrored::{self, AllowedPrefix, Stage, pulls_from_target};
use crate::rewrite::{Decision, RuleSet, Unchanged, excerpt};
use crate::server::review::{Marks, Metadata, Object, Spec, Template};
use crate::server::workload;

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
    /// Records the images of `document` if it is a workload, or of each workload among its
    /// `items` (a `List`). Other documents are ignored. The error names the object.
    pub fn record(&mut self, document: &Value) -> Result<(), String> {
        if let Some(items) = document.get("items").and_then(Value::as_array) {
            return items.iter().try_for_each(|item| self.record(item));
        }
        let text = |key: &str| document.get(key).and_then(Value::as_str).unwrap_or("");
        let group = text("apiVersion").rsplit_once('/').map_or("", |(group, _)| group);
        let Some((kind, spec_path)) = workload::known_kind(group, text("kind")) else {
            return Ok(());
        };
        self.record_workload(kind, spec_path, document, None)
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

    /// Number of distinct images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// True when no image was found.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The images and what `/mutate` would do with each, sorted by image. `mirror` says, for
    /// an image pulled from a mirror after the rules (rewritten, or already under a rule's
    /// target), whether that mirror has it; other images are never looked up.
    pub fn judge(
        self,
        rules: &RuleSet,
        allowed: &[AllowedPrefix],
        mut mirror: impl FnMut(&str) -> Option<MirrorState>,
    ) -> Vec<Row> {
        let mut rows = Vec::with_capacity(self.images.len());
        for (image, usage) in self.images {
            let verdict = mirrored::judge(rules, allowed, &image);
            let (rewritten, rule, reason, unmirrored) = if usage.rewritable {
                let rewritten = verdict.decision.new_image().map(str::to_owned);
                let rule = verdict.rule().map(|rule| format!("{rule} (line {})", rule.line));
                (rewritten, rule, verdict.reason(), verdict.unmirrored(Stage::BeforeMutation))
            } else {
                // Every object using it opts out: /mutate leaves it alone on purpose.
                (None, None, "object_opted_out", false)
            };
            // An image pulled from a registry the rule does not name (a port the image chose, a
            // host a `-` target built) is pulled from no mirror: nothing to ask.
            let outside = verdict.outside.as_ref().filter(|_| usage.rewritable);
            let mirror = match &rewritten {
                _ if outside.is_some() => None,
                Some(pulled) => mirror(pulled),
                None if reason == "mirrored" => mirror(&image),
                None => None,
            };
            let why = outside.filter(|_| unmirrored).map(mirrored::Outside::why);
            rows.push(Row { image, rewritten, rule, reason, locations: usage.locations, mirror, unmirrored, why });
        }
        rows
    }

    /// The images `--check-mirror` asks about: each one as it is pulled from a mirror after
    /// the rules (the rewritten image, or an image already under a rule's target, pulled from
    /// exactly the registry the rule's target names), sorted, once each. Images pulled from
    /// elsewhere (a port the image chose included) are never looked up.
    pub fn mirror_images(&self, rules: &RuleSet) -> Vec<String> {
        let mut pulled: Vec<String> = self
            .images
            .iter()
            .filter(|(_, usage)| usage.rewritable)
            .filter_map(|(image, _)| match rules.rewrite(image) {
                Decision::Rewritten { image: pulled, rule } => {
                    Some(pulled).filter(|pulled| pulls_from_target(rule, pulled))
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

/// One distinct image in the report; the JSON output has exactly these keys.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    /// The image as written.
    pub image: String,
    /// What the rules make of it, `None` when unchanged.
    pub rewritten: Option<String>,
    /// The deciding rule, `SOURCE::TARGET (line N)`.
    pub rule: Option<String>,
    /// Why (see [`mirrored::Verdict::reason`], plus `object_opted_out`).
    pub reason: &'static str,
    /// `Kind/namespace/name list/container` of every use.
    pub locations: Vec<String>,
    /// Whether the mirror has it (`None` without `--check-mirror`).
    pub mirror: Option<MirrorState>,
    /// Pulled from outside the mirrors after the rules.
    pub unmirrored: bool,
    /// For an image unmirrored though the rules leave it alone or rewrite it (a wildcard past
    /// the host, a built host name, a port the image chose), why in a sentence: the table's
    /// notes. Not in the JSON, whose `reason` says it.
    #[serde(skip)]
    pub why: Option<String>,
}

impl Row {
    /// The copy-list line's SOURCE: the image fully qualified as a pull resolves it.
    pub fn source(&self) -> String {
        mirrored::fully_qualified(&self.image).unwrap_or_else(|| self.image.clone())
    }
}
