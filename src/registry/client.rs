//! Asks one registry whether it has one image: a manifest `HEAD` by tag or digest, whose
//! 2xx means present (no `GET`, so no body, is read for it). Anonymous, basic and bearer-token
//! auth ([`super::token`]); the credentials of `--registry-auth` go to exactly the
//! `host[:port]` they are keyed by, and to that registry's token realm when it is `https`.
//! `--insecure-registry` hosts (exactly `host[:port]`) skip certificate checks and fall back to
//! plain HTTP when they speak no TLS.
//!
//! Spoken on `reqwest` with rustls and `ring`, rather than through `oci-client`'s
//! `fetch_manifest_digest`: that one falls back to a `GET` that reads any body whole when
//! the `HEAD` has no digest, reads token answers whole, sends basic credentials to a plain
//! `http` realm, and turns a refused token into an anonymous request; none of it can be
//! configured. Here every body read is capped ([`MAX_MANIFEST_BYTES`],
//! [`super::token::MAX_TOKEN_BYTES`]), headers are bounded by hyper's limits, redirects are
//! few and never downgrade to `http`, and every error says what happened
//! ([`CheckError`]). The engine's own reference parser names the registry (IPv6 literals
//! included), the repository and the tag or digest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use moka::future::Cache;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Client, Method, Response, StatusCode, redirect};

use super::auth_file::AuthFile;
pub use super::error::{CheckError, NotAsked};
use super::tls;
use super::token::{self, Challenge, MAX_TOKEN_BYTES, Token};
use crate::rewrite::reference::{self, DOCKER_HUB, DOCKER_HUB_ALIASES};

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
/// The longest `Retry-After` honoured: a registry cannot shut itself out for longer.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;
/// Registries whose challenge is remembered (only rule targets are asked; this is a bound).
const MAX_CHALLENGES: usize = 1024;

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct ClientSettings {
    /// Extra trusted CA certificates (PEM bundle).
    pub ca_pem: Option<Vec<u8>>,
    /// `host[:port]` entries reached without certificate checks (plain HTTP as a fallback).
    pub insecure: Vec<String>,
    /// Connect and whole-request timeout of one request.
    pub timeout: Duration,
}

/// The registry clients (verified TLS, and unverified TLS or plain HTTP for insecure
/// registries), the credentials, and what was learned of each registry's auth.
pub struct Checker {
    secure: Client,
    unverified: Client,
    insecure: Vec<String>,
    auth: AuthFile,
    /// Bearer tokens by (registry, repository).
    tokens: Cache<(String, String), Token>,
    /// The last challenge of each registry (by scheme and `host[:port]`), so later requests
    /// carry their authorization at once instead of after a 401.
    challenges: Mutex<HashMap<String, Challenge>>,
}

/// A client that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("registry client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// One image's request: where, as what, with which login.
struct Target<'a> {
    /// `host[:port]` as written, lowercase: the key of credentials and `--insecure-registry`.
    registry: String,
    /// Where to connect (Docker Hub's API host for `docker.io`).
    endpoint: &'a str,
    /// The repository (`library/` written out for a Docker Hub official image).
    repository: std::borrow::Cow<'a, str>,
    /// Tag or digest.
    reference: &'a str,
    login: Option<(&'a str, &'a str)>,
}

/// Docker Hub's API host.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

