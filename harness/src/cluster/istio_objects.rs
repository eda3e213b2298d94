//! Istio's configuration objects as the API server holds them now (`<group>/v1`, all
//! namespaces): the DestinationRules istiod's pushes are compared with, the mesh-wide
//! policy the fresh start judges.

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

/// Every object of `group`/`kind` as JSON (`metadata`, `spec`); `None` when the API
/// server does not serve the kind (its CRD is not installed).
pub async fn all(
    client: &Client,
    group: &str,
    kind: &str,
) -> Result<Option<Vec<serde_json::Value>>, String> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind));
    let list = match Api::<DynamicObject>::all_with(client.clone(), &resource)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list,
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot list {kind}s in all namespaces: {}",
                crate::words::kube_error(&e)
            ));
        }
    };
    list.items
        .iter()
        .map(|o| {
            serde_json::to_value(o)
                .map_err(|e| format!("a {kind} does not serialize back to JSON: {e}"))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Every DestinationRule; an API server that serves none is an error (istiod pushes
/// are compared with them only where Istio runs).
pub async fn destination_rules(client: &Client) -> Result<Vec<serde_json::Value>, String> {
    all(client, "networking.istio.io", "DestinationRule")
        .await?
        .ok_or_else(|| {
            "cannot list DestinationRules in all namespaces: the API server serves no networking.istio.io/v1 DestinationRule (is Istio installed?)".to_string()
        })
}
