//! Shared by the server benchmarks (`load`, `soak`, `profile`, `scale`): the
//! release `mirrorswap serve` binary started on 127.0.0.1 with a test
//! certificate, HTTPS keep-alive clients (rustls + hyper, HTTP/1.1), the admin
//! port's metrics, and what `/proc` says about the server process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// A running `mirrorswap serve`, killed on drop.
pub struct Server {
    child: Child,
    /// The webhook's HTTPS address.
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`).
    pub admin: SocketAddr,
    /// The process id, for `/proc`.
    pub pid: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and its serving certificate for `localhost`, as `tls.crt` and `tls.key` in a
/// temporary directory (removed on drop).
pub struct TestCertificate {
    /// The PEMs (`ca_pem` is what clients trust).
    pub issued: mirrorswap::certs::Issued,
    /// The directory, for other files of the run.
    pub dir: tempfile::TempDir,
    /// `tls.crt`.
    pub cert: PathBuf,
    /// `tls.key`.
    pub key: PathBuf,
}

/// Issues a [`TestCertificate`] from a new CA named `ca_name`.
pub fn test_certificate(ca_name: &str) -> TestCertificate {
    let issued = mirrorswap::certs::issue(ca_name, &["localhost".into()], 1).expect("test certificate");
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &issued.cert_pem).expect("write certificate");
    std::fs::write(&key, &issued.key_pem).expect("write key");
    TestCertificate { issued, dir, cert, key }
}

impl Server {
    /// Starts the built binary: `serve` on 127.0.0.1 port 0 (webhook and admin), the
    /// certificate and key given, the log level from `log_env` (default `info`, the text
    /// format operators run), plus `extra` flags (`--rules FILE`, `--bench-noop-route`, …).
    pub fn start(cert: &Path, key: &Path, log_env: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            // Filter directives; the start-up line must stay visible, so quieten admissions
            // with e.g. `info,mirrorswap::server::admission=warn`.
            .args(["--log-level", &std::env::var(log_env).unwrap_or_else(|_| "info".into())])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mirrorswap serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        // `… mirrorswap serving webhook=127.0.0.1:PORT admin=127.0.0.1:PORT rules=…`
        let (addr, admin) = loop {
            let line = lines.next().expect("the server logs its address").expect("log line");
            if let Some(rest) = line.split("mirrorswap serving ").nth(1) {
                let field = |name: &str| -> SocketAddr {
                    let value = rest.split_whitespace().find_map(|pair| pair.strip_prefix(name)).expect("address");
                    value.parse().expect("socket address")
                };
                break (field("webhook="), field("admin="));
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        let pid = child.id();
        Self { child, addr, admin, pid }
    }

    /// The process's `/proc/PID/status` field (`VmRSS`, `VmHWM`) in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("/proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a status field in kB")
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS") as f64 / 1024.0
    }

    /// Resets the kernel's resident high-water mark (`VmHWM`) to the current RSS.
    pub fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").expect("reset VmHWM (clear_refs)");
    }

    /// Open file descriptors.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).expect("/proc/PID/fd").count()
    }

    /// CPU time used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).expect("/proc/PID/stat");
        // After `pid (comm) `: state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat.rsplit_once(") ").expect("stat").1.split_whitespace().collect();
        let ticks = |index: usize| fields[index - 3].parse::<u64>().expect("clock ticks");
        (ticks(14) + ticks(15)) as f64 / clock_ticks_per_second()
    }

    /// Samples RSS every 100 ms until the returned sampler is stopped.
    pub fn sample_rss(&self) -> RssSampler {
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (pid, flag, high) = (self.pid, Arc::clone(&stop), Arc::clone(&peak));
        let thread = std::thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            while !flag.load(Ordering::Relaxed) {
                let kib = std::fs::read_to_string(&path).ok().and_then(|status| {
                    status
                        .lines()
                        .find_map(|line| line.strip_prefix("VmRSS:"))?
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse()
                        .ok()
                });
                high.fetch_max(kib.unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler { stop, peak, thread: Some(thread) }
    }
}

/// `getconf CLK_TCK` (100 on Linux unless told otherwise).
fn clock_ticks_per_second() -> f64 {
    let output = Command::new("getconf").arg("CLK_TCK").output().ok();
    output.and_then(|out| String::from_utf8(out.stdout).ok()).and_then(|s| s.trim().parse().ok()).unwrap_or(100.0)
}

/// RSS samples of a server, taken on a thread of their own.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Stops sampling; the largest RSS seen, in MiB.
    pub fn stop(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("RSS sampler");
        }
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

/// A client TLS configuration trusting the CAs in `ca_pems`, offering HTTP/1.1 only.
pub fn client_config<'a>(ca_pems: impl IntoIterator<Item = &'a str>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca_pem in ca_pems {
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA certificate")).expect("add root");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One HTTPS keep-alive connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// The leaf certificate the server presented (DER).
    pub peer_certificate: Vec<u8>,
}

/// Why a request got no response.
pub type TransportError = Box<dyn std::error::Error + Send + Sync>;

impl Connection {
    /// Connects to `addr` (TCP_NODELAY), TLS for `localhost`, HTTP/1.1.
    pub async fn open(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<Self, TransportError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let tls = TlsConnector::from(Arc::clone(config)).connect(ServerName::try_from("localhost")?, stream).await?;
        let peer_certificate =
            tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|leaf| leaf.to_vec());
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(Self { sender, peer_certificate: peer_certificate.unwrap_or_default() })
    }

    /// POSTs a JSON `body` to `path`; the status and the whole answer.
    pub async fn post(&mut self, path: &str, body: Bytes) -> Result<(u16, Bytes), TransportError> {
        let request = hyper::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }
}

/// GETs `/metrics` from the admin listener (plain HTTP).
pub async fn metrics_text(admin: SocketAddr) -> String {
    let stream = TcpStream::connect(admin).await.expect("connect to the admin port");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP/1.1");
    tokio::spawn(connection);
    let request =
        hyper::Request::get("/metrics").header("host", "localhost").body(Full::new(Bytes::new())).expect("request");
    let response = sender.send_request(request).await.expect("/metrics");
    let body = response.into_body().collect().await.expect("metrics body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// The value of one sample (`name{labels}` exactly as exported) in a metrics text, 0 when absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines().find_map(|line| line.strip_prefix(sample)?.trim().parse().ok()).unwrap_or(0.0)
}

/// One keep-alive client: POSTs `body` to `path` back to back until `until`, checking each
/// answer (200, an AdmissionReview); returns latencies in µs.
pub async fn run_client(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    path: &'static str,
    body: Bytes,
    until: std::time::Instant,
) -> Vec<u32> {
    let mut connection = Connection::open(addr, &config).await.expect("connect, TLS handshake");
    send_until(&mut connection, path, &body, until).await
}

/// POSTs `body` to `path` on `connection` back to back until `until`, checking each answer
/// (200, an AdmissionReview); returns latencies in µs.
pub async fn send_until(connection: &mut Connection, path: &str, body: &Bytes, until: std::time::Instant) -> Vec<u32> {
    let mut latencies = Vec::new();
    while std::time::Instant::now() < until {
        let started = std::time::Instant::now();
        let (status, answer) = connection.post(path, body.clone()).await.expect("response");
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&answer));
        assert!(answer.starts_with(b"{\"apiVersion\":\"admission.k8s.io/v1\""), "malformed response");
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    latencies
}

/// Throughput and latency of one measured round.
pub struct Run {
    pub requests_per_second: f64,
    pub p50: u32,
    pub p99: u32,
    pub max: u32,
}

/// `clients` concurrent [`run_client`]s for `seconds`.
pub async fn measure(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    path: &'static str,
    body: &Bytes,
    clients: usize,
    seconds: u64,
) -> Run {
    let started = std::time::Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> =
        (0..clients).map(|_| tokio::spawn(run_client(addr, Arc::clone(config), path, body.clone(), until))).collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| quantile(&latencies, q);
    Run { requests_per_second: latencies.len() as f64 / elapsed, p50: at(0.5), p99: at(0.99), max: at(1.0) }
}

/// The run with the median `key` (throughput, for the benchmarks).
pub fn median_by<T>(mut runs: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

/// The last cell of a `/noop`-and-`/mutate` table row: on the `/mutate` row, its requests/s as
/// a share of `/noop`'s; empty on the `/noop` row.
pub fn share_of_noop(route: &str, mutate_per_second: f64, noop_per_second: f64) -> String {
    if route == "/mutate" { format!("{:.0}%", 100.0 * mutate_per_second / noop_per_second) } else { String::new() }
}

/// The `quantile` (0..=1) of sorted latencies.
pub fn quantile(sorted: &[u32], quantile: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * quantile) as usize]
}

/// Microseconds as milliseconds.
pub fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

/// An unsigned number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.trim().parse().ok()).unwrap_or(default)
}

/// A comma-separated list of numbers from the environment, or `default`.
pub fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name).unwrap_or_else(|_| default.into()).split(',').filter_map(|n| n.trim().parse().ok()).collect()
}

/// Checks a `/mutate` answer (status 200, an `admission.k8s.io/v1` AdmissionReview with
/// `uid`, allowed) and returns `object` with its JSON patch applied (`json-patch`), or why not.
pub fn patched_object(status: u16, answer: &[u8], uid: &str, object: &Value) -> Result<Value, String> {
    use base64::Engine;
    if status != 200 {
        return Err(format!("status {status}: {}", String::from_utf8_lossy(answer)));
    }
    let review: Value = serde_json::from_slice(answer).map_err(|error| format!("not JSON: {error}"))?;
    let response = &review["response"];
    let fields_ok = review["apiVersion"] == "admission.k8s.io/v1"
        && review["kind"] == "AdmissionReview"
        && response["uid"] == uid
        && response["allowed"] == true;
    if !fields_ok {
        return Err(format!("wrong review fields: {review}"));
    }
    let mut object = object.clone();
    if let Some(encoded) = response.get("patch") {
        if response["patchType"] != "JSONPatch" {
            return Err(format!("patchType {}", response["patchType"]));
        }
        let encoded = encoded.as_str().ok_or("the patch is not a string")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|e| format!("base64: {e}"))?;
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).map_err(|e| format!("not a JSON patch: {e}"))?;
        json_patch::patch(&mut object, &patch).map_err(|error| format!("the patch does not apply: {error}"))?;
    }
    Ok(object)
}

/// `examples/admission/<name>`, compacted to one line.
pub fn sample_review(name: &str) -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/admission").join(name);
    let review = std::fs::read(&path).expect("sample review");
    let value: serde_json::Value = serde_json::from_slice(&review).expect("sample JSON");
    Bytes::from(serde_json::to_vec(&value).expect("compact JSON"))
}
