//! The adversarial corpus (`tests/corpus/MANIFEST.tsv`): hostile admission
//! requests and rules files, each with its documented answer. Requests go to a
//! real HTTPS server, each on a fresh connection; afterwards the server still
//! answers a normal request and the process's peak memory stayed bounded.
//! Rules files go through the loader the server uses.
//!
//! Expectations: `400 TEXT` / `413` (status, and text in the reason),
//! `patched N` (200 with N operations), `untouched` (200, no patch, no
//! warning), `warned TEXT` (200, no patch, a warning containing TEXT);
//! `ok N` (N rules), `error LINE TEXT` (first error at LINE), `io TEXT`.
//! `CORPUS_RECORD=1` prints what each case gets instead of checking.

mod common;

use std::path::{Path, PathBuf};

use common::{Client, Protocol, TestServer, patch_of, sample};
use mirrorswap::rules_file::{LoadError, load_file};
use serde_json::{Value, json};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");

struct Case {
    kind: String,
    name: String,
    source: String,
    expect: String,
}

fn cases() -> Vec<Case> {
    let manifest = std::fs::read_to_string(Path::new(CORPUS).join("MANIFEST.tsv")).unwrap();
    manifest
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.splitn(4, '\t').collect();
            assert_eq!(fields.len(), 4, "MANIFEST line: {line}");
            Case { kind: fields[0].into(), name: fields[1].into(), source: fields[2].into(), expect: fields[3].into() }
        })
        .collect()
}

fn recipe(source: &str) -> Option<(&str, usize)> {
    let (name, count) = source.strip_prefix("gen:")?.split_once(':')?;
    Some((name, count.parse().expect("a count")))
}

/// The body of a request case.
fn body(source: &str) -> Vec<u8> {
    let Some((recipe, n)) = recipe(source) else {
        return std::fs::read(Path::new(CORPUS).join(source)).unwrap();
    };
    let mut review = sample("pod.json");
    match recipe {
        "nest" => return "[".repeat(n).into_bytes(),
        "string" => return format!("\"{}\"", "a".repeat(n.saturating_sub(2))).into_bytes(),
        "nest-object" => {
            let text = serde_json::to_string(&review).unwrap();
            let nested = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
            return text.replacen("\"labels\":", &format!("\"deep\":{nested},\"labels\":"), 1).into_bytes();
        }
        "image" => review["request"]["object"]["spec"] = json!({"containers": [{"name": "a", "image": "a".repeat(n)}]}),
        "containers" => {
            let list: Vec<Value> = (0..n).map(|i| json!({"name": format!("c{i}"), "image": "nginx:1.27"})).collect();
            review["request"]["object"]["spec"] = json!({ "containers": list });
        }
        "labels" => {
            let labels: serde_json::Map<String, Value> =
                (0..n).map(|i| (format!("example.com/label-{i}"), json!("value"))).collect();
            review["request"]["object"]["metadata"]["labels"] = Value::Object(labels);
        }
        "annotation" => review["request"]["object"]["metadata"]["annotations"] = json!({"big": "x".repeat(n)}),
        "update-reversed" => {
            // An UPDATE that reverses n containers and changes the image of one.
            let old: Vec<Value> = (0..n).map(|i| json!({"name": format!("c{i}"), "image": "nginx:1.27"})).collect();
            let mut new = old.clone();
            new.reverse();
            new[0]["image"] = json!("nginx:1.28");
            review["request"]["operation"] = json!("UPDATE");
            review["request"]["oldObject"] = json!({"metadata": {"name": "web"}, "spec": {"containers": old}});
            review["request"]["object"]["spec"] = json!({ "containers": new });
        }
        other => panic!("unknown request recipe {other}"),
    }
    serde_json::to_vec(&review).unwrap()
}

/// What the server answered, in the manifest's words.
async fn outcome(client: &mut Client, body: Vec<u8>) -> String {
    let (status, answer) = client.post("/mutate", "application/json", body).await;
    if status != 200 {
        return format!("{status} {}", String::from_utf8_lossy(&answer).trim());
    }
    let review: Value = serde_json::from_slice(&answer).expect("a 200 answer is a JSON review");
    assert_eq!(review["response"]["allowed"], true, "every review is allowed");
    if let Some(patch) = patch_of(&review) {
        return format!("patched {}", patch.0.len());
    }
    match review["response"]["warnings"].as_array().and_then(|warnings| warnings.first()) {
        Some(warning) => format!("warned {}", warning.as_str().unwrap_or_default()),
        None => "untouched".into(),
    }
}

