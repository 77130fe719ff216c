//! `serve --copy-on-miss`'s flags, each with its `MIRRORSWAP_*` variable: whether to copy, the
//! sources copied from without an explicit rule or at private addresses
//! (`--copy-allow-source`), the sources' credentials (`--source-auth`, never the mirror's),
//! and the bounds: queue, copies at once, bytes per image, time per copy.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::registry::egress::AllowedSource;

/// How `serve` copies images the mirrors lack.
#[derive(Clone, Debug, Args)]
pub struct CopyOnMissArgs {
    /// With --swap-policy exists: an image kept because every candidate mirror answered
    /// "absent" is copied from its source to the first candidate's target, in the background;
    /// the answer's warning says so, and a later Pod is rewritten once the copy is done. Only
    /// sources an explicit rule (exact, replace, prefix) names are copied from, unless
    /// --copy-allow-source lists them.
    #[arg(long, env = "MIRRORSWAP_COPY_ON_MISS")]
    pub copy_on_miss: bool,
    /// HOST[:PORT][/PATH] (repeatable, comma-separated): sources copied from even through a
    /// `default` or `all` rule, a replace rule's wildcard or a bare-host rule's other port, and allowed at loopback, link-local or private addresses.
    /// Matched on path-segment boundaries (`ghcr.io/team` covers `ghcr.io/team/app`, not
    /// `ghcr.io/teammate`); a HOST without a port is port 443.
    #[arg(long = "copy-allow-source", env = "MIRRORSWAP_COPY_ALLOW_SOURCE", value_delimiter = ',',
          value_name = "HOST[:PORT][/PATH]", value_parser = AllowedSource::parse)]
    pub copy_allow_sources: Vec<AllowedSource>,
    /// Docker config JSON (`{"auths": {...}}`) with the sources' credentials for
    /// --copy-on-miss. Only sources get them; the mirror's (--registry-auth, Palette's
    /// registry-info) are never sent to a source.
    #[arg(long, env = "MIRRORSWAP_SOURCE_AUTH", value_name = "FILE")]
    pub source_auth: Option<PathBuf>,
    /// Copies waiting at most; a miss beyond them is not queued (counted as `dropped`).
    #[arg(long, env = "MIRRORSWAP_COPY_QUEUE", default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub copy_queue: u16,
    /// Copies running at once.
    #[arg(long, env = "MIRRORSWAP_COPY_CONCURRENCY", default_value_t = 2, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=16))]
    pub copy_concurrency: u16,
    /// The most blob bytes one image's copy fetches from its source (512MiB, 2GiB, a number of
    /// bytes); a larger image's copy fails before fetching past it.
    #[arg(long, env = "MIRRORSWAP_COPY_MAX_BYTES", default_value = "2GiB", value_name = "SIZE",
          value_parser = parse_size)]
    pub copy_max_bytes: u64,
    /// The time one image's copy is given, all of it.
    #[arg(long, env = "MIRRORSWAP_COPY_TIMEOUT", default_value = "15m", value_name = "DURATION",
          value_parser = humantime::parse_duration)]
    pub copy_timeout: Duration,
}

/// A size: bytes, or a number with `KiB`, `MiB`, `GiB`, `TiB` (or `K`, `M`, `G`, `T`, also
/// powers of 1024).
pub fn parse_size(value: &str) -> Result<u64, String> {
    let text = value.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{value}`: expected a size such as 2GiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return Err(format!("`{value}`: the unit is one of B, KiB, MiB, GiB, TiB")),
    };
    number
        .checked_mul(1 << shift)
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| format!("`{value}`: above zero, below 16 EiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("3g"), Ok(3 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("2GB!").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
