//! The exercise's documented outcomes inside the mesh (SPEC §3, suite `mesh`, O1–O6),
//! played against the simulation in order, with the telemetry and proxy config that
//! prove them.

mod common;

use common::*;
use std::time::Duration;
use testkit_mesh::HopOutcome;

async fn all(w: &World, n: usize, want: fn(u16, &str) -> bool) -> Vec<(u16, String)> {
    let mut seen = vec![];
    for _ in 0..n {
        let (code, body) = w.through_gateway().await;
        assert!(want(code, &body), "unexpected answer {code}: {body}");
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

/// Waits until requests through the gateway give `want` (config propagation), then
/// returns.
async fn converge(w: &World, want: fn(u16, &str) -> bool) {
    let ok = eventually(Duration::from_secs(5), || async {
        let (c, b) = w.through_gateway().await;
        want(c, &b).then_some(())
    })
    .await;
    assert!(ok.is_some(), "behaviour did not converge");
}

#[tokio::test]
async fn the_exercise_outcomes_hold_in_order() {
    let w = exercise(fast_options()).await;

    // O1: no pod has a sidecar; traffic flows.
    for pod in w.cluster.pods(APP_NS) {
        assert!(
            !has_sidecar(&pod),
            "unexpected sidecar in {}",
            pod["metadata"]["name"]
        );
        assert!(pod["metadata"]["annotations"]["sidecar.istio.io/status"].is_null());
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

    // O3: a sidecar in age only: every request is the frontend's 500.
    enable_injection(&w.cluster, "age");
    let age = w.cluster.pod_of(APP_NS, "age");
    assert!(has_sidecar(&age), "age was not injected: {age}");
    converge(&w, frontend_500).await;
    // Until the EndpointSlice shows the new pod, a 500 may also come from the old
    // address (refused); wait for the sidecar's rejections, then count.
    let closing = eventually(Duration::from_secs(5), || async {
        let before = w
            .mesh
            .stats()
            .count("sentences", "age", HopOutcome::ClosedByStrict);
        w.through_gateway().await;
        (w.mesh
            .stats()
            .count("sentences", "age", HopOutcome::ClosedByStrict)
            > before)
            .then_some(())
    })
    .await;
    assert!(closing.is_some(), "age's sidecar never closed a connection");
    let before = w.mesh.stats();
    all(&w, 20, frontend_500).await;
    let stats = w.mesh.stats();
    assert_eq!(
        stats.count("sentences", "age", HopOutcome::ClosedByStrict)
            - before.count("sentences", "age", HopOutcome::ClosedByStrict),
        20,
        "{stats:?}"
    );
    let age_metrics = w.metrics(APP_NS, "age").await;
    assert_eq!(
        requests(&age_metrics, &[("reporter", "destination")]),
        0,
        "a STRICT rejection must leave no destination series: {age_metrics}"
    );
    let gw_metrics = w.metrics("istio-system", "istio-ingressgateway").await;
    assert!(
        requests(
            &gw_metrics,
            &[
                ("reporter", "source"),
                ("source_workload", "istio-ingressgateway"),
                ("destination_workload", "sentences"),
                ("response_code", "500"),
                ("response_flags", "-"),
                ("connection_security_policy", "unknown"),
            ]
        ) >= 20,
        "{gw_metrics}"
    );
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
    converge(&w, sentence).await;
    all(&w, 10, sentence).await;
    let age_metrics = w.metrics(APP_NS, "age").await;
    assert!(
        requests(
            &age_metrics,
            &[
                ("reporter", "destination"),
                ("source_workload", "unknown"),
                ("destination_workload", "age"),
                ("connection_security_policy", "none"),
            ]
        ) >= 10,
        "{age_metrics}"
    );

    // O5: sidecars everywhere and STRICT: traffic flows, every edge mTLS.
    for d in ["sentences", "name", "name-v2"] {
        enable_injection(&w.cluster, d);
    }
    w.cluster.apply(peer_auth("STRICT"));
    w.mesh.settle().await;
    converge(&w, sentence).await;
    let before = w.mesh.stats();
    all(&w, 20, sentence).await;
    let after = w.mesh.stats();
    for (from, to) in [
        ("istio-ingressgateway", "sentences"),
        ("sentences", "age"),
        ("sentences", "name"),
        ("sentences", "name-v2"),
    ] {
        let mtls = after.count(from, to, HopOutcome::MutualTls)
            - before.count(from, to, HopOutcome::MutualTls);
        let total = after.total(from, to) - before.total(from, to);
        assert!(
            mtls > 0 && mtls == total,
            "{from} → {to}: {mtls}/{total} mTLS"
        );
    }
    let sentences_metrics = w.metrics(APP_NS, "sentences").await;
    assert!(
        requests(
            &sentences_metrics,
            &[
                ("reporter", "destination"),
                ("source_workload", "istio-ingressgateway"),
                (
                    "source_principal",
                    "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
                ),
                ("connection_security_policy", "mutual_tls"),
            ]
        ) >= 20,
        "{sentences_metrics}"
    );
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
    let age_cluster = find_cluster(&dump, "outbound|5000||age.sentences.svc.cluster.local");
    assert_eq!(
        age_cluster["transport_socket_matches"][0]["match"]["tlsMode"],
        "istio"
    );

    // O6: PERMISSIVE + DestinationRule subsets: v1 plaintext, v2 mTLS.
    w.cluster.apply(peer_auth("PERMISSIVE"));
    for o in dest_rule() {
        w.cluster.apply(o);
    }
    let subsets_arrived = eventually(Duration::from_secs(5), || async {
        let d = w
            .admin(
                APP_NS,
                "sentences",
                "/config_dump?resource=dynamic_active_clusters",
            )
            .await;
        let v1 = find_cluster_opt(&d, "outbound|5000|name-v1|name.sentences.svc.cluster.local");
        let v2 = find_cluster_opt(&d, "outbound|5000|name-v2|name.sentences.svc.cluster.local");
        (v1.is_some() && v2.is_some()).then_some(d)
    })
    .await
    .expect("the subset clusters reach the frontend's sidecar");
    let v1 = find_cluster(
        &subsets_arrived,
        "outbound|5000|name-v1|name.sentences.svc.cluster.local",
    );
    let v2 = find_cluster(
        &subsets_arrived,
        "outbound|5000|name-v2|name.sentences.svc.cluster.local",
    );
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
    w.mesh.settle().await;
    let before = w.mesh.stats();
    let answers = all(&w, 40, sentence).await;
    let after = w.mesh.stats();
    let d = |from: &str, to: &str, o| after.count(from, to, o) - before.count(from, to, o);
    assert!(d("sentences", "name", HopOutcome::Plaintext) > 0);
    assert_eq!(d("sentences", "name", HopOutcome::MutualTls), 0);
    assert!(d("sentences", "name-v2", HopOutcome::MutualTls) > 0);
    assert_eq!(d("sentences", "name-v2", HopOutcome::Plaintext), 0);
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
