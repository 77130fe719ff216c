//! UPDATE end to end: for Pods, every workload kind and the `pods/ephemeralcontainers`
//! subresource, real AdmissionReviews with `oldObject` go to a real HTTPS server (with and
//! without `--pull-secret` and `--annotate-original`); each returned patch is applied with the
//! json-patch crate and the API server's update rules (`common::k8s_update`) are run on
//! (oldObject, patched object). The checker's own tests are here too, so it can fail.

mod common;

use common::k8s_update::violations;
use common::{Protocol, TestServer, patch_of, patched_object};
use serde_json::{Value, json};

const SECRET: &str = "harbor-pull";
const ANNOTATION: &str = "mirrorswap.io/original-images";

/// (group, kind, JSON pointer of the pod spec).
const KINDS: [(&str, &str, &str); 9] = [
    ("", "Pod", "/spec"),
    ("", "PodTemplate", "/template/spec"),
    ("", "ReplicationController", "/spec/template/spec"),
    ("apps", "Deployment", "/spec/template/spec"),
    ("apps", "StatefulSet", "/spec/template/spec"),
    ("apps", "DaemonSet", "/spec/template/spec"),
    ("apps", "ReplicaSet", "/spec/template/spec"),
    ("batch", "Job", "/spec/template/spec"),
    ("batch", "CronJob", "/spec/jobTemplate/spec/template/spec"),
];

/// A pod spec as it was before mirrorswap: nothing mirrored.
fn pod_spec(kind: &str) -> Value {
    let mut spec = json!({
        "initContainers": [{"name": "init", "image": "busybox:1.36"}],
        "containers": [
            {"name": "web", "image": "nginx:1.26", "ports": [{"containerPort": 80}]},
            {"name": "exporter", "image": "quay.io/prometheus/nginx-exporter:1.3.0"}
        ]
    });
    if matches!(kind, "Job" | "CronJob") {
        spec["restartPolicy"] = json!("Never");
    }
    spec
}

/// An object of `kind` holding `spec` as its pod spec.
fn object(kind: &str, spec: Value) -> Value {
    let metadata = json!({"name": "web", "namespace": "shop", "labels": {"app": "web"}});
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": spec});
    let selector = json!({"matchLabels": {"app": "web"}});
    let (api_version, body) = match kind {
        "Pod" => ("v1", json!({"spec": template["spec"], "status": {"phase": "Running"}})),
        "PodTemplate" => ("v1", json!({"template": template})),
        "ReplicationController" => {
            ("v1", json!({"spec": {"replicas": 1, "selector": {"app": "web"}, "template": template}}))
        }
        "Deployment" | "ReplicaSet" => {
            ("apps/v1", json!({"spec": {"replicas": 2, "selector": selector, "template": template}}))
        }
        "DaemonSet" => ("apps/v1", json!({"spec": {"selector": selector, "template": template}})),
        "StatefulSet" => (
            "apps/v1",
            json!({"spec": {"serviceName": "web", "replicas": 1, "selector": selector, "template": template}}),
        ),
        "Job" => ("batch/v1", json!({"spec": {"selector": selector, "template": template}})),
        "CronJob" => {
            ("batch/v1", json!({"spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}}}))
        }
        other => panic!("{other}"),
    };
    let mut object = json!({"apiVersion": api_version, "kind": kind, "metadata": metadata});
    object.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
    object
}

fn review(group: &str, kind: &str, operation: &str, sub_resource: &str, object: &Value, old: &Value) -> Value {
    let mut request = json!({
        "uid": format!("{kind}-{operation}-{sub_resource}"),
        "kind": {"group": group, "version": "v1", "kind": kind},
        "name": "web",
        "namespace": "shop",
        "operation": operation,
        "object": object,
        "oldObject": old,
        "dryRun": false
    });
    if !sub_resource.is_empty() {
        request["subResource"] = json!(sub_resource);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// One UPDATE: the change made to the old pod spec and the images mirrorswap must rewrite
/// (pointer below the pod spec, container name, new image).
struct Case {
    name: &'static str,
    /// The old pod spec before the change (`pod_spec` by default).
    old: fn(&str) -> Value,
    /// Makes the new object from the old one (the pod spec pointer is given).
    change: fn(&mut Value, &str),
    rewrites: &'static [(&'static str, &'static str, &'static str)],
    /// Kinds the case is for (empty: all).
    only: &'static [&'static str],
    /// Kinds for which the request itself is one the API server rejects (a Job's template
    /// change): mirrorswap must add nothing.
    rejected_for: &'static [&'static str],
}

fn spec_at<'v>(object: &'v mut Value, spec: &str) -> &'v mut Value {
    object.pointer_mut(spec).unwrap_or_else(|| panic!("{spec}"))
}

