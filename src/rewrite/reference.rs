//! Zero-copy splitting and validation of container image references.
//!
//! Hand-written on purpose (no regex engine): this runs once per image on the
//! webhook's hot path and must not allocate. It follows the grammar of the
//! distribution reference package (`github.com/distribution/reference`):
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component ( "/" path-component )*
//! domain     := host [ ":" port ]           (host: dotted DNS labels or "[ipv6]")
//! path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" hex{32,}
//! ```
//!
//! The first `/`-segment is a registry when it contains `.` or `:`, starts
//! with `[`, or is `localhost`; otherwise the registry is Docker Hub,
//! implicitly. (The imageswap reference implementation only looks for a `.`,
//! so it reads `localhost:5000/app` as a Docker Hub image: see `docs/rules.md`.)

use std::fmt;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// Other names that reach Docker Hub; folded into [`DOCKER_HUB`] in canonical mode.
pub const DOCKER_HUB_ALIASES: [&str; 2] = ["index.docker.io", "registry-1.docker.io"];

/// `host` (lowercase), with Docker Hub's other names folded into [`DOCKER_HUB`].
pub fn fold_docker_hub(host: &str) -> &str {
    if DOCKER_HUB_ALIASES.contains(&host) { DOCKER_HUB } else { host }
}
/// The longest name (registry and path, without tag or digest) a reference may have.
pub const MAX_NAME_LEN: usize = 255;
pub(crate) const MAX_TAG_LEN: usize = 128;

/// A string known to be all ASCII, so that every byte range of it is a `str`: the parsers
/// slice a validated reference into its parts without `str`'s char-boundary checks, which
/// cost as much as the rest of assembling a [`Reference`].
#[derive(Clone, Copy)]
pub(crate) struct Ascii<'a>(&'a str);

impl<'a> Ascii<'a> {
    /// # Safety
    /// Every byte of `text` is ASCII.
    #[inline(always)]
    pub(crate) unsafe fn new_unchecked(text: &'a str) -> Self {
        debug_assert!(text.is_ascii());
        Self(text)
    }

    /// `text[from..to]`; out-of-range bounds panic as slicing does.
    #[inline(always)]
    pub(crate) fn slice(self, from: usize, to: usize) -> &'a str {
        let bytes = &self.0.as_bytes()[from..to];
        // SAFETY: all of `self.0` is ASCII (the constructor's contract), so any run of its
        // bytes is valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// `text[from..]`.
    #[inline(always)]
    pub(crate) fn from(self, from: usize) -> &'a str {
        self.slice(from, self.0.len())
    }

    /// The whole text.
    #[inline(always)]
    pub(crate) fn as_str(self) -> &'a str {
        self.0
    }
}

/// An image reference split into borrowed parts of the original string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reference<'a> {
    /// The reference exactly as given.
    pub raw: &'a str,
    /// The name (registry and path) as written, without tag or digest.
    pub name: &'a str,
    /// The registry as written (`gcr.io:443`), or `None` when Docker Hub is implied.
    pub registry: Option<&'a str>,
    /// The registry host without its port; `docker.io` when implied.
    pub host: &'a str,
    /// The registry port without the colon, when one is written.
    pub port: Option<&'a str>,
    /// The repository path after the registry (`istio/istiod`, or `nginx`).
    pub path: &'a str,
    /// Tag and/or digest with their leading `:`/`@` (`:v1`, `@sha256:…`), or empty.
    pub suffix: &'a str,
    /// The path has more than one segment (known from the parse, so no rescan).
    pub(crate) nested: bool,
}

impl<'a> Reference<'a> {
    /// Builds a reference from positions both parsers found: the path is
    /// `raw[path_start..name_end]`, the tag and digest follow `name_end`.
    #[inline(always)]
    pub(crate) fn assemble(
        raw: Ascii<'a>,
        (registry, host, port): (Option<&'a str>, &'a str, Option<&'a str>),
        path_start: usize,
        name_end: usize,
        nested: bool,
    ) -> Self {
        Reference {
            raw: raw.as_str(),
            name: raw.slice(0, name_end),
            registry,
            host,
            port,
            path: raw.slice(path_start, name_end),
            suffix: raw.from(name_end),
            nested,
        }
    }

    /// The registry as it is used for rule lookup: as written, or `docker.io`.
    pub fn registry_key(&self) -> &'a str {
        self.registry.unwrap_or(DOCKER_HUB)
    }

