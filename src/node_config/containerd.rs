//! containerd: one `hosts.toml` per mirrored registry (`config_path` style, e.g.
//! /etc/containerd/certs.d/<host>/hosts.toml) or the legacy
//! `plugins."io.containerd.grpc.v1.cri".registry.mirrors` block that Palette's documents show.
//! containerd mirrors whole registries, so only host-level routes are expressible. hosts.toml
//! has no credentials: pulls authenticate with the kubelet's imagePullSecrets (or the CRI
//! plugin's `registry.configs.<host>.auth`).

use toml::{Table, Value};

use super::{Destination, MirrorTls, Plan, Rendered, Route, header};

/// The registry containerd talks to for Docker Hub.
const DOCKER_HUB_SERVER: &str = "https://registry-1.docker.io";

/// The host-level mirror routes, and every other route as skipped.
fn host_routes(plan: &Plan) -> (Vec<&Route>, Rendered) {
    let (mut mirrored, mut rendered) = (Vec::new(), Rendered::default());
    for (_, routes) in plan.by_host() {
        let host_level = routes.first().filter(|route| route.source.path.is_empty());
        for route in routes {
            if !route.source.path.is_empty() {
                let follows = match host_level.and_then(Route::mirror) {
                    Some(_) => "; its pulls follow the registry's mirror",
                    None => "",
                };
                let reason = match route.to {
                    Destination::Mirror(_) => "a path-level source: containerd mirrors whole registries",
                    Destination::Upstream => "an empty target for a path: containerd mirrors whole registries",
                };
                rendered.skipped.push(route.skipped(format!("{reason}{follows}")));
            } else if route.mirror().is_some() {
                mirrored.push(route);
            }
        }
    }
    (mirrored, rendered)
}

/// The upstream's URL for `server =`.
fn server(host: &str) -> String {
    if host == "docker.io" { DOCKER_HUB_SERVER.to_owned() } else { format!("https://{host}") }
}

/// The `[host."…"]` URL of a mirror, and whether it carries a path (`override_path`).
/// containerd appends `/v2/…` to a host URL unless `override_path` is set, in which case the
/// URL must hold the whole API prefix: `https://mirror/v2/<path>`.
pub fn host_url(mirror: &super::Location) -> (String, bool) {
    if mirror.path.is_empty() {
        (format!("https://{}", mirror.host), false)
    } else {
        (format!("https://{}/v2/{}", mirror.host, mirror.path), true)
    }
}

/// `hosts.toml` for one host-level route.
fn hosts_toml(route: &Route, tls: &MirrorTls, origin: &str) -> String {
    let Some(mirror) = route.mirror() else { return String::new() };
    let (url, override_path) = host_url(mirror);
    let mut host = Table::new();
    host.insert("capabilities".into(), Value::Array(vec!["pull".into(), "resolve".into()]));
    if override_path {
        host.insert("override_path".into(), Value::Boolean(true));
    }
    if let Some(ca) = &tls.ca {
        host.insert("ca".into(), Value::String(ca.clone()));
    }
    if tls.insecure(&mirror.host) {
        host.insert("skip_verify".into(), Value::Boolean(true));
    }
    let mut hosts = Table::new();
    hosts.insert(url, Value::Table(host));
    let mut document = Table::new();
    document.insert("server".into(), Value::String(server(&route.source.host)));
    document.insert("host".into(), Value::Table(hosts));
    format!("{}# {} (line {}).\n{document}", header("#", origin), route.rule, route.line)
}

/// `<host>/hosts.toml` for every mirrored registry.
pub fn render(plan: &Plan, tls: &MirrorTls, origin: &str) -> Rendered {
    let (mirrored, mut rendered) = host_routes(plan);
    for route in mirrored {
        rendered.files.push((format!("{}/hosts.toml", route.source.host), hosts_toml(route, tls, origin)));
    }
    rendered.with_plan_skips(plan)
}

/// The legacy CRI `registry.mirrors` block, one `endpoint` per registry, mirrors as written.
pub fn render_legacy(plan: &Plan) -> Rendered {
    let (mirrored, mut rendered) = host_routes(plan);
    let mut by_host = Table::new();
    for route in mirrored {
        let Some(mirror) = route.mirror() else { continue };
        let mut entry = Table::new();
        entry.insert("endpoint".into(), Value::Array(vec![Value::String(mirror.to_string())]));
        by_host.insert(route.source.host.clone(), Value::Table(entry));
    }
    let nest = |key: &str, inner: Table| Table::from_iter([(key.to_owned(), Value::Table(inner))]);
    let document = nest("plugins", nest("io.containerd.grpc.v1.cri", nest("registry", nest("mirrors", by_host))));
    rendered.files.push((String::new(), document.to_string()));
    rendered.with_plan_skips(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_config::tests::plan;

    #[test]
    fn only_host_level_routes_become_hosts_toml() {
        let plan = plan(
            "docker.io::m.example.org/hub\nquay.io::m.example.org\ngcr.io/p::m.example.org/gcr\nghcr.io::\n\
             k8s.gcr.io::m.example.org/k8s-\n[EXACT]a:1::m.example.org/a:1\ndocker.io/internal::\n",
        );
        let rendered = render(&plan, &MirrorTls::default(), "rules.conf");
        let names: Vec<_> = rendered.files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["docker.io/hosts.toml", "k8s.gcr.io/hosts.toml", "quay.io/hosts.toml"]);
        assert_eq!(rendered.skipped.iter().map(|s| s.line).collect::<Vec<_>>(), [3, 6, 7]);
        assert!(rendered.skipped[2].reason.ends_with("follow the registry's mirror"), "{:?}", rendered.skipped);
        let dash: Table = rendered.files[1].1.parse().unwrap();
        assert!(dash["host"].get("https://m.example.org/v2/k8s-k8s.gcr.io").is_some(), "{dash}");
    }

    #[test]
    fn hosts_toml_parses_back_with_server_mirror_and_tls() {
        let plan = plan("docker.io::m.example.org/hub/docker.io\nquay.io::m.example.org:5000\n");
        let tls = MirrorTls {
            ca: Some("/etc/ca.pem".into()),
            insecure: ["m.example.org:5000".into()].into(),
            ..MirrorTls::default()
        };
        let rendered = render(&plan, &tls, "rules.conf");
        let parsed: Table = rendered.files[0].1.parse().unwrap();
        assert_eq!(parsed["server"].as_str(), Some("https://registry-1.docker.io"));
        let host = &parsed["host"]["https://m.example.org/v2/hub/docker.io"];
        assert_eq!(host["override_path"].as_bool(), Some(true));
        assert_eq!(host["ca"].as_str(), Some("/etc/ca.pem"));
        assert!(host.get("skip_verify").is_none());
        let parsed: Table = rendered.files[1].1.parse().unwrap();
        assert_eq!(parsed["server"].as_str(), Some("https://quay.io"));
        let host = &parsed["host"]["https://m.example.org:5000"];
        assert!(host.get("override_path").is_none());
        assert_eq!(host["skip_verify"].as_bool(), Some(true));
    }
}
