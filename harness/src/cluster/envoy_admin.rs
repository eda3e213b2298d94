//! Reading a sidecar's Envoy admin API (port 15000, bound to the pod's loopback)
//! through a port-forward: the config dump for the proxy-config oracle.

use kube::Client;

pub const ADMIN_PORT: u16 = 15000;

/// `GET path` on the Envoy admin of a ready pod of `deployment` (an app workload, or
/// the ingress gateway in its namespace).
pub async fn get_json_of(
    client: &Client,
    namespace: &str,
    deployment: &str,
    path: &str,
) -> Result<serde_json::Value, String> {
    let pod = ready_pod_of(client, namespace, deployment).await?;
    get_json(client, namespace, &pod, path).await
}

/// A ready pod of `deployment`: the one whose proxy is read.
pub async fn ready_pod_of(
    client: &Client,
    namespace: &str,
    deployment: &str,
) -> Result<String, String> {
    let selector = super::workloads::selector_of(client, namespace, deployment).await?;
    super::portforward::ready_pod(client, namespace, &selector).await
}

/// `GET path` on the pod's Envoy admin port; the body as JSON.
pub async fn get_json(
    client: &Client,
    namespace: &str,
    pod: &str,
    path: &str,
) -> Result<serde_json::Value, String> {
    super::pod_http::get_json(client, namespace, pod, ADMIN_PORT, path, "Envoy admin").await
}
