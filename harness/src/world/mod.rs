//! [`ClusterWorld`]: the runner's world on a real cluster. It composes the cluster
//! side (provisioning, the apply engine, port-forwards, diagnostics) with the actions
//! and expectations; it decides nothing itself.

pub mod canary;
mod fresh;
mod mesh_policy;
mod upgrade;

use crate::action::{Action, Ctx};
use crate::cluster::kind::{self, OwnedCluster};
use crate::cluster::{Live, istio, provision, workloads};
use crate::config::RunConfig;
use crate::deadlines;
use crate::expect::{Env, Expectation};
use crate::pki::Pki;
use crate::progress::Progress;
use crate::runner::record::RunProperties;
use crate::runner::world::{EnvError, Phase, World};
use crate::runner::{InterruptCleanup, Shared, lock};
use crate::suite::template::Variables;
use crate::suite::{Step, Suite};
use crate::verdict::{Judged, Judgement};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ClusterWorld {
    config: RunConfig,
    runtime: tokio::runtime::Handle,
    progress: Progress,
    /// Shared with the interrupt handler, so an interrupted report has them too.
    properties: Arc<Mutex<RunProperties>>,
    interrupt_cleanup: Arc<Mutex<Option<InterruptCleanup>>>,
    /// The kind cluster this run created, from the moment it exists.
    owned: Arc<Mutex<Option<OwnedCluster>>>,
    /// Held by whoever deletes that cluster (the run's end, or the interrupt handler):
    /// one `kind delete` at a time, and the other then finds nothing left to delete.
    deleting: Arc<Mutex<()>>,
    timeline: crate::runner::record::Timeline,
    live: Option<Live>,
    variables: Variables,
    pki: Option<Pki>,
    /// Suites beyond the selected ones whose objects an earlier `--keep` run may have
    /// left outside the app namespace (a kept `ingress` run's MUTUAL Gateway before a
    /// `--suite mesh` run): removed at the fresh start too.
    leftovers_of: Vec<Arc<Suite>>,
}

/// `kind delete cluster`, bounded, without an async runtime (it also runs from the
/// interrupt handler, right before the process exits).
fn delete_kind_cluster(owned: &OwnedCluster) -> Result<(), String> {
    crate::cluster::process::check_cached(&owned.kind)?;
    let mut child = std::process::Command::new(&owned.kind)
        .args(["delete", "cluster", "--name", &owned.name])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", owned.delete_command()))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!("`{}` exited with {status}", owned.delete_command()));
            }
            // Polling the child (std has no wait with a timeout), bounded by the deadline.
            Ok(None) if started.elapsed() < crate::deadlines::KIND_DELETE => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(None) => {
                let _ = child.kill();
                return Err(format!(
                    "`{}` did not finish within {} s",
                    owned.delete_command(),
                    crate::deadlines::KIND_DELETE.as_secs()
                ));
            }
            Err(e) => return Err(format!("`{}`: {e}", owned.delete_command())),
        }
    }
}

