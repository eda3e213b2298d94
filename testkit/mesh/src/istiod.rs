//! istiod's pushes and its debug HTTP endpoints (ports 15014 and 8080 of an istiod pod),
//! as Istio 1.30/1.31 answer a loopback caller such as a port-forward (FACTS.md §9):
//! - every change of the config istiod pushes from gets a push version
//!   `<RFC 3339 time>/<n>`; a nonce is that version followed by a UUID;
//! - `/debug/syncz`: per proxy connected to this istiod (its revision's), per xDS type,
//!   the nonce sent and the nonce acked;
//! - `/debug/sidecarz?proxyID=`: the SidecarScope of the first connection whose ID
//!   (`<pod>.<namespace>-<n>`) contains the given string: its push version, namespace
//!   and DestinationRules per service host.
//!
//! Both follow the proxies' real Envoys: a push is "sent" when its files are written and
//! "acked" once the proxy's Envoy reports that version for every resource of the type,
//! so "synced" means the proxy applied that config. Under `DestinationRuleIgnored`
//! istiod still carries the rule; only the clusters it builds ignore its TLS.

use crate::Inner;
use crate::http::{Request, Response};
use crate::objects::{Pod, ProxyKind};
use crate::routing;
use crate::telemetry::timestamp;
use crate::world::World;
use serde_json::{Value, json};
use std::hash::{Hash, Hasher};
use std::time::{Instant, SystemTime};

/// Numbers the pushes: a new version whenever the config istiod pushes from changes.
#[derive(Default)]
pub(crate) struct Pushes {
    hash: Option<u64>,
    count: u64,
    version: String,
    taken: Option<Instant>,
}

impl Pushes {
    /// Sets the snapshot's push version (`discovery.go` `NextVersion`).
    pub fn stamp(&mut self, world: &mut World) {
        if self.hash != Some(world.config_hash) {
            self.hash = Some(world.config_hash);
            self.count += 1;
            let now = timestamp(SystemTime::now());
            // RFC 3339 to the second, as Go's time.RFC3339 writes UTC.
            let seconds = now.split('.').next().unwrap_or(&now);
            self.version = format!("{seconds}Z/{}", self.count);
            self.taken = Some(world.taken);
        }
        world.push_version = self.version.clone();
        world.push_taken = self.taken.unwrap_or(world.taken);
    }
}

