//! Air-gap delivery end to end, with no Docker engine: `scripts/release-bundle.sh` builds the
//! bundle (chart, image as an OCI archive, INSTALL.md, SHA256SUMS); its checksums verify and the
//! chart lints; skopeo pushes the image into a real loopback registry (Debian `docker-registry`,
//! TLS and htpasswd auth); a real containerd with runc, started here on a temporary root and
//! socket, pulls it from there and runs it with the image's own entrypoint and command. The
//! container must resolve `localhost` (its kubeconfig points at `https://localhost:PORT`, a real
//! kube-apiserver on loopback holding its rules in a ConfigMap), serve `/readyz` and `/mutate`,
//! run as non-root, have no shell, and exit 0 on SIGTERM within its grace period. The image carries exactly the files
//! it needs and the Dockerfile's settings, and one commit gives one digest.

#[path = "airgap/bundle.rs"]
mod bundle;
mod common;
#[path = "airgap/containerd.rs"]
mod containerd;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bundle::{Bundle, ROOT, archive_json, run};
use common::components::require_all;
use common::registry::{Auth, PASSWORD, Registry, USER, docker_config, free_port};
use common::{Client, Protocol, eventually, patched_object, sample, try_http_get};
use containerd::{Container, Containerd};
use mirrorswap::certs::{Issued, issue};
use serde_json::Value;

const REPOSITORY: &str = "airgap-images/mirrorswap";
const GRACE: Duration = Duration::from_secs(5);
const COMPONENTS: [&str; 5] = ["skopeo", "containerd", "ctr", "runc", "buildah"];

fn helm() -> PathBuf {
    let path = Path::new(ROOT).join("target/tools/bin/helm");
    assert!(path.exists(), "{} is missing: run scripts/install-tools.sh (scripts/test.sh does)", path.display());
    path
}

/// A registry (TLS, basic auth) holding the bundle's image as `REPOSITORY:VERSION`, pushed by
/// skopeo; `None` to skip (see `require`).
async fn mirror_with_image(bundle: &Bundle, skopeo: &Path) -> Option<Registry> {
    let registry = Registry::start(Auth::Basic).await?;
    push(&registry, skopeo, bundle, &format!("{}/{REPOSITORY}:{}", registry.host(), bundle.version));
    Some(registry)
}

/// skopeo's certificate directory for the registry (`ca.crt`).
fn cert_dir(registry: &Registry) -> PathBuf {
    registry.ca_path().parent().expect("certs.d").to_owned()
}

/// A loopback address whose port was free a moment ago.
fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// `skopeo copy` of the bundle's archive to `destination` (`HOST:PORT/REPO:TAG`), as INSTALL.md says.
fn push(registry: &Registry, skopeo: &Path, bundle: &Bundle, destination: &str) {
    let policy = registry.dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"default": [{"type": "insecureAcceptAnything"}]}"#).unwrap();
    let source = format!("oci-archive:{}:mirrorswap:{}", bundle.archive.display(), bundle.version);
    run(
        "skopeo copy",
        Command::new(skopeo)
            .env("TMPDIR", registry.dir.path())
            .arg("--policy")
            .arg(&policy)
            .args(["copy", "--quiet", "--preserve-digests", "--dest-cert-dir"])
            .arg(cert_dir(registry))
            .args(["--dest-creds", &format!("{USER}:{PASSWORD}"), &source, &format!("docker://{destination}")]),
    );
}

/// The image config the registry serves for `image` (`skopeo inspect --config`).
fn registry_image_config(registry: &Registry, skopeo: &Path, image: &str) -> Value {
    let text = run(
        "skopeo inspect",
        Command::new(skopeo).args(["inspect", "--config", "--cert-dir"]).arg(cert_dir(registry)).args([
            "--creds",
            &format!("{USER}:{PASSWORD}"),
            &format!("docker://{image}"),
        ]),
    );
    serde_json::from_str(&text).unwrap()
}

