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
//! A pod of this Deployment that cannot come up ends the wait at once: an image that
//! cannot be pulled, a crash loop, or no node to run on for longer than
//! [`deadlines::UNSCHEDULABLE_GRACE`].
//!
//! Some 850 lines, half of them tests: the predicates, their evidence texts and their
//! tests belong together; split, the evidence would drift from what is checked.

use crate::deadlines;
use crate::wait::{self, Check};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
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

/// A pod the scheduler has found no node for (condition `PodScheduled` False, reason
/// `Unschedulable`) for longer than `grace` before `now`, named with the scheduler's
/// message. Briefly unschedulable is normal (see [`deadlines::UNSCHEDULABLE_GRACE`]);
/// without a `lastTransitionTime` the duration is unknown and the pod is not named.
/// Terminating pods are skipped: they will not be scheduled, and they leave. While a
/// terminating pod of the Deployment still holds a node (a rolling update's old pod,
/// up to its termination grace), nothing is named: its leaving may make the room.
///
/// `freed_at` is when the wait last saw such an old pod: the grace counts from then
/// too, since the scheduler retries only once the room is free.
pub fn unschedulable_pod(
    pods: &[&Pod],
    now: Timestamp,
    grace: Duration,
    freed_at: Option<Timestamp>,
) -> Option<String> {
    if room_being_freed(pods) {
        return None;
    }
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten();
        for condition in conditions {
            if condition.type_ != "PodScheduled"
                || condition.status != "False"
                || condition.reason.as_deref() != Some("Unschedulable")
            {
                continue;
            }
            let Some(since) = condition.last_transition_time.as_ref() else {
                continue;
            };
            let since = freed_at.map_or(since.0, |freed| freed.max(since.0));
            // A transition "after" now (clock skew) counts as just now.
            let held = Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO);
            if held <= grace {
                continue;
            }
            let pod_name = pod.metadata.name.as_deref().unwrap_or("?");
            let message = condition.message.as_deref().unwrap_or("no message");
            return Some(format!(
                "pod {pod_name} cannot be scheduled: unschedulable for {} s ({message}); free CPU or memory on the kind node (e.g. delete workloads left from earlier runs) or lower the workload's resource requests",
                held.as_secs()
            ));
        }
    }
    None
}

