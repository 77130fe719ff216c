//! `mirrorswap pull-secret`: print a `kubernetes.io/dockerconfigjson` Secret
//! manifest, from every credential a Palette document carries (`--from`), or
//! from Palette's `DOMAIN`/`USERNAME`/`PASSWORD` given one by one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use clap::Args;
use serde_json::json;

use crate::credentials::{self, Credential, Secret};
use crate::rules_file::read_bounded_bytes;

/// Arguments of `mirrorswap pull-secret`.
#[derive(Debug, Args)]
pub struct PullSecretArgs {
    /// A Palette document holding credentials: the `registry-info` Secret manifest (DOMAIN,
    /// USERNAME, PASSWORD), Edge user-data (`registryCredentials`,
    /// `externalRegistries.registries[]`) or Registry Connect pack values (`credentials[]`).
    /// Every credential in it goes into the one Secret.
    #[arg(long, env = "MIRRORSWAP_PULL_FROM", value_name = "FILE",
          conflicts_with_all = ["server", "username", "password_file"])]
    pub from: Option<PathBuf>,
    /// The registry host[:port] the credentials are for (Palette's DOMAIN).
    #[arg(long, env = "MIRRORSWAP_PULL_SERVER", required_unless_present = "from", requires_all = ["username", "password_file"])]
    pub server: Option<String>,
    /// User name (Palette's USERNAME).
    #[arg(long, env = "MIRRORSWAP_PULL_USERNAME", requires = "server")]
    pub username: Option<String>,
    /// File holding the password (Palette's PASSWORD); `-` reads stdin. Trailing newlines are
    /// dropped. Never given on the command line, where other users could see it.
    #[arg(long, env = "MIRRORSWAP_PULL_PASSWORD_FILE", value_name = "FILE", requires = "server")]
    pub password_file: Option<PathBuf>,
    /// Name of the Secret.
    #[arg(long, env = "MIRRORSWAP_PULL_SECRET_NAME", default_value = "mirror-pull")]
    pub name: String,
    /// Namespace of the Secret; without it the manifest has none (kubectl -n decides).
    #[arg(short = 'n', long, env = "MIRRORSWAP_PULL_NAMESPACE")]
    pub namespace: Option<String>,
    /// Write the manifest to FILE (created with mode 0600) instead of stdout.
    #[arg(long, env = "MIRRORSWAP_PULL_OUT", value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Prints (or writes) the Secret manifest (JSON, which kubectl reads as YAML); notes on skipped
/// entries go to stderr. Exit 2 when the document holds no usable credential.
pub fn run(args: &PullSecretArgs) -> anyhow::Result<ExitCode> {
    let credentials = match &args.from {
        Some(path) => match from_document(path)? {
            Some(credentials) => credentials,
            None => return Ok(ExitCode::from(2)),
        },
        None => vec![from_flags(args)?],
    };
    let manifest = manifest(&credentials, &args.name, args.namespace.as_deref())?;
    match &args.out {
        Some(path) => {
            write_private(path, manifest.as_bytes())?;
            eprintln!(
                "wrote {} ({} registr{})",
                path.display(),
                credentials.len(),
                if credentials.len() == 1 { "y" } else { "ies" }
            );
        }
        None => println!("{manifest}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Every credential in the document at `path`; `None` (after saying why) when there is none.
fn from_document(path: &Path) -> anyhow::Result<Option<Vec<Credential>>> {
    let origin = path.display();
    let bytes = read_bounded_bytes(path).with_context(|| format!("cannot read {origin}"))?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{origin}: not UTF-8 text"))?;
    let found = match credentials::from_document(&text) {
        Ok(found) => found,
        Err(why) => {
            eprintln!("{origin}:{why}");
            return Ok(None);
        }
    };
    found.notes.iter().for_each(|note| eprintln!("{origin}: note: {note}"));
    for credential in &found.credentials {
        eprintln!("{origin}: {}: login for {} (user {})", credential.source, credential.registry, credential.username);
    }
    if found.credentials.is_empty() {
        eprintln!(
            "{origin}: no credentials: looked for a registry-info Secret's USERNAME/PASSWORD, Edge \
             registryCredentials and externalRegistries.registries[], and Registry Connect credentials[]"
        );
        return Ok(None);
    }
    Ok(Some(found.credentials))
}

fn from_flags(args: &PullSecretArgs) -> anyhow::Result<Credential> {
    let (Some(server), Some(username), Some(password_file)) = (&args.server, &args.username, &args.password_file)
    else {
        anyhow::bail!("--from FILE, or --server, --username and --password-file");
    };
    let password = if password_file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the password from stdin")?
    } else {
        std::fs::read_to_string(password_file).with_context(|| format!("cannot read {}", password_file.display()))?
    };
    let password = password.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!password.is_empty(), "the password file is empty");
    anyhow::ensure!(!server.is_empty() && !server.contains('/'), "--server is a host[:port]");
    Ok(Credential {
        registry: server.clone(),
        username: username.clone(),
        password: Secret::new(password),
        source: "--server".into(),
    })
}

/// The Secret manifest holding one `auths` entry per credential.
fn manifest(credentials: &[Credential], name: &str, namespace: Option<&str>) -> anyhow::Result<String> {
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let auths: serde_json::Map<String, serde_json::Value> = credentials
        .iter()
        .map(|c| {
            let password = c.password.expose();
            let auth = b64(&format!("{}:{password}", c.username));
            (c.registry.clone(), json!({"username": c.username, "password": password, "auth": auth}))
        })
        .collect();
    let config = json!({ "auths": auths });
    let mut metadata = json!({"name": name, "labels": {"app.kubernetes.io/managed-by": "mirrorswap"}});
    if let Some(namespace) = namespace {
        metadata["namespace"] = json!(namespace);
    }
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(&config.to_string())},
    });
    serde_json::to_string_pretty(&secret).context("encoding the Secret")
}

/// Writes `bytes` to `path`, readable by its owner only (an existing file is narrowed to 0600
/// before anything is written).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to mode 0600", path.display()))?;
    file.set_len(0).with_context(|| format!("cannot truncate {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.write_all(b"\n"))
        .with_context(|| format!("cannot write {}", path.display()))
}
