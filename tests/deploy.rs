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
fn ci_values() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("helm/mirrorswap/ci"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    files.sort();
    for known in ["default-values.yaml", "palette-values.yaml", "workloads-values.yaml", "image-swap-values.yaml"] {
        assert!(files.iter().any(|file| file == known), "{known} in {files:?}");
    }
    files
}

fn helm() -> PathBuf {
    common::tools::tool("helm", "MIRRORSWAP_HELM")
}

/// `helm template` of the chart with `values` (a file under helm/mirrorswap/ci/), as documents.
fn render(values: &str) -> Vec<Yaml> {
    render_with(values, &[]).unwrap_or_else(|error| panic!("helm template {values}: {error}"))
}

/// `helm template` with a ci/ values file and `--set` values; Err(stderr) when the render fails.
fn render_with(values: &str, sets: &[&str]) -> Result<Vec<Yaml>, String> {
    let output = helm_run("template", values, sets);
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(YamlLoader::load_from_str(&String::from_utf8(output.stdout).unwrap()).expect("rendered YAML"))
}

/// `helm template` or `helm install --dry-run=client` (which prints NOTES) of the chart.
fn helm_run(how: &str, values: &str, sets: &[&str]) -> std::process::Output {
    let chart = Path::new(ROOT).join("helm/mirrorswap");
    let mut command = Command::new(helm());
    match how {
        "template" => command.arg("template"),
        _ => command.args(["install", "--dry-run=client"]),
    };
    command.args(["ms", "--namespace", "mirrorswap"]).arg(&chart).arg("--values").arg(chart.join("ci").join(values));
    for set in sets {
        command.args(["--set", set]);
    }
    command.output().expect("run helm")
}

/// `kubectl kustomize manifests/DIR`, as documents.
fn kustomized(dir: &str) -> Vec<Yaml> {
    common::tools::kustomize(&Path::new(ROOT).join("manifests").join(dir))
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
    }
}

