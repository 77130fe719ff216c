//! The deploy artifacts: the Helm chart rendered by real `helm` (installed into
//! target/tools by scripts/install-tools.sh), the plain manifests, and the
//! certificates `mirrorswap certs` issues, served by the real server.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::{Client, Protocol, sample, serve_args};
use mirrorswap::rewrite::{Decision, RuleSet};
use mirrorswap::rules_file::{Format, load_file, load_text};
use mirrorswap::server::start;
use yaml_rust2::{Yaml, YamlLoader};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One image per rule of Palette's documented list, plus a digest and a miss.
const PALETTE_IMAGES: [&str; 9] = [
    "nginx:1.27",
    "gcr.io/distroless/static:nonroot",
    "ghcr.io/fluxcd/source-controller:v1.3.0",
    "k8s.gcr.io/pause:3.9",
    "registry.k8s.io/kube-apiserver:v1.30.0",
    "quay.io/prometheus/node-exporter:v1.8.0",
    "us-east1-docker.pkg.dev/proj/repo/app:1.0",
    "us-east1-docker.pkg.dev/proj/repo/app@sha256:15d3b5c4f521a84896ed1ead1b14e4774d02202d5c65ab68f30eeaf310a3b1a7",
    "registry.internal.example.com/team/app:2.1",
];

/// Every values file under helm/mirrorswap/ci/ (scripts/check-deploy.sh validates each).
const CI_VALUES: [&str; 5] = [
    "default-values.yaml",
    "cert-manager-values.yaml",
    "existing-secret-values.yaml",
    "palette-values.yaml",
    "secret-source-values.yaml",
];

fn helm() -> PathBuf {
    let path = std::env::var_os("MIRRORSWAP_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target/tools/bin/helm"));
    assert!(path.exists(), "{} is missing: run scripts/install-tools.sh (scripts/test.sh does)", path.display());
    path
}

/// `helm template` of the chart with `values` (a file under helm/mirrorswap/ci/), as documents.
fn render(values: &str) -> Vec<Yaml> {
    let chart = Path::new(ROOT).join("helm/mirrorswap");
    let output = Command::new(helm())
        .args(["template", "ms", "--namespace", "mirrorswap"])
        .arg(&chart)
        .arg("--values")
        .arg(chart.join("ci").join(values))
        .output()
        .expect("run helm");
    assert!(output.status.success(), "helm template: {}", String::from_utf8_lossy(&output.stderr));
    YamlLoader::load_from_str(&String::from_utf8(output.stdout).unwrap()).expect("rendered YAML")
}

/// The plain manifests of manifests/base, as documents.
fn manifests() -> Vec<Yaml> {
    let dir = Path::new(ROOT).join("manifests/base");
    let mut documents = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|name| name != "kustomization.yaml") {
            documents.extend(YamlLoader::load_from_str(&std::fs::read_to_string(&path).unwrap()).unwrap());
        }
    }
    documents
}

fn find<'d>(documents: &'d [Yaml], kind: &str) -> &'d Yaml {
    documents.iter().find(|doc| doc["kind"].as_str() == Some(kind)).unwrap_or_else(|| panic!("no {kind}"))
}

fn strings(yaml: &Yaml) -> Vec<&str> {
    yaml.as_vec().map(|items| items.iter().filter_map(Yaml::as_str).collect()).unwrap_or_default()
}

fn rewrite_all(rules: &RuleSet) -> Vec<String> {
    PALETTE_IMAGES
        .iter()
        .map(|image| match rules.rewrite(image) {
            Decision::Rewritten { image, .. } => image,
            Decision::Unchanged(_) => (*image).to_owned(),
        })
        .collect()
}

#[test]
fn palette_values_give_the_rules_of_the_palette_list() {
    let documents = render("palette-values.yaml");
    let config_map = find(&documents, "ConfigMap");
    let text = config_map["data"]["rules.conf"].as_str().expect("rules.conf");
    let from_chart = load_text(text, "chart", Format::Maps, Default::default()).expect("chart rules load").rules;
    let example = Path::new(ROOT).join("examples/rules/palette-mirror-registries.conf");
    let from_example = load_file(&example, None, Default::default()).expect("example rules load").rules;
    assert_eq!(from_chart.len(), 7, "the seven pairs of Palette's list");
    let rewritten = rewrite_all(&from_chart);
    assert_eq!(rewritten, rewrite_all(&from_example));
    assert_eq!(rewritten[4], "harbor.example.org/airgap-images/k8s.io/kube-apiserver:v1.30.0");
    assert_eq!(rewritten[8], PALETTE_IMAGES[8], "no rule, no change");
    // The Deployment reads that ConfigMap's key.
    let deployment = find(&documents, "Deployment");
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains(&"--rules=/etc/mirrorswap/rules/rules.conf"), "{args:?}");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_vec().unwrap();
    assert!(volumes.iter().any(|v| v["configMap"]["name"].as_str() == config_map["metadata"]["name"].as_str()));
}

