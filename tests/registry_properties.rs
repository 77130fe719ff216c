//! Property tests of everything mirrorswap reads from a registry or about one, fed arbitrary
//! and hostile input: nothing panics, and what parses means what it should.
//!
//! The Docker config auth file (`AuthFile::parse`, `AuthFile::get`) and `--insecure-registry`
//! matching (`Checker::is_insecure`) are fed directly. Everything a registry sends (the
//! `WWW-Authenticate` challenge, the token JSON, statuses, digests, content types, redirects,
//! bodies) is reached the way a registry reaches it: a loopback HTTP server answers
//! `Checker::look` with generated answers, hostile ones included, at every depth (presence, the
//! digest, the platforms): a digest is only ever a well-formed one the registry sent or the
//! hash of the bytes it served. No panic is allowed; a token
//! a header cannot carry (a control character, which panicked inside `oci-client` 0.18) is an
//! error for that image (`a_token_a_header_cannot_carry_is_an_error`).
//!
//! `tests/registry_parsing.rs` sends random answers through the `Resolver`, which runs each
//! lookup on a task of its own and so turns a panic into an error; here checks call `Checker`
//! directly, so a panic anywhere below it is seen, and the answers are asserted, not only ended.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use mirrorswap::registry::{
    Answer, AuthFile, CheckArgs, CheckError, Checker, ClientSettings, Depth, Digest, Found, OnCheckError, Resolver,
    Verdict,
};
use mirrorswap::rewrite::{Options, compile_maps};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The auth file

/// Arbitrary JSON, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        Just(Value::from("dTE6cDE=")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("auths".to_owned()),
                        Just("auth".to_owned()),
                        Just("username".to_owned()),
                        Just("password".to_owned()),
                        ".{0,8}".prop_map(String::from)
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A registry host and optional port, lowercase, never Docker Hub's historic names.
fn registry_name() -> impl Strategy<Value = (String, Option<u16>)> {
    ("[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?(\\.[a-z0-9]{1,6}){0,3}", prop::option::of(1u16..=u16::MAX))
        .prop_filter("not a Docker Hub alias", |(host, _)| !host.ends_with("docker.io"))
}

/// How an `auths` key names a registry.
#[derive(Clone, Copy, Debug)]
enum KeyForm {
    Bare,
    Url,
    UrlWithPath,
    Upper,
}

