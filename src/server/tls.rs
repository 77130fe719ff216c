//! TLS for the webhook listener: rustls with the ring provider, TLS 1.2 and
//! 1.3, ALPN `h2` and `http/1.1`, and a certificate that can be swapped while
//! serving (each new connection gets the current one).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate chain and key ready to serve, and when the certificate expires.
pub struct Loaded {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// Unix time of the leaf certificate's `notAfter`.
    pub not_after: i64,
}

/// Builds a serving key from PEM text: the certificate chain (leaf first) and its private key.
pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Loaded> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem).collect::<Result<_, _>>().context("reading the certificate PEM")?;
    let Some(leaf) = chain.first() else {
        bail!("no CERTIFICATE block in the certificate PEM");
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .map_err(|error| anyhow::anyhow!("parsing the certificate: {error}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("reading the private key PEM")?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|error| anyhow::anyhow!("unsupported private key: {error}"))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().context("the private key does not belong to the certificate")?;
    Ok(Loaded { key: Arc::new(certified), not_after })
}

/// Reads a certificate and key from files.
pub fn from_files(cert: &Path, key: &Path) -> anyhow::Result<Loaded> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    from_pem(&cert_pem, &key_pem).with_context(|| format!("{} / {}", cert.display(), key.display()))
}

/// Serves whichever certificate was stored last.
#[derive(Debug)]
pub struct SwappableCert {
    current: ArcSwap<CertifiedKey>,
}

impl SwappableCert {
    /// Starts with `key`.
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self { current: ArcSwap::new(key) }
    }

    /// New connections get `key` from now on.
    pub fn store(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls server configuration: ring, TLS 1.2/1.3, ALPN h2 and http/1.1.
pub fn server_config(certs: Arc<SwappableCert>) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("configuring TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
