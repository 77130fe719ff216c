//! `mirrorswap pull-secret`: print a `kubernetes.io/dockerconfigjson` Secret
//! manifest for a mirror registry, so Palette's `DOMAIN`/`USERNAME`/`PASSWORD`
//! become a pull secret in one command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use clap::Args;
use serde_json::json;

/// Arguments of `mirrorswap pull-secret`.
#[derive(Debug, Args)]
pub struct PullSecretArgs {
    /// The registry host[:port] the credentials are for (Palette's DOMAIN).
    #[arg(long, env = "MIRRORSWAP_PULL_SERVER")]
    pub server: String,
    /// User name (Palette's USERNAME).
    #[arg(long, env = "MIRRORSWAP_PULL_USERNAME")]
    pub username: String,
    /// File holding the password (Palette's PASSWORD); `-` reads stdin. Trailing newlines are
    /// dropped. Never given on the command line, where other users could see it.
    #[arg(long, env = "MIRRORSWAP_PULL_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: PathBuf,
    /// Name of the Secret.
    #[arg(long, env = "MIRRORSWAP_PULL_SECRET_NAME", default_value = "mirror-pull")]
    pub name: String,
    /// Namespace of the Secret; without it the manifest has none (kubectl -n decides).
    #[arg(long, env = "MIRRORSWAP_PULL_NAMESPACE")]
    pub namespace: Option<String>,
}

/// Prints the Secret manifest (JSON, which kubectl reads as YAML) on stdout.
pub fn run(args: &PullSecretArgs) -> anyhow::Result<ExitCode> {
    let password = if args.password_file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the password from stdin")?
    } else {
        std::fs::read_to_string(&args.password_file)
            .with_context(|| format!("cannot read {}", args.password_file.display()))?
    };
    let password = password.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!password.is_empty(), "the password file is empty");
    anyhow::ensure!(!args.server.is_empty() && !args.server.contains('/'), "--server is a host[:port]");
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let auth = b64(&format!("{}:{password}", args.username));
    let config = json!({"auths": {&args.server: {"username": args.username, "password": password, "auth": auth}}});
    let mut metadata = json!({"name": args.name, "labels": {"app.kubernetes.io/managed-by": "mirrorswap"}});
    if let Some(namespace) = &args.namespace {
        metadata["namespace"] = json!(namespace);
    }
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(&config.to_string())},
    });
    println!("{}", serde_json::to_string_pretty(&secret).context("encoding the Secret")?);
    Ok(ExitCode::SUCCESS)
}
