//! Deltas of `istio_requests_total` over a phase. Counters only grow and old series
//! stay, so only the difference between a baseline and a later snapshot means
//! anything; a series absent at the baseline counts from 0, and a counter that went
//! down was reset (its pod restarted) and counts from 0.

use super::prometheus::{Labels, Prometheus};
use std::collections::BTreeMap;

pub const METRIC: &str = "istio_requests_total";

/// Counter values at one moment, keyed by the full label set of each series.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub at: f64,
    pub series: BTreeMap<Labels, f64>,
}

pub async fn snapshot(prometheus: &Prometheus) -> Result<Snapshot, String> {
    let at = prometheus.now().await?;
    let series = prometheus.vector(METRIC).await?.into_iter().collect();
    Ok(Snapshot { at, series })
}

/// What [`label`] reads for a label the series lacks. Istio's standard metrics always
/// carry their labels and write `unknown` for a peer they cannot name, so a series
/// without one is another world (a Telemetry override, a foreign exporter): it must
/// never pass for `unknown` or for a real name. No Kubernetes name holds `<`.
pub const MISSING: &str = "<missing>";

/// The value of label `name` of a series, [`MISSING`] when the series lacks it.
pub fn label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels.get(name).map(String::as_str).unwrap_or(MISSING)
}

/// Who reported a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reporter {
    /// The caller's proxy (`reporter="source"`; the ingress gateway reports so).
    Source,
    /// The callee's sidecar (`reporter="destination"`): the only side that knows
    /// `connection_security_policy`.
    Destination,
}

impl Reporter {
    pub fn label(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// Where this run's edges are: every callee in the app namespace; a caller in the app
/// namespace, the ingress gateway in its namespace, or `unknown` (no sidecar). A series
/// without a namespace label is nowhere: it is left out (shown as [`MISSING`]).
#[derive(Debug, Clone)]
pub struct Scope {
    pub app_namespace: String,
    pub gateway_namespace: String,
}

impl Scope {
    /// Whether a series is certainly not this run's: a namespace label it does carry
    /// places it elsewhere (whatever labels it lacks).
    fn excludes(&self, labels: &Labels) -> bool {
        let elsewhere = |name: &str, allowed: &[&str]| {
            labels
                .get(name)
                .is_some_and(|v| !allowed.contains(&v.as_str()))
        };
        elsewhere("destination_workload_namespace", &[&self.app_namespace])
            || elsewhere(
                "source_workload_namespace",
                &[&self.app_namespace, &self.gateway_namespace, "unknown"],
            )
    }

    fn holds(&self, labels: &Labels) -> bool {
        let source = label(labels, "source_workload_namespace");
        label(labels, "destination_workload_namespace") == self.app_namespace
            && (source == self.app_namespace
                || source == self.gateway_namespace
                || source == "unknown")
    }
}

/// Requests of one edge in the phase, by policy, and how many were errors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeDelta {
    pub mutual_tls: f64,
    pub none: f64,
    pub other: f64,
    /// Requests with a `response_code` outside 2xx.
    pub errors: f64,
    /// Requests by `response_code`.
    pub codes: BTreeMap<String, f64>,
}

impl EdgeDelta {
    pub fn total(&self) -> f64 {
        self.mutual_tls + self.none + self.other
    }