    /// True for a Docker Hub reference written with no registry at all (`nginx`, `bitnami/redis`).
    pub fn registry_implied(&self) -> bool {
        self.registry.is_none()
    }

    /// True when the repository path is a single segment (`nginx`), i.e. an official image.
    pub fn single_segment(&self) -> bool {
        !self.nested
    }
}

/// Why a string is not a valid image reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidReference {
    /// The string is empty.
    Empty,
    /// Whitespace, a control character or a non-ASCII character.
    BadCharacter,
    /// The name is longer than 255 characters.
    NameTooLong,
    /// The registry host or port is malformed.
    BadRegistry,
    /// A repository path segment is empty or malformed.
    BadPathComponent,
    /// The repository path has an uppercase letter.
    UppercasePath,
    /// The tag is empty, too long or has a character a tag cannot have.
    BadTag,
    /// The digest is not `algorithm:hex` of the right length.
    BadDigest,
}

impl InvalidReference {
    /// A short, stable explanation, suitable for logs and metric labels.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Empty => "empty reference",
            Self::BadCharacter => "whitespace, control or non-ASCII character",
            Self::NameTooLong => "name longer than 255 characters",
            Self::BadRegistry => "malformed registry host or port",
            Self::BadPathComponent => "malformed repository path segment",
            Self::UppercasePath => "uppercase letter in repository path",
            Self::BadTag => "malformed tag",
            Self::BadDigest => "malformed digest",
        }
    }
}

impl fmt::Display for InvalidReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for InvalidReference {}

/// Character classes, one bit each, looked up by byte: one table read per character.
const GRAPHIC: u8 = 1;
const LOWER_ALNUM: u8 = 2;
const UPPER: u8 = 4;
const WORD: u8 = 8;
const SEPARATOR: u8 = 16;
/// `/ : @ .`: the bytes the structural pass of [`parse_scalar`] must look at.
const STRUCTURAL: u8 = 32;
/// `[A-Za-z0-9-]`: what a DNS label is made of.
const HOST: u8 = 64;

static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0x21;
    while b < 0x7f {
        let c = b as u8;
        let mut class = GRAPHIC;
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            class |= LOWER_ALNUM | WORD;
        }
        if c.is_ascii_uppercase() {
            class |= UPPER | WORD;
        }
        if c == b'_' {
            class |= WORD | SEPARATOR;
        }
        if c == b'.' || c == b'-' {
            class |= SEPARATOR;
        }
        if matches!(c, b'/' | b':' | b'@' | b'.') {
            class |= STRUCTURAL;
        }
        if c.is_ascii_alphanumeric() || c == b'-' {
            class |= HOST;
        }
        table[b] = class;
        b += 1;
    }
    table
};

#[inline]
fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

/// Splits and validates `raw`. Never allocates.
///
/// References whose name and tag fit in 64 bytes (nearly all) go through
/// the bitmask parser (`masks.rs`): bytes are classified 16 at a time into bitmasks and the
/// grammar is checked with a few bit operations. Anything else takes
/// [`parse_scalar`], which gives the same answer one byte at a time.
#[inline]
pub fn parse(raw: &str) -> Result<Reference<'_>, InvalidReference> {
    match super::masks::parse(raw) {
        Some(result) => result,
        None => parse_scalar(raw),
    }
}

