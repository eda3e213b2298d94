//! One telemetry phase: make sure the proxies that will report are scraped, take a
//! baseline once every target was scraped again (quiet), send the phase's traffic, wait
//! two scrapes, then judge the deltas — again at every scrape until the judgement holds,
//! can no longer hold, or the deadline passes. Waits follow the scrapes Prometheus
//! actually makes; their pace is derived from the scrape interval it reports.

use super::addon;
use super::deltas::{self, Deltas};
use super::prometheus::Prometheus;
use super::targets::Targets;
use crate::verdict::{Evidence, Judgement, Verdict};
use std::time::{Duration, Instant};

/// What the phase's traffic was.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    pub summary: String,
    pub sent: u32,
    /// Requests the app answered (a sentence, or the app's own error page): each of them
    /// went gateway → frontend, and frontend → each backend once.
    pub app_answers: u32,
}

/// One look at the deltas.
pub enum Look {
    Holds(Evidence),
    /// Not yet; scrapes may still bring what is missing.
    NotYet(Evidence),
    /// Counters only grow: this can no longer hold.
    Final(Evidence),
    /// The harness cannot judge (e.g. deltas that include requests from outside the phase).
    Error(Evidence),
}

impl Look {
    pub fn evidence_mut(&mut self) -> &mut Evidence {
        match self {
            Look::Holds(e) | Look::NotYet(e) | Look::Final(e) | Look::Error(e) => e,
        }
    }
}

/// The scrape interval of the job that scrapes the proxies, as Prometheus reports it.
pub async fn scrape_interval(prometheus: &Prometheus) -> Result<Duration, String> {
    let config = prometheus.config_yaml().await?;
    addon::scrape_interval(&config, "kubernetes-pods")
}

/// Scrape intervals a phase may spend waiting, in a world already right: up to 2 until
/// its targets are ready (a pod that just became ready is discovered, then scraped), 1
/// for the quiet baseline, 2 after the traffic, and 1 more for the traffic itself and a
/// counter that lands one scrape late. Six of the addon's 15 s fit in
/// [`deadlines::TELEMETRY`](crate::deadlines::TELEMETRY); six of a user's 60 s do not.
pub const SCRAPES_PER_PHASE: u32 = 6;

/// The phase's deadline: `deadline`, or [`SCRAPES_PER_PHASE`] scrape intervals when
/// that is longer (a shorter deadline could only end before the scrapes it needs), but
/// never past [`deadlines::TELEMETRY_MAX`](crate::deadlines::TELEMETRY_MAX).
pub fn phase_deadline(deadline: Duration, interval: Duration) -> Duration {
    deadline.max(
        interval
            .saturating_mul(SCRAPES_PER_PHASE)
            .min(crate::deadlines::TELEMETRY_MAX),
    )
}

/// The scrape interval a phase paces itself by, and what the evidence says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pace {
    pub interval: Duration,
    /// Whether Prometheus reported the interval (else it is assumed).
    pub read_back: bool,
    pub note: String,
}

impl Pace {
    /// From what reading the interval back gave. Without a readable configuration (a
    /// user's own Prometheus may hide it), poll as if the addon's default were set.
    pub fn from_read(read: Result<Duration, String>) -> Pace {
        match read {
            Ok(interval) => Pace {
                interval,
                read_back: true,
                note: format!(
                    "scrape interval {} (read back from Prometheus)",
                    addon::prometheus_duration(interval)
                ),
            },
            Err(e) => Pace {
                interval: Duration::from_secs(15),
                read_back: false,
                note: format!("scrape interval unknown ({e}); assuming 15s"),
            },
        }
    }

    /// The phase's deadline for the one `asked`: only an interval read back raises it
    /// (an assumed one says nothing about the scrapes).
    pub fn deadline(&self, asked: Duration) -> PhaseDeadline {
        let kept = PhaseDeadline {
            deadline: asked,
            note: None,
            capped: false,
        };
        if !self.read_back {
            return kept;
        }
        let raised = phase_deadline(asked, self.interval);
        if raised <= asked {
            return kept;
        }
        let wanted = self.interval.saturating_mul(SCRAPES_PER_PHASE);
        let capped = wanted > raised;
        let cap_note = if capped {
            format!(
                "; {SCRAPES_PER_PHASE} scrape intervals would be {}: capped",
                addon::prometheus_duration(wanted)
            )
        } else {
            String::new()
        };
        PhaseDeadline {
            deadline: raised,
            note: Some(format!(
                "deadline raised from {} to {} ({SCRAPES_PER_PHASE} scrape intervals{cap_note})",
                addon::prometheus_duration(asked),
                addon::prometheus_duration(raised)
            )),
            capped,
        }
    }
}

