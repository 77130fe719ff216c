//! `mirrorswap certs` run as an operator rotates with it: the CA is kept across runs so a
//! certificate still served verifies against the new caBundle, `--new-ca` keeps the old CA in
//! the bundle for one run, every file ends up 0600, and `--namespace` moves the whole
//! kustomization (rendered by real `kubectl kustomize` from target/tools).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use base64::Engine;
use common::tools::kustomize;
use common::{Client, Protocol, sample, serve_args};
use mirrorswap::server::start;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::ServerCertVerifier;
use tokio_rustls::rustls::{RootCertStore, crypto::ring::default_provider};
use yaml_rust2::{Yaml, YamlLoader};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SERVICE: &str = "mirrorswap.mirrorswap.svc";
const FILES: [&str; 7] =
    ["ca.crt", "ca.key", "tls.crt", "tls.key", "secret.yaml", "ca-bundle.txt", "kustomization.yaml"];

/// `mirrorswap certs --out-dir OUT EXTRA…`, over manifests/base unless EXTRA names a --base.
fn certs(out: &Path, extra: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirrorswap"));
    command.args(["certs", "--days", "2", "--out-dir"]).arg(out).args(extra);
    if !extra.contains(&"--base") {
        command.arg("--base").arg(Path::new(ROOT).join("manifests/base"));
    }
    command.output().expect("run mirrorswap certs")
}

fn certs_ok(out: &Path, extra: &[&str]) -> String {
    let output = certs(out, extra);
    assert!(output.status.success(), "certs {extra:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stderr).unwrap()
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

/// The caBundle this run set: ca-bundle.txt, decoded to PEM (it equals the Secret's ca.crt).
fn bundle(out: &Path) -> String {
    let text = read(out.join("ca-bundle.txt"));
    let secret = &YamlLoader::load_from_str(&read(out.join("secret.yaml"))).unwrap()[0];
    assert_eq!(secret["data"]["ca.crt"].as_str(), Some(text.trim()), "the Secret's ca.crt is the caBundle");
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(text.trim()).unwrap()).unwrap()
}

fn count_certificates(pem: &str) -> usize {
    CertificateDer::pem_slice_iter(pem.as_bytes()).count()
}

/// Whether the serving certificate `cert_pem` verifies for `name` against the roots of `bundle_pem`,
/// as the API server checks it (webpki).
fn verifies(cert_pem: &str, bundle_pem: &str, name: &str) -> bool {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(default_provider())).build().unwrap();
    let leaf = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now()).is_ok()
}

#[tokio::test]
async fn a_second_run_keeps_the_ca_so_the_served_certificate_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let first_stderr = certs_ok(&out, &[]);
    assert!(first_stderr.contains("CA new"), "{first_stderr}");
    let served = dir.path().join("served");
    std::fs::create_dir(&served).unwrap();
    for file in ["tls.crt", "tls.key"] {
        std::fs::copy(out.join(file), served.join(file)).unwrap();
    }
    let first_ca = read(out.join("ca.crt"));

    let second_stderr = certs_ok(&out, &[]);
    assert!(second_stderr.contains("CA reused"), "{second_stderr}");
    let second_bundle = bundle(&out);
    assert_eq!(second_bundle, first_ca, "the same CA, alone in the bundle");
    assert_ne!(read(out.join("tls.crt")), read(served.join("tls.crt")), "a new serving certificate");
    let first_cert = read(served.join("tls.crt"));
    assert!(verifies(&first_cert, &second_bundle, SERVICE), "old certificate, new caBundle");
    assert!(verifies(&read(out.join("tls.crt")), &second_bundle, SERVICE), "new certificate, new caBundle");
    // The check can fail: a certificate of another CA does not verify against this bundle.
    let other = dir.path().join("other");
    certs_ok(&other, &[]);
    assert!(!verifies(&read(other.join("tls.crt")), &second_bundle, SERVICE));

    // And over real TLS: the server still presenting the first certificate is trusted by a
    // client holding the second run's caBundle, as the API server would be after the re-apply.
    let rules = dir.path().join("rules.conf");
    std::fs::write(&rules, "docker.io::harbor.example.org/hub\n").unwrap();
    let path = |file: PathBuf| file.display().to_string();
    let argv: Vec<String> = ["mirrorswap", "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
        .into_iter()
        .map(String::from)
        .chain(["--tls-cert".into(), path(served.join("tls.crt")), "--tls-key".into(), path(served.join("tls.key"))])
        .chain(["--rules".into(), path(rules)])
        .collect();
    let running = start(serve_args(&argv)).await.expect("serves the first run's certificate");
    let mut client = Client::connect_as(running.webhook_addr, &second_bundle, Protocol::Http1, SERVICE).await;
    let answer = client.review(&sample("pod.json")).await;
    assert_eq!(answer["response"]["allowed"], true);
    running.shutdown(std::time::Duration::from_secs(5)).await.unwrap();
}

