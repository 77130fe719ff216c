//! TLS of the registry checks (rustls with `ring`): the system's roots plus `--registry-ca`
//! (and Palette's `caCert`), verified as webpki verifies them, with one addition every other
//! registry client makes: a served certificate that is itself one of the `--registry-ca`
//! certificates is trusted as it is, its names and validity period still checked. That is the
//! self-signed certificate Docker's registry guide makes (`openssl req -x509 … -addext
//! subjectAltName=…`, which carries `CA:TRUE`, so webpki calls it `CaUsedAsEndEntity`).
//!
//! `--insecure-registry` hosts get [`unverified`]: any certificate, the handshake's signature
//! still checked.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// A client configuration trusting the system's roots and the certificates of `ca_pem`.
pub fn verified(ca_pem: Option<&[u8]>) -> ClientConfig {
    let provider = provider();
    let extra: Vec<CertificateDer<'static>> =
        ca_pem.map(|pem| CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect()).unwrap_or_default();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(extra.iter().cloned());
    // No root at all (a minimal image with no CA bundle and no --registry-ca): every
    // certificate is then "untrusted", which is what the error says.
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider)).build().ok();
    let verifier = Verifier { webpki, pinned: extra, provider: Arc::clone(&provider), any_certificate: false };
    config(provider, Arc::new(verifier))
}

/// A client configuration accepting any certificate (`--insecure-registry`); the handshake's
/// signature is still checked.
pub fn unverified() -> ClientConfig {
    let provider = provider();
    let verifier =
        Verifier { webpki: None, pinned: Vec::new(), provider: Arc::clone(&provider), any_certificate: true };
    config(provider, Arc::new(verifier))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config(provider: Arc<CryptoProvider>, verifier: Arc<dyn ServerCertVerifier>) -> ClientConfig {
    // ring supports both safe versions (TLS 1.2 and 1.3); the builder's error cannot happen.
    let builder = match ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
        Ok(builder) => builder,
        Err(_) => ClientConfig::builder_with_protocol_versions(rustls::DEFAULT_VERSIONS),
    };
    builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()
}

/// webpki's verification, then the pinned certificates; or any certificate.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The `--registry-ca` certificates, trusted also when served as they are.
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    /// `--insecure-registry`: no certificate check at all.
    any_certificate: bool,
}

impl Verifier {
    /// Whether the served certificate is byte for byte one of `--registry-ca`'s.
    fn is_pinned(&self, end_entity: &CertificateDer<'_>) -> bool {
        self.pinned.iter().any(|pinned| pinned.as_ref() == end_entity.as_ref())
    }

    /// A pinned certificate's checks: valid now and for the name.
    fn pinned(&self, end_entity: &CertificateDer<'_>, name: &ServerName<'_>, now: UnixTime) -> Result<(), Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, name)?;
        let (_, certificate) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let validity = certificate.validity();
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now < validity.not_before.timestamp() {
            return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
        }
        if now > validity.not_after.timestamp() {
            return Err(Error::InvalidCertificate(CertificateError::Expired));
        }
        Ok(())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.any_certificate {
            return Ok(ServerCertVerified::assertion());
        }
        let webpki = match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(end_entity, intermediates, name, ocsp, now),
            None => Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
        };
        match webpki {
            // A chain problem (no known issuer, or webpki's `CaUsedAsEndEntity`, an "other"
            // error in rustls' terms) of a certificate that is itself trusted: checked as one.
            // A wrong name or an expired certificate stays the error it is.
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::Other(_)))
                if self.is_pinned(end_entity) =>
            {
                self.pinned(end_entity, name, now).map(|()| ServerCertVerified::assertion())
            }
            // A self-signed certificate nobody gave as a CA is an unknown issuer to the operator,
            // whose remedy is --registry-ca, whatever webpki found first.
            Err(Error::InvalidCertificate(CertificateError::Other(other)))
                if format!("{other:?}").contains("CaUsedAsEndEntity") =>
            {
                Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
            }
            answer => answer,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, signature, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, signature, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
