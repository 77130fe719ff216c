//! `mirrorswap k3s`: node-level mirrors from the same rules, as K3s's and RKE2's
//! `registries.yaml`, with the mirrors' credentials and TLS.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::RulesArgs;
use super::node::{MirrorTlsArgs, Routing, report, summary, write};
use crate::node_config::k3s::{self, K3sOptions};
use crate::node_config::{Plan, docker_config};
use crate::plural;

/// What `--help` says after the flags.
pub const HELP: &str = "\
Install the file as /etc/rancher/k3s/registries.yaml (RKE2: /etc/rancher/rke2/registries.yaml)
on every node and restart K3s. It holds credentials: it is written with mode 0600, and
printed only with --out -. K3s tries the registry itself last (its default endpoint) unless
the node runs with --disable-default-registry-endpoint.";

/// Arguments of `mirrorswap k3s`.
#[derive(Debug, Args)]
pub struct K3sArgs {
    #[command(flatten)]
    pub rules: RulesArgs,
    /// Where to write registries.yaml (mode 0600; `-` prints it, credentials included).
    #[arg(long, env = "MIRRORSWAP_K3S_OUT", value_name = "FILE")]
    pub out: PathBuf,
    /// Docker config JSON (`~/.docker/config.json`, a pull secret's `.dockerconfigjson`) with
    /// the mirrors' credentials, written as `configs.<mirror>.auth`.
    #[arg(long, env = "MIRRORSWAP_REGISTRY_AUTH", value_name = "FILE")]
    pub registry_auth: Option<PathBuf>,
    /// `configs.<mirror>.tls`: `ca_file` and `insecure_skip_verify`.
    #[command(flatten)]
    pub tls: MirrorTlsArgs,
}

/// Writes the file; rules registries.yaml cannot express are listed on stderr.
pub fn run(args: &K3sArgs) -> anyhow::Result<ExitCode> {
    let loaded = match args.rules.load_or_report() {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let plan = Plan::from_rules(&loaded.rules);
    let credentials = match &args.registry_auth {
        Some(path) => {
            let json = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            docker_config::parse(&json).with_context(|| format!("{}", path.display()))?
        }
        None => Default::default(),
    };
    let mirrors = plan.mirror_hosts();
    for host in credentials.keys().filter(|host| !mirrors.contains(host.as_str())) {
        eprintln!("note: the credentials for {host} are not written: no rule mirrors to it");
    }
    if let Some(path) = &args.registry_auth {
        for host in mirrors.iter().filter(|host| !credentials.contains_key(**host)) {
            eprintln!("note: {} has no credentials for the mirror {host}: it is pulled anonymously", path.display());
        }
    }
    let options = K3sOptions { credentials, tls: args.tls.tls() };
    let rendered = k3s::render(&plan, &options, &loaded.origin);
    report(&loaded, "registries.yaml", Routing::Prefixes, &plan, &rendered, &options.tls);
    for (_, text) in &rendered.files {
        write(&args.out, text, 0o600)?;
    }
    summary(
        &format!("{} routed", plural::count(plan.routes.len(), "prefix", "prefixes")),
        rendered.skipped.len(),
        "registries.yaml",
    );
    Ok(ExitCode::SUCCESS)
}
