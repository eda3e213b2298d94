//! The deployment and replica-set controllers: a Deployment's template maps to a
//! ReplicaSet `<deployment>-<pod-template-hash>`; RollingUpdate (maxSurge /
//! maxUnavailable) and Recreate rollouts scale the new and old ReplicaSets the way the
//! real controller does; ReplicaSets create and delete pods; statuses, revisions and
//! conditions (Available, Progressing, ProgressDeadlineExceeded) follow.

use crate::controllers::PodPlan;
use crate::store::{DeleteOptions, Key, Store, Write};
use crate::{meta, names, time};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Instant;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH: &str = "pod-template-hash";

/// When each Deployment last made progress (for progressDeadlineSeconds).
#[derive(Default)]
pub struct State {
    progress: HashMap<String, Instant>,
}

fn is_active(pod: &Value) -> bool {
    !meta::is_deleting(pod)
        && !matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
}

fn is_ready(pod: &Value) -> bool {
    meta::condition_true(pod, "Ready")
}

/// The template with the pod-template-hash label removed (to compare templates).
fn template_without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH);
        if labels.is_empty() {
            t["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    if t["metadata"].as_object().is_some_and(|m| m.is_empty()) {
        t.as_object_mut().map(|m| m.remove("metadata"));
    }
    t
}

fn revision_of(obj: &Value) -> i64 {
    meta::annotation(obj, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// `25%` of `total` (rounded up for surge, down for unavailable), or an absolute number.
fn int_or_percent(v: &Value, total: i64, round_up: bool, default: &str) -> i64 {
    let v = if v.is_null() {
        json!(default)
    } else {
        v.clone()
    };
    if let Some(n) = v.as_i64() {
        return n.max(0);
    }
    let pct: i64 = v
        .as_str()
        .and_then(|s| s.strip_suffix('%'))
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    if round_up {
        (pct * total + 99) / 100
    } else {
        pct * total / 100
    }
}

/// (maxSurge, maxUnavailable) of a RollingUpdate Deployment.
pub fn surge_and_unavailable(d: &Value) -> (i64, i64) {
    let desired = meta::replicas(d);
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let surge = int_or_percent(&ru["maxSurge"], desired, true, "25%");
    let mut unavailable = int_or_percent(&ru["maxUnavailable"], desired, false, "25%");
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(desired))
}

/// The replica-set controller: pods to create (created by the caller, through
/// admission), pods deleted, and each ReplicaSet's status.
pub fn reconcile_replica_sets(store: &mut Store, plans: &mut Vec<PodPlan>) {
    let rs_info = store.kind("apps", "ReplicaSet");
    let pod_info = store.kind("", "Pod");
    let sets: Vec<Value> = store.list(&rs_info, None).into_iter().cloned().collect();
    for rs in sets {
        let ns = meta::namespace(&rs).to_string();
        let uid = meta::uid(&rs).to_string();
        let pods: Vec<Value> = store
            .list(&pod_info, Some(&ns))
            .into_iter()
            .filter(|p| meta::controller_uid(p) == Some(uid.as_str()))
            .cloned()
            .collect();
        let active: Vec<&Value> = pods.iter().filter(|p| is_active(p)).collect();
        let desired = meta::replicas(&rs);
        let have = active.len() as i64;
        if !meta::is_deleting(&rs) {
            if have < desired {
                for _ in have..desired {
                    plans.push(PodPlan {
                        namespace: ns.clone(),
                        pod: pod_from_template(&rs),
                        owner: rs.clone(),
                    });
                }
            } else if have > desired {
                let mut victims = active.clone();
                // Delete the least useful first: unscheduled, then not ready, then newest.
                victims.sort_by_key(|p| {
                    (
                        p["spec"]["nodeName"].is_string(),
                        is_ready(p),
                        std::cmp::Reverse(
                            p["metadata"]["creationTimestamp"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        ),
                    )
                });
                for p in victims.into_iter().take((have - desired) as usize) {
                    let name = meta::name(p).to_string();
                    if store
                        .delete(&pod_info, &ns, &name, &DeleteOptions::default())
                        .is_ok()
                    {
                        store.event(
                            &rs,
                            "Normal",
                            "SuccessfulDelete",
                            &format!("Deleted pod: {name}"),
                            "replicaset-controller",
                        );
                    }
                }
            }
        }
        let ready = active.iter().filter(|p| is_ready(p)).count();
        let labelled = active
            .iter()
            .filter(|p| {
                crate::selectors::label_selector_matches(&rs["spec"]["selector"], meta::labels(p))
            })
            .count();
        let status = json!({
            "replicas": have,
            "fullyLabeledReplicas": labelled,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"],
        });
        let key = Key::new(&rs_info, &ns, meta::name(&rs));
        store.update_internal(&key, |r| r["status"] = strip_zero_counts(status));
    }
}

/// Status counts of zero are omitted, as in the real API (omitempty).
fn strip_zero_counts(mut status: Value) -> Value {
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| k == "replicas" || k == "observedGeneration" || v.as_i64() != Some(0));
    }
    status
}

