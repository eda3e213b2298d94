//! Which PeerAuthentication mode istiod applies to a workload's port: it governs
//! connections *to* a sidecar, composed workload-selector > namespace-wide > root
//! namespace > PERMISSIVE, each `UNSET` inheriting (pilot/pkg/security/authn/utils.go
//! `ComposePeerAuthentication`; pilot/pkg/model/authentication.go). The mode shapes the
//! sidecar's inbound filter chains (`xds/sidecar.rs`); Envoy enforces them.

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
