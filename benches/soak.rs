//! Soak benchmark of the real server under reloads: `cargo bench --bench soak`.
//!
//! Starts the built `mirrorswap serve` on 127.0.0.1 and drives it for
//! `SOAK_SECONDS` (default 240) with `SOAK_CONCURRENCY` (default 16) HTTPS
//! keep-alive clients sending the 4-container Pod review of
//! `examples/admission/pod.json` to `/mutate`, each request with its own uid,
//! at most `SOAK_MAX_REQUESTS` in all. Meanwhile the rules file is swapped
//! every second between two rule sets with different, known rewrites (in
//! blocks of ten: atomic renames of the file, then Kubernetes-style swaps of a
//! `..data` symlink), and the certificate is rotated every 10 s (a `..data`
//! swap of `tls.crt` and `tls.key`, as a Secret volume does); one more client
//! opens a new connection every second to see which certificate new
//! connections get.
//!
//! Every response is checked: status 200, an `admission.k8s.io/v1`
//! AdmissionReview with the request's uid, allowed, and a JSON patch that
//! applies (`json-patch`) to the request's object and gives exactly the object
//! rule set A or rule set B makes (anything else counts as malformed). Reports
//! requests, statuses, transport failures, malformed answers, latency, swaps and
//! rotations done and seen by the server (`mirrorswap_reloads_total`), RSS at
//! start, peak and end (`VmRSS` every 100 ms) and open descriptors. Exits 1 when
//! anything is malformed or failed, a reload failed or went unseen, a rotated
//! certificate never reached a new connection, descriptors leaked, or a run of
//! 100 s or more did fewer than 100 swaps. Loopback only.

#[path = "common/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use serde_json::Value;
use server::{Connection, Server};
use tokio_rustls::rustls::ClientConfig;

/// Rule set A rewrites all three public images of the review.
const RULES_A: &str = "docker.io::mirror-a.example.org/hub\nquay.io::mirror-a.example.org/quay\n\
                       registry.k8s.io::mirror-a.example.org/k8s\n";
/// Rule set B has other targets and leaves registry.k8s.io alone.
const RULES_B: &str = "docker.io::mirror-b.example.org/hub\nquay.io::mirror-b.example.org/quay\n";

/// The images of `pod.json` after each rule set: (JSON pointer, image).
const EXPECTED: [[(&str, &str); 3]; 2] = [
    [
        ("/spec/initContainers/0/image", "mirror-a.example.org/k8s/kubectl:v1.30.0"),
        ("/spec/containers/0/image", "mirror-a.example.org/hub/nginx:1.27"),
        ("/spec/containers/1/image", "mirror-a.example.org/quay/prometheus/nginx-exporter:1.3.0"),
    ],
    [
        ("/spec/initContainers/0/image", "registry.k8s.io/kubectl:v1.30.0"),
        ("/spec/containers/0/image", "mirror-b.example.org/hub/nginx:1.27"),
        ("/spec/containers/1/image", "mirror-b.example.org/quay/prometheus/nginx-exporter:1.3.0"),
    ],
];

const UID_MARK: &str = "@UID@";

/// What the clients send and what they accept.
struct Review {
    /// The compact review, split around its uid.
    before_uid: Vec<u8>,
    after_uid: Vec<u8>,
    /// The request's object, and what rule sets A and B make of it.
    object: Value,
    expected: [Value; 2],
}

impl Review {
    fn new() -> Self {
        let mut review: Value = serde_json::from_slice(&server::sample_review("pod.json")).expect("sample");
        review["request"]["uid"] = Value::from(UID_MARK);
        let text = serde_json::to_string(&review).expect("JSON");
        let (before, after) = text.split_once(&format!("\"{UID_MARK}\"")).expect("the uid");
        let object = review["request"]["object"].clone();
        let expected = EXPECTED.map(|images| {
            let mut patched = object.clone();
            for (pointer, image) in images {
                *patched.pointer_mut(pointer).expect("an image field") = Value::from(image);
            }
            patched
        });
        Self {
            before_uid: format!("{before}\"").into_bytes(),
            after_uid: format!("\"{after}").into_bytes(),
            object,
            expected,
        }
    }

    fn body(&self, uid: &str) -> Bytes {
        Bytes::from([self.before_uid.as_slice(), uid.as_bytes(), self.after_uid.as_slice()].concat())
    }

