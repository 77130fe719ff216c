//! The Kubernetes API: a client whose every error names the API server and what to do, and
//! the Secret or ConfigMap key that holds rules (`NAMESPACE/NAME[:KEY]`, Palette's
//! `registry-info` Secret among them). Used by `serve`'s watch of the rules object
//! (`server::kube_rules`), by `audit` (the rules read once, the workloads listed) and by both
//! commands' `--rules-secret`/`--rules-configmap` flags.

use std::fmt;
use std::path::Path;

use anyhow::Context;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;

use crate::credentials::{self, RegistryInfo};
use crate::rules_file::Format;

/// The key read when `NAMESPACE/NAME` names none: Palette's `registry-info` layout.
pub const DEFAULT_KEY: &str = "MIRROR_REGISTRIES";

/// Which kind of object holds the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A `v1` Secret (`data` is base64 on the wire, decoded by the client).
    Secret,
    /// A `v1` ConfigMap (`data`, or `binaryData`).
    ConfigMap,
}

/// `NAMESPACE/NAME[:KEY]` of the object holding the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSource {
    /// Secret or ConfigMap.
    pub kind: ObjectKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The key whose value is the rules text.
    pub key: String,
}

impl ObjectSource {
    /// Parses `NAMESPACE/NAME[:KEY]` (KEY defaults to [`DEFAULT_KEY`]).
    pub fn parse(kind: ObjectKind, value: &str) -> Result<Self, String> {
        let (object, key) = match value.split_once(':') {
            Some((object, key)) => (object, key),
            None => (value, DEFAULT_KEY),
        };
        let (namespace, name) =
            object.split_once('/').ok_or_else(|| format!("`{value}`: expected NAMESPACE/NAME[:KEY]"))?;
        if !is_dns_label(namespace) {
            return Err(format!("`{value}`: `{namespace}` is not a namespace name (a DNS label: [a-z0-9-], ≤ 63)"));
        }
        if !is_dns_subdomain(name) {
            return Err(format!("`{value}`: `{name}` is not an object name (a DNS subdomain: [a-z0-9.-], ≤ 253)"));
        }
        if !is_data_key(key) {
            return Err(format!("`{value}`: `{key}` is not a data key ([-._a-zA-Z0-9], ≤ 253)"));
        }
        Ok(Self { kind, namespace: namespace.to_owned(), name: name.to_owned(), key: key.to_owned() })
    }

    /// The rules format: `--format` if given, else by the key's extension (`rules.yaml` is YAML).
    pub fn format(&self, given: Option<Format>) -> Format {
        given.unwrap_or_else(|| Format::for_path(Path::new(&self.key)))
    }

    /// The text of [`Self::key`] in a Secret.
    pub fn secret_text(&self, secret: &Secret) -> Result<String, String> {
        let bytes = secret.data.as_ref().and_then(|data| data.get(&self.key)).map(|bytes| bytes.0.clone());
        // `stringData` is write-only in the API; honoured should a client ever pass it back.
        let bytes = bytes.or_else(|| {
            secret.string_data.as_ref().and_then(|data| data.get(&self.key)).map(|text| text.clone().into_bytes())
        });
        let keys = secret.data.as_ref().map(|data| data.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        self.utf8(bytes, &keys)
    }

    /// The text of [`Self::key`] in a ConfigMap (`data`, else `binaryData`).
    pub fn config_map_text(&self, map: &ConfigMap) -> Result<String, String> {
        if let Some(text) = map.data.as_ref().and_then(|data| data.get(&self.key)) {
            return Ok(text.clone());
        }
        let bytes = map.binary_data.as_ref().and_then(|data| data.get(&self.key)).map(|bytes| bytes.0.clone());
        let mut keys: Vec<String> = map.data.iter().flat_map(|data| data.keys().cloned()).collect();
        keys.extend(map.binary_data.iter().flat_map(|data| data.keys().cloned()));
        self.utf8(bytes, &keys)
    }

    fn utf8(&self, bytes: Option<Vec<u8>>, keys: &[String]) -> Result<String, String> {
        let bytes = bytes.ok_or_else(|| format!("{self} has no key {} (its keys: {})", self.key, list(keys)))?;
        String::from_utf8(bytes).map_err(|_| format!("{self}: the value of {} is not UTF-8 text", self.key))
    }
}

impl fmt::Display for ObjectSource {
    /// `secret/NAMESPACE/NAME:KEY`: the origin in diagnostics (`secret/jet-system/registry-info:MIRROR_REGISTRIES:3: …`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ObjectKind::Secret => "secret",
            ObjectKind::ConfigMap => "configmap",
        };
        write!(f, "{kind}/{}/{}:{}", self.namespace, self.name, self.key)
    }
}

