//! The deploy artifacts: the Helm chart rendered by real `helm` (installed into
//! target/tools by scripts/install-tools.sh), the plain manifests, and the
//! certificates `mirrorswap certs` issues, served by the real server.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::{Client, Protocol, sample, serve_args};
use mirrorswap::registry::{OnCheckError, SwapPolicy};
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

/// `helm template` with a ci/ values file and `--set` values (an entry starting with `--` is a
/// helm flag, such as `--skip-schema-validation`); Err(stderr) when the render fails.
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
        match set.starts_with("--") {
            true => command.arg(set),
            false => command.args(["--set", set]),
        };
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
    // Under an HPA the Deployment has no `replicas`; `lowest_replicas` checks its minReplicas.
    let replicas = &deployment["spec"]["replicas"];
    assert!(replicas.is_badvalue() || replicas.as_i64().unwrap_or(0) >= 2, "{what}: replicas");
}

/// The lowest replica count of a rendering: the Deployment's, or the HPA's minReplicas.
fn lowest_replicas(documents: &[Yaml]) -> i64 {
    let replicas = &find(documents, "Deployment")["spec"]["replicas"];
    if replicas.is_badvalue() {
        return find(documents, "HorizontalPodAutoscaler")["spec"]["minReplicas"].as_i64().expect("minReplicas");
    }
    replicas.as_i64().expect("replicas")
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
        // Copies on a miss are side effects, which a dry run must not have.
        let side_effects = if what.starts_with("copy-on-miss") { "NoneOnDryRun" } else { "None" };
        assert_eq!(webhook["sideEffects"].as_str(), Some(side_effects), "{what}");
        assert_eq!(webhook["timeoutSeconds"].as_i64(), Some(5), "{what}");
    }
}

#[test]
fn every_rendering_is_hardened_and_never_selects_its_own_namespace() {
    for values in ci_values() {
        let values = values.as_str();
        let documents = render(values);
        assert_hardened(find(&documents, "Deployment"), values);
        assert!(lowest_replicas(&documents) >= 2, "{values}: replicas");
        assert_excludes(&find(&documents, "MutatingWebhookConfiguration")["webhooks"], "mirrorswap", values);
    }
    let documents = manifests();
    assert_hardened(find(&documents, "Deployment"), "manifests");
    assert_excludes(&find(&documents, "MutatingWebhookConfiguration")["webhooks"], "mirrorswap", "manifests");
    let namespace = find(&documents, "Namespace");
    assert_eq!(namespace["metadata"]["labels"]["mirrorswap.io/skip"].as_str(), Some("true"));
}

