//! A run begins from the state the exercise starts from: what an earlier run kept
//! (`--keep`, or a run that was interrupted) is removed first — the app namespace with
//! everything in it (PeerAuthentications, DestinationRules, VirtualServices, injected
//! pods), and the objects the suites put in other namespaces (the MUTUAL Gateway and
//! its Secret where the gateway pods run). A namespace still terminating is waited for.
//! At the end the app namespace is deleted and waited for the same way, so an
//! immediate rerun works.

use crate::cluster::Live;
use crate::cluster::apply::{Maker, describe, maker_of, parse_documents};
use crate::config::HOST;
use crate::config::RunConfig;
use crate::deadlines;
use crate::progress::Progress;
use crate::runner::world::{EnvError, Phase};
use crate::suite::Suite;
use crate::suite::template::{self, PKI_VARIABLES};
use crate::wait::{self, Check};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use std::sync::Arc;
use std::time::Duration;

/// Deletes the namespace (when it exists and is not already terminating) and waits
/// until it is gone. Returns whether there was one.
pub async fn remove_namespace(
    live: &Live,
    name: &str,
    deadline: Duration,
    progress: &Progress,
) -> Result<bool, String> {
    let api: Api<Namespace> = Api::all(live.client.clone());
    let Some(existing) = api.get_opt(name).await.map_err(|e| {
        let e = crate::words::Said::said(&e);
        format!("cannot read namespace {name}: {e}")
    })?
    else {
        return Ok(false);
    };
    if existing.metadata.deletion_timestamp.is_none() {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(true),
            Err(e) => {
                let e = crate::words::Said::said(&e);
                return Err(format!("cannot delete namespace {name}: {e}"));
            }
        }
    }
    let wait = progress.wait(&format!("waiting for namespace {name} to be gone"));
    let result = wait::until(deadline, deadlines::POLL, || async {
        match api.get_opt(name).await {
            Ok(None) => Check::Ready(()),
            Ok(Some(ns)) => {
                let phase = ns
                    .status
                    .and_then(|s| s.phase)
                    .unwrap_or_else(|| "?".into());
                wait.update(&format!("namespace {name} is {phase}"));
                Check::NotYet(format!("namespace {name} is still {phase}"))
            }
            Err(e) => Check::NotYet(format!("cannot read namespace {name}: {e}")),
        }
    })
    .await;
    result.map(|_| true).map_err(|e| match e {
        wait::WaitError::Deadline { last, .. } => format!(
            "{last} {} s after it was deleted (a finalizer may hold it; see `kubectl get namespace {name} -o yaml`)",
            deadline.as_secs()
        ),
        wait::WaitError::Aborted(why) => why,
    })
}

/// Whether a VirtualService host (`sentences.example.com`, `*.example.com`, `*`) takes
/// requests for `host`.
fn host_matches(pattern: &str, host: &str) -> bool {
    pattern == host
        || pattern == "*"
        || pattern
            .strip_prefix('*')
            .is_some_and(|suffix| suffix.starts_with('.') && host.ends_with(suffix))
}

/// VirtualServices outside the app namespace that route the run's host through a
/// gateway: requests meant for this run could reach another copy of the app (someone
/// did the exercise by hand in `default`), and every verdict on traffic would be about
/// that copy. Refused before any step, naming them.
pub async fn refuse_foreign_routes(live: &Live, config: &RunConfig) -> Result<(), EnvError> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "networking.istio.io",
        "v1",
        "VirtualService",
    ));
    let api: Api<DynamicObject> = Api::all_with(live.client.clone(), &resource);
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            return Err(EnvError::new(
                Phase::Istio,
                format!("cannot list VirtualServices to check who else routes {HOST}: {e}"),
            ));
        }
    };
    let mut foreign = Vec::new();
    for vs in list.items {
        let namespace = vs.metadata.namespace.clone().unwrap_or_default();
        if namespace == config.app_namespace || vs.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let strings = |field: &str| -> Vec<String> {
            vs.data
                .pointer(&format!("/spec/{field}"))
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let through_a_gateway = strings("gateways").iter().any(|g| g != "mesh");
        if through_a_gateway && strings("hosts").iter().any(|h| host_matches(h, HOST)) {
            foreign.push(format!(
                "{namespace}/{}",
                vs.metadata.name.clone().unwrap_or_default()
            ));
        }
    }
    let ingresses = foreign_ingresses(live, config).await?;
    if foreign.is_empty() && ingresses.is_empty() {
        return Ok(());
    }
    let mut routes = Vec::new();
    if !foreign.is_empty() {
        routes.push(format!("VirtualService {}", foreign.join(", ")));
    }
    if !ingresses.is_empty() {
        routes.push(format!("Ingress (class istio) {}", ingresses.join(", ")));
    }
    Err(EnvError::new(
        Phase::Istio,
        format!(
            "{} outside namespace {} already routes {HOST} through a gateway: this run's requests could be answered by another copy of the app; remove it, or run on another cluster",
            routes.join(" and "),
            config.app_namespace
        ),
    ))
}

