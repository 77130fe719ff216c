//! Certificate issuance with rcgen: a private CA and a serving certificate it
//! signs, or a serving certificate signed by an existing CA. Used for the
//! development certificate of `serve`, by `mirrorswap certs` and by tests; no
//! openssl needed.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};

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

/// A CA that can sign: its certificate and private key, PEM.
#[derive(Clone)]
pub struct Ca {
    /// The CA certificate.
    pub cert_pem: String,
    /// The CA's private key. Kept out of `Debug`.
    pub key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// Why a CA cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The certificate is not PEM/X.509.
    #[error("the CA certificate cannot be read: {0}")]
    Certificate(String),
    /// The key is not a PEM private key.
    #[error("the CA key cannot be read: {0}")]
    Key(rcgen::Error),
    /// The certificate is not a CA.
    #[error("the certificate is not a CA (no basicConstraints CA:true)")]
    NotCa,
    /// The key does not belong to the certificate.
    #[error("the CA key does not belong to the CA certificate")]
    KeyMismatch,
    /// The CA no longer signs anything that verifies.
    #[error("the CA expired on {0}")]
    Expired(String),
    /// rcgen refused to sign.
    #[error(transparent)]
    Sign(#[from] rcgen::Error),
}

impl Ca {
    /// A fresh self-signed CA named `name`, valid for `days` days.
    pub fn generate(name: &str, days: u32) -> Result<Self, rcgen::Error> {
        let now = time_now();
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now.into();
        params.not_after = (now + days_of(days)).into();
        let key = KeyPair::generate()?;
        let ca = CertifiedIssuer::self_signed(params, key)?;
        Ok(Self { cert_pem: ca.pem(), key_pem: ca.key().serialize_pem() })
    }

    /// When the CA expires, after checking that it is a CA, that the key is its own and that
    /// it has not expired.
    pub fn not_after(&self) -> Result<SystemTime, CaError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes())
            .map_err(|error| CaError::Certificate(error.to_string()))?;
        let certificate = pem.parse_x509().map_err(|error| CaError::Certificate(error.to_string()))?;
        if !certificate.is_ca() {
            return Err(CaError::NotCa);
        }
        let key = KeyPair::from_pem(&self.key_pem).map_err(CaError::Key)?;
        if certificate.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(CaError::KeyMismatch);
        }
        let not_after = certificate.validity().not_after;
        let seconds = u64::try_from(not_after.timestamp()).unwrap_or(0);
        let until = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
        if until <= SystemTime::now() {
            return Err(CaError::Expired(not_after.to_string()));
        }
        Ok(until)
    }

    /// A serving certificate for `names` (DNS names or IP addresses), valid for `days` days or
    /// until the CA expires, whichever is first. Returns the certificate and its key, PEM.
    pub fn sign(&self, names: &[String], days: u32) -> Result<(String, String), CaError> {
        let ca_until = self.not_after()?;
        let key = KeyPair::from_pem(&self.key_pem).map_err(CaError::Key)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, key)?;
        let now = time_now();
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, names.first().map_or("mirrorswap", String::as_str));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now.into();
        params.not_after = (now + days_of(days)).min(ca_until).into();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Issues a fresh CA named `ca_name` and a serving certificate for `names` (DNS names or IP
/// addresses), valid for `days` days.
pub fn issue(ca_name: &str, names: &[String], days: u32) -> Result<Issued, CaError> {
    let ca = Ca::generate(ca_name, days)?;
    let (cert_pem, key_pem) = ca.sign(names, days)?;
    Ok(Issued { ca_pem: ca.cert_pem, cert_pem, key_pem })
}

fn days_of(days: u32) -> Duration {
    Duration::from_secs(u64::from(days) * 86_400)
}

/// Now, a minute in the past so that clocks slightly behind ours accept the certificate.
fn time_now() -> SystemTime {
    SystemTime::now() - Duration::from_secs(60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_signs_only_with_its_own_key() {
        let ca = Ca::generate("test CA", 1).unwrap();
        let other = Ca::generate("other CA", 1).unwrap();
        assert!(ca.sign(&["a.example".into()], 1).is_ok());
        let mixed = Ca { cert_pem: ca.cert_pem.clone(), key_pem: other.key_pem };
        assert!(matches!(mixed.sign(&["a.example".into()], 1), Err(CaError::KeyMismatch)));
        let (leaf, leaf_key) = ca.sign(&["a.example".into()], 1).unwrap();
        let not_ca = Ca { cert_pem: leaf, key_pem: leaf_key };
        assert!(matches!(not_ca.sign(&["a.example".into()], 1), Err(CaError::NotCa)));
        let garbage = Ca { cert_pem: "not a certificate".into(), key_pem: ca.key_pem.clone() };
        assert!(matches!(garbage.sign(&["a.example".into()], 1), Err(CaError::Certificate(_))));
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"), "the key stays out of Debug");
    }

    #[test]
    fn a_certificate_never_outlives_its_ca() {
        let ca = Ca::generate("short CA", 1).unwrap();
        let (leaf, _) = ca.sign(&["a.example".into()], 30).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(leaf.as_bytes()).unwrap();
        let leaf_until = pem.parse_x509().unwrap().validity().not_after.timestamp();
        let ca_until = ca.not_after().unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert!(u64::try_from(leaf_until).unwrap() <= ca_until);
    }
}
