//! The registry checks against registries that misbehave on purpose (`common::hostile`):
//! bodies of 200 MiB, token realms over plain http, stalls, 429s, floods of headers, and
//! images that pick the port their mirror's credentials go to. Each case names the bound it
//! holds: bytes read, hosts contacted and with whose credentials, lookups per request and per
//! host, and what reaches the host's backoff.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::hostile::{Hostile, Reply, Seen};
use common::{Protocol, TestServer, sample};
use mirrorswap::registry::client::MAX_MANIFEST_BYTES;
use mirrorswap::registry::token::MAX_TOKEN_BYTES;
use mirrorswap::registry::{
    Answer, AuthFile, CheckArgs, CheckError, Checker, ClientSettings, Digest, Found, OnCheckError, Resolver, Verdict,
};
use mirrorswap::rewrite::{Options, RuleSet, compile_maps};
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;

fn checker(insecure: &[&str], ca_pem: Option<&str>, auth: AuthFile) -> Checker {
    checker_with_timeout(insecure, ca_pem, auth, Duration::from_secs(5))
}

fn checker_with_timeout(insecure: &[&str], ca_pem: Option<&str>, auth: AuthFile, timeout: Duration) -> Checker {
    let settings = ClientSettings {
        ca_pem: ca_pem.map(|pem| pem.as_bytes().to_vec()),
        insecure: insecure.iter().map(|host| (*host).to_owned()).collect(),
        timeout,
    };
    Checker::new(&settings, auth).unwrap()
}

fn args(insecure: &[&str]) -> CheckArgs {
    CheckArgs {
        registry_auth: None,
        registry_ca: None,
        insecure_registries: insecure.iter().map(|host| (*host).to_owned()).collect(),
        check_timeout: Duration::from_secs(1),
        check_cache_ttl: Duration::from_secs(60),
        check_negative_ttl: Duration::from_secs(60),
        check_cache_entries: 10_000,
        check_backoff: Duration::from_secs(3),
        check_host_concurrency: 16,
    }
}

/// Present, with nothing learned but that (no digest header was sent).
fn present() -> Answer {
    Answer::Present(Found::default())
}

fn compile(text: &str) -> RuleSet {
    compile_maps(text, Options::default()).expect("rules").rules
}

fn manifest_requests(seen: &[Seen], method: &str) -> usize {
    seen.iter().filter(|seen| seen.method == method && seen.path.contains("/manifests/")).count()
}

fn kept_because(resolution: Option<&mirrorswap::registry::Resolution<'_>>) -> String {
    match resolution.map(|resolution| &resolution.verdict) {
        Some(Verdict::Keep(why)) => why.clone(),
        other => panic!("kept expected, got {other:?}"),
    }
}

/// A `HEAD` 2xx is the answer, with or without `Docker-Content-Digest`: no `GET`, so none of
/// the 200 MiB the registry would send is read (it took one server to 1.18 GB).
#[tokio::test]
async fn a_head_without_a_digest_is_present_and_no_body_is_read() {
    let hostile = Hostile::start(None, |seen| match seen.method.as_str() {
        "HEAD" => Reply::status(200),
        _ => Reply::status(200).streamed(200 * MIB),
    })
    .await;
    let checker = checker(&[&hostile.host()], None, AuthFile::default());
    assert_eq!(checker.check(&format!("{}/team/app:1", hostile.host())).await, Ok(present()));
    assert_eq!(manifest_requests(&hostile.seen(), "GET"), 0, "{:?}", hostile.seen());
}