impl Checker {
    /// Builds the clients; `auth` gives each registry's credentials (anonymous without).
    pub fn new(settings: &ClientSettings, auth: AuthFile) -> Result<Self, ClientError> {
        let build = |tls: rustls::ClientConfig| {
            Client::builder()
                .use_preconfigured_tls(tls)
                .redirect(redirect_policy())
                .connect_timeout(settings.timeout)
                .timeout(settings.timeout)
                .pool_max_idle_per_host(16)
                .pool_idle_timeout(Duration::from_secs(60))
                .user_agent(concat!("mirrorswap/", env!("CARGO_PKG_VERSION")))
                .http1_only()
                .build()
        };
        Ok(Self {
            secure: build(tls::verified(settings.ca_pem.as_deref()))?,
            unverified: build(tls::unverified())?,
            insecure: settings.insecure.iter().map(|host| host.trim().to_ascii_lowercase()).collect(),
            auth,
            tokens: Cache::builder()
                .max_capacity(token::MAX_CACHED_TOKEN_BYTES)
                .weigher(|(registry, repository): &(String, String), token: &Token| {
                    let bytes = registry.len() + repository.len() + token.header.len() + 64;
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .time_to_live(token::MAX_TOKEN_LIFETIME)
                .build(),
            challenges: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `registry` (`host[:port]`) is exactly an `--insecure-registry` entry (`host`
    /// and `host:443` are one).
    pub fn is_insecure(&self, registry: &str) -> bool {
        let registry = registry.to_ascii_lowercase();
        let registry = registry.strip_suffix(":443").unwrap_or(&registry);
        self.insecure.iter().any(|entry| entry.strip_suffix(":443").unwrap_or(entry) == registry)
    }

    /// Asks the registry of `image` whether it has it.
    pub async fn check(&self, image: &str) -> Result<Answer, CheckError> {
        let parsed = reference::parse(image).map_err(|invalid| CheckError::Reference(invalid.reason().to_owned()))?;
        let hub = parsed.port.is_none() && (parsed.host == DOCKER_HUB || DOCKER_HUB_ALIASES.contains(&parsed.host));
        let repository = if hub && parsed.single_segment() {
            std::borrow::Cow::Owned(format!("library/{}", parsed.path))
        } else {
            std::borrow::Cow::Borrowed(parsed.path)
        };
        // `:tag`, `@digest` or `:tag@digest`: the digest is what is pulled.
        let reference = match parsed.suffix.rsplit_once('@') {
            Some((_, digest)) => digest,
            None => parsed.suffix.strip_prefix(':').unwrap_or("latest"),
        };
        let registry = parsed.registry_key().to_ascii_lowercase();
        let target = Target {
            login: self.auth.get(&registry),
            registry,
            endpoint: if hub { DOCKER_HUB_API } else { parsed.registry_key() },
            repository,
            reference,
        };
        if !self.is_insecure(&target.registry) {
            return self.ask(&self.secure, "https", &target).await;
        }
        match self.ask(&self.unverified, "https", &target).await {
            Err(CheckError::Tls(_) | CheckError::Transport(_) | CheckError::Connect(_)) => {
                self.ask(&self.unverified, "http", &target).await
            }
            answer => answer,
        }
    }

    /// The manifest `HEAD` (a capped `GET` where `HEAD` is not allowed), authenticated after
    /// at most one challenge.
    async fn ask(&self, client: &Client, scheme: &str, target: &Target<'_>) -> Result<Answer, CheckError> {
        let url = format!("{scheme}://{}/v2/{}/manifests/{}", target.endpoint, target.repository, target.reference);
        let learned = format!("{scheme}://{}", target.registry);
        let known = self.challenges.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&learned).cloned();
        let mut authorization = match known {
            Some(challenge) => self.authorization(client, scheme, target, &challenge).await?,
            None => None,
        };
        let mut method = Method::HEAD;
        let mut challenged = false;
        loop {
            let mut request = client.request(method.clone(), &url).header(ACCEPT, MANIFEST_ACCEPT);
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value.clone());
            }
            let response = request.send().await.map_err(from_reqwest)?;
            let status = response.status();
            match status.as_u16() {
                200..=299 if method == Method::GET => {
                    drain_capped(response, MAX_MANIFEST_BYTES, "manifest").await?;
                    return Ok(Answer::Present);
                }
                200..=299 => return Ok(Answer::Present),
                404 => return Ok(Answer::Absent(404)),
                405 | 501 if method == Method::HEAD => method = Method::GET,
                401 if !challenged => {
                    challenged = true;
                    let challenge = match token::challenge(response.headers()) {
                        Some(challenge) => challenge,
                        // No challenge to answer: the login, if there is one, as basic.
                        None if target.login.is_some() => Challenge::Basic,
                        None => return Err(self.unauthorized(target)),
                    };
                    self.remember(learned.clone(), challenge.clone());
                    // A cached token the registry refused (revoked, expired early) is not sent again.
                    self.tokens.invalidate(&(target.registry.clone(), target.repository.clone().into_owned())).await;
                    authorization = self.authorization(client, scheme, target, &challenge).await?;
                    if authorization.is_none() {
                        return Err(self.unauthorized(target));
                    }
                }
                401 => return Err(self.unauthorized(target)),
                403 => return Err(CheckError::Denied { with_credentials: target.login.is_some() }),
                429 => return Err(CheckError::RateLimited { retry_after: retry_after(response.headers()) }),
                code => return Err(CheckError::Status(code)),
            }
        }
    }

    /// The `Authorization` header that answers `challenge`: the login as basic, or a bearer
    /// token (cached, else fetched); `None` when basic is asked and there is no login.
    async fn authorization(
        &self,
        client: &Client,
        scheme: &str,
        target: &Target<'_>,
        challenge: &Challenge,
    ) -> Result<Option<HeaderValue>, CheckError> {
        match challenge {
            Challenge::Basic => Ok(target.login.and_then(|(username, password)| token::basic(username, password))),
            Challenge::Bearer { realm, service } => {
                let key = (target.registry.clone(), target.repository.clone().into_owned());
                if let Some(token) = self.tokens.get(&key).await.filter(|token| token.until > Instant::now()) {
                    return Ok(Some(token.header));
                }
                let token = self.fetch_token(client, scheme, target, realm, service.as_deref()).await?;
                self.tokens.insert(key, token.clone()).await;
                Ok(Some(token.header))
            }
        }
    }

    /// A pull token for the target's repository from `realm`, with the login if there is one.
    async fn fetch_token(
        &self,
        client: &Client,
        scheme: &str,
        target: &Target<'_>,
        realm: &str,
        service: Option<&str>,
    ) -> Result<Token, CheckError> {
        // Plain http keeps the registry's own choice: only a registry the operator listed in
        // --insecure-registry, and reached over http, may name an http realm.
        let plain_allowed = scheme == "http" || self.is_insecure(&target.registry);
        let mut url = token::realm_url(realm, plain_allowed)?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("scope", &format!("repository:{}:pull", target.repository));
            if let Some(service) = service {
                query.append_pair("service", service);
            }
        }
        let realm_host = match (url.host_str().unwrap_or_default(), url.port()) {
            (host, Some(port)) => format!("{host}:{port}"),
            (host, None) => host.to_owned(),
        };
        // The realm's certificate is checked unless the realm itself is an insecure registry.
        let client = if self.is_insecure(&realm_host) { client } else { &self.secure };
        let mut request = client.get(url);
        if let Some((username, password)) = target.login
            && let Some(value) = token::basic(username, password)
        {
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(from_reqwest)?;
        let status = response.status();
        if status != StatusCode::OK {
            let wait = retry_after(response.headers());
            return Err(token::token_status(status, target.login.is_some(), &target.registry, wait));
        }
        let body = read_capped(response, MAX_TOKEN_BYTES, "token answer").await?;
        token::parse_token(&body, Instant::now())
    }

    fn remember(&self, registry: String, challenge: Challenge) {
        let mut challenges = self.challenges.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if challenges.len() >= MAX_CHALLENGES && !challenges.contains_key(&registry) {
            challenges.clear();
        }
        challenges.insert(registry, challenge);
    }

    fn unauthorized(&self, target: &Target<'_>) -> CheckError {
        let registry = target.registry.clone();
        if target.login.is_some() {
            CheckError::CredentialsRejected { registry }
        } else {
            CheckError::NoCredentials { registry }
        }
    }
}

/// At most [`MAX_REDIRECTS`], never from `https` to `http`. (reqwest drops the
/// `Authorization` header when a redirect leaves the origin.)
fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let downgrade =
            attempt.previous().last().is_some_and(|from| from.scheme() == "https") && attempt.url().scheme() != "https";
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if downgrade {
            attempt.error("a redirect from https to plain http")
        } else {
            attempt.follow()
        }
    })
}

