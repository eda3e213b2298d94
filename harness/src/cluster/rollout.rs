//! Waiting for a Deployment's rollout: small predicates over what the API server shows
//! (Deployment, its ReplicaSets and pods, the EndpointSlices of the Services selecting
//! its pods), polled by [`crate::wait::until`].
//!
//! Done means: the controller saw the latest spec, every replica is updated and
//! available with no extra one left, and no ready endpoint still points at a pod *of
//! this Deployment* that is terminating or of an older revision. A Service may select
//! several Deployments (`name` selects v1 and v2): endpoints of the other Deployments
//! are never stale.
//!
//! Just over 400 lines: the predicates, their evidence texts and their tests belong
//! together; split, the evidence would drift from what is checked.

use crate::deadlines;
use crate::wait::{self, Check};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
const TEMPLATE_HASH: &str = "pod-template-hash";

/// What a finished rollout looked like, for the step log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub revision: String,
    pub pods: Vec<String>,
    pub elapsed: Duration,
}

impl Rollout {
    pub fn describe(&self, name: &str) -> String {
        format!(
            "{name}: revision {} rolled out in {:.1} s; serving pods: {}",
            self.revision,
            self.elapsed.as_secs_f64(),
            self.pods.join(", ")
        )
    }
}

/// Where a Deployment's own status says the rollout stands.
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

/// A pod that cannot come up by itself: an image that cannot be pulled, or a container
/// in a crash loop. Named with the image and the kubelet's reason.
pub fn stuck_pod(pods: &[&Pod]) -> Option<String> {
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
            let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let reason = waiting.reason.as_deref().unwrap_or("");
            let pod_name = pod.metadata.name.as_deref().unwrap_or("?");
            let message = waiting.message.as_deref().unwrap_or("no message");
            if matches!(
                reason,
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
            ) {
                return Some(format!(
                    "image {} of pod {pod_name} cannot be pulled ({reason}: {message}); check --image and the node's access to the registry",
                    container.image
                ));
            }
            if reason == "CrashLoopBackOff" {
                return Some(format!(
                    "container {} ({}) of pod {pod_name} is crash-looping ({} restarts: {message}); see its logs in the diagnostics",
                    container.name, container.image, container.restart_count
                ));
            }
        }
    }
    None
}

fn labels_match(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn owned_by(
    owners: &Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
    kind: &str,
    name: &str,
) -> bool {
    owners
        .iter()
        .flatten()
        .any(|o| o.kind == kind && o.name == name)
}

/// Everything the wait looks at, read in one go.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub deployment: Deployment,
    pub replica_sets: Vec<ReplicaSet>,
    pub pods: Vec<Pod>,
    /// Slices of every Service whose selector matches the Deployment's pod template.
    pub slices: Vec<EndpointSlice>,
}

impl Observed {
    fn name(&self) -> &str {
        self.deployment.metadata.name.as_deref().unwrap_or("?")
    }

    /// The ReplicaSets of this Deployment (by owner reference).
    fn own_replica_sets(&self) -> Vec<&ReplicaSet> {
        let name = self.name();
        self.replica_sets
            .iter()
            .filter(|rs| owned_by(&rs.metadata.owner_references, "Deployment", name))
            .collect()
    }

    /// The pods of this Deployment (owned by one of its ReplicaSets).
    fn own_pods(&self) -> Vec<&Pod> {
        let sets: Vec<&str> = self
            .own_replica_sets()
            .iter()
            .filter_map(|rs| rs.metadata.name.as_deref())
            .collect();
        self.pods
            .iter()
            .filter(|p| {
                sets.iter()
                    .any(|rs| owned_by(&p.metadata.owner_references, "ReplicaSet", rs))
            })
            .collect()
    }

    fn revision(&self) -> Option<String> {
        self.deployment
            .metadata
            .annotations
            .as_ref()?
            .get(REVISION_ANNOTATION)
            .cloned()
    }

    /// The pod-template-hash of the current revision's ReplicaSet.
    fn current_hash(&self) -> Option<String> {
        let revision = self.revision()?;
        self.own_replica_sets()
            .into_iter()
            .find(|rs| {
                rs.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REVISION_ANNOTATION))
                    == Some(&revision)
            })
            .and_then(|rs| rs.metadata.labels.as_ref()?.get(TEMPLATE_HASH).cloned())
    }
}