/// The hardening every rendering of the Deployment must carry.
fn assert_hardened(deployment: &Yaml, what: &str) {
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true), "{what}: runAsNonRoot");
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"), "{what}");
    // The token only for reading the rules Secret through the API.
    let reads_api = strings(&container["args"]).iter().any(|arg| arg.starts_with("--rules-secret="));
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(reads_api), "{what}: token");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true), "{what}: read-only root");
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false), "{what}");
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"], "{what}: capabilities");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"), "{what}");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"), "{what}");
    assert!(container["resources"]["requests"]["memory"].as_str().is_some(), "{what}: memory request");
    assert!(container["resources"]["limits"]["memory"].as_str().is_some(), "{what}: memory limit");
    assert!(container["lifecycle"]["preStop"]["exec"]["command"][0].as_str().is_some(), "{what}: preStop");
    assert!(deployment["spec"]["replicas"].as_i64().unwrap_or(0) >= 2, "{what}: replicas");
}

/// Every webhook leaves out `namespace` and kube-system.
fn assert_excludes(webhooks: &Yaml, namespace: &str, what: &str) {
    let webhooks = webhooks.as_vec().expect("webhooks");
    assert!(!webhooks.is_empty());
    for webhook in webhooks {
        let expressions = webhook["namespaceSelector"]["matchExpressions"].as_vec().expect("matchExpressions");
        let excluded = expressions
            .iter()
            .find(|e| {
                e["key"].as_str() == Some("kubernetes.io/metadata.name") && e["operator"].as_str() == Some("NotIn")
            })
            .unwrap_or_else(|| panic!("{what}: no namespace exclusion"));
        let names = strings(&excluded["values"]);
        assert!(names.contains(&namespace) && names.contains(&"kube-system"), "{what}: {names:?}");
        assert_eq!(strings(&webhook["admissionReviewVersions"]), ["v1"], "{what}");
        assert_eq!(webhook["sideEffects"].as_str(), Some("None"), "{what}");
        assert_eq!(webhook["timeoutSeconds"].as_i64(), Some(5), "{what}");
        let resources = strings(&webhook["rules"][0]["resources"]);
        assert_eq!(resources, ["pods", "pods/ephemeralcontainers"], "{what}");
    }
}

#[test]
fn every_rendering_is_hardened_and_never_selects_its_own_namespace() {
    for values in CI_VALUES {
        let documents = render(values);
        assert_hardened(find(&documents, "Deployment"), values);
        assert_excludes(&find(&documents, "MutatingWebhookConfiguration")["webhooks"], "mirrorswap", values);
    }
    let documents = manifests();
    assert_hardened(find(&documents, "Deployment"), "manifests");
    assert_excludes(&find(&documents, "MutatingWebhookConfiguration")["webhooks"], "mirrorswap", "manifests");
    let namespace = find(&documents, "Namespace");
    assert_eq!(namespace["metadata"]["labels"]["mirrorswap.io/skip"].as_str(), Some("true"));
}

