//! Asks one registry about one image: a manifest `HEAD` by tag or digest, whose 2xx means
//! present (no `GET`, so no body, is read for it) and whose `Docker-Content-Digest` is the
//! image's digest when it is a well-formed `sha256:` ([`Found`]); only a registry that refuses
//! `HEAD` (405, 501) gets a `GET`, hashed as it streams and cut at [`MAX_MANIFEST_BYTES`].
//! How much a lookup learns is its [`Depth`]: the digest (a `GET` hashed as it streams, only
//! when the `HEAD` carried none), or the platforms (the manifest or index read whole, capped,
//! and for a single manifest its config blob, capped at [`MAX_CONFIG_BYTES`]).
//!
//! Reads one manifest or index whole, up to the same cap, its digest computed and checked
//! against the reference and the registry's `Docker-Content-Digest`, and one blob, capped, its
//! digest checked. Requests go through [`super::session`] (credentials, tokens, TLS, insecure
//! registries).
//!
//! Spoken on `reqwest`, rather than through `oci-client`'s `fetch_manifest_digest`: that one
//! falls back to a `GET` that reads any body whole when the `HEAD` has no digest, reads token
//! answers whole, sends basic credentials to a plain `http` realm, and turns a refused token
//! into an anonymous request; none of it can be configured. Here every body read is capped,
//! headers are bounded by hyper's limits, redirects are few and never downgrade to `http`,
//! and every error says what happened ([`CheckError`]).

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Response, StatusCode};

use super::auth_file::AuthFile;
pub use super::error::{CheckError, NotAsked};
pub use super::found::{Digest, Found};
use super::http::{declared_length, from_reqwest, read_capped};
use super::platform::{self, Platform, Shape};
use super::session::{Access, ImageRef, Registries};
pub use super::session::{ClientError, ClientSettings};

/// What a registry said about one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The manifest exists (2xx), and what the lookup learned of it.
    Present(Found),
    /// The registry answered that it does not have it (HTTP status, 404).
    Absent(u16),
    /// The manifest exists but covers no image for this platform, which `--require-platforms`
    /// names: never a registry's own answer, the resolver's judgement of a present one.
    Lacks(Platform),
}

impl Answer {
    /// Whether the image is there (and covers what is required).
    pub fn is_present(&self) -> bool {
        matches!(self, Self::Present(_))
    }

    /// What a present answer learned.
    pub fn found(&self) -> Option<&Found> {
        match self {
            Self::Present(found) => Some(found),
            Self::Absent(_) | Self::Lacks(_) => None,
        }
    }
}

/// How much a lookup learns of a present image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Depth {
    /// Whether it is there: one `HEAD` (its digest comes along when the registry sends a
    /// well-formed one).
    #[default]
    Presence,
    /// Its digest too: a `GET` hashed as it streams when the `HEAD` carried none.
    Digest,
    /// Its digest and platforms: the manifest read whole, and a single manifest's config blob.
    Platforms,
}

