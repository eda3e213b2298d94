//! The telemetry oracle: deltas of `istio_requests_total{reporter="destination"}` over a
//! phase, per edge and `connection_security_policy`, judged by Kiali's padlock rule.

pub mod addon;
pub mod oracle;
pub mod prometheus;
pub mod proxy_config;
