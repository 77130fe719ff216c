//! The fast path of [`super::reference::parse`]: bytes are classified into
//! per-class bitmasks (bit `i` describes byte `i`), 16 at a time with SSE2 on
//! x86_64 and one at a time elsewhere, and the reference grammar is then
//! checked with a few dozen bit operations instead of per-byte branches.
//!
//! It handles references whose name and tag fit in the first 64 bytes (the
//! digest may go further) and whose registry is not an `[ipv6]` literal, and
//! answers `None` for anything else. For every input it handles, it gives the
//! same answer as [`super::reference::parse_scalar`] (`tests/properties.rs`).

use super::reference::{self, Ascii, DOCKER_HUB, InvalidReference, MAX_TAG_LEN, Reference};

/// Per-class bitmasks of up to 64 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Masks {
    graphic: u64,
    slash: u64,
    colon: u64,
    at: u64,
    dot: u64,
    dash: u64,
    under: u64,
    /// `[a-z0-9]`.
    lower_digit: u64,
    upper: u64,
}

/// Bits `from..to` set (`to <= 64`).
#[inline]
fn bits(from: usize, to: usize) -> u64 {
    low(to) & !low(from)
}

/// Bits `0..n` set (`n <= 64`), without a branch: `(1 << n) - 1` for `n < 64`, with the
/// `n == 64` case ORed in as all ones (a u128 shift cost about 8% of a whole parse).
#[inline]
fn low(n: usize) -> u64 {
    let n = n.min(64) as u32;
    ((1u64 << (n & 63)) - 1) | 0u64.wrapping_sub(u64::from(n >> 6))
}

#[inline]
fn bit(mask: u64, i: usize) -> bool {
    i < 64 && (mask >> i) & 1 == 1
}

#[inline]
fn first(mask: u64) -> usize {
    mask.trailing_zeros() as usize
}

#[inline]
fn last(mask: u64) -> usize {
    63 - mask.leading_zeros() as usize
}

