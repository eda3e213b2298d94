//! Judging each kind of expectation against the live cluster, with the probes and
//! both oracles. Every function returns a verdict with its evidence.

use super::envoy_admin;
use super::portforward::ready_pod;
use super::provision::Live;
use super::workloads::selector_of;
use super::workloads::{self, Sidecar};
use crate::config::{HOST, RunConfig};
use crate::pki::{Pki, files};
use crate::probe::Probe;
use crate::probe::expect::{self, Judgement, Tally};
use crate::probe::http::HttpProbe;
use crate::probe::tls::{self, TlsProbe, TlsVersions};
use crate::runner::record::{Evidence, Verdict};
use crate::suite::model::{
    ClientIdentity, MtlsExpectation, ProxyConfigExpectation, ResultClass, SidecarsExpectation,
    TlsExpectation,
};
use crate::suite::{INGRESS_GATEWAY_WORKLOAD, Suite};
use crate::telemetry::oracle::{self, EdgeExpectation};
use crate::telemetry::prometheus::Prometheus;
use crate::telemetry::proxy_config::{self, Origination};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_secs(1);

fn errored(message: String, started: Instant) -> Judgement {
    Judgement {
        verdict: Verdict::Errored,
        evidence: Evidence::new(message),
        elapsed: started.elapsed(),
    }
}

