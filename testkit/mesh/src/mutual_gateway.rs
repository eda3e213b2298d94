//! The ingress gateway's TLS port (8443) as Envoy/BoringSSL behaves with a Gateway server
//! in `MUTUAL` mode (pilot/pkg/networking/core/listener.go `BuildListenerTLSContext`:
//! `require_client_certificate: true`):
//! - the filter chain is chosen by SNI (`server_names` = the server's hosts); no match →
//!   the connection is closed without an alert (`NR filter_chain_not_found`);
//! - no client certificate: BoringSSL sends `certificate_required` under TLS 1.3 (when it
//!   reads the client's empty Certificate, after the client finished its side of the
//!   handshake, so the client sees the alert on its first read) and `handshake_failure`
//!   under TLS 1.2 (during the handshake). rustls sends `certificate_required` in both, so
//!   the TLS 1.2 alert is rewritten here (a plaintext record at that point of 1.2);
//! - a certificate that does not chain to `cacert`: `unknown_ca` (Envoy's default
//!   validator reports `SSL_alert_from_verify_result`; rustls maps `UnknownIssuer` the
//!   same way);
//! - after the handshake, HTTP is routed like the plaintext port, with VirtualServices
//!   bound to the Gateway.

use crate::Inner;
use crate::gateway::{Credential, credential};
use crate::http::{self, Request, Response};
use crate::routing;
use crate::stats::TlsOutcome;
use crate::telemetry::LogLine;
use crate::tls_io::{HandshakeError, TlsIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::{Error as TlsError, ProtocolVersion, RootCertStore, ServerConfig};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// A fatal `handshake_failure` alert record, TLS 1.2, before encryption.
const HANDSHAKE_FAILURE_TLS12: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

/// Builds the rustls server config for a credential (ring provider).
pub(crate) fn server_config(c: &Credential) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&c.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad cert: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in `cert`".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&c.key).map_err(|e| format!("bad key: {e}"))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match &c.ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| format!("bad cacert: {e}"))?;
                roots.add(cert).map_err(|e| e.to_string())?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn classify(e: &TlsError) -> TlsOutcome {
    match e {
        TlsError::NoCertificatesPresented => TlsOutcome::NoClientCertificate,
        TlsError::InvalidCertificate(_) => TlsOutcome::UntrustedClientCertificate,
        _ => TlsOutcome::OtherError,
    }
}

/// Serves one connection on a gateway pod's TLS port.
pub(crate) async fn serve(weak: Weak<Inner>, gw_uid: String, port: u16, mut sock: TcpStream) {
    let remote = sock.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    // Read the ClientHello.
    let mut acceptor = Acceptor::default();
    let mut buf = vec![0u8; 16 * 1024];
    let accepted = loop {
        let read = tokio::time::timeout(HANDSHAKE_DEADLINE, sock.read(&mut buf)).await;
        let n = match read {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            if acceptor.read_tls(&mut data).is_err() {
                return;
            }
        }
        match acceptor.accept() {
            Ok(Some(a)) => break a,
            Ok(None) => continue,
            Err((_, mut alert)) => {
                let mut out = vec![];
                let _ = alert.write_all(&mut out);
                let _ = tokio::io::AsyncWriteExt::write_all(&mut sock, &out).await;
                return;
            }
        }
    };
    let Some(inner) = weak.upgrade() else {
        return;
    };
    let sni = accepted.client_hello().server_name().map(str::to_string);
    let now = inner.timeline.latest();
    let Some(gw) = now.pod_by_uid(&gw_uid).cloned() else {
        return;
    };
    let cfg = inner.config_view();
    let sds = inner.credential_view();
    let servers = routing::tls_servers(&cfg, &gw, port, sni.as_deref());
    let cred = servers.iter().find_map(|b| credential(&sds, &gw, b));
    let Some(cred) = cred else {
        // No filter chain for this SNI: Envoy closes without an alert.
        inner.stats.handshake(TlsOutcome::UnknownServerName);
        let local = format!("{}:{port}", gw.ip.clone().unwrap_or_default());
        let line = LogLine {
            flags: "NR",
            details: "filter_chain_not_found",
            downstream_local: &local,
            downstream_remote: &remote,
            sni: sni.as_deref().unwrap_or(""),
            ..LogLine::default()
        }
        .render();
        inner.telemetry.log(&gw.uid, line);
        drop(inner);
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut sock).await;
        return;
    };
    let cred = if cred.ca.is_some() && inner.faults.mutual_not_enforced() {
        crate::gateway::Credential { ca: None, ..cred }
    } else {
        cred
    };
    let config = match inner.tls_config(&cred) {
        Ok(c) => c,
        Err(_) => return,
    };
    let silent = inner.faults.tls_close_without_alert();
    drop(inner);
    let conn = match accepted.into_connection(config) {
        Ok(c) => c,
        Err((_, mut alert)) => {
            if !silent {
                let mut out = vec![];
                let _ = alert.write_all(&mut out);
                let _ = tokio::io::AsyncWriteExt::write_all(&mut sock, &out).await;
            }
            return;
        }
    };
    let mut tls = TlsIo::new(sock, conn);
    match tls.handshake(HANDSHAKE_DEADLINE).await {
        Ok(()) => {}
        Err(HandshakeError::Tls(e)) => {
            let outcome = classify(&e);
            let tls12 = tls.conn.protocol_version() == Some(ProtocolVersion::TLSv1_2);
            if let Some(inner) = weak.upgrade() {
                inner.stats.handshake(if silent {
                    TlsOutcome::ClosedWithoutAlert
                } else {
                    outcome
                });
                let local = format!("{}:{port}", gw.ip.clone().unwrap_or_default());
                let failure = e.to_string();
                let line = LogLine {
                    flags: "-",
                    termination: "tls_handshake_failed",
                    transport_failure: &failure,
                    downstream_local: &local,
                    downstream_remote: &remote,
                    sni: sni.as_deref().unwrap_or(""),
                    ..LogLine::default()
                }
                .render();
                inner.telemetry.log(&gw.uid, line);
            }
            if !silent {
                if outcome == TlsOutcome::NoClientCertificate && tls12 {
                    let _ = tls.send_raw(&HANDSHAKE_FAILURE_TLS12).await;
                } else {
                    let _ = tls.send_queued().await;
                }
            }
            tls.close().await;
            return;
        }
        Err(_) => return,
    }
    if let Some(inner) = weak.upgrade() {
        inner.stats.handshake(TlsOutcome::Accepted);
    }
    let handler_weak = weak.clone();
    let handler: http::Handler = Arc::new(move |req: Request| match handler_weak.upgrade() {
        Some(inner) => inner.gateway_request(&gw_uid, port, sni.as_deref(), true, &req),
        None => Response::text(503, "no healthy upstream"),
    });
    http::serve(tls, handler, true).await;
}
