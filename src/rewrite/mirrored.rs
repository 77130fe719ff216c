//! Whether an image is pulled from inside the mirrors: the "unmirrored" verdict that
//! `mirrorswap audit` reports and the `/validate` leak guard acts on.
//!
//! An image is *unmirrored* when it is not under any rule's target, not under an allowed
//! registry prefix (`--allow-registry`), and the rules do not leave it alone on purpose (an
//! empty-target rule, `noswap_wildcards`). Before the mutation ([`Stage::BeforeMutation`],
//! audit) an image the rules rewrite is pulled from its mirror; once admitted
//! ([`Stage::Admitted`], validate) an image the rules *would* rewrite arrived unrewritten — the
//! mutating webhook was skipped — and is unmirrored too. An allowed prefix always wins: it is
//! the operator saying those pulls are fine (before the mutation, it must cover the image as
//! it will be pulled).
//!
//! Three things the engine accepts, for imageswap's sake, do not keep a pull inside the
//! mirrors, so they are unmirrored here ([`Outside`]) while `/mutate` keeps them:
//! - a `noswap_wildcards` entry that does not name the image's registry as only its owner
//!   could ([`wildcard_names_registry`]: the host or a domain above it, an IPv4 prefix, a
//!   host/path prefix): the engine matches it anywhere in the reference, in a tag, a later
//!   path segment or part of a host name anyone may register;
//! - a registry name that a `-` target without `/` builds from the image's own
//!   (`default::mirror-` makes `evil.com/x` into `mirror-evil.com/x`, a domain anyone may
//!   register);
//! - the rule target's host with a port the image chose (`quay.io:25502/x` through
//!   `quay.io::mirror.example.org` is `mirror.example.org:25502/x`; `mirror.example.org:6666/x`
//!   is "already under" `mirror.example.org`): only exactly the target's `host[:port]` is the
//!   mirror ([`pulls_from_target`]).
//!
//! A pinned reference (`MIRROR/team/app:1@sha256:…`, as `--pin-digest` writes it) is under its
//! rule's target like its tag alone, so it is mirrored; [`Verdict::from_mirror`] and
//! [`pinned`] tell `/validate --require-digest` which mirror images are pulled by tag only.

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
        let host = host.to_ascii_lowercase();
        let host = if DOCKER_HUB_ALIASES.contains(&host.as_str()) { DOCKER_HUB.to_owned() } else { host };
        // `:443` is the default port: `host:443` and `host` are one registry.
        let port = port.filter(|port| *port != "443").map(|port| format!(":{port}")).unwrap_or_default();
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

/// Why an image that the rules leave alone or send to a mirror is still pulled from outside
/// the mirrors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outside<'r> {
    /// No `noswap_wildcards` entry that matches the image names its registry.
    WildcardPastHost {
        /// The entry the engine matched.
        wildcard: &'r str,
        /// Its line.
        line: u32,
    },
    /// Pulled from a registry name that `rule`, a `-` target without `/`, builds from the
    /// image's own.
    BuiltHost {
        /// The deciding rule.
        rule: &'r Rule,
        /// The registry pulled from.
        registry: String,
    },
    /// Pulled from the rule target's host with another port (the image's choice).
    ForeignPort {
        /// The deciding rule.
        rule: &'r Rule,
        /// The registry pulled from.
        registry: String,
    },
}

impl Outside<'_> {
    /// The verdict's reason label: `noswap_outside_host`, `built_host` or `foreign_port`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::WildcardPastHost { .. } => "noswap_outside_host",
            Self::BuiltHost { .. } => "built_host",
            Self::ForeignPort { .. } => "foreign_port",
        }
    }

    /// Why, in a sentence.
    pub fn why(&self) -> String {
        match self {
            Self::WildcardPastHost { wildcard, line } => format!(
                "`noswap_wildcards` entry `{wildcard}` (line {line}) matches it, but not as its registry's host, a \
                 domain above it, an IPv4 prefix or a host/path prefix (a match in a tag, a later path segment or \
                 part of a host name anyone may register keeps nothing inside the mirrors)"
            ),
            Self::BuiltHost { rule, registry } => format!(
                "pulled from `{registry}`, a registry name that rule `{rule}` (line {}) builds from the image's \
                 own (a `-` target without `/`) and anyone may register: list it with --allow-registry if it is yours",
                rule.line
            ),
            Self::ForeignPort { rule, registry } => format!(
                "pulled from `{registry}`, not from `{}`, the registry rule `{rule}` (line {}) names: the port is \
                 the image's own choice",
                target_registry(rule).unwrap_or("-"),
                rule.line
            ),
        }
    }
}

