//! What a telemetry phase needs from the cluster and the app, shared by `mtls` and
//! `telemetry`: which proxies report its traffic (so it waits for their scrapes), the
//! traffic itself, and which edges must add up to the requests the app answered.

use super::Env;
use crate::cluster::istio;
use crate::cluster::workloads::{self, Sidecar};
use crate::probe::Probe;
use crate::probe::class::{Origin, ResultClass};
use crate::probe::http::HttpProbe;
use crate::probe::tally::Tally;
use crate::suite::INGRESS_GATEWAY_WORKLOAD;
use crate::telemetry::deltas::{Deltas, Scope};
use crate::telemetry::oracle::{Balance, Group};
use crate::telemetry::phase::{Look, Traffic};
use crate::telemetry::prometheus::Prometheus;
use crate::telemetry::targets::{ExpectedTarget, Targets};
use crate::verdict::{EdgeRow, Evidence, Judgement};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// When the pod became ready, in seconds since the epoch.
fn ready_since(pod: &Pod) -> Option<f64> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0.as_second() as f64)
}

/// The pods whose proxy (`proxy_of`: the injected sidecar of an app pod, the gateway's
/// own Envoy) is ready.
fn targets_of(
    pods: Vec<Pod>,
    proxy_of: fn(&Pod) -> Sidecar,
) -> impl Iterator<Item = ExpectedTarget> {
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(move |p| matches!(proxy_of(p), Sidecar::Ready(_)))
        .filter_map(|p| {
            Some(ExpectedTarget {
                namespace: p.metadata.namespace.clone()?,
                pod: p.metadata.name.clone()?,
                ready_since: ready_since(&p),
            })
        })
}

/// The proxies whose reports the phase needs: every app pod with a ready sidecar and
/// the ingress gateway's pods.
async fn targets(env: &Env<'_>) -> Result<Targets, String> {
    let client = &env.cluster.client;
    let app = Api::<Pod>::namespaced(client.clone(), &env.config.app_namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot list pods in {}: {e}", env.config.app_namespace)
        })?;
    let gateway = Api::<Pod>::namespaced(client.clone(), &env.config.ingress_namespace)
        .list(&ListParams::default().labels(istio::INGRESS_GATEWAY_SELECTOR))
        .await
        .map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot list the ingress gateway's pods: {e}")
        })?;
    Ok(Targets::Pods(
        targets_of(app.items, workloads::sidecar)
            .chain(targets_of(gateway.items, workloads::proxy))
            .collect(),
    ))
}

/// Sends `requests` requests through the gateway, one at a time.
async fn send(probe: &HttpProbe, requests: u32) -> Result<Traffic, String> {
    let mut tally = Tally::default();
    let mut app_answers = 0;
    for _ in 0..requests {
        let obs = probe.once().await;
        if obs.class == ResultClass::Ok || obs.origin == Some(Origin::App) {
            app_answers += 1;
        }
        tally.add(&obs);
    }
    if tally.reached == 0 {
        return Err(format!(
            "no request reached the gateway ({})",
            tally.classes()
        ));
    }
    Ok(Traffic {
        summary: format!(
            "{} requests through {}: {}; {app_answers} answered by the app",
            tally.sent,
            probe.target(),
            tally.classes()
        ),
        sent: tally.sent,
        app_answers,
    })
}

/// The edges among `edges` whose requests must add up to the app's answers: the
/// gateway's edge into the frontend, and for each caller, its edges to all the
/// workloads behind one Service (only when every one of them is listed).
fn groups(env: &Env<'_>, edges: &[(String, String)]) -> Vec<Group> {
    let app = &env.suite.app;
    let mut out: Vec<Group> = Vec::new();
    for (from, to) in edges {
        if from == INGRESS_GATEWAY_WORKLOAD {
            out.push(Group {
                label: format!("{from} → {to}"),
                edges: vec![(from.clone(), to.clone())],
            });
            continue;
        }
        for service in app.services_of(to) {
            if out
                .iter()
                .any(|g| g.label == format!("{from} → Service {service}"))
            {
                continue;
            }
            let behind: Vec<String> = app
                .deployments
                .keys()
                .filter(|w| app.services_of(w).contains(&service))
                .cloned()
                .collect();
            let all_listed = behind
                .iter()
                .all(|w| edges.iter().any(|(f, t)| f == from && t == w));
            if all_listed {
                out.push(Group {
                    label: format!("{from} → Service {service}"),
                    edges: behind.into_iter().map(|w| (from.clone(), w)).collect(),
                });
            }
        }
    }
    out
}

/// Judges the phase's deltas within this run's `scope` with `look`: an ERROR when some
/// requests cannot be placed (series that lack the labels placing them), and the
/// requests left out of scope named in the evidence.
pub fn in_scope(deltas: &Deltas, scope: &Scope, look: impl FnOnce(&Deltas) -> Look) -> Look {
    let unplaceable = deltas.unplaceable(scope);
    if !unplaceable.is_empty() {
        let labels: Vec<String> = unplaceable
            .iter()
            .map(|(label, n)| format!("{n} without `{label}`"))
            .collect();
        return Look::Error(Evidence::new(format!(
            "istio_requests_total series lack labels Istio's standard metrics carry ({}): whose requests they are cannot be told, so a sidecar could report unseen; check Telemetry resources that remove tags",
            labels.join(", ")
        )));
    }
    let (scoped, left_out) = deltas.within(scope);
    let mut judged = look(&scoped);
    if !left_out.is_empty() {
        let others: Vec<String> = left_out
            .iter()
            .map(|(namespace, n)| format!("{namespace} {n}"))
            .collect();
        judged.evidence_mut().details.push(format!(
            "not counted (callee outside {}, or caller outside {} and {}): requests by the callee's namespace: {}",
            scope.app_namespace,
            scope.app_namespace,
            scope.gateway_namespace,
            others.join(", ")
        ));
    }
    judged
}

