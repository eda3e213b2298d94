//! The ingress suite's outcomes (SPEC §3, O7–O9) against the MUTUAL gateway: accepted
//! with a client certificate, `certificate_required` (TLS 1.3) / `handshake_failure`
//! (TLS 1.2) without one, `unknown_ca` for another CA, no alert for an unknown SNI, the
//! port closed until the credential arrived and after the Gateway is gone.

mod common;

use common::*;
use rustls::AlertDescription;
use std::time::Duration;
use testkit_mesh::{Fault, MeshOptions, PortTarget, TlsOutcome};

const GW_NS: &str = "istio-system";
const HOST: &str = "sentences.example.com";

async fn ingress_world(options: MeshOptions) -> World {
    let w = exercise(options).await;
    for d in ["sentences", "age", "name", "name-v2"] {
        enable_injection(&w.cluster, d);
    }
    w.cluster.delete("Gateway", APP_NS, "sentences");
    w.cluster.delete("VirtualService", APP_NS, "sentences");
    w.mesh.settle().await;
    w
}

async fn tls_port(w: &World) -> std::net::SocketAddr {
    eventually(Duration::from_secs(5), || async {
        match w.mesh.port_target(&w.gateway_pod(), 8443) {
            PortTarget::Tcp(a) => Some(a),
            PortTarget::Refused(_) => None,
        }
    })
    .await
    .expect("the MUTUAL gateway listens")
}

#[tokio::test]
async fn the_mutual_gateway_accepts_a_client_certificate_and_rejects_the_others() {
    let w = ingress_world(fast_options()).await;
    let gw = w.gateway_pod();
    assert!(
        matches!(w.mesh.port_target(&gw, 8080), PortTarget::Refused(_)),
        "no Gateway on 80: 8080 closed"
    );
    assert!(matches!(
        w.mesh.port_target(&gw, 8443),
        PortTarget::Refused(_)
    ));

    let other = pki("other Inc.");
    let pki = pki("example Inc.");
    // The Gateway first: without its credential Envoy keeps the listener warming.
    for o in mutual_gateway(GW_NS) {
        w.cluster.apply(o);
    }
    w.mesh.settle().await;
    assert!(
        matches!(w.mesh.port_target(&gw, 8443), PortTarget::Refused(_)),
        "no credential yet"
    );
    w.cluster.apply(tls_secret(GW_NS, &pki));
    let addr = tls_port(&w).await;

    let with_cert = || {
        client_config(
            &pki.ca_pem,
            Some((&pki.client_cert, &pki.client_key)),
            Version::Tls13,
        )
    };
    // O7
    for _ in 0..5 {
        match tls_get(addr, HOST, with_cert()).await {
            TlsResult::Http(200, body) => assert!(is_sentence(&body), "{body}"),
            other => panic!("with a client certificate: {other:?}"),
        }
    }
    match tls_get(
        addr,
        HOST,
        client_config(
            &pki.ca_pem,
            Some((&pki.client_cert, &pki.client_key)),
            Version::Tls12,
        ),
    )
    .await
    {
        TlsResult::Http(200, body) => assert!(is_sentence(&body)),
        other => panic!("TLS 1.2 with a client certificate: {other:?}"),
    }
    // O8
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
    match tls_get(addr, "other.example.com", with_cert()).await {
        TlsResult::Closed(_) => {}
        other => panic!("unknown SNI: {other:?}"),
    }
    let s = w.mesh.stats();
    assert_eq!(s.handshakes(TlsOutcome::NoClientCertificate), 2);
    assert_eq!(s.handshakes(TlsOutcome::UntrustedClientCertificate), 2);
    assert_eq!(s.handshakes(TlsOutcome::UnknownServerName), 1);
    assert!(s.handshakes(TlsOutcome::Accepted) >= 6);
    assert!(s.gateway_answered(8443, 200) >= 6);

    // A wrong world: the gateway closes without an alert.
    w.mesh.set_fault(Fault::TlsCloseWithoutAlert);
    match tls_get(addr, HOST, client_config(&pki.ca_pem, None, Version::Tls13)).await {
        TlsResult::Closed(_) => {}
        other => panic!("close without alert: {other:?}"),
    }
    w.mesh.clear_faults();

    // The Gateway removed: the port closes again.
    w.cluster.delete("Gateway", GW_NS, "sentences");
    let closed = eventually(Duration::from_secs(5), || async {
        matches!(w.mesh.port_target(&gw, 8443), PortTarget::Refused(_)).then_some(())
    })
    .await;
    assert!(closed.is_some());
}

#[tokio::test]
async fn a_new_credential_takes_the_sds_delay() {
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
    tls_port(&w).await;
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    // A Secret in the app namespace is not where credentialName resolves.
    w.cluster.delete("Secret", GW_NS, "sentences-tls-secret");
    w.cluster.apply(tls_secret(APP_NS, &pki));
    let closed = eventually(Duration::from_secs(5), || async {
        matches!(
            w.mesh.port_target(&w.gateway_pod(), 8443),
            PortTarget::Refused(_)
        )
        .then_some(())
    })
    .await;
    assert!(closed.is_some());
}