/// `ctr images pull` through a hosts directory trusting the registry's CA, with its credentials.
fn pull(containerd: &Containerd, registry: &Registry, image: &str) {
    let host = registry.host();
    let hosts_dir = containerd.dir.path().join("certs.d");
    let ca = containerd.dir.path().join("registry-ca.pem");
    std::fs::write(&ca, &registry.ca.ca_pem).unwrap();
    std::fs::create_dir_all(hosts_dir.join(&host)).unwrap();
    let hosts = format!(
        "server = \"https://{host}\"\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
        ca.display()
    );
    std::fs::write(hosts_dir.join(&host).join("hosts.toml"), hosts).unwrap();
    let output = containerd
        .command()
        .args(["images", "pull", "--snapshotter", "native", "--hosts-dir"])
        .arg(&hosts_dir)
        .arg("--tlscacert")
        .arg(&ca)
        .args(["--user", &format!("{USER}:{PASSWORD}"), image])
        .output()
        .unwrap();
    assert!(output.status.success(), "ctr images pull {image}: {}", String::from_utf8_lossy(&output.stderr));
}

/// The digest containerd recorded for `image`.
fn pulled_digest(containerd: &Containerd, image: &str) -> String {
    let output = containerd.ctr(&["images", "ls", &format!("name=={image}")]);
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|line| line.starts_with(image)).unwrap_or_else(|| panic!("{image} not in:\n{text}"));
    line.split_whitespace().nth(2).expect("REF TYPE DIGEST ...").to_owned()
}

/// What the container gets in `/config` (mounted read-only) and its serving certificate.
struct Config {
    dir: tempfile::TempDir,
    serving: Issued,
}

impl Config {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // The container runs as 65532: the directory and its files must be readable by it.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let serving = issue("airgap webhook CA", &["localhost".into(), "127.0.0.1".into()], 1).unwrap();
        let config = Self { dir, serving };
        config.write("tls.crt", &config.serving.cert_pem);
        config.write("tls.key", &config.serving.key_pem);
        config
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
}