/// Where `HEAD` is refused, the `GET` is read up to 4 MiB (what registries accept) and cut
/// there with an error, whether the length is declared or not.
#[tokio::test]
async fn a_refused_head_falls_back_to_a_get_cut_at_4_mib() {
    for declared in [false, true] {
        let hostile = Hostile::start(None, move |seen| match seen.method.as_str() {
            "HEAD" => Reply::status(405),
            _ if declared => Reply::status(200).declared(200 * MIB),
            _ => Reply::status(200).streamed(200 * MIB),
        })
        .await;
        let checker = checker(&[&hostile.host()], None, AuthFile::default());
        let answer = checker.check(&format!("{}/team/app:1", hostile.host())).await;
        assert_eq!(answer, Err(CheckError::TooLarge { what: "manifest", limit: MAX_MANIFEST_BYTES }), "{declared}");
        assert_eq!(answer.unwrap_err().to_string(), "manifest over 4194304 bytes: cut at the limit");
    }
    // A manifest of a sane size is read and present.
    let hostile = Hostile::start(None, |seen| match seen.method.as_str() {
        "HEAD" => Reply::status(405),
        _ => Reply::status(200).body(r#"{"schemaVersion":2}"#),
    })
    .await;
    let checker = checker(&[&hostile.host()], None, AuthFile::default());
    let digest = Digest::of(br#"{"schemaVersion":2}"#);
    let found = Found { digest: Some(digest), platforms: None };
    assert_eq!(checker.check(&format!("{}/team/app:1", hostile.host())).await, Ok(Answer::Present(found)));
}

/// A token service's answer is read up to 256 KiB.
#[tokio::test]
async fn a_token_answer_is_cut_at_its_limit() {
    let hostile = Arc::new(tokio::sync::OnceCell::new());
    let realm = Arc::clone(&hostile);
    let server = Hostile::start(None, move |seen| {
        if seen.path.starts_with("/token") {
            return Reply::status(200).streamed(200 * MIB);
        }
        let realm = realm.get().map(|host: &String| format!("http://{host}/token")).unwrap_or_default();
        Reply::status(401).header("www-authenticate", &format!("Bearer realm=\"{realm}\",service=\"s\""))
    })
    .await;
    hostile.set(server.host()).unwrap();
    let checker = checker(&[&server.host()], None, AuthFile::default());
    let answer = checker.check(&format!("{}/team/app:1", server.host())).await;
    assert_eq!(answer, Err(CheckError::TooLarge { what: "token answer", limit: MAX_TOKEN_BYTES }));
}

/// An HTTPS registry whose challenge names a plain-http realm gets an error naming the realm,
/// and the realm gets nothing: not the credentials, not even a connection. Listed in
/// `--insecure-registry`, the registry may name one.
#[tokio::test]
async fn an_http_realm_of_an_https_registry_gets_no_credentials() {
    let recorder = Hostile::start(None, |_| Reply::status(200).body(r#"{"token":"t"}"#)).await;
    let ca = mirrorswap::certs::issue("hostile test CA", &["127.0.0.1".into()], 1).unwrap();
    let realm = format!("http://{}/token", recorder.host());
    let challenge = format!("Bearer realm=\"{realm}\",service=\"registry\"");
    let registry = Hostile::start(Some(&ca), move |seen| match &seen.authorization {
        Some(value) if value == "Bearer t" => Reply::status(200),
        _ => Reply::status(401).header("www-authenticate", &challenge),
    })
    .await;
    let mut auth = AuthFile::default();
    auth.insert(&registry.host(), "mirror".into(), "s3cret-pass".into());
    let image = format!("{}/team/app:1", registry.host());

    let answer = checker(&[], Some(&ca.ca_pem), auth.clone()).check(&image).await;
    let error = answer.unwrap_err();
    assert!(matches!(&error, CheckError::Realm { realm: named, .. } if *named == realm), "{error:?}");
    assert!(error.to_string().contains(&realm) && error.to_string().contains("nothing sent"), "{error}");
    assert_eq!(recorder.connections(), 0, "the realm was contacted: {:?}", recorder.seen());

    // The operator listed the registry as insecure: its http realm is used.
    let answer = checker(&[&registry.host()], Some(&ca.ca_pem), auth).check(&image).await;
    assert_eq!(answer, Ok(present()));
    let asked = recorder.seen();
    assert_eq!(asked.len(), 1);
    assert!(asked[0].authorization.as_deref().is_some_and(|value| value.starts_with("Basic ")), "{asked:?}");
}

/// A login keyed by `host` goes to that host's default port only; keyed by `host:port`, to
/// exactly that port.
#[tokio::test]
async fn credentials_go_to_exactly_the_host_and_port_they_are_keyed_by() {
    let recorder = Hostile::start(None, |_| Reply::status(401).header("www-authenticate", "Basic realm=\"r\"")).await;
    let image = format!("{}/x:1", recorder.host());
    let mut by_host = AuthFile::default();
    by_host.insert("127.0.0.1", "mirror".into(), "s3cret-pass".into());
    let answer = checker(&[&recorder.host()], None, by_host).check(&image).await;
    assert_eq!(answer, Err(CheckError::NoCredentials { registry: recorder.host() }));
    assert!(recorder.seen().iter().all(|seen| seen.authorization.is_none()), "{:?}", recorder.seen());

    let mut by_port = AuthFile::default();
    by_port.insert(&recorder.host(), "mirror".into(), "s3cret-pass".into());
    let answer = checker(&[&recorder.host()], None, by_port).check(&image).await;
    assert_eq!(answer, Err(CheckError::CredentialsRejected { registry: recorder.host() }));
    assert!(recorder.seen().iter().any(|seen| seen.authorization.is_some()));
}

/// Floods of headers end the check with an error, bounded by the client's header limits.
#[tokio::test]
async fn header_floods_are_errors() {
    let many = Hostile::start(None, |_| {
        (0..5_000).fold(Reply::status(200), |reply, index| reply.header(&format!("x-flood-{index}"), &"x".repeat(200)))
    })
    .await;
    let answer = checker(&[&many.host()], None, AuthFile::default()).check(&format!("{}/x:1", many.host())).await;
    assert!(matches!(answer, Err(CheckError::Transport(_))), "{answer:?}");
    let huge = Hostile::start(None, |_| {
        Reply::status(401).header("www-authenticate", &format!("Bearer realm=\"https://{}\"", "a".repeat(1 << 20)))
    })
    .await;
    let answer = checker(&[&huge.host()], None, AuthFile::default()).check(&format!("{}/x:1", huge.host())).await;
    assert!(matches!(answer, Err(CheckError::Transport(_))), "{answer:?}");
}

/// 429 says so, and its `Retry-After` (longer than `--check-backoff`) keeps the host alone:
/// the next request does not ask.
#[tokio::test]
async fn a_rate_limited_registry_is_left_alone_for_its_retry_after() {
    let hostile = Hostile::start(None, |_| Reply::status(429).header("retry-after", "30")).await;
    let host = hostile.host();
    let resolver = Resolver::new(&args(&[&host]), OnCheckError::Keep, 32, None).unwrap();
    let rules = compile(&format!("src.invalid::{host}/m\n"));
    let resolved = resolver.resolve(&rules, &["src.invalid/a:1"]).await;
    let why = kept_because(resolved.get("src.invalid/a:1"));
    assert_eq!(why, format!("mirror {host}/m: rate limited (429), retry after 30s"));
    tokio::time::sleep(Duration::from_millis(3_100)).await; // past --check-backoff (3 s)
    let resolved = resolver.resolve(&rules, &["src.invalid/b:1"]).await;
    let why = kept_because(resolved.get("src.invalid/b:1"));
    assert!(why.contains("not asked again for 2"), "{why}");
    assert_eq!(manifest_requests(&hostile.seen(), "HEAD"), 1);
}

/// Rules `src.invalid/team::STALLED/airgap` then `src.invalid::HEALTHY/quay`: the stalled
/// first candidate times out, the healthy second is taken within the deadline, and the
/// healthy host is not put into backoff. A candidate the deadline left no turn for is "not
/// asked: deadline".
#[tokio::test]
async fn a_stalled_first_candidate_does_not_hide_a_healthy_second() {
    let stalled = Hostile::start(None, |_| Reply::stall()).await;
    let healthy = Hostile::start(None, |_| Reply::status(200)).await;
    let (s, h) = (stalled.host(), healthy.host());
    let resolver = Resolver::new(&args(&[&s, &h]), OnCheckError::Keep, 32, None).unwrap();
    let rules_text = format!("src.invalid/team::{s}/airgap\nsrc.invalid::{h}/quay\n");
    let rules = compile(&rules_text);
    let started = std::time::Instant::now();
    let resolved = resolver.resolve(&rules, &["src.invalid/team/app:1"]).await;
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    let resolution = resolved.get("src.invalid/team/app:1").unwrap();
    assert_eq!(resolution.verdict, Verdict::Take(1), "{resolution:?}");
    assert_eq!(resolution.tried[0].outcome, Err(CheckError::Timeout(Duration::from_secs(1))));
    assert_eq!(resolution.tried[1].image, format!("{h}/quay/team/app:1"));
    // The healthy host answers the next request at once.
    let resolved = resolver.resolve(&rules, &["src.invalid/other:1"]).await;
    assert_eq!(resolved.get("src.invalid/other:1").unwrap().verdict, Verdict::Take(0));

    // Six candidates, five stalled: a quarter of the deadline each, the last two never asked.
    let deep = compile(&format!(
        "src.invalid/a/b/c/d::{s}/1\nsrc.invalid/a/b/c::{s}/2\nsrc.invalid/a/b::{s}/3\nsrc.invalid/a::{s}/4\n\
         src.invalid::{s}/5\ndefault::{h}/6\n"
    ));
    let fresh = Resolver::new(&args(&[&s, &h]), OnCheckError::Keep, 32, None).unwrap();
    let resolved = fresh.resolve(&deep, &["src.invalid/a/b/c/d/e:1"]).await;
    let why = kept_because(resolved.get("src.invalid/a/b/c/d/e:1"));
    assert!(why.ends_with(&format!("mirror {h}/6: not asked: deadline")), "{why}");
    assert_eq!(healthy.seen().iter().filter(|seen| seen.path.contains("/6/")).count(), 0);
    // Not asked, it fed nothing into the healthy host's backoff: its next image is asked at once.
    let direct = compile(&format!("src.invalid::{h}/6\n"));
    let resolved = fresh.resolve(&direct, &["src.invalid/z:1"]).await;
    assert_eq!(resolved.get("src.invalid/z:1").unwrap().verdict, Verdict::Take(0));
}

/// `--check-host-concurrency` holds across requests: a stalled host never holds more lookups
/// than it allows, and a lookup that found no slot within its deadline says so.
#[tokio::test]
async fn lookups_in_flight_per_host_are_capped_across_requests() {
    let stalled = Hostile::start(None, |_| Reply::stall()).await;
    let host = stalled.host();
    let mut args = args(&[&host]);
    args.check_host_concurrency = 4;
    let resolver = Arc::new(Resolver::new(&args, OnCheckError::Keep, 32, None).unwrap());
    let rules = Arc::new(compile(&format!("src.invalid::{host}/m\n")));
    let requests: Vec<_> = (0..3)
        .map(|request| {
            let (resolver, rules) = (Arc::clone(&resolver), Arc::clone(&rules));
            tokio::spawn(async move {
                let images: Vec<String> = (0..4).map(|image| format!("src.invalid/r{request}/app:{image}")).collect();
                let images: Vec<&str> = images.iter().map(String::as_str).collect();
                let resolved = resolver.resolve(&rules, &images).await;
                images.iter().map(|image| kept_because(resolved.get(image))).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut reasons = Vec::new();
    for request in requests {
        reasons.extend(request.await.unwrap());
    }
    assert!(stalled.max_in_flight() <= 4, "{} in flight", stalled.max_in_flight());
    let queued = reasons.iter().filter(|why| why.contains("not asked: deadline (all 4 lookups to")).count();
    assert_eq!(queued, 8, "{reasons:#?}");
}

/// One request starts at most `--check-max-lookups` lookups; its other images are kept
/// unasked, with one warning for all of them, and never put the host into backoff: the
/// next request's image is asked and taken.
#[tokio::test]
async fn one_request_starts_at_most_its_lookup_limit() {
    let hostile =
        Hostile::start(None, |seen| Reply::status(if seen.path.contains("/known/") { 200 } else { 404 })).await;
    let host = hostile.host();
    let resolver = Resolver::new(&args(&[&host]), OnCheckError::Keep, 32, None).unwrap();
    let rules = compile(&format!("src.invalid::{host}/m\n"));
    let images: Vec<String> = (0..100).map(|n| format!("src.invalid/app:{n}")).collect();
    let images: Vec<&str> = images.iter().map(String::as_str).collect();
    let resolved = resolver.resolve(&rules, &images).await;
    assert_eq!(manifest_requests(&hostile.seen(), "HEAD"), 32);
    let unasked = images.iter().filter(|image| resolved.get(image).unwrap().verdict == Verdict::Unasked).count();
    assert_eq!(unasked, 68);
    let warning = resolved.limit_warning().unwrap();
    assert!(warning.starts_with("mirrorswap kept 68 image(s)") && warning.contains("--check-max-lookups (32)"));
    let resolved = resolver.resolve(&rules, &["src.invalid/known:1"]).await;
    assert_eq!(resolved.get("src.invalid/known:1").unwrap().verdict, Verdict::Take(0));
}

/// The bare-host rule `src.invalid::127.0.0.1` makes `src.invalid:PORT/x:1` into
/// `127.0.0.1:PORT/x:1`, a port the Pod chose. With credentials for `127.0.0.1` and the
/// host listed insecure, nothing reaches that port, and the warning tells nothing about it
/// (no "connection refused" for a closed port): the server over HTTPS.
#[tokio::test]
async fn no_lookup_and_no_credentials_reach_a_port_the_pod_chose() {
    let recorder = Hostile::start(None, |_| Reply::status(200)).await;
    let port = recorder.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.json");
    std::fs::write(&auth, json!({"auths": {"127.0.0.1": {"auth": "bWlycm9yOnMzY3JldC1wYXNz"}}}).to_string()).unwrap();
    let auth = auth.display().to_string();
    let flags = ["--swap-policy", "exists", "--registry-auth", &auth, "--insecure-registry", "127.0.0.1"];
    let server = TestServer::start_with_rules("src.invalid::127.0.0.1\n", "rules.conf", &flags).await;
    let mut review = sample("pod.json");
    review["request"]["object"]["spec"] = json!({"containers": [
        {"name": "open", "image": format!("src.invalid:{port}/x:1")},
        {"name": "closed", "image": "src.invalid:22/x:1"},
    ]});
    let response = server.connect(Protocol::Http1).await.review(&review).await;
    assert!(response["response"]["patch"].is_null(), "{response}");
    let warnings: Vec<&str> =
        response["response"]["warnings"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].ends_with(&format!(
        "mirror 127.0.0.1: not asked: the image names registry 127.0.0.1:{port}, not its rule's target 127.0.0.1"
    )));
    assert!(warnings.iter().all(|warning| !warning.to_lowercase().contains("refused")), "{warnings:?}");
    assert_eq!(recorder.connections(), 0, "the Pod-chosen port was contacted: {:?}", recorder.seen());
    server.stop().await;
}

/// A cached token the registry refuses (revoked, expired early) is not sent again: the next
/// check fetches a new one.
#[tokio::test]
async fn a_refused_cached_token_is_fetched_anew() {
    let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&issued);
    let hostile = Arc::new(tokio::sync::OnceCell::new());
    let realm = Arc::clone(&hostile);
    let server = Hostile::start(None, move |seen| {
        if seen.path.starts_with("/token") {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            return Reply::status(200).body(format!(r#"{{"token":"t{n}","expires_in":300}}"#));
        }
        if seen.authorization.as_deref() == Some("Bearer t2") {
            return Reply::status(200);
        }
        let realm = realm.get().map(|host: &String| format!("http://{host}/token")).unwrap_or_default();
        Reply::status(401).header("www-authenticate", &format!("Bearer realm=\"{realm}\""))
    })
    .await;
    hostile.set(server.host()).unwrap();
    let checker = checker(&[&server.host()], None, AuthFile::default());
    let image = format!("{}/team/app:1", server.host());
    assert_eq!(checker.check(&image).await, Err(CheckError::NoCredentials { registry: server.host() }));
    assert_eq!(checker.check(&image).await, Ok(present()));
    assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// Redirects: the `Authorization` header never follows one to another host, an https
/// registry cannot send the check to plain http, and a loop ends.
#[tokio::test]
async fn redirects_keep_credentials_home() {
    let elsewhere = Hostile::start(None, |_| Reply::status(200)).await;
    let target = format!("http://{}/v2/team/app/manifests/1", elsewhere.host());
    let registry = Hostile::start(None, move |seen| match seen.authorization {
        Some(_) => Reply::status(307).header("location", &target),
        None => Reply::status(401).header("www-authenticate", "Basic realm=\"r\""),
    })
    .await;
    let mut auth = AuthFile::default();
    auth.insert(&registry.host(), "mirror".into(), "s3cret-pass".into());
    let image = format!("{}/team/app:1", registry.host());
    assert_eq!(checker(&[&registry.host()], None, auth).check(&image).await, Ok(present()));
    let followed = elsewhere.seen();
    assert_eq!(followed.len(), 1);
    assert_eq!(followed[0].authorization, None, "the credentials followed the redirect");

    let ca = mirrorswap::certs::issue("hostile test CA", &["127.0.0.1".into()], 1).unwrap();
    let downgrade = format!("http://{}/v2/team/app/manifests/1", elsewhere.host());
    let https = Hostile::start(Some(&ca), move |_| Reply::status(307).header("location", &downgrade)).await;
    let answer =
        checker(&[], Some(&ca.ca_pem), AuthFile::default()).check(&format!("{}/team/app:1", https.host())).await;
    assert!(matches!(&answer, Err(CheckError::Transport(why)) if why.contains("https to plain http")), "{answer:?}");
    assert_eq!(elsewhere.seen().len(), 1, "the downgrade was followed");

    let looping = Hostile::start(None, |seen| Reply::status(307).header("location", &seen.path)).await;
    let answer =
        checker(&[&looping.host()], None, AuthFile::default()).check(&format!("{}/team/app:1", looping.host())).await;
    assert!(matches!(&answer, Err(CheckError::Transport(why)) if why.contains("too many redirects")), "{answer:?}");
    assert!(looping.seen().len() <= 6, "{} requests", looping.seen().len());
}

/// A body trickled slower than the deadline ends the check at its timeout.
#[tokio::test]
async fn a_trickled_body_ends_at_the_timeout() {
    let hostile = Hostile::start(None, |seen| match seen.method.as_str() {
        "HEAD" => Reply::status(405),
        _ => Reply::status(200).trickled(MIB, Duration::from_millis(200)),
    })
    .await;
    let checker = checker_with_timeout(&[&hostile.host()], None, AuthFile::default(), Duration::from_secs(1));
    let answer = checker.check(&format!("{}/team/app:1", hostile.host())).await;
    assert!(matches!(answer, Err(CheckError::Timeout(_))), "{answer:?}");
}

/// A Pod with 50,000 tags: the lookup limit's worth of lookups, every other image kept
/// unasked in one pass (no lookup, no per-image work beyond its candidates).
#[tokio::test]
async fn fifty_thousand_images_cost_the_limit_and_one_pass() {
    let hostile = Hostile::start(None, |_| Reply::status(404)).await;
    let host = hostile.host();
    let resolver = Resolver::new(&args(&[&host]), OnCheckError::Keep, 32, None).unwrap();
    let rules = compile(&format!("src.invalid::{host}/m\n"));
    let images: Vec<String> = (0..50_000).map(|n| format!("src.invalid/app:{n}")).collect();
    let images: Vec<&str> = images.iter().map(String::as_str).collect();
    let resolved = resolver.resolve(&rules, &images).await;
    assert_eq!(manifest_requests(&hostile.seen(), "HEAD"), 32);
    let unasked = images.iter().filter(|image| resolved.get(image).unwrap().verdict == Verdict::Unasked).count();
    assert_eq!(unasked, 50_000 - 32);
    assert!(resolved.limit_warning().unwrap().starts_with("mirrorswap kept 49968 image(s)"));
}

/// A manifest read whole: its bytes and digest, checked against the digest it was asked by
/// and the one the registry serves with it, and cut at 4 MiB.
#[tokio::test]
async fn a_manifest_is_read_whole_with_its_digest_checked() {
    use mirrorswap::registry::client::sha256;
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let digest = sha256(body);
    let served = digest.clone();
    let hostile = Hostile::start(None, move |seen| match seen.path.as_str() {
        path if path.ends_with("/good") => Reply::status(200)
            .header("content-type", "application/vnd.oci.image.index.v1+json")
            .header("docker-content-digest", &served)
            .body(body.to_vec()),
        path if path.ends_with("/lying") => Reply::status(200)
            .header("docker-content-digest", "sha256:0000000000000000000000000000000000000000000000000000000000000000")
            .body(body.to_vec()),
        path if path.ends_with("/huge") => Reply::status(200).streamed(200 * MIB),
        path if path.contains("/manifests/sha256:") => Reply::status(200).body(b"{}".to_vec()),
        _ => Reply::status(404),
    })
    .await;
    let host = hostile.host();
    let checker = checker(&[&host], None, AuthFile::default());
    let manifest = checker.manifest(&format!("{host}/team/app:good")).await.unwrap().unwrap();
    assert_eq!((manifest.bytes.as_slice(), manifest.digest.as_str()), (&body[..], digest.as_str()));
    assert_eq!(manifest.media_type, "application/vnd.oci.image.index.v1+json");
    let lying = checker.manifest(&format!("{host}/team/app:lying")).await;
    assert!(matches!(lying, Err(CheckError::DigestMismatch { .. })), "{lying:?}");
    let by_digest = checker.manifest(&format!("{host}/team/app@{digest}")).await;
    assert!(matches!(by_digest, Err(CheckError::DigestMismatch { .. })), "{by_digest:?}");
    let huge = checker.manifest(&format!("{host}/team/app:huge")).await;
    assert_eq!(huge, Err(CheckError::TooLarge { what: "manifest", limit: MAX_MANIFEST_BYTES }));
    assert_eq!(checker.manifest(&format!("{host}/team/app:absent")).await, Ok(None));
}

/// What pinning and `--require-platforms` read is bounded and checked like everything else: a
/// digest header that is not a well-formed `sha256:` is not kept (pinning then hashes a `GET`
/// as it streams, cut at 4 MiB, nothing held), a served digest the bytes do not have is an
/// error, and a config blob is read only up to 1 MiB and only when its bytes are its digest.
#[tokio::test]
async fn digests_and_platforms_are_read_bounded_and_checked() {
    use mirrorswap::registry::Depth;
    use mirrorswap::registry::client::MAX_CONFIG_BYTES;
    let manifest = br#"{"schemaVersion":2}"#;
    let good = Digest::of(manifest).to_string();
    let lying = Digest::of(b"something else").to_string();
    let upper = good.to_uppercase().replace("SHA256:", "sha256:");
    let config = br#"{"os":"linux","architecture":"arm64"}"#;
    let config_digest = Digest::of(config).to_string();
    let image = |config_digest: &str, size: usize| {
        json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": size},
            "layers": [],
        })
        .to_string()
    };
    let present = |digest: &str| Ok(Answer::Present(Found { digest: Digest::parse(digest), platforms: None }));
    let too_large = |what| Err(CheckError::TooLarge { what, limit: MAX_MANIFEST_BYTES });
    // (case, HEAD digest header, GET reply, depth, outcome, manifest GETs made)
    type Case = (&'static str, Option<String>, Reply, Depth, Result<Answer, CheckError>, usize);
    let table: Vec<Case> = vec![
        (
            "a well-formed header is the digest",
            Some(good.clone()),
            Reply::status(500),
            Depth::Digest,
            present(&good),
            0,
        ),
        ("an upper-case header is not kept", Some(upper.clone()), Reply::status(500), Depth::Presence, present(""), 0),
        (
            "without a header pinning hashes the GET",
            None,
            Reply::status(200).body(&manifest[..]),
            Depth::Digest,
            present(&good),
            1,
        ),
        (
            "a GET serving other bytes than its header says",
            None,
            Reply::status(200).header("docker-content-digest", &lying).body(&manifest[..]),
            Depth::Digest,
            Err(CheckError::DigestMismatch { expected: lying.clone(), got: good.clone() }),
            1,
        ),
        (
            "200 MiB is cut at 4 MiB",
            None,
            Reply::status(200).streamed(200 * MIB),
            Depth::Digest,
            too_large("manifest"),
            1,
        ),
        (
            "a config over 1 MiB is never asked for",
            None,
            Reply::status(200).body(image(&config_digest, MAX_CONFIG_BYTES + 1)),
            Depth::Platforms,
            Err(CheckError::TooLarge { what: "image config", limit: MAX_CONFIG_BYTES }),
            1,
        ),
        (
            "a config named by no sha256 digest",
            None,
            Reply::status(200).body(image("md5:abc", 10)),
            Depth::Platforms,
            Err(CheckError::Unreadable("its config is not named by a sha256 digest".into())),
            1,
        ),
        (
            "a manifest that is not JSON",
            None,
            Reply::status(200).body("<html>"),
            Depth::Platforms,
            Err(CheckError::Unreadable("the manifest is not the JSON it should be (line 1, column 1)".into())),
            1,
        ),
    ];
    for (case, header, get, depth, expected, gets) in table {
        let header = header.clone();
        let hostile = Hostile::start(None, move |seen| match (seen.method.as_str(), seen.path.contains("/blobs/")) {
            ("HEAD", _) => {
                header.iter().fold(Reply::status(200), |reply, value| reply.header("docker-content-digest", value))
            }
            (_, false) => get.clone(),
            (_, true) => Reply::status(200).streamed(200 * MIB),
        })
        .await;
        let checker = checker(&[&hostile.host()], None, AuthFile::default());
        let answer = checker.look(&format!("{}/team/app:1", hostile.host()), depth).await;
        assert_eq!(answer, expected, "{case}");
        assert_eq!(manifest_requests(&hostile.seen(), "GET"), gets, "{case}: {:?}", hostile.seen());
    }
    // The config blob: read up to 1 MiB, its digest checked, then its platform.
    for (blob, expected) in [
        (Reply::status(200).body(&config[..]), Ok(vec!["linux/arm64".to_owned()])),
        (
            Reply::status(200).body(&b"{}"[..]),
            Err(format!("digest {} of the bytes served is not the expected {config_digest}", Digest::of(b"{}"))),
        ),
        (
            Reply::status(200).streamed(200 * MIB),
            Err(format!("image config over {MAX_CONFIG_BYTES} bytes: cut at the limit")),
        ),
        (
            Reply::status(404),
            Err(format!("unreadable manifest: its config blob {config_digest} is not in the registry (404)")),
        ),
    ] {
        let manifest = image(&config_digest, config.len());
        let hostile = Hostile::start(None, move |seen| match seen.path.contains("/blobs/") {
            true => blob.clone(),
            false => Reply::status(200).body(manifest.clone()),
        })
        .await;
        let checker = checker(&[&hostile.host()], None, AuthFile::default());
        let answer = checker.look(&format!("{}/team/app:1", hostile.host()), Depth::Platforms).await;
        let got = answer
            .map(|answer| answer.found().and_then(|found| found.platforms.clone()).unwrap_or_default().names())
            .map_err(|error| error.to_string());
        assert_eq!(got, expected);
    }
}
