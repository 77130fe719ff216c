//! Images as a copy names them: the registry and repository (through the session layer's
//! parser, `library/` written out for Docker Hub's official images), the tag and the digest,
//! each checked before it goes into a request path (digests: `sha256:` and 64 lowercase hex
//! digits only). And the tags a copy adds: the anchor `sha256-HEX` that keeps a digest-only
//! copy from untagged-manifest cleanup, and the cosign scheme's `sha256-HEX.sig|.att|.sbom`.

use crate::registry::manifests::is_sha256;
use crate::registry::session::{ImageRef, Repo};
use crate::rewrite::reference;

use super::error::SyncError;

/// An image at a registry.
#[derive(Clone, Debug)]
pub struct Image {
    /// As written.
    pub written: String,
    /// Its repository, owned.
    pub repo: Repo<'static>,
    /// The tag, when it names one.
    pub tag: Option<String>,
    /// The digest, when it names one.
    pub digest: Option<String>,
}

impl Image {
    /// Parses `image` as the engine does; a digest must be a sha256 one.
    pub fn parse(image: &str) -> Result<Self, SyncError> {
        let invalid = |why: &str| SyncError::Refused(format!("{}: {why}", crate::rewrite::excerpt(image)));
        let parsed = ImageRef::parse(image).map_err(|error| invalid(&error.to_string()))?;
        let suffix = reference::parse(image).map_err(|error| invalid(error.reason()))?.suffix;
        let (tag, digest) = match suffix.rsplit_once('@') {
            Some((tag, digest)) => (tag.strip_prefix(':'), Some(digest)),
            None => (suffix.strip_prefix(':'), None),
        };
        if let Some(digest) = digest.filter(|digest| !is_sha256(digest)) {
            return Err(invalid(&format!("only sha256 digests are copied, not `{}`", crate::rewrite::excerpt(digest))));
        }
        let repo = Repo {
            registry: parsed.repo.registry.clone(),
            endpoint: parsed.repo.endpoint.clone().into_owned().into(),
            repository: parsed.repo.repository.clone().into_owned().into(),
        };
        let tag = match (tag, digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self { written: image.to_owned(), repo, tag, digest: digest.map(str::to_owned) })
    }

    /// What a pull asks for: the digest when there is one, else the tag.
    pub fn reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// `host[:port]`.
    pub fn host(&self) -> &str {
        &self.repo.registry
    }

    /// The repository's name at its registry.
    pub fn repository(&self) -> &str {
        &self.repo.repository
    }
}

/// The anchor tag of a digest-only copy: `sha256-HEX`.
pub fn anchor_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The cosign tag scheme's tags of `digest`: its signatures, attestations and SBOM.
pub fn cosign_tags(digest: &str) -> [String; 3] {
    let anchor = anchor_tag(digest);
    [format!("{anchor}.sig"), format!("{anchor}.att"), format!("{anchor}.sbom")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_name_repository_tag_and_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let pinned = format!("m.io:5000/team/app:1@{digest}");
        let by_digest = format!("nginx@{digest}");
        // (image, registry, repository, tag, digest, reference)
        type Row<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>, &'a str);
        let table: [Row; 4] = [
            ("nginx", "docker.io", "library/nginx", Some("latest"), None, "latest"),
            ("quay.io/a/b:2", "quay.io", "a/b", Some("2"), None, "2"),
            (&pinned, "m.io:5000", "team/app", Some("1"), Some(&digest), &digest),
            (&by_digest, "docker.io", "library/nginx", None, Some(&digest), &digest),
        ];
        for (text, registry, repository, tag, digest, reference) in table {
            let image = Image::parse(text).unwrap();
            assert_eq!(
                (image.host(), image.repository(), image.tag.as_deref(), image.digest.as_deref(), image.reference()),
                (registry, repository, tag, digest, reference),
                "{text}"
            );
        }
        let sha512 = format!("m.io/a@sha512:{}", "ab".repeat(64));
        for bad in ["Not An Image", sha512.as_str()] {
            assert!(matches!(Image::parse(bad), Err(SyncError::Refused(_))), "{bad}");
        }
        assert_eq!(anchor_tag(&digest), format!("sha256-{}", "ab".repeat(32)));
        assert_eq!(cosign_tags(&digest)[0], format!("sha256-{}.sig", "ab".repeat(32)));
    }
}
