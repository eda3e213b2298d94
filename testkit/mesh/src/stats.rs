//! What happened in the simulated world, for test assertions: every hop by edge and
//! outcome, every request the gateway answered, every TLS handshake on it. This is the
//! ground truth a test compares the harness's verdicts with; the harness itself never
//! sees it.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// How one hop (one connection attempt from a caller to a destination pod) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HopOutcome {
    /// Delivered over Istio mutual TLS.
    MutualTls,
    /// Delivered in plaintext.
    Plaintext,
    /// A STRICT sidecar closed the plaintext connection (no filter chain).
    ClosedByStrict,
    /// The caller's proxy originated TLS to a peer that does not terminate it.
    TlsHandshakeFailed,
    /// Answered by a proxy's local reply (the `BackendLocalReply` fault).
    LocalReply,
    /// No ready endpoint (`no healthy upstream`, or a refused ClusterIP).
    NoEndpoint,
}

/// The outcome of a TLS handshake on the MUTUAL gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsOutcome {
    Accepted,
    /// Rejected with `certificate_required` (TLS 1.3) / `handshake_failure` (TLS 1.2).
    NoClientCertificate,
    /// Rejected with `unknown_ca` (or another certificate alert).
    UntrustedClientCertificate,
    /// Another TLS error (alert sent).
    OtherError,
    /// No filter chain for the SNI: closed without an alert.
    UnknownServerName,
    /// Rejected and closed without an alert (the `TlsCloseWithoutAlert` fault).
    ClosedWithoutAlert,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshStats {
    /// (caller workload, destination workload) → outcome → count. The ingress gateway
    /// is `istio-ingressgateway` (its workload name); a caller outside the mesh that
    /// reached the gateway is not an edge.
    pub edges: BTreeMap<(String, String), BTreeMap<HopOutcome, u64>>,
    /// (gateway pod port, status answered) → count.
    pub gateway_responses: BTreeMap<(u16, u16), u64>,
    pub tls_handshakes: BTreeMap<TlsOutcome, u64>,
    /// Plaintext connections a STRICT sidecar closed, by destination workload.
    pub no_filter_chain_match: BTreeMap<String, u64>,
}

impl MeshStats {
    pub fn count(&self, from: &str, to: &str, outcome: HopOutcome) -> u64 {
        self.edges
            .get(&(from.to_string(), to.to_string()))
            .and_then(|m| m.get(&outcome))
            .copied()
            .unwrap_or(0)
    }

    /// Every hop on the edge, whatever its outcome.
    pub fn total(&self, from: &str, to: &str) -> u64 {
        self.edges
            .get(&(from.to_string(), to.to_string()))
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }

    pub fn gateway_answered(&self, port: u16, status: u16) -> u64 {
        self.gateway_responses
            .get(&(port, status))
            .copied()
            .unwrap_or(0)
    }

    pub fn handshakes(&self, outcome: TlsOutcome) -> u64 {
        self.tls_handshakes.get(&outcome).copied().unwrap_or(0)
    }
}

#[derive(Default)]
pub(crate) struct StatsRecorder {
    inner: Mutex<MeshStats>,
}

impl StatsRecorder {
    fn with(&self, f: impl FnOnce(&mut MeshStats)) {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn hop(&self, from: &str, to: &str, outcome: HopOutcome) {
        self.with(|s| {
            *s.edges
                .entry((from.to_string(), to.to_string()))
                .or_default()
                .entry(outcome)
                .or_default() += 1;
            if outcome == HopOutcome::ClosedByStrict {
                *s.no_filter_chain_match.entry(to.to_string()).or_default() += 1;
            }
        });
    }

    pub fn gateway(&self, port: u16, status: u16) {
        self.with(|s| *s.gateway_responses.entry((port, status)).or_default() += 1);
    }

    pub fn handshake(&self, outcome: TlsOutcome) {
        self.with(|s| *s.tls_handshakes.entry(outcome).or_default() += 1);
    }

    pub fn snapshot(&self) -> MeshStats {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
