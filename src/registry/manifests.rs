//! Manifests as a copy reads and writes them (`sync`): a `HEAD` for the digest a tag or digest
//! names now, a `GET` of the bytes up to [`MAX_MANIFEST_BYTES`] with their digest checked
//! against the reference and the registry's `Docker-Content-Digest`, a `PUT` of bytes
//! unchanged, and the OCI 1.1 referrers list of a digest (`GET /v2/NAME/referrers/DIGEST`, the
//! same cap, a few pages at most). Every request goes through [`super::session`].
//!
//! Spoken here on the session layer rather than through `oci-client`, which the project
//! dropped: its auth flow sent credentials where this one does not, and it read answers
//! whole; every body read here has a cap, and every error says what happened.

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, LINK};
use reqwest::{Method, StatusCode, Url};

use super::client::{MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, Manifest, sha256};
use super::error::CheckError;
use super::http::{drain_capped, read_capped};
use super::refused::{PushError, refused};
use super::session::{Access, Registries, Repo};

/// The media type of an OCI image index (a referrers list is one).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Pages of a referrers list followed (`Link: <…>; rel="next"`).
pub const MAX_REFERRER_PAGES: usize = 8;

/// What a manifest `HEAD` told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// `Docker-Content-Digest`, when the registry sent a well-formed one (or, for a registry
    /// that refuses `HEAD`, the digest of the bytes a `GET` returned).
    pub digest: Option<String>,
}

/// A manifest written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// The registry answered `OCI-Subject`: it indexed the manifest's `subject` for the
    /// referrers API.
    pub subject_indexed: bool,
}

/// Whether `text` is `sha256:` and 64 lowercase hex digits, the only digests mirrorswap puts
/// into a path.
pub fn is_sha256(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn served_digest(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("docker-content-digest")?.to_str().ok()?.trim();
    is_sha256(value).then(|| value.to_owned())
}

/// `HEAD /v2/NAME/manifests/REFERENCE`; `None` on 404. A registry that refuses `HEAD` (405,
/// 501) is asked with a `GET`, read up to the cap.
pub async fn head(
    registries: &Registries,
    repo: &Repo<'_>,
    access: Access<'_>,
    reference: &str,
) -> Result<Option<Head>, CheckError> {
    let path = format!("/v2/{}/manifests/{reference}", repo.repository);
    let request = |client: &reqwest::Client, base: &str| {
        client.request(Method::HEAD, format!("{base}{path}")).header(ACCEPT, MANIFEST_ACCEPT)
    };
    let response = registries.send(repo, access, request).await?;
    match response.status().as_u16() {
        404 => Ok(None),
        200..=299 => Ok(Some(Head { digest: served_digest(response.headers()) })),
        405 | 501 => {
            Ok(get(registries, repo, access, reference).await?.map(|manifest| Head { digest: Some(manifest.digest) }))
        }
        _ => Err(registries.status_error(repo, &response)),
    }
}

/// `GET /v2/NAME/manifests/REFERENCE`, read whole up to [`MAX_MANIFEST_BYTES`]; `None` on 404.
/// The digest of the bytes must be the reference's, when it is a digest, and the registry's
/// `Docker-Content-Digest`, when it sent one.
pub async fn get(
    registries: &Registries,
    repo: &Repo<'_>,
    access: Access<'_>,
    reference: &str,
) -> Result<Option<Manifest>, CheckError> {
    let path = format!("/v2/{}/manifests/{reference}", repo.repository);
    let request =
        |client: &reqwest::Client, base: &str| client.get(format!("{base}{path}")).header(ACCEPT, MANIFEST_ACCEPT);
    let response = registries.send(repo, access, request).await?;
    match response.status() {
        StatusCode::NOT_FOUND => return Ok(None),
        status if status.is_success() => {}
        _ => return Err(registries.status_error(repo, &response)),
    }
    let media_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    let served = served_digest(response.headers());
    let bytes = read_capped(response, MAX_MANIFEST_BYTES, "manifest").await?;
    let digest = sha256(&bytes);
    let expected = if reference.starts_with("sha256:") { Some(reference.to_owned()) } else { served };
    if let Some(expected) = expected.filter(|expected| *expected != digest) {
        return Err(CheckError::DigestMismatch { expected, got: digest });
    }
    Ok(Some(Manifest { bytes, media_type, digest }))
}

/// `PUT /v2/NAME/manifests/REFERENCE` with `manifest`'s bytes unchanged and its media type.
pub async fn put(
    registries: &Registries,
    repo: &Repo<'_>,
    reference: &str,
    manifest: &Manifest,
) -> Result<Pushed, PushError> {
    let path = format!("/v2/{}/manifests/{reference}", repo.repository);
    let body = bytes::Bytes::from(manifest.bytes.clone());
    let media_type = if manifest.media_type.is_empty() { OCI_INDEX } else { manifest.media_type.as_str() };
    let request = |client: &reqwest::Client, base: &str| {
        client.put(format!("{base}{path}")).header(CONTENT_TYPE, media_type).body(body.clone())
    };
    let response = registries.send(repo, Access::Push { mount_from: None }, request).await?;
    if !response.status().is_success() {
        return Err(refused(registries, repo, response).await);
    }
    let subject_indexed = response.headers().contains_key("oci-subject");
    drain_capped(response, super::refused::MAX_ERROR_BYTES, "manifest answer").await?;
    Ok(Pushed { subject_indexed })
}

/// The referrers list of `digest` (`GET /v2/NAME/referrers/DIGEST`): each page's bytes, up
/// to [`MAX_REFERRER_PAGES`] pages of at most [`MAX_MANIFEST_BYTES`]; `None` when the
/// registry does not serve the API (404, or an answer that is not an OCI index). All pages
/// together at most `max_bytes` ([`CheckError::TooLarge`] past it, before more is read).
pub async fn referrers(
    registries: &Registries,
    repo: &Repo<'_>,
    digest: &str,
    max_bytes: usize,
) -> Result<Option<Vec<Vec<u8>>>, CheckError> {
    let mut pages: Vec<Vec<u8>> = Vec::new();
    let mut read = 0_usize;
    let mut next: Option<String> = None;
    for _ in 0..MAX_REFERRER_PAGES {
        let first = format!("/v2/{}/referrers/{digest}", repo.repository);
        let path = next.take().unwrap_or(first);
        let request =
            |client: &reqwest::Client, base: &str| client.get(format!("{base}{path}")).header(ACCEPT, OCI_INDEX);
        let response = registries.send(repo, Access::Pull, request).await?;
        match response.status() {
            StatusCode::NOT_FOUND if pages.is_empty() => return Ok(None),
            status if status.is_success() => {}
            _ => return Err(registries.status_error(repo, &response)),
        }
        let is_index = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with(OCI_INDEX));
        next = next_page(response.headers(), response.url(), &repo.repository);
        let left = max_bytes.saturating_sub(read);
        let bytes = if left < MAX_MANIFEST_BYTES {
            read_capped(response, left, "referrers list").await.map_err(|error| match error {
                CheckError::TooLarge { what, .. } => CheckError::TooLarge { what, limit: max_bytes },
                other => other,
            })?
        } else {
            read_capped(response, MAX_MANIFEST_BYTES, "referrers list").await?
        };
        read = read.saturating_add(bytes.len());
        if !is_index {
            // A registry that answers any path with a page of its own: no referrers API.
            return Ok((!pages.is_empty()).then_some(pages));
        }
        pages.push(bytes);
        if next.is_none() {
            break;
        }
    }
    Ok(Some(pages))
}

