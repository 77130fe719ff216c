//! Graceful shutdown of the real binary: SIGTERM arrives while requests are in
//! flight (their bodies half sent); they still complete, new connections are
//! refused, and the process exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{RULES, sample, tls_config};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let ca = mirrorswap::certs::issue("test CA", &["localhost".into()], 1).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert, key, rules) = (file("tls.crt", &ca.cert_pem), file("tls.key", &ca.key_pem), file("rules.conf", RULES));
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--tls-cert", &cert, "--tls-key", &key, "--rules", &rules, "--shutdown-grace", "10s"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The JSON log line announcing the listeners gives the port.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if entry["message"] == "mirrorswap serving" {
            break entry["webhook"].as_str().unwrap().parse::<std::net::SocketAddr>().unwrap();
        }
    };
    let logs = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let body = serde_json::to_vec(&sample("pod.json")).unwrap();
    let mut in_flight = Vec::new();
    for _ in 0..3 {
        let stream = TcpStream::connect(addr).await.unwrap();
        let connector = TlsConnector::from(tls_config(&ca.ca_pem, common::Protocol::Http1));
        let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), stream).await.unwrap();
        let head = format!(
            "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&body[..body.len() / 2]).await.unwrap();
        tls.flush().await.unwrap();
        in_flight.push(tls);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // New connections are no longer accepted...
    let refused = tokio::time::timeout(Duration::from_secs(2), async {
        match TcpStream::connect(addr).await {
            Err(_) => true,
            Ok(stream) => {
                let connector = TlsConnector::from(tls_config(&ca.ca_pem, common::Protocol::Http1));
                connector.connect(ServerName::try_from("localhost").unwrap(), stream).await.is_err()
            }
        }
    })
    .await
    .unwrap_or(true);
    assert!(refused, "a new connection was served after SIGTERM");

    // ...but the requests already in flight complete.
    for mut tls in in_flight {
        tls.write_all(&body[body.len() / 2..]).await.unwrap();
        tls.flush().await.unwrap();
        let mut response = vec![0u8; 64 * 1024];
        let mut read = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !String::from_utf8_lossy(&response[..read]).contains("\"patchType\":\"JSONPatch\"") {
            assert!(Instant::now() < deadline, "no complete response");
            let n = tls.read(&mut response[read..]).await.unwrap();
            assert!(n > 0, "connection closed early: {}", String::from_utf8_lossy(&response[..read]));
            read += n;
        }
        assert!(String::from_utf8_lossy(&response[..read]).starts_with("HTTP/1.1 200"));
    }

    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the server did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0));
    let logs = logs.join().unwrap().join("\n");
    assert!(logs.contains("SIGTERM received") && logs.contains("\"stopped\""), "{logs}");
}
