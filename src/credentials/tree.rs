//! A small YAML tree with line numbers, built from the event stream the
//! rules reader uses: strings are copied once, aliases to strings resolve
//! (their copies within the reader's alias budget), aliases to collections
//! are left out (never expanded, so no "billion laughs"), and nesting is
//! bounded like the rules reader's.

use yaml_rust2::parser::Event;

use crate::rules_file::events::{Events, Failure, Lines};
use crate::rules_file::yaml::MAX_DEPTH;

/// A node of the tree.
#[derive(Debug)]
pub enum Node {
    /// A string (any scalar), and its line.
    Scalar(String, u32),
    /// A mapping's string-keyed entries in order, and its line.
    Map(Vec<(String, Node)>, u32),
    /// A sequence, and its line.
    Seq(Vec<Node>, u32),
    /// An alias to a collection, or a complex key's value: not read.
    Skipped(u32),
}

impl Node {
    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Self::Map(entries, _) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string of a scalar.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Scalar(text, _) => Some(text),
            _ => None,
        }
    }

    /// The node's line.
    pub fn line(&self) -> u32 {
        match self {
            Self::Scalar(_, line) | Self::Map(_, line) | Self::Seq(_, line) | Self::Skipped(line) => *line,
        }
    }
}

/// The documents of `text`, each a tree (empty documents left out).
pub fn documents(text: &str) -> Result<Vec<Node>, Failure> {
    let mut events = Events::new(text, Lines::Offset(0));
    let mut documents = Vec::new();
    loop {
        let (event, _) = events.next()?;
        match event {
            Event::StreamEnd => return Ok(documents),
            Event::DocumentStart => {
                let (root, root_line) = events.next()?;
                if !matches!(root, Event::DocumentEnd) {
                    documents.push(node(&mut events, root, root_line, 0)?);
                }
            }
            _ => {}
        }
    }
}

fn node(events: &mut Events<'_>, first: Event, line: u32, depth: usize) -> Result<Node, Failure> {
    if depth > MAX_DEPTH {
        return Err((line, format!("nested deeper than {MAX_DEPTH} levels")));
    }
    match first {
        Event::Scalar(text, ..) => Ok(Node::Scalar(text, line)),
        Event::Alias(id) => Ok(match events.alias(id, line)? {
            Some(text) => Node::Scalar(text.to_owned(), line),
            None => Node::Skipped(line),
        }),
        Event::SequenceStart(..) => {
            let mut items = Vec::new();
            loop {
                let (event, item_line) = events.next()?;
                if matches!(event, Event::SequenceEnd | Event::StreamEnd) {
                    return Ok(Node::Seq(items, line));
                }
                items.push(node(events, event, item_line, depth + 1)?);
            }
        }
        Event::MappingStart(..) => {
            let mut entries = Vec::new();
            loop {
                let (event, key_line) = events.next()?;
                let key = match event {
                    Event::MappingEnd | Event::StreamEnd => return Ok(Node::Map(entries, line)),
                    Event::Scalar(key, ..) => Some(key),
                    Event::Alias(id) => events.alias(id, key_line)?.map(str::to_owned),
                    complex => {
                        node(events, complex, key_line, depth + 1)?;
                        None
                    }
                };
                let (value, value_line) = events.next()?;
                let value = node(events, value, value_line, depth + 1)?;
                if let Some(key) = key {
                    entries.push((key, value));
                }
            }
        }
        _ => Ok(Node::Skipped(line)),
    }
}
