//! `mirrorswap sync` between two real registries on loopback (Debian's docker-registry, TLS
//! from a test CA each, htpasswd logins), images pushed to the source by skopeo: a
//! two-platform index sharing a base layer, an image referenced by digest only, a cosign-style
//! signature tag. What the mirror holds afterwards is read back with skopeo and pulled by a
//! real containerd; what was sent is counted in the mirror's access log.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::components::require_all;
use common::registry::{Auth, Layout, Logged, PASSWORD, Registry, USER, docker_config};
use serde_json::{Value, json};

/// The source's images, as the tests pushed them.
struct Source {
    registry: Registry,
    /// `src/app:1`: the index, and its two platform manifests' digests.
    index: String,
    children: Vec<String>,
    /// `src/tool`, referenced by digest only.
    tool: String,
    /// The signature tag of the index, and its digest.
    signature_tag: String,
    signature: String,
}

fn digest_of(descriptor: &Value) -> String {
    descriptor["digest"].as_str().unwrap().to_owned()
}

fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    format!("sha256:{}", digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect::<String>())
}

impl Source {
    async fn start(dir: &Path) -> Option<Self> {
        let registry = Registry::start(Auth::Basic).await?;
        let layout = Layout::new(&dir.join("layout"));
        let base = layout.layer("base.txt", b"a base layer both platforms share");
        let amd64 = layout.image("linux", "amd64", &[base.clone(), layout.layer("app", b"amd64 binary")]);
        let arm64 = layout.image("linux", "arm64", &[base, layout.layer("app", b"arm64 binary")]);
        let index = layout.index(&[amd64.clone(), arm64.clone()]);
        layout.tag("app", &index);
        let tool = layout.image("linux", "amd64", &[layout.layer("tool", b"a tool pinned by digest")]);
        layout.tag("tool", &tool);
        // A cosign-style signature of the index: `sha256-HEX.sig`, a manifest whose layer is
        // the signed payload.
        let payload = json!({"critical": {"image": {"docker-manifest-digest": digest_of(&index)}}});
        let signed = layout.blob("application/vnd.dev.cosign.simplesigning.v1+json", payload.to_string().as_bytes());
        let config = layout.blob("application/vnd.oci.image.config.v1+json", b"{}");
        let signature = layout.manifest(&json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": [signed],
        }));
        layout.tag("sig", &signature);
        let signature_tag = format!("{}.sig", digest_of(&index).replace(':', "-"));
        for (tag, reference) in [
            ("app", "src/app:1".to_owned()),
            ("tool", "src/tool:pushed".to_owned()),
            ("sig", format!("src/app:{signature_tag}")),
        ] {
            registry.push_layout(&layout.dir, tag, &reference).await;
        }
        Some(Self {
            registry,
            index: digest_of(&index),
            children: vec![digest_of(&amd64), digest_of(&arm64)],
            tool: digest_of(&tool),
            signature_tag,
            signature: digest_of(&signature),
        })
    }
}

/// Files a run of `sync` reads: the rules, both logins, both CAs.
struct Setup {
    dir: tempfile::TempDir,
    rules: PathBuf,
    source_auth: PathBuf,
    mirror_auth: PathBuf,
}

impl Setup {
    fn new(source: &Registry, mirror: &Registry) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let rules = write("rules.conf", &format!("{}::{}/copies\n", source.host(), mirror.host()));
        let source_auth = write("source.json", &source.docker_config());
        let mirror_auth = write("mirror.json", &mirror.docker_config());
        Self { dir, rules, source_auth, mirror_auth }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The flags every run takes: rules, logins, both CAs.
    fn args(&self, source: &Registry, mirror: &Registry) -> Vec<String> {
        let path = |path: &Path| path.display().to_string();
        vec![
            "sync".into(),
            "--rules".into(),
            path(&self.rules),
            "--source-auth".into(),
            path(&self.source_auth),
            "--registry-auth".into(),
            path(&self.mirror_auth),
            "--registry-ca".into(),
            path(&source.ca_path()),
            "--registry-ca".into(),
            path(&mirror.ca_path()),
        ]
    }
}

/// Runs `mirrorswap ARGS` off the runtime (the hostile sources answer on it).
async fn mirrorswap(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_mirrorswap")).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn blob_writes(log: &[Logged]) -> Vec<&Logged> {
    log.iter().filter(|logged| logged.is_blob_write()).collect()
}

