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
/// The longest name (registry and path, without tag or digest) a reference may have.
pub const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

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
}

impl<'a> Reference<'a> {
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
        !self.path.contains('/')
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

/// Splits and validates `raw`. Never allocates.
pub fn parse(raw: &str) -> Result<Reference<'_>, InvalidReference> {
    if raw.is_empty() {
        return Err(InvalidReference::Empty);
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidReference::BadCharacter);
    }
    let (name_and_tag, digest) = match raw.find('@') {
        Some(at) => (&raw[..at], Some(&raw[at + 1..])),
        None => (raw, None),
    };
    let last_slash = name_and_tag.rfind('/');
    let (name, tag) = match name_and_tag.rfind(':') {
        Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
            (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
        }
        _ => (name_and_tag, None),
    };
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidReference::NameTooLong);
    }
    if let Some(tag) = tag {
        validate_tag(tag)?;
    }
    if let Some(digest) = digest {
        validate_digest(digest)?;
    }
    let (registry, path) = match name.find('/') {
        Some(slash) if is_registry_like(&name[..slash]) => (Some(&name[..slash]), &name[slash + 1..]),
        _ => (None, name),
    };
    let (host, port) = match registry {
        Some(registry) => split_host_port(registry)?,
        None => (DOCKER_HUB, None),
    };
    validate_path(path)?;
    Ok(Reference { raw, name, registry, host, port, path, suffix: &raw[name.len()..] })
}

/// True when a leading `/`-segment names a registry rather than a Docker Hub namespace.
pub fn is_registry_like(segment: &str) -> bool {
    segment.contains('.') || segment.contains(':') || segment.starts_with('[') || segment == "localhost"
}

/// Splits `host[:port]` and validates both parts.
pub fn split_host_port(registry: &str) -> Result<(&str, Option<&str>), InvalidReference> {
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
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    if !host.starts_with('[') && !is_valid_host(host) {
        return Err(InvalidReference::BadRegistry);
    }
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(InvalidReference::BadRegistry);
    }
    Ok((host, port))
}

/// Dotted DNS labels: `[A-Za-z0-9]` at both ends of each label, `-` inside.
fn is_valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|label| {
            let bytes = label.as_bytes();
            match (bytes.first(), bytes.last()) {
                (Some(first), Some(last)) => {
                    first.is_ascii_alphanumeric()
                        && last.is_ascii_alphanumeric()
                        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                }
                _ => false,
            }
        })
}

/// Validates a `/`-separated repository path (no registry).
pub fn validate_path(path: &str) -> Result<(), InvalidReference> {
    path.split('/').try_for_each(validate_path_component)
}

/// `[a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*`
pub fn validate_path_component(component: &str) -> Result<(), InvalidReference> {
    let bytes = component.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err(InvalidReference::BadPathComponent);
    };
    if bytes.iter().any(u8::is_ascii_uppercase) {
        return Err(InvalidReference::UppercasePath);
    }
    if !is_lower_alnum(*first) || !is_lower_alnum(*last) {
        return Err(InvalidReference::BadPathComponent);
    }
    let mut run_start = None;
    for (i, &b) in bytes.iter().enumerate() {
        if is_lower_alnum(b) {
            if let Some(start) = run_start.take() {
                let separator = &bytes[start..i];
                let ok = matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|&c| c == b'-');
                if !ok {
                    return Err(InvalidReference::BadPathComponent);
                }
            }
        } else if matches!(b, b'.' | b'_' | b'-') {
            run_start.get_or_insert(i);
        } else {
            return Err(InvalidReference::BadPathComponent);
        }
    }
    Ok(())
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn validate_tag(tag: &str) -> Result<(), InvalidReference> {
    let bytes = tag.as_bytes();
    let ok = bytes.len() <= MAX_TAG_LEN
        && bytes.first().is_some_and(|&b| is_word(b))
        && bytes.iter().all(|&b| is_word(b) || b == b'.' || b == b'-');
    if ok { Ok(()) } else { Err(InvalidReference::BadTag) }
}

/// `algorithm ":" hex{32,}`; sha256 and sha512 must have their exact lowercase length.
fn validate_digest(digest: &str) -> Result<(), InvalidReference> {
    let (algorithm, hex) = digest.split_once(':').ok_or(InvalidReference::BadDigest)?;
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['-', '_', '+', '.']).all(|part| {
            part.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
                && part.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    let expected_len = match algorithm {
        "sha256" => Some(64),
        "sha512" => Some(128),
        _ => None,
    };
    let hex_ok = match expected_len {
        Some(len) => hex.len() == len && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        None => hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
    };
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
        let table: &[(&str, Option<&str>, &str, Option<&str>, &str, &str)] = &[
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
