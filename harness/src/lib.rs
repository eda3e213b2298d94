//! Istio mutual-TLS conformance harness.
//!
//! - [`suite`]: the suites as data (vocabulary, loading, templating)
//! - [`runner`]: libtest trials per step, sequencing, the run record
//! - [`report`]: JUnit and the step summary
//! - [`plan`]: the `--dry-run` plan
//! - [`cluster`]: provisioning, applying, rollouts, port-forwarding
//! - [`probe`]: traffic and TLS probes through the ingress gateway
//! - [`telemetry`]: the Prometheus oracle
//! - [`pki`]: the run's certificates

pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod exit;
pub mod pki;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod report;
pub mod runner;
pub mod suite;
pub mod telemetry;