/// Whether a terminating pod among `pods` still holds a node (its leaving makes room).
pub fn room_being_freed(pods: &[&Pod]) -> bool {
    pods.iter().any(|p| {
        p.metadata.deletion_timestamp.is_some()
            && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
    })
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
            // The API: "A nil value should be interpreted as 'true'".
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
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

/// One look at the rollout; `now` is the wall clock, to which the pods' condition
/// times are compared.
pub fn check(
    observed: &Observed,
    started: Instant,
    now: Timestamp,
    freed_at: Option<Timestamp>,
) -> Check<Rollout> {
    let own_pods = observed.own_pods();
    if let Some(stuck) = stuck_pod(&own_pods) {
        return Check::Abort(stuck);
    }
    if let Some(unschedulable) =
        unschedulable_pod(&own_pods, now, deadlines::UNSCHEDULABLE_GRACE, freed_at)
    {
        return Check::Abort(unschedulable);
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

/// One poll of the wait: remembers when an old pod of the rollout was last seen
/// holding a node (`freed_at`), then [`check`]s with it.
pub fn look(
    observed: &Observed,
    started: Instant,
    now: Timestamp,
    freed_at: &mut Option<Timestamp>,
) -> Check<Rollout> {
    if room_being_freed(&observed.own_pods()) {
        *freed_at = Some(now);
    }
    check(observed, started, now, *freed_at)
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
/// cannot come up (image pull, crash loop, no node beyond the grace) ends the wait at
/// once.
pub async fn wait(
    client: &Client,
    namespace: &str,
    name: &str,
    deadline: Duration,
) -> Result<Rollout, String> {
    let started = Instant::now();
    // When this wait last saw an old pod of the rollout holding a node.
    let freed_at: std::sync::Mutex<Option<Timestamp>> = std::sync::Mutex::new(None);
    wait::until(deadline, deadlines::POLL, || async {
        match observe(client, namespace, name).await {
            // Condition times are the cluster's clock: kind's runs on this machine, and
            // a few seconds of skew elsewhere matter little against the grace.
            Ok(observed) => {
                let mut freed = freed_at.lock().unwrap_or_else(|p| p.into_inner());
                look(&observed, started, Timestamp::now(), &mut freed)
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use k8s_openapi::api::core::v1::{ObjectReference, PodCondition, PodStatus};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use k8s_openapi::jiff::SignedDuration;

    const INSUFFICIENT_CPU: &str = "0/1 nodes are available: 1 Insufficient cpu.";

    fn owner(kind: &str, name: &str) -> Option<Vec<OwnerReference>> {
        Some(vec![OwnerReference {
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            ..Default::default()
        }])
    }

    fn hash_label(hash: &str) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([(
            TEMPLATE_HASH.to_string(),
            hash.to_string(),
        )]))
    }

    fn revision(revision: &str) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([(
            REVISION_ANNOTATION.to_string(),
            revision.to_string(),
        )]))
    }

    /// Deployment `name` at revision 2 with one replica: rolled out by its own status
    /// when `done`, else with an old replica still there.
    fn deployment(name: &str, done: bool) -> Deployment {
        let (updated, available, total) = if done { (1, 1, 1) } else { (1, 1, 2) };
        Deployment {
            metadata: ObjectMeta {
                name: Some(name.into()),
                generation: Some(3),
                annotations: revision("2"),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(3),
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                replicas: Some(total),
                ..Default::default()
            }),
        }
    }

    /// ReplicaSet `<deployment>-<hash>` of `deployment`.
    fn replica_set(deployment: &str, hash: &str, rev: &str) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{deployment}-{hash}")),
                labels: hash_label(hash),
                annotations: revision(rev),
                owner_references: owner("Deployment", deployment),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Pod `<deployment>-<hash>-<suffix>` of ReplicaSet `<deployment>-<hash>`.
    fn pod(deployment: &str, hash: &str, suffix: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("{deployment}-{hash}-{suffix}")),
                labels: hash_label(hash),
                owner_references: owner("ReplicaSet", &format!("{deployment}-{hash}")),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn terminating(mut pod: Pod) -> Pod {
        pod.metadata.deletion_timestamp = Some(Time(at(0)));
        pod
    }

    fn with_condition(mut pod: Pod, condition: PodCondition) -> Pod {
        pod.status
            .get_or_insert_with(PodStatus::default)
            .conditions
            .get_or_insert_with(Vec::new)
            .push(condition);
        pod
    }

    /// What the scheduler writes on a pod it found no node for.
    fn unschedulable(pod: Pod, since: Option<Timestamp>) -> Pod {
        with_condition(
            pod,
            PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some(INSUFFICIENT_CPU.into()),
                last_transition_time: since.map(Time),
                ..Default::default()
            },
        )
    }

    fn scheduled(pod: Pod) -> Pod {
        with_condition(
            pod,
            PodCondition {
                type_: "PodScheduled".into(),
                status: "True".into(),
                last_transition_time: Some(Time(at(0))),
                ..Default::default()
            },
        )
    }

    /// An endpoint at `ip` whose targetRef is pod `pod`.
    fn endpoint(pod: &str, ip: &str, ready: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready,
                ..Default::default()
            }),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: Some(pod.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn slice(endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            endpoints,
            ..Default::default()
        }
    }

    /// Deployment `age` at revision 2 (ReplicaSet `age-new`), its older ReplicaSet
    /// `age-old`, and the serving pod `age-new-a`.
    fn age(done: bool) -> Observed {
        Observed {
            deployment: deployment("age", done),
            replica_sets: vec![
                replica_set("age", "new", "2"),
                replica_set("age", "old", "1"),
            ],
            pods: vec![pod("age", "new", "a")],
            slices: vec![],
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_780_000_000 + second).unwrap()
    }

    fn after_grace(since: Timestamp, extra: SignedDuration) -> Timestamp {
        since + SignedDuration::try_from(deadlines::UNSCHEDULABLE_GRACE).unwrap() + extra
    }

    #[test]
    fn a_ready_endpoint_of_a_terminating_pod_of_this_deployment_is_stale() {
        let mut observed = age(true);
        observed.pods.push(terminating(pod("age", "new", "b")));
        observed.slices = vec![slice(vec![
            endpoint("age-new-a", "10.0.0.1", Some(true)),
            endpoint("age-new-b", "10.0.0.2", Some(true)),
        ])];
        assert_eq!(
            stale_endpoints(&observed, "new"),
            ["age-new-b (10.0.0.2)"],
            "the terminating pod, not the serving one"
        );
    }

    #[test]
    fn a_ready_endpoint_of_a_pod_of_an_older_replica_set_is_stale() {
        let mut observed = age(true);
        observed.pods.push(pod("age", "old", "c"));
        observed.slices = vec![slice(vec![
            endpoint("age-new-a", "10.0.0.1", Some(true)),
            endpoint("age-old-c", "10.0.0.3", Some(true)),
        ])];
        assert_eq!(stale_endpoints(&observed, "new"), ["age-old-c (10.0.0.3)"]);
    }

    #[test]
    fn an_endpoint_of_a_gone_pod_named_after_an_old_replica_set_is_stale() {
        let observed = Observed {
            slices: vec![slice(vec![
                endpoint("age-old-q2", "10.0.0.4", Some(true)),
                // Gone, of the current ReplicaSet: nothing old about it.
                endpoint("age-new-q3", "10.0.0.5", Some(true)),
                // Starts with `age-old` but not `age-old-`: not of that ReplicaSet.
                endpoint("age-oldest-q4", "10.0.0.6", Some(true)),
            ])],
            ..age(true)
        };
        assert_eq!(stale_endpoints(&observed, "new"), ["age-old-q2 (10.0.0.4)"]);
    }

    /// Service `name` selects Deployment `name` (v1) and `name-v2`: whatever pods,
    /// ReplicaSets and hashes `name-v2` has, its endpoints are not `name`'s to wait for,
    /// even though its names start with `name-`.
    #[test]
    fn endpoints_of_another_deployment_behind_the_same_service_are_never_stale() {
        let observed = Observed {
            deployment: deployment("name", true),
            replica_sets: vec![
                replica_set("name", "5d8f", "2"),
                replica_set("name", "3e4f", "1"),
                replica_set("name-v2", "7c9b", "2"),
                replica_set("name-v2", "1a2b", "1"),
            ],
            pods: vec![
                pod("name", "5d8f", "a"),
                pod("name-v2", "7c9b", "a"),
                terminating(pod("name-v2", "7c9b", "b")),
            ],
            slices: vec![slice(vec![
                endpoint("name-5d8f-a", "10.0.1.1", Some(true)),
                endpoint("name-v2-7c9b-a", "10.0.1.2", Some(true)),
                endpoint("name-v2-7c9b-b", "10.0.1.3", Some(true)),
                // Gone, of name-v2's old ReplicaSet.
                endpoint("name-v2-1a2b-q", "10.0.1.4", Some(true)),
            ])],
        };
        assert_eq!(stale_endpoints(&observed, "5d8f"), Vec::<String>::new());
        // The same endpoints, seen from name-v2 at its current revision, are name-v2's
        // own stale ones: the test above is not vacuous.
        let from_v2 = Observed {
            deployment: deployment("name-v2", true),
            ..observed
        };
        assert_eq!(
            stale_endpoints(&from_v2, "7c9b"),
            ["name-v2-7c9b-b (10.0.1.3)", "name-v2-1a2b-q (10.0.1.4)"]
        );
    }

    #[test]
    fn a_not_ready_endpoint_is_not_stale() {
        let mut observed = age(true);
        observed.pods.push(terminating(pod("age", "new", "b")));
        observed.pods.push(pod("age", "old", "c"));
        let endpoints = |ready| {
            vec![slice(vec![
                endpoint("age-new-b", "10.0.0.2", ready),
                endpoint("age-old-c", "10.0.0.3", ready),
                endpoint("age-old-q2", "10.0.0.4", ready),
            ])]
        };
        observed.slices = endpoints(Some(false));
        assert_eq!(stale_endpoints(&observed, "new"), Vec::<String>::new());
        // Ready, or without a readiness (which the API says means ready), they are.
        for ready in [Some(true), None] {
            observed.slices = endpoints(ready);
            assert_eq!(stale_endpoints(&observed, "new").len(), 3, "{ready:?}");
        }
    }

    #[test]
    fn check_waits_while_a_stale_endpoint_is_ready_and_is_ready_once_it_left() {
        let mut observed = age(true);
        observed.pods.push(terminating(pod("age", "new", "b")));
        observed.pods.push(pod("age", "old", "c"));
        observed.slices = vec![slice(vec![
            endpoint("age-new-a", "10.0.0.1", Some(true)),
            endpoint("age-new-b", "10.0.0.2", Some(false)),
            endpoint("age-old-c", "10.0.0.3", Some(false)),
            endpoint("age-old-q2", "10.0.0.4", Some(true)),
        ])];
        match check(&observed, Instant::now(), at(0), None) {
            Check::NotYet(why) => assert!(why.contains("age-old-q2 (10.0.0.4)"), "{why}"),
            Check::Ready(r) => panic!("ready with a stale endpoint: {r:?}"),
            Check::Abort(why) => panic!("aborted: {why}"),
        }
        observed.slices[0].endpoints.pop();
        match check(&observed, Instant::now(), at(0), None) {
            Check::Ready(rollout) => {
                assert_eq!(rollout.revision, "2");
                assert_eq!(rollout.pods, ["age-new-a"], "neither terminating nor old");
            }
            Check::NotYet(why) => panic!("not ready once the stale endpoint left: {why}"),
            Check::Abort(why) => panic!("aborted: {why}"),
        }
    }

    #[test]
    fn a_pod_unschedulable_beyond_the_grace_ends_the_wait_with_the_schedulers_message() {
        let mut observed = age(false);
        observed
            .pods
            .push(unschedulable(pod("age", "new", "b"), Some(at(0))));
        let now = after_grace(at(0), SignedDuration::from_secs(1));
        match check(&observed, Instant::now(), now, None) {
            Check::Abort(why) => {
                assert!(
                    why.starts_with("pod age-new-b cannot be scheduled"),
                    "{why}"
                );
                assert!(why.contains(INSUFFICIENT_CPU), "{why}");
                assert!(
                    why.contains("free CPU or memory on the kind node")
                        && why.contains("lower the workload's resource requests"),
                    "{why}"
                );
            }
            Check::NotYet(why) => panic!("still waiting: {why}"),
            Check::Ready(r) => panic!("ready: {r:?}"),
        }
    }

    #[test]
    fn a_pod_unschedulable_within_the_grace_is_waited_for() {
        let mut observed = age(false);
        observed
            .pods
            .push(unschedulable(pod("age", "new", "b"), Some(at(0))));
        for now in [
            at(0),
            at(5),
            after_grace(at(0), SignedDuration::ZERO),
            // Set by a clock ahead of this one.
            at(-30),
        ] {
            assert!(
                matches!(
                    check(&observed, Instant::now(), now, None),
                    Check::NotYet(_)
                ),
                "at {now}"
            );
        }
    }

    #[test]
    fn no_pod_is_named_while_an_old_pod_of_the_deployment_still_holds_a_node() {
        let now = after_grace(at(0), SignedDuration::from_secs(600));
        let mut observed = age(false);
        let mut old = terminating(scheduled(pod("age", "old", "b")));
        old.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            node_name: Some("kind-control-plane".into()),
            ..Default::default()
        });
        observed.pods = vec![old, unschedulable(pod("age", "new", "d"), Some(at(0)))];
        assert!(matches!(
            check(&observed, Instant::now(), now, None),
            Check::NotYet(_)
        ));
        // The wait remembers seeing it there...
        let mut freed_at = None;
        let seen_at = now - SignedDuration::from_secs(5);
        assert!(matches!(
            look(&observed, Instant::now(), seen_at, &mut freed_at),
            Check::NotYet(_)
        ));
        assert_eq!(freed_at, Some(seen_at));
        // ...so once it has left the node, the pending pod is named only a grace after
        // that: the scheduler retries once the room is free.
        observed.pods.remove(0);
        assert!(matches!(
            look(&observed, Instant::now(), now, &mut freed_at),
            Check::NotYet(_)
        ));
        let just_freed = now - SignedDuration::from_secs(5);
        assert!(matches!(
            check(&observed, Instant::now(), now, Some(just_freed)),
            Check::NotYet(_)
        ));
        let freed_long_ago = now - SignedDuration::from_secs(300);
        assert!(matches!(
            check(&observed, Instant::now(), now, Some(freed_long_ago)),
            Check::Abort(_)
        ));
        assert!(matches!(
            check(&observed, Instant::now(), now, None),
            Check::Abort(_)
        ));
    }

    #[test]
    fn scheduled_pods_and_pods_not_of_this_deployment_are_not_affected() {
        let now = after_grace(at(0), SignedDuration::from_secs(600));
        let mut observed = age(false);
        observed.pods = vec![scheduled(pod("age", "new", "a"))];
        // Another Deployment's pod, however long unschedulable: not this rollout's.
        observed
            .replica_sets
            .push(replica_set("age-canary", "7f9c", "1"));
        observed
            .pods
            .push(unschedulable(pod("age-canary", "7f9c", "z"), Some(at(0))));
        // Leaving: it will never be scheduled, and need not be.
        observed.pods.push(terminating(unschedulable(
            pod("age", "old", "b"),
            Some(at(0)),
        )));
        // Held back by a scheduling gate on purpose: not the scheduler's verdict.
        observed.pods.push(with_condition(
            pod("age", "new", "g"),
            PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("SchedulingGated".into()),
                message: Some("Scheduling is blocked due to non-empty scheduling gates".into()),
                last_transition_time: Some(Time(at(0))),
                ..Default::default()
            },
        ));
        // No transition time: how long is unknown.
        observed
            .pods
            .push(unschedulable(pod("age", "new", "c"), None));
        assert!(matches!(
            check(&observed, Instant::now(), now, None),
            Check::NotYet(_)
        ));
        // Such a pod of age's own ends the wait.
        observed
            .pods
            .push(unschedulable(pod("age", "new", "d"), Some(at(0))));
        match check(&observed, Instant::now(), now, None) {
            Check::Abort(why) => assert!(why.contains("pod age-new-d "), "{why}"),
            _ => panic!("an unschedulable pod of age is not ignored"),
        }
    }
}
