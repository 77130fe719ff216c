//! A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on
//! 127.0.0.1 with TLS from a fresh test CA and either htpasswd basic auth or distribution's
//! `auth: token` with a small ES256 token issuer running inside the test over HTTPS. Images are
//! pushed with `skopeo` from a minimal OCI layout written here. The registry's access log
//! (stdout) counts manifest requests at the registry side. The process stops on drop.
//!
//! ```ignore
//! let Some(registry) = Registry::start(Auth::Basic).await else { return }; // skips without the tools
//! let digest = registry.push("airgap/nginx", "1.25").await;            // "sha256:…"
//! registry.host();            // "127.0.0.1:PORT";  registry.ca_path(): the test CA (PEM)
//! registry.docker_config();   // {"auths":{"127.0.0.1:PORT":{"auth":"…"}}}
//! registry.manifest_requests(); registry.stop(); registry.restart().await;
//! ```
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use mirrorswap::certs::{Issued, issue};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::components::require_all;

/// The registry account the tests use.
pub const USER: &str = "mirror";
pub const PASSWORD: &str = "s3cret-pass";
/// The token service and issuer names of the `auth: token` configuration.
pub const SERVICE: &str = "mirrorswap-test-registry";
pub const ISSUER: &str = "mirrorswap-test-issuer";

/// The manifest and index media types a client accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// How the registry authenticates clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `auth.htpasswd`: HTTP basic auth against a bcrypt htpasswd file.
    Basic,
    /// `auth.token`: the bearer challenge, tokens from [`TokenIssuer`].
    Token,
}

/// A running `docker-registry` with its files in a temporary directory.
pub struct Registry {
    pub auth: Auth,
    pub dir: tempfile::TempDir,
    pub ca: Issued,
    pub port: u16,
    pub issuer: Option<TokenIssuer>,
    binary: PathBuf,
    child: Option<Child>,
    /// Manifest requests counted in access logs of earlier runs (restarts truncate nothing,
    /// each run appends to its own log).
    runs: usize,
}

impl Registry {
    /// Starts a registry, or `None` when `docker-registry`, `skopeo` or `htpasswd` is missing
    /// (a skip locally; a panic under `CI=true`).
    pub async fn start(auth: Auth) -> Option<Self> {
        let ca = issue("mirrorswap registry test CA", &["localhost".into(), "127.0.0.1".into()], 1).unwrap();
        Self::start_with(auth, ca).await
    }