fn key_of(host: &str, port: Option<u16>, form: KeyForm) -> String {
    let registry = match port {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    match form {
        KeyForm::Bare => registry,
        KeyForm::Url => format!("https://{registry}"),
        KeyForm::UrlWithPath => format!("https://{registry}/v1/"),
        KeyForm::Upper => registry.to_ascii_uppercase(),
    }
}

fn key_form() -> impl Strategy<Value = KeyForm> {
    prop_oneof![Just(KeyForm::Bare), Just(KeyForm::Url), Just(KeyForm::UrlWithPath), Just(KeyForm::Upper)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any bytes: an answer or an error, never a panic; an error never repeats a credential.
    #[test]
    fn auth_file_of_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = AuthFile::parse(&String::from_utf8_lossy(&bytes), "auth.json");
    }

    /// Any JSON document, and any JSON as the `auths` map or as an entry: no panic.
    #[test]
    fn auth_file_of_any_json(document in any_json(), entry in any_json(), key in ".{0,20}") {
        let _ = AuthFile::parse(&document.to_string(), "auth.json");
        let nested = json!({"auths": {key.clone(): entry}});
        let _ = AuthFile::parse(&nested.to_string(), "auth.json");
        let _ = AuthFile::parse(&json!({"auths": document}).to_string(), "auth.json");
    }

    /// An `auth` value of arbitrary text, base64 or not: either the credentials it encodes
    /// (user before the first `:`) or an error naming the entry and not the value.
    #[test]
    fn auth_field_decodes_or_names_the_entry(raw in ".{0,40}", encode in any::<bool>()) {
        let auth = if encode { STANDARD.encode(&raw) } else { raw.clone() };
        let text = json!({"auths": {"r.example.org": {"auth": auth}}}).to_string();
        match AuthFile::parse(&text, "auth.json") {
            Ok(file) => {
                let credential = file.get("r.example.org");
                if auth.is_empty() {
                    prop_assert!(false, "an empty auth without username/password must be refused");
                }
                let (username, password) = credential.expect("the entry");
                let decoded = String::from_utf8(STANDARD.decode(auth.trim()).unwrap()).unwrap();
                prop_assert_eq!(format!("{}:{}", username, password), decoded);
                prop_assert!(!username.contains(':'));
            }
            Err(error) => {
                let message = error.to_string();
                prop_assert!(message.contains("r.example.org"), "{}", message);
                if raw.len() >= 6 {
                    prop_assert!(!message.contains(raw.as_str()), "the error repeats the value: {}", message);
                }
            }
        }
    }

    /// Credentials written in every key and credential form read back for their registry, in
    /// any letter case; a `host` entry serves the default port (`host:443`) and no other, so an
    /// image naming another port never gets them.
    #[test]
    fn auth_file_round_trip(
        entries in prop::collection::vec((registry_name(), key_form(), "[^:]{0,16}", ".{0,24}", any::<bool>()), 1..8),
        probe in ".{0,30}",
    ) {
        let mut seen = std::collections::HashSet::new();
        let entries: Vec<_> = entries.into_iter().filter(|((host, port), ..)| seen.insert((host.clone(), *port))).collect();
        let mut auths = serde_json::Map::new();
        for ((host, port), form, user, password, as_auth) in &entries {
            let entry = if *as_auth {
                json!({"auth": STANDARD.encode(format!("{user}:{password}"))})
            } else {
                json!({"username": user, "password": password})
            };
            auths.insert(key_of(host, *port, *form), entry);
        }
        let text = json!({"auths": auths}).to_string();
        let file = AuthFile::parse(&text, "auth.json").expect("well-formed entries parse");
        prop_assert_eq!(file.len(), entries.len());
        for ((host, port), _, user, password, _) in &entries {
            let expected = (user.as_str(), password.as_str());
            let registry = key_of(host, *port, KeyForm::Bare);
            prop_assert_eq!(file.get(&registry), Some(expected));
            prop_assert_eq!(file.get(&registry.to_ascii_uppercase()), Some(expected));
            if port.is_none() && !entries.iter().any(|((h, p), ..)| h == host && *p == Some(4443)) {
                prop_assert_eq!(file.get(&format!("{host}:4443")), None);
                if !entries.iter().any(|((h, p), ..)| h == host && *p == Some(443)) {
                    prop_assert_eq!(file.get(&format!("{host}:443")), Some(expected));
                }
            }
        }
        let _ = file.get(&probe);
    }
}

// ---------------------------------------------------------------------------------------------
// `--insecure-registry`

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// An entry matches itself in any case; a `host` entry matches its default port only, never
    /// `host:5000`, and no other host; arbitrary registry strings never panic.
    #[test]
    fn insecure_registry_matching(
        entries in prop::collection::vec(registry_name(), 1..4),
        other in registry_name(),
        probes in prop::collection::vec(".{0,30}", 0..8),
    ) {
        let insecure: Vec<String> = entries.iter().map(|(host, port)| key_of(host, *port, KeyForm::Bare)).collect();
        let checker = Checker::new(&ClientSettings { insecure: insecure.clone(), ..ClientSettings::default() }, AuthFile::default()).unwrap();
        for (entry, (host, port)) in insecure.iter().zip(&entries) {
            prop_assert!(checker.is_insecure(entry));
            prop_assert!(checker.is_insecure(&entry.to_ascii_uppercase()));
            if port.is_none() && !entries.iter().any(|(h, p)| h == host && *p == Some(5000)) {
                let (other_port, default_port) = (format!("{host}:5000"), format!("{host}:443"));
                prop_assert!(!checker.is_insecure(&other_port));
                prop_assert!(checker.is_insecure(&default_port));
            }
        }
        if !entries.iter().any(|(host, _)| *host == other.0) {
            prop_assert!(!checker.is_insecure(&key_of(&other.0, other.1, KeyForm::Bare)));
        }
        for probe in probes {
            let _ = checker.is_insecure(&probe);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Registry answers

/// An OCI error envelope, with known and unknown codes.
fn envelope_json() -> impl Strategy<Value = Value> {
    let code = prop_oneof![
        Just("MANIFEST_UNKNOWN"),
        Just("NAME_UNKNOWN"),
        Just("NOT_FOUND"),
        Just("BLOB_UNKNOWN"),
        Just("UNAUTHORIZED"),
        Just("DENIED"),
        Just("TOOMANYREQUESTS"),
        Just("UNSUPPORTED"),
        Just("NAME_INVALID"),
        Just("SOMETHING_NEW"),
    ];
    prop::collection::vec((code, ".{0,10}", any_json()), 0..4).prop_map(|errors| {
        let errors: Vec<Value> = errors
            .into_iter()
            .map(|(code, message, detail)| json!({"code": code, "message": message, "detail": detail}))
            .collect();
        json!({ "errors": errors })
    })
}

// ---------------------------------------------------------------------------------------------
// A hostile registry on loopback

/// One scripted HTTP answer.
#[derive(Clone, Debug, Default)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
}

/// The answers of one case, by endpoint.
#[derive(Clone, Debug, Default)]
struct Script {
    ping: Reply,
    token: Reply,
    head: Reply,
    get: Reply,
}

/// The loopback server: answers from the current script, records every (path, status) served.
struct Hostile {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    served: Arc<Mutex<Vec<(String, u16)>>>,
}

const REALM: &str = "{REALM}";

fn respond(script: &Script, path: &str, method: &hyper::Method, realm: &str) -> Reply {
    let reply = if path == "/v2/" {
        &script.ping
    } else if path.starts_with("/token") {
        &script.token
    } else if method == hyper::Method::HEAD {
        &script.head
    } else {
        &script.get
    };
    let mut reply = reply.clone();
    for (_, value) in &mut reply.headers {
        let text = String::from_utf8_lossy(value);
        if text.contains(REALM) {
            *value = text.replace(REALM, realm).into_bytes();
        }
    }
    reply
}

fn hostile() -> &'static Hostile {
    static SERVER: OnceLock<Hostile> = OnceLock::new();
    SERVER.get_or_init(|| {
        let script = Arc::new(Mutex::new(Script::default()));
        let served = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (script_, served_) = (Arc::clone(&script), Arc::clone(&served));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tx.send(addr).unwrap();
                let realm = format!("http://{addr}/token");
                while let Ok((stream, _)) = listener.accept().await {
                    let (script, served, realm) = (Arc::clone(&script_), Arc::clone(&served_), realm.clone());
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                                let path = request.uri().path().to_owned();
                                let reply = respond(&script.lock().unwrap(), &path, request.method(), &realm);
                                served.lock().unwrap().push((format!("{} {path}", request.method()), reply.status));
                                let mut response = hyper::Response::builder().status(reply.status);
                                for (name, value) in &reply.headers {
                                    response = response.header(*name, value.as_slice());
                                }
                                let response = response.body(Full::new(Bytes::from(reply.body))).unwrap();
                                async move { Ok::<_, Infallible>(response) }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Hostile { addr: rx.recv().unwrap(), script, served }
    })
}

/// Bytes a header value may hold (visible ASCII, space, tab, obs-text).
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![8 => 0x20u8..0x7f, 1 => 0x80u8..=0xff, 1 => Just(b'\t')], 0..48)
}

