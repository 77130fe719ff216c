//! The memory bound of the real binary: `mirrorswap serve` (a child process, with 10k rules)
//! gets 64 concurrent 2.5 MiB reviews, half over HTTP/1.1 and half over HTTP/2, each on its
//! own connection. Every answer is 200 or 503 (shed by `--max-inflight-body-bytes`), and the
//! process's peak RSS (`VmHWM`) stays under the bound the README documents for sizing the
//! memory limit: idle RSS + 2 × `--max-inflight-body-bytes` + 16 MiB.
//!
//! The same bound holds while the server checks a hostile registry (`--swap-policy exists`)
//! that serves 200 MiB manifest bodies: one registry answers `HEAD` 200 without a digest (a
//! `GET` would read it all; none is made), another refuses `HEAD` (the `GET` is cut at 4 MiB).
//!
//! `MEMORY_BOUND_BIN` runs another build of the binary (e.g. `target/release/mirrorswap`).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use common::{Client, Protocol, sample};
use serde_json::json;

const MIB: u64 = 1024 * 1024;
/// `--max-inflight-body-bytes`'s default.
const BUDGET: u64 = 24 * MIB;
/// Allocator and protocol buffers beyond the bodies' own cost.
const SLACK: u64 = 16 * MIB;
const REQUESTS: usize = 64;

struct Child_(Child);

