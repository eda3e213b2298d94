//! Istio mutual-TLS conformance harness.
//!
//! - [`runner`]: the schedule of trials, libtest, sequencing, the run record
//! - [`suite`]: the suites as files (loading, validation, templating, what they deploy)
//! - [`action`]: what a step changes, one file per kind
//! - [`expect`]: what a step expects, one file per family, each judging with evidence
//! - [`verdict`]: verdicts, evidence, judgements — the data every report is made from
//! - [`report`]: JUnit and the step summary; [`plan`]: the `--dry-run` plan
//! - [`world`]: the runner's world on a real cluster, composing the cluster side
//! - [`cluster`]: infrastructure — preflight, tools, kind, Istio, apply, rollouts,
//!   port-forwards, Envoy admin, diagnostics
//! - [`probe`]: requests through the ingress gateway (HTTP, mutual TLS), classified
//! - [`telemetry`]: the Prometheus client and oracle, the proxy-config reader
//! - [`pki`]: the run's certificates
//! - [`deadlines`], [`wait`]: every default deadline, and the one way to wait
//! - [`version`], [`resolve`], [`matrix`]: Istio versions as asked for, resolved
//!   against the release list, and the nightly matrix

pub mod action;
pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod deadlines;
pub mod exit;
pub mod expect;
pub mod matrix;
pub mod pki;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod reference;
pub mod report;
pub mod resolve;
pub mod runner;
pub mod suite;
pub mod telemetry;
pub mod verdict;
pub mod version;
pub mod wait;
pub mod words;
pub mod world;

/// Makes ring the process-wide rustls provider unless one is installed already. `main`
/// installs it first thing; every HTTP/TLS client constructor calls this too, so the
/// library works the same when embedded or tested (reqwest panics without a provider).
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing the same provider is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