/// The byte-at-a-time parser: the fallback for long names and `[ipv6]`
/// registries, and the oracle the bitmask parser is tested against.
///
/// One pass finds the structure (`/`, the tag's `:`, `@`) and rejects bad
/// characters; a second pass over the path validates its components.
#[doc(hidden)]
pub fn parse_scalar(raw: &str) -> Result<Reference<'_>, InvalidReference> {
    let bytes = raw.as_bytes();
    if bytes.is_empty() {
        return Err(InvalidReference::Empty);
    }
    let mut at = bytes.len();
    let mut first_slash = usize::MAX;
    let mut last_slash = usize::MAX;
    let mut last_colon = usize::MAX;
    let mut first_colon = usize::MAX;
    let mut first_segment_registry_like = false;
    for (i, &b) in bytes.iter().enumerate() {
        let c = class(b);
        // The common case, one test: a graphic byte with no structural meaning.
        if c & (GRAPHIC | STRUCTURAL) == GRAPHIC {
            continue;
        }
        if c == 0 {
            return Err(InvalidReference::BadCharacter);
        }
        if at != bytes.len() {
            continue;
        }
        if b == b'/' {
            if first_slash == usize::MAX {
                first_slash = i;
            }
            last_slash = i;
        } else if b == b'@' {
            at = i;
        } else {
            if b == b':' {
                last_colon = i;
                if first_colon == usize::MAX {
                    first_colon = i;
                }
            }
            first_segment_registry_like |= first_slash == usize::MAX;
        }
    }
    // SAFETY: the loop above returned for any byte outside the graphic ASCII classes.
    let ascii = unsafe { Ascii::new_unchecked(raw) };
    let name_end = if last_colon != usize::MAX && (last_slash == usize::MAX || last_colon > last_slash) {
        validate_tag(&bytes[last_colon + 1..at])?;
        last_colon
    } else {
        at
    };
    if at < bytes.len() {
        validate_digest(ascii.from(at + 1))?;
    }
    if name_end > MAX_NAME_LEN {
        return Err(InvalidReference::NameTooLong);
    }
    let has_registry = first_slash < name_end
        && (first_segment_registry_like || bytes[0] == b'[' || &bytes[..first_slash] == b"localhost");
    let (registry, path_start) =
        if has_registry { (Some(ascii.slice(0, first_slash)), first_slash + 1) } else { (None, 0) };
    let (host, port) = match registry {
        // The structural pass already found the port's colon: no second scan.
        Some(registry) if !registry.starts_with('[') => {
            let (host, port) = if first_colon < first_slash {
                (ascii.slice(0, first_colon), Some(ascii.slice(first_colon + 1, first_slash)))
            } else {
                (registry, None)
            };
            if !is_valid_host(host.as_bytes()) || port.is_some_and(|port| !is_valid_port(port)) {
                return Err(InvalidReference::BadRegistry);
            }
            (host, port)
        }
        Some(registry) => split_host_port_scalar(registry)?,
        None => (DOCKER_HUB, None),
    };
    validate_path_bytes(&bytes[path_start..name_end])?;
    let nested = last_slash != usize::MAX && last_slash >= path_start;
    Ok(Reference::assemble(ascii, (registry, host, port), path_start, name_end, nested))
}

/// True when a leading `/`-segment names a registry rather than a Docker Hub namespace.
pub fn is_registry_like(segment: &str) -> bool {
    segment.bytes().any(|b| b == b'.' || b == b':') || segment.starts_with('[') || segment == "localhost"
}

/// Splits `host[:port]` and validates both parts.
pub fn split_host_port(registry: &str) -> Result<(&str, Option<&str>), InvalidReference> {
    if let Some(result) = super::masks::split_host_port(registry) {
        return result;
    }
    split_host_port_scalar(registry)
}

/// The byte-at-a-time [`split_host_port`], for `[ipv6]` literals and long names, and the
/// oracle of the bitmask version.
#[doc(hidden)]
pub fn split_host_port_scalar(registry: &str) -> Result<(&str, Option<&str>), InvalidReference> {
    let (host, port) = if registry.starts_with('[') {
        let close = registry.find(']').ok_or(InvalidReference::BadRegistry)?;
        let inner = &registry[1..close];
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(InvalidReference::BadRegistry);
        }
        match &registry[close + 1..] {
            "" => (registry, None),
            rest => match rest.strip_prefix(':') {
                Some(port) => (&registry[..=close], Some(port)),
                None => return Err(InvalidReference::BadRegistry),
            },
        }
    } else {
        match registry.bytes().position(|b| b == b':') {
            Some(colon) => (&registry[..colon], Some(&registry[colon + 1..])),
            None => (registry, None),
        }
    };
    if !host.starts_with('[') && !is_valid_host(host.as_bytes()) {
        return Err(InvalidReference::BadRegistry);
    }
    if port.is_some_and(|port| !is_valid_port(port)) {
        return Err(InvalidReference::BadRegistry);
    }
    Ok((host, port))
}

