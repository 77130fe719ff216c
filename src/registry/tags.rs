//! A repository's tags (`GET /v2/NAME/tags/list`), for a copy that looks for the cosign tags
//! of its manifests (`sha256-HEX.sig`, `.att`, `.sbom`): one list per repository instead of
//! three `HEAD`s per manifest. Pages followed through `Link: <…>; rel="next"` on the same
//! origin and repository, at most [`MAX_TAG_PAGES`] of at most [`MAX_MANIFEST_BYTES`] each;
//! a longer list is `None`, as is a repository the registry does not know: the caller then
//! asks for each tag.

use reqwest::StatusCode;
use serde::Deserialize;

use super::client::MAX_MANIFEST_BYTES;
use super::error::CheckError;
use super::http::read_capped;
use super::manifests::next_under;
use super::session::{Access, Registries, Repo};

/// Pages of a tag list followed.
pub const MAX_TAG_PAGES: usize = 16;

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The tags of `repo`; `None` when the registry has no list of it (404) or it is longer than
/// the pages followed.
pub async fn list(registries: &Registries, repo: &Repo<'_>) -> Result<Option<Vec<String>>, CheckError> {
    let prefix = format!("/v2/{}/tags/list", repo.repository);
    let mut tags = Vec::new();
    let mut next = Some(format!("{prefix}?n=1000"));
    for _ in 0..MAX_TAG_PAGES {
        let Some(path) = next.take() else { return Ok(Some(tags)) };
        let request = |client: &reqwest::Client, base: &str| client.get(format!("{base}{path}"));
        let response = registries.send(repo, Access::Pull, request).await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            status if status.is_success() => {}
            _ => return Err(registries.status_error(repo, &response)),
        }
        next = next_under(response.headers(), response.url(), &prefix);
        let bytes = read_capped(response, MAX_MANIFEST_BYTES, "tag list").await?;
        let Ok(page) = serde_json::from_slice::<Page>(&bytes) else { return Ok(None) };
        tags.extend(page.tags.unwrap_or_default());
    }
    Ok(next.is_none().then_some(tags))
}
