//! Connections over real TLS: idle HTTP/1.1 and HTTP/2 connections are closed after
//! `--idle-timeout` (busy ones are not), so `--max-connections` idle clients cannot lock
//! new ones out; refusals at the cap are counted; a connection that never sends a request is
//! closed after `--request-timeout`; and the in-flight body budget answers 503 with
//! `Retry-After` when full, and frees a cancelled request's share.

mod common;

use std::time::Duration;

use common::{Client, Protocol, TestServer, eventually, sample, tls_config};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const OPEN: &str = "mirrorswap_connections_open";
const REFUSED: &str = "mirrorswap_connections_refused_total";
const IDLE_CLOSED: &str = "mirrorswap_connections_idle_closed_total";
const SHED: &str = "mirrorswap_requests_shed_total";

/// A TLS connection to the server, or the handshake's failure.
async fn tls(server: &TestServer) -> std::io::Result<TlsStream<TcpStream>> {
    let stream = TcpStream::connect(server.addr).await?;
    let connector = TlsConnector::from(tls_config(&server.ca.ca_pem, Protocol::Http1));
    connector.connect(ServerName::try_from("localhost").unwrap(), stream).await
}

/// Reads from `stream` until the server closes it; the bytes read, or `None` if it stays
/// open for `within`.
async fn read_until_closed(stream: &mut TlsStream<TcpStream>, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        // A read error (reset) is a close too.
        while let Ok(n @ 1..) = stream.read(&mut buffer).await {
            seen.extend_from_slice(&buffer[..n]);
        }
    });
    read.await.ok().map(|()| String::from_utf8_lossy(&seen).into_owned())
}

async fn review_once(client: &mut Client) {
    let response = client.review(&sample("pod.json")).await;
    assert_eq!(response["response"]["allowed"], true);
}

#[tokio::test]
async fn idle_h2_connections_at_the_cap_are_closed_and_a_new_client_is_served() {
    let server = TestServer::start(&["--max-connections", "4", "--idle-timeout", "1s"]).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut client = server.connect(Protocol::Http2).await;
        review_once(&mut client).await;
        idle.push(client);
    }
    assert_eq!(server.metric(OPEN).await, 4.0);

    // Every slot is taken: new clients are closed before the handshake, and counted.
    for attempt in 0..3 {
        assert!(tls(&server).await.is_err(), "attempt {attempt} got a TLS session past the cap");
    }
    assert!(eventually(Duration::from_secs(2), async || server.metric(REFUSED).await == 3.0).await);
    assert_eq!(server.metric(OPEN).await, 4.0, "refused connections never count as open");

    // Past --idle-timeout the server closes the idle connections (GOAWAY)...
    assert!(
        eventually(Duration::from_secs(5), async || idle.iter().all(Client::is_closed)).await,
        "idle h2 connections still open after the idle timeout"
    );
    assert!(eventually(Duration::from_secs(2), async || server.metric(OPEN).await == 0.0).await);
    assert_eq!(server.metric(IDLE_CLOSED).await, 4.0);

    // ...so a new client is served, and the counter still shows the refusals.
    let mut client = server.connect(Protocol::Http2).await;
    review_once(&mut client).await;
    let (_, metrics) = server.admin_get("/metrics").await;
    assert!(metrics.lines().any(|line| line == format!("{REFUSED} 3")), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn idle_http1_connections_are_closed_and_busy_ones_of_both_protocols_are_not() {
    let server = TestServer::start(&["--idle-timeout", "1s"]).await;
    for protocol in [Protocol::Http1, Protocol::Http2] {
        // A request every 400 ms for 2.4 s: never idle for 1 s, so never closed.
        let mut busy = server.connect(protocol).await;
        for _ in 0..6 {
            review_once(&mut busy).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(!busy.is_closed(), "{protocol:?}: a connection in use was closed");
        }
        // Then idle: closed.
        assert!(
            eventually(Duration::from_secs(4), async || busy.is_closed()).await,
            "{protocol:?}: an idle connection stayed open"
        );
    }
    assert!(eventually(Duration::from_secs(2), async || server.metric(OPEN).await == 0.0).await);
    assert_eq!(server.metric(IDLE_CLOSED).await, 2.0);
    server.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed_after_the_request_timeout() {
    let server = TestServer::start(&["--request-timeout", "1s", "--idle-timeout", "60s"]).await;
    let mut silent = tls(&server).await.expect("handshake");
    let started = std::time::Instant::now();
    assert!(read_until_closed(&mut silent, Duration::from_secs(5)).await.is_some(), "still open after 5 s");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed before the request timeout");
    server.stop().await;
}

#[tokio::test]
async fn a_full_body_budget_sheds_with_retry_after_and_a_cancelled_request_frees_its_share() {
    let mib = 1024 * 1024;
    let (budget, body_limit) = ((3 * mib).to_string(), (2 * mib).to_string());
    let server = TestServer::start(&[
        "--max-inflight-body-bytes",
        &budget,
        "--max-body-bytes",
        &body_limit,
        "--inflight-body-wait",
        "300ms",
    ])
    .await;
    let head = |length: usize| {
        format!(
            "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        )
    };

    // Two requests declare 1.5 MiB each and send only part of it: together they hold the budget.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut holder = tls(&server).await.unwrap();
        holder.write_all(head(3 * mib / 2).as_bytes()).await.unwrap();
        holder.write_all(b"{\"apiVersion\":").await.unwrap();
        holder.flush().await.unwrap();
        holders.push(holder);
    }
    let reserved = "mirrorswap_inflight_body_bytes";
    assert!(eventually(Duration::from_secs(2), async || server.metric(reserved).await == (3 * mib) as f64).await);

    // A third waits, then gets 503 with Retry-After.
    let body = serde_json::to_vec(&sample("pod.json")).unwrap();
    let mut shed = tls(&server).await.unwrap();
    shed.write_all(head(body.len()).as_bytes()).await.unwrap();
    shed.write_all(&body).await.unwrap();
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), shed.read(&mut response)).await.unwrap().unwrap();
    let response = String::from_utf8_lossy(&response[..n]).to_lowercase();
    assert!(response.starts_with("http/1.1 503"), "{response}");
    assert!(response.contains("\r\nretry-after: 1\r\n"), "{response}");
    assert_eq!(server.metric(SHED).await, 1.0);

    // A client that gives up frees its reservation: the next request is served.
    drop(holders);
    assert!(eventually(Duration::from_secs(2), async || server.metric(reserved).await == 0.0).await);
    let mut client = server.connect(Protocol::Http2).await;
    review_once(&mut client).await;
    assert_eq!(server.metric(SHED).await, 1.0);
    server.stop().await;
}

#[tokio::test]
async fn the_budget_must_hold_a_largest_body() {
    let argv: Vec<String> =
        ["mirrorswap", "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--max-body-bytes", "2048"]
            .into_iter()
            .chain(["--max-inflight-body-bytes", "1024"])
            .map(String::from)
            .collect();
    let error = mirrorswap::server::start(common::serve_args(&argv)).await.err().expect("refused");
    let message = format!("{error:#}");
    assert!(message.contains("--max-inflight-body-bytes (1024) must be at least --max-body-bytes (2048)"), "{message}");
}
