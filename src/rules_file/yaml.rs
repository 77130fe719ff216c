//! YAML rule pairs: Palette Registry Connect `imageReplacementRules` and Edge
//! `registryMappingRules`, a flat mapping of `"source": "target"` strings.
//!
//! The document may also be that mapping wrapped in one of those two keys,
//! either nested or as a block string (`imageReplacementRules: |`), as the
//! pack and installer files carry it. Read with yaml-rust2's event parser so
//! that every pair keeps its line number.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::rewrite::{Diagnostic, Problem, RulePair};

/// Keys under which Palette documents nest the rule mapping.
const WRAPPER_KEYS: [&str; 2] = ["imageReplacementRules", "registryMappingRules"];

/// Reads YAML pairs; problems come back as diagnostics with their lines.
pub fn parse(text: &str) -> (Vec<RulePair>, Vec<Diagnostic>) {
    parse_at(text, 0)
}

/// As [`parse`], for text that starts after `line_offset` lines of an enclosing file.
fn parse_at(text: &str, line_offset: u32) -> (Vec<RulePair>, Vec<Diagnostic>) {
    let mut recorder = Recorder::default();
    if let Err(error) = Parser::new_from_str(text).load(&mut recorder, true) {
        // An error at the end of the input is reported on the line after the last one; point
        // at the last line that has text instead.
        let line = line_number(error.marker()).min(last_text_line(text)) + line_offset;
        return (Vec::new(), vec![Diagnostic::error(line, Problem::Yaml(format!("not YAML: {}", error.info())))]);
    }
    let mut reader = Reader { events: recorder.events, next: 0, line_offset, pairs: Vec::new() };
    let outcome = reader.document();
    // Events at the end of the input (an empty key, a closing bracket) carry the line after it.
    let last = last_text_line(text).saturating_add(line_offset);
    let mut pairs = reader.pairs;
    pairs.iter_mut().for_each(|pair| pair.line = pair.line.min(last));
    match outcome {
        Ok(()) => (pairs, Vec::new()),
        Err((line, message)) => (pairs, vec![Diagnostic::error(line.min(last), Problem::Yaml(message))]),
    }
}

/// The number of the last line of `text` with anything but whitespace (YAML line breaks:
/// `\n`, `\r\n` and a lone `\r`).
fn last_text_line(text: &str) -> u32 {
    let text = text.trim_end();
    let breaks = text
        .bytes()
        .zip(text.bytes().skip(1).chain([b'\n']))
        .filter(|&(b, next)| b == b'\n' || (b == b'\r' && next != b'\n'));
    u32::try_from(breaks.count()).unwrap_or(u32::MAX).saturating_add(1)
}

fn line_number(marker: &Marker) -> u32 {
    u32::try_from(marker.line()).unwrap_or(u32::MAX)
}

#[derive(Default)]
struct Recorder {
    events: Vec<(Event, u32)>,
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, event: Event, marker: Marker) {
        self.events.push((event, line_number(&marker)));
    }
}

type Failure = (u32, String);

struct Reader {
    events: Vec<(Event, u32)>,
    next: usize,
    line_offset: u32,
    pairs: Vec<RulePair>,
}

impl Reader {
    fn peek(&self) -> Option<&(Event, u32)> {
        self.events.get(self.next)
    }

    fn take(&mut self) -> (Event, u32) {
        let (event, line) = self.events.get(self.next).cloned().unwrap_or((Event::StreamEnd, 0));
        self.next += 1;
        (event, line + self.line_offset)
    }

    /// The one document of the file; a second one (after `---`) is an error, not silently
    /// ignored: its rules would otherwise never apply.
    fn document(&mut self) -> Result<(), Failure> {
        self.first_document()?;
        while let Some((event, _)) = self.peek() {
            match event {
                Event::DocumentStart => {
                    let (_, line) = self.take();
                    return Err((line, "a second YAML document (`---`): put every rule in one mapping".into()));
                }
                _ => self.next += 1,
            }
        }
        Ok(())
    }

    fn first_document(&mut self) -> Result<(), Failure> {
        while let Some((event, _)) = self.peek() {
            match event {
                Event::StreamStart | Event::DocumentStart | Event::Nothing => self.next += 1,
                Event::StreamEnd | Event::DocumentEnd => {
                    self.next += 1;
                    return Ok(());
                }
                Event::Scalar(value, ..) if value.is_empty() || value == "~" || value == "null" => return Ok(()),
                Event::MappingStart(..) => return self.mapping(true),
                _ => {
                    let (_, line) = self.take();
                    return Err((line, "expected a mapping of \"source\": \"target\" strings".into()));
                }
            }
        }
        Ok(())
    }