/// Classifies up to 64 bytes. Inlined into the parser so the nine masks stay in registers.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn classify(bytes: &[u8]) -> Masks {
    use std::arch::x86_64::_mm_loadu_si128;
    let len = bytes.len().min(64);
    let mut masks = Masks::default();
    if len >= 16 {
        // Whole chunks, then the last 16 bytes again (overlapping) for a partial tail:
        // classes are per byte, so classifying a byte twice changes nothing.
        let mut start = 0;
        while start < len {
            let at = start.min(len - 16);
            // SAFETY: `at + 16 <= len <= bytes.len()`, so the unaligned 16-byte load is in
            // bounds; SSE2 is part of the x86_64 baseline, so its functions may be called.
            unsafe { sse2::classify_chunk(_mm_loadu_si128(bytes.as_ptr().add(at).cast()), at, &mut masks) };
            start += 16;
        }
    } else {
        let mut buffer = [0u8; 16];
        buffer[..len].copy_from_slice(&bytes[..len]);
        // SAFETY: `buffer` has exactly 16 bytes; SSE2 is part of the x86_64 baseline.
        unsafe { sse2::classify_chunk(_mm_loadu_si128(buffer.as_ptr().cast()), 0, &mut masks) };
        // The zero padding is not graphic and matches no class.
    }
    masks
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    //! SSE2 classification of one 16-byte chunk (SSE2 is part of the x86_64 baseline).

    // The intrinsics below are called without `#[target_feature]`, so that they inline into the
    // parser: that is sound only because every x86_64 build has SSE2 on.
    const _: () = assert!(cfg!(target_feature = "sse2"), "x86_64 without SSE2");

    use super::Masks;
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_movemask_epi8, _mm_set1_epi8,
    };

    /// ORs the classes of the 16 bytes in `lanes` into `masks`, at bit `shift` onwards.
    /// Inlined (no `#[target_feature]`: SSE2 is on for every x86_64 build) so the nine masks
    /// stay in registers across the chunks instead of being read and written per chunk.
    #[inline(always)]
    pub(super) fn classify_chunk(lanes: __m128i, shift: usize, masks: &mut Masks) {
        masks.graphic |= range(lanes, 0x21, 0x7e) << shift;
        masks.slash |= eq(lanes, b'/') << shift;
        masks.colon |= eq(lanes, b':') << shift;
        masks.at |= eq(lanes, b'@') << shift;
        masks.dot |= eq(lanes, b'.') << shift;
        masks.dash |= eq(lanes, b'-') << shift;
        masks.under |= eq(lanes, b'_') << shift;
        masks.lower_digit |= (range(lanes, b'a', b'z') | range(lanes, b'0', b'9')) << shift;
        masks.upper |= range(lanes, b'A', b'Z') << shift;
    }

    /// True when all 16 bytes are `[0-9a-f]`.
    #[inline(always)]
    pub(super) fn lower_hex(lanes: __m128i) -> bool {
        (range(lanes, b'0', b'9') | range(lanes, b'a', b'f')) == 0xffff
    }

    #[inline(always)]
    fn eq(lanes: __m128i, byte: u8) -> u64 {
        // SAFETY: SSE2 is enabled in every x86_64 build (asserted above); no memory is touched.
        u64::from(unsafe { _mm_movemask_epi8(_mm_cmpeq_epi8(lanes, _mm_set1_epi8(byte as i8))) } as u16)
    }

    /// Bytes in `lo..=hi` (ASCII): bytes >= 0x80 are negative as i8 and fall outside.
    #[inline(always)]
    fn range(lanes: __m128i, lo: u8, hi: u8) -> u64 {
        // SAFETY: SSE2 is enabled in every x86_64 build (asserted above); no memory is touched.
        let bits = unsafe {
            let above = _mm_cmpgt_epi8(lanes, _mm_set1_epi8((lo - 1) as i8));
            let below = _mm_cmplt_epi8(lanes, _mm_set1_epi8((hi + 1) as i8));
            _mm_movemask_epi8(_mm_and_si128(above, below))
        };
        u64::from(bits as u16)
    }
}

/// Classifies up to 64 bytes, one at a time.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn classify(bytes: &[u8]) -> Masks {
    classify_scalar(bytes)
}

/// The portable classifier; on x86_64 it only serves as the SSE2 version's oracle.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub(crate) fn classify_scalar(bytes: &[u8]) -> Masks {
    let mut masks = Masks::default();
    for (i, &b) in bytes.iter().take(64).enumerate() {
        let one = 1u64 << i;
        let set = |mask: &mut u64, yes: bool| *mask |= if yes { one } else { 0 };
        set(&mut masks.graphic, b.is_ascii_graphic());
        set(&mut masks.slash, b == b'/');
        set(&mut masks.colon, b == b':');
        set(&mut masks.at, b == b'@');
        set(&mut masks.dot, b == b'.');
        set(&mut masks.dash, b == b'-');
        set(&mut masks.under, b == b'_');
        set(&mut masks.lower_digit, b.is_ascii_lowercase() || b.is_ascii_digit());
        set(&mut masks.upper, b.is_ascii_uppercase());
    }
    masks
}

