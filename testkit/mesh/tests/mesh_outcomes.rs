//! The exercise's documented outcomes inside the mesh (SPEC §3, suite `mesh`, O1–O6),
//! played in order against real Envoy sidecars and gateway. What happened on the wire is
//! read from Envoy's own counters (TLS handshakes and connections per cluster, the
//! inbound listener's `no_filter_chain_match`) and log, and the telemetry derived from
//! Envoy's access logs must agree with it.

mod common;

use common::*;
use std::collections::HashMap;
use std::time::Duration;

async fn all(w: &World, n: usize, want: fn(u16, &str) -> bool) -> Vec<(u16, String)> {
    let mut seen = vec![];
    for _ in 0..n {
        let (code, body) = w.through_gateway().await;
        if !want(code, &body) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut tails = vec![];
            for (ns, d) in [
                ("istio-system", "istio-ingressgateway"),
                (APP_NS, "sentences"),
            ] {
                let pod = w.cluster.pod_of(ns, d);
                let logs = w
                    .mesh
                    .proxy_logs(ns, pod["metadata"]["name"].as_str().unwrap_or(""));
                tails.extend(logs.iter().rev().take(4).cloned());
            }
            panic!("unexpected answer {code}: {body}\nlogs: {tails:#?}");
        }
        seen.push((code, body));
    }
    seen
}

fn sentence(code: u16, body: &str) -> bool {
    code == 200 && is_sentence(body)
}

fn frontend_500(code: u16, body: &str) -> bool {
    code == 500 && is_flask_500(body)
}

fn has_sidecar(pod: &serde_json::Value) -> bool {
    pod["spec"]["initContainers"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["name"] == "istio-proxy" && c["restartPolicy"] == "Always")
    })
}

/// Waits until requests through the gateway give `want` (config propagation).
async fn converge(w: &World, want: fn(u16, &str) -> bool) {
    let ok = eventually(Duration::from_secs(10), || async {
        let (c, b) = w.through_gateway().await;
        want(c, &b).then_some(())
    })
    .await;
    assert!(ok.is_some(), "behaviour did not converge");
}

/// (TLS handshakes, connections) a caller's proxy made for a cluster, per Envoy.
fn tls_and_connections(stats: &HashMap<String, u64>, cluster: &str) -> (u64, u64) {
    let get = |name: &str| {
        stats
            .get(&format!("cluster.{cluster}.{name}"))
            .copied()
            .unwrap_or(0)
    };
    (get("ssl.handshake"), get("upstream_cx_total"))
}

const AGE: &str = "outbound|5000||age.sentences.svc.cluster.local";
const NAME: &str = "outbound|5000||name.sentences.svc.cluster.local";
const NAME_V1: &str = "outbound|5000|name-v1|name.sentences.svc.cluster.local";
const NAME_V2: &str = "outbound|5000|name-v2|name.sentences.svc.cluster.local";

