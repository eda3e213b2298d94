//! A run begins from the state the exercise starts from: what an earlier run kept
//! (`--keep`, or a run that was interrupted) is removed first — the app namespace with
//! everything in it (PeerAuthentications, DestinationRules, VirtualServices, injected
//! pods), and the objects the suites put in other namespaces (the MUTUAL Gateway and
//! its Secret where the gateway pods run). A namespace still terminating is waited for.
//! At the end the app namespace is deleted and waited for the same way, so an
//! immediate rerun works.

use crate::cluster::Live;
use crate::cluster::apply::{describe, parse_documents};
use crate::config::RunConfig;
use crate::deadlines;
use crate::progress::Progress;
use crate::runner::world::{EnvError, Phase};
use crate::suite::Suite;
use crate::suite::template::{self, PKI_VARIABLES};
use crate::wait::{self, Check};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
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
    let Some(existing) = api
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read namespace {name}: {e}"))?
    else {
        return Ok(false);
    };
    if existing.metadata.deletion_timestamp.is_none() {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(true),
            Err(e) => return Err(format!("cannot delete namespace {name}: {e}")),
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

/// Removes what earlier runs left; returns what it did, for the report.
pub async fn fresh_start(
    live: &mut Live,
    config: &RunConfig,
    suites: &[Arc<Suite>],
    progress: &Progress,
) -> Result<Vec<String>, EnvError> {
    let mut log = Vec::new();
    let app = &config.app_namespace;
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
    for line in &log {
        progress.line(line);
    }
    Ok(log)
}
