//! Which istiod serves each proxy, from every ready istiod's `/debug/syncz`: a pod can
//! carry the new proxy image and `istio.io/rev` and still be served by the old control
//! plane (a discovery address pinned to the default revision's Service), so an upgrade
//! check that reads pods alone can pass over one control plane.

use super::Env;
use super::proxy_versions::Side;
use super::settled;
use crate::cluster::istiod_debug;

/// One proxy whose control plane is checked.
pub struct Proxy {
    pub workload: String,
    /// `<pod>.<namespace>`, as istiod names it.
    pub id: String,
    pub side: Side,
    pub rollout_done: bool,
}

/// Which control plane serves the proxies.
pub enum Served {
    /// Every proxy is served by one istiod of its side's revision: a line per proxy.
    Right(Vec<String>),
    /// Some are served by another revision's istiod (`settled` when their rollouts are
    /// complete: a proxy stays with the istiod its discovery address names).
    Wrong { wrong: Vec<String>, settled: bool },
    /// istiod's report could not be read, or a proxy is not connected yet.
    Unknown(String),
}

/// How the evidence says that no istiod's report could tell; at the deadline this is an
/// error of the environment, not a verdict on Istio.
pub const UNKNOWN_SERVER: &str = "cannot tell which istiod serves the proxies";

/// Which istiod serves each proxy, from every ready istiod's `/debug/syncz`. A pod with
/// the new image and `istio.io/rev` can still be served by the old control plane (a
/// discovery address pinned to the default revision's Service): the proxy must be
/// connected to exactly one istiod, of its side's revision (in place, both sides are
/// `default` and the proxy's own version is what differs).
pub async fn served(env: &Env<'_>, proxies: &[Proxy]) -> Served {
    let istiods = match istiod_debug::ready_istiods(&env.cluster.client).await {
        Ok(i) => i,
        Err(e) => return Served::Unknown(e),
    };
    let mut reports = Vec::new();
    for istiod in &istiods {
        match settled::report_of(env, &istiod.pod).await {
            Ok(connected) => reports.push((istiod, connected)),
            Err(e) => return Served::Unknown(e),
        }
    }
    let mut right = Vec::new();
    let mut wrong = Vec::new();
    let mut settled = true;
    for proxy in proxies {
        let serving: Vec<&istiod_debug::Istiod> = reports
            .iter()
            .filter(|(_, connected)| connected.iter().any(|c| c.id == proxy.id))
            .map(|(istiod, _)| *istiod)
            .collect();
        match serving.as_slice() {
            [] => {
                return Served::Unknown(format!(
                    "{} ({}) is not connected to any ready istiod yet",
                    proxy.id, proxy.workload
                ));
            }
            [istiod] => {
                let line = format!(
                    "{}: {} served by istiod {} (revision {}, {})",
                    proxy.workload, proxy.id, istiod.pod, istiod.revision, istiod.version
                );
                if istiod.revision == proxy.side.revision {
                    right.push(line);
                } else {
                    settled &= proxy.rollout_done;
                    wrong.push(format!(
                        "{line} — expected an istiod of revision {}",
                        proxy.side.revision
                    ));
                }
            }
            several => {
                return Served::Unknown(format!(
                    "{} is connected to several istiods ({})",
                    proxy.id,
                    several
                        .iter()
                        .map(|i| i.pod.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    if wrong.is_empty() {
        Served::Right(right)
    } else {
        Served::Wrong { wrong, settled }
    }
}
