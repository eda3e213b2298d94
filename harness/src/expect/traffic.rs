//! `flows`, `fails` and `holds`: verdicts over series of requests through the ingress
//! gateway. While waiting for traffic to change, requests go out at a fixed short pace
//! (a flip is seen within one pace plus one request); inside windows at the hold pace.
//!
//! What counts:
//! - `flows`: 200 with a sentence of the deployed app (its configured names and ages);
//!   K in a row, and with `from_each`, every listed `name` workload answered in that run.
//! - `fails`: the app's own error answer (for 500: Flask/Werkzeug's error page, which the
//!   frontend answers when a backend reset its connection) — never a 500 the gateway
//!   made up, an Envoy local reply, or an empty body. K in a row to converge, then every
//!   request over a window ("100 % errors" shown over time).
//! - `holds`: every request over a window ends in the class (`ok`, or an HTTP class
//!   counted like `fails`).
//!
//! A verdict on Istio needs the path to the gateway: when nothing reached it, or the
//! harness's own port-forward failed where it mattered, the result is an environment
//! error, not a failure. A failure keeps its deadline and says whether the mesh's
//! config had converged by then (`convergence.rs`).
//!
//! Longer than most files because the three verdicts share one pacing loop, one
//! accounting of what reached the app and one rule for the path; apart, they would drift.

use super::{Env, convergence, secs};
use crate::deadlines;
use crate::probe::Probe;
use crate::probe::class::{Origin, ResultClass};
use crate::probe::classify::Observation;
use crate::probe::tally::Tally;
use crate::suite::duration::HumanDuration;
use crate::suite::model::names;
use crate::suite::validation::Validation;
use crate::suite::{Expectation, SuiteError};
use crate::verdict::{Evidence, Judgement, Verdict};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

