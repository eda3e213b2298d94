//! REVIEW (branch `review`): wrong worlds the harness PASSES today. Every test here
//! builds a world that must not pass and asserts that the harness does not pass it, so
//! each test FAILS until the harness is fixed. They are prober tests against loopback
//! servers and oracle unit tests; the end-to-end ones are in `end_to_end.rs` (trials
//! named `review_false_pass_*`).

mod common;

use common::tls_server::{certs, provider, roots};
use harness::cluster::workloads::{self, Sidecar};
use harness::expect::tls::rejections;
use harness::expect::traffic;
use harness::pki::Pki;
use harness::probe::Probe;
use harness::probe::http::Target;
use harness::probe::sentence::Grammar;
use harness::probe::tls::{ClientIdentity, TlsProbe, TlsVersions, client_config};
use harness::telemetry::proxy_config;
use harness::verdict::Verdict;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "sentences.example.com";

fn probe(pki: &Pki, addr: SocketAddr, identity: ClientIdentity) -> TlsProbe {
    let _ = provider();
    let id = match identity {
        ClientIdentity::Trusted => Some((pki.client_cert.as_str(), pki.client_key.as_str())),
        ClientIdentity::Untrusted => Some((
            pki.untrusted_client_cert.as_str(),
            pki.untrusted_client_key.as_str(),
        )),
        ClientIdentity::None => None,
    };
    let config = client_config(&pki.ca_cert, id, TlsVersions::Any).unwrap();
    TlsProbe::new(
        HOST,
        Target::direct(addr),
        config,
        identity,
        Arc::new(Grammar::app_defaults()),
    )
    .unwrap()
}

/// A MUTUAL gateway that serves its first connection as configured (client
/// certificates from the run's CA) and, from the second on, rejects EVERY client at the
/// TLS layer, the run's own client included: its client CA is now an unrelated one (a
/// credential rotated to the wrong `cacert`, or a second gateway replica behind
/// `--ingress-tls-address` with a stale credential).
async fn gateway_that_turns_against_everyone(pki: &Pki) -> SocketAddr {
    let provider = provider();
    let stranger = Pki::issue("stranger.example.com").unwrap();
    let config = |client_ca: &str| {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots(client_ca), Arc::clone(&provider))
                .build()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(&pki.server_cert), key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    };
    let good = config(&pki.ca_cert);
    let broken = config(&stranger.ca_cert);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = if connections.fetch_add(1, Ordering::SeqCst) == 0 {
                good.clone()
            } else {
                broken.clone()
            };
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let Ok(n) = tls.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                let body = "Peter is 42 years";
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// REVIEW finding: the positive control of O8/O9 runs once, before the rejections, and
/// is never repeated; a gateway that rejects every client (the trusted one included)
/// after one lucky connection passes `ingress::03` (and `ingress::04`).
#[tokio::test]
async fn review_false_pass_o8_o9_a_gateway_rejecting_every_client_after_the_control() {
    let pki = Pki::issue(HOST).unwrap();
    let addr = gateway_that_turns_against_everyone(&pki).await;
    let deadline = Duration::from_secs(5);
    // ingress::03 exactly as suites/ingress/suite.yaml has it.
    let control = traffic::flows(
        &probe(&pki, addr, ClientIdentity::Trusted),
        1,
        &[],
        deadline,
    )
    .await;
    let none = ClientIdentity::None;
    let o8 = rejections(&probe(&pki, addr, none), none, 3, deadline).await;
    let untrusted = ClientIdentity::Untrusted;
    let o9 = rejections(&probe(&pki, addr, untrusted), untrusted, 3, deadline).await;
    // What the world is: the trusted client is now refused just the same.
    let trusted_now = probe(&pki, addr, ClientIdentity::Trusted).once().await;
    eprintln!(
        "positive control: {:?}: {}",
        control.verdict, control.evidence.summary
    );
    eprintln!("O8 verdict: {:?}: {}", o8.verdict, o8.evidence.summary);
    eprintln!("O9 verdict: {:?}: {}", o9.verdict, o9.evidence.summary);
    eprintln!("the trusted client right after: {}", trusted_now.short());
    assert_ne!(
        trusted_now.class,
        harness::probe::class::ResultClass::Ok,
        "the world is wrong: the trusted client is rejected too"
    );
    let step_passes = |reject: &harness::verdict::Judgement| {
        control.verdict == Verdict::Passed && reject.verdict == Verdict::Passed
    };
    assert!(
        !step_passes(&o8) && !step_passes(&o9),
        "a gateway that rejects the trusted client as well must not pass O8/O9; \
         O8: {:?} ({}); O9: {:?} ({}); trusted client now: {}",
        o8.verdict,
        o8.evidence.summary,
        o9.verdict,
        o9.evidence.summary,
        trusted_now.short()
    );
}

