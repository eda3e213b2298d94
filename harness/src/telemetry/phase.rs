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
    let left = || deadline.saturating_sub(started.elapsed());
    // Without a readable configuration (a user's own Prometheus may hide it), poll as if
    // the addon's default were set.
    let (interval, interval_note) = match scrape_interval(prometheus).await {
        Ok(i) => (
            i,
            format!(
                "scrape interval {} (read back from Prometheus)",
                addon::prometheus_duration(i)
            ),
        ),
        Err(e) => (
            Duration::from_secs(15),
            format!("scrape interval unknown ({e}); assuming 15s"),
        ),
    };
    let pace = (interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
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
        let (verdict, mut evidence) = match look {
            Look::Holds(e) => (Verdict::Passed, e),
            Look::Final(e) => (Verdict::Failed, e),
            Look::Error(e) => (Verdict::Errored, e),
            Look::NotYet(e) if at_deadline => (Verdict::Failed, e),
            Look::NotYet(_) => {
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
