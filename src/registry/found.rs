//! What a "present" answer holds besides its yes, cached with it: the manifest's [`Digest`]
//! (`--pin-digest` pins to it, `audit --check-source` compares it) and, when they were read,
//! the [`Platforms`] its index or its config covers (`--require-platforms`).
//!
//! A registry controls its answers, and a header may lie: a digest is only kept when it is
//! exactly `sha256:` and 64 lowercase hex digits ([`Digest::parse`]), and one computed from
//! bytes read ([`Digest::of`]) is what a read pins. A node pulling `NAME:TAG@sha256:…` checks
//! the bytes against the digest itself, so a wrong digest can fail a pull, never change what
//! runs.

use std::fmt;

use super::platform::Platforms;

/// A `sha256:` digest, stored as its 32 bytes (so a cached answer stays small and `Copy`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

/// What a present answer knows about the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// The manifest's (or index's) digest: the registry's `Docker-Content-Digest` when it is a
    /// well-formed `sha256:`, or computed from the bytes read; `None` when neither was had.
    pub digest: Option<Digest>,
    /// The platforms the manifest covers, when they were read (`--require-platforms`,
    /// `audit`); `None` when not asked.
    pub platforms: Option<Platforms>,
}

impl Digest {
    /// The length of `sha256:` and 64 hex digits.
    pub const TEXT_LEN: usize = 7 + 64;

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut out = [0; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// The digest whose SHA-256 is `bytes` (a hash computed elsewhere).
    pub fn of_sha256(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// `sha256:` and exactly 64 lowercase hex digits, else `None` (surrounding whitespace, as a
    /// header value may carry, is ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.trim().strip_prefix("sha256:")?.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let digit = |byte: u8| match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            _ => None,
        };
        let mut out = [0; 32];
        for (slot, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *slot = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(Self(out))
    }

    /// Appends `@sha256:…` to `image`: the reference pinned to this digest.
    pub fn pin(&self, image: &mut String) {
        image.reserve_exact(1 + Self::TEXT_LEN);
        image.push('@');
        self.write_to(image);
    }

    /// `image` pinned to this digest, as a new string of the exact length (one allocation).
    pub fn pinned(&self, image: &str) -> String {
        let mut out = String::with_capacity(image.len() + 1 + Self::TEXT_LEN);
        out.push_str(image);
        out.push('@');
        self.write_to(&mut out);
        out
    }

    /// `sha256:` and the hex digits, written at once (a char at a time cost a pinned Pod
    /// more than its cache lookups).
    fn write_to(&self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0_u8; Self::TEXT_LEN];
        text[..7].copy_from_slice(b"sha256:");
        for (pair, byte) in text[7..].chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        // Only ASCII was written.
        out.push_str(std::str::from_utf8(&text).unwrap_or_default());
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(Self::TEXT_LEN);
        self.write_to(&mut text);
        formatter.write_str(&text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn only_a_well_formed_sha256_is_a_digest() {
        // (text, accepted)
        let table = [
            (EMPTY, true),
            (" sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\t", true),
            ("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", false),
            ("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85", false),
            ("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555", false),
            ("sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", false),
            ("sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", false),
            ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", false),
            ("sha256:", false),
            ("", false),
            ("sha256:é3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85", false),
        ];
        for (text, accepted) in table {
            let parsed = Digest::parse(text);
            assert_eq!(parsed.is_some(), accepted, "{text:?}");
            if let Some(digest) = parsed {
                assert_eq!(digest.to_string(), text.trim());
            }
        }
    }

    #[test]
    fn computed_digests_print_and_pin_as_registries_write_them() {
        let digest = Digest::of(b"");
        assert_eq!(digest.to_string(), EMPTY);
        assert_eq!(Digest::parse(EMPTY), Some(digest));
        let mut image = "m.io/team/app:1".to_owned();
        digest.pin(&mut image);
        assert_eq!(image, format!("m.io/team/app:1@{EMPTY}"));
        assert_eq!(format!("{digest:?}"), EMPTY);
    }
}