const WORKLOADS: &[&str] =
    &["PodTemplate", "ReplicationController", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"];

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "a label change leaves unchanged images alone",
            old: pod_spec,
            change: |object, _| object["metadata"]["labels"]["tier"] = json!("frontend"),
            rewrites: &[],
            only: &[],
            rejected_for: &[],
        },
        Case {
            name: "a finalizer added by a controller",
            old: pod_spec,
            change: |object, _| object["metadata"]["finalizers"] = json!(["example.com/cleanup"]),
            rewrites: &[],
            only: &[],
            rejected_for: &[],
        },
        Case {
            name: "a changed image is rewritten",
            old: pod_spec,
            change: |object, spec| spec_at(object, spec)["containers"][0]["image"] = json!("nginx:1.27"),
            rewrites: &[("containers/0", "web", "harbor.example.org/hub/nginx:1.27")],
            only: &[],
            rejected_for: &["Job"],
        },
        Case {
            name: "a changed init container image is rewritten",
            old: pod_spec,
            change: |object, spec| spec_at(object, spec)["initContainers"][0]["image"] = json!("busybox:1.37"),
            rewrites: &[("initContainers/0", "init", "harbor.example.org/hub/busybox:1.37")],
            only: &[],
            rejected_for: &["Job"],
        },
        Case {
            name: "a new container is rewritten",
            old: pod_spec,
            change: |object, spec| {
                spec_at(object, spec)["containers"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "cache", "image": "redis:7"}))
            },
            rewrites: &[("containers/2", "cache", "harbor.example.org/hub/redis:7")],
            // A Pod's containers cannot be added on UPDATE; its new containers are ephemeral ones.
            only: WORKLOADS,
            rejected_for: &["Job"],
        },
        Case {
            name: "reordered containers are matched by name",
            old: pod_spec,
            change: |object, spec| spec_at(object, spec)["containers"].as_array_mut().unwrap().reverse(),
            rewrites: &[],
            only: WORKLOADS,
            rejected_for: &["Job"],
        },
        Case {
            name: "a mirrored image re-applied from Git is mirrored back to what it was",
            old: |kind| {
                let mut spec = pod_spec(kind);
                spec["containers"][0]["image"] = json!("harbor.example.org/hub/nginx:1.26");
                spec
            },
            change: |object, spec| spec_at(object, spec)["containers"][0]["image"] = json!("nginx:1.26"),
            rewrites: &[("containers/0", "web", "harbor.example.org/hub/nginx:1.26")],
            only: &[],
            rejected_for: &["Job"],
        },
        Case {
            name: "an image changed to a mirrored one needs nothing",
            old: pod_spec,
            change: |object, spec| {
                spec_at(object, spec)["containers"][0]["image"] = json!("harbor.example.org/hub/nginx:1.27")
            },
            rewrites: &[],
            only: &[],
            rejected_for: &["Job"],
        },
    ]
}