/// Text with quotes, commas, escapes and equals signs, for challenge parameters.
fn challenge_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,=\"\\\\:;._-]{0,24}"
}

/// `WWW-Authenticate` values: well-formed bearer challenges pointing at this server (with
/// hostile parameters), broken ones, other schemes, raw bytes. Realms never name another host.
fn challenge() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (challenge_text(), challenge_text()).prop_map(|(service, scope)| format!(
            "Bearer realm=\"{REALM}\",service=\"{}\",scope=\"{}\"",
            service.replace(['"', '\\'], ""),
            scope.replace(['"', '\\'], "")
        )
        .into_bytes()),
        challenge_text().prop_map(|rest| format!("Bearer realm=\"{REALM}{rest}").into_bytes()),
        "[^/:]{0,20}".prop_map(|realm| format!("Bearer realm=\"{realm}\"").into_bytes()),
        challenge_text().prop_map(|rest| format!("Bearer {rest}").into_bytes()),
        challenge_text().prop_map(|rest| format!("Basic realm=\"{rest}\", Bearer realm=\"{REALM}\"").into_bytes()),
        Just(b"Basic realm=\"registry\"".to_vec()),
        header_value().prop_filter("no other host", |value| !value.contains(&b'/')),
    ]
}

/// A JWT-shaped token whose payload is arbitrary JSON (its `exp` read by the client).
fn jwt() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|exp| json!({ "exp": exp })),
        any::<f64>().prop_map(|exp| json!({ "exp": exp })),
        Just(json!({"exp": u64::MAX})),
        any_json(),
    ]
    .prop_map(|payload| format!("eyJhbGciOiJFUzI1NiJ9.{}.c2ln", URL_SAFE_NO_PAD.encode(payload.to_string())))
}

