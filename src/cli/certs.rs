//! `mirrorswap certs`: issue a serving certificate for the webhook Service,
//! under the CA the output directory already holds (or a new one), and write
//! what the plain-manifest install needs: the TLS Secret manifest, the
//! `caBundle` for the webhook configuration, and a kustomization that puts
//! both on top of `manifests/` in one namespace.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use base64::Engine;
use clap::Args;

use crate::certs::Ca;

/// Arguments of `mirrorswap certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Namespace of the whole kustomization (every object, the webhook's Service reference and
    /// its namespace exclusion) and of the certificate's names.
    #[arg(short = 'n', long, env = "MIRRORSWAP_NAMESPACE", default_value = "mirrorswap", value_parser = dns_label)]
    pub namespace: String,
    /// Name of the webhook Service; the certificate names SERVICE.NAMESPACE.svc and
    /// SERVICE.NAMESPACE.svc.cluster.local.
    #[arg(long, env = "MIRRORSWAP_SERVICE", default_value = "mirrorswap", value_parser = dns_label)]
    pub service: String,
    /// Name of the TLS Secret the Deployment mounts.
    #[arg(long, env = "MIRRORSWAP_SECRET_NAME", default_value = "mirrorswap-tls", value_parser = dns_label)]
    pub secret_name: String,
    /// Extra DNS names or IP addresses for the certificate (repeatable).
    #[arg(long = "extra-name", env = "MIRRORSWAP_EXTRA_NAMES", value_delimiter = ',')]
    pub extra_names: Vec<String>,
    /// Validity in days of the serving certificate (never past the CA's own end).
    #[arg(long, env = "MIRRORSWAP_DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Validity in days of a new CA (a reused CA keeps its own).
    #[arg(long, env = "MIRRORSWAP_CA_DAYS", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub ca_days: u32,
    /// Sign with this CA certificate (PEM) instead of the one in --out-dir; needs --ca-key. Its
    /// key is not copied into --out-dir. When it replaces another CA there, the caBundle holds
    /// both until the next run, as with --new-ca.
    #[arg(long, env = "MIRRORSWAP_CA_CERT", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The private key (PEM) of --ca-cert.
    #[arg(long, env = "MIRRORSWAP_CA_KEY", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Issue a new CA even though --out-dir holds one. The caBundle then holds the old and the
    /// new CA, so the certificate still served verifies until the pods load the new one; the
    /// next run drops the old CA.
    #[arg(long, env = "MIRRORSWAP_NEW_CA", conflicts_with = "ca_cert")]
    pub new_ca: bool,
    /// Directory to write ca.crt, ca.key, tls.crt, tls.key, secret.yaml, ca-bundle.txt and
    /// kustomization.yaml. A CA already there (ca.crt and ca.key) is reused: running again
    /// re-issues only the serving certificate.
    #[arg(long, env = "MIRRORSWAP_OUT_DIR", default_value = "certs/out")]
    pub out_dir: PathBuf,
    /// The kustomization that kustomization.yaml builds on [default: manifests/base when it
    /// exists, as in a checkout; without it only the Secret and the caBundle are written].
    #[arg(long, alias = "manifests", env = "MIRRORSWAP_BASE", value_name = "DIR")]
    pub base: Option<PathBuf>,
}

/// The base of a checkout, used when it is there.
const CHECKOUT_BASE: &str = "manifests/base";

/// The CA that signs this run, and where it came from.
struct Signer {
    ca: Ca,
    /// Said on stderr: "reused from …", "new", ….
    origin: String,
    /// The CA key lives in --out-dir (ca.key is written), not at --ca-key.
    key_in_out_dir: bool,
    /// The previous CA, kept in the caBundle for one run after --new-ca.
    previous: Option<String>,
}