/// Parses `raw` from its bitmasks, or `None` when it is not a case this path handles.
#[inline]
pub(crate) fn parse(raw: &str) -> Option<Result<Reference<'_>, InvalidReference>> {
    let bytes = raw.as_bytes();
    let len = bytes.len();
    if len == 0 {
        return Some(Err(InvalidReference::Empty));
    }
    let head = len.min(64);
    let m = classify(&bytes[..head]);
    // Every byte must be printable ASCII: the head from its mask, a long digest one by one.
    let tail_graphic = bytes[head..].iter().fold(true, |ok, b| ok & b.is_ascii_graphic());
    if m.graphic != low(head) || !tail_graphic {
        return Some(Err(InvalidReference::BadCharacter));
    }
    // SAFETY: every byte was just checked to be graphic ASCII.
    let ascii = unsafe { Ascii::new_unchecked(raw) };
    let at = match m.at {
        0 if len <= 64 => len,
        0 => return None,
        at => first(at),
    };
    let region = low(at);
    let slash = m.slash & region;
    let colon = m.colon & region;
    // A `:` after the last `/` starts the tag.
    let name_end = if colon != 0 && (slash == 0 || last(colon) > last(slash)) { last(colon) } else { at };
    if name_end < at {
        let tag = bits(name_end + 1, at);
        let word = m.lower_digit | m.upper | m.under;
        let tag_ok = at - name_end - 1 <= MAX_TAG_LEN && bit(word, name_end + 1) && tag & !(word | m.dot | m.dash) == 0;
        if !tag_ok {
            return Some(Err(InvalidReference::BadTag));
        }
    }
    if at < len
        && let Err(error) = validate_digest(ascii.from(at + 1))
    {
        return Some(Err(error));
    }
    let (registry, host, port, path_start) = match slash {
        0 => (None, DOCKER_HUB, None, 0),
        _ => {
            let first_slash = first(slash);
            let segment = low(first_slash);
            let registry_like =
                (m.dot | m.colon) & segment != 0 || bytes[0] == b'[' || &bytes[..first_slash] == b"localhost";
            if !registry_like {
                (None, DOCKER_HUB, None, 0)
            } else if bytes[0] == b'[' {
                return None;
            } else {
                let port_colon = colon & segment;
                let host_end = if port_colon != 0 { first(port_colon) } else { first_slash };
                if !host_ok(&m, host_end) {
                    return Some(Err(InvalidReference::BadRegistry));
                }
                let port = (port_colon != 0).then(|| ascii.slice(host_end + 1, first_slash));
                if port.is_some_and(|port| !reference::is_valid_port(port)) {
                    return Some(Err(InvalidReference::BadRegistry));
                }
                (Some(ascii.slice(0, first_slash)), ascii.slice(0, host_end), port, first_slash + 1)
            }
        }
    };
    if let Err(error) = path_ok(&m, path_start, name_end) {
        return Some(Err(error));
    }
    let nested = slash & !low(path_start) != 0;
    Some(Ok(Reference::assemble(ascii, (registry, host, port), path_start, name_end, nested)))
}

/// [`reference::validate_digest`], with the 64 hex digits of a sha256 checked 16 at a time.
fn validate_digest(digest: &str) -> Result<(), InvalidReference> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 => {
            if lower_hex(hex.as_bytes()) {
                Ok(())
            } else {
                Err(InvalidReference::BadDigest)
            }
        }
        _ => reference::validate_digest(digest),
    }
}

/// True when all of `hex` (a multiple of 16 bytes long) is `[0-9a-f]`.
#[cfg(target_arch = "x86_64")]
fn lower_hex(hex: &[u8]) -> bool {
    use std::arch::x86_64::_mm_loadu_si128;
    hex.len().is_multiple_of(16)
        && (0..hex.len()).step_by(16).all(|start| {
            // SAFETY: `start + 16 <= hex.len()`, so the unaligned load is in bounds; SSE2 is
            // part of the x86_64 baseline, so its functions may be called.
            unsafe { sse2::lower_hex(_mm_loadu_si128(hex.as_ptr().add(start).cast())) }
        })
}

