//! YAML events pulled one at a time from yaml-rust2's parser, each with the
//! line of the whole file it is on. Nothing is recorded but the values of
//! anchored scalars (so that `*alias` can stand for a string): a walk holds
//! one event at a time, and stopping early stops the parser too.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, ScanError};

/// A problem and the line of the whole file it is on.
pub type Failure = (u32, String);

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
    ended: bool,
}

impl<'a> Events<'a> {
    /// Events of `text`, whose lines lie in the file as `lines` says.
    pub fn new(text: &'a str, lines: Lines) -> Self {
        let last = lines.of(last_text_line(text));
        Self { parser: Parser::new_from_str(text), lines, last, anchors: HashMap::new(), ended: false }
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
                self.anchors.insert(*anchor, value.clone());
            }
            _ => {}
        }
        Ok((event, line))
    }

    /// The string an alias stands for, if its anchor is on a scalar.
    pub fn anchored(&self, id: usize) -> Option<&str> {
        self.anchors.get(&id).map(String::as_str)
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
