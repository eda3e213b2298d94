//! Port-forwarding through the API server (works on kind and on any cluster): a local
//! listener on an ephemeral port; each accepted connection opens a forward to a ready
//! pod chosen at that moment, so a restarted or replaced pod is picked up by itself.

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// A running forward; dropping it stops listening.
pub struct Forward {
    pub local: SocketAddr,
    pub description: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The name of a ready pod matching `selector`, or why there is none.
pub async fn ready_pod(client: &Client, namespace: &str, selector: &str) -> Result<String, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| format!("cannot list pods `{selector}` in {namespace}: {e}"))?;
    list.items
        .iter()
        .find(|p| is_ready(p))
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| format!("no ready pod `{selector}` in {namespace}"))
}

/// Forwards 127.0.0.1:<ephemeral> to `port` of a ready pod matching `selector`.
pub async fn start(
    client: Client,
    namespace: &str,
    selector: &str,
    port: u16,
) -> Result<Forward, String> {
    // Fail early and clearly when there is nothing to forward to.
    ready_pod(&client, namespace, selector).await?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on loopback for a port-forward: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let description = format!("{local} → {namespace}/{selector}:{port}");
    let namespace = namespace.to_string();
    let selector = selector.to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let client = client.clone();
            let namespace = namespace.clone();
            let selector = selector.clone();
            tokio::spawn(async move {
                let Ok(pod) = ready_pod(&client, &namespace, &selector).await else {
                    return;
                };
                let pods: Api<Pod> = Api::namespaced(client, &namespace);
                let Ok(mut forwarder) = pods.portforward(&pod, &[port]).await else {
                    return;
                };
                let Some(mut upstream) = forwarder.take_stream(port) else {
                    return;
                };
                // Closing either side ends the forward; errors show up to the prober as
                // a reset or refused connection, which is what it classifies.
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut upstream).await;
                drop(upstream);
                let _ = forwarder.join().await;
            });
        }
    });
    Ok(Forward {
        local,
        description,
        task,
    })
}

/// The pod port behind a Service port (`targetPort`), e.g. 80 → 8080 on Istio's
/// ingress gateway, whose pods listen on unprivileged ports.
pub async fn target_port(
    client: &Client,
    namespace: &str,
    service: &str,
    port: i32,
) -> Result<u16, String> {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let svc = api
        .get(service)
        .await
        .map_err(|e| format!("cannot read service {namespace}/{service}: {e}"))?;
    let ports = svc.spec.and_then(|s| s.ports).unwrap_or_default();
    let entry = ports
        .iter()
        .find(|p| p.port == port)
        .ok_or_else(|| format!("service {namespace}/{service} has no port {port}"))?;
    match &entry.target_port {
        Some(IntOrString::Int(n)) => u16::try_from(*n).map_err(|_| format!("bad targetPort {n}")),
        None => u16::try_from(port).map_err(|_| format!("bad port {port}")),
        Some(IntOrString::String(name)) => Err(format!(
            "service {namespace}/{service} port {port} targets the named port `{name}`; pass --ingress-address"
        )),
    }
}