/// What a telemetry phase runs with.
struct Tools {
    prometheus: Prometheus,
    probe: HttpProbe,
    targets: Targets,
}

/// One telemetry phase over the edges `pairs` (caller, callee): `requests` requests
/// through the gateway, judged by `look` with the groups of edges that must add up.
pub async fn run(
    env: &Env<'_>,
    pairs: &[(String, String)],
    requests: u32,
    deadline: std::time::Duration,
    mut look: impl FnMut(&Deltas, &Traffic, &[Group]) -> Look,
) -> Judgement {
    let tools = match tools(env).await {
        Ok(t) => t,
        Err(e) => return Judgement::errored(e, std::time::Duration::ZERO),
    };
    let groups = groups(env, pairs);
    let probe = &tools.probe;
    let scope = Scope {
        app_namespace: env.config.app_namespace.clone(),
        gateway_namespace: env.config.ingress_namespace.clone(),
    };
    crate::telemetry::phase::run(
        &tools.prometheus,
        &tools.targets,
        deadline,
        || send(probe, requests),
        |deltas, traffic| in_scope(deltas, &scope, |scoped| look(scoped, traffic, &groups)),
    )
    .await
}

async fn tools(env: &Env<'_>) -> Result<Tools, String> {
    Ok(Tools {
        prometheus: Prometheus::new(&env.cluster.prometheus_url)?,
        probe: env.http_probe()?,
        targets: targets(env).await?,
    })
}

/// How one look at a phase's deltas ends, from how the edges and the request balance
/// stand: more requests than the app answered is an error (the baseline missed
/// counters); a wrong edge that counters cannot undo is final; everything right and
/// adding up holds; otherwise the next scrape may still bring what is missing.
pub struct Standing {
    pub holds: bool,
    pub final_failure: bool,
    /// What is wrong, edge by edge.
    pub wrong: Vec<String>,
    pub balance: Balance,
    /// Whether any group of edges was checked for adding up.
    pub grouped: bool,
    /// What holding means, for the summary.
    pub holds_means: &'static str,
    pub details: Vec<String>,
    pub rows: Vec<EdgeRow>,
}

impl Standing {
    pub fn look(self) -> Look {
        let (look, summary): (fn(Evidence) -> Look, String) = match self.balance {
            Balance::Over(extra) => (
                Look::Error,
                format!(
                    "the deltas count {extra} requests more than the phase sent: the baseline missed counters; not a verdict on Istio"
                ),
            ),
            _ if self.final_failure => (Look::Final, self.wrong.join("; ")),
            Balance::Exact if self.holds => (
                Look::Holds,
                if self.grouped {
                    format!("{}, and the requests add up", self.holds_means)
                } else {
                    self.holds_means.to_string()
                },
            ),
            Balance::Short(missing) if self.holds => (
                Look::NotYet,
                format!("telemetry is {missing} requests short of what the app answered"),
            ),
            _ => (Look::NotYet, self.wrong.join("; ")),
        };
        let mut evidence = Evidence::new(summary).with_details(self.details);
        evidence.edges = self.rows;
        look(evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::deltas::Snapshot;
    use crate::telemetry::prometheus::Labels;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn scope() -> Scope {
        Scope {
            app_namespace: "sentences".into(),
            gateway_namespace: "istio-system".into(),
        }
    }

    fn deltas(series: Vec<(Labels, f64)>) -> Deltas {
        let after = Snapshot {
            at: 1.0,
            series: series.into_iter().collect(),
        };
        Deltas::between(&Snapshot::default(), &after)
    }

    const AGE_FROM_UNKNOWN: [(&str, &str); 5] = [
        ("reporter", "destination"),
        ("source_workload", "unknown"),
        ("source_workload_namespace", "unknown"),
        ("destination_workload", "age"),
        ("destination_workload_namespace", "sentences"),
    ];

    #[test]
    fn requests_that_cannot_be_placed_make_the_phase_an_error_unjudged() {
        // age's sidecar reported, but its series lost `reporter`: it could be the very
        // report an `unreported: [age]` must not see.
        let mut bare = labels(&AGE_FROM_UNKNOWN);
        bare.remove("reporter");
        let mut judged = false;
        let look = in_scope(&deltas(vec![(bare, 20.0)]), &scope(), |_| {
            judged = true;
            Look::Holds(Evidence::new("holds".to_string()))
        });
        assert!(!judged, "no verdict on deltas that cannot be placed");
        match look {
            Look::Error(e) => assert!(e.summary.contains("20 without `reporter`"), "{}", e.summary),
            _ => panic!("not an error"),
        }
    }

    #[test]
    fn placed_requests_are_judged_in_scope_and_the_rest_named() {
        let mut elsewhere = labels(&AGE_FROM_UNKNOWN);
        elsewhere.insert("destination_workload_namespace".into(), "shop".into());
        elsewhere.remove("source_workload");
        let look = in_scope(
            &deltas(vec![(labels(&AGE_FROM_UNKNOWN), 20.0), (elsewhere, 3.0)]),
            &scope(),
            |scoped| {
                assert_eq!(scoped.reported_by_destination("age"), 20.0);
                Look::Holds(Evidence::new("holds".to_string()))
            },
        );
        match look {
            Look::Holds(e) => assert!(
                e.details.iter().any(|d| d.contains("shop 3")),
                "{:?}",
                e.details
            ),
            _ => panic!("not judged"),
        }
    }
}
