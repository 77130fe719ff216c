//! Node-level mirror config read by the runtimes' own code: a real containerd pulls through
//! the rendered hosts.toml, skopeo (containers/image, the library of CRI-O and Podman) resolves
//! through the rendered registries.conf, and the rendered K3s registries.yaml is read with K3s's
//! documented semantics and checked against `mirrorswap rewrite`. Sources end in `.invalid`,
//! so a runtime that falls back past the mirror reaches nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::components::require_all;
use common::registry::{Auth, PASSWORD, Registry, USER};

fn mirrorswap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mirrorswap")).args(args).output().expect("run mirrorswap")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn run_ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A private containerd on a temporary root, state and socket; killed on drop.
struct Containerd {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Containerd {
    fn start(binary: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let config =
            format!("version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n[grpc]\n  address = \"{d}/ctd.sock\"\n");
        let config = write(dir.path(), "config.toml", &config);
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new(binary).args(["--config", &config]).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        let socket = dir.path().join("ctd.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                std::fs::read_to_string(dir.path().join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, socket, _dir: dir }
    }
}

impl Containerd {
    /// Whether the content store of `namespace` holds `digest` (`ctr content ls`).
    fn has_content(&self, ctr: &Path, namespace: &str, digest: &str) -> bool {
        let listed = Command::new(ctr)
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", namespace, "content", "ls", "-q"])
            .output()
            .unwrap();
        run_ok(&listed, "ctr content ls").lines().any(|line| line == digest)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn containerd_pulls_through_the_rendered_hosts_toml_with_tls_and_auth() {
    let Some([containerd, ctr]) = require_all(["containerd", "ctr"]) else { return };
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    let hub_digest = registry.push("airgap/hub.invalid/app", "1").await;
    let quay_digest = registry.push("tool", "2").await;
    let dir = tempfile::tempdir().unwrap();
    // A host-level source with a path target (override_path) and one with a bare host target.
    let rules =
        write(dir.path(), "rules.conf", &format!("hub.invalid::{mirror}/airgap/hub.invalid\nquay.invalid::{mirror}\n"));
    let certs_d = dir.path().join("certs.d");
    let ca = registry.ca_path().display().to_string();
    run_ok(
        &mirrorswap(&["containerd", "--rules", &rules, "--out", certs_d.to_str().unwrap(), "--registry-ca", &ca]),
        "mirrorswap containerd",
    );
    let daemon = tokio::task::spawn_blocking(move || Containerd::start(&containerd)).await.unwrap();
    let user = format!("{USER}:{PASSWORD}");
    for (image, digest, repo) in
        [("hub.invalid/app:1", &hub_digest, "airgap/hub.invalid/app"), ("quay.invalid/tool:2", &quay_digest, "tool")]
    {
        let before = registry.manifest_requests_matching(&format!("/v2/{repo}/manifests/"));
        let output = Command::new(&ctr)
            .arg("--address")
            .arg(&daemon.socket)
            .args(["-n", "mirrorswap-test", "content", "fetch", "--hosts-dir"])
            .arg(&certs_d)
            .args(["--user", &user, image])
            .output()
            .unwrap();
        run_ok(&output, &format!("ctr content fetch {image}"));
        assert!(daemon.has_content(&ctr, "mirrorswap-test", digest), "{image}: {digest} not fetched");
        assert!(
            registry.manifest_requests_matching(&format!("/v2/{repo}/manifests/")) > before,
            "{image} did not reach the mirror at {repo}"
        );
    }
}

/// What a real `serve` with `rules` and `--docker-hub MODE` makes of `nginx:1.27`, the first
/// container of the sample Pod review, through `/mutate`.
async fn webhook_rewrite_of_nginx(rules: &str, mode: &str) -> String {
    let server = common::TestServer::start_with_rules(rules, "rules.conf", &["--docker-hub", mode]).await;
    let mut client = server.connect(common::Protocol::Http1).await;
    let request = common::sample("pod.json");
    assert_eq!(request["request"]["object"]["spec"]["containers"][0]["image"], "nginx:1.27");
    let response = client.review(&request).await;
    let object = common::patched_object(&request, &response);
    server.stop().await;
    object["spec"]["containers"][0]["image"].as_str().unwrap().to_owned()
}

/// The same official image, `nginx:1.27`, through the webhook's rewrite (a real server's
/// `/mutate`) and through a real
/// containerd pulling `docker.io/library/nginx:1.27` with the rendered hosts.toml: with
/// `--docker-hub canonical` both reach one repository of the loopback registry; with
/// `compat` the renderer's warning names the two repositories, which the copy list's node
/// paths then both fill. A proxy on a closed loopback port stands in for Docker Hub, so a
/// fallback past the mirror fails here instead of leaving the machine.
#[tokio::test]
async fn containerd_and_the_webhook_send_official_images_to_one_repository() {
    let Some([containerd, ctr]) = require_all(["containerd", "ctr"]) else { return };
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "rules.conf", &format!("docker.io::{mirror}/hub\n"));
    let ca = registry.ca_path().display().to_string();
    let daemon = tokio::task::spawn_blocking(move || Containerd::start(&containerd)).await.unwrap();
    let user = format!("{USER}:{PASSWORD}");
    let fetch = |certs_d: &Path| {
        Command::new(&ctr)
            .arg("--address")
            .arg(&daemon.socket)
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .args(["-n", "mirrorswap-official", "content", "fetch", "--hosts-dir"])
            .arg(certs_d)
            .args(["--user", &user, "docker.io/library/nginx:1.27"])
            .output()
            .unwrap()
    };
    let render = |mode: &str| {
        let certs_d = dir.path().join(format!("certs.d-{mode}"));
        let output = mirrorswap(&[
            "containerd",
            "--rules",
            &rules,
            "--docker-hub",
            mode,
            "--out",
            certs_d.to_str().unwrap(),
            "--registry-ca",
            &ca,
        ]);
        run_ok(&output, &format!("mirrorswap containerd --docker-hub {mode}"));
        (certs_d, String::from_utf8_lossy(&output.stderr).into_owned())
    };

    // canonical: one repository, no warning.
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let webhook = webhook_rewrite_of_nginx(&rules_text, "canonical").await;
    assert_eq!(webhook, format!("{mirror}/hub/library/nginx:1.27"));
    let digest = registry.push("hub/library/nginx", "1.27").await;
    let (certs_d, stderr) = render("canonical");
    assert!(!stderr.contains("disagree"), "{stderr}");
    let before = registry.manifest_requests_matching("/v2/hub/library/nginx/manifests/");
    run_ok(&fetch(&certs_d), "ctr content fetch through the canonical hosts.toml");
    assert!(
        registry.manifest_requests_matching("/v2/hub/library/nginx/manifests/") > before,
        "the node's pull reached hub/library/nginx"
    );
    assert!(daemon.has_content(&ctr, "mirrorswap-official", &digest), "the node fetched {digest}");

    // compat: the webhook's repository is another one, and the renderer says which two.
    let webhook = webhook_rewrite_of_nginx(&rules_text, "compat").await;
    assert_eq!(webhook, format!("{mirror}/hub/nginx:1.27"));
    let (certs_d, stderr) = render("compat");
    for part in [
        "warning: official Docker Hub images disagree: the webhook (--docker-hub compat) rewrites `nginx:1.27`"
            .to_owned(),
        format!("to `{mirror}/hub/nginx:1.27`"),
        format!(
            "a node pulls it as docker.io/library/nginx:1.27 through the containerd config from `{mirror}/hub/library/nginx:1.27`"
        ),
        "--docker-hub canonical".to_owned(),
        "--copy-list-node-paths".to_owned(),
    ] {
        assert!(stderr.contains(&part), "the warning lacks {part:?}:\n{stderr}");
    }
    // The copy list with node paths names both repositories, so one copy run serves both.
    let manifest = write(
        dir.path(),
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27\n",
    );
    let copy = run_ok(
        &mirrorswap(&["audit", "--rules", &rules, "-f", &manifest, "-o", "copy-list", "--copy-list-node-paths"]),
        "audit copy-list",
    );
    assert_eq!(
        copy.lines().collect::<Vec<_>>(),
        [
            format!("docker.io/library/nginx:1.27 {mirror}/hub/nginx:1.27"),
            format!("docker.io/library/nginx:1.27 {mirror}/hub/library/nginx:1.27"),
        ]
    );
    let webhook_digest = registry.push("hub/nginx", "1.27").await;
    assert_ne!(webhook_digest, digest);
    let before = registry.manifest_requests_matching("/v2/hub/library/nginx/manifests/");
    run_ok(&fetch(&certs_d), "ctr content fetch through the compat hosts.toml");
    assert!(
        registry.manifest_requests_matching("/v2/hub/library/nginx/manifests/") > before,
        "the node pulls the library/ path the warning names, not the webhook's"
    );
}

#[tokio::test]
async fn skopeo_resolves_host_and_path_level_sources_through_the_rendered_registries_conf() {
    let Some([skopeo]) = require_all(["skopeo"]) else { return };
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "rules.conf",
        &format!(
            "hub.invalid::{mirror}/airgap/hub\nhub.invalid/team::{mirror}/teams/t\nhub.invalid/direct::\n\
             paths.invalid/only/this::{mirror}/p\ncache.invalid::{mirror}/cache-\n"
        ),
    );
    let conf = dir.path().join("registries.conf");
    run_ok(&mirrorswap(&["crio", "--rules", &rules, "--out", conf.to_str().unwrap()]), "mirrorswap crio");
    let auth = write(dir.path(), "auth.json", &registry.docker_config());
    let cert_dir = registry.ca_path().parent().unwrap().to_path_buf();
    let inspect = |image: &str| {
        Command::new(&skopeo)
            .arg("--registries-conf")
            .arg(&conf)
            .args(["inspect", "--no-tags", "--retry-times", "0", "--authfile", &auth, "--cert-dir"])
            .arg(&cert_dir)
            .arg(format!("docker://{image}"))
            .output()
            .unwrap()
    };
    // (image, repository on the mirror where the webhook's rewrite also sends it)
    let table = [
        ("hub.invalid/app:1", "airgap/hub/app"),
        ("hub.invalid/team/svc:1", "teams/t/svc"),
        ("paths.invalid/only/this/img:1", "p/img"),
        ("cache.invalid/x/y:1", "cache-cache.invalid/x/y"),
    ];
    for (image, repo) in table {
        let digest = registry.push(repo, "1").await;
        let rewritten = run_ok(&mirrorswap(&["rewrite", "--rules", &rules, image]), "mirrorswap rewrite");
        assert_eq!(rewritten.trim(), format!("{mirror}/{repo}:1"), "the webhook agrees on {image}");
        let output = inspect(image);
        let json: serde_json::Value =
            serde_json::from_str(&run_ok(&output, &format!("skopeo inspect {image}"))).unwrap();
        assert_eq!(json["Digest"].as_str(), Some(digest.as_str()), "{image}");
    }
    // Outside every prefix, or under an empty target: the source, which does not exist.
    for image in ["paths.invalid/only/other:1", "hub.invalid/direct/x:1"] {
        registry.push(&image.split_once('/').unwrap().1.replace(":1", ""), "1").await;
        assert!(!inspect(image).status.success(), "{image} must not resolve to the mirror");
    }
}

/// K3s's reading of registries.yaml: the registry's first endpoint, then the rewrite whose
/// regex matches the repository (each registry's rewrites must be mutually exclusive, as K3s
/// tries them in map order), applied with Go's `${1}` template syntax, which `regex` shares.
fn k3s_pull(doc: &yaml_rust2::Yaml, image: &str) -> Option<String> {
    let (host, rest) = image.split_once('/')?;
    let (repo, tag) = rest.rsplit_once(':')?;
    let entry = &doc["mirrors"][host];
    let endpoint = entry["endpoint"][0].as_str()?;
    let mut matching = Vec::new();
    if let Some(rewrites) = entry["rewrite"].as_hash() {
        for (pattern, replacement) in rewrites {
            let re = regex::Regex::new(pattern.as_str().unwrap()).unwrap();
            if re.is_match(repo) {
                matching.push(re.replace(repo, replacement.as_str().unwrap()).into_owned());
            }
        }
    }
    assert!(matching.len() <= 1, "{image}: several rewrites match: {matching:?}");
    let repo = matching.pop().unwrap_or_else(|| repo.to_owned());
    Some(format!("{}/{repo}:{tag}", endpoint.strip_prefix("https://").unwrap()))
}

#[test]
fn k3s_registries_yaml_sends_each_image_where_the_webhook_does() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "rules.conf",
        "hub.invalid::harbor.example.org/airgap-images/hub.invalid\n\
         hub.invalid/bitnami::harbor.example.org/bitnami-mirror\n\
         hub.invalid/bitnami/legacy::harbor.example.org/old\n\
         hub.invalid/library::harbor.example.org\n\
         quay.invalid::mirror.example.org\n\
         quay.invalid/org::mirror.example.org/org-cache\n\
         gcr.invalid/project::harbor.example.org/gcr\n\
         reg.invalid:5000::harbor.example.org/cache-\n\
         [EXACT]hub.invalid/pinned:1::harbor.example.org/pinned:2\n\
         quay.invalid/elsewhere::other.example.org/x\n",
    );
    let auth = write(
        dir.path(),
        "config.json",
        &common::registry::docker_config("harbor.example.org", "robot$ci", "s3cret:x"),
    );
    let out = dir.path().join("k3s/registries.yaml");
    let output = mirrorswap(&[
        "k3s",
        "--rules",
        &rules,
        "--out",
        out.to_str().unwrap(),
        "--registry-auth",
        &auth,
        "--registry-ca",
        "/etc/ssl/mirror-ca.pem",
        "--insecure-registry",
        "mirror.example.org",
    ]);
    run_ok(&output, "mirrorswap k3s");
    assert!(output.stdout.is_empty(), "credentials never reach stdout unasked");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in [9, 10] {
        assert!(stderr.contains(&format!("{rules}:{line}: warning: `")), "line {line} listed:\n{stderr}");
    }
    let text = std::fs::read_to_string(&out).unwrap();
    let doc = &yaml_rust2::YamlLoader::load_from_str(&text).unwrap()[0];
    let images = [
        "hub.invalid/app:1",
        "hub.invalid/team/app:1",
        "hub.invalid/bitnami/redis:7",
        "hub.invalid/bitnamix/redis:7",
        "hub.invalid/bitnami/legacy/x:1",
        "hub.invalid/bitnami/legacyx:1",
        "hub.invalid/library/nginx:1.27",
        "quay.invalid/prometheus/node-exporter:v1",
        "quay.invalid/org/tool:1",
        "quay.invalid/orgs/tool:1",
        "gcr.invalid/project/a/b:1",
        "reg.invalid:5000/team/app:3",
    ];
    for image in images {
        let webhook = run_ok(&mirrorswap(&["rewrite", "--rules", &rules, image]), "mirrorswap rewrite");
        assert_eq!(k3s_pull(doc, image).as_deref(), Some(webhook.trim()), "{image} in\n{text}");
    }
    assert!(k3s_pull(doc, "ghcr.invalid/a/b:1").is_none(), "no rule, no mirror");
    let harbor = &doc["configs"]["harbor.example.org"];
    assert_eq!(harbor["auth"]["username"].as_str(), Some("robot$ci"));
    assert_eq!(harbor["auth"]["password"].as_str(), Some("s3cret:x"));
    assert_eq!(harbor["tls"]["ca_file"].as_str(), Some("/etc/ssl/mirror-ca.pem"));
    assert!(harbor["tls"]["insecure_skip_verify"].is_badvalue());
    let quay = &doc["configs"]["mirror.example.org"];
    assert!(quay["auth"].is_badvalue());
    assert_eq!(quay["tls"]["insecure_skip_verify"].as_bool(), Some(true));
    let printed = mirrorswap(&["k3s", "--rules", &rules, "--out", "-"]);
    assert!(run_ok(&printed, "k3s --out -").contains("mirrors:"));
}

