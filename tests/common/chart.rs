//! The Helm chart rendered by real `helm` (installed into target/tools by
//! scripts/install-tools.sh, or `MIRRORSWAP_HELM`), as YAML documents.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn helm() -> PathBuf {
    let path = std::env::var_os("MIRRORSWAP_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target/tools/bin/helm"));
    assert!(path.exists(), "{} is missing: run scripts/install-tools.sh (scripts/test.sh does)", path.display());
    path
}

/// `helm template` of the chart in namespace `mirrorswap` with `values` (a file under
/// helm/mirrorswap/ci/, or none for the defaults).
pub fn render(values: Option<&str>) -> Vec<Yaml> {
    render_with(values, &[])
}

/// As [`render`], with `--set` pairs.
pub fn render_with(values: Option<&str>, sets: &[&str]) -> Vec<Yaml> {
    YamlLoader::load_from_str(&render_text(values, sets)).expect("rendered YAML")
}

/// As [`render_with`], the YAML text.
pub fn render_text(values: Option<&str>, sets: &[&str]) -> String {
    render_release_text("ms", "mirrorswap", values, sets)
}

/// As [`render_with`], as release `release` in `namespace`.
pub fn render_release(release: &str, namespace: &str, values: Option<&str>, sets: &[&str]) -> Vec<Yaml> {
    YamlLoader::load_from_str(&render_release_text(release, namespace, values, sets)).expect("rendered YAML")
}

fn render_release_text(release: &str, namespace: &str, values: Option<&str>, sets: &[&str]) -> String {
    let chart = Path::new(ROOT).join("helm/mirrorswap");
    let mut command = Command::new(helm());
    command.args(["template", release, "--namespace", namespace]).arg(&chart);
    if let Some(values) = values {
        command.arg("--values").arg(chart.join("ci").join(values));
    }
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command.output().expect("run helm");
    assert!(output.status.success(), "helm template: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// A YAML document as JSON (what the API takes).
pub fn to_json(yaml: &Yaml) -> serde_json::Value {
    use serde_json::Value;
    match yaml {
        Yaml::Real(text) => text.parse::<f64>().map_or(Value::Null, Value::from),
        Yaml::Integer(number) => Value::from(*number),
        Yaml::String(text) => Value::from(text.as_str()),
        Yaml::Boolean(flag) => Value::from(*flag),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter().filter_map(|(key, value)| Some((key.as_str()?.to_owned(), to_json(value)))).collect(),
        ),
        _ => Value::Null,
    }
}

/// The documents of `kind`.
pub fn all_of<'d>(documents: &'d [Yaml], kind: &str) -> Vec<&'d Yaml> {
    documents.iter().filter(|doc| doc["kind"].as_str() == Some(kind)).collect()
}

/// The strings of a YAML list.
pub fn strings(yaml: &Yaml) -> Vec<&str> {
    yaml.as_vec().map(|items| items.iter().filter_map(Yaml::as_str).collect()).unwrap_or_default()
}