/// True when all of `hex` is `[0-9a-f]`.
#[cfg(not(target_arch = "x86_64"))]
fn lower_hex(hex: &[u8]) -> bool {
    hex.iter().all(|&b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `host[:port]` of at most 64 bytes, not an `[ipv6]` literal, split and validated from its
/// bitmasks; `None` for registries this path does not handle.
pub(crate) fn split_host_port(registry: &str) -> Option<Result<(&str, Option<&str>), InvalidReference>> {
    if registry.len() > 64 || registry.starts_with('[') {
        return None;
    }
    let m = classify(registry.as_bytes());
    let host_end = if m.colon != 0 { first(m.colon) } else { registry.len() };
    let port = (m.colon != 0).then(|| &registry[host_end + 1..]);
    if !host_ok(&m, host_end) || port.is_some_and(|port| !reference::is_valid_port(port)) {
        return Some(Err(InvalidReference::BadRegistry));
    }
    Some(Ok((&registry[..host_end], port)))
}

/// Bytes `0..end` are dotted DNS labels: `[A-Za-z0-9]` at both ends of each label, `-` inside.
#[inline(always)]
fn host_ok(m: &Masks, end: usize) -> bool {
    let host = low(end);
    let label_chars = m.lower_digit | m.upper | m.dash;
    let edge = m.dot | m.dash;
    end > 0
        && host & !(label_chars | m.dot) == 0
        && !bit(edge, 0)
        && !bit(edge, end - 1)
        // No `..`, `-.` or `.-`.
        && host & m.dot & ((m.dot | m.dash) << 1) == 0
        && host & m.dash & (m.dot << 1) == 0
}

/// Bytes `start..end` are `component ( "/" component )*`, each
/// `[a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*`. The error is the
/// one the byte-at-a-time parser meets first.
fn path_ok(m: &Masks, start: usize, end: usize) -> Result<(), InvalidReference> {
    if start >= end {
        return Err(InvalidReference::BadPathComponent);
    }
    let path = bits(start, end);
    let separators = m.dot | m.dash | m.under;
    let boundary = (separators | m.slash) & path;
    let bad_char = path & !(m.lower_digit | separators | m.slash);
    let component_starts = ((m.slash << 1) | (1u64 << start)) & path;
    let empty_or_separator_first = component_starts & boundary;
    let allowed_pairs = (m.dash & (m.dash << 1)) | (m.under & (m.under << 1));
    let bad_pairs = boundary & (boundary << 1) & !allowed_pairs;
    let triple_underscore = path & m.under & (m.under << 1) & (m.under << 2);
    let violations = bad_char | empty_or_separator_first | bad_pairs | triple_underscore;
    if violations != 0 {
        let at = first(violations);
        return Err(if bit(m.upper, at) {
            InvalidReference::UppercasePath
        } else {
            InvalidReference::BadPathComponent
        });
    }
    if bit(boundary, end - 1) {
        return Err(InvalidReference::BadPathComponent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_and_bits_cover_every_width() {
        for n in 0..=70usize {
            let expected = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
            assert_eq!(low(n), expected, "low({n})");
        }
        assert_eq!(bits(3, 64), u64::MAX << 3);
        assert_eq!(bits(0, 0), 0);
        assert_eq!(bits(63, 64), 1 << 63);
    }

    #[test]
    fn sha256_hex_check_matches_the_scalar_one() {
        let valid = "15d3b5c4f521a84896ed1ead1b14e4774d02202d5c65ab68f30eeaf310a3b1a7";
        for b in 0..=255u8 {
            for position in [0, 15, 16, 47, 63] {
                let mut digest = valid.as_bytes().to_vec();
                digest[position] = b;
                let expected = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
                assert_eq!(lower_hex(&digest), expected, "byte {b} at {position}");
            }
        }
    }

    #[test]
    fn sse2_and_scalar_classifiers_agree() {
        let samples: &[&[u8]] = &[
            b"",
            b"registry.example.com:5000/a_b/c--d/e.f:tag",
            b"\x00\x7f\x80\xff /:@.-_[09azAZ`{",
            &[b'x'; 64],
            b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/:@.-_[]!~ \t",
        ];
        for sample in samples {
            assert_eq!(classify(sample), classify_scalar(sample), "{sample:?}");
        }
        for b in 0..=255u8 {
            for len in [1, 15, 16, 17, 33, 64, 70] {
                let bytes = vec![b; len];
                assert_eq!(classify(&bytes), classify_scalar(&bytes), "byte {b} x {len}");
            }
        }
    }
}
