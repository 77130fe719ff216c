//! Blobs as a copy moves them (`sync`): a `HEAD` for whether a repository has one, a `GET`
//! whose body the caller streams (this module never reads it whole), and an upload: `POST
//! …/blobs/uploads/` (with `?mount=DIGEST&from=REPO` a cross-repository mount, which needs
//! no bytes), then one `PUT LOCATION?digest=DIGEST` carrying the whole blob, streamed, with
//! its length declared. The `PUT` is what commits: a body that fails on its way (the caller's
//! stream ends in an error when the digest does not match) leaves the upload uncommitted, and
//! [`cancel`] drops it.
//!
//! The upload location is the registry's answer: it is followed only on the registry's own
//! scheme, host and port, since every request here carries the mirror's credentials.

use std::sync::Mutex;

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Body, StatusCode, Url};

use super::error::CheckError;
use super::http::drain_capped;
use super::refused::{MAX_ERROR_BYTES, PushError, refused};
use super::session::{Access, Registries, Repo};

/// How an upload began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Started {
    /// The mount was made (201): the repository has the blob, nothing to send.
    Mounted,
    /// An upload session to `PUT` the blob to (the mount, if asked, was not made).
    Upload(Url),
}

/// `HEAD /v2/NAME/blobs/DIGEST`: whether the repository has the blob.
pub async fn exists(
    registries: &Registries,
    repo: &Repo<'_>,
    access: Access<'_>,
    digest: &str,
) -> Result<bool, CheckError> {
    let path = format!("/v2/{}/blobs/{digest}", repo.repository);
    let response = registries.send(repo, access, |client, base| client.head(format!("{base}{path}"))).await?;
    match response.status().as_u16() {
        200..=299 => Ok(true),
        404 => Ok(false),
        _ => Err(registries.status_error(repo, &response)),
    }
}

/// `GET /v2/NAME/blobs/DIGEST` (redirects to storage followed, never to plain http, the
/// credentials dropped when leaving the registry): the 2xx answer, whose body the caller
/// reads chunk by chunk. 404 is [`CheckError::Status`].
pub async fn open(registries: &Registries, repo: &Repo<'_>, digest: &str) -> Result<reqwest::Response, CheckError> {
    let path = format!("/v2/{}/blobs/{digest}", repo.repository);
    let response = registries.send(repo, Access::Pull, |client, base| client.get(format!("{base}{path}"))).await?;
    if response.status().is_success() { Ok(response) } else { Err(registries.status_error(repo, &response)) }
}

/// `POST /v2/NAME/blobs/uploads/`, with `mount` = `(DIGEST, FROM)` a cross-repository mount
/// from the repository `FROM` of the same registry.
pub async fn start(
    registries: &Registries,
    repo: &Repo<'_>,
    mount: Option<(&str, &str)>,
) -> Result<Started, PushError> {
    let path = match mount {
        Some((digest, from)) => format!("/v2/{}/blobs/uploads/?mount={digest}&from={from}", repo.repository),
        None => format!("/v2/{}/blobs/uploads/", repo.repository),
    };
    let access = Access::Push { mount_from: mount.map(|(_, from)| from) };
    let request =
        |client: &reqwest::Client, base: &str| client.post(format!("{base}{path}")).header(CONTENT_LENGTH, "0");
    let response = registries.send(repo, access, request).await?;
    match response.status() {
        StatusCode::CREATED if mount.is_some() => {
            drain_capped(response, MAX_ERROR_BYTES, "mount answer").await?;
            Ok(Started::Mounted)
        }
        StatusCode::ACCEPTED => {
            let location = response.headers().get(LOCATION).and_then(|value| value.to_str().ok());
            let location = location.ok_or(PushError::Location("the registry named none"))?;
            let url = response.url().join(location).map_err(|_| PushError::Location("not a URL"))?;
            check_location(registries, repo, &url)?;
            drain_capped(response, MAX_ERROR_BYTES, "upload answer").await?;
            Ok(Started::Upload(url))
        }
        _ => Err(refused(registries, repo, response).await),
    }
}

