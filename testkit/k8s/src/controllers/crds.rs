//! The CRD controller: a stored CustomResourceDefinition gets its names accepted and
//! becomes Established one tick later; from then on its kind is served.

use crate::store::{Key, Store};
use crate::{meta, time};
use serde_json::json;

pub fn tick(store: &mut Store) {
    let info = store.kind("apiextensions.k8s.io", "CustomResourceDefinition");
    let pending: Vec<Key> = store
        .list(&info, None)
        .into_iter()
        .filter(|crd| !meta::condition_true(crd, "Established") && !meta::is_deleting(crd))
        .map(|crd| Key::new(&info, "", meta::name(crd)))
        .collect();
    for key in pending {
        store.update_internal(&key, |crd| {
            let now = time::now();
            crd["status"]["acceptedNames"] = crd["spec"]["names"].clone();
            crd["status"]["conditions"] = json!([
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ]);
        });
    }
}
