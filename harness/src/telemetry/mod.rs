//! Telemetry: the Prometheus client, the addon's configuration, deltas of
//! `istio_requests_total` over a phase, the scrape targets a phase needs, the phase
//! itself, Kiali's padlock rule (the oracle), and the proxy-config reader (the second
//! oracle, independent of Prometheus).

pub mod addon;
pub mod deltas;
pub mod oracle;
pub mod phase;
pub mod prometheus;
pub mod proxy_config;
pub mod targets;
