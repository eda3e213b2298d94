//! The garbage collector: objects whose owners are all gone are deleted (background
//! propagation); dependents of an owner in foreground deletion are deleted, and the
//! owner's `foregroundDeletion` finalizer is removed once none is left.

use crate::meta;
use crate::store::{DeleteOptions, Key, Propagation, Store};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

pub fn tick(store: &mut Store) {
    // uid → whether that object waits for its dependents (foreground deletion).
    let owners: HashMap<String, bool> = store
        .all()
        .map(|(_, v)| {
            let foreground = meta::is_deleting(v)
                && meta::finalizers(v)
                    .iter()
                    .any(|f| f == "foregroundDeletion");
            (meta::uid(v).to_string(), foreground)
        })
        .collect();
    let mut has_dependents: HashSet<String> = HashSet::new();
    let mut to_delete: Vec<(Key, Propagation)> = Vec::new();
    for (key, obj) in store.all() {
        let refs = meta::owner_uids(obj);
        if refs.is_empty() {
            continue;
        }
        has_dependents.extend(refs.iter().cloned());
        if meta::is_deleting(obj) {
            continue;
        }
        if refs.iter().all(|u| !owners.contains_key(u)) {
            to_delete.push((key.clone(), Propagation::Background));
        } else if refs.iter().any(|u| owners.get(u) == Some(&true)) {
            to_delete.push((key.clone(), Propagation::Foreground));
        }
    }
    for (key, propagation) in to_delete {
        if let Some(info) = store.info_of(&key) {
            let opts = DeleteOptions {
                propagation,
                ..Default::default()
            };
            let _ = store.delete(&info, &key.namespace, &key.name, &opts);
        }
    }
    let waiting: Vec<Key> = store
        .all()
        .filter(|(_, v)| {
            meta::is_deleting(v)
                && meta::finalizers(v)
                    .iter()
                    .any(|f| f == "foregroundDeletion")
                && !has_dependents.contains(meta::uid(v))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for key in waiting {
        store.update_internal(&key, |v: &mut Value| {
            if let Some(f) = v["metadata"]["finalizers"].as_array_mut() {
                f.retain(|x| x != "foregroundDeletion");
                if f.is_empty() {
                    v["metadata"]
                        .as_object_mut()
                        .map(|m| m.remove("finalizers"));
                }
            }
        });
    }
}
