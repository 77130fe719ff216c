//! YAML rules: a flat mapping of `"source": "target"` strings, or any YAML
//! document that holds one under a rules key, as Palette's documents do:
//!
//! - `imageReplacementRules` (Registry Connect pack values) and
//!   `registryMappingRules` (Edge user-data), at any depth: a mapping, or a
//!   block string holding one;
//! - `imageSwap.imageChange` (Kubernetes pack values): imageswap maps text;
//! - `stringData.MIRROR_REGISTRIES` / `data.MIRROR_REGISTRIES` (base64) of a
//!   `registry-info` Secret manifest: imageswap maps text.
//!
//! The document is walked once, event by event, so memory stays proportional
//! to the file. A block string is parsed once more for its pairs, with its
//! lines mapped to the file's; a rules key inside it is an error, as are two
//! rules keys in one document. Everything else in the document is ignored,
//! and no value outside the rules ever reaches a message.

use base64::Engine;
use yaml_rust2::parser::Event;
use yaml_rust2::scanner::TScalarStyle;

use super::events::{Events, Failure, Lines};
use crate::rewrite::excerpt::cut;
use crate::rewrite::{self, Diagnostic, MAX_RULES, Problem, RulePair, excerpt};

/// Keys whose value is a `"source": "target"` mapping (or a block string holding one).
const WRAPPER_KEYS: [&str; 2] = ["imageReplacementRules", "registryMappingRules"];

/// Every place rules are looked for, as messages name them.
pub const LOOKED_FOR: &str = "`imageReplacementRules` or `registryMappingRules` (at any depth), `imageSwap.imageChange`, \
     or `MIRROR_REGISTRIES` under a Secret's `stringData`/`data`";

/// Deeper documents are refused: Palette's go ten levels deep, and the bound keeps the
/// parser's own stacks small whatever the file holds (`- - - - …` nests one level per 2 bytes).
pub const MAX_DEPTH: usize = 256;

/// Where in a document the rules were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The keys from the document's root, dotted: `stylus.externalRegistries.registryMappingRules`.
    pub path: String,
    /// The line of the rules key.
    pub line: u32,
}

/// What a YAML text holds.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The rule pairs, with the lines of the whole file.
    pub pairs: Vec<RulePair>,
    /// Syntax problems (an error ends the walk).
    pub diagnostics: Vec<Diagnostic>,
    /// The rules key they were under; `None` for a bare mapping.
    pub found: Option<Found>,
}

/// Reads the rules a YAML text holds; problems come back as diagnostics with their lines.
pub fn parse(text: &str) -> Parsed {
    let mut walk = Walk {
        events: Events::new(text, Lines::Offset(0)),
        path: Vec::new(),
        parsed: Parsed::default(),
        bare: Bare::Collecting,
    };
    if let Err((line, message)) = walk.stream() {
        // Past the bound the pairs stop at one too many: the whole text is refused.
        let problem =
            if walk.parsed.pairs.len() > MAX_RULES { Problem::TooManyRules(MAX_RULES) } else { Problem::Yaml(message) };
        walk.parsed.diagnostics.push(Diagnostic::error(line, problem));
    }
    walk.parsed
}

/// Whether the root mapping may itself be the rules (a bare `"source": "target"` file).
enum Bare {
    /// So far every root value is a string; the pairs go to `parsed.pairs`.
    Collecting,
    /// The root holds a key whose value is not a string (its name, line, and whether string
    /// pairs came before it), or is no mapping.
    Not(Option<(String, u32, bool)>),
}

/// What a rules key's value is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A `"source": "target"` mapping or a block string holding one.
    Pairs,
    /// imageswap maps text.
    Maps,
    /// imageswap maps text, base64-encoded as a Secret's `data` holds it (or plain, as a
    /// ConfigMap's does: maps text is never valid base64, having `::`).
    Base64Maps,
}

/// The rules key `key` is, under the mapping key `parent`.
fn kind(key: &str, parent: Option<&str>) -> Option<Kind> {
    match (key, parent) {
        _ if WRAPPER_KEYS.contains(&key) => Some(Kind::Pairs),
        ("imageChange", Some("imageSwap")) | ("MIRROR_REGISTRIES", Some("stringData")) => Some(Kind::Maps),
        ("MIRROR_REGISTRIES", Some("data")) => Some(Kind::Base64Maps),
        _ => None,
    }
}