#[test]
fn crio_and_k3s_list_what_they_cannot_express_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "rules.conf",
        "hub.invalid::m.example.org/hub\n[EXACT]a.invalid/x:1::m.example.org/x:1\n[REPLACE]*y*::m.example.org/y\ndefault::m.example.org/d\n",
    );
    for runtime in ["crio", "k3s"] {
        let out = dir.path().join(format!("{runtime}.out"));
        let output = mirrorswap(&[runtime, "--rules", &rules, "--out", out.to_str().unwrap()]);
        run_ok(&output, runtime);
        let stderr = String::from_utf8_lossy(&output.stderr);
        for (line, rule) in [(2, "[EXACT]a.invalid/x:1"), (3, "[REPLACE]*y*"), (4, "default::")] {
            assert!(
                stderr.contains(&format!("{rules}:{line}: warning: `{rule}")),
                "{runtime}: line {line} in\n{stderr}"
            );
        }
    }
}

/// The README's worked examples are what the commands write for examples/rules/node-mirrors.conf.
#[test]
fn readme_node_level_examples_are_what_the_commands_write() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme.split("### Node-level mirrors\n").nth(1).unwrap().split("\n## ").next().unwrap();
    let blocks: Vec<&str> = section
        .split("```")
        .skip(1)
        .step_by(2)
        .filter_map(|block| block.strip_prefix("toml\n").or_else(|| block.strip_prefix("yaml\n")))
        .collect();
    assert_eq!(blocks.len(), 3, "containerd, CRI-O and K3s examples");
    let rules = root.join("examples/rules/node-mirrors.conf").display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let auth =
        write(dir.path(), "config.json", &common::registry::docker_config("harbor.example.org", "robot$mirror", "x"));
    let ca = "/etc/ssl/certs/harbor-ca.pem";
    let certs_d = dir.path().join("certs.d");
    run_ok(
        &mirrorswap(&["containerd", "--rules", &rules, "--out", certs_d.to_str().unwrap(), "--registry-ca", ca]),
        "containerd",
    );
    let rendered = [
        std::fs::read_to_string(certs_d.join("docker.io/hosts.toml")).unwrap(),
        run_ok(&mirrorswap(&["crio", "--rules", &rules, "--out", "-"]), "crio"),
        run_ok(
            &mirrorswap(&["k3s", "--rules", &rules, "--out", "-", "--registry-auth", &auth, "--registry-ca", ca]),
            "k3s",
        ),
    ];
    for (block, text) in blocks.iter().zip(&rendered) {
        for line in block.lines().filter(|line| !line.trim().is_empty() && !line.contains('…')) {
            assert!(text.lines().any(|out| out == line), "README line {line:?} is not in\n{text}");
        }
    }
    assert!(!certs_d.join("gcr.io").exists(), "the README says path-level sources have no hosts.toml");
}

