//! A real Kubernetes control plane for tests: etcd and kube-apiserver on free loopback ports,
//! with a fresh CA, serving certificate and admin client certificate (`common::kube_pki`), an
//! audit log of every request, a `kube::Client` and kubeconfigs (admin, any user, a token).
//!
//! The binaries come as envtest lays them out: the directory `KUBEBUILDER_ASSETS` names holds
//! `kube-apiserver` and `etcd` (`.ci/run` prepares target/kube-assets with
//! scripts/kube-assets.sh, which is also where the tests look when the variable is unset). When
//! they are missing a test skips, saying how to get them, except under `CI=true`, where it fails
//! (as `common::components`).
//!
//! There is no controller-manager or scheduler: Deployments make no ReplicaSets, Jobs no Pods,
//! the garbage collector removes no finalizer and namespaces never finish deleting. Tests assert
//! on what the API server stored and act as a controller themselves when they need one. Service
//! ClusterIPs come from a random /24 in 127.0.0.0/8, so a webhook given as a Service is called
//! on loopback, never on a private or public address.
//!
//! Cleanup, even on panic or abort: each control plane starts a watchdog (`sh`, in its own
//! process group so a terminal's Ctrl-C does not reach it) whose standard input is a pipe only
//! the test process holds. The process groups of etcd and kube-apiserver are written into it as
//! they start; when the pipe closes — `Drop`, or the test process ending in any way, which is
//! what happens to the one control plane a test file shares through [`shared`], since statics
//! are never dropped — the watchdog kills those groups and removes the directory (under
//! /dev/shm when there is one, so etcd's fsyncs cost nothing). `Drop` also kills and reaps the
//! processes itself, so a test's own control plane is gone when the test returns.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use super::kube_pki::{Pair, Pki};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The two binaries.
#[derive(Clone, Debug)]
pub struct Assets {
    pub apiserver: PathBuf,
    pub etcd: PathBuf,
}

/// `kube-apiserver` and `etcd` from `KUBEBUILDER_ASSETS` (else target/kube-assets), or `None`
/// to skip the test. Panics under `CI=true` when one is missing.
pub fn assets() -> Option<Assets> {
    let (dir, named_by) = match std::env::var_os("KUBEBUILDER_ASSETS").filter(|dir| !dir.is_empty()) {
        Some(dir) => (PathBuf::from(dir), "KUBEBUILDER_ASSETS"),
        None => (Path::new(ROOT).join("target/kube-assets"), "the default (KUBEBUILDER_ASSETS is unset)"),
    };
    let found = Assets { apiserver: dir.join("kube-apiserver"), etcd: dir.join("etcd") };
    let missing: Vec<&str> = [("kube-apiserver", &found.apiserver), ("etcd", &found.etcd)]
        .into_iter()
        .filter(|(_, path)| !path.is_file())
        .map(|(name, _)| name)
        .collect();
    if missing.is_empty() {
        return Some(found);
    }
    let message = format!(
        "{} missing from {} ({named_by}). Point KUBEBUILDER_ASSETS at a directory holding kube-apiserver \
         and etcd (envtest's: `setup-envtest use -p path`), or install Debian's etcd-server and run \
         `bash scripts/kube-assets.sh KUBE-APISERVER.xz` (docs/testing.md)",
        missing.join(" and "),
        dir.display()
    );
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{message}; CI=true: .ci/run must provide them");
    }
    eprintln!("skipping: {message}");
    None
}

/// The control plane a test file shares: started by the first test that asks, stopped by the
/// watchdog when the test process ends. `None` skips (see [`assets`]).
pub fn shared() -> Option<&'static ControlPlane> {
    static SHARED: OnceLock<Option<ControlPlane>> = OnceLock::new();
    // Started on a thread of its own: the caller may be inside a runtime.
    SHARED.get_or_init(|| std::thread::spawn(start_blocking).join().expect("control plane start")).as_ref()
}

/// [`ControlPlane::start`] on a runtime of its own.
pub fn start_blocking() -> Option<ControlPlane> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(ControlPlane::start())
}

/// etcd and kube-apiserver, running.
pub struct ControlPlane {
    /// kube-apiserver's address (127.0.0.1).
    pub addr: SocketAddr,
    /// Where everything lives: certificates, kubeconfig, logs, etcd's data.
    pub dir: PathBuf,
    /// The admin kubeconfig (`system:masters`).
    pub kubeconfig: PathBuf,
    /// The Service ClusterIP range, a /24 in 127.0.0.0/8.
    pub service_cidr: String,
    /// How long the start took, processes to `/readyz` 200.
    pub started_in: Duration,
    pki: Pki,
    assets: Assets,
    etcd_url: String,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    watchdog: Option<(Child, ChildStdin)>,
}