fn flows_consecutive() -> u32 {
    10
}
fn fails_consecutive() -> u32 {
    10
}
fn min_requests() -> u32 {
    20
}
fn traffic_deadline() -> HumanDuration {
    HumanDuration(deadlines::TRAFFIC)
}
fn hold_window() -> HumanDuration {
    HumanDuration(deadlines::HOLD_WINDOW)
}
fn fail_window() -> HumanDuration {
    HumanDuration(deadlines::FAIL_WINDOW)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flows {
    #[serde(default = "flows_consecutive")]
    pub consecutive: u32,
    /// `name` workloads that must each have answered within the final run (e.g. both
    /// subsets of a 50/50 route).
    #[serde(default)]
    pub from_each: Vec<Spanned<String>>,
    #[serde(default = "traffic_deadline")]
    pub deadline: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fails {
    /// The HTTP class of the app's error answer (`http-500`, or `http-error` for any).
    pub class: Spanned<ResultClass>,
    /// Consecutive app errors that show the change arrived, before the window starts.
    #[serde(default = "fails_consecutive")]
    pub consecutive: u32,
    /// Every request over this window must be the app's error answer.
    #[serde(default = "fail_window")]
    pub window: HumanDuration,
    #[serde(default = "min_requests")]
    pub min_requests: u32,
    #[serde(default = "traffic_deadline")]
    pub deadline: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holds {
    pub class: Spanned<ResultClass>,
    #[serde(default = "hold_window")]
    pub window: HumanDuration,
    /// At least this many results inside the window, or the hold proves nothing.
    #[serde(default = "min_requests")]
    pub min_requests: u32,
}

/// `ok` or an HTTP class: anything else (reset, refused, timeout) cannot be told apart
/// from a dead path to the gateway.
fn http_class(
    ctx: &Validation<'_>,
    field: &str,
    class: &Spanned<ResultClass>,
    allow_ok: bool,
) -> Result<(), SuiteError> {
    let fine = match class.value {
        ResultClass::Ok => allow_ok,
        ResultClass::HttpError(_) => true,
        _ => false,
    };
    if fine {
        return Ok(());
    }
    Err(ctx.error(
        &class.referenced,
        format!(
            "`{field}` needs {}an HTTP class such as http-500: `{}` cannot be told apart from a dead path to the gateway",
            if allow_ok { "`ok` or " } else { "" },
            class.value
        ),
    ))
}

/// Whether `obs` is the app's error answer of class `want` (an HTTP class).
fn app_error(want: ResultClass, obs: &Observation) -> bool {
    want.matches(obs.class) && obs.origin == Some(Origin::App)
}

/// Whether `obs` is what a `holds`/`fails` of class `want` counts.
fn counts_as(want: ResultClass, obs: &Observation) -> bool {
    match want {
        ResultClass::Ok => obs.class == ResultClass::Ok,
        _ => app_error(want, obs),
    }
}

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

/// The verdict when an expectation over traffic did not hold by its end: an error when
/// the harness's side explains it (nothing reached the gateway, this client distrusts
/// the gateway's certificate, or only the harness's own path failed), else a failure.
fn did_not_hold(tally: &Tally, started: Instant, target: &str, summary: String) -> Judgement {
    if tally.reached == 0 {
        return unreachable(tally, started, target);
    }
    let elapsed = started.elapsed();
    if let Some(why) = &tally.server_untrusted {
        return Judgement {
            verdict: Verdict::Errored,
            evidence: Evidence::new(format!(
                "this client does not trust the gateway's certificate ({why}): the TLS secret or the SNI is wrong; not a verdict on Istio; classes: {}",
                tally.classes()
            ))
            .with_details(tally.details(target)),
            elapsed,
        };
    }
    let wrong_answers = tally
        .by_class
        .iter()
        .any(|(class, _)| class.starts_with("http-") || class == "reset" || class == "tls");
    if !wrong_answers && tally.not_reached > 0 {
        return Judgement {
            verdict: Verdict::Errored,
            evidence: Evidence::new(format!(
                "the harness's path to the gateway failed {}× ({}); not a verdict on Istio; {summary}",
                tally.not_reached,
                tally.path_cause.as_deref().unwrap_or("no cause recorded")
            ))
            .with_details(tally.details(target)),
            elapsed,
        };
    }
    Judgement::failed(
        Evidence::new(summary).with_details(tally.details(target)),
        elapsed,
    )
}

/// The last result, for summaries.
fn last(tally: &Tally) -> String {
    tally
        .last
        .as_ref()
        .map(Observation::short)
        .unwrap_or_default()
}

/// Ends a traffic wait early: given a failed answer, why it cannot turn into a
/// success by itself (the world's own account of it), if that is so.
pub trait Stop: Sync {
    fn why<'a>(
        &'a self,
        obs: &'a Observation,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + 'a>>;
}

/// K consecutive successes (200 and a sentence), each of `from_each` among them.
pub async fn flows<P: Probe>(
    probe: &P,
    k: u32,
    from_each: &[String],
    deadline: Duration,
) -> Judgement {
    flows_until(probe, k, from_each, deadline, None).await
}

/// [`flows`], ended at once when `stop` explains a failed answer.
pub async fn flows_until<P: Probe>(
    probe: &P,
    k: u32,
    from_each: &[String],
    deadline: Duration,
    stop: Option<&dyn Stop>,
) -> Judgement {
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut run = 0u32;
    let mut run_from: BTreeSet<String> = BTreeSet::new();
    let mut run_started = started;
    while started.elapsed() < deadline {
        let obs = probe.once().await;
        tally.add(&obs);
        if obs.class == ResultClass::Ok {
            if run == 0 {
                run_started = Instant::now().checked_sub(obs.elapsed).unwrap_or(started);
                run_from.clear();
            }
            run += 1;
            if let Some(s) = &obs.sentence {
                run_from.extend(s.from.split('|').map(str::to_string));
            }
            tally.longest_run = tally.longest_run.max(run);
            let missing: Vec<&String> = from_each
                .iter()
                .filter(|w| !run_from.contains(*w))
                .collect();
            if run >= k && missing.is_empty() {
                let mut details = tally.details(&probe.target());
                details.push(format!(
                    "the final run of {run} began {} after the start",
                    secs(run_started.saturating_duration_since(started))
                ));
                return Judgement::passed(
                    Evidence::new(format!(
                        "{run} consecutive sentences after {} requests in {}; classes: {}{}",
                        tally.sent,
                        secs(started.elapsed()),
                        tally.classes(),
                        if tally.by_name_workload.is_empty() {
                            String::new()
                        } else {
                            format!("; names from {}", tally.names())
                        }
                    ))
                    .with_details(details),
                    started.elapsed(),
                );
            }
        } else {
            run = 0;
            if let Some(stop) = stop
                && let Some(why) = stop.why(&obs).await
            {
                let summary = format!(
                    "expected {k} consecutive sentences, but {why}; ended {} after the start: it will not heal by itself; classes: {}; {} requests; last: {}",
                    secs(started.elapsed()),
                    tally.classes(),
                    tally.sent,
                    obs.short()
                );
                let mut evidence =
                    Evidence::new(summary).with_details(tally.details(&probe.target()));
                evidence.details.push(why);
                return Judgement::failed(evidence, started.elapsed());
            }
            let left = deadline.saturating_sub(started.elapsed());
            tokio::time::sleep(deadlines::TRAFFIC_PACE.min(left)).await;
        }
    }
    let missing: Vec<&String> = from_each
        .iter()
        .filter(|w| {
            !tally
                .by_name_workload
                .keys()
                .any(|k| k.split('|').any(|x| x == w.as_str()))
        })
        .collect();
    let summary = if tally.longest_run >= k && !missing.is_empty() {
        format!(
            "runs of {k} sentences, but never one with an answer from each of {}: never answered: {}; names from {}; {} requests over {}",
            from_each.join(", "),
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            tally.names(),
            tally.sent,
            secs(started.elapsed())
        )
    } else {
        format!(
            "expected {k} consecutive sentences, saw at most {} in a row; classes: {}; {} requests over {}; last: {}{}",
            tally.longest_run,
            tally.classes(),
            tally.sent,
            secs(started.elapsed()),
            last(&tally),
            match &tally.last_not_ok {
                Some(o)
                    if tally
                        .last
                        .as_ref()
                        .is_some_and(|l| l.class == ResultClass::Ok) =>
                    format!("; last not a sentence: {}", o.short()),
                _ => String::new(),
            }
        )
    };
    did_not_hold(&tally, started, &probe.target(), summary)
}

/// Every result over `window` counts as `want`, with at least `min_requests` results;
/// the first deviation ends the window. Shared by `holds` and the window of `fails`.
async fn window<P: Probe>(
    probe: &P,
    want: ResultClass,
    window: Duration,
    min_requests: u32,
    tally: &mut Tally,
) -> Result<u32, (Verdict, String)> {
    let started = Instant::now();
    let mut sent = 0u32;
    let mut pace = tokio::time::interval(deadlines::HOLD_PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while started.elapsed() < window {
        pace.tick().await;
        let obs = probe.once().await;
        tally.add(&obs);
        sent += 1;
        if !counts_as(want, &obs) {
            let verdict = if obs.class == ResultClass::NotReached || !obs.reached() {
                Verdict::Errored
            } else {
                Verdict::Failed
            };
            let what = match (obs.class, obs.origin) {
                (ResultClass::HttpError(_), Some(origin))
                    if !want.matches(obs.class) || origin != Origin::App =>
                {
                    format!("{} from {origin}", obs.short())
                }
                _ => obs.short(),
            };
            return Err((
                verdict,
                format!(
                    "request {sent} of the window, at {}, was {what}{}",
                    secs(started.elapsed()),
                    if verdict == Verdict::Errored {
                        " (the harness's path to the gateway, not a verdict on Istio)"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    if sent < min_requests {
        return Err((
            Verdict::Errored,
            format!(
                "only {sent} requests fit in the {} window (at least {min_requests} needed): the window proves nothing",
                secs(window)
            ),
        ));
    }
    Ok(sent)
}

/// What a `fails`/`holds` class counts, for the evidence.
fn counted(want: ResultClass) -> String {
    match want {
        ResultClass::Ok => "a sentence of the app".into(),
        other => format!("{other} from the app"),
    }
}

/// Every request over `window` counts as `want`.
pub async fn holds<P: Probe>(
    probe: &P,
    want: ResultClass,
    window_length: Duration,
    min_requests: u32,
) -> Judgement {
    let started = Instant::now();
    let mut tally = Tally::default();
    match window(probe, want, window_length, min_requests, &mut tally).await {
        Ok(sent) => Judgement::passed(
            Evidence::new(format!(
                "all {sent} requests over {} were {}",
                secs(started.elapsed()),
                counted(want)
            ))
            .with_details(tally.details(&probe.target())),
            started.elapsed(),
        ),
        Err((verdict, why)) => {
            if tally.reached == 0 {
                return unreachable(&tally, started, &probe.target());
            }
            Judgement {
                verdict,
                evidence: Evidence::new(format!(
                    "expected every request over {} to be {}; {why}; classes: {}",
                    secs(window_length),
                    counted(want),
                    tally.classes()
                ))
                .with_details(tally.details(&probe.target())),
                elapsed: started.elapsed(),
            }
        }
    }
}

/// The app's error answer `want`: K in a row (the change arrived), then every request
/// over `window_length`.
pub async fn fails<P: Probe>(
    probe: &P,
    want: ResultClass,
    k: u32,
    window_length: Duration,
    min_requests: u32,
    deadline: Duration,
) -> Judgement {
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut run = 0u32;
    while run < k && started.elapsed() < deadline {
        let obs = probe.once().await;
        tally.add(&obs);
        if app_error(want, &obs) {
            run += 1;
            tally.longest_run = tally.longest_run.max(run);
        } else {
            run = 0;
            let left = deadline.saturating_sub(started.elapsed());
            tokio::time::sleep(deadlines::TRAFFIC_PACE.min(left)).await;
        }
    }
    if run < k {
        let summary = format!(
            "expected {k} consecutive {}, saw at most {} in a row; classes: {}{}; {} requests over {}; last: {}",
            counted(want),
            tally.longest_run,
            tally.classes(),
            if tally.errors_by_origin.is_empty() {
                String::new()
            } else {
                format!("; error answers: {}", tally.origins())
            },
            tally.sent,
            secs(started.elapsed()),
            last(&tally)
        );
        return did_not_hold(&tally, started, &probe.target(), summary);
    }
    let converged = started.elapsed();
    match window(probe, want, window_length, min_requests, &mut tally).await {
        Ok(sent) => Judgement::passed(
            Evidence::new(format!(
                "every request failed with {}: {k} in a row after {}, then all {sent} over a {} window; error answers: {}",
                counted(want),
                secs(converged),
                secs(window_length),
                tally.origins()
            ))
            .with_details(tally.details(&probe.target())),
            started.elapsed(),
        ),
        Err((verdict, why)) => Judgement {
            verdict,
            evidence: Evidence::new(format!(
                "not every request failed with {}: {k} in a row after {}, then {why}; classes: {}",
                counted(want),
                secs(converged),
                tally.classes()
            ))
            .with_details(tally.details(&probe.target())),
            elapsed: started.elapsed(),
        },
    }
}

impl Flows {
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
        ctx.positive("flows.consecutive", self.consecutive)?;
        for w in &self.from_each {
            ctx.workload(w, false)?;
        }
        Ok(())
    }

    pub fn deadline(&self) -> Duration {
        self.deadline.0
    }

    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        let judgement = match env.http_probe() {
            Ok(p) => {
                let from_each: Vec<String> =
                    self.from_each.iter().map(|s| s.value.clone()).collect();
                let watch = super::handshake::HandshakeWatch::new(env);
                flows_until(
                    &p,
                    self.consecutive,
                    &from_each,
                    self.deadline.0,
                    Some(&watch),
                )
                .await
            }
            Err(e) => Judgement::errored(e, Duration::ZERO),
        };
        convergence::annotate(env, judgement).await
    }
}

impl fmt::Display for Flows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "traffic flows: {} consecutive 200s with a sentence of the app{} (within {})",
            self.consecutive,
            if self.from_each.is_empty() {
                String::new()
            } else {
                format!(", answered by each of {}", names(&self.from_each))
            },
            self.deadline
        )
    }
}

impl Fails {
    /// The part of the step's time it spends (see [`Part`](crate::verdict::Part)).
    pub fn part(&self) -> crate::verdict::Part {
        crate::verdict::Part::Traffic
    }

    /// The least time it takes in a world already as expected: its window.
    pub fn least_time(&self, _scrape: Duration) -> Duration {
        self.window.0
    }

    pub fn validate(
        &self,
        ctx: &mut Validation<'_>,
        _earlier: &[Expectation],
    ) -> Result<(), SuiteError> {
        ctx.positive("fails.consecutive", self.consecutive)?;
        ctx.positive("fails.min_requests", self.min_requests)?;
        http_class(ctx, "fails", &self.class, false)
    }

    pub fn deadline(&self) -> Duration {
        self.deadline.0 + self.window.0
    }

    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        let judgement = match env.http_probe() {
            Ok(p) => {
                fails(
                    &p,
                    self.class.value,
                    self.consecutive,
                    self.window.0,
                    self.min_requests,
                    self.deadline.0,
                )
                .await
            }
            Err(e) => Judgement::errored(e, Duration::ZERO),
        };
        convergence::annotate(env, judgement).await
    }
}

impl fmt::Display for Fails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "traffic fails: {}, {} in a row (within {}), then every request over {} (at least {})",
            counted(self.class.value),
            self.consecutive,
            self.deadline,
            self.window,
            self.min_requests
        )
    }
}

impl Holds {
    /// The part of the step's time it spends (see [`Part`](crate::verdict::Part)).
    pub fn part(&self) -> crate::verdict::Part {
        crate::verdict::Part::Traffic
    }

    /// The least time it takes in a world already as expected: its window.
    pub fn least_time(&self, _scrape: Duration) -> Duration {
        self.window.0
    }

    pub fn validate(
        &self,
        ctx: &mut Validation<'_>,
        _earlier: &[Expectation],
    ) -> Result<(), SuiteError> {
        ctx.positive("holds.min_requests", self.min_requests)?;
        http_class(ctx, "holds", &self.class, true)
    }

    pub fn deadline(&self) -> Duration {
        self.window.0
    }

    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        let judgement = match env.http_probe() {
            Ok(p) => holds(&p, self.class.value, self.window.0, self.min_requests).await,
            Err(e) => Judgement::errored(e, Duration::ZERO),
        };
        convergence::annotate(env, judgement).await
    }
}

impl fmt::Display for Holds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "every request over {} is {} (at least {} requests)",
            self.window,
            counted(self.class.value),
            self.min_requests
        )
    }
}