/// The ephemeral subresource: (name, old ephemeral containers, new ones, rewrites).
type EphemeralCase = (&'static str, Value, Value, &'static [(&'static str, &'static str, &'static str)]);

fn ephemeral_cases() -> Vec<EphemeralCase> {
    let debug = json!({"name": "debugger", "image": "busybox:1.36", "targetContainerName": "web"});
    let shell = json!({"name": "shell", "image": "alpine:3.20"});
    vec![
        (
            "a new ephemeral container is rewritten",
            json!(null),
            json!([debug]),
            &[("ephemeralContainers/0", "debugger", "harbor.example.org/hub/busybox:1.36")],
        ),
        (
            "only the added one of two is rewritten",
            json!([debug]),
            json!([debug, shell]),
            &[("ephemeralContainers/1", "shell", "harbor.example.org/hub/alpine:3.20")],
        ),
        ("an existing ephemeral container is left alone", json!([debug]), json!([debug]), &[]),
    ]
}

/// A server configuration: (flags, pull secrets on, annotate on).
const MODES: [(&[&str], bool, bool); 4] = [
    (&[], false, false),
    (&["--pull-secret", "harbor.example.org=harbor-pull"], true, false),
    (&["--annotate-original"], false, true),
    (&["--pull-secret", "harbor.example.org=harbor-pull", "--annotate-original"], true, true),
];

/// What one answer must be, checked against the API server's rules.
struct Expect<'c> {
    what: String,
    kind: &'static str,
    sub_resource: &'static str,
    spec: &'static str,
    rewrites: &'c [(&'static str, &'static str, &'static str)],
    rejected: bool,
    pull_secrets: bool,
    annotate: bool,
}

impl Expect<'_> {
    fn check(&self, review: &Value, response: &Value) {
        let what = &self.what;
        let (old, new) = (&review["request"]["oldObject"], &review["request"]["object"]);
        assert_eq!(response["response"]["allowed"], true, "{what}");
        let before = violations(self.kind, self.sub_resource, old, new);
        assert_eq!(before.is_empty(), !self.rejected, "{what}: the test's own request: {before:?}");
        let patched = patched_object(review, response);
        let after = violations(self.kind, self.sub_resource, old, &patched);
        assert!(
            after.iter().all(|violation| before.contains(violation)),
            "{what}: the patch breaks the update: {after:?}"
        );
        let warnings = response["response"]["warnings"].as_array().cloned().unwrap_or_default();
        if self.rewrites.is_empty() {
            assert!(patch_of(response).is_none(), "{what}: no patch wanted, got {patched}");
            assert!(warnings.is_empty(), "{what}: {warnings:?}");
            return;
        }
        // The images: exactly the listed ones rewritten, nothing else but the pull secret and
        // the annotation changed.
        let mut expected = new.clone();
        for (field, _, image) in self.rewrites {
            *expected.pointer_mut(&format!("{}/{field}/image", self.spec)).unwrap() = json!(image);
        }
        let strip = |object: &Value| {
            let mut object = object.clone();
            object.pointer_mut(self.spec).unwrap().as_object_mut().unwrap().remove("imagePullSecrets");
            if let Some(annotations) = object["metadata"].get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.remove(ANNOTATION);
                if annotations.is_empty() {
                    object["metadata"].as_object_mut().unwrap().remove("annotations");
                }
            }
            object
        };
        assert_eq!(strip(&patched), strip(&expected), "{what}");
        // Pull secrets: added to templates; on a Pod (immutable there) a warning instead.
        let secrets = patched.pointer(&format!("{}/imagePullSecrets", self.spec));
        let on_pod = self.kind == "Pod";
        match (self.pull_secrets, on_pod) {
            (true, false) => assert_eq!(secrets, Some(&json!([{"name": SECRET}])), "{what}"),
            _ => assert_eq!(secrets, None, "{what}"),
        }
        let warned = warnings.iter().any(|warning| warning.as_str().is_some_and(|text| text.contains(SECRET)));
        assert_eq!(warned, self.pull_secrets && on_pod, "{what}: warnings {warnings:?}");
        // The annotation: the originals of this request's rewrites, never on the ephemeral subresource.
        let recorded = patched["metadata"]["annotations"][ANNOTATION]
            .as_str()
            .map(|text| serde_json::from_str::<Value>(text).unwrap_or_else(|error| panic!("{what}: {text}: {error}")));
        if self.annotate && self.sub_resource.is_empty() {
            let originals: serde_json::Map<String, Value> = self
                .rewrites
                .iter()
                .map(|(field, name, _)| {
                    ((*name).to_owned(), new.pointer(&format!("{}/{field}/image", self.spec)).unwrap().clone())
                })
                .collect();
            assert_eq!(recorded, Some(Value::Object(originals)), "{what}");
        } else {
            assert_eq!(recorded, None, "{what}");
        }
    }
}

