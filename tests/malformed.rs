//! Malformed and hostile requests: each gets its documented answer, and the
//! server keeps serving. A request that is not an admission.k8s.io/v1 review
//! with a `request.uid` gets 400 and a one-line reason; a review whose object
//! cannot be read is admitted unchanged with a warning naming what failed to
//! decode; images that are not valid references are left alone.

mod common;

use common::{Protocol, TestServer, patch_of, sample};
use serde_json::{Value, json};

/// What a case must get back.
enum Expect {
    /// This status, and this text in the body.
    Status(u16, &'static str),
    /// 200, allowed, no patch, and a warning containing this text.
    Warned(&'static str),
    /// 200, allowed, no patch, no warning.
    Untouched,
    /// 200, allowed, a patch of this many operations.
    Patched(usize),
}

fn review_with(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut review = sample("pod.json");
    edit(&mut review);
    serde_json::to_vec(&review).unwrap()
}

fn containers(list: Value) -> Vec<u8> {
    review_with(|review| {
        review["request"]["object"]["spec"] = json!({ "containers": list });
    })
}

fn image(image: &str) -> Vec<u8> {
    containers(json!([{ "name": "app", "image": image }]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_request_gets_its_documented_answer() {
    let server = TestServer::start(&[]).await;
    let valid = serde_json::to_vec(&sample("pod.json")).unwrap();
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_image =
        String::from_utf8(image("x")).unwrap().replacen("\"image\":\"x\"", &format!("\"image\":{nested}"), 1);
    let deep =
        String::from_utf8(valid.clone()).unwrap().replacen("\"spec\":{", &format!("\"spec\":{{\"deep\":{nested},"), 1);
    let mut over_limit = valid.clone();
    over_limit.resize(mirrorswap::server::args::DEFAULT_MAX_BODY_BYTES + 1, b' ');
    let many: Vec<Value> = (0..10_000).map(|i| json!({"name": format!("c{i}"), "image": "nginx:1.27"})).collect();
    let long_image = format!("quay.io/{}", "a".repeat(10_000));
    let duplicate_uid = String::from_utf8(valid.clone()).unwrap().replacen("\"uid\"", "\"uid\": \"first\", \"uid\"", 1);
    let json_type = "application/json";

    // (case, content type, body, expected)
    let cases: Vec<(&str, &str, Vec<u8>, Expect)> = vec![
        ("empty body", json_type, vec![], Expect::Status(400, "not JSON")),
        ("truncated JSON", json_type, valid[..valid.len() / 2].to_vec(), Expect::Status(400, "not JSON")),
        ("invalid UTF-8", json_type, vec![b'{', 0xff, 0xfe, b'}'], Expect::Status(400, "not JSON")),
        ("JSON null", json_type, b"null".to_vec(), Expect::Status(400, "expected apiVersion")),
        ("JSON array", json_type, b"[]".to_vec(), Expect::Status(400, "expected apiVersion")),
        ("JSON number", json_type, b"42".to_vec(), Expect::Status(400, "expected apiVersion")),
        ("JSON string", json_type, b"\"AdmissionReview\"".to_vec(), Expect::Status(400, "expected apiVersion")),
        (
            "v1beta1 review",
            json_type,
            review_with(|r| r["apiVersion"] = json!("admission.k8s.io/v1beta1")),
            Expect::Status(400, "expected apiVersion admission.k8s.io/v1"),
        ),
        (
            "wrong kind",
            json_type,
            review_with(|r| r["kind"] = json!("Pod")),
            Expect::Status(400, "kind AdmissionReview"),
        ),
        ("no request", json_type, review_with(|r| r["request"] = Value::Null), Expect::Status(400, "no `request`")),
        (
            "missing uid",
            json_type,
            review_with(|r| {
                r["request"].as_object_mut().unwrap().remove("uid");
            }),
            Expect::Status(400, "no `request.uid`"),
        ),
        (
            "empty uid",
            json_type,
            review_with(|r| r["request"]["uid"] = json!("")),
            Expect::Status(400, "no `request.uid`"),
        ),
        (
            "numeric uid",
            json_type,
            review_with(|r| r["request"]["uid"] = json!(7)),
            Expect::Status(400, "no `request.uid`"),
        ),
        ("text/plain", "text/plain", valid.clone(), Expect::Status(400, "content type must be application/json")),
        ("no content type", "", valid.clone(), Expect::Status(400, "content type must be application/json")),
        ("charset parameter", "application/json; charset=utf-8", valid.clone(), Expect::Patched(3)),
        ("body over 20 MiB", json_type, over_limit, Expect::Status(413, "")),
        // Fields mirrorswap does not read are skipped without recursion, whatever their depth...
        ("deep nesting in an unread field", json_type, deep.into_bytes(), Expect::Patched(3)),
        // ...and in a field it reads, the decoder stops at 128 levels.
        ("deep nesting in an image", json_type, deep_image.into_bytes(), Expect::Status(400, "recursion limit")),
        (
            "containers not a list",
            json_type,
            containers(json!({"a": 1})),
            Expect::Warned("invalid type: map, expected a sequence"),
        ),
        (
            "container not an object",
            json_type,
            containers(json!(["nginx"])),
            Expect::Warned("expected struct Container"),
        ),
        (
            "image a number",
            json_type,
            containers(json!([{"name": "a", "image": 5}])),
            Expect::Warned("invalid type: integer `5`, expected a string"),
        ),
        (
            "image an object",
            json_type,
            containers(json!([{"name": "a", "image": {}}])),
            Expect::Warned("invalid type: map, expected a string"),
        ),
        (
            "spec a string",
            json_type,
            review_with(|r| r["request"]["object"]["spec"] = json!("x")),
            Expect::Warned("expected struct Spec"),
        ),
        (
            "spec a 100k string",
            json_type,
            review_with(|r| r["request"]["object"]["spec"] = json!("x".repeat(100_000))),
            Expect::Warned("invalid type: string \"xxx"),
        ),
        (
            "labels not a map",
            json_type,
            review_with(|r| r["request"]["object"]["metadata"]["labels"] = json!([1])),
            Expect::Warned("could not decode the request"),
        ),
        (
            "unknown operation",
            json_type,
            review_with(|r| r["request"]["operation"] = json!("PATCH")),
            Expect::Warned("could not decode the request"),
        ),
        (
            "missing kind",
            json_type,
            review_with(|r| {
                r["request"].as_object_mut().unwrap().remove("kind");
            }),
            Expect::Warned("could not decode the request"),
        ),
        ("duplicate uid key", json_type, duplicate_uid.into_bytes(), Expect::Warned("duplicate field")),
        ("image null", json_type, containers(json!([{"name": "a", "image": null}])), Expect::Untouched),
        ("no containers", json_type, containers(json!([])), Expect::Untouched),
        (
            "spec missing",
            json_type,
            review_with(|r| r["request"]["object"] = json!({"metadata": {}})),
            Expect::Untouched,
        ),
        ("object null", json_type, review_with(|r| r["request"]["object"] = Value::Null), Expect::Untouched),
        ("unknown kind", json_type, review_with(|r| r["request"]["kind"]["kind"] = json!("Widget")), Expect::Untouched),
        ("uppercase image", json_type, image("NGINX"), Expect::Untouched),
        ("NUL in image", json_type, image("nginx\u{0}:1"), Expect::Untouched),
        ("unicode image", json_type, image("ngïnx"), Expect::Untouched),
        ("space in image", json_type, image("nginx 1.27"), Expect::Untouched),
        ("empty image", json_type, image(""), Expect::Untouched),
        ("image of 10k characters", json_type, image(&long_image), Expect::Untouched),
        ("10k containers", json_type, containers(Value::Array(many)), Expect::Patched(10_000)),
    ];
    assert!(cases.len() >= 30);
    let mut client = server.connect(Protocol::Http1).await;
    for (case, content_type, body, expected) in cases {
        let (status, response) = if content_type.is_empty() {
            client.post("/mutate", "", body).await
        } else {
            client.post("/mutate", content_type, body).await
        };
        let text = String::from_utf8_lossy(&response).into_owned();
        match expected {
            Expect::Status(want, contains) => {
                assert_eq!(status, want, "{case}: {text}");
                assert!(text.contains(contains), "{case}: {text}");
                if want == 400 {
                    assert_eq!(text.trim_end().lines().count(), 1, "{case}: one-line reason");
                }
            }
            Expect::Warned(_) | Expect::Untouched | Expect::Patched(_) => {
                assert_eq!(status, 200, "{case}: {text}");
                let review: Value = serde_json::from_slice(&response).unwrap();
                assert_eq!(review["response"]["allowed"], true, "{case}");
                let warnings = review["response"]["warnings"].as_array().cloned().unwrap_or_default();
                // A warning quotes at most ~200 characters of what the object's author wrote.
                let longest = warnings.iter().map(|w| w.as_str().unwrap().chars().count()).max();
                assert!(longest.unwrap_or(0) < 400, "{case}: a {longest:?}-character warning");
                match expected {
                    Expect::Warned(contains) => {
                        assert!(patch_of(&review).is_none(), "{case}");
                        assert!(warnings.iter().any(|w| w.as_str().unwrap().contains(contains)), "{case}: {text}");
                    }
                    Expect::Untouched => {
                        assert!(patch_of(&review).is_none(), "{case}: {text}");
                        assert!(warnings.is_empty(), "{case}: {text}");
                    }
                    Expect::Patched(operations) => {
                        assert_eq!(patch_of(&review).map(|p| p.0.len()), Some(operations), "{case}");
                    }
                    Expect::Status(..) => unreachable!(),
                }
            }
        }
        // The connection may be closed after a rejected body; the server must still answer.
        client = server.connect(Protocol::Http1).await;
        let (status, _) = client.post("/mutate", json_type, valid.clone()).await;
        assert_eq!(status, 200, "after {case}: the server keeps serving");
    }
    server.stop().await;
}

#[tokio::test]
async fn wrong_methods_and_paths() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect(Protocol::Http2).await;
    let (status, _) = client.post("/validating", "application/json", b"{}".to_vec()).await;
    assert_eq!(status, 404);
    let (status, _) = client.post("/validate", "application/json", b"{}".to_vec()).await;
    assert_eq!(status, 400, "the leak guard's path exists and refuses a body that is no review");
    let (status, _) = client.post("/metrics", "application/json", b"{}".to_vec()).await;
    assert_eq!(status, 404, "admin endpoints are not on the webhook listener");
    server.stop().await;
}
