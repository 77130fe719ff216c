//! A Kubernetes API server on loopback for Secrets and ConfigMaps: a real
//! HTTPS server (test CA, bearer token) speaking the list/watch protocol the
//! way kube-apiserver does, so the kube client and runtime watcher run
//! unmodified against it. No kube-apiserver can be installed from the
//! registries this project may use, hence this.
//!
//! What it implements: `GET /api/v1/namespaces/NS/{secrets,configmaps}` lists
//! (with `fieldSelector=metadata.name=…` honoured, and the collection's
//! `resourceVersion`), and `?watch=true` streams (chunked JSON events, one per
//! line: `ADDED`/`MODIFIED`/`DELETED`, replayed from the requested
//! `resourceVersion`, then live; a `BOOKMARK` every 200 ms when
//! `allowWatchBookmarks=true`; an `ERROR` event with a 410 `Expired` Status
//! when the requested version was compacted away). It can be stopped and
//! restarted on the same port (connections cut, as when the API server
//! restarts), and its history compacted.
//!
//! For `mirrorswap audit` it also lists Pods and every workload kind, in one namespace
//! (`/api/v1/namespaces/NS/pods`, `/apis/apps/v1/namespaces/NS/deployments`) or all
//! (`/api/v1/pods`), paged as kube-apiserver pages: `limit=N` returns at most N items and a
//! `metadata.continue` token while more remain, `continue=TOKEN` resumes after them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Bytes, Frame};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mirrorswap::certs::{Issued, issue};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

const TOKEN: &str = "mirrorswap-test-token";
const BOOKMARK_EVERY: Duration = Duration::from_millis(200);

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One change, as a watch event carries it.
#[derive(Clone, Debug)]
struct Change {
    version: u64,
    kind: &'static str,
    resource: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    version: u64,
    /// Objects by (resource, namespace, name).
    objects: BTreeMap<(&'static str, String, String), Value>,
    history: Vec<Change>,
    /// Watches from a version below this one get 410 Gone.
    compacted: u64,
}

/// What the server saw and sent, for assertions.
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// Request targets (path and query), in order.
    pub requests: Vec<String>,
    /// Bookmarks sent.
    pub bookmarks: usize,
    /// 410 Gone events sent.
    pub expired: usize,
}

struct Shared {
    /// Bumped by every stop: watch streams of an earlier run send nothing more, even in the
    /// moment before their aborted connection is gone.
    run: AtomicU64,
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    log: Mutex<Log>,
}

