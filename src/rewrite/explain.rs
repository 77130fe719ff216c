//! Human-readable explanations of decisions: which rule decided (kind, source, target and
//! `FILE:LINE`) or why none did. Used by `mirrorswap rewrite --explain` and by the server's
//! debug log, so both say the same thing.

use std::fmt;

use super::engine::{Decision, RuleSet, Unchanged};
use super::rules::Rule;

/// One image's decision, explained; `Display` writes one line.
#[derive(Debug)]
pub struct Explanation<'a> {
    /// The image as given.
    pub image: &'a str,
    /// What the rules decided for it.
    pub decision: &'a Decision<'a>,
    /// The rule set that decided (for `noswap_wildcards` lines).
    pub rules: &'a RuleSet,
    /// The rules file's name, for `FILE:LINE`.
    pub origin: &'a str,
}

/// `KIND SOURCE::TARGET (FILE:LINE)`.
struct RuleAt<'a>(&'a Rule, &'a str);

impl fmt::Display for RuleAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let RuleAt(rule, origin) = self;
        write!(f, "{} rule `{rule}` ({origin}:{})", rule.kind.name(), rule.line)
    }
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (image, origin) = (self.image, self.origin);
        match self.decision {
            Decision::Rewritten { image: new_image, rule } => {
                write!(f, "{image} -> {new_image}: {}", RuleAt(rule, origin))
            }
            Decision::Unchanged(reason) => {
                write!(f, "{image} unchanged: ")?;
                match reason {
                    Unchanged::InvalidReference(why) => write!(f, "not a valid image reference ({why})"),
                    Unchanged::AlreadyMirrored(rule) => {
                        write!(f, "already mirrored: under the target of {}", RuleAt(rule, origin))
                    }
                    Unchanged::OptedOut(rule) => {
                        write!(f, "opted out: {} has an empty target", RuleAt(rule, origin))
                    }
                    Unchanged::Identity(rule) => write!(f, "{} maps it to itself", RuleAt(rule, origin)),
                    Unchanged::NoSwapWildcard(wildcard) => {
                        let line = self.rules.noswap_wildcards().find(|(w, _)| w == wildcard).map_or(0, |(_, l)| l);
                        write!(
                            f,
                            "no specific rule, and noswap wildcard `{wildcard}` ({origin}:{line}) keeps it from the default"
                        )
                    }
                    Unchanged::NoRule => f.write_str("no rule matches and there is no default"),
                    Unchanged::InvalidResult { rule, reason } => {
                        write!(f, "{} would give an invalid reference ({reason})", RuleAt(rule, origin))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{Options, compile_maps};

    #[test]
    fn every_kind_of_decision_is_explained_with_its_line() {
        let text = "docker.io::m.example.org/hub\nghcr.io::\nnoswap_wildcards::internal\ndefault::m.example.org/any\n\
                    quay.io::quay.io\n";
        let rules = compile_maps(text, Options::default()).unwrap().rules;
        let cases = [
            (
                "nginx:1.27",
                "nginx:1.27 -> m.example.org/hub/nginx:1.27: prefix rule `docker.io::m.example.org/hub` (r:1)",
            ),
            ("ghcr.io/a/b:1", "ghcr.io/a/b:1 unchanged: opted out: prefix rule `ghcr.io::` (r:2) has an empty target"),
            (
                "internal.example.com/a:1",
                "internal.example.com/a:1 unchanged: no specific rule, and noswap wildcard `internal` (r:3) keeps it from the default",
            ),
            (
                "m.example.org/hub/nginx:1",
                "m.example.org/hub/nginx:1 unchanged: already mirrored: under the target of prefix rule `docker.io::m.example.org/hub` (r:1)",
            ),
            // A rule onto itself: its sources are all under its target.
            (
                "quay.io/a/b",
                "quay.io/a/b unchanged: already mirrored: under the target of prefix rule `quay.io::quay.io` (r:5)",
            ),
            ("Bad Image", "Bad Image unchanged: not a valid image reference ("),
        ];
        for (image, expected) in cases {
            let decision = rules.rewrite(image);
            let line = Explanation { image, decision: &decision, rules: &rules, origin: "r" }.to_string();
            assert!(line.starts_with(expected), "{line}");
        }
        let none = compile_maps("docker.io::m.example.org/hub\n", Options::default()).unwrap().rules;
        let decision = none.rewrite("ghcr.io/a:1");
        let line = Explanation { image: "ghcr.io/a:1", decision: &decision, rules: &none, origin: "r" }.to_string();
        assert_eq!(line, "ghcr.io/a:1 unchanged: no rule matches and there is no default");
    }
}
