//! A deliberately naive linear-scan model of the matching semantics.
//!
//! It reads the same compiled rules as [`RuleSet`] but ignores the tries and
//! hash maps: every lookup scans every rule with plain string comparisons.
//! Property tests use it as the oracle for the trie, and the benchmarks use it
//! as the baseline the trie is measured against. O(rules) per image.

use super::candidates::Candidates;
use super::engine::{Decision, PrefixMatch, RuleSet, Unchanged, View};
use super::reference::{self, Reference};
use super::render;
use super::rules::{Rule, RuleKind, Target};

/// The linear-scan model over a compiled rule set.
#[derive(Clone, Copy, Debug)]
pub struct LinearModel<'r> {
    set: &'r RuleSet,
}

impl<'r> LinearModel<'r> {
    /// A model of `set`.
    pub fn new(set: &'r RuleSet) -> Self {
        Self { set }
    }

    /// Decides what `image` becomes, scanning every rule.
    pub fn rewrite(&self, image: &str) -> Decision<'r> {
        let set = self.set;
        let reference = match reference::parse(image) {
            Ok(reference) => reference,
            Err(reason) => return Decision::Unchanged(Unchanged::InvalidReference(reason)),
        };
        if let Some(rule) = set.rules.iter().find(|rule| is_mirrored_by(rule, image, &reference)) {
            return Decision::Unchanged(Unchanged::AlreadyMirrored(rule));
        }
        let of_kind = |kind: RuleKind| set.rules.iter().filter(move |rule| rule.kind == kind);
        if let Some(rule) = of_kind(RuleKind::Exact).find(|rule| *rule.source == *image) {
            return set.finish(&reference, rule, render::exact(rule));
        }
        if let Some((rule, _)) = of_kind(RuleKind::Replace)
            .filter_map(|rule| Some((rule, super::glob::Glob::new(&rule.source).ok()?)))
            .find(|(_, glob)| glob.matches(image))
        {
            return set.finish(&reference, rule, render::replace(rule, &reference));
        }
        let view = View::new(&reference, set.docker_hub);
        let mut candidates = vec![(view.registry_key, false)];
        if reference.port.is_some() {
            candidates.push((view.host, true));
        }
        for (registry, port_fallback) in candidates {
            if let Some(found) = self.longest_prefix(&view, registry, port_fallback) {
                let rule = set.rule(found.rule);
                return set.finish(&reference, rule, render::prefix(rule, &view, &found));
            }
        }
        if let Some((wildcard, _)) = set.noswap.iter().find(|(wildcard, _)| image.contains(&**wildcard)) {
            return Decision::Unchanged(Unchanged::NoSwapWildcard(wildcard));
        }
        match set.rules.iter().find(|rule| matches!(rule.kind, RuleKind::Default | RuleKind::All)) {
            Some(rule) => set.finish(&reference, rule, render::fallback(rule, &view)),
            None => Decision::Unchanged(Unchanged::NoRule),
        }
    }

    /// Every rewrite candidate of `image`, most specific first, scanning every rule.
    pub fn candidates(&self, image: &str) -> Candidates<'r> {
        let set = self.set;
        let unchanged = |then| Candidates { targets: Vec::new(), then };
        let reference = match reference::parse(image) {
            Ok(reference) => reference,
            Err(reason) => return unchanged(Unchanged::InvalidReference(reason)),
        };
        if let Some(rule) = set.rules.iter().find(|rule| is_mirrored_by(rule, image, &reference)) {
            return unchanged(Unchanged::AlreadyMirrored(rule));
        }
        let of_kind = |kind: RuleKind| set.rules.iter().filter(move |rule| rule.kind == kind);
        let mut decisions = Vec::new();
        if let Some(rule) = of_kind(RuleKind::Exact).find(|rule| *rule.source == *image) {
            decisions.push(set.finish(&reference, rule, render::exact(rule)));
        }
        for rule in of_kind(RuleKind::Replace) {
            if super::glob::Glob::new(&rule.source).is_ok_and(|glob| glob.matches(image)) {
                decisions.push(set.finish(&reference, rule, render::replace(rule, &reference)));
            }
        }
        let view = View::new(&reference, set.docker_hub);
        let mut registries = vec![(view.registry_key, false)];
        if reference.port.is_some() {
            registries.push((view.host, true));
        }
        for (registry, port_fallback) in registries {
            for found in self.prefixes(&view, registry, port_fallback) {
                let rule = set.rule(found.rule);
                decisions.push(set.finish(&reference, rule, render::prefix(rule, &view, &found)));
            }
        }
        let noswap = set.noswap.iter().find(|(wildcard, _)| image.contains(&**wildcard)).map(|(w, _)| &**w);
        let fallback = || {
            let rule = set.rules.iter().find(|rule| matches!(rule.kind, RuleKind::Default | RuleKind::All))?;
            Some(set.finish(&reference, rule, render::fallback(rule, &view)))
        };
        Candidates::chain(decisions.into_iter(), noswap, fallback)
    }

    /// The prefix rule with the longest source that `registry/path` starts with, plus `/`.
    fn longest_prefix<'a>(&self, view: &View<'_, 'a>, registry: &str, port_fallback: bool) -> Option<PrefixMatch<'a>> {
        self.prefixes(view, registry, port_fallback).into_iter().next()
    }

    /// Every prefix rule whose source `registry/path` starts with, plus `/`, longest first.
    fn prefixes<'a>(&self, view: &View<'_, 'a>, registry: &str, port_fallback: bool) -> Vec<PrefixMatch<'a>> {
        let path = view.reference.path;
        let lookup =
            if view.library_implied { format!("{registry}/library/{path}") } else { format!("{registry}/{path}") };
        let mut matching: Vec<(usize, &Rule)> = (self.set.rules.iter().enumerate())
            .filter(|(_, rule)| rule.kind == RuleKind::Prefix)
            .filter(|(_, rule)| lookup.strip_prefix(&*rule.source).is_some_and(|rest| rest.starts_with('/')))
            .collect();
        matching.sort_by_key(|(_, rule)| std::cmp::Reverse(rule.source.len()));
        let found = |(id, rule): (usize, &Rule)| {
            let rest = &lookup[rule.source.len() + 1..];
            let (rest, library_in_rest) = if view.library_implied {
                (path, view.canonical && rest.starts_with("library/"))
            } else {
                (&path[path.len() - rest.len()..], false)
            };
            Some(PrefixMatch { rule: u32::try_from(id).ok()?, rest, library_in_rest, port_fallback })
        };
        matching.into_iter().filter_map(found).collect()
    }
}

/// True when `rule`'s target says the image is already in the mirror.
fn is_mirrored_by(rule: &Rule, image: &str, reference: &Reference<'_>) -> bool {
    let target = match (&rule.target, rule.kind) {
        (Target::Keep, _) => return false,
        (Target::Plain(target), RuleKind::Exact) => return **target == *image,
        (Target::Plain(target) | Target::Dash(target), _) => &**target,
    };
    let name = reference.name;
    let bare = reference.registry.and_then(|registry| {
        let (host, port) = reference::split_host_port(registry).ok()?;
        port.map(|_| format!("{host}{}", &name[registry.len()..]))
    });
    [Some(name), bare.as_deref()].into_iter().flatten().any(|name| match &rule.target {
        Target::Dash(_) => name
            .strip_prefix(target)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/') && rest.contains('/')),
        _ => name.strip_prefix(target).is_some_and(|rest| rest.starts_with('/') && rest.len() > 1),
    })
}