#[tokio::test]
async fn sync_copies_the_sources_bytes_and_a_rerun_sends_nothing() {
    let Some([containerd, ctr]) = require_all(["containerd", "ctr"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(source) = Source::start(dir.path()).await else { return };
    let Some(mirror) = Registry::start(Auth::Basic).await else { return };
    let setup = Setup::new(&source.registry, &mirror);
    let (src, dst) = (source.registry.host(), mirror.host());
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app, namespace: team}}\nspec:\n  template:\n    spec:\n      \
         containers:\n      - {{name: app, image: \"{src}/src/app:1\"}}\n      initContainers:\n      - {{name: tool, image: \
         \"{src}/src/tool@{}\"}}\n",
        source.tool
    );
    let manifests = setup.write("deploy.yaml", &deployment);
    let mut args = setup.args(&source.registry, &mirror);
    args.extend(["-f".into(), manifests.display().to_string()]);

    // A dry run lists what would move and writes nothing.
    let mut dry = args.clone();
    dry.push("--dry-run".into());
    let output = mirrorswap(dry).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).matches("would copy").count(), 3, "{}", text(&output));
    let log = mirror.access_log();
    assert!(blob_writes(&log).is_empty() && !log.iter().any(|logged| logged.method == "PUT"), "{log:?}");

    let output = mirrorswap(args.clone()).await;
    let report = text(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).matches(" copied ").count(), 2, "{report}");

    // Byte for byte: the index, both platforms, the signature tag, the pinned image and its anchor.
    let anchor = source.tool.replace(':', "-");
    let pairs = [
        ("src/app:1".to_owned(), "copies/src/app:1".to_owned()),
        (format!("src/app@{}", source.children[0]), format!("copies/src/app@{}", source.children[0])),
        (format!("src/app@{}", source.children[1]), format!("copies/src/app@{}", source.children[1])),
        (format!("src/app:{}", source.signature_tag), format!("copies/src/app:{}", source.signature_tag)),
        (format!("src/tool@{}", source.tool), format!("copies/src/tool@{}", source.tool)),
        (format!("src/tool@{}", source.tool), format!("copies/src/tool:{anchor}")),
    ];
    for (at_source, at_mirror) in &pairs {
        let expected = source.registry.raw(at_source).await.unwrap_or_else(|| panic!("{at_source} at the source"));
        let copied = mirror.raw(at_mirror).await.unwrap_or_else(|| panic!("{at_mirror} is not at the mirror"));
        assert_eq!(sha256(&copied), sha256(&expected), "{at_mirror}");
    }
    assert_eq!(sha256(&mirror.raw("copies/src/app:1").await.unwrap()), source.index);
    assert_eq!(
        sha256(&mirror.raw(&format!("copies/src/app:{}", source.signature_tag)).await.unwrap()),
        source.signature
    );
    // The base layer both platforms share was sent once.
    let first = mirror.access_log();
    let commits: Vec<&Logged> = blob_writes(&first).into_iter().filter(|logged| logged.method == "PUT").collect();
    let mut committed: Vec<&str> =
        commits.iter().map(|logged| logged.path.rsplit("sha256").next().unwrap_or("")).collect();
    let all = committed.len();
    committed.sort_unstable();
    committed.dedup();
    assert_eq!(committed.len(), all, "a blob was committed twice: {commits:?}");

    // A second run sends nothing and costs about one HEAD per image.
    let output = mirrorswap(args.clone()).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).matches(" present ").count(), 2, "{}", text(&output));
    let second = &mirror.access_log()[first.len()..];
    assert!(blob_writes(second).is_empty(), "the rerun sent blobs: {second:?}");
    let heads = second.iter().filter(|logged| logged.method == "HEAD").count();
    eprintln!("rerun at the mirror: {} requests, {heads} HEAD, for 2 images and 1 signature tag", second.len());
    assert!(second.iter().all(|logged| logged.method == "HEAD") && heads <= 3, "{second:?}");

    // A real containerd pulls the pinned copy by digest from the mirror.
    let daemon_dir = tempfile::tempdir().unwrap();
    let d = daemon_dir.path().display();
    let config = daemon_dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n[grpc]\n  address = \"{d}/ctd.sock\"\n"),
    )
    .unwrap();
    let mut daemon = Command::new(&containerd)
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(daemon_dir.path().join("containerd.log")).unwrap())
        .spawn()
        .unwrap();
    let socket = daemon_dir.path().join("ctd.sock");
    let started = std::time::Instant::now();
    while !socket.exists() && started.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // containerd speaks plain http to a loopback registry unless its hosts.toml says https.
    let hosts = daemon_dir.path().join("certs.d").join(&dst);
    std::fs::create_dir_all(&hosts).unwrap();
    let ca = mirror.ca_path().display().to_string();
    std::fs::write(
        hosts.join("hosts.toml"),
        format!("server = \"https://{dst}\"\n[host.\"https://{dst}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{ca}\"\n"),
    )
    .unwrap();
    let image = format!("{dst}/copies/src/tool@{}", source.tool);
    let fetched = Command::new(&ctr)
        .arg("--address")
        .arg(&socket)
        .args(["-n", "mirrorswap-sync", "content", "fetch", "--hosts-dir"])
        .arg(daemon_dir.path().join("certs.d"))
        .args(["--user", &format!("{USER}:{PASSWORD}"), &image])
        .output()
        .unwrap();
    let listed = Command::new(&ctr)
        .arg("--address")
        .arg(&socket)
        .args(["-n", "mirrorswap-sync", "content", "ls", "-q"])
        .output()
        .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(fetched.status.success(), "ctr content fetch {image}: {}", text(&fetched));
    assert!(String::from_utf8_lossy(&listed.stdout).lines().any(|line| line == source.tool), "{}", text(&listed));
}