#[tokio::test]
async fn updates_rewrite_only_new_or_changed_images_and_never_an_immutable_field() {
    for (flags, pull_secrets, annotate) in MODES {
        let server = TestServer::start(flags).await;
        let mut client = server.connect(Protocol::Http2).await;
        let mut checked = 0;
        for (group, kind, spec) in KINDS {
            // Pods and templates are still rewritten on CREATE.
            let created = object(kind, pod_spec(kind));
            let create = review(group, kind, "CREATE", "", &created, &Value::Null);
            let patched = patched_object(&create, &client.review(&create).await);
            let images = ["initContainers/0", "containers/0", "containers/1"]
                .map(|field| patched.pointer(&format!("{spec}/{field}/image")).unwrap().as_str().unwrap().to_owned());
            assert!(images.iter().all(|image| image.starts_with("harbor.example.org/")), "{kind} CREATE: {images:?}");

            for case in cases().iter().filter(|case| case.only.is_empty() || case.only.contains(&kind)) {
                let old = object(kind, (case.old)(kind));
                let mut new = old.clone();
                (case.change)(&mut new, spec);
                let rejected = case.rejected_for.contains(&kind);
                let request = review(group, kind, "UPDATE", "", &new, &old);
                let response = client.review(&request).await;
                let expect = Expect {
                    what: format!("{kind}: {} ({flags:?})", case.name),
                    kind,
                    sub_resource: "",
                    spec,
                    // A Job's template is immutable: no image operation at all.
                    rewrites: if kind == "Job" { &[] } else { case.rewrites },
                    rejected,
                    pull_secrets,
                    annotate,
                };
                expect.check(&request, &response);
                checked += 1;
            }
        }
        for (name, old_list, new_list, rewrites) in ephemeral_cases() {
            let mut old = object("Pod", pod_spec("Pod"));
            if !old_list.is_null() {
                old["spec"]["ephemeralContainers"] = old_list;
            }
            let mut new = old.clone();
            new["spec"]["ephemeralContainers"] = new_list;
            let request = review("", "Pod", "UPDATE", "ephemeralcontainers", &new, &old);
            let response = client.review(&request).await;
            let expect = Expect {
                what: format!("pods/ephemeralcontainers: {name} ({flags:?})"),
                kind: "Pod",
                sub_resource: "ephemeralcontainers",
                spec: "/spec",
                rewrites,
                rejected: false,
                pull_secrets,
                annotate,
            };
            expect.check(&request, &response);
            checked += 1;
        }
        // 9 kinds × 6 cases for all, 8 workloads × 2 more, and 3 ephemeral cases.
        assert_eq!(checked, 9 * 6 + 8 * 2 + 3, "{flags:?}");
        server.stop().await;
    }
}

