//! Judging mTLS per edge from Prometheus. Kiali draws its padlock
//! (kiali `graph/telemetry/istio/appender/security_policy.go`) from the
//! destination-reported request rate grouped by `connection_security_policy`: padlock
//! when the `mutual_tls` share is > 0. The padlock is shown; the verdict is stricter:
//! an edge expected with mTLS must carry no plaintext at all, an edge expected without
//! must carry no mTLS. Counters only grow and old series stay, so only deltas since a
//! phase start mean anything; a series absent at the start counts as 0.

use super::prometheus::{Labels, Prometheus};
use crate::verdict::{EdgeExpectation, EdgeRow, Evidence, Judgement, Padlock, Verdict};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const METRIC_QUERY: &str = r#"istio_requests_total{reporter="destination"}"#;

/// The scrape targets whose samples the verdict needs: the sidecars of the app
/// namespace, which report `reporter="destination"`. Istio's Prometheus addon scrapes
/// them in job `kubernetes-pods` every 15 s; waiting on every target instead would
/// also wait on the addon's `*-slow` jobs (every 5 min).
pub fn sidecar_targets(app_namespace: &str) -> String {
    format!(r#"up{{job="kubernetes-pods",namespace="{app_namespace}"}}"#)
}
const POLL: Duration = Duration::from_millis(500);

/// Counter values at one moment, keyed by the full label set of each series.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub at: f64,
    pub series: BTreeMap<Labels, f64>,
}

/// Request deltas of one edge by policy, and how many of them were errors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeDelta {
    pub mutual_tls: f64,
    pub none: f64,
    pub other: f64,
    /// Requests with a `response_code` outside 2xx.
    pub errors: f64,
}

impl EdgeDelta {
    pub fn total(&self) -> f64 {
        self.mutual_tls + self.none + self.other
    }

    /// Kiali's padlock.
    pub fn padlock(&self) -> Padlock {
        if self.total() <= 0.0 {
            Padlock::NoTraffic
        } else if self.mutual_tls > 0.0 {
            Padlock::Present
        } else {
            Padlock::Absent
        }
    }
}

/// Whether an edge's deltas are what the expectation asks: with a padlock, every
/// request mTLS (and at least one); without, every request plaintext (and at least one).
pub fn holds(expected: Padlock, d: &EdgeDelta) -> bool {
    match expected {
        Padlock::Present => d.mutual_tls > 0.0 && d.none == 0.0,
        Padlock::Absent => d.none > 0.0 && d.mutual_tls == 0.0,
        Padlock::NoTraffic => d.total() == 0.0,
    }
}

/// Counters only grow: once an edge carried what its expectation forbids, no later
/// scrape can make it hold.
pub fn is_final_failure(row: &EdgeRow) -> bool {
    match row.expected {
        Padlock::Present => row.plaintext > 0.0,
        Padlock::Absent => row.mutual_tls > 0.0,
        Padlock::NoTraffic => row.total() > 0.0,
    }
}

pub async fn snapshot(prometheus: &Prometheus) -> Result<Snapshot, String> {
    let at = prometheus.now().await?;
    let series = prometheus.vector(METRIC_QUERY).await?.into_iter().collect();
    Ok(Snapshot { at, series })
}

fn label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels.get(name).map(String::as_str).unwrap_or("unknown")
}

/// Deltas per (source workload, destination workload). A series absent at the start
/// counts from 0; a counter that went down was reset (pod restart) and counts from 0.
pub fn deltas(before: &Snapshot, after: &Snapshot) -> BTreeMap<(String, String), EdgeDelta> {
    let mut edges: BTreeMap<(String, String), EdgeDelta> = BTreeMap::new();
    for (labels, now) in &after.series {
        let then = before.series.get(labels).copied().unwrap_or(0.0);
        let delta = if *now >= then { now - then } else { *now };
        if delta <= 0.0 {
            continue;
        }
        let key = (
            label(labels, "source_workload").to_string(),
            label(labels, "destination_workload").to_string(),
        );
        let edge = edges.entry(key).or_default();
        if !label(labels, "response_code").starts_with('2') {
            edge.errors += delta;
        }
        match label(labels, "connection_security_policy") {
            "mutual_tls" => edge.mutual_tls += delta,
            "none" => edge.none += delta,
            _ => edge.other += delta,
        }
    }
    edges
}

