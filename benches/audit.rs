//! `mirrorswap audit` streaming: time and peak memory (`VmHWM` of the child process, polled
//! every 2 ms until it exits) of the release binary on generated inputs of 10k and 100k
//! documents — multi-document YAML as `helm template` writes it, one 100k-item `List` as
//! `kubectl get -o yaml` writes it, and the same List as JSON — with 200 distinct images.
//! The 10k-document run is the same-run baseline: memory is bounded when the 100k runs peak
//! near it (plus the report's own locations), not ten times higher like the input.
//!
//! `cargo bench --bench audit`

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RULES: &str = "docker.io::harbor.example.org/hub\nquay.io::harbor.example.org/quay\n";
const DISTINCT: usize = 200;

fn image(index: usize) -> String {
    match index % 3 {
        0 => format!("nginx:1.{}", index % DISTINCT),
        1 => format!("quay.io/team/app-{}:v1", index % DISTINCT),
        _ => format!("gcr.io/vendor/agent-{}:2", index % DISTINCT),
    }
}

fn deployment(index: usize) -> String {
    format!(
        "# Source: app/templates/deployment-{index}.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{index}\n  namespace: ns-{}\n  labels:\n    app.kubernetes.io/name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      initContainers:\n        - name: migrate\n          image: {}\n      containers:\n        - name: web\n          image: {}\n          ports: [{{containerPort: 8080}}]\n          resources: {{requests: {{cpu: 10m, memory: 32Mi}}}}\n",
        index % 50,
        image(index + 1),
        image(index)
    )
}

fn multi_document(count: usize) -> String {
    let mut text = String::new();
    for index in 0..count {
        text.push_str("---\n");
        text.push_str(&deployment(index));
    }
    text
}

fn yaml_list(count: usize) -> String {
    let mut text = String::from("apiVersion: v1\nkind: List\nmetadata: {resourceVersion: \"\"}\nitems:\n");
    for index in 0..count {
        let _ = write!(
            text,
            "- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: web-{index}\n    namespace: ns-{}\n  spec:\n    containers:\n    - name: web\n      image: {}\n      imagePullPolicy: IfNotPresent\n",
            index % 50,
            image(index)
        );
    }
    text
}

fn json_list(count: usize) -> String {
    let items: Vec<serde_json::Value> = (0..count)
        .map(|index| {
            serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("web-{index}"), "namespace": format!("ns-{}", index % 50)},
                "spec": {"containers": [{"name": "web", "image": image(index), "imagePullPolicy": "IfNotPresent"}]}})
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})).unwrap()
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix(field))?;
    line.trim_start_matches(':').trim().trim_end_matches("kB").trim().parse().ok()
}

/// Runs the audit of `input`; returns (seconds, peak MiB).
fn run(dir: &Path, input: &Path) -> (f64, f64) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
        .arg("audit")
        .arg("--rules")
        .arg(dir.join("rules.conf"))
        .arg("-f")
        .arg(input)
        .args(["-o", "json"])
        .stdout(Stdio::null())
        .spawn()
        .expect("run mirrorswap audit");
    let mut peak = 0;
    loop {
        if let Some(hwm) = status_kib(child.id(), "VmHWM") {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "audit of {} failed", input.display());
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (started.elapsed().as_secs_f64(), peak as f64 / 1024.0)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.conf"), RULES).unwrap();
    let inputs: [(&str, String); 4] = [
        ("10k documents (YAML stream), baseline", multi_document(10_000)),
        ("100k documents (YAML stream)", multi_document(100_000)),
        ("100k-item List (YAML, one document)", yaml_list(100_000)),
        ("100k-item List (JSON)", json_list(100_000)),
    ];
    println!("| input | size | images found | time | peak RSS (VmHWM) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (index, (name, text)) in inputs.iter().enumerate() {
        let path = dir.path().join(format!("input-{index}.yaml"));
        std::fs::write(&path, text).unwrap();
        let locations = text.matches("image: ").count() + text.matches("\"image\": ").count();
        let (seconds, peak) = run(dir.path(), &path);
        println!(
            "| {name} | {:.1} MiB | {locations} uses, {} distinct | {seconds:.2} s | {peak:.1} MiB |",
            text.len() as f64 / 1048576.0,
            DISTINCT * 3
        );
    }
}
