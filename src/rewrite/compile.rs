//! Turns `source → target` pairs from any format into a [`RuleSet`]:
//! validates every key and target, reports each problem with its line, finds
//! duplicates and rules that can never apply, and builds the tries.

use super::engine::DockerHubMode;
use super::engine::{MirrorMark, Options, RuleId, RuleSet};
use super::fxhash::FxHashMap;
use super::glob::Glob;
use super::reference::{self, DOCKER_HUB, DOCKER_HUB_ALIASES, MAX_NAME_LEN, is_registry_like};
use super::rules::{
    Diagnostic, KEY_ALL, KEY_DEFAULT, KEY_NOSWAP, PREFIX_EXACT, PREFIX_REPLACE, Problem, Rule, RuleKind, RulePair,
    Severity, Target,
};
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
/// returned, in line order. Lenient: errors become skipped lines.
pub fn compile(
    pairs: Vec<RulePair>,
    diagnostics: Vec<Diagnostic>,
    options: Options,
) -> Result<Compiled, Vec<Diagnostic>> {
    let mut builder = Builder {
        set: RuleSet { docker_hub: options.docker_hub, ..RuleSet::default() },
        seen: FxHashMap::default(),
        diagnostics,
    };
    for pair in pairs {
        if let Err(problem) = builder.add(&pair) {
            builder.diagnostics.push(Diagnostic::error(pair.line, problem));
        }
    }
    builder.warn_shadowed();
    let Builder { set, mut diagnostics, .. } = builder;
    diagnostics.sort_by_key(|diagnostic| diagnostic.line);
    if options.lenient {
        for diagnostic in &mut diagnostics {
            if diagnostic.severity == Severity::Error {
                diagnostic.severity = Severity::Skipped;
            }
        }
    } else if diagnostics.iter().any(|diagnostic| diagnostic.severity == Severity::Error) {
        return Err(diagnostics);
    }
    Ok(Compiled { rules: set, diagnostics })
}

struct Builder {
    set: RuleSet,
    /// First rule of each (kind, normalized source); fallbacks share one slot.
    seen: FxHashMap<(RuleKind, String), RuleId>,
    diagnostics: Vec<Diagnostic>,
}

impl Builder {
    fn add(&mut self, pair: &RulePair) -> Result<(), Problem> {
        let (key, value, line) = (pair.key.trim(), pair.value.trim(), pair.line);
        if key.is_empty() {
            return Err(Problem::EmptySource);
        }
        if key.contains(char::is_whitespace) {
            return Err(Problem::Whitespace("source"));
        }
        if key == KEY_NOSWAP {
            return self.add_wildcards(value, line);
        }
        if value.contains(char::is_whitespace) {
            return Err(Problem::Whitespace("target"));
        }
        let (kind, source, target) = if key == KEY_DEFAULT || key == KEY_ALL {
            let kind = if key == KEY_ALL { RuleKind::All } else { RuleKind::Default };
            (kind, key.to_owned(), parse_target(value)?)
        } else if let Some(source) = key.strip_prefix(PREFIX_EXACT) {
            (RuleKind::Exact, parse_exact_source(source.trim_start())?, parse_exact_target(value)?)
        } else if let Some(pattern) = key.strip_prefix(PREFIX_REPLACE) {
            let pattern = pattern.trim_start();
            let glob = Glob::new(pattern)
                .map_err(|e| Problem::BadGlob { pattern: pattern.to_owned(), reason: e.to_string() })?;
            let rule =
                Rule { kind: RuleKind::Replace, source: pattern.into(), target: parse_replace_dir(value)?, line };
            return self.insert(rule, Some(glob));
        } else {
            (RuleKind::Prefix, normalize_source(key, self.set.docker_hub)?, parse_target(value)?)
        };
        self.insert(Rule { kind, source: source.into(), target, line }, None)
    }