/// The table rows for `expected` and whether every edge is as expected. A row without
/// traffic does not hold (nothing proves anything either way).
pub fn judge(
    expected: &[EdgeExpectation],
    deltas: &BTreeMap<(String, String), EdgeDelta>,
) -> (bool, Vec<EdgeRow>) {
    let mut all = true;
    let rows = expected
        .iter()
        .map(|e| {
            let d = deltas.get(&e.key()).cloned().unwrap_or_default();
            let want = Padlock::expected(e.padlock);
            all &= holds(want, &d);
            EdgeRow {
                from: e.from.value.clone(),
                to: e.to.value.clone(),
                mutual_tls: d.mutual_tls,
                plaintext: d.none,
                other: d.other,
                errors: d.errors,
                expected: want,
                padlock: d.padlock(),
                proxy_config_mtls: None,
            }
        })
        .collect();
    (all, rows)
}

/// Puts the proxy-config oracle beside telemetry: fills each row's proxy column from
/// `proxy` (keyed by (from, to)) and returns where the two disagree. A row without
/// traffic has no telemetry verdict to disagree with.
pub fn cross_check(rows: &mut [EdgeRow], proxy: &BTreeMap<(String, String), bool>) -> Vec<String> {
    let mut disagreements = Vec::new();
    for row in rows.iter_mut() {
        let Some(&mtls) = proxy.get(&(row.from.clone(), row.to.clone())) else {
            continue;
        };
        row.proxy_config_mtls = Some(mtls);
        let seen = match row.padlock {
            Padlock::Present => Some(true),
            Padlock::Absent => Some(false),
            Padlock::NoTraffic => None,
        };
        if let Some(seen) = seen
            && seen != mtls
        {
            disagreements.push(format!(
                "{} → {}: telemetry says {}, proxy config says {}",
                row.from,
                row.to,
                if seen { "mTLS" } else { "no mTLS" },
                if mtls { "mTLS" } else { "plaintext" }
            ));
        }
    }
    disagreements
}

