//! A registry session's settings from what the operator gave: `--registry-ca` read (and
//! refused when it holds no certificate), a Docker config JSON of credentials loaded, and the
//! mirror settings of Palette's `registry-info` Secret merged in (its login unless the file
//! has the registry, its CA, its `INSECURE`). `sync` builds its mirror session and its source
//! session from here, each with its own credentials.

use std::path::Path;
use std::time::Duration;

use super::auth_file::{AuthFile, AuthFileError};
use super::session::ClientSettings;
use crate::credentials::RegistryInfo;

/// Settings that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("--registry-ca {path}: {source}")]
    Ca { path: String, source: std::io::Error },
    #[error("--registry-ca {path}: no PEM certificate in it")]
    CaEmpty { path: String },
    #[error(transparent)]
    Auth(#[from] AuthFileError),
}

/// The client settings: the CA bundle at `ca` (if any), the `insecure` registries, `timeout`.
pub fn client(ca: Option<&Path>, insecure: &[String], timeout: Duration) -> Result<ClientSettings, SettingsError> {
    let ca_pem = match ca {
        Some(path) => {
            let name = path.display().to_string();
            let pem = std::fs::read(path).map_err(|source| SettingsError::Ca { path: name.clone(), source })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(SettingsError::CaEmpty { path: name });
            }
            Some(pem)
        }
        None => None,
    };
    Ok(ClientSettings { ca_pem, insecure: insecure.to_vec(), timeout })
}

/// The credentials of the Docker config JSON at `path`, none without one.
pub fn auth(path: Option<&Path>) -> Result<AuthFile, SettingsError> {
    Ok(match path {
        Some(path) => AuthFile::load(path)?,
        None => AuthFile::default(),
    })
}

/// Merges the mirror settings of Palette's `registry-info` into `auth` and `client`: its login
/// unless `auth` has one for the registry, its CA added to the bundle, its `INSECURE`.
pub fn with_palette(auth: &mut AuthFile, client: &mut ClientSettings, palette: &RegistryInfo) {
    if let (None, Some(login)) = (auth.get(&palette.registry), palette.credential("registry-info")) {
        auth.insert(&palette.registry, login.username, login.password.expose().to_owned());
    }
    if let Some(pem) = &palette.ca_cert {
        let mut bundle = client.ca_pem.take().unwrap_or_default();
        bundle.push(b'\n');
        bundle.extend_from_slice(pem.expose().as_bytes());
        client.ca_pem = Some(bundle);
    }
    if palette.insecure {
        client.insecure.push(palette.registry.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;

    #[test]
    fn palette_fills_what_the_flags_leave_open() {
        let info = |registry: &str, insecure| RegistryInfo {
            registry: registry.into(),
            base_path: String::new(),
            username: "u".into(),
            password: Secret::new("p"),
            ca_cert: Some(Secret::new("-----BEGIN CERTIFICATE-----\nX\n")),
            insecure,
        };
        let mut auth = AuthFile::default();
        let mut client = ClientSettings::default();
        with_palette(&mut auth, &mut client, &info("m.io", true));
        assert_eq!(auth.get("m.io"), Some(("u", "p")));
        assert!(String::from_utf8_lossy(client.ca_pem.as_deref().unwrap()).contains("BEGIN CERTIFICATE"));
        assert_eq!(client.insecure, ["m.io"]);
        let mut auth = AuthFile::default();
        auth.insert("m.io", "own".into(), "pw".into());
        with_palette(&mut auth, &mut ClientSettings::default(), &info("m.io", false));
        assert_eq!(auth.get("m.io"), Some(("own", "pw")), "the flag's login wins");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "nothing").unwrap();
        assert!(matches!(client_error(&empty), SettingsError::CaEmpty { .. }));
        assert!(matches!(client_error(&dir.path().join("missing")), SettingsError::Ca { .. }));
    }

    fn client_error(path: &Path) -> SettingsError {
        client(Some(path), &[], Duration::from_secs(1)).unwrap_err()
    }
}
