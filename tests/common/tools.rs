//! The deploy tools scripts/install-tools.sh puts into target/tools/bin (helm, kubectl), found
//! for the tests, and `kubectl kustomize` run offline.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

/// target/tools/bin/NAME, or the path in the environment variable `env` when it is set.
pub fn tool(name: &str, env: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin").join(name));
    assert!(path.exists(), "{} is missing: run scripts/install-tools.sh (scripts/test.sh does)", path.display());
    path
}

/// `kubectl kustomize DIR` (offline), as documents.
pub fn kustomize(dir: &Path) -> Vec<Yaml> {
    let output = Command::new(tool("kubectl", "MIRRORSWAP_KUBECTL")).arg("kustomize").arg(dir).output().unwrap();
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    YamlLoader::load_from_str(&String::from_utf8(output.stdout).unwrap()).expect("kustomized YAML")
}