/// The body, up to `limit` bytes; longer is an error, and nothing past the limit is read.
pub async fn read_capped(mut response: Response, limit: usize, what: &'static str) -> Result<Vec<u8>, CheckError> {
    if declared_length(&response).is_some_and(|length| length > limit) {
        return Err(CheckError::TooLarge { what, limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
        if body.len() + chunk.len() > limit {
            return Err(CheckError::TooLarge { what, limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads the body to its end without keeping it, up to `limit` bytes.
async fn drain_capped(mut response: Response, limit: usize, what: &'static str) -> Result<(), CheckError> {
    if declared_length(&response).is_some_and(|length| length > limit) {
        return Err(CheckError::TooLarge { what, limit });
    }
    let mut read = 0_usize;
    while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
        read = read.saturating_add(chunk.len());
        if read > limit {
            return Err(CheckError::TooLarge { what, limit });
        }
    }
    Ok(())
}

fn declared_length(response: &Response) -> Option<usize> {
    response.headers().get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// `Retry-After` as seconds or an HTTP date, at most [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(text).ok()?.duration_since(SystemTime::now()).unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Sorts a transport failure: a timeout, an untrusted certificate, another TLS failure, a
/// failed connection, or a broken exchange. The message is the innermost cause, never the
/// URL.
fn from_reqwest(error: reqwest::Error) -> CheckError {
    if error.is_timeout() {
        return CheckError::Timeout(Duration::ZERO);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut innermost = None;
    while let Some(cause) = source {
        if let Some(tls) = as_tls(cause) {
            return match tls {
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                    CheckError::UntrustedCertificate
                }
                other => CheckError::Tls(other.to_string()),
            };
        }
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    let message = innermost.unwrap_or_else(|| "the request failed".to_owned());
    if error.is_connect() { CheckError::Connect(message) } else { CheckError::Transport(message) }
}

/// The rustls error in `cause`, also when `io::Error`s wrap it (hyper's connector wraps
/// tokio-rustls' `io::Error` in another; an `io::Error`'s `source` skips what it wraps).
fn as_tls<'e>(cause: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut inner: &(dyn std::error::Error + 'static) = cause;
    for _ in 0..8 {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        inner = inner.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_and_capped() {
        let headers = |value: &str| {
            let mut map = HeaderMap::new();
            map.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            map
        };
        assert_eq!(retry_after(&headers("30")), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(&headers("999999")), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
