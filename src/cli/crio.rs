//! `mirrorswap crio`: node-level mirrors from the same rules, as CRI-O's and Podman's
//! `containers-registries.conf` (v2).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::RulesArgs;
use super::node::{Routing, report, summary, write};
use crate::node_config::{MirrorTls, Plan, crio};
use crate::plural;

/// What `--help` says after the flags.
pub const HELP: &str = "\
Install the file as /etc/containers/registries.conf (or a drop-in under
/etc/containers/registries.conf.d/) and reload CRI-O. Mirror CAs are not in this file:
containers/image reads /etc/containers/certs.d/<mirror host>/ca.crt. Credentials come from
imagePullSecrets (`mirrorswap pull-secret`) or CRI-O's `global_auth_file`.";

/// Arguments of `mirrorswap crio`.
#[derive(Debug, Args)]
pub struct CrioArgs {
    #[command(flatten)]
    pub rules: RulesArgs,
    /// Where to write registries.conf (`-` prints it).
    #[arg(long, env = "MIRRORSWAP_CRIO_OUT", value_name = "FILE")]
    pub out: PathBuf,
    /// A mirror host (`host[:port]`) reached without TLS verification (`insecure = true` on
    /// its mirror entries). Repeat it or separate hosts with commas.
    #[arg(long, env = "MIRRORSWAP_INSECURE_REGISTRY", value_name = "HOST", value_delimiter = ',')]
    pub insecure_registry: Vec<String>,
}

/// Writes the file; rules registries.conf cannot express are listed on stderr.
pub fn run(args: &CrioArgs) -> anyhow::Result<ExitCode> {
    let loaded = match args.rules.load_or_report() {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let plan = Plan::from_rules(&loaded.rules);
    let tls = MirrorTls { insecure: args.insecure_registry.iter().cloned().collect(), ..MirrorTls::default() };
    let rendered = crio::render(&plan, &tls, &loaded.origin);
    report(&loaded, "registries.conf", Routing::Prefixes, &plan, &rendered, &tls);
    for (_, text) in &rendered.files {
        write(&args.out, text, 0o644)?;
    }
    summary(
        &format!("{} routed", plural::count(plan.routes.len(), "prefix", "prefixes")),
        rendered.skipped.len(),
        "registries.conf",
    );
    Ok(ExitCode::SUCCESS)
}
