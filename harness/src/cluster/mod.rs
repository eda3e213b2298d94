//! The cluster side, infrastructure only: preflight, tools and downloads (per
//! platform), the Istio release list, kind, Istio install/upgrade, the apply engine,
//! rollouts, workloads and sidecars, what the injector gives new pods, port-forwards, Envoy's admin API and istiod's debug
//! endpoints, provisioning as a whole, and the diagnostics bundle. What the
//! harness *concludes* from the cluster lives in `expect/`.

pub mod access_log;
pub mod apply;
pub mod connect;
pub mod diagnostics;
pub mod download;
pub mod envoy_admin;
pub mod injection_label;
pub mod injector;
pub mod istio;
pub mod istio_objects;
pub mod istiod_debug;
pub mod kind;
mod live;
pub mod platform;
pub mod pod_http;
pub mod portforward;
pub mod preflight;
pub mod process;
pub mod prometheus_found;
pub mod provision;
pub mod provision_plan;
pub mod releases;
pub mod rollout;
pub mod tools;
pub mod workloads;

pub use live::Live;
