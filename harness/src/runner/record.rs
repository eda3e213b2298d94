//! What a run found, as data: every step with its verdicts and evidence. Reports are
//! rendered from this and nothing else.

use crate::verdict::{EdgeRow, Judged, Timing};
use std::path::PathBuf;
use std::time::Duration;

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
    pub expectations: Vec<Judged>,
    /// Where the diagnostics bundle of a failed step was written.
    pub diagnostics: Option<PathBuf>,
    /// The Istio version istiod ran when the step started.
    pub istio_version: Option<String>,
    /// Where the step's time went.
    pub timing: Timing,
}

impl StepRecord {
    /// A step that did not run (or ran no expectation), with this status.
    pub fn without_run(suite: &str, step: &crate::suite::Step, status: StepStatus) -> StepRecord {
        StepRecord {
            title: step.title.clone(),
            outcome: step.outcome.clone(),
            ..StepRecord::new(suite, step.slug(), status)
        }
    }

    /// A step known only by its suite label and slug, with this status and nothing else.
    pub fn new(suite: &str, slug: String, status: StepStatus) -> StepRecord {
        StepRecord {
            suite: suite.to_string(),
            slug,
            title: String::new(),
            outcome: None,
            status,
            duration: Duration::ZERO,
            log: Vec::new(),
            expectations: Vec::new(),
            diagnostics: None,
            istio_version: None,
            timing: Timing::default(),
        }
    }

    pub fn trial_name(&self) -> String {
        format!("{}::{}", self.suite, self.slug)
    }

    /// The edges judged by this step's telemetry expectations.
    pub fn edges(&self) -> impl Iterator<Item = &EdgeRow> {
        self.expectations
            .iter()
            .flat_map(|e| e.judgement.evidence.edges.iter())
    }
}

/// A failure before (or around) the steps: provisioning, preflight, teardown, Ctrl-C.
#[derive(Clone, Debug, PartialEq)]
pub struct SetupFailure {
    /// The synthetic test case's name, e.g. `setup::provision`.
    pub phase: String,
    pub message: String,
    /// How long it ran before it failed.
    pub elapsed: Duration,
}

/// Facts about the system under test, as JUnit properties.
#[derive(Clone, Debug, PartialEq)]
pub struct RunProperties {
    pub harness_version: String,
    pub istio_version: String,
    /// What the user asked for (`1.31`, `latest`, `default`) before it was resolved.
    pub istio_requested: String,
    /// The Istio setup installed or found on the cluster; `None` until then.
    pub istio_installed: Option<String>,
    pub kubernetes_version: String,
    pub kind_node_image: String,
    pub cluster_name: String,
    /// What setup found on the cluster and ran with (a mesh-wide STRICT, say), for the
    /// summary.
    pub notes: Vec<String>,
}

impl Default for RunProperties {
    fn default() -> Self {
        let unknown = || "unknown".to_string();
        RunProperties {
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
            istio_version: unknown(),
            istio_requested: unknown(),
            istio_installed: None,
            kubernetes_version: unknown(),
            kind_node_image: unknown(),
            cluster_name: unknown(),
            notes: Vec::new(),
        }
    }
}

impl RunProperties {
    /// `istio.installed` only once something was installed or found.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = vec![
            ("harness.version", self.harness_version.as_str()),
            ("istio.version", &self.istio_version),
            ("istio.requested", &self.istio_requested),
        ];
        if let Some(installed) = &self.istio_installed {
            pairs.push(("istio.installed", installed));
        }
        pairs.extend([
            ("kubernetes.version", self.kubernetes_version.as_str()),
            ("kind.node_image", &self.kind_node_image),
            ("cluster.name", &self.cluster_name),
        ]);
        pairs
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
    /// Where setup's time went, phase by phase.
    pub setup_phases: Vec<PhaseTime>,
}

/// The group of setup phases nothing waits for (the image pre-pull): shown in the time
/// budget, never on its critical path.
pub const BACKGROUND: &str = "background";

/// One phase of setup and how long it took. Phases with the same `group` ran at the
/// same time; the longest of a group is on the critical path.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseTime {
    pub name: String,
    pub group: Option<String>,
    pub elapsed: Duration,
}

/// Setup's phases as they happen, shared with whoever renders the report.
#[derive(Clone, Debug, Default)]
pub struct Timeline(std::sync::Arc<std::sync::Mutex<Vec<PhaseTime>>>);

impl Timeline {
    pub fn record(&self, name: &str, group: Option<&str>, elapsed: Duration) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(PhaseTime {
                name: name.to_string(),
                group: group.map(str::to_string),
                elapsed,
            });
    }

    /// Times `work` as phase `name`.
    pub async fn time<T>(
        &self,
        name: &str,
        group: Option<&str>,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let started = std::time::Instant::now();
        let out = work.await;
        self.record(name, group, started.elapsed());
        out
    }

    pub fn phases(&self) -> Vec<PhaseTime> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
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