#[test]
fn every_rendering_is_hardened_and_never_selects_its_own_namespace() {
    for values in ci_values() {
        let values = values.as_str();
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

    for values in ci_values()
        .iter()
        .filter(|values| !values.starts_with("secret-source") && !values.starts_with("palette-detected"))
    {
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

/// What one webhook is sent, as (apiGroup/resource, operations), sorted.
fn sent(webhook: &Yaml) -> Vec<(String, Vec<String>)> {
    let mut sent = Vec::new();
    for rule in webhook["rules"].as_vec().expect("rules") {
        assert_eq!(strings(&rule["apiVersions"]), ["v1"]);
        assert_eq!(rule["scope"].as_str(), Some("Namespaced"));
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                let operations = strings(&rule["operations"]).into_iter().map(str::to_owned).collect();
                sent.push((format!("{group}/{resource}"), operations));
            }
        }
    }
    sent.sort();
    sent
}

/// Pods on CREATE, the ephemeral containers subresource on UPDATE, and with `workloads` the pod
/// templates of these eight kinds on CREATE and UPDATE; nothing else.
fn expected_sends(workloads: bool) -> Vec<(String, Vec<String>)> {
    let both = || vec!["CREATE".to_owned(), "UPDATE".to_owned()];
    let mut expected = vec![("/pods".to_owned(), vec!["CREATE".to_owned()])];
    expected.push(("/pods/ephemeralcontainers".to_owned(), vec!["UPDATE".to_owned()]));
    if workloads {
        for kind in ["apps/deployments", "apps/statefulsets", "apps/daemonsets", "apps/replicasets"] {
            expected.push((kind.to_owned(), both()));
        }
        for kind in ["/replicationcontrollers", "/podtemplates", "batch/jobs", "batch/cronjobs"] {
            expected.push((kind.to_owned(), both()));
        }
    }
    expected.sort();
    expected
}

fn assert_sends(documents: &[Yaml], workloads: bool, what: &str) {
    let webhooks = find(documents, "MutatingWebhookConfiguration")["webhooks"].as_vec().unwrap();
    assert!(!webhooks.is_empty(), "{what}");
    for webhook in webhooks {
        let sent = sent(webhook);
        assert_eq!(sent, expected_sends(workloads), "{what}: {}", webhook["name"].as_str().unwrap_or(""));
        let pod_updates =
            sent.iter().any(|(kind, operations)| kind == "/pods" && operations.iter().any(|o| o == "UPDATE"));
        assert!(!pod_updates, "{what}: Pod updates wait for the webhook");
    }
}

#[test]
fn no_webhook_sends_pod_updates_and_workloads_only_when_opted_in() {
    for values in ci_values() {
        let workloads = values == "workloads-values.yaml";
        assert_sends(&render(&values), workloads, &values);
    }
    for mode in ["opt-out", "opt-in"] {
        let set = format!("webhook.mode={mode}");
        let on = render_with("default-values.yaml", &["webhook.workloads=true", &set]).unwrap();
        assert_sends(&on, true, &format!("workloads, {mode}"));
        let off = render_with("default-values.yaml", &["webhook.workloads=false", &set]).unwrap();
        assert_sends(&off, false, &format!("no workloads, {mode}"));
    }
    assert_eq!(
        find(&render("workloads-values.yaml"), "MutatingWebhookConfiguration")["webhooks"].as_vec().unwrap().len(),
        2
    );
    assert_sends(&manifests(), false, "manifests/base files");
    for (dir, workloads, webhooks) in
        [("base", false, 1), ("opt-in", false, 2), ("workloads", true, 1), ("opt-in-workloads", true, 2)]
    {
        let documents = kustomized(dir);
        assert_sends(&documents, workloads, dir);
        let count = find(&documents, "MutatingWebhookConfiguration")["webhooks"].as_vec().unwrap().len();
        assert_eq!(count, webhooks, "{dir}");
    }
}

/// Where the rendered Deployment reads its rules: `--rules-secret=…` or `--rules=…`, and `--format`.
fn rules_args(documents: &[Yaml]) -> (String, String) {
    let args = strings(&find(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]);
    let source = args.iter().find(|arg| arg.starts_with("--rules")).expect("a rules flag").to_string();
    let format = args.iter().find(|arg| arg.starts_with("--format=")).expect("--format").to_string();
    (source, format)
}

fn notes(values: &str, sets: &[&str]) -> String {
    let output = helm_run("install", values, sets);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout.split_once("NOTES:").expect("NOTES").1.to_owned()
}

#[test]
fn explicit_rules_beat_palette_detection() {
    const DETECTED: &str = "palette.detectedSecret=present";
    // Palette's values alone: the Secret when it exists, else the mirrorRegistries list.
    let detected = render_with("palette-values.yaml", &[DETECTED]).unwrap();
    assert_eq!(rules_args(&detected).0, "--rules-secret=jet-system/registry-info:MIRROR_REGISTRIES");
    assert_eq!(find(&detected, "Role")["metadata"]["namespace"].as_str(), Some("jet-system"));
    assert_eq!(rules_args(&render("palette-detected-values.yaml")), rules_args(&detected));
    let absent = render_with("palette-values.yaml", &["palette.detectedSecret=absent"]).unwrap();
    assert_eq!(rules_args(&absent).0, "--rules=/etc/mirrorswap/rules/rules.conf");
    let off = render_with("palette-values.yaml", &[DETECTED, "rules.fromSecret.paletteRegistryInfo=false"]).unwrap();
    assert_eq!(rules_args(&off).0, "--rules=/etc/mirrorswap/rules/rules.conf");
    assert!(notes("palette-values.yaml", &[DETECTED]).contains("the Secret jet-system/registry-info exists"));

    // Each explicit source wins over the detected Secret, and NOTES says why.
    let cases: [(&str, &str, &str); 4] = [
        ("rules.existingConfigMap.name=my-rules", "--rules=/etc/mirrorswap/rules/rules.conf", "my-rules"),
        (
            "rules.inline={docker.io::mirror.example.org/hub}",
            "--rules=/etc/mirrorswap/rules/rules.conf",
            "ms-mirrorswap-rules",
        ),
        (
            "imageSwap.imageChange=docker.io::mirror.example.org/hub",
            "--rules=/etc/mirrorswap/rules/rules.conf",
            "ms-mirrorswap-rules",
        ),
        ("rules.fromSecret.name=platform-rules", "--rules-secret=jet-system/platform-rules:MIRROR_REGISTRIES", ""),
    ];
    for (explicit, flag, config_map) in cases {
        let documents = render_with("palette-values.yaml", &[DETECTED, explicit]).unwrap();
        assert_eq!(rules_args(&documents).0, flag, "{explicit}");
        let volumes = find(&documents, "Deployment")["spec"]["template"]["spec"]["volumes"].as_vec().unwrap().clone();
        let mounted = volumes.iter().find_map(|volume| volume["configMap"]["name"].as_str()).unwrap_or("");
        assert_eq!(mounted, config_map, "{explicit}");
        let roles: Vec<_> = documents.iter().filter(|doc| doc["kind"].as_str() == Some("Role")).collect();
        let reads_secret = flag.starts_with("--rules-secret");
        assert_eq!(roles.len(), usize::from(reads_secret), "{explicit}: a Role only for a Secret source");
        if reads_secret {
            assert_eq!(strings(&roles[0]["rules"][0]["resourceNames"]), ["platform-rules"], "not registry-info");
        }
        if explicit.starts_with("rules.inline") || explicit.starts_with("imageSwap") {
            let text = find(&documents, "ConfigMap")["data"]["rules.conf"].as_str().unwrap().to_owned();
            assert!(text.contains("docker.io::mirror.example.org/hub"), "{text}");
            assert!(!text.contains("harbor.example.org/airgap-images"), "Palette's list is not mixed in: {text}");
        }
        let notes = notes("palette-values.yaml", &[DETECTED, explicit]);
        let name = explicit.split_once('=').unwrap().0.trim_end_matches(".name");
        assert!(notes.contains(name) && notes.contains("an explicit source wins"), "{explicit}: {notes}");
    }
}

#[test]
fn two_explicit_rules_sources_fail_the_render_naming_both() {
    let sources = [
        ("rules.fromSecret", "rules.fromSecret.name=platform-rules"),
        ("rules.existingConfigMap", "rules.existingConfigMap.name=my-rules"),
        ("rules.inline", "rules.inline={docker.io::mirror.example.org/hub}"),
        ("imageSwap.imageChange", "imageSwap.imageChange=docker.io::mirror.example.org/hub"),
    ];
    for (i, (first, first_set)) in sources.iter().enumerate() {
        for (second, second_set) in &sources[i + 1..] {
            let error = render_with("default-values.yaml", &[first_set, second_set]).expect_err("two sources");
            assert!(error.contains(first) && error.contains(second), "{first} + {second}: {error}");
            assert!(error.contains("one source"), "{error}");
        }
    }
}

#[test]
fn image_swap_image_change_renders_into_the_rules_config_map_as_maps() {
    // rules.format=yaml is for the user's own objects; the chart's ConfigMap is maps text.
    for sets in [&[][..], &["rules.format=yaml"][..]] {
        let documents = render_with("image-swap-values.yaml", sets).unwrap();
        let text = find(&documents, "ConfigMap")["data"]["rules.conf"].as_str().expect("rules.conf").to_owned();
        assert!(text.contains("[EXACT]example.io/my-org/app:1.0::"), "{text}");
        let rules = load_text(&text, "chart", Format::Maps, Default::default()).expect("maps rules load").rules;
        let rewrite = |image: &str| match rules.rewrite(image) {
            Decision::Rewritten { image, .. } => image,
            Decision::Unchanged(_) => image.to_owned(),
        };
        assert_eq!(
            rewrite("us-docker.pkg.dev/palette-images/packs/flannel/0.27.0/cni-plugins:v1.6.2"),
            "example.registry.com/internal-images/packs/flannel/0.27.0/cni-plugins:v1.6.2"
        );
        assert_eq!(rewrite("example.private.io/team/app:1"), "harbor.internal.example.com/team/app:1");
        assert_eq!(rewrite("example.io/my-org/app:1.0"), "harbor.internal.example.com/my-org/app:1.0");
        assert_eq!(rules_args(&documents), ("--rules=/etc/mirrorswap/rules/rules.conf".into(), "--format=maps".into()));
    }
}

/// Evictions the rendered PDB allows at `replicas` pods (None: no PDB rendered).
fn allowed_disruptions(documents: &[Yaml], replicas: i64) -> Option<i64> {
    let pdb = documents.iter().find(|doc| doc["kind"].as_str() == Some("PodDisruptionBudget"))?;
    let spec = &pdb["spec"];
    let count = |value: &Yaml, round_up: bool| match (value.as_i64(), value.as_str()) {
        (Some(n), _) => n,
        (None, Some(percent)) => {
            let p: i64 = percent.trim_end_matches('%').parse().unwrap();
            if round_up { (p * replicas + 99) / 100 } else { p * replicas / 100 }
        }
        _ => panic!("{value:?}"),
    };
    Some(if !spec["maxUnavailable"].is_badvalue() {
        count(&spec["maxUnavailable"], false)
    } else {
        replicas - count(&spec["minAvailable"], true)
    })
}

#[test]
fn no_pod_disruption_budget_blocks_a_drain() {
    for values in ci_values() {
        let documents = render(&values);
        let replicas = find(&documents, "Deployment")["spec"]["replicas"].as_i64().unwrap();
        if let Some(allowed) = allowed_disruptions(&documents, replicas) {
            assert!(allowed >= 1, "{values}: {allowed} evictions allowed at {replicas} replicas");
        }
    }
    let default = render("default-values.yaml");
    assert_eq!(allowed_disruptions(&default, 2), Some(1), "two replicas, one may go");
    // One replica: no budget at all, whatever minAvailable says.
    for sets in [&["replicaCount=1"][..], &["replicaCount=1", "podDisruptionBudget.minAvailable=1"][..]] {
        assert_eq!(allowed_disruptions(&render_with("default-values.yaml", sets).unwrap(), 1), None, "{sets:?}");
    }
    for (sets, replicas, allowed) in [
        (&["replicaCount=3", "podDisruptionBudget.minAvailable=2"][..], 3, 1),
        (&["podDisruptionBudget.minAvailable=50%"][..], 2, 1),
        (&["replicaCount=4", "podDisruptionBudget.maxUnavailable=2"][..], 4, 2),
    ] {
        let documents = render_with("default-values.yaml", sets).unwrap();
        assert_eq!(allowed_disruptions(&documents, replicas), Some(allowed), "{sets:?}");
    }
    for sets in [
        &["podDisruptionBudget.minAvailable=2"][..],
        &["replicaCount=3", "podDisruptionBudget.minAvailable=3"][..],
        &["podDisruptionBudget.minAvailable=100%"][..],
        &["podDisruptionBudget.minAvailable=60%"][..],
    ] {
        let error = render_with("default-values.yaml", sets).expect_err("a budget that allows no eviction");
        assert!(error.contains("podDisruptionBudget.minAvailable") && error.contains("drains would block"), "{error}");
    }
}

#[test]
fn colliding_or_reserved_host_network_ports_fail_the_render() {
    let host = |webhook: u32, admin: u32| {
        let sets = [
            "hostNetwork.enabled=true".to_owned(),
            format!("hostNetwork.webhookPort={webhook}"),
            format!("hostNetwork.adminPort={admin}"),
        ];
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        render_with("default-values.yaml", &sets)
    };
    let error = host(10443, 10443).expect_err("one port twice");
    assert!(error.contains("hostNetwork.webhookPort and hostNetwork.adminPort are both 10443"), "{error}");
    for (port, component) in [
        (10250, "kubelet API"),
        (10248, "kubelet healthz"),
        (10255, "kubelet read-only"),
        (10249, "kube-proxy"),
        (10256, "kube-proxy"),
        (10257, "kube-controller-manager"),
        (10259, "kube-scheduler"),
        (6443, "kube-apiserver"),
        (2379, "etcd"),
    ] {
        let error = host(port, 10444).expect_err("reserved webhook port");
        assert!(error.contains(&format!("hostNetwork.webhookPort={port}")) && error.contains(component), "{error}");
        let error = host(10443, port).expect_err("reserved admin port");
        assert!(error.contains(&format!("hostNetwork.adminPort={port}")), "{error}");
    }
    let error = host(443, 10444).expect_err("privileged port");
    assert!(error.contains("below 1024"), "{error}");
    let documents = host(9443, 9444).expect("free ports render");
    let ports = &find(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert_eq!((ports[0]["containerPort"].as_i64(), ports[1]["containerPort"].as_i64()), (Some(9443), Some(9444)));
    // Off the host network the ports are the pod's own: the same values do not matter.
    assert!(
        render_with("default-values.yaml", &["hostNetwork.webhookPort=10250", "hostNetwork.adminPort=10250"]).is_ok()
    );
}
