//! The MUTUAL-gateway probes against real rustls servers on loopback that require client
//! certificates from the run's CA (TLS 1.3-only and TLS 1.2-only), and the mutations
//! that must make the ingress verdicts fail or error.

mod common;

use common::tls_server::{ServerSpec, Version, certs, gateway, provider, roots};
use harness::expect::tls::rejections;
use harness::expect::traffic;
use harness::pki::Pki;
use harness::probe::Probe;
use harness::probe::http::Target;
use harness::probe::sentence::Grammar;
use harness::probe::tls::{ClientIdentity, TlsProbe, TlsVersions, client_config};
use harness::verdict::{Judgement, Verdict};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

async fn accepts(probe: &TlsProbe, k: u32, deadline: Duration) -> Judgement {
    traffic::flows(probe, k, &[], deadline).await
}

const DEADLINE: Duration = Duration::from_secs(5);

async fn mutual_gateway_is_judged_right(version: Version) {
    let pki = Pki::issue(HOST).unwrap();
    let addr = gateway(
        ServerSpec {
            version,
            require_client_cert: true,
            status: 200,
        },
        &pki.server_cert,
        &pki.server_key,
        &pki.ca_cert,
    )
    .await;

    let j = accepts(&probe(&pki, addr, ClientIdentity::Trusted), 3, DEADLINE).await;
    assert_eq!(j.verdict, Verdict::Passed, "O7: {}", j.evidence.summary);

    let none = ClientIdentity::None;
    let j = rejections(
        &probe(&pki, addr, none),
        &probe(&pki, addr, ClientIdentity::Trusted),
        none,
        3,
        DEADLINE,
    )
    .await;
    assert_eq!(j.verdict, Verdict::Passed, "O8: {}", j.evidence.summary);
    eprintln!("without a certificate: {}", j.evidence.summary);
    // rustls (this stand-in) sends certificate_required under both versions; BoringSSL
    // (Envoy) sends handshake_failure under TLS 1.2. Both are accepted as the refusal.
    let alert_seen = match version {
        Version::Tls13 => j.evidence.summary.contains("alert CertificateRequired"),
        Version::Tls12 => {
            j.evidence.summary.contains("alert CertificateRequired")
                || j.evidence.summary.contains("alert HandshakeFailure")
        }
    };
    assert!(alert_seen, "{}", j.evidence.summary);

    let untrusted = ClientIdentity::Untrusted;
    let j = rejections(
        &probe(&pki, addr, untrusted),
        &probe(&pki, addr, ClientIdentity::Trusted),
        untrusted,
        3,
        DEADLINE,
    )
    .await;
    assert_eq!(j.verdict, Verdict::Passed, "O9: {}", j.evidence.summary);
    assert!(
        j.evidence.summary.contains("alert UnknownCA")
            || j.evidence.summary.contains("alert BadCertificate")
            || j.evidence.summary.contains("alert DecryptError"),
        "{}",
        j.evidence.summary
    );
    eprintln!("with an untrusted certificate: {}", j.evidence.summary);
}

#[tokio::test]
async fn tls13_gateway_accepts_the_client_certificate_and_rejects_the_others() {
    mutual_gateway_is_judged_right(Version::Tls13).await;
    // TLS 1.3: the handshake completes on the client side; the alert arrives on the first read.
    let pki = Pki::issue(HOST).unwrap();
    let addr = gateway(
        ServerSpec {
            version: Version::Tls13,
            require_client_cert: true,
            status: 200,
        },
        &pki.server_cert,
        &pki.server_key,
        &pki.ca_cert,
    )
    .await;
    let obs = probe(&pki, addr, ClientIdentity::None).once().await;
    assert!(
        obs.detail.contains("CertificateRequired"),
        "{}",
        obs.short()
    );
}

#[tokio::test]
async fn tls12_gateway_accepts_the_client_certificate_and_rejects_the_others() {
    mutual_gateway_is_judged_right(Version::Tls12).await;
}

