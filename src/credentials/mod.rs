//! Registry credentials from Palette's documents, for `mirrorswap
//! pull-secret --from`: the `registry-info` Secret (`DOMAIN`, `USERNAME`,
//! `PASSWORD`, in `stringData` or base64 `data`), Edge user-data
//! (`registryCredentials`, `externalRegistries.registries[]`) and Registry
//! Connect pack values (`credentials[]`), at any depth.
//!
//! Passwords and certificates are [`Secret`]s, whose `Debug` prints nothing of
//! them; notes and errors name entries by path and line, never by value.

pub mod tree;

use std::fmt;

use base64::Engine;

use tree::Node;

/// A password, token or certificate body. `Debug` shows only that it is there.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself: for the one place that must write it (a pull secret, a login).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "Secret(empty)" } else { "Secret(redacted)" })
    }
}

/// One registry login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The registry's host[:port], as a pull secret's `auths` key.
    pub registry: String,
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: Secret,
    /// Where the document holds it: `stylus.externalRegistries.registries[0] (line 7)`.
    pub source: String,
}

/// What Palette's `registry-info` Secret says about the mirror registry. This is what a
/// cluster's mirrorswap reads from `jet-system/registry-info` to reach the registry itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryInfo {
    /// `DOMAIN` as host[:port] (a scheme or a path in it dropped).
    pub registry: String,
    /// `BASE_PATH` (may be empty).
    pub base_path: String,
    /// `USERNAME` (empty: anonymous).
    pub username: String,
    /// `PASSWORD` (empty: anonymous).
    pub password: Secret,
    /// `CA_CERT`, PEM, when given.
    pub ca_cert: Option<Secret>,
    /// `INSECURE` is `true`.
    pub insecure: bool,
}

impl RegistryInfo {
    /// The login it carries, unless the user name or password is empty.
    pub fn credential(&self, source: &str) -> Option<Credential> {
        (!self.username.is_empty() && !self.password.is_empty()).then(|| Credential {
            registry: self.registry.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            source: source.to_owned(),
        })
    }
}

/// Reads the `registry-info` keys through `value` (a Secret's decoded `data`, or its
/// `stringData`); `None` is a missing key. Errors name the key, never its value.
pub fn registry_info(value: impl Fn(&str) -> Option<String>) -> Result<RegistryInfo, String> {
    let domain = value("DOMAIN").filter(|domain| !domain.trim().is_empty()).ok_or("no DOMAIN")?;
    let insecure = match value("INSECURE").unwrap_or_default().trim().to_ascii_lowercase().as_str() {
        "true" => true,
        "false" | "" => false,
        _ => return Err("INSECURE must be `true` or `false`".into()),
    };
    Ok(RegistryInfo {
        registry: registry_host(&domain).map_err(|why| format!("DOMAIN: {why}"))?,
        base_path: value("BASE_PATH").unwrap_or_default().trim().trim_matches('/').to_owned(),
        username: value("USERNAME").unwrap_or_default().trim().to_owned(),
        password: Secret::new(value("PASSWORD").unwrap_or_default().trim_end_matches(['\n', '\r'])),
        ca_cert: value("CA_CERT").filter(|pem| !pem.trim().is_empty()).map(Secret::new),
        insecure,
    })
}

/// The host[:port] of a registry domain as Palette writes it: `10.10.254.254:8000/spectro-images`
/// is `10.10.254.254:8000`; a `https://` in front is dropped.
pub fn registry_host(domain: &str) -> Result<String, String> {
    let domain = domain.trim();
    let domain = domain.strip_prefix("https://").or_else(|| domain.strip_prefix("http://")).unwrap_or(domain);
    let host = domain.split('/').next().unwrap_or_default();
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_');
    if host.is_empty() || !host.bytes().all(valid) {
        return Err("not a registry host[:port]".into());
    }
    Ok(host.to_ascii_lowercase())
}

/// The credentials a document holds, and notes on entries skipped.
#[derive(Debug, Default)]
pub struct Found {
    /// One per registry, in document order.
    pub credentials: Vec<Credential>,
    /// Why entries were skipped, each naming the entry by path and line.
    pub notes: Vec<String>,
}

/// Every credential in a YAML document (or several, `---`-separated). An error is `LINE: reason`.
pub fn from_document(text: &str) -> Result<Found, String> {
    let documents = tree::documents(text).map_err(|(line, why)| format!("{line}: {why}"))?;
    let mut found = Found::default();
    for document in &documents {
        secret_manifest(document, &mut found);
        let mut path = Vec::new();
        walk(document, &mut path, &mut found);
    }
    Ok(found)
}

impl Found {
    fn add(&mut self, credential: Credential) {
        match self.credentials.iter().find(|known| known.registry == credential.registry) {
            Some(known) if known.username == credential.username && known.password == credential.password => {}
            Some(known) => self.notes.push(format!(
                "{}: a second login for {}; the first, {}, is kept",
                credential.source, credential.registry, known.source
            )),
            None => self.credentials.push(credential),
        }
    }
}

/// A `registry-info` Secret manifest: `stringData` as is, `data` base64-decoded.
fn secret_manifest(document: &Node, found: &mut Found) {
    let Some((info, line)) = manifest_info(document) else { return };
    let source = format!("registry-info (line {line})");
    match info {
        Ok(info) => match info.credential(&source) {
            Some(credential) => found.add(credential),
            None => found.notes.push(format!("{source}: no USERNAME or PASSWORD for {}: skipped", info.registry)),
        },
        Err(why) => found.notes.push(format!("{source}: {why}: skipped")),
    }
}

