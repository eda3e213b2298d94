//! What a run found, as data: every verdict with its evidence. Reports are rendered
//! from this and nothing else.

use std::path::PathBuf;
use std::time::Duration;

/// The verdict on one expectation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The documented outcome held.
    Passed,
    /// Istio (or the app) did not behave as documented.
    Failed,
    /// The harness or the environment could not judge (cluster unreachable, tool
    /// missing, rollout timed out): not a statement about Istio.
    Errored,
}

/// The proof behind a verdict: a one-line summary and the detail lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    /// e.g. "expected 20 consecutive http-500, saw 17; codes: 500×17, 200×3; after 42.1 s".
    pub summary: String,
    pub details: Vec<String>,
    /// The per-edge mTLS table, where the expectation judged telemetry.
    pub edges: Vec<EdgeRow>,
}

impl Evidence {
    pub fn new(summary: impl Into<String>) -> Self {
        Evidence {
            summary: summary.into(),
            ..Evidence::default()
        }
    }

    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }
}

/// One edge of the app graph as telemetry (and the second oracle) saw it in a phase.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeRow {
    pub from: String,
    pub to: String,
    /// Request deltas of the phase by `connection_security_policy`.
    pub mutual_tls: f64,
    pub plaintext: f64,
    pub expected_padlock: bool,
    /// Kiali's rule: traffic and a `mutual_tls` share > 0. None when there was no traffic.
    pub padlock: Option<bool>,
    /// What the client's proxy config says, when the second oracle looked.
    pub proxy_config_mtls: Option<bool>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExpectationRecord {
    pub description: String,
    pub verdict: Verdict,
    pub evidence: Evidence,
    pub elapsed: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StepStatus {
    Passed,
    /// An expectation did not hold; the message carries its evidence.
    Failed {
        message: String,
    },
    /// The harness or the environment failed; the message says what and what to do.
    Errored {
        message: String,
    },
    /// Not run, and why (an earlier step of the suite did not pass, or a filter).
    Ignored {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    pub suite: String,
    /// `NN-id`.
    pub slug: String,
    pub title: String,
    pub outcome: Option<String>,
    pub status: StepStatus,
    pub duration: Duration,
    /// What the step did, line by line, for system-out.
    pub log: Vec<String>,
    pub expectations: Vec<ExpectationRecord>,
    /// Where the diagnostics bundle of a failed step was written.
    pub diagnostics: Option<PathBuf>,
}

impl StepRecord {
    pub fn trial_name(&self) -> String {
        format!("{}::{}", self.suite, self.slug)
    }

    /// The edges judged by this step's telemetry expectations.
    pub fn edges(&self) -> impl Iterator<Item = &EdgeRow> {
        self.expectations
            .iter()
            .flat_map(|e| e.evidence.edges.iter())
    }
}

/// A failure before (or around) the steps: provisioning, preflight, teardown, Ctrl-C.
#[derive(Clone, Debug, PartialEq)]
pub struct SetupFailure {
    /// The synthetic test case's name, e.g. `setup::provision`.
    pub phase: String,
    pub message: String,
}

/// Facts about the system under test, as JUnit properties.
#[derive(Clone, Debug, PartialEq)]
pub struct RunProperties {
    pub harness_version: String,
    pub istio_version: String,
    pub kubernetes_version: String,
    pub kind_node_image: String,
    pub cluster_name: String,
}

impl Default for RunProperties {
    fn default() -> Self {
        let unknown = || "unknown".to_string();
        RunProperties {
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
            istio_version: unknown(),
            kubernetes_version: unknown(),
            kind_node_image: unknown(),
            cluster_name: unknown(),
        }
    }
}

impl RunProperties {
    pub fn pairs(&self) -> [(&'static str, &str); 5] {
        [
            ("harness.version", &self.harness_version),
            ("istio.version", &self.istio_version),
            ("kubernetes.version", &self.kubernetes_version),
            ("kind.node_image", &self.kind_node_image),
            ("cluster.name", &self.cluster_name),
        ]
    }
}

/// Everything a run produced so far; complete at the end, partial on Ctrl-C.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunRecord {
    pub properties: RunProperties,
    /// Suites in run order, with their steps in order. A suite label may carry a
    /// suffix (e.g. the Istio version of an upgrade pass).
    pub suites: Vec<(String, Vec<StepRecord>)>,
    pub setup_failures: Vec<SetupFailure>,
}

impl RunRecord {
    pub fn steps(&self) -> impl Iterator<Item = &StepRecord> {
        self.suites.iter().flat_map(|(_, steps)| steps.iter())
    }

    pub fn push_step(&mut self, suite_label: &str, step: StepRecord) {
        match self.suites.iter_mut().find(|(name, _)| name == suite_label) {
            Some((_, steps)) => steps.push(step),
            None => self.suites.push((suite_label.to_string(), vec![step])),
        }
    }

    /// The exit code the run ends with: 1 when Istio got an outcome wrong (a real
    /// finding outranks everything), else 3 when the harness or environment failed,
    /// else 0.
    pub fn exit_code(&self) -> u8 {
        let failed = self
            .steps()
            .any(|s| matches!(s.status, StepStatus::Failed { .. }));
        let errored = !self.setup_failures.is_empty()
            || self
                .steps()
                .any(|s| matches!(s.status, StepStatus::Errored { .. }));
        if failed {
            crate::exit::OUTCOME_FAILED
        } else if errored {
            crate::exit::ENVIRONMENT
        } else {
            crate::exit::SUCCESS
        }
    }
}
