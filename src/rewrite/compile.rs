//! Turns `source → target` pairs from any format into a [`RuleSet`]:
//! validates every key and target, reports each problem with its line, finds
//! duplicates, rules that can never apply and `-` targets that build host names, and builds
//! the tries.

use super::engine::{DockerHubMode, segments};
use super::engine::{MirrorMark, Options, RuleId, RuleSet};
use super::excerpt::excerpt;
use super::fxhash::FxHashMap;
use super::glob::Glob;
use super::mirrored;
use super::reference::{self, DOCKER_HUB, DOCKER_HUB_ALIASES, MAX_NAME_LEN, is_registry_like};
use super::rules::{
    Diagnostic, KEY_ALL, KEY_DEFAULT, KEY_NOSWAP, PREFIX_EXACT, PREFIX_REPLACE, Problem, Rule, RuleKind, RulePair,
    Severity, Target,
};
use super::similar;
use super::trie::SegmentTrie;

/// A compiled rule set and what compiling it found (warnings, and skipped lines when lenient).
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The rules, ready to use.
    pub rules: RuleSet,
    /// Warnings and skipped lines, in line order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Compiles `pairs`, together with the `diagnostics` their parser already found.
///
/// Strict (the default): any error fails the whole load and every diagnostic is
/// returned, in line order. Lenient: errors become skipped lines, except a problem with the
/// whole text ([`Problem::is_fatal`]).
pub fn compile(
    pairs: Vec<RulePair>,
    diagnostics: Vec<Diagnostic>,
    options: Options,
) -> Result<Compiled, Vec<Diagnostic>> {
    let mut builder = Builder {
        set: RuleSet { docker_hub: options.docker_hub, ..RuleSet::default() },
        replace_patterns: FxHashMap::default(),
        diagnostics,
    };
    // Size the big tables once: growing them by doubling rehashes and copies everything.
    let source_bytes: usize = pairs.iter().map(|pair| pair.key.len()).sum();
    builder.set.rules.reserve_exact(pairs.len());
    builder.set.prefixes.reserve(pairs.len() * 2, source_bytes);
    for pair in pairs {
        let line = pair.line;
        if let Err(problem) = builder.add(pair) {
            builder.diagnostics.push(Diagnostic::error(line, problem));
        }
    }
    builder.warn_shadowed();
    let Builder { set, mut diagnostics, .. } = builder;
    diagnostics.sort_by_key(|diagnostic| diagnostic.line);
    if options.lenient {
        for diagnostic in &mut diagnostics {
            if diagnostic.severity == Severity::Error && !diagnostic.problem.is_fatal() {
                diagnostic.severity = Severity::Skipped;
            }
        }
    }
    if diagnostics.iter().any(|diagnostic| diagnostic.severity == Severity::Error) {
        return Err(diagnostics);
    }
    Ok(Compiled { rules: set, diagnostics })
}

struct Builder {
    set: RuleSet,
    /// First rule of each `[REPLACE]` pattern (other kinds find theirs in the tries and maps).
    replace_patterns: FxHashMap<Box<str>, RuleId>,
    diagnostics: Vec<Diagnostic>,
}

impl Builder {
    fn add(&mut self, pair: RulePair) -> Result<(), Problem> {
        let line = pair.line;
        let (key, value) = (trimmed(pair.key), trimmed(pair.value));
        if key.is_empty() {
            return Err(Problem::EmptySource);
        }
        if has_whitespace(&key) {
            return Err(Problem::Whitespace("source"));
        }
        if key == KEY_NOSWAP {
            return self.add_wildcards(&value, line);
        }
        if has_whitespace(&value) {
            return Err(Problem::Whitespace("target"));
        }
        let (kind, source, target) = if key == KEY_DEFAULT || key == KEY_ALL {
            let kind = if key == KEY_ALL { RuleKind::All } else { RuleKind::Default };
            (kind, key, parse_target(value)?)
        } else if let Some(source) = key.strip_prefix(PREFIX_EXACT) {
            (RuleKind::Exact, parse_exact_source(source.trim_start())?, parse_exact_target(value)?)
        } else if let Some(pattern) = key.strip_prefix(PREFIX_REPLACE) {
            let pattern = pattern.trim_start();
            let glob = Glob::new(pattern)
                .map_err(|e| Problem::BadGlob { pattern: excerpt(pattern).owned(), reason: e.to_string() })?;
            let rule =
                Rule { kind: RuleKind::Replace, source: pattern.into(), target: parse_replace_dir(&value)?, line };
            return self.insert(rule, Some(glob));
        } else {
            let normalized = normalize_source(&key, self.set.docker_hub)?;
            (RuleKind::Prefix, normalized.unwrap_or(key), parse_target(value)?)
        };
        self.insert(Rule { kind, source: source.into_boxed_str(), target, line }, None)
    }

