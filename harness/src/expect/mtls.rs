//! `mtls`: per edge of the app graph, what telemetry shows for the requests of this
//! phase — Kiali's padlock, and the stricter verdict (an edge expected with mTLS has no
//! plaintext share at all; one expected without has no mTLS share). Cross-checked with
//! the caller's proxy config, an oracle independent of Prometheus: when the two
//! disagree the step fails and both are shown.

use super::{Env, proxy_config};
use crate::deadlines;
use crate::probe::Probe;
use crate::probe::tally::Tally;
use crate::suite::duration::HumanDuration;
use crate::suite::validation::Validation;
use crate::suite::{Expectation, SuiteError};
use crate::telemetry::oracle;
use crate::telemetry::prometheus::Prometheus;
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

impl Mtls {
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
        let prometheus = match Prometheus::new(&env.cluster.prometheus_url) {
            Ok(p) => p,
            Err(e) => return Judgement::errored(e, Duration::ZERO),
        };
        let probe = match env.http_probe() {
            Ok(p) => p,
            Err(e) => return Judgement::errored(e, Duration::ZERO),
        };
        let requests = self.requests;
        let probe_ref = &probe;
        let mut judgement = oracle::phase(
            &prometheus,
            &oracle::sidecar_targets(&env.config.app_namespace),
            &self.edges,
            self.deadline.0,
            || async move {
                let mut tally = Tally::default();
                for _ in 0..requests {
                    tally.add(&probe_ref.once().await);
                }
                if tally.reached == 0 {
                    return Err(format!(
                        "no request reached the gateway ({})",
                        tally.classes()
                    ));
                }
                Ok(format!(
                    "{} requests through {}: {}",
                    tally.sent,
                    probe_ref.target(),
                    tally.classes()
                ))
            },
        )
        .await;
        if judgement.verdict == Verdict::Errored {
            return judgement;
        }
        // The second oracle, per edge whose caller has a proxy we can read.
        let mut proxy = BTreeMap::new();
        for row in &judgement.evidence.edges {
            let says = async {
                let dump = proxy_config::config_dump(env, &row.from).await?;
                let name = proxy_config::cluster_towards(env, &row.to).await?;
                crate::telemetry::proxy_config::find_cluster(&dump, &name)
                    .map(|c| crate::telemetry::proxy_config::origination(c).mtls())
                    .ok_or_else(|| format!("{}'s sidecar has no cluster {name}", row.from))
            };
            match says.await {
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