#[test]
fn a_new_ca_shares_the_bundle_with_the_old_one_for_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    certs_ok(&out, &[]);
    let old_ca = read(out.join("ca.crt"));
    let old_cert = read(out.join("tls.crt"));

    let stderr = certs_ok(&out, &["--new-ca"]);
    assert!(stderr.contains("previous CA"), "{stderr}");
    let new_ca = read(out.join("ca.crt"));
    assert_ne!(new_ca, old_ca, "a new CA");
    assert_eq!(count_certificates(&new_ca), 1, "ca.crt is the signing CA alone");
    let rotating = bundle(&out);
    assert_eq!(count_certificates(&rotating), 2, "old and new CA");
    assert!(rotating.contains(old_ca.trim()) && rotating.contains(new_ca.trim()));
    let new_cert = read(out.join("tls.crt"));
    assert!(verifies(&old_cert, &rotating, SERVICE), "the certificate still served verifies");
    assert!(verifies(&new_cert, &rotating, SERVICE), "the new certificate verifies");
    assert!(!verifies(&old_cert, &new_ca, SERVICE), "the new CA alone does not sign the old one");

    // The next run signs with the new CA and drops the old one.
    certs_ok(&out, &[]);
    let settled = bundle(&out);
    assert_eq!(settled, new_ca);
    assert!(!verifies(&old_cert, &settled, SERVICE));
    assert!(verifies(&new_cert, &settled, SERVICE));
    assert!(verifies(&read(out.join("tls.crt")), &settled, SERVICE));
}

