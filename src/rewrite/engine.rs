//! The compiled rule set and the per-image decision: the hot path.
//!
//! Precedence, first match wins: invalid reference (left alone), already
//! mirrored (left alone), `[EXACT]`, `[REPLACE]` in file order, the longest
//! source prefix on `/` boundaries (host:port first, then the bare host),
//! `noswap_wildcards`, then the `default`/`all` fallback.
//!
//! A decision that leaves the image alone never allocates; a rewrite
//! allocates exactly the new string.

use super::fxhash::FxHashMap;
use super::glob::Glob;
use super::reference::{self, DOCKER_HUB, DOCKER_HUB_ALIASES, InvalidReference, MAX_NAME_LEN, Reference};
use super::render;
use super::rules::{Rule, RuleKind, Target};
use super::trie::SegmentTrie;

/// Index of a rule in [`RuleSet::rules`].
pub type RuleId = u32;

/// How Docker Hub references are normalized before matching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DockerHubMode {
    /// As imageswap: `nginx` is matched as `docker.io/nginx` and never gains `library/`.
    #[default]
    Compat,
    /// As containerd pulls: `nginx` is `docker.io/library/nginx`, and
    /// `index.docker.io`/`registry-1.docker.io` are `docker.io`.
    Canonical,
}

/// Options that shape how rules compile and match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Docker Hub normalization.
    pub docker_hub: DockerHubMode,
    /// Skip bad lines with a warning instead of failing the load.
    pub lenient: bool,
}

/// Marks on the trie of mirror targets: references under them are left alone.
#[derive(Clone, Debug, Default)]
pub(crate) struct MirrorMark {
    /// A rule whose target is exactly this node's path.
    pub whole: Option<RuleId>,
    /// Dash targets whose last segment starts a child segment here (`mirror-` in `host/mirror-`).
    pub dash: Vec<(Box<str>, RuleId)>,
}

/// A compiled, immutable rule set. Cheap to share between threads.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) exact: FxHashMap<Box<str>, RuleId>,
    pub(crate) exact_targets: FxHashMap<Box<str>, RuleId>,
    pub(crate) replace: Vec<(Glob, RuleId)>,
    pub(crate) prefixes: SegmentTrie<RuleId>,
    pub(crate) mirrors: SegmentTrie<MirrorMark>,
    pub(crate) has_mirrors: bool,
    /// Bit `n` set when some target's first segment is `n` bytes long (63: 63 or more);
    /// all ones when a `-` target has no `/` and so may start any first segment.
    pub(crate) mirror_first_lengths: u64,
    pub(crate) noswap: Vec<(Box<str>, u32)>,
    pub(crate) fallback: Option<RuleId>,
    pub(crate) docker_hub: DockerHubMode,
}

/// What happened to one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<'r> {
    /// The image is rewritten to `image` by `rule`.
    Rewritten {
        /// The new reference.
        image: String,
        /// The rule that decided.
        rule: &'r Rule,
    },
    /// The image is left as it is.
    Unchanged(Unchanged<'r>),
}

/// Why an image is left as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unchanged<'r> {
    /// Not a valid image reference.
    InvalidReference(InvalidReference),
    /// Already under a rule's target (or equal to an `[EXACT]` target).
    AlreadyMirrored(&'r Rule),
    /// The deciding rule has an empty target.
    OptedOut(&'r Rule),
    /// The deciding rule maps the image to itself.
    Identity(&'r Rule),
    /// No specific rule matched and this `noswap_wildcards` entry is in the image.
    NoSwapWildcard(&'r str),
    /// No rule matched and there is no fallback.
    NoRule,
    /// The rule would produce an invalid reference (e.g. longer than 255 characters).
    InvalidResult {
        /// The rule that matched.
        rule: &'r Rule,
        /// What would be wrong with the result.
        reason: InvalidReference,
    },
}

impl<'r> Decision<'r> {
    /// The new image, when rewritten.
    pub fn new_image(&self) -> Option<&str> {
        match self {
            Self::Rewritten { image, .. } => Some(image),
            Self::Unchanged(_) => None,
        }
    }

    /// The rule that decided, if one did.
    pub fn rule(&self) -> Option<&'r Rule> {
        match *self {
            Self::Rewritten { rule, .. } => Some(rule),
            Self::Unchanged(unchanged) => unchanged.rule(),
        }
    }
}

impl<'r> Unchanged<'r> {
    /// The rule involved, if any.
    pub fn rule(&self) -> Option<&'r Rule> {
        match *self {
            Self::AlreadyMirrored(rule)
            | Self::OptedOut(rule)
            | Self::Identity(rule)
            | Self::InvalidResult { rule, .. } => Some(rule),
            Self::InvalidReference(_) | Self::NoSwapWildcard(_) | Self::NoRule => None,
        }
    }

    /// A short, stable label (`invalid`, `mirrored`, `opted_out`, …) for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidReference(_) => "invalid",
            Self::AlreadyMirrored(_) => "mirrored",
            Self::OptedOut(_) => "opted_out",
            Self::Identity(_) => "identity",
            Self::NoSwapWildcard(_) => "noswap",
            Self::NoRule => "no_rule",
            Self::InvalidResult { .. } => "invalid_result",
        }
    }
}

