//! The chart's webhook configurations, registered with a real API server the way users get
//! them — rendered by `helm template` from helm/mirrorswap — and pointed at a `mirrorswap serve`
//! the test started: `clientConfig.url: https://127.0.0.1:PORT/mutate` (or `/validate`) with the
//! test server's CA in `caBundle` instead of the in-cluster Service.
//!
//! One change besides: a control plane is shared by the tests of a file, and webhook
//! configurations are cluster-wide, so each test's configurations get a name of their own and
//! one more namespaceSelector term, `kubernetes.io/metadata.name In [the test's namespaces]`,
//! ANDed with the chart's own terms (which still apply).

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::chart::{all_of, render_with, to_json};
use super::kube_objects::{self, send};

/// A MutatingWebhookConfiguration and, when the values enable it, the leak guard's
/// ValidatingWebhookConfiguration.
#[derive(Clone, Debug)]
pub struct Webhooks {
    pub mutating: Value,
    pub validating: Option<Value>,
}

impl Webhooks {
    /// The chart's configurations rendered with `sets` (`--set` pairs), named `name`, calling
    /// `server` (trusting `ca_pem`) for objects in `namespaces` only.
    pub fn from_chart(sets: &[&str], server: SocketAddr, ca_pem: &str, name: &str, namespaces: &[&str]) -> Self {
        let documents = render_with(None, sets);
        let one = |kind: &str| all_of(&documents, kind).first().map(|document| to_json(document));
        let mut mutating =
            one("MutatingWebhookConfiguration").expect("the chart renders a MutatingWebhookConfiguration");
        let mut validating = one("ValidatingWebhookConfiguration");
        for config in std::iter::once(&mut mutating).chain(validating.as_mut()) {
            retarget(config, server, ca_pem, name, namespaces);
        }
        Self { mutating, validating }
    }

    /// Sets every webhook's `field` to `value` (`failurePolicy`, `timeoutSeconds`).
    pub fn set_all(&mut self, field: &str, value: Value) {
        for config in std::iter::once(&mut self.mutating).chain(self.validating.as_mut()) {
            for webhook in config["webhooks"].as_array_mut().unwrap() {
                webhook[field] = value.clone();
            }
        }
    }

    /// Creates them.
    pub async fn register(&self, client: &kube::Client) {
        let paths = [MUTATING, VALIDATING];
        for (config, path) in std::iter::once(Some(&self.mutating)).chain([self.validating.as_ref()]).zip(paths) {
            if let Some(config) = config {
                send(client, "POST", path, "application/json", Some(config)).await.ok();
            }
        }
    }

    /// Replaces them with these settings (after [`Self::set_all`]).
    pub async fn update(&self, client: &kube::Client) {
        let paths = [MUTATING, VALIDATING];
        for (config, path) in std::iter::once(Some(&self.mutating)).chain([self.validating.as_ref()]).zip(paths) {
            if let Some(config) = config {
                let name = config["metadata"]["name"].as_str().unwrap();
                let mut current = send(client, "GET", &format!("{path}/{name}"), "application/json", None).await.ok();
                current["webhooks"] = config["webhooks"].clone();
                send(client, "PUT", &format!("{path}/{name}"), "application/json", Some(&current)).await.ok();
            }
        }
    }
}

const MUTATING: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";
const VALIDATING: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";

fn retarget(config: &mut Value, server: SocketAddr, ca_pem: &str, name: &str, namespaces: &[&str]) {
    config["metadata"] = json!({"name": name});
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    for webhook in config["webhooks"].as_array_mut().expect("webhooks") {
        let path = webhook["clientConfig"]["service"]["path"].as_str().expect("a Service path").to_owned();
        webhook["clientConfig"] = json!({"url": format!("https://{server}{path}"), "caBundle": ca_bundle});
        let terms = webhook["namespaceSelector"]["matchExpressions"].as_array_mut().expect("matchExpressions");
        terms.push(json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}));
    }
}

/// Waits until a dry-run Pod with `image` in `namespace` is stored as `expected`: the API server
/// calls the webhook (it takes about a second to see a new configuration).
pub async fn until_rewritten(client: &kube::Client, namespace: &str, image: &str, expected: &str) {
    let probe = kube_objects::pod(namespace, "probe", &[image]);
    let mut seen = Vec::new();
    let arrived = super::eventually(Duration::from_secs(10), async || {
        let answer = kube_objects::create(client, &probe, true).await;
        seen = answer.images("/spec");
        seen == [expected]
    })
    .await;
    assert!(arrived, "the webhook never rewrote {image} to {expected}: still {seen:?}");
}
