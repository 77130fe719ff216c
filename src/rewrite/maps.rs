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

use super::rules::{Budget, Diagnostic, KEY_NOSWAP, MAX_RULES, Problem, RulePair};

/// Splits a maps-format text into pairs, and the syntax problems found on the way.
pub fn parse(text: &str) -> (Vec<RulePair>, Vec<Diagnostic>) {
    let mut pairs = Vec::with_capacity((text.len() / 48).min(MAX_RULES));
    let mut diagnostics = Vec::new();
    let mut budget = Budget::default();
    for (index, raw_line) in text.lines().enumerate() {
        let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
        // One scan finds the comment and whether the line is a comma list.
        let mut end = raw_line.len();
        let mut comma = false;
        for (i, &b) in raw_line.as_bytes().iter().enumerate() {
            if b == b'#' {
                end = i;
                break;
            }
            comma |= b == b',';
        }
        let content = raw_line[..end].trim_ascii();
        if content.is_empty() {
            continue;
        }
        let seen = diagnostics.len();
        if comma {
            parse_line(line, content, &mut pairs, &mut diagnostics);
        } else {
            parse_item(line, content, &mut pairs, &mut diagnostics);
        }
        if budget.settle(line, pairs.len(), &mut diagnostics, seen) {
            break;
        }
    }
    budget.finish(&mut diagnostics);
    (pairs, diagnostics)
}

/// One `key::value` item: a pair, or a syntax error.
fn parse_item(line: u32, item: &str, pairs: &mut Vec<RulePair>, diagnostics: &mut Vec<Diagnostic>) {
    match split_pair(item, find_double_colon(item)) {
        Ok((key, value, legacy)) => {
            if legacy {
                diagnostics.push(Diagnostic::warning(line, Problem::LegacySeparator));
            }
            pairs.push(RulePair { line, key: key.to_owned(), value: value.to_owned() });
        }
        Err(problem) => diagnostics.push(Diagnostic::error(line, problem)),
    }
}

fn parse_line(line: u32, content: &str, pairs: &mut Vec<RulePair>, diagnostics: &mut Vec<Diagnostic>) {
    // Index into `pairs` of a noswap_wildcards pair that later entries extend.
    let mut open_wildcards: Option<usize> = None;
    let many = content.bytes().any(|b| b == b',');
    for item in content.split(',').map(str::trim_ascii) {
        if item.is_empty() {
            if many && open_wildcards.is_none() {
                diagnostics.push(Diagnostic::warning(line, Problem::EmptyEntry));
            }
            continue;
        }
        let separator = find_double_colon(item);
        if let (Some(index), None) = (open_wildcards, separator) {
            let list = &mut pairs[index].value;
            list.push(',');
            list.push_str(item);
            continue;
        }
        let before = pairs.len();
        parse_item(line, item, pairs, diagnostics);
        open_wildcards = (pairs.len() > before && pairs[before].key == KEY_NOSWAP).then_some(before);
    }
}

/// Index of the first `::` in `item`.
fn find_double_colon(item: &str) -> Option<usize> {
    let bytes = item.as_bytes();
    let mut from = 0;
    while let Some(offset) = bytes[from..].iter().position(|&b| b == b':') {
        let at = from + offset;
        if bytes.get(at + 1) == Some(&b':') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Splits one `key::value` (or legacy `key:value`) item, whose first `::` is at `separator`;
/// the flag is true for the legacy form.
fn split_pair(item: &str, separator: Option<usize>) -> Result<(&str, &str, bool), Problem> {
    let (key, value, legacy) = match separator.map(|at| (&item[..at], &item[at + 2..])) {
        Some((_, value)) if find_double_colon(value).is_some() => return Err(Problem::TooManySeparators),
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
    let (key, value) = (key.trim_ascii(), value.trim_ascii());
    if key.is_empty() {
        return Err(Problem::EmptySource);
    }
    Ok((key, value, legacy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::rules::{MAX_ERRORS, MAX_WARNINGS, Severity};
    use crate::rewrite::{Options, compile};

    #[test]
    fn parsing_stops_past_the_rules_bound_and_lenient_cannot_load_the_part_read() {
        let text: String = (0..=MAX_RULES + 10).map(|i| format!("r{i}.io::m.example.org/r{i}\n")).collect();
        let (pairs, diagnostics) = parse(&text);
        assert_eq!(pairs.len(), MAX_RULES + 1, "stops at the first rule too many");
        let last = diagnostics.last().expect("the bound is reported");
        assert_eq!(
            (last.line, &last.problem),
            (u32::try_from(MAX_RULES + 1).unwrap(), &Problem::TooManyRules(MAX_RULES))
        );
        let lenient = Options { lenient: true, ..Options::default() };
        let refused = compile(pairs, diagnostics, lenient).expect_err("refused even with --lenient");
        assert!(refused.iter().any(|d| d.severity == Severity::Error && d.problem.is_fatal()));
        // Exactly at the bound it loads.
        let text: String = (0..MAX_RULES).map(|i| format!("r{i}.io::m.example.org/r{i}\n")).collect();
        let (pairs, diagnostics) = parse(&text);
        assert_eq!(compile(pairs, diagnostics, Options::default()).unwrap().rules.len(), MAX_RULES);
    }

    #[test]
    fn errors_stop_reading_and_warnings_past_the_bound_are_counted() {
        let (pairs, diagnostics) = parse(&"a b\n".repeat(MAX_ERRORS * 3));
        assert!(pairs.is_empty());
        assert_eq!(diagnostics.len(), MAX_ERRORS + 1);
        let last = diagnostics.last().unwrap();
        assert_eq!(
            (last.line, &last.problem),
            (u32::try_from(MAX_ERRORS).unwrap(), &Problem::TooManyErrors(MAX_ERRORS))
        );

        let extra = 500;
        let text = format!("a.io::m.example.org/a\n{}", ",\n".repeat(MAX_WARNINGS + extra));
        let (pairs, diagnostics) = parse(&text);
        assert_eq!(pairs.len(), 1);
        let warnings = diagnostics.iter().filter(|d| d.problem == Problem::EmptyEntry).count();
        assert_eq!(warnings, MAX_WARNINGS);
        let not_shown = diagnostics.iter().find_map(|d| match d.problem {
            Problem::WarningsNotShown(n) => Some(n),
            _ => None,
        });
        // `,` is two empty entries: every one past the bound is counted.
        assert_eq!(not_shown, Some(2 * (MAX_WARNINGS + extra) - MAX_WARNINGS));
        assert!(compile(pairs, diagnostics, Options::default()).is_ok(), "warnings never fail a load");
    }

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