/// The running fake API server.
pub struct FakeApi {
    /// Where it listens (kept across restarts).
    pub addr: SocketAddr,
    /// Its CA, trusted through the kubeconfig.
    pub ca: Issued,
    shared: Arc<Shared>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl FakeApi {
    /// Starts on 127.0.0.1 with no objects.
    pub async fn start() -> Self {
        let ca = issue("fake kube-apiserver CA", &["127.0.0.1".into(), "localhost".into()], 1).unwrap();
        let (changes, _) = broadcast::channel(1024);
        let shared =
            Arc::new(Shared { run: AtomicU64::new(0), store: Mutex::default(), changes, log: Mutex::default() });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut api = Self { addr, ca, shared, serving: None };
        api.serve(listener);
        api
    }

    fn serve(&mut self, listener: TcpListener) {
        let acceptor = TlsAcceptor::from(server_config(&self.ca));
        let shared = Arc::clone(&self.shared);
        self.serving = Some(tokio::spawn(async move {
            // Dropping this task (stop) drops the set, which aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (acceptor, shared) = (acceptor.clone(), Arc::clone(&shared));
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service = hyper::service::service_fn(move |request| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(handle(&shared, request)) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }

    /// Cuts every connection and stops listening, as a restarting API server does.
    pub fn stop(&mut self) {
        self.shared.run.fetch_add(1, Ordering::SeqCst);
        if let Some(task) = self.serving.take() {
            task.abort();
        }
    }

    /// Listens again on the same address.
    pub async fn restart(&mut self) {
        self.stop();
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.serve(listener);
    }

    /// Forgets the history up to now: a watch from an older version gets 410 Gone.
    pub fn compact(&self) {
        let mut store = self.shared.store.lock().unwrap();
        store.compacted = store.version;
        store.history.clear();
    }

    /// Creates or updates a Secret with `data` (base64-encoded as the API does).
    pub fn put_secret(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let encode = |value: &str| Value::from(base64::engine::general_purpose::STANDARD.encode(value));
        let data: serde_json::Map<String, Value> =
            data.iter().map(|(key, value)| ((*key).to_owned(), encode(value))).collect();
        let object = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data});
        self.put("secrets", namespace, name, object);
    }

    /// Creates or updates a ConfigMap with `data`.
    pub fn put_config_map(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let data: serde_json::Map<String, Value> =
            data.iter().map(|(key, value)| ((*key).to_owned(), (*value).into())).collect();
        self.put("configmaps", namespace, name, json!({"apiVersion": "v1", "kind": "ConfigMap", "data": data}));
    }

    /// Creates or updates an object of `resource` (`pods`, `deployments`, …; one of
    /// [`RESOURCES`]), e.g. a workload for `mirrorswap audit` to list.
    pub fn put_object(&self, resource: &'static str, namespace: &str, name: &str, object: Value) {
        assert!(RESOURCES.contains(&resource), "{resource} is not served");
        self.put(resource, namespace, name, object);
    }

    fn put(&self, resource: &'static str, namespace: &str, name: &str, mut object: Value) {
        let mut store = self.shared.store.lock().unwrap();
        store.version += 1;
        let version = store.version;
        let key = (resource, namespace.to_owned(), name.to_owned());
        let kind = if store.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        object["metadata"] = json!({
            "name": name, "namespace": namespace, "resourceVersion": version.to_string(),
            "uid": format!("uid-{resource}-{namespace}-{name}"),
        });
        store.objects.insert(key, object.clone());
        self.record(&mut store, Change { version, kind, resource, object });
    }

    /// Deletes a Secret (no-op if absent).
    pub fn delete_secret(&self, namespace: &str, name: &str) {
        let mut store = self.shared.store.lock().unwrap();
        let Some(mut object) = store.objects.remove(&("secrets", namespace.to_owned(), name.to_owned())) else {
            return;
        };
        store.version += 1;
        let version = store.version;
        object["metadata"]["resourceVersion"] = version.to_string().into();
        self.record(&mut store, Change { version, kind: "DELETED", resource: "secrets", object });
    }

    fn record(&self, store: &mut Store, change: Change) {
        store.history.push(change.clone());
        let _ = self.shared.changes.send(change);
    }

    /// What the server saw and sent so far.
    pub fn log(&self) -> Log {
        self.shared.log.lock().unwrap().clone()
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
        self.stop();
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

/// The parts of a request target this server reads.
struct Query {
    resource: &'static str,
    /// `None` for a list across all namespaces.
    namespace: Option<String>,
    limit: Option<usize>,
    /// Items to skip: the `continue` token.
    skip: usize,
    /// A GET of one object by name (`…/secrets/NAME`), not a list.
    single: bool,
    name: Option<String>,
    watch: bool,
    from: u64,
    bookmarks: bool,
    timeout: Duration,
}

/// The resources this server lists: the rules sources and every kind `/mutate` rewrites.
const RESOURCES: [&str; 11] = [
    "secrets",
    "configmaps",
    "pods",
    "podtemplates",
    "replicationcontrollers",
    "deployments",
    "statefulsets",
    "daemonsets",
    "replicasets",
    "jobs",
    "cronjobs",
];

fn parse(target: &str) -> Option<Query> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let ["api", "v1", "namespaces", namespace, resource, name] = parts.as_slice() {
        let resource = *RESOURCES.iter().find(|known| **known == *resource)?;
        let (namespace, name) = (Some((*namespace).to_owned()), Some((*name).to_owned()));
        let timeout = Duration::from_secs(290);
        return Some(Query {
            resource,
            namespace,
            name,
            limit: None,
            skip: 0,
            single: true,
            watch: false,
            from: 0,
            bookmarks: false,
            timeout,
        });
    }
    let (namespace, resource) = match parts.as_slice() {
        ["api", "v1", "namespaces", namespace, resource] => (Some(*namespace), *resource),
        ["api", "v1", resource] => (None, *resource),
        ["apis", _, "v1", "namespaces", namespace, resource] => (Some(*namespace), *resource),
        ["apis", _, "v1", resource] => (None, *resource),
        _ => return None,
    };
    let resource = *RESOURCES.iter().find(|known| **known == resource)?;
    let mut parsed = Query {
        resource,
        namespace: namespace.map(str::to_owned),
        limit: None,
        skip: 0,
        single: false,
        name: None,
        watch: false,
        from: 0,
        bookmarks: false,
        timeout: Duration::from_secs(290),
    };
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "fieldSelector" => parsed.name = value.strip_prefix("metadata.name=").map(str::to_owned),
            "watch" => parsed.watch = value == "true" || value == "1",
            "resourceVersion" => parsed.from = value.parse().unwrap_or(0),
            "allowWatchBookmarks" => parsed.bookmarks = value == "true",
            "timeoutSeconds" => parsed.timeout = Duration::from_secs(value.parse().unwrap_or(290)),
            "limit" => parsed.limit = value.parse().ok().filter(|limit| *limit > 0),
            "continue" => parsed.skip = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(parsed)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()),
        ) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(shared: &Arc<Shared>, request: Request<hyper::body::Incoming>) -> Response<Body> {
    let target = request.uri().path_and_query().map(|target| target.as_str().to_owned()).unwrap_or_default();
    shared.log.lock().unwrap().requests.push(target.clone());
    let authorized = request.headers().get("authorization").and_then(|value| value.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "no or wrong bearer token");
    }
    match parse(&target) {
        Some(query) if request.method() == hyper::Method::GET && query.watch => watch(shared, query),
        Some(query) if request.method() == hyper::Method::GET => list(shared, &query),
        _ => status(StatusCode::NOT_FOUND, "NotFound", "this fake serves only secrets, configmaps and workloads"),
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code.as_u16()});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .unwrap()
}

fn selected(query: &Query, resource: &str, object: &Value) -> bool {
    resource == query.resource
        && query.namespace.as_ref().is_none_or(|namespace| object["metadata"]["namespace"] == namespace.as_str())
        && query.name.as_ref().is_none_or(|name| object["metadata"]["name"] == name.as_str())
}

fn list(shared: &Shared, query: &Query) -> Response<Body> {
    let store = shared.store.lock().unwrap();
    let items: Vec<&Value> = store
        .objects
        .iter()
        .filter(|((resource, _, _), object)| selected(query, resource, object))
        .map(|(_, object)| object)
        .collect();
    if query.single {
        return match items.first() {
            Some(object) => Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(object.to_string())).boxed_unsync())
                .unwrap(),
            None => status(StatusCode::NOT_FOUND, "NotFound", "no such object"),
        };
    }
    let kind = match query.resource {
        "secrets" => "SecretList",
        "configmaps" => "ConfigMapList",
        _ => "List",
    };
    let page: Vec<&Value> = items.iter().skip(query.skip).take(query.limit.unwrap_or(usize::MAX)).copied().collect();
    let mut metadata = json!({"resourceVersion": store.version.to_string()});
    if query.skip + page.len() < items.len() {
        metadata["continue"] = (query.skip + page.len()).to_string().into();
    }
    let body = json!({"apiVersion": "v1", "kind": kind, "metadata": metadata, "items": page});
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .unwrap()
}

