//! K3s and RKE2: `registries.yaml` (/etc/rancher/k3s/registries.yaml,
//! /etc/rancher/rke2/registries.yaml). `mirrors.<source host>.endpoint` names the mirror host;
//! `rewrite` regexes (applied to the repository path) carry path-level sources and targets
//! with a path; `configs.<mirror host>` holds `auth` and `tls`. K3s keeps rewrites in a Go map,
//! tried in no fixed order, so the regexes of one registry are made mutually exclusive: each
//! route's regex leaves out the longer routes beneath it, as the webhook's longest match does.

use std::collections::BTreeMap;

use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

use super::docker_config::Credential;
use super::{Location, MirrorTls, Plan, Rendered, Route, header};

/// What goes into `configs`: credentials by mirror host, and TLS.
#[derive(Clone, Debug, Default)]
pub struct K3sOptions {
    /// Credentials by registry host (from a Docker config JSON).
    pub credentials: BTreeMap<String, Credential>,
    /// CA and verification of the mirrors.
    pub tls: MirrorTls,
}

/// `(?:…)` matching every string that starts with none of `words` (each ends in `/`, none
/// a prefix of another), or `None` when the empty string is itself excluded.
fn none_of(words: &[&str]) -> Option<String> {
    if words.is_empty() {
        return Some(".*".to_owned());
    }
    if words.iter().any(|word| word.is_empty()) {
        return None;
    }
    let mut alternatives = vec!["$".to_owned()];
    let mut firsts: Vec<char> = words.iter().filter_map(|word| word.chars().next()).collect();
    firsts.dedup();
    let class: String = firsts.iter().map(|&c| if c == '-' { "\\-".to_owned() } else { c.to_string() }).collect();
    alternatives.push(format!("[^{class}].*"));
    for &first in &firsts {
        let rests: Vec<&str> = words.iter().filter_map(|word| word.strip_prefix(first)).collect();
        if let Some(rest) = none_of(&rests) {
            alternatives.push(format!("{}{rest}", escape(&first.to_string())));
        }
    }
    Some(format!("(?:{})", alternatives.join("|")))
}

/// A path as a regex literal (paths hold `[a-z0-9._/-]`; only `.` is special).
fn escape(path: &str) -> String {
    path.replace('.', "\\.")
}

/// The `rewrite` entry of `route` on its registry's `routes`, if it changes the path.
fn rewrite(route: &Route, mirror: &Location, routes: &[&Route]) -> Option<(String, String)> {
    let skip = if route.source.path.is_empty() { 0 } else { route.source.path.len() + 1 };
    let mut beneath: Vec<String> = routes
        .iter()
        .filter(|other| route.contains(other))
        .map(|other| format!("{}/", &other.source.path[skip..]))
        .collect();
    beneath.sort();
    let words: Vec<&str> = beneath.iter().map(String::as_str).collect();
    if route.source.path == mirror.path {
        return None;
    }
    let rest = none_of(&words)?;
    let pattern = match route.source.path.as_str() {
        "" => format!("^({rest})"),
        path => format!("^{}/({rest})", escape(path)),
    };
    let replacement = match mirror.path.as_str() {
        "" => "${1}".to_owned(),
        path => format!("{path}/${{1}}"),
    };
    Some((pattern, replacement))
}

fn string(text: &str) -> Yaml {
    Yaml::String(text.to_owned())
}

