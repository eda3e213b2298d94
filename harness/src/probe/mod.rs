//! Probes through the ingress gateway: one request at a time, each classified, and the
//! expectations (flows, fails with a class, holds over a window) that poll them until
//! they hold or their deadline passes, returning the evidence either way.

pub mod classify;
pub mod expect;
pub mod http;
pub mod tls;

pub use classify::Observation;

/// Anything that sends one request and classifies what came back.
pub trait Probe: Send + Sync {
    fn once(&self) -> impl std::future::Future<Output = Observation> + Send;
    /// What is probed, for the evidence (e.g. `GET http://sentences.example.com/ via 127.0.0.1:41234`).
    fn target(&self) -> String;
}
