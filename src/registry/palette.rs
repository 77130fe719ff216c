//! Palette's `registry-info` Secret names its mirror: `DOMAIN` (host[:port]), `USERNAME` and
//! `PASSWORD`, `CA_CERT` (PEM) and `INSECURE` (`true`). When the rules come from that Secret,
//! these apply to that registry with no extra flag. Pure: the keys in, the settings out.

use super::auth_file::Credential;

/// The mirror settings a `registry-info` Secret carries. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PaletteRegistry {
    /// `DOMAIN` without scheme or path, lowercase.
    pub domain: String,
    pub credential: Option<Credential>,
    /// `CA_CERT`, when it holds a PEM certificate.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
}

impl std::fmt::Debug for PaletteRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaletteRegistry")
            .field("domain", &self.domain)
            .field("credential", &self.credential)
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl PaletteRegistry {
    /// Reads the keys through `get` (a Secret's decoded `data`); `None` without a `DOMAIN`.
    pub fn from_keys<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Option<Self> {
        let text = |key: &str| get(key).map(|bytes| String::from_utf8_lossy(bytes).trim().to_owned());
        let domain = text("DOMAIN").filter(|domain| !domain.is_empty())?;
        let domain = domain.split_once("://").map_or(domain.as_str(), |(_, rest)| rest);
        let domain = domain.split('/').next().unwrap_or(domain).to_ascii_lowercase();
        let credential = match (text("USERNAME"), text("PASSWORD")) {
            (Some(username), Some(password)) if !username.is_empty() => Some(Credential { username, password }),
            _ => None,
        };
        let ca_pem = get("CA_CERT")
            .filter(|pem| String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----"))
            .map(<[u8]>::to_vec);
        let insecure = text("INSECURE").is_some_and(|value| value.eq_ignore_ascii_case("true"));
        Some(Self { domain, credential, ca_pem, insecure })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_palettes_keys() {
        let keys = [
            ("DOMAIN", "https://Harbor.example.org:8443/"),
            ("USERNAME", "robot"),
            ("PASSWORD", "s3cret"),
            ("INSECURE", "True"),
            ("CA_CERT", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
        ];
        let get = |key: &str| keys.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_bytes());
        let palette = PaletteRegistry::from_keys(get).unwrap();
        assert_eq!(palette.domain, "harbor.example.org:8443");
        assert_eq!(palette.credential.as_ref().unwrap().password, "s3cret");
        assert!(palette.insecure && palette.ca_pem.is_some());
        assert!(!format!("{palette:?}").contains("s3cret"));
        assert!(PaletteRegistry::from_keys(|_| None).is_none());
    }
}
