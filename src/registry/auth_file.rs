//! `--registry-auth FILE`: a Docker config JSON (`{"auths": {...}}`), exactly the
//! `.dockerconfigjson` key of a `kubernetes.io/dockerconfigjson` Secret, parsed by the one
//! Docker config reader ([`crate::node_config::docker_config`]), looked up by exactly
//! `host[:port]` (`host` is the default port). Errors name the file and the position or
//! entry, never a secret.

use std::collections::BTreeMap;
use std::path::Path;

pub use crate::node_config::docker_config::Credential;
use crate::node_config::docker_config::{self, DockerConfigError};
use crate::rewrite::reference;

/// Credentials by registry (`host` or `host:port`, lowercase).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthFile {
    entries: BTreeMap<String, Credential>,
}

/// Why an auth file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: String, source: DockerConfigError },
}

impl AuthFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        let name = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| AuthFileError::Read { path: name.clone(), source })?;
        Self::parse(&text, &name)
    }

    /// Parses a Docker config JSON; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthFileError> {
        let parsed =
            docker_config::parse(text).map_err(|source| AuthFileError::Parse { path: origin.to_owned(), source })?;
        let entries = parsed.into_iter().map(|(host, credential)| (canonical(&host), credential)).collect();
        Ok(Self { entries })
    }

    /// The user name and password for exactly `registry` (`host[:port]`), as Docker reads its
    /// config: an entry for `host` serves the default port only (`host` or `host:443`), never
    /// `host:5000`, so an image cannot pick a port to receive the mirror's credentials. An
    /// identity token (an OAuth refresh token) is not a login for a manifest check: such a
    /// registry is asked anonymously.
    pub fn get(&self, registry: &str) -> Option<(&str, &str)> {
        let registry = canonical(registry);
        let default_port =
            registry.strip_suffix(":443").map(str::to_owned).unwrap_or_else(|| format!("{registry}:443"));
        let credential = self.entries.get(&registry).or_else(|| self.entries.get(&default_port))?;
        match credential {
            Credential::Basic { username, password } => Some((username, password)),
            Credential::IdentityToken(_) => None,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds (or replaces) the login of `registry`.
    pub fn insert(&mut self, registry: &str, username: String, password: String) {
        self.entries.insert(canonical(registry), Credential::Basic { username, password });
    }
}

/// Lowercase; Docker Hub's historic hosts are `docker.io`.
fn canonical(host: &str) -> String {
    reference::fold_docker_hub(&host.trim().to_ascii_lowercase()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_host_port_then_host_and_docker_hub_aliases() {
        let text = r#"{"auths": {
            "harbor.example.org": {"auth": "dTE6cDE="},
            "https://r.example.org:5000/v1/": {"username": "u2", "password": "p:2"},
            "https://index.docker.io/v1/": {"auth": "dTM6cDM="},
            "t.example.org": {"identitytoken": "refresh"}
        }}"#;
        let file = AuthFile::parse(text, "auth.json").unwrap();
        assert_eq!(file.get("harbor.example.org"), Some(("u1", "p1")));
        assert_eq!(file.get("harbor.example.org:443"), Some(("u1", "p1")), "host is the default port");
        assert_eq!(file.get("harbor.example.org:25502"), None, "never another port");
        assert_eq!(file.get("R.example.org:5000"), Some(("u2", "p:2")));
        assert_eq!(file.get("r.example.org"), None);
        assert_eq!(file.get("docker.io"), Some(("u3", "p3")));
        assert_eq!(file.get("t.example.org"), None);
        let error = AuthFile::parse(r#"{"auths": {"h.io": {"auth": "c2VjcmV0"}}}"#, "auth.json").unwrap_err();
        assert!(error.to_string().starts_with("auth.json: ") && !error.to_string().contains("c2VjcmV0"), "{error}");
    }
}
