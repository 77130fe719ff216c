//! Node-level mirrors from the same rules: containerd's `hosts.toml` files
//! (`config_path` style, one directory per upstream host) and the legacy
//! `plugins."io.containerd.grpc.v1.cri".registry.mirrors` block that Palette's
//! documents show. Only host-level rules with a plain target can be expressed;
//! every other rule is reported, never silently dropped. TOML is written with
//! the `toml` crate.

use toml::{Table, Value};

use crate::rewrite::{RuleKind, RuleSet, Target};

/// The registry containerd talks to for Docker Hub.
const DOCKER_HUB_SERVER: &str = "https://registry-1.docker.io";

/// One upstream host and the mirror its pulls go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// The upstream registry as images name it (`docker.io`, `registry.local:5000`).
    pub host: String,
    /// The rule's target as written (`harbor.example.org/airgap-images/docker.io`).
    pub target: String,
    /// 1-based line of the rule.
    pub line: u32,
}

/// A rule containerd cannot express, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The rule as written.
    pub rule: String,
    /// 1-based line of the rule.
    pub line: u32,
    /// Why it has no containerd equivalent.
    pub reason: &'static str,
}

/// Splits the rules into containerd mirrors and the rules it cannot express.
pub fn mirrors(rules: &RuleSet) -> (Vec<Mirror>, Vec<Skipped>) {
    let (mut mirrors, mut skipped) = (Vec::new(), Vec::new());
    for rule in rules.rules() {
        let reason = match (rule.kind, &rule.target) {
            (RuleKind::Prefix, Target::Plain(target)) if !rule.source.contains('/') => {
                mirrors.push(Mirror { host: rule.source.to_string(), target: target.to_string(), line: rule.line });
                continue;
            }
            (RuleKind::Prefix, Target::Keep) => "an empty target keeps the upstream: nothing to mirror",
            (RuleKind::Prefix, Target::Dash(_)) => "a `-` target appends the source registry, which containerd cannot",
            (RuleKind::Prefix, _) => "a path-level source: containerd mirrors whole registries",
            (RuleKind::Exact, _) => "[EXACT] replaces single references: containerd mirrors whole registries",
            (RuleKind::Replace, _) => "[REPLACE] globs have no containerd equivalent",
            (RuleKind::Default | RuleKind::All, _) => "a fallback for every registry: containerd needs each host named",
        };
        skipped.push(Skipped { rule: rule.to_string(), line: rule.line, reason });
    }
    (mirrors, skipped)
}

/// TLS options of the mirror hosts.
#[derive(Clone, Debug, Default)]
pub struct HostOptions {
    /// CA file the nodes use to verify the mirror.
    pub ca: Option<String>,
    /// Do not verify the mirror's certificate.
    pub skip_verify: bool,
}

/// The upstream's URL for `server =`.
fn server(host: &str) -> String {
    if host == "docker.io" { DOCKER_HUB_SERVER.to_owned() } else { format!("https://{host}") }
}

/// The `[host."…"]` URL of a target, and whether it carries a path (`override_path`).
/// containerd appends `/v2/…` to a host URL unless `override_path` is set, in which case the
/// URL must hold the whole API prefix: `https://mirror/v2/<path>`.
pub fn host_url(target: &str) -> (String, bool) {
    match target.split_once('/') {
        Some((host, path)) => (format!("https://{host}/v2/{path}"), true),
        None => (format!("https://{target}"), false),
    }
}

/// `hosts.toml` for one mirror.
pub fn hosts_toml(mirror: &Mirror, options: &HostOptions) -> String {
    let (url, override_path) = host_url(&mirror.target);
    let mut host = Table::new();
    host.insert("capabilities".into(), Value::Array(vec!["pull".into(), "resolve".into()]));
    if override_path {
        host.insert("override_path".into(), Value::Boolean(true));
    }
    if let Some(ca) = &options.ca {
        host.insert("ca".into(), Value::String(ca.clone()));
    }
    if options.skip_verify {
        host.insert("skip_verify".into(), Value::Boolean(true));
    }
    let mut hosts = Table::new();
    hosts.insert(url, Value::Table(host));
    let mut document = Table::new();
    document.insert("server".into(), Value::String(server(&mirror.host)));
    document.insert("host".into(), Value::Table(hosts));
    format!("# mirrorswap: {} (rules line {}).\n{document}", mirror.host, mirror.line)
}

/// The legacy CRI `registry.mirrors` block, one `endpoint` per host, targets as written.
pub fn legacy_toml(mirrors: &[Mirror]) -> String {
    let mut by_host = Table::new();
    for mirror in mirrors {
        let mut entry = Table::new();
        entry.insert("endpoint".into(), Value::Array(vec![Value::String(mirror.target.clone())]));
        by_host.insert(mirror.host.clone(), Value::Table(entry));
    }
    let nest = |key: &str, inner: Table| Table::from_iter([(key.to_owned(), Value::Table(inner))]);
    let document = nest("plugins", nest("io.containerd.grpc.v1.cri", nest("registry", nest("mirrors", by_host))));
    document.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{Options, compile_maps};

    fn rules(text: &str) -> RuleSet {
        compile_maps(text, Options::default()).unwrap().rules
    }

    #[test]
    fn only_host_level_plain_targets_become_mirrors() {
        let set = rules(
            "docker.io::m.example.org/hub\nquay.io::m.example.org\ngcr.io/p::m.example.org/gcr\nghcr.io::\n\
             k8s.gcr.io::m.example.org/k8s-\n[EXACT]a:1::m.example.org/a:1\n[REPLACE]*x*::m.example.org/x\n\
             default::m.example.org/d\n",
        );
        let (mirrors, skipped) = mirrors(&set);
        let hosts: Vec<_> = mirrors.iter().map(|m| (m.host.as_str(), m.target.as_str(), m.line)).collect();
        assert_eq!(hosts, [("docker.io", "m.example.org/hub", 1), ("quay.io", "m.example.org", 2)]);
        assert_eq!(skipped.iter().map(|s| s.line).collect::<Vec<_>>(), [3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn hosts_toml_parses_back_with_server_and_mirror() {
        let mirror = Mirror { host: "docker.io".into(), target: "m.example.org/hub/docker.io".into(), line: 1 };
        let options = HostOptions { ca: Some("/etc/ca.pem".into()), skip_verify: false };
        let parsed: Table = hosts_toml(&mirror, &options).parse().unwrap();
        assert_eq!(parsed["server"].as_str(), Some("https://registry-1.docker.io"));
        let host = &parsed["host"]["https://m.example.org/v2/hub/docker.io"];
        assert_eq!(host["override_path"].as_bool(), Some(true));
        assert_eq!(host["ca"].as_str(), Some("/etc/ca.pem"));
        let plain = Mirror { host: "quay.io".into(), target: "m.example.org:5000".into(), line: 2 };
        let parsed: Table = hosts_toml(&plain, &HostOptions { ca: None, skip_verify: true }).parse().unwrap();
        assert_eq!(parsed["server"].as_str(), Some("https://quay.io"));
        let host = &parsed["host"]["https://m.example.org:5000"];
        assert!(host.get("override_path").is_none());
        assert_eq!(host["skip_verify"].as_bool(), Some(true));
    }
}
