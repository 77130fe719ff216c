//! Registry authentication as the distribution spec has it: the `WWW-Authenticate`
//! challenge of a 401 (parsed by `http-auth`), basic credentials, or a bearer token from the
//! challenge's realm. Credentials are sent only to a realm that keeps them encrypted: an
//! `https` realm, or any realm of a registry the operator listed in `--insecure-registry`.
//! The token service's answer is read up to [`MAX_TOKEN_BYTES`], a token kept only up to
//! [`MAX_TOKEN_LEN`]; tokens are cached per registry and repository for their lifetime, at
//! most [`MAX_TOKEN_LIFETIME`], and [`MAX_CACHED_TOKEN_BYTES`] in all.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::error::CheckError;

/// The most of a token service's answer that is read (tokens are a few KiB).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// The longest token kept (Docker Hub's, GHCR's, ECR's and Harbor's are 1–4 KiB): the cache
/// holds at most [`MAX_CACHED_TOKEN_BYTES`] of them.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The bytes of tokens cached at once.
pub const MAX_CACHED_TOKEN_BYTES: u64 = 4 * 1024 * 1024;
/// Tokens are reused at most this long, whatever their `expires_in` says.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// The longest realm URL accepted.
const MAX_REALM_LEN: usize = 2048;

/// How a registry asked to be authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`: the credentials on every request.
    Basic,
    /// `Bearer realm=…,service=…`: a token from `realm`.
    Bearer { realm: String, service: Option<String> },
}

/// The challenge of a 401's `WWW-Authenticate` headers: a bearer challenge if there is one,
/// else basic; `None` when neither is there or none parses.
pub fn challenge(headers: &HeaderMap) -> Option<Challenge> {
    let mut basic = false;
    for value in headers.get_all(WWW_AUTHENTICATE) {
        let Ok(text) = value.to_str() else { continue };
        for parsed in http_auth::parser::ChallengeParser::new(text).flatten() {
            if parsed.scheme.eq_ignore_ascii_case("bearer") {
                let param = |name: &str| {
                    parsed.params.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_unescaped())
                };
                if let Some(realm) = param("realm") {
                    return Some(Challenge::Bearer { realm, service: param("service") });
                }
            } else if parsed.scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

/// The realm as a URL mirrorswap may send credentials to: `https`, or `http` only when
/// `plain_allowed` (the registry is in `--insecure-registry`).
pub fn realm_url(realm: &str, plain_allowed: bool) -> Result<Url, CheckError> {
    let refuse = |why: &'static str| CheckError::Realm { realm: shorten(realm), why };
    if realm.len() > MAX_REALM_LEN {
        return Err(refuse("longer than 2048 bytes"));
    }
    let url = Url::parse(realm).map_err(|_| refuse("not a URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if plain_allowed => {}
        "http" => {
            return Err(refuse(
                "plain http would carry the credentials in clear text; the registry must name an https realm \
                 (or be listed in --insecure-registry)",
            ));
        }
        _ => return Err(refuse("neither https nor http")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("it holds credentials of its own"));
    }
    Ok(url)
}

/// The basic `Authorization` header of a login, marked sensitive.
pub fn basic(username: &str, password: &str) -> Option<HeaderValue> {
    let mut value =
        HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(format!("{username}:{password}")))).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// A token service's answer, read: the bearer header and until when it may be used.
#[derive(Clone, Debug)]
pub struct Token {
    pub header: HeaderValue,
    pub until: Instant,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// Reads a token service's JSON answer (`token` or `access_token`, `expires_in` seconds,
/// 60 when absent as the spec says).
pub fn parse_token(body: &[u8], now: Instant) -> Result<Token, CheckError> {
    let answer: TokenAnswer =
        serde_json::from_slice(body).map_err(|_| CheckError::Token("the answer is not the token JSON".into()))?;
    let token = answer
        .token
        .filter(|token| !token.is_empty())
        .or(answer.access_token.filter(|token| !token.is_empty()))
        .ok_or_else(|| CheckError::Token("the answer holds no token".into()))?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(CheckError::Token(format!("the token is longer than {MAX_TOKEN_LEN} bytes")));
    }
    let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| CheckError::Token("the token holds characters a header cannot".into()))?;
    header.set_sensitive(true);
    let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).clamp(0, 3600).unsigned_abs());
    // Renewed a little before it expires: a check must not be refused for a token that
    // expired on its way.
    let lifetime = lifetime.min(MAX_TOKEN_LIFETIME).mul_f64(0.9);
    Ok(Token { header, until: now + lifetime })
}

