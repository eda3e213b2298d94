//! Wrong worlds: faults a test switches on to prove the harness does not pass when
//! Istio (or the app, or the environment) misbehaves. Several may be active at once.
//!
//! Faults of the data plane are wrong *Envoy configuration*: the stand-in istiod builds
//! the config it would build, bent as the fault says, and real Envoy does the rest (who
//! accepts plaintext, which TLS alert is sent, what the config dump and the access log
//! show). Faults of the control plane (injector, pushes, debug endpoints) and of the
//! app stay in the stand-in.

use std::sync::Mutex;
use std::time::Duration;

/// A way the simulated world goes wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The ingress gateway's routes answer every request (HTTP and HTTPS) with this
    /// status and body themselves (`direct_response`), never reaching the app.
    GatewayAnswers(u16, String),
    /// This workload's app answers 503 with the body of Envoy's local reply
    /// (`upstream connect error or disconnect/reset before headers. reset reason:
    /// connection termination`), as a proxy in front of it would; the frontend pastes it
    /// into a 200 "sentence".
    BackendLocalReply { workload: String },
    /// The injector adds `sidecar.istio.io/status` but no container.
    InjectorAnnotatesOnly,
    /// istiod ignores Telemetry resources (access logging stays as the mesh config
    /// says): a Telemetry that should turn the access log on does nothing.
    TelemetryIgnored,
    /// The injection webhook is never called (removed, or `failurePolicy: Ignore` with
    /// istiod unreachable): pods are created as their template says, without a proxy.
    InjectorDown,
    /// This share (0..=1) of `from`'s requests to `to` (workload names) go out in
    /// plaintext: `from`'s routes send that weight to a twin of the cluster without TLS,
    /// and `to`'s sidecar keeps a plaintext filter chain even under STRICT (an Istio bug).
    PlaintextShare {
        from: String,
        to: String,
        share: f64,
    },
    /// STRICT is not enforced: the inbound listener keeps its plaintext filter chain.
    StrictNotEnforced,
    /// PERMISSIVE rejects plaintext: the inbound listener has only the mTLS chain.
    PermissiveRejectsPlaintext,
    /// A cluster whose DestinationRule says `DISABLE` still originates Istio mTLS.
    DisableStillSendsMtls,
    /// A cluster whose DestinationRule says `ISTIO_MUTUAL` sends plaintext.
    IstioMutualSendsPlaintext,
    /// DestinationRule subset clusters are never built, while routes still name them.
    SubsetClustersMissing,
    /// DestinationRule subset clusters get their endpoints from an xDS stream that never
    /// answers: they stay in `dynamic_warming_clusters`.
    SubsetClustersWarming,
    /// A MUTUAL gateway server does not require a client certificate; an RBAC network
    /// filter closes connections without one after the handshake (no TLS alert).
    TlsCloseWithoutAlert,
    /// A MUTUAL gateway server has `require_client_certificate: false`: on every gateway
    /// replica (`None`), or only on the replica at this index in pod-name order (one
    /// replica of several left on a stale listener).
    MutualNotRequired { replica: Option<usize> },
    /// A MUTUAL gateway server accepts client certificates from any CA
    /// (`trust_chain_verification: ACCEPT_UNTRUSTED`).
    GatewayTrustsAnyCa,
    /// Each control plane revision signs with its own root (a separate `cacerts` per
    /// revision, or istiods in different namespaces): a canary's proxies and the old
    /// ones do not trust each other's certificates.
    RevisionsDoNotShareARoot,
    /// That workload's proxies answer their metrics endpoints with 503 (targets down).
    NoTelemetry { workload: String },
    /// DestinationRule traffic policies (TLS modes) are ignored: auto mTLS everywhere;
    /// subsets still route.
    DestinationRuleIgnored,
    /// The proxies get config this much later than `push_delay` says (a slow istiod).
    SlowPush(Duration),
    /// The Prometheus file_sd file is no longer updated (targets go stale).
    DiscoveryFrozen,
    /// istiod never sees an ACK from this workload's proxies: they get and apply config,
    /// but `/debug/syncz` shows every type sent and none acked (STALE).
    ProxyNeverAcks { workload: String },
    /// istiod runs with `ENABLE_DEBUG_ON_HTTP=false`: every `/debug/*` path is a 404.
    DebugOnHttpDisabled,
    /// Every proxy connects to the `default` revision's istiod whatever revision injected
    /// it (e.g. `meshConfig.defaultConfig.discoveryAddress: istiod.istio-system.svc:15012`
    /// set for every revision): a canary's "new" proxies are served by the old control
    /// plane. Only istiod's `/debug/syncz` shows it.
    ProxiesConnectToDefaultRevision,
    /// The injector injects `proxyv2:<tag>` whatever version its istiod runs (e.g. a
    /// `values.global.proxy.image` pinned to a full image, or a customised
    /// `istio-sidecar-injector` template the upgrade left alone): sidecars injected
    /// after an upgrade still run the old proxy. Gateways (not injected) are untouched.
    InjectedProxyTag(String),
}

/// The active faults. Config faults reach the proxies with the next snapshot istiod
/// pushes (they are part of its config hash).
#[derive(Default)]
pub(crate) struct Faults {
    active: Mutex<Vec<Fault>>,
}

