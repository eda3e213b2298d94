//! The namespace controller: every active namespace has its `default` ServiceAccount
//! and `kube-root-ca.crt` ConfigMap; a terminating one has all its content deleted and
//! disappears `namespace_finalize_after` after it became empty.

use crate::store::{DeleteOptions, Key, Store};
use crate::{meta, time};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

#[derive(Default)]
pub struct State {
    empty_since: HashMap<String, Instant>,
}

const ROOT_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBh0ZXN0a2l0\nLWs4cy1mYWtlLWNsdXN0ZXIwHhcNMjUwMTAxMDAwMDAwWhcNMzUwMTAxMDAwMDAw\nWjAjMSEwHwYDVQQDDBh0ZXN0a2l0LWs4cy1mYWtlLWNsdXN0ZXI=\n-----END CERTIFICATE-----\n";

pub fn tick(store: &mut Store, state: &mut State, now: Instant) {
    let ns_info = store.kind("", "Namespace");
    let namespaces: Vec<Value> = store.list(&ns_info, None).into_iter().cloned().collect();
    state
        .empty_since
        .retain(|n, _| namespaces.iter().any(|ns| meta::name(ns) == n));
    for ns in namespaces {
        let name = meta::name(&ns).to_string();
        if !meta::is_deleting(&ns) {
            populate(store, &name);
            continue;
        }
        let contents: Vec<(Key, Value)> = store
            .in_namespace(&name)
            .into_iter()
            .map(|(k, v)| (k, v.clone()))
            .collect();
        let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
        let mut with_finalizers: BTreeMap<String, usize> = BTreeMap::new();
        for (key, obj) in &contents {
            let Some(info) = store.info_of(key) else {
                continue;
            };
            *remaining.entry(info.resource()).or_default() += 1;
            for f in meta::finalizers(obj) {
                *with_finalizers.entry(f).or_default() += 1;
            }
            if !meta::is_deleting(obj) {
                let _ = store.delete(&info, &key.namespace, &key.name, &DeleteOptions::default());
            }
        }
        let key = Key::new(&ns_info, "", &name);
        if contents.is_empty() {
            let since = *state.empty_since.entry(name.clone()).or_insert(now);
            if now.duration_since(since) >= store.options.namespace_finalize_after
                && meta::finalizers(&ns).is_empty()
            {
                store.remove(&key);
                state.empty_since.remove(&name);
                continue;
            }
        } else {
            state.empty_since.remove(&name);
        }
        let content_msg = remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect::<Vec<_>>()
            .join(", ");
        let finalizer_msg = with_finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect::<Vec<_>>()
            .join(", ");
        let old = ns["status"]["conditions"].clone();
        let cond = |t: &str, on: bool, reason: &str, message: String| {
            let status = if on { "True" } else { "False" };
            let since = old
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == t && c["status"] == status))
                .map(|c| c["lastTransitionTime"].clone())
                .unwrap_or_else(|| json!(time::now()));
            json!({"type": t, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
        };
        let conditions = json!([
            cond(
                "NamespaceDeletionDiscoveryFailure",
                false,
                "ResourcesDiscovered",
                "All resources successfully discovered".into()
            ),
            cond(
                "NamespaceDeletionGroupVersionParsingFailure",
                false,
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed".into()
            ),
            cond(
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into()
            ),
            if remaining.is_empty() {
                cond(
                    "NamespaceContentRemaining",
                    false,
                    "ContentRemoved",
                    "All content successfully removed".into(),
                )
            } else {
                cond(
                    "NamespaceContentRemaining",
                    true,
                    "SomeResourcesRemain",
                    format!("Some resources are remaining: {content_msg}"),
                )
            },
            if with_finalizers.is_empty() {
                cond(
                    "NamespaceFinalizersRemaining",
                    false,
                    "ContentHasNoFinalizers",
                    "All content-preserving finalizers finished".into(),
                )
            } else {
                cond(
                    "NamespaceFinalizersRemaining",
                    true,
                    "SomeFinalizersRemain",
                    format!(
                        "Some content in the namespace has finalizers remaining: {finalizer_msg}"
                    ),
                )
            },
        ]);
        store.update_internal(&key, |n| n["status"]["conditions"] = conditions);
    }
}

/// What the service-account and root-CA controllers put in every namespace.
fn populate(store: &mut Store, namespace: &str) {
    let sa = store.kind("", "ServiceAccount");
    if store.get(&sa, namespace, "default").is_none() {
        let _ = store.create_internal(&sa, namespace, json!({"metadata": {"name": "default"}}));
    }
    let cm = store.kind("", "ConfigMap");
    if store.get(&cm, namespace, "kube-root-ca.crt").is_none() {
        let _ = store.create_internal(
            &cm,
            namespace,
            json!({
                "metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": ROOT_CA},
            }),
        );
    }
}
