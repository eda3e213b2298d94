//! The apply engine: multi-document YAML → `DynamicObject`, resolved through discovery,
//! server-side applied under one field manager with `force`; `ensure` creates only what
//! is missing; deletes wait until the objects are gone.

use crate::deadlines;
use crate::wait::{self, Check, WaitError};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, ApiCapabilities, ApiResource, Scope};
use std::collections::HashMap;
use std::time::Duration;

/// The field manager of every server-side apply the harness makes.
pub const FIELD_MANAGER: &str = "istio-mtls-harness";

/// Who made an object that exists, as its `managedFields` tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Maker {
    /// The harness's field manager is among its managers.
    Harness,
    /// Someone else: their managers (`a, b`), or `no field manager`.
    Others(String),
}

/// Who made the object with this metadata.
pub fn maker_of(meta: &kube::api::ObjectMeta) -> Maker {
    let managers: Vec<&str> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    if managers.contains(&FIELD_MANAGER) {
        Maker::Harness
    } else if managers.is_empty() {
        Maker::Others("no field manager".into())
    } else {
        Maker::Others(managers.join(", "))
    }
}

/// Parameters of the harness's plain patches: under its field manager too, so what it
/// changes stays recorded as its own.
pub fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// Parses the documents of a rendered manifest; empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<DynamicObject>, String> {
    let values: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| format!("manifest is not valid YAML: {e}"))?;
    values
        .into_iter()
        .filter(|v| !v.is_null())
        .map(|v| {
            let described = describe_value(&v);
            serde_json::from_value::<DynamicObject>(v)
                .map_err(|e| format!("{described} is not a Kubernetes object: {e}"))
        })
        .collect()
}

fn describe_value(v: &serde_json::Value) -> String {
    format!(
        "{}/{}",
        v.get("kind").and_then(|k| k.as_str()).unwrap_or("?"),
        v.pointer("/metadata/name")
            .and_then(|k| k.as_str())
            .unwrap_or("?")
    )
}

/// `Kind namespace/name`, for logs and errors.
pub fn describe(obj: &DynamicObject) -> String {
    let kind = obj.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("?");
    match &obj.metadata.namespace {
        Some(ns) => format!(
            "{kind} {ns}/{}",
            obj.metadata.name.as_deref().unwrap_or("?")
        ),
        None => format!("{kind} {}", obj.metadata.name.as_deref().unwrap_or("?")),
    }
}

/// Why an object cannot be addressed; deleting branches on a kind not being served.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    NotServed(String),
    #[error("{0}")]
    Invalid(String),
}

pub struct Applier {
    client: Client,
    resolved: HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>,
}

impl Applier {
    pub fn new(client: Client) -> Self {
        Applier {
            client,
            resolved: HashMap::new(),
        }
    }

    /// Resolves the object's kind, waiting up to [`deadlines::KIND_DISCOVERY`] for a kind the
    /// server does not serve yet (its CRD is still being established) when asked to.
    async fn api_for(
        &mut self,
        obj: &DynamicObject,
        wait_for_kind: bool,
    ) -> Result<(Api<DynamicObject>, String), ApplyError> {
        let types = obj
            .types
            .as_ref()
            .ok_or_else(|| ApplyError::Invalid("object without apiVersion/kind".into()))?;
        let gvk = GroupVersionKind::try_from(types).map_err(|e| {
            ApplyError::Invalid(format!("bad apiVersion `{}`: {e}", types.api_version))
        })?;
        let name =
            obj.metadata.name.clone().ok_or_else(|| {
                ApplyError::Invalid(format!("{} has no metadata.name", types.kind))
            })?;
        if !self.resolved.contains_key(&gvk) {
            let client = &self.client;
            let deadline = if wait_for_kind {
                deadlines::KIND_DISCOVERY
            } else {
                Duration::ZERO
            };
            let found = wait::until(deadline, deadlines::POLL, || async {
                match discovery::pinned_kind(client, &gvk).await {
                    Ok(found) => Check::Ready(found),
                    Err(e) if is_not_served(&e) => Check::NotYet(e.to_string()),
                    Err(e) => Check::Abort(e.to_string()),
                }
            })
            .await;
            let found = found.map_err(|e| {
                let why = match e {
                    WaitError::Deadline { last, .. } => last,
                    WaitError::Aborted(why) => why,
                };
                ApplyError::NotServed(format!(
                    "the cluster does not serve {} {} ({why}){}",
                    types.api_version,
                    types.kind,
                    if gvk.group.ends_with("istio.io") {
                        "; is Istio installed and its CRDs established?"
                    } else {
                        ""
                    }
                ))
            })?;
            self.resolved.insert(gvk.clone(), found);
        }
        let (resource, capabilities) = &self.resolved[&gvk];
        let api = match capabilities.scope {
            Scope::Cluster => Api::all_with(self.client.clone(), resource),
            Scope::Namespaced => {
                let ns = obj.metadata.namespace.as_deref().ok_or_else(|| {
                    ApplyError::Invalid(format!(
                        "{} {name} is namespaced but names no namespace",
                        types.kind
                    ))
                })?;
                Api::namespaced_with(self.client.clone(), ns, resource)
            }
        };
        Ok((api, name))
    }

