//! Palette's documents used as they are (`examples/palette/`): rules
//! found wherever each keeps them, with the lines of the whole file, the
//! rewrites the documents state, credentials turned into one pull secret, and
//! the credentials planted in them (`PLANTED-…`) never shown by any command
//! or in `serve`'s logs.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use common::{Protocol, TestServer, eventually, patched_object, sample};
use mirrorswap::rules_file::{Format, Loaded, load_file, load_text};
use serde_json::Value;

const FLANNEL: &str = "us-docker.pkg.dev/palette-images/packs/flannel/0.27.0/cni-plugins:v1.6.2";
const FLANNEL_MIRRORED: &str = "example.registry.com/internal-images/packs/flannel/0.27.0/cni-plugins:v1.6.2";
const FLANNEL_ALL: &str =
    "example.registry.com/internal-images/us-docker.pkg.dev/palette-images/packs/flannel/0.27.0/cni-plugins:v1.6.2";
const PLANTED: &str = "PLANTED-";
/// `PLANTED-` base64-encoded at the start of a value, as a Secret's `data` holds it.
const PLANTED_BASE64: &str = "UExBTlRFRC";

/// Whether `text` shows a planted secret: plain, or any secret value of the `data` Secret
/// (base64, as it is in the file).
fn shows_secret(text: &str) -> bool {
    static ENCODED: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        read("registry-secret-data.yaml")
            .lines()
            .filter_map(|line| line.trim().strip_prefix("PASSWORD: ").or(line.trim().strip_prefix("CA_CERT: ")))
            .map(str::to_owned)
            .collect()
    });
    assert_eq!(ENCODED.len(), 2);
    text.contains(PLANTED) || text.contains(PLANTED_BASE64) || ENCODED.iter().any(|value| text.contains(value.as_str()))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/palette").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

fn mirrorswap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mirrorswap")).args(args).output().expect("run mirrorswap")
}

fn rewrite(loaded: &Loaded, image: &str) -> String {
    loaded.rules.rewrite(image).new_image().unwrap_or(image).to_owned()
}

/// The 1-based line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> u32 {
    text.lines().position(|line| line.contains(needle)).map(|i| i as u32 + 1).expect(needle)
}

/// Every document, as Palette prints it: where the rules are, and what they do.
#[test]
fn each_document_is_read_where_it_keeps_its_rules() {
    let specific = [(FLANNEL, FLANNEL_MIRRORED)];
    // (file, rules path, image -> rewritten)
    type Rewrites<'a> = &'a [(&'a str, &'a str)];
    let table: [(&str, &str, Rewrites); 7] = [
        ("user-data.yaml", "stylus.externalRegistries.registryMappingRules", &specific),
        ("user-data-top-level.yaml", "registryMappingRules", &specific),
        ("user-data-single.yaml", "stylus.registryMappingRules", &[(FLANNEL, FLANNEL_ALL)]),
        ("registry-connect-values.yaml", "charts.registry-connect.config.registry.imageReplacementRules", &specific),
        (
            "registry-secret.yaml",
            "stringData.MIRROR_REGISTRIES",
            &[(FLANNEL, FLANNEL_MIRRORED), ("nginx:1.27", "example.registry.com/internal-images/docker.io/nginx:1.27")],
        ),
        ("registry-secret-data.yaml", "data.MIRROR_REGISTRIES", &[(FLANNEL, FLANNEL_MIRRORED)]),
        (
            "kubernetes-values.yaml",
            "imageSwap.imageChange",
            &[
                (FLANNEL, FLANNEL_MIRRORED),
                ("docker.io/library/nginx:1.27", "harbor.internal.example.com/docker/nginx:1.27"),
                ("example.private.io/app:1", "harbor.internal.example.com/app:1"),
                ("quay.io/x/y:1", "quay.io/x/y:1"),
            ],
        ),
    ];
    for (name, path, rewrites) in table {
        let loaded = load_file(&fixture(name), None, Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let found = loaded.found.clone().unwrap_or_else(|| panic!("{name}: no rules key reported"));
        assert_eq!(found.path, path, "{name}");
        let key = path.rsplit('.').next().unwrap();
        assert_eq!(found.line, line_of(&read(name), &format!("{key}:")), "{name}");
        for (image, expected) in rewrites {
            assert_eq!(rewrite(&loaded, image), *expected, "{name}: {image}");
        }
        // Rules lines are lines of the whole file.
        let text = read(name);
        for rule in loaded.rules.rules().iter().filter(|rule| rule.line > 0) {
            let line = text.lines().nth(rule.line as usize - 1).unwrap();
            assert!(
                line.contains(rule.source.as_ref()) || name == "registry-secret-data.yaml",
                "{name}: rule {} says line {}: {line}",
                rule.source,
                rule.line
            );
        }
    }
    // `check` names the place, as the issue asks: `user-data.yaml: rules at … (line 19)`.
    let path = fixture("user-data.yaml").display().to_string();
    let output = mirrorswap(&["check", "--rules", &path]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("{path}: rules at stylus.externalRegistries.registryMappingRules (line 19)")),
        "{stdout}"
    );
    // An Edge user-data file often has no extension: `#cloud-config` makes it YAML.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("user-data.yaml"), dir.path().join("user-data")).unwrap();
    let loaded = load_file(&dir.path().join("user-data"), None, Default::default()).unwrap();
    assert_eq!(rewrite(&loaded, FLANNEL), FLANNEL_MIRRORED);
}