/// A reference that pins a digest its tag does not name at the source now (an older build, an
/// index's child) is written under its anchor tag only: the mirror's tag stays where it was.
#[tokio::test]
async fn a_pinned_digest_does_not_re_point_the_mirrors_tag() {
    let dir = tempfile::tempdir().unwrap();
    let Some(source) = Source::start(dir.path()).await else { return };
    let Some(mirror) = Registry::start(Auth::Basic).await else { return };
    let setup = Setup::new(&source.registry, &mirror);
    let src = source.registry.host();
    let child = &source.children[0];
    for (name, image) in [("tag.yaml", format!("{src}/src/app:1")), ("pinned.yaml", format!("{src}/src/app:1@{child}"))]
    {
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: app, namespace: team}}\nspec:\n  containers:\n  - {{name: app, \
             image: \"{image}\"}}\n"
        );
        let mut args = setup.args(&source.registry, &mirror);
        args.extend(["-f".into(), setup.write(name, &pod).display().to_string()]);
        let output = mirrorswap(args).await;
        assert_eq!(output.status.code(), Some(0), "{image}: {}", text(&output));
    }
    let at = async |reference: &str| mirror.raw(reference).await.map(|bytes| sha256(&bytes));
    assert_eq!(at("copies/src/app:1").await.as_ref(), Some(&source.index), "the mirror's tag moved");
    assert_eq!(at(&format!("copies/src/app:{}", child.replace(':', "-"))).await.as_ref(), Some(child));
}

#[tokio::test]
async fn a_second_target_mounts_and_platforms_pick_a_subset() {
    let dir = tempfile::tempdir().unwrap();
    let Some(source) = Source::start(dir.path()).await else { return };
    let Some(mirror) = Registry::start(Auth::Basic).await else { return };
    let setup = Setup::new(&source.registry, &mirror);
    let (src, dst) = (source.registry.host(), mirror.host());
    // `audit -o copy-list --copy-list-node-paths` lines: one source, two targets.
    let list = setup
        .write("copy-list.txt", &format!("{src}/src/app:1 {dst}/hub/app:1\n{src}/src/app:1 {dst}/hub/library/app:1\n"));
    let mut args = setup.args(&source.registry, &mirror);
    args.extend(["--images".into(), list.display().to_string(), "-o".into(), "json".into()]);
    let output = mirrorswap(args).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let reports: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 1, "{reports}");
    assert_eq!(reports[0]["also"], json!([format!("{dst}/hub/library/app:1")]));
    // The images' config ×2, base, amd64 and arm64 layers; the signature's config and payload.
    assert_eq!(reports[0]["mounted"], 7, "{reports}");
    let log = mirror.access_log();
    let second_path =
        blob_writes(&log).into_iter().filter(|logged| logged.path.starts_with("/v2/hub/library/")).collect::<Vec<_>>();
    assert!(
        second_path.iter().all(|logged| logged.method == "POST" && logged.path.contains("mount=")),
        "{second_path:?}"
    );
    for target in ["hub/app:1", "hub/library/app:1"] {
        assert_eq!(sha256(&mirror.raw(target).await.unwrap()), source.index, "{target}");
    }

    // --platform: a new index of linux/amd64 alone; refused for a digest reference.
    let list = setup.write(
        "one.txt",
        &format!("{src}/src/app:1 {dst}/amd64/app:1\n{src}/src/tool@{0} {dst}/amd64/tool@{0}\n", source.tool),
    );
    let mut args = setup.args(&source.registry, &mirror);
    args.extend(["--images".into(), list.display().to_string(), "--platform".into(), "linux/amd64".into()]);
    let output = mirrorswap(args).await;
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains(&format!("the index's digest changes from {}", source.index)), "{report}");
    assert!(report.contains("failed: referenced by digest: --platform would change the digest"), "{report}");
    let copied: Value = serde_json::from_slice(&mirror.raw("amd64/app:1").await.unwrap()).unwrap();
    assert_eq!(copied["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(copied["manifests"][0]["digest"], source.children[0].as_str());
    assert!(mirror.raw(&format!("amd64/app@{}", source.children[1])).await.is_none(), "arm64 stayed behind");

    // --require-platforms: the index covers both and is copied; the single-platform tool (by
    // its config) and an index cut down by --platform fail naming what they lack, unwritten.
    let list = setup.write(
        "required.txt",
        &format!("{src}/src/app:1 {dst}/both/app:1\n{src}/src/tool@{0} {dst}/both/tool@{0}\n", source.tool),
    );
    let mut args = setup.args(&source.registry, &mirror);
    args.extend(["--images".into(), list.display().to_string()]);
    args.extend(["--require-platforms".into(), "linux/amd64,linux/arm64".into()]);
    let output = mirrorswap(args).await;
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains("failed: the source's image lacks linux/arm64 (--require-platforms linux/amd64,linux/arm64)"),
        "{report}"
    );
    assert_eq!(sha256(&mirror.raw("both/app:1").await.unwrap()), source.index);
    assert!(mirror.raw(&format!("both/tool@{}", source.tool)).await.is_none(), "the tool was not written");
    let list = setup.write("cut.txt", &format!("{src}/src/app:1 {dst}/cut/app:1\n"));
    let mut args = setup.args(&source.registry, &mirror);
    args.extend(["--images".into(), list.display().to_string(), "--platform".into(), "linux/amd64".into()]);
    args.extend(["--require-platforms".into(), "linux/arm64".into()]);
    let output = mirrorswap(args).await;
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains("lacks linux/arm64"), "{report}");
    assert!(mirror.raw("cut/app:1").await.is_none(), "nothing under the tag");
}

