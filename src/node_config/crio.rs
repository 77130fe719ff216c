//! CRI-O and Podman: `containers-registries.conf` v2 (containers/image), one `[[registry]]`
//! per source prefix with a `[[registry.mirror]]` at the target. containers/image matches the
//! longest prefix, as the webhook does, so path-level sources and empty targets (a
//! `[[registry]]` with no mirror) are both expressible. Mirror CAs are not in this file:
//! containers/image reads them from /etc/containers/certs.d/<host>/ca.crt; credentials come
//! from the kubelet's imagePullSecrets or CRI-O's `global_auth_file`.

use toml::{Table, Value};

use super::{MirrorTls, Plan, Rendered, header};

/// The whole `registries.conf`.
pub fn render(plan: &Plan, tls: &MirrorTls, origin: &str) -> Rendered {
    let mut registries = Vec::new();
    for route in &plan.routes {
        let prefix = route.source.to_string();
        let mut registry = Table::new();
        registry.insert("prefix".into(), Value::String(prefix.clone()));
        registry.insert("location".into(), Value::String(prefix));
        if let Some(mirror) = route.mirror() {
            let mut entry = Table::new();
            entry.insert("location".into(), Value::String(mirror.to_string()));
            if tls.insecure(&mirror.host) {
                entry.insert("insecure".into(), Value::Boolean(true));
            }
            registry.insert("mirror".into(), Value::Array(vec![Value::Table(entry)]));
        }
        registries.push(Value::Table(registry));
    }
    let lines: String = plan.routes.iter().map(|route| format!("#   line {}: {}\n", route.line, route.rule)).collect();
    let mut document = Table::new();
    document.insert("registry".into(), Value::Array(registries));
    let text = format!("{}# Rules:\n{lines}{document}", header("#", origin));
    Rendered { files: vec![(String::new(), text)], skipped: Vec::new() }.with_plan_skips(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_config::tests::plan;

    #[test]
    fn every_prefix_route_is_a_registry_and_mirrors_carry_tls() {
        let plan = plan(
            "docker.io::m.example.org/hub\ndocker.io/internal::\ngcr.io/p::m.example.org:5000/gcr\ndefault::x.example.org\n",
        );
        let tls = MirrorTls { insecure: ["m.example.org:5000".into()].into(), ..MirrorTls::default() };
        let rendered = render(&plan, &tls, "rules.conf");
        assert_eq!(rendered.skipped.iter().map(|s| s.line).collect::<Vec<_>>(), [4]);
        let parsed: Table = rendered.files[0].1.parse().unwrap();
        let registries = parsed["registry"].as_array().unwrap();
        let summary: Vec<_> = registries
            .iter()
            .map(|r| {
                let mirror = r.get("mirror").and_then(|m| m[0].get("location")).and_then(Value::as_str);
                (r["prefix"].as_str().unwrap(), r["location"].as_str().unwrap(), mirror)
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("docker.io", "docker.io", Some("m.example.org/hub")),
                ("docker.io/internal", "docker.io/internal", None),
                ("gcr.io/p", "gcr.io/p", Some("m.example.org:5000/gcr")),
            ]
        );
        assert_eq!(registries[2]["mirror"][0]["insecure"].as_bool(), Some(true));
        assert!(registries[0]["mirror"][0].get("insecure").is_none());
    }
}
