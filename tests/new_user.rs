//! What a new user hits first (issue 25), run as they run it: the built binary, its messages
//! and exit codes. Every error names what failed, the value, and what to do, and never a
//! credential; shell completions and the man page come from the same flags as `--help`.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A kubeconfig whose API server is a loopback port nobody listens on, with a token to look for.
const UNREACHABLE_KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    \
    server: https://127.0.0.1:9\nusers:\n- name: u\n  user:\n    token: PLANTED-token\ncontexts:\n- name: x\n  \
    context:\n    cluster: c\n    user: u\ncurrent-context: x\n";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mirrorswap_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirrorswap"));
    command.current_dir(dir).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run mirrorswap")
}

fn mirrorswap(args: &[&str]) -> Output {
    mirrorswap_in(&root(), args, &[])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// (what, arguments, extra environment, exit code, every part stderr must hold)
type Case<'a> = (&'a str, Vec<String>, Vec<(&'a str, String)>, u8, Vec<String>);

fn run_cases(dir: &Path, cases: Vec<Case<'_>>) {
    for (what, args, env, code, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let output = mirrorswap_in(dir, &args, &env);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(i32::from(code)), "{what}: exit code; stderr:\n{stderr}");
        for part in expected {
            assert!(stderr.contains(&part), "{what}: stderr lacks {part:?}:\n{stderr}");
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

#[test]
fn errors_name_what_failed_the_value_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let rules = root().join("examples/rules/imageswap-maps.conf").display().to_string();
    let kubeconfig = write(dir.path(), "kubeconfig.yaml", UNREACHABLE_KUBECONFIG);
    let serve = |extra: &[&str]| {
        let mut args = strings(&["serve", "--rules", &rules, "--dev-ca-out"]);
        args.push(dir.path().join("ca.pem").display().to_string());
        args.extend(strings(extra));
        args
    };
    let cases: Vec<Case<'_>> = vec![
        (
            "the admin listener's address is taken",
            serve(&["--listen", "127.0.0.1:0", "--admin-listen", &port]),
            vec![],
            2,
            strings(&[
                &format!("the admin listener could not bind {port}: "),
                "Address already in use",
                "choose another address with --admin-listen",
            ]),
        ),
        (
            "the webhook listener's address is taken",
            serve(&["--listen", &port, "--admin-listen", "127.0.0.1:0"]),
            vec![],
            2,
            strings(&[&format!("the webhook listener could not bind {port}: "), "with --listen"]),
        ),
        (
            "a log filter that does not parse",
            serve(&["--log-level", "mirrorswap=loud"]),
            vec![],
            2,
            strings(&["--log-level \"mirrorswap=loud\" is neither a level", "`mirrorswap=debug,info`"]),
        ),
        (
            "audit of a file that is not there",
            strings(&["audit", "--rules", &rules, "-f", "nofile.yaml"]),
            vec![],
            2,
            strings(&["error: -f nofile.yaml: No such file or directory (os error 2): give a manifest file"]),
        ),
        (
            "a --kubeconfig that is not there",
            strings(&["audit", "--rules", &rules, "--kubeconfig", "nofile.yaml"]),
            vec![],
            2,
            strings(&["error: --kubeconfig nofile.yaml: No such file or directory (os error 2): give the path"]),
        ),
        (
            "no kubeconfig anywhere",
            strings(&["audit", "--rules", &rules]),
            vec![("HOME", dir.path().join("home").display().to_string()), ("KUBECONFIG", String::new())],
            2,
            strings(&[
                &format!("no kubeconfig at {}/home/.kube/config (the default): No such file", dir.path().display()),
                "give --kubeconfig FILE (or set KUBECONFIG)",
            ]),
        ),
        (
            "an API server that is not there",
            strings(&["audit", "--rules", &rules, "--kubeconfig", &kubeconfig]),
            vec![],
            2,
            strings(&[
                "error: listing pods at the Kubernetes API https://127.0.0.1:9: ",
                "Connection refused",
                "is the API server up and reachable from here?",
            ]),
        ),
    ];
    run_cases(dir.path(), cases);

    // Each cause once, the path once, never the token.
    for args in [
        vec!["audit", "--rules", &rules, "--kubeconfig", "nofile.yaml"],
        vec!["audit", "--rules", &rules, "--kubeconfig", &kubeconfig],
    ] {
        let stderr = text(&mirrorswap_in(dir.path(), &args, &[]).stderr);
        assert_eq!(stderr.matches("nofile.yaml").count(), usize::from(args.contains(&"nofile.yaml")), "{stderr}");
        assert_eq!(
            stderr.matches("Connection refused").count() + stderr.matches("No such file").count(),
            1,
            "{stderr}"
        );
        assert!(!stderr.contains("PLANTED"), "{stderr}");
    }
}

#[test]
fn a_broken_rules_file_leads_with_its_error_not_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write(dir.path(), "broken.conf", "docker.io:harbor.example.org/hub\nquay.io::a::b\n");
    for command in ["serve", "rewrite", "containerd"] {
        let mut args = vec![command, "--rules", &broken];
        match command {
            "serve" => args.extend(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]),
            "rewrite" => args.push("nginx"),
            _ => args.extend(["--out", "-"]),
        }
        let output = mirrorswap_in(dir.path(), &args, &[]);
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = text(&output.stderr);
        let first = stderr.lines().find(|line| line.contains("broken.conf")).unwrap_or_default();
        assert!(first.contains("broken.conf:2: more than one `::` separator"), "{command} leads with:\n{stderr}");
        assert!(stderr.contains("broken.conf:1: warning: `:` as separator is deprecated"), "{command}:\n{stderr}");
    }
}

