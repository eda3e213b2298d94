//! Where a pod's processes listen, without network namespaces or iptables: every pod
//! has its own loopback address (`127.b.x.y`, from the fake cluster's pod IP prefix),
//! and two more are derived from it:
//! - `ip` (the pod IP): what other pods dial, as EndpointSlices say. With a sidecar,
//!   Envoy's inbound listener is bound there (in a cluster, iptables redirects the
//!   pod IP's ports to Envoy's 15006); without one, the app is.
//! - `local` (`127.b.x+64.y`, the pod's own localhost): the app behind its sidecar, and
//!   Envoy's admin (Istio binds it to `127.0.0.1:15000`).
//! - `outbound` (`127.b.x+128.y`): the sidecar's outbound listeners, one per service
//!   port, which the app dials instead of the Service (in a cluster, iptables redirects
//!   the app's outbound connections to Envoy's 15001).
//!
//! [`PodNetwork`] reserves a `127.b` block for one stand-in world across processes, so
//! worlds running at once (test threads, test binaries) never share an address.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// The loopback addresses of one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PodAddresses {
    pub ip: Ipv4Addr,
    pub local: Ipv4Addr,
    pub outbound: Ipv4Addr,
}

impl PodAddresses {
    /// The addresses of the pod with IP `pod_ip`; `None` unless it is a loopback
    /// address of the shape the fake cluster hands out from a `127.b` prefix.
    pub fn of(pod_ip: &str) -> Option<PodAddresses> {
        let ip: Ipv4Addr = pod_ip.parse().ok()?;
        let [a, b, x, y] = ip.octets();
        if a != 127 || x >= 64 {
            return None;
        }
        Some(PodAddresses {
            ip,
            local: Ipv4Addr::new(a, b, x + 64, y),
            outbound: Ipv4Addr::new(a, b, x + 128, y),
        })
    }
}

/// A `127.b` block of loopback addresses held for one stand-in world: pass
/// [`PodNetwork::prefix`] as the fake cluster's pod IP prefix. Held by a lock file in
/// the temporary folder until dropped.
#[derive(Debug)]
pub struct PodNetwork {
    prefix: String,
    _lock: File,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl PodNetwork {
    /// Reserves a free block, or says why none could be.
    pub fn reserve() -> Result<PodNetwork, String> {
        let dir: PathBuf = std::env::temp_dir().join("testkit-mesh-pod-networks");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Spread processes over the blocks so they rarely contend.
        let start = std::process::id()
            .wrapping_mul(7919)
            .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        const FIRST: u32 = 20;
        const COUNT: u32 = 220;
        for i in 0..COUNT {
            let b = FIRST + (start.wrapping_add(i) % COUNT);
            let path = dir.join(format!("127.{b}.lock"));
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            if file.try_lock().is_ok() {
                return Ok(PodNetwork {
                    prefix: format!("127.{b}"),
                    _lock: file,
                });
            }
        }
        Err(format!(
            "every 127.x block from 127.{FIRST} to 127.{} is held by another stand-in world (lock files in {})",
            FIRST + COUNT - 1,
            dir.display()
        ))
    }

    /// `127.b`: the first two octets of this world's pod IPs.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_ip_gives_its_local_and_outbound_addresses() {
        let a = PodAddresses::of("127.31.1.7").unwrap();
        assert_eq!(a.local, Ipv4Addr::new(127, 31, 65, 7));
        assert_eq!(a.outbound, Ipv4Addr::new(127, 31, 129, 7));
        assert_eq!(PodAddresses::of("10.244.0.7"), None);
        assert_eq!(PodAddresses::of("127.31.64.7"), None);
    }

    #[test]
    fn two_reservations_never_share_a_block() {
        let a = PodNetwork::reserve().unwrap();
        let b = PodNetwork::reserve().unwrap();
        assert_ne!(a.prefix(), b.prefix());
    }
}
