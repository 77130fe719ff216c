//! Where the rules come from, as `audit` and `sync` take them: a file (`--rules`), or a Secret
//! or ConfigMap read once through the API (`--rules-secret`, `--rules-configmap`, also
//! carrying Palette's mirror settings), their format and the engine options. One flag group,
//! flattened into both commands, each flag with its `MIRRORSWAP_*` variable.

use std::path::PathBuf;

use clap::Args;

use super::plan::RulesFrom;
use crate::k8s::api::{ObjectKind, ObjectSource};
use crate::rules_file::Format;
use crate::rules_file::args::EngineArgs;

/// Where the rules come from (at most one of the three sources).
#[derive(Clone, Debug, Args)]
pub struct RulesSourceArgs {
    /// Rules file (maps or YAML).
    #[arg(long, env = "MIRRORSWAP_RULES", value_name = "FILE", group = "rules_source")]
    pub rules: Option<PathBuf>,
    /// Rules from a Secret, read once through the Kubernetes API: NAMESPACE/NAME[:KEY], KEY
    /// defaulting to MIRROR_REGISTRIES (Palette's `jet-system/registry-info`, whose mirror
    /// credentials, CA and INSECURE are used for the mirror too).
    #[arg(long, env = "MIRRORSWAP_RULES_SECRET", value_name = "NAMESPACE/NAME[:KEY]", group = "rules_source",
          value_parser = |value: &str| ObjectSource::parse(ObjectKind::Secret, value))]
    pub rules_secret: Option<ObjectSource>,
    /// As --rules-secret, from a ConfigMap.
    #[arg(long, env = "MIRRORSWAP_RULES_CONFIGMAP", value_name = "NAMESPACE/NAME[:KEY]", group = "rules_source",
          value_parser = |value: &str| ObjectSource::parse(ObjectKind::ConfigMap, value))]
    pub rules_configmap: Option<ObjectSource>,
    /// Rules format; by default .yaml/.yml files (and keys) are yaml and anything else is maps.
    #[arg(long, env = "MIRRORSWAP_FORMAT", value_enum)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl RulesSourceArgs {
    /// The source these flags name, if any.
    pub fn rules_from(&self) -> Option<RulesFrom> {
        self.rules
            .clone()
            .map(RulesFrom::File)
            .or_else(|| self.rules_secret.clone().or_else(|| self.rules_configmap.clone()).map(RulesFrom::Object))
    }
}
