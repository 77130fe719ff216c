//! `--swap-policy exists` end to end: a real `mirrorswap serve` over HTTPS in front of a real
//! registry (Debian's docker-registry with a test CA and htpasswd or token auth, images pushed
//! with skopeo), every case through `/mutate` with the patch applied.

mod common;

use std::time::{Duration, Instant};

use common::registry::{Auth, Blackhole, Registry, docker_config};
use common::{Protocol, TestServer, images_of, patched_object, pod, warnings_of};
use serde_json::Value;

/// Cases not about the deadline give the first lookup (TLS, auth, HEAD) room on a busy machine.
const TIMEOUT_FLAG: &str = "--check-timeout";
const GENEROUS: &str = "5s";
/// The request's own deadline, which must outlast the lookups' (serve refuses otherwise).
const REQUEST_TIMEOUT: [&str; 2] = ["--request-timeout", "10s"];

/// Rules sending `src.invalid/team/...` first to `MIRROR/specific`, then to `MIRROR/general/team`.
fn rules(mirror: &str) -> String {
    format!("src.invalid/team::{mirror}/specific\nsrc.invalid::{mirror}/general\n")
}

/// Starts the webhook with the `exists` policy against `registry`, plus `extra` flags.
async fn server(registry: &Registry, rules_text: &str, extra: &[&str]) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.json");
    std::fs::write(&auth, registry.docker_config()).unwrap();
    let auth = auth.display().to_string();
    let ca = registry.ca_path().display().to_string();
    let mut flags = vec!["--swap-policy", "exists", "--registry-ca", &ca, "--registry-auth", &auth];
    if !extra.contains(&"--check-timeout") {
        flags.extend([TIMEOUT_FLAG, GENEROUS]);
    }
    if !extra.contains(&REQUEST_TIMEOUT[0]) {
        flags.extend(REQUEST_TIMEOUT);
    }
    flags.extend_from_slice(extra);
    let server = TestServer::start_in(tempfile::tempdir().unwrap(), Some((rules_text, "rules.conf")), &flags).await;
    std::mem::forget(dir); // the auth file must outlive the server (it is watched)
    server
}

/// A basic-auth registry holding `general/app:1`, an auth file with `password` for it, and the
/// rules `src.invalid::MIRROR/general`.
struct Fixture {
    registry: Registry,
    mirror: String,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(password: &str) -> Option<Self> {
        let registry = Registry::start(Auth::Basic).await?;
        let mirror = registry.host();
        registry.push("general/app", "1").await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("auth.json"), docker_config(&mirror, common::registry::USER, password)).unwrap();
        Some(Self { registry, mirror, dir })
    }

    fn auth_path(&self) -> std::path::PathBuf {
        self.dir.path().join("auth.json")
    }

    fn ca(&self) -> String {
        self.registry.ca_path().display().to_string()
    }

    /// The webhook with `exists`, the auth file, a generous deadline, and `extra` flags.
    async fn serve(&self, extra: &[&str]) -> TestServer {
        let auth = self.auth_path().display().to_string();
        let mut flags = vec!["--swap-policy", "exists", "--registry-auth", &auth, TIMEOUT_FLAG, GENEROUS];
        flags.extend(REQUEST_TIMEOUT);
        flags.extend_from_slice(extra);
        let rules_text = format!("src.invalid::{}/general\n", self.mirror);
        TestServer::start_in(tempfile::tempdir().unwrap(), Some((rules_text.as_str(), "rules.conf")), &flags).await
    }
}

async fn admit(server: &TestServer, review: &Value) -> (Value, Value, Duration) {
    let mut client = server.connect(Protocol::Http1).await;
    let started = Instant::now();
    let response = client.review(review).await;
    let took = started.elapsed();
    (patched_object(review, &response), response, took)
}