fn hash_of(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// `<push version><UUID>` (`discovery.go` `nonce`), the same for the same push, proxy and type.
fn nonce(version: &str, uid: &str, type_url: &str) -> String {
    let a = hash_of(&[version, uid, type_url]);
    let b = hash_of(&[type_url, uid, version]);
    format!(
        "{version}{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// The revision of the istiod a proxy connects to: the one that injected it
/// (annotation `istio.io/rev`), or the gateway's label.
fn proxy_revision(pod: &Pod) -> &str {
    pod.annotations
        .get("istio.io/rev")
        .or_else(|| pod.labels.get("istio.io/rev"))
        .map(String::as_str)
        .unwrap_or("default")
}

fn revision_of(istiod: &Pod) -> &str {
    istiod
        .labels
        .get("istio.io/rev")
        .map(String::as_str)
        .unwrap_or("default")
}

use crate::envoy::{CDS, EDS, LDS, RDS, SDS};
const NDS: &str = "type.googleapis.com/istio.networking.nds.v1.NameTable";

/// The proxies connected to `istiod`, in pod-name order, with their connection numbers.
/// With `to_default`, every proxy is connected to the `default` revision's istiod.
fn connected<'a>(
    world: &'a World,
    istiod: &Pod,
    to_default: bool,
) -> Vec<(&'a Pod, ProxyKind, u64)> {
    let mut out: Vec<_> = world
        .pods
        .iter()
        .filter_map(|p| Some((p, p.live_proxy()?)))
        .filter(|(p, _)| {
            let revision = if to_default {
                "default"
            } else {
                proxy_revision(p)
            };
            revision == revision_of(istiod)
        })
        .map(|(p, kind)| (p, kind, hash_of(&[&p.uid]) % 1000 + 1))
        .collect();
    out.sort_by(|a, b| (&a.0.namespace, &a.0.name).cmp(&(&b.0.namespace, &b.0.name)));
    out
}

/// One `/debug/syncz` entry (`debug.go` `SyncStatus`): per type, the nonce of the last
/// push istiod wrote and, once the proxy's Envoy reports that version for the whole
/// type, the same nonce as acked.
fn sync_status(inner: &Inner, pod: &Pod, kind: ProxyKind) -> Value {
    let push = inner.fleet.get(&pod.uid).and_then(|p| p.push());
    let acks = !inner.faults.never_acks(&pod.workload_name());
    let mut types = vec![CDS, EDS, LDS, RDS];
    if kind == ProxyKind::Gateway {
        types.push(SDS);
    }
    let mut resources = serde_json::Map::new();
    let mut flat = serde_json::Map::new();
    for type_url in &types {
        let prefix = match *type_url {
            CDS => Some("cluster"),
            EDS => Some("endpoint"),
            LDS => Some("listener"),
            RDS => Some("route"),
            _ => None,
        };
        let Some(push) = &push else {
            resources.insert(
                type_url.to_string(),
                json!({"sentTime": "0001-01-01T00:00:00Z"}),
            );
            continue;
        };
        let version = if *type_url == SDS {
            &push.sds_version
        } else {
            &push.version
        };
        let sent = nonce(version, &pod.uid, type_url);
        let acked = acks && push.acked.get(type_url).copied().unwrap_or(false);
        let mut status = json!({"sent": sent, "sentTime": timestamp(push.at)});
        if acked {
            status["acked"] = json!(sent);
        }
        if let Some(prefix) = prefix {
            flat.insert(format!("{prefix}_sent"), json!(sent));
            if acked {
                flat.insert(format!("{prefix}_acked"), json!(sent));
            }
        }
        resources.insert(type_url.to_string(), status);
    }
    if kind == ProxyKind::Sidecar {
        // Watched, never sent (no DNS capture configured).
        resources.insert(NDS.into(), json!({"sentTime": "0001-01-01T00:00:00Z"}));
    }
    let mut entry = json!({
        "cluster_id": "Kubernetes",
        "proxy": format!("{}.{}", pod.name, pod.namespace),
        "proxy_type": match kind { ProxyKind::Sidecar => "sidecar", ProxyKind::Gateway => "router" },
        "istio_version": pod.proxy_version(),
    });
    if let Some(map) = entry.as_object_mut() {
        map.extend(flat);
        map.insert("resources".into(), Value::Object(resources));
    }
    entry
}

/// `/debug/sidecarz` for `pod` (`sidecar.go` `SidecarScope.MarshalJSON`).
fn sidecar_scope(inner: &Inner, view: &World, pod: &Pod) -> Value {
    let mut rules = serde_json::Map::new();
    for service in &view.services {
        if let Some(rule) =
            routing::destination_rule(view, service, &pod.namespace, &inner.options.root_namespace)
        {
            let mut config = json!({
                "type": {"Group": "networking.istio.io", "Version": "v1", "Kind": "DestinationRule"},
                "name": rule.name, "namespace": rule.namespace, "domain": "cluster.local",
                "Spec": rule.spec, "Status": null, "Extra": null
            });
            for key in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
                if let Some(v) = rule.metadata.get(key) {
                    config[key] = v.clone();
                }
            }
            rules.insert(
                service.host(),
                json!([{"exportTo": {"*": {}}, "rule": config,
                        "from": [{"Namespace": rule.namespace, "Name": rule.name}]}]),
            );
        }
    }
    json!({
        "version": view.push_version,
        "name": "default-sidecar",
        "namespace": pod.namespace,
        "outboundTrafficPolicy": {"mode": "ALLOW_ANY"},
        "services": [],
        "egressListenerServices": [[]],
        "servicesByHostname": {},
        "sidecar": null,
        "destinationRules": rules,
    })
}

/// The debug handler of one istiod pod.
pub(crate) fn handle(inner: &Inner, istiod: &Pod, req: &Request) -> Response {
    if inner.faults.debug_on_http_disabled() || !req.path_only().starts_with("/debug/") {
        // Go's ServeMux for a path nobody registered.
        return Response::text(404, "404 page not found\n");
    }
    let now = inner.timeline.latest();
    let proxies = connected(
        &now,
        istiod,
        inner.faults.proxies_connect_to_default_revision(),
    );
    match req.path_only() {
        "/debug/syncz" => {
            let namespace = req.query("namespace").filter(|n| !n.is_empty());
            let entries: Vec<Value> = proxies
                .iter()
                .filter(|(p, _, _)| namespace.as_deref().is_none_or(|n| n == p.namespace))
                .map(|(p, kind, _)| sync_status(inner, p, *kind))
                .collect();
            Response::json(&Value::Array(entries))
        }
        "/debug/sidecarz" => {
            let Some(wanted) = req.query("proxyID").filter(|id| !id.is_empty()) else {
                return Response::text(400, "You must provide a proxyID in the query string\n");
            };
            let wanted = percent_decoded(&wanted);
            match proxies
                .iter()
                .find(|(p, _, n)| format!("{}.{}-{n}", p.name, p.namespace).contains(&wanted))
            {
                Some((p, _, _)) => {
                    // The scope of the last push istiod computed for the proxy.
                    let view = inner
                        .fleet
                        .get(&p.uid)
                        .and_then(|proxy| proxy.push())
                        .map(|push| push.world)
                        .unwrap_or_else(|| inner.config_view());
                    Response::json(&sidecar_scope(inner, &view, p))
                }
                None => Response::text(
                    404,
                    "Proxy not connected to this Pilot instance. It may be connected to another instance.\n",
                ),
            }
        }
        _ => Response::text(404, "404 page not found\n"),
    }
}

fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_config_gets_a_new_push_version_and_nonces_carry_it() {
        let mut pushes = Pushes::default();
        let mut a = World::empty();
        a.config_hash = 1;
        pushes.stamp(&mut a);
        let mut same = World::empty();
        same.config_hash = 1;
        pushes.stamp(&mut same);
        assert_eq!(a.push_version, same.push_version);
        assert!(a.push_version.ends_with("Z/1"), "{}", a.push_version);
        let mut b = World::empty();
        b.config_hash = 2;
        pushes.stamp(&mut b);
        assert!(b.push_version.ends_with("Z/2"), "{}", b.push_version);
        let n = nonce(&b.push_version, "uid", CDS);
        assert_eq!(n.len(), b.push_version.len() + 36);
        assert!(n.starts_with(&b.push_version));
        assert_eq!(n, nonce(&b.push_version, "uid", CDS));
        assert_ne!(n, nonce(&b.push_version, "uid", EDS));
        assert_eq!(percent_decoded("a%2Eb%20c"), "a.b c");
    }
}
