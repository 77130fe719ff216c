//! The ordered rewrite candidates of one image, for registry-aware swapping: every rule that
//! matches, from the most specific to the least — `[EXACT]`, each matching `[REPLACE]` in file
//! order, the longest matching source prefix and then each shorter one (under `host:port`
//! first, then under the bare host), then `default`/`all`.
//!
//! The chain stops at the first matching rule that leaves the image alone (an empty target, a
//! rule onto itself, an invalid result) and before the fallback when a `noswap_wildcards`
//! entry is in the image: those mean "leave it alone, no lookup". So the first candidate, if
//! any, is exactly what [`RuleSet::rewrite`] answers, and with none, `then` is its reason.
//! Separate from `rewrite()`, whose hot path it leaves untouched.

use super::engine::{Decision, PrefixMatch, RuleId, RuleSet, Unchanged, View, next_slash};
use super::reference;
use super::render;
use super::rules::Rule;
use super::trie::SegmentTrie;

/// One rewrite to try: the new image and the rule that gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<'r> {
    /// The new reference.
    pub image: String,
    /// The rule that produces it.
    pub rule: &'r Rule,
}

/// The ordered candidates of one image and what happens when none is taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidates<'r> {
    /// Rewrites to try, most specific first. Empty when the image is left alone outright.
    pub targets: Vec<Candidate<'r>>,
    /// Why the image stays as it is when no candidate is taken: the decision that ended the
    /// chain (a noswap wildcard that kept it from the fallback, too), or
    /// [`Unchanged::NoRule`] when the matching rules ran out.
    pub then: Unchanged<'r>,
}

impl<'r> Candidates<'r> {
    /// The decision `rewrite()` makes: the first candidate, or `then`.
    pub fn first_decision(&self) -> Decision<'r> {
        match self.targets.first() {
            Some(first) => Decision::Rewritten { image: first.image.clone(), rule: first.rule },
            None => Decision::Unchanged(self.then),
        }
    }
}

impl<'r> Candidates<'r> {
    /// Folds the decisions of the matching rules (most specific first, the fallback last and
    /// only when no noswap wildcard is in the image) into candidates: duplicates are dropped,
    /// and the first decision that leaves the image alone ends the chain.
    pub(crate) fn chain(
        specific: impl Iterator<Item = Decision<'r>>,
        noswap: Option<&'r str>,
        fallback: impl FnOnce() -> Option<Decision<'r>>,
    ) -> Self {
        let mut targets: Vec<Candidate<'r>> = Vec::new();
        let fallback = || match noswap {
            Some(wildcard) => Some(Decision::Unchanged(Unchanged::NoSwapWildcard(wildcard))),
            None => fallback(),
        };
        for decision in specific.chain(std::iter::once_with(fallback).flatten()) {
            match decision {
                Decision::Rewritten { image, rule } => {
                    if !targets.iter().any(|seen| seen.image == image) {
                        targets.push(Candidate { image, rule });
                    }
                }
                Decision::Unchanged(then) => return Self { targets, then },
            }
        }
        Self { targets, then: Unchanged::NoRule }
    }
}

