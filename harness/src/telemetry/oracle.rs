//! Judging mTLS per edge from Prometheus, as Kiali draws its padlock
//! (kiali `graph/telemetry/istio/appender/security_policy.go`): the destination-reported
//! request rate grouped by `connection_security_policy`; padlock when the `mutual_tls`
//! share is > 0. Counters only grow and old series stay, so only deltas since a phase
//! start mean anything; a series absent at the start counts as 0.

use super::prometheus::{Labels, Prometheus};
use crate::runner::record::{EdgeRow, Evidence, Verdict};
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

/// One edge to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeExpectation {
    /// `source_workload` (the ingress gateway is `istio-ingressgateway`).
    pub from: String,
    /// `destination_workload`.
    pub to: String,
    pub padlock: bool,
}

/// Counter values at one moment, keyed by the full label set of each series.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub at: f64,
    pub series: BTreeMap<Labels, f64>,
}

/// Request deltas of one edge by policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeDelta {
    pub mutual_tls: f64,
    pub none: f64,
    pub other: f64,
}

impl EdgeDelta {
    pub fn total(&self) -> f64 {
        self.mutual_tls + self.none + self.other
    }

    /// Kiali's padlock: None without traffic, else whether any request was mTLS.
    pub fn padlock(&self) -> Option<bool> {
        (self.total() > 0.0).then_some(self.mutual_tls > 0.0)
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
        match label(labels, "connection_security_policy") {
            "mutual_tls" => edge.mutual_tls += delta,
            "none" => edge.none += delta,
            _ => edge.other += delta,
        }
    }
    edges
}

/// The table rows for `expected` and whether every edge is as expected. A row without
/// traffic does not hold (nothing proves the padlock either way).
pub fn judge(
    expected: &[EdgeExpectation],
    deltas: &BTreeMap<(String, String), EdgeDelta>,
) -> (bool, Vec<EdgeRow>) {
    let mut all = true;
    let rows = expected
        .iter()
        .map(|e| {
            let d = deltas
                .get(&(e.from.clone(), e.to.clone()))
                .cloned()
                .unwrap_or_default();
            let padlock = d.padlock();
            all &= padlock == Some(e.padlock);
            EdgeRow {
                from: e.from.clone(),
                to: e.to.clone(),
                mutual_tls: d.mutual_tls,
                plaintext: d.none,
                expected_padlock: e.padlock,
                padlock,
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
        if let Some(seen) = row.padlock
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

/// Whether a row can still change its verdict: counters only grow, so an edge that
/// shows mTLS where none is expected is final.
fn is_final_failure(row: &EdgeRow) -> bool {
    !row.expected_padlock && row.mutual_tls > 0.0
}

/// What a phase found.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub verdict: Verdict,
    pub evidence: Evidence,
    pub elapsed: Duration,
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

fn table(rows: &[EdgeRow]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{} → {}: mutual_tls Δ {}, none Δ {}; padlock {} (expected {})",
                r.from,
                r.to,
                r.mutual_tls,
                r.plaintext,
                match r.padlock {
                    Some(true) => "present",
                    Some(false) => "absent",
                    None => "unknown: no traffic",
                },
                if r.expected_padlock {
                    "present"
                } else {
                    "absent"
                }
            )
        })
        .collect()
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
) -> PhaseResult
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let started = Instant::now();
    let errored = |message: String, started: Instant| PhaseResult {
        verdict: Verdict::Errored,
        evidence: Evidence::new(message),
        elapsed: started.elapsed(),
    };
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
                    .filter(|r| r.padlock != Some(r.expected_padlock))
                    .map(|r| match r.padlock {
                        None => format!("{} → {}: no traffic in this phase", r.from, r.to),
                        Some(seen) => format!(
                            "{} → {}: padlock {} (mutual_tls Δ {}, none Δ {}), expected {}",
                            r.from,
                            r.to,
                            if seen { "present" } else { "absent" },
                            r.mutual_tls,
                            r.plaintext,
                            if r.expected_padlock {
                                "present"
                            } else {
                                "absent"
                            }
                        ),
                    })
                    .collect();
                (Verdict::Failed, wrong.join("; "))
            };
            let mut evidence = Evidence::new(summary).with_details(details);
            evidence.edges = rows;
            return PhaseResult {
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

    fn series(src: &str, dst: &str, policy: &str, pod: &str) -> Labels {
        [
            ("source_workload", src),
            ("destination_workload", dst),
            ("connection_security_policy", policy),
            ("pod", pod),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn absent_series_count_as_zero_and_resets_count_from_zero() {
        let before = Snapshot {
            at: 0.0,
            series: [
                (series("sentences", "name-v1", "mutual_tls", "a"), 50.0),
                (series("sentences", "name-v2", "mutual_tls", "b"), 30.0),
            ]
            .into(),
        };
        let after = Snapshot {
            at: 1.0,
            series: [
                (series("sentences", "name-v1", "mutual_tls", "a"), 50.0), // stale: no new mTLS
                (series("sentences", "name-v1", "none", "a"), 12.0),       // new series
                (series("sentences", "name-v2", "mutual_tls", "b"), 4.0),  // reset after a restart
            ]
            .into(),
        };
        let d = deltas(&before, &after);
        assert_eq!(
            d[&("sentences".into(), "name-v1".into())],
            EdgeDelta {
                mutual_tls: 0.0,
                none: 12.0,
                other: 0.0
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
            expected_padlock: expected,
            padlock: (mtls + plain > 0.0).then_some(mtls > 0.0),
            proxy_config_mtls: None,
        };
        let mut rows = vec![
            row("name-v1", 0.0, 20.0, false),
            row("name-v2", 20.0, 0.0, true),
            row("age", 0.0, 0.0, true),
        ];
        let proxy: BTreeMap<(String, String), bool> = [
            (("sentences".into(), "name-v1".into()), false),
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
        let mut agreeing = vec![row("name-v1", 0.0, 20.0, false)];
        assert!(cross_check(&mut agreeing, &proxy).is_empty());
    }

    #[test]
    fn kiali_rule_needs_traffic_and_any_mtls_share_for_a_padlock() {
        assert_eq!(EdgeDelta::default().padlock(), None);
        assert_eq!(
            EdgeDelta {
                mutual_tls: 0.0,
                none: 3.0,
                other: 0.0
            }
            .padlock(),
            Some(false)
        );
        assert_eq!(
            EdgeDelta {
                mutual_tls: 1.0,
                none: 3.0,
                other: 0.0
            }
            .padlock(),
            Some(true)
        );
        let expected = [EdgeExpectation {
            from: "a".into(),
            to: "b".into(),
            padlock: false,
        }];
        let (ok, rows) = judge(&expected, &BTreeMap::new());
        assert!(!ok, "no traffic proves nothing");
        assert_eq!(rows[0].padlock, None);
    }
}
