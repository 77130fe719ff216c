//! The memory bound of the real binary: `mirrorswap serve` (a child process, with 10k rules)
//! gets 64 concurrent 2.5 MiB reviews, half over HTTP/1.1 and half over HTTP/2, each on its
//! own connection. Every answer is 200 or 503 (shed by `--max-inflight-body-bytes`), and the
//! process's peak RSS (`VmHWM`) stays under the bound the README documents for sizing the
//! memory limit: idle RSS + 2 × `--max-inflight-body-bytes` + 16 MiB.
//!
//! The largest review the API server sends, an UPDATE of a Pod whose `object` and `oldObject`
//! are each at etcd's stored-size limit and escaped as Go's JSON encoder writes them (~18 MiB),
//! is answered 200 by `/mutate` and `/validate` with the default flags, within the same bound.
//!
//! The same bound holds while the server checks hostile registries (`--swap-policy exists`)
//! that serve 200 MiB manifest bodies: one answers `HEAD` 200 without a digest (a `GET` would
//! read it all; none is made), the other refuses `HEAD` (the `GET` is cut at 4 MiB).
//!
//! `MEMORY_BOUND_BIN` runs another build of the binary (e.g. `target/release/mirrorswap`).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use common::{Client, Protocol, patch_of, sample};
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

/// A `mirrorswap serve` child with 10k rules and `extra` flags, settled: its idle RSS taken
/// and its peak reset, so that what it peaks at next is the requests' doing.
struct Server {
    process: Child_,
    addr: SocketAddr,
    ca_pem: String,
    idle: u64,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(extra: &[&str]) -> Self {
        Self::start_with_rules("", extra).await
    }

    /// As [`Self::start`], with `rules_extra` after the 10k rules.
    async fn start_with_rules(rules_extra: &str, extra: &[&str]) -> Self {
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
        let (cert, key, rules) =
            (file("tls.crt", &ca.cert_pem), file("tls.key", &ca.key_pem), file("rules.conf", &rules));
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
        let process = Child_(child);
        let pid = process.0.id();
        let addr: SocketAddr = loop {
            let line = lines.next().expect("the server logs its address").unwrap();
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["message"] == "mirrorswap serving" {
                assert_eq!(entry["rules"], rule_count);
                break entry["webhook"].as_str().unwrap().parse().unwrap();
            }
        };
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let idle = status_bytes(pid, "VmRSS");
        // Start-up (loading the rules) may have peaked higher; measure the requests' peak alone.
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        Self { process, addr, ca_pem: ca.ca_pem, idle, _dir: dir }
    }

    async fn connect(&self, protocol: Protocol) -> Client {
        Client::connect(self.addr, &self.ca_pem, protocol).await
    }

    /// POSTs `body` to `/mutate` once per protocol given, each on its own connection, all
    /// started together; the answers in order.
    async fn post_at_once(&self, protocols: impl Iterator<Item = Protocol>, body: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut clients = Vec::new();
        for protocol in protocols {
            clients.push(self.connect(protocol).await);
        }
        let start = Arc::new(tokio::sync::Barrier::new(clients.len()));
        let requests: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                let (body, start) = (body.to_vec(), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    client.post("/mutate", "application/json", body).await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for request in requests {
            answers.push(request.await.unwrap());
        }
        answers
    }

    fn peak(&self) -> u64 {
        status_bytes(self.process.0.id(), "VmHWM")
    }
}

async fn run(extra: &[&str]) -> Run {
    let server = Server::start(extra).await;

    // A valid Pod review of 2.5 MiB: a large annotation.
    let mut review = sample("pod.json");
    review["request"]["object"]["metadata"]["annotations"] = json!({ "filler": "x".repeat(5 * MIB as usize / 2) });
    let body = serde_json::to_vec(&review).unwrap();
    assert!(body.len() as u64 >= 5 * MIB / 2);

    let protocols = (0..REQUESTS).map(|index| if index % 2 == 0 { Protocol::Http1 } else { Protocol::Http2 });
    let answers = server.post_at_once(protocols, &body).await;
    let (mut served, mut shed) = (0, 0);
    for (status, answer) in answers {
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
    Run { idle: server.idle, peak: server.peak(), served, shed }
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

/// The most etcd stores of one object (its default `--max-request-bytes`).
const STORED_LIMIT: usize = 3 * MIB as usize / 2;

/// An UPDATE review of a Pod whose `object` and `oldObject` are each about [`STORED_LIMIT`]
/// as stored (protobuf: one byte per `<`) and six times that as the API server sends them
/// (Go's encoder writes `<` as `\u003c`). The update changes one image, so `/mutate` patches.
fn largest_update_review() -> Vec<u8> {
    let mut review = sample("pod.json");
    let request = &mut review["request"];
    request["operation"] = json!("UPDATE");
    request["options"] = json!({"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"});
    let object = &mut request["object"];
    object["spec"]["containers"][0]["image"] = json!("registry-7.example.com/app:1");
    object["spec"]["containers"][0]["env"] = json!([{"name": "FILLER", "value": "<".repeat(STORED_LIMIT - 4096)}]);
    request["oldObject"] = request["object"].clone();
    request["object"]["spec"]["containers"][0]["image"] = json!("registry-7.example.com/app:2");
    serde_json::to_string(&review).unwrap().replace('<', "\\u003c").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_update_review_is_answered_by_mutate_and_validate_under_the_bound() {
    let server = Server::start(&[]).await;
    let body = largest_update_review();
    assert!(body.len() > 12 * STORED_LIMIT - 64 * 1024, "{} bytes", body.len());
    for (path, protocol) in [
        ("/mutate", Protocol::Http1),
        ("/mutate", Protocol::Http2),
        ("/validate", Protocol::Http1),
        ("/validate", Protocol::Http2),
    ] {
        let mut client = server.connect(protocol).await;
        let (status, answer) = client.post(path, "application/json", body.clone()).await;
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, 200, "{path} {protocol:?}: {text:.300}");
        let review: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(review["response"]["allowed"], true, "{path} {protocol:?}: {text:.300}");
        if path == "/mutate" {
            let patch = patch_of(&review).unwrap_or_else(|| panic!("{protocol:?}: no patch: {text:.300}"));
            let patched = serde_json::to_string(&patch).unwrap();
            assert!(patched.contains("harbor.example.org/mirror-7/app:2"), "{patched}");
        }
    }
    // Four at once: the body budget holds one, the others wait for it (or are shed with 503
    // after --inflight-body-wait), and the peak stays under the same bound.
    let answers = server.post_at_once([Protocol::Http1; 4].into_iter(), &body).await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert!(statuses.iter().all(|status| [200, 503].contains(status)), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    let bound = server.idle + 2 * BUDGET + SLACK;
    let peak = server.peak();
    println!(
        "a {:.1} MiB UPDATE review: idle RSS {:.1} MiB, peak {:.1} MiB (four at once: {statuses:?}), bound {:.1} MiB",
        mib(body.len() as u64),
        mib(server.idle),
        mib(peak),
        mib(bound)
    );
    assert!(peak < bound, "peak RSS {:.1} MiB over the bound {:.1} MiB", mib(peak), mib(bound));
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
    let server = Server::start_with_rules(&rules, &flags).await;

    let requests: Vec<_> = (0..16)
        .map(|request| {
            let (addr, ca_pem) = (server.addr, server.ca_pem.clone());
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
    let (idle, peak) = (server.idle, server.peak());
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
