//! The object store and the generic write rules of the API server: every object as
//! JSON under (group, kind, namespace, name); one global resourceVersion counter;
//! uid, creationTimestamp and generation; creation rules for namespaces (missing → 404,
//! terminating → 403); deletion with propagation policies, finalizers and graceful pod
//! termination; the last applied configuration per (object, field manager); events.

use crate::controllers::pods::PodSim;
use crate::defaults::{self, Allocators, Origin};
use crate::errors::{ApiError, ApiResult};
use crate::kinds::{KindInfo, Kinds};
use crate::{ImageBehaviour, Options, meta, names, time};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub group: String,
    pub kind: String,
    /// "" for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(info: &KindInfo, namespace: &str, name: &str) -> Key {
        Key {
            group: info.group.clone(),
            kind: info.kind.clone(),
            namespace: if info.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }
}

/// Which parts of an object a replace may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The main resource through the API: status is kept for kinds with a status
    /// subresource, and validation applies.
    Main,
    /// The status subresource: only status changes.
    Status,
    /// The fake's controllers and test helpers: everything but identity.
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

/// The outcome of a delete: gone now, or marked (deletionTimestamp) and going later.
#[derive(Debug, Clone)]
pub enum Deleted {
    Gone(Value),
    Pending(Value),
}

const FOREGROUND: &str = "foregroundDeletion";
pub const NODE_NAME: &str = "kind-control-plane";

pub struct Store {
    objects: BTreeMap<Key, Value>,
    revision: u64,
    kinds: Kinds,
    /// (uid, field manager) → the configuration that manager applied last.
    applied: HashMap<(String, String), Value>,
    /// The kubelet's private view of each pod, by uid.
    pub pods: HashMap<String, PodSim>,
    pub images: Vec<(String, ImageBehaviour)>,
    /// Extra log text per (namespace, pod, container).
    pub logs: HashMap<(String, String, String), String>,
    pub alloc: Allocators,
    /// The kubelet's readiness probe of running containers, when a test set one.
    pub readiness: Option<crate::ReadinessProbe>,
    pub options: Options,
}

