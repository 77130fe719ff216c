//! Platforms (`os/arch[/variant]`): the ones `--require-platforms` names, and the ones an
//! image covers, read from its index (each entry's `platform`) or, for a single manifest, from
//! its config blob (`os`, `architecture`, `variant`).
//!
//! Both sides are normalized as containerd normalizes them before it picks a manifest for a
//! node: `aarch64` is `arm64`, `x86_64` is `amd64`, `arm64/v8` is `arm64` and `amd64/v1` is
//! `amd64`, a bare `arm` is `arm/v7`. A required platform is covered by an entry equal to it
//! after that. An index's entries without a platform, or `unknown/unknown` (buildx's
//! attestations), cover nothing.
//!
//! What a registry serves is read as data, bounded: the manifest is capped by the reader
//! (4 MiB), at most [`MAX_PLATFORMS`] distinct platforms are kept, and a field that is not a
//! short lowercase name (`[a-z0-9._-]`, at most [`MAX_FIELD_LEN`] bytes) makes its entry cover
//! nothing, so nothing a registry writes reaches a message or a log unchecked.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

/// The most distinct platforms kept of one index.
pub const MAX_PLATFORMS: usize = 64;
/// The longest `os`, `architecture` or `variant` accepted.
pub const MAX_FIELD_LEN: usize = 32;
/// The most platforms `--require-platforms` may name.
pub const MAX_REQUIRED: usize = 16;

/// One platform, normalized.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    os: Box<str>,
    architecture: Box<str>,
    variant: Option<Box<str>>,
}

/// The platforms an image covers (cheap to clone: shared).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platforms(Arc<[Platform]>);

impl Platform {
    /// `os/arch[/variant]` as a flag gives it (`linux/arm64`, `linux/arm/v7`), normalized.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        let (os, architecture, variant) = match parts[..] {
            [os, architecture] => (os, architecture, None),
            [os, architecture, variant] => (os, architecture, Some(variant)),
            _ => return Err(format!("`{text}`: expected OS/ARCH or OS/ARCH/VARIANT, such as linux/arm64")),
        };
        Self::new(os, architecture, variant)
            .ok_or_else(|| format!("`{text}`: each part is a short lowercase name ([a-z0-9._-], at most 32 bytes)"))
    }

    /// A platform from its fields as an index or a config names them; `None` when a field is
    /// not a short name.
    fn new(os: &str, architecture: &str, variant: Option<&str>) -> Option<Self> {
        let name = |field: &str| -> Option<String> {
            let field = field.to_ascii_lowercase();
            let fine = !field.is_empty()
                && field.len() <= MAX_FIELD_LEN
                && field.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
            fine.then_some(field)
        };
        let os = name(os)?;
        let mut architecture = name(architecture)?;
        let mut variant = match variant.filter(|variant| !variant.is_empty()) {
            Some(variant) => Some(name(variant)?),
            None => None,
        };
        match architecture.as_str() {
            "x86_64" | "x86-64" => architecture = "amd64".to_owned(),
            "aarch64" => architecture = "arm64".to_owned(),
            "i386" => architecture = "386".to_owned(),
            "armhf" => (architecture, variant) = ("arm".to_owned(), Some("v7".to_owned())),
            "armel" => (architecture, variant) = ("arm".to_owned(), Some("v6".to_owned())),
            _ => {}
        }
        match (architecture.as_str(), variant.as_deref()) {
            ("arm64", Some("v8" | "8")) | ("amd64", Some("v1")) => variant = None,
            ("arm", None) => variant = Some("v7".to_owned()),
            ("arm", Some(number)) if number.len() == 1 && number.as_bytes()[0].is_ascii_digit() => {
                variant = Some(format!("v{number}"));
            }
            _ => {}
        }
        Some(Self { os: os.into(), architecture: architecture.into(), variant: variant.map(Into::into) })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(variant) => write!(formatter, "/{variant}"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Platform {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

impl Platforms {
    /// Whether one of them is `wanted`.
    pub fn covers(&self, wanted: &Platform) -> bool {
        self.0.iter().any(|platform| platform == wanted)
    }

    /// The first of `required` not covered, if any.
    pub fn first_missing<'p>(&self, required: &'p [Platform]) -> Option<&'p Platform> {
        required.iter().find(|wanted| !self.covers(wanted))
    }

    /// The platforms, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Platform> {
        self.0.iter()
    }

    /// Each as `os/arch[/variant]`, sorted.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(Platform::to_string).collect()
    }

    fn collect(platforms: impl IntoIterator<Item = Platform>) -> Self {
        let mut list: Vec<Platform> = Vec::new();
        for platform in platforms {
            if list.len() >= MAX_PLATFORMS {
                break;
            }
            if !list.contains(&platform) {
                list.push(platform);
            }
        }
        list.sort();
        Self(list.into())
    }
}

/// What a manifest's JSON says that matters here.
#[derive(Debug, PartialEq, Eq)]
pub enum Shape {
    /// An index (or Docker manifest list), with the platforms its entries cover.
    Index(Platforms),
    /// An image manifest whose config blob (digest, size) holds its platform.
    Image { config: String, size: u64 },
    /// An image manifest whose config is not an image's (an artifact): it covers no platform.
    Artifact,
}

/// Config media types that hold `os` and `architecture`.
const IMAGE_CONFIGS: [&str; 2] =
    ["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    manifests: Option<Vec<Entry>>,
    #[serde(default)]
    config: Option<Descriptor>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    platform: Option<Fields>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Deserialize)]
struct Fields {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
}

impl Fields {
    fn platform(&self) -> Option<Platform> {
        let (os, architecture) = (self.os.as_deref()?, self.architecture.as_deref()?);
        if os == "unknown" || architecture == "unknown" {
            return None;
        }
        Platform::new(os, architecture, self.variant.as_deref())
    }
}

