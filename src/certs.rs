//! Certificate issuance with rcgen: a private CA and a serving certificate it
//! signs. Used for the development certificate of `serve` and by tests; no
//! openssl needed.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A CA and a serving certificate signed by it, all PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The CA certificate: what clients (the API server's `caBundle`) trust.
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key (PKCS#8).
    pub key_pem: String,
}

/// Issues a fresh CA named `ca_name` and a serving certificate for `names` (DNS names or IP
/// addresses), valid for `days` days.
pub fn issue(ca_name: &str, names: &[String], days: u32) -> Result<Issued, rcgen::Error> {
    let now = time_now();
    let until = now + std::time::Duration::from_secs(u64::from(days) * 86_400);

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now.into();
    ca_params.not_after = until.into();
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, names.first().map_or("mirrorswap", String::as_str));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now.into();
    params.not_after = until.into();
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(Issued { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Now, a minute in the past so that clocks slightly behind ours accept the certificate.
fn time_now() -> std::time::SystemTime {
    std::time::SystemTime::now() - std::time::Duration::from_secs(60)
}
