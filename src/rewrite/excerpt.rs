//! A value as an error or warning quotes it: at most [`MAX_QUOTED`] characters. Rules files
//! and manifests may hold values of megabytes; quoting them whole made every error line as
//! large as the value, in memory and in the log, once per error.

use std::fmt;

/// Most characters of a value that one message quotes.
pub const MAX_QUOTED: usize = 200;
/// Characters kept from the end of a cut value: its last segment or tag often says the most.
const TAIL: usize = 40;

/// `value` as a message quotes it: whole when it is at most [`MAX_QUOTED`] characters, else
/// its head and tail around `…[N bytes]…`, N the length of the whole value.
pub fn excerpt(value: &str) -> Excerpt<'_> {
    Excerpt(value)
}

/// `value` itself when a message would quote it whole, else its [`excerpt`]: for a string kept
/// only to be quoted.
pub fn cut(value: String) -> String {
    if value.len() <= MAX_QUOTED { value } else { excerpt(&value).owned() }
}

/// A value to quote, cut on display; see [`excerpt`].
#[derive(Clone, Copy, Debug)]
pub struct Excerpt<'a>(&'a str);

impl Excerpt<'_> {
    /// The excerpt as an owned string (what an error keeps instead of the whole value).
    pub fn owned(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.0;
        // Byte offsets of the character after the head, and of the tail's first character.
        let head_end = value.char_indices().nth(MAX_QUOTED - TAIL).map(|(at, _)| at);
        let tail_start = value.char_indices().rev().nth(TAIL - 1).map(|(at, _)| at);
        match (head_end, tail_start) {
            (Some(head_end), Some(tail_start)) if value[head_end..].chars().count() > TAIL => {
                write!(f, "{}…[{} bytes]…{}", &value[..head_end], value.len(), &value[tail_start..])
            }
            _ => f.write_str(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_to_their_head_and_tail() {
        let long = format!("harbor.example.org/{}/app", "x".repeat(1_000_000));
        let table: [(&str, String); 5] = [
            ("", String::new()),
            ("harbor.example.org/hub", "harbor.example.org/hub".to_owned()),
            (&"é".repeat(MAX_QUOTED), "é".repeat(MAX_QUOTED)),
            (
                &"é".repeat(MAX_QUOTED + 1),
                format!("{}…[{} bytes]…{}", "é".repeat(MAX_QUOTED - TAIL), 2 * (MAX_QUOTED + 1), "é".repeat(TAIL)),
            ),
            (&long, format!("harbor.example.org/{}…[{} bytes]…{}/app", "x".repeat(141), long.len(), "x".repeat(36))),
        ];
        for (value, expected) in table {
            let quoted = excerpt(value).owned();
            assert_eq!(quoted, expected);
            assert_eq!(cut(value.to_owned()), expected);
            assert!(quoted.chars().count() <= MAX_QUOTED + 24, "{}", quoted.len());
        }
    }
}
