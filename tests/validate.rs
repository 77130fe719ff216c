//! The leak guard, `POST /validate`, over real HTTPS: each mode, each kind `/mutate`
//! handles, allowed registries, an opted-out object, and an image the rules would have
//! rewritten (the mutating webhook skipped), with its metric; on UPDATE, only what the request
//! changes (`kubectl debug`, `rollout restart`, a finalizer removed during deletion, a
//! subresource).

mod common;

use common::{Protocol, TestServer};
use serde_json::{Value, json};

/// A pod spec with one mirrored, one unmirrored and one should-have-been-rewritten image.
fn pod_spec() -> Value {
    json!({
        "initContainers": [{"name": "migrate", "image": "harbor.example.org/quay/shop/migrate:2"}],
        "containers": [
            {"name": "web", "image": "harbor.example.org/hub/nginx:1.27"},
            {"name": "agent", "image": "vendor.example.com/agent:1"},
            {"name": "cache", "image": "redis:7"}
        ]
    })
}

/// An object of `kind` holding [`pod_spec`] where that kind keeps its pod spec.
fn object(kind: &str, metadata: Value) -> Value {
    let template = json!({"spec": pod_spec()});
    let mut object = match kind {
        "Pod" => json!({"spec": pod_spec()}),
        "PodTemplate" => json!({"template": template}),
        "CronJob" => json!({"spec": {"jobTemplate": {"spec": {"template": template}}}}),
        _ => json!({"spec": {"template": template}}),
    };
    object["metadata"] = metadata;
    object
}

fn review(group: &str, kind: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "b1e5f0c2",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "operation": "CREATE",
            "namespace": "shop",
            "object": object
        }
    })
}

async fn validate(server: &TestServer, review: &Value) -> Value {
    let mut client = server.connect(Protocol::Http2).await;
    let (status, body) = client.post("/validate", "application/json", serde_json::to_vec(review).unwrap()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["uid"], "b1e5f0c2");
    answer["response"].clone()
}