#[test]
fn an_external_ca_signs_and_its_key_stays_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let ca = mirrorswap::certs::Ca::generate("platform CA", 30).unwrap();
    let (cert, key) = (dir.path().join("platform-ca.crt"), dir.path().join("platform-ca.key"));
    std::fs::write(&cert, &ca.cert_pem).unwrap();
    std::fs::write(&key, &ca.key_pem).unwrap();
    let out = dir.path().join("out");
    certs_ok(&out, &[]); // a CA of its own first, whose key must not stay beside ca.crt
    let own_cert = read(out.join("tls.crt"));
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    certs_ok(&out, &["--ca-cert", &cert_arg, "--ca-key", &key_arg]);
    assert!(!out.join("ca.key").exists(), "the CA key is not copied, and the stale one is gone");
    assert_eq!(read(out.join("ca.crt")), ca.cert_pem);
    // A change of CA: the certificate still served (the own CA's) verifies during the switch.
    let switching = bundle(&out);
    assert_eq!(count_certificates(&switching), 2);
    assert!(verifies(&own_cert, &switching, SERVICE) && verifies(&read(out.join("tls.crt")), &switching, SERVICE));
    certs_ok(&out, &["--ca-cert", &cert_arg, "--ca-key", &key_arg]);
    assert_eq!(bundle(&out), ca.cert_pem, "the next run: the platform CA alone");
    assert!(verifies(&read(out.join("tls.crt")), &ca.cert_pem, SERVICE));

    // ca.crt without ca.key: the next plain run refuses rather than issuing a CA silently.
    let output = certs(&out, &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--ca-cert/--ca-key") && stderr.contains("--new-ca"), "{stderr}");
    // A key that is not the CA's own is refused, naming it.
    let other = mirrorswap::certs::Ca::generate("other", 1).unwrap();
    std::fs::write(&key, &other.key_pem).unwrap();
    let output = certs(&out, &["--ca-cert", &cert_arg, "--ca-key", &key_arg]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not belong"), "{output:?}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn every_file_ends_up_0600_even_when_it_existed_readable() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // Files of another tool or an older run, world-readable (not ca.crt: that would be a CA).
    for file in FILES.iter().filter(|file| !file.starts_with("ca.")) {
        std::fs::write(out.join(file), "old\n").unwrap();
        std::fs::set_permissions(out.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    certs_ok(&out, &[]);
    for file in FILES {
        assert_eq!(mode(&out.join(file)), 0o600, "{file} after the first run");
    }
    // A second run over files made readable since: the CA is reused, its key was exposed.
    for file in FILES {
        std::fs::set_permissions(out.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let stderr = certs_ok(&out, &[]);
    assert!(stderr.contains("readable by others"), "{stderr}");
    for file in FILES {
        assert_eq!(mode(&out.join(file)), 0o600, "{file} after the second run");
    }
}

#[test]
fn namespace_moves_every_object_of_the_kustomization() {
    for base in ["base", "opt-in", "workloads", "opt-in-workloads"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let base_dir = Path::new(ROOT).join("manifests").join(base).display().to_string();
        certs_ok(&out, &["--namespace", "other", "--base", &base_dir]);
        let documents = kustomize(&out);
        assert!(documents.len() >= 8, "{base}: {} objects", documents.len());
        for doc in &documents {
            let kind = doc["kind"].as_str().unwrap();
            let name = doc["metadata"]["name"].as_str().unwrap();
            match kind {
                "Namespace" => assert_eq!(name, "other", "{base}: the Namespace object"),
                "MutatingWebhookConfiguration" => {
                    let webhooks = doc["webhooks"].as_vec().unwrap();
                    for webhook in webhooks {
                        let service = &webhook["clientConfig"]["service"];
                        assert_eq!(service["namespace"].as_str(), Some("other"), "{base}: service reference");
                        let ca = webhook["clientConfig"]["caBundle"].as_str().unwrap();
                        assert_eq!(ca, read(out.join("ca-bundle.txt")).trim(), "{base}: caBundle");
                        let excluded = webhook["namespaceSelector"]["matchExpressions"]
                            .as_vec()
                            .unwrap()
                            .iter()
                            .find(|e| e["key"].as_str() == Some("kubernetes.io/metadata.name"))
                            .expect("namespace exclusion");
                        let values: Vec<_> =
                            excluded["values"].as_vec().unwrap().iter().filter_map(Yaml::as_str).collect();
                        assert_eq!(values, ["other", "kube-system"], "{base}: its own namespace is never sent");
                    }
                }
                _ => assert_eq!(doc["metadata"]["namespace"].as_str(), Some("other"), "{base}: {kind}/{name}"),
            }
        }
        let rendered = format!("{documents:?}");
        assert!(!rendered.contains("String(\"mirrorswap\"), String(\"kube-system\")"), "{base}");
        // The certificate names the Service where it now lives.
        let bundle = bundle(&out);
        let cert = read(out.join("tls.crt"));
        assert!(
            verifies(&cert, &bundle, "mirrorswap.other.svc")
                && verifies(&cert, &bundle, "mirrorswap.other.svc.cluster.local")
        );
        assert!(!verifies(&cert, &bundle, SERVICE), "{base}: not the old namespace");
    }
}
