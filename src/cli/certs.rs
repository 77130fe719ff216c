//! `mirrorswap certs`: issue a CA and a serving certificate for the webhook
//! Service, and write what the plain-manifest install needs: the TLS Secret
//! manifest, the `caBundle` for the webhook configuration, and a
//! kustomization that puts both on top of `manifests/`.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use clap::Args;

/// Arguments of `mirrorswap certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Namespace of the webhook Service.
    #[arg(long, env = "MIRRORSWAP_NAMESPACE", default_value = "mirrorswap", value_parser = dns_label)]
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
    /// Validity in days, of the CA and the certificate.
    #[arg(long, env = "MIRRORSWAP_DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Directory to write ca.crt, tls.crt, tls.key, secret.yaml, ca-bundle.txt and kustomization.yaml.
    #[arg(long, env = "MIRRORSWAP_OUT_DIR", default_value = "certs/out")]
    pub out_dir: PathBuf,
    /// The kustomization that kustomization.yaml builds on.
    #[arg(long, env = "MIRRORSWAP_BASE", default_value = "manifests/base")]
    pub base: PathBuf,
}

/// Issues the certificates, writes the files and prints the `caBundle`.
pub fn run(args: &CertsArgs) -> anyhow::Result<ExitCode> {
    let service_name = format!("{}.{}.svc", args.service, args.namespace);
    let mut names = vec![service_name.clone(), format!("{service_name}.cluster.local")];
    names.extend(args.extra_names.iter().cloned());
    let issued = crate::certs::issue(&format!("mirrorswap CA ({})", args.namespace), &names, args.days)
        .context("cannot issue the certificates")?;
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    let ca_bundle = b64(&issued.ca_pem);

    fs::create_dir_all(&args.out_dir).with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let base = relative_to(&args.base, &args.out_dir)?;
    let secret = format!(
        "# TLS Secret of the mirrorswap webhook, written by `mirrorswap certs`. Keep it private.\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    \
         app.kubernetes.io/name: mirrorswap\ntype: kubernetes.io/tls\ndata:\n  ca.crt: {ca}\n  tls.crt: {cert}\n  \
         tls.key: {key}\n",
        name = args.secret_name,
        namespace = args.namespace,
        ca = ca_bundle,
        cert = b64(&issued.cert_pem),
        key = b64(&issued.key_pem),
    );
    // The Secret's ca.crt is base64 of the CA's PEM, which is exactly what caBundle holds.
    let kustomization = format!(
        "# Written by `mirrorswap certs`: {base} plus the TLS Secret, with every webhook's caBundle\n\
         # set from the Secret's ca.crt. Apply with `kubectl apply -k {out}`.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {base}\n  - secret.yaml\n\
         replacements:\n  - source:\n      kind: Secret\n      name: {name}\n      fieldPath: data.ca\\.crt\n    \
         targets:\n      - select:\n          kind: MutatingWebhookConfiguration\n        fieldPaths:\n          \
         - webhooks.*.clientConfig.caBundle\n        options:\n          create: true\n",
        base = base.display(),
        out = args.out_dir.display(),
        name = args.secret_name,
    );
    let files = [
        ("ca.crt", issued.ca_pem.as_str()),
        ("tls.crt", issued.cert_pem.as_str()),
        ("tls.key", issued.key_pem.as_str()),
        ("secret.yaml", secret.as_str()),
        ("ca-bundle.txt", &format!("{ca_bundle}\n")),
        ("kustomization.yaml", kustomization.as_str()),
    ];
    for (name, content) in files {
        write_private(&args.out_dir.join(name), content)?;
    }
    eprintln!(
        "wrote {} (CA and certificate for {}, valid {} days); apply with: kubectl apply -k {}",
        args.out_dir.display(),
        names.join(", "),
        args.days,
        args.out_dir.display()
    );
    eprintln!("caBundle for the MutatingWebhookConfiguration:");
    println!("{ca_bundle}");
    Ok(ExitCode::SUCCESS)
}

/// Writes a file readable by its owner only (it may hold a private key).
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(content.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
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