/// The manifest and index media types a check accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
/// The most of a manifest that is read: what registries themselves accept (distribution's
/// and Harbor's limit). A longer body is cut there with an error.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// The most of an image config blob that is read for its platform (configs are a few KiB; a
/// long history or many labels make tens).
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

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

    /// Asks the registry of `image` whether it has it ([`Depth::Presence`]).
    pub async fn check(&self, image: &str) -> Result<Answer, CheckError> {
        self.look(image, Depth::Presence).await
    }

    /// Asks the registry of `image` whether it has it, learning as much as `depth` says.
    pub async fn look(&self, image: &str, depth: Depth) -> Result<Answer, CheckError> {
        match depth {
            Depth::Platforms => self.platforms(image).await,
            Depth::Digest => match self.head(image).await? {
                Answer::Present(Found { digest: None, .. }) => self.digest(image).await,
                answer => Ok(answer),
            },
            Depth::Presence => self.head(image).await,
        }
    }

    /// The manifest `HEAD`, or a `GET` hashed as it streams when the registry refuses `HEAD`.
    async fn head(&self, image: &str) -> Result<Answer, CheckError> {
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
                    let digest = hashed(response, &image).await?;
                    return Ok(Answer::Present(Found { digest: Some(digest), platforms: None }));
                }
                200..=299 => {
                    let digest = served_digest(&response).as_deref().and_then(Digest::parse);
                    return Ok(Answer::Present(Found { digest, platforms: None }));
                }
                404 => return Ok(Answer::Absent(404)),
                405 | 501 if method == Method::HEAD => method = Method::GET,
                _ => return Err(self.registries.status_error(&image.repo, &response)),
            }
        }
    }

    /// The digest of what the registry serves for `image`: a `GET` hashed as it streams (no
    /// body kept), cut at [`MAX_MANIFEST_BYTES`], checked as [`Self::manifest`] checks.
    async fn digest(&self, image: &str) -> Result<Answer, CheckError> {
        let image = ImageRef::parse(image)?;
        let path = format!("/v2/{}/manifests/{}", image.repo.repository, image.reference);
        let request =
            |client: &reqwest::Client, base: &str| client.get(format!("{base}{path}")).header(ACCEPT, MANIFEST_ACCEPT);
        let response = self.registries.send(&image.repo, Access::Pull, request).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(Answer::Absent(404)),
            status if status.is_success() => {
                let digest = hashed(response, &image).await?;
                Ok(Answer::Present(Found { digest: Some(digest), platforms: None }))
            }
            _ => Err(self.registries.status_error(&image.repo, &response)),
        }
    }

    /// The manifest read whole, its digest computed, and the platforms it covers: an index's
    /// entries, or a single manifest's config blob.
    async fn platforms(&self, image: &str) -> Result<Answer, CheckError> {
        let Some(manifest) = self.manifest(image).await? else { return Ok(Answer::Absent(404)) };
        let digest = Digest::parse(&manifest.digest);
        let platforms = match platform::shape(&manifest.bytes).map_err(CheckError::Unreadable)? {
            Shape::Index(platforms) => platforms,
            Shape::Artifact => platform::Platforms::default(),
            Shape::Image { config, size } => {
                let Some(config) = Digest::parse(&config) else {
                    return Err(CheckError::Unreadable("its config is not named by a sha256 digest".to_owned()));
                };
                if usize::try_from(size).map_or(true, |size| size > MAX_CONFIG_BYTES) {
                    return Err(CheckError::TooLarge { what: "image config", limit: MAX_CONFIG_BYTES });
                }
                let Some(bytes) = self.blob(image, &config, MAX_CONFIG_BYTES, "image config").await? else {
                    return Err(CheckError::Unreadable(format!(
                        "its config blob {config} is not in the registry (404)"
                    )));
                };
                platform::of_config(&bytes).map_err(CheckError::Unreadable)?
            }
        };
        Ok(Answer::Present(Found { digest, platforms: Some(platforms) }))
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
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default();
        let served = served_digest(&response);
        let bytes = read_capped(response, MAX_MANIFEST_BYTES, "manifest").await?;
        let digest = sha256(&bytes);
        check_expected(&image, served.as_deref(), &digest)?;
        Ok(Some(Manifest { bytes, media_type, digest }))
    }

    /// The blob `digest` of the repository `image` names (its tag or digest is not used),
    /// read whole up to `limit` bytes (longer is [`CheckError::TooLarge`] with `what`); `None`
    /// when the registry answers 404. Its bytes must hash to `digest`.
    pub async fn blob(
        &self,
        image: &str,
        digest: &Digest,
        limit: usize,
        what: &'static str,
    ) -> Result<Option<Vec<u8>>, CheckError> {
        let image = ImageRef::parse(image)?;
        let path = format!("/v2/{}/blobs/{digest}", image.repo.repository);
        let request = |client: &reqwest::Client, base: &str| client.get(format!("{base}{path}"));
        let response = self.registries.send(&image.repo, Access::Pull, request).await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            status if status.is_success() => {}
            _ => return Err(self.registries.status_error(&image.repo, &response)),
        }
        let bytes = read_capped(response, limit, what).await?;
        let got = Digest::of(&bytes);
        if got != *digest {
            return Err(CheckError::DigestMismatch { expected: digest.to_string(), got: got.to_string() });
        }
        Ok(Some(bytes))
    }
}

/// The registry's `Docker-Content-Digest`, as sent (bounded by hyper's header limits).
fn served_digest(response: &Response) -> Option<String> {
    response.headers().get("docker-content-digest").and_then(|value| value.to_str().ok()).map(str::to_owned)
}

/// The digest a manifest read for `image` must have: the reference's when it is a digest, else
/// the registry's `Docker-Content-Digest` when that names a `sha256:` one.
fn check_expected(image: &ImageRef<'_>, served: Option<&str>, digest: &str) -> Result<(), CheckError> {
    let expected = image.reference.starts_with("sha256:").then_some(image.reference).or(served);
    match expected.filter(|expected| expected.starts_with("sha256:") && *expected != digest) {
        Some(expected) => Err(CheckError::DigestMismatch { expected: expected.to_owned(), got: digest.to_owned() }),
        None => Ok(()),
    }
}

/// The digest of a manifest body hashed as it streams, cut at [`MAX_MANIFEST_BYTES`] (nothing
/// is kept), checked as [`Checker::manifest`] checks it.
async fn hashed(mut response: Response, image: &ImageRef<'_>) -> Result<Digest, CheckError> {
    let too_large = CheckError::TooLarge { what: "manifest", limit: MAX_MANIFEST_BYTES };
    if declared_length(&response).is_some_and(|length| length > MAX_MANIFEST_BYTES) {
        return Err(too_large);
    }
    let served = served_digest(&response);
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut read = 0_usize;
    while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
        read = read.saturating_add(chunk.len());
        if read > MAX_MANIFEST_BYTES {
            return Err(too_large);
        }
        context.update(&chunk);
    }
    // No bytes is no manifest (a 204, whose body HTTP drops, or an empty 200): its "digest"
    // would be the empty string's, which names nothing a node could pull.
    if read == 0 {
        return Err(CheckError::Unreadable("the registry answered without a manifest (an empty body)".to_owned()));
    }
    let mut bytes = [0; 32];
    bytes.copy_from_slice(context.finish().as_ref());
    let digest = Digest::of_sha256(bytes);
    check_expected(image, served.as_deref(), &digest.to_string())?;
    Ok(digest)
}

/// `sha256:` and the hex digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    Digest::of(bytes).to_string()
}