    fn add_wildcards(&mut self, list: &str, line: u32) -> Result<(), Problem> {
        let entries: Vec<&str> = list.split(',').map(str::trim_ascii).filter(|entry| !entry.is_empty()).collect();
        if entries.iter().any(|entry| has_whitespace(entry)) {
            return Err(Problem::Whitespace("wildcard list"));
        }
        for entry in entries {
            if !self.set.noswap.iter().any(|(known, _)| **known == *entry) {
                if let Some(public) = similar::shared_registry(entry) {
                    let problem = Problem::PublicWildcard { entry: excerpt(entry).owned(), public };
                    self.diagnostics.push(Diagnostic::warning(line, problem));
                }
                self.set.noswap.push((entry.into(), line));
            }
        }
        Ok(())
    }

    /// Adds a validated rule; `glob` is the compiled pattern of a `[REPLACE]` rule.
    fn insert(&mut self, rule: Rule, glob: Option<Glob>) -> Result<(), Problem> {
        let id = RuleId::try_from(self.set.rules.len()).map_err(|_| Problem::InvalidSource {
            key: excerpt(&rule.source).owned(),
            reason: "more than 4 billion rules".into(),
        })?;
        // The slot the rule goes into tells whether its source was already given.
        let earlier = match rule.kind {
            RuleKind::Exact => self.set.exact.get(&*rule.source).copied(),
            RuleKind::Replace => self.replace_patterns.get(&*rule.source).copied(),
            RuleKind::Prefix => {
                // One walk: claim the slot now; a duplicate leaves it as it was.
                let slot = self.set.prefixes.node_mut(segments(&rule.source));
                let earlier = *slot;
                slot.get_or_insert(id);
                earlier
            }
            RuleKind::Default | RuleKind::All => self.set.fallback,
        };
        if let Some(earlier) = earlier {
            let earlier = self.set.rule(earlier);
            if earlier.kind != rule.kind {
                return Err(Problem::AllAndDefault(earlier.line));
            }
            if earlier.target != rule.target {
                return Err(Problem::ConflictingDuplicate {
                    key: excerpt(&rule.source).owned(),
                    first_line: earlier.line,
                });
            }
            self.diagnostics.push(Diagnostic::warning(rule.line, Problem::Duplicate(earlier.line)));
            return Ok(());
        }
        match rule.kind {
            RuleKind::Exact => {
                self.set.exact.insert(rule.source.clone(), id);
                if let Target::Plain(target) = &rule.target {
                    self.set.exact_targets.insert(target.clone(), id);
                }
            }
            RuleKind::Replace => {
                if let Some(glob) = glob {
                    self.set.replace.push((glob, id));
                }
                self.replace_patterns.insert(rule.source.clone(), id);
                self.mark_mirror(&rule.target, id);
            }
            RuleKind::Prefix => self.mark_mirror(&rule.target, id),
            RuleKind::Default | RuleKind::All => {
                self.set.fallback = Some(id);
                self.mark_mirror(&rule.target, id);
            }
        }
        if let Some((host, known)) = misspelled_source(&rule) {
            self.diagnostics.push(Diagnostic::warning(rule.line, Problem::MisspelledRegistry { host, known }));
        }
        if let Target::Dash(target) = &rule.target
            && mirrored::target_registry(&rule).is_none()
        {
            let problem = Problem::DashBuildsHost { target: target.to_string() };
            self.diagnostics.push(Diagnostic::warning(rule.line, problem));
        }
        self.set.rules.push(rule);
        Ok(())
    }

