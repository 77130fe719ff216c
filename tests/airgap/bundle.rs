//! The release bundle under test: `scripts/release-bundle.sh`, run twice in a row once per test
//! process (the second run must give the same image digest), and what it wrote.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What one run of the bundle script wrote.
pub struct Bundle {
    pub dir: PathBuf,
    pub version: String,
    /// `mirrorswap-VERSION.oci.tar`.
    pub archive: PathBuf,
    /// `mirrorswap-VERSION.tgz`.
    pub chart: PathBuf,
    /// The image manifest's digest (the archive's `index.json`).
    pub digest: String,
    /// The digest the run before this one gave, from the same commit.
    pub previous_digest: String,
}

/// The bundle, built on first use.
pub fn get() -> &'static Bundle {
    static BUNDLE: OnceLock<Bundle> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let previous_digest = build().digest;
        Bundle { previous_digest, ..build() }
    })
}

fn build() -> Bundle {
    let output = Command::new("bash").arg("scripts/release-bundle.sh").current_dir(ROOT).output().expect("run bash");
    assert!(output.status.success(), "release-bundle.sh failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let version = env!("CARGO_PKG_VERSION").to_owned();
    let dir = Path::new(ROOT).join("target/bundle");
    let archive = dir.join(format!("mirrorswap-{version}.oci.tar"));
    let index: serde_json::Value = serde_json::from_slice(&archive_file(&archive, "index.json")).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().expect("index.json names the manifest").to_owned();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        format!("mirrorswap:{version}")
    );
    Bundle {
        chart: dir.join(format!("mirrorswap-{version}.tgz")),
        dir,
        version,
        archive,
        digest,
        previous_digest: String::new(),
    }
}

/// One file of the OCI archive (a tar), such as `index.json` or `blobs/sha256/HEX`.
pub fn archive_file(archive: &Path, name: &str) -> Vec<u8> {
    let output = Command::new("tar").arg("-xOf").arg(archive).arg(name).output().expect("run tar");
    assert!(output.status.success(), "{name} is not in {}", archive.display());
    output.stdout
}

/// A blob of the archive by digest, decoded as JSON.
pub fn archive_json(archive: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    serde_json::from_slice(&archive_file(archive, &format!("blobs/sha256/{hex}"))).unwrap()
}

/// Runs `command` (named `what` in messages) and returns its stdout; panics with its stderr.
pub fn run(what: &str, command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