/// A reference as the matcher sees it, after Docker Hub normalization.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'v, 'a> {
    pub reference: &'v Reference<'a>,
    /// The first trie key: the registry as written (`docker.io` when implied).
    pub registry_key: &'a str,
    /// The host without port, Docker Hub aliases folded in canonical mode.
    pub host: &'a str,
    /// An official image whose `library/` namespace is implied (`nginx`).
    pub library_implied: bool,
    /// Canonical Docker Hub mode: an implied `library/` is written out.
    pub canonical: bool,
}

impl<'v, 'a> View<'v, 'a> {
    pub fn new(reference: &'v Reference<'a>, mode: DockerHubMode) -> Self {
        let canonical = mode == DockerHubMode::Canonical;
        let mut host = reference.host;
        let mut registry_key = reference.registry_key();
        if canonical && DOCKER_HUB_ALIASES.contains(&host) {
            host = DOCKER_HUB;
            if reference.port.is_none() {
                registry_key = DOCKER_HUB;
            }
        }
        let library_implied =
            reference.single_segment() && if canonical { host == DOCKER_HUB } else { reference.registry_implied() };
        Self { reference, registry_key, host, library_implied, canonical }
    }
}

/// A prefix rule that matched, and what of the path it leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PrefixMatch<'a> {
    pub rule: RuleId,
    /// The path after the matched prefix.
    pub rest: &'a str,
    /// Write `library/` before `rest` (canonical mode, registry-level match of `nginx`).
    pub library_in_rest: bool,
    /// Matched through the bare host of a `host:port` registry.
    pub port_fallback: bool,
}