struct Walk<'a> {
    events: Events<'a>,
    /// Mapping keys (and `[N]` sequence indexes) from the root to the node being read.
    path: Vec<String>,
    parsed: Parsed,
    bare: Bare,
}

impl Walk<'_> {
    /// Every document of the stream.
    fn stream(&mut self) -> Result<(), Failure> {
        let mut second_document = None;
        let mut documents = 0;
        loop {
            let (event, line) = self.events.next()?;
            match event {
                Event::StreamEnd => break,
                Event::DocumentStart => {
                    let (root, root_line) = self.events.next()?;
                    if is_null(&root) {
                        continue;
                    }
                    documents += 1;
                    if documents == 2 {
                        second_document = Some(line);
                        self.bare = Bare::Not(None);
                        self.parsed.pairs.clear();
                    }
                    self.root(root, root_line)?;
                }
                _ => {}
            }
        }
        if self.parsed.found.is_some() {
            return Ok(());
        }
        if let Some(line) = second_document {
            return Err((line, "a second YAML document (`---`): put every rule in one mapping".into()));
        }
        match &self.bare {
            Bare::Collecting => Ok(()),
            Bare::Not(Some((key, line, false))) => Err((
                *line,
                format!(
                    "no rules key in the document: looked for {LOOKED_FOR} (nor is it a bare rules mapping: \
                     the value of `{}` must be a string)",
                    excerpt(key)
                ),
            )),
            Bare::Not(Some((key, line, true))) => Err((
                *line,
                format!(
                    "the value of `{}` must be a string (a rules mapping holds \"source\": \"target\" strings), \
                     and the document holds no rules key: looked for {LOOKED_FOR}",
                    excerpt(key)
                ),
            )),
            Bare::Not(None) => Err((
                1,
                format!(
                    "expected a mapping of \"source\": \"target\" strings, or a document holding one under {LOOKED_FOR}"
                ),
            )),
        }
    }

    fn root(&mut self, root: Event, line: u32) -> Result<(), Failure> {
        match root {
            Event::MappingStart(..) => self.mapping(0, true),
            other => {
                if matches!(self.bare, Bare::Collecting) {
                    self.bare = Bare::Not(None);
                }
                let error_line = if matches!(other, Event::Scalar(..) | Event::Alias(_)) { Some(line) } else { None };
                self.node(other, 0)?;
                match error_line {
                    // A lone string: report it where it is.
                    Some(line) if self.parsed.found.is_none() => Err((
                        line,
                        format!(
                            "expected a mapping of \"source\": \"target\" strings, or a document holding one under {LOOKED_FOR}"
                        ),
                    )),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Any node, its first event already read: walked for rules keys, otherwise ignored.
    fn node(&mut self, first: Event, depth: usize) -> Result<(), Failure> {
        match first {
            Event::MappingStart(..) => self.mapping(depth + 1, false),
            Event::SequenceStart(..) => {
                for index in 0usize.. {
                    let (event, line) = self.events.next()?;
                    if matches!(event, Event::SequenceEnd | Event::StreamEnd) {
                        return Ok(());
                    }
                    self.enter(depth + 1, line)?;
                    self.path.push(format!("[{index}]"));
                    self.node(event, depth + 1)?;
                    self.path.pop();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn enter(&self, depth: usize, line: u32) -> Result<(), Failure> {
        if depth > MAX_DEPTH {
            return Err((line, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// A mapping, its start already read; at the root, string values may be bare rules.
    fn mapping(&mut self, depth: usize, root: bool) -> Result<(), Failure> {
        loop {
            let (key_event, key_line) = self.events.next()?;
            let key = match key_event {
                Event::MappingEnd | Event::StreamEnd => return Ok(()),
                Event::Scalar(key, ..) => key,
                Event::Alias(id) => self.events.alias(id, key_line)?.unwrap_or("*").to_owned(),
                complex => {
                    // `? [a, b]`: not a rules key; its value is walked all the same.
                    self.node(complex, depth)?;
                    let (value, _) = self.events.next()?;
                    self.not_bare(root, "?", key_line);
                    self.node(value, depth)?;
                    continue;
                }
            };
            let (value, value_line) = self.events.next()?;
            let parent = self.path.last().map(String::as_str);
            if let Some(kind) = kind(&key, parent) {
                self.rules(kind, &key, key_line, value, value_line, depth)?;
                continue;
            }
            match value {
                Event::Scalar(value, style, ..) if root && matches!(self.bare, Bare::Collecting) => {
                    let value = string_or_empty(value, style);
                    push(&mut self.parsed.pairs, RulePair { line: key_line, key, value })?;
                }
                Event::Alias(id) if root && matches!(self.bare, Bare::Collecting) => {
                    match self.events.alias(id, value_line)?.map(str::to_owned) {
                        Some(value) => push(&mut self.parsed.pairs, RulePair { line: key_line, key, value })?,
                        None => self.not_bare(root, &key, value_line),
                    }
                }
                Event::Scalar(..) | Event::Alias(_) => {}
                collection => {
                    self.not_bare(root, &key, key_line);
                    self.enter(depth + 1, value_line)?;
                    // Only messages and the parent test read the path: a long key is kept cut.
                    self.path.push(cut(key));
                    self.node(collection, depth)?;
                    self.path.pop();
                }
            }
        }
    }

    fn not_bare(&mut self, root: bool, key: &str, line: u32) {
        if root && matches!(self.bare, Bare::Collecting) {
            self.bare = Bare::Not(Some((key.to_owned(), line, !self.parsed.pairs.is_empty())));
            self.parsed.pairs = Vec::new();
        }
    }

    /// The value of a rules key.
    fn rules(
        &mut self,
        kind: Kind,
        key: &str,
        line: u32,
        value: Event,
        value_line: u32,
        depth: usize,
    ) -> Result<(), Failure> {
        let path = self.dotted(key);
        if let Some(first) = &self.parsed.found {
            return Err((
                line,
                format!(
                    "two rules keys: `{}` (line {}) and `{}` (line {line}): keep one",
                    excerpt(&first.path),
                    first.line,
                    excerpt(&path)
                ),
            ));
        }
        self.parsed.found = Some(Found { path, line });
        self.bare = Bare::Not(None);
        self.parsed.pairs = Vec::new();
        let (text, style) = match value {
            Event::MappingStart(..) if kind == Kind::Pairs => {
                self.enter(depth + 1, value_line)?;
                return pairs(&mut self.events, key, &mut self.parsed.pairs);
            }
            Event::Scalar(text, style, ..) => (text, style),
            Event::Alias(id) => match self.events.alias(id, value_line)? {
                Some(text) => (text.to_owned(), TScalarStyle::Plain),
                None => {
                    return Err((
                        value_line,
                        format!("`{key}`: an alias to a mapping is not supported here; write the rules out"),
                    ));
                }
            },
            _ => {
                let what = if kind == Kind::Pairs {
                    "a mapping of \"source\": \"target\" strings, or a block string holding one"
                } else {
                    "a string in the imageswap maps format (`SOURCE::TARGET`)"
                };
                return Err((value_line, format!("the value of `{key}` must be {what}")));
            }
        };
        if is_null_scalar(&text, style) {
            return Ok(());
        }
        // A literal block string keeps its lines: the parser marks it at its first content
        // line. Any other string has lost them; its problems are reported on its first line.
        let lines = if style == TScalarStyle::Literal {
            Lines::Offset(value_line.saturating_sub(1))
        } else {
            Lines::All(value_line)
        };
        match kind {
            Kind::Pairs => block_pairs(&text, lines, key, self.events.alias_budget(), &mut self.parsed.pairs),
            Kind::Maps => {
                self.maps(&text, lines);
                Ok(())
            }
            Kind::Base64Maps => {
                let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                match base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                {
                    Some(decoded) => self.maps(&decoded, Lines::All(value_line)),
                    None => self.maps(&text, lines),
                }
                Ok(())
            }
        }
    }

    fn maps(&mut self, text: &str, lines: Lines) {
        let (mut pairs, mut diagnostics) = rewrite::maps::parse(text);
        pairs.iter_mut().for_each(|pair| pair.line = lines.of(pair.line));
        diagnostics.iter_mut().for_each(|diagnostic| diagnostic.line = lines.of(diagnostic.line));
        self.parsed.pairs = pairs;
        self.parsed.diagnostics.extend(diagnostics);
    }

    /// `a.b[0].key` for `key` under the current path.
    fn dotted(&self, key: &str) -> String {
        dotted(self.path.iter().map(String::as_str).chain([key]))
    }
}

/// Keys and `[N]` indexes as one path: `a.b[0].key`.
pub(crate) fn dotted<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut path = String::new();
    for part in parts {
        if !path.is_empty() && !part.starts_with('[') {
            path.push('.');
        }
        path.push_str(part);
    }
    path
}

fn is_null(event: &Event) -> bool {
    matches!(event, Event::Scalar(value, style, ..) if is_null_scalar(value, *style))
        || matches!(event, Event::DocumentEnd)
}

/// A plain empty, `~` or `null` scalar: YAML's null.
fn is_null_scalar(value: &str, style: TScalarStyle) -> bool {
    style == TScalarStyle::Plain && (value.is_empty() || value == "~" || value == "null")
}

/// A scalar's string; a null is the empty string (an empty target: leave matches alone).
fn string_or_empty(value: String, style: TScalarStyle) -> String {
    if is_null_scalar(&value, style) { String::new() } else { value }
}

/// The `"source": "target"` pairs in a block string of the rules key `wrapper`; its anchors
/// and aliases may take `alias_budget` bytes.
fn block_pairs(
    text: &str,
    lines: Lines,
    wrapper: &str,
    alias_budget: usize,
    out: &mut Vec<RulePair>,
) -> Result<(), Failure> {
    // Looked for in the text first: the parser reads a key's value before it hands over the
    // key, and that value would be one more copy of nearly the whole block.
    if let Some((line, key)) = rules_key_line(text) {
        return Err((lines.of(line), nested(key, wrapper)));
    }
    let mut events = Events::with_alias_budget(text, lines, alias_budget);
    let mut documents = 0;
    loop {
        let (event, line) = events.next()?;
        match event {
            Event::StreamEnd => return Ok(()),
            Event::DocumentStart => {
                let (root, root_line) = events.next()?;
                if is_null(&root) {
                    continue;
                }
                documents += 1;
                if documents > 1 {
                    return Err((line, format!("a second YAML document (`---`) in the value of `{wrapper}`")));
                }
                match root {
                    Event::MappingStart(..) => pairs(&mut events, wrapper, out)?,
                    _ => {
                        return Err((
                            root_line,
                            format!("the value of `{wrapper}` must hold a mapping of \"source\": \"target\" strings"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

fn nested(key: &str, wrapper: &str) -> String {
    format!("`{key}` inside `{wrapper}`: a rules key holds the rules themselves, not another rules key")
}

/// The first line (1-based) of `text` that starts with a rules key, plain or quoted, and `:`.
fn rules_key_line(text: &str) -> Option<(u32, &'static str)> {
    text.lines().enumerate().find_map(|(index, line)| {
        let line = line.trim_start().trim_start_matches(['"', '\'']);
        let key = WRAPPER_KEYS.into_iter().find(|key| {
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start_matches(['"', '\'']).trim_start().starts_with(':'))
        })?;
        Some((u32::try_from(index + 1).unwrap_or(u32::MAX), key))
    })
}

/// The pairs of a rules mapping whose start was read; a rules key in it is an error.
fn pairs(events: &mut Events<'_>, wrapper: &str, out: &mut Vec<RulePair>) -> Result<(), Failure> {
    loop {
        let (event, line) = events.next()?;
        let key = match event {
            Event::MappingEnd | Event::StreamEnd => return Ok(()),
            Event::Scalar(key, ..) => key,
            Event::Alias(id) => match events.alias(id, line)? {
                Some(key) => key.to_owned(),
                None => return Err((line, "a key must be a plain string".into())),
            },
            _ => return Err((line, "a key must be a plain string".into())),
        };
        if WRAPPER_KEYS.contains(&key.as_str()) {
            return Err((line, nested(&key, wrapper)));
        }
        let (value, value_line) = events.next()?;
        let value = match value {
            Event::Scalar(value, style, ..) => string_or_empty(value, style),
            Event::Alias(id) => match events.alias(id, value_line)? {
                Some(value) => value.to_owned(),
                None => return Err((value_line, format!("`{}`: an alias must name a string", excerpt(&key)))),
            },
            _ => return Err((value_line, format!("the value of `{}` must be a string", excerpt(&key)))),
        };
        push(out, RulePair { line, key, value })?;
    }
}

/// Adds `pair`; past [`MAX_RULES`] (the pairs then hold one too many) reading stops.
fn push(out: &mut Vec<RulePair>, pair: RulePair) -> Result<(), Failure> {
    let line = pair.line;
    out.push(pair);
    if out.len() > MAX_RULES {
        return Err((line, Problem::TooManyRules(MAX_RULES).to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(u32, String, String)> {
        let parsed = parse(text);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        parsed.pairs.into_iter().map(|p| (p.line, p.key, p.value)).collect()
    }

    fn owned(rows: &[(u32, &str, &str)]) -> Vec<(u32, String, String)> {
        rows.iter().map(|&(l, k, v)| (l, k.to_owned(), v.to_owned())).collect()
    }

    fn error(text: &str) -> (u32, String) {
        let parsed = parse(text);
        assert_eq!(parsed.diagnostics.len(), 1, "{text}: {:?}", parsed.diagnostics);
        (parsed.diagnostics[0].line, parsed.diagnostics[0].problem.to_string())
    }

    #[test]
    fn an_error_at_the_end_points_at_the_last_line_with_text() {
        // Found by the rules_file fuzz target: `[` was reported on line 2 of a one-line file.
        for (text, line) in [("[", 1), ("a: b\n[\n\n", 2), ("\r\r[", 3), ("a: b\r\n{\r\n", 2)] {
            assert_eq!(parse(text).diagnostics.iter().map(|d| d.line).collect::<Vec<_>>(), [line], "{text:?}");
        }
        // `? ` is an empty key whose event sits past the end.
        assert_eq!(parse(" ? ").pairs.iter().map(|p| p.line).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn flat_mapping_with_lines() {
        let text = "# comment\n\"a.io/x\": \"m.io/a\"\n\"all\": \"m.io/all\"\nb.io: ''\n";
        assert_eq!(pairs(text), owned(&[(2, "a.io/x", "m.io/a"), (3, "all", "m.io/all"), (4, "b.io", "")]));
        assert_eq!(parse(text).found, None);
    }

    #[test]
    fn wrapped_mapping_and_block_string() {
        let nested = "registryMappingRules:\n  \"a.io\": \"m.io\"\n  \"b.io\": \"n.io\"\n";
        assert_eq!(pairs(nested), owned(&[(2, "a.io", "m.io"), (3, "b.io", "n.io")]));
        let block = "imageReplacementRules: |\n  \"a.io\": \"m.io\"\n  \"b.io\": \"n.io\"\n";
        assert_eq!(pairs(block), owned(&[(2, "a.io", "m.io"), (3, "b.io", "n.io")]));
        assert_eq!(parse(block).found, Some(Found { path: "imageReplacementRules".into(), line: 1 }));
    }

    #[test]
    fn rules_keys_at_any_depth_keep_the_file_lines() {
        let text =
            "a: 1\nx:\n  list:\n  - y:\n      imageReplacementRules: |\n        # c\n\n        \"a.io\": \"m.io\"\n";
        assert_eq!(pairs(text), owned(&[(8, "a.io", "m.io")]));
        assert_eq!(parse(text).found.unwrap().path, "x.list[0].y.imageReplacementRules");
        let maps = "imageSwap:\n  imageChange: |-\n    default::\n    a.io::m.io\n";
        assert_eq!(pairs(maps), owned(&[(3, "default", ""), (4, "a.io", "m.io")]));
    }

    #[test]
    fn a_secret_manifest_is_read_through_mirror_registries() {
        let string_data =
            "---\nkind: Secret\nstringData:\n  DOMAIN: h\n  MIRROR_REGISTRIES: a.io::m.io/a,b.io::m.io/b\n---\n";
        assert_eq!(pairs(string_data), owned(&[(5, "a.io", "m.io/a"), (5, "b.io", "m.io/b")]));
        let data = "kind: Secret\ndata:\n  PASSWORD: c2VjcmV0\n  MIRROR_REGISTRIES: YS5pbzo6bS5pby9h\n";
        assert_eq!(pairs(data), owned(&[(4, "a.io", "m.io/a")]));
    }

    #[test]
    fn anchors_and_aliases_name_strings() {
        let text = "m: &m m.io/x\nregistryMappingRules:\n  \"a.io\": *m\n  &k \"b.io\": n.io\n";
        assert_eq!(pairs(text), owned(&[(3, "a.io", "m.io/x"), (4, "b.io", "n.io")]));
    }

    #[test]
    fn aliases_are_counted_against_the_file_size() {
        // A hand-written file sharing a target: a thousand copies fit the 64 KiB floor.
        let shared: String = "m: &m harbor.example.org/hub\nregistryMappingRules:\n".to_owned()
            + &(0..1_000).map(|i| format!("  \"r{i}.io\": *m\n")).collect::<String>();
        assert_eq!(parse(&shared).pairs.len(), 1_000);
        let long = "x".repeat(40 * 1024);
        let refused = "aliases here would copy more text than the file holds";
        // (text, line of the refusal or 0 when it loads)
        let table = [
            // The anchored string itself counts: 40 KiB kept, one 40 KiB copy is over.
            (format!("a: &a {long}\nregistryMappingRules:\n  \"b.io\": *a\n"), 3),
            (format!("\"a.io\": &a {long}\n\"b.io\": *a\n"), 2),
            (format!("\"a.io\": &a {long}\n*a : b\n"), 2),
            // A block string's aliases share what the file's walk has left: alone, its anchor
            // and one copy would fit the 64 KiB floor.
            (
                format!(
                    "a: &a {}\nimageReplacementRules: |\n  \"b.io\": &b {}\n  \"c.io\": *b\n",
                    long.repeat(2),
                    &long[..30_000]
                ),
                4,
            ),
            // An alias nothing reads costs nothing.
            (format!("a: &a {long}\nx:\n  b: *a\n  c: [*a, *a]\nregistryMappingRules: {{\"b.io\": m.io}}\n"), 0),
        ];
        for (case, (text, line)) in table.into_iter().enumerate() {
            let found: Vec<(u32, String)> =
                parse(&text).diagnostics.iter().map(|d| (d.line, d.problem.to_string())).collect();
            match line {
                0 => assert!(found.is_empty(), "case {case}: {found:?}"),
                _ => assert!(
                    matches!(&found[..], [(got, message)] if *got == line && message.contains(refused)),
                    "case {case}: {found:?}"
                ),
            }
        }
    }

    #[test]
    fn errors_quote_at_most_200_characters_of_a_value() {
        // Under YAML's 1024-character bound on a key.
        let key = "k".repeat(1_000);
        let table = [
            format!("\"{key}\": [x]\n"),
            format!("\"a.io\": m.io\n\"{key}\": [x]\n"),
            format!("registryMappingRules:\n  \"{key}\": [x]\n"),
            format!("{key}:\n  registryMappingRules: {{}}\nb:\n  imageReplacementRules: {{}}\n"),
        ];
        for (case, text) in table.iter().enumerate() {
            let found: Vec<String> = parse(text).diagnostics.iter().map(|d| d.problem.to_string()).collect();
            let lengths: Vec<usize> = found.iter().map(String::len).collect();
            assert!(lengths.iter().all(|&length| length < 1_000), "case {case}: {lengths:?}");
            assert!(found.iter().any(|message| message.contains("kkk…[")), "case {case}: {found:?}");
        }
    }

    #[test]
    fn empty_document_has_no_pairs() {
        assert_eq!(pairs(""), owned(&[]));
        assert_eq!(pairs("# nothing\n"), owned(&[]));
        assert_eq!(pairs("---\n---\n"), owned(&[]));
        assert_eq!(pairs("registryMappingRules: |\n"), owned(&[]));
    }

    #[test]
    fn errors_carry_lines() {
        let table = [
            ("\"a.io\": \"m.io\"\n\"b.io\": [x]\n", 2, "the value of `b.io` must be a string"),
            ("- a\n- b\n", 1, "expected a mapping"),
            ("\"a.io\": \"m.io\"\n\"b.io: x\n", 2, "not YAML"),
            ("stylus:\n  site: {}\n", 1, "looked for `imageReplacementRules`"),
            (
                "a:\n  registryMappingRules: {}\nb:\n  imageReplacementRules: {}\n",
                4,
                "`a.registryMappingRules` (line 2)",
            ),
            ("imageReplacementRules: |\n  \"a.io\": \"m.io\"\n  \"b.io: x\n", 3, "not YAML"),
            ("imageReplacementRules: |\n  imageReplacementRules: |\n    a: b\n", 2, "inside `imageReplacementRules`"),
            ("registryMappingRules:\n  imageReplacementRules: {}\n", 2, "inside `registryMappingRules`"),
            ("a: &x [1]\nregistryMappingRules: *x\n", 2, "alias to a mapping"),
        ];
        for (text, line, message) in table {
            let (got_line, got) = error(text);
            assert_eq!(got_line, line, "{text}: {got}");
            assert!(got.contains(message), "{text}: {got}");
        }
    }

    #[test]
    fn deep_nesting_stops_at_the_bound() {
        let text = "- ".repeat(100_000) + "x\n";
        assert!(error(&text).1.contains("nested deeper than"));
    }
}