async fn present_absent_and_fallback(auth: Auth) {
    let Some(registry) = Registry::start(auth).await else { return };
    let mirror = registry.host();
    let digest = registry.push("specific/app", "1").await;
    registry.push("general/team/only-general", "2").await;
    let server = server(&registry, &rules(&mirror), &[]).await;
    let review = pod(&[
        "src.invalid/team/app:1",
        &format!("src.invalid/team/app@{digest}"),
        "src.invalid/team/missing:3",
        "src.invalid/team/only-general:2",
        // The same image in a second container: asked once, both fields take the fallback.
        "src.invalid/team/only-general:2",
    ]);
    let (object, response, _) = admit(&server, &review).await;
    assert_eq!(
        images_of(&object),
        [
            format!("{mirror}/specific/app:1"),
            format!("{mirror}/specific/app@{digest}"),
            "src.invalid/team/missing:3".to_owned(),
            format!("{mirror}/general/team/only-general:2"),
            format!("{mirror}/general/team/only-general:2"),
        ],
        "present by tag and by digest, absent kept, fallback to the less specific rule"
    );
    let warnings = warnings_of(&response);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let expected = format!(
        "mirrorswap kept image src.invalid/team/missing:3 of container c2: not in {mirror}/specific (404); not in {mirror}/general (404)"
    );
    assert_eq!(warnings[0], expected);
    let present = format!("mirrorswap_registry_checks_total{{registry=\"{mirror}/specific\",result=\"present\"}}");
    assert_eq!(server.metric(&present).await, 2.0);
    let absent = format!("mirrorswap_registry_checks_total{{registry=\"{mirror}/general\",result=\"absent\"}}");
    assert_eq!(server.metric(&absent).await, 1.0);

    // Again: every answer comes from the cache, the registry sees no new manifest request.
    let before = registry.manifest_requests();
    let (again, _, _) = admit(&server, &review).await;
    assert_eq!(images_of(&again), images_of(&object));
    assert_eq!(registry.manifest_requests(), before);
    assert!(server.metric("mirrorswap_registry_check_cache_total{result=\"hit\"}").await >= 5.0);
    server.stop().await;
}

#[tokio::test]
async fn basic_auth_present_by_tag_and_digest_absent_with_warning_and_fallback() {
    present_absent_and_fallback(Auth::Basic).await;
}

#[tokio::test]
async fn token_auth_present_by_tag_and_digest_absent_with_warning_and_fallback() {
    present_absent_and_fallback(Auth::Token).await;
}

#[tokio::test]
async fn an_image_pushed_after_its_negative_ttl_is_used() {
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    let server = server(&registry, &format!("src.invalid::{mirror}/late\n"), &["--check-negative-ttl", "3s"]).await;
    let review = pod(&["src.invalid/app:1"]);
    let (object, _, _) = admit(&server, &review).await;
    let cached_at = Instant::now();
    assert_eq!(images_of(&object), ["src.invalid/app:1"]);
    registry.push("late/app", "1").await;
    let (object, _, _) = admit(&server, &review).await;
    // A push can take seconds on a busy machine: only assert the cached "absent" while it must hold.
    if cached_at.elapsed() < Duration::from_millis(2500) {
        assert_eq!(images_of(&object), ["src.invalid/app:1"], "absent is still cached");
    }
    tokio::time::sleep((cached_at + Duration::from_millis(3200)).saturating_duration_since(Instant::now())).await;
    let (object, _, _) = admit(&server, &review).await;
    assert_eq!(images_of(&object), [format!("{mirror}/late/app:1")]);
    server.stop().await;
}

