//! YAML events pulled one at a time from yaml-rust2's parser, each with the
//! line of the whole file it is on. Nothing is recorded but the values of
//! anchored scalars (so that `*alias` can stand for a string): a walk holds
//! one event at a time, and stopping early stops the parser too.
//!
//! Aliases are copies: a 1 MB anchor named 2,000 times was 2 GB. The anchored
//! strings kept and the copies aliases hand out are counted against one
//! budget, as many bytes as the text (at least [`MIN_ALIAS_BYTES`]); past it
//! the walk stops with an error on the alias's line.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, ScanError};

/// A problem and the line of the whole file it is on.
pub type Failure = (u32, String);

/// The least alias budget of a text, however short: room for a small file's handful of
/// anchors named a few hundred times (rules that share one target), under the noise of a
/// process's memory.
pub const MIN_ALIAS_BYTES: usize = 64 * 1024;

/// Where the lines of a text lie in the file that holds it.
#[derive(Clone, Copy, Debug)]
pub enum Lines {
    /// The text's line N is the file's line N + offset (a whole file, a literal block string).
    Offset(u32),
    /// Every line of the text is reported on this line of the file (a quoted or folded string,
    /// whose line breaks the file does not show).
    All(u32),
}

impl Lines {
    /// The file line of `line` (1-based, in the text).
    pub fn of(self, line: u32) -> u32 {
        match self {
            Self::Offset(offset) => line.saturating_add(offset),
            Self::All(line) => line,
        }
    }
}

/// The events of one text.
pub struct Events<'a> {
    parser: Parser<std::str::Chars<'a>>,
    lines: Lines,
    /// The file line of the text's last line with content: events at the very end of the
    /// input (an empty key, a closing bracket, a scan error) carry the line after it.
    last: u32,
    anchors: HashMap<usize, String>,
    /// Bytes that anchored strings kept and alias copies may still take.
    alias_budget: usize,
    ended: bool,
}

impl<'a> Events<'a> {
    /// Events of `text`, whose lines lie in the file as `lines` says; anchors and aliases may
    /// take as many bytes as the text, at least [`MIN_ALIAS_BYTES`].
    pub fn new(text: &'a str, lines: Lines) -> Self {
        Self::with_alias_budget(text, lines, text.len().max(MIN_ALIAS_BYTES))
    }

    /// As [`Self::new`], with `budget` bytes for anchors and aliases (a string inside the file
    /// gets what the file's walk has left).
    pub fn with_alias_budget(text: &'a str, lines: Lines, budget: usize) -> Self {
        let last = lines.of(last_text_line(text));
        let parser = Parser::new_from_str(text);
        Self { parser, lines, last, anchors: HashMap::new(), alias_budget: budget, ended: false }
    }

    /// The bytes anchors and aliases may still take.
    pub fn alias_budget(&self) -> usize {
        self.alias_budget
    }

    /// The next event and its file line; after the end of the stream, `StreamEnd` again.
    pub fn next(&mut self) -> Result<(Event, u32), Failure> {
        if self.ended {
            return Ok((Event::StreamEnd, self.last));
        }
        let (event, marker) = self.parser.next_token().map_err(|error| self.scan_failure(&error))?;
        let line = self.line(&marker);
        match &event {
            Event::StreamEnd => self.ended = true,
            Event::Scalar(value, _, anchor, _) if *anchor > 0 => {
                self.charge(value.len(), line)?;
                self.anchors.insert(*anchor, value.clone());
            }
            _ => {}
        }
        Ok((event, line))
    }

    /// The string the alias on `line` stands for, if its anchor is on a scalar; its length is
    /// taken from the budget, as the caller copies it.
    pub fn alias(&mut self, id: usize, line: u32) -> Result<Option<&str>, Failure> {
        let len = self.anchors.get(&id).map_or(0, String::len);
        self.charge(len, line)?;
        Ok(self.anchors.get(&id).map(String::as_str))
    }

    /// Takes `bytes` from the alias budget; past it, the failure names `line`.
    fn charge(&mut self, bytes: usize, line: u32) -> Result<(), Failure> {
        match self.alias_budget.checked_sub(bytes) {
            Some(left) => {
                self.alias_budget = left;
                Ok(())
            }
            None => Err((
                line,
                format!(
                    "YAML anchors and aliases here would copy more text than the file holds ({} KiB at least): \
                     write a long value out rather than repeat it through aliases",
                    MIN_ALIAS_BYTES / 1024
                ),
            )),
        }
    }

    fn line(&self, marker: &Marker) -> u32 {
        let line = u32::try_from(marker.line()).unwrap_or(u32::MAX);
        self.lines.of(line).min(self.last)
    }

    /// A scan error as a failure. yaml-rust2's messages name no content but for one character
    /// (`unexpected character: `x'`), which could be one of a password's: it is dropped.
    fn scan_failure(&self, error: &ScanError) -> Failure {
        let info = error.info();
        let info = if info.starts_with("unexpected character") { "unexpected character" } else { info };
        (self.line(error.marker()), format!("not YAML: {info}"))
    }
}

/// The number of the last line of `text` with anything but whitespace (YAML line breaks:
/// `\n`, `\r\n` and a lone `\r`); 1 for an empty text.
pub fn last_text_line(text: &str) -> u32 {
    let text = text.trim_end();
    let breaks = text
        .bytes()
        .zip(text.bytes().skip(1).chain([b'\n']))
        .filter(|&(b, next)| b == b'\n' || (b == b'\r' && next != b'\n'));
    u32::try_from(breaks.count()).unwrap_or(u32::MAX).saturating_add(1)
}
