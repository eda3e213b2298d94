//! Every default deadline, pace and window in one table (as Chainsaw keeps its
//! `timeouts.go`): the runner, the actions, the expectations and the `--dry-run` plan
//! all read them from here. Suite files may override the expectations' ones per step.
//!
//! Why these values (SPEC §4–§5): istiod pushes config within 100 ms–10 s; rollouts
//! take tens of seconds on kind; Prometheus scrapes every few seconds; a "nothing
//! changes" check must outlast istiod's 10 s debounce.

use std::time::Duration;

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A Deployment's rollout (inject, apply of a workload, restart after an upgrade).
pub const ROLLOUT: Duration = secs(240);
/// Server-side apply of one manifest, including the wait for a kind not yet served.
pub const APPLY: Duration = secs(60);
/// Deleting objects and waiting until they are gone.
pub const DELETE: Duration = secs(120);
/// A namespace that terminates (a rerun after `--keep`, or cleanup).
pub const NAMESPACE_GONE: Duration = secs(180);
/// Issuing the run's PKI and applying its Secret.
pub const ISSUE_PKI: Duration = secs(60);

/// `sidecars`: the pods of the workloads carry (or lack) a ready istio-proxy.
pub const SIDECARS: Duration = secs(240);
/// `flows` / `fails` until traffic converges.
pub const TRAFFIC: Duration = secs(120);
/// `holds` and the window of `fails`: how long "nothing changes" / "every request fails"
/// must hold.
pub const HOLD_WINDOW: Duration = secs(30);
pub const FAIL_WINDOW: Duration = secs(15);
/// `tls-accepts` / `tls-rejects`, including the time SDS needs to deliver a credential.
pub const TLS: Duration = secs(120);
/// `mtls` / `telemetry` phases (12 of the addon's 15 s scrapes). A phase whose
/// Prometheus reports a slower interval raises it to cover its scrapes
/// (`telemetry::phase::SCRAPES_PER_PHASE`).
pub const TELEMETRY: Duration = secs(180);
/// The most a slow scrape interval may raise a telemetry phase's deadline to: beyond
/// it (an interval over 100 s) the phase gives up with what it saw, saying why.
pub const TELEMETRY_MAX: Duration = secs(600);
/// `proxy-config`: until the caller's Envoy has the expected clusters.
pub const PROXY_CONFIG: Duration = secs(120);

/// Pace of requests while waiting for traffic to change: a flip is seen within one
/// pace plus one request.
pub const TRAFFIC_PACE: Duration = Duration::from_millis(25);
/// Pace of requests inside hold windows.
pub const HOLD_PACE: Duration = Duration::from_millis(100);
/// Pace of polls of cluster state (rollouts, pods, proxy config).
pub const POLL: Duration = Duration::from_millis(250);

/// Istio's control plane, the ingress gateway and Prometheus becoming ready.
pub const ISTIO_READY: Duration = secs(300);
/// `istioctl install` / `upgrade`.
pub const ISTIOCTL: Duration = secs(600);
/// `kind create cluster`.
pub const KIND_CREATE: Duration = secs(600);
/// Quick tool invocations (`kind get clusters`, `istioctl version`).
pub const TOOL_QUICK: Duration = secs(60);
/// `kind delete cluster` (at the end of a run, after a failed setup, on interrupt).
pub const KIND_DELETE: Duration = secs(180);
/// `kind export logs` for the diagnostics bundle.
pub const KIND_EXPORT_LOGS: Duration = secs(120);
/// Pulling one image onto the kind node (`crictl pull`, beside the install).
pub const IMAGE_PULL: Duration = secs(300);
/// How long a kind may stay unknown to the API server (a CRD being established)
/// before an apply gives up on it.
pub const KIND_DISCOVERY: Duration = secs(60);
/// `proxy-log`: until the expected line shows in the proxy's log.
pub const PROXY_LOG: Duration = secs(60);
/// The diagnostics bundle of a failed step.
pub const DIAGNOSTICS: Duration = secs(90);
/// One request to the API server during preflight.
pub const PREFLIGHT_REQUEST: Duration = secs(6);
/// One HTTP exchange with a pod through a port-forward (Envoy admin, istiod's debug
/// endpoints), and istiod's whole account of a proxy (several such exchanges).
pub const POD_HTTP: Duration = secs(20);

/// How long a rollout's pod may stay unschedulable before the wait gives up on it.
/// Briefly unschedulable is normal: the kind node not ready yet, or terminating pods
/// (of this rollout, which the wait sees, or of others rolled at the same time, which it
/// does not) still holding the CPU or memory the new one needs, for up to their
/// termination grace (30 s by default). Much longer means the node lacks them, and
/// waiting out `ROLLOUT` would only hide the scheduler's reason.
pub const UNSCHEDULABLE_GRACE: Duration = secs(60);
