//! What `audit` reads, one place that the coming `sync` shares: manifests from files,
//! directories (their .yaml, .yml and .json files, recursively) and stdin, the workloads of a
//! live cluster, and image lists of `SOURCE [TARGET]` lines. Used by [`super::plan`].
//!
//! Workloads of a live cluster, through the Kubernetes API: Pods and the pod templates of
//! every kind `/mutate` rewrites, listed page by page (`limit` + `continue`), so a 10k-Pod
//! cluster is streamed, never held whole. Read-only: list, nothing else.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::Context;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

use super::{Inventory, json, stream};
use crate::k8s::api::ApiClient;
use crate::k8s::workload::KINDS;

/// Records every workload of a file, a directory's manifests, or stdin (`-`).
pub fn record_path(path: &Path, inventory: &mut Inventory) -> anyhow::Result<()> {
    if path == Path::new("-") {
        return record_reader(std::io::stdin().lock(), "-", inventory);
    }
    if path.is_dir() {
        for file in manifests_in(path)? {
            record_path(&file, inventory)?;
        }
        return Ok(());
    }
    let file = std::fs::File::open(path).map_err(|error| {
        anyhow::anyhow!("-f {}: {error}: give a manifest file, a directory of them, or - for stdin", path.display())
    })?;
    record_reader(BufReader::with_capacity(64 * 1024, file), &path.display().to_string(), inventory)
}

/// JSON when the first character that is not whitespace opens an object or array (JSON parsed
/// as YAML would not stream), YAML otherwise.
fn record_reader(mut reader: impl BufRead, origin: &str, inventory: &mut Inventory) -> anyhow::Result<()> {
    let json = loop {
        let buffer = reader.fill_buf().with_context(|| format!("reading {origin}"))?;
        match buffer.iter().position(|byte| !byte.is_ascii_whitespace()) {
            Some(at) => break matches!(buffer[at], b'{' | b'['),
            None if buffer.is_empty() => return Ok(()),
            None => {
                let all = buffer.len();
                reader.consume(all);
            }
        }
    };
    let record = |document: Value, line: u64| inventory.record(&document).map_err(|error| format!("{line}: {error}"));
    let result = if json { json::documents(reader, record) } else { stream::documents(reader, record) };
    result.map_err(|error| anyhow::anyhow!("{origin}:{error}"))
}

/// The .yaml, .yml and .json files under `dir`, sorted, recursively.
fn manifests_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading the directory {}", dir.display()))? {
            let path = entry.with_context(|| format!("reading the directory {}", dir.display()))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ["yaml", "yml", "json"].iter().any(|known| ext == *known)) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// One line of an image list: an image and, when the line names one, where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedImage {
    /// `SOURCE`, the image as written.
    pub source: String,
    /// `TARGET`, when the line has one.
    pub target: Option<String>,
    /// The line it is on, from 1.
    pub line: u64,
}

/// Reads an image list: `SOURCE [TARGET]` per line, separated by blanks, as `audit --output
/// copy-list` writes it for `skopeo copy` / `crane copy` loops. Blank lines and what follows
/// a `#` are skipped (no image reference holds one). The error is `ORIGIN:LINE: reason`.
pub fn image_list(reader: impl BufRead, origin: &str) -> anyhow::Result<Vec<ListedImage>> {
    let mut images = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let number = index as u64 + 1;
        let line = line.with_context(|| format!("reading {origin}"))?;
        let code = line.split('#').next().unwrap_or("");
        let mut fields = code.split_whitespace();
        let Some(source) = fields.next() else { continue };
        let target = fields.next().map(str::to_owned);
        if let Some(extra) = fields.next() {
            anyhow::bail!(
                "{origin}:{number}: expected SOURCE [TARGET], found a third field `{}`",
                crate::rewrite::excerpt(extra)
            );
        }
        images.push(ListedImage { source: source.to_owned(), target, line: number });
    }
    Ok(images)
}

/// Every kind, from each namespace in `namespaces` (all namespaces when empty), into
/// `inventory`, `page_size` objects per request.
pub async fn record_cluster(
    api: &ApiClient,
    namespaces: &[String],
    page_size: u32,
    inventory: &mut Inventory,
) -> anyhow::Result<()> {
    for (group, kind, spec_path) in KINDS {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind));
        let apis: Vec<Api<DynamicObject>> = if namespaces.is_empty() {
            vec![Api::all_with(api.client.clone(), &resource)]
        } else {
            namespaces.iter().map(|namespace| Api::namespaced_with(api.client.clone(), namespace, &resource)).collect()
        };
        for listing in apis {
            let mut params = ListParams::default().limit(page_size.max(1));
            loop {
                let page = listing
                    .list(&params)
                    .await
                    .map_err(|error| anyhow::anyhow!(api.error(&format!("listing {}", plural(&resource)), &error)))?;
                for item in &page.items {
                    let namespace = item.namespace();
                    let value = serde_json::to_value(item).context("reading a listed object")?;
                    inventory
                        .record_workload(kind, spec_path, &value, namespace.as_deref())
                        .map_err(anyhow::Error::msg)?;
                }
                match page.metadata.continue_.filter(|token| !token.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
    }
    Ok(())
}

/// `deployments.apps`, `pods`: how kubectl names a resource.
fn plural(resource: &ApiResource) -> String {
    if resource.group.is_empty() { resource.plural.clone() } else { format!("{}.{}", resource.plural, resource.group) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(text: &str) -> anyhow::Result<Vec<(String, Option<String>, u64)>> {
        let images = image_list(text.as_bytes(), "images.txt")?;
        Ok(images.into_iter().map(|image| (image.source, image.target, image.line)).collect())
    }

    #[test]
    fn reads_source_and_target_per_line() {
        let text = "# copied by sync\n\ndocker.io/library/nginx:1.27 harbor.example.org/hub/nginx:1.27\r\n  quay.io/a/b \t\n\
                    gcr.io/p/app@sha256:0123 m.example/p/app@sha256:0123 # pinned\n";
        let owned = |text: &str| text.to_owned();
        assert_eq!(
            listed(text).unwrap(),
            [
                (owned("docker.io/library/nginx:1.27"), Some(owned("harbor.example.org/hub/nginx:1.27")), 3),
                (owned("quay.io/a/b"), None, 4),
                (owned("gcr.io/p/app@sha256:0123"), Some(owned("m.example/p/app@sha256:0123")), 5),
            ]
        );
        assert_eq!(listed("").unwrap(), []);
    }

    #[test]
    fn a_third_field_is_an_error_naming_the_line() {
        let error = listed("a b\nnginx m.example/nginx extra\n").unwrap_err().to_string();
        assert_eq!(error, "images.txt:2: expected SOURCE [TARGET], found a third field `extra`");
    }
}