/// The path and query of a `Link: <…>; rel="next"` header, when it stays on the same origin
/// and under the same repository's referrers.
fn next_page(headers: &HeaderMap, at: &Url, repository: &str) -> Option<String> {
    next_under(headers, at, &format!("/v2/{repository}/referrers/"))
}

/// The path and query of a `Link: <…>; rel="next"` header, when it stays on the same origin
/// and its path starts with `prefix`.
pub(super) fn next_under(headers: &HeaderMap, at: &Url, prefix: &str) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    let (target, params) = link.split_once(';')?;
    if !params.replace(' ', "").contains("rel=\"next\"") {
        return None;
    }
    let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    let url = at.join(target).ok()?;
    let same_origin = url.scheme() == at.scheme() && url.host_str() == at.host_str() && url.port() == at.port();
    let path = url.path();
    (same_origin && path.starts_with(prefix))
        .then(|| url.query().map_or_else(|| path.to_owned(), |query| format!("{path}?{query}")))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn only_well_formed_sha256_digests_are_taken() {
        let hex = "0123456789abcdef".repeat(4);
        let table = [
            (format!("sha256:{hex}"), true),
            (format!("sha256:{}", hex.to_uppercase()), false),
            (format!("sha512:{hex}"), false),
            (format!("sha256:{hex}0"), false),
            (format!("sha256:../../{}", &hex[6..]), false),
            (String::new(), false),
        ];
        for (text, ok) in table {
            assert_eq!(is_sha256(&text), ok, "{text}");
        }
    }

    #[test]
    fn referrer_pages_stay_on_the_registry_and_repository() {
        let at = Url::parse("https://m.io:5000/v2/team/app/referrers/sha256:aa").unwrap();
        let link = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(LINK, HeaderValue::from_str(value).unwrap());
            headers
        };
        let table = [
            (
                r#"</v2/team/app/referrers/sha256:aa?n=2&last=x>; rel="next""#,
                Some("/v2/team/app/referrers/sha256:aa?n=2&last=x"),
            ),
            (
                r#"<https://m.io:5000/v2/team/app/referrers/sha256:aa?n=3>; rel="next""#,
                Some("/v2/team/app/referrers/sha256:aa?n=3"),
            ),
            (r#"<https://evil.io/v2/team/app/referrers/sha256:aa>; rel="next""#, None),
            (r#"</v2/other/referrers/sha256:aa>; rel="next""#, None),
            (r#"</v2/team/app/referrers/sha256:aa?n=2>; rel="prev""#, None),
        ];
        for (value, expected) in table {
            assert_eq!(next_page(&link(value), &at, "team/app").as_deref(), expected, "{value}");
        }
    }
}