/// Kubernetes Ingresses of class `istio` that take requests for the run's host: Istio
/// turns each into a Gateway on the ingress gateway's pods (`pilot/pkg/config/kube/
/// ingress`), so they compete with the run's own routes like a foreign VirtualService.
async fn foreign_ingresses(live: &Live, config: &RunConfig) -> Result<Vec<String>, EnvError> {
    let api: Api<Ingress> = Api::all(live.client.clone());
    let list = api.list(&ListParams::default()).await.map_err(|e| {
        EnvError::new(
            Phase::Istio,
            format!("cannot list Ingresses to check who else routes {HOST}: {e}"),
        )
    })?;
    Ok(list
        .items
        .iter()
        .filter(|i| i.metadata.deletion_timestamp.is_none())
        .filter(|i| i.metadata.namespace.as_deref() != Some(config.app_namespace.as_str()))
        .filter(|i| {
            let class = i
                .spec
                .as_ref()
                .and_then(|s| s.ingress_class_name.as_deref())
                .or_else(|| {
                    i.metadata
                        .annotations
                        .as_ref()?
                        .get("kubernetes.io/ingress.class")
                        .map(String::as_str)
                });
            class == Some("istio")
        })
        .filter(|i| {
            let Some(spec) = &i.spec else { return false };
            let rules = spec.rules.as_deref().unwrap_or_default();
            (rules.is_empty() && spec.default_backend.is_some())
                || rules
                    .iter()
                    .any(|r| r.host.as_deref().is_none_or(|h| host_matches(h, HOST)))
        })
        .map(|i| {
            format!(
                "{}/{}",
                i.metadata.namespace.clone().unwrap_or_default(),
                i.metadata.name.clone().unwrap_or_default()
            )
        })
        .collect())
}

/// The app namespace is deleted at the start only when the harness made it (its field
/// manager is in the namespace's `managedFields`): one someone else made may hold their
/// work (the exercise done by hand in `sentences`), and is refused, never deleted.
async fn refuse_foreign_namespace(live: &Live, name: &str) -> Result<(), EnvError> {
    let api: Api<Namespace> = Api::all(live.client.clone());
    let existing = api
        .get_opt(name)
        .await
        .map_err(|e| EnvError::new(Phase::Cleanup, format!("cannot read namespace {name}: {e}")))?;
    let Some(existing) = existing else {
        return Ok(());
    };
    // Already going: whoever deleted it, it will not hold anyone's work for long.
    if existing.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    match maker_of(&existing.metadata) {
        Maker::Harness => Ok(()),
        Maker::Others(by) => Err(EnvError::new(
            Phase::Istio,
            format!(
                "namespace {name} exists and was not made by the harness (managed by {by}): it may hold someone's work; pass another --app-namespace, or delete it"
            ),
        )),
    }
}

/// Removes what earlier runs left; returns what it did, for the report.
pub async fn fresh_start(
    live: &mut Live,
    config: &RunConfig,
    suites: &[Arc<Suite>],
    progress: &Progress,
) -> Result<Vec<String>, EnvError> {
    let mut log = Vec::new();
    let app = &config.app_namespace;
    refuse_foreign_namespace(live, app).await?;
    if remove_namespace(live, app, deadlines::NAMESPACE_GONE, progress)
        .await
        .map_err(|e| EnvError::new(Phase::Cleanup, e))?
    {
        log.push(format!(
            "removed namespace {app} left by an earlier run, to start where the exercise starts"
        ));
    }
    let mut variables = config.variables();
    for v in PKI_VARIABLES {
        variables.set(v, "");
    }
    for suite in suites {
        for manifest in suite.manifests.values() {
            let rendered = template::render(&manifest.template, &variables).map_err(|e| {
                EnvError::new(Phase::Render, format!("{}: {}", manifest.path, e.message))
            })?;
            let objects = parse_documents(&rendered.text)
                .map_err(|e| EnvError::new(Phase::Render, format!("{}: {e}", manifest.path)))?;
            for obj in objects.iter().rev() {
                let elsewhere = obj
                    .metadata
                    .namespace
                    .as_deref()
                    .is_some_and(|ns| ns != app);
                if !elsewhere {
                    continue;
                }
                // Only what the harness made: an object of the same name that someone
                // else made (the exercise done by hand) is theirs, and this run refuses
                // to start beside it rather than delete it.
                match live
                    .applier
                    .maker(obj)
                    .await
                    .map_err(|e| EnvError::new(Phase::Cleanup, e))?
                {
                    None => continue,
                    Some(Maker::Others(by)) => {
                        return Err(EnvError::new(
                            Phase::Istio,
                            format!(
                                "{} exists and was not made by the harness (managed by {by}): the exercise done by hand? Delete it, or run with another --ingress-namespace",
                                describe(obj)
                            ),
                        ));
                    }
                    Some(Maker::Harness) => {}
                }
                let existed = live
                    .applier
                    .delete_and_wait(obj, deadlines::DELETE)
                    .await
                    .map_err(|e| EnvError::new(Phase::Cleanup, e))?;
                if existed {
                    log.push(format!("removed {} left by an earlier run", describe(obj)));
                }
            }
        }
    }
    refuse_foreign_routes(live, config).await?;
    let policy = super::mesh_policy::check(&live.client, app)
        .await
        .map_err(|e| EnvError::new(Phase::Istio, e))?;
    if !policy.refusals.is_empty() {
        return Err(EnvError::new(Phase::Istio, policy.refusals.join("; ")));
    }
    log.extend(policy.notes);
    for line in &log {
        progress.line(line);
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::host_matches;

    #[test]
    fn hosts_match_as_istio_matches_them() {
        for pattern in ["sentences.example.com", "*.example.com", "*"] {
            assert!(host_matches(pattern, "sentences.example.com"), "{pattern}");
        }
        for pattern in ["other.example.com", "*.other.com", "*example.com", ""] {
            assert!(!host_matches(pattern, "sentences.example.com"), "{pattern}");
        }
    }
}
