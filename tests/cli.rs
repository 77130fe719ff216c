//! The `mirrorswap rewrite` and `check` commands, and `serve`'s refusals at start, run as a
//! user runs them: the built binary, real files, exit codes and output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const DIGEST: &str = "sha256:15d3b5c4f521a84896ed1ead1b14e4774d02202d5c65ab68f30eeaf310a3b1a7";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mirrorswap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mirrorswap")).args(args).output().expect("run mirrorswap")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn rules_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn strip_ticks(cell: &str) -> &str {
    cell.trim().trim_matches('`')
}

/// Every row of `examples/rules/README.md`'s table, through the CLI.
#[test]
fn every_documented_example_rewrite_holds() {
    let dir = tempfile::tempdir().unwrap();
    let readme = std::fs::read_to_string(root().join("examples/rules/README.md")).unwrap();
    let mut rows = 0;
    for line in readme.lines().filter(|line| line.starts_with('|')).skip(2) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        let [rules, image, expected] = cells[..] else { panic!("bad row {line}") };
        let rules = strip_ticks(rules);
        let rules_path = if rules.ends_with(".conf") || rules.ends_with(".yaml") {
            root().join("examples/rules").join(rules).display().to_string()
        } else {
            rules_file(dir.path(), "inline.yaml", rules)
        };
        let image = strip_ticks(image).replace("sha256:<64 hex>", DIGEST);
        let expected = strip_ticks(expected).replace("sha256:<64 hex>", DIGEST);
        let output = mirrorswap(&["rewrite", "--rules", &rules_path, &image]);
        assert!(output.status.success(), "{line}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(stdout(&output), format!("{expected}\n"), "{line}");
        rows += 1;
    }
    assert_eq!(rows, 6, "the README table has six rows");
}

#[test]
fn palette_list_rewrites_kube_apiserver() {
    let rules = root().join("examples/rules/palette-mirror-registries.conf");
    let output = mirrorswap(&["rewrite", "--rules", rules.to_str().unwrap(), "registry.k8s.io/kube-apiserver:v1.30.0"]);
    assert!(output.status.success());
    assert_eq!(stdout(&output), "harbor.example.org/airgap-images/k8s.io/kube-apiserver:v1.30.0\n");
}

