//! Each fault makes a wrong world a harness must not pass in, and each shows where a
//! harness can see it: HTTP answers, the proxies' config dumps, Envoy's own counters,
//! telemetry, discovery. Faults of the data plane are wrong Envoy config: what happens
//! on the wire is real Envoy's doing.

mod common;

use common::*;
use rustls::AlertDescription;
use serde_json::Value;
use std::time::Duration;
use testkit_mesh::{Fault, PortTarget};

const V1: &str = "outbound|5000|name-v1|name.sentences.svc.cluster.local";
const V2: &str = "outbound|5000|name-v2|name.sentences.svc.cluster.local";
const GW_NS: &str = "istio-system";
const HOST: &str = "sentences.example.com";

async fn full_mesh(mode: &str) -> World {
    let w = exercise(fast_options()).await;
    enable_injection_all(&w.cluster, &["sentences", "age", "name", "name-v2"]).await;
    w.cluster.apply(peer_auth(mode));
    assert!(w.mesh.settle_within(Duration::from_secs(20)).await);
    w
}

/// A fault set after the world is up reaches the proxies with istiod's next push.
async fn with_fault(w: &World, fault: Fault) {
    w.mesh.set_fault(fault);
    assert!(w.mesh.settle_within(Duration::from_secs(20)).await);
}

/// The full mesh under PERMISSIVE with the exercise's DestinationRule, after `fault`.
async fn subsets_with(fault: Fault) -> World {
    let w = full_mesh("PERMISSIVE").await;
    w.mesh.set_fault(fault);
    for o in dest_rule() {
        w.cluster.apply(o);
    }
    assert!(w.mesh.settle_within(Duration::from_secs(20)).await);
    w
}

async fn clusters(w: &World, section: &str) -> Vec<Value> {
    let dump = w.admin(APP_NS, "sentences", "/config_dump").await;
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.ClustersConfigDump")
        .flat_map(|c| c[section].as_array().cloned().unwrap_or_default())
        .map(|e| e["cluster"].clone())
        .collect()
}

async fn cluster(w: &World, name: &str) -> Value {
    clusters(w, "dynamic_active_clusters")
        .await
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no active cluster {name}"))
}

fn destination(m: &str, policy: &str) -> u64 {
    requests(
        m,
        &[
            ("reporter", "destination"),
            ("source_workload", "sentences"),
            ("connection_security_policy", policy),
        ],
    )
}

#[tokio::test]
async fn the_gateway_answering_by_itself_reaches_no_app() {
    needs_envoy!();
    let w = full_mesh("STRICT").await;
    with_fault(&w, Fault::GatewayAnswers(200, "Peter is 42 years".into())).await;
    for _ in 0..5 {
        assert_eq!(
            w.through_gateway().await,
            (200, "Peter is 42 years".to_string())
        );
    }
    assert_eq!(requests(&w.metrics(APP_NS, "sentences").await, &[]), 0);
}

#[tokio::test]
async fn a_backend_local_reply_is_pasted_into_a_200_sentence() {
    needs_envoy!();
    let w = full_mesh("STRICT").await;
    w.mesh.set_fault(Fault::BackendLocalReply {
        workload: "age".into(),
    });
    // The app calls age with a 1 s timeout (as app.py does): on a loaded machine a call
    // can run out of it and the app answers 500; the pasted reply is what is asked for.
    let mut answers = Vec::new();
    let (code, body) = loop {
        let (code, body) = w.through_gateway().await;
        if code == 200 || answers.len() == 4 {
            break (code, body);
        }
        answers.push(code);
    };
    let pod = w.cluster.pod_of(APP_NS, "sentences");
    let logs = w
        .mesh
        .proxy_logs(APP_NS, pod["metadata"]["name"].as_str().unwrap());
    assert_eq!(
        code,
        200,
        "before: {answers:?}\n{body}\n{}",
        logs.join("\n")
    );
    assert!(
        body.ends_with(" is upstream connect error or disconnect/reset before headers. reset reason: connection termination years"),
        "{body}"
    );
    assert!(!is_sentence(&body));
}