fn hash(entries: impl IntoIterator<Item = (&'static str, Yaml)>) -> Yaml {
    Yaml::Hash(entries.into_iter().map(|(key, value)| (string(key), value)).collect())
}

/// The `configs` entry of one mirror host, if it has anything to say.
fn config(host: &str, options: &K3sOptions) -> Option<Yaml> {
    let mut entry = Vec::new();
    match options.credentials.get(host) {
        Some(Credential::Basic { username, password }) => {
            entry.push(("auth", hash([("username", string(username)), ("password", string(password))])));
        }
        Some(Credential::IdentityToken(token)) => entry.push(("auth", hash([("identity_token", string(token))]))),
        None => {}
    }
    let mut tls = Vec::new();
    if let Some(ca) = &options.tls.ca {
        tls.push(("ca_file", string(ca)));
    }
    if options.tls.insecure(host) {
        tls.push(("insecure_skip_verify", Yaml::Boolean(true)));
    }
    if !tls.is_empty() {
        entry.push(("tls", hash(tls)));
    }
    (!entry.is_empty()).then(|| hash(entry))
}

/// The whole `registries.yaml`.
pub fn render(plan: &Plan, options: &K3sOptions, origin: &str) -> Rendered {
    let mut rendered = Rendered::default();
    let (mut mirrors, mut configs) = (Hash::new(), Hash::new());
    let mut comments = String::new();
    for (host, routes) in plan.by_host() {
        let host_level = routes.first().filter(|route| route.source.path.is_empty());
        let chosen = host_level.and_then(Route::mirror).or_else(|| {
            routes.iter().filter(|route| route.mirror().is_some()).min_by_key(|route| route.line)?.mirror()
        });
        let Some(chosen) = chosen.map(|mirror| mirror.host.clone()) else { continue };
        let mut kept = Vec::new();
        for route in routes {
            match route.mirror() {
                Some(mirror) if mirror.host == chosen => kept.push(route),
                Some(_) => rendered.skipped.push(route.skipped(format!(
                    "K3s gives {host} one mirror host, {chosen}: a path cannot go to another host"
                ))),
                None => rendered.skipped.push(route.skipped(format!(
                    "K3s sends every {host} pull to {chosen} first and reaches {host} only by its default-endpoint fallback"
                ))),
            }
        }
        let mut rewrites = Hash::new();
        for route in &kept {
            comments.push_str(&format!("#   line {}: {}\n", route.line, route.rule));
            if let Some((pattern, replacement)) = route.mirror().and_then(|mirror| rewrite(route, mirror, &kept)) {
                rewrites.insert(string(&pattern), string(&replacement));
            }
        }
        let mut entry = vec![("endpoint", Yaml::Array(vec![string(&format!("https://{chosen}"))]))];
        if !rewrites.is_empty() {
            entry.push(("rewrite", Yaml::Hash(rewrites)));
        }
        mirrors.insert(string(host), hash(entry));
        if let Some(config) = config(&chosen, options) {
            configs.insert(string(&chosen), config);
        }
    }
    let mut document = vec![("mirrors", Yaml::Hash(mirrors))];
    if !configs.is_empty() {
        document.push(("configs", Yaml::Hash(configs)));
    }
    let mut yaml = String::new();
    // Writing to a String cannot fail; an emitter error would leave a partial document, so
    // the file is then only the comments and K3s sees no mirrors rather than half of them.
    if YamlEmitter::new(&mut yaml).dump(&hash(document)).is_err() {
        yaml.clear();
    }
    let text = format!("{}# Rules:\n{comments}{}\n", header("#", origin), yaml.trim_start_matches("---\n"));
    rendered.files.push((String::new(), text));
    rendered.with_plan_skips(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_config::tests::plan;

    #[test]
    fn none_of_matches_exactly_the_strings_outside_the_words() {
        let pattern = none_of(&["bitnami/", "bit/", "b-x/"]).unwrap();
        let re = regex::Regex::new(&format!("^{pattern}$")).unwrap();
        for (text, matches) in [
            ("nginx", true),
            ("bitnami/redis", false),
            ("bitnami", true),
            ("bitnamix/y", true),
            ("bit/a", false),
            ("bi", true),
            ("b-x/y", false),
            ("b-y/x", true),
            ("", true),
        ] {
            assert_eq!(re.is_match(text), matches, "{text} against {pattern}");
        }
    }

    #[test]
    fn one_mirror_per_registry_and_the_rest_skipped() {
        let plan = plan(
            "docker.io::m.example.org/hub\ndocker.io/bitnami::m.example.org/b\ndocker.io/other::n.example.org\n\
             docker.io/internal::\ngcr.io/p::m.example.org/gcr\nquay.io::\n",
        );
        let rendered = render(&plan, &K3sOptions::default(), "rules.conf");
        assert_eq!(rendered.skipped.iter().map(|s| s.line).collect::<Vec<_>>(), [3, 4]);
        let text = &rendered.files[0].1;
        let doc = &yaml_rust2::YamlLoader::load_from_str(text).unwrap()[0];
        assert_eq!(doc["mirrors"]["docker.io"]["endpoint"][0].as_str(), Some("https://m.example.org"));
        assert_eq!(doc["mirrors"]["gcr.io"]["rewrite"]["^p/(.*)"].as_str(), Some("gcr/${1}"));
        assert!(doc["mirrors"]["quay.io"].is_badvalue(), "{text}");
        assert!(doc["configs"].is_badvalue(), "{text}");
    }
}
