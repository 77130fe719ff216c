//! What the node-config commands (`containerd`, `crio`, `k3s`) share: the TLS flags, the
//! report of rules a runtime cannot express, and writing a file in one step.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use clap::Args;

use crate::node_config::{MirrorTls, Plan, Rendered, official};
use crate::rules_file::Loaded;

/// How the nodes verify the mirrors.
#[derive(Debug, Clone, Args)]
pub struct MirrorTlsArgs {
    /// CA file, as a path on the nodes, that verifies every mirror's certificate (a bundle may
    /// hold several CAs).
    #[arg(long, alias = "ca", env = "MIRRORSWAP_REGISTRY_CA", value_name = "PATH")]
    pub registry_ca: Option<String>,
    /// A mirror host (`host[:port]`, as in the rules' targets) whose certificate is not
    /// verified. Repeat it or separate hosts with commas.
    #[arg(long, env = "MIRRORSWAP_INSECURE_REGISTRY", value_name = "HOST", value_delimiter = ',')]
    pub insecure_registry: Vec<String>,
}

impl MirrorTlsArgs {
    /// The TLS options these flags select.
    pub fn tls(&self) -> MirrorTls {
        MirrorTls {
            ca: self.registry_ca.clone(),
            insecure: self.insecure_registry.iter().cloned().collect(),
            insecure_all: false,
        }
    }
}

/// How a runtime routes: containerd mirrors whole registries, the others prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Only host-level routes (containerd).
    WholeRegistries,
    /// The longest prefix, as the webhook (CRI-O, K3s).
    Prefixes,
}

/// Lists on stderr, as `FILE:LINE: warning`, every rule the config leaves out, every
/// `--insecure-registry` host no rule mirrors to, and where the webhook and the nodes send
/// official Docker Hub images to different paths.
pub fn report(loaded: &Loaded, runtime: &str, routing: Routing, plan: &Plan, rendered: &Rendered, tls: &MirrorTls) {
    let origin = &loaded.origin;
    for skip in &rendered.skipped {
        eprintln!("{origin}:{}: warning: `{}` is not in {runtime}: {}", skip.line, skip.rule, skip.reason);
    }
    if let Some(gap) = official::gap(&loaded.rules, plan, routing == Routing::WholeRegistries) {
        eprintln!("{}", gap.warning(runtime));
    }
    let mirrors = plan.mirror_hosts();
    for host in tls.insecure.iter().filter(|host| !mirrors.contains(host.as_str())) {
        eprintln!("warning: --insecure-registry {host} is not a mirror host of any rule");
    }
}

/// Writes `text` to `path` (or stdout for `-`) with `mode`, through a temporary file in the
/// same directory renamed over the old one: readers never see half a file, and the mode is
/// the new file's from its first byte.
pub fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    if path == Path::new("-") {
        print!("{text}");
        return Ok(());
    }
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    let temporary = dir.join(format!(".{}.mirrorswap-{}", name.to_string_lossy(), std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .and_then(|mut file| file.write_all(text.as_bytes()).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("cannot write {}", path.display()));
    }
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The closing line on stderr: what the config routes, and how many rules it leaves out.
pub fn summary(routed: &str, skipped: usize, runtime: &str) {
    eprintln!("{routed}, {} not expressible in {runtime}", crate::plural::count_s(skipped, "rule"));
}
