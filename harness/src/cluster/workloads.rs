//! Workloads of the app: turning sidecar injection on or off, waiting for the rollout
//! until no old pod serves, and telling whether pods carry a sidecar.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The pod template label Istio's injector reads per workload.
pub const INJECT_LABEL: &str = "sidecar.istio.io/inject";
const SIDECAR_CONTAINER: &str = "istio-proxy";
const SIDECAR_STATUS_ANNOTATION: &str = "sidecar.istio.io/status";
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How a pod carries its sidecar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sidecar {
    /// `istio-proxy` in `spec.containers`.
    Classic,
    /// `istio-proxy` in `spec.initContainers` (native sidecar, Kubernetes ≥ 1.33 with Istio ≥ 1.28).
    Native,
    /// Only the injector's status annotation says so.
    Annotated,
}

/// Whether the pod has a sidecar: a container named `istio-proxy` among the containers
/// or the init containers, or the injector's status annotation. Containers are never
/// counted (native sidecars are init containers; other injectors add containers).
pub fn sidecar(pod: &Pod) -> Option<Sidecar> {
    let spec = pod.spec.as_ref()?;
    if spec.containers.iter().any(|c| c.name == SIDECAR_CONTAINER) {
        return Some(Sidecar::Classic);
    }
    if spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| c.name == SIDECAR_CONTAINER)
    {
        return Some(Sidecar::Native);
    }
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(SIDECAR_STATUS_ANNOTATION));
    annotated.then_some(Sidecar::Annotated)
}

/// The merge patch that sets the injection label on the pod template.
pub fn injection_patch(inject: bool) -> serde_json::Value {
    serde_json::json!({
        "spec": { "template": { "metadata": { "labels": { INJECT_LABEL: if inject { "true" } else { "false" } } } } }
    })
}

pub async fn set_injection(
    client: &Client,
    namespace: &str,
    deployment: &str,
    inject: bool,
) -> Result<(), String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    api.patch(
        deployment,
        &PatchParams::default(),
        &Patch::Merge(injection_patch(inject)),
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        format!("cannot set {INJECT_LABEL}={inject} on deployment {namespace}/{deployment}: {e}")
    })
}

/// Where a deployment's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutState {
    Done,
    /// Still rolling, with what is missing.
    Progressing(String),
}