    /// A registry serving one self-signed certificate made as Docker's registry guide makes
    /// it (`openssl req -x509 … -addext subjectAltName=…`: it carries `CA:TRUE`), which is
    /// also its "CA" ([`Self::ca_path`]).
    pub async fn start_self_signed(auth: Auth) -> Option<Self> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "registry.test");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let ca = Issued { ca_pem: cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        Self::start_with(auth, ca).await
    }

    async fn start_with(auth: Auth, ca: Issued) -> Option<Self> {
        let [binary, _, htpasswd] = require_all(["docker-registry", "skopeo", "htpasswd"])?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs.d")).unwrap();
        write(&dir.path().join("certs.d"), "ca.crt", &ca.ca_pem);
        write(dir.path(), "tls.crt", &ca.cert_pem);
        write(dir.path(), "tls.key", &ca.key_pem);
        let port = free_port();
        let issuer = match auth {
            Auth::Basic => None,
            Auth::Token => Some(TokenIssuer::start(&ca).await),
        };
        let auth_block = match &issuer {
            None => {
                let file = dir.path().join("htpasswd");
                let status = Command::new(htpasswd).arg("-Bbc").arg(&file).args([USER, PASSWORD]).output().unwrap();
                assert!(status.status.success(), "htpasswd: {}", String::from_utf8_lossy(&status.stderr));
                format!("  htpasswd:\n    realm: mirrorswap-test\n    path: {}\n", file.display())
            }
            Some(issuer) => {
                write(dir.path(), "token-signer.pem", &issuer.signer_pem);
                format!(
                    "  token:\n    realm: https://127.0.0.1:{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
                     rootcertbundle: {}\n",
                    issuer.addr.port(),
                    dir.path().join("token-signer.pem").display()
                )
            }
        };
        let d = dir.path().display();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    \
             rootdirectory: {d}/storage\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: test-secret\n  \
             tls:\n    certificate: {d}/tls.crt\n    key: {d}/tls.key\nauth:\n{auth_block}"
        );
        write(dir.path(), "config.yml", &config);
        let mut registry = Self { auth, dir, ca, port, issuer, binary, child: None, runs: 0 };
        registry.restart().await;
        Some(registry)
    }

    /// `127.0.0.1:PORT`, the registry host of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The test CA's certificate file (PEM); the registry's and the issuer's certificates chain to it.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("certs.d/ca.crt")
    }

    /// A Docker config JSON (`.dockerconfigjson`) with the registry's credentials.
    pub fn docker_config(&self) -> String {
        docker_config(&self.host(), USER, PASSWORD)
    }

    /// Starts (again) the registry process on the same port and storage; waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        self.runs += 1;
        let log = std::fs::File::create(self.log_path(self.runs)).unwrap();
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log)
            .stderr(std::fs::File::create(self.dir.path().join(format!("stderr-{}.log", self.runs))).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Stops the registry process (idempotent); its port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until `GET /v2/` answers 401 (auth required), at most 10 s.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok((401, _)) = self.get("/v2/", None).await {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().unwrap()) {
                let stderr = std::fs::read_to_string(self.dir.path().join(format!("stderr-{}.log", self.runs)));
                panic!("docker-registry exited ({status}): {}", stderr.unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "docker-registry did not answer on {}", self.host());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// One HTTPS GET to the registry (trusting the test CA), with an optional `Authorization`.
    /// A self-signed registry's certificate is its own CA, which rustls refuses to see served
    /// (`CaUsedAsEndEntity`): the harness then skips the certificate check.
    pub async fn get(&self, path: &str, authorization: Option<&str>) -> std::io::Result<(u16, Vec<u8>)> {
        let config = if self.ca.ca_pem == self.ca.cert_pem {
            let mut config = mirrorswap::registry::tls::unverified();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        } else {
            super::tls_config(&self.ca.ca_pem, super::Protocol::Http1)
        };
        get_with(self.addr(), config, path, authorization).await
    }

    fn log_path(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("access-{run}.log"))
    }

    /// The manifest requests (`GET`/`HEAD /v2/…/manifests/…`) the registry answered with anything
    /// but 401, over all its runs: each is one real lookup (an auth challenge is not).
    pub fn manifest_requests(&self) -> usize {
        self.manifest_requests_matching("")
    }

    /// Like [`Self::manifest_requests`], for request paths containing `needle`.
    pub fn manifest_requests_matching(&self, needle: &str) -> usize {
        (1..=self.runs)
            .map(|run| {
                let text = std::fs::read_to_string(self.log_path(run)).unwrap_or_default();
                text.lines().filter(|line| is_counted_manifest_request(line) && line.contains(needle)).count()
            })
            .sum()
    }

    /// Pushes a small image (unique content per `repo:tag`) as `repo:tag` with skopeo and returns
    /// its manifest digest, read back from the registry.
    pub async fn push(&self, repo: &str, tag: &str) -> String {
        let layout = self.dir.path().join(format!("layout-{}-{tag}", repo.replace('/', "_")));
        write_oci_layout(&layout, &format!("{repo}:{tag}"), tag);
        self.push_layout(&layout, tag, &format!("{repo}:{tag}")).await;
        let raw = self.raw(&format!("{repo}:{tag}")).await.unwrap_or_else(|| panic!("skopeo inspect {repo}:{tag}"));
        sha256(&raw)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether an access-log line (combined format) is a manifest request answered other than 401.
fn is_counted_manifest_request(line: &str) -> bool {
    let Some((_, rest)) = line.split_once('"') else { return false };
    let Some((request, after)) = rest.split_once('"') else { return false };
    let mut words = request.split(' ');
    let (Some(method), Some(path)) = (words.next(), words.next()) else { return false };
    let status = after.split_whitespace().next().unwrap_or("");
    matches!(method, "GET" | "HEAD") && path.starts_with("/v2/") && path.contains("/manifests/") && status != "401"
}

/// A `.dockerconfigjson` document with one `auths` entry for `host`.
pub fn docker_config(host: &str, user: &str, password: &str) -> String {
    let auth = STANDARD.encode(format!("{user}:{password}"));
    json!({"auths": {host: {"auth": auth}}}).to_string()
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server that accepts TCP connections and never answers (nor closes them) until dropped.
pub struct Blackhole {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Blackhole {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Self { addr, task }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Writes a minimal OCI image layout at `dir` holding one image tagged `tag`: one small
/// uncompressed tar layer (a file whose content is `content`), its config and its manifest.
pub fn write_oci_layout(dir: &Path, content: &str, tag: &str) {
    let layout = Layout::new(dir);
    let image = layout.image("linux", "amd64", &[layout.layer("image.txt", content.as_bytes())]);
    layout.tag(tag, &image);
}

/// One HTTPS GET trusting `ca_pem` (HTTP/1.1, a fresh connection).
pub async fn https_get(
    addr: SocketAddr,
    ca_pem: &str,
    path: &str,
    authorization: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    get_with(addr, super::tls_config(ca_pem, super::Protocol::Http1), path, authorization).await
}

async fn get_with(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    authorization: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let stream = TcpStream::connect(addr).await?;
    let connector = TlsConnector::from(config);
    let tls = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), stream).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get(path).header("host", addr.to_string()).header("accept", MANIFEST_ACCEPT);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response =
        sender.send_request(request.body(Empty::<Bytes>::new()).unwrap()).await.map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(std::io::Error::other)?.to_bytes().to_vec();
    Ok((status, body))
}

/// A TLS acceptor serving `issued`'s certificate (HTTP/1.1), for the test's own servers.
pub fn acceptor(issued: &Issued) -> TlsAcceptor {
    let certs = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes()).map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// The ES256 token issuer of the `auth: token` configuration: `GET /token?service=…&scope=…`
/// over HTTPS (a certificate from the registry's test CA). With basic credentials
/// [`USER`]:[`PASSWORD`] it grants every requested scope; without any, an anonymous token that
/// grants nothing; with wrong ones, 401.
pub struct TokenIssuer {
    pub addr: SocketAddr,
    /// The signing certificate (PEM), the registry's `rootcertbundle`.
    pub signer_pem: String,
    /// Token requests answered (any outcome).
    pub requests: Arc<AtomicUsize>,
    /// Lifetime of issued tokens (`expires_in`).
    pub lifetime_secs: u64,
    task: tokio::task::JoinHandle<()>,
}

struct Signer {
    key: ring::signature::EcdsaKeyPair,
    x5c: String,
    rng: ring::rand::SystemRandom,
}

impl TokenIssuer {
    pub async fn start(ca: &Issued) -> Self {
        let lifetime_secs = 300;
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "mirrorswap test token signer");
        let cert = params.self_signed(&key_pair).unwrap();
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &rng,
        )
        .unwrap();
        let signer = Arc::new(Signer { key, x5c: STANDARD.encode(cert.der()), rng });

        let acceptor = acceptor(ca);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, signer, counter) = (acceptor.clone(), Arc::clone(&signer), Arc::clone(&counter));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service = hyper::service::service_fn(move |request| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let response = token_response(&signer, &request, lifetime_secs);
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Self { addr, signer_pem: cert.pem(), requests, lifetime_secs, task }
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn token_response<B>(signer: &Signer, request: &hyper::Request<B>, lifetime_secs: u64) -> hyper::Response<Full<Bytes>> {
    let reply = |status: u16, body: String| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let expected = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let subject = match request.headers().get("authorization").and_then(|value| value.to_str().ok()) {
        Some(value) if value == expected => USER,
        Some(_) => return reply(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.into()),
        None => "",
    };
    let query = request.uri().query().unwrap_or("");
    let mut access = Vec::new();
    for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        let value = percent_decode(value);
        if key == "scope" && !subject.is_empty() {
            // repository:NAME:ACTIONS; NAME may itself hold no ':' in these tests.
            let mut parts = value.splitn(3, ':');
            if let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next()) {
                let actions: Vec<&str> = actions.split(',').collect();
                access.push(json!({"type": kind, "name": name, "actions": actions}));
            }
        }
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [signer.x5c]});
    let claims = json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + lifetime_secs, "nbf": now - 60, "iat": now,
        "jti": format!("{now}-{}", rand_u64(&signer.rng)), "access": access,
    });
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = signer.key.sign(&signer.rng, signing_input.as_bytes()).unwrap();
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
    reply(200, json!({"token": token, "access_token": token, "expires_in": lifetime_secs}).to_string())
}

