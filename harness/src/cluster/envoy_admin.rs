//! Reading a sidecar's Envoy admin API (port 15000, bound to the pod's loopback)
//! through a port-forward: the config dump for the proxy-config oracle.

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const ADMIN_PORT: u16 = 15000;
const DEADLINE: Duration = Duration::from_secs(20);

/// `GET path` on the pod's Envoy admin port; the body as JSON.
pub async fn get_json(
    client: &Client,
    namespace: &str,
    pod: &str,
    path: &str,
) -> Result<serde_json::Value, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let exchange = async {
        let mut forwarder = pods
            .portforward(pod, &[ADMIN_PORT])
            .await
            .map_err(|e| format!("cannot port-forward to {namespace}/{pod}:{ADMIN_PORT}: {e}"))?;
        let mut stream = forwarder
            .take_stream(ADMIN_PORT)
            .ok_or_else(|| format!("no stream for {namespace}/{pod}:{ADMIN_PORT}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        drop(stream);
        let _ = forwarder.join().await;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(DEADLINE, exchange)
        .await
        .map_err(|_| {
            format!(
                "Envoy admin of {namespace}/{pod} did not answer {path} within {} s",
                DEADLINE.as_secs()
            )
        })??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("Envoy admin of {namespace}/{pod} answered without HTTP headers"))?;
    if !head.lines().next().is_some_and(|l| l.contains(" 200")) {
        return Err(format!(
            "Envoy admin of {namespace}/{pod} answered `{}` to {path}",
            head.lines().next().unwrap_or("")
        ));
    }
    serde_json::from_str(body)
        .map_err(|e| format!("Envoy admin of {namespace}/{pod}: {path} is not JSON: {e}"))
}
