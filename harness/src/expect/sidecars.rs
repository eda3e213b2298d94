//! `sidecars`: named workloads have (or lack) an `istio-proxy` in every pod. A sidecar
//! is a container named `istio-proxy` (in `containers`, or a native sidecar in
//! `initContainers` with `restartPolicy: Always`) that is ready; the injector's
//! annotation alone is not one.
//!
//! Polled until it holds; but once a workload's rollout is complete, its pods will not
//! change by themselves, so a contradiction there is final and reported at once rather
//! than at the deadline.

use super::{Env, secs};
use crate::cluster::rollout::{self, RolloutState};
use crate::cluster::workloads::{self, Sidecar};
use crate::deadlines;
use crate::suite::duration::HumanDuration;
use crate::suite::model::names;
use crate::suite::validation::Validation;
use crate::suite::{Expectation, SuiteError};
use crate::verdict::{Evidence, Judgement};
use crate::wait;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::fmt;
use std::time::{Duration, Instant};

fn sidecars_deadline() -> HumanDuration {
    HumanDuration(deadlines::SIDECARS)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecars {
    #[serde(default)]
    pub present: Vec<Spanned<String>>,
    #[serde(default)]
    pub absent: Vec<Spanned<String>>,
    #[serde(default = "sidecars_deadline")]
    pub deadline: HumanDuration,
}

/// One workload as seen at one look.
struct Workload {
    line: String,
    holds: bool,
    /// The contradiction cannot resolve by itself (rollout complete, pods final).
    settled: bool,
}

fn look(workload: &str, want: bool, pods: &[(String, Sidecar)], rollout_done: bool) -> Workload {
    let holds = !pods.is_empty()
        && pods.iter().all(|(_, s)| match s {
            Sidecar::Ready(_) => want,
            Sidecar::NotReady(..) => false,
            // Not the injector's sidecar, yet a container of that name may run an Envoy
            // in the traffic path: neither a sidecar nor its absence.
            Sidecar::NotInjected(_) => false,
            Sidecar::AnnotatedOnly | Sidecar::None => !want,
        });
    // A pod without an istio-proxy container never grows one; a pod with one never
    // loses it. A not-ready proxy may still become ready.
    let settled = rollout_done
        && !pods.is_empty()
        && pods.iter().any(|(_, s)| match s {
            Sidecar::NotReady(..) => false,
            Sidecar::NotInjected(_) => true,
            other => other.present() != want,
        });
    let described: Vec<String> = pods
        .iter()
        .map(|(name, s)| format!("{name} ({s})"))
        .collect();
    Workload {
        line: format!(
            "{workload}: {} — expected {}",
            if described.is_empty() {
                "no pods".to_string()
            } else {
                described.join(", ")
            },
            if want { "a ready sidecar" } else { "none" }
        ),
        holds,
        settled,
    }
}

impl Sidecars {
    /// The part of the step's time it spends (see [`Part`](crate::verdict::Part)).
    pub fn part(&self) -> crate::verdict::Part {
        crate::verdict::Part::Convergence
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
        if self.present.is_empty() && self.absent.is_empty() {
            return Err(ctx.at_step("`sidecars` names no workload"));
        }
        for w in self.present.iter().chain(&self.absent) {
            ctx.workload(w, false)?;
        }
        Ok(())
    }

    pub fn deadline(&self) -> Duration {
        self.deadline.0
    }

    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        self.judge_in(&env.cluster.client, &env.config.app_namespace)
            .await
    }

    /// The verdict for the workloads of `namespace`.
    pub async fn judge_in(&self, client: &kube::Client, namespace: &str) -> Judgement {
        let started = Instant::now();
        wait::until_final(self.deadline.0, deadlines::POLL, || async {
            let mut lines = Vec::new();
            let mut failing = Vec::new();
            let mut settled = Vec::new();
            for (want, list) in [(true, &self.present), (false, &self.absent)] {
                for workload in list {
                    let pods = match workloads::pods_of(client, namespace, &workload.value).await {
                        Ok(p) => p,
                        Err(e) => return wait::Look::Final(Judgement::errored(e, started.elapsed())),
                    };
                    let done = match rollout::observe(client, namespace, &workload.value).await {
                        Ok(o) => rollout::rollout_state(&o.deployment) == RolloutState::Done,
                        Err(_) => false,
                    };
                    let states: Vec<(String, Sidecar)> = pods
                        .iter()
                        .map(|p| {
                            (
                                p.metadata.name.clone().unwrap_or_default(),
                                workloads::sidecar(p),
                            )
                        })
                        .collect();
                    let l = look(&workload.value, want, &states, done);
                    if !l.holds {
                        failing.push(l.line.clone());
                        if l.settled {
                            settled.push(workload.value.clone());
                        }
                    }
                    lines.push(l.line);
                }
            }
            let elapsed = started.elapsed();
            if failing.is_empty() {
                return wait::Look::Final(Judgement::passed(
                    Evidence::new(format!("every pod as expected after {}", secs(elapsed)))
                        .with_details(lines),
                    elapsed,
                ));
            }
            let why = if settled.is_empty() {
                format!("after {}", secs(elapsed))
            } else {
                format!(
                    "the rollout of {} is complete, so its pods will not change ({} after the start)",
                    settled.join(", "),
                    secs(elapsed)
                )
            };
            let judgement = Judgement::failed(
                Evidence::new(format!("{}; {why}", failing.join("; "))).with_details(lines),
                elapsed,
            );
            if settled.is_empty() {
                wait::Look::Pending(judgement)
            } else {
                wait::Look::Final(judgement)
            }
        })
        .await
    }
}

impl fmt::Display for Sidecars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.present.is_empty() {
            parts.push(format!(
                "a ready sidecar in every pod of {}",
                names(&self.present)
            ));
        }
        if !self.absent.is_empty() {
            parts.push(format!("no sidecar in {}", names(&self.absent)));
        }
        write!(f, "{} (within {})", parts.join("; "), self.deadline)
    }
}

#[cfg(test)]
mod adversarial_tests {
    use super::*;
    use crate::cluster::workloads::Placement;

    /// A pod with a ready `istio-proxy` container whose injector status annotation is
    /// missing or does not list it (stripped by another admission webhook or policy
    /// engine, or a status format this harness does not parse) has an Envoy in its
    /// traffic path all the same; SPEC §4 calls any such container a sidecar. Neither
    /// `present` nor `absent` holds over it, so O1's and O3's "no sidecar in …" cannot
    /// pass with a running proxy in the pod.
    #[test]
    fn a_ready_istio_proxy_is_not_absent_whatever_the_annotation_says() {
        let pods = vec![(
            "sentences-5d9c".to_string(),
            Sidecar::NotInjected(Placement::Classic),
        )];
        let l = look("sentences", false, &pods, true);
        assert!(!l.holds, "{}", l.line);
        assert!(l.settled, "the container will not go away: {}", l.line);
        let l = look("sentences", true, &pods, true);
        assert!(!l.holds && l.settled, "{}", l.line);
    }
}