/// A telemetry phase's deadline once the scrape interval had its say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseDeadline {
    pub deadline: Duration,
    /// For the evidence, when the deadline was raised.
    pub note: Option<String>,
    /// Raised for the scrapes but cut short by the cap: running out of time is then
    /// the harness's limit, an ERROR, never a verdict on Istio. (A suite's own longer
    /// deadline is never raised, so never capped.)
    pub capped: bool,
}

/// A look as a verdict, or `Err` when the phase must look again (not yet, and time
/// left). At the deadline "not yet" is a failure, unless the deadline was cut short by
/// the cap for a slow scrape interval (`capped`): then it is the harness's limit, an
/// ERROR.
fn settle(
    look: Look,
    at_deadline: bool,
    capped: Option<Duration>,
) -> Result<(Verdict, Evidence), ()> {
    match look {
        Look::Holds(e) => Ok((Verdict::Passed, e)),
        Look::Final(e) => Ok((Verdict::Failed, e)),
        Look::Error(e) => Ok((Verdict::Errored, e)),
        Look::NotYet(mut e) if at_deadline => match capped {
            Some(interval) => {
                e.summary = format!(
                    "{}; the phase ran out of scrapes at its {} cap (Prometheus scrapes every {}): not a verdict",
                    e.summary,
                    addon::prometheus_duration(crate::deadlines::TELEMETRY_MAX),
                    addon::prometheus_duration(interval)
                );
                Ok((Verdict::Errored, e))
            }
            None => Ok((Verdict::Failed, e)),
        },
        Look::NotYet(_) => Err(()),
    }
}