#[test]
fn completions_and_the_man_page_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let output = mirrorswap(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", text(&output.stderr));
        let script = text(&output.stdout);
        for word in ["audit", "containerd", "swap-policy", "copy-list-node-paths", "completions"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let output = mirrorswap(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("possible values: bash"), "{}", text(&output.stderr));

    let output = mirrorswap(&["man"]);
    assert!(output.status.success());
    let page = text(&output.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH mirrorswap 1"), "{page}");
    for word in ["audit", "serve", "completions"] {
        assert!(page.contains(word), "the man page lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let output = mirrorswap(&["man", "--out", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for page in ["mirrorswap.1", "mirrorswap-audit.1", "mirrorswap-serve.1", "mirrorswap-completions.1"] {
        let roff = std::fs::read_to_string(out.join(page)).unwrap();
        assert!(roff.contains(".TH"), "{page}");
    }
    let serve = std::fs::read_to_string(out.join("mirrorswap-serve.1")).unwrap();
    assert!(serve.contains("MIRRORSWAP_SWAP_POLICY"), "the pages carry each flag's environment variable");
}

#[test]
fn rules_files_get_a_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    let palette = root().join("examples/palette");
    let secret = std::fs::read_to_string(palette.join("registry-secret.yaml")).unwrap();
    let user_data = std::fs::read_to_string(palette.join("user-data.yaml")).unwrap();
    let misspelled = user_data.replace("registryMappingRules", "registryMapingRules");
    let line_of = |text: &str, needle: &str| text.lines().position(|line| line.contains(needle)).unwrap() + 1;
    // (file, text, exit code of `check --strict`, what stdout says)
    let table = [
        (
            "registry-secret.txt",
            secret.as_str(),
            2,
            vec![
                "registry-secret.txt:1: this is YAML with 3 rules at stringData.MIRROR_REGISTRIES (line 13), read as \
                 a maps file because only names ending in .yaml or .yml are read as YAML: give --format yaml"
                    .to_owned(),
                "registry-secret.txt: 1 error: no rules loaded".to_owned(),
            ],
        ),
        (
            "user-data.yaml",
            misspelled.as_str(),
            2,
            vec![format!(
                "user-data.yaml:{}: `stylus.externalRegistries.registryMapingRules` is not a key mirrorswap reads \
                 rules from: did you mean `registryMappingRules`?",
                line_of(&misspelled, "registryMapingRules")
            )],
        ),
        (
            "typo.conf",
            "grc.io/spectro::harbor.example.org/gcr\ndokcer.io::harbor.example.org/hub\nghcr.io::harbor.example.org/ghcr\n\
             icr.io::harbor.example.org/ibm\n[EXACT]qauy.io/x/y:1::harbor.example.org/y:1\n",
            1,
            vec![
                "typo.conf:1: warning: source registry `grc.io` is not `gcr.io` but close to it: a typo?".to_owned(),
                "typo.conf:2: warning: source registry `dokcer.io` is not `docker.io`".to_owned(),
                "typo.conf:5: warning: source registry `qauy.io` is not `quay.io`".to_owned(),
                "3 warnings in all".to_owned(),
            ],
        ),
    ];
    for (name, content, code, expected) in table {
        write(dir.path(), name, content);
        let output = mirrorswap_in(dir.path(), &["check", "--strict", "--rules", name], &[]);
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(code), "{name}:\n{stdout}{}", text(&output.stderr));
        for part in expected {
            assert!(stdout.contains(&part), "{name}: stdout lacks {part:?}:\n{stdout}");
        }
        assert!(!stdout.contains("PLANTED"), "{name}: {stdout}");
    }
    // The hint's advice works.
    let output = mirrorswap_in(dir.path(), &["check", "--rules", "registry-secret.txt", "--format", "yaml"], &[]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    // The example's typo (copied from Palette's documentation) is fixed.
    let example = root().join("examples/rules/registry-connect.yaml");
    let output = mirrorswap(&["check", "--strict", "--rules", example.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stdout));
}

/// `certs` from the release bundle, with no `manifests/` beside it: the Secret and the caBundle
/// on their own; the kustomization only over a base that exists; nothing left after an error.
#[test]
fn certs_works_outside_a_checkout_and_leaves_nothing_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = mirrorswap_in(dir.path(), &["certs", "-n", "shop"], &[]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("no manifests/base here (not a checkout) and no --base: no kustomization written"),
        "{stderr}"
    );
    let out = dir.path().join("certs/out");
    assert!(out.join("secret.yaml").exists() && !out.join("kustomization.yaml").exists());
    assert!(std::fs::read_to_string(out.join("secret.yaml")).unwrap().contains("namespace: shop"));
    assert!(!text(&output.stdout).trim().is_empty(), "the caBundle is printed");

    // With a base of its own (--manifests is the same flag), the kustomization is written.
    std::fs::create_dir_all(dir.path().join("deploy")).unwrap();
    let output = mirrorswap_in(dir.path(), &["certs", "--manifests", "deploy", "--out-dir", "with-base"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let kustomization = std::fs::read_to_string(dir.path().join("with-base/kustomization.yaml")).unwrap();
    assert!(kustomization.contains("  - ../deploy\n"), "{kustomization}");

    // (what, arguments, what stderr says): each fails with exit 2 and creates nothing.
    let cases = [
        (
            "a base that is not there",
            vec!["certs", "--base", "nowhere", "--out-dir", "new/out"],
            "--base nowhere: no such directory",
        ),
        (
            "a CA that cannot be read",
            vec!["certs", "--ca-cert", "missing.crt", "--ca-key", "missing.key", "--out-dir", "new/out"],
            "cannot read missing.crt",
        ),
    ];
    for (what, args, expected) in cases {
        let output = mirrorswap_in(dir.path(), &args, &[]);
        assert_eq!(output.status.code(), Some(2), "{what}");
        assert!(text(&output.stderr).contains(expected), "{what}: {}", text(&output.stderr));
        assert!(!dir.path().join("new").exists(), "{what}: left a directory behind");
    }
}

/// `-n` is `--namespace` wherever a command has one.
#[test]
fn dash_n_is_namespace_everywhere() {
    for command in ["audit", "certs", "pull-secret"] {
        let help = text(&mirrorswap(&[command, "--help"]).stdout);
        assert!(help.contains("-n, --namespace"), "{command} --help:\n{help}");
    }
    let dir = tempfile::tempdir().unwrap();
    let password = write(dir.path(), "pw.txt", "PLANTED-pw\n");
    let output = mirrorswap(&[
        "pull-secret",
        "--server",
        "harbor.example.org",
        "--username",
        "u",
        "--password-file",
        &password,
        "-n",
        "shop",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let secret: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(secret["metadata"]["namespace"], "shop");
}

/// A `serve` process on loopback with a test certificate and `log_level` (and `RUST_LOG` when
/// given), sent one Pod review over HTTP/2; its log.
async fn serve_log(log_level: &str, rust_log: Option<&str>) -> String {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let ca = mirrorswap::certs::issue("new-user test CA", &["localhost".into(), "127.0.0.1".into()], 1).unwrap();
    let (cert, key) = (write(dir.path(), "tls.crt", &ca.cert_pem), write(dir.path(), "tls.key", &ca.key_pem));
    let rules = write(dir.path(), "rules.conf", common::RULES);
    let port = common::registry::free_port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mirrorswap"));
    command
        .args(["serve", "--rules", &rules, "--tls-cert", &cert, "--tls-key", &key, "--log-format", "text"])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--admin-listen", "127.0.0.1:0", "--log-level", log_level])
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped());
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let mut child = command.spawn().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not listen");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let review = std::fs::read(root().join("examples/admission/pod.json")).unwrap();
    let mut client = common::Client::connect(addr, &ca.ca_pem, common::Protocol::Http2).await;
    let (status, _) = client.post("/mutate", "application/json", review).await;
    assert_eq!(status, 200);
    drop(client);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    terminate(&child);
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    let _ = child.wait();
    log
}

/// SIGTERM, so that the server flushes its log as it stops.
fn terminate(child: &std::process::Child) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
}

/// `--log-level debug` shows mirrorswap's debug lines (one per rewrite) and none of its
/// dependencies' (hyper, h2, rustls); `RUST_LOG` still overrides and shows theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_debug_is_mirrorswaps_own_debug() {
    let debug_lines =
        |log: &str| -> Vec<String> { log.lines().filter(|line| line.contains(" DEBUG ")).map(str::to_owned).collect() };
    let log = serve_log("debug", None).await;
    let lines = debug_lines(&log);
    assert!(lines.iter().any(|line| line.contains("DEBUG mirrorswap::server")), "no mirrorswap debug line:\n{log}");
    let foreign: Vec<&String> = lines.iter().filter(|line| !line.contains("DEBUG mirrorswap")).collect();
    assert!(foreign.is_empty(), "dependencies' debug lines: {foreign:#?}");

    let log = serve_log("info", Some("debug")).await;
    assert!(
        debug_lines(&log).iter().any(|line| !line.contains("DEBUG mirrorswap")),
        "RUST_LOG=debug shows theirs:\n{log}"
    );
}

/// The rules watch of an API server that is away: one warning per retry naming the server and
/// the object, and no `kube_client` ERROR line repeating it.
#[test]
fn an_unreachable_api_server_is_named_once_per_retry() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write(dir.path(), "kubeconfig.yaml", UNREACHABLE_KUBECONFIG);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
        .args([
            "serve",
            "--rules-secret",
            "jet-system/registry-info",
            "--kubeconfig",
            &kubeconfig,
            "--log-format",
            "text",
        ])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--dev-ca-out"])
        .arg(dir.path().join("ca.pem"))
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    terminate(&child);
    let output = child.wait_with_output().unwrap();
    let log = text(&output.stderr);
    let warnings: Vec<&str> = log.lines().filter(|line| line.contains("Kubernetes API https://127.0.0.1:9")).collect();
    assert!(warnings.len() >= 2, "{log}");
    assert!(
        warnings.iter().all(|line| line.contains(
            "Kubernetes API watch failed, retrying (the current rules stay): \
             secret/jet-system/registry-info:MIRROR_REGISTRIES at the Kubernetes API https://127.0.0.1:9: "
        ) && line.contains("Connection refused")
            && line.contains("is the API server up and reachable from here?")),
        "{log}"
    );
    assert!(!log.contains("kube_client"), "kube's own ERROR line is back:\n{log}");
    assert!(!log.contains("PLANTED"), "{log}");
}