/// A small image as a hostile source serves it: its manifest, config and layer.
struct Served {
    manifest: Vec<u8>,
    digest: String,
    config: (String, Vec<u8>),
    layer: (String, Vec<u8>),
}

impl Served {
    fn new(layer: &[u8]) -> Self {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let (config_digest, layer_digest) = (sha256(&config), sha256(layer));
        let manifest = json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        Self {
            digest: sha256(&manifest),
            manifest,
            config: (config_digest, config),
            layer: (layer_digest, layer.to_vec()),
        }
    }

    /// The answer to a manifest or config request of `app`, if it is one (`None`: the caller's).
    fn answer(&self, path: &str) -> Option<Reply> {
        if path == "/v2/app/manifests/1" || path == format!("/v2/app/manifests/{}", self.digest) {
            return Some(
                Reply::status(200)
                    .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .header("docker-content-digest", &self.digest)
                    .body(self.manifest.clone()),
            );
        }
        (path == format!("/v2/app/blobs/{}", self.config.0)).then(|| Reply::status(200).body(self.config.1.clone()))
    }
}

use common::hostile::{Hostile, Reply};

#[tokio::test]
async fn failures_are_said_and_leave_nothing_under_the_tag() {
    let Some(mirror) = Registry::start(Auth::Basic).await else { return };
    let Some(real) = Registry::start(Auth::Basic).await else { return };
    real.push("app", "1").await;
    let ca = mirrorswap::certs::issue("hostile source CA", &["127.0.0.1".into()], 1).unwrap();
    let good = Served::new(b"the layer as its manifest says");
    let served = std::sync::Arc::new(Served::new(b"the layer as its manifest says"));
    let layer_path = format!("/v2/app/blobs/{}", good.layer.0);
    let script = |layer: Reply| {
        let (served, layer_path) = (std::sync::Arc::clone(&served), layer_path.clone());
        move |seen: &common::hostile::Seen| match served.answer(&seen.path) {
            Some(reply) => reply,
            None if seen.path == layer_path => layer.clone(),
            None => Reply::status(404),
        }
    };
    let limited = Hostile::start(Some(&ca), |_| Reply::status(429).header("retry-after", "1")).await;
    let stalled = Hostile::start(Some(&ca), |_| Reply::stall()).await;
    let trickling =
        Hostile::start(Some(&ca), script(Reply::status(200).trickled(64 << 10, std::time::Duration::from_secs(5))))
            .await;
    let mismatched =
        Hostile::start(Some(&ca), script(Reply::status(200).body(&b"the layer NOT as its manifest says"[..30]))).await;

    let setup = Setup::new(&real, &mirror);
    let hostile_ca = setup.write("hostile-ca.pem", &ca.ca_pem);
    let wrong = |host: &str| docker_config(host, USER, "wrong password");
    let wrong_source = setup.write("wrong-source.json", &wrong(&real.host()));
    let wrong_mirror = setup.write("wrong-mirror.json", &wrong(&mirror.host()));
    let real_host = real.host();
    // (case, source registry, extra flags, what the failed line says)
    let cases: [(&str, String, Vec<String>, String); 6] = [
        (
            "source-login",
            real_host.clone(),
            vec!["--source-auth".into(), wrong_source.display().to_string()],
            format!("failed: source {real_host}: unauthorized (401): credentials for {real_host} rejected"),
        ),
        (
            "mirror-login",
            real_host.clone(),
            vec!["--registry-auth".into(), wrong_mirror.display().to_string()],
            format!("failed: mirror {0}: unauthorized (401): credentials for {0} rejected", mirror.host()),
        ),
        (
            "rate-limited",
            limited.host(),
            vec!["--retries".into(), "1".into()],
            "rate limited (429), retry after 1s".into(),
        ),
        (
            "stalled",
            stalled.host(),
            vec!["--timeout".into(), "1s".into(), "--retries".into(), "0".into()],
            "timeout after 1s".into(),
        ),
        (
            "stalled-blob",
            trickling.host(),
            vec!["--timeout".into(), "1s".into(), "--retries".into(), "0".into()],
            format!("failed: source {}: timeout after 1s", trickling.host()),
        ),
        (
            "mismatch",
            mismatched.host(),
            Vec::new(),
            format!("failed: blob {}: the source sent bytes whose digest is", good.layer.0),
        ),
    ];
    for (case, host, extra, says) in cases {
        let list =
            setup.write(&format!("{case}.txt"), &format!("{host}/app:1 {}/copies/{case}/app:1\n", mirror.host()));
        let mut args = setup.args(&real, &mirror);
        // A case's login replaces the good one.
        if let Some(at) = args.iter().position(|arg| extra.first() == Some(arg)) {
            args.drain(at..at + 2);
        }
        args.extend([
            "--registry-ca".into(),
            hostile_ca.display().to_string(),
            "--images".into(),
            list.display().to_string(),
        ]);
        args.extend(extra);
        let output = mirrorswap(args).await;
        let report = text(&output);
        assert_eq!(output.status.code(), Some(1), "{case}: {report}");
        assert!(report.contains(&says), "{case}: expected `{says}` in:\n{report}");
        assert!(!report.contains(PASSWORD) && !report.contains("wrong password"), "{case}: a secret in:\n{report}");
        assert!(mirror.raw(&format!("copies/{case}/app:1")).await.is_none(), "{case}: something is under the tag");
    }
    // The mismatched layer was never committed.
    let authorization = format!("Basic {}", base64_login());
    let (status, _) =
        mirror.get(&format!("/v2/copies/mismatch/app/blobs/{}", good.layer.0), Some(&authorization)).await.unwrap();
    assert_eq!(status, 404, "the blob whose digest did not match is at the mirror");
    assert!(!mirror.access_log().iter().any(|logged| logged.commits(&good.layer.0["sha256:".len()..])));
}