/// Issues the certificates, writes the files and prints the `caBundle`. An error leaves no
/// directory it created behind.
pub fn run(args: &CertsArgs) -> anyhow::Result<ExitCode> {
    let base = match &args.base {
        Some(base) if !base.is_dir() => anyhow::bail!(
            "--base {}: no such directory: give the kustomization to build on (manifests/base of a checkout), \
             or leave --base out to write only the Secret and the caBundle",
            base.display()
        ),
        Some(base) => Some(base.clone()),
        None => Some(PathBuf::from(CHECKOUT_BASE)).filter(|base| base.is_dir()),
    };
    let created = first_missing(&args.out_dir);
    let issued = issue(args, base.as_deref());
    if let (Err(_), Some(created)) = (&issued, created) {
        let _ = fs::remove_dir_all(created);
    }
    issued
}

/// The outermost directory of `dir` that does not exist yet (what creating it would add).
fn first_missing(dir: &Path) -> Option<PathBuf> {
    let mut missing = None;
    for ancestor in dir.ancestors().filter(|ancestor| !ancestor.as_os_str().is_empty()) {
        if ancestor.exists() {
            break;
        }
        missing = Some(ancestor.to_path_buf());
    }
    missing
}

fn issue(args: &CertsArgs, base: Option<&Path>) -> anyhow::Result<ExitCode> {
    let service_name = format!("{}.{}.svc", args.service, args.namespace);
    let mut names = vec![service_name.clone(), format!("{service_name}.cluster.local")];
    names.extend(args.extra_names.iter().cloned());

    fs::create_dir_all(&args.out_dir).with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let signer = signer(args)?;
    let ca_until = signer.ca.not_after().with_context(|| format!("cannot sign with the CA {}", signer.origin))?;
    if ca_until < SystemTime::now() + Duration::from_secs(u64::from(args.days) * 86_400) {
        eprintln!(
            "warning: the CA ({}) expires before {} days from now, and the certificate ends with it: \
             rotate the CA with --new-ca before then",
            signer.origin, args.days
        );
    }
    let (cert_pem, key_pem) =
        signer.ca.sign(&names, args.days).with_context(|| format!("cannot sign with the CA {}", signer.origin))?;
    let mut bundle = signer.ca.cert_pem.clone();
    if let Some(previous) = &signer.previous {
        bundle.push_str(previous);
    }
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    let ca_bundle = b64(&bundle);

    let base = base.map(|base| relative_to(base, &args.out_dir)).transpose()?;
    // The Secret's ca.crt is the bundle (base64 of PEM), which is exactly what caBundle holds.
    let secret = format!(
        "# TLS Secret of the mirrorswap webhook, written by `mirrorswap certs`. Keep it private.\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    \
         app.kubernetes.io/name: mirrorswap\ntype: kubernetes.io/tls\ndata:\n  ca.crt: {ca}\n  tls.crt: {cert}\n  \
         tls.key: {key}\n",
        name = args.secret_name,
        namespace = args.namespace,
        ca = ca_bundle,
        cert = b64(&cert_pem),
        key = b64(&key_pem),
    );
    let kustomization = base.as_deref().map(|base| kustomization(args, base));
    let mut files = vec![
        ("ca.crt", signer.ca.cert_pem.as_str()),
        ("tls.crt", cert_pem.as_str()),
        ("tls.key", key_pem.as_str()),
        ("secret.yaml", secret.as_str()),
    ];
    if let Some(kustomization) = &kustomization {
        files.push(("kustomization.yaml", kustomization.as_str()));
    }
    if signer.key_in_out_dir {
        files.push(("ca.key", signer.ca.key_pem.as_str()));
    }
    let bundle_line = format!("{ca_bundle}\n");
    files.push(("ca-bundle.txt", &bundle_line));
    for (name, content) in files {
        write_private(&args.out_dir.join(name), content)?;
    }
    if !signer.key_in_out_dir {
        remove_stale_key(&args.out_dir.join("ca.key"), args.ca_key.as_deref())?;
    }
    let out = args.out_dir.display();
    let apply = match &base {
        Some(_) => format!("apply with: kubectl apply -k {out}"),
        None => format!(
            "no {CHECKOUT_BASE} here (not a checkout) and no --base: no kustomization written; apply \
             {out}/secret.yaml and put the caBundle below into your webhook configuration (or give --base DIR)"
        ),
    };
    eprintln!(
        "wrote {out} (certificate for {}, valid {} days, CA {}{}); {apply}",
        names.join(", "),
        args.days,
        signer.origin,
        if signer.previous.is_some() { "; the caBundle also holds the previous CA until the next run" } else { "" },
    );
    eprintln!("caBundle for the MutatingWebhookConfiguration:");
    println!("{ca_bundle}");
    Ok(ExitCode::SUCCESS)
}