/// Every rendering (and the plain manifests) starts a server whose flags agree with each other
/// and with the webhook: the request deadline is the API server's, and bodies up to the
/// largest review the API server sends are read.
#[test]
fn every_rendering_starts_a_server_whose_limits_agree_with_the_webhook() {
    let renderings: Vec<(String, Vec<Yaml>)> = ci_values()
        .into_iter()
        .map(|values| {
            let documents = render(&values);
            (values, documents)
        })
        .chain([("manifests".to_owned(), manifests())])
        .collect();
    for (what, documents) in renderings {
        let args = parsed_args(&documents);
        args.check_consistent().unwrap_or_else(|error| panic!("{what}: {error}"));
        for webhook in find(&documents, "MutatingWebhookConfiguration")["webhooks"].as_vec().unwrap() {
            let seconds = webhook["timeoutSeconds"].as_i64().unwrap() as u64;
            assert_eq!(args.request_timeout, Duration::from_secs(seconds), "{what}");
        }
        assert!(args.max_body_bytes >= mirrorswap::server::args::DEFAULT_MAX_BODY_BYTES, "{what}");
    }
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

/// The Deployment's container of a rendering.
fn container(documents: &[Yaml]) -> &Yaml {
    &find(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

/// The registry-check flags among the container's arguments.
fn registry_args(documents: &[Yaml]) -> Vec<&str> {
    let flags = ["--swap-policy", "--on-check-error", "--check-", "--registry-", "--insecure-registry"];
    strings(&container(documents)["args"]).into_iter().filter(|arg| flags.iter().any(|f| arg.starts_with(f))).collect()
}

/// The container's arguments as `mirrorswap serve` parses them (a flag it lacks fails here).
fn parsed_args(documents: &[Yaml]) -> mirrorswap::server::args::ServeArgs {
    let mut argv = vec!["mirrorswap".to_owned()];
    argv.extend(strings(&container(documents)["args"]).into_iter().map(str::to_owned));
    serve_args(&argv)
}

/// `(name, mountPath, readOnly)` of each registry mount, and each registry volume.
fn registry_mounts(documents: &[Yaml]) -> (Vec<(&str, &str, bool)>, Vec<&Yaml>) {
    let is_registry = |yaml: &Yaml| yaml["name"].as_str().is_some_and(|name| name.starts_with("registry-"));
    let mounts = container(documents)["volumeMounts"].as_vec().unwrap().iter().filter(|m| is_registry(m));
    let mounts = mounts
        .map(|m| (m["name"].as_str().unwrap(), m["mountPath"].as_str().unwrap(), m["readOnly"].as_bool() == Some(true)))
        .collect();
    let pod = &find(documents, "Deployment")["spec"]["template"]["spec"];
    (mounts, pod["volumes"].as_vec().unwrap().iter().filter(|v| is_registry(v)).collect())
}

#[test]
fn registry_check_values_render_as_serve_flags_and_read_only_mounts() {
    // Off (swapPolicy always, the server's default): no flag, no mount, the arguments unchanged.
    let default = render("default-values.yaml");
    assert!(registry_args(&default).is_empty(), "{:?}", registry_args(&default));
    assert_eq!(registry_mounts(&default), (vec![], vec![]));

    let documents = render("registry-check-values.yaml");
    assert_eq!(
        registry_args(&documents),
        [
            "--swap-policy=exists",
            "--on-check-error=swap",
            "--check-timeout=2s",
            "--check-cache-ttl=10m",
            "--check-negative-ttl=1m",
            "--check-cache-entries=50000",
            "--check-backoff=5s",
            "--check-max-lookups=64",
            "--check-host-concurrency=8",
            "--registry-auth=/etc/mirrorswap/registry-auth/.dockerconfigjson",
            "--registry-ca=/etc/mirrorswap/registry-ca/ca.pem",
            "--insecure-registry=registry.local:5000",
        ]
    );
    let (mounts, volumes) = registry_mounts(&documents);
    assert_eq!(
        mounts,
        [
            ("registry-auth", "/etc/mirrorswap/registry-auth", true),
            ("registry-ca", "/etc/mirrorswap/registry-ca", true)
        ]
    );
    // Whole-directory mounts of one key each, so an edited Secret or ConfigMap reaches the pod.
    assert_eq!(volumes[0]["secret"]["secretName"].as_str(), Some("harbor-pull"));
    assert_eq!(volumes[0]["secret"]["items"][0]["key"].as_str(), Some(".dockerconfigjson"));
    assert_eq!(volumes[0]["secret"]["items"][0]["path"].as_str(), Some(".dockerconfigjson"));
    assert_eq!(volumes[1]["configMap"]["name"].as_str(), Some("harbor-ca"));
    assert_eq!(volumes[1]["configMap"]["items"][0]["key"].as_str(), Some("ca.pem"));
    assert!(container(&documents)["volumeMounts"].as_vec().unwrap().iter().all(|m| m["subPath"].is_badvalue()));
    assert_hardened(find(&documents, "Deployment"), "registry check");
    // The server parses the rendered arguments into these settings.
    let args = parsed_args(&documents);
    assert_eq!(args.policy.swap_policy, SwapPolicy::Exists);
    assert_eq!(args.policy.on_check_error, OnCheckError::Swap);
    assert_eq!(args.check.check_timeout, Duration::from_secs(2));
    assert_eq!(args.check.check_cache_ttl, Duration::from_secs(600));
    assert_eq!(args.check.check_negative_ttl, Duration::from_secs(60));
    assert_eq!(args.check.check_cache_entries, 50_000);
    assert_eq!(args.check.check_backoff, Duration::from_secs(5));
    assert_eq!((args.policy.check_max_lookups, args.check.check_host_concurrency), (64, 8));
    assert_eq!(args.check.insecure_registries, ["registry.local:5000"]);
    assert_eq!(args.check.registry_auth.as_deref(), Some(Path::new("/etc/mirrorswap/registry-auth/.dockerconfigjson")));

    // The CA from a Secret instead; the defaults of the check flags.
    let sets = ["registryCheck.swapPolicy=exists", "registryCa.existingSecret=mirror-ca"];
    let documents = render_with("default-values.yaml", &sets).unwrap();
    assert_eq!(
        registry_args(&documents),
        [
            "--swap-policy=exists",
            "--on-check-error=keep",
            "--check-timeout=1s",
            "--check-cache-ttl=5m",
            "--check-negative-ttl=30s",
            "--check-cache-entries=100000",
            "--check-backoff=3s",
            "--check-max-lookups=32",
            "--check-host-concurrency=16",
            "--registry-ca=/etc/mirrorswap/registry-ca/ca.crt",
        ]
    );
    let args = parsed_args(&documents);
    assert_eq!((args.policy.swap_policy, args.policy.on_check_error), (SwapPolicy::Exists, OnCheckError::Keep));
    assert_eq!(args.check.registry_ca.as_deref(), Some(Path::new("/etc/mirrorswap/registry-ca/ca.crt")));
    let (_, volumes) = registry_mounts(&documents);
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0]["secret"]["secretName"].as_str(), Some("mirror-ca"));
    assert_eq!(volumes[0]["secret"]["items"][0]["path"].as_str(), Some("ca.crt"));
}

#[test]
fn a_registry_check_the_webhook_timeout_leaves_no_room_for_fails_the_render() {
    for (policy, check, webhook, renders) in [
        ("exists", "1s", 5, true),
        ("exists", "4s", 5, true),
        ("exists", "4001ms", 5, false),
        ("exists", "2s500ms", 3, false),
        ("exists", "2s", 3, true),
        ("exists", "1m", 30, false),
        ("exists", "29s", 30, true),
        ("exists", "8s", 10, true),
        ("exists", "9500ms", 10, false),
        // always never asks a registry: the timeout is unused.
        ("always", "1m", 5, true),
        ("always", "1m", 12, true),
    ] {
        let sets = [
            format!("registryCheck.swapPolicy={policy}"),
            format!("registryCheck.timeout={check}"),
            format!("webhook.timeoutSeconds={webhook}"),
        ];
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let rendered = render_with("default-values.yaml", &sets);
        if renders {
            let documents = rendered.unwrap_or_else(|error| panic!("{sets:?}: {error}"));
            let webhook_timeout =
                find(&documents, "MutatingWebhookConfiguration")["webhooks"][0]["timeoutSeconds"].as_i64();
            assert_eq!(webhook_timeout, Some(webhook), "{sets:?}");
            // The server gives up when the API server does, not at its own 5s default, and it
            // starts with these flags.
            let args = parsed_args(&documents);
            assert_eq!(args.request_timeout, Duration::from_secs(webhook as u64), "{sets:?}");
            args.check_consistent().unwrap_or_else(|error| panic!("{sets:?}: {error}"));
        } else {
            let error = rendered.expect_err("the API server would give up first");
            let says = format!(
                "webhook.timeoutSeconds ({webhook}s) must be at least registryCheck.timeout ({check}) plus 1s: \
                 the API server, and mirrorswap's --request-timeout"
            );
            assert!(error.contains(&says), "{sets:?}: {error}");
        }
    }
}

#[test]
fn the_registry_check_overlay_adds_the_flags_and_a_read_only_credentials_mount() {
    let documents = kustomized("registry-check");
    let args = registry_args(&documents);
    assert_eq!(
        args,
        [
            "--swap-policy=exists",
            "--on-check-error=keep",
            "--check-timeout=1s",
            "--registry-auth=/etc/mirrorswap/registry-auth/.dockerconfigjson",
        ]
    );
    let (mounts, volumes) = registry_mounts(&documents);
    assert_eq!(mounts, [("registry-auth", "/etc/mirrorswap/registry-auth", true)]);
    assert_eq!(volumes[0]["secret"]["secretName"].as_str(), Some("mirrorswap-registry-auth"));
    assert_eq!(volumes[0]["secret"]["items"][0]["key"].as_str(), Some(".dockerconfigjson"));
    assert_hardened(find(&documents, "Deployment"), "manifests/registry-check");
    let parsed = parsed_args(&documents);
    assert_eq!(parsed.policy.swap_policy, SwapPolicy::Exists);
    assert_eq!(parsed.check.check_timeout, Duration::from_secs(1));
    // The API server waits at least 1s longer than the lookups.
    for webhook in find(&documents, "MutatingWebhookConfiguration")["webhooks"].as_vec().unwrap() {
        assert!(webhook["timeoutSeconds"].as_i64().unwrap() >= 2, "timeoutSeconds above --check-timeout=1s + 1s");
    }
}

#[test]
fn pinning_and_platform_values_render_as_serve_flags() {
    let sets = [
        "registryCheck.swapPolicy=exists",
        "registryCheck.pinDigest=true",
        "registryCheck.requirePlatforms={linux/amd64,linux/arm64}",
        "validation.enabled=true",
        "validation.requireDigest=true",
    ];
    let documents = render_with("default-values.yaml", &sets).unwrap();
    let args = strings(&container(&documents)["args"]);
    for flag in ["--pin-digest", "--require-platforms=linux/amd64,linux/arm64", "--require-digest"] {
        assert!(args.contains(&flag), "{flag} in {args:?}");
    }
    let parsed = parsed_args(&documents);
    assert!(parsed.pin.pin_digest && parsed.validation.require_digest);
    let platforms: Vec<String> = parsed.pin.require_platforms.iter().map(ToString::to_string).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    parsed.check_consistent().expect("consistent flags");
    // Off by default: no flag.
    let default = strings(&container(&render("default-values.yaml"))["args"]).join(" ");
    assert!(!default.contains("--pin-digest") && !default.contains("--require-"), "{default}");
    // Without exists there is nothing to pin to: the render says so, as the server would.
    for set in ["registryCheck.pinDigest=true", "registryCheck.requirePlatforms={linux/arm64}"] {
        let error = render_with("default-values.yaml", &[set]).expect_err(set);
        assert!(error.contains("need registryCheck.swapPolicy exists"), "{set}: {error}");
    }
    let error = render_with("default-values.yaml", &["registryCheck.requirePlatforms={linux}"]).expect_err("no arch");
    assert!(error.contains("/registryCheck/requirePlatforms/0"), "{error}");
}

#[test]
fn copy_on_miss_values_render_as_serve_flags_a_source_login_mount_and_side_effects_on_dry_run_none() {
    let documents = render("copy-on-miss-values.yaml");
    let args = strings(&container(&documents)["args"]);
    for flag in [
        "--copy-on-miss",
        "--copy-allow-source=quay.io/team",
        "--copy-queue=32",
        "--copy-concurrency=1",
        "--copy-max-bytes=1GiB",
        "--copy-timeout=10m",
        "--source-auth=/etc/mirrorswap/source-auth/.dockerconfigjson",
    ] {
        assert!(args.contains(&flag), "{flag} in {args:?}");
    }
    let parsed = parsed_args(&documents);
    parsed.check_consistent().expect("consistent flags");
    assert!(parsed.copy.copy_on_miss);
    assert_eq!((parsed.copy.copy_queue, parsed.copy.copy_concurrency, parsed.copy.copy_max_bytes), (32, 1, 1 << 30));
    // The sources' login: its own read-only mount, never the mirror's.
    let mounts = container(&documents)["volumeMounts"].as_vec().unwrap();
    let mount = mounts.iter().find(|m| m["name"].as_str() == Some("source-auth")).expect("a source-auth mount");
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    let pod = &find(&documents, "Deployment")["spec"]["template"]["spec"];
    let volume = pod["volumes"].as_vec().unwrap().iter().find(|v| v["name"].as_str() == Some("source-auth")).unwrap();
    assert_eq!(volume["secret"]["secretName"].as_str(), Some("upstream-logins"));
    let webhook = &find(&documents, "MutatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(webhook["sideEffects"].as_str(), Some("NoneOnDryRun"), "copies are side effects, never on a dry run");
    let notes = notes("copy-on-miss-values.yaml", &[]);
    assert!(notes.contains("Egress: the pod connects to those sources' registries"), "{notes}");
    // Off by default: no flag, no mount, no side effects.
    let default = render("default-values.yaml");
    let args = strings(&container(&default)["args"]).join(" ");
    assert!(!args.contains("--copy-") && !args.contains("--source-auth"), "{args}");
    assert_eq!(find(&default, "MutatingWebhookConfiguration")["webhooks"][0]["sideEffects"].as_str(), Some("None"));
    // Without exists nothing says what the mirror lacks: the render fails, as the server would.
    let error = render_with("default-values.yaml", &["copyOnMiss.enabled=true"]).expect_err("without exists");
    assert!(error.contains("copyOnMiss.enabled needs registryCheck.swapPolicy exists"), "{error}");
    for (set, says) in [
        ("copyOnMiss.queue=0", "/copyOnMiss/queue"),
        ("copyOnMiss.maxBytes=lots", "/copyOnMiss/maxBytes"),
        ("copyOnMiss.allowSources[0]=https://quay.io", "/copyOnMiss/allowSources/0"),
        ("copyOnMiss.sourceAuth.existingSecret=Up_Stream", "/copyOnMiss/sourceAuth/existingSecret"),
    ] {
        let error = render_with("copy-on-miss-values.yaml", &[set]).expect_err(set);
        assert!(error.contains(says), "{set}: {error}");
    }
}

#[test]
fn bad_registry_check_values_fail_the_render_naming_the_value() {
    for (set, says) in [
        ("registryCheck.swapPolicy=sometimes", "/registryCheck/swapPolicy"),
        ("registryCheck.onCheckError=retry", "/registryCheck/onCheckError"),
        ("registryCheck.timeout=1 second", "/registryCheck/timeout"),
        ("registryCheck.cacheEntries=0", "/registryCheck/cacheEntries"),
        ("registryCheck.maxLookups=0", "/registryCheck/maxLookups"),
        ("registryCheck.hostConcurrency=0", "/registryCheck/hostConcurrency"),
        ("registryCheck.insecureRegistries[0]=https://registry.local", "/registryCheck/insecureRegistries/0"),
        ("registryAuth.existingSecret=Harbor_Pull", "/registryAuth/existingSecret"),
    ] {
        let error = render_with("default-values.yaml", &[set]).expect_err(set);
        assert!(error.contains(says), "{set}: {error}");
    }
    let sets = ["registryCa.existingSecret=mirror-ca", "registryCa.existingConfigMap=mirror-ca"];
    let error = render_with("default-values.yaml", &sets).expect_err("two CA sources");
    assert!(
        error.contains("registryCa.existingSecret (mirror-ca) and registryCa.existingConfigMap (mirror-ca)"),
        "{error}"
    );
}

#[test]
fn durations_the_chart_cannot_read_fail_the_render_even_without_the_schema() {
    // The schema refuses them first; with it skipped (or loosened), the chart's own reading
    // must refuse them too rather than read them as 0 and pass the timeout check.
    for timeout in ["1d", "500us", "1 s", "1.5s", "s", "", "10"] {
        let set = format!("registryCheck.timeout={timeout}");
        for checked in [true, false] {
            let mut sets = vec!["registryCheck.swapPolicy=exists", set.as_str()];
            if !checked {
                sets.push("--skip-schema-validation");
            }
            let error = render_with("default-values.yaml", &sets).expect_err(&set);
            let says = match checked {
                true => "/registryCheck/timeout".to_owned(),
                false => format!("registryCheck.timeout ({timeout:?}) is not a duration the chart reads"),
            };
            assert!(error.contains(&says), "{set} (schema {checked}): {error}");
        }
    }
    for (timeout, renders) in [("1m30s", false), ("3s500ms", true), ("1h", false)] {
        let sets = ["registryCheck.swapPolicy=exists", "webhook.timeoutSeconds=5", "--skip-schema-validation"];
        let set = format!("registryCheck.timeout={timeout}");
        let rendered = render_with("default-values.yaml", &[&sets[..], &[set.as_str()]].concat());
        assert_eq!(rendered.is_ok(), renders, "{set}: {rendered:?}");
    }
}

#[test]
fn a_request_timeout_in_extra_args_fails_the_render_naming_the_value_to_set() {
    let error = render_with("default-values.yaml", &["server.extraArgs[0]=--request-timeout=9s"]).unwrap_err();
    assert!(
        error.contains(
            "server.extraArgs sets --request-timeout=9s: the chart sets --request-timeout from webhook.timeoutSeconds"
        ),
        "{error}"
    );
    // Every other extra argument still goes through.
    let documents = render_with("default-values.yaml", &["server.extraArgs[0]=--max-connections=64"]).unwrap();
    assert_eq!(parsed_args(&documents).max_connections, 64);
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
        let replicas = lowest_replicas(&documents);
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

/// The operations kit (ci/ops-kit-values.yaml): the HPA owns the replica count, the
/// PrometheusRule carries files/prometheus-rules.yaml as is, the dashboard is a sidecar ConfigMap.
#[test]
fn ops_kit_renders_hpa_prometheus_rule_and_dashboard() {
    let documents = render("ops-kit-values.yaml");
    assert!(find(&documents, "Deployment")["spec"]["replicas"].is_badvalue(), "the HPA owns replicas");
    let hpa = &find(&documents, "HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"].as_str(), Some("autoscaling/v2"));
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"].as_str(),
        find(&documents, "Deployment")["metadata"]["name"].as_str()
    );
    let targets: Vec<_> = hpa["spec"]["metrics"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|m| {
            (m["resource"]["name"].as_str().unwrap(), m["resource"]["target"]["averageUtilization"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(targets, [("cpu", 75), ("memory", 80)]);
    let rule = find(&documents, "PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"].as_str(), Some("kube-prometheus-stack"));
    let file = std::fs::read_to_string(Path::new(ROOT).join("helm/mirrorswap/files/prometheus-rules.yaml")).unwrap();
    assert_eq!(
        unordered(&rule["spec"]),
        unordered(&YamlLoader::load_from_str(&file).unwrap()[0]),
        "the rules promtool tests"
    );
    let dashboard = documents
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("ConfigMap") && !doc["data"]["mirrorswap.json"].is_badvalue())
        .expect("the dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"].as_str(), Some("1"));
    let json: serde_json::Value = serde_json::from_str(dashboard["data"]["mirrorswap.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "mirrorswap");
    for kind in ["HorizontalPodAutoscaler", "PrometheusRule"] {
        assert!(render("default-values.yaml").iter().all(|doc| doc["kind"].as_str() != Some(kind)), "{kind} is opt-in");
    }
    for (sets, message) in [
        (
            &["autoscaling.targetCPUUtilizationPercentage=0", "autoscaling.targetMemoryUtilizationPercentage=0"][..],
            "needs targetCPU",
        ),
        (&["autoscaling.minReplicas=7", "autoscaling.maxReplicas=3"][..], "must not exceed"),
        (&["autoscaling.minReplicas=2", "podDisruptionBudget.minAvailable=2"][..], "drains would block"),
    ] {
        let error = render_with("ops-kit-values.yaml", sets).expect_err("refused");
        assert!(error.contains(message), "{sets:?}: {error}");
    }
}

/// A YAML document as JSON, so mappings compare regardless of key order.
fn unordered(yaml: &Yaml) -> serde_json::Value {
    match yaml {
        Yaml::Hash(hash) => {
            hash.iter().map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), unordered(v))).collect()
        }
        Yaml::Array(items) => items.iter().map(unordered).collect(),
        Yaml::String(text) => text.clone().into(),
        Yaml::Integer(number) => (*number).into(),
        Yaml::Boolean(flag) => (*flag).into(),
        other => format!("{other:?}").into(),
    }
}
