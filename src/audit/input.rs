//! Workloads of a live cluster, through the Kubernetes API: Pods and the pod templates of
//! every kind `/mutate` rewrites, listed page by page (`limit` + `continue`), so a 10k-Pod
//! cluster is streamed, never held whole. Read-only: list, nothing else.

use anyhow::Context;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};

use super::Inventory;
use crate::k8s::api::ApiClient;
use crate::k8s::workload::KINDS;

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
