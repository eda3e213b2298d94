//! The EndpointSlice (and Endpoints) controller: every Service with a selector gets a
//! slice `<service>-<5 chars>` holding one endpoint per selected pod that has an IP,
//! with ready/serving/terminating conditions and a targetRef. What the slices show lags
//! the pods by `endpoints_lag`, like the real controller's batching and watch delays.

use crate::store::{DeleteOptions, Key, Store, Write};
use crate::{meta, names, selectors};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// What the slices should be, as computed at past instants; the newest one at least
/// `endpoints_lag` old is what gets written.
#[derive(Default)]
pub struct State {
    history: VecDeque<(Instant, BTreeMap<Key, Value>)>,
    managed: BTreeSet<Key>,
}

/// The port a Service port reaches on a pod: a number, or a named container port.
fn target_port(svc_port: &Value, pod: &Value) -> Option<i64> {
    match &svc_port["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            if let Ok(n) = s.parse() {
                return Some(n);
            }
            pod["spec"]["containers"]
                .as_array()?
                .iter()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|p| p["name"] == s.as_str())
                .and_then(|p| p["containerPort"].as_i64())
        }
        _ => svc_port["port"].as_i64(),
    }
}

fn desired(store: &Store) -> BTreeMap<Key, Value> {
    let svc_info = store.kind("", "Service");
    let pod_info = store.kind("", "Pod");
    let slice_info = store.kind("discovery.k8s.io", "EndpointSlice");
    let ep_info = store.kind("", "Endpoints");
    let mut out = BTreeMap::new();
    for svc in store.list(&svc_info, None) {
        let selector = &svc["spec"]["selector"];
        if selector.as_object().is_none_or(|m| m.is_empty())
            || svc["spec"]["type"] == "ExternalName"
        {
            continue;
        }
        let ns = meta::namespace(svc);
        let name = meta::name(svc);
        let publish_not_ready = svc["spec"]["publishNotReadyAddresses"] == true;
        let pods: Vec<&Value> = store
            .list(&pod_info, Some(ns))
            .into_iter()
            .filter(|p| selectors::map_selects(selector, meta::labels(p)))
            .filter(|p| {
                p["status"]["podIP"]
                    .as_str()
                    .is_some_and(|ip| !ip.is_empty())
            })
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .collect();
        let svc_ports: Vec<Value> = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
        let ports: Vec<Value> = svc_ports
            .iter()
            .filter_map(|sp| {
                let port = pods.iter().find_map(|p| target_port(sp, p)).or_else(|| sp["targetPort"].as_i64())?;
                let mut p = json!({"name": sp["name"].as_str().unwrap_or_default(), "port": port, "protocol": sp["protocol"]});
                if let Some(app) = sp["appProtocol"].as_str() {
                    p["appProtocol"] = json!(app);
                }
                Some(p)
            })
            .collect();
        let target_ref = |p: &Value| json!({"kind": "Pod", "name": meta::name(p), "namespace": ns, "uid": meta::uid(p)});
        let mut endpoints = Vec::new();
        let (mut ready_addrs, mut not_ready_addrs) = (Vec::new(), Vec::new());
        for p in &pods {
            let ip = p["status"]["podIP"].clone();
            let serving = meta::condition_true(p, "Ready") || publish_not_ready;
            let terminating = meta::is_deleting(p);
            let ready = serving && (!terminating || publish_not_ready);
            let mut e = json!({
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                "targetRef": target_ref(p),
            });
            if let Some(node) = p["spec"]["nodeName"].as_str() {
                e["nodeName"] = json!(node);
            }
            endpoints.push(e);
            let address =
                json!({"ip": ip, "nodeName": p["spec"]["nodeName"], "targetRef": target_ref(p)});
            if ready {
                ready_addrs.push(address);
            } else if !terminating {
                not_ready_addrs.push(address);
            }
        }
        let owner = json!([{"apiVersion": "v1", "kind": "Service", "name": name, "uid": meta::uid(svc), "controller": true, "blockOwnerDeletion": true}]);
        let mut labels = svc["metadata"]["labels"].clone();
        if !labels.is_object() {
            labels = json!({});
        }
        let ep_labels = labels.clone();
        labels[SERVICE_NAME] = json!(name);
        labels[MANAGED_BY] = json!(CONTROLLER);
        let slice_name = format!("{name}-{}", names::stable_suffix(meta::uid(svc)));
        out.insert(
            Key::new(&slice_info, ns, &slice_name),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice_name, "generateName": format!("{name}-"), "namespace": ns, "labels": labels, "ownerReferences": owner},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            }),
        );
        let mut ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns, "labels": ep_labels}});
        if !ready_addrs.is_empty() || !not_ready_addrs.is_empty() {
            let mut subset = json!({"ports": ports});
            if !ready_addrs.is_empty() {
                subset["addresses"] = json!(ready_addrs);
            }
            if !not_ready_addrs.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready_addrs);
            }
            ep["subsets"] = json!([subset]);
        }
        out.insert(Key::new(&ep_info, ns, name), ep);
    }
    out
}

