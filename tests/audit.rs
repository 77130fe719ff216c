//! `mirrorswap audit` over manifests, run as a user runs it: the built binary, the fixture
//! release (every workload kind, a List, comments, non-workloads), each output format and
//! each exit code.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

const RULES: &str = "\
docker.io::harbor.example.org/hub
quay.io::harbor.example.org/quay
ghcr.io::
registry.k8s.io::harbor.example.org/k8s
";

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit").join(name).display().to_string()
}

fn audit(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    audit_with(RULES, dir, args, stdin)
}

/// `mirrorswap audit` with `rules` as the rules file.
fn audit_with(rules_text: &str, dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let rules = dir.join("rules.conf");
    std::fs::write(&rules, rules_text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
        .arg("audit")
        .arg("--rules")
        .arg(&rules)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn rows(output: &Output) -> Vec<Value> {
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice::<Value>(&output.stdout).unwrap().as_array().unwrap().clone()
}

#[test]
fn every_workload_kind_of_a_release_with_lists_and_non_workloads() {
    let dir = tempfile::tempdir().unwrap();
    let allow = ["--allow-registry", "registry.internal.example/tools"];
    let found = rows(&audit(dir.path(), &["-f", &fixture("release.yaml"), "-o", "json", allow[0], allow[1]], None));
    // (image, rewritten, reason, unmirrored, locations)
    let origin = dir.path().join("rules.conf").display().to_string();
    let hub = format!("docker.io::harbor.example.org/hub ({origin}:1)");
    let expected = [
        (
            "busybox:1.36",
            Some("harbor.example.org/hub/busybox:1.36"),
            "rewritten",
            false,
            vec!["Pod/shop/debug ephemeralContainers/shell"],
        ),
        (
            "docker.io/library/postgres:16",
            Some("harbor.example.org/hub/library/postgres:16"),
            "rewritten",
            false,
            vec!["StatefulSet/shop/db containers/postgres"],
        ),
        ("gcr.io/vendor/agent:1", None, "no_rule", true, vec!["DaemonSet/monitoring/agent containers/agent"]),
        ("ghcr.io/shop/seed:1", None, "opted_out", false, vec!["Job/shop/seed containers/seed"]),
        (
            "harbor.example.org/hub/library/busybox:1.36",
            None,
            "mirrored",
            false,
            vec!["CronJob/shop/backup containers/backup"],
        ),
        (
            "nginx:1.27",
            Some("harbor.example.org/hub/nginx:1.27"),
            "rewritten",
            false,
            vec![
                "Deployment/shop/web containers/web",
                "ReplicaSet/shop/web-5d8f containers/web",
                "Pod/shop/debug containers/app",
            ],
        ),
        (
            "quay.io/shop/migrate:2.1",
            Some("harbor.example.org/quay/shop/migrate:2.1"),
            "rewritten",
            false,
            vec!["Deployment/shop/web initContainers/migrate"],
        ),
        ("quay.io/shop/optout:1", None, "object_opted_out", false, vec!["Pod/shop/opted containers/app (opted out)"]),
        (
            "quay.io/shop/tpl:1",
            Some("harbor.example.org/quay/shop/tpl:1"),
            "rewritten",
            false,
            vec!["PodTemplate/shop/tpl containers/app"],
        ),
        (
            "registry.internal.example/tools/proxy:3",
            None,
            "allowed_registry",
            false,
            vec!["Deployment/shop/web containers/sidecar"],
        ),
        (
            "registry.k8s.io/pause:3.9",
            Some("harbor.example.org/k8s/pause:3.9"),
            "rewritten",
            false,
            vec!["ReplicationController/old/legacy containers/app"],
        ),
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (row, (image, rewritten, reason, unmirrored, locations)) in found.iter().zip(expected) {
        let keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "candidates",
                "digest",
                "image",
                "locations",
                "mirror",
                "platforms",
                "reason",
                "rewritten",
                "rule",
                "source_digest",
                "unmirrored",
                "why"
            ]
        );
        assert_eq!((&row["why"], &row["candidates"]), (&Value::Null, &Value::Null), "{image}");
        assert_eq!(row["image"], image);
        assert_eq!(row["rewritten"], json!(rewritten), "{image}");
        assert_eq!(row["reason"], reason, "{image}");
        assert_eq!(row["unmirrored"], unmirrored, "{image}");
        assert_eq!(row["locations"], json!(locations), "{image}");
        assert_eq!(row["mirror"], Value::Null);
    }
    assert_eq!(found[5]["rule"], hub);
    assert_eq!(found[3]["rule"], format!("ghcr.io:: ({origin}:3)"));
    assert_eq!(found[2]["rule"], Value::Null);
}

#[test]
fn table_copy_list_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let release = fixture("release.yaml");
    let table = audit(dir.path(), &["-f", &release, "-o", "wide"], None);
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("IMAGE "), "{table}");
    let column = lines[0].find("REWRITTEN").unwrap();
    assert!(
        lines[1..lines.len() - 1].iter().all(|line| line.len() > column && line.as_bytes()[column - 1] == b' '),
        "{table}"
    );
    let nginx = lines.iter().find(|line| line.starts_with("nginx:1.27")).unwrap();
    assert!(nginx.contains("Deployment/shop/web containers/web (+2 more)"), "{nginx}");
    assert_eq!(lines.last().unwrap(), &"11 images, 6 rewritten, 2 unmirrored, missing not checked");

    let copy = audit(dir.path(), &["-f", &release, "--output", "copy-list"], None);
    assert_eq!(
        text(&copy.stdout),
        "docker.io/library/busybox:1.36 harbor.example.org/hub/busybox:1.36\n\
         docker.io/library/postgres:16 harbor.example.org/hub/library/postgres:16\n\
         docker.io/library/nginx:1.27 harbor.example.org/hub/nginx:1.27\n\
         quay.io/shop/migrate:2.1 harbor.example.org/quay/shop/migrate:2.1\n\
         quay.io/shop/tpl:1 harbor.example.org/quay/shop/tpl:1\n\
         registry.k8s.io/pause:3.9 harbor.example.org/k8s/pause:3.9\n"
    );

    // Exit 1 only when asked and found; 0 once the outliers are allowed.
    assert_eq!(audit(dir.path(), &["-f", &release, "--fail-on", "unmirrored"], None).status.code(), Some(1));
    let allowed = ["--allow-registry", "gcr.io/vendor", "--allow-registry", "registry.internal.example"];
    let args = [&["-f", release.as_str(), "--fail-on", "unmirrored"][..], &allowed[..]].concat();
    assert_eq!(audit(dir.path(), &args, None).status.code(), Some(0));

    // Exit 2: a broken document names the file and the line; a missing file; bad rules.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "kind: Service\n---\napiVersion: v1\nkind: Pod\nspec: {containers: [\n").unwrap();
    let output = audit(dir.path(), &["-f", &broken.display().to_string()], None);
    assert_eq!(output.status.code(), Some(2));
    let error = text(&output.stderr);
    assert!(
        error.contains(&format!("{}:", broken.display())) && error.contains("the document starting at line 2"),
        "{error}"
    );
    let shape = dir.path().join("shape.yaml");
    std::fs::write(
        &shape,
        "kind: Service\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 3}\n",
    )
    .unwrap();
    let error = text(&audit(dir.path(), &["-f", &shape.display().to_string()], None).stderr);
    assert!(error.contains(&format!("{}:2: Pod p:", shape.display())), "{error}");
    assert_eq!(audit(dir.path(), &["-f", "/nonexistent/x.yaml"], None).status.code(), Some(2));
}

