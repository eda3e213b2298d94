//! Probes through the ingress gateway: one request at a time, each classified against
//! what the deployed app can answer. The expectations that judge series of them live in
//! `expect/`.

pub mod class;
pub mod classify;
pub mod http;
pub mod sentence;
pub mod tally;
pub mod tls;

pub use classify::Observation;

/// Anything that sends one request and classifies what came back.
pub trait Probe: Send + Sync {
    fn once(&self) -> impl std::future::Future<Output = Observation> + Send;
    /// What is probed, for the evidence (e.g. `GET http://sentences.example.com/ via 127.0.0.1:41234`).
    fn target(&self) -> String;
}
