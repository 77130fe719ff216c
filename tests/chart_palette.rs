//! The chart through real helm, for what a Palette user brings (issue 25): the image-swap
//! values' mirror credentials, CA and insecureSkipVerify reach the registry checks (a Secret
//! mounted like registryAuth, never args, env or NOTES) or fail the render naming the value to
//! set; the rendered files make a real registry answer `present` where without them it
//! answers 401; every value has a description; a malformed `rules.inline` entry fails at
//! `helm template`, not at pod start.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use common::registry::{Auth, PASSWORD, Registry, USER};
use yaml_rust2::{Yaml, YamlLoader};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn chart() -> PathBuf {
    Path::new(ROOT).join("helm/mirrorswap")
}

/// `helm template` (or `install --dry-run=client`, which prints NOTES) with Palette's
/// image-swap values and `args`.
fn helm(how: &str, args: &[&str]) -> Output {
    let mut command = Command::new(common::tools::tool("helm", "MIRRORSWAP_HELM"));
    match how {
        "template" => command.arg("template"),
        _ => command.args(["install", "--dry-run=client"]).env("KUBECONFIG", "/nonexistent"),
    };
    command
        .args(["ms", "--namespace", "mirrorswap"])
        .arg(chart())
        .arg("--values")
        .arg(chart().join("ci/palette-values.yaml"))
        .args(args);
    command.output().expect("run helm")
}

fn rendered(args: &[&str]) -> Vec<Yaml> {
    let output = helm("template", args);
    assert!(output.status.success(), "helm template: {}", String::from_utf8_lossy(&output.stderr));
    YamlLoader::load_from_str(&String::from_utf8(output.stdout).unwrap()).unwrap()
}

fn of_kind<'d>(documents: &'d [Yaml], kind: &str) -> Vec<&'d Yaml> {
    documents.iter().filter(|doc| doc["kind"].as_str() == Some(kind)).collect()
}

fn container_args(documents: &[Yaml]) -> Vec<String> {
    let deployment = of_kind(documents, "Deployment")[0];
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    args.as_vec().unwrap().iter().map(|arg| arg.as_str().unwrap().to_owned()).collect()
}

/// The Palette values of the reference document, with the checks on and `extra` set.
fn palette_sets<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--set", "registryCheck.swapPolicy=exists"];
    for set in extra {
        let flag = if set.ends_with("=true") || set.ends_with("=false") { "--set" } else { "--set-string" };
        args.extend([flag, set]);
    }
    args
}

