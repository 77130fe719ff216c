//! Whether an image is pulled from inside the mirrors: the "unmirrored" verdict that
//! `mirrorswap audit` reports and the `/validate` leak guard acts on.
//!
//! An image is *unmirrored* when it is not under any rule's target, not under an allowed
//! registry prefix (`--allow-registry`), and the rules do not leave it alone on purpose (an
//! empty-target rule, `noswap_wildcards`). Before the mutation ([`Stage::BeforeMutation`],
//! audit) an image the rules rewrite is pulled from its mirror; once admitted
//! ([`Stage::Admitted`], validate) an image the rules *would* rewrite arrived unrewritten — the
//! mutating webhook was skipped — and is unmirrored too. An allowed prefix always wins: it is
//! the operator saying those pulls are fine.

use super::engine::{Decision, RuleSet, Unchanged};
use super::reference::{self, DOCKER_HUB, DOCKER_HUB_ALIASES, Reference};
use super::rules::{Rule, RuleKind, Target};

/// A registry or registry/path prefix whose images may be pulled as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedPrefix(Box<str>);

impl AllowedPrefix {
    /// Parses `registry[:port][/path…]`; Docker Hub aliases become `docker.io`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim().trim_end_matches('/');
        let invalid = |why: String| format!("`{text}`: {why}");
        let (registry, path) = match trimmed.split_once('/') {
            Some((registry, path)) => (registry, Some(path)),
            None => (trimmed, None),
        };
        if !reference::is_registry_like(registry) {
            return Err(invalid(format!(
                "must start with a registry host such as `docker.io` (`{registry}` has no `.` or `:` and is not `localhost`)"
            )));
        }
        let (host, port) = reference::split_host_port(registry).map_err(|e| invalid(e.to_string()))?;
        for segment in path.into_iter().flat_map(|path| path.split('/')) {
            reference::validate_path_component(segment).map_err(|e| invalid(format!("`{segment}`: {e}")))?;
        }
        let host = if DOCKER_HUB_ALIASES.contains(&host) { DOCKER_HUB } else { host };
        let port = port.map(|port| format!(":{port}")).unwrap_or_default();
        let path = path.map(|path| format!("/{path}")).unwrap_or_default();
        Ok(Self(format!("{host}{port}{path}").into_boxed_str()))
    }

    /// The prefix, normalized.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the fully qualified `name` (no tag) is this prefix or lies under it on a `/` boundary.
    fn covers(&self, name: &str) -> bool {
        name.strip_prefix(&*self.0).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// When the image is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Before `/mutate` (audit): a rewritten image will be pulled from its mirror.
    BeforeMutation,
    /// After every mutating webhook (validate): the image is pulled exactly as it is.
    Admitted,
}

/// An image's decision together with the allowed prefix that covers it, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict<'r, 'p> {
    /// What the rules decide for the image.
    pub decision: Decision<'r>,
    /// The first allowed prefix the image lies under.
    pub allowed_by: Option<&'p AllowedPrefix>,
}

impl<'r> Verdict<'r, '_> {
    /// True when the image, at `stage`, is pulled from outside the mirrors.
    pub fn unmirrored(&self, stage: Stage) -> bool {
        if self.allowed_by.is_some() {
            return false;
        }
        match &self.decision {
            Decision::Rewritten { .. } => stage == Stage::Admitted,
            Decision::Unchanged(unchanged) => match unchanged {
                Unchanged::AlreadyMirrored(_)
                | Unchanged::OptedOut(_)
                | Unchanged::Identity(_)
                | Unchanged::NoSwapWildcard(_) => false,
                Unchanged::NoRule | Unchanged::InvalidReference(_) | Unchanged::InvalidResult { .. } => true,
            },
        }
    }

    /// A short, stable label for why: `rewritten`, `mirrored`, `opted_out`, `identity`,
    /// `noswap`, `allowed_registry`, `no_rule`, `invalid` or `invalid_result`.
    pub fn reason(&self) -> &'static str {
        match &self.decision {
            Decision::Rewritten { .. } => "rewritten",
            Decision::Unchanged(unchanged @ (Unchanged::NoRule | Unchanged::InvalidReference(_)))
                if self.allowed_by.is_none() =>
            {
                unchanged.label()
            }
            Decision::Unchanged(Unchanged::NoRule | Unchanged::InvalidReference(_)) => "allowed_registry",
            Decision::Unchanged(unchanged) => unchanged.label(),
        }
    }

    /// The rule that decided, if one did.
    pub fn rule(&self) -> Option<&'r Rule> {
        self.decision.rule()
    }
}