/// An image's decision together with the allowed prefix that covers it, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict<'r, 'p> {
    /// What the rules decide for the image.
    pub decision: Decision<'r>,
    /// The first allowed prefix the image lies under.
    pub allowed_by: Option<&'p AllowedPrefix>,
    /// Why the image the rules leave alone, or the image they produce (unless an allowed
    /// prefix covers that one), is pulled from outside the mirrors all the same.
    pub outside: Option<Outside<'r>>,
}

impl<'r> Verdict<'r, '_> {
    /// True when the image, at `stage`, is pulled from outside the mirrors.
    pub fn unmirrored(&self, stage: Stage) -> bool {
        match &self.decision {
            Decision::Rewritten { .. } => match stage {
                Stage::Admitted => self.allowed_by.is_none(),
                Stage::BeforeMutation => self.outside.is_some(),
            },
            Decision::Unchanged(unchanged) => {
                self.allowed_by.is_none() && (self.outside.is_some() || left_outside(unchanged))
            }
        }
    }

    /// A short, stable label for why: `rewritten`, `mirrored`, `opted_out`, `identity`,
    /// `noswap`, `allowed_registry`, `no_rule`, `invalid`, `invalid_result`, or one of
    /// [`Outside::label`]'s (`noswap_outside_host`, `built_host`, `foreign_port`).
    pub fn reason(&self) -> &'static str {
        match (&self.decision, &self.outside) {
            (Decision::Rewritten { .. }, Some(outside)) => outside.label(),
            (Decision::Rewritten { .. }, None) => "rewritten",
            (Decision::Unchanged(unchanged), outside)
                if self.allowed_by.is_some()
                    && (outside.is_some()
                        || matches!(unchanged, Unchanged::NoRule | Unchanged::InvalidReference(_))) =>
            {
                "allowed_registry"
            }
            (Decision::Unchanged(_), Some(outside)) => outside.label(),
            (Decision::Unchanged(unchanged), None) => unchanged.label(),
        }
    }

    /// Why an unmirrored image (at `stage`) is one, in a sentence.
    pub fn why(&self, stage: Stage) -> String {
        let outside = self.outside.as_ref().map(Outside::why);
        match (&self.decision, outside) {
            (Decision::Rewritten { image, rule }, outside) if stage == Stage::Admitted => {
                let mut why = format!(
                    "not rewritten, though rule `{rule}` (line {}) maps it to `{image}`: was the mutating webhook \
                     skipped, or did it keep the image because the mirror lacks it (--swap-policy exists)?",
                    rule.line
                );
                if let Some(outside) = outside {
                    why.push_str(&format!(" (`{image}` would be unmirrored too: {outside})"));
                }
                why
            }
            (_, Some(outside)) => outside,
            (Decision::Unchanged(Unchanged::InvalidReference(reason)), None) => {
                format!("not a valid image reference ({reason})")
            }
            (Decision::Unchanged(Unchanged::InvalidResult { rule, reason }), None) => {
                format!("rule `{rule}` (line {}) would give an invalid reference ({reason})", rule.line)
            }
            _ => "no rule maps it to a mirror and no --allow-registry prefix covers it".to_owned(),
        }
    }

    /// The rule that decided, if one did.
    pub fn rule(&self) -> Option<&'r Rule> {
        self.decision.rule()
    }

    /// True when the image, as it is, is pulled from a mirror: under a rule's target, from
    /// exactly the registry the target names.
    pub fn from_mirror(&self) -> bool {
        matches!(self.decision, Decision::Unchanged(Unchanged::AlreadyMirrored(_))) && self.outside.is_none()
    }
}