fn rand_u64(rng: &ring::rand::SystemRandom) -> u64 {
    let bytes: [u8; 8] = ring::rand::generate(rng).unwrap().expose();
    u64::from_le_bytes(bytes)
}

/// Decodes the `%XX` escapes and `+` of a query value.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped =
            bytes.get(index + 1..index + 3).and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (byte, escaped) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                index += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                index += 1;
            }
            _ => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One request of a registry's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// Path and query, as logged.
    pub path: String,
    pub status: u16,
}

impl Logged {
    /// A blob write: an upload started, sent or committed, or a mount (`POST`, `PATCH`, `PUT`
    /// under `/blobs/uploads/`).
    pub fn is_blob_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PATCH" | "PUT") && self.path.contains("/blobs/uploads/")
    }

    /// A committed upload of the blob with hex digest `hex` (`PUT …?digest=sha256:HEX`, 201).
    pub fn commits(&self, hex: &str) -> bool {
        self.method == "PUT" && self.path.contains("/blobs/uploads/") && self.path.contains(hex) && self.status == 201
    }
}

impl Registry {
    /// Every request of every run's access log but those answered 401 (auth challenges).
    pub fn access_log(&self) -> Vec<Logged> {
        (1..=self.runs)
            .flat_map(|run| {
                let text = std::fs::read_to_string(self.log_path(run)).unwrap_or_default();
                text.lines().filter_map(logged).collect::<Vec<_>>()
            })
            .filter(|logged| logged.status != 401)
            .collect()
    }

