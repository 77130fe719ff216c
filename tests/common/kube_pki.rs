//! The certificates and keys of a test control plane, made with rcgen (no openssl): one CA
//! that signs kube-apiserver's (serving certificate for `127.0.0.1` and
//! `localhost`) and the client certificates (the admin in `system:masters`, or any user and
//! groups RBAC should judge), plus the service-account signing key. kube-apiserver accepts an
//! ECDSA P-256 key there (ES256 tokens), which ring can make; it cannot make RSA keys.

use mirrorswap::certs::Ca;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose};

/// The CA of one control plane.
pub struct Pki {
    pub ca: Ca,
}

/// A certificate and its key, PEM.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new() -> Self {
        Self { ca: Ca::generate("mirrorswap test kube CA", 2).unwrap() }
    }

    /// kube-apiserver's serving certificate: `127.0.0.1` and `localhost`.
    pub fn serving(&self) -> Pair {
        let (cert_pem, key_pem) = self.ca.sign(&["127.0.0.1".into(), "localhost".into()], 2).unwrap();
        Pair { cert_pem, key_pem }
    }

    /// A client certificate: the API server reads the user from the CN and the group from O
    /// (rcgen keeps one O, and one group is all the tests need).
    pub fn client(&self, user: &str, group: Option<&str>) -> Pair {
        let key = KeyPair::from_pem(&self.ca.key_pem).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&self.ca.cert_pem, key).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(group) = group {
            params.distinguished_name.push(DnType::OrganizationName, group);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        params.not_before = now.into();
        params.not_after = (now + std::time::Duration::from_secs(2 * 86_400)).into();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// The service-account token signing key (PKCS#8 ECDSA P-256) and its public key, PEM.
    pub fn service_account_keys() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        (key.serialize_pem(), key.public_key_pem())
    }
}
