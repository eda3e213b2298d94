//! What the data plane knows, and when: snapshots of the cluster's objects taken on a
//! short poll, kept on a timeline. Proxies act on the snapshot that is `push_delay` old
//! (istiod debounces and pushes config "almost in real time"), the gateway's
//! credentials on the one `sds_delay` old; Kubernetes itself (pods, kube-proxy) acts
//! on the newest.

use crate::istio_config::{DestinationRule, Gateway, PeerAuthentication, VirtualService};
use crate::objects::{EndpointSlice, Objects, Pod, Secret, Service, name};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One snapshot of the cluster.
#[derive(Debug)]
pub(crate) struct World {
    pub taken: Instant,
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    pub deployments: Vec<Value>,
    /// MutatingWebhookConfigurations: revision tags (`istioctl tag set`) among them.
    pub webhooks: Vec<Value>,
    pub secrets: Vec<Secret>,
    pub peer_authentications: Vec<PeerAuthentication>,
    pub destination_rules: Vec<DestinationRule>,
    pub virtual_services: Vec<VirtualService>,
    pub gateways: Vec<Gateway>,
    /// `telemetry.istio.io` Telemetry resources (access logging).
    pub telemetries: Vec<crate::access_logging::Telemetry>,
    /// `meshConfig.accessLogFile` is set (the mesh's own option, copied in).
    pub access_log_file: bool,
    /// Which objects istiod pushes config from, and at which resourceVersion, and the
    /// faults in force when the snapshot was taken.
    pub config_hash: u64,
    /// The faults in force when the snapshot was taken: they reach the proxies with it.
    pub faults: Vec<crate::faults::Fault>,
    /// The push that carries this snapshot's config to the proxies (`<RFC 3339>/<n>`),
    /// and when the first snapshot of that config was taken; set when the snapshot
    /// joins the timeline.
    pub push_version: String,
    pub push_taken: Instant,
}

impl World {
    pub fn empty() -> World {
        World {
            taken: Instant::now(),
            pods: vec![],
            services: vec![],
            slices: vec![],
            deployments: vec![],
            webhooks: vec![],
            secrets: vec![],
            peer_authentications: vec![],
            destination_rules: vec![],
            virtual_services: vec![],
            gateways: vec![],
            telemetries: vec![],
            access_log_file: true,
            config_hash: 0,
            faults: vec![],
            push_version: String::new(),
            push_taken: Instant::now(),
        }
    }

    pub fn load(objects: &dyn Objects) -> World {
        let list = |group: &str, kind: &str| objects.list(group, kind, None);
        let by_age = |mut v: Vec<Value>| {
            v.sort_by(|a, b| {
                crate::objects::creation(a)
                    .cmp(&crate::objects::creation(b))
                    .then_with(|| name(a).cmp(&name(b)))
            });
            v
        };
        let services = list("", "Service");
        let slices = list("discovery.k8s.io", "EndpointSlice");
        let peer_authentications = by_age(list("security.istio.io", "PeerAuthentication"));
        let destination_rules = by_age(list("networking.istio.io", "DestinationRule"));
        let virtual_services = by_age(list("networking.istio.io", "VirtualService"));
        let gateways = by_age(list("networking.istio.io", "Gateway"));
        let telemetries = by_age(list("telemetry.istio.io", "Telemetry"));
        World {
            config_hash: config_hash(&[
                &services,
                &slices,
                &peer_authentications,
                &destination_rules,
                &virtual_services,
                &gateways,
                &telemetries,
            ]),
            telemetries: telemetries
                .iter()
                .map(crate::access_logging::Telemetry::parse)
                .collect(),
            access_log_file: true,
            faults: vec![],
            push_version: String::new(),
            push_taken: Instant::now(),
            taken: Instant::now(),
            pods: list("", "Pod").iter().map(Pod::parse).collect(),
            services: services.iter().map(Service::parse).collect(),
            slices: slices.iter().filter_map(EndpointSlice::parse).collect(),
            deployments: list("apps", "Deployment"),
            webhooks: list(
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
            ),
            secrets: list("", "Secret").iter().map(Secret::parse).collect(),
            peer_authentications: peer_authentications
                .iter()
                .map(PeerAuthentication::parse)
                .collect(),
            destination_rules: destination_rules
                .iter()
                .map(DestinationRule::parse)
                .collect(),
            virtual_services: virtual_services.iter().map(VirtualService::parse).collect(),
            gateways: gateways.iter().map(Gateway::parse).collect(),
        }
    }

    /// Records the faults in force; a change of them is a change of config to push.
    pub fn with_faults(&mut self, faults: Vec<crate::faults::Fault>) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.config_hash.hash(&mut h);
        format!("{faults:?}").hash(&mut h);
        self.config_hash = h.finish();
        self.faults = faults;
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }

    pub fn pod_by_uid(&self, uid: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.uid == uid)
    }

    pub fn pod_by_ip(&self, ip: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.ip.as_deref() == Some(ip))
    }

    /// The Service a host names, from a client in `namespace`: `name`, `name.ns`,
    /// `name.ns.svc`, `name.ns.svc.cluster.local` (cluster DNS search paths).
    pub fn resolve(&self, host: &str, namespace: &str) -> Option<&Service> {
        let fqdn = crate::istio_config::fqdn(host, namespace);
        self.services.iter().find(|s| s.host() == fqdn)
    }
}

/// Identifies the content of a set of objects: a new value means istiod has new
/// config to push.
fn config_hash(lists: &[&Vec<Value>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut objects: Vec<String> = lists
        .iter()
        .flat_map(|l| l.iter())
        .map(Value::to_string)
        .collect();
    objects.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    objects.hash(&mut hasher);
    hasher.finish()
}

/// Snapshots over time.
pub(crate) struct Timeline {
    history: Mutex<VecDeque<Arc<World>>>,
}

impl Timeline {
    pub fn new(first: World) -> Timeline {
        Timeline {
            history: Mutex::new(VecDeque::from([Arc::new(first)])),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<World>>> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a snapshot; forgets those no query older than `keep` can still need.
    pub fn push(&self, world: World, keep: Duration) {
        let mut h = self.lock();
        h.push_back(Arc::new(world));
        let horizon = Instant::now().checked_sub(keep);
        while h.len() > 1
            && let Some(horizon) = horizon
            && h[1].taken <= horizon
        {
            h.pop_front();
        }
    }

    pub fn latest(&self) -> Arc<World> {
        let h = self.lock();
        h.back()
            .cloned()
            .unwrap_or_else(|| Arc::new(World::empty()))
    }

    /// The newest snapshot at least `delay` old (the oldest kept if none is).
    pub fn as_of(&self, delay: Duration) -> Arc<World> {
        let h = self.lock();
        let Some(cutoff) = Instant::now().checked_sub(delay) else {
            return h
                .front()
                .cloned()
                .unwrap_or_else(|| Arc::new(World::empty()));
        };
        h.iter()
            .rev()
            .find(|w| w.taken <= cutoff)
            .or_else(|| h.front())
            .cloned()
            .unwrap_or_else(|| Arc::new(World::empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delayed_view_is_the_newest_snapshot_old_enough() {
        let t = Timeline::new(World::empty());
        std::thread::sleep(Duration::from_millis(30));
        let mut second = World::empty();
        second
            .deployments
            .push(serde_json::json!({"metadata": {"name": "new"}}));
        t.push(second, Duration::from_secs(5));
        assert_eq!(t.latest().deployments.len(), 1);
        assert!(t.as_of(Duration::from_millis(20)).deployments.is_empty());
        assert_eq!(t.as_of(Duration::ZERO).deployments.len(), 1);
    }
}