impl RuleSet {
    /// Decides what `image` becomes.
    pub fn rewrite(&self, image: &str) -> Decision<'_> {
        let reference = match reference::parse(image) {
            Ok(reference) => reference,
            Err(reason) => return Decision::Unchanged(Unchanged::InvalidReference(reason)),
        };
        let exact_target = || if self.exact_targets.is_empty() { None } else { self.exact_targets.get(image).copied() };
        if let Some(id) = self.mirrored_reference(&reference).or_else(exact_target) {
            return Decision::Unchanged(Unchanged::AlreadyMirrored(self.rule(id)));
        }
        if let Some(&id) = if self.exact.is_empty() { None } else { self.exact.get(image) } {
            let rule = self.rule(id);
            return self.finish(&reference, rule, render::exact(rule));
        }
        if let Some((_, id)) = self.replace.iter().find(|(glob, _)| glob.matches(image)) {
            let rule = self.rule(*id);
            return self.finish(&reference, rule, render::replace(rule, &reference));
        }
        let view = View::new(&reference, self.docker_hub);
        if let Some(found) = self.longest_prefix(&view) {
            let rule = self.rule(found.rule);
            return self.finish(&reference, rule, render::prefix(rule, &view, &found));
        }
        if let Some((wildcard, _)) = self.noswap.iter().find(|(wildcard, _)| image.contains(&**wildcard)) {
            return Decision::Unchanged(Unchanged::NoSwapWildcard(wildcard));
        }
        match self.fallback {
            Some(id) => {
                let rule = self.rule(id);
                self.finish(&reference, rule, render::fallback(rule, &view))
            }
            None => Decision::Unchanged(Unchanged::NoRule),
        }
    }

    /// Every rule, in file order (index = [`RuleId`]).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The `noswap_wildcards` entries with their lines.
    pub fn noswap_wildcards(&self) -> impl Iterator<Item = (&str, u32)> {
        self.noswap.iter().map(|(wildcard, line)| (&**wildcard, *line))
    }

    /// Number of rules (wildcards not included).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no rules and no wildcards: every image is left alone.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.noswap.is_empty()
    }

    /// The Docker Hub mode the set was compiled with.
    pub fn docker_hub(&self) -> DockerHubMode {
        self.docker_hub
    }

    /// Approximate heap bytes the compiled rules hold.
    pub fn heap_bytes(&self) -> usize {
        let text: usize = self.rules.iter().map(|rule| rule.source.len() + rule.target.as_str().len()).sum();
        self.rules.capacity() * std::mem::size_of::<Rule>()
            + text
            + self.prefixes.heap_bytes()
            + self.mirrors.heap_bytes()
            + (self.exact.capacity() + self.exact_targets.capacity()) * 24
    }

    /// Number of rules of `kind`.
    pub fn count(&self, kind: RuleKind) -> usize {
        self.rules.iter().filter(|rule| rule.kind == kind).count()
    }

    pub(crate) fn rule(&self, id: RuleId) -> &Rule {
        &self.rules[id as usize]
    }

    /// Turns a rendered result into a decision, making sure it is a valid reference.
    ///
    /// Targets are validated when the rules compile and the other pieces come
    /// from a valid reference, so a result can only go wrong in two ways: a name
    /// over 255 characters, or a source host written into a path segment (`-`
    /// targets and `all`), where uppercase or `[ipv6]` is not allowed. Only
    /// those results are parsed again.
    pub(crate) fn finish<'r>(
        &'r self,
        reference: &Reference<'_>,
        rule: &'r Rule,
        rendered: Option<String>,
    ) -> Decision<'r> {
        let Some(new_image) = rendered else {
            return Decision::Unchanged(Unchanged::OptedOut(rule));
        };
        if new_image == reference.raw {
            return Decision::Unchanged(Unchanged::Identity(rule));
        }
        let host_in_path = matches!(rule.target, Target::Dash(_)) || rule.kind == RuleKind::All;
        let problem = if host_in_path {
            reference::parse(&new_image).err()
        } else if rule.kind != RuleKind::Exact && new_image.len() - reference.suffix.len() > MAX_NAME_LEN {
            Some(InvalidReference::NameTooLong)
        } else {
            None
        };
        match problem {
            None => Decision::Rewritten { image: new_image, rule },
            Some(reason) => Decision::Unchanged(Unchanged::InvalidResult { rule, reason }),
        }
    }

    /// The longest prefix rule for `view`: under `host:port` first, then under the bare host.
    pub(crate) fn longest_prefix<'a>(&self, view: &View<'_, 'a>) -> Option<PrefixMatch<'a>> {
        self.walk(view.registry_key, view).or_else(|| {
            (view.reference.port.is_some())
                .then(|| self.walk(view.host, view))
                .flatten()
                .map(|found| PrefixMatch { port_fallback: true, ..found })
        })
    }

    /// Walks the trie from `registry` down the path, never consuming the last segment
    /// (a prefix must leave at least the image name).
    fn walk<'a>(&self, registry: &str, view: &View<'_, 'a>) -> Option<PrefixMatch<'a>> {
        let trie = &self.prefixes;
        let mut node = trie.child(SegmentTrie::<RuleId>::ROOT, registry)?;
        let path = view.reference.path;
        let found = |id: RuleId, rest_start: usize, library_in_rest: bool| PrefixMatch {
            rule: id,
            rest: &path[rest_start..],
            library_in_rest,
            port_fallback: false,
        };
        let mut best = trie.value(node).map(|&id| found(id, 0, view.library_implied && view.canonical));
        if view.library_implied {
            // `nginx`: the implied `library` segment is the only one to walk.
            let library = trie.child(node, "library");
            if let Some(&id) = library.and_then(|library| trie.value(library)) {
                best = Some(found(id, 0, false));
            }
            return best;
        }
        let mut start = 0;
        while let Some(end) = next_slash(path, start) {
            node = match trie.child(node, &path[start..end]) {
                Some(child) => child,
                None => break,
            };
            if let Some(&id) = trie.value(node) {
                best = Some(found(id, end + 1, false));
            }
            start = end + 1;
        }
        best
    }

    /// The rule whose target `reference` already lies under, if any.
    pub(crate) fn mirrored_reference(&self, reference: &Reference<'_>) -> Option<RuleId> {
        match reference.registry {
            Some(registry) => {
                let bare_host = reference.port.map(|_| reference.host);
                self.mirrored_split(registry, reference.path, bare_host)
            }
            // `name` with no registry: a target needs a segment after it.
            None if reference.nested => {
                let slash = next_slash(reference.name, 0)?;
                self.mirrored_split(&reference.name[..slash], &reference.name[slash + 1..], None)
            }
            None => None,
        }
    }

    /// The rule whose target every reference under the prefix `source` lies under:
    /// a prefix rule that can never apply. Allocation-free walk over the source's segments.
    pub(crate) fn shadowing_target(&self, source: &str) -> Option<RuleId> {
        let (first, rest) = match next_slash(source, 0) {
            Some(slash) => (&source[..slash], Some(&source[slash + 1..])),
            None => (source, None),
        };
        if !self.has_mirrors {
            return None;
        }
        let bare_host = first.split_once(':').map(|(host, _)| host);
        // References under `source` have at least one segment more: append a stand-in for it.
        let walk = |first: &str| {
            if self.mirror_first_lengths & (1u64 << first.len().min(63)) == 0 {
                return None;
            }
            let segments = std::iter::once(first).chain(rest.into_iter().flat_map(segments));
            self.mirrored_segments(segments.chain(std::iter::once("x")))
        };
        walk(first).or_else(|| walk(bare_host?))
    }

    /// The mirror check for a name already split at its first `/`; `bare_host` is the registry
    /// without its port, for names whose registry has one.
    fn mirrored_split(&self, first: &str, rest: &str, bare_host: Option<&str>) -> Option<RuleId> {
        if !self.has_mirrors {
            return None;
        }
        // Most images start with a registry no target starts with: skip the hash lookup.
        let may_start = |first: &str| self.mirror_first_lengths & (1u64 << first.len().min(63)) != 0;
        let direct = if may_start(first) { self.mirrored_from(first, rest) } else { None };
        direct.or_else(|| bare_host.filter(|host| may_start(host)).and_then(|host| self.mirrored_from(host, rest)))
    }

    /// The mirror-trie walk over `segments`: a target covering all but the last one.
    fn mirrored_segments<'s>(&self, segments: impl Iterator<Item = &'s str>) -> Option<RuleId> {
        let trie = &self.mirrors;
        let mut node = SegmentTrie::<MirrorMark>::ROOT;
        let mut segments = segments.peekable();
        while let Some(segment) = segments.next() {
            segments.peek()?;
            let mark = trie.value(node);
            let dash = mark.and_then(|mark| {
                mark.dash.iter().find(|(prefix, _)| segment.len() > prefix.len() && segment.starts_with(&**prefix))
            });
            if let Some((_, id)) = dash {
                return Some(*id);
            }
            node = trie.child(node, segment)?;
            if let Some(id) = trie.value(node).and_then(|mark| mark.whole) {
                return Some(id);
            }
        }
        None
    }

    fn mirrored_from(&self, first: &str, rest: &str) -> Option<RuleId> {
        self.mirrored_segments(std::iter::once(first).chain(segments(rest)))
    }
}

