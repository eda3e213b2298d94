//! `proxy-log`: a workload's sidecar says, in its access log, why traffic fails — e.g.
//! under STRICT, age's sidecar closing the frontend's plaintext connections: Istio logs
//! them with response flag `NR` and `filter_chain_not_found`
//! (`pilot/pkg/networking/core/accesslog.go`; the harness installs Istio with
//! `meshConfig.accessLogFile=/dev/stdout`). On a cluster whose sidecars log nothing
//! (Istio's default) the access log is first turned on for the app namespace
//! (`cluster/access_log.rs`); where that cannot be done the expectation is not judged,
//! never failed. The phase sends requests itself and looks only at the lines they added.

use super::{Env, secs};
use crate::cluster::workloads::{self, SIDECAR_CONTAINER};
use crate::deadlines;
use crate::probe::Probe;
use crate::probe::tally::Tally;
use crate::suite::duration::HumanDuration;
use crate::suite::validation::Validation;
use crate::suite::{Expectation, SuiteError};
use crate::verdict::{Evidence, Judgement};
use crate::wait::{self, Look};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

fn requests() -> u32 {
    10
}
fn log_deadline() -> HumanDuration {
    HumanDuration(crate::deadlines::PROXY_LOG)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyLog {
    /// The workload whose `istio-proxy` logs are read.
    pub workload: Spanned<String>,
    /// Text the new lines must contain.
    pub contains: String,
    /// Requests sent through the ingress during the phase.
    #[serde(default = "requests")]
    pub requests: u32,
    #[serde(default = "log_deadline")]
    pub deadline: HumanDuration,
}

/// Every pod's `istio-proxy` log of the workload.
async fn logs(env: &Env<'_>, workload: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let namespace = &env.config.app_namespace;
    let pods = workloads::pods_of(&env.cluster.client, namespace, workload).await?;
    let api: Api<Pod> = Api::namespaced(env.cluster.client.clone(), namespace);
    let mut out = BTreeMap::new();
    for pod in pods {
        let Some(name) = pod.metadata.name.clone() else {
            continue;
        };
        let params = LogParams {
            container: Some(SIDECAR_CONTAINER.to_string()),
            ..LogParams::default()
        };
        let text = api.logs(&name, &params).await.map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot read the istio-proxy log of {namespace}/{name}: {e}")
        })?;
        out.insert(name, text.lines().map(str::to_string).collect());
    }
    Ok(out)
}

impl ProxyLog {
    /// The part of the step's time it spends (see [`Part`](crate::verdict::Part)).
    pub fn part(&self) -> crate::verdict::Part {
        crate::verdict::Part::Traffic
    }

    /// The least time it takes in a world already as expected: nothing beyond the
    /// cluster's own waits.
    pub fn least_time(&self, _scrape: Duration) -> Duration {
        Duration::ZERO
    }

    pub fn validate(
        &self,
        ctx: &mut Validation<'_>,
        _earlier: &[Expectation],
    ) -> Result<(), SuiteError> {
        ctx.workload(&self.workload, false)?;
        ctx.positive("proxy-log.requests", self.requests)?;
        if self.contains.trim().is_empty() {
            return Err(ctx.at_step("`proxy-log.contains` is empty"));
        }
        Ok(())
    }

    pub fn deadline(&self) -> Duration {
        self.deadline.0
    }

    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        let started = Instant::now();
        let workload = &self.workload.value;
        let turned_on = match crate::cluster::access_log::ensure(
            &env.cluster.client,
            &env.config.app_namespace,
            workload,
            self.deadline.0,
        )
        .await
        {
            Ok(note) => note,
            Err(why) => {
                return Judgement::errored(format!("not judged: {why}"), started.elapsed());
            }
        };
        let mut judgement = self.judge_logging(env, workload, started).await;
        if let Some(note) = turned_on {
            judgement.evidence.details.insert(0, note);
        }
        judgement
    }

    /// The phase, once the sidecars log.
    async fn judge_logging(&self, env: &Env<'_>, workload: &str, started: Instant) -> Judgement {
        let before = match logs(env, workload).await {
            Ok(l) => l,
            Err(e) => return Judgement::errored(e, started.elapsed()),
        };
        if before.is_empty() {
            return Judgement::errored(
                format!("{workload} has no pods whose proxy log could be read"),
                started.elapsed(),
            );
        }
        let probe = match env.http_probe() {
            Ok(p) => p,
            Err(e) => return Judgement::errored(e, started.elapsed()),
        };
        let mut tally = Tally::default();
        for _ in 0..self.requests {
            tally.add(&probe.once().await);
        }
        if tally.reached == 0 {
            return Judgement::errored(
                format!("no request reached the gateway ({})", tally.classes()),
                started.elapsed(),
            );
        }
        let (before, tally) = (&before, &tally);
        wait::until_final(self.deadline.0, deadlines::POLL, || async move {
            let after = match logs(env, workload).await {
                Ok(l) => l,
                Err(e) => return Look::Final(Judgement::errored(e, started.elapsed())),
            };
            let new: Vec<&String> = after
                .iter()
                .flat_map(|(pod, lines)| {
                    let seen = before.get(pod).map_or(0, Vec::len);
                    lines.iter().skip(seen)
                })
                .collect();
            let matching: Vec<&&String> =
                new.iter().filter(|l| l.contains(&self.contains)).collect();
            let elapsed = started.elapsed();
            let mut details = vec![
                format!("requests: {}; classes: {}", tally.sent, tally.classes()),
                format!(
                    "{} new line(s) in the istio-proxy logs of {workload} ({}), {} containing `{}`",
                    new.len(),
                    after.keys().cloned().collect::<Vec<_>>().join(", "),
                    matching.len(),
                    self.contains
                ),
            ];
            if let Some(sample) = matching.first().map(|l| **l).or(new.first().copied()) {
                let sample: String = sample.chars().take(300).collect();
                details.push(format!("e.g.: {sample}"));
            }
            let mut evidence = Evidence::new(if matching.is_empty() {
                format!(
                    "no new line of {workload}'s proxy log contains `{}` after {} requests ({} new lines) in {}",
                    self.contains,
                    tally.sent,
                    new.len(),
                    secs(elapsed)
                )
            } else {
                format!(
                    "{workload}'s proxy logged `{}` ({} new line(s) so far) for the phase's {} requests",
                    self.contains,
                    matching.len(),
                    tally.sent
                )
            })
            .with_details(details);
            evidence.timing.traffic = elapsed;
            if matching.is_empty() {
                // The log may not have been flushed yet.
                Look::Pending(Judgement::failed(evidence, elapsed))
            } else {
                Look::Final(Judgement::passed(evidence, elapsed))
            }
        })
        .await
    }
}

impl fmt::Display for ProxyLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}'s sidecar logs `{}` for the requests it receives (within {})",
            self.workload.value, self.contains, self.deadline
        )
    }
}
