//! The imageswap maps format, and Palette's comma-separated form of it.
//!
//! One `SOURCE::TARGET` pair per line; blank lines and lines starting with `#`
//! are ignored, and a `#` later on a line starts a comment. As in imageswap, a
//! line with no `::` and exactly one `:` uses the deprecated single-colon
//! separator (`default:example.com`); more than one `:` then is an error, since
//! a port needs `::`. Several pairs may share a line separated by commas
//! (`MIRROR_REGISTRIES` in Palette's `registry-info` Secret); after a
//! `noswap_wildcards` key, the comma-separated entries that follow without a
//! separator of their own belong to its list.
//!
//! This only splits text into [`RulePair`]s; what a key or target means is
//! checked when the pairs are compiled.

use super::rules::{Diagnostic, KEY_NOSWAP, Problem, RulePair};

/// Splits a maps-format text into pairs, and the syntax problems found on the way.
pub fn parse(text: &str) -> (Vec<RulePair>, Vec<Diagnostic>) {
    let mut pairs = Vec::new();
    let mut diagnostics = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let content = match raw_line.find('#') {
            Some(hash) => &raw_line[..hash],
            None => raw_line,
        };
        let content = content.trim();
        if content.is_empty() {
            continue;
        }
        parse_line(line, content, &mut pairs, &mut diagnostics);
    }
    (pairs, diagnostics)
}

fn parse_line(line: u32, content: &str, pairs: &mut Vec<RulePair>, diagnostics: &mut Vec<Diagnostic>) {
    // Index into `pairs` of a noswap_wildcards pair that later entries extend.
    let mut open_wildcards: Option<usize> = None;
    let items: Vec<&str> = content.split(',').map(str::trim).collect();
    let many = items.len() > 1;
    for item in items {
        if item.is_empty() {
            if many && open_wildcards.is_none() {
                diagnostics.push(Diagnostic::warning(line, Problem::EmptyEntry));
            }
            continue;
        }
        if let (Some(index), false) = (open_wildcards, item.contains("::")) {
            let list = &mut pairs[index].value;
            list.push(',');
            list.push_str(item);
            continue;
        }
        open_wildcards = None;
        match split_pair(item) {
            Ok((key, value, legacy)) => {
                if legacy {
                    diagnostics.push(Diagnostic::warning(line, Problem::LegacySeparator));
                }
                if key == KEY_NOSWAP {
                    open_wildcards = Some(pairs.len());
                }
                pairs.push(RulePair { line, key: key.to_owned(), value: value.to_owned() });
            }
            Err(problem) => diagnostics.push(Diagnostic::error(line, problem)),
        }
    }
}

/// Splits one `key::value` (or legacy `key:value`) item; the flag is true for the legacy form.
fn split_pair(item: &str) -> Result<(&str, &str, bool), Problem> {
    let (key, value, legacy) = match item.split_once("::") {
        Some((_, value)) if value.contains("::") => return Err(Problem::TooManySeparators),
        Some((key, value)) => (key, value, false),
        None => match item.matches(':').count() {
            0 => return Err(Problem::NoSeparator),
            1 => {
                let (key, value) = item.split_once(':').ok_or(Problem::NoSeparator)?;
                (key, value, true)
            }
            _ => return Err(Problem::PortNeedsDoubleColon),
        },
    };
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty() {
        return Err(Problem::EmptySource);
    }
    Ok((key, value, legacy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(u32, String, String)> {
        let (pairs, diagnostics) = parse(text);
        assert!(diagnostics.iter().all(|d| d.severity != super::super::rules::Severity::Error), "{diagnostics:?}");
        pairs.into_iter().map(|p| (p.line, p.key, p.value)).collect()
    }

    fn owned(rows: &[(u32, &str, &str)]) -> Vec<(u32, String, String)> {
        rows.iter().map(|&(l, k, v)| (l, k.to_owned(), v.to_owned())).collect()
    }

    #[test]
    fn reads_lines_comments_and_separators() {
        let text = "# comment\n\n default:default.example.com \nquay.io::quay.example3.com # trailing\ncool.io:\nregistry.waldo.com:8443::registry.garply.com\n";
        assert_eq!(
            pairs(text),
            owned(&[
                (3, "default", "default.example.com"),
                (4, "quay.io", "quay.example3.com"),
                (5, "cool.io", ""),
                (6, "registry.waldo.com:8443", "registry.garply.com"),
            ])
        );
    }

    #[test]
    fn reads_palette_comma_lists() {
        let text = "docker.io::h/d,gcr.io::h/g , quay.io::h/q";
        assert_eq!(pairs(text), owned(&[(1, "docker.io", "h/d"), (1, "gcr.io", "h/g"), (1, "quay.io", "h/q")]));
    }

    #[test]
    fn wildcard_lists_keep_their_commas() {
        let text = "noswap_wildcards:twr.io, walrus.io\ndocker.io::m,noswap_wildcards::a,b:1,c,gcr.io::g";
        assert_eq!(
            pairs(text),
            owned(&[
                (1, "noswap_wildcards", "twr.io,walrus.io"),
                (2, "docker.io", "m"),
                (2, "noswap_wildcards", "a,b:1,c"),
                (2, "gcr.io", "g"),
            ])
        );
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let text = "ok.io::x\nregistry4.bar.com;registry.internal.baz.com/bar\nregistry2.bar.com:registry2.baz.com:30003/bar\na::b::c\n::x\nx.io::y,";
        let (pairs, diagnostics) = parse(text);
        assert_eq!(pairs.len(), 2);
        let found: Vec<(u32, Problem)> = diagnostics.into_iter().map(|d| (d.line, d.problem)).collect();
        assert_eq!(
            found,
            vec![
                (2, Problem::NoSeparator),
                (3, Problem::PortNeedsDoubleColon),
                (4, Problem::TooManySeparators),
                (5, Problem::EmptySource),
                (6, Problem::EmptyEntry),
            ]
        );
    }
}
