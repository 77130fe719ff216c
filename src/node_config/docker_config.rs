//! The credentials of a Docker config JSON (`~/.docker/config.json`, a
//! `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson`), by registry host.
//! Errors name the position, never a value: the file holds passwords.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::Deserialize;

/// Credentials for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or token used as a password).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth identity (refresh) token.
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Why a Docker config JSON cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DockerConfigError {
    /// Not JSON, or not the expected shape.
    #[error("not a Docker config JSON ({kind} at line {line}, column {column})")]
    Json {
        /// syntax, data or eof.
        kind: &'static str,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// An entry whose `auth` is not base64 of `user:password`.
    #[error("the `auth` of `{0}` is not base64 of USER:PASSWORD")]
    BadAuth(String),
    /// An entry with neither `auth`, `username`/`password` nor `identitytoken`.
    #[error("`{0}` has no credentials (auth, username and password, or identitytoken)")]
    Empty(String),
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, alias = "identityToken")]
    identitytoken: Option<String>,
}

/// The registry host of an `auths` key: `https://host/v1/` and `host` are both `host`.
pub fn host_of(key: &str) -> &str {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// Credentials by registry host.
pub fn parse(json: &str) -> Result<BTreeMap<String, Credential>, DockerConfigError> {
    let file: File = serde_json::from_str(json).map_err(|error| DockerConfigError::Json {
        kind: match error.classify() {
            serde_json::error::Category::Io | serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected field type",
            serde_json::error::Category::Eof => "unexpected end",
        },
        line: error.line(),
        column: error.column(),
    })?;
    let mut credentials = BTreeMap::new();
    for (key, entry) in file.auths {
        let host = host_of(&key).to_owned();
        let credential = match entry {
            Entry { username: Some(username), password: Some(password), .. } => {
                Credential::Basic { username, password }
            }
            Entry { auth: Some(auth), .. } if !auth.is_empty() => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok());
                let Some((username, password)) = decoded.as_deref().and_then(|text| text.split_once(':')) else {
                    return Err(DockerConfigError::BadAuth(host));
                };
                Credential::Basic { username: username.to_owned(), password: password.to_owned() }
            }
            Entry { identitytoken: Some(token), .. } => Credential::IdentityToken(token),
            _ => return Err(DockerConfigError::Empty(host)),
        };
        credentials.insert(host, credential);
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auth_username_password_and_tokens_by_host() {
        let json = r#"{"auths": {
            "https://harbor.example.org/v1/": {"auth": "cm9ib3QkY2k6czNjcmV0Ong="},
            "quay.example.org": {"username": "u", "password": "p", "auth": ""},
            "token.example.org": {"identitytoken": "t"}
        }}"#;
        let credentials = parse(json).unwrap();
        let basic = |u: &str, p: &str| Credential::Basic { username: u.into(), password: p.into() };
        assert_eq!(credentials["harbor.example.org"], basic("robot$ci", "s3cret:x"));
        assert_eq!(credentials["quay.example.org"], basic("u", "p"));
        assert_eq!(credentials["token.example.org"], Credential::IdentityToken("t".into()));
        assert_eq!(format!("{:?}", credentials["harbor.example.org"]), "Basic(robot$ci, <redacted>)");
    }

    #[test]
    fn errors_never_carry_a_secret() {
        let table = [
            (r#"{"auths": {"h.example.org": {"auth": "bm9jb2xvbg=="}}}"#, "the `auth` of `h.example.org`"),
            (r#"{"auths": {"h.example.org": {"password": 12345678}}}"#, "unexpected field type at line 1"),
            (r#"{"auths": {"h.example.org": {}}}"#, "has no credentials"),
            (r#"{"auths": "#, "unexpected end"),
        ];
        for (json, expected) in table {
            let message = parse(json).unwrap_err().to_string();
            assert!(message.contains(expected), "{json}: {message}");
            assert!(!message.contains("12345678") && !message.contains("bm9jb2xvbg"), "{message}");
        }
    }
}
