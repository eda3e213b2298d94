//! The Prometheus a cluster already runs, when `--prometheus-url` is not given: Istio's
//! addon (`istio-system/prometheus`), the prometheus-community chart
//! (`<release>-server`, labels `app.kubernetes.io/name: prometheus`,
//! `app.kubernetes.io/component: server`, port 80 → 9090), or the Prometheus operator's
//! (`prometheus-operated`, label `operated-prometheus: "true"`, port 9090), in any
//! namespace. Found by its Service; reached through a port-forward to the pods the
//! Service selects, on the port it targets.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::{Api, ListParams};

/// Where a found Prometheus listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub namespace: String,
    pub service: String,
    /// The Service's pod selector, `k=v,k=v`.
    pub selector: String,
    pub pod_port: u16,
}

impl Found {
    pub fn describe(&self) -> String {
        format!(
            "{}/{} (pods {} port {})",
            self.namespace, self.service, self.selector, self.pod_port
        )
    }
}

const NAMES: [&str; 3] = ["prometheus", "prometheus-server", "prometheus-operated"];

/// How strongly a Service looks like a Prometheus server (0: not at all); Istio's addon
/// first.
fn rank(service: &Service) -> u8 {
    let labels = service.metadata.labels.clone().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let label = |k: &str| labels.get(k).map(String::as_str);
    let server = label("app.kubernetes.io/name") == Some("prometheus")
        && matches!(label("app.kubernetes.io/component"), None | Some("server"));
    match () {
        _ if namespace == super::istio::ISTIO_NAMESPACE && name == super::istio::PROMETHEUS => 4,
        _ if server => 3,
        _ if label("operated-prometheus") == Some("true") => 2,
        _ if NAMES.contains(&name) => 1,
        _ => 0,
    }
}

/// The Service port a client uses (9090, else 80, else the first) and the pod port it
/// targets; a named target port is looked up in the selected pods' containers.
async fn pod_port(client: &Client, service: &Service, selector: &str) -> Result<u16, String> {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.port == 9090)
        .or_else(|| ports.iter().find(|p| p.port == 80))
        .or_else(|| ports.first())
        .ok_or_else(|| format!("service {namespace}/{name} has no port"))?;
    match &port.target_port {
        Some(IntOrString::Int(n)) => {
            u16::try_from(*n).map_err(|_| format!("service {namespace}/{name}: bad targetPort {n}"))
        }
        None => u16::try_from(port.port)
            .map_err(|_| format!("service {namespace}/{name}: bad port {}", port.port)),
        Some(IntOrString::String(wanted)) => {
            let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|e| {
                    format!(
                        "cannot list the pods of service {namespace}/{name}: {}",
                        crate::words::kube_error(&e)
                    )
                })?;
            pods.items
                .iter()
                .flat_map(|p| p.spec.iter().flat_map(|s| s.containers.iter()))
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(wanted.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| {
                    format!("service {namespace}/{name} targets port `{wanted}`, which none of its pods names")
                })
        }
    }
}

/// The best Prometheus Service on the cluster, if any.
pub async fn find(client: &Client) -> Result<Option<Found>, String> {
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            format!(
                "cannot list Services to find the cluster's Prometheus: {}",
                crate::words::kube_error(&e)
            )
        })?;
    let mut candidates: Vec<&Service> = services.items.iter().filter(|s| rank(s) > 0).collect();
    candidates.sort_by_key(|s| {
        (
            std::cmp::Reverse(rank(s)),
            s.metadata.namespace.clone(),
            s.metadata.name.clone(),
        )
    });
    for service in candidates {
        let selector = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if selector.is_empty() {
            continue;
        }
        let selector = super::workloads::label_selector(&selector);
        let pod_port = pod_port(client, service, &selector).await?;
        return Ok(Some(Found {
            namespace: service.metadata.namespace.clone().unwrap_or_default(),
            service: service.metadata.name.clone().unwrap_or_default(),
            selector,
            pod_port,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": { "namespace": namespace, "name": name,
                          "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>() }
        }))
        .unwrap()
    }

    #[test]
    fn the_addon_then_chart_servers_then_the_operators_then_names() {
        let chart = [
            ("app.kubernetes.io/name", "prometheus"),
            ("app.kubernetes.io/component", "server"),
        ];
        assert_eq!(rank(&service("istio-system", "prometheus", &chart)), 4);
        assert_eq!(rank(&service("monitoring", "prometheus-server", &chart)), 3);
        assert_eq!(
            rank(&service(
                "monitoring",
                "prometheus-operated",
                &[("operated-prometheus", "true")]
            )),
            2
        );
        assert_eq!(rank(&service("obs", "prometheus", &[])), 1);
        // The chart's other components are not the server.
        let alertmanager = [
            ("app.kubernetes.io/name", "prometheus"),
            ("app.kubernetes.io/component", "alertmanager"),
        ];
        assert_eq!(
            rank(&service(
                "monitoring",
                "prometheus-alertmanager",
                &alertmanager
            )),
            0
        );
        assert_eq!(rank(&service("default", "grafana", &[])), 0);
    }
}