/// The index of the first `/` at or after `from`: a plain loop beats `find` on short segments.
#[inline]
pub(crate) fn next_slash(text: &str, from: usize) -> Option<usize> {
    text.as_bytes()[from..].iter().position(|&b| b == b'/').map(|i| from + i)
}

/// The `/`-separated segments of `text`, found with a plain byte loop (`str::split` calls
/// `memchr`, whose set-up costs more than a short segment).
pub(crate) fn segments(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match next_slash(current, 0) {
            Some(slash) => {
                rest = Some(&current[slash + 1..]);
                Some(&current[..slash])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::compile_maps;

    fn set(text: &str) -> RuleSet {
        compile_maps(text, Options::default()).unwrap().rules
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let rules = set("docker.io::h/d\ndocker.io/bitnami::h/b\ngcr.io/foo::h/f\ngcr.io::h/g");
        let table = [
            ("bitnami/redis:7", "h/b/redis:7"),
            ("docker.io/bitnami/redis", "h/b/redis"),
            ("redis", "h/d/redis"),
            ("gcr.io/foo/x", "h/f/x"),
            ("gcr.io/foobar/x", "h/g/foobar/x"),
            ("gcr.io/foo", "h/g/foo"),
        ];
        for (image, expected) in table {
            assert_eq!(rules.rewrite(image).new_image(), Some(expected), "{image}");
        }
    }

    #[test]
    fn mirrored_references_are_left_alone() {
        let rules = set("default:jmsearcy-\ngcr.io::h.io/g\nquay.io::m.io/c-");
        for image in ["h.io/g/x", "h.io:5000/g/x", "jmsearcy-docker.io/a/b", "m.io/c-quay.io/a"] {
            assert!(matches!(rules.rewrite(image), Decision::Unchanged(Unchanged::AlreadyMirrored(_))), "{image}");
        }
        assert_eq!(rules.rewrite("h.io/g").new_image(), Some("jmsearcy-h.io/g"));
    }
}
