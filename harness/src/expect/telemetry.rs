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
use crate::telemetry::oracle::{self, Group};
use crate::telemetry::phase::{Look, Traffic};
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
    /// The part of the step's time it spends (see [`Part`](crate::verdict::Part)).
    pub fn part(&self) -> crate::verdict::Part {
        crate::verdict::Part::Telemetry
    }

    /// The least time it takes in a world already as expected: one scrape before its traffic and two after.
    pub fn least_time(&self, scrape: Duration) -> Duration {
        scrape * 3
    }

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

    /// One look at the phase's deltas (scoped to this run): every `reported` edge as
    /// expected, no `unreported` workload's sidecar reporting, and the requests adding
    /// up on each group of edges. Pure, so the wrong worlds can be fed to it directly.
    pub fn look(&self, deltas: &Deltas, traffic: &Traffic, groups: &[Group]) -> Look {
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
            |deltas, traffic, groups| self.look(deltas, traffic, groups),
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

#[cfg(test)]
mod tests {
    //! The exercise's Kiali views (suites/mesh/suite.yaml, O1, O3, O4) fed to the look
    //! as crafted `istio_requests_total` series: each right shape holds, and the wrong
    //! shapes a broken mesh (or a broken oracle) would produce never do.

    use super::*;
    use crate::telemetry::deltas::{Scope, Snapshot};
    use crate::telemetry::prometheus::Labels;

    const APP: &str = "sentences";
    const GATEWAY_NS: &str = "istio-system";
    const GATEWAY: &str = "istio-ingressgateway";

    /// The `telemetry` entry exactly as the suite writes it.
    fn expectation(yaml: &str) -> Telemetry {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const O1: &str = "requests: 20
reported:
  - { by: source, from: istio-ingressgateway, to: sentences, code: 200 }
unreported: [sentences, age, name, name-v2]
";
    const O3: &str = "requests: 20
reported:
  - { by: source, from: istio-ingressgateway, to: sentences, code: 500 }
unreported: [sentences, age, name, name-v2]
";
    const O4: &str = "requests: 20
reported:
  - { by: source, from: istio-ingressgateway, to: sentences, code: 200 }
  - { by: destination, from: unknown, to: age, security: none, code: 200 }
unreported: [sentences, name, name-v2]
";

    /// One series as Istio labels it; the caller's namespace follows from its name.
    fn series(reporter: &str, from: &str, to: &str, policy: &str, code: u16) -> Labels {
        let from_ns = match from {
            GATEWAY => GATEWAY_NS,
            "unknown" => "unknown",
            _ => APP,
        };
        [
            ("reporter", reporter),
            ("source_workload", from),
            ("source_workload_namespace", from_ns),
            ("destination_workload", to),
            ("destination_workload_namespace", APP),
            ("connection_security_policy", policy),
            ("response_code", &code.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// What the gateway reports as the caller: it never knows the policy.
    fn gateway_reports(code: u16) -> Labels {
        series("source", GATEWAY, "sentences", "unknown", code)
    }

    /// The phase's deltas from counters that start at 0, scoped as a run scopes them.
    fn deltas(after: Vec<(Labels, f64)>) -> Deltas {
        let after = Snapshot {
            at: 1.0,
            series: after.into_iter().collect(),
        };
        let scope = Scope {
            app_namespace: APP.into(),
            gateway_namespace: GATEWAY_NS.into(),
        };
        Deltas::between(&Snapshot::default(), &after)
            .within(&scope)
            .0
    }

    /// The groups a run builds for these edges: the gateway's edge into the frontend,
    /// and the unknown caller's edges to everything behind Service `age`.
    fn groups(t: &Telemetry) -> Vec<Group> {
        t.reported
            .iter()
            .map(|r| {
                let (from, to) = (r.from.value.clone(), r.to.value.clone());
                let label = if from == GATEWAY {
                    format!("{from} → {to}")
                } else {
                    format!("{from} → Service {to}")
                };
                Group {
                    label,
                    edges: vec![(from, to)],
                }
            })
            .collect()
    }

    /// 20 requests, each answered by the app (a sentence, or the frontend's own 500).
    fn traffic() -> Traffic {
        Traffic {
            summary: "20 requests".into(),
            sent: 20,
            app_answers: 20,
        }
    }

    /// How the look ended, and its summary.
    fn judged(yaml: &str, after: Vec<(Labels, f64)>) -> (&'static str, String) {
        let t = expectation(yaml);
        let look = t.look(&deltas(after), &traffic(), &groups(&t));
        match look {
            Look::Holds(e) => ("holds", e.summary),
            Look::NotYet(e) => ("not yet", e.summary),
            Look::Final(e) => ("final", e.summary),
            Look::Error(e) => ("error", e.summary),
        }
    }

    #[test]
    fn o1_holds_when_only_the_gateway_reports() {
        let (kind, summary) = judged(O1, vec![(gateway_reports(200), 20.0)]);
        assert_eq!(kind, "holds", "{summary}");
    }

    #[test]
    fn o1_fails_when_a_sidecar_reports_the_frontends_requests() {
        // sentences' sidecar (there should be none) reports what it received.
        let (kind, summary) = judged(
            O1,
            vec![
                (gateway_reports(200), 20.0),
                (
                    series("destination", GATEWAY, "sentences", "mutual_tls", 200),
                    20.0,
                ),
            ],
        );
        assert_eq!(kind, "final", "{summary}");
        assert!(
            summary.contains("sentences reported 20 requests as destination"),
            "{summary}"
        );
    }

    #[test]
    fn o3_holds_when_the_gateway_reports_only_500s_and_no_sidecar_reports() {
        let (kind, summary) = judged(O3, vec![(gateway_reports(500), 20.0)]);
        assert_eq!(kind, "holds", "{summary}");
    }

    #[test]
    fn o3_fails_when_the_gateway_reports_200s() {
        let (kind, summary) = judged(O3, vec![(gateway_reports(200), 20.0)]);
        assert_eq!(kind, "final", "{summary}");
        assert!(summary.contains("codes 200×20"), "{summary}");
        // Some 500s among 200s are not "100 % errors" either.
        let (kind, summary) = judged(
            O3,
            vec![(gateway_reports(500), 19.0), (gateway_reports(200), 1.0)],
        );
        assert_eq!(kind, "final", "{summary}");
    }

    #[test]
    fn o3_fails_when_ages_sidecar_reports_requests() {
        // age's sidecar accepted the frontend's plaintext and reported it: STRICT was
        // not enforced, whatever the gateway saw.
        let (kind, summary) = judged(
            O3,
            vec![
                (gateway_reports(500), 20.0),
                (series("destination", "unknown", "age", "none", 200), 20.0),
            ],
        );
        assert_eq!(kind, "final", "{summary}");
        assert!(
            summary.contains("age reported 20 requests as destination"),
            "{summary}"
        );
    }

    #[test]
    fn o4_holds_when_age_reports_plaintext_from_an_unknown_caller() {
        let (kind, summary) = judged(
            O4,
            vec![
                (gateway_reports(200), 20.0),
                (series("destination", "unknown", "age", "none", 200), 20.0),
            ],
        );
        assert_eq!(kind, "holds", "{summary}");
    }

    #[test]
    fn o4_does_not_hold_when_age_names_its_caller() {
        // The frontend identified as `sentences`: it would have a sidecar (or peer
        // discovery by IP), not the exercise's disjoint graph with its `unknown` node.
        let (kind, summary) = judged(
            O4,
            vec![
                (gateway_reports(200), 20.0),
                (series("destination", "sentences", "age", "none", 200), 20.0),
            ],
        );
        assert_ne!(kind, "holds", "{summary}");
        assert!(
            summary.contains("unknown → age reported by the destination"),
            "{summary}"
        );
    }

    #[test]
    fn o4_does_not_hold_when_the_callers_label_is_missing() {
        // Istio writes `unknown`; a series without `source_workload` is another world.
        let mut anonymous = series("destination", "unknown", "age", "none", 200);
        anonymous.remove("source_workload");
        let (kind, summary) = judged(O4, vec![(gateway_reports(200), 20.0), (anonymous, 20.0)]);
        assert_ne!(kind, "holds", "{summary}");
    }
}
