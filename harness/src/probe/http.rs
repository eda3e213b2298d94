//! The HTTP prober: `GET /` with Host `sentences.example.com` to the gateway's address
//! (a port-forward or `--ingress-address`), classified against the deployed app.

use super::Probe;
use super::classify::{self, Observation};
use super::sentence::Grammar;
use crate::cluster::portforward::PathHealth;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How to reach the gateway: an address, and the health of the harness's own path to
/// it when that path is a port-forward.
#[derive(Clone, Debug)]
pub struct Target {
    pub address: SocketAddr,
    pub health: Option<Arc<PathHealth>>,
}

impl Target {
    pub fn direct(address: SocketAddr) -> Target {
        Target {
            address,
            health: None,
        }
    }
}

/// A client of the gateway host at one address, judging answers against the app.
/// Both probes are one of these.
pub struct GatewayClient {
    client: reqwest::Client,
    pub url: String,
    host: String,
    pub target: Target,
    grammar: Arc<Grammar>,
}

impl GatewayClient {
    /// `scheme://<host>:<port>/` at the target with `client`.
    pub fn new(
        client: reqwest::Client,
        scheme: &str,
        host: &str,
        target: Target,
        grammar: Arc<Grammar>,
    ) -> GatewayClient {
        GatewayClient {
            client,
            url: format!("{scheme}://{host}:{}/", target.address.port()),
            host: host.to_string(),
            target,
            grammar,
        }
    }

    /// One classified `GET /`.
    pub async fn get(&self) -> Observation {
        get_gateway(
            &self.client,
            &self.url,
            &self.host,
            &self.target,
            &self.grammar,
        )
        .await
    }
}

pub struct HttpProbe(GatewayClient);

impl HttpProbe {
    /// Probes `http://<host>/` at the target: the name resolves to the address, so the
    /// Host header is the gateway host the VirtualService routes.
    pub fn new(host: &str, target: Target, grammar: Arc<Grammar>) -> Result<Self, String> {
        let client = client_builder(host, &target)
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|e| format!("cannot build the HTTP prober: {e}"))?;
        Ok(HttpProbe(GatewayClient::new(
            client, "http", host, target, grammar,
        )))
    }
}

/// A client for the gateway host at the target's address: bounded, never following
/// redirects (shared with the TLS probe).
pub fn client_builder(host: &str, target: &Target) -> reqwest::ClientBuilder {
    crate::ensure_crypto_provider();
    reqwest::Client::builder()
        .resolve(host, target.address)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
}

/// Sends `request` and classifies the answer (shared with the TLS probe).
pub async fn classify_request(request: reqwest::RequestBuilder, grammar: &Grammar) -> Observation {
    let started = Instant::now();
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.text().await {
                Ok(body) => classify::answer(status, &body, started.elapsed(), grammar),
                Err(e) => classify::transport_error(&e, e.is_timeout(), started.elapsed()),
            }
        }
        Err(e) => classify::transport_error(&e, e.is_timeout(), started.elapsed()),
    }
}

/// `GET url` naming the bare gateway host in the Host header (the URL carries the
/// local port of the forward), classified; a failure of the harness's own path during
/// the request turns a transport error into `not-reached`. Shared by both probes.
pub async fn get_gateway(
    client: &reqwest::Client,
    url: &str,
    host: &str,
    target: &Target,
    grammar: &Grammar,
) -> Observation {
    let before = target.health.as_ref().map(|h| h.failures());
    let observation =
        classify_request(client.get(url).header(reqwest::header::HOST, host), grammar).await;
    let (Some(health), Some(before)) = (&target.health, before) else {
        return observation;
    };
    if observation.status.is_none() {
        // The forward closes the local connection before it has learnt why (the
        // kubelet's error arrives just after): give it a moment to say so.
        let until = Instant::now() + PATH_FAILURE_GRACE;
        while health.failures() == before && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if health.failures() > before {
        observation.path_failed(&health.last())
    } else {
        observation
    }
}

/// How long a request that ended without an HTTP answer waits for the port-forward
/// to report a failure of its own.
const PATH_FAILURE_GRACE: Duration = Duration::from_millis(200);

impl Probe for HttpProbe {
    async fn once(&self) -> Observation {
        self.0.get().await
    }

    fn target(&self) -> String {
        format!("GET {} via {}", self.0.url, self.0.target.address)
    }
}
