//! Authenticated requests to registries, for every caller that speaks the distribution
//! protocol (the existence checks, and whatever reads or writes manifests and blobs): which
//! client and scheme reach a registry, and the `Authorization` each request carries.
//!
//! - Credentials (`--registry-auth`, Palette's Secret) go to exactly the `host[:port]` they
//!   are keyed by (`host` is the default port), and to the registry's token realm only when it
//!   is `https`, or the registry is listed in `--insecure-registry` ([`super::token`]).
//! - A registry's challenge is learned from its first 401 and remembered, so later requests
//!   carry their authorization at once; bearer tokens are cached per registry and scope (the
//!   repositories and actions asked), and one a registry refuses is fetched anew.
//! - `--insecure-registry` hosts (exactly `host[:port]`) skip certificate checks and fall back
//!   to plain HTTP when they speak no TLS.
//!
//! The engine's own reference parser names the registry (IPv6 literals included), the
//! repository (`library/` written out for Docker Hub's official images) and the tag or
//! digest.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Client, RequestBuilder, Response, StatusCode};

use super::auth_file::AuthFile;
use super::egress::Egress;
use super::error::CheckError;
use super::http::{self, from_reqwest, read_capped, retry_after};
use super::tls;
use super::token::{self, Challenge, MAX_TOKEN_BYTES, Token};
use crate::rewrite::reference::{self, DOCKER_HUB, DOCKER_HUB_ALIASES};

/// Registries whose challenge is remembered (a bound; only operator-named registries and rule
/// targets are reached).
const MAX_CHALLENGES: usize = 1024;
/// Docker Hub's API host.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

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

/// A client that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("registry client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// The registry clients (verified TLS, and unverified TLS or plain HTTP for insecure
/// registries), the credentials, and what was learned of each registry's auth.
pub struct Registries {
    secure: Client,
    unverified: Client,
    insecure: Vec<String>,
    auth: AuthFile,
    /// Bearer tokens by (registry, scope).
    tokens: Cache<(String, String), Token>,
    /// The last challenge of each registry (by scheme and `host[:port]`).
    challenges: Mutex<HashMap<String, Challenge>>,
    /// The egress guard every URL requested is checked by, if any.
    guard: Option<Arc<Egress>>,
}

/// A repository at a registry, as requests name it.
#[derive(Clone, Debug)]
pub struct Repo<'a> {
    /// `host[:port]` as written, lowercase: the key of credentials and `--insecure-registry`.
    pub registry: String,
    /// Where to connect (Docker Hub's API host for `docker.io`).
    pub endpoint: Cow<'a, str>,
    /// The repository (`library/` written out for a Docker Hub official image).
    pub repository: Cow<'a, str>,
}

/// An image: its repository and its tag or digest (the digest when it has both).
#[derive(Clone, Debug)]
pub struct ImageRef<'a> {
    pub repo: Repo<'a>,
    pub reference: &'a str,
}

/// What a request does in its repository: the scope of its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    /// Read manifests and blobs.
    Pull,
    /// Write too; `mount_from` names another repository of the same registry to mount blobs
    /// from (read on it is asked in the same token).
    Push { mount_from: Option<&'a str> },
}

impl ImageRef<'_> {
    /// Parses `image` as the engine does.
    pub fn parse(image: &str) -> Result<ImageRef<'_>, CheckError> {
        let parsed = reference::parse(image).map_err(|invalid| CheckError::Reference(invalid.reason().to_owned()))?;
        let hub = parsed.port.is_none() && (parsed.host == DOCKER_HUB || DOCKER_HUB_ALIASES.contains(&parsed.host));
        let repository = if hub && parsed.single_segment() {
            Cow::Owned(format!("library/{}", parsed.path))
        } else {
            Cow::Borrowed(parsed.path)
        };
        // `:tag`, `@digest` or `:tag@digest`: the digest is what is pulled.
        let reference = match parsed.suffix.rsplit_once('@') {
            Some((_, digest)) => digest,
            None => parsed.suffix.strip_prefix(':').unwrap_or("latest"),
        };
        let endpoint = if hub { Cow::Borrowed(DOCKER_HUB_API) } else { Cow::Borrowed(parsed.registry_key()) };
        let repo = Repo { registry: parsed.registry_key().to_ascii_lowercase(), endpoint, repository };
        Ok(ImageRef { repo, reference })
    }
}

impl Registries {
    /// Builds the clients; `auth` gives each registry's credentials (anonymous without). With
    /// `whole_request`, `settings.timeout` bounds each request as a whole (checks); without,
    /// it bounds connecting and each read (streams of any length).
    pub fn new(settings: &ClientSettings, auth: AuthFile, whole_request: bool) -> Result<Self, ClientError> {
        Self::with_guard(settings, auth, whole_request, None)
    }

