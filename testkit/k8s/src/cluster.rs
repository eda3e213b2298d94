//! The state shared by the HTTP server, the controllers and the test-facing handle:
//! the store behind one lock, the hooks, faults and request log; and the operations
//! that must run a hook outside that lock (pod admission on create and apply).

use crate::controllers::PodPlan;
use crate::errors::{ApiError, ApiResult};
use crate::faults::Faults;
use crate::kinds::{KindInfo, split_api_version};
use crate::patch;
use crate::server::RequestRecord;
use crate::store::{Store, Write};
use crate::{Options, PodAdmission, PortForwardHook, meta};
use serde_json::{Value, json};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard};

pub struct Shared {
    pub options: Options,
    /// `127.0.0.1:PORT`, as discovery reports the server address.
    pub authority: String,
    store: Mutex<Store>,
    admission: Mutex<Option<PodAdmission>>,
    port_forward: Mutex<Option<PortForwardHook>>,
    pub faults: Mutex<Faults>,
    pub requests: Mutex<Vec<RequestRecord>>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not take the fake
/// down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(options: Options, authority: String) -> Shared {
        Shared {
            authority,
            store: Mutex::new(Store::new(options.clone())),
            options,
            admission: Mutex::new(None),
            port_forward: Mutex::new(None),
            faults: Mutex::new(Faults::default()),
            requests: Mutex::new(Vec::new()),
            stop: tokio::sync::watch::channel(false).0,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// A receiver that changes when the cluster shuts down.
    pub fn stopped(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn set_admission(&self, hook: PodAdmission) {
        *lock(&self.admission) = Some(hook);
    }

    pub fn set_port_forward(&self, hook: PortForwardHook) {
        *lock(&self.port_forward) = Some(hook);
    }

    pub fn port_forward_hook(&self) -> Option<PortForwardHook> {
        lock(&self.port_forward).clone()
    }

    /// Runs pod admission (the mutating-webhook stand-in) on a pod about to be created.
    /// Called without the store lock held: the hook may read the cluster.
    fn admit(&self, info: &KindInfo, namespace: &str, mut pod: Value) -> ApiResult<Value> {
        if !pod.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        crate::defaults::check_shape(info, &pod).map_err(ApiError::bad_request)?;
        let ns = {
            let store = self.lock();
            store.check_namespace_open(info, namespace, meta::name(&pod))?;
            store.namespace(namespace).cloned().unwrap_or(Value::Null)
        };
        meta::metadata_mut(&mut pod).insert("namespace".into(), json!(namespace));
        let Some(hook) = lock(&self.admission).clone() else {
            return Ok(pod);
        };
        match catch_unwind(AssertUnwindSafe(|| hook(&mut pod, &ns))) {
            Ok(()) => Ok(pod),
            Err(_) => Err(ApiError::internal(
                "Internal error occurred: failed calling webhook \"testkit.pod-admission\": the pod admission hook panicked",
            )),
        }
    }

    /// Create, as POST does: admission for pods, then the store's rules.
    pub fn create(&self, info: &KindInfo, namespace: &str, obj: Value) -> ApiResult<Value> {
        let obj = if info.is("", "Pod") {
            self.admit(info, namespace, obj)?
        } else {
            obj
        };
        self.lock().create(info, namespace, obj)
    }

    /// A dry-run create of a pod (`dryRun=All`): admission runs, nothing is stored; the
    /// name is generated from `generateName` as a real create would.
    pub fn create_dry_run(&self, info: &KindInfo, namespace: &str, obj: Value) -> ApiResult<Value> {
        let mut pod = self.admit(info, namespace, obj)?;
        let name = self.lock().name_for(info, namespace, &pod)?;
        meta::metadata_mut(&mut pod).insert("name".into(), json!(name));
        Ok(pod)
    }

    /// A ReplicaSet's pod, with the events the replica-set controller records.
    pub fn create_planned_pod(&self, plan: PodPlan) {
        let info = self.lock().kind("", "Pod");
        let result = self.create(&info, &plan.namespace, plan.pod);
        let mut store = self.lock();
        match result {
            Ok(pod) => store.event(
                &plan.owner,
                "Normal",
                "SuccessfulCreate",
                &format!("Created pod: {}", meta::name(&pod)),
                "replicaset-controller",
            ),
            Err(e) => store.event(
                &plan.owner,
                "Warning",
                "FailedCreate",
                &format!("Error creating: {}", e.message),
                "replicaset-controller",
            ),
        }
    }

    /// Server-side apply by `manager`: creates the object when absent (with admission for
    /// pods), else merges the applied configuration into it and removes what the
    /// manager applied before but no longer does. Returns the object and whether it
    /// was created.
    pub fn apply(
        &self,
        target: &ApplyTarget,
        body: Value,
        manager: &str,
        force: bool,
    ) -> ApiResult<(Value, bool)> {
        let ApplyTarget {
            info,
            version,
            namespace,
            name,
        } = *target;
        let config = apply_config(info, version, namespace, name, body)?;
        let precondition = config["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        let mut config = config;
        if let Some(m) = config["metadata"].as_object_mut() {
            for k in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "managedFields",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                m.remove(k);
            }
        }
        if info.has_status()
            && let Some(m) = config.as_object_mut()
        {
            m.remove("status");
        }
        for _ in 0..3 {
            let mut store = self.lock();
            if let Some(live) = store.get(info, namespace, name).cloned() {
                if let Some(rv) = &precondition
                    && *rv != live["metadata"]["resourceVersion"]
                {
                    return Err(ApiError::stale(info, name));
                }
                let uid = meta::uid(&live).to_string();
                let previous = store.last_applied(&uid, manager).cloned();
                let others = store.other_appliers(&uid, manager);
                let out = patch::server_side_apply(
                    Some(&live),
                    &config,
                    previous.as_ref(),
                    &others,
                    info.builtin,
                    force,
                )
                .map_err(|c| ApiError::new(409, "Conflict", patch::conflict_message(&c)))?;
                let mut obj = out.object;
                obj["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
                let stored = store.replace(info, namespace, name, obj, Write::Main)?;
                store.set_applied(&uid, manager, config);
                for (m, c) in out.others {
                    store.set_applied(&uid, &m, c);
                }
                return Ok((stored, false));
            }
            let created = patch::server_side_apply(None, &config, None, &[], info.builtin, force)
                .map_err(|c| ApiError::new(409, "Conflict", patch::conflict_message(&c)))?
                .object;
            let created = if info.is("", "Pod") {
                drop(store);
                let admitted = self.admit(info, namespace, created)?;
                store = self.lock();
                if store.get(info, namespace, name).is_some() {
                    continue;
                }
                admitted
            } else {
                created
            };
            let stored = store.create(info, namespace, created)?;
            store.set_applied(meta::uid(&stored), manager, config);
            return Ok((stored, true));
        }
        Err(ApiError::internal(
            "apply raced with concurrent writes three times",
        ))
    }
}

/// The object an apply is for, and the version it was sent as ("" when any).
#[derive(Clone, Copy)]
pub struct ApplyTarget<'a> {
    pub info: &'a KindInfo,
    pub version: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Checks an applied configuration against the request and normalises it.
fn apply_config(
    info: &KindInfo,
    version: &str,
    namespace: &str,
    name: &str,
    body: Value,
) -> ApiResult<Value> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the apply patch must be an object"));
    }
    let Some(api_version) = body["apiVersion"].as_str() else {
        return Err(ApiError::bad_request(
            "apiVersion must be set in apply patch",
        ));
    };
    let Some(kind) = body["kind"].as_str() else {
        return Err(ApiError::bad_request("kind must be set in apply patch"));
    };
    let (group, v) = split_api_version(api_version);
    if group != info.group || kind != info.kind || (!version.is_empty() && v != version) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            info.api_version(if version.is_empty() {
                &info.versions[0]
            } else {
                version
            })
        )));
    }
    match body["metadata"]["name"].as_str() {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    if info.namespaced
        && let Some(ns) = body["metadata"]["namespace"].as_str()
        && ns != namespace
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let mut body = body;
    meta::metadata_mut(&mut body).insert("name".into(), json!(name));
    Ok(body)
}
