//! Node-level mirrors from the same rules the webhook applies: the core that turns a
//! [`RuleSet`] into a per-source-prefix mirror [`Plan`], shared by every runtime's renderer
//! ([`containerd`], [`crio`], [`k3s`]). A runtime file only decides which routes its format
//! can express and writes them; every rule that does not make it into a file is a [`Skipped`]
//! with its line, never dropped silently.
//!
//! Runtimes name images as `--docker-hub canonical` does (`nginx` is
//! `docker.io/library/nginx`, `index.docker.io` is `docker.io`), and match a `host:port` only
//! under that exact host and port; [`official`] says where the webhook's compat mode sends
//! official images elsewhere.

pub mod containerd;
pub mod crio;
pub mod docker_config;
pub mod k3s;
pub mod official;

use std::collections::BTreeSet;
use std::fmt;

use crate::rewrite::reference::{DOCKER_HUB, DOCKER_HUB_ALIASES};
use crate::rewrite::{RuleKind, RuleSet, Target};

/// A registry host and an optional repository path under it (`harbor.example.org/airgap-images`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// The registry host, with its port if any.
    pub host: String,
    /// The path below the host, without slashes at either end (empty for the whole registry).
    pub path: String,
}

impl Location {
    /// Splits `host[/path]`.
    pub fn parse(text: &str) -> Self {
        match text.split_once('/') {
            Some((host, path)) => Self { host: host.to_owned(), path: path.to_owned() },
            None => Self { host: text.to_owned(), path: String::new() },
        }
    }

    /// `host` or `host/path/rest`, skipping empty parts.
    pub fn join(&self, rest: &str) -> String {
        [self.host.as_str(), self.path.as_str(), rest]
            .iter()
            .filter(|part| !part.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/")
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join(""))
    }
}

/// Where pulls under a source prefix go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// To the mirror: the source prefix is replaced by this location.
    Mirror(Location),
    /// To the source registry itself (an empty target: never rewritten).
    Upstream,
}

/// One prefix rule as node config sees it: pulls under `source` go to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The source registry and path prefix.
    pub source: Location,
    /// Where its pulls go.
    pub to: Destination,
    /// 1-based line of the rule.
    pub line: u32,
    /// The rule as written, for messages.
    pub rule: String,
}

impl Route {
    /// The mirror location, if this route goes to one.
    pub fn mirror(&self) -> Option<&Location> {
        match &self.to {
            Destination::Mirror(location) => Some(location),
            Destination::Upstream => None,
        }
    }

    /// Whether `other` lies strictly under this route's source (same host, longer path on a
    /// `/` boundary).
    pub fn contains(&self, other: &Route) -> bool {
        self.source.host == other.source.host
            && other.source.path.len() > self.source.path.len()
            && (self.source.path.is_empty()
                || other.source.path.strip_prefix(&self.source.path).is_some_and(|rest| rest.starts_with('/')))
    }

    /// This route as not expressible, and why.
    pub fn skipped(&self, reason: impl Into<String>) -> Skipped {
        Skipped { rule: self.rule.clone(), line: self.line, reason: reason.into() }
    }
}

/// A rule a runtime's config cannot express, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The rule as written.
    pub rule: String,
    /// 1-based line of the rule.
    pub line: u32,
    /// Why it is not in the config.
    pub reason: String,
}

/// The rules as node-level routes, plus the rules no runtime can express.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Prefix routes, sorted by source host, then path (a host-level route first).
    pub routes: Vec<Route>,
    /// Rules that are not prefix rules: `[EXACT]`, `[REPLACE]`, `default`, `all`.
    pub skipped: Vec<Skipped>,
}

impl Plan {
    /// Splits the rules into routes and the rules no node config can express.
    pub fn from_rules(rules: &RuleSet) -> Self {
        let mut plan = Self::default();
        for rule in rules.rules() {
            let source = Location::parse(&rule.source);
            if rule.kind == RuleKind::Prefix
                && source.host != DOCKER_HUB
                && DOCKER_HUB_ALIASES.contains(&source.host.as_str())
            {
                plan.skipped.push(Skipped {
                    rule: rule.to_string(),
                    line: rule.line,
                    reason: format!(
                        "runtimes name {} images docker.io, so no node pull has this source: write the rule for \
                         docker.io (--docker-hub canonical reads it so)",
                        source.host
                    ),
                });
                continue;
            }
            let reason = match (rule.kind, &rule.target) {
                (RuleKind::Prefix, Target::Keep) => Some(Destination::Upstream),
                (RuleKind::Prefix, Target::Plain(target)) => Some(Destination::Mirror(Location::parse(target))),
                (RuleKind::Prefix, Target::Dash(target)) => {
                    // TARGET + source host without port, then the whole path: a plain target.
                    let bare = source.host.rsplit_once(':').map_or(source.host.as_str(), |(host, _)| host);
                    Some(Destination::Mirror(Location::parse(
                        &Location::parse(&format!("{target}{bare}")).join(&source.path),
                    )))
                }
                _ => None,
            };
            match reason {
                Some(to) => plan.routes.push(Route { source, to, line: rule.line, rule: rule.to_string() }),
                None => plan.skipped.push(Skipped {
                    rule: rule.to_string(),
                    line: rule.line,
                    reason: match rule.kind {
                        RuleKind::Exact => "[EXACT] replaces single references: node mirrors map registries and paths",
                        RuleKind::Replace => "[REPLACE] globs have no node-level equivalent",
                        _ => "a fallback for every registry: node mirrors need each registry named",
                    }
                    .to_owned(),
                }),
            }
        }
        plan.routes.sort_by(|a, b| a.source.cmp(&b.source));
        plan
    }