impl RuleSet {
    /// Every rewrite the rules offer for `image`, most specific first (see the module docs).
    pub fn candidates(&self, image: &str) -> Candidates<'_> {
        let reference = match reference::parse(image) {
            Ok(reference) => reference,
            Err(reason) => return Candidates { targets: Vec::new(), then: Unchanged::InvalidReference(reason) },
        };
        let exact_target = || self.exact_targets.get(image).copied();
        if let Some(id) = self.mirrored_reference(&reference).or_else(exact_target) {
            return Candidates { targets: Vec::new(), then: Unchanged::AlreadyMirrored(self.rule(id)) };
        }
        let view = View::new(&reference, self.docker_hub);
        let exact = self.exact.get(image).map(|&id| {
            let rule = self.rule(id);
            self.finish(&reference, rule, render::exact(rule))
        });
        let replace = self.replace.iter().filter(|(glob, _)| glob.matches(image)).map(|(_, id)| {
            let rule = self.rule(*id);
            self.finish(&reference, rule, render::replace(rule, &reference))
        });
        let prefixes = self.all_prefixes(&view).into_iter().map(|found| {
            let rule = self.rule(found.rule);
            self.finish(&reference, rule, render::prefix(rule, &view, &found))
        });
        let noswap = self.noswap.iter().find(|(wildcard, _)| image.contains(&**wildcard)).map(|(w, _)| &**w);
        let fallback = || {
            let rule = self.rule(self.fallback?);
            Some(self.finish(&reference, rule, render::fallback(rule, &view)))
        };
        Candidates::chain(exact.into_iter().chain(replace).chain(prefixes), noswap, fallback)
    }

    /// Every prefix rule matching `view`, longest first: under `host:port`, then the bare host.
    fn all_prefixes<'a>(&self, view: &View<'_, 'a>) -> Vec<PrefixMatch<'a>> {
        let mut found = self.walk_all(view.registry_key, view);
        if view.reference.port.is_some() {
            let bare = self.walk_all(view.host, view);
            found.extend(bare.into_iter().map(|found| PrefixMatch { port_fallback: true, ..found }));
        }
        found
    }

    /// Like the hot path's walk, but keeps every match, longest first.
    fn walk_all<'a>(&self, registry: &str, view: &View<'_, 'a>) -> Vec<PrefixMatch<'a>> {
        let trie = &self.prefixes;
        let mut matches = Vec::new();
        let Some(mut node) = trie.child(SegmentTrie::<RuleId>::ROOT, registry) else { return matches };
        let path = view.reference.path;
        let found = |id: RuleId, rest_start: usize, library_in_rest: bool| PrefixMatch {
            rule: id,
            rest: &path[rest_start..],
            library_in_rest,
            port_fallback: false,
        };
        if let Some(&id) = trie.value(node) {
            matches.push(found(id, 0, view.library_implied && view.canonical));
        }
        if view.library_implied {
            let library = trie.child(node, "library");
            if let Some(&id) = library.and_then(|library| trie.value(library)) {
                matches.push(found(id, 0, false));
            }
        } else {
            let mut start = 0;
            while let Some(end) = next_slash(path, start) {
                node = match trie.child(node, &path[start..end]) {
                    Some(child) => child,
                    None => break,
                };
                if let Some(&id) = trie.value(node) {
                    matches.push(found(id, end + 1, false));
                }
                start = end + 1;
            }
        }
        matches.reverse();
        matches
    }
}

#[cfg(test)]
mod tests {
    use crate::rewrite::{Options, Unchanged, compile_maps};

    #[test]
    fn candidates_run_from_most_to_least_specific() {
        let text = "[EXACT]docker.io/team/app:1::m.io/exact/app:1\n[REPLACE]*/team/*::m.io/flat\n\
                    docker.io/team::m.io/team\ndocker.io::m.io/hub\ndefault::m.io/any\n";
        let rules = compile_maps(text, Options::default()).unwrap().rules;
        let images = |image: &str| -> Vec<String> {
            rules.candidates(image).targets.into_iter().map(|candidate| candidate.image).collect()
        };
        assert_eq!(
            images("docker.io/team/app:1"),
            ["m.io/exact/app:1", "m.io/flat/app:1", "m.io/team/app:1", "m.io/hub/team/app:1", "m.io/any/team/app:1"]
        );
        assert_eq!(images("quay.io/x/y:2"), ["m.io/any/x/y:2"]);
        assert!(images("m.io/hub/team/app:1").is_empty());
    }

    #[test]
    fn an_empty_target_or_a_noswap_wildcard_ends_the_chain() {
        let text =
            "docker.io/team::m.io/team\ndocker.io::\nquay.io/x::m.io/x\nnoswap_wildcards::keep\ndefault::m.io/any\n";
        let rules = compile_maps(text, Options::default()).unwrap().rules;
        let team = rules.candidates("docker.io/team/app:1");
        assert_eq!(team.targets.len(), 1);
        assert!(matches!(team.then, Unchanged::OptedOut(rule) if rule.line == 2));
        let opted = rules.candidates("docker.io/other/app:1");
        assert!(opted.targets.is_empty() && matches!(opted.then, Unchanged::OptedOut(_)));
        let kept = rules.candidates("quay.io/x/keep:1");
        assert_eq!(kept.targets.len(), 1, "the specific rule, but not the default");
        assert_eq!(kept.then, Unchanged::NoSwapWildcard("keep"));
        let wildcard = rules.candidates("ghcr.io/keep/it:1");
        assert!(wildcard.targets.is_empty() && matches!(wildcard.then, Unchanged::NoSwapWildcard("keep")));
    }

    #[test]
    fn a_port_registry_tries_its_host_port_rules_then_its_bare_host_rules() {
        let text = "r.io:5000/a::m.io/ra\nr.io:5000::m.io/r5\nr.io/a::m.io/a\nr.io::m.io/r\n";
        let rules = compile_maps(text, Options::default()).unwrap().rules;
        let images: Vec<String> =
            rules.candidates("r.io:5000/a/b:1").targets.into_iter().map(|candidate| candidate.image).collect();
        assert_eq!(images, ["m.io/ra/b:1", "m.io/r5/a/b:1", "m.io/a/b:1", "m.io/r/a/b:1"]);
    }
}
