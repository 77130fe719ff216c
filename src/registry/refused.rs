//! Why a registry refused a write (a manifest or blob push, a mount): the status and the
//! registry's own error code from its JSON answer (`MANIFEST_BLOB_UNKNOWN`, `DIGEST_INVALID`,
//! `DENIED`), read up to [`MAX_ERROR_BYTES`]; or a request mirrorswap would not send (an upload
//! location on another host); or any [`CheckError`] of the request itself.

use reqwest::Response;

use super::error::CheckError;
use super::http::read_capped;
use super::session::{Registries, Repo};

/// The most of an error answer that is read for its code.
pub const MAX_ERROR_BYTES: usize = 16 * 1024;
/// The longest error code kept (the spec's are under 32 characters).
const MAX_CODE_LEN: usize = 64;

/// Why a write did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The request failed, or the answer is one [`Registries::status_error`] sorts (401, 403,
    /// 429, 5xx).
    #[error(transparent)]
    Check(#[from] CheckError),
    /// A 4xx answer with the registry's error code, when it gave one.
    #[error("HTTP {status}{}", .code.as_ref().map(|code| format!(" {code}")).unwrap_or_default())]
    Refused { status: u16, code: Option<String> },
    /// An upload location mirrorswap does not follow: another host would receive the mirror's
    /// credentials.
    #[error("upload location refused: {0}")]
    Location(&'static str),
}

impl PushError {
    /// The wrapped request failure, if that is what it is.
    pub fn check(&self) -> Option<&CheckError> {
        match self {
            Self::Check(error) => Some(error),
            _ => None,
        }
    }
}

/// The error of an answer that is not the write's success: 401, 403, 429 and 5xx as
/// [`Registries::status_error`] says them; another 4xx with the first error code of its body.
pub async fn refused(registries: &Registries, repo: &Repo<'_>, response: Response) -> PushError {
    let status = response.status().as_u16();
    if matches!(status, 401 | 403 | 429) || !(400..500).contains(&status) {
        return PushError::Check(registries.status_error(repo, &response));
    }
    let body = read_capped(response, MAX_ERROR_BYTES, "error answer").await.unwrap_or_default();
    PushError::Refused { status, code: error_code(&body) }
}

/// The first `errors[].code` of a distribution error body, when it is a plain word.
pub fn error_code(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: String,
    }
    let parsed: Errors = serde_json::from_slice(body).ok()?;
    let code = parsed.errors.into_iter().next()?.code;
    let plain = !code.is_empty()
        && code.len() <= MAX_CODE_LEN
        && code.bytes().all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_');
    plain.then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_only_when_plain() {
        let long = format!(r#"{{"errors":[{{"code":"{}"}}]}}"#, "A".repeat(65));
        let table: [(&[u8], Option<&str>); 5] = [
            (br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"x"}]}"#, Some("MANIFEST_BLOB_UNKNOWN")),
            (br#"{"errors":[{"code":"a\u001b[31m"}]}"#, None),
            (br#"{"errors":[]}"#, None),
            (b"<html>", None),
            (long.as_bytes(), None),
        ];
        for (body, code) in table {
            assert_eq!(error_code(body).as_deref(), code, "{}", String::from_utf8_lossy(body));
        }
        let error = PushError::Refused { status: 400, code: Some("DIGEST_INVALID".into()) };
        assert_eq!(error.to_string(), "HTTP 400 DIGEST_INVALID");
    }
}