impl Drop for Child_ {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// One run: peak RSS of a fresh server under the 64 reviews, with `extra` flags.
struct Run {
    idle: u64,
    peak: u64,
    served: usize,
    shed: usize,
}

/// A server child process, its webhook address and its CA.
struct Server {
    child: Child_,
    addr: SocketAddr,
    ca: mirrorswap::certs::Issued,
    _dir: tempfile::TempDir,
}

/// Starts `mirrorswap serve` with 10k rules plus `rules_extra`, and `extra` flags.
fn spawn(rules_extra: &str, extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ca = mirrorswap::certs::issue("memory test CA", &["localhost".into()], 1).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let mut rules: String =
        (0..10_000).map(|i| format!("registry-{i}.example.com::harbor.example.org/mirror-{i}\n")).collect();
    rules.push_str(rules_extra);
    let rule_count = 10_000 + rules_extra.lines().count();
    let (cert, key, rules) = (file("tls.crt", &ca.cert_pem), file("tls.key", &ca.key_pem), file("rules.conf", &rules));
    let binary = std::env::var("MEMORY_BOUND_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mirrorswap").to_owned());
    let mut child = Command::new(&binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--log-level", "warn,mirrorswap::server=info,mirrorswap::server::admission=warn"])
        .args(["--tls-cert", &cert, "--tls-key", &key, "--rules", &rules])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let child = Child_(child);
    let addr: SocketAddr = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if entry["message"] == "mirrorswap serving" {
            assert_eq!(entry["rules"], rule_count);
            break entry["webhook"].as_str().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    Server { child, addr, ca, _dir: dir }
}

async fn run(extra: &[&str]) -> Run {
    let server = spawn("", extra);
    let (pid, addr, ca) = (server.child.0.id(), server.addr, &server.ca);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let idle = status_bytes(pid, "VmRSS");
    // Start-up (loading the rules) may have peaked higher; measure the requests' peak alone.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();

    // A valid Pod review of 2.5 MiB: a large annotation.
    let mut review = sample("pod.json");
    review["request"]["object"]["metadata"]["annotations"] = json!({ "filler": "x".repeat(5 * MIB as usize / 2) });
    let body = serde_json::to_vec(&review).unwrap();
    assert!(body.len() as u64 >= 5 * MIB / 2);

    let mut clients = Vec::new();
    for index in 0..REQUESTS {
        let protocol = if index % 2 == 0 { Protocol::Http1 } else { Protocol::Http2 };
        clients.push(Client::connect(addr, &ca.ca_pem, protocol).await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let requests: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let (body, start) = (body.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                client.post("/mutate", "application/json", body).await
            })
        })
        .collect();
    let (mut served, mut shed) = (0, 0);
    for request in requests {
        let (status, answer) = request.await.unwrap();
        match status {
            200 => {
                let review: serde_json::Value = serde_json::from_slice(&answer).unwrap();
                assert_eq!(review["response"]["allowed"], true);
                served += 1;
            }
            503 => shed += 1,
            other => panic!("status {other}: {}", String::from_utf8_lossy(&answer)),
        }
    }
    Run { idle, peak: status_bytes(pid, "VmHWM"), served, shed }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_large_reviews_stay_under_the_documented_bound() {
    let bounded = run(&[]).await;
    // The same run with a budget too large to matter (and time for a debug build to get through
    // all 64 at once): what the bound saves.
    let unbounded = run(&["--max-inflight-body-bytes", "1073741824", "--request-timeout", "60s"]).await;
    let bound = bounded.idle + 2 * BUDGET + SLACK;
    for (name, run) in [("default budget", &bounded), ("no budget", &unbounded)] {
        println!(
            "{name}: idle RSS {:.1} MiB (10k rules), peak {:.1} MiB under {REQUESTS} concurrent 2.5 MiB reviews \
             ({} served, {} shed)",
            mib(run.idle),
            mib(run.peak),
            run.served,
            run.shed
        );
    }
    println!("bound: {:.1} MiB", mib(bound));
    assert!(bounded.served > 0, "the budget let no request through");
    assert!(bounded.peak < bound, "peak RSS {:.1} MiB over the bound {:.1} MiB", mib(bounded.peak), mib(bound));
    assert_eq!(unbounded.shed, 0, "nothing is shed without a budget");
    assert!(unbounded.peak > bounded.peak, "the budget did not lower the peak");
}

/// `--swap-policy exists` against registries serving 200 MiB manifest bodies: 16 concurrent
/// reviews of 4 new images each (64 lookups, 16 per host at a time). Every answer is 200, the
/// `HEAD`-only registry gets no `GET`, the other's `GET`s are cut at 4 MiB, and the peak RSS
/// stays under the documented bound (idle + 2 × `--max-inflight-body-bytes` + 16 MiB). Before
/// the cap one 4-image review took the server from 19 MB to 1.18 GB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checking_a_registry_that_serves_200_mib_manifests_stays_under_the_bound() {
    use common::hostile::{Hostile, Reply};
    let big = 200 * MIB;
    let head_only = Hostile::start(None, move |seen| match seen.method.as_str() {
        "HEAD" => Reply::status(200),
        _ => Reply::status(200).streamed(big),
    })
    .await;
    let get_only = Hostile::start(None, move |seen| match seen.method.as_str() {
        "HEAD" => Reply::status(405),
        _ => Reply::status(200).streamed(big),
    })
    .await;
    let (a, b) = (head_only.host(), get_only.host());
    let rules = format!("src.invalid/a::{a}/m\nsrc.invalid/b::{b}/m\n");
    let insecure = format!("{a},{b}");
    let flags = [
        "--swap-policy",
        "exists",
        "--insecure-registry",
        &insecure,
        "--check-timeout",
        "20s",
        "--request-timeout",
        "30s",
    ];
    let server = spawn(&rules, &flags);
    let pid = server.child.0.id();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let idle = status_bytes(pid, "VmRSS");
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();

    let requests: Vec<_> = (0..16)
        .map(|request| {
            let (addr, ca_pem) = (server.addr, server.ca.ca_pem.clone());
            tokio::spawn(async move {
                let mut review = sample("pod.json");
                let containers: Vec<serde_json::Value> = (0..4)
                    .map(|n| {
                        let side = if n % 2 == 0 { "a" } else { "b" };
                        json!({"name": format!("c{n}"), "image": format!("src.invalid/{side}/app{request}:{n}")})
                    })
                    .collect();
                review["request"]["object"]["spec"] = json!({ "containers": containers });
                let mut client = Client::connect(addr, &ca_pem, Protocol::Http1).await;
                client.review(&review).await
            })
        })
        .collect();
    let mut patched = 0;
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response["response"]["allowed"], true, "{response}");
        patched += usize::from(response["response"]["patch"].is_string());
    }
    let peak = status_bytes(pid, "VmHWM");
    let bound = idle + 2 * BUDGET + SLACK;
    println!(
        "idle RSS {:.1} MiB, peak {:.1} MiB checking 64 images against 200 MiB manifests; bound {:.1} MiB",
        mib(idle),
        mib(peak),
        mib(bound)
    );
    assert_eq!(patched, 16, "the HEAD-only registry's images are present");
    let gets = |hostile: &Hostile| hostile.seen().iter().filter(|seen| seen.method == "GET").count();
    assert_eq!(gets(&head_only), 0, "a HEAD 2xx needs no GET");
    assert_eq!(gets(&get_only), 32, "each refused HEAD is followed by one GET");
    assert!(peak < bound, "peak RSS {:.1} MiB over the bound {:.1} MiB", mib(peak), mib(bound));
}