#[tokio::test]
async fn a_gateway_that_does_not_require_certificates_fails_the_rejection_verdict() {
    let pki = Pki::issue(HOST).unwrap();
    let addr = gateway(
        ServerSpec {
            version: Version::Tls13,
            require_client_cert: false,
            status: 200,
        },
        &pki.server_cert,
        &pki.server_key,
        &pki.ca_cert,
    )
    .await;
    let j = rejections(
        &probe(&pki, addr, ClientIdentity::None),
        &probe(&pki, addr, ClientIdentity::Trusted),
        ClientIdentity::None,
        3,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Failed, "{}", j.evidence.summary);
    assert!(
        j.evidence.summary.contains("the gateway answered HTTP")
            && j.evidence.summary.contains("ok (200"),
        "{}",
        j.evidence.summary
    );
}

#[tokio::test]
async fn a_closed_port_is_an_error_not_a_rejection() {
    let pki = Pki::issue(HOST).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let j = rejections(
        &probe(&pki, closed, ClientIdentity::None),
        &probe(&pki, closed, ClientIdentity::Trusted),
        ClientIdentity::None,
        3,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Errored, "{}", j.evidence.summary);
    assert!(
        j.evidence.summary.contains("not a rejection"),
        "{}",
        j.evidence.summary
    );
    let j = accepts(
        &probe(&pki, closed, ClientIdentity::Trusted),
        3,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Errored, "{}", j.evidence.summary);
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_an_error() {
    let pki = Pki::issue(HOST).unwrap();
    let other = Pki::issue("other.example.com").unwrap();
    // Served by a gateway whose certificate names another host (signed by another run's CA
    // is not the point here: same mistake, a certificate the client must not accept).
    let addr = gateway(
        ServerSpec {
            version: Version::Tls13,
            require_client_cert: true,
            status: 200,
        },
        &other.server_cert,
        &other.server_key,
        &pki.ca_cert,
    )
    .await;
    let j = accepts(
        &probe(&pki, addr, ClientIdentity::Trusted),
        3,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Errored, "{}", j.evidence.summary);
    assert!(
        j.evidence
            .summary
            .contains("does not trust the gateway's certificate"),
        "{}",
        j.evidence.summary
    );
    let j = rejections(
        &probe(&pki, addr, ClientIdentity::None),
        &probe(&pki, addr, ClientIdentity::Trusted),
        ClientIdentity::None,
        3,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        j.verdict,
        Verdict::Errored,
        "a client refusing the server is no rejection by the server: {}",
        j.evidence.summary
    );
}

#[tokio::test]
async fn a_gateway_that_answers_503_after_the_handshake_fails_both_verdicts() {
    let pki = Pki::issue(HOST).unwrap();
    let addr = gateway(
        ServerSpec {
            version: Version::Tls13,
            require_client_cert: false,
            status: 503,
        },
        &pki.server_cert,
        &pki.server_key,
        &pki.ca_cert,
    )
    .await;
    let j = accepts(
        &probe(&pki, addr, ClientIdentity::Trusted),
        3,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Failed, "{}", j.evidence.summary);
    assert!(
        j.evidence.summary.contains("http-503"),
        "{}",
        j.evidence.summary
    );
    let j = rejections(
        &probe(&pki, addr, ClientIdentity::None),
        &probe(&pki, addr, ClientIdentity::Trusted),
        ClientIdentity::None,
        3,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Failed, "{}", j.evidence.summary);
    assert!(
        j.evidence.summary.contains("answered HTTP") && j.evidence.summary.contains("http-503"),
        "{}",
        j.evidence.summary
    );
}

#[tokio::test]
async fn a_gateway_that_closes_without_an_alert_is_not_a_rejection() {
    // Envoy always sends an alert; a server (or a dead path) that just closes the
    // connection must not pass O8/O9, and a positive control cannot make it pass.
    let pki = Pki::issue(HOST).unwrap();
    let addr = common::tls_server::silent_closer().await;
    let j = rejections(
        &probe(&pki, addr, ClientIdentity::None),
        &probe(&pki, addr, ClientIdentity::Trusted),
        ClientIdentity::None,
        3,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Failed, "{}", j.evidence.summary);
    assert!(
        j.evidence.summary.contains("closed without a TLS alert"),
        "{}",
        j.evidence.summary
    );
}

#[tokio::test]
async fn an_alert_of_the_wrong_kind_is_not_the_documented_rejection() {
    // A client without a certificate refused with `unknown_ca` is not what the exercise
    // documents for O8 (certificate_required / handshake_failure): a TLS 1.3 server that
    // requires a certificate, probed with an untrusted one, but judged as "none".
    let pki = Pki::issue(HOST).unwrap();
    let addr = gateway(
        ServerSpec {
            version: Version::Tls13,
            require_client_cert: true,
            status: 200,
        },
        &pki.server_cert,
        &pki.server_key,
        &pki.ca_cert,
    )
    .await;
    let j = rejections(
        &probe(&pki, addr, ClientIdentity::Untrusted),
        &probe(&pki, addr, ClientIdentity::Trusted),
        ClientIdentity::None,
        3,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(j.verdict, Verdict::Failed, "{}", j.evidence.summary);
    assert!(
        j.evidence.summary.contains("not one a refused client gets"),
        "{}",
        j.evidence.summary
    );
}

/// A gateway that served one connection and then refuses everyone (a credential rotated
/// to the wrong CA, a replica with a stale one): its alerts are not about the client's
/// certificate, and O8/O9 must not pass on them.
#[tokio::test]
async fn a_gateway_that_refuses_the_trusted_client_too_fails_o8_and_o9() {
    let pki = Pki::issue(HOST).unwrap();
    let addr = common::tls_server::gateway_that_turns_against_everyone(&pki).await;
    let deadline = Duration::from_secs(3);
    let control = accepts(&probe(&pki, addr, ClientIdentity::Trusted), 1, deadline).await;
    assert_eq!(
        control.verdict,
        Verdict::Passed,
        "{}",
        control.evidence.summary
    );
    for identity in [ClientIdentity::None, ClientIdentity::Untrusted] {
        let j = rejections(
            &probe(&pki, addr, identity),
            &probe(&pki, addr, ClientIdentity::Trusted),
            identity,
            3,
            deadline,
        )
        .await;
        assert_eq!(
            j.verdict,
            Verdict::Failed,
            "{identity:?}: {}",
            j.evidence.summary
        );
        assert!(
            j.evidence
                .summary
                .contains("the gateway refused the trusted client too"),
            "{}",
            j.evidence.summary
        );
    }
}

#[test]
fn the_generated_chain_verifies_and_the_server_certificate_carries_the_san() {
    let provider = provider();
    let pki = Pki::issue(HOST).unwrap();
    let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots(&pki.ca_cert),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let server = certs(&pki.server_cert).remove(0);
    let now = UnixTime::now();
    server_verifier
        .verify_server_cert(&server, &[], &ServerName::try_from(HOST).unwrap(), &[], now)
        .expect("CA → server verifies for sentences.example.com (subjectAltName)");
    assert!(
        server_verifier
            .verify_server_cert(
                &server,
                &[],
                &ServerName::try_from("example.com").unwrap(),
                &[],
                now
            )
            .is_err(),
        "no other name"
    );
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots(&pki.ca_cert), Arc::clone(&provider))
            .build()
            .unwrap();
    client_verifier
        .verify_client_cert(&certs(&pki.client_cert).remove(0), &[], now)
        .expect("CA → client verifies");
    assert!(
        client_verifier
            .verify_client_cert(&certs(&pki.untrusted_client_cert).remove(0), &[], now)
            .is_err(),
        "the untrusted client does not chain to the run's CA"
    );
}

#[test]
fn key_files_are_written_0600_and_never_shown_by_debug() {
    let mut pki = Pki::issue(HOST).unwrap();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for (file, private) in [
        ("ca.crt", false),
        ("server.crt", false),
        ("server.key", true),
        ("client.crt", false),
        ("client.key", true),
        ("untrusted-ca.crt", false),
        ("untrusted-client.crt", false),
        ("untrusted-client.key", true),
    ] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        if private {
            assert_eq!(mode, 0o600, "{file}");
        } else {
            assert_ne!(
                mode & 0o044,
                0,
                "{file} is readable as a certificate should be"
            );
        }
    }
    let shown = format!("{pki:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}