/// The CA of this run: --ca-cert/--ca-key, else a new one with --new-ca or on the first run,
/// else the one --out-dir holds.
fn signer(args: &CertsArgs) -> anyhow::Result<Signer> {
    let ca_name = format!("mirrorswap CA ({})", args.namespace);
    let cert_path = args.out_dir.join("ca.crt");
    let key_path = args.out_dir.join("ca.key");
    let existing = match fs::read_to_string(&cert_path) {
        Ok(pem) => Some(pem),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", cert_path.display())),
    };
    if let (Some(cert), Some(key)) = (&args.ca_cert, &args.ca_key) {
        let ca = Ca { cert_pem: read(cert)?, key_pem: read(key)? };
        // Switching to this CA is a CA change like --new-ca: the old one stays for one run.
        let previous = existing.filter(|old| is_certificate(old) && old.trim() != ca.cert_pem.trim());
        return Ok(Signer { ca, origin: format!("{}", cert.display()), key_in_out_dir: false, previous });
    }
    let Some(existing) = existing else {
        let ca = Ca::generate(&ca_name, args.ca_days).context("cannot issue the CA")?;
        return Ok(Signer { ca, origin: "new".into(), key_in_out_dir: true, previous: None });
    };
    if args.new_ca {
        let ca = Ca::generate(&ca_name, args.ca_days).context("cannot issue the CA")?;
        let previous = is_certificate(&existing).then_some(existing);
        if previous.is_none() {
            eprintln!("warning: {} is not a certificate; the caBundle holds the new CA only", cert_path.display());
        }
        return Ok(Signer { ca, origin: "new (--new-ca)".into(), key_in_out_dir: true, previous });
    }
    if !key_path.exists() {
        anyhow::bail!(
            "{} exists but {} does not (an older `mirrorswap certs`, or the key is kept elsewhere): pass \
             --ca-cert/--ca-key to sign with that CA, or --new-ca to issue a new one (the caBundle then \
             holds both CAs until the next run)",
            cert_path.display(),
            key_path.display()
        );
    }
    let mode = fs::metadata(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?.mode();
    if mode & 0o077 != 0 {
        eprintln!(
            "warning: {} was readable by others (mode {:o}); it is now 0600. Consider --new-ca if others \
             could read it",
            key_path.display(),
            mode & 0o777
        );
    }
    let ca = Ca { cert_pem: existing, key_pem: read(&key_path)? };
    Ok(Signer { ca, origin: format!("reused from {}", cert_path.display()), key_in_out_dir: true, previous: None })
}

/// With --ca-key elsewhere, a ca.key left in --out-dir belongs to another CA: it goes, so the
/// next run does not pair it with the new ca.crt.
fn remove_stale_key(stale: &Path, ca_key: Option<&Path>) -> anyhow::Result<()> {
    let same = ca_key.and_then(|key| key.canonicalize().ok()) == stale.canonicalize().ok();
    if stale.exists() && !same {
        fs::remove_file(stale).with_context(|| format!("cannot remove {}", stale.display()))?;
        eprintln!("removed {}: it belonged to the previous CA", stale.display());
    }
    Ok(())
}

/// The kustomization over `base`: the Secret added, every object in `--namespace` (kustomize
/// also moves the Namespace object and the webhook's Service reference), the webhooks' exclusion
/// of that namespace (the first value of their `kubernetes.io/metadata.name NotIn` expression)
/// and their caBundle taken from the Secret.
fn kustomization(args: &CertsArgs, base: &Path) -> String {
    format!(
        "# Written by `mirrorswap certs`: {base} plus the TLS Secret, everything in namespace \
         {namespace}, with every\n\
         # webhook's caBundle set from the Secret's ca.crt. Apply with `kubectl apply -k {out}`.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {namespace}\n\
         resources:\n  - {base}\n  - secret.yaml\n\
         replacements:\n  - source:\n      kind: Secret\n      name: {name}\n      fieldPath: data.ca\\.crt\n    \
         targets:\n      - select:\n          kind: MutatingWebhookConfiguration\n        fieldPaths:\n          \
         - webhooks.*.clientConfig.caBundle\n        options:\n          create: true\n  \
         - source:\n      kind: Secret\n      name: {name}\n      fieldPath: metadata.namespace\n    \
         targets:\n      - select:\n          kind: MutatingWebhookConfiguration\n        fieldPaths:\n          \
         - webhooks.*.namespaceSelector.matchExpressions.[key=kubernetes.io/metadata.name].values.0\n",
        base = base.display(),
        out = args.out_dir.display(),
        name = args.secret_name,
        namespace = args.namespace,
    )
}

fn read(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn is_certificate(pem: &str) -> bool {
    x509_parser::pem::parse_x509_pem(pem.as_bytes()).is_ok_and(|(_, pem)| pem.parse_x509().is_ok())
}

/// Writes a file readable by its owner only (it may hold a private key): a new file, mode
/// 0600, renamed over the old one, so an existing file's mode never carries over and no reader
/// sees half a file.
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let context = || format!("cannot write {}", path.display());
    let file_name = path.file_name().with_context(context)?.to_string_lossy();
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file =
            fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary).with_context(context)?;
        // Explicitly: `mode` above is filtered by the umask.
        file.set_permissions(fs::Permissions::from_mode(0o600)).with_context(context)?;
        file.write_all(content.as_bytes()).with_context(context)?;
        file.sync_all().with_context(context)?;
        fs::rename(&temporary, path).with_context(context)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// `target` as a path relative to the directory `from` (both must exist).
fn relative_to(target: &Path, from: &Path) -> anyhow::Result<PathBuf> {
    let target = target.canonicalize().with_context(|| format!("cannot find {}", target.display()))?;
    let from = from.canonicalize().with_context(|| format!("cannot find {}", from.display()))?;
    let common = target.components().zip(from.components()).take_while(|(a, b)| a == b).count();
    let mut relative: PathBuf = from.components().skip(common).map(|_| Component::ParentDir).collect();
    relative.extend(target.components().skip(common));
    Ok(if relative.as_os_str().is_empty() { PathBuf::from(".") } else { relative })
}

/// A Kubernetes name: a DNS-1123 label (lowercase alphanumerics and `-`, at most 63).
fn dns_label(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok { Ok(value.to_owned()) } else { Err(format!("`{value}` is not a DNS-1123 label ([a-z0-9-], at most 63)")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("manifests")).unwrap();
        fs::create_dir_all(root.join("certs/out")).unwrap();
        assert_eq!(
            relative_to(&root.join("manifests"), &root.join("certs/out")).unwrap(),
            Path::new("../../manifests")
        );
        assert_eq!(relative_to(root, root).unwrap(), Path::new("."));
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(dns_label("mirrorswap").is_ok());
        assert!(dns_label("kube-system").is_ok());
        for bad in ["", "-a", "a-", "Upper", "a.b", "a\nb", &"x".repeat(64)] {
            assert!(dns_label(bad).is_err(), "{bad:?}");
        }
    }
}
