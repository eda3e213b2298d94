//! The HTTP prober: `GET /` with Host `sentences.example.com` to the gateway's address
//! (a port-forward or `--ingress-address`), classified.

use super::Probe;
use super::classify::{self, Observation};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct HttpProbe {
    client: reqwest::Client,
    url: String,
    host: String,
    address: SocketAddr,
}

impl HttpProbe {
    /// Probes `http://<host>/` at `address`: the name resolves to the address, so the
    /// Host header is the gateway host the VirtualService routes.
    pub fn new(host: &str, address: SocketAddr) -> Result<Self, String> {
        crate::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .resolve(host, address)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(4)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP prober: {e}"))?;
        Ok(HttpProbe {
            client,
            url: format!("http://{host}:{}/", address.port()),
            host: host.to_string(),
            address,
        })
    }
}

/// Sends `request` and classifies the answer (shared with the TLS probe).
pub async fn classify_request(request: reqwest::RequestBuilder) -> Observation {
    let started = Instant::now();
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.text().await {
                Ok(body) => classify::answer(status, &body, started.elapsed()),
                Err(e) => classify::transport_error(&e, e.is_timeout(), started.elapsed()),
            }
        }
        Err(e) => classify::transport_error(&e, e.is_timeout(), started.elapsed()),
    }
}

/// `GET url` naming the bare gateway host in the Host header (the URL carries the
/// local port of the forward), classified. Shared by the HTTP and the TLS probe.
pub async fn get_gateway(client: &reqwest::Client, url: &str, host: &str) -> Observation {
    classify_request(client.get(url).header(reqwest::header::HOST, host)).await
}

impl Probe for HttpProbe {
    async fn once(&self) -> Observation {
        get_gateway(&self.client, &self.url, &self.host).await
    }

    fn target(&self) -> String {
        format!("GET {} via {}", self.url, self.address)
    }
}
