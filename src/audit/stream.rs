//! Documents from a YAML stream, one at a time, as `helm template`, `kustomize build` and
//! `kubectl get -o yaml` write them.
//!
//! yaml-rust2's event parser reads the input lazily; this module builds one JSON value per
//! document from its events and hands it on. The `items` of a document's top-level mapping
//! (a `List`) are handed on one by one as they complete and never held together, so a
//! 10k-Pod `kubectl get pods -o yaml` is as bounded as 10k small documents.
//!
//! An alias is a copy of its anchor's value, and aliases of aliases multiply: a 642-byte
//! "billion laughs" document took 3 GB. The copies one document's aliases make may add up to
//! [`MAX_ALIAS_BYTES`] (each value counted as [`NODE_BYTES`] plus its text); past it the
//! document is an error on the alias's line.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::BufRead;
use std::rc::Rc;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// What the copies made by one document's aliases may add up to. Helm, kustomize and kubectl
/// write no aliases; a hand-written manifest shares a few resource blocks or env lists. The
/// largest object the API server stores is ~1.5 MiB, and a document that aliases can stay well
/// below this while expanding to several.
pub const MAX_ALIAS_BYTES: usize = 4 * 1024 * 1024;
/// What one value counts for beside its text: about the size of a `serde_json::Value` and the
/// slot that holds it.
pub const NODE_BYTES: usize = 32;

/// Reads every document of `reader`, calling `sink` with each document (or `List` item) and
/// the line it starts on. The error is `LINE: reason`, or `sink`'s own error.
pub fn documents(reader: impl BufRead, mut sink: impl FnMut(Value, u64) -> Result<(), String>) -> Result<(), String> {
    let read_error = Rc::new(RefCell::new(None));
    let chars = Chars { reader, line: String::new(), pos: 0, error: Rc::clone(&read_error) };
    let mut parser = Parser::new(chars);
    let mut builder = Builder::default();
    loop {
        let (event, marker) = match parser.next_token() {
            Ok(next) => next,
            Err(error) => {
                if let Some(error) = read_error.borrow_mut().take() {
                    return Err(format!("{}: {error}", builder.line));
                }
                let start = builder.document_line;
                return Err(format!(
                    "{}: the document starting at line {start} is not valid YAML or JSON: {error}",
                    error.marker().line()
                ));
            }
        };
        let line = marker.line() as u64;
        if event == Event::StreamEnd {
            break;
        }
        builder.line = line;
        if let Some((document, line)) = builder.event(event, line)? {
            sink(document, line)?;
        }
        while let Some((item, line)) = builder.finished_items.pop() {
            sink(item, line)?;
        }
    }
    if let Some(error) = read_error.borrow_mut().take() {
        return Err(format!("{}: {error}", builder.line));
    }
    Ok(())
}

/// The characters of a reader, a line at a time; a read error (or invalid UTF-8) ends them
/// and is kept for the caller.
struct Chars<R> {
    reader: R,
    line: String,
    pos: usize,
    error: Rc<RefCell<Option<std::io::Error>>>,
}

impl<R: BufRead> Iterator for Chars<R> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        if self.pos >= self.line.len() {
            self.line.clear();
            self.pos = 0;
            match self.reader.read_line(&mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(error) => {
                    *self.error.borrow_mut() = Some(error);
                    return None;
                }
            }
        }
        let next = self.line[self.pos..].chars().next()?;
        self.pos += next.len_utf8();
        Some(next)
    }
}

/// A collection being built; `cost` counts its values so far as an alias copy would.
enum Frame {
    Sequence { values: Vec<Value>, anchor: usize, streamed: bool, cost: usize },
    Mapping { values: Map<String, Value>, key: Option<String>, anchor: usize, cost: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Anchored values of the current document, and what a copy of each counts for.
    anchors: HashMap<usize, (Value, usize)>,
    /// What the current document's alias copies may still add.
    alias_budget: usize,
    document_line: u64,
    /// The line of the event being handled.
    line: u64,
    /// Where the streamed item being built started.
    item_line: u64,
    finished_items: Vec<(Value, u64)>,
}

impl Builder {
    /// Handles one event; returns a finished document (without streamed items) and its line.
    fn event(&mut self, event: Event, line: u64) -> Result<Option<(Value, u64)>, String> {
        if self.in_streamed_sequence() && !matches!(event, Event::SequenceEnd) {
            self.item_line = line;
        }
        let value = match event {
            Event::DocumentStart => {
                self.anchors.clear();
                self.alias_budget = MAX_ALIAS_BYTES;
                self.document_line = line;
                return Ok(None);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let cost = NODE_BYTES.saturating_add(text.len());
                self.anchored(anchor, scalar(text, style, tag.as_ref()), cost)
            }
            Event::Alias(id) => self.alias(id, line)?,
            Event::SequenceStart(anchor, _) => {
                let streamed = self.stack.len() == 1
                    && matches!(self.stack.last(), Some(Frame::Mapping { key: Some(key), .. }) if key == "items");
                self.stack.push(Frame::Sequence { values: Vec::new(), anchor, streamed, cost: NODE_BYTES });
                return Ok(None);
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Mapping { values: Map::new(), key: None, anchor, cost: NODE_BYTES });
                return Ok(None);
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Sequence { values, anchor, cost, .. }) => self.anchored(anchor, Value::Array(values), cost),
                Some(Frame::Mapping { values, anchor, cost, .. }) => self.anchored(anchor, Value::Object(values), cost),
                None => return Ok(None),
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => return Ok(None),
        };
        Ok(self.place(value))
    }