/// The documents in other legal shapes: comments, anchors, multi-line strings, and the errors an
/// operator makes, each on its line of the whole file.
#[test]
fn document_shapes_and_mistakes() {
    let connect = read("registry-connect-values.yaml");
    let user_data = read("user-data.yaml");
    let anchored = "# the mirror, once\nmirror: &mirror example.registry.com/internal-images\ncharts:\n  registry-connect:\n    config:\n      registry:\n        # a mapping, not a block string\n        imageReplacementRules:\n          \"us-docker.pkg.dev/palette-images\": *mirror  # as above\n          \"all\": \"\"\n".to_owned();
    let indented_block = connect.replace("imageReplacementRules: |", "imageReplacementRules: |2+\n\n");
    let multi_line = user_data.replace(
        "repositoryName: security-images",
        "repositoryName: security-images\n        description: a plain string\n          over two lines",
    );
    let broken_block =
        connect.replace("\"gcr.io/spectro-dev-public\": \"example", "\"gcr.io/spectro-dev-public: \"example");
    let two_keys = format!("{user_data}registryMappingRules:\n  \"a.io\": \"m.io\"\n");
    let no_rules = read("user-data-single.yaml")
        .replace("  registryMappingRules:\n    \"all\": \"example.registry.com/internal-images\"\n", "");
    let nested = connect.replace(
        "\"us-east1-docker.pkg.dev/spectro-images/daily\"",
        "registryMappingRules: |\n            \"x.io\": \"m.io\"\n          \"us-east1-docker.pkg.dev/spectro-images/daily\"",
    );
    let bad_rule = connect.replace(
        "\"gcr.io/spectro-dev-public\": \"example.registry.com/internal-images",
        "\"gcr.io/spectro-dev-public\": \"example.registry.com/Internal-images",
    );

    // (case, text, Ok(image, rewritten) or Err(line, message parts))
    type Expect = Result<(&'static str, &'static str), (u32, Vec<String>)>;
    let second = two_keys.lines().count() as u32 - 1;
    let strings = |parts: &[&str]| parts.iter().map(|part| part.to_string()).collect::<Vec<_>>();
    let cases: Vec<(&str, String, Expect)> = vec![
        ("comments and anchors", anchored.clone(), Ok((FLANNEL, FLANNEL_MIRRORED))),
        (
            "anchors: all form",
            anchored
                .replace("\"all\": \"\"", "\"all\": *mirror")
                .replace("\"us-docker.pkg.dev/palette-images\": *mirror  # as above\n", ""),
            Ok((FLANNEL, FLANNEL_ALL)),
        ),
        ("block string with indentation indicator", indented_block, Ok((FLANNEL, FLANNEL_MIRRORED))),
        ("multi-line strings elsewhere", multi_line, Ok((FLANNEL, FLANNEL_MIRRORED))),
        (
            "malformed block string",
            broken_block.clone(),
            Err((line_of(&broken_block, "\"gcr.io/spectro-dev-public: "), strings(&["not YAML"]))),
        ),
        (
            "a bad rule in a block string",
            bad_rule.clone(),
            Err((line_of(&bad_rule, "Internal-images"), strings(&["uppercase"]))),
        ),
        (
            "two rules keys",
            two_keys.clone(),
            Err((
                second,
                vec![
                    "two rules keys".into(),
                    "`stylus.externalRegistries.registryMappingRules` (line 19)".into(),
                    format!("`registryMappingRules` (line {second})"),
                ],
            )),
        ),
        (
            "no rules key",
            no_rules,
            Err((
                2,
                strings(&[
                    "no rules key",
                    "imageReplacementRules",
                    "registryMappingRules",
                    "imageSwap.imageChange",
                    "MIRROR_REGISTRIES",
                ]),
            )),
        ),
        (
            "a rules key inside a block string",
            nested.clone(),
            Err((
                line_of(&nested, "registryMappingRules: |"),
                strings(&["`registryMappingRules` inside `imageReplacementRules`"]),
            )),
        ),
    ];
    for (case, text, expect) in cases {
        let result = load_text(&text, "doc.yaml", Format::Yaml, Default::default());
        match (result, expect) {
            (Ok(loaded), Ok((image, expected))) => assert_eq!(rewrite(&loaded, image), expected, "{case}"),
            (Err(error), Err((line, parts))) => {
                let message = error.to_string();
                assert!(message.starts_with(&format!("doc.yaml:{line}: ")), "{case}: {message}");
                for part in &parts {
                    assert!(message.contains(part.as_str()), "{case}: `{part}` not in {message}");
                }
                assert!(!message.contains(PLANTED), "{case}: {message}");
            }
            (Ok(_), Err(expected)) => panic!("{case}: loaded, expected {expected:?}"),
            (Err(error), Ok(_)) => panic!("{case}: {error}"),
        }
    }
}

