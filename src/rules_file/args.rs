//! The engine options flags (`--lenient`, `--docker-hub`): how rules are compiled, next to
//! the rules they configure. Flattened into the flags of every command that compiles rules:
//! `cli`'s `RulesArgs` and `audit`, and `serve`'s (`server::args`).

use clap::{Args, ValueEnum};

use crate::rewrite::{DockerHubMode, Options};

/// How Docker Hub references are matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DockerHub {
    /// As imageswap: `nginx` matches `docker.io` rules and never gains `library/`.
    Compat,
    /// As containerd pulls: `nginx` is `docker.io/library/nginx`; index.docker.io and
    /// registry-1.docker.io are docker.io.
    Canonical,
}

/// Engine options shared by every command that compiles rules.
#[derive(Debug, Clone, Copy, Args)]
pub struct EngineArgs {
    /// Skip bad rule lines with a warning each (as imageswap does) instead of failing.
    #[arg(long, env = "MIRRORSWAP_LENIENT")]
    pub lenient: bool,
    /// Docker Hub matching mode.
    #[arg(long, env = "MIRRORSWAP_DOCKER_HUB", value_enum, default_value_t = DockerHub::Compat)]
    pub docker_hub: DockerHub,
}

impl EngineArgs {
    /// The engine options these flags select.
    pub fn options(&self) -> Options {
        let docker_hub = match self.docker_hub {
            DockerHub::Compat => DockerHubMode::Compat,
            DockerHub::Canonical => DockerHubMode::Canonical,
        };
        Options { docker_hub, lenient: self.lenient }
    }
}