/// The mirrorswap container as a Deployment would run it, configured through `MIRRORSWAP_*`.
struct Webhook<'a> {
    container: Container<'a>,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl<'a> Webhook<'a> {
    fn start(containerd: &'a Containerd, image: &str, id: &str, config: &Config, env: &[(&str, String)]) -> Self {
        let (listen, admin) = (free_addr(), free_addr());
        let mut options = vec![
            "--mount".to_owned(),
            format!("type=bind,src={},dst=/config,options=rbind:ro", config.dir.path().display()),
        ];
        let base = [
            ("MIRRORSWAP_LISTEN", listen.to_string()),
            ("MIRRORSWAP_ADMIN_LISTEN", admin.to_string()),
            ("MIRRORSWAP_TLS_CERT", "/config/tls.crt".to_owned()),
            ("MIRRORSWAP_TLS_KEY", "/config/tls.key".to_owned()),
            ("MIRRORSWAP_SHUTDOWN_GRACE", format!("{}s", GRACE.as_secs())),
        ];
        for (name, value) in base.iter().chain(env) {
            options.extend(["--env".to_owned(), format!("{name}={value}")]);
        }
        Self { container: containerd.run(image, id, &options), listen, admin }
    }

    /// Waits until `/readyz` answers 200; panics with the container's log otherwise.
    async fn wait_ready(&mut self, within: Duration) {
        let admin = self.admin;
        let ready = eventually(within, async || {
            matches!(try_http_get(admin, "/readyz").await, Ok((200, _))) || self.container.exit_status().is_some()
        })
        .await;
        let exited = self.container.exit_status();
        assert!(ready && exited.is_none(), "not ready within {within:?} (exit: {exited:?}):\n{}", self.container.log());
    }

    async fn review(&self, config: &Config, request: &Value) -> Value {
        Client::connect(self.listen, &config.serving.ca_pem, Protocol::Http1).await.review(request).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bundle_installs_from_a_loopback_mirror_and_runs_under_containerd() {
    let Some([skopeo, containerd_bin, ctr, _runc, _buildah]) = require_all(COMPONENTS) else { return };
    let bundle = bundle::get();

    // Carried in: the checksums verify, the chart lints.
    let checked =
        run("sha256sum --check", Command::new("sha256sum").args(["--check", "SHA256SUMS"]).current_dir(&bundle.dir));
    let files: BTreeSet<&str> = checked.lines().map(|line| line.trim_end_matches(": OK")).collect();
    let expected = [format!("mirrorswap-{}.tgz", bundle.version), format!("mirrorswap-{}.oci.tar", bundle.version)];
    assert_eq!(files, BTreeSet::from([expected[0].as_str(), expected[1].as_str(), "INSTALL.md"]), "{checked}");
    run("helm lint", Command::new(helm()).arg("lint").arg(&bundle.chart));

    // Pushed to the mirror with skopeo; the mirror's config says non-root, digest kept.
    let Some(registry) = mirror_with_image(bundle, &skopeo).await else { return };
    let image = format!("{}/{REPOSITORY}:{}", registry.host(), bundle.version);
    let config = registry_image_config(&registry, &skopeo, &image);
    assert_eq!(config["config"]["User"], "65532:65532");

    // Pulled by containerd from the mirror, by the digest the bundle names.
    let containerd = Containerd::start(&containerd_bin, &ctr);
    pull(&containerd, &registry, &image);
    assert_eq!(pulled_digest(&containerd, &image), bundle.digest);

    // The rules come from a ConfigMap of a real API server on loopback, reached as
    // localhost:PORT: ready means the binary resolved `localhost` inside the image.
    let Some(plane) = common::control_plane::shared() else { return };
    let client = plane.client().await;
    common::kube_objects::create_namespace(&client, "mirrorswap", serde_json::json!({})).await;
    let mirror = "harbor.example.org/airgap-images";
    let rules = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rules", "namespace": "mirrorswap"},
        "data": {"MIRROR_REGISTRIES": format!("docker.io::{mirror}/docker.io")}});
    let path = "/api/v1/namespaces/mirrorswap/configmaps";
    common::kube_objects::send(&client, "POST", path, "application/json", Some(&rules)).await.ok();
    let files = Config::new();
    let text = plane.kubeconfig_as("airgap", Some("system:masters"));
    let by_name = text.replace("https://127.0.0.1:", "https://localhost:");
    assert_ne!(by_name, text, "the kubeconfig names the API server by address");
    files.write("kubeconfig", &by_name);
    let env = [
        ("MIRRORSWAP_RULES_CONFIGMAP", "mirrorswap/rules".to_owned()),
        ("MIRRORSWAP_KUBECONFIG", "/config/kubeconfig".to_owned()),
    ];
    let mut webhook = Webhook::start(&containerd, &image, "mirrorswap-airgap", &files, &env);
    webhook.wait_ready(Duration::from_secs(30)).await;
    let read = plane.audit_events().iter().any(|event| {
        event["user"]["username"] == "airgap"
            && event["requestURI"].as_str().is_some_and(|uri| uri.contains("/namespaces/mirrorswap/configmaps"))
    });
    assert!(read, "the container read its rules through the API server");

    // It answers /mutate with a patch.
    let request = sample("pod.json");
    let response = webhook.review(&files, &request).await;
    let patched = patched_object(&request, &response);
    assert_eq!(patched["spec"]["containers"][0]["image"], format!("{mirror}/docker.io/nginx:1.27"));

    // No shell, while exec itself works.
    let version = webhook.container.exec("version", &["/mirrorswap", "--version"]);
    assert!(version.status.success(), "exec /mirrorswap: {}", String::from_utf8_lossy(&version.stderr));
    let shell = webhook.container.exec("shell", &["/bin/sh", "-c", "true"]);
    assert!(!shell.status.success(), "the image has a shell");
    let error = String::from_utf8_lossy(&shell.stderr);
    assert!(error.contains("no such file or directory"), "exec /bin/sh failed for another reason: {error}");

    // SIGTERM: a clean exit within the grace period.
    let exit = webhook.container.kill_and_wait("SIGTERM", GRACE + Duration::from_secs(2));
    let log = webhook.container.log();
    assert_eq!(exit.and_then(|status| status.code()), Some(0), "exit after SIGTERM: {exit:?}\n{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
}

