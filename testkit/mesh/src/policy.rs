//! Who originates and who accepts what on one connection.
//!
//! - Accepting side: a PeerAuthentication governs connections *to* a sidecar only. The
//!   workload's mode composes workload-selector > namespace-wide > root namespace >
//!   PERMISSIVE, each `UNSET` inheriting (pilot/pkg/security/authn/utils.go
//!   `ComposePeerAuthentication`; pilot/pkg/model/authentication.go). STRICT has no
//!   plaintext filter chain on `virtualInbound` (0.0.0.0:15006), so a plaintext
//!   connection is closed (`NR filter_chain_not_found`, listener stat
//!   `no_filter_chain_match`); PERMISSIVE accepts both; DISABLE has only a plaintext
//!   chain. A pod without a sidecar speaks plaintext HTTP only.
//! - Originating side: a caller without a proxy sends plaintext. A proxy follows the
//!   DestinationRule's TLS mode for the cluster (subset policy, then the rule's, port
//!   level first) and otherwise auto mTLS: TLS towards endpoints whose metadata carries
//!   `tlsMode: istio` (pilot/pkg/networking/core/cluster_tls.go,
//!   pilot/pkg/xds/endpoints/mtls_checker.go).

use crate::istio_config::{MtlsMode, PeerAuthentication};
use crate::objects::{Pod, selector_matches};
use crate::world::World;

/// The PeerAuthentication mode that applies to connections to `pod` on `port`.
pub(crate) fn workload_mode(world: &World, pod: &Pod, port: u16, root_ns: &str) -> MtlsMode {
    // Oldest first (the snapshot is sorted by creation): the oldest policy wins.
    let workload: Option<&PeerAuthentication> = world.peer_authentications.iter().find(|p| {
        p.namespace == pod.namespace
            && p.selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, &pod.labels))
    });
    let mut mode = namespace_mode(world, &pod.namespace, root_ns);
    if let Some(w) = workload {
        if let Some(m) = w.mode {
            mode = m;
        }
        if let Some(m) = w.port_modes.get(&port) {
            mode = *m;
        }
    }
    mode
}

/// The namespace-level mode (namespace policy, else the root namespace's, else
/// PERMISSIVE), as `GetNamespaceMutualTLSMode` / `BestEffortInferServiceMTLSMode` use it.
pub(crate) fn namespace_mode(world: &World, namespace: &str, root_ns: &str) -> MtlsMode {
    let ns_wide = |ns: &str| {
        world
            .peer_authentications
            .iter()
            .find(|p| p.namespace == ns && p.selector.is_none())
            .and_then(|p| p.mode)
    };
    ns_wide(namespace)
        .or_else(|| ns_wide(root_ns))
        .unwrap_or(MtlsMode::Permissive)
}

/// What a caller puts on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origination {
    /// Istio mutual TLS (ALPN `istio-peer-exchange`, `istio`), with the workload
    /// certificate from SDS.
    MutualTls,
    Plaintext,
}

/// What happens to a connection at the destination pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// The request reaches the application; `mtls` if a sidecar terminated mutual TLS.
    Accepted { mtls: bool, through_sidecar: bool },
    /// A STRICT sidecar has no filter chain for plaintext and closes the connection.
    NoFilterChain,
    /// The client's TLS handshake failed: the peer does not terminate TLS (no sidecar,
    /// or a DISABLE sidecar passing the ClientHello to the plaintext app).
    TlsFailed,
}

/// Knobs from the fault list that bend the accepting side.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AcceptOverrides {
    /// STRICT behaves like PERMISSIVE.
    pub strict_not_enforced: bool,
    /// This plaintext connection is let through a STRICT sidecar (an Istio bug).
    pub plaintext_bug: bool,
}

pub(crate) fn arrive(
    world: &World,
    dest: &Pod,
    port: u16,
    origination: Origination,
    root_ns: &str,
    overrides: AcceptOverrides,
) -> Arrival {
    if !dest.has_sidecar() {
        return match origination {
            Origination::Plaintext => Arrival::Accepted {
                mtls: false,
                through_sidecar: false,
            },
            Origination::MutualTls => Arrival::TlsFailed,
        };
    }
    let mode = workload_mode(world, dest, port, root_ns);
    match (mode, origination) {
        (MtlsMode::Disable, Origination::MutualTls) => Arrival::TlsFailed,
        (MtlsMode::Disable, Origination::Plaintext) => Arrival::Accepted {
            mtls: false,
            through_sidecar: true,
        },
        (_, Origination::MutualTls) => Arrival::Accepted {
            mtls: true,
            through_sidecar: true,
        },
        (MtlsMode::Strict, Origination::Plaintext)
            if !overrides.strict_not_enforced && !overrides.plaintext_bug =>
        {
            Arrival::NoFilterChain
        }
        (_, Origination::Plaintext) => Arrival::Accepted {
            mtls: false,
            through_sidecar: true,
        },
    }
}
