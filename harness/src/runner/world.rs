//! What the runner drives: the system under test. The cluster implements it for real
//! runs; the runner itself knows only this interface.

use super::record::{ExpectationRecord, RunProperties};
use crate::suite::{Action, Expectation, Step, Suite};
use std::path::PathBuf;

/// A failure of the harness or the environment, never a verdict on Istio.
#[derive(Debug, Clone)]
pub struct EnvError {
    /// Where it happened, e.g. `provision`, `preflight`.
    pub phase: String,
    pub message: String,
}

impl EnvError {
    pub fn new(phase: impl Into<String>, message: impl Into<String>) -> Self {
        EnvError {
            phase: phase.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.phase, self.message)
    }
}

pub trait World: Send {
    /// Preflight and provisioning: everything before the first step.
    fn setup(&mut self) -> Result<(), EnvError>;
    /// Facts about the system under test known so far.
    fn properties(&self) -> RunProperties;
    /// Carries out one action; the log gets a line per thing done.
    fn act(
        &mut self,
        suite: &Suite,
        action: &Action,
        log: &mut Vec<String>,
    ) -> Result<(), EnvError>;
    /// Judges one expectation; the record carries the verdict and its evidence.
    fn judge(&mut self, suite: &Suite, step: &Step, expectation: &Expectation)
    -> ExpectationRecord;
    /// Upgrades Istio in place to `version`, restarts the app so it gets the new
    /// proxies, and checks that the data plane runs `version`.
    fn upgrade(&mut self, version: &str, log: &mut Vec<String>) -> Result<(), EnvError>;
    /// Collects a diagnostics bundle for a step that did not pass.
    fn diagnostics(&mut self, suite: &Suite, step: &Step) -> Option<PathBuf>;
    /// Releases what the run holds (port-forwards, a cluster the harness created).
    fn finish(&mut self) -> Result<(), EnvError>;
}
