//! Registry answers are input too: for random statuses, `WWW-Authenticate` challenges,
//! `Docker-Content-Digest` headers, content types, manifest bodies and token JSON from a
//! loopback HTTP registry, a check ends within its deadline with a verdict and nothing panics
//! out of it; and `--registry-auth` parsing never panics on any bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use mirrorswap::registry::{AuthFile, CheckArgs, OnCheckError, Resolver, Verdict};
use mirrorswap::rewrite::{Options, compile_maps};
use proptest::prelude::*;

/// One scripted registry: how it answers `/v2/`, the token realm and manifests.
#[derive(Clone, Debug)]
struct Script {
    challenge: Option<String>,
    token_status: u16,
    token_body: String,
    manifest_status: u16,
    digest: Option<String>,
    content_type: Option<String>,
    manifest_body: String,
}

fn printable() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~]{0,40}").unwrap()
}

fn script() -> impl Strategy<Value = Script> {
    let challenge = proptest::option::of(prop_oneof![
        Just("Bearer realm=\"http://REALM/token\",service=\"s\",scope=\"x\"".to_owned()),
        Just("Bearer realm=REALM".to_owned()),
        Just("Basic realm=\"r\"".to_owned()),
        Just("Bearer".to_owned()),
        printable(),
    ]);
    let token_body = prop_oneof![
        Just(r#"{"token":"abc","expires_in":60}"#.to_owned()),
        Just(r#"{"access_token":"a\nb"}"#.to_owned()),
        Just(r#"{"token":"t","expires_in":-5}"#.to_owned()),
        Just(r#"{"token":"t","expires_in":18446744073709551615}"#.to_owned()),
        Just("{}".to_owned()),
        printable(),
    ];
    let digest = proptest::option::of(prop_oneof![
        Just("sha256:15d3b5c4f521a84896ed1ead1b14e4774d02202d5c65ab68f30eeaf310a3b1a7".to_owned()),
        Just("sha256:".to_owned()),
        Just("md5:zz".to_owned()),
        printable(),
    ]);
    let content_type = proptest::option::of(prop_oneof![
        Just("application/vnd.oci.image.manifest.v1+json".to_owned()),
        Just("application/vnd.docker.distribution.manifest.list.v2+json".to_owned()),
        Just("text/html".to_owned()),
    ]);
    let manifest_body = prop_oneof![
        Just(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"m"}]}"#.to_owned()),
        Just(r#"{"errors":[{"code":"SOMETHING_NEW","message":"m","detail":{}}]}"#.to_owned()),
        Just(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.to_owned()),
        printable(),
    ];
    let status =
        prop_oneof![Just(200u16), Just(401), Just(403), Just(404), Just(429), Just(500), Just(302), 100u16..600];
    (
        challenge,
        prop_oneof![Just(200u16), Just(401), 100u16..600],
        token_body,
        status,
        digest,
        content_type,
        manifest_body,
    )
        .prop_map(|(challenge, token_status, token_body, manifest_status, digest, content_type, manifest_body)| {
            Script { challenge, token_status, token_body, manifest_status, digest, content_type, manifest_body }
        })
}

fn respond(script: &Script, addr: SocketAddr, path: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::builder();
    let body = if path.starts_with("/token") {
        response = response.status(script.token_status);
        script.token_body.clone()
    } else if path == "/v2/" {
        response = response.status(if script.challenge.is_some() { 401 } else { 200 });
        if let Some(challenge) = &script.challenge {
            response = response.header("www-authenticate", challenge.replace("REALM", &addr.to_string()));
        }
        String::new()
    } else {
        response = response.status(script.manifest_status);
        if let Some(digest) = &script.digest {
            response = response.header("docker-content-digest", digest);
        }
        if let Some(content_type) = &script.content_type {
            response = response.header("content-type", content_type);
        }
        script.manifest_body.clone()
    };
    response.body(Full::new(Bytes::from(body))).unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

async fn serve(script: Script) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let script = Arc::clone(&script);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let response = respond(&script, addr, request.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

fn check_args(insecure: &str) -> CheckArgs {
    CheckArgs {
        registry_auth: None,
        registry_ca: None,
        insecure_registries: vec![insecure.to_owned()],
        check_timeout: Duration::from_secs(2),
        check_cache_ttl: Duration::from_secs(60),
        check_negative_ttl: Duration::from_secs(30),
        check_cache_entries: 100,
        check_backoff: Duration::from_millis(1),
        check_host_concurrency: 16,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_registry_answer_gives_a_verdict_within_the_deadline(script in script()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (verdict, took) = runtime.block_on(async {
            let addr = serve(script.clone()).await;
            let resolver = Resolver::new(&check_args(&addr.to_string()), OnCheckError::Keep, 32, None).unwrap();
            let rules = compile_maps(&format!("src.invalid::{addr}/m\n"), Options::default()).unwrap().rules;
            let started = Instant::now();
            let resolved = resolver.resolve(&rules, &["src.invalid/app:1"]).await;
            (resolved.get("src.invalid/app:1").map(|resolution| resolution.verdict.clone()), started.elapsed())
        });
        prop_assert!(took < Duration::from_millis(2500), "took {:?} for {:?}", took, script);
        match verdict {
            Some(Verdict::Take(0)) => prop_assert!((200..300).contains(&script.manifest_status), "{:?}", script),
            Some(Verdict::Keep(why)) => prop_assert!(!why.is_empty()),
            other => prop_assert!(false, "unexpected verdict {:?} for {:?}", other, script),
        }
    }

    #[test]
    fn auth_file_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), key in printable(), auth in printable()) {
        let _ = AuthFile::parse(&String::from_utf8_lossy(&bytes), "auth.json");
        let document = serde_json::json!({"auths": {key: {"auth": auth}}}).to_string();
        let _ = AuthFile::parse(&document, "auth.json");
    }
}
