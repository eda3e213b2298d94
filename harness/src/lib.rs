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

/// Makes ring the process-wide rustls provider unless one is installed already. `main`
/// installs it first thing; every HTTP/TLS client constructor calls this too, so the
/// library works the same when embedded or tested (reqwest panics without a provider).
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing the same provider is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