/// The controller-owned part of an object: everything but the server-set metadata.
fn managed_view(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.retain(|k, _| {
            matches!(
                k.as_str(),
                "name" | "namespace" | "labels" | "ownerReferences" | "generateName"
            )
        });
        if v["metadata"]["labels"]
            .as_object()
            .is_some_and(|l| l.is_empty())
        {
            v["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    v
}

pub fn tick(store: &mut Store, state: &mut State, now: Instant) {
    let want = desired(store);
    if state.history.back().map(|(_, d)| d) != Some(&want) {
        state.history.push_back((now, want));
    }
    let lag = store.options.endpoints_lag;
    let Some(idx) = state
        .history
        .iter()
        .rposition(|(t, _)| now.duration_since(*t) >= lag)
    else {
        return;
    };
    state.history.drain(..idx);
    let effective = state.history[0].1.clone();
    for (key, obj) in &effective {
        let Some(info) = store.info_of(key) else {
            continue;
        };
        match store.get(&info, &key.namespace, &key.name).cloned() {
            None => {
                // Skip a Service that is gone by now (its slice would be garbage anyway).
                let svc = store.kind("", "Service");
                let owner =
                    key.kind == "Endpoints" || obj["metadata"]["labels"][SERVICE_NAME].is_string();
                let svc_name = obj["metadata"]["labels"][SERVICE_NAME]
                    .as_str()
                    .unwrap_or(&key.name);
                if owner && store.get(&svc, &key.namespace, svc_name).is_none() {
                    continue;
                }
                let _ = store.create_internal(&info, &key.namespace, obj.clone());
            }
            Some(existing) => {
                if managed_view(&existing) == managed_view(obj) {
                    continue;
                }
                let mut next = obj.clone();
                next["metadata"] = existing["metadata"].clone();
                for k in ["labels", "ownerReferences"] {
                    next["metadata"][k] = obj["metadata"][k].clone();
                }
                if next["metadata"]["labels"].is_null() {
                    next["metadata"].as_object_mut().map(|m| m.remove("labels"));
                }
                if next["metadata"]["ownerReferences"].is_null() {
                    next["metadata"]
                        .as_object_mut()
                        .map(|m| m.remove("ownerReferences"));
                }
                let _ = store.replace(&info, &key.namespace, &key.name, next, Write::Internal);
            }
        }
        state.managed.insert(key.clone());
    }
    let stale: Vec<Key> = state
        .managed
        .iter()
        .filter(|k| !effective.contains_key(k))
        .cloned()
        .collect();
    for key in stale {
        state.managed.remove(&key);
        if let Some(info) = store.info_of(&key) {
            let _ = store.delete(&info, &key.namespace, &key.name, &DeleteOptions::default());
        }
    }
}
