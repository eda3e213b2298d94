//! The cluster side: preflight, provisioning (kind, Istio, Prometheus), applying
//! manifests, rollouts, port-forwarding. [`ClusterWorld`] is what the runner drives.

pub mod apply;
pub mod connect;
pub mod preflight;
pub mod workloads;
mod world;

pub use world::{ClusterWorld, provisioning_plan};