    /// `200×38, 500×2`
    pub fn describe_codes(&self) -> String {
        self.codes
            .iter()
            .map(|(c, n)| format!("{c}×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The per-series increases between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Deltas {
    pub before: Snapshot,
    pub after: Snapshot,
    increases: Vec<(Labels, f64)>,
}

impl Deltas {
    pub fn between(before: &Snapshot, after: &Snapshot) -> Deltas {
        let mut increases = Vec::new();
        for (labels, now) in &after.series {
            let then = before.series.get(labels).copied().unwrap_or(0.0);
            let delta = if *now >= then { now - then } else { *now };
            if delta > 0.0 {
                increases.push((labels.clone(), delta));
            }
        }
        Deltas {
            before: before.clone(),
            after: after.clone(),
            increases,
        }
    }

    /// Only the increases of this run's edges (see [`Scope`]), and the requests left out,
    /// by destination namespace: another copy of the app (a namespace where someone did
    /// the exercise by hand) must never stand in for this run's.
    pub fn within(&self, scope: &Scope) -> (Deltas, BTreeMap<String, f64>) {
        let mut left_out: BTreeMap<String, f64> = BTreeMap::new();
        let mut increases = Vec::new();
        for (labels, delta) in &self.increases {
            if scope.holds(labels) {
                increases.push((labels.clone(), *delta));
            } else {
                *left_out
                    .entry(label(labels, "destination_workload_namespace").to_string())
                    .or_default() += delta;
            }
        }
        let scoped = Deltas {
            before: self.before.clone(),
            after: self.after.clone(),
            increases,
        };
        (scoped, left_out)
    }

    /// Requests the phase added to series that lack a label the oracle reads to place
    /// them (who reported, between which workloads of which namespaces), by label,
    /// unless a label they do carry puts them outside `scope` (another namespace's
    /// workloads may drop tags: not this run's business). Istio's standard metrics
    /// always carry these; without them a request cannot be told to be this run's or
    /// not, so the phase cannot be judged.
    pub fn unplaceable(&self, scope: &Scope) -> BTreeMap<&'static str, f64> {
        const PLACING: [&str; 5] = [
            "reporter",
            "source_workload",
            "source_workload_namespace",
            "destination_workload",
            "destination_workload_namespace",
        ];
        let mut missing: BTreeMap<&'static str, f64> = BTreeMap::new();
        for (labels, delta) in &self.increases {
            if scope.excludes(labels) {
                continue;
            }
            for name in PLACING {
                if !labels.contains_key(name) {
                    *missing.entry(name).or_default() += delta;
                }
            }
        }
        missing
    }

    /// The edge `from → to` as `reporter` saw it in the phase.
    pub fn edge(&self, reporter: Reporter, from: &str, to: &str) -> EdgeDelta {
        let mut edge = EdgeDelta::default();
        for (labels, delta) in &self.increases {
            if label(labels, "reporter") != reporter.label()
                || label(labels, "source_workload") != from
                || label(labels, "destination_workload") != to
            {
                continue;
            }
            let code = label(labels, "response_code").to_string();
            if !code.starts_with('2') {
                edge.errors += delta;
            }
            *edge.codes.entry(code).or_default() += delta;
            match label(labels, "connection_security_policy") {
                "mutual_tls" => edge.mutual_tls += delta,
                "none" => edge.none += delta,
                _ => edge.other += delta,
            }
        }
        edge
    }

    /// Requests of the edge as `reporter` saw them whose policy and response code are
    /// the given ones (None: any).
    pub fn count(
        &self,
        reporter: Reporter,
        from: &str,
        to: &str,
        policy: Option<&str>,
        code: Option<&str>,
    ) -> f64 {
        self.increases
            .iter()
            .filter(|(l, _)| {
                label(l, "reporter") == reporter.label()
                    && label(l, "source_workload") == from
                    && label(l, "destination_workload") == to
                    && policy.is_none_or(|p| label(l, "connection_security_policy") == p)
                    && code.is_none_or(|c| label(l, "response_code") == c)
            })
            .map(|(_, d)| d)
            .sum::<f64>()
            + 0.0 // an empty sum is -0.0
    }

    /// Destination-reported requests towards `to` in the phase, from any source.
    pub fn reported_by_destination(&self, to: &str) -> f64 {
        self.increases
            .iter()
            .filter(|(l, _)| {
                label(l, "reporter") == "destination" && label(l, "destination_workload") == to
            })
            .map(|(_, d)| d)
            .sum::<f64>()
            + 0.0 // an empty sum is -0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(reporter: &str, src: &str, dst: &str, policy: &str, code: &str) -> Labels {
        [
            ("reporter", reporter),
            ("source_workload", src),
            ("destination_workload", dst),
            ("connection_security_policy", policy),
            ("response_code", code),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn placed(mut labels: Labels, source_ns: &str, destination_ns: &str) -> Labels {
        labels.insert("source_workload_namespace".into(), source_ns.into());
        labels.insert(
            "destination_workload_namespace".into(),
            destination_ns.into(),
        );
        labels
    }

    #[test]
    fn only_this_runs_namespaces_count_and_the_rest_is_shown() {
        let gateway = series(
            "source",
            "istio-ingressgateway",
            "sentences",
            "unknown",
            "200",
        );
        let app = series("destination", "sentences", "age", "mutual_tls", "200");
        let no_sidecar = series("destination", "unknown", "age", "none", "200");
        let after = Snapshot {
            at: 1.0,
            series: [
                (placed(gateway.clone(), "istio-system", "sentences"), 3.0),
                (placed(app.clone(), "sentences", "sentences"), 5.0),
                (placed(no_sidecar.clone(), "unknown", "sentences"), 2.0),
                // The exercise done by hand in `default`, behind the same gateway.
                (placed(gateway.clone(), "istio-system", "default"), 40.0),
                (placed(app.clone(), "default", "default"), 40.0),
                // A caller of the run's namespace seen from another namespace's age, and
                // a caller from a third namespace calling the run's age.
                (placed(app.clone(), "sentences", "default"), 1.0),
                (placed(app.clone(), "elsewhere", "sentences"), 7.0),
            ]
            .into(),
        };
        let scope = Scope {
            app_namespace: "sentences".into(),
            gateway_namespace: "istio-system".into(),
        };
        let (d, left_out) = Deltas::between(&Snapshot::default(), &after).within(&scope);
        assert_eq!(
            d.count(
                Reporter::Source,
                "istio-ingressgateway",
                "sentences",
                None,
                None
            ),
            3.0
        );
        assert_eq!(
            d.edge(Reporter::Destination, "sentences", "age").mutual_tls,
            5.0
        );
        assert_eq!(d.edge(Reporter::Destination, "unknown", "age").none, 2.0);
        assert_eq!(d.reported_by_destination("age"), 7.0);
        assert_eq!(
            left_out,
            [
                ("default".to_string(), 81.0),
                ("sentences".to_string(), 7.0)
            ]
            .into()
        );
    }

    #[test]
    fn absent_series_count_as_zero_and_resets_count_from_zero() {
        let before = Snapshot {
            at: 0.0,
            series: [
                (
                    series("destination", "sentences", "name", "mutual_tls", "200"),
                    50.0,
                ),
                (
                    series("destination", "sentences", "name-v2", "mutual_tls", "200"),
                    30.0,
                ),
            ]
            .into(),
        };
        let after = Snapshot {
            at: 1.0,
            series: [
                (
                    series("destination", "sentences", "name", "mutual_tls", "200"),
                    50.0,
                ),
                (
                    series("destination", "sentences", "name", "none", "200"),
                    12.0,
                ),
                (
                    series("destination", "sentences", "name", "none", "503"),
                    2.0,
                ),
                (
                    series("destination", "sentences", "name-v2", "mutual_tls", "200"),
                    4.0,
                ),
                (
                    series("source", "sentences", "name", "unknown", "200"),
                    14.0,
                ),
            ]
            .into(),
        };
        let d = Deltas::between(&before, &after);
        let v1 = d.edge(Reporter::Destination, "sentences", "name");
        assert_eq!((v1.mutual_tls, v1.none, v1.errors), (0.0, 14.0, 2.0));
        assert_eq!(v1.describe_codes(), "200×12, 503×2");
        assert_eq!(
            d.edge(Reporter::Destination, "sentences", "name-v2")
                .mutual_tls,
            4.0
        );
        assert_eq!(d.edge(Reporter::Source, "sentences", "name").other, 14.0);
        assert_eq!(d.reported_by_destination("name"), 14.0);
        assert_eq!(d.reported_by_destination("age"), 0.0);
    }

    /// O4: the frontend has no sidecar, so age's sidecar reports its caller as
    /// `source_workload="unknown"`. A series that lacks `source_workload` is not that
    /// world and must not stand in for it.
    #[test]
    fn a_series_without_source_workload_is_not_from_unknown() {
        let mut anonymous = series("destination", "unknown", "age", "none", "200");
        anonymous.remove("source_workload");
        let after = Snapshot {
            at: 1.0,
            series: [(anonymous.clone(), 20.0)].into(),
        };
        let d = Deltas::between(&Snapshot::default(), &after);
        assert_eq!(d.edge(Reporter::Destination, "unknown", "age").total(), 0.0);
        assert_eq!(
            d.count(
                Reporter::Destination,
                "unknown",
                "age",
                Some("none"),
                Some("200")
            ),
            0.0
        );
        // Still a request age's sidecar reported, and readable where it shows.
        assert_eq!(d.reported_by_destination("age"), 20.0);
        assert_eq!(label(&anonymous, "source_workload"), MISSING);
        assert_eq!(d.edge(Reporter::Destination, MISSING, "age").none, 20.0);

        // The same series with Istio's literal `unknown` is the O4 edge.
        let named = series("destination", "unknown", "age", "none", "200");
        let after = Snapshot {
            at: 1.0,
            series: [(named, 20.0)].into(),
        };
        let d = Deltas::between(&Snapshot::default(), &after);
        assert_eq!(
            d.count(
                Reporter::Destination,
                "unknown",
                "age",
                Some("none"),
                Some("200")
            ),
            20.0
        );
    }

    #[test]
    fn requests_in_series_without_placing_labels_are_named() {
        let mut bare = placed(
            series("destination", "unknown", "age", "none", "200"),
            "unknown",
            "sentences",
        );
        bare.remove("reporter");
        bare.remove("destination_workload_namespace");
        let full = placed(
            series("destination", "unknown", "name", "none", "200"),
            "unknown",
            "sentences",
        );
        let after = Snapshot {
            at: 1.0,
            series: [(bare, 5.0), (full.clone(), 7.0)].into(),
        };
        let d = Deltas::between(&Snapshot::default(), &after);
        let scope = Scope {
            app_namespace: "sentences".into(),
            gateway_namespace: "istio-system".into(),
        };
        assert_eq!(
            d.unplaceable(&scope),
            [("destination_workload_namespace", 5.0), ("reporter", 5.0)].into()
        );
        // Another namespace's workloads without some tags: placed elsewhere by what
        // they carry, so not this run's and not an error.
        let mut elsewhere = placed(
            series("destination", "unknown", "web", "none", "200"),
            "unknown",
            "shop",
        );
        elsewhere.remove("reporter");
        elsewhere.remove("source_workload");
        let after = Snapshot {
            at: 1.0,
            series: [(elsewhere, 9.0)].into(),
        };
        assert!(
            Deltas::between(&Snapshot::default(), &after)
                .unplaceable(&scope)
                .is_empty()
        );
        let complete = Snapshot {
            at: 1.0,
            series: [(full, 7.0)].into(),
        };
        assert!(
            Deltas::between(&Snapshot::default(), &complete)
                .unplaceable(&scope)
                .is_empty()
        );
    }

    #[test]
    fn missing_labels_match_no_policy_code_or_namespace() {
        let mut bare = series("source", "istio-ingressgateway", "sentences", "", "");
        bare.remove("connection_security_policy");
        bare.remove("response_code");
        let after = Snapshot {
            at: 1.0,
            series: [
                (bare.clone(), 4.0),
                // In scope but for the caller's namespace, which it lacks.
                (
                    {
                        let mut l = placed(
                            series("destination", "unknown", "age", "none", "200"),
                            "unknown",
                            "sentences",
                        );
                        l.remove("source_workload_namespace");
                        l
                    },
                    3.0,
                ),
            ]
            .into(),
        };
        let d = Deltas::between(&Snapshot::default(), &after);
        // `security: unknown` (the caller never knows the policy) needs the label.
        assert_eq!(
            d.count(
                Reporter::Source,
                "istio-ingressgateway",
                "sentences",
                Some("unknown"),
                None
            ),
            0.0
        );
        let edge = d.edge(Reporter::Source, "istio-ingressgateway", "sentences");
        assert_eq!((edge.other, edge.errors), (4.0, 4.0));
        assert_eq!(edge.describe_codes(), "<missing>×4");
        let scope = Scope {
            app_namespace: "sentences".into(),
            gateway_namespace: "istio-system".into(),
        };
        let (scoped, left_out) = d.within(&scope);
        assert_eq!(scoped.reported_by_destination("age"), 0.0);
        assert_eq!(
            left_out,
            [
                ("<missing>".to_string(), 4.0),
                ("sentences".to_string(), 3.0)
            ]
            .into()
        );
    }
}