fn matches(actual: &str, expect: &str) -> bool {
    match expect.split_once(' ') {
        // `400 TEXT`, `warned TEXT`, `error LINE TEXT`, `io TEXT`: the head exactly, then a substring.
        Some((head, text)) if !matches!(head, "patched" | "ok") => {
            actual.split_once(' ').is_some_and(|(h, rest)| h == head && rest.contains(text))
                || (head == "error"
                    && text.split_once(' ').is_some_and(|(line, text)| {
                        actual.starts_with(&format!("error {line} ")) && actual.contains(text)
                    }))
        }
        _ => actual == expect || actual.split(' ').next() == Some(expect),
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_their_documented_answers() {
    let record = std::env::var_os("CORPUS_RECORD").is_some();
    let server = TestServer::start(&[]).await;
    let before = peak_rss_kib();
    let mut failures = Vec::new();
    let requests: Vec<Case> = cases().into_iter().filter(|case| case.kind == "request").collect();
    for case in &requests {
        let mut client = server.connect(Protocol::Http1).await;
        let actual = outcome(&mut client, body(&case.source)).await;
        if record {
            println!("request\t{}\t{}\t{}", case.name, case.source, actual.lines().next().unwrap_or_default());
        } else if !matches(&actual, &case.expect) {
            failures.push(format!("{}: expected `{}`, got `{actual}`", case.name, case.expect));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Still serving, and memory stayed bounded (20 MiB bodies, 1,000 containers, 100k-deep nesting).
    let mut client = server.connect(Protocol::Http2).await;
    assert!(patch_of(&client.review(&sample("pod.json")).await).is_some(), "still serving");
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 256 * 1024, "peak RSS grew by {grown} KiB");
    server.stop().await;
}

/// A generated rules file for a recipe, written into `dir`.
fn rules_path(dir: &Path, case: &Case) -> PathBuf {
    let Some((recipe, n)) = recipe(&case.source) else {
        return Path::new(CORPUS).join(&case.source);
    };
    let path = dir.join(format!("{}.conf", case.name));
    match recipe {
        "lines" => {
            let text: String = (0..n).map(|i| format!("registry-{i}.example.com::mirror.example.org/r{i}\n")).collect();
            std::fs::write(&path, text).unwrap();
        }
        "sparse" => std::fs::File::create(&path).unwrap().set_len(n as u64).unwrap(),
        "pairs" => {
            let pairs: Vec<String> = (0..n).map(|i| format!("r{i}.example.com::mirror.example.org/r{i}")).collect();
            std::fs::write(&path, pairs.join(",") + "\n").unwrap();
        }
        other => panic!("unknown rules recipe {other}"),
    }
    path
}

#[test]
fn hostile_rules_files_get_their_documented_answers() {
    let record = std::env::var_os("CORPUS_RECORD").is_some();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in cases().into_iter().filter(|case| case.kind == "rules") {
        let path = rules_path(dir.path(), &case);
        let actual = match load_file(&path, None, Default::default()) {
            Ok(loaded) => format!("ok {}", loaded.rules.len()),
            Err(LoadError::Io { error, .. }) => format!("io {error}"),
            Err(LoadError::Invalid { diagnostics, .. }) => {
                let first = diagnostics.iter().find(|d| d.severity == mirrorswap::rewrite::Severity::Error);
                first.map_or("error 0 ?".into(), |d| format!("error {} {}", d.line, d.problem))
            }
        };
        if record {
            println!("rules\t{}\t{}\t{}", case.name, case.source, actual);
        } else if !matches(&actual, &case.expect) {
            failures.push(format!("{}: expected `{}`, got `{actual}`", case.name, case.expect));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Reads until the server closes the connection; how long that took, or `None` past `limit`.
async fn closed_within(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: std::time::Duration,
) -> Option<std::time::Duration> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Slow clients: a TLS handshake that never starts, and a slow-loris sending its request head one
/// byte at a time. Both are cut off (handshake 5 s, head `--request-timeout`) while a normal
/// client keeps being answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_and_slow_loris_clients_are_cut_off() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(&["--request-timeout", "1s"]).await;

    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let loris = async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(common::tls_config(&server.ca.ca_pem, Protocol::Http1));
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
        // One byte every 200 ms, forever: never a complete head.
        let writer = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if tls.write_all(b"X").await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), writer).await.is_ok()
    };
    let normal = async {
        let mut client = server.connect(Protocol::Http1).await;
        for _ in 0..20 {
            assert!(patch_of(&client.review(&sample("pod.json")).await).is_some());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (loris_cut_off, (), stalled_after) =
        tokio::join!(loris, normal, closed_within(&mut stalled, Duration::from_secs(10)));
    assert!(loris_cut_off, "the slow-loris connection was still open after 10 s");
    let stalled_after = stalled_after.expect("a stalled handshake is closed");
    assert!(stalled_after >= Duration::from_secs(4), "closed after {stalled_after:?}: too early");
    server.stop().await;
}