#[test]
fn json_lists_stdin_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let pods = std::fs::read_to_string(fixture("pods.json")).unwrap();
    let found = rows(&audit(dir.path(), &["-f", "-", "-o", "json"], Some(&pods)));
    let images: Vec<&str> = found.iter().map(|row| row["image"].as_str().unwrap()).collect();
    assert_eq!(images, ["bitnami/redis:7.2", "quay.io/shop/api:4"]);
    assert_eq!(found[0]["locations"], json!(["Pod/shop/cache-0 containers/redis"]));

    let manifests = dir.path().join("rendered/templates");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::copy(fixture("pods.json"), manifests.join("pods.json")).unwrap();
    std::fs::copy(fixture("release.yaml"), manifests.join("release.yaml")).unwrap();
    std::fs::write(manifests.join("NOTES.txt"), "not: [a manifest").unwrap();
    let all = rows(&audit(dir.path(), &["-f", &dir.path().join("rendered").display().to_string(), "-o", "json"], None));
    assert_eq!(all.len(), 13);
}

/// Helps the copy-list walk-through of the README: SOURCE is what skopeo needs.
#[test]
fn copy_list_sources_are_fully_qualified_for_implied_registry() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = concat!(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: n}\nspec:\n  containers:\n",
        "  - {name: a, image: 'bitnami/redis:7'}\n  - {name: b, image: 'alpine'}\n",
    );
    let copy = audit(dir.path(), &["-f", "-", "-o", "copy-list"], Some(manifest));
    assert_eq!(
        text(&copy.stdout),
        "docker.io/library/alpine harbor.example.org/hub/alpine\n\
         docker.io/bitnami/redis:7 harbor.example.org/hub/bitnami/redis:7\n"
    );
}

