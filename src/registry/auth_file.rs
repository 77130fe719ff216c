//! `--registry-auth FILE`: a Docker config JSON (`{"auths": {...}}`), exactly the
//! `.dockerconfigjson` key of a `kubernetes.io/dockerconfigjson` Secret. Keys are `host`,
//! `host:port` or a URL (`https://host/v1/`); entries carry `auth` (base64 `user:password`) or
//! `username`/`password`. Errors name the entry, never its secret.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;

/// One registry's credentials. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential {{ username: {:?}, password: <redacted> }}", self.username)
    }
}

/// Credentials by registry (`host` or `host:port`, lowercase).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthFile {
    entries: HashMap<String, Credential>,
}

/// Why an auth file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: not a Docker config JSON ({{\"auths\": {{...}}}}): {message}")]
    Json { path: String, message: String },
    #[error("{path}: entry `{key}`: {problem}")]
    Entry { path: String, key: String, problem: &'static str },
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    auths: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl AuthFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        let name = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| AuthFileError::Read { path: name.clone(), source })?;
        Self::parse(&text, &name)
    }

    /// Parses a Docker config JSON; `origin` names it in errors.
    pub fn parse(text: &[u8], origin: &str) -> Result<Self, AuthFileError> {
        // serde_json's message says where, never the value.
        let document: Document = serde_json::from_slice(text)
            .map_err(|error| AuthFileError::Json { path: origin.to_owned(), message: error.to_string() })?;
        let mut entries = HashMap::new();
        for (key, entry) in document.auths {
            let problem = |problem| AuthFileError::Entry { path: origin.to_owned(), key: key.clone(), problem };
            let credential = match (entry.auth.filter(|auth| !auth.is_empty()), entry.username, entry.password) {
                (Some(auth), _, _) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|_| problem("`auth` is not base64"))?;
                    let decoded = String::from_utf8(decoded).map_err(|_| problem("`auth` is not UTF-8"))?;
                    let (username, password) =
                        decoded.split_once(':').ok_or_else(|| problem("`auth` is not base64 of user:password"))?;
                    Credential { username: username.to_owned(), password: password.to_owned() }
                }
                (None, Some(username), Some(password)) => Credential { username, password },
                _ => return Err(problem("needs `auth` or `username` and `password`")),
            };
            entries.insert(registry_of_key(&key), credential);
        }
        Ok(Self { entries })
    }

    /// The credentials for `registry` (`host[:port]`): an entry for exactly it, else for its host.
    pub fn get(&self, registry: &str) -> Option<&Credential> {
        let registry = registry.to_ascii_lowercase();
        self.entries.get(&registry).or_else(|| {
            let (host, _) = registry.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))?;
            self.entries.get(host)
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds (or replaces) the credentials of `registry`.
    pub fn insert(&mut self, registry: &str, credential: Credential) {
        self.entries.insert(registry_of_key(registry), credential);
    }
}

/// `https://host:port/v1/` → `host:port`; Docker Hub's historic key → `docker.io`.
fn registry_of_key(key: &str) -> String {
    let key = key.trim();
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key_form_and_both_credential_forms() {
        let text = br#"{"auths": {
            "harbor.example.org": {"auth": "dTE6cDE="},
            "https://r.example.org:5000/v1/": {"username": "u2", "password": "p:2"},
            "https://index.docker.io/v1/": {"auth": "dTM6cDM="}
        }}"#;
        let file = AuthFile::parse(text, "auth.json").unwrap();
        assert_eq!(file.get("harbor.example.org").unwrap().username, "u1");
        assert_eq!(file.get("harbor.example.org:443").unwrap().password, "p1", "host entry serves host:port");
        assert_eq!(file.get("R.example.org:5000").unwrap().password, "p:2");
        assert!(file.get("r.example.org").is_none());
        assert_eq!(file.get("docker.io").unwrap().username, "u3");
    }

    #[test]
    fn errors_name_the_entry_and_never_the_secret() {
        let table: [(&[u8], &str); 4] = [
            (br#"{"auths": {"h.io": {"auth": "!!!secret"}}}"#, "entry `h.io`: `auth` is not base64"),
            (br#"{"auths": {"h.io": {"auth": "c2VjcmV0"}}}"#, "not base64 of user:password"),
            (br#"{"auths": {"h.io": {"username": "u"}}}"#, "needs `auth` or `username` and `password`"),
            (br#"{"auths": ["#, "not a Docker config JSON"),
        ];
        for (text, expected) in table {
            let error = AuthFile::parse(text, "auth.json").unwrap_err().to_string();
            assert!(error.contains(expected) && !error.contains("secret"), "{error}");
        }
        assert!(
            format!("{:?}", AuthFile::parse(br#"{"auths":{"h":{"auth":"dTE6cDE="}}}"#, "a").unwrap())
                .contains("redacted")
        );
    }
}