/// Token endpoint bodies: JSON with either field and arbitrary (even control) characters,
/// JWTs, arbitrary JSON, arbitrary bytes.
fn token_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (".{0,40}", prop::option::of(any::<i64>()))
            .prop_map(|(token, expires_in)| json!({"token": token, "expires_in": expires_in}).to_string().into_bytes()),
        "[ -~]{0,40}".prop_map(|token| json!({ "access_token": token }).to_string().into_bytes()),
        jwt().prop_map(|token| json!({ "token": token }).to_string().into_bytes()),
        any_json().prop_map(|value| value.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// Statuses registries send, and any other final one (1xx are left out: a client waits past
/// them for its timeout, which the registry tests cover).
fn status() -> impl Strategy<Value = u16> {
    let common = vec![200u16, 200, 200, 201, 204, 302, 304, 400, 401, 401, 403, 404, 404, 404, 405, 429, 500, 500, 503];
    prop_oneof![9 => prop::sample::select(common), 1 => 200u16..1000]
}

fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    format!("sha256:{}", digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect::<String>())
}

/// `Docker-Content-Digest` values; `{BODY}` is replaced by the digest of the GET body.
fn digest_header() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop_oneof![
        3 => Just(b"{BODY}".to_vec()),
        1 => "[0-9a-f]{64}".prop_map(|hex| format!("sha256:{hex}").into_bytes()),
        1 => "[0-9a-f]{0,130}".prop_map(|hex| format!("sha512:{hex}").into_bytes()),
        1 => "[a-z0-9+._-]{0,8}:[a-zA-Z0-9=_-]{0,20}".prop_map(String::into_bytes),
        1 => Just(Vec::new()),
        1 => header_value(),
    ])
}

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop_oneof![
        Just(b"application/vnd.oci.image.manifest.v1+json".to_vec()),
        Just(b"application/vnd.oci.image.index.v1+json".to_vec()),
        Just(b"application/vnd.docker.distribution.manifest.v2+json".to_vec()),
        Just(b"application/vnd.docker.distribution.manifest.list.v2+json".to_vec()),
        Just(b"text/html".to_vec()),
        header_value(),
    ])
}