/// What `image` is, against `rules` and the `allowed` prefixes.
pub fn judge<'r, 'p>(rules: &'r RuleSet, allowed: &'p [AllowedPrefix], image: &str) -> Verdict<'r, 'p> {
    let decision = rules.rewrite(image);
    let allowed_by = if allowed.is_empty() {
        None
    } else {
        let name = reference::parse(image).ok().map(|reference| qualified_name(&reference));
        name.and_then(|name| allowed.iter().find(|prefix| prefix.covers(&name)))
    };
    Verdict { decision, allowed_by }
}

/// The registry (`host[:port]`, as written) that the images `rule` produces are pulled from:
/// `harbor.example.org:5000` for the target `harbor.example.org:5000/hub`, `docker.io` for a
/// target that names no registry (`team/mirror`). `None` for an empty target, and for a `-`
/// target without `/`, whose host name is built from the source's (`mirror-` makes
/// `mirror-quay.io`, a domain anyone may register).
pub fn target_registry(rule: &Rule) -> Option<&str> {
    let (target, dash) = match &rule.target {
        Target::Keep => return None,
        Target::Plain(target) => (&**target, false),
        Target::Dash(target) => (&**target, true),
    };
    if rule.kind == RuleKind::Exact {
        return reference::parse(target).ok().map(|parsed| parsed.registry_key());
    }
    match target.split_once('/') {
        Some((first, _)) if reference::is_registry_like(first) => Some(first),
        Some(_) => Some(DOCKER_HUB),
        None if dash => None,
        None if reference::is_registry_like(target) => Some(target),
        None => Some(DOCKER_HUB),
    }
}

/// Whether `image` (produced by `rule`, or left alone as already under its target) is pulled
/// from exactly the registry the rule's target names, port included. Only such an image is
/// asked of a registry with credentials, or counts as mirrored for `audit` and `/validate`:
/// otherwise the image chose the port or the host itself (`quay.io:25502/x` through the
/// bare-host rule `quay.io::mirror.example.org` becomes `mirror.example.org:25502/x`).
pub fn pulls_from_target(rule: &Rule, image: &str) -> bool {
    let (Some(target), Ok(parsed)) = (target_registry(rule), reference::parse(image)) else {
        return false;
    };
    parsed.registry_key().eq_ignore_ascii_case(target)
}

/// `image` fully qualified as a pull resolves it: `nginx:1.27` is
/// `docker.io/library/nginx:1.27`, `index.docker.io/x/y` is `docker.io/x/y`.
pub fn fully_qualified(image: &str) -> Option<String> {
    let reference = reference::parse(image).ok()?;
    let mut name = qualified_name(&reference);
    name.push_str(reference.suffix);
    Some(name)
}