/// `--swap-policy exists` inside the image: the resolver finds `localhost`, and the
/// registry client trusts the mirror's CA and logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_image_checks_the_mirror_at_localhost_with_swap_policy_exists() {
    let Some([skopeo, containerd_bin, ctr, _runc, _buildah]) = require_all(COMPONENTS) else { return };
    let bundle = bundle::get();
    let Some(registry) = mirror_with_image(bundle, &skopeo).await else { return };
    // The mirror, named as the operator names it: localhost:PORT (resolved inside the image).
    let mirror = format!("localhost:{}", registry.port);
    push(&registry, &skopeo, bundle, &format!("{}/hub/nginx:1.27", registry.host()));

    let containerd = Containerd::start(&containerd_bin, &ctr);
    let image = format!("{}/{REPOSITORY}:{}", registry.host(), bundle.version);
    pull(&containerd, &registry, &image);

    let files = Config::new();
    files.write("rules.conf", &format!("docker.io::{mirror}/hub\nquay.io::{mirror}/quay\n"));
    files.write("registry-ca.pem", &registry.ca.ca_pem);
    files.write("auth.json", &docker_config(&mirror, USER, PASSWORD));
    let env = [
        ("MIRRORSWAP_RULES", "/config/rules.conf".to_owned()),
        ("MIRRORSWAP_SWAP_POLICY", "exists".to_owned()),
        ("MIRRORSWAP_REGISTRY_AUTH", "/config/auth.json".to_owned()),
        ("MIRRORSWAP_REGISTRY_CA", "/config/registry-ca.pem".to_owned()),
        ("MIRRORSWAP_CHECK_TIMEOUT", "2s".to_owned()),
    ];
    let mut webhook = Webhook::start(&containerd, &image, "mirrorswap-exists", &files, &env);
    webhook.wait_ready(Duration::from_secs(30)).await;

    let request = sample("pod.json");
    let response = webhook.review(&files, &request).await;
    let patched = patched_object(&request, &response);
    // nginx is in the mirror: rewritten. nginx-exporter is not: kept, with a warning.
    assert_eq!(patched["spec"]["containers"][0]["image"], format!("{mirror}/hub/nginx:1.27"), "{response}");
    assert_eq!(patched["spec"]["containers"][1]["image"], "quay.io/prometheus/nginx-exporter:1.3.0", "{response}");
    let warnings = response["response"]["warnings"].to_string();
    assert!(warnings.contains("nginx-exporter"), "no warning for the kept image: {response}");

    let exit = webhook.container.kill_and_wait("SIGTERM", GRACE + Duration::from_secs(2));
    assert_eq!(exit.and_then(|status| status.code()), Some(0), "{}", webhook.container.log());
}

#[test]
fn one_commit_gives_one_image_digest() {
    let Some(_) = require_all(["buildah"]) else { return };
    let bundle = bundle::get();
    assert_eq!(bundle.digest, bundle.previous_digest, "two bundle runs of one commit gave two image digests");
}

/// The hex digest of the image's single layer.
fn layer_hex(bundle: &Bundle) -> String {
    let manifest = archive_json(&bundle.archive, &bundle.digest);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    layers[0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned()
}

/// The paths (and owner, mode) of the image's single layer.
fn layer_entries(bundle: &Bundle) -> Vec<(String, String, String)> {
    let hex = layer_hex(bundle);
    let listing = run(
        "list the layer",
        Command::new("sh")
            .arg("-c")
            .arg(format!("tar -xOf '{}' blobs/sha256/{hex} | tar -tvz --numeric-owner", bundle.archive.display())),
    );
    listing
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (
                fields[5].trim_start_matches("./").trim_end_matches('/').to_owned(),
                fields[1].to_owned(),
                fields[0].to_owned(),
            )
        })
        .filter(|(path, ..)| !path.is_empty() && path != ".")
        .collect()
}

#[test]
fn the_image_holds_exactly_the_runtime_files_and_no_shell() {
    let Some(_) = require_all(["buildah"]) else { return };
    let bundle = bundle::get();
    let entries = layer_entries(bundle);
    let files: BTreeSet<String> =
        entries.iter().filter(|(_, _, mode)| !mode.starts_with('d')).map(|(path, ..)| path.clone()).collect();

    // The libraries and the loader: what ldd lists for the release binary, at the same paths.
    let ldd = run("ldd", Command::new("ldd").arg(Path::new(ROOT).join("target/release/mirrorswap")));
    let libraries = ldd.lines().filter_map(|line| {
        let path = line.split_whitespace().find(|field| field.starts_with('/'))?;
        Some(path.trim_start_matches('/').to_owned())
    });
    let mut expected: BTreeSet<String> = libraries.collect();
    expected.extend(
        [
            "mirrorswap",
            "etc/passwd",
            "etc/group",
            "etc/nsswitch.conf",
            "etc/hosts",
            "etc/ssl/certs/ca-certificates.crt",
        ]
        .map(String::from),
    );
    for package in ["libc6", "libgcc-s1", "ca-certificates"] {
        expected.insert(format!("usr/share/doc/{package}/copyright"));
        expected.insert(format!("var/lib/dpkg/status.d/{package}"));
    }
    assert_eq!(files, expected, "the image's files");
    assert!(!files.iter().any(|file| file.starts_with("bin/") || file.starts_with("usr/bin/")), "{files:?}");

    let owner =
        |path: &str| entries.iter().find(|entry| entry.0 == path).map(|entry| (entry.1.clone(), entry.2.clone()));
    assert_eq!(owner("home/nonroot"), Some(("65532/65532".into(), "drwx------".into())));
    assert_eq!(owner("tmp"), Some(("0/0".into(), "drwxrwxrwt".into())));
    assert_eq!(owner("mirrorswap"), Some(("0/0".into(), "-rwxr-xr-x".into())));

    let layer_text = |path: &str| {
        let layer = format!("tar -xOf '{}' blobs/sha256/{}", bundle.archive.display(), layer_hex(bundle));
        run(path, Command::new("sh").arg("-c").arg(format!("{layer} | tar -xOz {path}")))
    };
    assert!(layer_text("etc/passwd").contains("nonroot:x:65532:65532:"));
    assert!(layer_text("etc/group").contains("nonroot:x:65532:"));
    assert!(layer_text("etc/nsswitch.conf").contains("hosts: files dns"));
}

