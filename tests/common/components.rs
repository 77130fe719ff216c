//! Real components from Debian (docker-registry, skopeo, containerd, ctr, runc, htpasswd,
//! promtool, buildah) that tests start on loopback. `require` finds one on PATH; when it is
//! missing, a test skips with a message, except under `CI=true`, where it fails: CI installs
//! every component (`.ci/run`), so a missing one is a broken CI, never a silent pass.

use std::path::PathBuf;

/// The path of `binary` on PATH (or in /usr/sbin, /usr/bin), or `None` to skip the test.
/// Panics under `CI=true` when it is missing.
pub fn require(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()]);
    for dir in dirs {
        let candidate = dir.join(binary);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("`{binary}` is not installed, and CI=true: .ci/run must install it");
    }
    eprintln!("skipping: `{binary}` is not installed (run `bash .ci/run` or apt-get install it)");
    None
}

/// Every one of `binaries`, or `None` (see [`require`]).
pub fn require_all<const N: usize>(binaries: [&str; N]) -> Option<[PathBuf; N]> {
    let mut found = Vec::with_capacity(N);
    for binary in binaries {
        found.push(require(binary)?);
    }
    found.try_into().ok()
}