#[tokio::test]
async fn a_plaintext_share_is_sent_and_accepted_under_strict() {
    needs_envoy!();
    let w = full_mesh("STRICT").await;
    with_fault(
        &w,
        Fault::PlaintextShare {
            from: "sentences".into(),
            to: "age".into(),
            share: 0.5,
        },
    )
    .await;
    for _ in 0..40 {
        let (code, body) = w.through_gateway().await;
        assert!(code == 200 && is_sentence(&body), "{body}");
    }
    let m = w
        .metrics_when(APP_NS, "age", |m| {
            destination(m, "none") + destination(m, "mutual_tls") >= 40
        })
        .await;
    let (plain, mtls) = (destination(&m, "none"), destination(&m, "mutual_tls"));
    // Envoy picks weighted clusters at random: about half each way.
    assert!(
        (8..=32).contains(&plain) && plain + mtls >= 40,
        "{plain} plaintext, {mtls} mTLS: {m}"
    );
}

#[tokio::test]
async fn strict_not_enforced_lets_plaintext_through() {
    needs_envoy!();
    let w = exercise(fast_options()).await;
    w.mesh.set_fault(Fault::StrictNotEnforced);
    w.cluster.apply(peer_auth("STRICT"));
    enable_injection(&w.cluster, "age").await;
    assert!(w.mesh.settle_within(Duration::from_secs(20)).await);
    for _ in 0..5 {
        let (code, body) = w.through_gateway().await;
        assert!(code == 200 && is_sentence(&body), "{code}: {body}");
    }
    let unknown = |m: &str| {
        requests(
            m,
            &[
                ("source_workload", "unknown"),
                ("connection_security_policy", "none"),
            ],
        )
    };
    let m = w.metrics_when(APP_NS, "age", |m| unknown(m) >= 5).await;
    assert_eq!(unknown(&m), 5, "{m}");
}

#[tokio::test]
async fn permissive_rejecting_plaintext_keeps_the_errors() {
    needs_envoy!();
    let w = exercise(fast_options()).await;
    w.mesh.set_fault(Fault::PermissiveRejectsPlaintext);
    w.cluster.apply(peer_auth("PERMISSIVE"));
    enable_injection(&w.cluster, "age").await;
    assert!(w.mesh.settle_within(Duration::from_secs(20)).await);
    for _ in 0..5 {
        let (code, body) = w.through_gateway().await;
        assert!(code == 500 && is_flask_500(&body), "{code}: {body}");
    }
}

#[tokio::test]
async fn no_telemetry_takes_the_target_down() {
    needs_envoy!();
    let w = full_mesh("STRICT").await;
    w.mesh.set_fault(Fault::NoTelemetry {
        workload: "age".into(),
    });
    let age = w.cluster.pod_of(APP_NS, "age");
    let (code, _) = http_get(w.target(&age, 15020), "x", "/stats/prometheus")
        .await
        .unwrap();
    assert_eq!(code, 503);
    let name = age["metadata"]["name"].as_str().unwrap();
    let (code, _) = http_get(
        w.mesh.metrics_address(),
        "x",
        &format!("/{APP_NS}/{name}/15020/stats/prometheus"),
    )
    .await
    .unwrap();
    assert_eq!(code, 503);
    let sd = std::fs::read_to_string(w.mesh.file_sd_path()).unwrap();
    assert!(sd.contains(name), "the target is still discovered");
}

#[tokio::test]
async fn an_ignored_destination_rule_gives_v1_mtls() {
    needs_envoy!();
    let w = subsets_with(Fault::DestinationRuleIgnored).await;
    let v1 = cluster(&w, V1).await;
    assert_eq!(
        v1["transport_socket_matches"][0]["match"]["tlsMode"],
        "istio"
    );
    for _ in 0..10 {
        w.through_gateway().await;
    }
    let m = w
        .metrics_when(APP_NS, "name", |m| destination(m, "mutual_tls") > 0)
        .await;
    assert!(
        destination(&m, "mutual_tls") > 0 && destination(&m, "none") == 0,
        "{m}"
    );
}