#[test]
fn rewrite_prints_one_line_per_image_in_order_including_stdin() {
    let rules = root().join("examples/rules/imageswap-maps.conf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
        .args(["rewrite", "--rules", rules.to_str().unwrap(), "nginx:1.27", "-", "ghcr.io/org/tool:v1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"quay.io/prometheus/node-exporter:v1.8.0\n\nBAD REF\nbusybox:1.36\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        "harbor.example.org/airgap-images/library/nginx:1.27\n\
         mirror.example.org/cache-quay.io/prometheus/node-exporter:v1.8.0\n\
         BAD REF\n\
         harbor.example.org/pinned/busybox:1.36.1\n\
         ghcr.io/org/tool:v1\n"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`BAD REF` left unchanged: not a valid image reference"), "{stderr}");
}

#[test]
fn rewrite_fails_with_file_and_line_on_bad_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = rules_file(dir.path(), "bad.conf", "docker.io::ok.example.com\ngcr.io mirror.example.com\n");
    let output = mirrorswap(&["rewrite", "--rules", &path, "nginx"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{path}:2: no `::` separator between source and target")), "{stderr}");
    assert!(stdout(&output).is_empty());
}

#[test]
fn lenient_skips_bad_lines_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = rules_file(dir.path(), "bad.conf", "docker.io::ok.example.com\ngcr.io mirror.example.com\n");
    let output = mirrorswap(&["rewrite", "--lenient", "--rules", &path, "nginx"]);
    assert!(output.status.success());
    assert_eq!(stdout(&output), "ok.example.com/nginx\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{path}:2: skipped: no `::` separator")), "{stderr}");
}

#[test]
fn check_summarizes_a_clean_file() {
    let rules = root().join("examples/rules/imageswap-maps.conf");
    let output = mirrorswap(&["check", "--strict", "--rules", rules.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).ends_with(" KiB compiled\n"), "{}", stdout(&output));
    assert_eq!(
        stdout(&output).split_once("~").map(|(summary, _)| summary.to_owned() + "~"),
        Some(format!(
            "{}: 11 rules (1 exact, 1 replace, 8 prefix, 1 default, 0 all), 2 noswap wildcards; \
             0 shadowed, 0 duplicated, 0 skipped, 0 warnings in all; ~",
            rules.display()
        ))
    );
}

#[test]
fn check_exit_codes_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let warn = rules_file(
        dir.path(),
        "warn.conf",
        "default:d.example.com\nquay.io::q.example.com\nquay.io::q.example.com\nq.example.com/team::x.example.com\n\
         [REPLACE]*::r.example.com\n[REPLACE]a/*::s.example.com\n",
    );
    let output = mirrorswap(&["check", "--rules", &warn]);
    assert_eq!(output.status.code(), Some(0));
    let strict = mirrorswap(&["check", "--strict", "--rules", &warn]);
    assert_eq!(strict.status.code(), Some(1));
    let text = stdout(&strict);
    for expected in [
        format!("{warn}:1: warning: `:` as separator is deprecated: write `::`"),
        format!("{warn}:3: warning: duplicate of line 2"),
        format!(
            "{warn}:4: warning: never applies: `q.example.com/team` lies inside the target `q.example.com` of line 2"
        ),
        format!("{warn}:6: warning: never applies: the earlier glob `*` at line 5"),
        "2 shadowed".into(),
        "1 duplicated".into(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
    }
    let missing = mirrorswap(&["check", "--rules", "/nonexistent/rules.conf"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/rules.conf: No such file"));
}

/// A `-` target without `/` builds the registry host from the image's own: `check` warns,
/// naming the line; a `-` target under a registry of its own does not.
#[test]
fn check_warns_about_dash_targets_that_build_host_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = rules_file(
        dir.path(),
        "dash.conf",
        "quay.io::mirror-\ngcr.io::m.example.org/gcr-\ndocker.io::harbor.example.org/hub\ndefault::jmsearcy-\n",
    );
    let output = mirrorswap(&["check", "--strict", "--rules", &path]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    for line in [1, 4] {
        let target = if line == 1 { "mirror-" } else { "jmsearcy-" };
        let expected = format!(
            "{path}:{line}: warning: the `-` target `{target}` builds registry names from the images' own \
             (`{target}REGISTRY`), hosts these rules do not name and anyone may register"
        );
        assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains(&format!("{path}:2:")), "{text}");
    assert!(text.contains("2 warnings in all"), "{text}");
}

/// A `noswap_wildcards` entry naming a registry many owners share is a warning on its line.
#[test]
fn check_warns_about_wildcards_naming_shared_registries() {
    let dir = tempfile::tempdir().unwrap();
    let path = rules_file(
        dir.path(),
        "shared.conf",
        "default::harbor.example.org/all\nnoswap_wildcards::twr.io,gcr.io/my-project,dkr.ecr.us-east-1.amazonaws.com\n",
    );
    let text = stdout(&mirrorswap(&["check", "--rules", &path]));
    let expected = format!(
        "{path}:2: warning: `noswap_wildcards` entry `dkr.ecr.us-east-1.amazonaws.com` names the public registry \
         `amazonaws.com`, which many owners share"
    );
    assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
    assert!(text.contains("1 warning in all") || text.contains("1 warnings in all"), "{text}");
}

/// Each kind of error, with the line it is on, through `check`.
#[test]
fn malformed_rule_files_report_file_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    let long_target = format!("m.example.com/{}", "a".repeat(260));
    let long_line = format!("gcr.io::{long_target}");
    // (file name, content, line, reason)
    let table: &[(&str, &str, u32, &str)] = &[
        ("no-separator.conf", "ok.io::m.io\ngcr.io mirror.io", 2, "no `::` separator between source and target"),
        ("semicolon.conf", "gcr.io;mirror.io", 1, "no `::` separator"),
        (
            "port-single-colon.conf",
            "gcr.io:443:mirror.io",
            1,
            "a port in the source or target needs the `::` separator",
        ),
        ("two-separators.conf", "a.io::b.io::c.io", 1, "more than one `::` separator"),
        ("empty-source.conf", "\n::mirror.io", 2, "empty source"),
        ("space-source.conf", "gcr .io::mirror.io", 1, "whitespace inside the source"),
        ("space-target.conf", "gcr.io::mirror .io", 1, "whitespace inside the target"),
        ("space-wildcard.conf", "noswap_wildcards::a b,c", 1, "whitespace inside the wildcard list"),
        ("not-registry.conf", "bitnami::mirror.io", 1, "invalid source `bitnami`: must start with a registry host"),
        ("source-tag.conf", "gcr.io/app:v1::mirror.io", 1, "without tag or digest"),
        ("source-digest.conf", "gcr.io/app@sha256:aa::mirror.io", 1, "without tag or digest"),
        ("bad-host.conf", "gcr..io::mirror.io", 1, "invalid source `gcr..io`: malformed registry host or port"),
        ("bad-port.conf", "gcr.io:http::mirror.io", 1, "malformed registry host or port"),
        ("upper-source.conf", "gcr.io/Team::mirror.io", 1, "uppercase letter in repository path"),
        ("upper-target.conf", "gcr.io::mirror.io/Team", 1, "invalid target `mirror.io/Team`"),
        ("target-tag.conf", "gcr.io::mirror.io/app:v1", 1, "invalid target `mirror.io/app:v1`"),
        ("long-target.conf", &long_line, 1, "longer than 253 characters"),
        ("bad-glob.conf", "[REPLACE]a[bc::mirror.io", 1, "invalid glob `a[bc`: `[` without a closing `]`"),
        ("bad-exact.conf", "[EXACT]Nginx::mirror.io/nginx", 1, "invalid source `Nginx`: uppercase letter"),
        ("bad-exact-target.conf", "[EXACT]nginx::mirror.io/Nginx", 1, "invalid target `mirror.io/Nginx`"),
        (
            "conflict.conf",
            "gcr.io::a.io\nquay.io::q.io\ngcr.io::b.io",
            3,
            "duplicate source `gcr.io` with a different target (first at line 1)",
        ),
        (
            "two-defaults.conf",
            "default::a.io\ndefault::b.io",
            2,
            "duplicate source `default` with a different target (first at line 1)",
        ),
        (
            "all-and-default.conf",
            "default::a.io\nall::b.io",
            2,
            "`all` and `default` are both fallbacks: keep one (the other is at line 1)",
        ),
        ("list.yaml", "- gcr.io\n- quay.io\n", 1, "expected a mapping"),
        ("nested.yaml", "\"gcr.io\": \"m.io\"\n\"quay.io\":\n  x: y\n", 2, "the value of `quay.io` must be a string"),
        ("syntax.yaml", "\"gcr.io\": \"m.io\"\n\"quay.io: x\n", 2, "not YAML"),
        ("bad-yaml-source.yaml", "\"gcr.io\": \"m.io\"\n\"Quay\": \"q.io\"\n", 2, "invalid source `Quay`"),
    ];
    for &(name, content, line, reason) in table {
        let path = rules_file(dir.path(), name, content);
        let output = mirrorswap(&["check", "--rules", &path]);
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(2), "{name}: {text}");
        let prefix = format!("{path}:{line}: ");
        assert!(
            text.lines().any(|l| l.starts_with(&prefix) && l.contains(reason)),
            "{name}: expected `{prefix}…{reason}…` in\n{text}"
        );
        assert!(text.trim_end().ends_with("no rules loaded"), "{name}: {text}");
    }
}

#[test]
fn explain_names_the_deciding_rule_with_file_and_line_or_why_none() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "rules.conf",
        "# mirrors\ndocker.io::m.example.org/hub\nghcr.io::\nnoswap_wildcards::internal\ndefault::m.example.org/any-\n",
    );
    let output = mirrorswap(&[
        "rewrite",
        "--explain",
        "--rules",
        &rules,
        "nginx:1.27",
        "ghcr.io/a/b:1",
        "internal.example.com/x:1",
        "m.example.org/hub/nginx:1",
        "Not Valid",
    ]);
    assert!(output.status.success());
    let lines: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    let expected = [
        format!("nginx:1.27 -> m.example.org/hub/nginx:1.27: prefix rule `docker.io::m.example.org/hub` ({rules}:2)"),
        format!("ghcr.io/a/b:1 unchanged: opted out: prefix rule `ghcr.io::` ({rules}:3) has an empty target"),
        format!(
            "internal.example.com/x:1 unchanged: no specific rule, and noswap wildcard `internal` ({rules}:4) keeps it from the default"
        ),
        format!(
            "m.example.org/hub/nginx:1 unchanged: already mirrored: under the target of prefix rule `docker.io::m.example.org/hub` ({rules}:2)"
        ),
    ];
    assert_eq!(lines[..4], expected);
    assert!(lines[4].starts_with("Not Valid unchanged: not a valid image reference ("), "{}", lines[4]);
}