    /// A mapping of string pairs; at the top level, a single wrapper key is unwrapped.
    fn mapping(&mut self, top_level: bool) -> Result<(), Failure> {
        self.take();
        loop {
            let (event, line) = self.take();
            let key = match event {
                Event::MappingEnd => return Ok(()),
                Event::Scalar(key, ..) => key,
                _ => return Err((line, "a key must be a plain string".into())),
            };
            let (value, value_line) = self.take();
            match value {
                Event::Scalar(value, style, ..) => {
                    if top_level && WRAPPER_KEYS.contains(&key.as_str()) && is_block(style) {
                        // The value is itself the YAML text of the rules; the parser marks
                        // a block scalar at its first content line.
                        let (pairs, mut diagnostics) = parse_at(&value, value_line.saturating_sub(1));
                        self.pairs.extend(pairs);
                        if let Some(diagnostic) = diagnostics.pop() {
                            return Err((diagnostic.line, diagnostic.problem.to_string()));
                        }
                        continue;
                    }
                    let value = if style == TScalarStyle::Plain && (value == "~" || value == "null") {
                        String::new()
                    } else {
                        value
                    };
                    self.pairs.push(RulePair { line, key, value });
                }
                Event::MappingStart(..) if top_level && WRAPPER_KEYS.contains(&key.as_str()) => {
                    self.next -= 1;
                    self.mapping(false)?;
                }
                Event::Alias(_) => return Err((value_line, format!("`{key}`: YAML aliases are not supported"))),
                _ => return Err((value_line, format!("the value of `{key}` must be a string"))),
            }
        }
    }
}

fn is_block(style: TScalarStyle) -> bool {
    matches!(style, TScalarStyle::Literal | TScalarStyle::Folded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(u32, String, String)> {
        let (pairs, diagnostics) = parse(text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        pairs.into_iter().map(|p| (p.line, p.key, p.value)).collect()
    }

    fn owned(rows: &[(u32, &str, &str)]) -> Vec<(u32, String, String)> {
        rows.iter().map(|&(l, k, v)| (l, k.to_owned(), v.to_owned())).collect()
    }

    #[test]
    fn an_error_at_the_end_points_at_the_last_line_with_text() {
        // Found by the rules_file fuzz target: `[` was reported on line 2 of a one-line file.
        for (text, line) in [("[", 1), ("a: b\n[\n\n", 2), ("\r\r[", 3), ("a: b\r\n{\r\n", 2)] {
            let (_, diagnostics) = parse(text);
            assert_eq!(diagnostics.iter().map(|d| d.line).collect::<Vec<_>>(), [line], "{text:?}");
        }
        // `? ` is an empty key whose event sits past the end.
        let (pairs, _) = parse(" ? ");
        assert_eq!(pairs.iter().map(|p| p.line).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn flat_mapping_with_lines() {
        let text = "# comment\n\"a.io/x\": \"m.io/a\"\n\"all\": \"m.io/all\"\nb.io: ''\n";
        assert_eq!(pairs(text), owned(&[(2, "a.io/x", "m.io/a"), (3, "all", "m.io/all"), (4, "b.io", "")]));
    }

    #[test]
    fn wrapped_mapping_and_block_string() {
        let nested = "registryMappingRules:\n  \"a.io\": \"m.io\"\n  \"b.io\": \"n.io\"\n";
        assert_eq!(pairs(nested), owned(&[(2, "a.io", "m.io"), (3, "b.io", "n.io")]));
        let block = "imageReplacementRules: |\n  \"a.io\": \"m.io\"\n  \"b.io\": \"n.io\"\n";
        assert_eq!(pairs(block), owned(&[(2, "a.io", "m.io"), (3, "b.io", "n.io")]));
    }

    #[test]
    fn empty_document_has_no_pairs() {
        assert_eq!(pairs(""), owned(&[]));
        assert_eq!(pairs("# nothing\n"), owned(&[]));
    }

    #[test]
    fn errors_carry_lines() {
        let table = [
            ("\"a.io\": \"m.io\"\n\"b.io\": [x]\n", 2, "the value of `b.io` must be a string"),
            ("- a\n- b\n", 1, "expected a mapping"),
            ("\"a.io\": \"m.io\"\n\"b.io: x\n", 2, "not YAML"),
            ("a.io: &x m.io\nb.io: *x\n", 2, "aliases are not supported"),
        ];
        for (text, line, message) in table {
            let (_, diagnostics) = parse(text);
            assert_eq!(diagnostics.len(), 1, "{text}");
            assert_eq!(diagnostics[0].line, line, "{text}: {}", diagnostics[0]);
            assert!(diagnostics[0].to_string().contains(message), "{text}: {}", diagnostics[0]);
        }
    }
}