static STARTED: AtomicU32 = AtomicU32::new(0);

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until `/readyz` answers 200; `None` skips.
    pub async fn start() -> Option<Self> {
        let assets = assets()?;
        let begun = Instant::now();
        let dir = scratch_dir();
        let watchdog = watchdog(&dir);
        let pki = Pki::new();
        let serving = pki.serving();
        let (sa_key, sa_public) = Pki::service_account_keys();
        let files = [
            ("ca.crt", pki.ca.cert_pem.clone()),
            ("apiserver.crt", serving.cert_pem),
            ("apiserver.key", serving.key_pem),
            ("sa.key", sa_key),
            ("sa.pub", sa_public),
            ("audit-policy.yaml", AUDIT_POLICY.to_owned()),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let [client, peer, secure] = [free_port(), free_port(), free_port()];
        let etcd_url = format!("http://127.0.0.1:{client}");
        let third = u8::try_from(std::process::id() % 200 + 20).unwrap();
        let fourth = u8::try_from(STARTED.fetch_add(1, Ordering::SeqCst) % 200 + 20).unwrap();
        let mut plane = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], secure)),
            kubeconfig: dir.join("kubeconfig"),
            service_cidr: format!("127.{third}.{fourth}.0/24"),
            started_in: Duration::ZERO,
            pki,
            assets,
            etcd_url,
            etcd: None,
            apiserver: None,
            watchdog: Some(watchdog),
            dir,
        };
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut etcd = Command::new(&plane.assets.etcd);
        etcd.arg("--data-dir")
            .arg(plane.dir.join("etcd"))
            .args(["--listen-client-urls", &plane.etcd_url, "--advertise-client-urls", &plane.etcd_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}"), "--log-level", "warn"]);
        plane.etcd = Some(plane.spawn(etcd, "etcd.log"));
        std::fs::write(&plane.kubeconfig, plane.kubeconfig_as("admin", Some("system:masters"))).unwrap();
        plane.start_apiserver().await;
        plane.started_in = begun.elapsed();
        eprintln!("kube control plane: etcd + kube-apiserver ready in {:.2?} at {}", plane.started_in, plane.addr);
        Some(plane)
    }

    fn spawn(&mut self, mut command: Command, log: &str) -> Child {
        let log = std::fs::File::create(self.dir.join(log)).unwrap();
        command.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).process_group(0);
        let child = command.spawn().unwrap_or_else(|error| panic!("start {:?}: {error}", command.get_program()));
        let (_, stdin) = self.watchdog.as_mut().expect("watchdog");
        writeln!(stdin, "{}", child.id()).unwrap();
        child
    }

    /// Starts kube-apiserver (again, on the same port) and waits for `/readyz`.
    pub async fn start_apiserver(&mut self) {
        assert!(self.apiserver.is_none(), "kube-apiserver is running");
        let file = |name: &str| self.dir.join(name).display().to_string();
        let mut command = Command::new(&self.assets.apiserver);
        command.args([
            format!("--etcd-servers={}", self.etcd_url),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", self.addr.port()),
            "--advertise-address=127.0.0.1".into(),
            format!("--tls-cert-file={}", file("apiserver.crt")),
            format!("--tls-private-key-file={}", file("apiserver.key")),
            format!("--client-ca-file={}", file("ca.crt")),
            format!("--service-account-key-file={}", file("sa.pub")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            "--authorization-mode=RBAC".into(),
            format!("--service-cluster-ip-range={}", self.service_cidr),
            "--enable-priority-and-fairness=false".into(),
            "--endpoint-reconciler-type=none".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            format!("--audit-policy-file={}", file("audit-policy.yaml")),
            format!("--audit-log-path={}", file("audit.log")),
            "--audit-log-format=json".into(),
            "--audit-log-mode=blocking".into(),
            "--profiling=false".into(),
        ]);
        let child = self.spawn(command, "kube-apiserver.log");
        self.apiserver = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        let client = self.client().await;
        loop {
            let request = hyper::Request::get("/readyz").body(Vec::new()).unwrap();
            if client.request_text(request).await.is_ok_and(|text| text == "ok") {
                return;
            }
            let exited = [("etcd", &mut self.etcd), ("kube-apiserver", &mut self.apiserver)]
                .into_iter()
                .find_map(|(name, child)| Some((name, child.as_mut()?.try_wait().unwrap()?)));
            if let Some((name, status)) = exited {
                panic!("{name} exited ({status}) before the API server was ready:\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready within {READY_WITHIN:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills kube-apiserver (etcd keeps the data): clients see connections refused.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// The last lines of both logs, for a failure message.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        for log in ["etcd.log", "kube-apiserver.log"] {
            let content = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            text += &format!("--- {log}\n{}\n", lines[lines.len().saturating_sub(30)..].join("\n"));
        }
        text
    }

    /// A client as the admin, for the caller's runtime.
    pub async fn client(&self) -> kube::Client {
        client_from(&std::fs::read_to_string(&self.kubeconfig).unwrap()).await
    }

    /// A kubeconfig (text) for `user` in `group`, authenticated by a client certificate.
    pub fn kubeconfig_as(&self, user: &str, group: Option<&str>) -> String {
        let Pair { cert_pem, key_pem } = self.pki.client(user, group);
        let encode = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
        let credentials =
            format!("client-certificate-data: {}\n    client-key-data: {}", encode(&cert_pem), encode(&key_pem));
        self.kubeconfig_with(user, &credentials)
    }

    /// A kubeconfig (text) authenticated by a bearer token (a ServiceAccount's).
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        self.kubeconfig_with("token", &format!("token: {token}"))
    }

    fn kubeconfig_with(&self, user: &str, credentials: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.pki.ca.cert_pem);
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters:\n- name: test\n  cluster:\n    server: https://{}\n    certificate-authority-data: {ca}\n\
             users:\n- name: {user}\n  user:\n    {credentials}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: {user}\n    namespace: default\n",
            self.addr
        )
    }

    /// `kubectl --kubeconfig ADMIN ARGS…`, with `stdin` piped in when given.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl(&self.kubeconfig, args, stdin)
    }

    /// The audit log so far: one event per request (stage ResponseComplete), as JSON.
    pub fn audit_events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.watchdog.is_none() {
            return;
        }
        let begun = Instant::now();
        self.stop_apiserver();
        if let Some(mut etcd) = self.etcd.take() {
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
        // Closing its input lets the watchdog remove the directory; wait until it has.
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = watchdog.wait();
        }
        eprintln!("kube control plane: stopped and removed in {:.2?}", begun.elapsed());
    }
}