    /// A copy of the value anchor `id` stands for, taken from the document's alias budget.
    fn alias(&mut self, id: usize, line: u64) -> Result<(Value, usize), String> {
        let Some((value, cost)) = self.anchors.get(&id) else {
            return Err(format!("{line}: an alias to an unknown anchor"));
        };
        match self.alias_budget.checked_sub(*cost) {
            Some(left) => self.alias_budget = left,
            None => {
                return Err(format!(
                    "{line}: the aliases of the document starting at line {} copy more than {} MiB of values \
                     (a \"billion laughs\"?): write the values out",
                    self.document_line,
                    MAX_ALIAS_BYTES >> 20
                ));
            }
        }
        Ok((value.clone(), *cost))
    }

    fn in_streamed_sequence(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Sequence { streamed: true, .. }))
    }

    fn anchored(&mut self, anchor: usize, value: Value, cost: usize) -> (Value, usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), cost));
        }
        (value, cost)
    }

    /// Puts a finished value and its cost into its parent; a value with no parent is a whole
    /// document.
    fn place(&mut self, (value, cost): (Value, usize)) -> Option<(Value, u64)> {
        match self.stack.last_mut() {
            None => return Some((value, self.document_line)),
            Some(Frame::Sequence { streamed: true, .. }) => self.finished_items.push((value, self.item_line)),
            Some(Frame::Sequence { values, cost: total, .. }) => {
                values.push(value);
                *total = total.saturating_add(cost);
            }
            Some(Frame::Mapping { values, key, cost: total, .. }) => {
                match key.take() {
                    Some(key) => {
                        values.insert(key, value);
                    }
                    None => *key = Some(key_text(value)),
                }
                *total = total.saturating_add(cost);
            }
        }
        None
    }
}

/// A mapping key as text (Kubernetes keys are strings; others are written as JSON).
fn key_text(value: Value) -> String {
    match value {
        Value::String(text) => text,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A scalar resolved as YAML 1.2's core schema does: null, booleans and numbers when plain
/// (or tagged), strings otherwise.
fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    match tag.map(|tag| tag.suffix.as_str()) {
        Some("str") => return Value::String(text),
        Some("null") => return Value::Null,
        _ if style != TScalarStyle::Plain => return Value::String(text),
        _ => {}
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let numeric = text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if numeric {
        if let Ok(integer) = text.parse::<i64>() {
            return Value::Number(integer.into());
        }
        if let Some(number) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(number);
        }
    }
    Value::String(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Vec<(Value, u64)>, String> {
        let mut found = Vec::new();
        documents(text.as_bytes(), |value, line| {
            found.push((value, line));
            Ok(())
        })?;
        Ok(found)
    }

    #[test]
    fn documents_and_list_items_one_by_one_with_their_lines() {
        let text = "# Source: chart/templates/a.yaml\n---\nkind: A\nn: 1\nport: \"80\"\nok: true\nnone:\n---\n\
                    apiVersion: v1\nitems:\n- kind: B\n  x: &x [1, 2.5]\n- kind: C\n  y: *x\nkind: List\n---\n\
                    {\"kind\": \"D\", \"s\": \"\\u00e9\"}\n";
        let found = all(text).unwrap();
        let summary: Vec<(String, u64)> = found.iter().map(|(value, line)| (value.to_string(), *line)).collect();
        assert_eq!(
            summary,
            vec![
                (r#"{"kind":"A","n":1,"none":null,"ok":true,"port":"80"}"#.to_owned(), 2),
                (r#"{"kind":"B","x":[1,2.5]}"#.to_owned(), 11),
                (r#"{"kind":"C","y":[1,2.5]}"#.to_owned(), 13),
                (r#"{"apiVersion":"v1","items":[],"kind":"List"}"#.to_owned(), 8),
                (r#"{"kind":"D","s":"é"}"#.to_owned(), 16),
            ]
        );
    }

    #[test]
    fn a_broken_document_names_its_line() {
        let error = all("kind: A\n---\nkind: B\nspec: [unclosed\n---\nkind: C\n").unwrap_err();
        assert!(error.contains("the document starting at line 2 is not valid"), "{error}");
        let error = documents(&b"a: 1\nb: \xff\n"[..], |_, _| Ok(())).unwrap_err();
        assert!(error.contains("valid UTF-8"), "{error}");
    }
}
