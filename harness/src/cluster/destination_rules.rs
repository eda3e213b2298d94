//! Every DestinationRule of the cluster as the API server holds it now
//! (`networking.istio.io/v1`, all namespaces): what istiod's pushes are compared with.

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

/// The objects as JSON (`metadata`, `spec`).
pub async fn all(client: &Client) -> Result<Vec<serde_json::Value>, String> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "networking.istio.io",
        "v1",
        "DestinationRule",
    ));
    let list = Api::<DynamicObject>::all_with(client.clone(), &resource)
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot list DestinationRules in all namespaces: {e}")
        })?;
    list.items
        .iter()
        .map(|o| {
            serde_json::to_value(o)
                .map_err(|e| format!("a DestinationRule does not serialize back to JSON: {e}"))
        })
        .collect()
}
