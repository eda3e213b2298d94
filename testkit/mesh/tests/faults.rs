//! Each fault makes a wrong world that a harness must not pass in, and each is visible
//! in what the harness can observe (HTTP answers, telemetry, proxy config, discovery).

mod common;

use common::*;
use std::time::Duration;
use testkit_mesh::{Fault, HopOutcome, PortTarget};

async fn full_mesh(mode: &str) -> World {
    let w = exercise(fast_options()).await;
    for d in ["sentences", "age", "name", "name-v2"] {
        enable_injection(&w.cluster, d);
    }
    w.cluster.apply(peer_auth(mode));
    w.mesh.settle().await;
    w
}

#[tokio::test]
async fn the_gateway_answering_by_itself_reaches_no_app() {
    let w = full_mesh("STRICT").await;
    w.mesh
        .set_fault(Fault::GatewayAnswers(200, "Peter is 42 years".into()));
    let before = w.mesh.stats();
    for _ in 0..5 {
        assert_eq!(
            w.through_gateway().await,
            (200, "Peter is 42 years".to_string())
        );
    }
    let after = w.mesh.stats();
    assert_eq!(before.edges, after.edges, "no hop happened");
    assert_eq!(requests(&w.metrics(APP_NS, "sentences").await, &[]), 0);
}

#[tokio::test]
async fn a_backend_local_reply_is_pasted_into_a_200_sentence() {
    let w = full_mesh("STRICT").await;
    w.mesh.set_fault(Fault::BackendLocalReply {
        workload: "age".into(),
    });
    let (code, body) = w.through_gateway().await;
    assert_eq!(code, 200);
    assert!(
        body.ends_with(" is upstream connect error or disconnect/reset before headers. reset reason: connection termination years"),
        "{body}"
    );
    assert!(!is_sentence(&body));
    let m = w.metrics(APP_NS, "sentences").await;
    assert!(
        requests(
            &m,
            &[
                ("reporter", "source"),
                ("destination_workload", "age"),
                ("response_code", "503"),
                ("response_flags", "UC")
            ]
        ) > 0,
        "{m}"
    );
    assert!(
        w.mesh
            .stats()
            .count("sentences", "age", HopOutcome::LocalReply)
            > 0
    );
}

#[tokio::test]
async fn a_plaintext_share_shows_in_telemetry_under_strict() {
    let w = full_mesh("STRICT").await;
    w.mesh.set_fault(Fault::PlaintextShare {
        from: "sentences".into(),
        to: "age".into(),
        share: 0.5,
    });
    for _ in 0..20 {
        let (code, body) = w.through_gateway().await;
        assert!(code == 200 && is_sentence(&body), "{body}");
    }
    let m = w.metrics(APP_NS, "age").await;
    let plain = requests(
        &m,
        &[
            ("source_workload", "sentences"),
            ("connection_security_policy", "none"),
        ],
    );
    let mtls = requests(
        &m,
        &[
            ("source_workload", "sentences"),
            ("connection_security_policy", "mutual_tls"),
        ],
    );
    assert_eq!((plain, mtls), (10, 10), "{m}");
}

#[tokio::test]
async fn strict_not_enforced_lets_plaintext_through() {
    let w = exercise(fast_options()).await;
    w.mesh.set_fault(Fault::StrictNotEnforced);
    w.cluster.apply(peer_auth("STRICT"));
    enable_injection(&w.cluster, "age");
    w.mesh.settle().await;
    for _ in 0..5 {
        let (code, body) = w.through_gateway().await;
        assert!(code == 200 && is_sentence(&body), "{code}: {body}");
    }
    let m = w.metrics(APP_NS, "age").await;
    assert_eq!(
        requests(
            &m,
            &[
                ("source_workload", "unknown"),
                ("connection_security_policy", "none")
            ]
        ),
        5
    );
}

#[tokio::test]
async fn no_telemetry_takes_the_target_down() {
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
    let w = full_mesh("PERMISSIVE").await;
    w.mesh.set_fault(Fault::DestinationRuleIgnored);
    for o in dest_rule() {
        w.cluster.apply(o);
    }
    w.mesh.settle().await;
    let before = w.mesh.stats();
    for _ in 0..10 {
        w.through_gateway().await;
    }
    let after = w.mesh.stats();
    assert!(
        after.count("sentences", "name", HopOutcome::MutualTls)
            > before.count("sentences", "name", HopOutcome::MutualTls)
    );
    assert_eq!(after.count("sentences", "name", HopOutcome::Plaintext), 0);
    let dump = w
        .admin(
            APP_NS,
            "sentences",
            "/config_dump?resource=dynamic_active_clusters",
        )
        .await;
    let v1 = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cluster"]["name"] == "outbound|5000|name-v1|name.sentences.svc.cluster.local")
        .expect("subset cluster");
    assert_eq!(
        v1["cluster"]["transport_socket_matches"][0]["match"]["tlsMode"],
        "istio"
    );
}

#[tokio::test]
async fn a_slow_push_delays_enforcement_and_frozen_discovery_goes_stale() {
    let w = exercise(fast_options()).await;
    w.mesh
        .set_fault(Fault::SlowPush(Duration::from_millis(800)));
    enable_injection(&w.cluster, "age");
    w.cluster.apply(peer_auth("STRICT"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, _) = w.through_gateway().await;
    assert_eq!(code, 200, "STRICT has not reached age's sidecar yet");
    let failed = eventually(Duration::from_secs(5), || async {
        let (code, body) = w.through_gateway().await;
        (code == 500 && is_flask_500(&body)).then_some(())
    })
    .await;
    assert!(failed.is_some());

    w.mesh.set_fault(Fault::DiscoveryFrozen);
    let sd = std::fs::read_to_string(w.mesh.file_sd_path()).unwrap();
    enable_injection(&w.cluster, "name");
    w.mesh.settle().await;
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