#[tokio::test]
async fn a_disable_subset_that_still_sends_mtls() {
    needs_envoy!();
    let w = subsets_with(Fault::DisableStillSendsMtls).await;
    let v1 = cluster(&w, V1).await;
    assert_eq!(
        v1["transport_socket"]["name"], "envoy.transport_sockets.tls",
        "{v1}"
    );
    for _ in 0..10 {
        w.through_gateway().await;
    }
    let m = w
        .metrics_when(APP_NS, "name", |m| destination(m, "mutual_tls") > 0)
        .await;
    assert!(destination(&m, "mutual_tls") > 0, "{m}");
}

#[tokio::test]
async fn an_istio_mutual_subset_that_sends_plaintext() {
    needs_envoy!();
    let w = subsets_with(Fault::IstioMutualSendsPlaintext).await;
    let v2 = cluster(&w, V2).await;
    assert!(v2.get("transport_socket").is_none(), "{v2}");
    for _ in 0..10 {
        w.through_gateway().await;
    }
    let m = w
        .metrics_when(APP_NS, "name-v2", |m| destination(m, "none") > 0)
        .await;
    assert!(
        destination(&m, "none") > 0 && destination(&m, "mutual_tls") == 0,
        "{m}"
    );
}

#[tokio::test]
async fn missing_subset_clusters_leave_the_route_naming_them() {
    needs_envoy!();
    let w = subsets_with(Fault::SubsetClustersMissing).await;
    let names: Vec<Value> = clusters(&w, "dynamic_active_clusters")
        .await
        .into_iter()
        .map(|c| c["name"].clone())
        .collect();
    assert!(
        !names.contains(&V1.into()) && !names.contains(&V2.into()),
        "{names:?}"
    );
    let routes = w
        .admin(
            APP_NS,
            "sentences",
            "/config_dump?resource=dynamic_route_configs",
        )
        .await;
    assert!(
        routes.to_string().contains(V1),
        "the route still names the subset"
    );
    // Envoy answers the frontend's call to name itself (503, no cluster): the
    // frontend pastes its empty body.
    let (code, body) = w.through_gateway().await;
    assert!(code == 200 && body.starts_with(" is "), "{code}: {body}");
}

#[tokio::test]
async fn subset_clusters_whose_endpoints_never_come_stay_warming() {
    needs_envoy!();
    let w = full_mesh("PERMISSIVE").await;
    w.mesh.set_fault(Fault::SubsetClustersWarming);
    for o in dest_rule() {
        w.cluster.apply(o);
    }
    let warming = eventually(Duration::from_secs(10), || async {
        let names: Vec<Value> = clusters(&w, "dynamic_warming_clusters")
            .await
            .into_iter()
            .map(|c| c["name"].clone())
            .collect();
        (names.contains(&V1.into()) && names.contains(&V2.into())).then_some(())
    })
    .await;
    assert!(warming.is_some(), "the subset clusters are warming");
    assert!(
        !clusters(&w, "dynamic_active_clusters")
            .await
            .iter()
            .any(|c| c["name"] == V1),
        "and not active"
    );
}

async fn mutual_gateway_with(fault: Fault) -> (World, Pki, Pki, std::net::SocketAddr) {
    let w = full_mesh("STRICT").await;
    w.mesh.set_fault(fault);
    w.cluster.delete("Gateway", APP_NS, "sentences");
    w.cluster.delete("VirtualService", APP_NS, "sentences");
    let trusted = pki("example Inc.");
    let other = pki("other Inc.");
    for o in mutual_gateway(GW_NS) {
        w.cluster.apply(o);
    }
    w.cluster.apply(tls_secret(GW_NS, &trusted));
    let addr = w.target(&w.gateway_pod(), 8443);
    let listening = eventually(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
    })
    .await;
    assert!(listening.is_some(), "the MUTUAL gateway listens");
    assert!(w.mesh.settle_within(Duration::from_secs(20)).await);
    (w, trusted, other, addr)
}

