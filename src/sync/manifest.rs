//! What a copy reads in a manifest or index, which it otherwise pushes byte for byte: the
//! descriptors it points at (an index's manifests; an image's config and layers), its
//! `subject`, and the platforms of an index's entries. Every digest must be a sha256 one (it
//! goes into request paths), entries are bounded ([`MAX_ENTRIES`]), and Docker's schema 1 is
//! refused. `--platform` makes a new index holding only the entries asked for: its digest is
//! not the source's.

use serde::Deserialize;

use super::error::SyncError;
use crate::registry::manifests::is_sha256;

/// The most entries (an index's manifests, an image's layers) one manifest may hold.
pub const MAX_ENTRIES: usize = 4096;
/// The OCI index media type, given to an index that names none.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI manifest media type, given to a manifest that names none.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A pointer to a blob or manifest.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// Where a non-distributable (foreign) layer is fetched from instead of the registry.
    #[serde(default)]
    pub urls: Vec<String>,
}

impl Descriptor {
    /// A Windows foreign layer (or an OCI non-distributable one): not in any registry, not
    /// copied, as `docker push` and skopeo leave it.
    pub fn non_distributable(&self) -> bool {
        !self.urls.is_empty() && (self.media_type.contains("foreign") || self.media_type.contains("nondistributable"))
    }
}

/// The platform of an index entry, or one `--platform` asks for.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        let valid =
            |part: &&str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if parts.iter().all(valid) => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: parts.get(2).map(|variant| (*variant).to_owned()),
            }),
            _ => Err(format!("`{}`: expected OS/ARCH[/VARIANT], such as linux/amd64", crate::rewrite::excerpt(text))),
        }
    }

    /// Whether an entry of `platform` is what `self` asks for (no variant asked: any).
    pub fn matches(&self, platform: &Platform) -> bool {
        self.os == platform.os
            && self.architecture == platform.architecture
            && (self.variant.is_none() || self.variant == platform.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

/// What a manifest points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An index (or Docker manifest list): its manifests.
    Index(Vec<Descriptor>),
    /// An image or artifact manifest: its config and layers, the blobs to copy.
    Image(Vec<Descriptor>),
}

/// A manifest, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub kind: Kind,
    /// The manifest this one refers to (OCI 1.1), if any.
    pub subject: Option<Descriptor>,
    /// Its media type: the `mediaType` it names, else the one it was served as, else OCI's.
    pub media_type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    blobs: Option<Vec<Descriptor>>,
    #[serde(default)]
    subject: Option<Descriptor>,
}

/// Reads the manifest `bytes` of digest `digest`, served as `served` (its `Content-Type`).
pub fn parse(bytes: &[u8], digest: &str, served: &str) -> Result<Parsed, SyncError> {
    let fail = |why: String| SyncError::Manifest { digest: digest.to_owned(), why };
    let raw: Raw = serde_json::from_slice(bytes).map_err(|error| fail(format!("not a manifest: {error}")))?;
    if raw.schema_version != Some(2) {
        return Err(fail("only schemaVersion 2 manifests are copied (not Docker's schema 1)".into()));
    }
    let named = raw.media_type.filter(|media_type| !media_type.is_empty());
    let (kind, inferred) = match (raw.manifests, raw.config) {
        (Some(manifests), None) => (Kind::Index(manifests), OCI_INDEX),
        (None, Some(config)) => {
            let mut blobs = vec![config];
            blobs.extend(raw.layers.unwrap_or_default());
            blobs.extend(raw.blobs.unwrap_or_default());
            (Kind::Image(blobs), OCI_MANIFEST)
        }
        _ => return Err(fail("neither an index (manifests) nor an image manifest (config)".into())),
    };
    let entries = match &kind {
        Kind::Index(entries) | Kind::Image(entries) => entries,
    };
    if entries.len() > MAX_ENTRIES {
        return Err(fail(format!("{} entries, more than the {MAX_ENTRIES} mirrorswap copies", entries.len())));
    }
    if let Some(bad) = entries.iter().chain(&raw.subject).find(|entry| !is_sha256(&entry.digest)) {
        return Err(fail(format!(
            "an entry's digest `{}` is not a sha256 digest",
            crate::rewrite::excerpt(&bad.digest)
        )));
    }
    let media_type = named.or_else(|| Some(served.to_owned()).filter(|served| !served.is_empty()));
    Ok(Parsed { kind, subject: raw.subject, media_type: media_type.unwrap_or_else(|| inferred.to_owned()) })
}