    /// Which rule set's object the answer gives (0 = A, 1 = B), or why it is malformed.
    fn check(&self, status: u16, answer: &[u8], uid: &str) -> Result<usize, String> {
        let object = server::patched_object(status, answer, uid, &self.object)?;
        self.expected
            .iter()
            .position(|expected| *expected == object)
            .ok_or_else(|| format!("unexpected result {object}"))
    }
}

/// One client's (or all clients') counts.
#[derive(Default)]
struct Tally {
    sent: u64,
    statuses: BTreeMap<u16, u64>,
    failed: u64,
    malformed: u64,
    by_rule_set: [u64; 2],
    latencies: Vec<u32>,
    examples: Vec<String>,
}

impl Tally {
    fn record(
        &mut self,
        uid: &str,
        review: &Review,
        started: Instant,
        result: Result<(u16, Bytes), server::TransportError>,
    ) {
        self.sent += 1;
        match result {
            Err(error) => {
                self.failed += 1;
                self.example(format!("{uid}: transport error: {error}"));
            }
            Ok((status, answer)) => {
                self.latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
                *self.statuses.entry(status).or_default() += 1;
                match review.check(status, &answer, uid) {
                    Ok(set) => self.by_rule_set[set] += 1,
                    Err(why) => {
                        self.malformed += 1;
                        self.example(format!("{uid}: {why}"));
                    }
                }
            }
        }
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 5 {
            self.examples.push(text);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.failed += other.failed;
        self.malformed += other.malformed;
        self.by_rule_set[0] += other.by_rule_set[0];
        self.by_rule_set[1] += other.by_rule_set[1];
        self.latencies.extend(other.latencies);
        for example in other.examples {
            self.example(example);
        }
    }
}

/// What the clients share.
struct Load {
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
    review: Review,
    until: Instant,
    budget: AtomicU64,
}

impl Load {
    /// Takes one request from the budget; false once time or requests are used up.
    fn another(&self) -> bool {
        Instant::now() < self.until
            && self.budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }
}

/// One keep-alive client: requests back to back; reconnects after a transport error.
async fn keep_alive_client(load: Arc<Load>, client: usize) -> Tally {
    let mut tally = Tally::default();
    let mut connection: Option<Connection> = None;
    let mut sequence = 0u64;
    while load.another() {
        sequence += 1;
        let uid = format!("soak-{client}-{sequence}");
        let started = Instant::now();
        let result = match &mut connection {
            Some(open) => open.post("/mutate", load.review.body(&uid)).await,
            None => match Connection::open(load.addr, &load.config).await {
                Ok(mut open) => {
                    let result = open.post("/mutate", load.review.body(&uid)).await;
                    connection = Some(open);
                    result
                }
                Err(error) => Err(error),
            },
        };
        if result.is_err() {
            connection = None;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tally.record(&uid, &load.review, started, result);
    }
    tally
}

/// Opens a new connection every second and sends one checked request on it; also returns
/// the distinct leaf certificates those connections were shown, in order.
async fn reconnecting_client(load: Arc<Load>) -> (Tally, Vec<Vec<u8>>) {
    // A resumed TLS session would skip the certificate (and report the one it began with).
    let mut fresh = ClientConfig::clone(&load.config);
    fresh.resumption = tokio_rustls::rustls::client::Resumption::disabled();
    let fresh = Arc::new(fresh);
    let (mut tally, mut certificates) = (Tally::default(), Vec::<Vec<u8>>::new());
    let mut sequence = 0u64;
    while load.another() {
        sequence += 1;
        let uid = format!("soak-reconnect-{sequence}");
        let started = Instant::now();
        let result = match Connection::open(load.addr, &fresh).await {
            Ok(mut connection) => {
                if certificates.last() != Some(&connection.peer_certificate) {
                    certificates.push(connection.peer_certificate.clone());
                }
                connection.post("/mutate", load.review.body(&uid)).await
            }
            Err(error) => Err(error),
        };
        tally.record(&uid, &load.review, started, result);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    (tally, certificates)
}

/// Replaces files the two ways Kubernetes users do: an atomic rename of the file itself, or a
/// new `..N` directory behind the `..data` symlink the file links through (ConfigMap and
/// Secret volumes).
struct Swapper {
    dir: PathBuf,
    version: usize,
}

impl Swapper {
    fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).expect("create directory");
        Self { dir, version: 0 }
    }

    /// Writes `name` atomically as a regular file in the directory.
    fn rename_in(&self, name: &str, content: &str) {
        let temporary = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, content).expect("write temporary file");
        std::fs::rename(&temporary, self.dir.join(name)).expect("rename over the file");
    }