/// The controller has seen the latest spec and every replica is updated and available,
/// with no extra (old) replica left.
pub fn rollout_state(deployment: &Deployment) -> RolloutState {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let Some(status) = deployment.status.as_ref() else {
        return RolloutState::Progressing("no status yet".into());
    };
    let observed = status.observed_generation.unwrap_or(0);
    if observed < generation {
        return RolloutState::Progressing(format!(
            "controller saw generation {observed} of {generation}"
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if updated != desired || available != desired || total != desired {
        return RolloutState::Progressing(format!(
            "{updated} updated, {available} available, {total} in all of {desired} desired"
        ));
    }
    RolloutState::Done
}

/// A pod whose image cannot be pulled, named with the image and the kubelet's reason.
pub fn pull_failure(pods: &[Pod]) -> Option<String> {
    for pod in pods {
        let Some(status) = pod.status.as_ref() else {
            continue;
        };
        let statuses = status
            .container_statuses
            .iter()
            .flatten()
            .chain(status.init_container_statuses.iter().flatten());
        for container in statuses {
            let waiting = container.state.as_ref().and_then(|s| s.waiting.as_ref());
            if let Some(waiting) = waiting {
                let reason = waiting.reason.as_deref().unwrap_or("");
                if matches!(
                    reason,
                    "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
                ) {
                    return Some(format!(
                        "image {} of pod {} cannot be pulled ({reason}: {}); check --image and the node's access to the registry",
                        container.image,
                        pod.metadata.name.as_deref().unwrap_or("?"),
                        waiting.message.as_deref().unwrap_or("no message")
                    ));
                }
            }
        }
    }
    None
}

fn labels_match(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Ready endpoint addresses that no current pod of the rollout explains: an address of
/// a terminating pod, or of a pod of the deployment that is not of its new revision.
/// Empty means no old pod still serves.
pub fn stale_endpoints(
    slices: &[EndpointSlice],
    pods: &[Pod],
    deployment_selector: &BTreeMap<String, String>,
    new_hash: &str,
) -> Vec<String> {
    let mut current = BTreeSet::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let ours = labels_match(deployment_selector, &labels);
        if ours && labels.get("pod-template-hash").map(String::as_str) != Some(new_hash) {
            continue;
        }
        for ip in pod.status.iter().flat_map(|s| s.pod_ips.iter().flatten()) {
            current.insert(ip.ip.clone());
        }
    }
    let mut stale = Vec::new();
    for slice in slices {
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(false);
            if !ready {
                continue;
            }
            stale.extend(
                endpoint
                    .addresses
                    .iter()
                    .filter(|a| !current.contains(*a))
                    .cloned(),
            );
        }
    }
    stale
}

/// What a finished rollout looked like, for the step log.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub revision: String,
    pub pods: Vec<String>,
    pub elapsed: Duration,
}

/// Waits until the deployment's rollout is done and its Service's EndpointSlices hold
/// only pods of the new revision. An image that cannot be pulled fails at once.
pub async fn wait_rollout(
    client: &Client,
    namespace: &str,
    name: &str,
    deadline: Duration,
) -> Result<Rollout, String> {
    let started = Instant::now();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let slices_api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let read = |what: &str, e: kube::Error| {
        format!("cannot read {what} of deployment {namespace}/{name}: {e}")
    };
    let mut last = String::from("not looked at yet");
    while started.elapsed() < deadline {
        let deployment = deployments
            .get(name)
            .await
            .map_err(|e| read("the status", e))?;
        let selector = deployment
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default();
        let pod_selector = label_selector(&selector);
        let pods = pods_api
            .list(&ListParams::default().labels(&pod_selector))
            .await
            .map_err(|e| read("the pods", e))?
            .items;
        if let Some(failure) = pull_failure(&pods) {
            return Err(failure);
        }
        match rollout_state(&deployment) {
            RolloutState::Progressing(why) => last = why,
            RolloutState::Done => {
                let revision = deployment
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REVISION_ANNOTATION))
                    .cloned()
                    .unwrap_or_default();
                let new_hash = replica_sets
                    .list(&ListParams::default().labels(&pod_selector))
                    .await
                    .map_err(|e| read("the replica sets", e))?
                    .items
                    .into_iter()
                    .find(|rs| {
                        rs.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(REVISION_ANNOTATION))
                            == Some(&revision)
                    })
                    .and_then(|rs| {
                        rs.metadata
                            .labels
                            .and_then(|l| l.get("pod-template-hash").cloned())
                    });
                let template_labels = deployment
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.metadata.as_ref())
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                let mut slices = Vec::new();
                for service in services
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| read("the services", e))?
                    .items
                {
                    let service_selector = service
                        .spec
                        .as_ref()
                        .and_then(|s| s.selector.clone())
                        .unwrap_or_default();
                    if service_selector.is_empty()
                        || !labels_match(&service_selector, &template_labels)
                    {
                        continue;
                    }
                    let service_name = service.metadata.name.unwrap_or_default();
                    slices.extend(
                        slices_api
                            .list(
                                &ListParams::default()
                                    .labels(&format!("kubernetes.io/service-name={service_name}")),
                            )
                            .await
                            .map_err(|e| read("the endpoint slices", e))?
                            .items,
                    );
                }
                match new_hash {
                    None => last = format!("no replica set of revision {revision} yet"),
                    Some(hash) => {
                        let stale = stale_endpoints(&slices, &pods, &selector, &hash);
                        if stale.is_empty() {
                            let names = pods
                                .iter()
                                .filter(|p| {
                                    p.metadata
                                        .labels
                                        .as_ref()
                                        .and_then(|l| l.get("pod-template-hash"))
                                        == Some(&hash)
                                })
                                .filter_map(|p| p.metadata.name.clone())
                                .collect();
                            return Ok(Rollout {
                                revision,
                                pods: names,
                                elapsed: started.elapsed(),
                            });
                        }
                        last = format!("endpoints of old pods still serve: {}", stale.join(", "));
                    }
                }
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(format!(
        "the rollout of deployment {namespace}/{name} did not finish within {} s ({last})",
        deadline.as_secs()
    ))
}

/// `app=age,version=v1`: a label selector from match labels.
pub fn label_selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The label selector of a deployment's pods.
pub async fn selector_of(
    client: &Client,
    namespace: &str,
    deployment: &str,
) -> Result<String, String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let d = api
        .get(deployment)
        .await
        .map_err(|e| format!("cannot read deployment {namespace}/{deployment}: {e}"))?;
    let labels = d
        .spec
        .and_then(|s| s.selector.match_labels)
        .unwrap_or_default();
    if labels.is_empty() {
        return Err(format!(
            "deployment {namespace}/{deployment} has no matchLabels selector"
        ));
    }
    Ok(label_selector(&labels))
}

/// Every non-terminating pod of the deployment with its sidecar, for the `sidecars`
/// expectation.
pub async fn census(
    client: &Client,
    namespace: &str,
    deployment: &str,
) -> Result<Vec<(String, Option<Sidecar>)>, String> {
    let selector = selector_of(client, namespace, deployment).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("cannot list pods of {namespace}/{deployment}: {e}"))?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), sidecar(p)))
        .collect())
}

