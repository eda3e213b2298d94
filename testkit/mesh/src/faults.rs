//! Wrong worlds: faults a test switches on to prove the harness does not pass when
//! Istio (or the app, or the environment) misbehaves. Several may be active at once.

use std::collections::HashMap;
use std::sync::Mutex;

/// A way the simulated world goes wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The ingress gateway answers every request (HTTP and HTTPS) itself with this
    /// status and body, never reaching the app.
    GatewayAnswers(u16, String),
    /// Calls to this workload get Envoy's 503 local reply (`upstream connect error or
    /// disconnect/reset before headers. reset reason: connection termination`); the
    /// frontend pastes it into a 200 "sentence".
    BackendLocalReply { workload: String },
    /// The injector adds `sidecar.istio.io/status` but no container.
    InjectorAnnotatesOnly,
    /// The injection webhook is never called (removed, or `failurePolicy: Ignore` with
    /// istiod unreachable): pods are created as their template says, without a proxy.
    InjectorDown,
    /// This share (0..=1) of requests on the edge `from → to` (workload names) goes
    /// plaintext from the caller's proxy and is accepted even under STRICT (an Istio bug).
    PlaintextShare {
        from: String,
        to: String,
        share: f64,
    },
    /// STRICT behaves like PERMISSIVE.
    StrictNotEnforced,
    /// The MUTUAL gateway closes a rejected TLS connection without sending an alert.
    TlsCloseWithoutAlert,
    /// That workload's proxies answer their metrics endpoints with 503 (targets down).
    NoTelemetry { workload: String },
    /// DestinationRule traffic policies (TLS modes) are ignored: auto mTLS everywhere;
    /// subsets still route.
    DestinationRuleIgnored,
    /// The proxies get config this much later than `push_delay` says (a slow istiod).
    SlowPush(std::time::Duration),
    /// The Prometheus file_sd file is no longer updated (targets go stale).
    DiscoveryFrozen,
    /// istiod never sees an ACK from this workload's proxies: they get and apply config,
    /// but `/debug/syncz` shows every type sent and none acked (STALE).
    ProxyNeverAcks { workload: String },
    /// istiod runs with `ENABLE_DEBUG_ON_HTTP=false`: every `/debug/*` path is a 404.
    DebugOnHttpDisabled,
    /// This share (0..=1) of TLS connections to a MUTUAL gateway server is served
    /// without asking for a client certificate (as SIMPLE), e.g. one gateway replica of
    /// several behind a load balancer still on a listener without
    /// `require_client_certificate`. Deterministic, spread evenly like `PlaintextShare`.
    MutualNotEnforcedShare(f64),
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

/// The active faults, and the running share of `PlaintextShare` edges (deterministic:
/// exactly `share` of the requests, spread evenly).
#[derive(Default)]
pub(crate) struct Faults {
    active: Mutex<Vec<Fault>>,
    share_credit: Mutex<HashMap<(String, String), f64>>,
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
        self.share_credit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn any(&self, f: impl Fn(&Fault) -> bool) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(f)
    }

    pub fn gateway_answer(&self) -> Option<(u16, String)> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find_map(|f| match f {
                Fault::GatewayAnswers(code, body) => Some((*code, body.clone())),
                _ => None,
            })
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

    pub fn strict_not_enforced(&self) -> bool {
        self.any(|f| matches!(f, Fault::StrictNotEnforced))
    }

    pub fn tls_close_without_alert(&self) -> bool {
        self.any(|f| matches!(f, Fault::TlsCloseWithoutAlert))
    }

    pub fn no_telemetry(&self, workload: &str) -> bool {
        self.any(|f| matches!(f, Fault::NoTelemetry { workload: w } if w == workload))
    }

    pub fn destination_rule_ignored(&self) -> bool {
        self.any(|f| matches!(f, Fault::DestinationRuleIgnored))
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

    pub fn extra_push_delay(&self) -> std::time::Duration {
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

    /// Whether this TLS connection to a MUTUAL server is one the
    /// `MutualNotEnforcedShare` bug serves without asking for a client certificate.
    pub fn mutual_not_enforced(&self) -> bool {
        let share = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find_map(|f| match f {
                Fault::MutualNotEnforcedShare(share) => Some(share.clamp(0.0, 1.0)),
                _ => None,
            });
        let Some(share) = share else {
            return false;
        };
        let mut credits = self.share_credit.lock().unwrap_or_else(|p| p.into_inner());
        // A key no workload edge can have.
        let credit = credits
            .entry((String::new(), "MUTUAL".to_string()))
            .or_default();
        *credit += share;
        if *credit >= 1.0 - 1e-9 {
            *credit -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether this request on `from → to` is one the `PlaintextShare` bug sends in the
    /// clear.
    pub fn plaintext_bug(&self, from: &str, to: &str) -> bool {
        let share = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find_map(|f| match f {
                Fault::PlaintextShare {
                    from: a,
                    to: b,
                    share,
                } if a == from && b == to => Some(share.clamp(0.0, 1.0)),
                _ => None,
            });
        let Some(share) = share else {
            return false;
        };
        let mut credits = self.share_credit.lock().unwrap_or_else(|p| p.into_inner());
        let credit = credits
            .entry((from.to_string(), to.to_string()))
            .or_default();
        *credit += share;
        if *credit >= 1.0 - 1e-9 {
            *credit -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plaintext_share_is_exact_over_many_requests() {
        let f = Faults::default();
        f.set(Fault::PlaintextShare {
            from: "a".into(),
            to: "b".into(),
            share: 0.25,
        });
        let n = (0..100).filter(|_| f.plaintext_bug("a", "b")).count();
        assert_eq!(n, 25);
        assert!(!f.plaintext_bug("b", "a"));
        f.clear();
        assert!(!f.plaintext_bug("a", "b"));
    }
}