    /// As [`Self::new`], every connection held to `guard` ([`super::egress`]) when given: the
    /// session of registries a Pod's author names.
    pub fn with_guard(
        settings: &ClientSettings,
        auth: AuthFile,
        whole_request: bool,
        guard: Option<Arc<Egress>>,
    ) -> Result<Self, ClientError> {
        let whole = whole_request.then_some(settings.timeout);
        let client = |tls| http::client(tls, settings.timeout, whole, guard.clone());
        Ok(Self {
            secure: client(tls::verified(settings.ca_pem.as_deref()))?,
            unverified: client(tls::unverified())?,
            guard: guard.clone(),
            insecure: settings.insecure.iter().map(|host| host.trim().to_ascii_lowercase()).collect(),
            auth,
            tokens: Cache::builder()
                .max_capacity(token::MAX_CACHED_TOKEN_BYTES)
                .weigher(|(registry, scope): &(String, String), token: &Token| {
                    let bytes = registry.len() + scope.len() + token.header.len() + 64;
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

    /// Whether mirrorswap holds a login for `registry`.
    pub fn has_login(&self, registry: &str) -> bool {
        self.auth.get(registry).is_some()
    }

    /// Sends the request `build` makes (from the client and the registry's base URL,
    /// `https://host[:port]`), authenticated for `access` to `repo` after at most one
    /// challenge. Any answer but a final 401 is returned for the caller to read; a final 401
    /// is [`CheckError::NoCredentials`] or [`CheckError::CredentialsRejected`]. `build` may be
    /// called twice (after a challenge, and on an insecure registry's fallback to http).
    pub async fn send(
        &self,
        repo: &Repo<'_>,
        access: Access<'_>,
        build: impl Fn(&Client, &str) -> RequestBuilder,
    ) -> Result<Response, CheckError> {
        if !self.is_insecure(&repo.registry) {
            return self.send_over(&self.secure, "https", repo, access, &build).await;
        }
        match self.send_over(&self.unverified, "https", repo, access, &build).await {
            Err(CheckError::Tls(_) | CheckError::Transport(_) | CheckError::Connect(_)) => {
                self.send_over(&self.unverified, "http", repo, access, &build).await
            }
            answer => answer,
        }
    }

    async fn send_over(
        &self,
        client: &Client,
        scheme: &str,
        repo: &Repo<'_>,
        access: Access<'_>,
        build: &impl Fn(&Client, &str) -> RequestBuilder,
    ) -> Result<Response, CheckError> {
        let base = format!("{scheme}://{}", repo.endpoint);
        self.check_url(&base)?;
        let learned = format!("{scheme}://{}", repo.registry);
        let known = self.challenges.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&learned).cloned();
        let mut authorization = match known {
            Some(challenge) => self.authorization(client, scheme, repo, access, &challenge).await?,
            None => None,
        };
        let mut challenged = false;
        loop {
            let mut request = build(client, &base);
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value.clone());
            }
            let response = request.send().await.map_err(from_reqwest)?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            if challenged {
                return Err(self.unauthorized(repo));
            }
            challenged = true;
            let challenge = match token::challenge(response.headers()) {
                Some(challenge) => challenge,
                // No challenge to answer: the login, if there is one, as basic.
                None if self.auth.get(&repo.registry).is_some() => Challenge::Basic,
                None => return Err(self.unauthorized(repo)),
            };
            self.remember(learned.clone(), challenge.clone());
            // A cached token the registry refused (revoked, expired early) is not sent again.
            self.tokens.invalidate(&(repo.registry.clone(), scope(repo, access))).await;
            authorization = self.authorization(client, scheme, repo, access, &challenge).await?;
            if authorization.is_none() {
                return Err(self.unauthorized(repo));
            }
        }
    }

    /// The `Authorization` header that answers `challenge`: the login as basic, or a bearer
    /// token for the scope (cached, else fetched); `None` when basic is asked and there is no
    /// login.
    async fn authorization(
        &self,
        client: &Client,
        scheme: &str,
        repo: &Repo<'_>,
        access: Access<'_>,
        challenge: &Challenge,
    ) -> Result<Option<HeaderValue>, CheckError> {
        match challenge {
            Challenge::Basic => {
                Ok(self.auth.get(&repo.registry).and_then(|(username, password)| token::basic(username, password)))
            }
            Challenge::Bearer { realm, service } => {
                let key = (repo.registry.clone(), scope(repo, access));
                if let Some(token) = self.tokens.get(&key).await.filter(|token| token.until > Instant::now()) {
                    return Ok(Some(token.header));
                }
                let token = self.fetch_token(client, scheme, repo, &key.1, realm, service.as_deref()).await?;
                self.tokens.insert(key, token.clone()).await;
                Ok(Some(token.header))
            }
        }
    }

    /// A token for `scopes` (space-separated) from `realm`, with the login if there is one.
    async fn fetch_token(
        &self,
        client: &Client,
        scheme: &str,
        repo: &Repo<'_>,
        scopes: &str,
        realm: &str,
        service: Option<&str>,
    ) -> Result<Token, CheckError> {
        // Plain http keeps the registry's own choice: only a registry the operator listed in
        // --insecure-registry, and reached over http, may name an http realm.
        let plain_allowed = scheme == "http" || self.is_insecure(&repo.registry);
        let mut url = token::realm_url(realm, plain_allowed)?;
        {
            let mut query = url.query_pairs_mut();
            for scope in scopes.split(' ') {
                query.append_pair("scope", scope);
            }
            if let Some(service) = service {
                query.append_pair("service", service);
            }
        }
        if let Some(guard) = &self.guard {
            guard.check_url(&url).map_err(|refused| CheckError::Connect(format!("token realm: {refused}")))?;
        }
        let realm_host = match (url.host_str().unwrap_or_default(), url.port()) {
            (host, Some(port)) => format!("{host}:{port}"),
            (host, None) => host.to_owned(),
        };
        // The realm's certificate is checked unless the realm itself is an insecure registry.
        let client = if self.is_insecure(&realm_host) { client } else { &self.secure };
        let login = self.auth.get(&repo.registry);
        let mut request = client.get(url);
        if let Some((username, password)) = login
            && let Some(value) = token::basic(username, password)
        {
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(from_reqwest)?;
        let status = response.status();
        if status != StatusCode::OK {
            let wait = retry_after(response.headers());
            return Err(token::token_status(status, login.is_some(), &repo.registry, wait));
        }
        let body = read_capped(response, MAX_TOKEN_BYTES, "token answer").await?;
        token::parse_token(&body, Instant::now())
    }

    /// Whether the guard, if any, lets `url` be requested.
    fn check_url(&self, url: &str) -> Result<(), CheckError> {
        let Some(guard) = &self.guard else { return Ok(()) };
        let url = reqwest::Url::parse(url).map_err(|_| CheckError::Connect("not a URL".into()))?;
        guard.check_url(&url).map_err(|refused| CheckError::Connect(refused.0))
    }

    /// Whether requests of this session are held to an egress guard.
    pub fn is_guarded(&self) -> bool {
        self.guard.is_some()
    }

    fn remember(&self, registry: String, challenge: Challenge) {
        let mut challenges = self.challenges.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if challenges.len() >= MAX_CHALLENGES && !challenges.contains_key(&registry) {
            challenges.clear();
        }
        challenges.insert(registry, challenge);
    }

    /// The 401 error for `repo`: with or without a login for its registry.
    pub fn unauthorized(&self, repo: &Repo<'_>) -> CheckError {
        let registry = repo.registry.clone();
        if self.auth.get(&repo.registry).is_some() {
            CheckError::CredentialsRejected { registry }
        } else {
            CheckError::NoCredentials { registry }
        }
    }

    /// The error an answer that is not what a caller asked for means: 403 denied, 429 rate
    /// limited (with its `Retry-After`), any other status as it is.
    pub fn status_error(&self, repo: &Repo<'_>, response: &Response) -> CheckError {
        match response.status().as_u16() {
            401 => self.unauthorized(repo),
            403 => CheckError::Denied { with_credentials: self.has_login(&repo.registry) },
            429 => CheckError::RateLimited { retry_after: retry_after(response.headers()) },
            code => CheckError::Status(code),
        }
    }
}

/// The token scope of `access` to `repo` (space-separated when two repositories).
fn scope(repo: &Repo<'_>, access: Access<'_>) -> String {
    match access {
        Access::Pull => format!("repository:{}:pull", repo.repository),
        Access::Push { mount_from: None } => format!("repository:{}:pull,push", repo.repository),
        Access::Push { mount_from: Some(from) } => {
            format!("repository:{}:pull,push repository:{from}:pull", repo.repository)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_name_their_repository_and_reference() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let with_digest = format!("m.io:5000/team/app:1@{digest}");
        // (image, registry, endpoint, repository, reference)
        let table: [(&str, &str, &str, &str, &str); 5] = [
            ("nginx", "docker.io", "registry-1.docker.io", "library/nginx", "latest"),
            ("docker.io/bitnami/redis:7", "docker.io", "registry-1.docker.io", "bitnami/redis", "7"),
            (&with_digest, "m.io:5000", "m.io:5000", "team/app", digest),
            ("[fd00::1]:5000/x:1", "[fd00::1]:5000", "[fd00::1]:5000", "x", "1"),
            ("Harbor.Example.org/a/b:2", "harbor.example.org", "Harbor.Example.org", "a/b", "2"),
        ];
        for (image, registry, endpoint, repository, reference) in table {
            let parsed = ImageRef::parse(image).unwrap();
            assert_eq!(
                (&*parsed.repo.registry, &*parsed.repo.endpoint, &*parsed.repo.repository, parsed.reference),
                (registry, endpoint, repository, reference),
                "{image}"
            );
        }
        assert!(matches!(ImageRef::parse("Not An Image"), Err(CheckError::Reference(_))));
    }

    #[test]
    fn scopes_name_every_repository_a_request_touches() {
        let repo = ImageRef::parse("m.io/team/app:1").unwrap().repo;
        assert_eq!(scope(&repo, Access::Pull), "repository:team/app:pull");
        assert_eq!(scope(&repo, Access::Push { mount_from: None }), "repository:team/app:pull,push");
        assert_eq!(
            scope(&repo, Access::Push { mount_from: Some("base/os") }),
            "repository:team/app:pull,push repository:base/os:pull"
        );
    }
}