fn pod_from_template(rs: &Value) -> Value {
    let template = &rs["spec"]["template"];
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["generateName"] = json!(format!("{}-", meta::name(rs)));
    metadata["namespace"] = json!(meta::namespace(rs));
    metadata["ownerReferences"] = json!([meta::controller_ref(rs)]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})
}

/// Scales a ReplicaSet, recording the event on its Deployment.
fn scale(store: &mut Store, d: &Value, rs: &Value, to: i64, max_surge: i64) -> Value {
    let from = meta::replicas(rs);
    let info = store.kind("apps", "ReplicaSet");
    let mut new = rs.clone();
    new["spec"]["replicas"] = json!(to);
    meta::set_annotation(
        &mut new,
        "deployment.kubernetes.io/desired-replicas",
        &meta::replicas(d).to_string(),
    );
    meta::set_annotation(
        &mut new,
        "deployment.kubernetes.io/max-replicas",
        &(meta::replicas(d) + max_surge).to_string(),
    );
    let name = meta::name(rs).to_string();
    match store.replace(&info, meta::namespace(rs), &name, new, Write::Internal) {
        Ok(updated) => {
            if from != to {
                let verb = if to > from { "up" } else { "down" };
                store.event(
                    d,
                    "Normal",
                    "ScalingReplicaSet",
                    &format!("Scaled {verb} replica set {name} from {from} to {to}"),
                    "deployment-controller",
                );
            }
            updated
        }
        Err(_) => rs.clone(),
    }
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    old: Option<&Value>,
    touch: bool,
) -> Value {
    let now = time::now();
    let status = if ok { "True" } else { "False" };
    let same_status = old.is_some_and(|o| o["status"] == status);
    let same = same_status && old.is_some_and(|o| o["reason"] == reason && o["message"] == message);
    let transition = match old {
        Some(o) if same_status => o["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let update = match old {
        Some(o) if same && !touch => o["lastUpdateTime"].clone(),
        _ => json!(now),
    };
    json!({"type": type_, "status": status, "lastUpdateTime": update, "lastTransitionTime": transition, "reason": reason, "message": message})
}

/// The deployment controller, for every Deployment.
pub fn reconcile_deployments(store: &mut Store, state: &mut State, now: Instant) {
    let d_info = store.kind("apps", "Deployment");
    let deployments: Vec<Value> = store.list(&d_info, None).into_iter().cloned().collect();
    let live: Vec<String> = deployments
        .iter()
        .map(|d| meta::uid(d).to_string())
        .collect();
    state.progress.retain(|uid, _| live.contains(uid));
    for d in deployments {
        reconcile_one(store, state, d, now);
    }
}

fn reconcile_one(store: &mut Store, state: &mut State, d: Value, now: Instant) {
    let rs_info = store.kind("apps", "ReplicaSet");
    let d_info = store.kind("apps", "Deployment");
    let ns = meta::namespace(&d).to_string();
    let name = meta::name(&d).to_string();
    let uid = meta::uid(&d).to_string();
    let d_key = Key::new(&d_info, &ns, &name);
    let owned = |store: &Store| -> Vec<Value> {
        let mut v: Vec<Value> = store
            .list(&rs_info, Some(&ns))
            .into_iter()
            .filter(|rs| meta::controller_uid(rs) == Some(uid.as_str()))
            .cloned()
            .collect();
        v.sort_by_key(revision_of);
        v
    };
    let mut sets = owned(store);
    let template = d["spec"]["template"].clone();
    let desired = meta::replicas(&d);
    let paused = d["spec"]["paused"] == true;
    let deleting = meta::is_deleting(&d);
    let max_revision = sets.iter().map(revision_of).max().unwrap_or(0);
    let mut new_rs = sets
        .iter()
        .find(|rs| {
            template_without_hash(&rs["spec"]["template"]) == template_without_hash(&template)
        })
        .cloned();
    let mut created_new = false;
    let mut found_old = false;
    let (surge, unavailable) = surge_and_unavailable(&d);
    let recreate = d["spec"]["strategy"]["type"] == "Recreate";

    if !paused && !deleting {
        match &new_rs {
            None => {
                let hash = names::template_hash(&template);
                let mut rs_template = template.clone();
                if !rs_template["metadata"].is_object() {
                    rs_template["metadata"] = json!({});
                }
                rs_template["metadata"]["labels"][HASH] = json!(hash);
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"][HASH] = json!(hash);
                let rs = json!({
                    "metadata": {
                        "name": format!("{name}-{hash}"),
                        "labels": rs_template["metadata"]["labels"],
                        "annotations": {
                            REVISION: (max_revision + 1).to_string(),
                            "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                            "deployment.kubernetes.io/max-replicas": (desired + if recreate { 0 } else { surge }).to_string(),
                        },
                        "ownerReferences": [meta::controller_ref(&d)],
                    },
                    "spec": {"replicas": 0, "minReadySeconds": d["spec"]["minReadySeconds"], "selector": selector, "template": rs_template},
                });
                if let Ok(created) = store.create_internal(&rs_info, &ns, rs) {
                    created_new = true;
                    new_rs = Some(created);
                    sets = owned(store);
                }
            }
            Some(rs) if revision_of(rs) < max_revision => {
                // A template equal to an older ReplicaSet's: that one becomes current again.
                let key = Key::new(&rs_info, &ns, meta::name(rs));
                new_rs = store.update_internal(&key, |r| {
                    meta::set_annotation(r, REVISION, &(max_revision + 1).to_string())
                });
                found_old = true;
                sets = owned(store);
            }
            Some(_) => {}
        }
    }
    let Some(mut new_rs) = new_rs else {
        return;
    };
    let new_name = meta::name(&new_rs).to_string();
    let mut olds: Vec<Value> = sets
        .iter()
        .filter(|rs| meta::name(rs) != new_name)
        .cloned()
        .collect();

    if !paused && !deleting {
        if recreate {
            for old in olds.iter_mut().filter(|o| meta::replicas(o) > 0) {
                *old = scale(store, &d, old, 0, 0);
            }
            let pod_info = store.kind("", "Pod");
            let old_uids: Vec<String> = olds.iter().map(|o| meta::uid(o).to_string()).collect();
            let old_pods_left = store
                .list(&pod_info, Some(&ns))
                .iter()
                .any(|p| meta::controller_uid(p).is_some_and(|u| old_uids.iter().any(|o| o == u)));
            if !old_pods_left && meta::replicas(&new_rs) != desired {
                new_rs = scale(store, &d, &new_rs, desired, 0);
            }
        } else {
            let old_total: i64 = olds.iter().map(meta::replicas).sum();
            let new_replicas = meta::replicas(&new_rs);
            if old_total == 0 {
                if new_replicas != desired {
                    new_rs = scale(store, &d, &new_rs, desired, surge);
                }
            } else if new_replicas < desired {
                let all = old_total + new_replicas;
                let room = desired + surge - all;
                if room > 0 {
                    new_rs = scale(store, &d, &new_rs, desired.min(new_replicas + room), surge);
                }
            } else if new_replicas > desired {
                new_rs = scale(store, &d, &new_rs, desired, surge);
            }
            scale_down_olds(store, &d, &new_rs, &mut olds, desired, surge, unavailable);
        }
        cleanup_history(store, &d, &olds);
    }

    let sets = owned(store);
    let sum = |f: &dyn Fn(&Value) -> i64| sets.iter().map(f).sum::<i64>();
    let count = |rs: &Value, k: &str| rs["status"][k].as_i64().unwrap_or(0);
    let replicas = sum(&|rs| count(rs, "replicas"));
    let updated = sets
        .iter()
        .find(|rs| meta::name(rs) == new_name)
        .map_or(0, |rs| count(rs, "replicas"));
    let ready = sum(&|rs| count(rs, "readyReplicas"));
    let available = sum(&|rs| count(rs, "availableReplicas"));
    let spec_total = sum(&|rs| meta::replicas(rs));
    let unavailable_now = (spec_total - available).max(0);
    let old_status = d["status"].clone();
    let was = |k: &str| old_status[k].as_i64().unwrap_or(0);
    let progressed = created_new
        || found_old
        || updated > was("updatedReplicas")
        || replicas < was("replicas")
        || ready > was("readyReplicas")
        || available > was("availableReplicas")
        || old_status["observedGeneration"] != d["metadata"]["generation"];
    let last = state.progress.entry(uid.clone()).or_insert(now);
    if progressed {
        *last = now;
    }
    let complete = updated == desired && replicas == desired && available == desired;
    let deadline = d["spec"]["progressDeadlineSeconds"]
        .as_i64()
        .unwrap_or(600)
        .max(0) as u32;
    let timed_out =
        !complete && now.duration_since(*last) > store.options.progress_deadline_unit * deadline;
    let old_available = meta::condition(&d, "Available").cloned();
    let old_progressing = meta::condition(&d, "Progressing").cloned();
    let available_ok = available >= desired - unavailable;
    let available_cond = if available_ok {
        condition(
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            old_available.as_ref(),
            false,
        )
    } else {
        condition(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            old_available.as_ref(),
            false,
        )
    };
    let was_exceeded = old_progressing
        .as_ref()
        .is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded");
    let progressing_cond = if complete {
        condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            old_progressing.as_ref(),
            false,
        )
    } else if created_new {
        condition(
            "Progressing",
            true,
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{new_name}\""),
            old_progressing.as_ref(),
            true,
        )
    } else if found_old {
        condition(
            "Progressing",
            true,
            "FoundNewReplicaSet",
            &format!("Found new replica set \"{new_name}\""),
            old_progressing.as_ref(),
            true,
        )
    } else if timed_out || (was_exceeded && !progressed) {
        condition(
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
            old_progressing.as_ref(),
            false,
        )
    } else {
        condition(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{new_name}\" is progressing."),
            old_progressing.as_ref(),
            progressed,
        )
    };
    let mut status = json!({
        "observedGeneration": d["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": unavailable_now,
        "conditions": [available_cond, progressing_cond],
    });
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| !(k != "observedGeneration" && v.as_i64() == Some(0)));
    }
    let revision = revision_of(&new_rs).to_string();
    store.update_internal(&d_key, |obj| {
        obj["status"] = status;
        meta::set_annotation(obj, REVISION, &revision);
    });
}