/// Images the engine leaves alone or calls mirrored (as imageswap would) that are pulled from
/// outside the mirrors: a wildcard past the host, a host built by a `-` target, a port the
/// image chose. Each is unmirrored with its own reason, never looked up, and explained.
#[test]
fn wildcards_past_the_host_built_hosts_and_chosen_ports_are_unmirrored() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "docker.io::harbor.example.org/hub\nquay.io::127.0.0.1\ndefault::mirror-\n\
                 noswap_wildcards::internal.example.org,10.0.0.\n";
    let images = [
        "10.0.0.5:5000/x",
        "127.0.0.1:25502/x:1",
        "evil.com/internal.example.org/x:1",
        "evil.com/x:1",
        "ghcr.io/evil/x:10.0.0.1",
        "harbor.example.org:6666/hub/nginx:1",
        "internal.example.org/team/x:1",
        "quay.io/x:1",
        "quay.io:25502/x:1",
    ];
    let containers: String =
        images.iter().enumerate().map(|(i, image)| format!("  - {{name: c{i}, image: '{image}'}}\n")).collect();
    let manifest =
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: n}}\nspec:\n  containers:\n{containers}");
    let found = rows(&audit_with(rules, dir.path(), &["-f", "-", "-o", "json"], Some(&manifest)));
    // (image, rewritten, reason, unmirrored)
    let expected = [
        ("10.0.0.5:5000/x", None, "noswap", false),
        ("127.0.0.1:25502/x:1", None, "foreign_port", true),
        ("evil.com/internal.example.org/x:1", None, "noswap_outside_host", true),
        ("evil.com/x:1", Some("mirror-evil.com/x:1"), "built_host", true),
        ("ghcr.io/evil/x:10.0.0.1", None, "noswap_outside_host", true),
        ("harbor.example.org:6666/hub/nginx:1", None, "foreign_port", true),
        ("internal.example.org/team/x:1", None, "noswap", false),
        ("quay.io/x:1", Some("127.0.0.1/x:1"), "rewritten", false),
        ("quay.io:25502/x:1", Some("127.0.0.1:25502/x:1"), "foreign_port", true),
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (row, (image, rewritten, reason, unmirrored)) in found.iter().zip(expected) {
        assert_eq!(row["image"], image);
        assert_eq!(row["rewritten"], json!(rewritten), "{image}");
        assert_eq!((row["reason"].as_str(), row["unmirrored"].as_bool()), (Some(reason), Some(unmirrored)), "{image}");
    }
    // The table explains each after its summary line.
    let table = text(&audit_with(rules, dir.path(), &["-f", "-"], Some(&manifest)).stdout);
    let notes: Vec<&str> = table.lines().skip_while(|line| !line.starts_with("9 images")).skip(1).collect();
    assert_eq!(notes.len(), 6, "{table}");
    assert!(
        notes.contains(
            &"note: quay.io:25502/x:1 is foreign_port: pulled from `127.0.0.1:25502`, not from `127.0.0.1`, \
                         the registry rule `quay.io::127.0.0.1` (line 2) names: the port is the image's own choice"
        ),
        "{table}"
    );
    assert!(
        notes.iter().any(|note| note.starts_with("note: evil.com/x:1 is built_host: pulled from `mirror-evil.com`")),
        "{table}"
    );
    assert!(
        notes.iter().any(|note| note.starts_with(
            "note: ghcr.io/evil/x:10.0.0.1 is noswap_outside_host: `noswap_wildcards` entry `10.0.0.` (line 4)"
        )),
        "{table}"
    );
    // The copy list names only rewrites into a mirror, not into a registry the image chose.
    let copy = text(&audit_with(rules, dir.path(), &["-f", "-", "-o", "copy-list"], Some(&manifest)).stdout);
    assert_eq!(copy, "quay.io/x:1 127.0.0.1/x:1\n");
}