/// Restarts a deployment the way `kubectl rollout restart` does: a new pod template
/// annotation, so every pod is replaced (and re-injected with the current proxy).
pub async fn restart(
    client: &Client,
    namespace: &str,
    deployment: &str,
    stamp: &str,
) -> Result<(), String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({
        "spec": { "template": { "metadata": { "annotations": { "kubectl.kubernetes.io/restartedAt": stamp } } } }
    });
    api.patch(deployment, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot restart deployment {namespace}/{deployment}: {e}"))
}

/// The names of the deployments in a namespace.
pub async fn deployments(client: &Client, namespace: &str) -> Result<Vec<String>, String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("cannot list deployments in {namespace}: {e}"))?
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect())
}

/// The image of the `istio-proxy` container (classic or native) of a pod.
pub fn proxy_image(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == SIDECAR_CONTAINER)
        .and_then(|c| c.image.clone())
}

/// Every non-terminating pod of the namespace (matching `selector`) that runs a proxy,
/// with the proxy's image.
pub async fn proxy_images(
    client: &Client,
    namespace: &str,
    selector: Option<&str>,
) -> Result<Vec<(String, String)>, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = match selector {
        Some(s) => ListParams::default().labels(s),
        None => ListParams::default(),
    };
    let pods = api
        .list(&params)
        .await
        .map_err(|e| format!("cannot list pods in {namespace}: {e}"))?;
    Ok(pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| Some((p.metadata.name.clone()?, proxy_image(p)?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn classic_native_and_absent_sidecars_are_told_apart() {
        let classic = pod(
            serde_json::json!({"spec": {"containers": [{"name": "age"}, {"name": "istio-proxy"}]}}),
        );
        let native = pod(serde_json::json!({"spec": {
            "initContainers": [{"name": "istio-init"}, {"name": "istio-proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "age"}]}}));
        let none = pod(
            serde_json::json!({"spec": {"containers": [{"name": "age"}, {"name": "log-shipper"}]}}),
        );
        let annotated = pod(
            serde_json::json!({"metadata": {"annotations": {"sidecar.istio.io/status": "{}"}}, "spec": {"containers": [{"name": "age"}]}}),
        );
        assert_eq!(sidecar(&classic), Some(Sidecar::Classic));
        assert_eq!(sidecar(&native), Some(Sidecar::Native));
        assert_eq!(sidecar(&none), None, "two containers is not a sidecar");
        assert_eq!(sidecar(&annotated), Some(Sidecar::Annotated));
    }

    #[test]
    fn rollout_is_done_only_when_every_replica_is_new_and_available() {
        let dep = |generation: i64,
                   observed: i64,
                   updated: i32,
                   available: i32,
                   total: i32|
         -> Deployment {
            serde_json::from_value(serde_json::json!({
                "metadata": {"generation": generation}, "spec": {"replicas": 1, "selector": {}, "template": {}},
                "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available, "replicas": total}
            }))
            .unwrap()
        };
        assert_eq!(rollout_state(&dep(2, 2, 1, 1, 1)), RolloutState::Done);
        assert!(
            matches!(rollout_state(&dep(2, 1, 1, 1, 1)), RolloutState::Progressing(m) if m.contains("generation 1 of 2"))
        );
        assert!(
            matches!(
                rollout_state(&dep(2, 2, 1, 1, 2)),
                RolloutState::Progressing(_)
            ),
            "an old pod is still there"
        );
        assert!(matches!(
            rollout_state(&dep(2, 2, 1, 0, 1)),
            RolloutState::Progressing(_)
        ));
    }

    #[test]
    fn endpoints_of_terminating_or_old_pods_are_stale() {
        let selector: BTreeMap<String, String> = [
            ("app".to_string(), "name".to_string()),
            ("version".to_string(), "v1".to_string()),
        ]
        .into();
        let pods: Vec<Pod> = vec![
            pod(
                serde_json::json!({"metadata": {"labels": {"app": "name", "version": "v1", "pod-template-hash": "new"}}, "status": {"podIPs": [{"ip": "10.0.0.2"}]}}),
            ),
            pod(
                serde_json::json!({"metadata": {"labels": {"app": "name", "version": "v1", "pod-template-hash": "old"}}, "status": {"podIPs": [{"ip": "10.0.0.1"}]}}),
            ),
            // name-v2 shares the Service: its endpoint is not stale.
            pod(
                serde_json::json!({"metadata": {"labels": {"app": "name", "version": "v2", "pod-template-hash": "other"}}, "status": {"podIPs": [{"ip": "10.0.0.3"}]}}),
            ),
            pod(
                serde_json::json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": "name", "version": "v2", "pod-template-hash": "other"}}, "status": {"podIPs": [{"ip": "10.0.0.4"}]}}),
            ),
        ];
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {}, "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.9"], "conditions": {"ready": false}}
            ]
        }))
        .unwrap();
        assert_eq!(
            stale_endpoints(&[slice], &pods, &selector, "new"),
            ["10.0.0.1", "10.0.0.4"]
        );
    }
}
