//! Keeps the rewrite engine pure: files under `src/rewrite/` may only use std
//! (and `thiserror`'s derive), never I/O, threads, async runtimes or
//! Kubernetes types. The server and CLI wrap the engine, not the other way.

use std::path::Path;

const ALLOWED_ROOTS: &[&str] = &["std", "core", "alloc", "crate", "super", "self", "thiserror"];
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net",
    "std::io",
    "std::process",
    "std::thread",
    "std::env",
    "std::time::SystemTime",
    "tokio",
    "async ",
    ".await",
    "kube",
    "k8s_openapi",
    "serde",
    "println!",
    "eprintln!",
];

#[test]
fn rewrite_engine_uses_std_only() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rewrite");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    // The engine's own modules (`use compile::…` in mod.rs) are fine too.
    let modules: Vec<String> = files.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    let mut checked = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("").trim();
            if let Some(used) = code.strip_prefix("use ").or_else(|| code.strip_prefix("pub use ")) {
                let root = used.split("::").next().unwrap_or("").trim_start_matches('{');
                assert!(
                    ALLOWED_ROOTS.contains(&root) || modules.iter().any(|m| m == root),
                    "{name}:{}: `{code}` reaches outside std",
                    number + 1
                );
            }
            for forbidden in FORBIDDEN {
                assert!(!code.contains(forbidden), "{name}:{}: `{forbidden}` in the pure engine", number + 1);
            }
        }
        checked += 1;
    }
    assert!(checked >= 8, "expected the engine's files under {}", dir.display());
}
