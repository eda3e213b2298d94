//! Telemetry: the Prometheus client, the addon's configuration, deltas of
//! `istio_requests_total` over a phase, the scrape targets a phase needs, the phase
//! itself, Kiali's padlock rule (the oracle), the proxy-config reader (the second
//! oracle, independent of Prometheus), and istiod's account of what each proxy acked
//! (with what a DestinationRule decides), which tells a settled proxy config from one
//! still arriving.

pub mod addon;
pub mod deltas;
pub mod destination_rule;
pub mod oracle;
pub mod phase;
pub mod prometheus;
pub mod proxy_config;
pub mod targets;
pub mod xds_sync;