const KINDS: [(&str, &str); 9] = [
    ("", "Pod"),
    ("", "PodTemplate"),
    ("", "ReplicationController"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_refuses_every_kind_naming_each_image_container_and_reason() {
    let server = TestServer::start(&["--unmirrored", "deny"]).await;
    for (group, kind) in KINDS {
        let response = validate(&server, &review(group, kind, object(kind, json!({"name": "web"})))).await;
        assert_eq!(response["allowed"], false, "{kind}");
        assert_eq!(response["status"]["code"], 403, "{kind}");
        let message = response["status"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("mirrorswap: {kind} shop/web would pull 2 image(s)")), "{message}");
        assert!(
            message.contains("containers `agent` image `vendor.example.com/agent:1`: no rule maps it to a mirror"),
            "{message}"
        );
        assert!(
            message.contains("containers `cache` image `redis:7`: not rewritten, though rule `docker.io::harbor.example.org/hub` (line 1) maps it to `harbor.example.org/hub/redis:7`: was the mutating webhook skipped, or did it keep the image because the mirror lacks it (--swap-policy exists)?"),
            "{message}"
        );
        assert!(!message.contains("nginx") && !message.contains("migrate"), "mirrored images are fine: {message}");
    }
    // An object's own opt-out (label, annotation or imageswap's label) is the Pod author's: it
    // does not exempt the object, and the refusal says where exemptions come from.
    for metadata in opt_outs() {
        let response = validate(&server, &review("apps", "Deployment", object("Deployment", metadata.clone()))).await;
        assert_eq!(response["allowed"], false, "{metadata}");
        let message = response["status"]["message"].as_str().unwrap();
        assert!(message.ends_with("exempt its namespace through the webhook's namespaceSelector)"), "{message}");
    }
    // Kinds /mutate does not handle, and deletions, are not judged.
    let service =
        review("", "Service", json!({"metadata": {"name": "s"}, "spec": {"containers": [{"image": "x.example/y"}]}}));
    assert_eq!(validate(&server, &service).await["allowed"], true);
    let mut deletion = review("", "Pod", object("Pod", json!({"name": "p"})));
    deletion["request"]["operation"] = json!("DELETE");
    assert_eq!(validate(&server, &deletion).await["allowed"], true);
    // All mirrored: admitted without a word.
    let clean = json!({"metadata": {"name": "ok"}, "spec": {"containers": [{"name": "a", "image": "harbor.example.org/gcr/x:1"}]}});
    let response = validate(&server, &review("", "Pod", clean)).await;
    assert_eq!((response["allowed"].clone(), response.get("warnings").is_none()), (json!(true), true));
    assert_eq!(server.metric(r#"mirrorswap_unmirrored_images_total{action="deny"}"#).await, 24.0);
    server.stop().await;
}

/// The object-level opt-outs `/mutate` honours.
fn opt_outs() -> [Value; 3] {
    [
        json!({"name": "a", "labels": {"mirrorswap.io/skip": "true"}}),
        json!({"name": "a", "annotations": {"mirrorswap.io/skip": "true"}}),
        json!({"name": "a", "labels": {"k8s.twr.io/imageswap": "disabled"}}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_opt_outs_exempt_only_when_the_guard_is_told_to_honour_them() {
    let server = TestServer::start(&["--unmirrored", "deny", "--guard-honors-object-opt-out"]).await;
    for metadata in opt_outs() {
        let response = validate(&server, &review("apps", "Deployment", object("Deployment", metadata.clone()))).await;
        assert_eq!(response["allowed"], true, "{metadata}");
    }
    // Without an opt-out the flag changes nothing.
    let response = validate(&server, &review("", "Pod", object("Pod", json!({"name": "p"})))).await;
    assert_eq!(response["allowed"], false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_admits_with_one_warning_per_image_and_allowed_registries_are_fine() {
    let server = TestServer::start(&["--unmirrored", "warn", "--allow-registry", "vendor.example.com"]).await;
    let response = validate(&server, &review("batch", "CronJob", object("CronJob", json!({"name": "backup"})))).await;
    assert_eq!(response["allowed"], true);
    let warnings = response["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "the allowed registry's image is no warning: {warnings:?}");
    assert!(
        warnings[0].as_str().unwrap().starts_with("mirrorswap: unmirrored image: containers `cache` image `redis:7`")
    );
    // An allowed prefix matches on `/` boundaries of the fully qualified image, and wins
    // over a rule that would rewrite it.
    let server_hub = TestServer::start(&["--unmirrored", "deny", "--allow-registry", "docker.io/library"]).await;
    let pod = |image: &str| json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": image}]}});
    for (image, allowed) in [
        ("redis:7", true),
        ("docker.io/library/redis:7", true),
        ("bitnami/redis:7", false),
        ("vendor.example.com.evil/x", false),
    ] {
        let response = validate(&server_hub, &review("", "Pod", pod(image))).await;
        assert_eq!(response["allowed"], allowed, "{image}");
    }
    assert_eq!(server.metric(r#"mirrorswap_unmirrored_images_total{action="warn"}"#).await, 1.0);
    server.stop().await;
    server_hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_by_default_counts_and_bad_requests_are_400() {
    let server = TestServer::start(&[]).await;
    let response = validate(&server, &review("apps", "Deployment", object("Deployment", json!({"name": "web"})))).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("warnings").is_none());
    assert_eq!(server.metric(r#"mirrorswap_unmirrored_images_total{action="allow"}"#).await, 2.0);

    let mut client = server.connect(Protocol::Http1).await;
    let (status, _) = client.post("/validate", "text/plain", b"{}".to_vec()).await;
    assert_eq!(status, 400);
    let (status, body) = client.post("/validate", "application/json", br#"{"kind": "Pod"}"#.to_vec()).await;
    assert_eq!((status, String::from_utf8_lossy(&body).contains("AdmissionReview")), (400, true));
    // A readable review with an unreadable object: admitted with a warning.
    let mut odd = review("", "Pod", json!({"metadata": {"name": "p"}, "spec": {"containers": "nope"}}));
    odd["request"]["object"]["spec"]["containers"] = json!(7);
    let response = validate(&server, &odd).await;
    assert_eq!(response["allowed"], true);
    assert!(response["warnings"][0].as_str().unwrap().contains("could not read the object"));
    server.stop().await;
}

/// An UPDATE review of `kind` (through `sub_resource`, empty for the object itself) from `old`
/// to `new`; `old` null stands for a review without `oldObject`.
fn update(group: &str, kind: &str, sub_resource: &str, new: Value, old: Value) -> Value {
    let mut review = review(group, kind, new);
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = old;
    if !sub_resource.is_empty() {
        review["request"]["subResource"] = json!(sub_resource);
    }
    review
}

/// A Deployment whose images predate mirrorswap: two unmirrored, one mirrored.
fn old_deployment() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "shop", "generation": 3},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec()}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_update_only_new_or_changed_images_are_judged() {
    let server = TestServer::start(&["--unmirrored", "deny"]).await;
    let refused = |response: &Value| response["allowed"] == false;
    // Refused for exactly one image, the one `named` (`LIST `CONTAINER` image `IMAGE``).
    let refused_for_one = |response: &Value, named: &str| {
        let message = response["status"]["message"].as_str().unwrap_or("");
        assert!(refused(response), "{response}");
        assert!(message.contains("would pull 1 image(s)") && message.contains(named), "{named}: {message}");
        message.to_owned()
    };

    // `kubectl debug`: pods/ephemeralcontainers on a Pod whose images predate mirrorswap.
    let running = json!({"metadata": {"name": "web-0"}, "spec": pod_spec(), "status": {"phase": "Running"}});
    let debugged = |image: &str| {
        let mut pod = running.clone();
        pod["spec"]["ephemeralContainers"] =
            json!([{"name": "debugger-x7k2p", "image": image, "targetContainerName": "web"}]);
        pod
    };
    let mirrored =
        update("", "Pod", "ephemeralcontainers", debugged("harbor.example.org/hub/busybox:1.36"), running.clone());
    assert!(!refused(&validate(&server, &mirrored).await), "a mirrored debug image on an old Pod is fine");
    let response =
        validate(&server, &update("", "Pod", "ephemeralcontainers", debugged("busybox:1.36"), running.clone())).await;
    refused_for_one(&response, "ephemeralContainers `debugger-x7k2p` image `busybox:1.36`");
    // A second debug container: the first one is old now, only the new one is judged.
    let mut twice = debugged("harbor.example.org/hub/busybox:1.36");
    twice["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "debugger-2", "image": "alpine:3"}));
    let response = validate(
        &server,
        &update("", "Pod", "ephemeralcontainers", twice, debugged("harbor.example.org/hub/busybox:1.36")),
    )
    .await;
    refused_for_one(&response, "ephemeralContainers `debugger-2` image `alpine:3`");

    // `kubectl rollout restart`: only the template's annotation changes.
    let mut restarted = old_deployment();
    restarted["spec"]["template"]["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/restartedAt": "2026-12-06T10:00:00Z"});
    assert!(!refused(&validate(&server, &update("apps", "Deployment", "", restarted, old_deployment())).await));

    // The garbage collector removes the foregroundDeletion finalizer of a Deployment being deleted.
    let mut deleting = old_deployment();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-12-06T10:00:00Z");
    let mut finalized = deleting.clone();
    deleting["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    assert!(!refused(&validate(&server, &update("apps", "Deployment", "", finalized.clone(), deleting)).await));
    // Being deleted is enough, even where the images would otherwise be judged (no oldObject).
    assert!(!refused(&validate(&server, &update("apps", "Deployment", "", finalized.clone(), Value::Null)).await));
    // A CREATE is never of an object being deleted (the API server clears the field): judged.
    let forged = review("apps", "Deployment", finalized.clone());
    assert!(refused(&validate(&server, &forged).await));
    finalized["metadata"].as_object_mut().unwrap().remove("deletionTimestamp");
    assert!(refused(&validate(&server, &update("apps", "Deployment", "", finalized, Value::Null)).await));

    // An image changed to an unmirrored one is refused; the unchanged old ones are not named.
    for kind in ["Deployment", "Pod"] {
        let (group, old) = match kind {
            "Pod" => ("", running.clone()),
            _ => ("apps", old_deployment()),
        };
        let spec = if kind == "Pod" { "/spec" } else { "/spec/template/spec" };
        let mut changed = old.clone();
        changed.pointer_mut(spec).unwrap()["containers"][0]["image"] = json!("vendor.example.com/web:2");
        let response = validate(&server, &update(group, kind, "", changed, old.clone())).await;
        let text = refused_for_one(&response, "containers `web` image `vendor.example.com/web:2`");
        assert!(!text.contains("agent") && !text.contains("redis"), "{kind}: unchanged images are not judged: {text}");
        // Changed to a mirrored image: admitted, whatever the old images are.
        let mut mirrored = old.clone();
        mirrored.pointer_mut(spec).unwrap()["containers"][0]["image"] = json!("harbor.example.org/hub/nginx:1.28");
        assert!(!refused(&validate(&server, &update(group, kind, "", mirrored, old)).await), "{kind}");
    }

    // Subresources that cannot change images are not judged, as /mutate leaves them alone: not
    // even an unmirrored image that differs from the old object's (the API server drops it).
    let mut changed = running.clone();
    changed["spec"]["containers"][0]["image"] = json!("vendor.example.com/web:9");
    for sub_resource in ["status", "resize"] {
        let response = validate(&server, &update("", "Pod", sub_resource, changed.clone(), running.clone())).await;
        assert!(!refused(&response), "{sub_resource}: {response}");
    }
    assert!(refused(&validate(&server, &update("", "Pod", "", changed, running.clone())).await), "the Pod itself");
    server.stop().await;
}

/// Rules where the engine, as imageswap, leaves images alone or "mirrored" that are pulled from
/// outside the mirrors: wildcards matched anywhere, a host built by a `-` target, a bare-host
/// target reached on any port.
const HOSTILE_RULES: &str = "\
docker.io::harbor.example.org/hub
quay.io::127.0.0.1
default::mirror-
noswap_wildcards::internal.example.org,10.0.0.
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_past_the_host_built_hosts_and_chosen_ports_are_unmirrored() {
    let args = ["--unmirrored", "deny", "--allow-registry", "mirror-ours.example.org"];
    let server = TestServer::start_with_rules(HOSTILE_RULES, "rules.conf", &args).await;
    let pod = |image: &str| json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": image}]}});
    // (image, refused because)
    let table = [
        ("internal.example.org/team/x:1", None),
        ("10.0.0.5:5000/x", None),
        (
            "ghcr.io/evil/x:10.0.0.1",
            Some("`noswap_wildcards` entry `10.0.0.` (line 4) matches it, but not as its registry's host"),
        ),
        (
            "evil.com/internal.example.org/x:1",
            Some("`noswap_wildcards` entry `internal.example.org` (line 4) matches it, but not as its registry's host"),
        ),
        (
            "internal.example.org.evil.com/x:1",
            Some("`noswap_wildcards` entry `internal.example.org` (line 4) matches it, but not as its registry's host"),
        ),
        ("mirror-ours.example.org/x:1", None),
        (
            "mirror-evil.com/x:1",
            Some(
                "pulled from `mirror-evil.com`, a registry name that rule `default::mirror-` (line 3) builds from the image's own",
            ),
        ),
        ("127.0.0.1/x:1", None),
        (
            "127.0.0.1:25502/x:1",
            Some(
                "pulled from `127.0.0.1:25502`, not from `127.0.0.1`, the registry rule `quay.io::127.0.0.1` (line 2) names",
            ),
        ),
        ("harbor.example.org/hub/nginx:1", None),
        (
            "harbor.example.org:6666/hub/nginx:1",
            Some("pulled from `harbor.example.org:6666`, not from `harbor.example.org`"),
        ),
    ];
    for (image, refused) in table {
        let response = validate(&server, &review("", "Pod", pod(image))).await;
        match refused {
            None => assert_eq!(response["allowed"], true, "{image}: {response}"),
            Some(why) => {
                assert_eq!(response["allowed"], false, "{image}");
                let message = response["status"]["message"].as_str().unwrap();
                assert!(message.contains(&format!("image `{image}`: {why}")), "{image}: {message}");
            }
        }
    }
    server.stop().await;
}

/// A pinned mirror reference (`--pin-digest` writes them) is mirrored; `--require-digest`
/// refuses a mirror image pulled by tag only, whatever `--unmirrored` says, and never an
/// image the object did not change (UPDATE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_digest_refuses_mirror_images_pulled_by_tag() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let pinned = format!("harbor.example.org/hub/nginx:1.27@{digest}");
    let pod = |images: &[&str]| {
        let containers: Vec<Value> =
            images.iter().enumerate().map(|(n, image)| json!({"name": format!("c{n}"), "image": image})).collect();
        json!({"metadata": {"name": "web"}, "spec": {"containers": containers}})
    };
    // (flags, images, allowed, the refusal or warning holds)
    let table: [(&[&str], Vec<&str>, bool, &str); 6] = [
        (&[], vec![&pinned, "harbor.example.org/hub/redis:7"], true, ""),
        (&["--unmirrored", "deny"], vec![&pinned], true, ""),
        (
            &["--require-digest"],
            vec![&pinned, "harbor.example.org/hub/redis:7"],
            false,
            "mirrorswap: Pod shop/web would pull 1 mirror image(s) without a digest: containers `c1` image \
             `harbor.example.org/hub/redis:7`: pulled from the mirror by tag, without a digest",
        ),
        // Images outside the mirrors are --unmirrored's: allowed here, only the tag is refused.
        (&["--require-digest"], vec!["vendor.example.com/agent:1", &pinned], true, ""),
        (
            &["--require-digest", "--unmirrored", "deny"],
            vec!["vendor.example.com/agent:1", "harbor.example.org/hub/redis:7"],
            false,
            "would pull 1 image(s) from outside the mirrors: containers `c0` image `vendor.example.com/agent:1`: no \
             rule maps it to a mirror and no --allow-registry prefix covers it; and 1 mirror image(s) without a digest: \
             containers `c1` image `harbor.example.org/hub/redis:7`",
        ),
        (
            &["--require-digest", "--unmirrored", "warn"],
            vec!["vendor.example.com/agent:1", "harbor.example.org/hub/redis:7"],
            false,
            "mirrorswap: unmirrored image: containers `c0` image `vendor.example.com/agent:1`",
        ),
    ];
    for (flags, images, allowed, holds) in table {
        let server = TestServer::start(flags).await;
        let response = validate(&server, &review("", "Pod", pod(&images))).await;
        assert_eq!(response["allowed"], allowed, "{flags:?} {images:?}: {response}");
        let said = format!("{} {}", response["status"]["message"], response["warnings"]);
        assert!(said.contains(holds), "{flags:?} {images:?}: {said}");
        if flags.contains(&"--require-digest") && !allowed {
            assert_eq!(server.metric("mirrorswap_unpinned_images_total").await, 1.0);
        }
        // An UPDATE that leaves the unpinned image as it was is not judged.
        let mut update = review("", "Pod", pod(&images));
        update["request"]["operation"] = json!("UPDATE");
        update["request"]["oldObject"] = pod(&images);
        assert_eq!(validate(&server, &update).await["allowed"], true, "{flags:?}");
        server.stop().await;
    }
}