/// The `auths` of a pull-secret manifest.
fn auths(manifest: &str) -> BTreeMap<String, Value> {
    let secret: Value = serde_json::from_str(manifest).unwrap_or_else(|e| panic!("{e}: {manifest}"));
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    let config = base64::engine::general_purpose::STANDARD
        .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap();
    let config: Value = serde_json::from_slice(&config).unwrap();
    config["auths"].as_object().unwrap().clone().into_iter().collect()
}

/// The entry the kubelet would use for `image`: the key whose host (and path, if any) the
/// image starts with, the longest such key winning (Docker config keys may carry a scheme).
fn lookup<'a>(auths: &'a BTreeMap<String, Value>, image: &str) -> Option<&'a Value> {
    let (first, rest) = image.split_once('/')?;
    let host = if first.contains('.') || first.contains(':') || first == "localhost" { first } else { "docker.io" };
    let path = if host == first { rest } else { image };
    auths
        .iter()
        .filter(|(key, _)| {
            let key = key.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
            let (key_host, key_path) = key.split_once('/').unwrap_or((key, ""));
            key_host == host && (key_path.is_empty() || path.starts_with(&format!("{key_path}/")))
        })
        .max_by_key(|(key, _)| key.len())
        .map(|(_, value)| value)
}

#[test]
fn pull_secret_from_each_document_holds_every_credential() {
    // (file, registry -> (username, password), image pulled from it, notes expected on stderr)
    type Logins<'a> = &'a [(&'a str, &'a str, &'a str)];
    let table: [(&str, Logins, &[&str], &[&str]); 6] = [
        (
            "user-data.yaml",
            &[
                ("10.10.254.254:8000", "admin", "PLANTED-edge-password-1"),
                ("10.10.11.60:3899", "projectAdmin2", "PLANTED-edge-password-2"),
            ],
            &["10.10.254.254:8000/spectro-images/quay.io/kairos/core:v1", "10.10.11.60:3899/security-images/scanner:2"],
            &[],
        ),
        (
            "user-data-top-level.yaml",
            &[
                ("10.10.254.254:8000", "admin", "PLANTED-edge-password-1"),
                ("10.10.11.60:3899", "projectAdmin2", "PLANTED-edge-password-2"),
            ],
            &["10.10.254.254:8000/spectro-images/x:1", "10.10.11.60:3899/security-images/y:1"],
            &[],
        ),
        (
            "user-data-single.yaml",
            &[("example.registry.com", "ubuntu", "PLANTED-single-password")],
            &[FLANNEL_ALL],
            &[],
        ),
        (
            "registry-connect-values.yaml",
            &[("10.10.10.10", "admin", "PLANTED-connect-password")],
            &["10.10.10.10/internal-images/app:1"],
            &["credentials[1] (line 24): example.registry.com: `usernameRef`", "cannot be read offline"],
        ),
        (
            "registry-secret.yaml",
            &[("example.registry.com", "robot$pcg", "PLANTED-registry-info-password")],
            &[FLANNEL_MIRRORED],
            &[],
        ),
        (
            "registry-secret-data.yaml",
            &[("example.registry.com", "robot$pcg", "PLANTED-registry-info-password")],
            &[FLANNEL_MIRRORED],
            &[],
        ),
    ];
    for (name, expected, images, notes) in table {
        let path = fixture(name).display().to_string();
        let output = mirrorswap(&["pull-secret", "--from", &path]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {stderr}");
        assert!(!stderr.contains(PLANTED), "{name}: {stderr}");
        for note in notes {
            assert!(stderr.contains(note), "{name}: `{note}` not in {stderr}");
        }
        let auths = auths(&String::from_utf8_lossy(&output.stdout));
        assert_eq!(auths.len(), expected.len(), "{name}: {auths:?}");
        for (registry, username, password) in expected {
            let entry = &auths[*registry];
            assert_eq!(
                (entry["username"].as_str(), entry["password"].as_str()),
                (Some(*username), Some(*password)),
                "{name}"
            );
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            assert_eq!(entry["auth"].as_str(), Some(auth.as_str()), "{name}");
        }
        for (image, (registry, ..)) in images.iter().zip(expected.iter()) {
            let found = lookup(&auths, image).unwrap_or_else(|| panic!("{name}: no entry for {image}"));
            assert_eq!(found, &auths[*registry], "{name}: {image}");
        }
    }
    // A document with no credentials says what it looked for and exits 2.
    let output = mirrorswap(&["pull-secret", "--from", &fixture("kubernetes-values.yaml").display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no credentials: looked for"));
    // --out writes the Secret with mode 0600, an existing file included.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pull.json");
    std::fs::write(&out, "old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = mirrorswap(&[
        "pull-secret",
        "--from",
        &fixture("user-data.yaml").display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success());
    assert!(output.stdout.is_empty(), "nothing on stdout with --out");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(auths(&std::fs::read_to_string(&out).unwrap()).len(), 2);
}

/// Every command, fed every document (and a broken copy of each), prints none of the planted
/// secrets; neither does `serve` in its logs while loading and reloading them. Only
/// `pull-secret`'s Secret holds them.
#[test]
fn planted_secrets_appear_only_in_the_pull_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut documents: Vec<PathBuf> = Vec::new();
    for name in [
        "user-data.yaml",
        "user-data-top-level.yaml",
        "user-data-single.yaml",
        "registry-connect-values.yaml",
        "registry-secret.yaml",
        "registry-secret-data.yaml",
    ] {
        let text = read(name);
        assert!(shows_secret(&text), "{name} has planted secrets");
        documents.push(fixture(name));
        // Broken right after a secret: the YAML error must not quote it.
        let broken = dir.path().join(format!("broken-{name}"));
        let cut = text.find("PLANTED").or_else(|| text.find(PLANTED_BASE64)).map_or(text.len() / 2, |at| at + 12);
        std::fs::write(&broken, format!("{}\n\t\"x: [{}", &text[..cut], &text[cut..])).unwrap();
        documents.push(broken);
    }
    let hosts = dir.path().join("hosts");
    let mut leaks = Vec::new();
    for document in &documents {
        let path = document.display().to_string();
        let hosts = hosts.display().to_string();
        let runs: Vec<Vec<&str>> = vec![
            vec!["check", "--rules", &path],
            vec!["check", "--strict", "--rules", &path],
            vec!["rewrite", "--rules", &path, FLANNEL, "nginx:1.27"],
            vec!["rewrite", "--explain", "--rules", &path, FLANNEL, "nginx:1.27"],
            vec!["containerd", "--legacy", "--rules", &path],
            vec!["containerd", "--out", &hosts, "--rules", &path],
        ];
        for args in runs {
            let output = mirrorswap(&args);
            let text =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            if shows_secret(&text) {
                leaks.push(format!("{args:?}: {text}"));
            }
        }
        let pull = mirrorswap(&["pull-secret", "--from", &path]);
        if shows_secret(&String::from_utf8_lossy(&pull.stderr)) {
            leaks.push(format!("pull-secret stderr for {path}"));
        }
    }
    for entry in walk_files(&hosts) {
        if shows_secret(&std::fs::read_to_string(&entry).unwrap_or_default()) {
            leaks.push(format!("{}", entry.display()));
        }
    }
    leaks.extend(serve_logs_leaks(dir.path(), &documents));
    assert!(leaks.is_empty(), "planted secrets shown:\n{}", leaks.join("\n"));
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk_files(&path)) } else { files.push(path) }
    }
    files
}

/// Runs `serve --rules FILE` at debug level while FILE becomes each document in turn (good,
/// broken, emptied); what its logs show of the planted secrets.
fn serve_logs_leaks(dir: &Path, documents: &[PathBuf]) -> Vec<String> {
    let rules = dir.join("served.yaml");
    std::fs::copy(&documents[0], &rules).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "debug"])
        .args(["--reload-poll", "100ms", "--rules"])
        .arg(&rules)
        .arg("--dev-ca-out")
        .arg(dir.join("ca.pem"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for document in documents.iter().chain([&documents[0]]) {
        std::fs::write(&rules, std::fs::read(document).unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }
    std::fs::write(&rules, "").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let logs = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let mut leaks = Vec::new();
    if shows_secret(&logs) {
        leaks.push(format!("serve logs: {logs}"));
    }
    for expected in ["rules loaded", "rules reloaded", "rules reload failed", "no rules in"] {
        if !logs.contains(expected) {
            leaks.push(format!("serve logs lack `{expected}` (the test did not exercise them): {logs}"));
        }
    }
    leaks
}

/// `serve --rules user-data.yaml` serves the whole document and reloads it when it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_and_reloads_the_whole_user_data() {
    let hub = |mirror: &str| {
        read("user-data.yaml").replace(
            "      \"gcr.io/spectro-images-public\"",
            &format!("      \"docker.io\": \"{mirror}/hub\"\n      \"gcr.io/spectro-images-public\""),
        )
    };
    let server = TestServer::start_with_rules(&hub("first.example.org"), "user-data.yaml", &[]).await;
    let mut client = server.connect(Protocol::Http2).await;
    let request = sample("pod.json");
    let nginx = async |client: &mut common::Client| {
        let response = client.review(&request).await;
        patched_object(&request, &response)["spec"]["containers"][0]["image"].as_str().unwrap().to_owned()
    };
    assert_eq!(nginx(&mut client).await, "first.example.org/hub/nginx:1.27");
    assert_eq!(server.metric("mirrorswap_rules_loaded").await, 5.0);
    std::fs::write(server.path("user-data.yaml"), hub("second.example.org")).unwrap();
    let wanted = "second.example.org/hub/nginx:1.27";
    assert!(eventually(Duration::from_secs(2), async || nginx(&mut client).await == wanted).await, "reloaded");
    server.stop().await;
}