#[test]
fn the_secret_source_gets_a_role_on_that_one_secret_and_only_then() {
    let documents = render("secret-source-values.yaml");
    let role = find(&documents, "Role");
    assert_eq!(role["metadata"]["namespace"].as_str(), Some("jet-system"));
    let rules = role["rules"].as_vec().unwrap();
    assert_eq!(rules.len(), 1, "one rule");
    assert_eq!(strings(&rules[0]["apiGroups"]), [""]);
    assert_eq!(strings(&rules[0]["resources"]), ["secrets"]);
    assert_eq!(strings(&rules[0]["resourceNames"]), ["registry-info"]);
    assert_eq!(strings(&rules[0]["verbs"]), ["get", "list", "watch"]);
    let binding = find(&documents, "RoleBinding");
    assert_eq!(binding["metadata"]["namespace"].as_str(), Some("jet-system"));
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let account = find(&documents, "ServiceAccount");
    assert_eq!(binding["subjects"][0]["kind"].as_str(), Some("ServiceAccount"));
    assert_eq!(binding["subjects"][0]["name"], account["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["namespace"].as_str(), Some("mirrorswap"));

    let deployment = find(&documents, "Deployment");
    assert_hardened(deployment, "secret source");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(true));
    assert!(pod["volumes"].as_vec().unwrap().iter().all(|volume| volume["name"].as_str() != Some("rules")));
    assert!(documents.iter().all(|doc| doc["kind"].as_str() != Some("ConfigMap")), "no rules ConfigMap");
    // The rendered arguments are the server's own flags and name the Secret.
    let mut argv = vec!["mirrorswap".to_owned()];
    argv.extend(strings(&pod["containers"][0]["args"]).into_iter().map(str::to_owned));
    let args = serve_args(&argv);
    let source = args.rules_object().expect("rules from the API");
    assert_eq!(source.to_string(), "secret/jet-system/registry-info:MIRROR_REGISTRIES");
    assert!(args.rules.is_none());

    for values in CI_VALUES.iter().filter(|values| **values != "secret-source-values.yaml") {
        let documents = render(values);
        let kinds: Vec<_> = documents.iter().filter_map(|doc| doc["kind"].as_str()).collect();
        assert!(!kinds.contains(&"Role") && !kinds.contains(&"RoleBinding"), "{values}: no RBAC: {kinds:?}");
    }
}

#[test]
fn certificate_modes_wire_the_ca_bundle() {
    let generated = render("default-values.yaml");
    let secret = find(&generated, "Secret");
    let webhook = find(&generated, "MutatingWebhookConfiguration");
    assert_eq!(secret["data"]["ca.crt"], webhook["webhooks"][0]["clientConfig"]["caBundle"], "one generated CA");
    let cert_manager = render("cert-manager-values.yaml");
    let webhook = find(&cert_manager, "MutatingWebhookConfiguration");
    assert_eq!(
        webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].as_str(),
        Some("mirrorswap/ms-mirrorswap")
    );
    assert_eq!(webhook["webhooks"].as_vec().map(Vec::len), Some(2), "opt-in: mirrorswap's and imageswap's label");
    assert_eq!(find(&cert_manager, "Certificate")["spec"]["secretName"].as_str(), Some("ms-mirrorswap-tls"));
    let existing = render("existing-secret-values.yaml");
    assert!(existing.iter().all(|doc| doc["kind"].as_str() != Some("Secret")), "the user's Secret is not replaced");
    let pod = &find(&existing, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    assert_eq!(pod["containers"][0]["ports"][0]["containerPort"].as_i64(), Some(10443));
}

#[tokio::test]
async fn certs_output_is_served_and_verifies_for_the_service_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
        .args(["certs", "--days", "2", "--out-dir"])
        .arg(&out)
        .arg("--base")
        .arg(Path::new(ROOT).join("manifests/base"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8(output.stdout).unwrap();
    let ca_pem = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(printed.trim()).unwrap()).unwrap();
    assert_eq!(ca_pem, std::fs::read_to_string(out.join("ca.crt")).unwrap());
    let secret = &YamlLoader::load_from_str(&std::fs::read_to_string(out.join("secret.yaml")).unwrap()).unwrap()[0];
    assert_eq!(secret["type"].as_str(), Some("kubernetes.io/tls"));
    assert_eq!(secret["data"]["ca.crt"].as_str(), Some(printed.trim()));
    let kustomization = std::fs::read_to_string(out.join("kustomization.yaml")).unwrap();
    assert!(kustomization.contains("webhooks.*.clientConfig.caBundle"), "{kustomization}");

    let rules = dir.path().join("rules.conf");
    std::fs::write(&rules, "docker.io::harbor.example.org/hub\n").unwrap();
    let path = |file: &Path| file.display().to_string();
    let argv: Vec<String> = ["mirrorswap", "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
        .into_iter()
        .map(String::from)
        .chain(["--tls-cert".into(), path(&out.join("tls.crt")), "--tls-key".into(), path(&out.join("tls.key"))])
        .chain(["--rules".into(), path(&rules)])
        .collect();
    let running = start(serve_args(&argv)).await.expect("serves with the issued certificate");
    for name in ["mirrorswap.mirrorswap.svc", "mirrorswap.mirrorswap.svc.cluster.local"] {
        let mut client = Client::connect_as(running.webhook_addr, &ca_pem, Protocol::Http1, name).await;
        let answer = client.review(&sample("pod.json")).await;
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["patchType"], "JSONPatch", "{name}");
    }
    running.shutdown(std::time::Duration::from_secs(5)).await.unwrap();
}
