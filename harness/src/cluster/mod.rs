//! The cluster side: preflight, provisioning (kind, Istio, Prometheus), applying
//! manifests, rollouts, port-forwarding. [`ClusterWorld`] is what the runner drives.

pub mod preflight;
mod world;

pub use world::{ClusterWorld, provisioning_plan};