/// Every renderer says where the webhook's compat mode and the nodes part on official images
/// (and nothing under canonical), drops a rule for a Docker Hub alias a node never routes by,
/// and `--out -` prints: containerd each file after a line naming it.
#[test]
fn renderers_warn_where_nodes_and_webhook_part_and_print_with_out_dash() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "rules.conf",
        "docker.io::m.example.org/hub\nquay.io::m.example.org/quay\nindex.docker.io/team::m.example.org/team\n",
    );
    for runtime in ["containerd", "crio", "k3s"] {
        for (mode, warned) in [("compat", true), ("canonical", false)] {
            let output = mirrorswap(&[runtime, "--rules", &rules, "--docker-hub", mode, "--out", "-"]);
            let stdout = run_ok(&output, runtime);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let warning = "official Docker Hub images disagree: the webhook (--docker-hub compat) rewrites `nginx:1.27` \
                           to `m.example.org/hub/nginx:1.27`, but a node pulls it as docker.io/library/nginx:1.27";
            assert_eq!(stderr.contains(warning), warned, "{runtime} {mode}:\n{stderr}");
            assert!(stderr.contains("from `m.example.org/hub/library/nginx:1.27`") == warned, "{runtime} {mode}");
            if mode == "compat" {
                assert!(
                    stderr
                        .contains(&format!("{rules}:3: warning: `index.docker.io/team::m.example.org/team` is not in"))
                        && stderr.contains("runtimes name index.docker.io images docker.io"),
                    "{runtime}:\n{stderr}"
                );
            }
            assert!(!stdout.contains("index.docker.io"), "{runtime} {mode}: {stdout}");
            if runtime == "containerd" {
                let headers: Vec<&str> = stdout.lines().filter(|line| line.starts_with("# ==> ")).collect();
                assert_eq!(headers, ["# ==> docker.io/hosts.toml <==", "# ==> quay.io/hosts.toml <=="], "{stdout}");
                assert!(stderr.contains("2 registries mirrored"), "{stderr}");
            }
        }
    }
    assert!(!Path::new("-").exists(), "--out - is stdout, not a directory named -");
    let output = mirrorswap(&["crio", "--rules", &rules, "--out", "-", "--docker-hub", "canonical"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("3 prefixes routed, 0 rules not expressible"));
}