impl ClusterWorld {
    pub fn new(
        config: RunConfig,
        runtime: tokio::runtime::Handle,
        progress: Progress,
        shared: &Shared,
    ) -> Self {
        lock(&shared.properties).istio_version = config.install_version().to_string();
        let variables = config.variables();
        ClusterWorld {
            config,
            runtime,
            progress,
            properties: Arc::clone(&shared.properties),
            interrupt_cleanup: Arc::clone(&shared.interrupt_cleanup),
            owned: Arc::new(Mutex::new(None)),
            deleting: Arc::new(Mutex::new(())),
            timeline: shared.timeline.clone(),
            live: None,
            variables,
            pki: None,
            leftovers_of: Vec::new(),
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
        let mut world = ClusterWorld::new(config, runtime, progress, &Shared::default());
        world.live = Some(live);
        world
    }

    /// Also clears, at the fresh start, what `suites` (every suite the harness knows)
    /// may have left from an earlier run, not only the selected suites' objects.
    pub fn clearing_leftovers_of(mut self, suites: Vec<Arc<Suite>>) -> Self {
        self.leftovers_of = suites;
        self
    }

    /// Records a kind cluster this run created: deleted at the end (or on interrupt)
    /// unless `--keep-cluster`.
    /// On interrupt the cluster is deleted if the run still owns it. The run's own end
    /// lets go of it only once its delete has finished, and the two never delete at
    /// once (kind's delete takes a lock of its own and fails beside another): the
    /// handler waits for a delete under way, then finds nothing left or deletes.
    fn register(
        owned: &Arc<Mutex<Option<OwnedCluster>>>,
        deleting: &Arc<Mutex<()>>,
        cleanup: &Mutex<Option<InterruptCleanup>>,
        keep: bool,
        cluster: OwnedCluster,
    ) {
        // Owned first: a signal right after the cleanup is registered must find it.
        *lock(owned) = Some(cluster.clone());
        let undo: Option<Box<dyn FnOnce() -> Result<(), String> + Send>> = if keep {
            None
        } else {
            let owned = Arc::clone(owned);
            let deleting = Arc::clone(deleting);
            Some(Box::new(move || {
                let _one_at_a_time = lock(&deleting);
                let cluster = lock(&owned).clone();
                match cluster {
                    Some(cluster) => {
                        delete_kind_cluster(&cluster)?;
                        *lock(&owned) = None;
                        Ok(())
                    }
                    None => Ok(()),
                }
            }))
        };
        *lock(cleanup) = Some(InterruptCleanup {
            what: format!("kind cluster `{}`", cluster.name),
            undo,
            hint: cluster.delete_command(),
        });
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
    fn setup(&mut self, suites: &[Arc<Suite>]) -> Result<(), EnvError> {
        let owned = Arc::clone(&self.owned);
        let cleanup = Arc::clone(&self.interrupt_cleanup);
        let keep = self.config.keep_cluster;
        let deleting = Arc::clone(&self.deleting);
        let created =
            move |cluster: OwnedCluster| Self::register(&owned, &deleting, &cleanup, keep, cluster);
        let mut live = self.runtime.block_on(provision::setup(
            &self.config,
            &self.progress,
            &self.properties,
            &created,
            &self.timeline,
        ))?;
        let configurations = self
            .runtime
            .block_on(crate::cluster::injection_label::configurations(
                &live.client,
            ))
            .map_err(|e| EnvError::new(Phase::Istio, e))?;
        let app_pod = std::collections::BTreeMap::from([("app".to_string(), "age".to_string())]);
        let ((key, value), by) = crate::cluster::injection_label::choose(&configurations, &app_pod)
            .map_err(|e| EnvError::new(Phase::Istio, e))?;
        if (key.as_str(), value.as_str()) != crate::cluster::injection_label::ISTIO_INJECTION {
            let note = format!(
                "no injector answers istio-injection=enabled here (a control plane installed only as a revision): the app namespace is labelled {key}={value} instead, answered by {by}"
            );
            self.progress.line(&note);
            lock(&self.properties).notes.push(note);
        }
        self.variables.set("injection_label_key", key);
        self.variables.set("injection_label_value", value);
        let mut everything: Vec<Arc<Suite>> = suites.to_vec();
        for suite in &self.leftovers_of {
            if !everything.iter().any(|s| s.name == suite.name) {
                everything.push(Arc::clone(suite));
            }
        }
        let log = self.runtime.block_on(self.timeline.time(
            "start from the exercise's state",
            None,
            fresh::fresh_start(&mut live, &self.config, &everything, &self.progress),
        ))?;
        lock(&self.properties).notes.extend(log);
        self.live = Some(live);
        Ok(())
    }

    fn properties(&self) -> RunProperties {
        lock(&self.properties).clone()
    }

    fn istio_version(&mut self) -> Option<String> {
        let live = self.live.as_ref()?;
        self.runtime
            .block_on(istio::installed_version(&live.client))
            .ok()
            .flatten()
    }

    fn proxies_not_on(&mut self, version: &str) -> Result<(Vec<String>, usize), String> {
        let live = self
            .live
            .as_ref()
            .ok_or("the cluster was not set up; this is a harness bug")?;
        self.runtime.block_on(workloads::proxies_not_on(
            &live.client,
            &self.config.app_namespace,
            &self.config.ingress_namespace,
            version,
        ))
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

    fn upgrade(
        &mut self,
        version: &str,
        judged: bool,
        log: &mut Vec<String>,
    ) -> Result<(), EnvError> {
        let config = self.config.clone();
        let progress = self.progress.clone();
        let runtime = self.runtime.clone();
        let live = self.live()?;
        let _wait = progress.wait(&format!("upgrading Istio to {version}"));
        runtime.block_on(upgrade::upgrade(live, &config, version, judged, log))?;
        let mut properties = lock(&self.properties);
        properties.istio_version = format!("{} → {version}", config.install_version());
        properties.istio_installed = Some(version.to_string());
        Ok(())
    }

    fn canary(
        &mut self,
        op: &crate::runner::canary::CanaryOp,
        log: &mut Vec<String>,
    ) -> Result<(), EnvError> {
        let config = self.config.clone();
        let progress = self.progress.clone();
        let runtime = self.runtime.clone();
        let live = self.live()?;
        let _wait = progress.wait(&format!("canary upgrade: {op}"));
        runtime.block_on(canary::carry_out(live, &config, op, log))?;
        if *op == crate::runner::canary::CanaryOp::RemoveOld {
            lock(&self.properties).istio_version = format!(
                "{} → {} (canary)",
                config.install_version(),
                config.istio_version
            );
        }
        Ok(())
    }

    fn diagnostics(&mut self, suite: &Suite, step: &Step, label: &str) -> Option<PathBuf> {
        let live = self.live.as_ref()?;
        let dir = self
            .config
            .reports_dir
            .join("diagnostics")
            .join(format!("{label}-{}", step.slug()));
        let kind = lock(&self.owned)
            .as_ref()
            .map(|o| (o.kind.clone(), o.name.clone()));
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
        let mut first_error = None;
        if let Some(live) = self.live.take() {
            if !self.config.keep {
                let gone = self.runtime.block_on(fresh::remove_namespace(
                    &live,
                    &self.config.app_namespace,
                    deadlines::NAMESPACE_GONE,
                    &self.progress,
                ));
                match gone {
                    Ok(true) => self
                        .progress
                        .line(&format!("deleted namespace {}", self.config.app_namespace)),
                    Ok(false) => {}
                    Err(e) => {
                        first_error.get_or_insert(EnvError::new(Phase::Cleanup, e));
                    }
                }
            }
            drop(live);
        }
        // A cluster this run created, also when setup failed after creating it.
        let owned = lock(&self.owned).clone();
        if let Some(owned) = owned {
            if self.config.keep_cluster {
                *lock(&self.interrupt_cleanup) = None;
                *lock(&self.owned) = None;
                self.progress.line(&format!(
                    "kept kind cluster `{}` (--keep-cluster); kubeconfig: {}; delete it with `{}`",
                    owned.name,
                    self.config.reports_dir.join("kubeconfig").display(),
                    owned.delete_command()
                ));
            } else {
                let deleting = Arc::clone(&self.deleting);
                let _one_at_a_time = lock(&deleting);
                // An interruption may have deleted it meanwhile.
                let still_owned = lock(&self.owned).is_some();
                let _wait = self
                    .progress
                    .wait(&format!("deleting kind cluster `{}`", owned.name));
                match still_owned.then(|| {
                    self.runtime
                        .block_on(kind::delete(&owned.kind, &owned.name))
                }) {
                    None | Some(Ok(())) => {
                        *lock(&self.interrupt_cleanup) = None;
                        *lock(&self.owned) = None;
                    }
                    Some(Err(e)) => {
                        first_error.get_or_insert(EnvError::new(Phase::Cleanup, e));
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
