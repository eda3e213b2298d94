//! `mtls`: per edge of the app graph, what telemetry shows for the requests of this
//! phase — Kiali's padlock, and the stricter verdict (an edge expected with mTLS has no
//! plaintext share at all; one expected without has no mTLS share). Cross-checked with
//! the caller's proxy config, an oracle independent of Prometheus: when the two
//! disagree the step fails and both are shown.

use super::phase::{self, Standing};
use super::{Env, proxy_config};
use crate::deadlines;
use crate::suite::duration::HumanDuration;
use crate::suite::validation::Validation;
use crate::suite::{Expectation, SuiteError};
use crate::telemetry::deltas::Deltas;
use crate::telemetry::oracle::{self, Group};
use crate::telemetry::phase::{Look, Traffic};
use crate::verdict::{EdgeExpectation, Judgement, Verdict};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

fn telemetry_requests() -> u32 {
    40
}
fn telemetry_deadline() -> HumanDuration {
    HumanDuration(deadlines::TELEMETRY)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mtls {
    pub edges: Vec<EdgeExpectation>,
    /// Requests sent through the ingress during the phase.
    #[serde(default = "telemetry_requests")]
    pub requests: u32,
    #[serde(default = "telemetry_deadline")]
    pub deadline: HumanDuration,
}

/// One look at the phase's deltas: every edge as expected (strictly), and the requests
/// adding up on each group of edges.
pub fn look(
    edges: &[EdgeExpectation],
    groups: &[Group],
    deltas: &Deltas,
    traffic: &Traffic,
) -> Look {
    let (holds, rows) = oracle::judge(edges, deltas);
    let (balance, balance_lines) = oracle::balance(groups, &rows, f64::from(traffic.app_answers));
    let mut details = oracle::table(&rows);
    details.extend(balance_lines);
    Standing {
        holds,
        final_failure: rows.iter().any(oracle::is_final_failure),
        wrong: oracle::wrong_rows(&rows),
        balance,
        grouped: !groups.is_empty(),
        holds_means: "every edge as expected",
        details,
        rows,
    }
    .look()
}

impl Mtls {
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
        if self.edges.is_empty() {
            return Err(ctx.at_step("`mtls` names no edge"));
        }
        ctx.positive("mtls.requests", self.requests)?;
        for edge in &self.edges {
            ctx.workload(&edge.from, true)?;
            ctx.workload(&edge.to, false)?;
        }
        Ok(())
    }

    pub fn deadline(&self) -> Duration {
        self.deadline.0
    }

    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        let edges: Vec<(String, String)> = self.edges.iter().map(|e| e.key()).collect();
        let mut judgement = phase::run(
            env,
            &edges,
            self.requests,
            self.deadline.0,
            |deltas, traffic, groups| look(&self.edges, groups, deltas, traffic),
        )
        .await;
        if judgement.verdict == Verdict::Errored {
            return judgement;
        }
        // The second oracle, per edge whose caller has a proxy we can read.
        let mut proxy = BTreeMap::new();
        for row in &judgement.evidence.edges {
            match proxy_config::mtls_towards(env, &row.from, &row.to).await {
                Ok(mtls) => {
                    proxy.insert((row.from.clone(), row.to.clone()), mtls);
                }
                Err(err) => judgement
                    .evidence
                    .details
                    .push(format!("proxy config of {} not read: {err}", row.from)),
            }
        }
        let disagreements = oracle::cross_check(&mut judgement.evidence.edges, &proxy);
        if !disagreements.is_empty() {
            judgement.verdict = Verdict::Failed;
            judgement.evidence.summary = format!(
                "the oracles disagree: {}; {}",
                disagreements.join("; "),
                judgement.evidence.summary
            );
        }
        judgement
    }
}

impl fmt::Display for Mtls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let edges = self
            .edges
            .iter()
            .map(|edge| {
                format!(
                    "{} → {} {}",
                    edge.from.value,
                    edge.to.value,
                    if edge.padlock {
                        "all mTLS (padlock)"
                    } else {
                        "all plaintext (no padlock)"
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        write!(
            f,
            "telemetry after {} requests: {} (within {})",
            self.requests, edges, self.deadline
        )
    }
}

#[cfg(test)]
mod adversarial_tests {
    //! Wrong worlds fed to the `mtls` look as crafted Prometheus series.

    use super::*;
    use crate::telemetry::deltas::Snapshot;
    use crate::telemetry::prometheus::Labels;

    fn series(from: &str, to: &str, policy: Option<&str>) -> Labels {
        let mut l: Labels = [
            ("reporter", "destination"),
            ("source_workload", from),
            ("source_workload_namespace", "sentences"),
            ("destination_workload", to),
            ("destination_workload_namespace", "sentences"),
            ("response_code", "200"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(p) = policy {
            l.insert("connection_security_policy".into(), p.into());
        }
        l
    }

    /// STRICT edge sentences → age: one request of 40 was mTLS, the other 39 carry no
    /// `connection_security_policy` the oracle knows (`unknown`, or the label dropped,
    /// e.g. by a Telemetry tag override on one proxy). Nothing shows they were mTLS, and
    /// they add up in the balance, so only the strict rule can refuse them: requests of
    /// neither policy never make an edge "all mTLS".
    #[test]
    fn an_edge_with_mostly_unknown_policy_is_not_all_mtls() {
        let before = Snapshot::default();
        let mut after = Snapshot::default();
        after
            .series
            .insert(series("sentences", "age", Some("mutual_tls")), 1.0);
        after
            .series
            .insert(series("sentences", "age", Some("unknown")), 20.0);
        after.series.insert(series("sentences", "age", None), 19.0);
        let deltas = Deltas::between(&before, &after);
        let edges = [EdgeExpectation::new("sentences", "age", true)];
        let groups = [Group {
            label: "sentences → Service age".into(),
            edges: vec![("sentences".into(), "age".into())],
        }];
        let traffic = Traffic {
            summary: String::new(),
            sent: 40,
            app_answers: 40,
        };
        let judged = look(&edges, &groups, &deltas, &traffic);
        assert!(
            !matches!(judged, Look::Holds(_)),
            "1 of 40 requests shown as mTLS was judged all mTLS"
        );
    }
}