pub async fn sidecars(
    client: &kube::Client,
    namespace: &str,
    e: &SidecarsExpectation,
) -> Judgement {
    let started = Instant::now();
    loop {
        let mut lines = Vec::new();
        let mut failing = Vec::new();
        for (want, list) in [(true, &e.present), (false, &e.absent)] {
            for workload in list {
                let pods = match workloads::census(client, namespace, &workload.value).await {
                    Ok(p) => p,
                    Err(err) => return errored(err, started),
                };
                let ok = !pods.is_empty() && pods.iter().all(|(_, s)| s.is_some() == want);
                let described: Vec<String> = pods
                    .iter()
                    .map(|(name, s)| match s {
                        Some(Sidecar::Classic) => format!("{name} (sidecar container)"),
                        Some(Sidecar::Native) => format!("{name} (native sidecar)"),
                        Some(Sidecar::Annotated) => format!("{name} (injected, per annotation)"),
                        None => format!("{name} (no sidecar)"),
                    })
                    .collect();
                let line = format!(
                    "{}: {} — expected {}",
                    workload.value,
                    if described.is_empty() {
                        "no pods".to_string()
                    } else {
                        described.join(", ")
                    },
                    if want { "a sidecar" } else { "none" }
                );
                if !ok {
                    failing.push(line.clone());
                }
                lines.push(line);
            }
        }
        let holds = failing.is_empty();
        if holds || started.elapsed() >= e.deadline.0 {
            let summary = if holds {
                "every pod as expected".to_string()
            } else {
                failing.join("; ")
            };
            return Judgement {
                verdict: if holds {
                    Verdict::Passed
                } else {
                    Verdict::Failed
                },
                evidence: Evidence::new(summary).with_details(lines),
                elapsed: started.elapsed(),
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

pub fn http_probe(live: &Live) -> Result<HttpProbe, String> {
    HttpProbe::new(HOST, live.http_address)
}

pub async fn consecutive(live: &Live, want: ResultClass, k: u32, deadline: Duration) -> Judgement {
    match http_probe(live) {
        Ok(p) => expect::consecutive(&p, want, k, deadline).await,
        Err(e) => errored(e, Instant::now()),
    }
}

pub async fn holds(
    live: &Live,
    want: ResultClass,
    window: Duration,
    min_requests: u32,
) -> Judgement {
    match http_probe(live) {
        Ok(p) => expect::holds(&p, want, window, min_requests).await,
        Err(e) => errored(e, Instant::now()),
    }
}

/// The curl command that reproduces a TLS probe by hand.
pub fn curl_line(pki: &Pki, address: std::net::SocketAddr, identity: ClientIdentity) -> String {
    let port = address.port();
    let cert = match identity {
        ClientIdentity::Trusted => format!(
            " --cert {} --key {}",
            pki.path(files::CLIENT_CERT),
            pki.path(files::CLIENT_KEY)
        ),
        ClientIdentity::Untrusted => format!(
            " --cert {} --key {}",
            pki.path(files::UNTRUSTED_CLIENT_CERT),
            pki.path(files::UNTRUSTED_CLIENT_KEY)
        ),
        ClientIdentity::None => String::new(),
    };
    format!(
        "curl -sv --resolve {HOST}:{port}:{} --cacert {}{cert} https://{HOST}:{port}/",
        address.ip(),
        pki.path(files::CA_CERT)
    )
}

pub async fn tls(live: &Live, pki: Option<&Pki>, e: &TlsExpectation, accept: bool) -> Judgement {
    let started = Instant::now();
    let Some(pki) = pki else {
        return errored(
            "no PKI was issued in this run: an earlier step must `issue-pki`".into(),
            started,
        );
    };
    let identity = match e.client {
        ClientIdentity::Trusted => Some((pki.client_cert.as_str(), pki.client_key.as_str())),
        ClientIdentity::Untrusted => Some((
            pki.untrusted_client_cert.as_str(),
            pki.untrusted_client_key.as_str(),
        )),
        ClientIdentity::None => None,
    };
    let probe = match tls::client_config(&pki.ca_cert, identity, TlsVersions::Any)
        .and_then(|c| TlsProbe::new(HOST, live.tls_address, c, e.client))
    {
        Ok(p) => p,
        Err(err) => return errored(err, started),
    };
    let mut judgement = if accept {
        tls::accepts(&probe, e.consecutive, e.deadline.0).await
    } else {
        tls::rejections(&probe, e.consecutive, e.deadline.0).await
    };
    judgement.evidence.details.push(format!(
        "reproduce: {}",
        curl_line(pki, live.tls_address, e.client)
    ));
    judgement
}

/// The pod whose sidecar originates the calls of `client` (a workload or the gateway).
async fn client_pod(
    live: &Live,
    config: &RunConfig,
    client: &str,
) -> Result<(String, String), String> {
    let (namespace, deployment) = if client == INGRESS_GATEWAY_WORKLOAD {
        (
            config.ingress_namespace.clone(),
            super::istio::INGRESS_GATEWAY.to_string(),
        )
    } else {
        (config.app_namespace.clone(), client.to_string())
    };
    let selector = selector_of(&live.client, &namespace, &deployment).await?;
    Ok((
        namespace.clone(),
        ready_pod(&live.client, &namespace, &selector).await?,
    ))
}

async fn config_dump(
    live: &Live,
    config: &RunConfig,
    client: &str,
) -> Result<serde_json::Value, String> {
    let (namespace, pod) = client_pod(live, config, client).await?;
    envoy_admin::get_json(
        &live.client,
        &namespace,
        &pod,
        "/config_dump?resource=dynamic_active_clusters",
    )
    .await
}

fn describe(o: &Origination) -> &'static str {
    match o {
        Origination::Tls => "TLS (envoy.transport_sockets.tls)",
        Origination::AutoMtls => "auto mTLS (TLS to sidecar endpoints)",
        Origination::Plaintext => "plaintext (no transport socket)",
    }
}

pub async fn proxy_config(
    live: &Live,
    config: &RunConfig,
    e: &ProxyConfigExpectation,
) -> Judgement {
    let started = Instant::now();
    loop {
        let dump = match config_dump(live, config, &e.client.value).await {
            Ok(d) => d,
            Err(err) if started.elapsed() < e.deadline.0 => {
                tracing::debug!("proxy config not readable yet: {err}");
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(err) => return errored(err, started),
        };
        let mut lines = Vec::new();
        let mut holds = true;
        for c in &e.clusters {
            let name = proxy_config::cluster_name(
                &c.service,
                &config.app_namespace,
                c.port,
                c.subset.as_deref(),
            );
            match proxy_config::find_cluster(&dump, &name) {
                Some(cluster) => {
                    let o = proxy_config::origination(cluster);
                    holds &= o.mtls() == c.mtls;
                    lines.push(format!(
                        "{name}: {} — expected {}",
                        describe(&o),
                        if c.mtls { "mTLS" } else { "plaintext" }
                    ));
                }
                None => {
                    holds = false;
                    lines.push(format!("{name}: not in {}'s config yet", e.client.value));
                }
            }
        }
        if holds || started.elapsed() >= e.deadline.0 {
            return Judgement {
                verdict: if holds {
                    Verdict::Passed
                } else {
                    Verdict::Failed
                },
                evidence: Evidence::new(if holds {
                    "every cluster as expected".into()
                } else {
                    lines.join("; ")
                })
                .with_details(lines),
                elapsed: started.elapsed(),
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The Service a workload is reached through: its `app` label (the exercise's convention).
async fn service_of(live: &Live, config: &RunConfig, workload: &str) -> Result<String, String> {
    let api: Api<Deployment> = Api::namespaced(live.client.clone(), &config.app_namespace);
    let d = api
        .get(workload)
        .await
        .map_err(|e| format!("cannot read deployment {workload}: {e}"))?;
    d.spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.labels)
        .and_then(|l| l.get("app").cloned())
        .ok_or_else(|| format!("deployment {workload} has no `app` label on its pods"))
}

/// Whether the caller's cluster towards `to` uses mTLS: the subset cluster named after
/// the workload if there is one (a DestinationRule routes to it), else the service's.
async fn proxy_says(live: &Live, config: &RunConfig, from: &str, to: &str) -> Result<bool, String> {
    let dump = config_dump(live, config, from).await?;
    let service = service_of(live, config, to).await?;
    for subset in [Some(to), None] {
        let name = proxy_config::cluster_name(&service, &config.app_namespace, 5000, subset);
        if let Some(cluster) = proxy_config::find_cluster(&dump, &name) {
            return Ok(proxy_config::origination(cluster).mtls());
        }
    }
    Err(format!("{from}'s sidecar has no cluster for {service}"))
}

pub async fn mtls(
    live: &Live,
    config: &RunConfig,
    suite: &Suite,
    e: &MtlsExpectation,
) -> Judgement {
    let started = Instant::now();
    let prometheus = match Prometheus::new(&live.prometheus_url) {
        Ok(p) => p,
        Err(err) => return errored(err, started),
    };
    let probe = match http_probe(live) {
        Ok(p) => p,
        Err(err) => return errored(err, started),
    };
    let expected: Vec<EdgeExpectation> = e
        .edges
        .iter()
        .map(|edge| EdgeExpectation {
            from: edge.from.value.clone(),
            to: edge.to.value.clone(),
            padlock: edge.padlock,
        })
        .collect();
    let requests = e.requests;
    let probe_ref = &probe;
    let result = oracle::phase(
        &prometheus,
        &oracle::sidecar_targets(&config.app_namespace),
        &expected,
        e.deadline.0,
        || async move {
            let mut tally = Tally::default();
            for _ in 0..requests {
                tally.add(&probe_ref.once().await);
            }
            if tally.reached == 0 {
                return Err(format!(
                    "no request reached the gateway ({})",
                    tally.classes()
                ));
            }
            Ok(format!(
                "{} requests through {}: {}",
                tally.sent,
                probe_ref.target(),
                tally.classes()
            ))
        },
    )
    .await;
    let mut judgement = Judgement {
        verdict: result.verdict,
        evidence: result.evidence,
        elapsed: result.elapsed,
    };
    if judgement.verdict == Verdict::Errored {
        return judgement;
    }
    // The second oracle, per edge whose caller has a proxy we can read.
    let mut proxy = std::collections::BTreeMap::new();
    for row in &judgement.evidence.edges {
        let readable = row.from == INGRESS_GATEWAY_WORKLOAD || suite.workloads.contains(&row.from);
        if !readable {
            continue;
        }
        match proxy_says(live, config, &row.from, &row.to).await {
            Ok(mtls) => {
                proxy.insert((row.from.clone(), row.to.clone()), mtls);
            }
            Err(err) => judgement
                .evidence
                .details
                .push(format!("proxy config of {} not read: {err}", row.from)),
        }
    }
    let disagreements = oracle::cross_check(&mut judgement.evidence.edges, &proxy);
    if !disagreements.is_empty() {
        judgement.verdict = Verdict::Failed;
        judgement.evidence.summary = format!(
            "the oracles disagree: {}; {}",
            disagreements.join("; "),
            judgement.evidence.summary
        );
    }
    judgement
}
