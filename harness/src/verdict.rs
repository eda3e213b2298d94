//! Verdicts as data: what an expectation concluded, the evidence behind it, and how
//! long it took. Every report is rendered from these types and nothing else.

use std::fmt;
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

impl Verdict {
    /// `PASS`, `FAIL`, `ERROR`, as the reports print it.
    pub fn mark(self) -> &'static str {
        match self {
            Verdict::Passed => "PASS",
            Verdict::Failed => "FAIL",
            Verdict::Errored => "ERROR",
        }
    }
}

/// Kiali's padlock on an edge: present when the destination-reported `mutual_tls`
/// share of the phase's requests is > 0, absent when there was traffic without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padlock {
    Present,
    Absent,
    /// No request on the edge in the phase: nothing to show either way.
    NoTraffic,
}

impl Padlock {
    /// From the expected side: `true` means a padlock.
    pub fn expected(padlock: bool) -> Padlock {
        if padlock {
            Padlock::Present
        } else {
            Padlock::Absent
        }
    }

    /// With the icon the summary draws on graph edges.
    pub fn icon(self) -> &'static str {
        match self {
            Padlock::Present => "🔒 mTLS",
            Padlock::Absent => "🔓 no mTLS",
            Padlock::NoTraffic => "no traffic",
        }
    }
}

impl fmt::Display for Padlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Padlock::Present => "mTLS",
            Padlock::Absent => "no mTLS",
            Padlock::NoTraffic => "no traffic",
        })
    }
}

/// One edge of the app graph as telemetry (and the proxy-config oracle) saw it in a phase.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeRow {
    pub from: String,
    pub to: String,
    /// Destination-reported request deltas of the phase by `connection_security_policy`.
    pub mutual_tls: f64,
    pub plaintext: f64,
    /// Requests on the edge with another or no policy label (e.g. `unknown`).
    pub other: f64,
    /// Requests of the phase with a non-2xx `response_code` (for the error rate).
    pub errors: f64,
    pub expected: Padlock,
    /// Kiali's padlock as telemetry shows it.
    pub padlock: Padlock,
    /// What the caller's proxy config says about this edge, when that oracle looked.
    pub proxy_config_mtls: Option<bool>,
}

impl EdgeRow {
    pub fn total(&self) -> f64 {
        self.mutual_tls + self.plaintext + self.other
    }

    /// Error rate in percent, when there was traffic.
    pub fn error_rate(&self) -> Option<f64> {
        let total = self.total();
        (total > 0.0).then(|| 100.0 * self.errors / total)
    }
}

/// Where the time of a step went, for the report (each part is optional: a step that
/// sends no traffic has no traffic time).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timing {
    /// Carrying out the step's actions (applies, rollouts).
    pub actions: Duration,
    /// Waiting until the data plane had the new config (proxy config, sidecars).
    pub convergence: Duration,
    /// Sending and judging requests.
    pub traffic: Duration,
    /// Waiting for Prometheus scrapes.
    pub telemetry: Duration,
}

/// The parts of a step's time an expectation can spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Waiting for the data plane (sidecars, proxy config and versions).
    Convergence,
    /// Sending and judging requests.
    Traffic,
    /// Waiting for Prometheus scrapes.
    Telemetry,
}

impl Timing {
    pub fn part_mut(&mut self, part: Part) -> &mut Duration {
        match part {
            Part::Convergence => &mut self.convergence,
            Part::Traffic => &mut self.traffic,
            Part::Telemetry => &mut self.telemetry,
        }
    }

    pub fn add(&mut self, other: &Timing) {
        self.actions += other.actions;
        self.convergence += other.convergence;
        self.traffic += other.traffic;
        self.telemetry += other.telemetry;
    }

    pub fn total(&self) -> Duration {
        self.actions + self.convergence + self.traffic + self.telemetry
    }

    /// `actions 3.1 s, convergence 0.4 s, traffic 1.2 s, telemetry 10.0 s`
    pub fn describe(&self) -> String {
        [
            ("actions", self.actions),
            ("convergence", self.convergence),
            ("traffic", self.traffic),
            ("telemetry", self.telemetry),
        ]
        .iter()
        .map(|(name, d)| format!("{name} {:.1} s", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// The proof behind a verdict: a one-line summary and the detail lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    /// e.g. "expected 20 consecutive app 500s, saw 17; classes: http-500×17, ok×3; after 42.1 s".
    pub summary: String,
    pub details: Vec<String>,
    /// The per-edge mTLS table, where the expectation judged telemetry.
    pub edges: Vec<EdgeRow>,
    /// Where the expectation's time went.
    pub timing: Timing,
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

/// A verdict with its evidence and how long judging took.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub evidence: Evidence,
    pub elapsed: Duration,
}

impl Judgement {
    pub fn passed(evidence: Evidence, elapsed: Duration) -> Self {
        Judgement {
            verdict: Verdict::Passed,
            evidence,
            elapsed,
        }
    }

    pub fn failed(evidence: Evidence, elapsed: Duration) -> Self {
        Judgement {
            verdict: Verdict::Failed,
            evidence,
            elapsed,
        }
    }

    /// An environment error with a one-line message.
    pub fn errored(message: impl Into<String>, elapsed: Duration) -> Self {
        Judgement {
            verdict: Verdict::Errored,
            evidence: Evidence::new(message),
            elapsed,
        }
    }
}

/// One expectation of a step as judged: what it claimed and the judgement.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub description: String,
    pub judgement: Judgement,
}

/// One edge an `mtls` expectation judges: calls from workload `from` to workload `to`
/// (Istio's workload names; the ingress gateway is `istio-ingressgateway`), with or
/// without mTLS. `padlock: true` means every request of the phase on the edge was mTLS
/// (Kiali's padlock, and no plaintext share); `false` means every one was plaintext.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeExpectation {
    pub from: serde_saphyr::Spanned<String>,
    pub to: serde_saphyr::Spanned<String>,
    pub padlock: bool,
}

impl EdgeExpectation {
    pub fn new(from: &str, to: &str, padlock: bool) -> Self {
        let spanned = |s: &str| {
            serde_saphyr::Spanned::new(
                s.to_string(),
                serde_saphyr::Location::UNKNOWN,
                serde_saphyr::Location::UNKNOWN,
            )
        };
        EdgeExpectation {
            from: spanned(from),
            to: spanned(to),
            padlock,
        }
    }

    pub fn key(&self) -> (String, String) {
        (self.from.value.clone(), self.to.value.clone())
    }
}