    fn add_wildcards(&mut self, list: &str, line: u32) -> Result<(), Problem> {
        let entries: Vec<&str> = list.split(',').map(str::trim).filter(|entry| !entry.is_empty()).collect();
        if entries.iter().any(|entry| entry.contains(char::is_whitespace)) {
            return Err(Problem::Whitespace("wildcard list"));
        }
        for entry in entries {
            if !self.set.noswap.iter().any(|(known, _)| **known == *entry) {
                self.set.noswap.push((entry.into(), line));
            }
        }
        Ok(())
    }

    /// Adds a validated rule; `glob` is the compiled pattern of a `[REPLACE]` rule.
    fn insert(&mut self, rule: Rule, glob: Option<Glob>) -> Result<(), Problem> {
        let slot_kind = if rule.kind == RuleKind::All { RuleKind::Default } else { rule.kind };
        let slot_source = if slot_kind == RuleKind::Default { String::new() } else { rule.source.to_string() };
        if let Some(&first) = self.seen.get(&(slot_kind, slot_source.clone())) {
            let earlier = self.set.rule(first);
            if earlier.kind != rule.kind {
                return Err(Problem::AllAndDefault(earlier.line));
            }
            if earlier.target != rule.target {
                return Err(Problem::ConflictingDuplicate { key: rule.source.to_string(), first_line: earlier.line });
            }
            self.diagnostics.push(Diagnostic::warning(rule.line, Problem::Duplicate(earlier.line)));
            return Ok(());
        }
        let id = RuleId::try_from(self.set.rules.len()).map_err(|_| Problem::InvalidSource {
            key: rule.source.to_string(),
            reason: "more than 4 billion rules".into(),
        })?;
        self.seen.insert((slot_kind, slot_source), id);
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
                self.mark_mirror(&rule.target, id);
            }
            RuleKind::Prefix => {
                *self.set.prefixes.node_mut(rule.source.split('/')) = Some(id);
                self.mark_mirror(&rule.target, id);
            }
            RuleKind::Default | RuleKind::All => {
                self.set.fallback = Some(id);
                self.mark_mirror(&rule.target, id);
            }
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
                let mark = mirrors.node_mut(target.split('/')).get_or_insert_with(MirrorMark::default);
                mark.whole.get_or_insert(id);
            }
            Target::Dash(target) => {
                let (parent, last) = match target.rsplit_once('/') {
                    Some((parent, last)) => (Some(parent), last),
                    None => (None, &**target),
                };
                let mark = mirrors
                    .node_mut(parent.into_iter().flat_map(|p| p.split('/')))
                    .get_or_insert_with(MirrorMark::default);
                mark.dash.push((last.into(), id));
            }
        }
        self.set.has_mirrors = true;
    }

    /// Warns about rules that can never decide anything.
    fn warn_shadowed(&mut self) {
        let mut found = Vec::new();
        let mut everything: Option<&Rule> = None;
        for rule in &self.set.rules {
            let probe = match rule.kind {
                RuleKind::Prefix => format!("{}/x", rule.source),
                RuleKind::Exact => rule.source.to_string(),
                RuleKind::Replace => {
                    if let Some(earlier) = everything {
                        found.push(Diagnostic::warning(
                            rule.line,
                            Problem::ShadowedGlob { earlier: earlier.source.to_string(), line: earlier.line },
                        ));
                    } else if Glob::new(&rule.source).is_ok_and(|glob| glob.matches_everything()) {
                        everything = Some(rule);
                    }
                    continue;
                }
                RuleKind::Default | RuleKind::All => continue,
            };
            let (name, bare_host) = match reference::parse(&probe) {
                Ok(r) => (r.name, r.port.map(|_| r.host)),
                Err(_) => (probe.as_str(), None),
            };
            if let Some(shadow) = self.set.mirrored(name, bare_host) {
                let shadow = self.set.rule(shadow);
                found.push(Diagnostic::warning(
                    rule.line,
                    Problem::ShadowedByTarget {
                        key: rule.source.to_string(),
                        target: shadow.target.as_str().to_owned(),
                        line: shadow.line,
                    },
                ));
            }
        }
        self.diagnostics.extend(found);
    }
}

