//! Shell-style globs for `[REPLACE]` rules, with Python `fnmatch` semantics.
//!
//! `*` matches any run of characters, `/` included; `?` matches one character;
//! `[abc]`, `[a-z]` and `[!abc]` match one character of (or not of) a set.
//! Unlike `fnmatch`, an unclosed `[` is an error rather than a literal, so a
//! typo in a rules file is reported instead of silently never matching.

use std::fmt;

/// A compiled glob pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(u8),
    AnyOne,
    AnyRun,
    Class { negated: bool, ranges: Vec<(u8, u8)> },
}

/// Why a glob pattern does not compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobError {
    /// The pattern is empty.
    Empty,
    /// A `[` has no closing `]`.
    UnclosedClass,
    /// A non-ASCII character: image references are ASCII.
    NonAscii,
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty glob pattern",
            Self::UnclosedClass => "`[` without a closing `]` in glob pattern",
            Self::NonAscii => "non-ASCII character in glob pattern",
        })
    }
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if !pattern.is_ascii() {
            return Err(GlobError::NonAscii);
        }
        let bytes = pattern.as_bytes();
        let mut tokens = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let token = match bytes[i] {
                b'*' => Token::AnyRun,
                b'?' => Token::AnyOne,
                b'[' => {
                    let (token, end) = parse_class(bytes, i + 1)?;
                    i = end;
                    token
                }
                b => Token::Literal(b),
            };
            // Consecutive stars match the same strings as one.
            if !(token == Token::AnyRun && tokens.last() == Some(&Token::AnyRun)) {
                tokens.push(token);
            }
            i += 1;
        }
        Ok(Self { tokens })
    }

    /// True when the pattern matches the whole of `text`.
    ///
    /// Iterative matching with one backtrack point per star: O(len(text) × len(pattern)) at worst.
    pub fn matches(&self, text: &str) -> bool {
        let text = text.as_bytes();
        let (mut t, mut p) = (0, 0);
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::AnyRun) => {
                    backtrack = Some((p, t));
                    p += 1;
                    continue;
                }
                Some(token) if token.matches_one(text[t]) => {
                    t += 1;
                    p += 1;
                    continue;
                }
                _ => {}
            }
            match backtrack {
                Some((star, start)) => {
                    p = star + 1;
                    t = start + 1;
                    backtrack = Some((star, start + 1));
                }
                None => return false,
            }
        }
        self.tokens[p..].iter().all(|token| *token == Token::AnyRun)
    }

    /// True when the pattern is a lone `*`, which matches every reference.
    pub fn matches_everything(&self) -> bool {
        self.tokens == [Token::AnyRun]
    }
}

impl Token {
    fn matches_one(&self, b: u8) -> bool {
        match self {
            Token::Literal(l) => *l == b,
            Token::AnyOne => true,
            Token::AnyRun => false,
            Token::Class { negated, ranges } => ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&b)) != *negated,
        }
    }
}

/// Parses a class body starting at `start` (just after `[`); returns the token and the index of `]`.
fn parse_class(bytes: &[u8], start: usize) -> Result<(Token, usize), GlobError> {
    let mut i = start;
    let negated = bytes.get(i) == Some(&b'!');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let first = i;
    loop {
        let b = *bytes.get(i).ok_or(GlobError::UnclosedClass)?;
        // As in fnmatch, a `]` right after `[` or `[!` is a member, not the end.
        if b == b']' && i > first {
            return Ok((Token::Class { negated, ranges }, i));
        }
        match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(b'-'), Some(&hi)) if hi != b']' => {
                ranges.push((b, hi));
                i += 3;
            }
            _ => {
                ranges.push((b, b));
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_table() {
        let table: &[(&str, &str, bool)] = &[
            ("hello-*", "hello-world", true),
            ("hello-*", "hello", false),
            ("ubut*18.04", "ubutun:18.04", true),
            ("*mysql-server:5.6", "mysql/mysql-server:5.6", true),
            ("*nvidia:k8s-device-plugin_*", "nvcr.io/nvidia:k8s-device-plugin_v0.9.0", true),
            ("hello:v1.?", "hello:v1.1", true),
            ("hello:v1.?", "hello:v1.10", false),
            ("auto", "auto", true),
            ("auto", "autos", false),
            ("docker.io/bitnami/*", "docker.io/bitnami/redis:7", true),
            ("docker.io/bitnami/*", "docker.io/bitnamix/redis", false),
            ("*", "", true),
            ("a*b*c", "a/x/b/y/c", true),
            ("a*b*c", "a/x/b/y/d", false),
            ("[abc]x", "bx", true),
            ("[!abc]x", "bx", false),
            ("[a-c]x", "cx", true),
            ("[a-c]x", "dx", false),
            ("[]]x", "]x", true),
            ("[!]]x", "ax", true),
            ("[a-]x", "-x", true),
            ("**a", "bbba", true),
            ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac", false),
        ];
        for &(pattern, text, expected) in table {
            let glob = Glob::new(pattern).unwrap();
            assert_eq!(glob.matches(text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn bad_patterns() {
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
        assert_eq!(Glob::new("a[bc"), Err(GlobError::UnclosedClass));
        assert_eq!(Glob::new("a[!"), Err(GlobError::UnclosedClass));
        assert_eq!(Glob::new("é*"), Err(GlobError::NonAscii));
    }

    #[test]
    fn lone_star_is_recognised() {
        assert!(Glob::new("**").unwrap().matches_everything());
        assert!(!Glob::new("*a").unwrap().matches_everything());
    }
}