fn list(keys: &[String]) -> String {
    if keys.is_empty() { "none".to_owned() } else { keys.join(", ") }
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

fn is_data_key(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A Kubernetes API client and the server it talks to, which every message about the API names.
#[derive(Clone)]
pub struct ApiClient {
    /// The client.
    pub client: Client,
    /// The API server's URL (`https://10.96.0.1:443`).
    pub server: String,
}

impl ApiClient {
    /// `what failed at SERVER: why (each cause once): what to do`, for an error from this client.
    pub fn error(&self, what: &str, error: &(dyn std::error::Error + 'static)) -> String {
        let why = crate::error_chain::one_line(error);
        format!("{what} at the Kubernetes API {}: {why}: {}", self.server, api_hint(error))
    }
}

/// What to do about an API error: by the API's status code when it answered, else reach it.
fn api_hint(error: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(kube::Error::Api(status)) = current.downcast_ref::<kube::Error>() {
            return match status.code {
                401 => "the API refused the credentials: check the kubeconfig's user (--kubeconfig)",
                403 => "the account may not do this: grant it with RBAC (the chart's Role, or audit.rbac.enabled)",
                404 => "no such object or kind: check the name and namespace",
                _ => "see the API server's message",
            };
        }
        cause = current.source();
    }
    "is the API server up and reachable from here? (--kubeconfig selects it)"
}

/// Builds the API client: `kubeconfig` if given, else in-cluster, else `$KUBECONFIG`/`~/.kube/config`.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<ApiClient> {
    let config = match kubeconfig {
        Some(path) => {
            let name = path.display();
            if let Err(error) = std::fs::metadata(path) {
                anyhow::bail!("--kubeconfig {name}: {error}: give the path of a kubeconfig file");
            }
            let file = kube::config::Kubeconfig::read_from(path).map_err(|error| {
                anyhow::anyhow!("--kubeconfig {name} is not a kubeconfig: {}", crate::error_chain::one_line(&error))
            })?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await.map_err(
                |error| anyhow::anyhow!("--kubeconfig {name} cannot be used: {}", crate::error_chain::one_line(&error)),
            )?
        }
        None => kube::Config::infer().await.map_err(|_| anyhow::anyhow!("{}", no_configuration()))?,
    };
    let server = config.cluster_url.to_string();
    let server = server.strip_suffix('/').unwrap_or(&server).to_owned();
    let client = Client::try_from(config).context("creating the Kubernetes API client")?;
    Ok(ApiClient { client, server })
}

/// Why no API configuration was found, naming the one kubeconfig looked at, and what to do.
/// (kube's own error quotes each place twice and nests the reasons.)
fn no_configuration() -> String {
    let kubeconfig = match std::env::var_os("KUBECONFIG").filter(|value| !value.is_empty()) {
        Some(value) => Some((std::path::PathBuf::from(value), "$KUBECONFIG")),
        None => std::env::var_os("HOME").map(|home| (Path::new(&home).join(".kube/config"), "the default")),
    };
    let looked = match kubeconfig {
        Some((path, which)) => match std::fs::metadata(&path) {
            Err(error) => format!("no kubeconfig at {} ({which}): {error}", path.display()),
            Ok(_) => format!("the kubeconfig {} ({which}) has no usable context", path.display()),
        },
        None => "no $KUBECONFIG and no $HOME".to_owned(),
    };
    format!(
        "no Kubernetes API to talk to: not running in a cluster (KUBERNETES_SERVICE_HOST is not set) and {looked}: \
         give --kubeconfig FILE (or set KUBECONFIG)"
    )
}

impl ObjectSource {
    /// Reads the object once (`audit`'s rules): the key's text, and the mirror settings of a
    /// Palette `registry-info` Secret (for `--check-mirror`).
    pub async fn read_once(&self, api: &ApiClient) -> anyhow::Result<(String, Option<RegistryInfo>)> {
        let (text, palette) = match self.kind {
            ObjectKind::Secret => {
                let secret: Secret = self.get(api).await?;
                (self.secret_text(&secret), registry_info(&secret))
            }
            ObjectKind::ConfigMap => (self.config_map_text(&self.get(api).await?), None),
        };
        Ok((text.map_err(anyhow::Error::msg)?, palette))
    }

    /// The object, of kind `K`; the error names it and the API server.
    async fn get<K>(&self, api: &ApiClient) -> anyhow::Result<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + fmt::Debug,
    {
        kube::Api::<K>::namespaced(api.client.clone(), &self.namespace)
            .get(&self.name)
            .await
            .map_err(|error| anyhow::anyhow!(api.error(&format!("reading {self}"), &error)))
    }
}

/// The mirror settings of a Palette `registry-info` Secret (`DOMAIN`, `USERNAME`/`PASSWORD`,
/// `CA_CERT`, `INSECURE`), for `--swap-policy exists`; `None` when it has no valid `DOMAIN`.
pub fn registry_info(secret: &Secret) -> Option<RegistryInfo> {
    let (data, strings) = (secret.data.as_ref(), secret.string_data.as_ref());
    let value = |key: &str| {
        let bytes = data.and_then(|data| data.get(key)).map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned());
        bytes.or_else(|| strings.and_then(|strings| strings.get(key)).cloned())
    };
    credentials::registry_info(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_name_and_key() {
        let cases = [
            ("jet-system/registry-info", Ok(("jet-system", "registry-info", DEFAULT_KEY))),
            ("jet-system/registry-info:rules.yaml", Ok(("jet-system", "registry-info", "rules.yaml"))),
            ("ns/a.b-c:K_1", Ok(("ns", "a.b-c", "K_1"))),
            ("registry-info", Err("expected NAMESPACE/NAME")),
            ("Jet/registry-info", Err("not a namespace name")),
            ("jet/registry_info", Err("not an object name")),
            ("jet/registry-info:", Err("not a data key")),
            ("jet/registry-info:a/b", Err("not a data key")),
            ("/registry-info", Err("not a namespace name")),
        ];
        for (input, expected) in cases {
            let parsed = ObjectSource::parse(ObjectKind::Secret, input);
            match (parsed, expected) {
                (Ok(source), Ok((namespace, name, key))) => {
                    assert_eq!(
                        (source.namespace.as_str(), source.name.as_str(), source.key.as_str()),
                        (namespace, name, key)
                    );
                }
                (Err(message), Err(part)) => assert!(message.contains(part), "{input}: {message}"),
                (parsed, expected) => panic!("{input}: got {parsed:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn reads_the_key_and_names_the_keys_when_it_is_missing() {
        let source = ObjectSource::parse(ObjectKind::Secret, "jet-system/registry-info").unwrap();
        let data = [("DOMAIN", "harbor"), (DEFAULT_KEY, "docker.io::harbor/hub")]
            .map(|(key, value)| (key.to_owned(), k8s_openapi::ByteString(value.as_bytes().to_vec())));
        let secret = Secret { data: Some(data.into_iter().collect()), ..Secret::default() };
        assert_eq!(source.secret_text(&secret), Ok("docker.io::harbor/hub".to_owned()));
        let other = ObjectSource { key: "RULES".into(), ..source.clone() };
        let missing = other.secret_text(&secret).unwrap_err();
        assert!(missing.contains("has no key RULES (its keys: DOMAIN, MIRROR_REGISTRIES)"), "{missing}");
        assert_eq!(source.to_string(), "secret/jet-system/registry-info:MIRROR_REGISTRIES");

        let map_source = ObjectSource { kind: ObjectKind::ConfigMap, key: "rules.yaml".into(), ..source };
        assert_eq!(map_source.format(None), Format::Yaml);
        let binary = [("rules.yaml".to_owned(), k8s_openapi::ByteString(vec![0xff]))];
        let map = ConfigMap { binary_data: Some(binary.into_iter().collect()), ..ConfigMap::default() };
        assert!(map_source.config_map_text(&map).unwrap_err().contains("not UTF-8"));
    }
}