#[tokio::test]
async fn a_gateway_that_drops_clients_without_a_certificate_sends_no_alert() {
    needs_envoy!();
    let (_w, pki, _, addr) = mutual_gateway_with(Fault::TlsCloseWithoutAlert).await;
    let trusted = client_config(
        &pki.ca_pem,
        Some((&pki.client_cert, &pki.client_key)),
        Version::Tls13,
    );
    assert!(matches!(
        tls_get(addr, HOST, trusted).await,
        TlsResult::Http(200, _)
    ));
    for v in [Version::Tls13, Version::Tls12] {
        match tls_get(addr, HOST, client_config(&pki.ca_pem, None, v)).await {
            TlsResult::Closed(_) => {}
            other => panic!("a close without a rejection alert: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_gateway_not_requiring_a_client_certificate_serves_anyone() {
    needs_envoy!();
    let (_w, pki, _, addr) = mutual_gateway_with(Fault::MutualNotRequired { replica: None }).await;
    match tls_get(addr, HOST, client_config(&pki.ca_pem, None, Version::Tls13)).await {
        TlsResult::Http(200, body) => assert!(is_sentence(&body), "{body}"),
        other => panic!("served without a certificate: {other:?}"),
    }
}

#[tokio::test]
async fn a_gateway_trusting_any_ca_serves_an_untrusted_client() {
    needs_envoy!();
    let (_w, pki, other, addr) = mutual_gateway_with(Fault::GatewayTrustsAnyCa).await;
    let untrusted = client_config(
        &pki.ca_pem,
        Some((&other.client_cert, &other.client_key)),
        Version::Tls13,
    );
    match tls_get(addr, HOST, untrusted).await {
        TlsResult::Http(200, body) => assert!(is_sentence(&body), "{body}"),
        other => panic!("served with another CA's certificate: {other:?}"),
    }
    // Without a certificate it is still refused as MUTUAL refuses.
    match tls_get(addr, HOST, client_config(&pki.ca_pem, None, Version::Tls13)).await {
        TlsResult::Alert(AlertDescription::CertificateRequired) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_slow_push_delays_enforcement_and_frozen_discovery_goes_stale() {
    needs_envoy!();
    let w = exercise(fast_options()).await;
    enable_injection(&w.cluster, "age").await;
    assert!(w.mesh.settle_within(Duration::from_secs(20)).await);
    w.mesh
        .set_fault(Fault::SlowPush(Duration::from_millis(1500)));
    w.cluster.apply(peer_auth("STRICT"));
    let (code, body) = w.through_gateway().await;
    assert!(
        code == 200 && is_sentence(&body),
        "STRICT has not reached age's sidecar yet: {code} {body}"
    );
    let failed = eventually(Duration::from_secs(10), || async {
        let (code, body) = w.through_gateway().await;
        (code == 500 && is_flask_500(&body)).then_some(())
    })
    .await;
    assert!(failed.is_some());

    w.mesh.set_fault(Fault::DiscoveryFrozen);
    let sd = std::fs::read_to_string(w.mesh.file_sd_path()).unwrap();
    enable_injection(&w.cluster, "name").await;
    assert_eq!(std::fs::read_to_string(w.mesh.file_sd_path()).unwrap(), sd);
    w.mesh.clear_faults();
    let moved = eventually(Duration::from_secs(2), || async {
        (std::fs::read_to_string(w.mesh.file_sd_path()).unwrap() != sd).then_some(())
    })
    .await;
    assert!(moved.is_some());
    assert!(matches!(
        w.mesh.port_target(&w.cluster.pod_of(APP_NS, "name"), 15020),
        PortTarget::Tcp(_)
    ));
}