/// Whether `image` names a digest (`@sha256:…`, after a tag or not): what is pulled is exactly
/// those bytes.
pub fn pinned(image: &str) -> bool {
    reference::parse(image).is_ok_and(|parsed| parsed.suffix.contains('@'))
}

/// Decisions that leave an image where it is without the rules meaning to.
fn left_outside(unchanged: &Unchanged<'_>) -> bool {
    match unchanged {
        Unchanged::AlreadyMirrored(_)
        | Unchanged::OptedOut(_)
        | Unchanged::Identity(_)
        | Unchanged::NoSwapWildcard(_) => false,
        Unchanged::NoRule | Unchanged::InvalidReference(_) | Unchanged::InvalidResult { .. } => true,
    }
}

/// What `image` is, against `rules` and the `allowed` prefixes.
pub fn judge<'r, 'p>(rules: &'r RuleSet, allowed: &'p [AllowedPrefix], image: &str) -> Verdict<'r, 'p> {
    let covered = |image: &str| -> Option<&'p AllowedPrefix> {
        if allowed.is_empty() {
            return None;
        }
        let name = qualified_name(&reference::parse(image).ok()?);
        allowed.iter().find(|prefix| prefix.covers(&name))
    };
    let decision = rules.rewrite(image);
    let outside = match &decision {
        Decision::Unchanged(Unchanged::NoSwapWildcard(wildcard)) => wildcard_past_host(rules, image, wildcard),
        Decision::Unchanged(Unchanged::AlreadyMirrored(rule)) => outside_target(rule, image),
        Decision::Rewritten { image: pulled, rule } => {
            outside_target(rule, pulled).filter(|_| covered(pulled).is_none())
        }
        Decision::Unchanged(_) => None,
    };
    Verdict { decision, allowed_by: covered(image), outside }
}

/// [`Outside::WildcardPastHost`] for an image the engine left alone for `wildcard`, unless
/// some entry names its registry as only the registry's owner can make it match
/// ([`wildcard_names_registry`]).
fn wildcard_past_host<'r>(rules: &'r RuleSet, image: &str, wildcard: &str) -> Option<Outside<'r>> {
    let parsed = reference::parse(image).ok()?;
    if rules.noswap_wildcards().any(|(entry, _)| wildcard_names_registry(entry, &parsed)) {
        return None;
    }
    rules
        .noswap_wildcards()
        .find(|(entry, _)| *entry == wildcard)
        .map(|(wildcard, line)| Outside::WildcardPastHost { wildcard, line })
}

/// Whether a `noswap_wildcards` entry names the registry of `image` in a way an outsider
/// cannot imitate with a domain of their own:
/// - `host` or `host:port`: that registry, or a host under that domain (`twr.io` names
///   `registry.twr.io`, not `twr.io.evil.com` nor `nottwr.io`);
/// - ending in `.` (`10.0.0.`): an IPv4 address under that prefix (never a host name:
///   `10.0.0.evil.com` is anyone's);
/// - with a `/` (`vendor.io/approved`): that registry and path prefix, on `/` boundaries.
///
/// A fragment of a name (`walrus`, matching `walrus.evil.com/x`) names nothing here.
pub fn wildcard_names_registry(entry: &str, image: &Reference<'_>) -> bool {
    let entry = entry.trim();
    let registry = image.registry_key();
    if entry.contains('/') {
        let name = match image.registry {
            Some(_) => std::borrow::Cow::Borrowed(image.name),
            None => std::borrow::Cow::Owned(format!("{DOCKER_HUB}/{}", image.name)),
        };
        let entry = entry.trim_end_matches('/');
        let (Some(head), Some(rest)) = (name.get(..entry.len()), name.get(entry.len()..)) else { return false };
        return head.eq_ignore_ascii_case(entry) && (rest.is_empty() || rest.starts_with('/'));
    }
    if entry.ends_with('.') {
        let is_ipv4 = image.host.split('.').count() == 4
            && image.host.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        return is_ipv4 && image.host.starts_with(entry);
    }
    let entry = entry.trim_start_matches('.');
    if entry.is_empty() {
        return false;
    }
    let within = |name: &str| {
        name.eq_ignore_ascii_case(entry)
            || (name.len() > entry.len()
                && name.as_bytes()[name.len() - entry.len() - 1] == b'.'
                && name[name.len() - entry.len()..].eq_ignore_ascii_case(entry))
    };
    if entry.contains(':') { within(registry) } else { within(image.host) }
}