    /// Records a target so that references already under it are left alone.
    fn mark_mirror(&mut self, target: &Target, id: RuleId) {
        let mirrors: &mut SegmentTrie<MirrorMark> = &mut self.set.mirrors;
        match target {
            Target::Keep => return,
            Target::Plain(target) => {
                let mark = mirrors.node_mut(segments(target)).get_or_insert_with(MirrorMark::default);
                mark.whole.get_or_insert(id);
                let first = segments(target).next().unwrap_or(target);
                self.set.mirror_first_lengths |= 1u64 << first.len().min(63);
            }
            Target::Dash(target) => {
                let (parent, last) = match target.rsplit_once('/') {
                    Some((parent, last)) => (Some(parent), last),
                    None => (None, &**target),
                };
                let mark =
                    mirrors.node_mut(parent.into_iter().flat_map(segments)).get_or_insert_with(MirrorMark::default);
                mark.dash.push((last.into(), id));
                self.set.mirror_first_lengths |= match parent {
                    Some(parent) => 1u64 << segments(parent).next().unwrap_or(parent).len().min(63),
                    None => u64::MAX,
                };
            }
        }
        self.set.has_mirrors = true;
    }

    /// Warns about rules that can never decide anything.
    fn warn_shadowed(&mut self) {
        let mut found = Vec::new();
        let mut everything: Option<&Rule> = None;
        for rule in &self.set.rules {
            let shadow = match rule.kind {
                RuleKind::Prefix => self.set.shadowing_target(&rule.source),
                RuleKind::Exact => reference::parse(&rule.source).ok().and_then(|r| self.set.mirrored_reference(&r)),
                RuleKind::Replace => {
                    if let Some(earlier) = everything {
                        found.push(Diagnostic::warning(
                            rule.line,
                            Problem::ShadowedGlob { earlier: excerpt(&earlier.source).owned(), line: earlier.line },
                        ));
                    } else if Glob::new(&rule.source).is_ok_and(|glob| glob.matches_everything()) {
                        everything = Some(rule);
                    }
                    continue;
                }
                RuleKind::Default | RuleKind::All => continue,
            };
            if let Some(shadow) = shadow {
                let shadow = self.set.rule(shadow);
                found.push(Diagnostic::warning(
                    rule.line,
                    Problem::ShadowedByTarget {
                        key: excerpt(&rule.source).owned(),
                        target: excerpt(shadow.target.as_str()).owned(),
                        line: shadow.line,
                    },
                ));
            }
        }
        self.diagnostics.extend(found);
    }
}

/// A prefix rule's source: `registry[:port][/path…]`. Returns the source rewritten for the
/// Docker Hub mode, or `None` when it stands as written.
fn normalize_source(key: &str, mode: DockerHubMode) -> Result<Option<String>, Problem> {
    let invalid = |reason: String| Problem::InvalidSource { key: excerpt(key).owned(), reason };
    let (registry, path) = match key.split_once('/') {
        Some((registry, path)) => (registry, Some(path)),
        None => (key, None),
    };
    // Fast path: with a path, a valid source is a valid reference name with a registry.
    let valid_name = path.is_some() && reference::parse(key).is_ok_and(|r| r.suffix.is_empty() && r.registry.is_some());
    if !valid_name {
        explain_invalid_source(registry, path).map_err(invalid)?;
    }
    let host = registry.split_once(':').map_or(registry, |(host, _)| host);
    if mode == DockerHubMode::Canonical && DOCKER_HUB_ALIASES.contains(&host) {
        let port = &registry[host.len()..];
        let path = path.map(|path| format!("/{path}")).unwrap_or_default();
        return Ok(Some(format!("{DOCKER_HUB}{port}{path}")));
    }
    Ok(None)
}

/// The detailed check of a source, for a precise error message.
fn explain_invalid_source(registry: &str, path: Option<&str>) -> Result<(), String> {
    const NO_TAG: &str = "a source is a registry or registry/path prefix, without tag or digest";
    if registry.contains('@') || path.is_some_and(|path| path.contains('@')) {
        return Err(NO_TAG.into());
    }
    if !is_registry_like(registry) {
        return Err(format!(
            "must start with a registry host such as `docker.io` (`{}` has no `.` or `:` and is not `localhost`)",
            excerpt(registry)
        ));
    }
    reference::split_host_port(registry).map_err(|e| e.to_string())?;
    for segment in path.into_iter().flat_map(|path| path.split('/')) {
        if segment.contains(':') {
            return Err(NO_TAG.into());
        }
        reference::validate_path_component(segment).map_err(|e| format!("`{}`: {e}", excerpt(segment)))?;
    }
    Ok(())
}