fn base64_login() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
}

/// docker-registry 2.8 does not serve the OCI 1.1 referrers API (`GET /v2/NAME/referrers/
/// DIGEST` is 404 there), so the referrers path is tested against a small loopback fake
/// source that serves one image and that endpoint; the mirror is the real registry.
#[tokio::test]
async fn referrers_come_along_from_a_source_that_lists_them() {
    let Some(mirror) = Registry::start(Auth::Basic).await else { return };
    let ca = mirrorswap::certs::issue("referrers source CA", &["127.0.0.1".into()], 1).unwrap();
    let image = std::sync::Arc::new(Served::new(b"an image with an SBOM"));
    let sbom = b"{\"spdxVersion\":\"SPDX-2.3\"}".to_vec();
    let config = b"{}".to_vec();
    let referrer = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/spdx+json", "digest": sha256(&sbom), "size": sbom.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.digest, "size": image.manifest.len()},
    })
    .to_string()
    .into_bytes();
    let referrer_digest = sha256(&referrer);
    let listed = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": referrer_digest,
                       "size": referrer.len(), "artifactType": "application/spdx+json"}],
    })
    .to_string();
    let script = {
        let image = std::sync::Arc::clone(&image);
        let referrer_digest = referrer_digest.clone();
        move |seen: &common::hostile::Seen| {
            let path = seen.path.as_str();
            if let Some(reply) = image.answer(path) {
                return reply;
            }
            let blob = |bytes: &[u8]| Reply::status(200).body(bytes.to_vec());
            match path {
                _ if path == format!("/v2/app/blobs/{}", image.layer.0) => blob(&image.layer.1),
                _ if path == format!("/v2/app/referrers/{}", image.digest) => Reply::status(200)
                    .header("content-type", "application/vnd.oci.image.index.v1+json")
                    .body(listed.clone()),
                _ if path == format!("/v2/app/manifests/{referrer_digest}") => Reply::status(200)
                    .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .body(referrer.clone()),
                _ if path == format!("/v2/app/blobs/{}", sha256(b"{}")) => blob(b"{}"),
                _ if path == format!("/v2/app/blobs/{}", sha256(b"{\"spdxVersion\":\"SPDX-2.3\"}")) => {
                    blob(b"{\"spdxVersion\":\"SPDX-2.3\"}")
                }
                _ => Reply::status(404),
            }
        }
    };
    let source = Hostile::start(Some(&ca), script).await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let list = write("list.txt", &format!("{}/app:1 {}/copies/app:1\n", source.host(), mirror.host()));
    let args = [
        "sync".to_owned(),
        "--images".into(),
        list,
        "--registry-auth".into(),
        write("mirror.json", &mirror.docker_config()),
        "--registry-ca".into(),
        write("ca.pem", &ca.ca_pem),
        "--registry-ca".into(),
        mirror.ca_path().display().to_string(),
    ];
    let output = mirrorswap(args.to_vec()).await;
    let report = text(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert!(report.contains("does not serve the OCI referrers API"), "{report}");
    let copied = mirror.raw(&format!("copies/app@{referrer_digest}")).await.expect("the referrer is at the mirror");
    assert_eq!(sha256(&copied), referrer_digest);
    assert_eq!(sha256(&mirror.raw("copies/app:1").await.unwrap()), image.digest);

    // Through an archive: the referrer comes along by digest, found by its subject.
    let archive = dir.path().join("referrers.tar").display().to_string();
    let mut to_archive = args[..3].to_vec();
    to_archive.extend(["--registry-ca".into(), args[6].clone(), "--to-archive".into(), archive.clone()]);
    let output = mirrorswap(to_archive).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let rules = write("rules.conf", &format!("{}::{}/fromarchive\n", source.host(), mirror.host()));
    let from_archive = [
        "sync".to_owned(),
        "--rules".into(),
        rules,
        "--from-archive".into(),
        archive,
        "--registry-auth".into(),
        args[4].clone(),
        "--registry-ca".into(),
        args[8].clone(),
    ];
    let output = mirrorswap(from_archive.to_vec()).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let copied =
        mirror.raw(&format!("fromarchive/app@{referrer_digest}")).await.expect("the referrer, from the archive");
    assert_eq!(sha256(&copied), referrer_digest);

    let asked = source.seen();
    assert!(asked.iter().any(|seen| seen.path == format!("/v2/app/referrers/{}", image.digest)), "{asked:?}");
    assert!(asked.iter().all(|seen| seen.authorization.is_none()), "the mirror's login went to the source: {asked:?}");
}