/// A prefix rule's source: `registry[:port][/path…]`, normalized for the Docker Hub mode.
fn normalize_source(key: &str, mode: DockerHubMode) -> Result<String, Problem> {
    let invalid = |reason: String| Problem::InvalidSource { key: key.to_owned(), reason };
    if key.contains('@') {
        return Err(invalid("a source is a registry or registry/path prefix, without tag or digest".into()));
    }
    let (registry, path) = match key.split_once('/') {
        Some((registry, path)) => (registry, Some(path)),
        None => (key, None),
    };
    if !is_registry_like(registry) {
        return Err(invalid(format!(
            "must start with a registry host such as `docker.io` (`{registry}` has no `.` or `:` and is not `localhost`)"
        )));
    }
    let (host, port) = reference::split_host_port(registry).map_err(|e| invalid(e.to_string()))?;
    for segment in path.into_iter().flat_map(|path| path.split('/')) {
        if segment.contains(':') {
            return Err(invalid("a source is a registry or registry/path prefix, without tag or digest".into()));
        }
        reference::validate_path_component(segment).map_err(|e| invalid(format!("`{segment}`: {e}")))?;
    }
    if mode == DockerHubMode::Canonical && DOCKER_HUB_ALIASES.contains(&host) {
        let port = port.map(|port| format!(":{port}")).unwrap_or_default();
        let path = path.map(|path| format!("/{path}")).unwrap_or_default();
        return Ok(format!("{DOCKER_HUB}{port}{path}"));
    }
    Ok(key.to_owned())
}

/// A prefix, `default` or `all` target: empty, a name prefix, or a name prefix ending in `-`.
fn parse_target(value: &str) -> Result<Target, Problem> {
    if value.is_empty() {
        return Ok(Target::Keep);
    }
    let invalid = |reason: String| Problem::InvalidTarget { target: value.to_owned(), reason };
    if value.len() > MAX_NAME_LEN - 2 {
        return Err(invalid(format!("longer than {} characters", MAX_NAME_LEN - 2)));
    }
    if value.ends_with('-') {
        // `mirror-` must form a valid segment once the registry is appended.
        validate_name_prefix(&format!("{value}x")).map_err(invalid)?;
        Ok(Target::Dash(value.into()))
    } else {
        validate_name_prefix(value).map_err(invalid)?;
        Ok(Target::Plain(value.into()))
    }
}

/// `registry[:port][/path…]` or a Docker Hub `namespace[/path…]`, with no tag.
fn validate_name_prefix(value: &str) -> Result<(), String> {
    let (first, rest) = match value.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (value, None),
    };
    if is_registry_like(first) {
        reference::split_host_port(first).map_err(|e| format!("`{first}`: {e}"))?;
    } else {
        reference::validate_path_component(first).map_err(|e| format!("`{first}`: {e}"))?;
    }
    for segment in rest.into_iter().flat_map(|rest| rest.split('/')) {
        reference::validate_path_component(segment).map_err(|e| format!("`{segment}`: {e}"))?;
    }
    Ok(())
}

fn parse_exact_source(source: &str) -> Result<String, Problem> {
    reference::parse(source)
        .map(|_| source.to_owned())
        .map_err(|e| Problem::InvalidSource { key: source.to_owned(), reason: e.to_string() })
}

fn parse_exact_target(value: &str) -> Result<Target, Problem> {
    if value.is_empty() {
        return Ok(Target::Keep);
    }
    reference::parse(value)
        .map(|_| Target::Plain(value.into()))
        .map_err(|e| Problem::InvalidTarget { target: value.to_owned(), reason: e.to_string() })
}

/// `[REPLACE]` directory: trailing `/` are dropped (as `os.path.join` would); empty means keep.
fn parse_replace_dir(value: &str) -> Result<Target, Problem> {
    let dir = value.trim_end_matches('/');
    if dir.is_empty() {
        return Ok(Target::Keep);
    }
    validate_name_prefix(dir)
        .map(|()| Target::Plain(dir.into()))
        .map_err(|reason| Problem::InvalidTarget { target: value.to_owned(), reason })
}
