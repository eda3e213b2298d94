//! The TLS probe of the MUTUAL gateway: `GET https://sentences.example.com/` at the
//! gateway's address (SNI and Host name the gateway host), verifying the server against
//! the run's CA, presenting the chosen client identity. And the rejection expectation:
//! a refusal at the TLS layer, with its signature recorded.

use super::Probe;
use super::classify::{Observation, TlsSignal};
use super::expect::{Judgement, Tally};
use super::http::{CONNECT_TIMEOUT, REQUEST_TIMEOUT, get_gateway};
use crate::runner::record::{Evidence, Verdict};
use crate::suite::model::{ClientIdentity, ResultClass};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The client's TLS versions: both, so whichever the gateway picks is exercised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersions {
    Any,
    Only12,
    Only13,
}

pub struct TlsProbe {
    client: reqwest::Client,
    url: String,
    host: String,
    address: SocketAddr,
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
        address: SocketAddr,
        config: rustls::ClientConfig,
        identity: ClientIdentity,
    ) -> Result<Self, String> {
        crate::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .resolve(host, address)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // A new connection (and handshake) per request: each probe is a fresh client.
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the TLS prober: {e}"))?;
        Ok(TlsProbe {
            client,
            url: format!("https://{host}:{}/", address.port()),
            host: host.to_string(),
            address,
            identity,
        })
    }
}

impl Probe for TlsProbe {
    async fn once(&self) -> Observation {
        get_gateway(&self.client, &self.url, &self.host).await
    }

    fn target(&self) -> String {
        format!(
            "GET {} via {} with {}",
            self.url, self.address, self.identity
        )
    }
}

/// The signature of a rejection at the TLS layer, or None when the result is anything
/// else (an HTTP answer, refused, timeout, or this client distrusting the server).
pub fn rejection(obs: &Observation) -> Option<String> {
    match (&obs.class, &obs.tls) {
        (ResultClass::Tls, Some(TlsSignal::Alert(alert))) => Some(format!("alert {alert}")),
        (ResultClass::Reset, _) => Some("reset/EOF after connect".to_string()),
        _ => None,
    }
}

/// K consecutive rejections at the TLS layer. A refused connection, a timeout or an
/// HTTP status is not a rejection; an HTTP answer fails the outcome, everything else
/// that keeps the verdict from holding is an environment error.
pub async fn rejections<P: Probe>(probe: &P, k: u32, deadline: Duration) -> Judgement {
    let started = Instant::now();
    let mut tally = Tally::default();
    // HTTP answers fail the outcome: how many, and the first one's status.
    let mut http_answers = 0u32;
    let mut first_http_status = None;
    let mut signatures: BTreeMap<String, u32> = BTreeMap::new();
    let mut run = 0;
    while started.elapsed() < deadline {
        let obs = probe.once().await;
        tally.add(&obs);
        match rejection(&obs) {
            Some(signature) => {
                *signatures.entry(signature).or_default() += 1;
                run += 1;
                tally.longest_run = tally.longest_run.max(run);
            }
            None => {
                run = 0;
                let left = deadline.saturating_sub(started.elapsed());
                tokio::time::sleep(Duration::from_millis(200).min(left)).await;
            }
        }
        if let Some(status) = obs.status {
            http_answers += 1;
            first_http_status.get_or_insert(status);
        }
        if run >= k {
            let sigs = signatures
                .iter()
                .map(|(s, n)| format!("{s}×{n}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Judgement {
                verdict: Verdict::Passed,
                evidence: Evidence::new(format!(
                    "{k} consecutive rejections at the TLS layer ({sigs}) after {} attempts in {:.1} s",
                    tally.sent,
                    started.elapsed().as_secs_f64()
                ))
                .with_details(vec![format!("target: {}", probe.target()), format!("attempts: {}; classes: {}", tally.sent, tally.classes())]),
                elapsed: started.elapsed(),
            };
        }
    }
    let details = vec![
        format!("target: {}", probe.target()),
        format!("attempts: {}; classes: {}", tally.sent, tally.classes()),
        format!(
            "last: {}",
            tally
                .last
                .as_ref()
                .map(Observation::short)
                .unwrap_or_default()
        ),
    ];
    let (verdict, summary) = if let Some(status) = first_http_status {
        (
            Verdict::Failed,
            format!(
                "expected a rejection at the TLS layer, but the gateway answered HTTP {status} ({http_answers} of {} attempts got an HTTP answer)",
                tally.sent
            ),
        )
    } else if let Some(why) = &tally.server_untrusted {
        (
            Verdict::Errored,
            format!(
                "this client does not trust the gateway's certificate ({why}): the TLS secret or the SNI is wrong; no verdict on client certificates"
            ),
        )
    } else {
        (
            Verdict::Errored,
            format!(
                "no rejection at the TLS layer and no HTTP answer ({}); a refused connection or a timeout is not a rejection: the path to the gateway is down",
                tally.classes()
            ),
        )
    };
    Judgement {
        verdict,
        evidence: Evidence::new(summary).with_details(details),
        elapsed: started.elapsed(),
    }
}

/// The accepting side: K consecutive 200s with a sentence over mutual TLS.
pub async fn accepts<P: Probe>(probe: &P, k: u32, deadline: Duration) -> Judgement {
    super::expect::consecutive(probe, ResultClass::Ok, k, deadline).await
}
