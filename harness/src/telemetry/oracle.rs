//! Judging mTLS per edge from telemetry deltas. Kiali draws its padlock
//! (kiali `graph/telemetry/istio/appender/security_policy.go`) from the
//! destination-reported requests grouped by `connection_security_policy`: padlock when
//! the `mutual_tls` share is > 0. The padlock is shown; the verdict is stricter: an edge
//! expected with mTLS must carry no plaintext at all, one expected without must carry
//! no mTLS. And the phase's requests must add up: each request the app answered went
//! gateway → frontend once and frontend → each backend Service once, so more requests
//! on an edge than that means the baseline missed counters (an error, not a verdict).

use super::deltas::{Deltas, EdgeDelta, Reporter};
use crate::verdict::{EdgeExpectation, EdgeRow, Padlock};
use std::collections::BTreeMap;

/// Kiali's padlock for an edge's destination-reported deltas.
pub fn padlock(d: &EdgeDelta) -> Padlock {
    if d.total() <= 0.0 {
        Padlock::NoTraffic
    } else if d.mutual_tls > 0.0 {
        Padlock::Present
    } else {
        Padlock::Absent
    }
}

/// Whether an edge's destination-reported deltas are what the expectation asks: with a
/// padlock, every request mTLS (and at least one); without, every request plaintext
/// (and at least one). A request whose policy is neither (`unknown`, or the label
/// missing) proves neither, so it is never part of an edge that holds.
pub fn holds(expected: Padlock, mutual_tls: f64, plaintext: f64, other: f64) -> bool {
    match expected {
        Padlock::Present => mutual_tls > 0.0 && plaintext == 0.0 && other == 0.0,
        Padlock::Absent => plaintext > 0.0 && mutual_tls == 0.0 && other == 0.0,
        Padlock::NoTraffic => mutual_tls + plaintext + other == 0.0,
    }
}

/// Counters only grow: once an edge carried what its expectation forbids (including
/// requests of neither policy), no later scrape can make it hold.
pub fn is_final_failure(row: &EdgeRow) -> bool {
    match row.expected {
        Padlock::Present => row.plaintext > 0.0 || row.other > 0.0,
        Padlock::Absent => row.mutual_tls > 0.0 || row.other > 0.0,
        Padlock::NoTraffic => row.total() > 0.0,
    }
}

/// A table row from an edge's deltas.
pub fn row(from: &str, to: &str, d: &EdgeDelta, expected: Padlock) -> EdgeRow {
    EdgeRow {
        from: from.to_string(),
        to: to.to_string(),
        mutual_tls: d.mutual_tls,
        plaintext: d.none,
        other: d.other,
        errors: d.errors,
        expected,
        padlock: padlock(d),
        proxy_config_mtls: None,
    }
}

/// The destination-reported rows for `expected` and whether every edge holds.
pub fn judge(expected: &[EdgeExpectation], deltas: &Deltas) -> (bool, Vec<EdgeRow>) {
    let mut all = true;
    let rows = expected
        .iter()
        .map(|e| {
            let d = deltas.edge(Reporter::Destination, &e.from.value, &e.to.value);
            let want = Padlock::expected(e.padlock);
            all &= holds(want, d.mutual_tls, d.none, d.other);
            row(&e.from.value, &e.to.value, &d, want)
        })
        .collect();
    (all, rows)
}

/// `, neither policy Δ 3` when destination-reported requests carried neither
/// `mutual_tls` nor `none`.
fn neither_policy(r: &EdgeRow) -> String {
    if r.other > 0.0 {
        format!(", neither policy Δ {}", r.other)
    } else {
        String::new()
    }
}

/// What was wrong with each row that does not hold, for the summary.
pub fn wrong_rows(rows: &[EdgeRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| !holds(r.expected, r.mutual_tls, r.plaintext, r.other))
        .map(|r| match r.padlock {
            Padlock::NoTraffic => format!("{} → {}: no traffic in this phase", r.from, r.to),
            seen => format!(
                "{} → {}: mutual_tls Δ {}, plaintext Δ {}{} (Kiali: padlock {}), expected {}",
                r.from,
                r.to,
                r.mutual_tls,
                r.plaintext,
                neither_policy(r),
                if seen == Padlock::Present {
                    "shown"
                } else {
                    "absent"
                },
                match r.expected {
                    Padlock::Present => "all mTLS",
                    Padlock::Absent => "all plaintext",
                    Padlock::NoTraffic => "no traffic",
                }
            ),
        })
        .collect()
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
                neither_policy(r),
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

/// Requests that should appear on a group of edges: the edges from one workload to
/// the workloads behind one Service (e.g. sentences → name and name-v2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub label: String,
    pub edges: Vec<(String, String)>,
}

/// How the requests of a phase add up on a group.
#[derive(Clone, Debug, PartialEq)]
pub enum Balance {
    Exact,
    /// Fewer than expected: scrapes may still bring them.
    Short(f64),
    /// More than were sent: the deltas include requests from outside the phase.
    Over(f64),
}