pub async fn run<F, Fut, J>(
    prometheus: &Prometheus,
    targets: &Targets,
    deadline: Duration,
    send_traffic: F,
    mut judge: J,
) -> Judgement
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Traffic, String>>,
    J: FnMut(&Deltas, &Traffic) -> Look,
{
    let started = Instant::now();
    let error = |message: String| Judgement::errored(message, started.elapsed());
    let scrapes = Pace::from_read(scrape_interval(prometheus).await);
    let PhaseDeadline {
        deadline,
        note: raised,
        capped,
    } = scrapes.deadline(deadline);
    let interval_note = match raised {
        Some(raised) => format!("{}; {raised}", scrapes.note),
        None => scrapes.note,
    };
    let left = || deadline.saturating_sub(started.elapsed());
    let pace = (scrapes.interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let targets_note = match targets.ready(prometheus, left(), pace).await {
        Ok(note) => note,
        Err(e) => return error(e),
    };
    let quiet_from = match prometheus.now().await {
        Ok(t) => t,
        Err(e) => return error(e),
    };
    if let Err(e) = targets
        .scraped_after(prometheus, quiet_from, left(), pace)
        .await
    {
        return error(e);
    }
    let before = match deltas::snapshot(prometheus).await {
        Ok(s) => s,
        Err(e) => return error(e),
    };
    let quiet = started.elapsed();
    let traffic = match send_traffic().await {
        Ok(t) => t,
        Err(e) => return error(format!("the phase's traffic could not be sent: {e}")),
    };
    let traffic_time = started.elapsed() - quiet;
    let traffic_end = match prometheus.now().await {
        Ok(t) => t,
        Err(e) => return error(e),
    };
    // Two scrapes after the traffic before any verdict.
    let first = match targets
        .scraped_after(prometheus, traffic_end, left(), pace)
        .await
    {
        Ok(t) => t,
        Err(e) => return error(e),
    };
    let mut last_scrape = match targets.scraped_after(prometheus, first, left(), pace).await {
        Ok(t) => t,
        Err(e) => return error(e),
    };
    loop {
        let after = match deltas::snapshot(prometheus).await {
            Ok(s) => s,
            Err(e) => return error(e),
        };
        let deltas = Deltas::between(&before, &after);
        let look = judge(&deltas, &traffic);
        let at_deadline = started.elapsed() >= deadline;
        let (verdict, mut evidence) =
            match settle(look, at_deadline, capped.then_some(scrapes.interval)) {
                Ok(settled) => settled,
                Err(()) => {
                    // When the deadline passes here, the next look reports the verdict.
                    if let Ok(t) = targets
                        .scraped_after(prometheus, last_scrape, left(), pace)
                        .await
                    {
                        last_scrape = t;
                    }
                    continue;
                }
            };
        let mut details = vec![
            format!("Prometheus: {}; {interval_note}", prometheus.base()),
            targets_note,
            format!(
                "baseline at {:.3}, judged at {:.3} (Prometheus time), {:.1} s after the traffic",
                before.at,
                after.at,
                after.at - traffic_end
            ),
            format!("traffic: {}", traffic.summary),
        ];
        details.append(&mut evidence.details);
        evidence.details = details;
        evidence.timing.traffic = traffic_time;
        evidence.timing.telemetry = started.elapsed().saturating_sub(traffic_time);
        return Judgement {
            verdict,
            evidence,
            elapsed: started.elapsed(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadlines::TELEMETRY;

    #[test]
    fn not_yet_at_a_capped_deadline_is_an_error_not_a_failure() {
        let not_yet = || Look::NotYet(Evidence::new("short of 20 requests".to_string()));
        assert!(settle(not_yet(), false, None).is_err(), "looks again");
        let (verdict, _) = settle(not_yet(), true, None).unwrap();
        assert_eq!(verdict, Verdict::Failed);
        let (verdict, evidence) = settle(not_yet(), true, Some(Duration::from_secs(300))).unwrap();
        assert_eq!(verdict, Verdict::Errored);
        assert!(
            evidence
                .summary
                .contains("at its 600s cap (Prometheus scrapes every 300s)"),
            "{}",
            evidence.summary
        );
    }

    #[test]
    fn the_deadline_covers_the_phases_scrapes_at_any_interval() {
        // The addon's 15 s and the harness's 5 s fit in the default.
        assert_eq!(
            phase_deadline(TELEMETRY, Duration::from_secs(15)),
            TELEMETRY
        );
        assert_eq!(phase_deadline(TELEMETRY, Duration::from_secs(5)), TELEMETRY);
        // A user's Prometheus scraping every minute: six minutes, not an error at 3.
        assert_eq!(
            phase_deadline(TELEMETRY, Duration::from_secs(60)),
            Duration::from_secs(360)
        );
        // A suite's own shorter deadline is raised only as far as the scrapes need.
        assert_eq!(
            phase_deadline(Duration::from_secs(20), Duration::from_secs(1)),
            Duration::from_secs(20)
        );
        assert_eq!(
            phase_deadline(Duration::from_secs(20), Duration::from_secs(5)),
            Duration::from_secs(30)
        );
        // Every five minutes: capped, and the evidence says so.
        assert_eq!(
            phase_deadline(TELEMETRY, Duration::from_secs(300)),
            crate::deadlines::TELEMETRY_MAX
        );
        assert_eq!(
            Pace::from_read(Ok(Duration::from_secs(300))).deadline(TELEMETRY),
            PhaseDeadline {
                deadline: crate::deadlines::TELEMETRY_MAX,
                note: Some(
                    "deadline raised from 180s to 600s (6 scrape intervals; 6 scrape intervals would be 1800s: capped)"
                        .into()
                ),
                capped: true,
            }
        );
        // A suite's own deadline past the cap is its author's: not raised, not capped.
        let own = Duration::from_secs(900);
        assert_eq!(
            Pace::from_read(Ok(Duration::from_secs(300))).deadline(own),
            PhaseDeadline {
                deadline: own,
                note: None,
                capped: false,
            }
        );
    }

    #[test]
    fn an_interval_read_back_is_shown_and_raises_the_deadline() {
        let pace = Pace::from_read(Ok(Duration::from_secs(60)));
        assert!(pace.read_back);
        assert_eq!(pace.note, "scrape interval 60s (read back from Prometheus)");
        assert_eq!(
            pace.deadline(TELEMETRY),
            PhaseDeadline {
                deadline: Duration::from_secs(360),
                note: Some("deadline raised from 180s to 360s (6 scrape intervals)".into()),
                capped: false,
            }
        );
        let quick = Pace::from_read(Ok(Duration::from_secs(5)));
        assert_eq!(quick.note, "scrape interval 5s (read back from Prometheus)");
        assert_eq!(quick.deadline(TELEMETRY).deadline, TELEMETRY);
        assert_eq!(quick.deadline(TELEMETRY).note, None);
    }

    #[test]
    fn an_assumed_interval_says_so_and_keeps_the_deadline() {
        let pace = Pace::from_read(Err("403 Forbidden".into()));
        assert!(!pace.read_back);
        assert_eq!(pace.interval, Duration::from_secs(15));
        assert_eq!(
            pace.note,
            "scrape interval unknown (403 Forbidden); assuming 15s"
        );
        assert_eq!(
            pace.deadline(Duration::from_secs(2)),
            PhaseDeadline {
                deadline: Duration::from_secs(2),
                note: None,
                capped: false,
            }
        );
    }
}
