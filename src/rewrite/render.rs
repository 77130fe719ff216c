//! Builds the new reference once a rule has matched. `None` means the rule's
//! target is empty: the image is left alone.
//!
//! - prefix rule, plain target: TARGET [`:`port] `/` rest-after-prefix tag
//!   (the port is kept only when the rule matched through the bare host of a
//!   `host:port` registry and TARGET is itself a bare host)
//! - any rule, dash target: TARGET host `/` path tag (the host without its port)
//! - `default`, plain target: TARGET `/` path tag (the registry is dropped)
//! - `all`, plain target: TARGET `/` host `/` path tag
//! - `[EXACT]`: TARGET; `[REPLACE]`: DIR `/` last-path-segment tag

use super::engine::{PrefixMatch, View};
use super::reference::{Reference, is_registry_like};
use super::rules::{Rule, RuleKind, Target};

/// `[EXACT]`: the target is the whole new reference.
pub(crate) fn exact(rule: &Rule) -> Option<String> {
    match &rule.target {
        Target::Keep => None,
        Target::Plain(target) | Target::Dash(target) => Some(target.to_string()),
    }
}

/// `[REPLACE]`: DIR + `/` + the last path segment with its tag and digest.
pub(crate) fn replace(rule: &Rule, reference: &Reference<'_>) -> Option<String> {
    let dir = match &rule.target {
        Target::Keep => return None,
        Target::Plain(dir) | Target::Dash(dir) => dir,
    };
    let last = reference.raw.rsplit('/').next().unwrap_or(reference.raw);
    Some(join(&[dir, "/", last]))
}

/// A prefix rule that matched `found`.
pub(crate) fn prefix(rule: &Rule, view: &View<'_, '_>, found: &PrefixMatch<'_>) -> Option<String> {
    match &rule.target {
        Target::Keep => None,
        Target::Dash(target) => Some(dash(target, view)),
        // The common case, written out: TARGET `/` rest-of-reference.
        Target::Plain(target) if !(found.library_in_rest || found.port_fallback && is_bare_host(target)) => {
            let tail = tail(view, found.rest);
            let mut out = String::with_capacity(target.len() + 1 + tail.len());
            out.push_str(target);
            out.push('/');
            out.push_str(tail);
            Some(out)
        }
        Target::Plain(target) => {
            let port = match view.reference.port {
                Some(port) if found.port_fallback && is_bare_host(target) => port,
                _ => "",
            };
            let colon = if port.is_empty() { "" } else { ":" };
            let library = if found.library_in_rest { "library/" } else { "" };
            Some(join(&[target, colon, port, "/", library, tail(view, found.rest)]))
        }
    }
}

/// The `default` or `all` fallback.
pub(crate) fn fallback(rule: &Rule, view: &View<'_, '_>) -> Option<String> {
    let library = full_path_library(view);
    let path = tail(view, view.reference.path);
    match (&rule.target, rule.kind) {
        (Target::Keep, _) => None,
        (Target::Dash(target), _) => Some(dash(target, view)),
        (Target::Plain(target), RuleKind::All) => Some(join(&[target, "/", view.host, "/", library, path])),
        (Target::Plain(target), _) => Some(join(&[target, "/", library, path])),
    }
}

/// TARGET + host + `/` + path: the source registry is appended to a `-` target.
fn dash(target: &str, view: &View<'_, '_>) -> String {
    let library = full_path_library(view);
    join(&[target, view.host, "/", library, tail(view, view.reference.path)])
}

/// `rest` (a suffix of the reference's path) through the end of the reference, tag and digest
/// included: one contiguous slice of the input, so one copy.
fn tail<'a>(view: &View<'_, 'a>, rest: &'a str) -> &'a str {
    let raw = view.reference.raw;
    &raw[raw.len() - rest.len() - view.reference.suffix.len()..]
}

/// `library/` when canonical mode writes out an implied official-image namespace.
fn full_path_library(view: &View<'_, '_>) -> &'static str {
    if view.canonical && view.library_implied { "library/" } else { "" }
}

/// A target with no path and no port of its own, such as `registry.example.com`.
fn is_bare_host(target: &str) -> bool {
    !target.contains('/') && !target.contains(':') && is_registry_like(target)
}

/// Concatenates `parts` into one exactly-sized allocation. Empty parts are skipped and
/// one-byte parts pushed directly: a `memcpy` call per `/` costs more than the byte.
fn join(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        match part.as_bytes() {
            [] => {}
            [byte] => out.push(char::from(*byte)),
            _ => out.push_str(part),
        }
    }
    out
}
