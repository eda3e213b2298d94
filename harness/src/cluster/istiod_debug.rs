//! istiod's debug HTTP endpoints, read through a port-forward to each istiod pod.
//! Istio 1.30/1.31 serve them on the monitoring port 15014 (and on 8080) while
//! `ENABLE_DEBUG_ON_HTTP` is true, its default, and answer loopback callers without
//! credentials (`pilot/pkg/features/pilot.go`, `pilot/pkg/bootstrap/server.go`
//! `initIstiodAdminServer`, `pilot/pkg/xds/debug.go` `allowAuthenticatedOrLocalhost`).
//! A proxy is connected to one istiod pod, of one revision: every ready one is asked.

use super::istio::{ISTIO_NAMESPACE, ISTIOD_SELECTOR, revision_of, version_of};
use super::portforward::is_ready;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};

pub const DEBUG_PORT: u16 = 15014;

/// One ready istiod pod: its name, the revision it serves (label `istio.io/rev`, which
/// the chart sets on every istiod pod) and its version (the image tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Istiod {
    pub pod: String,
    pub revision: String,
    pub version: String,
}

/// The ready istiod pods of every revision.
pub async fn ready_istiods(client: &Client) -> Result<Vec<Istiod>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ISTIO_NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels(ISTIOD_SELECTOR))
        .await
        .map_err(|e| {
            format!("cannot list istiod pods (`{ISTIOD_SELECTOR}` in {ISTIO_NAMESPACE}): {e}")
        })?;
    let ready: Vec<Istiod> = list
        .items
        .iter()
        .filter(|p| is_ready(p))
        .filter_map(|p| {
            Some(Istiod {
                pod: p.metadata.name.clone()?,
                revision: revision_of(p.metadata.labels.as_ref()),
                version: version_of(&p.spec.as_ref()?.containers)
                    .unwrap_or_else(|| "unknown".into()),
            })
        })
        .collect();
    if ready.is_empty() {
        return Err(format!(
            "no ready istiod pod (`{ISTIOD_SELECTOR}`) in {ISTIO_NAMESPACE}"
        ));
    }
    Ok(ready)
}

/// The ready istiod pods of every revision, by name.
pub async fn ready_pods(client: &Client) -> Result<Vec<String>, String> {
    Ok(ready_istiods(client)
        .await?
        .into_iter()
        .map(|i| i.pod)
        .collect())
}

/// `GET path` on the debug port of istiod pod `pod`.
pub async fn get_json(client: &Client, pod: &str, path: &str) -> Result<serde_json::Value, String> {
    super::pod_http::get_json(
        client,
        ISTIO_NAMESPACE,
        pod,
        DEBUG_PORT,
        path,
        "istiod's debug endpoint",
    )
    .await
    .map_err(|e| {
        format!(
            "{e} (istiod serves /debug/* on port {DEBUG_PORT} unless ENABLE_DEBUG_ON_HTTP=false)"
        )
    })
}