/// The reference's name (no tag or digest), fully qualified.
fn qualified_name(reference: &Reference<'_>) -> String {
    let host = if DOCKER_HUB_ALIASES.contains(&reference.host) { DOCKER_HUB } else { reference.host };
    let port = reference.port.map(|port| format!(":{port}")).unwrap_or_default();
    let library = if host == DOCKER_HUB && port.is_empty() && reference.single_segment() { "library/" } else { "" };
    format!("{host}{port}/{library}{}", reference.path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{Options, compile_maps};

    const RULES: &str = "docker.io::m.example.org/hub\nghcr.io::\nnoswap_wildcards::internal\n\
                         quay.io::m.example.org/quay\n[EXACT]gcr.io/a/b:1::m.example.org/gcr/b:1\n";

    fn prefixes(list: &[&str]) -> Vec<AllowedPrefix> {
        list.iter().map(|text| AllowedPrefix::parse(text).unwrap()).collect()
    }

    #[test]
    fn unmirrored_before_and_after_mutation() {
        let rules = compile_maps(RULES, Options::default()).unwrap().rules;
        let allowed = prefixes(&["registry.local:5000", "gcr.io/distroless"]);
        // (image, reason, unmirrored before mutation, unmirrored as admitted)
        let table = [
            ("nginx:1.27", "rewritten", false, true),
            ("quay.io/a/b", "rewritten", false, true),
            ("m.example.org/hub/nginx:1.27", "mirrored", false, false),
            ("m.example.org/gcr/b:1", "mirrored", false, false),
            ("ghcr.io/org/app:1", "opted_out", false, false),
            ("internal.example.com/app:1", "noswap", false, false),
            ("gcr.io/other/app:1", "no_rule", true, true),
            ("gcr.io/distroless/static:nonroot", "allowed_registry", false, false),
            ("gcr.io/distroless-not/static", "no_rule", true, true),
            ("registry.local:5000/team/app", "allowed_registry", false, false),
            ("registry.local/team/app", "no_rule", true, true),
            ("Not An Image", "invalid", true, true),
        ];
        for (image, reason, before, admitted) in table {
            let verdict = judge(&rules, &allowed, image);
            assert_eq!(verdict.reason(), reason, "{image}");
            assert_eq!(verdict.unmirrored(Stage::BeforeMutation), before, "{image} before mutation");
            assert_eq!(verdict.unmirrored(Stage::Admitted), admitted, "{image} admitted");
        }
    }

    #[test]
    fn an_allowed_prefix_wins_over_a_rule_that_would_rewrite() {
        let rules = compile_maps(RULES, Options::default()).unwrap().rules;
        let allowed = prefixes(&["index.docker.io/library"]);
        let verdict = judge(&rules, &allowed, "nginx");
        assert_eq!(verdict.reason(), "rewritten");
        assert_eq!(verdict.allowed_by.map(AllowedPrefix::as_str), Some("docker.io/library"));
        assert!(!verdict.unmirrored(Stage::Admitted));
        assert!(judge(&rules, &allowed, "bitnami/redis").unmirrored(Stage::Admitted));
    }

    #[test]
    fn prefixes_are_checked_and_normalized() {
        for (text, normalized) in [
            ("docker.io", "docker.io"),
            ("registry-1.docker.io/bitnami/", "docker.io/bitnami"),
            ("localhost:5000/a", "localhost:5000/a"),
        ] {
            assert_eq!(AllowedPrefix::parse(text).unwrap().as_str(), normalized);
        }
        for bad in ["nginx", "docker.io/Upper", "", "host:notaport/x", "docker.io//x"] {
            assert!(AllowedPrefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn target_registries_and_images_pulled_from_them() {
        let rules = compile_maps(
            "quay.io::mirror.example.org\ngcr.io::m.example.org:5000/gcr\nk8s.io::team/k8s\n\
             ghcr.io::mirror-\nregistry.k8s.io::m.example.org/k8s-\n[EXACT]a.io/b:1::m.example.org/b:1\n",
            Options::default(),
        )
        .unwrap()
        .rules;
        let rule = |source: &str| rules.rules().iter().find(|rule| &*rule.source == source).unwrap();
        let table = [
            ("quay.io", Some("mirror.example.org")),
            ("gcr.io", Some("m.example.org:5000")),
            ("k8s.io", Some("docker.io")),
            ("ghcr.io", None),
            ("registry.k8s.io", Some("m.example.org")),
            ("a.io/b:1", Some("m.example.org")),
        ];
        for (source, registry) in table {
            assert_eq!(target_registry(rule(source)), registry, "{source}");
        }
        // (image, rule source, pulled from the target's registry)
        let pulls = [
            ("quay.io/x:1", "quay.io", true),
            ("quay.io:25502/x:1", "quay.io", false),
            ("mirror.example.org/x:1", "quay.io", true),
            ("Mirror.Example.org/x:1", "quay.io", true),
            ("mirror.example.org:6666/x:1", "quay.io", false),
            ("gcr.io/p/x:1", "gcr.io", true),
            ("k8s.io/x:1", "k8s.io", true),
            ("ghcr.io/x:1", "ghcr.io", false),
            ("registry.k8s.io/pause:3.9", "registry.k8s.io", true),
        ];
        for (image, source, expected) in pulls {
            let rule = rule(source);
            let produced = match rules.rewrite(image) {
                Decision::Rewritten { image, .. } => image,
                Decision::Unchanged(_) => image.to_owned(),
            };
            assert_eq!(pulls_from_target(rule, &produced), expected, "{image} -> {produced}");
        }
    }

    #[test]
    fn fully_qualified_as_a_pull_resolves_it() {
        let table = [
            ("nginx:1.27", "docker.io/library/nginx:1.27"),
            ("bitnami/redis", "docker.io/bitnami/redis"),
            ("index.docker.io/nginx", "docker.io/library/nginx"),
            (
                "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
            ("quay.io/a/b:1", "quay.io/a/b:1"),
            ("localhost:5000/x:1", "localhost:5000/x:1"),
        ];
        for (image, expected) in table {
            assert_eq!(fully_qualified(image).as_deref(), Some(expected), "{image}");
        }
        assert_eq!(fully_qualified("Bad Image"), None);
    }
}