/// A TCP proxy to `upstream` (TLS passes through) that forwards answers at most `rate` bytes
/// a second (0: as they come) and counts what it forwarded.
struct Throttle {
    addr: std::net::SocketAddr,
    forwarded: std::sync::Arc<std::sync::atomic::AtomicU64>,
    rate: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Throttle {
    async fn start(upstream: std::net::SocketAddr, rate: u64) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let forwarded = std::sync::Arc::new(AtomicU64::new(0));
        let rate = std::sync::Arc::new(AtomicU64::new(rate));
        let (counter, limit) = (std::sync::Arc::clone(&forwarded), std::sync::Arc::clone(&rate));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (counter, limit) = (std::sync::Arc::clone(&counter), std::sync::Arc::clone(&limit));
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                        let _ = server_write.shutdown().await;
                    });
                    let mut buffer = vec![0; 16 * 1024];
                    while let Ok(read) = server_read.read(&mut buffer).await {
                        if read == 0 || client_write.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                        counter.fetch_add(read as u64, Ordering::SeqCst);
                        let rate = limit.load(Ordering::SeqCst);
                        if rate > 0 {
                            tokio::time::sleep(std::time::Duration::from_secs_f64(read as f64 / rate as f64)).await;
                        }
                    }
                    up.abort();
                });
            }
        });
        Self { addr, forwarded, rate, task }
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sync_resumes_without_sending_finished_blobs_again() {
    use std::sync::atomic::Ordering;
    let Some(source) = Registry::start(Auth::Basic).await else { return };
    let Some(mirror) = Registry::start(Auth::Basic).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(&dir.path().join("layout"));
    const BIG: usize = 48 << 20;
    let small = layout.layer("small", b"a small layer sent before the kill");
    let big = layout.layer("big", &common::registry::noise(7, BIG));
    let image = layout.image("linux", "amd64", &[small.clone(), big.clone()]);
    layout.tag("big", &image);
    source.push_layout(&layout.dir, "big", "src/big:1").await;
    let config: Value = serde_json::from_slice(&layout.read(&image)).unwrap();
    let hex = |descriptor: &Value| descriptor["digest"].as_str().unwrap()["sha256:".len()..].to_owned();
    let (config_hex, small_hex, big_hex) = (hex(&config["config"]), hex(&small), hex(&big));

    let proxy = Throttle::start(source.addr(), 8 << 20).await;
    let setup = Setup::new(&source, &mirror);
    let via = proxy.addr.to_string();
    std::fs::write(&setup.source_auth, docker_config(&via, USER, PASSWORD)).unwrap();
    let list = setup.write("list.txt", &format!("{via}/src/big:1 {}/copies/big:1\n", mirror.host()));
    let mut args = setup.args(&source, &mirror);
    args.extend(["--images".into(), list.display().to_string(), "--report-peak-memory".into()]);

    let mut first =
        Command::new(env!("CARGO_BIN_EXE_mirrorswap")).args(&args).stdout(std::process::Stdio::null()).spawn().unwrap();
    let started = std::time::Instant::now();
    while proxy.forwarded.load(Ordering::SeqCst) < (BIG / 3) as u64 {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the big layer never streamed");
        assert!(first.try_wait().unwrap().is_none(), "sync ended before it was killed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let killed = mirror.access_log();
    let committed = |log: &[Logged], hex: &str| log.iter().filter(|logged| logged.commits(hex)).count();
    assert_eq!((committed(&killed, &config_hex), committed(&killed, &small_hex)), (1, 1), "{killed:?}");
    assert_eq!(committed(&killed, &big_hex), 0, "the big layer was committed before the kill");
    assert!(mirror.raw("copies/big:1").await.is_none(), "the tag is there before the image is");

    proxy.rate.store(0, Ordering::SeqCst);
    let output = mirrorswap(args).await;
    let report = text(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    let log = mirror.access_log();
    for hex in [&config_hex, &small_hex, &big_hex] {
        assert_eq!(committed(&log, hex), 1, "{hex} committed again or never: {report}");
    }
    assert_eq!(sha256(&mirror.raw("copies/big:1").await.unwrap()), sha256(&layout.read(&image)));
    let peak = report.lines().find(|line| line.starts_with("peak memory")).unwrap_or("peak memory: unknown");
    eprintln!("copying a {} MiB layer: {peak}", BIG >> 20);
    let kib: u64 = peak.split_whitespace().rev().nth(1).and_then(|value| value.parse().ok()).unwrap_or(u64::MAX);
    assert!(kib < 64 * 1024, "{peak}: the layer was held in memory");
}

/// The tar's regular files: path, where the data starts, and the bytes.
fn tar_files(path: &Path) -> Vec<(String, u64, Vec<u8>)> {
    use std::io::Read;
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let offset = entry.raw_file_position();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.push((name, offset, bytes));
    }
    files
}

/// The offline loop: `--to-archive` on the connected side, the source stopped, then
/// `--from-archive` into a fresh mirror (htpasswd login, TLS from the test CA) gives the
/// source's bytes; skopeo reads an entry of the archive; a damaged blob fails with the file and
/// digest and leaves nothing under the tag.
#[tokio::test]
async fn an_archive_carries_the_images_to_a_mirror_no_source_reaches() {
    let Some(skopeo) = common::components::require("skopeo") else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(mut source) = Source::start(dir.path()).await else { return };
    let Some(mirror) = Registry::start(Auth::Basic).await else { return };
    let setup = Setup::new(&source.registry, &mirror);
    let (src, dst) = (source.registry.host(), mirror.host());
    let app = format!("{src}/src/app:1");
    let tool = format!("{src}/src/tool@{}", source.tool);
    let list = setup.write("images.txt", &format!("{app}\n{tool}\n"));
    let archive = dir.path().join("images.tar");
    let path = |path: &Path| path.display().to_string();
    let to_archive = vec![
        "sync".to_owned(),
        "--rules".into(),
        path(&setup.rules),
        "--images".into(),
        path(&list),
        "--source-auth".into(),
        path(&setup.source_auth),
        "--registry-ca".into(),
        path(&source.registry.ca_path()),
        "--to-archive".into(),
        path(&archive),
    ];
    // A dry run writes nothing; --registry-auth makes no sense with --to-archive.
    let mut dry = to_archive.clone();
    dry.push("--dry-run".into());
    let output = mirrorswap(dry).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(!archive.exists(), "a dry run wrote the archive");
    let mut refused = to_archive.clone();
    refused.extend(["--registry-auth".into(), path(&setup.mirror_auth)]);
    let output = mirrorswap(refused).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("cannot be used with"), "{}", text(&output));

    // --platform: the archive holds a new index of linux/amd64 alone.
    let one = dir.path().join("amd64.tar");
    let mut amd64 = to_archive.clone();
    *amd64.last_mut().unwrap() = path(&one);
    amd64.extend([
        "--images".into(),
        path(&setup.write("app.txt", &format!("{app}\n"))),
        "--platform".into(),
        "linux/amd64".into(),
    ]);
    amd64.drain(3..5);
    let output = mirrorswap(amd64).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let files = tar_files(&one);
    let index: Value =
        serde_json::from_slice(&files.iter().find(|(name, _, _)| name == "index.json").unwrap().2).unwrap();
    let top = digest_of(&index["manifests"][0]);
    let top = files.iter().find(|(name, _, _)| name.ends_with(&top["sha256:".len()..])).unwrap();
    let top: Value = serde_json::from_slice(&top.2).unwrap();
    assert_eq!(top["manifests"].as_array().unwrap().len(), 1, "{top}");
    assert!(
        !files.iter().any(|(name, _, _)| name.ends_with(&source.children[1]["sha256:".len()..])),
        "arm64 came along"
    );

    let output = mirrorswap(to_archive).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).matches(" copied ").count(), 2, "{}", text(&output));
    let files = tar_files(&archive);
    let names: Vec<&str> = files.iter().map(|(name, _, _)| name.as_str()).collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a file twice in the tar: {names:?}");
    assert_eq!((names[0], names[names.len() - 2], names[names.len() - 1]), ("oci-layout", "index.json", "SHA256SUMS"));
    let index: Value = serde_json::from_slice(&files[names.len() - 2].2).unwrap();
    let sources: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["annotations"]["io.mirrorswap.source"].as_str())
        .collect();
    assert_eq!(sources, [app.as_str(), tool.as_str()], "{index}");
    let sums = String::from_utf8_lossy(&files[names.len() - 1].2).into_owned();
    for (name, _, bytes) in &files[..names.len() - 1] {
        let hex = &sha256(bytes)["sha256:".len()..];
        assert!(sums.contains(&format!("{hex}  {name}\n")), "{name} not in SHA256SUMS:\n{sums}");
    }
    let whole = std::fs::read_to_string(format!("{}.sha256", archive.display())).unwrap();
    assert_eq!(whole, format!("{}  images.tar\n", &sha256(&std::fs::read(&archive).unwrap())["sha256:".len()..]));
    // skopeo reads an entry by its reference.
    let copied = dir.path().join("copied");
    let read = Command::new(&skopeo)
        .args(["copy", "--quiet", &format!("oci-archive:{}:{app}", archive.display())])
        .arg(format!("dir:{}", copied.display()))
        .output()
        .unwrap();
    assert!(read.status.success(), "skopeo copy oci-archive: {}", text(&read));
    assert!(copied.join("manifest.json").exists());

    // What the mirror must hold, read before the source goes away.
    let anchor = source.tool.replace(':', "-");
    let pairs = [
        ("src/app:1".to_owned(), "copies/src/app:1".to_owned()),
        (format!("src/app@{}", source.children[0]), format!("copies/src/app@{}", source.children[0])),
        (format!("src/app@{}", source.children[1]), format!("copies/src/app@{}", source.children[1])),
        (format!("src/app:{}", source.signature_tag), format!("copies/src/app:{}", source.signature_tag)),
        (format!("src/tool@{}", source.tool), format!("copies/src/tool:{anchor}")),
    ];
    let mut expected = Vec::new();
    for (at_source, _) in &pairs {
        expected.push(sha256(&source.registry.raw(at_source).await.unwrap()));
    }
    source.registry.stop();

    let from_archive = |archive: &Path, rules: &Path| {
        vec![
            "sync".to_owned(),
            "--rules".into(),
            path(rules),
            "--registry-auth".into(),
            path(&setup.mirror_auth),
            "--registry-ca".into(),
            path(&mirror.ca_path()),
            "--from-archive".into(),
            path(archive),
        ]
    };
    // A dry run asks the mirror only and writes nothing.
    let mut dry = from_archive(&archive, &setup.rules);
    dry.push("--dry-run".into());
    let output = mirrorswap(dry).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    // Two rows and the summary line.
    assert_eq!(String::from_utf8_lossy(&output.stdout).matches("would copy").count(), 3, "{}", text(&output));
    assert!(!mirror.access_log().iter().any(|logged| logged.method != "HEAD" && logged.method != "GET"));
    let output = mirrorswap(from_archive(&archive, &setup.rules)).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    for ((_, at_mirror), expected) in pairs.iter().zip(&expected) {
        let copied = mirror.raw(at_mirror).await.unwrap_or_else(|| panic!("{at_mirror} is not at the mirror"));
        assert_eq!(&sha256(&copied), expected, "{at_mirror}");
    }
    let output = mirrorswap(from_archive(&archive, &setup.rules)).await;
    assert_eq!(String::from_utf8_lossy(&output.stdout).matches(" present ").count(), 2, "{}", text(&output));

    // One byte of the tool's layer flipped: that image fails naming the file and the digest.
    let tool_manifest = &files.iter().find(|(name, _, _)| name.ends_with(&source.tool["sha256:".len()..])).unwrap().2;
    let layer = digest_of(&serde_json::from_slice::<Value>(tool_manifest).unwrap()["layers"][0]);
    let offset = files.iter().find(|(name, _, _)| name.ends_with(&layer["sha256:".len()..])).unwrap().1;
    let damaged = dir.path().join("damaged.tar");
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes[offset as usize] ^= 0x20;
    std::fs::write(&damaged, bytes).unwrap();
    let rules = setup.write("damaged.conf", &format!("{src}::{dst}/damaged\n"));
    let output = mirrorswap(from_archive(&damaged, &rules)).await;
    let report = text(&output);
    eprintln!("from a damaged archive:\n{report}");
    assert_eq!(output.status.code(), Some(1), "{report}");
    let says = format!(
        "failed: archive {}: blobs/sha256/{}: its bytes' digest is sha256:",
        damaged.display(),
        &layer["sha256:".len()..]
    );
    assert!(report.contains(&says) && report.contains(&format!("not {layer}")), "expected `{says}` in:\n{report}");
    assert!(mirror.raw(&format!("damaged/src/tool:{anchor}")).await.is_none(), "the damaged image is tagged");
    assert!(mirror.raw(&format!("damaged/src/tool@{}", source.tool)).await.is_none(), "the damaged image is there");
    assert!(mirror.raw("damaged/src/app:1").await.is_some(), "the undamaged image was not copied: {report}");
}
