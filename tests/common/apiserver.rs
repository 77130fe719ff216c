//! A loopback stand-in for kube-apiserver, kept for the one fault a real API server cannot be
//! made to produce on demand: an error answer to the nth page of a list. Everything else runs
//! against the real kube-apiserver (`common::control_plane`).
//!
//! It serves, over HTTPS with a test CA and a bearer token, the list of every kind `mirrorswap
//! audit` reads (`/api/v1/pods`, `/apis/apps/v1/deployments`, …, all namespaces): `pods` holds
//! generated Pods, paged as kube-apiserver pages (`limit=N` gives at most N items and a
//! `metadata.continue` token while more remain, `continue=TOKEN` resumes), every other kind is
//! empty. [`Fault`] makes page n of the Pods answer an error status, always or once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mirrorswap::certs::{Issued, issue};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

const TOKEN: &str = "mirrorswap-test-token";

/// An error status for one page of the Pods.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// The page (1 = the first) that fails.
    pub page: usize,
    pub status: u16,
    /// Only the first request for that page fails; a retry succeeds.
    pub once: bool,
}

struct Shared {
    pods: Vec<Value>,
    fault: Option<Fault>,
    /// Request targets, in order.
    requests: Mutex<Vec<String>>,
}

/// The running stand-in.
pub struct FakeApi {
    pub addr: SocketAddr,
    pub ca: Issued,
    shared: Arc<Shared>,
    serving: tokio::task::JoinHandle<()>,
}

impl FakeApi {
    /// Serves `pods` (one container each, images given) with `fault`.
    pub async fn start(images: &[&str], fault: Option<Fault>) -> Self {
        let ca = issue("fake kube-apiserver CA", &["127.0.0.1".into(), "localhost".into()], 1).unwrap();
        let pods = images
            .iter()
            .enumerate()
            .map(|(index, image)| {
                json!({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": format!("pod-{index}"), "namespace": "default", "uid": format!("uid-{index}")},
                       "spec": {"containers": [{"name": "app", "image": image}]}})
            })
            .collect();
        let shared = Arc::new(Shared { pods, fault, requests: Mutex::default() });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(server_config(&ca));
        let state = Arc::clone(&shared);
        let serving = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (acceptor, state) = (acceptor.clone(), Arc::clone(&state));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(handle(&state, &request)) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Self { addr, ca, shared, serving }
    }

    /// The request targets seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Writes a kubeconfig for this server (its CA, the test token) to `path`.
    pub fn write_kubeconfig(&self, path: &Path) {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca.ca_pem);
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters:\n- name: test\n  cluster:\n    server: https://{}\n    certificate-authority-data: {ca}\n\
             users:\n- name: test\n  user:\n    token: {TOKEN}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\n",
            self.addr
        );
        std::fs::write(path, text).unwrap();
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

fn server_config(ca: &Issued) -> Arc<rustls::ServerConfig> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()).map(|cert| cert.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_slice(ca.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn handle(shared: &Shared, request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let target = request.uri().path_and_query().map(|target| target.as_str().to_owned()).unwrap_or_default();
    let earlier = {
        let mut requests = shared.requests.lock().unwrap();
        let earlier = requests.iter().filter(|seen| **seen == target).count();
        requests.push(target.clone());
        earlier
    };
    let authorized = request.headers().get("authorization").and_then(|value| value.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return status(401, "Unauthorized");
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let parameter =
        |name: &str| query.split('&').find_map(|pair| pair.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')));
    let limit = parameter("limit").and_then(|limit| limit.parse().ok()).unwrap_or(usize::MAX);
    let skip: usize = parameter("continue").and_then(|token| token.parse().ok()).unwrap_or(0);
    let items: &[Value] = if path == "/api/v1/pods" { &shared.pods } else { &[] };
    if path == "/api/v1/pods" {
        let page = skip / limit.max(1) + 1;
        if let Some(fault) = shared.fault.filter(|fault| fault.page == page && !(fault.once && earlier > 0)) {
            return status(fault.status, "injected fault");
        }
    }
    let page: Vec<&Value> = items.iter().skip(skip).take(limit).collect();
    let mut metadata = json!({"resourceVersion": "1"});
    if skip + page.len() < items.len() {
        metadata["continue"] = (skip + page.len()).to_string().into();
    }
    let body = json!({"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": page});
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn status(code: u16, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "code": code});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
