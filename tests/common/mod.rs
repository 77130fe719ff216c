//! Shared by the server tests: a real `mirrorswap serve` on 127.0.0.1:0 with a
//! test CA, and a real HTTPS client (rustls + hyper, HTTP/1.1 or HTTP/2).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use mirrorswap::certs::{Issued, issue};
use mirrorswap::cli::{Cli, Command};
use mirrorswap::server::{Running, ServeArgs, start};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

pub mod apiserver;
pub mod chart;
pub mod components;
pub mod control_plane;
pub mod hostile;
pub mod images;
pub mod k8s_update;
pub mod kube_objects;
pub mod kube_pki;
pub mod registry;
pub mod tools;
pub mod webhooks;

pub const RULES: &str = "\
docker.io::harbor.example.org/hub
quay.io::harbor.example.org/quay
gcr.io::harbor.example.org/gcr
ghcr.io::harbor.example.org/ghcr
registry.k8s.io::harbor.example.org/k8s
";

/// A running server with its files in a temporary directory.
pub struct TestServer {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub ca: Issued,
}

impl TestServer {
    /// Starts a server with `RULES` (maps) and a fresh test CA, plus `extra` flags.
    pub async fn start(extra: &[&str]) -> Self {
        Self::start_with_rules(RULES, "rules.conf", extra).await
    }

    pub async fn start_with_rules(rules: &str, name: &str, extra: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), Some((rules, name)), extra).await
    }

    /// Starts a server in `dir` with the rules file `name` holding `rules`, if any (else the
    /// rules source is in `extra`), a fresh test CA, and `extra` flags.
    pub async fn start_in(dir: tempfile::TempDir, rules: Option<(&str, &str)>, extra: &[&str]) -> Self {
        let ca = issue("mirrorswap test CA", &["localhost".into(), "127.0.0.1".into()], 1).unwrap();
        std::fs::write(dir.path().join("tls.crt"), &ca.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &ca.key_pem).unwrap();
        let path = |file: &str| dir.path().join(file).display().to_string();
        let mut argv: Vec<String> = ["mirrorswap", "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
        argv.extend(["--tls-cert".into(), path("tls.crt"), "--tls-key".into(), path("tls.key")]);
        argv.extend(["--reload-poll".into(), "250ms".into()]);
        if let Some((text, name)) = rules {
            std::fs::write(dir.path().join(name), text).unwrap();
            argv.extend(["--rules".into(), path(name)]);
        }
        argv.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let running = start(serve_args(&argv)).await.expect("server starts");
        Self { addr: running.webhook_addr, admin: running.admin_addr, running: Some(running), dir, ca }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A new HTTPS connection speaking `protocol`.
    pub async fn connect(&self, protocol: Protocol) -> Client {
        Client::connect(self.addr, &self.ca.ca_pem, protocol).await
    }

    /// GETs an admin path; returns status and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).await
    }

    /// The value of one metric sample line (`name{labels}`), 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics").await;
        text.lines().find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown(Duration::from_secs(5)).await.unwrap();
        }
    }
}

/// GETs `path` over plain HTTP/1.1 from `addr` (an admin listener); returns status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).await.unwrap()
}

/// As [`http_get`], with an error while nothing listens (yet).
pub async fn try_http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path).header("host", "localhost").body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