/// RollingUpdate's scale-down of old ReplicaSets: first their unhealthy replicas, then
/// as many available ones as keep `desired - maxUnavailable` available.
fn scale_down_olds(
    store: &mut Store,
    d: &Value,
    new_rs: &Value,
    olds: &mut [Value],
    desired: i64,
    surge: i64,
    unavailable: i64,
) {
    let count = |rs: &Value, k: &str| rs["status"][k].as_i64().unwrap_or(0);
    let min_available = desired - unavailable;
    let all_total: i64 = olds.iter().map(meta::replicas).sum::<i64>() + meta::replicas(new_rs);
    let new_unavailable = (meta::replicas(new_rs) - count(new_rs, "availableReplicas")).max(0);
    let mut max_scale_down = all_total - min_available - new_unavailable;
    if max_scale_down <= 0 {
        return;
    }
    // Oldest first.
    olds.sort_by_key(revision_of);
    for old in olds.iter_mut() {
        if max_scale_down <= 0 {
            break;
        }
        let replicas = meta::replicas(old);
        let healthy = count(old, "availableReplicas");
        let unhealthy = (replicas - healthy).max(0).min(max_scale_down);
        if replicas == 0 || unhealthy == 0 {
            continue;
        }
        *old = scale(store, d, old, replicas - unhealthy, surge);
        max_scale_down -= unhealthy;
    }
    let available: i64 = olds
        .iter()
        .map(|o| count(o, "availableReplicas"))
        .sum::<i64>()
        + count(new_rs, "availableReplicas");
    let mut total_down = available - min_available;
    if total_down <= 0 {
        return;
    }
    for old in olds.iter_mut() {
        if total_down <= 0 {
            break;
        }
        let replicas = meta::replicas(old);
        if replicas == 0 {
            continue;
        }
        let down = replicas.min(total_down);
        *old = scale(store, d, old, replicas - down, surge);
        total_down -= down;
    }
}

/// Old ReplicaSets at zero beyond `revisionHistoryLimit` are deleted, oldest first.
fn cleanup_history(store: &mut Store, d: &Value, olds: &[Value]) {
    let limit = d["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<&Value> = olds
        .iter()
        .filter(|rs| {
            meta::replicas(rs) == 0
                && rs["status"]["replicas"].as_i64().unwrap_or(0) == 0
                && !meta::is_deleting(rs)
        })
        .collect();
    if idle.len() <= limit {
        return;
    }
    idle.sort_by_key(|rs| revision_of(rs));
    let info = store.kind("apps", "ReplicaSet");
    let n = idle.len() - limit;
    for rs in idle.into_iter().take(n) {
        let _ = store.delete(
            &info,
            meta::namespace(rs),
            meta::name(rs),
            &DeleteOptions::default(),
        );
    }
}