    /// The routes grouped by source host, in host order.
    pub fn by_host(&self) -> impl Iterator<Item = (&str, &[Route])> {
        self.routes
            .chunk_by(|a, b| a.source.host == b.source.host)
            .map(|routes| (routes[0].source.host.as_str(), routes))
    }

    /// Every mirror host some route sends pulls to.
    pub fn mirror_hosts(&self) -> BTreeSet<&str> {
        self.routes.iter().filter_map(Route::mirror).map(|location| location.host.as_str()).collect()
    }
}

/// TLS options for the mirror hosts, as the nodes see them.
#[derive(Clone, Debug, Default)]
pub struct MirrorTls {
    /// CA file (a path on the node) that verifies every mirror.
    pub ca: Option<String>,
    /// Mirror hosts whose certificates are not verified.
    pub insecure: BTreeSet<String>,
    /// Verify no mirror's certificate.
    pub insecure_all: bool,
}

impl MirrorTls {
    /// Whether `host`'s certificate goes unverified.
    pub fn insecure(&self, host: &str) -> bool {
        self.insecure_all || self.insecure.contains(host)
    }
}

/// A runtime's config: its files' text and the rules it left out.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    /// (file name relative to the output, text): one file, or one per host for containerd.
    pub files: Vec<(String, String)>,
    /// Rules not in the files, by line.
    pub skipped: Vec<Skipped>,
}

impl Rendered {
    /// Adds the plan's own skipped rules and sorts them by line.
    pub fn with_plan_skips(mut self, plan: &Plan) -> Self {
        self.skipped.extend(plan.skipped.iter().cloned());
        self.skipped.sort_by_key(|skip| skip.line);
        self
    }
}

/// The first line of every generated file.
pub fn header(comment: &str, origin: &str) -> String {
    format!("{comment} Generated by mirrorswap from {origin}: edit the rules and run it again.\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{Options, compile_maps};

    pub(crate) fn plan(text: &str) -> Plan {
        Plan::from_rules(&compile_maps(text, Options::default()).unwrap().rules)
    }

    #[test]
    fn prefix_rules_become_routes_and_the_rest_is_skipped() {
        let plan = plan(
            "quay.io::m.example.org\ndocker.io::m.example.org/hub\ndocker.io/bitnami::m.example.org/b\nghcr.io::\n\
             reg.invalid:5000/x::m.example.org/c-\n[EXACT]a:1::m.example.org/a:1\n[REPLACE]*x*::m.example.org/x\n\
             default::m.example.org/d\n",
        );
        let routes: Vec<_> = plan.routes.iter().map(|r| (r.source.to_string(), r.to.clone(), r.line)).collect();
        let mirror = |text: &str| Destination::Mirror(Location::parse(text));
        assert_eq!(
            routes,
            [
                ("docker.io".into(), mirror("m.example.org/hub"), 2),
                ("docker.io/bitnami".into(), mirror("m.example.org/b"), 3),
                ("ghcr.io".into(), Destination::Upstream, 4),
                ("quay.io".into(), mirror("m.example.org"), 1),
                ("reg.invalid:5000/x".into(), mirror("m.example.org/c-reg.invalid/x"), 5),
            ]
        );
        assert_eq!(plan.skipped.iter().map(|s| s.line).collect::<Vec<_>>(), [6, 7, 8]);
        let hosts: Vec<_> = plan.by_host().map(|(host, routes)| (host, routes.len())).collect();
        assert_eq!(hosts, [("docker.io", 2), ("ghcr.io", 1), ("quay.io", 1), ("reg.invalid:5000", 1)]);
        assert!(plan.routes[0].contains(&plan.routes[1]));
        assert!(!plan.routes[1].contains(&plan.routes[0]));
    }

    #[test]
    fn containment_is_on_slash_boundaries() {
        let plan = plan("gcr.io/foo::m.example.org/a\ngcr.io/foobar::m.example.org/b\ngcr.io/foo/x::m.example.org/c\n");
        let [foo, foobar, foo_x] = [&plan.routes[0], &plan.routes[2], &plan.routes[1]];
        assert_eq!(foobar.source.path, "foobar");
        assert!(!foo.contains(foobar));
        assert!(foo.contains(foo_x));
    }
}
