//! The ingress suite's outcomes (SPEC §3, O7–O9) against the real Envoy gateway in
//! MUTUAL mode, with rustls clients: accepted with a client certificate; BoringSSL's
//! `certificate_required` (TLS 1.3) / `handshake_failure` (TLS 1.2) without one;
//! `unknown_ca` for another CA; no alert for an unknown SNI; the port closed until the
//! credential arrived and after the Gateway is gone. Envoy's own listener counters
//! confirm each outcome.

mod common;

use common::*;
use rustls::AlertDescription;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use testkit_mesh::MeshOptions;

const GW_NS: &str = "istio-system";
const HOST: &str = "sentences.example.com";

async fn ingress_world(options: MeshOptions) -> World {
    let w = exercise(options).await;
    enable_injection_all(&w.cluster, &["sentences", "age", "name", "name-v2"]).await;
    w.cluster.delete("Gateway", APP_NS, "sentences");
    w.cluster.delete("VirtualService", APP_NS, "sentences");
    w.mesh.settle().await;
    w
}

async fn listens(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

/// The gateway's TLS port once Envoy listens on it.
async fn tls_port(w: &World) -> SocketAddr {
    let addr = w.target(&w.gateway_pod(), 8443);
    eventually(Duration::from_secs(10), || async {
        listens(addr).await.then_some(addr)
    })
    .await
    .expect("the MUTUAL gateway listens")
}

fn listener_stat(stats: &HashMap<String, u64>, ip: &str, name: &str) -> u64 {
    stats
        .get(&format!("listener.{ip}_8443.{name}"))
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn the_mutual_gateway_accepts_a_client_certificate_and_rejects_the_others() {
    needs_envoy!();
    let w = ingress_world(fast_options()).await;
    let gw = w.gateway_pod();
    assert!(
        !listens(w.target(&gw, 8080)).await,
        "no Gateway on 80: 8080 closed"
    );
    assert!(
        !listens(w.target(&gw, 8443)).await,
        "no Gateway on 443: 8443 closed"
    );

    let other = pki("other Inc.");
    let pki = pki("example Inc.");
    // The Gateway first: without its credential there is no filter chain to listen with.
    for o in mutual_gateway(GW_NS) {
        w.cluster.apply(o);
    }
    w.mesh.settle().await;
    assert!(!listens(w.target(&gw, 8443)).await, "no credential yet");
    w.cluster.apply(tls_secret(GW_NS, &pki));
    let addr = tls_port(&w).await;
    w.mesh.settle().await;

    let with_cert = |v| client_config(&pki.ca_pem, Some((&pki.client_cert, &pki.client_key)), v);
    // O7, in both TLS versions.
    for _ in 0..5 {
        match tls_get(addr, HOST, with_cert(Version::Tls13)).await {
            TlsResult::Http(200, body) => assert!(is_sentence(&body), "{body}"),
            other => panic!("with a client certificate: {other:?}"),
        }
    }
    match tls_get(addr, HOST, with_cert(Version::Tls12)).await {
        TlsResult::Http(200, body) => assert!(is_sentence(&body)),
        other => panic!("TLS 1.2 with a client certificate: {other:?}"),
    }
    // O8: BoringSSL's alerts.
    match tls_get(addr, HOST, client_config(&pki.ca_pem, None, Version::Tls13)).await {
        TlsResult::Alert(AlertDescription::CertificateRequired) => {}
        other => panic!("TLS 1.3 without a certificate: {other:?}"),
    }
    match tls_get(addr, HOST, client_config(&pki.ca_pem, None, Version::Tls12)).await {
        TlsResult::Alert(AlertDescription::HandshakeFailure) => {}
        other => panic!("TLS 1.2 without a certificate: {other:?}"),
    }
    // O9
    for v in [Version::Tls13, Version::Tls12] {
        match tls_get(
            addr,
            HOST,
            client_config(
                &pki.ca_pem,
                Some((&other.client_cert, &other.client_key)),
                v,
            ),
        )
        .await
        {
            TlsResult::Alert(AlertDescription::UnknownCA) => {}
            other => panic!("another CA's certificate: {other:?}"),
        }
    }
    // An SNI without a filter chain: closed, no alert.
    match tls_get(addr, "other.example.com", with_cert(Version::Tls13)).await {
        TlsResult::Closed(_) => {}
        other => panic!("unknown SNI: {other:?}"),
    }
    let stats = w.envoy_stats(GW_NS, "istio-ingressgateway").await;
    let ip = w.pod_ip(GW_NS, "istio-ingressgateway");
    assert_eq!(
        listener_stat(&stats, &ip, "ssl.fail_verify_no_cert"),
        2,
        "{stats:?}"
    );
    assert_eq!(listener_stat(&stats, &ip, "ssl.fail_verify_error"), 2);
    assert_eq!(listener_stat(&stats, &ip, "no_filter_chain_match"), 1);
    assert!(listener_stat(&stats, &ip, "ssl.handshake") >= 6);

    // The Gateway removed: the port closes again.
    w.cluster.delete("Gateway", GW_NS, "sentences");
    let closed = eventually(Duration::from_secs(10), || async {
        (!listens(addr).await).then_some(())
    })
    .await;
    assert!(closed.is_some(), "the listener is gone with its Gateway");
}

#[tokio::test]
async fn a_new_credential_takes_the_sds_delay_and_resolves_in_the_gateway_namespace() {
    needs_envoy!();
    let w = ingress_world(MeshOptions {
        sds_delay: Duration::from_millis(500),
        ..fast_options()
    })
    .await;
    let pki = pki("example Inc.");
    for o in mutual_gateway(GW_NS) {
        w.cluster.apply(o);
    }
    w.cluster.apply(tls_secret(GW_NS, &pki));
    let start = tokio::time::Instant::now();
    let addr = tls_port(&w).await;
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    // A Secret in the app namespace is not where credentialName resolves.
    w.cluster.delete("Secret", GW_NS, "sentences-tls-secret");
    w.cluster.apply(tls_secret(APP_NS, &pki));
    let closed = eventually(Duration::from_secs(10), || async {
        (!listens(addr).await).then_some(())
    })
    .await;
    assert!(closed.is_some());
}