/// One to five digits.
pub(crate) fn is_valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// Dotted DNS labels: `[A-Za-z0-9]` at both ends of each label, `-` inside.
fn is_valid_host(host: &[u8]) -> bool {
    let mut label_len = 0usize;
    let mut last = b'.';
    for &b in host {
        if b == b'.' {
            if label_len == 0 || last == b'-' {
                return false;
            }
            label_len = 0;
        } else if class(b) & HOST == 0 || (label_len == 0 && b == b'-') {
            return false;
        } else {
            label_len += 1;
        }
        last = b;
    }
    label_len > 0 && last != b'-'
}

/// Validates a `/`-separated repository path (no registry).
pub fn validate_path(path: &str) -> Result<(), InvalidReference> {
    validate_path_bytes(path.as_bytes())
}

/// `[a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*`
pub fn validate_path_component(component: &str) -> Result<(), InvalidReference> {
    if component.contains('/') {
        return Err(InvalidReference::BadPathComponent);
    }
    validate_path_bytes(component.as_bytes())
}

/// One pass over `component ( "/" component )*`, a small state machine per byte.
fn validate_path_bytes(path: &[u8]) -> Result<(), InvalidReference> {
    // What the previous byte leaves us in: at a component start, inside an
    // alphanumeric run, or inside a separator run of `separator` repeated `run` times.
    let mut at_start = true;
    let mut separator = 0u8;
    let mut run = 0u8;
    for &b in path {
        let c = class(b);
        if c & LOWER_ALNUM != 0 {
            at_start = false;
            separator = 0;
        } else if c & SEPARATOR != 0 {
            let repeat_ok = (b == b'-' && separator == b'-') || (b == b'_' && separator == b'_' && run == 1);
            if at_start || (separator != 0 && !repeat_ok) {
                return Err(InvalidReference::BadPathComponent);
            }
            run = if separator == 0 { 1 } else { run.saturating_add(1) };
            separator = b;
        } else if b == b'/' {
            if at_start || separator != 0 {
                return Err(InvalidReference::BadPathComponent);
            }
            at_start = true;
        } else if c & UPPER != 0 {
            return Err(InvalidReference::UppercasePath);
        } else {
            return Err(InvalidReference::BadPathComponent);
        }
    }
    if at_start || separator != 0 { Err(InvalidReference::BadPathComponent) } else { Ok(()) }
}

fn validate_tag(tag: &[u8]) -> Result<(), InvalidReference> {
    let ok = tag.len() <= MAX_TAG_LEN
        && tag.first().is_some_and(|&b| class(b) & WORD != 0)
        && tag.iter().all(|&b| class(b) & WORD != 0 || b == b'.' || b == b'-');
    if ok { Ok(()) } else { Err(InvalidReference::BadTag) }
}