#[test]
fn palette_credentials_ca_and_insecure_reach_the_checks_and_never_args_or_notes() {
    let ca = std::fs::read_to_string(Path::new(ROOT).join("examples/registry/harbor-ca.pem")).unwrap();
    let ca_set = format!("config.ociImageRegistry.caCert={ca}");
    let sets = palette_sets(&[
        "config.ociImageRegistry.username=robot$pcg",
        "config.ociImageRegistry.password=PLANTED-palette-password",
        &ca_set,
        "config.ociImageRegistry.insecureSkipVerify=true",
        "config.ociImageRegistry.endpoint=https://harbor.example.org/airgap-images",
    ]);
    let documents = rendered(&sets);
    let args = container_args(&documents);
    for expected in [
        "--swap-policy=exists",
        "--registry-auth=/etc/mirrorswap/registry-auth/.dockerconfigjson",
        "--registry-ca=/etc/mirrorswap/registry-ca/ca.crt",
        "--insecure-registry=harbor.example.org",
    ] {
        assert!(args.iter().any(|arg| arg == expected), "{expected} not in {args:?}");
    }
    let secret = of_kind(&documents, "Secret")
        .into_iter()
        .find(|secret| secret["metadata"]["name"].as_str() == Some("ms-mirrorswap-registry-check"))
        .expect("the checks' Secret");
    let decode = |key: &str| {
        let encoded = secret["data"][key].as_str().unwrap();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
    };
    let config: serde_json::Value = serde_json::from_str(&decode(".dockerconfigjson")).unwrap();
    let login = &config["auths"]["harbor.example.org"];
    assert_eq!(
        (login["username"].as_str(), login["password"].as_str()),
        (Some("robot$pcg"), Some("PLANTED-palette-password"))
    );
    assert_eq!(decode("ca.crt").trim(), ca.trim());
    // The Deployment mounts it and never holds the values.
    let mut text = String::new();
    yaml_rust2::YamlEmitter::new(&mut text).dump(of_kind(&documents, "Deployment")[0]).unwrap();
    assert!(text.contains("secretName: ms-mirrorswap-registry-check"), "{text}");
    assert!(!text.contains("PLANTED") && !text.contains("robot$pcg") && !text.contains("BEGIN CERTIFICATE"), "{text}");
    let notes = helm("install", &sets);
    let notes = String::from_utf8_lossy(&notes.stdout);
    let notes = notes.split("NOTES:").nth(1).unwrap_or_default();
    assert!(notes.contains("Credentials for harbor.example.org: config.ociImageRegistry.username/password"), "{notes}");
    assert!(!notes.contains("PLANTED") && !notes.contains("robot$pcg"), "{notes}");

    // Without credentials the NOTES say what a login-protected mirror will do.
    let bare = helm("install", &palette_sets(&[]));
    assert!(String::from_utf8_lossy(&bare.stdout).contains("a mirror that needs a login answers 401"));
    // And without the checks, nothing of it is rendered.
    let off = rendered(&[
        "--set-string",
        "config.ociImageRegistry.username=u",
        "--set-string",
        "config.ociImageRegistry.password=p",
    ]);
    assert!(!container_args(&off).iter().any(|arg| arg.starts_with("--registry-auth")));
    assert!(
        of_kind(&off, "Secret")
            .iter()
            .all(|secret| secret["metadata"]["name"].as_str() != Some("ms-mirrorswap-registry-check"))
    );
}

#[test]
fn half_given_or_doubly_given_palette_values_fail_the_render_naming_what_to_set() {
    // (values, what the error says)
    let table: [(&[&str], &str); 5] = [
        (
            &["config.ociImageRegistry.username=robot"],
            "config.ociImageRegistry.username is set without config.ociImageRegistry.password: set the password too",
        ),
        (
            &["config.ociImageRegistry.password=PLANTED-x"],
            "config.ociImageRegistry.password is set without config.ociImageRegistry.username",
        ),
        (
            &[
                "config.ociImageRegistry.endpoint=",
                "config.ociImageRegistry.username=u",
                "config.ociImageRegistry.password=PLANTED-x",
            ],
            "set config.ociImageRegistry.endpoint to the mirror's host",
        ),
        (
            &[
                "config.ociImageRegistry.username=u",
                "config.ociImageRegistry.password=PLANTED-x",
                "registryAuth.existingSecret=harbor-pull",
            ],
            "config.ociImageRegistry.username/password and registryAuth.existingSecret (harbor-pull) both give the mirror's credentials",
        ),
        (
            &["config.ociImageRegistry.caCert=not a certificate"],
            "config.ociImageRegistry.caCert holds no PEM certificate",
        ),
    ];
    for (values, expected) in table {
        let output = helm("template", &palette_sets(values));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(expected), "{values:?}: {stderr}");
        assert!(!stderr.contains("PLANTED"), "{values:?}: {stderr}");
    }
}