/// Ready endpoints that still point at a pod of this Deployment that is terminating or
/// of another revision than `hash` — by the endpoint's `targetRef`. An endpoint whose
/// pod is already gone counts when its name is that of one of the Deployment's
/// ReplicaSets other than the current one. Endpoints of other Deployments behind the
/// same Service are never stale.
pub fn stale_endpoints(observed: &Observed, hash: &str) -> Vec<String> {
    let own_pods = observed.own_pods();
    let old_sets: Vec<String> = observed
        .own_replica_sets()
        .iter()
        .filter(|rs| {
            rs.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(TEMPLATE_HASH))
                .map(String::as_str)
                != Some(hash)
        })
        .filter_map(|rs| rs.metadata.name.clone())
        .collect();
    let mut stale = Vec::new();
    for slice in &observed.slices {
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(false);
            let Some(target) = endpoint.target_ref.as_ref() else {
                continue;
            };
            if !ready || target.kind.as_deref().is_some_and(|k| k != "Pod") {
                continue;
            }
            let Some(pod_name) = target.name.as_deref() else {
                continue;
            };
            let is_stale = match own_pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(pod_name))
            {
                Some(pod) => {
                    pod.metadata.deletion_timestamp.is_some()
                        || pod
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(TEMPLATE_HASH))
                            .map(String::as_str)
                            != Some(hash)
                }
                None => old_sets.iter().any(|rs| {
                    pod_name
                        .strip_prefix(rs.as_str())
                        .is_some_and(|rest| rest.starts_with('-'))
                }),
            };
            if is_stale {
                stale.push(format!("{pod_name} ({})", endpoint.addresses.join(", ")));
            }
        }
    }
    stale
}

/// One look at the rollout.
pub fn check(observed: &Observed, started: Instant) -> Check<Rollout> {
    let own_pods = observed.own_pods();
    if let Some(stuck) = stuck_pod(&own_pods) {
        return Check::Abort(stuck);
    }
    match rollout_state(&observed.deployment) {
        RolloutState::Progressing(why) => Check::NotYet(why),
        RolloutState::Done => {
            let revision = observed.revision().unwrap_or_default();
            let Some(hash) = observed.current_hash() else {
                return Check::NotYet(format!("no replica set of revision {revision} yet"));
            };
            let stale = stale_endpoints(observed, &hash);
            if !stale.is_empty() {
                return Check::NotYet(format!(
                    "endpoints of old or terminating pods still ready: {}",
                    stale.join(", ")
                ));
            }
            let pods = own_pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(TEMPLATE_HASH))
                        == Some(&hash)
                })
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            Check::Ready(Rollout {
                revision,
                pods,
                elapsed: started.elapsed(),
            })
        }
    }
}

/// Why the state could not be read; a missing Deployment will not appear by waiting.
#[derive(Debug, Clone)]
pub struct ObserveError {
    pub permanent: bool,
    pub message: String,
}

/// Reads what [`check`] needs.
pub async fn observe(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Observed, ObserveError> {
    let read = |what: &str, e: kube::Error| ObserveError {
        permanent: matches!(&e, kube::Error::Api(s) if s.code == 404) && what == "the status",
        message: format!("cannot read {what} of deployment {namespace}/{name}: {e}"),
    };
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| read("the status", e))?;
    let spec = deployment.spec.as_ref();
    let selector = spec
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    let template_labels = spec
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let by_selector = ListParams::default().labels(&super::workloads::label_selector(&selector));
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .list(&by_selector)
        .await
        .map_err(|e| read("the replica sets", e))?
        .items;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&by_selector)
        .await
        .map_err(|e| read("the pods", e))?
        .items;
    let services = Api::<Service>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| read("the services", e))?
        .items;
    let slices_api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let mut slices = Vec::new();
    for service in services {
        let service_selector = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if service_selector.is_empty() || !labels_match(&service_selector, &template_labels) {
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
    Ok(Observed {
        deployment,
        replica_sets,
        pods,
        slices,
    })
}

/// Waits until the Deployment's rollout is done (see the module comment). A pod that
/// cannot come up (image pull, crash loop) ends the wait at once.
pub async fn wait(
    client: &Client,
    namespace: &str,
    name: &str,
    deadline: Duration,
) -> Result<Rollout, String> {
    let started = Instant::now();
    wait::until(deadline, deadlines::POLL, || async {
        match observe(client, namespace, name).await {
            Ok(observed) => check(&observed, started),
            Err(e) if e.permanent => Check::Abort(e.message),
            Err(e) => Check::NotYet(e.message),
        }
    })
    .await
    .map_err(|e| match e {
        wait::WaitError::Aborted(why) => why,
        wait::WaitError::Deadline { last, .. } => format!(
            "the rollout of deployment {namespace}/{name} did not finish within {} s ({last})",
            deadline.as_secs()
        ),
    })
}