#[tokio::test]
async fn a_stopped_registry_answers_within_the_deadline_and_keeps_the_original() {
    let Some(mut registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    registry.push("general/app", "1").await;
    registry.push("general/known", "1").await;
    let server = server(&registry, &format!("src.invalid::{mirror}/general\n"), &["--check-timeout", "1s"]).await;
    // Asked while the registry is up: cached as present.
    let (object, _, _) = admit(&server, &pod(&["src.invalid/known:1"])).await;
    assert_eq!(images_of(&object), [format!("{mirror}/general/known:1")]);
    registry.stop();
    let (object, response, took) = admit(&server, &pod(&["src.invalid/app:1"])).await;
    assert_eq!(images_of(&object), ["src.invalid/app:1"]);
    assert!(took < Duration::from_millis(1200), "took {took:?}");
    let warnings = warnings_of(&response);
    let refused = format!("mirror {mirror}/general: connection failed: Connection refused");
    assert!(warnings[0].contains(&refused), "{warnings:?}");
    let errors = format!("mirrorswap_registry_checks_total{{registry=\"{mirror}/general\",result=\"error\"}}");
    assert!(server.metric(&errors).await >= 1.0);
    // During the backoff, the next request does not even try.
    let (_, response, _) = admit(&server, &pod(&["src.invalid/other:1"])).await;
    assert!(warnings_of(&response)[0].contains("not asked again"), "{:?}", warnings_of(&response));
    // An image known present stays rewritten through the outage and its backoff.
    let (object, response, _) = admit(&server, &pod(&["src.invalid/known:1"])).await;
    assert_eq!(images_of(&object), [format!("{mirror}/general/known:1")], "{response}");
    server.stop().await;
}

#[tokio::test]
async fn a_registry_that_never_answers_is_bounded_by_the_deadline() {
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let hole = Blackhole::start().await;
    let mirror = hole.addr.to_string();
    let server = server(&registry, &format!("src.invalid::{mirror}/general\n"), &["--check-timeout", "1s"]).await;
    let (object, response, took) = admit(&server, &pod(&["src.invalid/app:1", "src.invalid/app:2"])).await;
    assert_eq!(images_of(&object), ["src.invalid/app:1", "src.invalid/app:2"]);
    assert!(took < Duration::from_millis(1200), "took {took:?}");
    let warnings = warnings_of(&response);
    assert_eq!(warnings.len(), 2);
    assert!(warnings[0].ends_with(&format!("mirror {mirror}/general: timeout after 1s")), "{warnings:?}");
    let timeouts = format!("mirrorswap_registry_checks_total{{registry=\"{mirror}/general\",result=\"timeout\"}}");
    assert!(server.metric(&timeouts).await >= 1.0);
    server.stop().await;
}

#[tokio::test]
async fn wrong_credentials_keep_the_original_or_swap_as_configured() {
    let Some(fixture) = Fixture::start("wrong").await else { return };
    let mirror = &fixture.mirror;
    for (on_error, expected) in [("keep", "src.invalid/app:1".to_owned()), ("swap", format!("{mirror}/general/app:1"))]
    {
        let server = fixture.serve(&["--registry-ca", &fixture.ca(), "--on-check-error", on_error]).await;
        let (object, response, _) = admit(&server, &pod(&["src.invalid/app:1"])).await;
        assert_eq!(images_of(&object), [expected], "--on-check-error {on_error}");
        if on_error == "keep" {
            let warnings = warnings_of(&response);
            let rejected = format!("mirror {mirror}/general: unauthorized (401): credentials for {mirror} rejected");
            assert!(warnings[0].ends_with(&rejected), "{warnings:?}");
            assert!(!warnings[0].contains("wrong"), "no credentials in warnings");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn an_untrusted_ca_is_an_error_not_a_hang() {
    let Some(fixture) = Fixture::start(common::registry::PASSWORD).await else { return };
    let server = fixture.serve(&[]).await; // no --registry-ca
    let (object, response, took) = admit(&server, &pod(&["src.invalid/app:1"])).await;
    assert_eq!(images_of(&object), ["src.invalid/app:1"]);
    assert!(took < Duration::from_secs(4), "an error, not the 5 s deadline: {took:?}");
    let warnings = warnings_of(&response);
    assert!(
        warnings[0].ends_with(
            "untrusted certificate: add its CA with --registry-ca (or list the registry in --insecure-registry)"
        ),
        "{warnings:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn one_hundred_concurrent_requests_make_one_lookup() {
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    registry.push("general/busy", "1").await;
    let server = server(&registry, &format!("src.invalid::{mirror}/general\n"), &["--check-timeout", "5s"]).await;
    let before = registry.manifest_requests_matching("/v2/general/busy/manifests/");
    let review = pod(&["src.invalid/busy:1"]);
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(server.connect(Protocol::Http1).await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let review = review.clone();
            tokio::spawn(async move { client.review(&review).await })
        })
        .collect();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(images_of(&patched_object(&review, &response)), [format!("{mirror}/general/busy:1")]);
    }
    assert_eq!(registry.manifest_requests_matching("/v2/general/busy/manifests/") - before, 1);
    server.stop().await;
}

#[tokio::test]
async fn the_cache_bound_holds() {
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    let server = server(&registry, &format!("src.invalid::{mirror}/bound\n"), &["--check-cache-entries", "4"]).await;
    let images: Vec<String> = (0..16).map(|n| format!("src.invalid/absent-{n}:1")).collect();
    for image in &images {
        admit(&server, &pod(&[image])).await;
    }
    let first_round = registry.manifest_requests_matching("/v2/bound/");
    for image in &images {
        admit(&server, &pod(&[image])).await;
    }
    // With 4 entries at most, most of the 16 answers were evicted and are asked again.
    let asked_again = registry.manifest_requests_matching("/v2/bound/") - first_round;
    assert!(asked_again >= first_round / 2, "first round {first_round}, asked again {asked_again}");
    server.stop().await;
}

#[tokio::test]
async fn rewrite_cli_decides_as_the_server_and_explains_each_candidate() {
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    registry.push("specific/app", "1").await;
    registry.push("general/team/only-general", "2").await;
    let rules_text = rules(&mirror);
    let images = ["src.invalid/team/app:1", "src.invalid/team/missing:3", "src.invalid/team/only-general:2", "nginx:1"];
    let server = server(&registry, &rules_text, &[]).await;
    let (object, _, _) = admit(&server, &pod(&images)).await;
    let from_server = images_of(&object);
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.conf"), &rules_text).unwrap();
    std::fs::write(dir.path().join("auth.json"), registry.docker_config()).unwrap();
    let run = |explain: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mirrorswap"));
        command.arg("rewrite").arg("--rules").arg(dir.path().join("rules.conf"));
        command.arg("--registry-auth").arg(dir.path().join("auth.json"));
        command.env("MIRRORSWAP_SWAP_POLICY", "exists").env("MIRRORSWAP_REGISTRY_CA", registry.ca_path());
        command.env("MIRRORSWAP_CHECK_TIMEOUT", GENEROUS);
        if explain {
            command.arg("--explain");
        }
        command.args(images);
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        (String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
    };
    // Blocking is fine here: the registry is another process, nothing on this runtime must run.
    let ((stdout, stderr), (explained, _)) = (run(false), run(true));
    let from_cli: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert_eq!(from_cli, from_server);
    assert!(stderr.contains("`src.invalid/team/missing:3` kept: not in"), "{stderr}");
    let expected = [
        format!(
            "src.invalid/team/missing:3: candidate {mirror}/specific/missing:3 from prefix rule `src.invalid/team::{mirror}/specific` ("
        ),
        format!(
            "src.invalid/team/missing:3: candidate {mirror}/general/team/missing:3 from prefix rule `src.invalid::{mirror}/general` ("
        ),
        format!("src.invalid/team/missing:3 kept: not in {mirror}/specific (404); not in {mirror}/general (404)"),
        format!("src.invalid/team/only-general:2 -> {mirror}/general/team/only-general:2"),
        "nginx:1 unchanged: no rule matches and there is no default".to_owned(),
    ];
    for line in expected {
        assert!(explained.contains(&line), "missing `{line}` in:\n{explained}");
    }
    assert!(explained.contains(":2): absent (404)"), "{explained}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palettes_registry_info_secret_gives_the_mirror_credentials_and_ca() {
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    registry.push("general/app", "1").await;
    let Some(plane) = common::control_plane::shared() else { return };
    let client = plane.client().await;
    common::kube_objects::create_namespace(&client, "jet-system", serde_json::json!({})).await;
    let rules_text = format!("src.invalid::{mirror}/general");
    let user = common::registry::USER;
    let password = common::registry::PASSWORD;
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "registry-info", "namespace": "jet-system"},
        "stringData": {"DOMAIN": mirror, "USERNAME": user, "PASSWORD": password,
                       "CA_CERT": registry.ca.ca_pem, "MIRROR_REGISTRIES": rules_text}});
    let path = "/api/v1/namespaces/jet-system/secrets";
    common::kube_objects::send(&client, "POST", path, "application/json", Some(&secret)).await.ok();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = plane.kubeconfig.display().to_string();
    let flags = [
        "--rules-secret",
        "jet-system/registry-info",
        "--kubeconfig",
        &kubeconfig,
        "--swap-policy",
        "exists",
        TIMEOUT_FLAG,
        GENEROUS,
        REQUEST_TIMEOUT[0],
        REQUEST_TIMEOUT[1],
    ];
    let server = TestServer::start_in(dir, None, &flags).await;
    let review = pod(&["src.invalid/app:1", "src.invalid/absent:1"]);
    let mut seen = Vec::new();
    let expected = [format!("{mirror}/general/app:1"), "src.invalid/absent:1".to_owned()];
    let arrived = common::eventually(Duration::from_secs(5), async || {
        seen = images_of(&admit(&server, &review).await.0);
        seen == expected
    })
    .await;
    assert!(arrived, "no --registry-auth, no --registry-ca: the Secret's keys must serve; got {seen:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_insecure_registry_is_asked_without_certificate_checks() {
    let Some(fixture) = Fixture::start(common::registry::PASSWORD).await else { return };
    // No --registry-ca: only --insecure-registry lets the lookup through.
    let server = fixture.serve(&["--insecure-registry", &fixture.mirror]).await;
    let (object, response, _) = admit(&server, &pod(&["src.invalid/app:1"])).await;
    let expected = [format!("{}/general/app:1", fixture.mirror)];
    assert_eq!(images_of(&object), expected, "{:?}", warnings_of(&response));
    server.stop().await;
}

#[tokio::test]
async fn a_corrected_auth_file_is_reloaded() {
    let Some(fixture) = Fixture::start("wrong").await else { return };
    let server = fixture.serve(&["--registry-ca", &fixture.ca()]).await;
    let review = pod(&["src.invalid/app:1"]);
    assert_eq!(images_of(&admit(&server, &review).await.0), ["src.invalid/app:1"]);
    std::fs::write(fixture.auth_path(), fixture.registry.docker_config()).unwrap();
    let expected = [format!("{}/general/app:1", fixture.mirror)];
    let reloaded =
        common::eventually(Duration::from_secs(3), async || images_of(&admit(&server, &review).await.0) == expected)
            .await;
    assert!(reloaded, "the corrected credentials were not picked up");
    server.stop().await;
}

#[tokio::test]
async fn a_registry_secret_manifest_as_the_rules_file_gives_the_mirror_credentials_and_ca() {
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    registry.push("general/app", "1").await;
    let ca: String = registry.ca.ca_pem.lines().map(|line| format!("    {line}\n")).collect();
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: registry-info\n  namespace: jet-system\nstringData:\n  \
         DOMAIN: {mirror}\n  USERNAME: {}\n  PASSWORD: {}\n  CA_CERT: |\n{ca}  MIRROR_REGISTRIES: src.invalid::{mirror}/general\n",
        common::registry::USER,
        common::registry::PASSWORD
    );
    let flags = ["--swap-policy", "exists", TIMEOUT_FLAG, GENEROUS, REQUEST_TIMEOUT[0], REQUEST_TIMEOUT[1]];
    let server = TestServer::start_with_rules(&manifest, "registry-secret.yaml", &flags).await;
    let (object, response, _) = admit(&server, &pod(&["src.invalid/app:1"])).await;
    let expected = [format!("{mirror}/general/app:1")];
    assert_eq!(images_of(&object), expected, "{:?}", warnings_of(&response));
    server.stop().await;
}

/// One Pod with 1,000 distinct uncached images (a 46 KB review; `kubectl create
/// --dry-run=server` is enough to send it) starts at most `--check-max-lookups` lookups,
/// counted at the registry, gets one warning for the images it did not ask about, and leaves
/// the mirror usable: the next Pod's mirrored image is rewritten.
#[tokio::test]
async fn one_pod_with_a_thousand_images_cannot_lock_the_mirror_out() {
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    registry.push("general/app", "1").await;
    let server = server(&registry, &format!("src.invalid::{mirror}/general\n"), &[]).await;
    let images: Vec<String> = (0..1000).map(|n| format!("src.invalid/flood/app:{n}")).collect();
    let images: Vec<&str> = images.iter().map(String::as_str).collect();
    let (object, response, _) = admit(&server, &pod(&images)).await;
    assert_eq!(images_of(&object), images, "nothing rewritten: nothing is in the mirror");
    let asked: std::collections::BTreeSet<usize> =
        (0..1000).filter(|n| registry.manifest_requests_matching(&format!("/flood/app/manifests/{n} ")) > 0).collect();
    assert!(asked.len() <= 32, "{} images asked at the registry", asked.len());
    assert!(registry.manifest_requests_matching("/flood/app/manifests/") <= 33, "{}", registry.manifest_requests());
    let warnings = warnings_of(&response);
    let limit: Vec<&String> = warnings.iter().filter(|warning| warning.contains("--check-max-lookups (32)")).collect();
    assert_eq!(limit.len(), 1, "{warnings:?}");
    assert!(limit[0].starts_with("mirrorswap kept 968 image(s) of this object without asking"), "{}", limit[0]);
    // 32 answered 404: ten say so one by one, one counts the other 22; one for the unasked.
    assert_eq!(warnings.len(), 12, "{warnings:?}");
    assert!(warnings[10].starts_with("mirrorswap kept 22 more image(s) of this object"), "{}", warnings[10]);

    let (object, response, _) = admit(&server, &pod(&["src.invalid/app:1"])).await;
    assert_eq!(images_of(&object), [format!("{mirror}/general/app:1")], "{response}");
    server.stop().await;
}

/// A registry served with one self-signed certificate made as Docker's registry guide shows
/// (it carries `CA:TRUE`), given as `--registry-ca`: trusted, as containerd, Docker and skopeo
/// trust it. Without it: an untrusted certificate, and the flag that fixes it.
#[tokio::test]
async fn a_self_signed_registry_certificate_given_as_its_ca_is_trusted() {
    let Some(registry) = Registry::start_self_signed(Auth::Basic).await else { return };
    let mirror = registry.host();
    registry.push("general/app", "1").await;
    let server = server(&registry, &format!("src.invalid::{mirror}/general\n"), &[]).await;
    let (object, response, _) = admit(&server, &pod(&["src.invalid/app:1"])).await;
    assert_eq!(images_of(&object), [format!("{mirror}/general/app:1")], "{response}");
    server.stop().await;
    let server = TestServer::start_with_rules(
        &format!("src.invalid::{mirror}/general\n"),
        "rules.conf",
        &["--swap-policy", "exists", TIMEOUT_FLAG, GENEROUS, REQUEST_TIMEOUT[0], REQUEST_TIMEOUT[1]],
    )
    .await;
    let (_, response, _) = admit(&server, &pod(&["src.invalid/app:1"])).await;
    let warnings = warnings_of(&response);
    assert!(warnings[0].contains(": untrusted certificate: add its CA with --registry-ca"), "{warnings:?}");
    server.stop().await;
}

/// 401 says whether mirrorswap had no credentials for the registry or had them refused.
#[tokio::test]
async fn missing_and_rejected_credentials_read_differently() {
    let Some(fixture) = Fixture::start("wrong").await else { return };
    let mirror = &fixture.mirror;
    let rules_text = format!("src.invalid::{mirror}/general\n");
    let ca = fixture.ca();
    let flags = [
        "--swap-policy",
        "exists",
        "--registry-ca",
        &ca,
        TIMEOUT_FLAG,
        GENEROUS,
        REQUEST_TIMEOUT[0],
        REQUEST_TIMEOUT[1],
    ];
    let server = TestServer::start_with_rules(&rules_text, "rules.conf", &flags).await;
    let (_, response, _) = admit(&server, &pod(&["src.invalid/app:1"])).await;
    let expected = format!("mirror {mirror}/general: unauthorized (401): no credentials for {mirror}");
    assert!(warnings_of(&response)[0].ends_with(&expected), "{:?}", warnings_of(&response));
    server.stop().await;
    let server = fixture.serve(&["--registry-ca", &ca]).await;
    let (_, response, _) = admit(&server, &pod(&["src.invalid/app:1"])).await;
    let expected = format!("mirror {mirror}/general: unauthorized (401): credentials for {mirror} rejected");
    assert!(warnings_of(&response)[0].ends_with(&expected), "{:?}", warnings_of(&response));
    server.stop().await;
}