    /// Server-side apply with the harness's field manager, taking over conflicting fields.
    pub async fn apply(&mut self, obj: &DynamicObject) -> Result<(), String> {
        let (api, name) = self.api_for(obj, true).await.map_err(|e| e.to_string())?;
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot apply {}: {e}", describe(obj))
        })
    }

    /// Creates the object when it does not exist; an existing one is left as it is.
    /// Returns whether it was created.
    pub async fn ensure(&mut self, obj: &DynamicObject) -> Result<bool, String> {
        let (api, name) = self.api_for(obj, true).await.map_err(|e| e.to_string())?;
        let existing = api.get_opt(&name).await.map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot read {}: {e}", describe(obj))
        })?;
        if existing.is_some() {
            return Ok(false);
        }
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match api.create(&params, obj).await {
            Ok(_) => Ok(true),
            // Created meanwhile by someone else: it exists, which is all `ensure` asks.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => {
                let e = crate::words::Said::said(&e);
                Err(format!("cannot create {}: {e}", describe(obj)))
            }
        }
    }

    /// Who made the object as it exists ([`maker_of`]), or `None` when there is no
    /// such object (or the cluster does not serve its kind).
    pub async fn maker(&mut self, obj: &DynamicObject) -> Result<Option<Maker>, String> {
        let (api, name) = match self.api_for(obj, false).await {
            Ok(found) => found,
            Err(ApplyError::NotServed(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let existing = api.get_opt(&name).await.map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot read {}: {e}", describe(obj))
        })?;
        Ok(existing.map(|o| maker_of(&o.metadata)))
    }

    /// Deletes the object and waits until it is gone; returns whether it existed.
    pub async fn delete_and_wait(
        &mut self,
        obj: &DynamicObject,
        deadline: Duration,
    ) -> Result<bool, String> {
        let (api, name) = match self.api_for(obj, false).await {
            Ok(found) => found,
            // A kind the cluster does not serve has no objects to delete.
            Err(ApplyError::NotServed(_)) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(false),
            Err(e) => {
                let e = crate::words::Said::said(&e);
                return Err(format!("cannot delete {}: {e}", describe(obj)));
            }
        }
        let gone = wait::until(deadline, deadlines::POLL, || async {
            match api.get_opt(&name).await {
                Ok(None) => Check::Ready(()),
                Ok(Some(_)) => Check::NotYet("still there".into()),
                Err(e) => Check::Abort(format!(
                    "cannot read {} while waiting for its deletion: {e}",
                    describe(obj)
                )),
            }
        })
        .await;
        match gone {
            Ok(()) => Ok(true),
            Err(WaitError::Aborted(why)) => Err(why),
            Err(WaitError::Deadline { .. }) => Err(format!(
                "{} still exists {} s after it was deleted (a finalizer may hold it)",
                describe(obj),
                deadline.as_secs()
            )),
        }
    }
}

/// Discovery errors that mean "this kind is not (yet) served".
fn is_not_served(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => status.code == 404,
        kube::Error::Discovery(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maker_is_the_harness_only_when_its_field_manager_is_listed() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let meta = |managers: &[&str]| kube::api::ObjectMeta {
            managed_fields: Some(
                managers
                    .iter()
                    .map(|m| ManagedFieldsEntry {
                        manager: Some(m.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        assert_eq!(
            maker_of(&meta(&["kubectl-label", FIELD_MANAGER])),
            Maker::Harness
        );
        assert_eq!(
            maker_of(&meta(&["kubectl-client-side-apply", "kubectl-label"])),
            Maker::Others("kubectl-client-side-apply, kubectl-label".into())
        );
        assert_eq!(
            maker_of(&kube::api::ObjectMeta::default()),
            Maker::Others("no field manager".into())
        );
    }

    #[test]
    fn multi_document_manifests_parse_into_objects() {
        let objs = parse_documents(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: a\nspec:\n  mtls:\n    mode: STRICT\n",
        )
        .unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(describe(&objs[0]), "Namespace a");
        assert_eq!(describe(&objs[1]), "PeerAuthentication a/default");
        assert_eq!(objs[1].data["spec"]["mtls"]["mode"], "STRICT");
    }

    #[test]
    fn a_document_that_is_not_an_object_is_refused() {
        let err = parse_documents("- just\n- a list\n").unwrap_err();
        assert!(err.contains("not a Kubernetes object"), "{err}");
    }
}
