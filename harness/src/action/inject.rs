//! `inject`: sidecar injection on or off per workload, the way the exercise does it.
//! The namespace is labelled `istio-injection=enabled` and every pod template carries
//! the annotation `sidecar.istio.io/inject: 'false'`; the exercise enables injection by
//! re-applying the manifest without that line (`grep -v inject`), i.e. the annotation
//! removed. The harness removes it (and any `sidecar.istio.io/inject` label, which
//! would win over the annotation) with a merge patch, or sets it to `'false'`, then
//! waits for the rollout.

use super::Ctx;
use crate::cluster::{rollout, workloads};
use crate::deadlines;
use crate::runner::world::{EnvError, Phase};
use crate::suite::model::names;
use crate::suite::validation::Validation;
use crate::suite::{Suite, SuiteError};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    pub sidecar: bool,
    pub workloads: Vec<Spanned<String>>,
}

impl Inject {
    pub fn validate(&self, ctx: &mut Validation<'_>) -> Result<(), SuiteError> {
        if self.workloads.is_empty() {
            return Err(ctx.at_step("`inject` names no workload"));
        }
        for workload in &self.workloads {
            ctx.workload(workload, false)?;
        }
        Ok(())
    }

    pub fn deadline(&self, _suite: &Suite) -> Duration {
        deadlines::ROLLOUT
    }

    pub fn manifests(&self) -> (&'static str, Vec<&str>) {
        ("inject", Vec::new())
    }

    pub async fn execute(&self, ctx: &mut Ctx<'_>) -> Result<(), EnvError> {
        let namespace = ctx.config.app_namespace.clone();
        for w in &self.workloads {
            workloads::set_injection(&ctx.cluster.client, &namespace, &w.value, self.sidecar)
                .await
                .map_err(|e| EnvError::new(Phase::Inject, e))?;
            ctx.log.push(format!(
                "{} {}",
                if self.sidecar {
                    "removed the `sidecar.istio.io/inject: 'false'` annotation of"
                } else {
                    "set `sidecar.istio.io/inject: 'false'` on"
                },
                w.value
            ));
        }
        let _wait = ctx.progress.wait("waiting for the rollouts");
        for w in &self.workloads {
            let done = rollout::wait(
                &ctx.cluster.client,
                &namespace,
                &w.value,
                deadlines::ROLLOUT,
            )
            .await
            .map_err(|e| EnvError::new(Phase::Rollout, e))?;
            ctx.log.push(done.describe(&w.value));
        }
        Ok(())
    }
}

impl fmt::Display for Inject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sidecar {
            write!(
                f,
                "inject sidecars into {} (remove the pod template's `sidecar.istio.io/inject: 'false'`) and wait for the rollouts",
                names(&self.workloads)
            )
        } else {
            write!(
                f,
                "opt {} out of injection (`sidecar.istio.io/inject: 'false'`) and wait for the rollouts",
                names(&self.workloads)
            )
        }
    }
}
