//! What the runner drives: the system under test. The cluster implements it for real
//! runs; the runner itself knows only this interface.

use super::record::RunProperties;
use crate::suite::{Action, Expectation, Step, Suite};
use crate::verdict::Judged;
use std::fmt;
use std::path::PathBuf;

/// Where a harness or environment failure happened; it names the synthetic JUnit test
/// case of a setup failure (`setup::<phase>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Preflight,
    Tools,
    Provision,
    Istio,
    Prometheus,
    PortForward,
    Render,
    Apply,
    Delete,
    Inject,
    Rollout,
    Pki,
    Upgrade,
    Cleanup,
    Reports,
    Interrupted,
    /// A step ran without the cluster being set up: a harness bug.
    Run,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Preflight => "preflight",
            Phase::Tools => "tools",
            Phase::Provision => "provision",
            Phase::Istio => "istio",
            Phase::Prometheus => "prometheus",
            Phase::PortForward => "port-forward",
            Phase::Render => "render",
            Phase::Apply => "apply",
            Phase::Delete => "delete",
            Phase::Inject => "inject",
            Phase::Rollout => "rollout",
            Phase::Pki => "pki",
            Phase::Upgrade => "upgrade",
            Phase::Cleanup => "cleanup",
            Phase::Reports => "reports",
            Phase::Interrupted => "interrupted",
            Phase::Run => "run",
        })
    }
}

/// A failure of the harness or the environment, never a verdict on Istio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub phase: Phase,
    pub message: String,
}

impl EnvError {
    pub fn new(phase: Phase, message: impl Into<String>) -> Self {
        EnvError {
            phase,
            message: message.into(),
        }
    }

    /// `map_err(EnvError::at(Phase::Istio))`
    pub fn at(phase: Phase) -> impl Fn(String) -> EnvError {
        move |message| EnvError::new(phase.clone(), message)
    }
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.phase, self.message)
    }
}

impl std::error::Error for EnvError {}

pub trait World: Send {
    /// Preflight and provisioning: everything before the first step, ending in the
    /// state the exercise starts from for `suites`.
    fn setup(&mut self, suites: &[std::sync::Arc<Suite>]) -> Result<(), EnvError>;
    /// Facts about the system under test known so far.
    fn properties(&self) -> RunProperties;
    /// The Istio version the cluster runs now (read from istiod), for the step's record.
    fn istio_version(&mut self) -> Option<String> {
        None
    }
    /// The proxies (the app's sidecars and the ingress gateway's) that do not run
    /// `version`, each as `pod runs image`, and how many were checked: a step of a pass
    /// on `version` is judged only when every proxy runs it.
    fn proxies_not_on(&mut self, version: &str) -> Result<(Vec<String>, usize), String>;
    /// Carries out one action; the log gets a line per thing done.
    fn act(
        &mut self,
        suite: &Suite,
        action: &Action,
        log: &mut Vec<String>,
    ) -> Result<(), EnvError>;
    /// Judges one expectation: the verdict and its evidence.
    fn judge(&mut self, suite: &Suite, step: &Step, expectation: &Expectation) -> Judged;
    /// Upgrades Istio in place to `version`, restarts the app so it gets the new
    /// proxies, and checks that the data plane runs `version`. `judged`: the upgrade is
    /// its own trial, so there must be an app to validate it on; as the setup of a
    /// second-pass step (which deploys the app itself) there may be none yet.
    fn upgrade(
        &mut self,
        version: &str,
        judged: bool,
        log: &mut Vec<String>,
    ) -> Result<(), EnvError>;
    /// Carries out one change of a canary upgrade (from `--upgrade-from` to
    /// `--istio-version`, see `runner::canary`); the log gets a line per thing done.
    fn canary(
        &mut self,
        op: &super::canary::CanaryOp,
        log: &mut Vec<String>,
    ) -> Result<(), EnvError> {
        let _ = log;
        Err(EnvError::new(
            Phase::Upgrade,
            format!("this world cannot carry out a canary upgrade ({op})"),
        ))
    }
    /// Collects a diagnostics bundle for a step that did not pass; `label` is the suite
    /// as the report names it (with the pass of an upgrade run, e.g. `mesh@1.30.5`).
    fn diagnostics(&mut self, suite: &Suite, step: &Step, label: &str) -> Option<PathBuf>;
    /// Releases what the run holds (port-forwards, a cluster the harness created).
    fn finish(&mut self) -> Result<(), EnvError>;
}