/// `KEY=VALUE` pairs of a Dockerfile instruction's arguments, quotes removed.
fn pairs(arguments: &str) -> Vec<(String, String)> {
    let (mut pairs, mut rest) = (Vec::new(), arguments.trim());
    while let Some((key, value)) = rest.split_once('=') {
        let (value, tail) = match value.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').expect("closing quote"),
            None => value.split_once(' ').unwrap_or((value, "")),
        };
        pairs.push((key.trim().to_owned(), value.to_owned()));
        rest = tail.trim();
    }
    pairs
}

#[test]
fn the_dockerfile_builds_an_image_with_the_same_settings() {
    let Some(_) = require_all(["buildah"]) else { return };
    let bundle = bundle::get();
    let manifest = archive_json(&bundle.archive, &bundle.digest);
    let image = archive_json(&bundle.archive, manifest["config"]["digest"].as_str().unwrap());
    let config = &image["config"];

    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let final_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(final_stage.starts_with("scratch"), "the Dockerfile's image is built from scratch too");
    assert!(final_stage.contains("COPY --from=build /out/rootfs/ /"), "the same file set (scripts/image-rootfs.sh)");
    let (mut args, mut env, mut labels, mut ports) = (Vec::new(), Vec::new(), serde_json::Map::new(), Vec::new());
    for line in final_stage.lines() {
        let Some((instruction, arguments)) = line.split_once(' ') else { continue };
        match instruction {
            "USER" => assert_eq!(config["User"], arguments),
            "WORKDIR" => assert_eq!(config["WorkingDir"], arguments),
            "ENTRYPOINT" => assert_eq!(config["Entrypoint"], serde_json::from_str::<Value>(arguments).unwrap()),
            "CMD" => assert_eq!(config["Cmd"], serde_json::from_str::<Value>(arguments).unwrap()),
            "EXPOSE" => ports.extend(arguments.split_whitespace().map(String::from)),
            "ARG" => args.extend(pairs(arguments)),
            "ENV" => env.extend(pairs(arguments).into_iter().map(|(key, value)| format!("{key}={value}"))),
            "LABEL" => labels.extend(pairs(arguments).into_iter().map(|(key, value)| (key, Value::String(value)))),
            _ => {}
        }
    }
    assert_eq!(config["Env"], serde_json::json!(env));
    let exposed: BTreeSet<String> = config["ExposedPorts"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(exposed, ports.into_iter().collect::<BTreeSet<_>>());

    // Labels from build arguments ($VERSION, ...) hold the bundle's values; the rest are equal.
    let image_labels = config["Labels"].as_object().unwrap();
    assert_eq!(image_labels.keys().collect::<Vec<_>>(), labels.keys().collect::<Vec<_>>());
    for (key, value) in &labels {
        let value = value.as_str().unwrap();
        match value.strip_prefix('$') {
            Some(arg) => assert!(args.iter().any(|(name, _)| name == arg), "{key}: ${arg} is no ARG"),
            None => assert_eq!(image_labels[key], value, "{key}"),
        }
    }
    assert!(args.contains(&("VERSION".into(), bundle.version.clone())), "ARG VERSION defaults to {}", bundle.version);
    assert_eq!(image_labels["org.opencontainers.image.version"], bundle.version.as_str());
    let head = run("git rev-parse", Command::new("git").args(["rev-parse", "HEAD"]).current_dir(ROOT));
    assert_eq!(image_labels["org.opencontainers.image.revision"], head.trim());
}