/// A `Location` that stays on this server (a relative reference).
fn location() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop_oneof![
        Just(b"/v2/".to_vec()),
        Just(b"/elsewhere".to_vec()),
        "[a-z0-9._-]{0,12}".prop_map(String::into_bytes)
    ])
}

fn manifest_reply(with_body: bool) -> impl Strategy<Value = Reply> {
    let body = prop_oneof![
        envelope_json().prop_map(|value| value.to_string().into_bytes()),
        Just(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#.to_vec()),
        prop::collection::vec(any::<u8>(), 0..128),
    ];
    (status(), digest_header(), content_type(), location(), body).prop_map(
        move |(status, digest, kind, location, body)| {
            let mut headers = Vec::new();
            headers.extend(digest.map(|value| ("docker-content-digest", value)));
            headers.extend(kind.map(|value| ("content-type", value)));
            headers.extend(location.map(|value| ("location", value)));
            Reply { status, headers, body: if with_body { body } else { Vec::new() } }
        },
    )
}

fn script() -> impl Strategy<Value = Script> {
    let ping = (status(), prop::option::of(challenge())).prop_map(|(status, challenge)| Reply {
        status,
        headers: challenge.map(|value| ("www-authenticate", value)).into_iter().collect(),
        body: Vec::new(),
    });
    let token = (status(), token_body()).prop_map(|(status, body)| Reply {
        status,
        headers: vec![("content-type", b"application/json".to_vec())],
        body,
    });
    (ping, token, manifest_reply(false), manifest_reply(true)).prop_map(|(ping, token, head, get)| Script {
        ping,
        token,
        head,
        get,
    })
}

/// The checkers of the hostile cases: anonymous, and with basic credentials for the server.
fn checkers() -> &'static [Arc<Checker>; 2] {
    static CHECKERS: OnceLock<[Arc<Checker>; 2]> = OnceLock::new();
    CHECKERS.get_or_init(|| {
        let host = hostile().addr.to_string();
        let settings = ClientSettings {
            insecure: vec![host.clone()],
            timeout: Duration::from_secs(3),
            ..ClientSettings::default()
        };
        let mut auth = AuthFile::default();
        auth.insert(&host, "user".into(), "pass word:1".into());
        [
            Arc::new(Checker::new(&settings, AuthFile::default()).unwrap()),
            Arc::new(Checker::new(&settings, auth).unwrap()),
        ]
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
}

static CASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The hostile cases share one server and its script: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A check's outcome, or the message of the panic that ended it.
type CaseOutcome = Result<Result<Answer, CheckError>, String>;

/// Runs one check of a fresh repository against `script`; the outcome (or the panic's
/// message) and the (path, status) pairs the server served.
fn run_case(
    mut script: Script,
    by_digest: bool,
    with_credentials: bool,
    depth: Depth,
) -> (CaseOutcome, Vec<(String, u16)>) {
    let server = hostile();
    let body_digest = sha256(&script.get.body);
    for reply in [&mut script.head, &mut script.get] {
        for (_, value) in &mut reply.headers {
            if value.as_slice() == b"{BODY}" {
                *value = body_digest.clone().into_bytes();
            }
        }
    }
    let case = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let image = if by_digest {
        format!("{}/case{case}/app@{body_digest}", server.addr)
    } else {
        format!("{}/case{case}/app:v{case}", server.addr)
    };
    *server.script.lock().unwrap() = script;
    server.served.lock().unwrap().clear();
    let checker = Arc::clone(&checkers()[usize::from(with_credentials)]);
    let outcome = runtime().block_on(async move {
        let task = tokio::spawn(async move { checker.look(&image, depth).await });
        match tokio::time::timeout(Duration::from_secs(20), task).await {
            Err(_) => Err("no answer within 20 s".to_owned()),
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(error)) => {
                let payload = error.into_panic();
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                    .unwrap_or_default();
                Err(format!("panic: {message}"))
            }
        }
    });
    let served = server.served.lock().unwrap().clone();
    (outcome, served)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any answers of a registry (challenge, token, manifest statuses, digests, content types,
    /// redirects, bodies): the check ends with an answer or an error, within its timeout,
    /// without a panic; "present" only after a manifest request answered 2xx, "absent" only
    /// after one answered 404; a `GET` only after a `HEAD` was refused (405, 501).
    #[test]
    fn hostile_registry_answers(
        script in script(),
        by_digest in any::<bool>(),
        with_credentials in any::<bool>(),
        depth in prop::sample::select(vec![Depth::Presence, Depth::Presence, Depth::Digest, Depth::Platforms]),
    ) {
        let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (outcome, served) = run_case(script.clone(), by_digest, with_credentials, depth);
        // The statuses of manifest requests, or of every request once one was redirected.
        let manifest = |path: &str| path.contains("/manifests/");
        let redirected = served.iter().any(|(path, status)| manifest(path) && (300..400).contains(status));
        let manifest_statuses: Vec<u16> =
            served.iter().filter(|(path, _)| redirected || manifest(path)).map(|(_, status)| *status).collect();
        let first_get = served.iter().position(|(path, _)| manifest(path) && path.starts_with("GET "));
        // A HEAD that was redirected is refused where its redirect ends (the registry said
        // where the manifest is, and that place refused the method).
        let refused_head = served.iter().position(|(path, status)| {
            path.starts_with("HEAD ") && (redirected || manifest(path)) && [405, 501].contains(status)
        });
        if depth == Depth::Presence {
            prop_assert!(first_get.is_none_or(|get| refused_head.is_some_and(|head| head < get)), "GET without a refused HEAD: {served:?}");
        }
        // A digest is the header's, when well-formed, or the hash of the GET's body.
        let header = |reply: &Reply| reply.headers.iter().find(|(name, _)| *name == "docker-content-digest").and_then(|(_, value)| Digest::parse(std::str::from_utf8(value).ok()?));
        let body = Digest::of(&script.get.body);
        let body_digest = |digest: &str| if digest == "{BODY}" { body.to_string() } else { digest.to_owned() };
        let head_digest = header(&script.head).or_else(|| {
            let (_, value) = script.head.headers.iter().find(|(name, _)| *name == "docker-content-digest")?;
            Digest::parse(&body_digest(std::str::from_utf8(value).ok()?))
        });
        match outcome {
            Err(message) => prop_assert!(false, "{message}\nscript: {script:?}\nserved: {served:?}"),
            Ok(Ok(Answer::Present(Found { digest, platforms }))) => {
                prop_assert!(manifest_statuses.iter().any(|status| (200..300).contains(status)), "present after {served:?}");
                // (A redirect may end on another reply, whose bytes are what was hashed.)
                let known = |digest: Digest| digest == body || Some(digest) == head_digest;
                prop_assert!(redirected || digest.is_none_or(known), "{digest:?} in {script:?}");
                prop_assert!(depth == Depth::Presence || digest.is_some(), "no digest at {depth:?}: {served:?}");
                prop_assert_eq!(platforms.is_some(), depth == Depth::Platforms);
            }
            Ok(Ok(Answer::Absent(_))) => prop_assert!(manifest_statuses.contains(&404), "absent after {served:?}"),
            Ok(Ok(Answer::Lacks(_))) => prop_assert!(false, "a judgement from a lookup"),
            Ok(Err(_)) => {}
        }
    }
}

/// A plain registry's usual answers, one by one: what each means. A `HEAD` 2xx is present
/// without a `GET` (with or without a digest), a `GET` follows only a refused `HEAD`.
#[test]
fn plain_answers() {
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#.to_vec();
    let head = |status: u16, digest: bool| Reply {
        status,
        headers: if digest { vec![("docker-content-digest", b"{BODY}".to_vec())] } else { Vec::new() },
        body: Vec::new(),
    };
    let get = |status: u16, body: &[u8]| Reply { status, headers: Vec::new(), body: body.to_vec() };
    let open = Reply { status: 200, ..Reply::default() };
    let no_credentials = || Err(CheckError::NoCredentials { registry: hostile().addr.to_string() });
    /// (case, HEAD answer, GET answer, outcome, manifest GETs made)
    type Case = (&'static str, Reply, Reply, Result<Answer, CheckError>, usize);
    let present = |digest: Option<Digest>| Ok(Answer::Present(Found { digest, platforms: None }));
    let table: [Case; 8] = [
        ("HEAD 200 with a digest", head(200, true), get(500, b""), present(Some(Digest::of(b""))), 0),
        ("HEAD 200 without a digest", head(200, false), get(500, b""), present(None), 0),
        ("HEAD refused, GET 200", head(405, false), get(200, &manifest), present(Some(Digest::of(&manifest))), 1),
        ("404", head(404, false), get(404, b""), Ok(Answer::Absent(404)), 0),
        ("500", head(500, false), get(500, b"oops"), Err(CheckError::Status(500)), 0),
        ("401", head(401, false), get(401, b""), no_credentials(), 0),
        ("403", head(403, false), get(403, b""), Err(CheckError::Denied { with_credentials: false }), 0),
        ("400", head(400, false), get(400, b""), Err(CheckError::Status(400)), 0),
    ];
    for (case, head, get, expected, gets) in table {
        let script = Script { ping: open.clone(), token: Reply::default(), head, get: get.clone() };
        for by_digest in [false, true] {
            let (outcome, served) = run_case(script.clone(), by_digest, false, Depth::Presence);
            assert_eq!(outcome, Ok(expected.clone()), "{case} (by digest: {by_digest}): served {served:?}");
            let got =
                served.iter().filter(|(path, _)| path.starts_with("GET ") && path.contains("/manifests/")).count();
            assert_eq!(got, gets, "{case}: manifest GETs in {served:?}");
        }
    }
}

/// A token a header cannot carry (a control character; `oci-client` 0.18 panicked on it) is an
/// error for that image: the resolver keeps it and says why.
#[test]
fn a_token_a_header_cannot_carry_is_an_error() {
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let server = hostile();
    *server.script.lock().unwrap() = Script {
        ping: Reply::default(),
        token: Reply { status: 200, headers: Vec::new(), body: json!({"token": "a\nb"}).to_string().into_bytes() },
        head: Reply {
            status: 401,
            headers: vec![("www-authenticate", format!("Bearer realm=\"{REALM}\",service=\"s\"").into_bytes())],
            body: Vec::new(),
        },
        get: Reply { status: 200, headers: Vec::new(), body: Vec::new() },
    };
    let host = server.addr.to_string();
    let args = CheckArgs {
        registry_auth: None,
        registry_ca: None,
        insecure_registries: vec![host.clone()],
        check_timeout: Duration::from_secs(5),
        check_cache_ttl: Duration::from_secs(60),
        check_negative_ttl: Duration::from_secs(60),
        check_cache_entries: 100,
        check_backoff: Duration::ZERO,
        check_host_concurrency: 16,
    };
    let resolver = Resolver::new(&args, OnCheckError::Keep, 32, None).expect("resolver");
    let rules = compile_maps(&format!("src.invalid::{host}/mirror\n"), Options::default()).expect("rules").rules;
    let resolved = runtime().block_on(resolver.resolve(&rules, &["src.invalid/panic/app:1"]));
    let resolution = resolved.get("src.invalid/panic/app:1").expect("resolved");
    match &resolution.verdict {
        Verdict::Keep(reason) => assert!(reason.contains("token: the token holds characters"), "{reason}"),
        other => panic!("kept expected, got {other:?}"),
    }
}
