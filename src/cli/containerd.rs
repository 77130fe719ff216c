//! `mirrorswap containerd`: node-level mirrors from the same rules, as containerd
//! `hosts.toml` files or the legacy CRI `registry.mirrors` block.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::RulesArgs;
use super::node::{MirrorTlsArgs, Routing, report, summary, write};
use crate::node_config::{Plan, containerd};
use crate::plural;

/// What `--help` says after the flags.
pub const HELP: &str = "\
hosts.toml has no credentials. Pods authenticate to the mirror with imagePullSecrets
(`mirrorswap pull-secret`), or the node with the CRI plugin's
`plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"<mirror>\".auth` in config.toml.
containerd reads hosts.toml from the `config_path` of
`plugins.\"io.containerd.grpc.v1.cri\".registry` (e.g. /etc/containerd/certs.d), without a restart.";

/// Arguments of `mirrorswap containerd`.
#[derive(Debug, Args)]
pub struct ContainerdArgs {
    #[command(flatten)]
    pub rules: RulesArgs,
    /// Write OUT/<host>/hosts.toml for each mirrored registry (containerd's `config_path`, e.g.
    /// /etc/containerd/certs.d); `-` prints each file after a `# ==> HOST/hosts.toml <==` line.
    #[arg(long, env = "MIRRORSWAP_CONTAINERD_OUT", value_name = "DIR", required_unless_present = "legacy")]
    pub out: Option<PathBuf>,
    /// Print the legacy `plugins."io.containerd.grpc.v1.cri".registry.mirrors` block instead.
    #[arg(long, env = "MIRRORSWAP_CONTAINERD_LEGACY", conflicts_with_all = ["out", "registry_ca", "insecure_registry", "skip_verify"])]
    pub legacy: bool,
    /// hosts.toml `ca` and `skip_verify`.
    #[command(flatten)]
    pub tls: MirrorTlsArgs,
    /// Verify no mirror's certificate (`skip_verify` on every host; prefer --insecure-registry).
    #[arg(long, env = "MIRRORSWAP_CONTAINERD_SKIP_VERIFY")]
    pub skip_verify: bool,
}

/// Writes the files or prints the block; rules containerd cannot express are listed on stderr.
pub fn run(args: &ContainerdArgs) -> anyhow::Result<ExitCode> {
    let loaded = match args.rules.load_or_report() {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let plan = Plan::from_rules(&loaded.rules);
    let mut tls = args.tls.tls();
    tls.insecure_all = args.skip_verify;
    let rendered = match &args.out {
        Some(_) => containerd::render(&plan, &tls, &loaded.origin),
        None => containerd::render_legacy(&plan),
    };
    report(&loaded, "the containerd config", Routing::WholeRegistries, &plan, &rendered, &tls);
    match args.out.as_deref() {
        None => rendered.files.iter().for_each(|(_, text)| print!("{text}")),
        // `-` is stdout, as for crio and k3s: each file after a line naming its path.
        Some(out) if out == Path::new("-") => {
            for (index, (name, text)) in rendered.files.iter().enumerate() {
                let gap = if index == 0 { "" } else { "\n" };
                print!("{gap}# ==> {name} <==\n{text}");
            }
        }
        Some(out) => {
            for (name, text) in &rendered.files {
                write(&out.join(name), text, 0o644)?;
            }
        }
    }
    if args.out.is_none() {
        return Ok(ExitCode::SUCCESS);
    }
    summary(
        &format!("{} mirrored", plural::count(rendered.files.len(), "registry", "registries")),
        rendered.skipped.len(),
        "containerd",
    );
    Ok(ExitCode::SUCCESS)
}