    /// Puts `files` in a new `..N` directory, points `..data` at it, links each name through
    /// `..data` (if it is not already) and removes the previous `..N`.
    fn swap_data(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let version = format!("..{}", self.version);
        std::fs::create_dir(self.dir.join(&version)).expect("create ..N");
        for (name, content) in files {
            std::fs::write(self.dir.join(&version).join(name), content).expect("write into ..N");
        }
        self.replace_with_link("..data", Path::new(&version));
        for (name, _) in files {
            if !self.dir.join(name).is_symlink() {
                self.replace_with_link(name, &Path::new("..data").join(name));
            }
        }
        let previous = self.dir.join(format!("..{}", self.version - 1));
        if previous.is_dir() {
            std::fs::remove_dir_all(previous).expect("remove the previous ..N");
        }
    }

    fn replace_with_link(&self, name: &str, target: &Path) {
        let temporary = self.dir.join(format!("{name}.tmp-link"));
        symlink(target, &temporary).expect("create symlink");
        std::fs::rename(&temporary, self.dir.join(name)).expect("rename symlink into place");
    }
}

/// Counts of what the swapping thread did.
#[derive(Default)]
struct Churn {
    swaps: u64,
    data_swaps: u64,
    rotations: u64,
}

/// Every second swaps the rules (ten renames, then ten `..data` swaps, …); every 10 s rotates
/// the certificate to the next of `certificates`.
fn churn(
    rules: &mut Swapper,
    certs: &mut Swapper,
    certificates: &[mirrorswap::certs::Issued],
    until: Instant,
) -> Churn {
    let (started, mut done) = (Instant::now(), Churn::default());
    for tick in 1.. {
        let at = started + Duration::from_secs(tick);
        if at >= until {
            break;
        }
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let text = if tick % 2 == 1 { RULES_B } else { RULES_A };
        if (done.swaps / 10) % 2 == 0 {
            rules.rename_in("rules.conf", text);
        } else {
            rules.swap_data(&[("rules.conf", text)]);
            done.data_swaps += 1;
        }
        done.swaps += 1;
        if tick % 10 == 0
            && let Some(next) = certificates.get(done.rotations as usize + 1)
        {
            certs.swap_data(&[("tls.crt", &next.cert_pem), ("tls.key", &next.key_pem)]);
            done.rotations += 1;
        }
    }
    done
}