impl Store {
    /// A fresh cluster: the four system namespaces, the node, and the `kubernetes`
    /// Service.
    pub fn new(options: Options) -> Store {
        let mut store = Store {
            objects: BTreeMap::new(),
            revision: 1,
            kinds: Kinds::new(options.istio_kinds_preinstalled, std::iter::empty()),
            applied: HashMap::new(),
            pods: HashMap::new(),
            images: Vec::new(),
            logs: HashMap::new(),
            alloc: Allocators::new(&options.pod_ip_prefix),
            readiness: None,
            options,
        };
        let ns = store.kind("", "Namespace");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = store.create(&ns, "", json!({"metadata": {"name": name}}));
        }
        let node = store.kind("", "Node");
        let (obj, status) = node_object(store.options.kubernetes_version);
        if let Ok(mut created) = store.create(&node, "", obj) {
            created["status"] = status;
            let _ = store.replace(&node, "", NODE_NAME, created, Write::Internal);
        }
        let svc = store.kind("", "Service");
        let _ = store.create(
            &svc,
            "default",
            json!({
                "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
            }),
        );
        store
    }

    /// A built-in kind by group and Kind (panics on a typo in the fake itself).
    pub fn kind(&self, group: &str, kind: &str) -> std::sync::Arc<KindInfo> {
        self.kinds
            .lookup(group, kind)
            .unwrap_or_else(|| panic!("kind {group}/{kind} is not in the table"))
    }

    pub fn kinds(&self) -> &Kinds {
        &self.kinds
    }

    pub fn revision(&self) -> String {
        self.revision.to_string()
    }

    fn bump(&mut self) -> String {
        self.revision += 1;
        self.revision.to_string()
    }

    pub fn get(&self, info: &KindInfo, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&Key::new(info, namespace, name))
    }

    /// Objects of a kind, in one namespace or all, ordered by namespace and name.
    pub fn list(&self, info: &KindInfo, namespace: Option<&str>) -> Vec<&Value> {
        let start = Key {
            group: info.group.clone(),
            kind: info.kind.clone(),
            namespace: String::new(),
            name: String::new(),
        };
        self.objects
            .range(start..)
            .take_while(|(k, _)| k.group == info.group && k.kind == info.kind)
            .filter(|(k, _)| namespace.is_none_or(|ns| !info.namespaced || k.namespace == ns))
            .map(|(_, v)| v)
            .collect()
    }

    /// Every object in a namespace, of any kind.
    pub fn in_namespace(&self, namespace: &str) -> Vec<(Key, &Value)> {
        self.objects
            .iter()
            .filter(|(k, _)| k.namespace == namespace)
            .map(|(k, v)| (k.clone(), v))
            .collect()
    }

    pub fn all(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects.iter()
    }

    pub fn namespace(&self, name: &str) -> Option<&Value> {
        self.objects.get(&Key {
            group: String::new(),
            kind: "Namespace".into(),
            namespace: String::new(),
            name: name.into(),
        })
    }

    /// The kind of a stored key.
    pub fn info_of(&self, key: &Key) -> Option<std::sync::Arc<KindInfo>> {
        self.kinds
            .iter()
            .find(|k| k.group == key.group && k.kind == key.kind)
            .cloned()
    }

    fn used_cluster_ips(&self, info: &KindInfo) -> HashSet<String> {
        if !info.is("", "Service") {
            return HashSet::new();
        }
        self.list(info, None)
            .iter()
            .filter_map(|s| s["spec"]["clusterIP"].as_str().map(str::to_string))
            .collect()
    }

    /// 404 when a namespaced object's namespace is missing, 403 while it terminates.
    pub fn check_namespace_open(
        &self,
        info: &KindInfo,
        namespace: &str,
        name: &str,
    ) -> ApiResult<()> {
        if !info.namespaced {
            return Ok(());
        }
        if namespace.is_empty() {
            return Err(ApiError::bad_request(
                "the namespace of the object is required",
            ));
        }
        match self.namespace(namespace) {
            None => Err(ApiError::namespace_not_found(namespace)),
            Some(ns) if meta::is_deleting(ns) => Err(ApiError::forbidden(
                info,
                name,
                &format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// POST: a new object (no admission here; see `Shared::create`).
    pub fn create(&mut self, info: &KindInfo, namespace: &str, mut obj: Value) -> ApiResult<Value> {
        self.create_with(info, namespace, &mut obj, Origin::Api)
    }

    pub fn create_internal(
        &mut self,
        info: &KindInfo,
        namespace: &str,
        mut obj: Value,
    ) -> ApiResult<Value> {
        self.create_with(info, namespace, &mut obj, Origin::Internal)
    }

    /// The object's name, or one generated from `generateName` that no object of the
    /// kind in `namespace` has, as the API server does on a create.
    pub fn name_for(&self, info: &KindInfo, namespace: &str, obj: &Value) -> ApiResult<String> {
        let name = meta::name(obj);
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        let prefix = obj["metadata"]["generateName"].as_str().unwrap_or_default();
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                info,
                "",
                &[(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ));
        }
        Ok(loop {
            let candidate = format!("{prefix}{}", names::suffix());
            if self.get(info, namespace, &candidate).is_none() {
                break candidate;
            }
        })
    }

    fn create_with(
        &mut self,
        info: &KindInfo,
        namespace: &str,
        obj: &mut Value,
        origin: Origin,
    ) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        defaults::check_shape(info, obj).map_err(ApiError::bad_request)?;
        self.check_namespace_open(info, namespace, meta::name(obj))?;
        let name = self.name_for(info, namespace, obj)?;
        if let Err(cause) = defaults::validate_name(info, &name) {
            return Err(ApiError::invalid(info, &name, &[cause]));
        }
        if self.get(info, namespace, &name).is_some() {
            return Err(ApiError::already_exists(info, &name));
        }
        obj["apiVersion"] = json!(info.storage_api_version());
        obj["kind"] = json!(info.kind);
        if info.has_status()
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        let m = meta::metadata_mut(obj);
        m.insert("name".into(), json!(name));
        if info.namespaced {
            m.insert("namespace".into(), json!(namespace));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(names::uid()));
        m.insert("creationTimestamp".into(), json!(time::now()));
        for k in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            m.remove(k);
        }
        if info.generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        let used = self.used_cluster_ips(info);
        let causes = defaults::prepare(info, obj, None, origin, &used, &mut self.alloc);
        if !causes.is_empty() {
            return Err(ApiError::invalid(info, &name, &causes));
        }
        let rv = self.bump();
        meta::metadata_mut(obj).insert("resourceVersion".into(), json!(rv));
        if info.is("", "Pod") {
            let sim = PodSim::new(obj, &self.images);
            self.pods.insert(meta::uid(obj).to_string(), sim);
        }
        self.objects
            .insert(Key::new(info, namespace, &name), obj.clone());
        self.after_write(info);
        Ok(obj.clone())
    }

    /// PUT (and the end of every patch): replaces the object, keeping identity and the
    /// parts `mode` does not cover. A stale `metadata.resourceVersion` is a 409.
    pub fn replace(
        &mut self,
        info: &KindInfo,
        namespace: &str,
        name: &str,
        mut obj: Value,
        mode: Write,
    ) -> ApiResult<Value> {
        let key = Key::new(info, namespace, name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info, name))?;
        if !obj.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        defaults::check_shape(info, &obj).map_err(ApiError::bad_request)?;
        if mode != Write::Internal {
            if let Some(rv) = obj["metadata"]["resourceVersion"].as_str()
                && !rv.is_empty()
                && rv != old["metadata"]["resourceVersion"]
            {
                return Err(ApiError::stale(info, name));
            }
            if let Some(uid) = obj["metadata"]["uid"].as_str()
                && !uid.is_empty()
                && uid != meta::uid(&old)
            {
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta::uid(&old)
                    ),
                ));
            }
        }
        let mut new = match mode {
            Write::Status => {
                let mut n = old.clone();
                n["status"] = obj["status"].take();
                n
            }
            Write::Main if info.has_status() => {
                obj["status"] = old["status"].clone();
                obj
            }
            _ => obj,
        };
        if new["status"].is_null()
            && let Some(m) = new.as_object_mut()
        {
            m.remove("status");
        }
        new["apiVersion"] = json!(info.storage_api_version());
        new["kind"] = json!(info.kind);
        {
            let m = meta::metadata_mut(&mut new);
            m.insert("name".into(), json!(name));
            if info.namespaced {
                m.insert("namespace".into(), json!(namespace));
            } else {
                m.remove("namespace");
            }
            // Who manages the object is the server's record, not the writer's.
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
            ] {
                match old["metadata"].get(k) {
                    Some(v) => m.insert(k.into(), v.clone()),
                    None => m.remove(k),
                };
            }
        }
        if mode != Write::Status {
            let origin = if mode == Write::Main {
                Origin::Api
            } else {
                Origin::Internal
            };
            let used = self.used_cluster_ips(info);
            let causes =
                defaults::prepare(info, &mut new, Some(&old), origin, &used, &mut self.alloc);
            if !causes.is_empty() {
                return Err(ApiError::invalid(info, name, &causes));
            }
        }
        set_generation(info, &old, &mut new);
        if without_resource_version(&new) == without_resource_version(&old) {
            return Ok(old);
        }
        let rv = self.bump();
        meta::metadata_mut(&mut new).insert("resourceVersion".into(), json!(rv));
        self.objects.insert(key.clone(), new.clone());
        self.after_write(info);
        if let Some(gone) = self.settle(&key) {
            return Ok(gone);
        }
        Ok(new)
    }

    /// A controller's write that keeps generation as it is (status, bindings,
    /// annotations): applies `f` and stores the result if it changed anything.
    pub fn update_internal(&mut self, key: &Key, f: impl FnOnce(&mut Value)) -> Option<Value> {
        let old = self.objects.get(key)?;
        let mut new = old.clone();
        f(&mut new);
        if without_resource_version(&new) == without_resource_version(old) {
            return Some(new);
        }
        let rv = self.bump();
        meta::metadata_mut(&mut new).insert("resourceVersion".into(), json!(rv));
        self.objects.insert(key.clone(), new.clone());
        if key.kind == "CustomResourceDefinition" {
            self.rebuild_kinds();
        }
        if let Some(gone) = self.settle(key) {
            return Some(gone);
        }
        Some(new)
    }

    /// Removes an object whose deletion is complete: deletionTimestamp set, no
    /// finalizers left (and, for a pod, the kubelet done with it). Namespaces go through
    /// the namespace controller instead. Returns the removed object.
    pub fn settle(&mut self, key: &Key) -> Option<Value> {
        let obj = self.objects.get(key)?;
        if !meta::is_deleting(obj)
            || !meta::finalizers(obj).is_empty()
            || key.kind == "Namespace" && key.group.is_empty()
        {
            return None;
        }
        if key.kind == "Pod" && key.group.is_empty() {
            let done = self.pods.get(meta::uid(obj)).is_none_or(|s| s.terminated);
            if !done {
                return None;
            }
        }
        self.remove(key)
    }

    /// Drops an object at once (the final step of every deletion).
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let obj = self.objects.remove(key)?;
        let uid = meta::uid(&obj).to_string();
        self.pods.remove(&uid);
        self.applied.retain(|(u, _), _| *u != uid);
        if key.kind == "Pod" {
            self.logs
                .retain(|(ns, pod, _), _| !(*ns == key.namespace && *pod == key.name));
        }
        self.bump();
        if key.kind == "CustomResourceDefinition" {
            self.remove_custom_objects(&obj);
            self.rebuild_kinds();
        }
        Some(obj)
    }

    fn remove_custom_objects(&mut self, crd: &Value) {
        let group = crd["spec"]["group"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = crd["spec"]["names"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if self.kinds.lookup(&group, &kind).is_some_and(|k| k.builtin) {
            return;
        }
        self.objects
            .retain(|k, _| !(k.group == group && k.kind == kind));
    }

    fn after_write(&mut self, info: &KindInfo) {
        if info.is("apiextensions.k8s.io", "CustomResourceDefinition") {
            self.rebuild_kinds();
        }
    }

    fn rebuild_kinds(&mut self) {
        let crd = self.kind("apiextensions.k8s.io", "CustomResourceDefinition");
        let crds: Vec<Value> = self.list(&crd, None).into_iter().cloned().collect();
        self.kinds = Kinds::new(self.options.istio_kinds_preinstalled, crds.iter());
    }

    /// DELETE.
    pub fn delete(
        &mut self,
        info: &KindInfo,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let key = Key::new(info, namespace, name);
        let mut obj = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info, name))?;
        if let Some(uid) = &opts.precondition_uid
            && uid != meta::uid(&obj)
        {
            return Err(ApiError::conflict(
                info,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(&obj)
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_resource_version
            && *rv != obj["metadata"]["resourceVersion"]
        {
            return Err(ApiError::conflict(
                info,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    obj["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                ),
            ));
        }
        if info.is("", "Namespace") {
            if meta::is_deleting(&obj) {
                return Err(ApiError::conflict(
                    info,
                    name,
                    "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.",
                ));
            }
            meta::metadata_mut(&mut obj).insert("deletionTimestamp".into(), json!(time::now()));
            meta::metadata_mut(&mut obj).insert("deletionGracePeriodSeconds".into(), json!(0));
            obj["status"]["phase"] = json!("Terminating");
            return self.write_marked(key, obj).map(Deleted::Pending);
        }
        let uid = meta::uid(&obj).to_string();
        match opts.propagation {
            Propagation::Orphan => self.orphan_dependents(&uid),
            Propagation::Foreground => {
                let mut f = meta::finalizers(&obj);
                if !f.iter().any(|x| x == FOREGROUND) {
                    f.push(FOREGROUND.into());
                    meta::metadata_mut(&mut obj).insert("finalizers".into(), json!(f));
                }
            }
            Propagation::Background => {}
        }
        let already = meta::is_deleting(&obj);
        if info.is("", "Pod") {
            let grace = opts
                .grace_period_seconds
                .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30)
                .max(0);
            let scheduled = obj["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            if scheduled && grace > 0 {
                if !already {
                    let m = meta::metadata_mut(&mut obj);
                    m.insert(
                        "deletionTimestamp".into(),
                        json!(time::after(Duration::from_secs(grace as u64))),
                    );
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    if let Some(sim) = self.pods.get_mut(&uid) {
                        sim.deleted_at = Some(Instant::now());
                    }
                }
                return self.write_marked(key, obj).map(Deleted::Pending);
            }
            if let Some(sim) = self.pods.get_mut(&uid) {
                sim.terminated = true;
            }
        }
        if !meta::finalizers(&obj).is_empty() || already {
            if !already {
                let m = meta::metadata_mut(&mut obj);
                m.insert("deletionTimestamp".into(), json!(time::now()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            let marked = self.write_marked(key.clone(), obj)?;
            return Ok(match self.settle(&key) {
                Some(gone) => Deleted::Gone(gone),
                None => Deleted::Pending(marked),
            });
        }
        let gone = self.remove(&key).unwrap_or(obj);
        Ok(Deleted::Gone(gone))
    }

    /// Stores an object that deletion marked (deletionTimestamp, finalizers), bumping
    /// generation as graceful deletion does.
    fn write_marked(&mut self, key: Key, mut obj: Value) -> ApiResult<Value> {
        let old = self.objects.get(&key).cloned().unwrap_or(Value::Null);
        if without_resource_version(&old) == without_resource_version(&obj) {
            return Ok(old);
        }
        if !meta::is_deleting(&old)
            && let Some(g) = obj["metadata"]["generation"].as_i64()
        {
            obj["metadata"]["generation"] = json!(g + 1);
        }
        let rv = self.bump();
        meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv));
        self.objects.insert(key, obj.clone());
        Ok(obj)
    }

    /// Orphan propagation: dependents lose their ownerReferences to `uid`.
    fn orphan_dependents(&mut self, uid: &str) {
        let keys: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, v)| meta::owner_uids(v).iter().any(|u| u == uid))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(mut obj) = self.objects.get(&key).cloned() {
                if let Some(refs) = obj["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"] != uid);
                    if refs.is_empty() {
                        meta::metadata_mut(&mut obj).remove("ownerReferences");
                    }
                }
                let rv = self.bump();
                meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv));
                self.objects.insert(key, obj);
            }
        }
    }

    pub fn last_applied(&self, uid: &str, manager: &str) -> Option<&Value> {
        self.applied.get(&(uid.to_string(), manager.to_string()))
    }

    /// Records what `manager` applied, and lists the object's apply managers in its
    /// `metadata.managedFields` (manager and operation only; no field sets).
    pub fn set_applied(&mut self, uid: &str, manager: &str, config: Value) {
        self.applied
            .insert((uid.to_string(), manager.to_string()), config);
        let mut managers: Vec<&String> = self
            .applied
            .keys()
            .filter(|(u, _)| u == uid)
            .map(|(_, m)| m)
            .collect();
        managers.sort();
        let Some(obj) = self.objects.values_mut().find(|o| meta::uid(o) == uid) else {
            return;
        };
        let mut entries: Vec<Value> = obj["metadata"]["managedFields"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter(|e| e["operation"] != "Apply")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        entries.extend(
            managers
                .into_iter()
                .map(|m| json!({"manager": m, "operation": "Apply", "fieldsType": "FieldsV1"})),
        );
        meta::metadata_mut(obj).insert("managedFields".into(), json!(entries));
    }

    /// Lists `manager` in the object's `metadata.managedFields` as an updater (a create
    /// or update with `fieldManager`), as a real API server does.
    pub fn record_updater(&mut self, uid: &str, manager: &str) {
        let Some(obj) = self.objects.values_mut().find(|o| meta::uid(o) == uid) else {
            return;
        };
        let mut entries: Vec<Value> = obj["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !entries
            .iter()
            .any(|e| e["manager"] == manager && e["operation"] == "Update")
        {
            entries
                .push(json!({"manager": manager, "operation": "Update", "fieldsType": "FieldsV1"}));
        }
        meta::metadata_mut(obj).insert("managedFields".into(), json!(entries));
    }

    /// The other apply managers of an object and what they applied last.
    pub fn other_appliers(&self, uid: &str, manager: &str) -> Vec<(String, Value)> {
        let mut v: Vec<(String, Value)> = self
            .applied
            .iter()
            .filter(|((u, m), _)| u == uid && m != manager)
            .map(|((_, m), c)| (m.clone(), c.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Records an event about `involved` (core/v1 Event, like `kubectl get events`
    /// shows); a repeat of the same reason and message counts up instead.
    pub fn event(
        &mut self,
        involved: &Value,
        type_: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let namespace = match meta::namespace(involved) {
            "" => "default",
            ns => ns,
        }
        .to_string();
        if self.namespace(&namespace).is_none_or(meta::is_deleting) {
            return;
        }
        let info = self.kind("", "Event");
        let uid = meta::uid(involved);
        let now = time::now();
        let existing = self
            .list(&info, Some(&namespace))
            .into_iter()
            .find(|e| {
                e["involvedObject"]["uid"] == uid
                    && e["reason"] == reason
                    && e["message"] == message
            })
            .cloned();
        if let Some(mut e) = existing {
            e["count"] = json!(e["count"].as_i64().unwrap_or(1) + 1);
            e["lastTimestamp"] = json!(now);
            let name = meta::name(&e).to_string();
            let _ = self.replace(&info, &namespace, &name, e, Write::Internal);
            return;
        }
        let host = if component == "kubelet" {
            json!(NODE_NAME)
        } else {
            Value::Null
        };
        let mut source = json!({"component": component});
        if !host.is_null() {
            source["host"] = host.clone();
        }
        let event = json!({
            "metadata": {"name": format!("{}.{}", meta::name(involved), names::hex_id(&names::uid(), 16))},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta::name(involved),
                "namespace": meta::namespace(involved),
                "uid": uid,
                "resourceVersion": involved["metadata"]["resourceVersion"],
            },
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": type_,
            "eventTime": null,
            "reportingComponent": component,
            "reportingInstance": if component == "kubelet" { NODE_NAME } else { "" },
        });
        let _ = self.create_internal(&info, &namespace, event);
    }
}

fn without_resource_version(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    v
}

/// `metadata.generation` counts changes of everything but metadata and status.
fn set_generation(info: &KindInfo, old: &Value, new: &mut Value) {
    if !info.generation {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("generation");
        }
        return;
    }
    let body = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            for k in ["metadata", "status", "apiVersion", "kind"] {
                m.remove(k);
            }
        }
        v
    };
    let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
    let g = if body(old) != body(new) { g + 1 } else { g };
    new["metadata"]["generation"] = json!(g);
}

fn node_object((major, minor): (u32, u32)) -> (Value, Value) {
    let node = json!({
        "metadata": {"name": NODE_NAME, "labels": {
            "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node-role.kubernetes.io/control-plane": "",
        }},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "providerID": format!("kind://docker/kind/{NODE_NAME}")},
    });
    let status = json!({
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": NODE_NAME}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                            "lastHeartbeatTime": time::now(), "lastTransitionTime": time::now()}],
            "nodeInfo": {"kubeletVersion": format!("v{major}.{minor}.0"), "containerRuntimeVersion": "containerd://2.1.3", "osImage": "Debian GNU/Linux 12 (bookworm)",
                         "kernelVersion": "6.1.0", "operatingSystem": "linux", "architecture": "amd64", "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
            "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "110"},
    });
    (node, status)
}