    /// `skopeo copy --all --preserve-digests oci:LAYOUT:TAG docker://HOST/REFERENCE`.
    pub async fn push_layout(&self, layout: &Path, tag: &str, reference: &str) {
        let source = format!("oci:{}:{tag}", layout.display());
        let target = format!("docker://{}/{reference}", self.host());
        let (cert_dir, ca, creds) = (self.dir.path().join("certs.d"), self.ca_path(), format!("{USER}:{PASSWORD}"));
        tokio::task::spawn_blocking(move || {
            let output = Command::new("skopeo")
                .env("SSL_CERT_FILE", &ca)
                .args(["copy", "--quiet", "--all", "--preserve-digests", "--dest-cert-dir"])
                .arg(&cert_dir)
                .args(["--dest-creds", &creds, &source, &target])
                .output()
                .unwrap();
            assert!(output.status.success(), "skopeo copy {source}: {}", String::from_utf8_lossy(&output.stderr));
        })
        .await
        .unwrap();
    }

    /// `skopeo inspect --raw docker://HOST/REFERENCE`: the manifest's bytes, or `None`.
    pub async fn raw(&self, reference: &str) -> Option<Vec<u8>> {
        let target = format!("docker://{}/{reference}", self.host());
        let (cert_dir, ca, creds) = (self.dir.path().join("certs.d"), self.ca_path(), format!("{USER}:{PASSWORD}"));
        tokio::task::spawn_blocking(move || {
            let output = Command::new("skopeo")
                .env("SSL_CERT_FILE", &ca)
                .args(["inspect", "--raw", "--cert-dir"])
                .arg(&cert_dir)
                .args(["--creds", &creds, &target])
                .output()
                .unwrap();
            output.status.success().then_some(output.stdout)
        })
        .await
        .unwrap()
    }
}