/// A Pod whose `spec` nests `levels` anchored lists of nine aliases each ("billion laughs":
/// 9^(levels-1) copies of the first list).
fn laughs(levels: usize) -> String {
    let mut text = String::from("apiVersion: v1\nkind: Pod\nmetadata: {name: lol}\nspec:\n");
    text.push_str("  l0: &l0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for level in 1..levels {
        let previous = format!("*l{}", level - 1);
        text.push_str(&format!("  l{level}: &l{level} [{}]\n", vec![previous; 9].join(",")));
    }
    text.push_str("  containers: [{name: app, image: nginx:1.27}]\n");
    text
}

/// The peak memory (KiB) `audit --report-peak-memory` reports on stderr.
fn peak_kib(output: &Output) -> u64 {
    let stderr = text(&output.stderr);
    stderr
        .lines()
        .find_map(|line| line.strip_prefix("peak memory: VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory reported: {stderr}"))
}

/// Aliases are copies: the copies one document's aliases make are bounded (4 MiB as counted,
/// `MAX_ALIAS_BYTES`); past it the document is an error on the alias's line, and memory stays
/// within a small multiple of the bound. Before, a 642-byte "billion laughs" aborted at 3 GB.
#[test]
fn aliases_that_copy_past_the_document_bound_are_refused_within_memory() {
    const BOUND_KIB: u64 = 4 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, manifest: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, manifest).unwrap();
        let output = audit(dir.path(), &["--report-peak-memory", "-o", "json", "-f", path.to_str().unwrap()], None);
        (path.display().to_string(), output)
    };
    let (_, baseline) = run("one.yaml", &laughs(1));
    assert!(baseline.status.success(), "{}", text(&baseline.stderr));
    let baseline = peak_kib(&baseline);
    let within = laughs(5);
    // (file, manifest, exit code, text on stderr, the Pod's image found)
    let cases = [
        ("laughs-9.yaml", laughs(9), 2, ":10: the aliases of the document starting at line 1 copy more than 4 MiB"),
        ("laughs-5.yaml", within.clone(), 0, ""),
        // The bound is per document: two documents each under it both load.
        ("laughs-5-twice.yaml", format!("{within}---\n{within}"), 0, ""),
        // A later document's error names its own line and start.
        (
            "laughs-after.yaml",
            format!("{within}---\n{}", laughs(7)),
            2,
            ":21: the aliases of the document starting at line 11 copy more than",
        ),
    ];
    for (name, manifest, code, says) in cases {
        let (path, output) = run(name, &manifest);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{name}: {stderr}");
        match code {
            0 => assert!(text(&output.stdout).contains("\"nginx:1.27\""), "{name}"),
            _ => assert!(stderr.contains(&format!("{path}{says}")), "{name}: {stderr}"),
        }
        let grown = peak_kib(&output).saturating_sub(baseline);
        assert!(grown <= 3 * BOUND_KIB, "{name}: peak grew by {grown} KiB ({manifest:.300})");
        println!("{name}: {} bytes, peak {} KiB (baseline {baseline} KiB)", manifest.len(), peak_kib(&output));
    }
}