/// A chunked stream of watch events, one JSON object per line.
fn watch(shared: &Arc<Shared>, query: Query) -> Response<Body> {
    let (lines, receiver) = mpsc::channel::<Bytes>(64);
    let shared = Arc::clone(shared);
    let run = shared.run.load(Ordering::SeqCst);
    tokio::spawn(async move {
        let send = |event: Value| {
            let lines = lines.clone();
            let current = shared.run.load(Ordering::SeqCst) == run;
            async move { current && lines.send(Bytes::from(format!("{event}\n"))).await.is_ok() }
        };
        // Subscribe and read the history under one lock, so no change falls between them.
        let (replay, mut live, expired) = {
            let store = shared.store.lock().unwrap();
            let expired = query.from < store.compacted;
            let replay: Vec<Change> = store
                .history
                .iter()
                .filter(|change| change.version > query.from && selected(&query, change.resource, &change.object))
                .cloned()
                .collect();
            (replay, shared.changes.subscribe(), expired)
        };
        if expired {
            shared.log.lock().unwrap().expired += 1;
            let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": format!("too old resource version: {}", query.from),
                              "reason": "Expired", "code": 410});
            send(json!({"type": "ERROR", "object": gone})).await;
            return;
        }
        for change in replay {
            if !send(json!({"type": change.kind, "object": change.object})).await {
                return;
            }
        }
        let deadline = tokio::time::sleep(query.timeout);
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
        loop {
            tokio::select! {
                change = live.recv() => match change {
                    Ok(change) if selected(&query, change.resource, &change.object) => {
                        if !send(json!({"type": change.kind, "object": change.object})).await { return; }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                _ = bookmark.tick(), if query.bookmarks => {
                    let version = shared.store.lock().unwrap().version.to_string();
                    let kind = if query.resource == "secrets" { "Secret" } else { "ConfigMap" };
                    let object = json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": version}});
                    if !send(json!({"type": "BOOKMARK", "object": object})).await { return; }
                    shared.log.lock().unwrap().bookmarks += 1;
                }
                _ = &mut deadline => return,
            }
        }
    });
    let frames = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|line| (Ok::<_, Infallible>(Frame::data(line)), receiver))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(StreamBody::new(frames.boxed()).boxed_unsync())
        .unwrap()
}