/// An access-log line (combined format), read.
fn logged(line: &str) -> Option<Logged> {
    let (_, rest) = line.split_once('"')?;
    let (request, after) = rest.split_once('"')?;
    let mut words = request.split(' ');
    let (method, path) = (words.next()?.to_owned(), words.next()?.to_owned());
    let status = after.split_whitespace().next()?.parse().ok()?;
    Some(Logged { method, path, status })
}

/// An OCI image layout written for the tests, image by image, pushed with
/// [`Registry::push_layout`]: uncompressed tar layers, configs, manifests, indexes, and
/// manifests of any shape (a signature, a referrer with a `subject`).
pub struct Layout {
    pub dir: PathBuf,
    tags: std::sync::Mutex<Vec<serde_json::Value>>,
}

impl Layout {
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Self { dir: dir.to_path_buf(), tags: std::sync::Mutex::new(Vec::new()) }
    }

    /// Stores `bytes` as a blob: a descriptor of `media_type`.
    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> serde_json::Value {
        let digest = sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&digest["sha256:".len()..]), bytes).unwrap();
        json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
    }

    /// A layer: a tar holding one file `name` with `content`.
    pub fn layer(&self, name: &str, content: &[u8]) -> serde_json::Value {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, content).unwrap();
        self.blob("application/vnd.oci.image.layer.v1.tar", &tar.into_inner().unwrap())
    }

    /// An image manifest for `os/arch` with `layers`.
    pub fn image(&self, os: &str, arch: &str, layers: &[serde_json::Value]) -> serde_json::Value {
        let config = json!({
            "architecture": arch, "os": os, "config": {},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|layer| layer["digest"].clone()).collect::<Vec<_>>()},
        });
        let config = self.blob("application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
        let manifest = json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": layers,
        });
        let mut descriptor = self.manifest(&manifest);
        descriptor["platform"] = json!({"os": os, "architecture": arch});
        descriptor
    }

    /// An index of `manifests`.
    pub fn index(&self, manifests: &[serde_json::Value]) -> serde_json::Value {
        let index =
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        self.manifest(&index)
    }

    /// Any manifest, stored as a blob; its descriptor takes its `mediaType`.
    pub fn manifest(&self, manifest: &serde_json::Value) -> serde_json::Value {
        let media_type = manifest["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json");
        self.blob(media_type, manifest.to_string().as_bytes())
    }

    /// Names `descriptor` `tag` in the layout's index.json.
    pub fn tag(&self, tag: &str, descriptor: &serde_json::Value) {
        let mut entry = descriptor.clone();
        entry.as_object_mut().unwrap().remove("platform");
        entry["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let mut tags = self.tags.lock().unwrap();
        tags.push(entry);
        let index = json!({"schemaVersion": 2, "manifests": *tags});
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }

    /// A blob's bytes.
    pub fn read(&self, descriptor: &serde_json::Value) -> Vec<u8> {
        let digest = descriptor["digest"].as_str().unwrap();
        std::fs::read(self.dir.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap()
    }
}

/// `count` bytes that do not compress, the same for the same `seed`.
pub fn noise(seed: u64, count: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
