//! Expectations over a probe: K consecutive results of a class, every result of a
//! class over a window. They poll until the expectation holds or the deadline passes
//! and always return their evidence. A verdict on Istio needs the path to the gateway
//! to work: when no request reached anything (all refused or timed out) the result is
//! an environment error, not a failure.

use super::Probe;
use super::classify::Observation;
use crate::runner::record::{Evidence, Verdict};
use crate::suite::model::ResultClass;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Backoff after a result that breaks the run: a quick retry, growing to this bound.
const MAX_BACKOFF: Duration = Duration::from_millis(1000);
/// Pace of requests inside a hold window.
const HOLD_PACE: Duration = Duration::from_millis(100);

/// A verdict with its evidence and how long judging took.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub verdict: Verdict,
    pub evidence: Evidence,
    pub elapsed: Duration,
}

/// Counts of what came back, for the evidence.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: u32,
    pub by_class: BTreeMap<String, u32>,
    pub first: Option<Observation>,
    pub last: Option<Observation>,
    pub reached: u32,
    pub longest_run: u32,
    /// Why this client refused the server's certificate, if it ever did.
    pub server_untrusted: Option<String>,
}

impl Tally {
    pub fn add(&mut self, obs: &Observation) {
        self.sent += 1;
        *self.by_class.entry(obs.class.to_string()).or_default() += 1;
        if obs.reached() {
            self.reached += 1;
        }
        if let Some(super::classify::TlsSignal::ServerUntrusted(why)) = &obs.tls {
            self.server_untrusted.get_or_insert_with(|| why.clone());
        }
        if self.first.is_none() {
            self.first = Some(obs.clone());
        }
        self.last = Some(obs.clone());
    }

    /// `http-500×17, ok×3`, most frequent first.
    pub fn classes(&self) -> String {
        let mut counts: Vec<(&String, &u32)> = self.by_class.iter().collect();
        counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        counts
            .iter()
            .map(|(c, n)| format!("{c}×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn details(&self, target: &str) -> Vec<String> {
        let mut lines = vec![
            format!("target: {target}"),
            format!("requests: {}; classes: {}", self.sent, self.classes()),
        ];
        if let Some(first) = &self.first {
            lines.push(format!("first: {}", first.short()));
        }
        if let Some(last) = &self.last {
            lines.push(format!("last: {}", last.short()));
        }
        lines
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The environment error when nothing reached the gateway.
fn unreachable(tally: &Tally, started: Instant, target: &str) -> Judgement {
    Judgement {
        verdict: Verdict::Errored,
        evidence: Evidence::new(format!(
            "no request reached the gateway ({}) in {}: the path to it (port-forward or --ingress-address) is down; not a verdict on Istio",
            tally.classes(),
            secs(started.elapsed())
        ))
        .with_details(tally.details(target)),
        elapsed: started.elapsed(),
    }
}

/// K consecutive results matching `want` (e.g. `ok` for "flows", `http-500` for O3).
pub async fn consecutive<P: Probe>(
    probe: &P,
    want: ResultClass,
    k: u32,
    deadline: Duration,
) -> Judgement {
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut run = 0u32;
    let mut run_started = started;
    let mut backoff = Duration::from_millis(50);
    while started.elapsed() < deadline {
        let obs = probe.once().await;
        tally.add(&obs);
        if want.matches(obs.class) {
            if run == 0 {
                run_started = Instant::now() - obs.elapsed;
            }
            run += 1;
            tally.longest_run = tally.longest_run.max(run);
            backoff = Duration::from_millis(50);
            if run >= k {
                let mut details = tally.details(&probe.target());
                details.push(format!(
                    "the final run of {k} began {} after the start",
                    secs(run_started.saturating_duration_since(started))
                ));
                return Judgement {
                    verdict: Verdict::Passed,
                    evidence: Evidence::new(format!(
                        "{k} consecutive {want} after {} requests in {}; classes: {}",
                        tally.sent,
                        secs(started.elapsed()),
                        tally.classes()
                    ))
                    .with_details(details),
                    elapsed: started.elapsed(),
                };
            }
        } else {
            run = 0;
            let left = deadline.saturating_sub(started.elapsed());
            tokio::time::sleep(backoff.min(left)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    if tally.reached == 0 {
        return unreachable(&tally, started, &probe.target());
    }
    if let Some(why) = &tally.server_untrusted {
        return Judgement {
            verdict: Verdict::Errored,
            evidence: Evidence::new(format!(
                "this client does not trust the gateway's certificate ({why}): the TLS secret or the SNI is wrong; not a verdict on Istio; classes: {}",
                tally.classes()
            ))
            .with_details(tally.details(&probe.target())),
            elapsed: started.elapsed(),
        };
    }
    Judgement {
        verdict: Verdict::Failed,
        evidence: Evidence::new(format!(
            "expected {k} consecutive {want}, saw at most {} in a row; classes: {}; {} requests over {}; last: {}",
            tally.longest_run,
            tally.classes(),
            tally.sent,
            secs(started.elapsed()),
            tally.last.as_ref().map(Observation::short).unwrap_or_default()
        ))
        .with_details(tally.details(&probe.target())),
        elapsed: started.elapsed(),
    }
}

/// Every result over `window` matches `want`, with at least `min_requests` results.
/// The first deviation fails at once, naming when it came.
pub async fn holds<P: Probe>(
    probe: &P,
    want: ResultClass,
    window: Duration,
    min_requests: u32,
) -> Judgement {
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut pace = tokio::time::interval(HOLD_PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while started.elapsed() < window {
        pace.tick().await;
        let obs = probe.once().await;
        tally.add(&obs);
        if !want.matches(obs.class) {
            if tally.reached == 0 {
                return unreachable(&tally, started, &probe.target());
            }
            return Judgement {
                verdict: Verdict::Failed,
                evidence: Evidence::new(format!(
                    "expected every request over {} to be {want}; request {} at {} was {}; classes: {}",
                    secs(window),
                    tally.sent,
                    secs(started.elapsed()),
                    obs.short(),
                    tally.classes()
                ))
                .with_details(tally.details(&probe.target())),
                elapsed: started.elapsed(),
            };
        }
    }
    if tally.sent < min_requests {
        return Judgement {
            verdict: Verdict::Errored,
            evidence: Evidence::new(format!(
                "only {} requests fit in the {} window (at least {min_requests} needed): the hold proves nothing",
                tally.sent,
                secs(window)
            ))
            .with_details(tally.details(&probe.target())),
            elapsed: started.elapsed(),
        };
    }
    Judgement {
        verdict: Verdict::Passed,
        evidence: Evidence::new(format!(
            "all {} requests over {} were {want}",
            tally.sent,
            secs(started.elapsed())
        ))
        .with_details(tally.details(&probe.target())),
        elapsed: started.elapsed(),
    }
}