/// What `serve --pin-digest` writes, a real containerd pulls: the single image and the
/// two-platform index the webhook pinned (`MIRROR/REPO:TAG@sha256:…`) are fetched from the
/// mirror by digest, and after the tag moves to other content the pinned reference still
/// fetches exactly what was checked.
#[tokio::test]
async fn containerd_pulls_what_the_webhook_pinned_even_after_the_tag_moves() {
    use common::images::{push_image, push_index};
    let Some([containerd, ctr]) = require_all(["containerd", "ctr"]) else { return };
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    let amd64 = ("linux", "amd64", None);
    let single = push_image(&registry, "airgap/app", "1", "app 1", amd64).await;
    let index = push_index(&registry, "airgap/multi", "1", "multi 1", &[amd64, ("linux", "arm64", None)]).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = write(dir.path(), "auth.json", &registry.docker_config());
    let ca = registry.ca_path().display().to_string();
    let rules = format!("hub.invalid::{mirror}/airgap\n");
    let flags = ["--swap-policy", "exists", "--pin-digest", "--registry-auth", &auth, "--registry-ca", &ca];
    let server = common::TestServer::start_with_rules(&rules, "rules.conf", &flags).await;
    let mut client = server.connect(common::Protocol::Http1).await;
    let mut review = common::sample("pod.json");
    review["request"]["object"]["spec"] = serde_json::json!({"containers": [
        {"name": "app", "image": "hub.invalid/app:1"}, {"name": "multi", "image": "hub.invalid/multi:1"}
    ]});
    let response = client.review(&review).await;
    let object = common::patched_object(&review, &response);
    let pinned: Vec<String> = object["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|container| container["image"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pinned, [format!("{mirror}/airgap/app:1@{single}"), format!("{mirror}/airgap/multi:1@{index}")]);
    server.stop().await;

    // containerd speaks plain HTTP to a loopback registry unless its hosts.toml says https.
    let certs_d = dir.path().join("certs.d");
    std::fs::create_dir_all(certs_d.join(&mirror)).unwrap();
    let hosts = format!(
        "server = \"https://{mirror}\"\n[host.\"https://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{ca}\"\n"
    );
    write(&certs_d.join(&mirror), "hosts.toml", &hosts);
    let daemon = tokio::task::spawn_blocking(move || Containerd::start(&containerd)).await.unwrap();
    let user = format!("{USER}:{PASSWORD}");
    let fetch = |namespace: &str, image: &str| {
        let output = Command::new(&ctr)
            .arg("--address")
            .arg(&daemon.socket)
            .args(["-n", namespace, "content", "fetch", "--hosts-dir"])
            .arg(&certs_d)
            .args(["--user", &user, image])
            .output()
            .unwrap();
        run_ok(&output, &format!("ctr content fetch {image}"));
    };
    for (image, digest) in pinned.iter().zip([&single, &index]) {
        fetch("mirrorswap-pinned", image);
        assert!(daemon.has_content(&ctr, "mirrorswap-pinned", digest), "{image}: {digest} not fetched");
    }
    // The tag moves; the pinned reference still names, and fetches, what the webhook checked.
    let moved = push_image(&registry, "airgap/app", "1", "app 1, rebuilt", amd64).await;
    assert_ne!(moved, single);
    fetch("mirrorswap-pinned-later", &pinned[0]);
    assert!(daemon.has_content(&ctr, "mirrorswap-pinned-later", &single));
    assert!(!daemon.has_content(&ctr, "mirrorswap-pinned-later", &moved));
}