#[tokio::test]
async fn annotate_original_replaces_the_entry_of_a_changed_image() {
    let server = TestServer::start(&["--annotate-original"]).await;
    let mut client = server.connect(Protocol::Http1).await;
    for (group, kind, spec) in [KINDS[0], KINDS[3], KINDS[8]] {
        // Created with nginx:1.26 and mirrored then: the annotation says so.
        let mut mirrored = pod_spec(kind);
        mirrored["containers"][0]["image"] = json!("harbor.example.org/hub/nginx:1.26");
        let mut old = object(kind, mirrored);
        let earlier = json!({"web": "nginx:1.26", "exporter": "quay.io/prometheus/nginx-exporter:1.3.0"}).to_string();
        old["metadata"]["annotations"] = json!({ ANNOTATION: earlier, "team": "shop" });
        let mut new = old.clone();
        *new.pointer_mut(&format!("{spec}/containers/0/image")).unwrap() = json!("nginx:1.27");
        let request = review(group, kind, "UPDATE", "", &new, &old);
        let patched = patched_object(&request, &client.review(&request).await);
        assert!(violations(kind, "", &old, &patched).is_empty(), "{kind}");
        let recorded: Value =
            serde_json::from_str(patched["metadata"]["annotations"][ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(
            recorded,
            json!({"web": "nginx:1.27", "exporter": "quay.io/prometheus/nginx-exporter:1.3.0"}),
            "{kind}: the stale original is replaced, the others kept"
        );
        assert_eq!(patched["metadata"]["annotations"]["team"], "shop", "{kind}");
        // The next unrelated update of that object changes nothing, the annotation included.
        let mut relabelled = patched.clone();
        relabelled["metadata"]["labels"]["tier"] = json!("frontend");
        let next = review(group, kind, "UPDATE", "", &relabelled, &patched);
        assert!(patch_of(&client.review(&next).await).is_none(), "{kind}");
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_say_why_images_were_left_alone_on_update() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect(Protocol::Http1).await;
    let deployment = object("Deployment", pod_spec("Deployment"));
    let mut relabelled = deployment.clone();
    relabelled["metadata"]["labels"]["tier"] = json!("frontend");
    let response = client.review(&review("apps", "Deployment", "UPDATE", "", &relabelled, &deployment)).await;
    assert!(patch_of(&response).is_none());
    // A Job whose image an UPDATE changes: the API server rejects it; mirrorswap adds nothing.
    let job = object("Job", pod_spec("Job"));
    let mut changed = job.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    assert!(patch_of(&client.review(&review("batch", "Job", "UPDATE", "", &changed, &job)).await).is_none());
    // A status update is not one that can change images.
    let pod = object("Pod", pod_spec("Pod"));
    assert!(patch_of(&client.review(&review("", "Pod", "UPDATE", "status", &pod, &pod)).await).is_none());
    for (sample, value) in [
        ("mirrorswap_admission_requests_total{kind=\"Deployment\",operation=\"UPDATE\",result=\"unchanged\"}", 1.0),
        ("mirrorswap_admission_requests_total{kind=\"Job\",operation=\"UPDATE\",result=\"unchanged\"}", 1.0),
        ("mirrorswap_admission_requests_total{kind=\"Pod\",operation=\"UPDATE\",result=\"ignored\"}", 1.0),
        // 3 images of the Deployment, 2 of the Job.
        ("mirrorswap_images_unchanged_total{reason=\"unchanged_on_update\"}", 5.0),
        ("mirrorswap_images_unchanged_total{reason=\"immutable\"}", 1.0),
        ("mirrorswap_images_rewritten_total{rule=\"docker.io\"}", 0.0),
    ] {
        assert_eq!(server.metric(sample).await, value, "{sample}");
    }
    server.stop().await;
}

/// The checker must reject what the API server rejects, or the tests above prove nothing.
#[test]
fn the_update_checker_rejects_what_the_api_server_rejects() {
    let pod = object("Pod", pod_spec("Pod"));
    let edit = |base: &Value, change: &dyn Fn(&mut Value)| {
        let mut changed = base.clone();
        change(&mut changed);
        changed
    };
    let pod_cases: [(&str, Value, bool); 12] = [
        ("image", edit(&pod, &|pod| pod["spec"]["containers"][0]["image"] = json!("nginx:1.27")), true),
        ("init image", edit(&pod, &|pod| pod["spec"]["initContainers"][0]["image"] = json!("x")), true),
        ("labels and annotations", edit(&pod, &|pod| pod["metadata"]["annotations"] = json!({"a": "b"})), true),
        ("status", edit(&pod, &|pod| pod["status"]["phase"] = json!("Failed")), true),
        ("deadline set", edit(&pod, &|pod| pod["spec"]["activeDeadlineSeconds"] = json!(30)), true),
        (
            "toleration added",
            edit(&pod, &|pod| pod["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}])),
            true,
        ),
        ("imagePullSecrets", edit(&pod, &|pod| pod["spec"]["imagePullSecrets"] = json!([{"name": SECRET}])), false),
        (
            "container added",
            edit(&pod, &|pod| {
                pod["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "x", "image": "y"}))
            }),
            false,
        ),
        ("container port", edit(&pod, &|pod| pod["spec"]["containers"][0]["ports"] = json!([])), false),
        (
            "ephemeral container outside its subresource",
            edit(&pod, &|pod| pod["spec"]["ephemeralContainers"] = json!([{"name": "d", "image": "busybox"}])),
            false,
        ),
        ("deadline negative", edit(&pod, &|pod| pod["spec"]["activeDeadlineSeconds"] = json!(-1)), false),
        ("renamed", edit(&pod, &|pod| pod["metadata"]["name"] = json!("other")), false),
    ];
    for (what, changed, valid) in pod_cases {
        assert_eq!(violations("Pod", "", &pod, &changed).is_empty(), valid, "Pod {what}");
    }

    let debug = json!({"name": "debugger", "image": "busybox:1.36"});
    let with_debug = edit(&pod, &|pod| pod["spec"]["ephemeralContainers"] = json!([debug]));
    let ephemeral_cases: [(&str, &Value, Value, bool); 5] = [
        ("added", &pod, with_debug.clone(), true),
        (
            "another added",
            &with_debug,
            edit(&with_debug, &|pod| {
                pod["spec"]["ephemeralContainers"].as_array_mut().unwrap().push(json!({"name": "s", "image": "a"}))
            }),
            true,
        ),
        (
            "existing changed",
            &with_debug,
            edit(&with_debug, &|pod| pod["spec"]["ephemeralContainers"][0]["image"] = json!("x")),
            false,
        ),
        (
            "annotation (dropped)",
            &pod,
            edit(&with_debug, &|pod| pod["metadata"]["annotations"] = json!({ ANNOTATION: "{}" })),
            false,
        ),
        (
            "imagePullSecrets (dropped)",
            &pod,
            edit(&with_debug, &|pod| pod["spec"]["imagePullSecrets"] = json!([{"name": SECRET}])),
            false,
        ),
    ];
    for (what, old, changed, valid) in ephemeral_cases {
        assert_eq!(violations("Pod", "ephemeralcontainers", old, &changed).is_empty(), valid, "ephemeral {what}");
    }

    let job = object("Job", pod_spec("Job"));
    let relabelled = edit(&job, &|job| job["metadata"]["labels"]["x"] = json!("y"));
    assert!(violations("Job", "", &job, &relabelled).is_empty());
    assert!(violations("Job", "", &job, &edit(&job, &|job| job["spec"]["parallelism"] = json!(2))).is_empty());
    let template = edit(&job, &|job| job["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27"));
    assert_eq!(violations("Job", "", &job, &template), ["spec.template: field is immutable"]);
    let secrets = edit(&job, &|job| job["spec"]["template"]["spec"]["imagePullSecrets"] = json!([{"name": SECRET}]));
    assert!(!violations("Job", "", &job, &secrets).is_empty());

    for kind in
        ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "CronJob", "PodTemplate"]
    {
        let old = object(kind, pod_spec(kind));
        let spec = KINDS.iter().find(|(_, name, _)| *name == kind).unwrap().2;
        let changed = edit(&old, &|object| {
            let spec = object.pointer_mut(spec).unwrap();
            spec["containers"][0]["image"] = json!("nginx:1.27");
            spec["imagePullSecrets"] = json!([{"name": SECRET}]);
        });
        assert!(violations(kind, "", &old, &changed).is_empty(), "{kind}: templates may change");
    }
    let deployment = object("Deployment", pod_spec("Deployment"));
    let selector = edit(&deployment, &|object| object["spec"]["selector"] = json!({"matchLabels": {"app": "x"}}));
    assert!(!violations("Deployment", "", &deployment, &selector).is_empty());
    let set = object("StatefulSet", pod_spec("StatefulSet"));
    let claims = edit(&set, &|object| object["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"}}]));
    assert!(!violations("StatefulSet", "", &set, &claims).is_empty());
    assert!(
        violations("StatefulSet", "", &set, &edit(&set, &|object| object["spec"]["replicas"] = json!(3))).is_empty()
    );
}
