//! The copy flags: how many images and connections at once, retries and timeouts, which
//! platforms and whether referrers come along, and the two sides' credentials and TLS:
//! `--source-auth` for sources only, `--registry-auth` (and Palette's `registry-info`) for the
//! mirror only, `--registry-ca` and `--insecure-registry` for both. Each with its
//! `MIRRORSWAP_*` variable; flattened into `sync`, and into whatever else copies.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

use super::engine::Settings;
use super::manifest::Platform;
use crate::credentials::RegistryInfo;
use crate::registry::args::at_most;
use crate::registry::platform::Platform as RequiredPlatform;
use crate::registry::session::{ClientError, Registries};
use crate::registry::settings::{self, SettingsError};

/// How images are copied.
#[derive(Clone, Debug, Args)]
pub struct CopyArgs {
    /// Images copied at once.
    #[arg(long, env = "MIRRORSWAP_SYNC_JOBS", default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Requests in flight to one source host at once, across all images (a blob's stream
    /// holds one until it ends).
    #[arg(long, env = "MIRRORSWAP_SYNC_HOST_CONNECTIONS", default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub host_connections: u16,
    /// Further attempts after a passing failure (a timeout, a broken connection, 429, 5xx),
    /// waiting 0.5s, 1s, 2s… or what a 429's Retry-After asks (at most 1m).
    #[arg(long, env = "MIRRORSWAP_SYNC_RETRIES", default_value_t = 3, value_name = "N",
          value_parser = clap::value_parser!(u8).range(0..=10))]
    pub retries: u8,
    /// The time one lookup (a manifest, a HEAD, a referrers list) is given; also bounds
    /// connecting and the wait for each read of a blob (a source that stalls).
    #[arg(long, env = "MIRRORSWAP_SYNC_TIMEOUT", default_value = "30s", value_name = "DURATION",
          value_parser = |value: &str| at_most(value, Duration::from_secs(600), "10m"))]
    pub timeout: Duration,
    /// The time one blob's copy is given, whatever its size.
    #[arg(long, env = "MIRRORSWAP_SYNC_BLOB_TIMEOUT", default_value = "30m", value_name = "DURATION",
          value_parser = |value: &str| at_most(value, Duration::from_secs(86_400), "24h"))]
    pub blob_timeout: Duration,
    /// Copy only these platforms of a multi-platform image (comma-separated). The index then
    /// differs from the source's, and so does its digest (said per image); an image
    /// referenced by digest is refused. Default: the whole index, every platform.
    #[arg(long = "platform", env = "MIRRORSWAP_SYNC_PLATFORMS", value_delimiter = ',',
          value_name = "OS/ARCH[/VARIANT]", value_parser = Platform::parse)]
    pub platforms: Vec<Platform>,
    /// Platforms (comma-separated) every image must cover, by its index (after `--platform`)
    /// or its single manifest's config: one that does not fails with the platform it lacks
    /// and nothing is written, so a mirror never gets a copy the nodes cannot run (what
    /// `serve --require-platforms` would skip anyway).
    #[arg(long, env = "MIRRORSWAP_REQUIRE_PLATFORMS", value_delimiter = ',',
          value_name = "OS/ARCH[/VARIANT]", value_parser = RequiredPlatform::parse)]
    pub require_platforms: Vec<RequiredPlatform>,
    /// Copy each manifest's OCI 1.1 referrers (signatures, SBOMs, attestations) and its cosign
    /// tags (sha256-HEX.sig, .att, .sbom) along; `--referrers=false` copies the images alone.
    #[arg(long, env = "MIRRORSWAP_SYNC_REFERRERS", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub referrers: bool,
    /// Docker config JSON (`{"auths": {...}}`) with the sources' credentials. Only sources
    /// get them; the mirror's credentials are never sent to a source.
    #[arg(long, env = "MIRRORSWAP_SOURCE_AUTH", value_name = "FILE")]
    pub source_auth: Option<PathBuf>,
    /// Docker config JSON with the mirror's credentials (or Palette's registry-info with
    /// --rules-secret or a registry-secret.yaml as --rules). Only the mirror gets them.
    #[arg(long, env = "MIRRORSWAP_REGISTRY_AUTH", value_name = "FILE")]
    pub registry_auth: Option<PathBuf>,
    /// PEM bundle of CAs trusted for the sources and the mirror, in addition to the system
    /// roots (repeatable; a registry's self-signed certificate may be given as itself).
    #[arg(long, env = "MIRRORSWAP_REGISTRY_CA", value_delimiter = ',', value_name = "FILE")]
    pub registry_ca: Vec<PathBuf>,
    /// HOST[:PORT] (repeatable), source or mirror: TLS without certificate checks, plain HTTP
    /// if it speaks no TLS. Matches exactly that host and port.
    #[arg(
        long = "insecure-registry",
        env = "MIRRORSWAP_INSECURE_REGISTRY",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    pub insecure_registries: Vec<String>,
}

/// A flag's settings that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("--source-auth {0}")]
    SourceAuth(SettingsError),
}

impl CopyArgs {
    /// The engine's settings (`dry_run`: write nothing).
    pub fn settings(&self, dry_run: bool) -> Settings {
        Settings {
            jobs: usize::from(self.jobs),
            retries: u32::from(self.retries),
            lookup_timeout: self.timeout,
            blob_timeout: self.blob_timeout,
            platforms: self.platforms.clone(),
            required_platforms: self.require_platforms.clone(),
            referrers: self.referrers,
            dry_run,
            ..Settings::default()
        }
    }

    /// The sources' session and the mirror's, each with its own credentials; `palette`'s
    /// settings go to the mirror's.
    pub fn sessions(&self, palette: Option<&RegistryInfo>) -> Result<(Registries, Registries), SessionError> {
        let mut bundle = Vec::new();
        for path in &self.registry_ca {
            let client = settings::client(Some(path), &[], self.timeout)?;
            bundle.extend(client.ca_pem.unwrap_or_default());
            bundle.push(b'\n');
        }
        let mut client = settings::client(None, &self.insecure_registries, self.timeout)?;
        client.ca_pem = (!bundle.is_empty()).then_some(bundle);
        let source_auth = settings::auth(self.source_auth.as_deref()).map_err(|error| match error {
            SettingsError::Auth(error) => SessionError::SourceAuth(SettingsError::Auth(error)),
            other => SessionError::Settings(other),
        })?;
        let sources = Registries::new(&client, source_auth, false)?;
        let mut mirror_auth = settings::auth(self.registry_auth.as_deref())?;
        // The mirror answers an upload once all of it is sent: its client waits for an answer
        // as long as a blob may take (the engine bounds lookups and stalled uploads itself).
        let mut mirror_client = client;
        mirror_client.timeout = self.blob_timeout;
        if let Some(palette) = palette {
            settings::with_palette(&mut mirror_auth, &mut mirror_client, palette);
        }
        let mirror = Registries::new(&mirror_client, mirror_auth, false)?;
        Ok((sources, mirror))
    }
}