/// Whether `url` is on the registry's own host and port, over https (or plain http for an
/// `--insecure-registry`), holding no credentials of its own.
fn check_location(registries: &Registries, repo: &Repo<'_>, url: &Url) -> Result<(), PushError> {
    let default_port = match url.scheme() {
        "https" => 443,
        "http" if registries.is_insecure(&repo.registry) => 80,
        _ => return Err(PushError::Location("not https")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(PushError::Location("it holds credentials"));
    }
    let host = url.host_str().unwrap_or_default();
    let port = url.port().unwrap_or(default_port);
    let endpoint = repo.endpoint.to_ascii_lowercase();
    let (endpoint_host, endpoint_port) = match endpoint.rsplit_once(':').filter(|(_, port)| !port.contains(']')) {
        Some((host, port)) => (host.to_owned(), port.parse::<u16>().ok()),
        None => (endpoint.clone(), None),
    };
    if !host.eq_ignore_ascii_case(&endpoint_host) || port != endpoint_port.unwrap_or(default_port) {
        return Err(PushError::Location("another host than the registry's"));
    }
    Ok(())
}

/// `PUT UPLOAD?digest=DIGEST` with the blob as `body`, `size` bytes declared: the commit.
/// `body` is sent once; a request the registry makes repeat (a challenge) fails, and the
/// caller starts over with a fresh stream.
pub async fn finish(
    registries: &Registries,
    repo: &Repo<'_>,
    upload: &Url,
    digest: &str,
    size: u64,
    body: Body,
) -> Result<(), PushError> {
    let mut url = upload.clone();
    url.query_pairs_mut().append_pair("digest", digest);
    let body = Mutex::new(Some(body));
    let request = |client: &reqwest::Client, _: &str| {
        let taken = body.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let body = taken.unwrap_or_else(|| {
            let again = std::io::Error::other("the blob's stream was already sent once");
            Body::wrap_stream(futures::stream::once(async move { Err::<bytes::Bytes, _>(again) }))
        });
        client.put(url.clone()).header(CONTENT_TYPE, "application/octet-stream").header(CONTENT_LENGTH, size).body(body)
    };
    let response = registries.send(repo, Access::Push { mount_from: None }, request).await?;
    if response.status() != StatusCode::CREATED && !response.status().is_success() {
        return Err(refused(registries, repo, response).await);
    }
    drain_capped(response, MAX_ERROR_BYTES, "upload answer").await?;
    Ok(())
}

/// `DELETE UPLOAD`: drops an upload that will not be committed (best effort; registries
/// also expire them).
pub async fn cancel(registries: &Registries, repo: &Repo<'_>, upload: &Url) {
    let request = |client: &reqwest::Client, _: &str| client.delete(upload.clone());
    if let Ok(response) = registries.send(repo, Access::Push { mount_from: None }, request).await {
        let _ = drain_capped(response, MAX_ERROR_BYTES, "cancel answer").await;
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::registry::auth_file::AuthFile;
    use crate::registry::session::ClientSettings;

    #[test]
    fn upload_locations_stay_on_the_registry() {
        let settings = ClientSettings { insecure: vec!["plain.io:5000".into()], ..ClientSettings::default() };
        let registries = Registries::new(&settings, AuthFile::default(), true).unwrap();
        let repo = |endpoint: &'static str| Repo {
            registry: endpoint.to_owned(),
            endpoint: Cow::Borrowed(endpoint),
            repository: Cow::Borrowed("team/app"),
        };
        let table = [
            ("m.io", "https://m.io/v2/team/app/blobs/uploads/1?_state=x", true),
            ("m.io", "https://M.IO:443/v2/team/app/blobs/uploads/1", true),
            ("m.io:443", "https://m.io/v2/u", true),
            ("m.io:5000", "https://m.io:5000/v2/u", true),
            ("[::1]:5000", "https://[::1]:5000/v2/u", true),
            ("m.io", "http://m.io/v2/u", false),
            ("m.io", "https://evil.io/v2/u", false),
            ("m.io", "https://m.io:444/v2/u", false),
            ("m.io:5000", "https://m.io/v2/u", false),
            ("m.io", "https://user:pw@m.io/v2/u", false),
            ("plain.io:5000", "http://plain.io:5000/v2/u", true),
            ("plain.io:5000", "http://plain.io/v2/u", false),
        ];
        for (endpoint, location, ok) in table {
            let url = Url::parse(location).unwrap();
            assert_eq!(check_location(&registries, &repo(endpoint), &url).is_ok(), ok, "{endpoint} {location}");
        }
    }
}
