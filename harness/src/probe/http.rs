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

impl Probe for HttpProbe {
    async fn once(&self) -> Observation {
        // The bare host, as a client on port 80 would send it.
        classify_request(
            self.client
                .get(&self.url)
                .header(reqwest::header::HOST, &self.host),
        )
        .await
    }

    fn target(&self) -> String {
        format!("GET {} via {}", self.url, self.address)
    }
}