/// Why `pulled`, produced by `rule` or left alone as under its target, is not pulled from
/// the registry the rule's target names ([`pulls_from_target`]); `None` when it is.
fn outside_target<'r>(rule: &'r Rule, pulled: &str) -> Option<Outside<'r>> {
    if pulls_from_target(rule, pulled) {
        return None;
    }
    let registry = reference::parse(pulled).map_or(pulled, |parsed| parsed.registry_key()).to_owned();
    Some(match target_registry(rule) {
        None => Outside::BuiltHost { rule, registry },
        Some(_) => Outside::ForeignPort { rule, registry },
    })
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
/// bare-host rule `quay.io::mirror.example.org` becomes `mirror.example.org:25502/x`). `:443`
/// is the default port: `host:443` and `host` are one registry.
pub fn pulls_from_target<'r>(rule: &'r Rule, image: &'r str) -> bool {
    let (Some(target), Ok(parsed)) = (target_registry(rule), reference::parse(image)) else {
        return false;
    };
    let default_port = |registry: &'r str| -> &'r str { registry.strip_suffix(":443").unwrap_or(registry) };
    default_port(parsed.registry_key()).eq_ignore_ascii_case(default_port(target))
}

/// `image` fully qualified as a pull resolves it: `nginx:1.27` is
/// `docker.io/library/nginx:1.27`, `index.docker.io/x/y` is `docker.io/x/y`.
pub fn fully_qualified(image: &str) -> Option<String> {
    let reference = reference::parse(image).ok()?;
    let mut name = qualified_name(&reference);
    name.push_str(reference.suffix);
    Some(name)
}

