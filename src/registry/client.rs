//! Asks one registry whether it has one image: a manifest `HEAD` by tag or digest, whose
//! 2xx means present (no `GET`, so no body, is read for it); only a registry that refuses
//! `HEAD` (405, 501) gets a `GET`, drained up to [`MAX_MANIFEST_BYTES`]. And reads one
//! manifest or index whole, up to the same cap, its digest computed and checked against the
//! reference and the registry's `Docker-Content-Digest`. Requests go through
//! [`super::session`] (credentials, tokens, TLS, insecure registries).
//!
//! Spoken on `reqwest`, rather than through `oci-client`'s `fetch_manifest_digest`: that one
//! falls back to a `GET` that reads any body whole when the `HEAD` has no digest, reads token
//! answers whole, sends basic credentials to a plain `http` realm, and turns a refused token
//! into an anonymous request; none of it can be configured. Here every body read is capped,
//! headers are bounded by hyper's limits, redirects are few and never downgrade to `http`,
//! and every error says what happened ([`CheckError`]).

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::auth_file::AuthFile;
pub use super::error::{CheckError, NotAsked};
use super::http::{drain_capped, read_capped};
use super::session::{Access, ImageRef, Registries};
pub use super::session::{ClientError, ClientSettings};

/// What a registry said about one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The manifest exists (2xx).
    Present,
    /// The registry answered that it does not have it (HTTP status, 404).
    Absent(u16),
}

/// The manifest and index media types a check accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
/// The most of a manifest that is read: what registries themselves accept (distribution's
/// and Harbor's limit). A longer body is cut there with an error.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// A manifest or index as the registry serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The bytes, unchanged (their digest is the image's).
    pub bytes: Vec<u8>,
    /// `Content-Type` as served (empty when none).
    pub media_type: String,
    /// `sha256:` of the bytes.
    pub digest: String,
}

/// Asks registries about images, each request bounded as a whole by the check timeout.
pub struct Checker {
    registries: Registries,
}

impl Checker {
    /// Builds the clients; `auth` gives each registry's credentials (anonymous without).
    pub fn new(settings: &ClientSettings, auth: AuthFile) -> Result<Self, ClientError> {
        Ok(Self { registries: Registries::new(settings, auth, true)? })
    }

    /// Whether `registry` (`host[:port]`) is exactly an `--insecure-registry` entry.
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.registries.is_insecure(registry)
    }

    /// The session the checks use, for other requests with the same settings.
    pub fn registries(&self) -> &Registries {
        &self.registries
    }

    /// Asks the registry of `image` whether it has it.
    pub async fn check(&self, image: &str) -> Result<Answer, CheckError> {
        let image = ImageRef::parse(image)?;
        let path = format!("/v2/{}/manifests/{}", image.repo.repository, image.reference);
        let mut method = Method::HEAD;
        loop {
            let request = |client: &reqwest::Client, base: &str| {
                client.request(method.clone(), format!("{base}{path}")).header(ACCEPT, MANIFEST_ACCEPT)
            };
            let response = self.registries.send(&image.repo, Access::Pull, request).await?;
            match response.status().as_u16() {
                200..=299 if method == Method::GET => {
                    drain_capped(response, MAX_MANIFEST_BYTES, "manifest").await?;
                    return Ok(Answer::Present);
                }
                200..=299 => return Ok(Answer::Present),
                404 => return Ok(Answer::Absent(404)),
                405 | 501 if method == Method::HEAD => method = Method::GET,
                _ => return Err(self.registries.status_error(&image.repo, &response)),
            }
        }
    }

    /// The manifest or index `image` names, read whole up to [`MAX_MANIFEST_BYTES`]; `None`
    /// when the registry answers 404. Its digest must be the reference's, when the reference
    /// is a digest, and the registry's `Docker-Content-Digest`, when it sends one.
    pub async fn manifest(&self, image: &str) -> Result<Option<Manifest>, CheckError> {
        let image = ImageRef::parse(image)?;
        let path = format!("/v2/{}/manifests/{}", image.repo.repository, image.reference);
        let request =
            |client: &reqwest::Client, base: &str| client.get(format!("{base}{path}")).header(ACCEPT, MANIFEST_ACCEPT);
        let response = self.registries.send(&image.repo, Access::Pull, request).await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            status if status.is_success() => {}
            _ => return Err(self.registries.status_error(&image.repo, &response)),
        }
        let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let (media_type, served) = (header(CONTENT_TYPE.as_str()).unwrap_or_default(), header("docker-content-digest"));
        let bytes = read_capped(response, MAX_MANIFEST_BYTES, "manifest").await?;
        let digest = sha256(&bytes);
        let expected = image.reference.starts_with("sha256:").then_some(image.reference).or(served.as_deref());
        if let Some(expected) = expected.filter(|expected| expected.starts_with("sha256:") && *expected != digest) {
            return Err(CheckError::DigestMismatch { expected: expected.to_owned(), got: digest });
        }
        Ok(Some(Manifest { bytes, media_type, digest }))
    }
}

/// `sha256:` and the hex digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for byte in digest.as_ref() {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}
