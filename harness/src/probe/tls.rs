//! The TLS probe of the MUTUAL gateway: `GET https://sentences.example.com/` at the
//! gateway's address (SNI and Host name the gateway host), always verifying the server
//! against the run's CA, presenting the chosen client identity.

use super::Probe;
use super::classify::{Observation, TlsSignal};
use super::http::{GatewayClient, Target, client_builder};
use super::sentence::Grammar;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

/// Who the TLS client claims to be.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIdentity {
    /// The client certificate signed by this run's CA.
    Trusted,
    /// No client certificate at all.
    None,
    /// A client certificate from an unrelated CA.
    Untrusted,
}

impl fmt::Display for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientIdentity::Trusted => "client certificate from the run's CA",
            ClientIdentity::None => "no client certificate",
            ClientIdentity::Untrusted => "client certificate from an unrelated CA",
        })
    }
}

impl ClientIdentity {
    /// The alerts a server that rejects this client sends (SPEC §4): a missing
    /// certificate is `certificate_required` under TLS 1.3 (read after the handshake)
    /// or `handshake_failure` under TLS 1.2; a certificate from another CA is
    /// `unknown_ca`, or `bad_certificate` / `decrypt_error` from some stacks. rustls
    /// names them as below.
    pub fn rejection_alerts(self) -> &'static [&'static str] {
        match self {
            ClientIdentity::Trusted => &[],
            ClientIdentity::None => &["CertificateRequired", "HandshakeFailure"],
            ClientIdentity::Untrusted => &["UnknownCA", "BadCertificate", "DecryptError"],
        }
    }
}

/// The TLS alert the server sent, if the request ended in one.
pub fn alert(obs: &Observation) -> Option<&str> {
    match &obs.tls {
        Some(TlsSignal::Alert(alert)) => Some(alert.as_str()),
        _ => None,
    }
}

/// The client's TLS versions: both, so whichever the gateway picks is exercised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersions {
    Any,
    Only12,
    Only13,
}

pub struct TlsProbe {
    gateway: GatewayClient,
    identity: ClientIdentity,
}

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the {what} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("the {what} holds no certificate"));
    }
    Ok(certs)
}

/// A rustls client config that trusts only `ca_pem` and presents `identity` if given.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    versions: TlsVersions,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(ca_pem, "CA certificate")? {
        roots
            .add(cert)
            .map_err(|e| format!("the CA certificate is not usable: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let protocol_versions: &[&rustls::SupportedProtocolVersion] = match versions {
        TlsVersions::Any => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersions::Only12 => &[&rustls::version::TLS12],
        TlsVersions::Only13 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(protocol_versions)
        .map_err(|e| format!("cannot configure TLS versions: {e}"))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                // The key's text never reaches a message.
                .map_err(|_| "the client key is not a PEM private key".to_string())?;
            builder
                .with_client_auth_cert(certs(cert_pem, "client certificate")?, key)
                .map_err(|e| format!("the client certificate and key do not fit together: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl TlsProbe {
    pub fn new(
        host: &str,
        target: Target,
        config: rustls::ClientConfig,
        identity: ClientIdentity,
        grammar: Arc<Grammar>,
    ) -> Result<Self, String> {
        let client = client_builder(host, &target)
            .tls_backend_preconfigured(config)
            // A new connection (and handshake) per request: each probe is a fresh client.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("cannot build the TLS prober: {e}"))?;
        Ok(TlsProbe {
            gateway: GatewayClient::new(client, "https", host, target, grammar),
            identity,
        })
    }
}

impl Probe for TlsProbe {
    async fn once(&self) -> Observation {
        self.gateway.get().await
    }

    fn target(&self) -> String {
        format!(
            "GET {} via {} with {}",
            self.gateway.url, self.gateway.target.address, self.identity
        )
    }
}