/// The `registry-info` keys of a Secret manifest document and its line; `None` when it has
/// no `DOMAIN` under `stringData` or `data`.
fn manifest_info(document: &Node) -> Option<(Result<RegistryInfo, String>, u32)> {
    let string_data = document.get("stringData");
    let data = document.get("data");
    let holds = |node: Option<&Node>| node.and_then(|node| node.get("DOMAIN")).is_some();
    if !holds(string_data) && !holds(data) {
        return None;
    }
    let lookup = |key: &str| {
        if let Some(text) = string_data.and_then(|node| node.get(key)).and_then(Node::text) {
            return Some(text.to_owned());
        }
        let encoded = data.and_then(|node| node.get(key)).and_then(Node::text)?;
        let compact: Vec<u8> = encoded.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD.decode(compact).ok().and_then(|bytes| String::from_utf8(bytes).ok())
    };
    Some((registry_info(lookup), string_data.or(data).map_or(1, Node::line)))
}

/// The mirror settings of the first `registry-info` Secret manifest in a YAML text (a
/// `registry-secret.yaml` given as `--rules`); `None` when there is none or it is invalid.
pub fn registry_info_in_document(text: &str) -> Option<RegistryInfo> {
    let documents = tree::documents(text).ok()?;
    documents.iter().find_map(manifest_info).and_then(|(info, _)| info.ok())
}

/// The mirror settings of a `registry-secret.yaml` manifest used as the rules file (`serve
/// --rules` and `audit --rules` with `--swap-policy exists` or `--check-mirror`), read
/// within the rules files' size bound; `None` when it holds none.
pub fn palette_of_rules_file(path: &std::path::Path) -> Option<RegistryInfo> {
    let bytes = crate::rules_file::read_bounded_bytes(path).ok()?;
    registry_info_in_document(std::str::from_utf8(&bytes).ok()?)
}

/// Looks for Edge and Registry Connect credential entries at any depth.
fn walk(node: &Node, path: &mut Vec<String>, found: &mut Found) {
    match node {
        Node::Map(entries, _) => {
            for (key, value) in entries {
                let under_external = path.last().is_some_and(|parent| parent == "externalRegistries");
                path.push(key.clone());
                match (key.as_str(), under_external, value) {
                    ("registryCredentials", _, Node::Map(..)) => entry(value, &dotted(path), found),
                    ("registryCredentials" | "credentials", _, Node::Seq(..)) | ("registries", true, Node::Seq(..)) => {
                        if let Node::Seq(items, _) = value {
                            for (index, item) in items.iter().enumerate() {
                                entry(item, &format!("{}[{index}]", dotted(path)), found);
                            }
                        }
                    }
                    _ => walk(value, path, found),
                }
                path.pop();
            }
        }
        Node::Seq(items, _) => {
            for (index, item) in items.iter().enumerate() {
                path.push(format!("[{index}]"));
                walk(item, path, found);
                path.pop();
            }
        }
        Node::Scalar(..) | Node::Skipped(_) => {}
    }
}

fn dotted(path: &[String]) -> String {
    crate::rules_file::yaml::dotted(path.iter().map(String::as_str))
}

/// One `{domain, username | usernameRef, password | passwordRef}` entry.
fn entry(node: &Node, path: &str, found: &mut Found) {
    let source = format!("{path} (line {})", node.line());
    let Some(domain) = node.get("domain").and_then(Node::text) else {
        found.notes.push(format!("{source}: no domain: skipped"));
        return;
    };
    let registry = match registry_host(domain) {
        Ok(registry) => registry,
        Err(why) => {
            found.notes.push(format!("{source}: domain: {why}: skipped"));
            return;
        }
    };
    for reference in ["usernameRef", "passwordRef"] {
        if node.get(reference).is_some() {
            found.notes.push(format!(
                "{source}: {registry}: `{reference}` names a Secret in the cluster, which cannot be read offline: \
                 skipped (give it with --server/--username/--password-file)"
            ));
            return;
        }
    }
    let text = |key: &str| node.get(key).and_then(Node::text).map(str::trim).unwrap_or_default();
    let (username, password) = (text("username"), text("password"));
    if username.is_empty() || password.is_empty() {
        found.notes.push(format!("{source}: {registry}: no username or password: skipped"));
        return;
    }
    found.add(Credential { registry, username: username.to_owned(), password: Secret::new(password), source });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_drop_paths_and_schemes() {
        for (domain, host) in [
            ("10.10.254.254:8000/spectro-images", Ok("10.10.254.254:8000")),
            ("https://Harbor.Example.org/a/b", Ok("harbor.example.org")),
            ("10.10.10.10", Ok("10.10.10.10")),
            ("", Err(())),
            ("a b", Err(())),
        ] {
            assert_eq!(registry_host(domain).map_err(|_| ()), host.map(str::to_owned), "{domain}");
        }
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let info = registry_info(|key| Some(format!("{key}-hunter2")).filter(|_| key != "INSECURE")).unwrap();
        assert!(!format!("{info:?}").contains("PASSWORD-hunter2"), "{info:?}");
        assert!(!format!("{info:?}").contains("CA_CERT-hunter2"), "{info:?}");
        assert_eq!(info.password.expose(), "PASSWORD-hunter2");
        assert_eq!(registry_info(|key| (key == "DOMAIN").then(|| "h".into())).unwrap().ca_cert, None);
        assert!(registry_info(|_| None).is_err());
    }
}