/// The shape of the manifest or index `bytes`; the error says why it is neither.
pub fn shape(bytes: &[u8]) -> Result<Shape, String> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|error| json_error("the manifest", &error))?;
    if let Some(entries) = manifest.manifests {
        let platforms = entries.iter().filter_map(|entry| entry.platform.as_ref()?.platform());
        return Ok(Shape::Index(Platforms::collect(platforms)));
    }
    let Some(config) = manifest.config else {
        return Err("the manifest is neither an index nor an image manifest".to_owned());
    };
    if !config.media_type.as_deref().is_some_and(|media_type| IMAGE_CONFIGS.contains(&media_type)) {
        return Ok(Shape::Artifact);
    }
    match (config.digest, config.size) {
        (Some(digest), Some(size)) => Ok(Shape::Image { config: digest, size }),
        _ => Err("the manifest's config names no digest and size".to_owned()),
    }
}

/// The platform an image config blob names (none when its fields are missing or not names).
pub fn of_config(bytes: &[u8]) -> Result<Platforms, String> {
    let fields: Fields = serde_json::from_slice(bytes).map_err(|error| json_error("the image config", &error))?;
    Ok(Platforms::collect(fields.platform()))
}

/// Why `what` did not parse, without quoting it (serde's message may quote the registry's text).
fn json_error(what: &str, error: &serde_json::Error) -> String {
    format!("{what} is not the JSON it should be (line {}, column {})", error.line(), error.column())
}

/// Platforms as they are, for tests and for a single image's config.
impl FromIterator<Platform> for Platforms {
    fn from_iter<I: IntoIterator<Item = Platform>>(iter: I) -> Self {
        Self::collect(iter)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn platform(text: &str) -> Platform {
        Platform::parse(text).unwrap()
    }

    #[test]
    fn flags_parse_and_normalize_as_containerd_does() {
        // (flag, normalized, or "" when refused)
        let table = [
            ("linux/amd64", "linux/amd64"),
            (" linux/arm64 ", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/aarch64", "linux/arm64"),
            ("Linux/X86_64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/armhf", "linux/arm/v7"),
            ("windows/amd64", "windows/amd64"),
            ("linux", ""),
            ("linux/", ""),
            ("linux/arm64/v8/x", ""),
            ("linux/arm 64", ""),
            ("linux/\u{1b}[31m", ""),
            ("linux/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", ""),
        ];
        for (text, normalized) in table {
            match Platform::parse(text) {
                Ok(parsed) => assert_eq!(parsed.to_string(), normalized, "{text}"),
                Err(error) => assert!(normalized.is_empty() && error.contains(text), "{text}: {error}"),
            }
        }
    }

    #[test]
    fn an_index_covers_the_platforms_of_its_entries() {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": "sha256:b", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"digest": "sha256:c", "platform": {"os": "unknown", "architecture": "unknown"}},
                {"digest": "sha256:d", "platform": {"os": "linux", "architecture": "evil\u{1b}[31m"}},
                {"digest": "sha256:e"},
                {"digest": "sha256:f", "platform": {"os": "linux", "architecture": "amd64"}},
            ],
        });
        let Ok(Shape::Index(platforms)) = shape(index.to_string().as_bytes()) else { panic!("an index") };
        assert_eq!(platforms.names(), ["linux/amd64", "linux/arm64"]);
        // (required, first missing)
        let table: [(&[&str], Option<&str>); 4] = [
            (&["linux/amd64", "linux/arm64"], None),
            (&["linux/arm64/v8"], None),
            (&["linux/amd64", "linux/arm/v7", "linux/s390x"], Some("linux/arm/v7")),
            (&[], None),
        ];
        for (required, missing) in table {
            let required: Vec<Platform> = required.iter().map(|text| platform(text)).collect();
            assert_eq!(platforms.first_missing(&required).map(Platform::to_string).as_deref(), missing, "{required:?}");
        }
    }

    #[test]
    fn a_single_manifest_points_at_its_config_and_the_config_names_the_platform() {
        let manifest = json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:c", "size": 12},
            "layers": [],
        });
        assert_eq!(
            shape(manifest.to_string().as_bytes()),
            Ok(Shape::Image { config: "sha256:c".to_owned(), size: 12 })
        );
        let artifact = json!({"config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": "sha256:c", "size": 1}});
        assert_eq!(shape(artifact.to_string().as_bytes()), Ok(Shape::Artifact));
        for broken in [
            &b"{"[..],
            b"[]",
            b"{\"layers\": []}",
            b"{\"config\": {\"mediaType\": \"application/vnd.oci.image.config.v1+json\"}}",
        ] {
            assert!(shape(broken).is_err(), "{}", String::from_utf8_lossy(broken));
        }
        let config = json!({"architecture": "arm", "os": "linux", "variant": "v7", "rootfs": {}});
        assert_eq!(of_config(config.to_string().as_bytes()).unwrap().names(), ["linux/arm/v7"]);
        assert!(of_config(br#"{"os": "linux"}"#).unwrap().names().is_empty());
        assert!(of_config(b"\xff").is_err());
    }

    #[test]
    fn an_index_keeps_a_bounded_number_of_platforms() {
        let entries: Vec<_> = (0..500)
            .map(|n| json!({"digest": "sha256:a", "platform": {"os": "linux", "architecture": format!("arch{n}")}}))
            .collect();
        let Ok(Shape::Index(platforms)) = shape(json!({"manifests": entries}).to_string().as_bytes()) else {
            panic!("an index")
        };
        assert_eq!(platforms.iter().count(), MAX_PLATFORMS);
    }
}