/// `algorithm ":" hex{32,}`; sha256 and sha512 must have their exact lowercase length.
pub(crate) fn validate_digest(digest: &str) -> Result<(), InvalidReference> {
    let lower_hex = |hex: &str| hex.bytes().fold(true, |ok, b| ok & (b.is_ascii_digit() | (b'a'..=b'f').contains(&b)));
    // The two registered algorithms first: nearly every digest is sha256.
    if let Some(hex) = digest.strip_prefix("sha256:") {
        return if hex.len() == 64 && lower_hex(hex) { Ok(()) } else { Err(InvalidReference::BadDigest) };
    }
    if let Some(hex) = digest.strip_prefix("sha512:") {
        return if hex.len() == 128 && lower_hex(hex) { Ok(()) } else { Err(InvalidReference::BadDigest) };
    }
    let (algorithm, hex) = digest.split_once(':').ok_or(InvalidReference::BadDigest)?;
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['-', '_', '+', '.']).all(|part| {
            part.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
                && part.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    let hex_ok = hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if algorithm_ok && hex_ok { Ok(()) } else { Err(InvalidReference::BadDigest) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:15d3b5c4f521a84896ed1ead1b14e4774d02202d5c65ab68f30eeaf310a3b1a7";

    #[test]
    fn splits_valid_references() {
        let digest_ref = format!("kindest/node@{SHA}");
        let both = format!("gcr.io:443/a/b:v1@{SHA}");
        let at_digest = format!("@{SHA}");
        let tag_digest = format!(":v1@{SHA}");
        // (input, registry, host, port, path, suffix)
        // (input, registry, host, port, path, suffix)
        type Row<'a> = (&'a str, Option<&'a str>, &'a str, Option<&'a str>, &'a str, &'a str);
        let table: &[Row<'_>] = &[
            ("nginx", None, "docker.io", None, "nginx", ""),
            ("nginx:latest", None, "docker.io", None, "nginx", ":latest"),
            ("bitnami/redis:7", None, "docker.io", None, "bitnami/redis", ":7"),
            ("quay.io/solo/gloo", Some("quay.io"), "quay.io", None, "solo/gloo", ""),
            ("gcr.io:443/istio/istiod:latest", Some("gcr.io:443"), "gcr.io", Some("443"), "istio/istiod", ":latest"),
            ("localhost/app", Some("localhost"), "localhost", None, "app", ""),
            ("localhost:5000/app", Some("localhost:5000"), "localhost", Some("5000"), "app", ""),
            ("myreg:5000/app:1", Some("myreg:5000"), "myreg", Some("5000"), "app", ":1"),
            ("[::1]:5000/app", Some("[::1]:5000"), "[::1]", Some("5000"), "app", ""),
            (&digest_ref, None, "docker.io", None, "kindest/node", &at_digest),
            (&both, Some("gcr.io:443"), "gcr.io", Some("443"), "a/b", &tag_digest),
            ("a__b/c--d/e.f_g", None, "docker.io", None, "a__b/c--d/e.f_g", ""),
            ("Registry.Example.COM/app", Some("Registry.Example.COM"), "Registry.Example.COM", None, "app", ""),
        ];
        for &(input, registry, host, port, path, suffix) in table {
            let r = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((r.registry, r.host, r.port, r.path, r.suffix), (registry, host, port, path, suffix), "{input}");
            assert_eq!(format!("{}{}", r.name, r.suffix), input);
        }
    }

    #[test]
    fn rejects_invalid_references() {
        let long_name = "a".repeat(256);
        let short_sha = "app@sha256:abc".to_string();
        let upper_sha = format!("app@{}", SHA.to_uppercase().replace("SHA256", "sha256"));
        let long_tag = format!("app:{}", "t".repeat(129));
        let table: &[(&str, InvalidReference)] = &[
            ("", InvalidReference::Empty),
            ("ngi nx", InvalidReference::BadCharacter),
            ("nginx\n", InvalidReference::BadCharacter),
            ("ngïnx", InvalidReference::BadCharacter),
            ("nginx\0", InvalidReference::BadCharacter),
            (&long_name, InvalidReference::NameTooLong),
            ("Nginx", InvalidReference::UppercasePath),
            ("quay.io/Solo/gloo", InvalidReference::UppercasePath),
            ("quay.io//gloo", InvalidReference::BadPathComponent),
            ("quay.io/gloo/", InvalidReference::BadPathComponent),
            ("a..b", InvalidReference::BadPathComponent),
            ("a___b", InvalidReference::BadPathComponent),
            ("-a", InvalidReference::BadPathComponent),
            ("a_-b", InvalidReference::BadPathComponent),
            ("app:", InvalidReference::BadTag),
            ("app:.x", InvalidReference::BadTag),
            (&long_tag, InvalidReference::BadTag),
            (&short_sha, InvalidReference::BadDigest),
            (&upper_sha, InvalidReference::BadDigest),
            ("app@", InvalidReference::BadDigest),
            ("gcr.io:/app", InvalidReference::BadRegistry),
            ("gcr.io:123456/app", InvalidReference::BadRegistry),
            ("gcr.io:44a/app", InvalidReference::BadRegistry),
            ("-gcr.io/app", InvalidReference::BadRegistry),
            ("gcr..io/app", InvalidReference::BadRegistry),
            ("[zz]/app", InvalidReference::BadRegistry),
        ];
        for &(input, expected) in table {
            assert_eq!(parse(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn name_of_exactly_255_characters_is_valid() {
        let name = "a".repeat(MAX_NAME_LEN);
        assert!(parse(&name).is_ok());
    }
}