pub fn serve_args(argv: &[String]) -> ServeArgs {
    use clap::Parser;
    match Cli::try_parse_from(argv).expect("valid serve flags").command {
        Command::Serve(args) => *args,
        _ => unreachable!("serve"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One HTTPS connection (kept alive across requests).
pub struct Client {
    sender: Sender,
    /// The leaf certificate the server presented.
    pub peer_certificate: Vec<u8>,
}

pub fn tls_config(ca_pem: &str, protocol: Protocol) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![match protocol {
        Protocol::Http1 => b"http/1.1".to_vec(),
        Protocol::Http2 => b"h2".to_vec(),
    }];
    Arc::new(config)
}

impl Client {
    pub async fn connect(addr: SocketAddr, ca_pem: &str, protocol: Protocol) -> Self {
        Self::connect_as(addr, ca_pem, protocol, "localhost").await
    }

    /// Connects to `addr`, verifying the server's certificate for `server_name`.
    pub async fn connect_as(addr: SocketAddr, ca_pem: &str, protocol: Protocol, server_name: &str) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        // As Go's net package (the API server) does on every TCP connection: with Nagle, each
        // 64 KiB HTTP/2 window of a large body waited ~40 ms for a delayed ACK.
        stream.set_nodelay(true).unwrap();
        let connector = TlsConnector::from(tls_config(ca_pem, protocol));
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let tls = connector.connect(name, stream).await.unwrap();
        let (_, session) = tls.get_ref();
        let negotiated = session.alpn_protocol().map(<[u8]>::to_vec);
        let peer_certificate = session.peer_certificates().unwrap()[0].to_vec();
        let io = TokioIo::new(tls);
        let sender = match protocol {
            Protocol::Http1 => {
                assert_eq!(negotiated.as_deref(), Some(&b"http/1.1"[..]));
                let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(connection);
                Sender::Http1(sender)
            }
            Protocol::Http2 => {
                assert_eq!(negotiated.as_deref(), Some(&b"h2"[..]));
                let (sender, connection) =
                    hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
                tokio::spawn(connection);
                Sender::Http2(sender)
            }
        };
        Self { sender, peer_certificate }
    }

    /// True once the server closed the connection (or it failed).
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }

    /// POSTs `body` to `path` with `content_type`; returns status and body.
    pub async fn post(&mut self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let request = hyper::Request::post(path)
            .header("host", "localhost")
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = match &mut self.sender {
            Sender::Http1(sender) => {
                sender.ready().await.unwrap();
                sender.send_request(request).await.unwrap()
            }
            Sender::Http2(sender) => {
                sender.ready().await.unwrap();
                sender.send_request(request).await.unwrap()
            }
        };
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, body)
    }

    /// POSTs an AdmissionReview to /mutate and decodes the response review.
    pub async fn review(&mut self, review: &Value) -> Value {
        let (status, body) = self.post("/mutate", "application/json", serde_json::to_vec(review).unwrap()).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

/// Reads `examples/admission/<name>`.
pub fn sample(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/admission").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Containers `c0`, `c1`, … running `images`.
pub fn containers(images: &[&str]) -> Vec<Value> {
    images
        .iter()
        .enumerate()
        .map(|(index, image)| serde_json::json!({"name": format!("c{index}"), "image": image}))
        .collect()
}

/// The sample Pod review (`operation` CREATE) with [`containers`] running `images`.
pub fn pod(images: &[&str]) -> Value {
    let mut review = sample("pod.json");
    review["request"]["object"]["spec"] = serde_json::json!({ "containers": containers(images) });
    review
}

/// The images of a Pod object's containers, in order.
pub fn images_of(object: &Value) -> Vec<String> {
    object["spec"]["containers"].as_array().unwrap().iter().map(|c| c["image"].as_str().unwrap().to_owned()).collect()
}

/// The admission warnings of a response review (none when it has none).
pub fn warnings_of(response: &Value) -> Vec<String> {
    response["response"]["warnings"]
        .as_array()
        .map(|list| list.iter().map(|w| w.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The JSON patch of a response review, decoded from base64 (`None` when there is none).
pub fn patch_of(review: &Value) -> Option<json_patch::Patch> {
    use base64::Engine;
    let response = &review["response"];
    let encoded = response.get("patch")?.as_str().expect("the patch is a base64 string");
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// The request's object with the response's patch applied.
pub fn patched_object(request: &Value, response: &Value) -> Value {
    let mut object = request["request"]["object"].clone();
    if let Some(patch) = patch_of(response) {
        json_patch::patch(&mut object, &patch).expect("the patch applies to the request object");
    }
    object
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
