//! `telemetry`: what the proxies report about the phase's requests, edge by edge — the
//! exercise's Kiali views as assertions. Kiali builds its graph from both reporters:
//! before the app has sidecars only the ingress gateway reports (as the caller,
//! `reporter="source"`, never knowing the security policy); a sidecar reports what it
//! received (`reporter="destination"`, with `connection_security_policy`); a caller
//! without a sidecar shows as `source_workload="unknown"` (Istio 1.30/1.31 discover
//! peers by IP only in ambient mode: `PEER_METADATA_DISCOVERY` defaults to false).
//!
//! Each `reported` entry holds when the edge carried requests in the phase and every
//! one of them has the given policy and response code; `unreported` workloads received
//! none that a sidecar reported. The requests must add up to what the app answered.

use super::Env;
use super::phase::{self, Standing};
use crate::deadlines;
use crate::suite::duration::HumanDuration;
use crate::suite::validation::Validation;
use crate::suite::{Expectation, SuiteError};
use crate::telemetry::deltas::{Deltas, Reporter};
use crate::telemetry::oracle;
use crate::verdict::{EdgeRow, Judgement, Padlock};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::fmt;
use std::time::Duration;

/// Istio's name for a caller it cannot identify.
pub const UNKNOWN: &str = "unknown";
/// The values `connection_security_policy` takes.
pub const POLICIES: [&str; 3] = ["mutual_tls", "none", "unknown"];

fn requests() -> u32 {
    40
}
fn telemetry_deadline() -> HumanDuration {
    HumanDuration(deadlines::TELEMETRY)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// Requests sent through the ingress during the phase.
    #[serde(default = "requests")]
    pub requests: u32,
    pub reported: Vec<Reported>,
    /// Workloads towards which no sidecar reports any request of the phase.
    #[serde(default)]
    pub unreported: Vec<Spanned<String>>,
    #[serde(default = "telemetry_deadline")]
    pub deadline: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reported {
    /// `source` (the caller's proxy) or `destination` (the callee's sidecar).
    pub by: Reporter,
    /// A workload, `istio-ingressgateway`, or `unknown` (a caller without a sidecar).
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    /// `connection_security_policy` of every request: `mutual_tls`, `none`, `unknown`.
    #[serde(default)]
    pub security: Option<Spanned<String>>,
    /// `response_code` of every request.
    #[serde(default)]
    pub code: Option<u16>,
}

impl Reported {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.security {
            parts.push(format!("policy {}", s.value));
        }
        if let Some(c) = self.code {
            parts.push(format!("code {c}"));
        }
        format!(
            "{} → {} reported by the {}{}",
            self.from.value,
            self.to.value,
            self.by.label(),
            if parts.is_empty() {
                String::new()
            } else {
                format!(", every request with {}", parts.join(" and "))
            }
        )
    }
}

/// One entry against the deltas: (holds, can no longer hold, evidence line, row).
fn judge_entry(r: &Reported, deltas: &Deltas) -> (bool, bool, String, EdgeRow) {
    let (from, to) = (r.from.value.as_str(), r.to.value.as_str());
    let edge = deltas.edge(r.by, from, to);
    let code = r.code.map(|c| c.to_string());
    let matching = deltas.count(
        r.by,
        from,
        to,
        r.security.as_ref().map(|s| s.value.as_str()),
        code.as_deref(),
    );
    let total = edge.total();
    let holds = total > 0.0 && matching == total;
    let final_failure = total > matching;
    let line = format!(
        "{}: Δ {total} ({}; codes {}), {matching} as expected — {}",
        r.describe(),
        if r.by == Reporter::Destination {
            format!("mutual_tls {}, none {}", edge.mutual_tls, edge.none)
        } else {
            "policy unknown to the caller".to_string()
        },
        if edge.codes.is_empty() {
            "none".to_string()
        } else {
            edge.describe_codes()
        },
        if holds {
            "holds"
        } else if total == 0.0 {
            "no traffic yet"
        } else {
            "does not hold"
        }
    );
    let expected = match r.security.as_ref().map(|s| s.value.as_str()) {
        Some("mutual_tls") => Padlock::Present,
        _ => Padlock::Absent,
    };
    let mut row = oracle::row(from, to, &edge, expected);
    if r.by == Reporter::Source && total > 0.0 {
        // Kiali draws no padlock from the caller's reports alone.
        row.padlock = Padlock::Absent;
    }
    (holds, final_failure, line, row)
}