#[test]
fn containerd_legacy_block_matches_the_palette_document() {
    let rules = root().join("examples/rules/palette-mirror-registries.conf");
    let output = mirrorswap(&["containerd", "--legacy", "--rules", rules.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let ours: toml::Table = stdout(&output).parse().expect("TOML");
    let document = std::fs::read_to_string(root().join("tests/fixtures/palette-containerd-mirrors.toml")).unwrap();
    let theirs: toml::Table = document.parse().expect("the document's TOML");
    let mirrors = |table: &toml::Table| table["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["mirrors"].clone();
    assert_eq!(mirrors(&ours), mirrors(&theirs));
    assert_eq!(mirrors(&ours).as_table().map(|t| t.len()), Some(7));
}

#[test]
fn containerd_hosts_toml_names_server_and_mirror_for_every_host() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "rules.conf",
        "docker.io::harbor.example.org/hub\nregistry.local:5000::harbor.example.org\ngcr.io/p::harbor.example.org/p\n",
    );
    let out = dir.path().join("certs.d");
    let output =
        mirrorswap(&["containerd", "--rules", &rules, "--out", out.to_str().unwrap(), "--ca", "/etc/ssl/mirror.pem"]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{rules}:3: warning: `gcr.io/p::harbor.example.org/p`")), "{stderr}");
    let read = |host: &str| -> toml::Table {
        std::fs::read_to_string(out.join(host).join("hosts.toml")).unwrap().parse().expect("hosts.toml parses")
    };
    let hub = read("docker.io");
    assert_eq!(hub["server"].as_str(), Some("https://registry-1.docker.io"));
    let mirror = &hub["host"]["https://harbor.example.org/v2/hub"];
    assert_eq!(mirror["override_path"].as_bool(), Some(true));
    assert_eq!(mirror["ca"].as_str(), Some("/etc/ssl/mirror.pem"));
    assert_eq!(mirror["capabilities"].as_array().map(Vec::len), Some(2));
    let local = read("registry.local:5000");
    assert_eq!(local["server"].as_str(), Some("https://registry.local:5000"));
    assert!(local["host"].get("https://harbor.example.org").is_some());
    assert!(!out.join("gcr.io").exists(), "a path-level rule has no hosts.toml");
}

#[test]
fn pull_secret_prints_a_docker_config_secret() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let password = rules_file(dir.path(), "password", "s3cret:x\n");
    let output = mirrorswap(&[
        "pull-secret",
        "--server",
        "harbor.example.org",
        "--username",
        "robot$ci",
        "--password-file",
        &password,
        "--namespace",
        "shop",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let secret: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(secret["metadata"]["namespace"], "shop");
    let b64 = base64::engine::general_purpose::STANDARD;
    let config: serde_json::Value =
        serde_json::from_slice(&b64.decode(secret["data"][".dockerconfigjson"].as_str().unwrap()).unwrap()).unwrap();
    let auth = &config["auths"]["harbor.example.org"];
    assert_eq!(auth["password"], "s3cret:x", "the trailing newline is not part of the password");
    assert_eq!(b64.decode(auth["auth"].as_str().unwrap()).unwrap(), b"robot$ci:s3cret:x");
}

/// A file with no rules loads (it may be meant), but `check` says so, and `--strict` fails on it.
#[test]
fn check_warns_on_a_file_with_no_rules() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in
        [("empty.conf", ""), ("comments.conf", "# none yet\n"), ("empty.yaml", "registryMappingRules: {}\n")]
    {
        let path = rules_file(dir.path(), name, text);
        let output = mirrorswap(&["check", "--rules", &path]);
        assert_eq!(output.status.code(), Some(0), "{name}");
        assert!(stdout(&output).contains(&format!("{path}: warning: no rules")), "{name}: {}", stdout(&output));
        assert_eq!(mirrorswap(&["check", "--strict", "--rules", &path]).status.code(), Some(1), "{name}");
    }
}

/// `serve` refuses, before it binds anything, a registry deadline the request's own deadline
/// leaves no room for: every request would be answered 408 while it still waits.
#[test]
fn serve_refuses_a_check_timeout_at_or_above_the_request_timeout() {
    let table: [(&[&str], &str); 3] = [
        (&["--check-timeout", "8s"], "--check-timeout (8s) must be below --request-timeout (5s)"),
        (
            &["--check-timeout", "8s", "--request-timeout", "8s"],
            "--check-timeout (8s) must be below --request-timeout (8s)",
        ),
        (&["--request-timeout", "500ms"], "--check-timeout (1s) must be below --request-timeout (500ms)"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (flags, says) in table {
        let serve = ["serve", "--swap-policy", "exists", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
        // A server that starts serves until stopped: it is given 20 s to refuse, then stopped.
        let log = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
            .args([&serve[..], flags].concat())
            .env("MIRRORSWAP_DEV_CA_OUT", dir.path().join("ca.pem"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            match child.try_wait().unwrap() {
                Some(status) => break Some(status),
                None if std::time::Instant::now() > deadline => break None,
                None => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        };
        if status.is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
        assert!(status.is_some_and(|status| !status.success()), "{flags:?}: started: {stderr}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
}
