//! [`ClusterWorld`]: the runner's world backed by a real cluster.

use super::preflight;
use crate::config::RunConfig;
use crate::progress::Progress;
use crate::runner::record::{Evidence, ExpectationRecord, RunProperties, Verdict};
use crate::runner::world::{EnvError, World};
use crate::suite::{Action, Expectation, Step, Suite};
use std::path::PathBuf;
use std::time::Duration;

pub struct ClusterWorld {
    config: RunConfig,
    runtime: tokio::runtime::Handle,
    #[allow(dead_code)]
    progress: Progress,
    properties: RunProperties,
}

impl ClusterWorld {
    pub fn new(config: RunConfig, runtime: tokio::runtime::Handle, progress: Progress) -> Self {
        let properties = RunProperties {
            istio_version: config.istio_version.clone(),
            cluster_name: if config.kubeconfig.is_some() || config.context.is_some() {
                "unknown".into()
            } else {
                config.cluster_name.clone()
            },
            ..RunProperties::default()
        };
        ClusterWorld {
            config,
            runtime,
            progress,
            properties,
        }
    }

    fn uses_kind(&self) -> bool {
        self.config.kubeconfig.is_none() && self.config.context.is_none()
    }
}

/// The provisioning part of the `--dry-run` plan.
pub fn provisioning_plan(config: &RunConfig) -> String {
    format!(
        "provision: kind cluster `{}` (node image {}), Istio {} ({})",
        config.cluster_name,
        config.versions.kind.node_image,
        config.istio_version,
        config.versions.istio_archive_url(&config.istio_version)
    )
}

impl World for ClusterWorld {
    fn setup(&mut self) -> Result<(), EnvError> {
        if self.uses_kind() {
            let endpoint = preflight::docker_endpoint();
            self.runtime
                .block_on(preflight::docker_reachable(&endpoint))
                .map_err(|e| EnvError::new("preflight", e))?;
        }
        Err(EnvError::new(
            "provision",
            "the cluster side (kind, Istio, apply engine) is not built into this harness yet (issue #3); use --dry-run to see the plan",
        ))
    }

    fn properties(&self) -> RunProperties {
        self.properties.clone()
    }

    fn act(
        &mut self,
        _suite: &Suite,
        action: &Action,
        _log: &mut Vec<String>,
    ) -> Result<(), EnvError> {
        Err(EnvError::new(
            "act",
            format!("cannot {action}: no cluster side yet (issue #3)"),
        ))
    }

    fn judge(
        &mut self,
        _suite: &Suite,
        _step: &Step,
        expectation: &Expectation,
    ) -> ExpectationRecord {
        ExpectationRecord {
            description: expectation.to_string(),
            verdict: Verdict::Errored,
            evidence: Evidence::new("no cluster side yet (issue #3)"),
            elapsed: Duration::ZERO,
        }
    }

    fn diagnostics(&mut self, _suite: &Suite, _step: &Step) -> Option<PathBuf> {
        None
    }

    fn finish(&mut self) -> Result<(), EnvError> {
        Ok(())
    }
}
