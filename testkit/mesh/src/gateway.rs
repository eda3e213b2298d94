//! The ingress gateway pod's ports. A Gateway server selects gateway pods by labels
//! (any namespace); its port maps to the pod port through the gateway Service
//! (`80 → 8080`, `443 → 8443`). Envoy only listens where a server exists, so a port
//! without a Gateway is refused. A TLS server's listener only becomes active once its
//! credential (`credentialName`, a Secret in the namespace of the gateway *pods*, keys
//! `cert`/`key`/`cacert` or `tls.crt`/`tls.key`/`ca.crt`, or a `<name>-cacert` Secret for
//! the CA) reached the gateway over SDS (`sds_delay`); until then Envoy keeps the
//! listener warming and the port is closed.

use crate::Inner;
use crate::http::{Handler, Request, Response};
use crate::objects::Pod;
use crate::routing::{self, BoundServer};
use crate::world::World;
use std::sync::{Arc, Weak};

/// What a gateway pod's port does right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortState {
    Http,
    Tls,
    Closed,
}

/// Key material of a TLS server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Credential {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    /// MUTUAL: the CA that client certificates must chain to.
    pub ca: Option<Vec<u8>>,
}

/// The credential of a TLS server, as the gateway has it (`sds` snapshot).
pub(crate) fn credential(sds: &World, gw: &Pod, b: &BoundServer<'_>) -> Option<Credential> {
    let tls = b.server.tls.as_ref()?;
    let name = tls.credential_name.as_deref()?;
    let secret = sds
        .secrets
        .iter()
        .find(|s| s.namespace == gw.namespace && s.name == name)?;
    let cert = secret.get(&["cert", "tls.crt"])?.to_vec();
    let key = secret.get(&["key", "tls.key"])?.to_vec();
    let mutual = matches!(tls.mode.as_str(), "MUTUAL" | "OPTIONAL_MUTUAL");
    let ca = secret
        .get(&["cacert", "ca.crt"])
        .map(<[u8]>::to_vec)
        .or_else(|| {
            let ca_name = format!("{name}-cacert");
            sds.secrets
                .iter()
                .find(|s| s.namespace == gw.namespace && s.name == ca_name)
                .and_then(|s| s.get(&["cacert", "ca.crt"]))
                .map(<[u8]>::to_vec)
        });
    if mutual && ca.is_none() {
        return None;
    }
    Some(Credential {
        cert,
        key,
        ca: if mutual { ca } else { None },
    })
}

pub(crate) fn port_state(inner: &Inner, gw: &Pod, port: u16) -> PortState {
    let cfg = inner.config_view();
    match routing::gateway_listeners(&cfg, gw).get(&port) {
        Some(false) => PortState::Http,
        Some(true) => {
            let sds = inner.credential_view();
            let ready = routing::gateway_servers(&cfg, gw)
                .iter()
                .filter(|b| b.target_port == port)
                .any(|b| credential(&sds, gw, b).is_some());
            if ready {
                PortState::Tls
            } else {
                PortState::Closed
            }
        }
        None => PortState::Closed,
    }
}

/// The HTTP handler of a gateway pod's plaintext port.
pub(crate) fn http_handler(inner: Weak<Inner>, gw_uid: String, port: u16) -> Handler {
    Arc::new(move |req: Request| match inner.upgrade() {
        Some(inner) => inner.gateway_request(&gw_uid, port, None, false, &req),
        None => Response::text(503, "no healthy upstream"),
    })
}