/// The files the chart mounts, read by the server's own checks against a real registry with
/// basic auth and a private CA: with Palette's credentials and caCert the image is present
/// and rewritten; without them (what the chart rendered before) it is kept, 401.
#[tokio::test]
async fn the_rendered_credentials_and_ca_log_the_checks_in_to_a_real_registry() {
    let Some(registry) = Registry::start(Auth::Basic).await else { return };
    let mirror = registry.host();
    registry.push("airgap-images/docker.io/nginx", "1.27").await;
    let ca = std::fs::read_to_string(registry.ca_path()).unwrap();
    let (endpoint, user, password, ca_set) = (
        format!("config.ociImageRegistry.endpoint={mirror}"),
        format!("config.ociImageRegistry.username={USER}"),
        format!("config.ociImageRegistry.password={PASSWORD}"),
        format!("config.ociImageRegistry.caCert={ca}"),
    );
    let rules = format!("config.ociImageRegistry.mirrorRegistries=docker.io::{mirror}/airgap-images/docker.io");
    let dir = tempfile::tempdir().unwrap();
    let run = |documents: &[Yaml], name: &str| {
        // The Secret's keys become files where the Deployment mounts them.
        let root = dir.path().join(name);
        for secret in of_kind(documents, "Secret") {
            if secret["metadata"]["name"].as_str() != Some("ms-mirrorswap-registry-check") {
                continue;
            }
            for (key, mount) in [(".dockerconfigjson", "registry-auth"), ("ca.crt", "registry-ca")] {
                if let Some(encoded) = secret["data"][key].as_str() {
                    std::fs::create_dir_all(root.join(mount)).unwrap();
                    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
                    std::fs::write(root.join(mount).join(key), bytes).unwrap();
                }
            }
        }
        let rules_file = root.join("rules.conf");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(&rules_file, format!("docker.io::{mirror}/airgap-images/docker.io\n")).unwrap();
        let check_args: Vec<String> = container_args(documents)
            .into_iter()
            .filter(|arg| {
                ["--swap-policy", "--registry-", "--insecure-registry", "--check-"]
                    .iter()
                    .any(|flag| arg.starts_with(flag))
            })
            .map(|arg| arg.replace("/etc/mirrorswap", root.to_str().unwrap()))
            .collect();
        Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
            .args(["rewrite", "--explain", "--rules"])
            .arg(&rules_file)
            .args(&check_args)
            .arg("nginx:1.27")
            .output()
            .unwrap()
    };
    let with = rendered(&palette_sets(&[&endpoint, &user, &password, &ca_set, &rules]));
    let output = run(&with, "with");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("nginx:1.27 -> {mirror}/airgap-images/docker.io/nginx:1.27"))
            && stdout.contains(": present"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let without = rendered(&palette_sets(&[&endpoint, &rules, "config.ociImageRegistry.insecureSkipVerify=true"]));
    let output = run(&without, "without");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("nginx:1.27 kept") && stdout.contains("401"), "{stdout}");
    assert!(!stdout.contains(PASSWORD) && !String::from_utf8_lossy(&output.stderr).contains(PASSWORD));
}

#[test]
fn every_value_has_a_description() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap()).unwrap();
    fn walk(node: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        if !path.is_empty() && node.get("description").and_then(serde_json::Value::as_str).is_none_or(str::is_empty) {
            missing.push(path.to_owned());
        }
        if let Some(properties) = node.get("properties").and_then(serde_json::Value::as_object) {
            for (key, value) in properties {
                walk(value, &format!("{path}.{key}"), missing);
            }
        }
        if let Some(items) = node.get("items").filter(|items| items.is_object()) {
            walk(items, &format!("{path}[]"), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&schema, "", &mut missing);
    assert!(missing.is_empty(), "values without a description: {missing:?}");
}

/// Every rule line of the example maps files is a valid `rules.inline` entry; a malformed
/// entry fails `helm template`, naming it.
#[test]
fn rules_inline_entries_are_checked_at_install() {
    let mut lines = Vec::new();
    for name in ["imageswap-maps.conf", "node-mirrors.conf", "palette-mirror-registries.conf"] {
        let text = std::fs::read_to_string(Path::new(ROOT).join("examples/rules").join(name)).unwrap();
        lines.extend(text.lines().filter(|line| !line.trim().is_empty()).map(str::to_owned));
    }
    let json = serde_json::to_string(&lines).unwrap();
    let output = helm("template", &["--set-json", &format!("rules.inline={json}")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for broken in
        ["docker.io harbor.example.org/hub", "docker.io::a.example.org::b", "docker.io", "quay.io::harbor .example.org"]
    {
        let json = serde_json::to_string(&[broken]).unwrap();
        let output = helm("template", &["--set-json", &format!("rules.inline={json}")]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains("/rules/inline/0") && stderr.contains(broken),
            "{broken}: {stderr}"
        );
    }
}