/// The index `bytes` with only the entries of `platforms`, compactly re-serialized, and how
/// many it keeps. An entry with no platform (an attestation) is dropped with the rest.
pub fn only_platforms(bytes: &[u8], platforms: &[Platform]) -> Result<(Vec<u8>, usize), String> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
    let entries = value.get_mut("manifests").and_then(serde_json::Value::as_array_mut).ok_or("not an index")?;
    entries.retain(|entry| {
        let platform = entry.get("platform").and_then(|platform| Platform::deserialize(platform).ok());
        platform.is_some_and(|platform| platforms.iter().any(|wanted| wanted.matches(&platform)))
    });
    let kept = entries.len();
    Ok((serde_json::to_vec(&value).map_err(|error| error.to_string())?, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: char) -> String {
        format!("sha256:{}", byte.to_string().repeat(64))
    }

    fn index() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":10,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":11,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":12,"platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#,
            digest('a'),
            digest('b'),
            digest('c')
        )
    }

    #[test]
    fn manifests_name_what_they_point_at() {
        let parsed = parse(index().as_bytes(), "sha256:x", "").unwrap();
        assert!(matches!(&parsed.kind, Kind::Index(entries) if entries.len() == 3));
        assert_eq!(parsed.media_type, OCI_INDEX);
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":2}},"layers":[{{"digest":"{}","size":3}}],"subject":{{"digest":"{}","size":4}}}}"#,
            digest('d'),
            digest('e'),
            digest('f')
        );
        let parsed =
            parse(image.as_bytes(), "sha256:x", "application/vnd.docker.distribution.manifest.v2+json").unwrap();
        assert_eq!(parsed.media_type, "application/vnd.docker.distribution.manifest.v2+json", "as served");
        assert!(matches!(&parsed.kind, Kind::Image(blobs) if blobs.len() == 2 && blobs[1].digest == digest('e')));
        assert_eq!(parsed.subject.map(|subject| subject.digest), Some(digest('f')));
        let bad_digest = r#"{"schemaVersion":2,"config":{"digest":"sha256:../../x","size":2}}"#.to_owned();
        let many = format!(
            r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
            vec![format!(r#"{{"digest":"{}","size":1}}"#, digest('a')); MAX_ENTRIES + 1].join(",")
        );
        for (bytes, why) in [
            (r#"{"schemaVersion":1,"fsLayers":[]}"#.to_owned(), "schema 1"),
            (r#"{"schemaVersion":2}"#.to_owned(), "neither"),
            ("\"text\"".to_owned(), "not a manifest"),
            (bad_digest, "not a sha256 digest"),
            (many, "more than the 4096"),
        ] {
            let error = parse(bytes.as_bytes(), "sha256:x", "").unwrap_err().to_string();
            assert!(error.starts_with("manifest sha256:x: ") && error.contains(why), "{error}");
        }
    }

    #[test]
    fn platforms_pick_index_entries() {
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let (bytes, kept) = only_platforms(index().as_bytes(), std::slice::from_ref(&amd64)).unwrap();
        assert_eq!(kept, 1);
        let parsed = parse(&bytes, "sha256:x", "").unwrap();
        assert!(matches!(&parsed.kind, Kind::Index(entries) if entries[0].digest == digest('a')));
        assert_eq!(only_platforms(index().as_bytes(), &[amd64, arm64]).unwrap().1, 2, "any variant of arm64");
        assert_eq!(only_platforms(index().as_bytes(), &[Platform::parse("linux/arm64/v7").unwrap()]).unwrap().1, 0);
        for bad in ["linux", "linux/", "a/b/c/d", "linux/amd 64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Platform::parse("linux/arm64/v8").unwrap().to_string(), "linux/arm64/v8");
    }
}
