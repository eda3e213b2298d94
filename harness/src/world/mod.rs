//! [`ClusterWorld`]: the runner's world on a real cluster. It composes the cluster
//! side (provisioning, the apply engine, port-forwards, diagnostics) with the actions
//! and expectations; it decides nothing itself.

mod upgrade;

use crate::action::{Action, Ctx};
use crate::cluster::provision;
use crate::cluster::{Live, istio, kind};
use crate::config::RunConfig;
use crate::expect::{Env, Expectation};
use crate::pki::Pki;
use crate::progress::Progress;
use crate::runner::record::RunProperties;
use crate::runner::world::{EnvError, Phase, World};
use crate::suite::template::Variables;
use crate::suite::{Step, Suite};
use crate::verdict::{Judged, Judgement};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct ClusterWorld {
    config: RunConfig,
    runtime: tokio::runtime::Handle,
    progress: Progress,
    properties: RunProperties,
    live: Option<Live>,
    variables: Variables,
    pki: Option<Pki>,
}

impl ClusterWorld {
    pub fn new(config: RunConfig, runtime: tokio::runtime::Handle, progress: Progress) -> Self {
        let properties = RunProperties {
            istio_version: config.istio_version.clone(),
            ..RunProperties::default()
        };
        let variables = config.variables();
        ClusterWorld {
            config,
            runtime,
            progress,
            properties,
            live: None,
            variables,
            pki: None,
        }
    }

    /// A world on a cluster that is already reached (what `setup` would have found):
    /// for embedding the harness, and for tests that drive the world against stand-ins.
    pub fn from_live(
        config: RunConfig,
        runtime: tokio::runtime::Handle,
        progress: Progress,
        live: Live,
    ) -> Self {
        let mut world = ClusterWorld::new(config, runtime, progress);
        world.live = Some(live);
        world
    }

    fn live(&mut self) -> Result<&mut Live, EnvError> {
        self.live.as_mut().ok_or_else(|| {
            EnvError::new(
                Phase::Run,
                "the cluster was not set up; this is a harness bug",
            )
        })
    }
}

impl World for ClusterWorld {
    fn setup(&mut self) -> Result<(), EnvError> {
        let live = self.runtime.block_on(provision::setup(
            &self.config,
            &self.progress,
            &mut self.properties,
        ))?;
        self.live = Some(live);
        Ok(())
    }

    fn properties(&self) -> RunProperties {
        self.properties.clone()
    }

    fn istio_version(&mut self) -> Option<String> {
        let live = self.live.as_ref()?;
        self.runtime
            .block_on(istio::installed_version(&live.client))
            .ok()
            .flatten()
    }

    fn act(
        &mut self,
        suite: &Suite,
        action: &Action,
        log: &mut Vec<String>,
    ) -> Result<(), EnvError> {
        let runtime = self.runtime.clone();
        let live = self.live.as_mut().ok_or_else(|| {
            EnvError::new(
                Phase::Run,
                "the cluster was not set up; this is a harness bug",
            )
        })?;
        let mut ctx = Ctx {
            config: &self.config,
            suite,
            cluster: live,
            variables: &mut self.variables,
            pki: &mut self.pki,
            progress: &self.progress,
            log,
        };
        runtime.block_on(action.execute(&mut ctx))
    }

    fn judge(&mut self, suite: &Suite, step: &Step, expectation: &Expectation) -> Judged {
        let description = expectation.to_string();
        let started = Instant::now();
        let Some(live) = self.live.as_ref() else {
            return Judged {
                description,
                judgement: Judgement::errored("the cluster was not set up", Duration::ZERO),
            };
        };
        let _wait = self.progress.wait(&description);
        let env = Env {
            config: &self.config,
            suite,
            step,
            cluster: live,
            pki: self.pki.as_ref(),
        };
        let mut judgement = self.runtime.block_on(expectation.judge(&env));
        judgement.elapsed = started.elapsed();
        Judged {
            description,
            judgement,
        }
    }

    fn upgrade(&mut self, version: &str, log: &mut Vec<String>) -> Result<(), EnvError> {
        let config = self.config.clone();
        let progress = self.progress.clone();
        let runtime = self.runtime.clone();
        let live = self.live()?;
        let _wait = progress.wait(&format!("upgrading Istio to {version}"));
        runtime.block_on(upgrade::upgrade(live, &config, version, log))?;
        self.properties.istio_version = format!("{} → {version}", config.install_version());
        Ok(())
    }

    fn diagnostics(&mut self, suite: &Suite, step: &Step, label: &str) -> Option<PathBuf> {
        let live = self.live.as_ref()?;
        let dir = self
            .config
            .reports_dir
            .join("diagnostics")
            .join(format!("{label}-{}", step.slug()));
        let kind = live
            .kind
            .as_ref()
            .map(|k| (k.clone(), self.config.cluster_name.clone()));
        let report = self.runtime.block_on(crate::cluster::diagnostics::collect(
            &live.client,
            &self.config,
            suite,
            &dir,
            kind,
        ));
        if let Err(e) = report {
            self.progress
                .line(&format!("diagnostics for {label}::{}: {e}", step.slug()));
        }
        Some(dir)
    }

    fn finish(&mut self) -> Result<(), EnvError> {
        let Some(live) = self.live.take() else {
            return Ok(());
        };
        let mut first_error = None;
        if !self.config.keep {
            let namespaces: Api<Namespace> = Api::all(live.client.clone());
            let deleted = self.runtime.block_on(
                namespaces.delete(&self.config.app_namespace, &DeleteParams::background()),
            );
            match deleted {
                Ok(_) => self
                    .progress
                    .line(&format!("deleted namespace {}", self.config.app_namespace)),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    first_error.get_or_insert(EnvError::new(
                        Phase::Cleanup,
                        format!("cannot delete namespace {}: {e}", self.config.app_namespace),
                    ));
                }
            }
        }
        if live.owns_cluster
            && let Some(kind_bin) = &live.kind
        {
            let name = &self.config.cluster_name;
            if self.config.keep_cluster {
                self.progress.line(&format!(
                    "kept kind cluster `{name}` (--keep-cluster); kubeconfig: {}",
                    self.config.reports_dir.join("kubeconfig").display()
                ));
            } else {
                let _wait = self
                    .progress
                    .wait(&format!("deleting kind cluster `{name}`"));
                if let Err(e) = self.runtime.block_on(kind::delete(kind_bin, name)) {
                    first_error.get_or_insert(EnvError::new(Phase::Cleanup, e));
                }
            }
        }
        drop(live);
        first_error.map_or(Ok(()), Err)
    }
}