impl Faults {
    pub fn set(&self, fault: Fault) {
        let mut a = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if !a.contains(&fault) {
            a.push(fault);
        }
    }

    pub fn clear(&self) {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// A copy of the active faults, for building one proxy's config.
    pub fn snapshot(&self) -> Vec<Fault> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn any(&self, f: impl Fn(&Fault) -> bool) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(f)
    }

    pub fn backend_local_reply(&self, workload: &str) -> bool {
        self.any(|f| matches!(f, Fault::BackendLocalReply { workload: w } if w == workload))
    }

    pub fn injector_annotates_only(&self) -> bool {
        self.any(|f| matches!(f, Fault::InjectorAnnotatesOnly))
    }

    pub fn injector_down(&self) -> bool {
        self.any(|f| matches!(f, Fault::InjectorDown))
    }

    pub fn no_telemetry(&self, workload: &str) -> bool {
        self.any(|f| matches!(f, Fault::NoTelemetry { workload: w } if w == workload))
    }

    pub fn discovery_frozen(&self) -> bool {
        self.any(|f| matches!(f, Fault::DiscoveryFrozen))
    }

    pub fn never_acks(&self, workload: &str) -> bool {
        self.any(|f| matches!(f, Fault::ProxyNeverAcks { workload: w } if w == workload))
    }

    pub fn proxies_connect_to_default_revision(&self) -> bool {
        self.any(|f| matches!(f, Fault::ProxiesConnectToDefaultRevision))
    }

    pub fn injected_proxy_tag(&self) -> Option<String> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find_map(|f| match f {
                Fault::InjectedProxyTag(tag) => Some(tag.clone()),
                _ => None,
            })
    }

    pub fn debug_on_http_disabled(&self) -> bool {
        self.any(|f| matches!(f, Fault::DebugOnHttpDisabled))
    }

    pub fn extra_push_delay(&self) -> Duration {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|f| match f {
                Fault::SlowPush(d) => Some(*d),
                _ => None,
            })
            .max()
            .unwrap_or_default()
    }
}

/// The faults that bend one proxy's config, looked up by the config builders.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigFaults {
    faults: Vec<Fault>,
}

impl ConfigFaults {
    pub fn new(faults: Vec<Fault>) -> ConfigFaults {
        ConfigFaults { faults }
    }

    fn any(&self, f: impl Fn(&Fault) -> bool) -> bool {
        self.faults.iter().any(f)
    }

    pub fn gateway_answer(&self) -> Option<(u16, String)> {
        self.faults.iter().find_map(|f| match f {
            Fault::GatewayAnswers(code, body) => Some((*code, body.clone())),
            _ => None,
        })
    }

    pub fn strict_not_enforced(&self) -> bool {
        self.any(|f| matches!(f, Fault::StrictNotEnforced))
    }

    pub fn permissive_rejects_plaintext(&self) -> bool {
        self.any(|f| matches!(f, Fault::PermissiveRejectsPlaintext))
    }

    pub fn destination_rule_ignored(&self) -> bool {
        self.any(|f| matches!(f, Fault::DestinationRuleIgnored))
    }

    pub fn disable_still_sends_mtls(&self) -> bool {
        self.any(|f| matches!(f, Fault::DisableStillSendsMtls))
    }

    pub fn istio_mutual_sends_plaintext(&self) -> bool {
        self.any(|f| matches!(f, Fault::IstioMutualSendsPlaintext))
    }

    pub fn subset_clusters_missing(&self) -> bool {
        self.any(|f| matches!(f, Fault::SubsetClustersMissing))
    }

    pub fn subset_clusters_warming(&self) -> bool {
        self.any(|f| matches!(f, Fault::SubsetClustersWarming))
    }

    pub fn telemetry_ignored(&self) -> bool {
        self.any(|f| matches!(f, Fault::TelemetryIgnored))
    }

    pub fn tls_close_without_alert(&self) -> bool {
        self.any(|f| matches!(f, Fault::TlsCloseWithoutAlert))
    }

    pub fn revisions_do_not_share_a_root(&self) -> bool {
        self.any(|f| matches!(f, Fault::RevisionsDoNotShareARoot))
    }

    pub fn gateway_trusts_any_ca(&self) -> bool {
        self.any(|f| matches!(f, Fault::GatewayTrustsAnyCa))
    }

    /// Whether the gateway replica at `replica` (pod-name order) skips the client
    /// certificate requirement.
    pub fn mutual_not_required(&self, replica: usize) -> bool {
        self.any(|f| match f {
            Fault::MutualNotRequired { replica: None } => true,
            Fault::MutualNotRequired { replica: Some(r) } => *r == replica,
            _ => false,
        })
    }

    /// The plaintext share `from` sends to `to`, if any.
    pub fn plaintext_share(&self, from: &str, to: &str) -> Option<f64> {
        self.faults.iter().find_map(|f| match f {
            Fault::PlaintextShare {
                from: a,
                to: b,
                share,
            } if a == from && b == to => Some(share.clamp(0.0, 1.0)),
            _ => None,
        })
    }

    /// Whether some caller's plaintext share is accepted by `to`'s sidecar.
    pub fn accepts_plaintext_share(&self, to: &str) -> bool {
        self.any(|f| matches!(f, Fault::PlaintextShare { to: b, .. } if b == to))
    }
}