/// Waits until every target of `targets` was scraped after `moment` (Prometheus time).
async fn scraped_after(
    prometheus: &Prometheus,
    targets: &str,
    moment: f64,
    started: Instant,
    deadline: Duration,
) -> Result<f64, String> {
    loop {
        let oldest = prometheus.oldest_last_scrape(targets).await?;
        if let Some(t) = oldest
            && t > moment
        {
            return Ok(t);
        }
        if started.elapsed() >= deadline {
            return Err(match oldest {
                None => {
                    format!("no Prometheus target matches `{targets}`: are the sidecars scraped?")
                }
                Some(_) => format!(
                    "Prometheus did not scrape every target of `{targets}` within {} s (is one down?)",
                    deadline.as_secs()
                ),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One line per edge: the deltas, Kiali's padlock, and what was expected.
pub fn table(rows: &[EdgeRow]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{} → {}: mutual_tls Δ {}, plaintext Δ {}{}; padlock {} (expected {}{})",
                r.from,
                r.to,
                r.mutual_tls,
                r.plaintext,
                if r.other > 0.0 {
                    format!(", other Δ {}", r.other)
                } else {
                    String::new()
                },
                r.padlock,
                r.expected,
                match r.expected {
                    Padlock::Present => ", no plaintext",
                    Padlock::Absent => ", no mTLS",
                    Padlock::NoTraffic => "",
                }
            )
        })
        .collect()
}

fn holds_row(r: &EdgeRow) -> bool {
    holds(
        r.expected,
        &EdgeDelta {
            mutual_tls: r.mutual_tls,
            none: r.plaintext,
            other: r.other,
            errors: r.errors,
        },
    )
}

/// One phase: wait for quiet (every target scraped since now), take the baseline, send
/// the phase's traffic, then judge on deltas once two scrapes passed after the traffic,
/// and again at every scrape until the verdict holds or the deadline passes.
pub async fn phase<F, Fut>(
    prometheus: &Prometheus,
    targets: &str,
    expected: &[EdgeExpectation],
    deadline: Duration,
    send_traffic: F,
) -> Judgement
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let started = Instant::now();
    let errored =
        |message: String, started: Instant| Judgement::errored(message, started.elapsed());
    let quiet_from = match prometheus.now().await {
        Ok(t) => t,
        Err(e) => return errored(e, started),
    };
    if let Err(e) = scraped_after(prometheus, targets, quiet_from, started, deadline).await {
        return errored(e, started);
    }
    let before = match snapshot(prometheus).await {
        Ok(s) => s,
        Err(e) => return errored(e, started),
    };
    let quiet = started.elapsed();
    let traffic = match send_traffic().await {
        Ok(summary) => summary,
        Err(e) => {
            return errored(
                format!("the phase's traffic could not be sent: {e}"),
                started,
            );
        }
    };
    let traffic_end = match prometheus.now().await {
        Ok(t) => t,
        Err(e) => return errored(e, started),
    };
    let traffic_time = started.elapsed() - quiet;
    // Two scrapes after the traffic before any verdict.
    let first = match scraped_after(prometheus, targets, traffic_end, started, deadline).await {
        Ok(t) => t,
        Err(e) => return errored(e, started),
    };
    let mut last_scrape = match scraped_after(prometheus, targets, first, started, deadline).await {
        Ok(t) => t,
        Err(e) => return errored(e, started),
    };
    loop {
        let after = match snapshot(prometheus).await {
            Ok(s) => s,
            Err(e) => return errored(e, started),
        };
        let edge_deltas = deltas(&before, &after);
        let (holds, rows) = judge(expected, &edge_deltas);
        let mut details = vec![
            format!("Prometheus: {}", prometheus.base()),
            format!(
                "baseline at {:.3}, judged at {:.3} (Prometheus time)",
                before.at, after.at
            ),
            format!("traffic: {traffic}"),
        ];
        details.extend(table(&rows));
        let final_failure = rows.iter().any(is_final_failure);
        if holds || final_failure || started.elapsed() >= deadline {
            let (verdict, summary) = if holds {
                (
                    Verdict::Passed,
                    format!(
                        "every edge as expected after {:.1} s",
                        started.elapsed().as_secs_f64()
                    ),
                )
            } else {
                let wrong: Vec<String> = rows
                    .iter()
                    .filter(|r| {
                        !holds_row(r)
                    })
                    .map(|r| match r.padlock {
                        Padlock::NoTraffic => format!("{} → {}: no traffic in this phase", r.from, r.to),
                        seen => format!(
                            "{} → {}: mutual_tls Δ {}, plaintext Δ {} (Kiali: padlock {}), expected {}",
                            r.from,
                            r.to,
                            r.mutual_tls,
                            r.plaintext,
                            if seen == Padlock::Present { "shown" } else { "absent" },
                            match r.expected {
                                Padlock::Present => "all mTLS",
                                Padlock::Absent => "all plaintext",
                                Padlock::NoTraffic => "no traffic",
                            }
                        ),
                    })
                    .collect();
                (Verdict::Failed, wrong.join("; "))
            };
            let mut evidence = Evidence::new(summary).with_details(details);
            evidence.edges = rows;
            evidence.timing.traffic = traffic_time;
            evidence.timing.telemetry = started.elapsed().saturating_sub(traffic_time);
            return Judgement {
                verdict,
                evidence,
                elapsed: started.elapsed(),
            };
        }
        last_scrape = match scraped_after(prometheus, targets, last_scrape, started, deadline).await
        {
            Ok(t) => t,
            Err(_) => continue, // the deadline passed: the next round reports the verdict
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(src: &str, dst: &str, policy: &str, code: &str, pod: &str) -> Labels {
        [
            ("source_workload", src),
            ("destination_workload", dst),
            ("connection_security_policy", policy),
            ("response_code", code),
            ("pod", pod),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn delta(mutual_tls: f64, none: f64) -> EdgeDelta {
        EdgeDelta {
            mutual_tls,
            none,
            ..EdgeDelta::default()
        }
    }

    #[test]
    fn absent_series_count_as_zero_and_resets_count_from_zero() {
        let before = Snapshot {
            at: 0.0,
            series: [
                (series("sentences", "name", "mutual_tls", "200", "a"), 50.0),
                (
                    series("sentences", "name-v2", "mutual_tls", "200", "b"),
                    30.0,
                ),
            ]
            .into(),
        };
        let after = Snapshot {
            at: 1.0,
            series: [
                (series("sentences", "name", "mutual_tls", "200", "a"), 50.0), // stale: no new mTLS
                (series("sentences", "name", "none", "200", "a"), 12.0),       // new series
                (series("sentences", "name", "none", "503", "a"), 2.0),        // new, errors
                (
                    series("sentences", "name-v2", "mutual_tls", "200", "b"),
                    4.0,
                ), // reset after a restart
            ]
            .into(),
        };
        let d = deltas(&before, &after);
        assert_eq!(
            d[&("sentences".into(), "name".into())],
            EdgeDelta {
                mutual_tls: 0.0,
                none: 14.0,
                other: 0.0,
                errors: 2.0
            }
        );
        assert_eq!(d[&("sentences".into(), "name-v2".into())].mutual_tls, 4.0);
    }

    #[test]
    fn the_oracles_disagreeing_is_reported_with_both_sides() {
        let row = |to: &str, mtls: f64, plain: f64, expected: bool| EdgeRow {
            from: "sentences".into(),
            to: to.into(),
            mutual_tls: mtls,
            plaintext: plain,
            other: 0.0,
            errors: 0.0,
            expected: Padlock::expected(expected),
            padlock: delta(mtls, plain).padlock(),
            proxy_config_mtls: None,
        };
        let mut rows = vec![
            row("name", 0.0, 20.0, false),
            row("name-v2", 20.0, 0.0, true),
            row("age", 0.0, 0.0, true),
        ];
        let proxy: BTreeMap<(String, String), bool> = [
            (("sentences".into(), "name".into()), false),
            (("sentences".into(), "name-v2".into()), false), // config says plaintext, telemetry saw mTLS
            (("sentences".into(), "age".into()), true),
        ]
        .into();
        let disagreements = cross_check(&mut rows, &proxy);
        assert_eq!(
            disagreements,
            ["sentences → name-v2: telemetry says mTLS, proxy config says plaintext"]
        );
        assert_eq!(
            rows.iter().map(|r| r.proxy_config_mtls).collect::<Vec<_>>(),
            [Some(false), Some(false), Some(true)]
        );
        let mut agreeing = vec![row("name", 0.0, 20.0, false)];
        assert!(cross_check(&mut agreeing, &proxy).is_empty());
    }

    #[test]
    fn kiali_rule_needs_traffic_and_any_mtls_share_for_a_padlock() {
        assert_eq!(EdgeDelta::default().padlock(), Padlock::NoTraffic);
        assert_eq!(delta(0.0, 3.0).padlock(), Padlock::Absent);
        assert_eq!(delta(1.0, 3.0).padlock(), Padlock::Present);
        let expected = [EdgeExpectation::new("a", "b", false)];
        let (ok, rows) = judge(&expected, &BTreeMap::new());
        assert!(!ok, "no traffic proves nothing");
        assert_eq!(rows[0].padlock, Padlock::NoTraffic);
    }

    #[test]
    fn the_verdict_is_stricter_than_the_padlock() {
        // 80 % plaintext towards a subset that must be ISTIO_MUTUAL: Kiali shows a
        // padlock, the verdict fails.
        let mostly_plain = delta(4.0, 16.0);
        assert_eq!(mostly_plain.padlock(), Padlock::Present);
        assert!(!holds(Padlock::Present, &mostly_plain));
        assert!(holds(Padlock::Present, &delta(20.0, 0.0)));
        // DISABLE: plaintext only.
        assert!(holds(Padlock::Absent, &delta(0.0, 20.0)));
        assert!(!holds(Padlock::Absent, &delta(1.0, 20.0)));
        assert!(!holds(Padlock::Absent, &delta(0.0, 0.0)));
    }
}