/// True when `s` has an ASCII whitespace character (anything else non-ASCII is rejected
/// later as an invalid character).
fn has_whitespace(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_whitespace())
}

/// `s` without surrounding whitespace, reusing its allocation when there is none.
/// The source registry of a prefix or `[EXACT]` rule (cut, for the message) and the
/// well-known registry it is probably a typo of.
fn misspelled_source(rule: &Rule) -> Option<(String, &'static str)> {
    let first = match (rule.kind, rule.source.split_once('/')) {
        (RuleKind::Prefix, None) => &*rule.source,
        (RuleKind::Prefix | RuleKind::Exact, Some((first, _))) => first,
        _ => return None,
    };
    let first = Some(first).filter(|first| is_registry_like(first))?;
    let host = first.rsplit_once(':').map_or(first, |(host, _)| host);
    similar::misspelled_registry(host).map(|known| (excerpt(host).owned(), known))
}

fn trimmed(s: String) -> String {
    if s.trim_ascii().len() == s.len() { s } else { s.trim_ascii().to_owned() }
}

/// A prefix, `default` or `all` target: empty, a name prefix, or a name prefix ending in `-`.
fn parse_target(value: String) -> Result<Target, Problem> {
    if value.is_empty() {
        return Ok(Target::Keep);
    }
    let invalid = |reason: String| Problem::InvalidTarget { target: excerpt(&value).owned(), reason };
    if value.len() > MAX_NAME_LEN - 2 {
        return Err(invalid(format!("longer than {} characters", MAX_NAME_LEN - 2)));
    }
    if value.ends_with('-') {
        // `mirror-` must form a valid segment once the registry is appended.
        validate_name_prefix(&format!("{value}x")).map_err(invalid)?;
        Ok(Target::Dash(value.into_boxed_str()))
    } else {
        validate_name_prefix(&value).map_err(invalid)?;
        Ok(Target::Plain(value.into_boxed_str()))
    }
}

/// `registry[:port][/path…]` or a Docker Hub `namespace[/path…]`, with no tag.
fn validate_name_prefix(value: &str) -> Result<(), String> {
    // Fast path: with a `/`, a valid prefix is a valid reference name without tag or digest.
    if value.bytes().any(|b| b == b'/') && reference::parse(value).is_ok_and(|r| r.suffix.is_empty()) {
        return Ok(());
    }
    let (first, rest) = match value.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (value, None),
    };
    if is_registry_like(first) {
        reference::split_host_port(first).map_err(|e| format!("`{}`: {e}", excerpt(first)))?;
    } else {
        reference::validate_path_component(first).map_err(|e| format!("`{}`: {e}", excerpt(first)))?;
    }
    for segment in rest.into_iter().flat_map(|rest| rest.split('/')) {
        reference::validate_path_component(segment).map_err(|e| format!("`{}`: {e}", excerpt(segment)))?;
    }
    Ok(())
}

fn parse_exact_source(source: &str) -> Result<String, Problem> {
    reference::parse(source)
        .map(|_| source.to_owned())
        .map_err(|e| Problem::InvalidSource { key: excerpt(source).owned(), reason: e.to_string() })
}

fn parse_exact_target(value: String) -> Result<Target, Problem> {
    if value.is_empty() {
        return Ok(Target::Keep);
    }
    match reference::parse(&value) {
        Ok(_) => Ok(Target::Plain(value.into_boxed_str())),
        Err(e) => Err(Problem::InvalidTarget { reason: e.to_string(), target: excerpt(&value).owned() }),
    }
}

/// `[REPLACE]` directory: trailing `/` are dropped (as `os.path.join` would); empty means keep.
fn parse_replace_dir(value: &str) -> Result<Target, Problem> {
    let dir = value.trim_end_matches('/');
    if dir.is_empty() {
        return Ok(Target::Keep);
    }
    validate_name_prefix(dir)
        .map(|()| Target::Plain(dir.into()))
        .map_err(|reason| Problem::InvalidTarget { target: excerpt(value).owned(), reason })
}