/// What a token service's status means, when it is not 200 (`retry_after` from a 429).
pub fn token_status(
    status: StatusCode,
    with_credentials: bool,
    registry: &str,
    retry_after: Option<Duration>,
) -> CheckError {
    match status.as_u16() {
        401 | 403 if with_credentials => CheckError::CredentialsRejected { registry: registry.to_owned() },
        401 | 403 => CheckError::NoCredentials { registry: registry.to_owned() },
        429 => CheckError::RateLimited { retry_after },
        code @ 500.. => CheckError::Status(code),
        code => CheckError::Token(format!("the token service answered {code}")),
    }
}

/// At most ~200 characters of a value for a message.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(WWW_AUTHENTICATE, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn challenges_prefer_bearer() {
        let table: [(&[&str], Option<Challenge>); 6] = [
            (&[r#"Basic realm="r""#], Some(Challenge::Basic)),
            (
                &[r#"Bearer realm="https://a.io/token",service="reg""#],
                Some(Challenge::Bearer { realm: "https://a.io/token".into(), service: Some("reg".into()) }),
            ),
            (
                &[r#"Basic realm="r""#, r#"Bearer realm="https://a.io/t""#],
                Some(Challenge::Bearer { realm: "https://a.io/t".into(), service: None }),
            ),
            (&[r#"Bearer service="no realm""#], None),
            (&["Negotiate"], None),
            (&["\"broken"], None),
        ];
        for (values, expected) in table {
            assert_eq!(challenge(&headers(values)), expected, "{values:?}");
        }
    }

    #[test]
    fn realms_that_would_leak_credentials_are_refused() {
        assert!(realm_url("https://auth.example.org/token", false).is_ok());
        assert!(realm_url("http://auth.example.org/token", true).is_ok());
        for (realm, plain_allowed) in [
            ("http://auth.example.org/token", false),
            ("ftp://auth.example.org/token", true),
            ("https://user:pass@auth.example.org/token", false),
            ("/relative", false),
        ] {
            let error = realm_url(realm, plain_allowed).unwrap_err();
            assert!(matches!(error, CheckError::Realm { .. }), "{realm}: {error}");
        }
        let long = format!("http://a.io/{}", "x".repeat(4000));
        assert!(realm_url(&long, false).unwrap_err().to_string().len() < 400);
    }

    #[test]
    fn token_answers() {
        let now = Instant::now();
        let token = parse_token(br#"{"token":"abc","expires_in":120}"#, now).unwrap();
        assert_eq!(token.header.to_str().unwrap(), "Bearer abc");
        assert_eq!(token.until, now + Duration::from_secs(108));
        let token = parse_token(br#"{"access_token":"x","expires_in":999999}"#, now).unwrap();
        assert_eq!(token.until, now + MAX_TOKEN_LIFETIME.mul_f64(0.9));
        let long = format!(r#"{{"token":"{}"}}"#, "t".repeat(MAX_TOKEN_LEN + 1));
        for bad in [&b"{}"[..], b"not json", br#"{"token":"a\nb"}"#, br#"{"token":""}"#, long.as_bytes()] {
            assert!(matches!(parse_token(bad, now), Err(CheckError::Token(_))), "{}", String::from_utf8_lossy(bad));
        }
    }
}