/// Each group's total against `expected` requests; lines for the evidence.
pub fn balance(groups: &[Group], rows: &[EdgeRow], expected: f64) -> (Balance, Vec<String>) {
    let mut worst = Balance::Exact;
    let mut lines = Vec::new();
    for g in groups {
        let total: f64 = rows
            .iter()
            .filter(|r| g.edges.contains(&(r.from.clone(), r.to.clone())))
            .map(EdgeRow::total)
            .sum();
        let state = if total == expected {
            "adds up"
        } else if total < expected {
            if !matches!(worst, Balance::Over(_)) {
                worst = Balance::Short(expected - total);
            }
            "short"
        } else {
            worst = Balance::Over(total - expected);
            "more than sent"
        };
        lines.push(format!(
            "requests on {}: Δ {total} for {expected} answered by the app — {state}",
            g.label
        ));
    }
    (worst, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(mutual_tls: f64, none: f64) -> EdgeDelta {
        EdgeDelta {
            mutual_tls,
            none,
            ..EdgeDelta::default()
        }
    }

    fn row_of(to: &str, mtls: f64, plain: f64, expected: bool) -> EdgeRow {
        row(
            "sentences",
            to,
            &delta(mtls, plain),
            Padlock::expected(expected),
        )
    }

    #[test]
    fn the_oracles_disagreeing_is_reported_with_both_sides() {
        let mut rows = vec![
            row_of("name", 0.0, 20.0, false),
            row_of("name-v2", 20.0, 0.0, true),
            row_of("age", 0.0, 0.0, true),
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
    }

    #[test]
    fn kiali_rule_needs_traffic_and_any_mtls_share_for_a_padlock() {
        assert_eq!(padlock(&EdgeDelta::default()), Padlock::NoTraffic);
        assert_eq!(padlock(&delta(0.0, 3.0)), Padlock::Absent);
        assert_eq!(padlock(&delta(1.0, 3.0)), Padlock::Present);
        let expected = [EdgeExpectation::new("a", "b", false)];
        let (ok, rows) = judge(&expected, &Deltas::default());
        assert!(!ok, "no traffic proves nothing");
        assert_eq!(rows[0].padlock, Padlock::NoTraffic);
    }

    #[test]
    fn the_verdict_is_stricter_than_the_padlock() {
        // 80 % plaintext towards a subset that must be ISTIO_MUTUAL: Kiali shows a
        // padlock, the verdict fails.
        let mostly_plain = delta(4.0, 16.0);
        assert_eq!(padlock(&mostly_plain), Padlock::Present);
        assert!(!holds(Padlock::Present, 4.0, 16.0, 0.0));
        assert!(holds(Padlock::Present, 20.0, 0.0, 0.0));
        assert!(holds(Padlock::Absent, 0.0, 20.0, 0.0));
        assert!(!holds(Padlock::Absent, 1.0, 20.0, 0.0));
        assert!(!holds(Padlock::Absent, 0.0, 0.0, 0.0));
    }

    #[test]
    fn requests_of_neither_policy_prove_neither_and_are_final() {
        assert!(!holds(Padlock::Present, 1.0, 0.0, 39.0));
        assert!(!holds(Padlock::Absent, 0.0, 1.0, 39.0));
        let mut r = row("sentences", "age", &delta(1.0, 0.0), Padlock::Present);
        r.other = 39.0;
        assert!(is_final_failure(&r));
        assert_eq!(
            wrong_rows(&[r]),
            [
                "sentences → age: mutual_tls Δ 1, plaintext Δ 0, neither policy Δ 39 (Kiali: padlock shown), expected all mTLS"
            ]
        );
    }

    #[test]
    fn requests_must_add_up_per_group() {
        let rows = vec![
            row(
                "istio-ingressgateway",
                "sentences",
                &delta(40.0, 0.0),
                Padlock::Present,
            ),
            row_of("name", 21.0, 0.0, true),
            row_of("name-v2", 19.0, 0.0, true),
        ];
        let groups = vec![
            Group {
                label: "istio-ingressgateway → sentences".into(),
                edges: vec![("istio-ingressgateway".into(), "sentences".into())],
            },
            Group {
                label: "sentences → Service name".into(),
                edges: vec![
                    ("sentences".into(), "name".into()),
                    ("sentences".into(), "name-v2".into()),
                ],
            },
        ];
        assert_eq!(balance(&groups, &rows, 40.0).0, Balance::Exact);
        assert_eq!(balance(&groups, &rows, 50.0).0, Balance::Short(10.0));
        let (b, lines) = balance(&groups, &rows, 30.0);
        assert_eq!(b, Balance::Over(10.0));
        assert!(
            lines[0].contains("Δ 40 for 30 answered by the app — more than sent"),
            "{lines:?}"
        );
    }
}