/// The reference's name (no tag or digest), fully qualified: the host in lowercase, without
/// the default port `:443`.
fn qualified_name(reference: &Reference<'_>) -> String {
    let host = reference.host.to_ascii_lowercase();
    let host = if DOCKER_HUB_ALIASES.contains(&host.as_str()) { DOCKER_HUB } else { host.as_str() };
    let port = reference.port.filter(|port| *port != "443").map(|port| format!(":{port}")).unwrap_or_default();
    let library = if host == DOCKER_HUB && port.is_empty() && reference.single_segment() { "library/" } else { "" };
    format!("{host}{port}/{library}{}", reference.path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{Options, compile_maps};

    const RULES: &str = "docker.io::m.example.org/hub\nghcr.io::\nnoswap_wildcards::internal\n\
                         quay.io::m.example.org/quay\n[EXACT]gcr.io/a/b:1::m.example.org/gcr/b:1\n";

    fn compiled(text: &str) -> RuleSet {
        compile_maps(text, Options::default()).unwrap().rules
    }

    fn prefixes(list: &[&str]) -> Vec<AllowedPrefix> {
        list.iter().map(|text| AllowedPrefix::parse(text).unwrap()).collect()
    }

    #[test]
    fn unmirrored_before_and_after_mutation() {
        let rules = compiled(RULES);
        let allowed = prefixes(&["registry.local:5000", "gcr.io/distroless"]);
        // (image, reason, unmirrored before mutation, unmirrored as admitted)
        let table = [
            ("nginx:1.27", "rewritten", false, true),
            ("quay.io/a/b", "rewritten", false, true),
            ("m.example.org/hub/nginx:1.27", "mirrored", false, false),
            ("m.example.org/gcr/b:1", "mirrored", false, false),
            ("ghcr.io/org/app:1", "opted_out", false, false),
            ("registry.internal/app:1", "noswap", false, false),
            // A fragment of a host name anyone may register names nothing.
            ("internal.example.com/app:1", "noswap_outside_host", true, true),
            ("gcr.io/other/app:1", "no_rule", true, true),
            ("gcr.io/distroless/static:nonroot", "allowed_registry", false, false),
            ("gcr.io/distroless-not/static", "no_rule", true, true),
            ("registry.local:5000/team/app", "allowed_registry", false, false),
            ("Registry.Local:5000/team/app", "allowed_registry", false, false),
            ("gcr.io:443/distroless/static:nonroot", "allowed_registry", false, false),
            ("registry.local/team/app", "no_rule", true, true),
            ("Not An Image", "invalid", true, true),
        ];
        assert_verdicts(&rules, &allowed, &table);
    }

    #[test]
    fn a_pinned_mirror_reference_is_mirrored_and_says_so() {
        let rules = compiled(RULES);
        let digest = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        // (image, reason, pulled from a mirror, pinned)
        let table = [
            (format!("m.example.org/hub/nginx:1.27{digest}"), "mirrored", true, true),
            (format!("m.example.org/hub/nginx{digest}"), "mirrored", true, true),
            ("m.example.org/hub/nginx:1.27".to_owned(), "mirrored", true, false),
            (format!("m.example.org:6666/hub/nginx:1.27{digest}"), "foreign_port", false, true),
            (format!("nginx:1.27{digest}"), "rewritten", false, true),
            ("ghcr.io/org/app:1".to_owned(), "opted_out", false, false),
            ("Not An Image@sha256:x".to_owned(), "invalid", false, false),
        ];
        for (image, reason, from_mirror, is_pinned) in table {
            let verdict = judge(&rules, &[], &image);
            assert_eq!(verdict.reason(), reason, "{image}");
            assert_eq!(verdict.from_mirror(), from_mirror, "{image}");
            assert_eq!(pinned(&image), is_pinned, "{image}");
            if from_mirror {
                assert!(!verdict.unmirrored(Stage::Admitted), "{image}");
            }
        }
    }

    #[test]
    fn an_allowed_prefix_wins_over_a_rule_that_would_rewrite() {
        let rules = compiled(RULES);
        let allowed = prefixes(&["index.docker.io/library"]);
        let verdict = judge(&rules, &allowed, "nginx");
        assert_eq!(verdict.reason(), "rewritten");
        assert_eq!(verdict.allowed_by.map(AllowedPrefix::as_str), Some("docker.io/library"));
        assert!(!verdict.unmirrored(Stage::Admitted));
        assert!(judge(&rules, &allowed, "bitnami/redis").unmirrored(Stage::Admitted));
    }

    /// (image, reason, unmirrored before mutation, unmirrored as admitted) under `rules`.
    fn assert_verdicts(rules: &RuleSet, allowed: &[AllowedPrefix], table: &[(&str, &str, bool, bool)]) {
        for &(image, reason, before, admitted) in table {
            let verdict = judge(rules, allowed, image);
            assert_eq!(verdict.reason(), reason, "{image}");
            assert_eq!(verdict.unmirrored(Stage::BeforeMutation), before, "{image} before mutation");
            assert_eq!(verdict.unmirrored(Stage::Admitted), admitted, "{image} admitted");
        }
    }

    #[test]
    fn a_wildcard_keeps_a_pull_inside_only_when_it_names_the_registry() {
        let rules = compiled(
            "default::m.example.org/fallback\nnoswap_wildcards::internal.example.org,10.0.0.,vendor.io/approved\n",
        );
        assert_verdicts(
            &rules,
            &[],
            &[
                ("internal.example.org/team/x:1", "noswap", false, false),
                ("registry.internal.example.org:5000/x:1", "noswap", false, false),
                ("10.0.0.5:5000/x", "noswap", false, false),
                ("vendor.io/approved/x:1", "noswap", false, false),
                ("vendor.io/approved:1", "noswap", false, false),
                // Hosts an outsider can register, that only contain or extend the entry.
                ("internal.example.org.evil.com/x:1", "noswap_outside_host", true, true),
                ("notinternal.example.org/x:1", "noswap_outside_host", true, true),
                ("10.0.0.evil.com/x:1", "noswap_outside_host", true, true),
                ("vendor.io/approved-not/x", "noswap_outside_host", true, true),
                ("ghcr.io/evil/x:10.0.0.1", "noswap_outside_host", true, true),
                ("evil.com/internal.example.org/x:1", "noswap_outside_host", true, true),
                ("evil.com/vendor.io/approved/x", "noswap_outside_host", true, true),
                ("team/app:10.0.0.1", "noswap_outside_host", true, true),
                ("vendor.io/other/x", "rewritten", false, true),
            ],
        );
        // `/mutate` keeps imageswap's substring semantics.
        assert!(matches!(rules.rewrite("ghcr.io/evil/x:10.0.0.1"), Decision::Unchanged(Unchanged::NoSwapWildcard(_))));
        let why = judge(&rules, &[], "ghcr.io/evil/x:10.0.0.1").why(Stage::Admitted);
        assert!(
            why.starts_with("`noswap_wildcards` entry `10.0.0.` (line 2) matches it, but not as its registry's host"),
            "{why}"
        );
        // An allowed prefix still wins.
        assert_verdicts(
            &rules,
            &prefixes(&["ghcr.io/evil"]),
            &[("ghcr.io/evil/x:10.0.0.1", "allowed_registry", false, false)],
        );
    }

    #[test]
    fn only_the_exact_target_registry_is_the_mirror() {
        let rules = compiled("quay.io::127.0.0.1\nregistry.example.org::harbor.example.org/quay\ndefault::mirror-\n");
        assert_verdicts(
            &rules,
            &[],
            &[
                ("quay.io/x:1", "rewritten", false, true),
                ("127.0.0.1/x:1", "mirrored", false, false),
                ("harbor.example.org/quay/x:1", "mirrored", false, false),
                // A port the image chose: through the bare-host rule, or "already under" the target.
                ("quay.io:25502/x:1", "foreign_port", true, true),
                ("127.0.0.1:25502/x:1", "foreign_port", true, true),
                ("harbor.example.org:6666/quay/x:1", "foreign_port", true, true),
                // A host name built by a `-` target without `/`.
                ("evil.com/x:1", "built_host", true, true),
                ("mirror-evil.com/x:1", "built_host", true, true),
            ],
        );
        let why = |image: &str, stage| judge(&rules, &[], image).why(stage);
        assert_eq!(
            why("harbor.example.org:6666/quay/x:1", Stage::Admitted),
            "pulled from `harbor.example.org:6666`, not from `harbor.example.org`, the registry rule \
             `registry.example.org::harbor.example.org/quay` (line 2) names: the port is the image's own choice"
        );
        assert!(
            why("quay.io:25502/x:1", Stage::BeforeMutation)
                .starts_with("pulled from `127.0.0.1:25502`, not from `127.0.0.1`")
        );
        assert!(why("mirror-evil.com/x:1", Stage::Admitted).starts_with(
            "pulled from `mirror-evil.com`, a registry name that rule `default::mirror-` (line 3) builds from the image's own"
        ));
        let admitted = why("evil.com/x:1", Stage::Admitted);
        assert!(
            admitted
                .starts_with("not rewritten, though rule `default::mirror-` (line 3) maps it to `mirror-evil.com/x:1`"),
            "{admitted}"
        );
        assert!(
            admitted.contains("(`mirror-evil.com/x:1` would be unmirrored too: pulled from `mirror-evil.com`"),
            "{admitted}"
        );
        // --allow-registry covers the image as it will be pulled.
        let allowed = prefixes(&["mirror-evil.com", "harbor.example.org:6666"]);
        assert_verdicts(
            &rules,
            &allowed,
            &[
                ("evil.com/x:1", "rewritten", false, true),
                ("mirror-evil.com/x:1", "allowed_registry", false, false),
                ("harbor.example.org:6666/quay/x:1", "allowed_registry", false, false),
                ("quay.io:25502/x:1", "foreign_port", true, true),
            ],
        );
        // An allowed source does not cover what it is rewritten to.
        assert_verdicts(&rules, &prefixes(&["quay.io:25502"]), &[("quay.io:25502/x:1", "foreign_port", true, false)]);
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
        let rules = compiled(
            "quay.io::mirror.example.org\ngcr.io::m.example.org:5000/gcr\nk8s.io::team/k8s\n\
             ghcr.io::mirror-\nregistry.k8s.io::m.example.org/k8s-\n[EXACT]a.io/b:1::m.example.org/b:1\n",
        );
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
            ("quay.io:443/x:1", "quay.io", true),
            ("mirror.example.org:443/x:1", "quay.io", true),
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