#[tokio::test]
async fn the_exercise_outcomes_hold_in_order() {
    needs_envoy!();
    let w = exercise(fast_options()).await;

    // O1: no pod has a sidecar; traffic flows.
    for pod in w.cluster.pods(APP_NS) {
        assert!(
            !has_sidecar(&pod),
            "unexpected sidecar in {}",
            pod["metadata"]["name"]
        );
    }
    let answers = all(&w, 10, sentence).await;
    assert!(
        answers.iter().any(|(_, b)| b.contains("(v2)")),
        "name-v2 never answered"
    );
    assert!(
        answers.iter().any(|(_, b)| !b.contains("(v2)")),
        "name v1 never answered"
    );

    // O2: STRICT changes nothing while nothing has a sidecar.
    w.cluster.apply(peer_auth("STRICT"));
    w.mesh.settle().await;
    all(&w, 10, sentence).await;

    // O3: a sidecar in age only: age's Envoy has no chain for the frontend's
    // plaintext and closes it; every request is the frontend's 500.
    enable_injection(&w.cluster, "age").await;
    let age = w.cluster.pod_of(APP_NS, "age");
    assert!(has_sidecar(&age), "age was not injected: {age}");
    w.mesh.settle().await;
    converge(&w, frontend_500).await;
    let ip = w.pod_ip(APP_NS, "age");
    let closed = |s: &HashMap<String, u64>| {
        s.get(&format!("listener.{ip}_5000.no_filter_chain_match"))
            .copied()
            .unwrap_or(0)
    };
    let before = closed(&w.envoy_stats(APP_NS, "age").await);
    all(&w, 20, frontend_500).await;
    let after = closed(&w.envoy_stats(APP_NS, "age").await);
    assert_eq!(
        after - before,
        20,
        "age's Envoy closed one connection per request"
    );
    let age_metrics = w.metrics(APP_NS, "age").await;
    assert_eq!(
        requests(&age_metrics, &[("reporter", "destination")]),
        0,
        "a STRICT rejection must leave no destination series: {age_metrics}"
    );
    let gw_500 = |m: &str| {
        requests(
            m,
            &[
                ("reporter", "source"),
                ("source_workload", "istio-ingressgateway"),
                ("destination_workload", "sentences"),
                ("response_code", "500"),
                ("response_flags", "-"),
                ("connection_security_policy", "unknown"),
            ],
        ) >= 20
    };
    let gw_metrics = w
        .metrics_when("istio-system", "istio-ingressgateway", gw_500)
        .await;
    assert!(gw_500(&gw_metrics), "{gw_metrics}");
    let logs = w
        .mesh
        .proxy_logs(APP_NS, age["metadata"]["name"].as_str().unwrap());
    assert!(
        logs.iter()
            .any(|l| l.contains(" NR filter_chain_not_found ")),
        "{logs:?}"
    );

    // O4: PERMISSIVE restores traffic; age sees an unknown plaintext caller.
    w.cluster.apply(peer_auth("PERMISSIVE"));
    w.mesh.settle().await;
    converge(&w, sentence).await;
    all(&w, 10, sentence).await;
    let unknown_caller = |m: &str| {
        requests(
            m,
            &[
                ("reporter", "destination"),
                ("source_workload", "unknown"),
                ("destination_workload", "age"),
                ("connection_security_policy", "none"),
            ],
        ) >= 10
    };
    let age_metrics = w.metrics_when(APP_NS, "age", unknown_caller).await;
    assert!(unknown_caller(&age_metrics), "{age_metrics}");

    // O5: sidecars everywhere and STRICT: traffic flows, every connection is TLS.
    enable_injection_all(&w.cluster, &["sentences", "name", "name-v2"]).await;
    w.cluster.apply(peer_auth("STRICT"));
    w.mesh.settle().await;
    converge(&w, sentence).await;
    all(&w, 20, sentence).await;
    // sentences' pod and proxy are new: its counters cover only this step. The
    // gateway's connections to it (its inbound listener) and its own to age and name
    // (its clusters) are all TLS.
    let fe = w.envoy_stats(APP_NS, "sentences").await;
    let ip = w.pod_ip(APP_NS, "sentences");
    let listener = format!("listener.{ip}_5000.");
    let get = |name: &str| fe.get(&format!("{listener}{name}")).copied().unwrap_or(0);
    let (tls, cx) = (get("ssl.handshake"), get("downstream_cx_total"));
    assert!(
        tls > 0 && tls == cx,
        "gateway → sentences: {tls} TLS handshakes for {cx} connections"
    );
    for cluster in [AGE, NAME] {
        let (tls, cx) = tls_and_connections(&fe, cluster);
        assert!(
            tls > 0 && tls == cx,
            "{cluster}: {tls} TLS handshakes for {cx} connections"
        );
    }
    let from_gateway = |m: &str| {
        requests(
            m,
            &[
                ("reporter", "destination"),
                ("source_workload", "istio-ingressgateway"),
                (
                    "source_principal",
                    "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
                ),
                ("connection_security_policy", "mutual_tls"),
            ],
        ) >= 20
    };
    let sentences_metrics = w.metrics_when(APP_NS, "sentences", from_gateway).await;
    assert!(from_gateway(&sentences_metrics), "{sentences_metrics}");
    for (deployment, workload) in [("age", "age"), ("name", "name"), ("name-v2", "name-v2")] {
        let m = w.metrics(APP_NS, deployment).await;
        assert!(
            requests(
                &m,
                &[
                    ("reporter", "destination"),
                    ("source_workload", "sentences"),
                    ("destination_workload", workload),
                    ("connection_security_policy", "mutual_tls"),
                ]
            ) > 0,
            "{m}"
        );
        assert_eq!(
            requests(
                &m,
                &[
                    ("connection_security_policy", "none"),
                    ("source_workload", "sentences")
                ]
            ),
            0
        );
    }
    let dump = w
        .admin(
            APP_NS,
            "sentences",
            "/config_dump?resource=dynamic_active_clusters",
        )
        .await;
    let age_cluster = find_cluster(&dump, AGE);
    assert_eq!(
        age_cluster["transport_socket_matches"][0]["match"]["tlsMode"],
        "istio"
    );

    // O6: PERMISSIVE + DestinationRule subsets: v1 plaintext, v2 mTLS.
    w.cluster.apply(peer_auth("PERMISSIVE"));
    for o in dest_rule() {
        w.cluster.apply(o);
    }
    w.mesh.settle().await;
    let d = w
        .admin(
            APP_NS,
            "sentences",
            "/config_dump?resource=dynamic_active_clusters",
        )
        .await;
    let v1 = find_cluster(&d, NAME_V1);
    let v2 = find_cluster(&d, NAME_V2);
    assert!(
        v1.get("transport_socket").is_none() && v1.get("transport_socket_matches").is_none(),
        "{v1}"
    );
    assert_eq!(
        v2["transport_socket"]["name"],
        "envoy.transport_sockets.tls"
    );
    assert_eq!(
        v2["transport_socket"]["typed_config"]["sni"],
        "outbound_.5000_.name-v2_.name.sentences.svc.cluster.local"
    );
    // The subset clusters are new: their counters cover only this step.
    let answers = all(&w, 40, sentence).await;
    let after = w.envoy_stats(APP_NS, "sentences").await;
    let (v1_tls, v1_cx) = tls_and_connections(&after, NAME_V1);
    let (v2_tls, v2_cx) = tls_and_connections(&after, NAME_V2);
    assert!(v1_cx > 0 && v1_tls == 0, "v1: {v1_tls} TLS of {v1_cx}");
    assert!(v2_cx > 0 && v2_tls == v2_cx, "v2: {v2_tls} TLS of {v2_cx}");
    assert!(answers.iter().any(|(_, b)| b.contains("(v2)")));
    let v1m = w.metrics(APP_NS, "name").await;
    assert!(
        requests(
            &v1m,
            &[
                ("reporter", "destination"),
                ("source_workload", "sentences"),
                ("destination_version", "v1"),
                ("connection_security_policy", "none"),
                ("source_principal", "unknown"),
            ]
        ) > 0,
        "{v1m}"
    );
}

pub fn find_cluster_opt<'a>(
    dump: &'a serde_json::Value,
    name: &str,
) -> Option<&'a serde_json::Value> {
    dump["configs"]
        .as_array()?
        .iter()
        .map(|c| &c["cluster"])
        .find(|c| c["name"] == name)
}

pub fn find_cluster<'a>(dump: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    find_cluster_opt(dump, name).unwrap_or_else(|| panic!("no cluster {name}"))
}
