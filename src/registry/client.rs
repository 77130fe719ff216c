//! Asks one registry whether it has one image: a manifest `HEAD` (a `GET` when the registry
//! sends no digest on `HEAD`) by tag or digest, through `oci-client` (reqwest + rustls with our
//! `ring` provider, connections kept alive). Anonymous, basic and bearer-token auth; tokens are
//! cached by `oci-client` until they expire. `--insecure-registry` hosts skip certificate
//! checks and fall back to plain HTTP when they speak no TLS.

use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::auth_file::AuthFile;

/// What a registry said about one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The manifest exists (2xx).
    Present,
    /// The registry answered that it does not have it (HTTP status, usually 404).
    Absent(u16),
}

/// Why a check gave no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// No answer within the deadline.
    #[error("timeout after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The registry just failed and is not asked again until its backoff ends.
    #[error("failed {} ago, not asked again for {}", humantime::format_duration(*.ago), humantime::format_duration(*.left))]
    BackingOff { ago: Duration, left: Duration },
    /// Credentials missing or refused.
    #[error("unauthorized ({0})")]
    Unauthorized(u16),
    /// Any other HTTP status.
    #[error("HTTP {0}")]
    Status(u16),
    /// Connection, TLS or protocol failure (the message holds no credentials).
    #[error("{0}")]
    Transport(String),
    /// The candidate is not a reference the client can ask for.
    #[error("not a valid reference: {0}")]
    Reference(String),
}

impl CheckError {
    /// `timeout` or `error`, the `result` label of the checks metric.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            _ => "error",
        }
    }

    /// Whether the registry itself is failing (so it backs off), rather than refusing us.
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Transport(_)) || matches!(self, Self::Status(code) if *code >= 500)
    }
}

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct ClientSettings {
    /// Extra trusted CA certificates (PEM bundle).
    pub ca_pem: Option<Vec<u8>>,
    /// `host[:port]` entries reached without certificate checks (plain HTTP as a fallback).
    pub insecure: Vec<String>,
    /// Connect and read timeout of one request.
    pub timeout: Duration,
}

/// The registry clients: verified TLS, and for insecure registries unverified TLS and plain HTTP.
pub struct Checker {
    secure: Client,
    insecure_tls: Client,
    plain_http: Client,
    insecure: Vec<String>,
    auth: AuthFile,
}

impl Checker {
    /// Builds the clients; `auth` gives each registry's credentials (anonymous without).
    pub fn new(settings: &ClientSettings, auth: AuthFile) -> Self {
        // reqwest is built without a provider: ours is ring (never aws-lc). Installing twice is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = |protocol: ClientProtocol, unverified: bool| ClientConfig {
            protocol,
            accept_invalid_certificates: unverified,
            extra_root_certificates: settings
                .ca_pem
                .iter()
                .map(|pem| Certificate { encoding: CertificateEncoding::Pem, data: pem.clone() })
                .collect(),
            connect_timeout: Some(settings.timeout),
            read_timeout: Some(settings.timeout),
            platform_resolver: None,
            ..ClientConfig::default()
        };
        Self {
            secure: Client::new(config(ClientProtocol::Https, false)),
            insecure_tls: Client::new(config(ClientProtocol::Https, true)),
            plain_http: Client::new(config(ClientProtocol::Http, true)),
            insecure: settings.insecure.iter().map(|host| host.to_ascii_lowercase()).collect(),
            auth,
        }
    }

    /// Whether `registry` (`host[:port]`) was named by `--insecure-registry`.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let registry = registry.to_ascii_lowercase();
        let host = registry.rsplit_once(':').map_or(registry.as_str(), |(host, _)| host);
        self.insecure.iter().any(|entry| *entry == registry || entry == host)
    }

    /// Asks the registry of `image` whether it has it.
    pub async fn check(&self, image: &str) -> Result<Answer, CheckError> {
        let reference: Reference =
            image.parse().map_err(|error: oci_client::ParseError| CheckError::Reference(error.to_string()))?;
        let registry = reference.registry().to_owned();
        let auth = match self.auth.get(&registry) {
            Some((username, password)) => RegistryAuth::Basic(username.to_owned(), password.to_owned()),
            None => RegistryAuth::Anonymous,
        };
        if !self.is_insecure(&registry) {
            return ask(&self.secure, &reference, &auth).await;
        }
        match ask(&self.insecure_tls, &reference, &auth).await {
            Err(CheckError::Transport(_)) => ask(&self.plain_http, &reference, &auth).await,
            answer => answer,
        }
    }
}

async fn ask(client: &Client, reference: &Reference, auth: &RegistryAuth) -> Result<Answer, CheckError> {
    match client.fetch_manifest_digest(reference, auth).await {
        Ok(_digest) => Ok(Answer::Present),
        Err(error) => classify(&error),
    }
}

/// Sorts an `oci-client` error into an answer or a failure.
pub fn classify(error: &OciDistributionError) -> Result<Answer, CheckError> {
    use OciDistributionError as E;
    match error {
        E::ImageManifestNotFoundError(_) => Ok(Answer::Absent(404)),
        E::RegistryError { envelope, .. } => {
            use oci_client::errors::OciErrorCode as Code;
            let has = |wanted: &[Code]| envelope.errors.iter().any(|error| wanted.contains(&error.code));
            if has(&[Code::ManifestUnknown, Code::NameUnknown, Code::NotFound, Code::BlobUnknown]) {
                Ok(Answer::Absent(404))
            } else if has(&[Code::Unauthorized, Code::Denied]) {
                Err(CheckError::Unauthorized(401))
            } else {
                Err(CheckError::Status(400))
            }
        }
        E::ServerError { code: 404, .. } => Ok(Answer::Absent(404)),
        E::ServerError { code: code @ (401 | 403), .. } => Err(CheckError::Unauthorized(*code)),
        E::ServerError { code, .. } => Err(CheckError::Status(*code)),
        E::UnauthorizedError { .. } => Err(CheckError::Unauthorized(401)),
        E::AuthenticationFailure(_) => Err(CheckError::Unauthorized(401)),
        E::RequestError(error) if error.is_timeout() => Err(CheckError::Timeout(Duration::ZERO)),
        E::RequestError(error) => Err(CheckError::Transport(transport_message(error))),
        other => Err(CheckError::Transport(other.to_string())),
    }
}

/// The innermost cause of a reqwest error (e.g. the TLS verification failure), without the URL.
fn transport_message(error: &reqwest::Error) -> String {
    let mut message = String::from(if error.is_connect() { "connection failed" } else { "request failed" });
    let mut source = std::error::Error::source(error);
    let mut innermost = None;
    while let Some(cause) = source {
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    if let Some(cause) = innermost {
        message.push_str(": ");
        message.push_str(&cause);
    }
    message
}
