//! A stand-in for the MUTUAL ingress gateway: rustls on loopback with a server
//! certificate, client certificates from a CA required (or not), answering a status
//! with a sentence.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

pub fn roots(pem: &str) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(pem) {
        roots.add(c).unwrap();
    }
    Arc::new(roots)
}

#[derive(Clone, Copy)]
pub enum Version {
    Tls12,
    Tls13,
}

pub struct ServerSpec {
    pub version: Version,
    pub require_client_cert: bool,
    pub status: u16,
}

/// A gateway stand-in on a new loopback port.
pub async fn gateway(
    spec: ServerSpec,
    server_cert: &str,
    server_key: &str,
    client_ca: &str,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_on(listener, spec, server_cert, server_key, client_ca);
    addr
}

/// Serves on a listener bound earlier (so its address can be known before the
/// certificates exist): TLS with the server certificate, client certificates from
/// `client_ca` required (or not), answering `status` with a sentence.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    spec: ServerSpec,
    server_cert: &str,
    server_key: &str,
    client_ca: &str,
) {
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = match spec.version {
        Version::Tls12 => &[&rustls::version::TLS12],
        Version::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .unwrap();
    let builder = if spec.require_client_cert {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(client_ca), provider)
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let key = PrivateKeyDer::from_pem_slice(server_key.as_bytes()).unwrap();
    let config = builder.with_single_cert(certs(server_cert), key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let status = spec.status;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
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
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
}

/// A server that reads what the client sends and closes the connection without a word:
/// no TLS alert, no HTTP (what a dead path or a wrong gateway looks like).
pub async fn silent_closer() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = tcp.read(&mut buf).await;
            });
        }
    });
    addr
}

/// A MUTUAL gateway that serves its first connection as configured (client
/// certificates from the run's CA) and, from the second on, rejects EVERY client at the
/// TLS layer, the run's own client included: its client CA is now an unrelated one (a
/// credential rotated to the wrong `cacert`, or a second gateway replica behind
/// `--ingress-tls-address` with a stale credential).
pub async fn gateway_that_turns_against_everyone(pki: &harness::pki::Pki) -> SocketAddr {
    let provider = provider();
    let stranger = harness::pki::Pki::issue("stranger.example.com").unwrap();
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
