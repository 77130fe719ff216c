//! `mirrorswap containerd`: node-level mirrors from the same rules, as containerd
//! `hosts.toml` files or the legacy CRI `registry.mirrors` block.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::RulesArgs;
use crate::containerd::{HostOptions, hosts_toml, legacy_toml, mirrors};

/// Arguments of `mirrorswap containerd`.
#[derive(Debug, Args)]
pub struct ContainerdArgs {
    #[command(flatten)]
    pub rules: RulesArgs,
    /// Write OUT/<host>/hosts.toml for each mirrored host (containerd's `config_path`, e.g.
    /// /etc/containerd/certs.d).
    #[arg(long, env = "MIRRORSWAP_CONTAINERD_OUT", value_name = "DIR", required_unless_present = "legacy")]
    pub out: Option<PathBuf>,
    /// Print the legacy `plugins."io.containerd.grpc.v1.cri".registry.mirrors` block instead.
    #[arg(long, env = "MIRRORSWAP_CONTAINERD_LEGACY", conflicts_with = "out")]
    pub legacy: bool,
    /// CA file the nodes use to verify the mirrors (hosts.toml `ca`).
    #[arg(long, env = "MIRRORSWAP_CONTAINERD_CA", value_name = "FILE")]
    pub ca: Option<String>,
    /// Do not verify the mirrors' certificates (hosts.toml `skip_verify`).
    #[arg(long, env = "MIRRORSWAP_CONTAINERD_SKIP_VERIFY")]
    pub skip_verify: bool,
}

/// Writes the files or prints the block; rules containerd cannot express are listed on stderr.
pub fn run(args: &ContainerdArgs) -> anyhow::Result<ExitCode> {
    let loaded = match args.rules.load_or_report() {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let origin = &loaded.origin;
    let (mirrors, skipped) = mirrors(&loaded.rules);
    for skip in &skipped {
        eprintln!("{origin}:{}: warning: `{}` is not in the containerd config: {}", skip.line, skip.rule, skip.reason);
    }
    if args.legacy {
        print!("{}", legacy_toml(&mirrors));
        return Ok(ExitCode::SUCCESS);
    }
    let Some(out) = &args.out else {
        anyhow::bail!("--out DIR or --legacy is required");
    };
    let options = HostOptions { ca: args.ca.clone(), skip_verify: args.skip_verify };
    for mirror in &mirrors {
        let dir = out.join(&mirror.host);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let file = dir.join("hosts.toml");
        std::fs::write(&file, hosts_toml(mirror, &options))
            .with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!("wrote {}", file.display());
    }
    eprintln!("{} hosts mirrored, {} rules not expressible in containerd", mirrors.len(), skipped.len());
    Ok(ExitCode::SUCCESS)
}