async fn reloads(admin: std::net::SocketAddr) -> [f64; 4] {
    let text = server::metrics_text(admin).await;
    [("rules", "success"), ("rules", "failure"), ("certificate", "success"), ("certificate", "failure")].map(
        |(what, result)| {
            server::metric(&text, &format!("mirrorswap_reloads_total{{result=\"{result}\",what=\"{what}\"}}"))
        },
    )
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (such as `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let seconds = server::env_number("SOAK_SECONDS", 240);
    let concurrency = server::env_number("SOAK_CONCURRENCY", 16) as usize;
    let max_requests = server::env_number("SOAK_MAX_REQUESTS", 100_000_000);

    let dir = tempfile::tempdir().expect("temporary directory");
    let names = ["localhost".to_owned()];
    let certificates: Vec<_> = (0..=seconds / 10)
        .map(|n| mirrorswap::certs::issue(&format!("soak CA {n}"), &names, 1).expect("test certificate"))
        .collect();
    let mut rules = Swapper::new(dir.path().join("rules"));
    rules.rename_in("rules.conf", RULES_A);
    let mut certs = Swapper::new(dir.path().join("certs"));
    certs.swap_data(&[("tls.crt", &certificates[0].cert_pem), ("tls.key", &certificates[0].key_pem)]);
    let rules_path = rules.dir.join("rules.conf").display().to_string();
    let server = Server::start(
        &certs.dir.join("tls.crt"),
        &certs.dir.join("tls.key"),
        "SOAK_LOG_LEVEL",
        &["--rules", &rules_path],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let config = server::client_config(certificates.iter().map(|issued| issued.ca_pem.as_str()));

    let (fds_start, rss_start) = (server.open_fds(), server.rss_mib());
    let reloads_start = runtime.block_on(reloads(server.admin));
    let sampler = server.sample_rss();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let load = Arc::new(Load {
        addr: server.addr,
        config,
        review: Review::new(),
        until,
        budget: AtomicU64::new(max_requests),
    });
    println!(
        "soak: {seconds} s, {concurrency} keep-alive clients + 1 reconnecting, rules swapped every 1 s, certificate rotated every 10 s"
    );
    let clients: Vec<_> =
        (0..concurrency).map(|client| runtime.spawn(keep_alive_client(Arc::clone(&load), client))).collect();
    let reconnecting = runtime.spawn(reconnecting_client(Arc::clone(&load)));
    let churned = churn(&mut rules, &mut certs, &certificates, until);
    let (mut tally, certificates_seen) = runtime.block_on(async {
        let (mut tally, seen) = reconnecting.await.expect("reconnecting client");
        for client in clients {
            tally.merge(client.await.expect("client task"));
        }
        (tally, seen)
    });
    let elapsed = started.elapsed().as_secs_f64();
    // Let the last swap's reload land and the closed connections go.
    std::thread::sleep(Duration::from_millis(1500));
    let reloads_end = runtime.block_on(reloads(server.admin));
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.open_fds() > fds_start && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (fds_end, rss_end, rss_peak) = (server.open_fds(), server.rss_mib(), sampler.stop());

    tally.latencies.sort_unstable();
    let at = |q: f64| server::ms(server::quantile(&tally.latencies, q));
    let [rules_ok, rules_failed, certs_ok, certs_failed] =
        [0, 1, 2, 3].map(|i| (reloads_end[i] - reloads_start[i]).round() as u64);
    let statuses: Vec<String> = tally.statuses.iter().map(|(status, count)| format!("{status}: {count}")).collect();
    println!();
    println!("| what | value |");
    println!("| --- | ---: |");
    println!("| duration | {elapsed:.0} s |");
    println!("| requests sent | {} ({:.0}/s) |", tally.sent, tally.sent as f64 / elapsed);
    println!("| responses by status | {} |", statuses.join(", "));
    println!("| answers of rule set A / B | {} / {} |", tally.by_rule_set[0], tally.by_rule_set[1]);
    println!("| failed (transport errors) | {} |", tally.failed);
    println!("| malformed | {} |", tally.malformed);
    println!("| latency p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |", at(0.5), at(0.99), at(1.0));
    println!(
        "| rule swaps done / reloads seen (failed) | {} ({} via ..data) / {rules_ok} ({rules_failed}) |",
        churned.swaps, churned.data_swaps
    );
    println!(
        "| certificate rotations done / reloads seen (failed) | {} / {certs_ok} ({certs_failed}) |",
        churned.rotations
    );
    println!("| certificates seen by new connections | {} |", certificates_seen.len());
    println!("| RSS start / peak / end | {rss_start:.1} / {rss_peak:.1} / {rss_end:.1} MiB |");
    println!("| open fds start / end | {fds_start} / {fds_end} |");
    for example in &tally.examples {
        println!("example problem: {example}");
    }

    let mut problems = Vec::new();
    if tally.malformed > 0 {
        problems.push(format!("{} malformed responses", tally.malformed));
    }
    if tally.failed > 0 {
        problems.push(format!("{} failed requests", tally.failed));
    }
    if rules_failed > 0 || certs_failed > 0 {
        problems.push(format!("{rules_failed} rules and {certs_failed} certificate reloads failed"));
    }
    if rules_ok + 1 < churned.swaps {
        problems.push(format!("{} rule swaps but only {rules_ok} reloads", churned.swaps));
    }
    if certs_ok + 1 < churned.rotations || (certificates_seen.len() as u64) < churned.rotations {
        problems.push(format!(
            "{} rotations, {certs_ok} certificate reloads, {} certificates seen by new connections",
            churned.rotations,
            certificates_seen.len()
        ));
    }
    if churned.swaps > 1 && tally.by_rule_set.contains(&0) {
        problems.push("the answers never changed between rule sets".into());
    }
    if fds_end > fds_start {
        problems.push(format!("open descriptors grew from {fds_start} to {fds_end}"));
    }
    if seconds >= 100 && churned.swaps < 100 {
        problems.push(format!("only {} rule swaps (at least 100 wanted)", churned.swaps));
    }
    if problems.is_empty() {
        println!("\nsoak passed");
    } else {
        println!("\nsoak FAILED: {}", problems.join("; "));
        drop(server);
        std::process::exit(1);
    }
}
