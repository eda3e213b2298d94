//! The cluster side: preflight, provisioning (kind, Istio, Prometheus), applying
//! manifests, rollouts, port-forwarding. [`ClusterWorld`] is what the runner drives.

pub mod apply;
pub mod connect;
pub mod diagnostics;
pub mod download;
mod envoy_admin;
pub mod istio;
pub mod judge;
pub mod kind;
pub mod portforward;
pub mod preflight;
mod process;
pub mod provision;
pub mod tools;
pub mod workloads;
mod world;

pub use world::{ClusterWorld, provisioning_plan};