/// A workload that cannot be read is an error naming it; the name and the value serde quotes
/// are the manifest author's, and the line quotes at most ~200 characters of each.
#[test]
fn an_unreadable_workload_error_quotes_at_most_200_characters_of_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {}}}\nspec:\n  containers: \"{}\"\n",
        "n".repeat(5_000),
        "x".repeat(100_000)
    );
    let output = audit(dir.path(), &["-f", "-"], Some(&manifest));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr:.500}");
    assert!(stderr.starts_with("error: -:1: Pod nnnn"), "{stderr:.500}");
    assert!(stderr.contains("…[5000 bytes]…") && stderr.contains("expected a sequence"), "{stderr:.500}");
    assert!(stderr.len() < 1_000, "{} bytes: {stderr:.500}", stderr.len());
}

/// What a person reads: AdmissionReviews are audited through their `request.object`; kinds
/// with pod templates mirrorswap does not know are counted by kind; the default table fits
/// the terminal, names rules `FILE:LINE` and says why an image is invalid; `-o wide` has
/// every column; counts are singular for one.
#[test]
fn reviews_unknown_kinds_and_a_table_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = root.join("examples/admission");
    let reviews = rows(&audit(dir.path(), &["-f", examples.to_str().unwrap(), "-o", "json"], None));
    assert_eq!(reviews.len(), 7, "every image of the three sample reviews: {reviews:#?}");
    assert!(reviews.iter().any(|row| row["locations"][0] == "Pod/default/web containers/nginx"), "{reviews:#?}");

    let manifest = "\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: canary}
spec: {template: {spec: {containers: [{name: a, image: 'nginx:1.26'}]}}}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: blue}
spec: {template: {spec: {containers: [{name: a, image: 'nginx:1.26'}]}}}
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: hello}
spec: {template: {spec: {containers: [{image: 'ghcr.io/knative/hello:1'}]}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {image: 'nginx:1'}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    spec:
      containers:
        - {name: bad, image: 'Shop/UPPER:1'}
        - {name: long, image: 'quay.io/a-rather-long-organization-name/and-an-even-longer-image-name:v1.2.3-build-4567'}
";
    let output = audit(dir.path(), &["-f", "-"], Some(manifest));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "note: 3 documents of kinds mirrorswap does not read, whose containers are neither audited nor \
             rewritten: Rollout (2), Service (1)"
        ),
        "{stderr}"
    );
    let table = text(&output.stdout);
    let origin = dir.path().join("rules.conf").display().to_string();
    assert!(table.contains(&format!("rewritten  no          {origin}:2")), "the rule is FILE:LINE:\n{table}");
    assert!(table.contains("2 images, 1 rewritten, 1 unmirrored, missing not checked"), "{table}");
    assert!(
        table.contains(
            "note: Shop/UPPER:1 is invalid: not a valid image reference (uppercase letter in repository path)"
        ),
        "{table}"
    );
    let json = rows(&audit(dir.path(), &["-f", "-", "-o", "json"], Some(manifest)));
    assert_eq!(json[0]["why"], "not a valid image reference (uppercase letter in repository path)");

    // The narrow table fits 80 columns by cutting long cells; wide never cuts.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
        .args(["audit", "--rules", &origin, "-f", "-"])
        .env("COLUMNS", "80")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
    let narrow = text(&child.wait_with_output().unwrap().stdout);
    let rows_only: Vec<&str> = narrow.lines().take_while(|line| !line.starts_with("2 images")).collect();
    assert!(rows_only.iter().all(|line| line.chars().count() <= 80), "{narrow}");
    assert!(rows_only[0].starts_with("IMAGE") && rows_only[0].ends_with("RULE") && !rows_only[0].contains("LOCATIONS"));
    assert!(narrow.contains('…'), "{narrow}");
    let wide = text(&audit(dir.path(), &["-f", "-", "-o", "wide"], Some(manifest)).stdout);
    assert!(wide.lines().next().unwrap().ends_with("LOCATIONS"), "{wide}");
    assert!(wide.contains("and-an-even-longer-image-name:v1.2.3-build-4567") && !wide.contains('…'), "{wide}");

    // One image: singular.
    let one = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: 'nginx:1'}]}\n";
    let table = text(&audit(dir.path(), &["-f", "-"], Some(one)).stdout);
    assert!(table.contains("1 image, 1 rewritten, 0 unmirrored"), "{table}");
}