/// REVIEW finding: a sidecar is any ready container named `istio-proxy`; one that is
/// not the injector's (no `sidecar.istio.io/status`, not Istio's proxy image: e.g. a
/// pod template that carries its own `istio-proxy` container while injection is off)
/// counts as a ready sidecar, so `ingress::01` (only a `sidecars` check) passes.
#[test]
fn review_false_pass_an_istio_proxy_container_not_from_the_injector_is_a_sidecar() {
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "age-1", "annotations": {"sidecar.istio.io/inject": "false"}},
        "spec": {"containers": [
            {"name": "age", "image": "ghcr.io/michaelvl/istio-katas"},
            {"name": "istio-proxy", "image": "docker.io/library/busybox:1.36",
             "command": ["sleep", "infinity"]}]},
        "status": {"containerStatuses": [
            {"name": "age", "ready": true, "restartCount": 0, "image": "x", "imageID": ""},
            {"name": "istio-proxy", "ready": true, "restartCount": 0,
             "image": "docker.io/library/busybox:1.36", "imageID": ""}]}
    }))
    .unwrap();
    let seen = workloads::sidecar(&pod);
    assert!(
        !matches!(seen, Sidecar::Ready(_)),
        "a busybox named istio-proxy, without the injector's status annotation, is judged {seen:?}"
    );
}

/// REVIEW finding: `proxy-config` with `mtls: false` holds for an auto-mTLS cluster to
/// which EDS delivered no endpoint at all (0 TLS, 0 plaintext reads as "plaintext"):
/// the verdict "plaintext" is reached without a single endpoint behind it.
#[test]
fn review_false_pass_proxy_config_plaintext_with_no_endpoints_at_all() {
    let cluster = serde_json::json!({
        "name": "outbound|5000|name-v1|name.sentences.svc.cluster.local",
        "type": "EDS",
        "transport_socket_matches": [
            {"name": "tlsMode-istio", "match": {"tlsMode": "istio"},
             "transport_socket": {"name": "envoy.transport_sockets.tls"}},
            {"name": "tlsMode-disabled", "match": {},
             "transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}}]
    });
    let o = proxy_config::origination(&cluster, &[]);
    eprintln!("{}", o.describe());
    assert_ne!(
        o.mtls(),
        Some(false),
        "no endpoint: nothing shows the cluster sends plaintext ({}), yet `mtls: false` holds",
        o.describe()
    );
}

/// Kept small: the TLS server above must also accept the real thing (sanity of the
/// stand-in, so the first test's failure is the harness's and not the server's).
#[tokio::test]
async fn review_sanity_the_first_connection_is_served() {
    let pki = Pki::issue(HOST).unwrap();
    let addr = gateway_that_turns_against_everyone(&pki).await;
    let obs = probe(&pki, addr, ClientIdentity::Trusted).once().await;
    assert_eq!(
        obs.class,
        harness::probe::class::ResultClass::Ok,
        "{}",
        obs.short()
    );
}
