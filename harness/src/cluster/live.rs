//! What setup leaves for the run: a client of the cluster, the apply engine, and how
//! to reach the ingress gateway and Prometheus.

use super::apply::Applier;
use super::portforward::{Forward, Workload};
use crate::probe::http::Target;
use kube::Client;

pub struct Live {
    pub client: Client,
    /// A client without read timeouts, for port-forwards (long-lived, often idle).
    pub streams: Client,
    pub applier: Applier,
    /// `--kubeconfig`/`--context` for istioctl.
    pub cluster_args: Vec<String>,
    /// The gateway's HTTP port (service port 80).
    pub gateway_http: Target,
    /// The gateway's HTTPS port (service port 443).
    pub gateway_tls: Target,
    /// The gateway's pods behind `gateway_tls`, when it is a port-forward (not an
    /// address given on the command line): checks that must hear every replica open a
    /// forward to each.
    pub gateway_tls_pods: Option<Workload>,
    pub prometheus_url: String,
    /// Held for the run: dropping a forward stops it.
    pub forwards: Vec<Forward>,
    /// Work started during setup that may still run (image pre-pulls); aborted with
    /// the run.
    pub background: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

impl Live {
    /// A cluster reached without port-forwards (addresses given): for embedding the
    /// harness and for tests.
    pub fn direct(
        client: Client,
        gateway_http: std::net::SocketAddr,
        gateway_tls: std::net::SocketAddr,
        prometheus_url: &str,
    ) -> Live {
        Live {
            applier: Applier::new(client.clone()),
            streams: client.clone(),
            client,
            cluster_args: Vec::new(),
            gateway_http: Target::direct(gateway_http),
            gateway_tls: Target::direct(gateway_tls),
            gateway_tls_pods: None,
            prometheus_url: prometheus_url.to_string(),
            forwards: Vec::new(),
            background: Vec::new(),
        }
    }
}