impl Telemetry {
    pub fn validate(
        &self,
        ctx: &mut Validation<'_>,
        _earlier: &[Expectation],
    ) -> Result<(), SuiteError> {
        ctx.positive("telemetry.requests", self.requests)?;
        if self.reported.is_empty() {
            return Err(ctx.at_step("`telemetry` names no reported edge"));
        }
        for r in &self.reported {
            if r.from.value != UNKNOWN {
                ctx.workload(&r.from, true)?;
            }
            ctx.workload(&r.to, false)?;
            if let Some(s) = &r.security
                && !POLICIES.contains(&s.value.as_str())
            {
                return Err(ctx.error(
                    &s.referenced,
                    format!(
                        "unknown security policy `{}` (Istio reports {})",
                        s.value,
                        POLICIES.join(", ")
                    ),
                ));
            }
            if r.by == Reporter::Source && r.security.as_ref().is_some_and(|s| s.value != UNKNOWN) {
                return Err(ctx.error(
                    &r.from.referenced,
                    "the caller's proxy never knows the policy (`reporter=\"source\"` reports `unknown`): only `by: destination` can assert one",
                ));
            }
        }
        for w in &self.unreported {
            ctx.workload(w, false)?;
        }
        Ok(())
    }

    pub fn deadline(&self) -> Duration {
        self.deadline.0
    }

    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        let pairs: Vec<(String, String)> = self
            .reported
            .iter()
            .map(|r| (r.from.value.clone(), r.to.value.clone()))
            .collect();
        phase::run(
            env,
            &pairs,
            self.requests,
            self.deadline.0,
            |deltas, traffic, groups| {
                let mut all = true;
                let mut final_failure = false;
                let mut lines = Vec::new();
                let mut rows = Vec::new();
                let mut wrong = Vec::new();
                for r in &self.reported {
                    let (holds, fin, line, row) = judge_entry(r, deltas);
                    all &= holds;
                    final_failure |= fin;
                    if !holds {
                        wrong.push(line.clone());
                    }
                    lines.push(line);
                    rows.push(row);
                }
                for w in &self.unreported {
                    let n = deltas.reported_by_destination(&w.value);
                    lines.push(format!(
                        "requests to {} reported by its sidecar: Δ {n} (expected none)",
                        w.value
                    ));
                    if n > 0.0 {
                        final_failure = true;
                        wrong.push(format!(
                            "{} reported {n} requests as destination; expected none (no sidecar should see them)",
                            w.value
                        ));
                    }
                }
                let (balance, balance_lines) =
                    oracle::balance(groups, &rows, f64::from(traffic.app_answers));
                lines.extend(balance_lines);
                Standing {
                    holds: all,
                    final_failure,
                    wrong,
                    balance,
                    grouped: !groups.is_empty(),
                    holds_means: "telemetry shows what the exercise shows",
                    details: lines,
                    rows,
                }
                .look()
            },
        )
        .await
    }
}

impl fmt::Display for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reported: Vec<String> = self.reported.iter().map(Reported::describe).collect();
        write!(
            f,
            "telemetry after {} requests: {}",
            self.requests,
            reported.join("; ")
        )?;
        if !self.unreported.is_empty() {
            write!(
                f,
                "; nothing reported by the sidecars of {}",
                crate::suite::model::names(&self.unreported)
            )?;
        }
        write!(f, " (within {})", self.deadline)
    }
}
