//! The `mirrorswap` command line: argument definitions and dispatch.

mod audit;
mod certs;
mod check;
mod containerd;
mod crio;
mod k3s;
mod manual;
mod node;
mod pull_secret;
mod rewrite;
mod sync;
mod sync_progress;
mod terminal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::rules_file::args::EngineArgs;
use crate::rules_file::{self, Format, LoadError, Loaded};

const FORMATS_HELP: &str = "\
Rule formats (--format, default by extension: .yaml/.yml is yaml, anything else maps):
  maps  imageswap's maps file: one SOURCE::TARGET per line, `#` comments. Also Palette's
        MIRROR_REGISTRIES list: several SOURCE::TARGET pairs on one line, comma-separated.
        Special keys: default::TARGET (fallback), noswap_wildcards::a,b (substrings the
        fallback never touches), [EXACT]REF::TARGET, [REPLACE]GLOB::DIR.
  yaml  a mapping of \"SOURCE\": \"TARGET\" (Registry Connect imageReplacementRules, Edge
        registryMappingRules); the key \"all\" prefixes every image, registry included. Or a
        whole Palette document holding the rules: Edge user-data, Registry Connect values
        (imageReplacementRules/registryMappingRules at any depth, a mapping or block string),
        a registry-info Secret manifest (stringData/data MIRROR_REGISTRIES), Kubernetes pack
        values (imageSwap.imageChange); a #cloud-config file is YAML whatever its name.
SOURCE is a registry or registry/path prefix; the longest one on `/` boundaries wins.
An empty TARGET leaves matching images alone; a TARGET ending in `-` gets the source
registry appended. See docs/rules.md for the full semantics.";

/// Rewrites container image references to mirror registries.
#[derive(Debug, Parser)]
#[command(name = "mirrorswap", version, about, after_help = FORMATS_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print each IMAGE as the rules rewrite it, one line each, in order.
    #[command(after_help = FORMATS_HELP)]
    Rewrite(rewrite::RewriteArgs),
    /// Validate a rules file and summarize it: exit 0 clean, 1 warnings with --strict, 2 errors.
    #[command(after_help = FORMATS_HELP)]
    Check(check::CheckArgs),
    /// Issue a CA and a serving certificate for the webhook Service, write the TLS Secret
    /// manifest and a kustomization over manifests/, and print the caBundle.
    Certs(certs::CertsArgs),
    /// Write containerd mirror config (hosts.toml per host, or --legacy CRI block) from the rules.
    #[command(after_help = format!("{}\n\n{FORMATS_HELP}", containerd::HELP))]
    Containerd(containerd::ContainerdArgs),
    /// Write CRI-O/Podman containers-registries.conf (v2) mirrors from the rules.
    #[command(after_help = format!("{}\n\n{FORMATS_HELP}", crio::HELP))]
    Crio(crio::CrioArgs),
    /// Write K3s/RKE2 registries.yaml mirrors (with credentials and TLS) from the rules.
    #[command(after_help = format!("{}\n\n{FORMATS_HELP}", k3s::HELP))]
    K3s(k3s::K3sArgs),
    /// Print a kubernetes.io/dockerconfigjson Secret for mirror registry credentials: every one a
    /// Palette document holds (--from FILE), or one given by --server/--username/--password-file.
    PullSecret(pull_secret::PullSecretArgs),
    /// Sleep for DURATION (e.g. 5s), then exit 0: a preStop hook for an image with no shell.
    Sleep {
        /// How long, e.g. `5s` or `1m`.
        #[arg(value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
    },
    /// Apply the rules to every workload of manifests (-f) or of the live cluster without
    /// changing anything: per distinct image what it becomes, why, where it is used, and
    /// whether it is pulled from outside the mirrors. Exit 1 with --fail-on hits, 2 on errors.
    #[command(after_help = FORMATS_HELP)]
    Audit(Box<audit::AuditArgs>),
    /// Make the mirrors hold the images the rules send there, exactly as their sources have
    /// them (every digest the same), copying only what is missing: images from manifests
    /// (-f), the live cluster, or a list (--images, `audit -o copy-list`). Exit 0 when every
    /// image is at its mirror afterwards, 1 when any failed, 2 on usage or input errors.
    #[command(after_help = FORMATS_HELP)]
    Sync(Box<sync::SyncArgs>),
    /// Serve the HTTPS admission webhook (rules and certificate reloaded when they change).
    #[command(after_help = FORMATS_HELP)]
    Serve(Box<crate::server::ServeArgs>),
    /// Print a shell completion script: `mirrorswap completions bash > /etc/bash_completion.d/mirrorswap`.
    Completions(manual::CompletionsArgs),
    /// Print the man page (roff): `mirrorswap man | man -l -`; `--out DIR` writes one page per command.
    Man(manual::ManArgs),
}

/// Where rules come from and how they are read; shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct RulesArgs {
    /// Rules file (maps or YAML).
    #[arg(long, env = "MIRRORSWAP_RULES", value_name = "FILE")]
    pub rules: PathBuf,
    /// Rules format; by default .yaml/.yml files are yaml and anything else is maps.
    #[arg(long, env = "MIRRORSWAP_FORMAT", value_enum)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl RulesArgs {
    /// Loads the rules file these flags name.
    pub fn load(&self) -> Result<Loaded, LoadError> {
        rules_file::load_file(&self.rules, self.format, self.engine.options())
    }

    /// Loads the rules and prints their warnings on stderr; on failure prints every problem
    /// (`FILE:LINE: reason`) and gives the exit code 2.
    pub fn load_or_report(&self) -> Result<Loaded, ExitCode> {
        match self.load() {
            Ok(loaded) => {
                loaded.messages().for_each(|message| eprintln!("{message}"));
                Ok(loaded)
            }
            Err(error) => {
                error.messages().iter().for_each(|message| eprintln!("{message}"));
                Err(ExitCode::from(2))
            }
        }
    }
}

/// Prints the process's peak memory (`peak memory: VmHWM: N kB`) on stderr: the bounds tests
/// read it (`check`, `audit` with the hidden `--report-peak-memory`).
fn report_peak_memory() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap_or("VmHWM: unknown");
    eprintln!("peak memory: {peak}");
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Rewrite(args) => rewrite::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Audit(args) => audit::run(&args),
        Command::Sync(args) => sync::run(&args),
        Command::Certs(args) => certs::run(&args),
        Command::Containerd(args) => containerd::run(&args),
        Command::Crio(args) => crio::run(&args),
        Command::K3s(args) => k3s::run(&args),
        Command::PullSecret(args) => pull_secret::run(&args),
        Command::Completions(args) => manual::completions(&args),
        Command::Man(args) => manual::man(&args),
        Command::Sleep { duration } => {
            std::thread::sleep(duration);
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(crate::server::run(*args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