impl ControlPlane {
    /// What the test process ending does: closes the watchdog's input and nothing else, waits
    /// for the watchdog, then reaps etcd and kube-apiserver. Returns how each ended.
    pub fn abandon(mut self) -> Vec<std::process::ExitStatus> {
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            drop(stdin);
            watchdog.wait().unwrap();
        }
        let children = [self.etcd.take(), self.apiserver.take()];
        let deadline = Instant::now() + Duration::from_secs(5);
        let reap = |mut child: Child| loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the watchdog left {} running", child.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        children.into_iter().flatten().map(reap).collect()
    }
}

/// `kubectl --kubeconfig KUBECONFIG ARGS…` (target/tools or `MIRRORSWAP_KUBECTL`).
pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(super::tools::tool("kubectl", "MIRRORSWAP_KUBECTL"));
    command.arg("--kubeconfig").arg(kubeconfig).args(args);
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// A `kube::Client` from kubeconfig text.
pub async fn client_from(kubeconfig: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Metadata for every request, written when the response is complete.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived, \
                            ResponseStarted]\nrules:\n- level: Metadata\n";

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A fresh directory, in memory when /dev/shm is there.
fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() { shm.to_owned() } else { std::env::temp_dir() };
    tempfile::Builder::new().prefix("mirrorswap-kube-").tempdir_in(base).unwrap().keep()
}

/// The watchdog: reads process ids until its input closes, then kills their process groups
/// and removes `dir`.
fn watchdog(dir: &Path) -> (Child, ChildStdin) {
    let script = r#"trap '' INT HUP; pids=; while read -r pid; do pids="$pids $pid"; done
        for pid in $pids; do kill -KILL "-$pid" 2>/dev/null; done; rm -rf "$1""#;
    let mut child = Command::new("sh")
        .args(["-c", script, "watchdog"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}
