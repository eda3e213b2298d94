//! Istio's data plane (1.30/1.31, native sidecars) and the exercise's "sentences" app,
//! simulated on loopback so the harness's tests can run its mutual-TLS checks end to end
//! without a cluster.
//!
//! The simulation reads the cluster through [`Objects`] (the tests glue it to their fake
//! API server) and never hard-codes app names: injection, routing, mTLS, telemetry and
//! the app's behaviour all derive from the objects as applied. What it serves:
//! - the injector ([`Mesh::inject`], an admission hook);
//! - pod ports behind port-forwards ([`Mesh::port_target`]): the ingress gateway's HTTP
//!   and TLS ports, every proxy's Envoy admin (15000), merged metrics (15020), Envoy stats
//!   (15090) and readiness (15021), the app's port (5000), Prometheus (9090), istiod's
//!   debug endpoints (15014 and 8080: which push each proxy acked, its SidecarScope);
//! - a Prometheus file_sd file ([`Mesh::file_sd_path`]) with the addon's targets, and a
//!   real Prometheus process for tests ([`PrometheusProcess`]);
//! - faults ([`Fault`]) and ground truth ([`MeshStats`]) for assertions.
//!
//! `FACTS.md` beside this crate lists the Istio behaviours simulated and their sources.

mod admin;
mod app;
mod control_plane;
mod faults;
mod gateway;
mod http;
mod inject;
mod istio_config;
mod istiod;
mod listeners;
mod mutual_gateway;
mod objects;
mod policy;
mod prometheus;
mod routing;
mod stats;
mod telemetry;
mod tls_io;
mod traffic;
mod world;

pub use app::WerkzeugPage;
pub use faults::Fault;
pub use objects::Objects;
pub use prometheus::PrometheusProcess;
pub use stats::{HopOutcome, MeshStats, TlsOutcome};

use crate::http::Response;
use crate::listeners::Role;
use crate::objects::{Pod, ProxyKind};
use crate::world::{Timeline, World};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Where a port-forward to (pod, port) lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortTarget {
    Tcp(SocketAddr),
    /// Nothing listens there; the text reads like the API server's error.
    Refused(String),
}

/// Knobs of the simulation.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// Config reaches proxies after this (istiod's debounce and push). Default 50 ms.
    pub push_delay: Duration,
    /// A new credential reaches the gateway after this (SDS). Default 100 ms.
    pub sds_delay: Duration,
    /// Seed of every random choice (weighted routes, names, ages).
    pub seed: u64,
    /// How often the cluster's objects are read. Default 20 ms.
    pub poll_interval: Duration,
    /// Istio's root namespace (mesh-wide PeerAuthentication). Default `istio-system`.
    pub root_namespace: String,
    /// Default `cluster.local`.
    pub trust_domain: String,
    /// Inject native sidecars (Kubernetes ≥ 1.33, `ENABLE_NATIVE_SIDECARS=auto`).
    /// Default true; the pod annotation `sidecar.istio.io/nativeSidecar` overrides.
    pub native_sidecars: bool,
    /// `meshConfig.defaultConfig.proxyStatsMatcher.inclusionPrefixes` (e.g. `listener`
    /// to expose `envoy_listener_no_filter_chain_match`). Default none.
    pub stats_inclusion_prefixes: Vec<String>,
    pub stats_inclusion_suffixes: Vec<String>,
    pub stats_inclusion_regexps: Vec<String>,
    /// Werkzeug generation of the app's error pages. Default [`WerkzeugPage::Legacy`].
    pub werkzeug: WerkzeugPage,
}

impl Default for MeshOptions {
    fn default() -> MeshOptions {
        MeshOptions {
            push_delay: Duration::from_millis(50),
            sds_delay: Duration::from_millis(100),
            seed: 1,
            poll_interval: Duration::from_millis(20),
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            native_sidecars: true,
            stats_inclusion_prefixes: vec![],
            stats_inclusion_suffixes: vec![],
            stats_inclusion_regexps: vec![],
            werkzeug: WerkzeugPage::Legacy,
        }
    }
}

/// The simulated mesh. Cheap to clone; background tasks stop when the last clone drops.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("metrics", &self.inner.metrics_addr)
            .field("file_sd", &self.inner.file_sd)
            .finish()
    }
}

pub(crate) struct Inner {
    objects: Arc<dyn Objects>,
    pub(crate) options: MeshOptions,
    pub(crate) timeline: Timeline,
    config_seen: Mutex<Option<Arc<World>>>,
    pushes: Mutex<istiod::Pushes>,
    pub(crate) faults: faults::Faults,
    pub(crate) telemetry: telemetry::Registry,
    pub(crate) stats: stats::StatsRecorder,
    listeners: listeners::Registry,
    prometheus: Mutex<Option<SocketAddr>>,
    rng: Mutex<u64>,
    round_robin: Mutex<HashMap<String, usize>>,
    tls_configs: Mutex<HashMap<gateway::Credential, Arc<rustls::ServerConfig>>>,
    metrics_addr: SocketAddr,
    file_sd: PathBuf,
    _file_sd_dir: tempfile::TempDir,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Inner {
    /// The cluster as the proxies know it.
    /// Never older than what the proxies already got (a slower push delays new config,
    /// it does not take config back).
    pub(crate) fn config_view(&self) -> Arc<World> {
        let w = self
            .timeline
            .as_of(self.options.push_delay + self.faults.extra_push_delay());
        let mut seen = self.config_seen.lock().unwrap_or_else(|p| p.into_inner());
        match &*seen {
            Some(s) if s.taken > w.taken => s.clone(),
            _ => {
                *seen = Some(w.clone());
                w
            }
        }
    }

    /// The cluster as the gateway's SDS knows it.
    pub(crate) fn credential_view(&self) -> Arc<World> {
        self.timeline.as_of(self.options.sds_delay)
    }

    /// A uniform random number below `below` (splitmix64 on the seed).
    pub(crate) fn random(&self, below: u64) -> u64 {
        let mut s = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        if below == 0 { z } else { z % below }
    }

    pub(crate) fn next_round_robin(&self, key: &str, n: usize) -> usize {
        let mut m = self.round_robin.lock().unwrap_or_else(|p| p.into_inner());
        let c = m.entry(key.to_string()).or_insert(0);
        let i = *c % n.max(1);
        *c = c.wrapping_add(1);
        i
    }

    pub(crate) fn tls_config(
        &self,
        cred: &gateway::Credential,
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut m = self.tls_configs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.get(cred) {
            return Ok(c.clone());
        }
        let c = mutual_gateway::server_config(cred)?;
        if m.len() > 64 {
            m.clear();
        }
        m.insert(cred.clone(), c.clone());
        Ok(c)
    }

    /// What listens on `port` of `pod` now.
    fn role_for(&self, pod: &Pod, port: u16) -> Option<Role> {
        if !pod.running() {
            return None;
        }
        match (pod.live_proxy(), port) {
            (Some(_), 15000) => Some(Role::Admin),
            (Some(_), 15020) => Some(Role::MergedMetrics),
            (Some(_), 15090) => Some(Role::EnvoyStats),
            (Some(_), 15021) => Some(Role::Health),
            (Some(ProxyKind::Gateway), p) => match gateway::port_state(self, pod, p) {
                gateway::PortState::Http => Some(Role::GatewayHttp),
                gateway::PortState::Tls => Some(Role::GatewayTls),
                gateway::PortState::Closed => None,
            },
            (_, 5000) if !control_plane::is_istio_component(pod) => Some(Role::App),
            (None, 15014 | 8080) if control_plane::is_istiod(pod) => Some(Role::IstiodDebug),
            _ => None,
        }
    }

    pub(crate) fn port_open(&self, uid: &str, port: u16, role: Role) -> bool {
        let now = self.timeline.latest();
        now.pod_by_uid(uid).and_then(|p| self.role_for(p, port)) == Some(role)
    }

    /// A pod's metrics endpoint on `port` (15020 merged, 15090 Envoy).
    pub(crate) fn metrics(&self, pod: &Pod, port: u16) -> Response {
        const CT: &str = "text/plain; version=0.0.4; charset=utf-8";
        let Some(kind) = pod.live_proxy() else {
            return Response::new(
                200,
                CT,
                "# this component's own metrics are not simulated\n",
            );
        };
        let meta = telemetry::ProxyMeta::of(pod, kind, &self.options.trust_domain);
        if self.faults.no_telemetry(&meta.workload) {
            return Response::text(503, "");
        }
        if port != 15020 && port != 15090 {
            return Response::text(404, "404 page not found\n");
        }
        let listener = admin::stat_included(pod, &self.options, admin::NO_FILTER_CHAIN_STAT);
        Response::new(200, CT, self.telemetry.render(&meta, listener))
    }

    fn refresh(&self, mut world: World) {
        self.pushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stamp(&mut world);
        let keep = self.options.push_delay.max(self.options.sds_delay)
            + self.faults.extra_push_delay()
            + Duration::from_secs(1);
        self.timeline.push(world, keep);
        // Proxies receive config as time passes, whether or not traffic flows.
        let _ = self.config_view();
        let now = self.timeline.latest();
        let alive = |uid: &str| now.pod_by_uid(uid).is_some();
        self.listeners.retain(alive);
        self.telemetry.retain(alive);
        if !self.faults.discovery_frozen() {
            let sd = prometheus::file_sd_targets(&now, self.metrics_addr);
            let text = serde_json::to_string_pretty(&sd).unwrap_or_else(|_| "[]".into());
            let _ = prometheus::write_if_changed(&self.file_sd, &text);
        }
    }
}

async fn refresh_loop(weak: Weak<Inner>, objects: Arc<dyn Objects>, every: Duration) {
    loop {
        let o = objects.clone();
        let world = match tokio::task::spawn_blocking(move || World::load(&*o)).await {
            Ok(w) => w,
            Err(_) => return,
        };
        {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            inner.refresh(world);
        }
        tokio::time::sleep(every).await;
    }
}

impl Mesh {
    /// Starts the simulation: reads the cluster, binds the metrics server, and keeps
    /// polling. Must run inside a tokio runtime.
    pub async fn start(objects: Arc<dyn Objects>, options: MeshOptions) -> Mesh {
        let mut first = {
            let o = objects.clone();
            tokio::task::spawn_blocking(move || World::load(&*o))
                .await
                .unwrap_or_else(|_| World::empty())
        };
        let mut pushes = istiod::Pushes::default();
        pushes.stamp(&mut first);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir for file_sd: {e}"));
        let file_sd = dir.path().join("kubernetes-pods.json");
        let std_listener =
            listeners::bind_std().unwrap_or_else(|e| panic!("cannot bind the metrics server: {e}"));
        let metrics_addr = std_listener
            .local_addr()
            .unwrap_or_else(|e| panic!("metrics server address: {e}"));
        let runtime = tokio::runtime::Handle::current();
        let inner = Arc::new(Inner {
            objects: objects.clone(),
            rng: Mutex::new(options.seed),
            options,
            timeline: Timeline::new(first),
            config_seen: Mutex::new(None),
            pushes: Mutex::new(pushes),
            faults: faults::Faults::default(),
            telemetry: telemetry::Registry::default(),
            stats: stats::StatsRecorder::default(),
            listeners: listeners::Registry::default(),
            prometheus: Mutex::new(None),
            round_robin: Mutex::new(HashMap::new()),
            tls_configs: Mutex::new(HashMap::new()),
            metrics_addr,
            file_sd,
            _file_sd_dir: dir,
            runtime,
        });
        let _ = prometheus::write_if_changed(&inner.file_sd, "[]");
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .unwrap_or_else(|e| panic!("metrics server: {e}"));
        let task = tokio::spawn(listeners::metrics_server(listener, Arc::downgrade(&inner)));
        inner.listeners.keep(metrics_addr, task);
        let world = World::load(&*inner.objects);
        inner.refresh(world);
        tokio::spawn(refresh_loop(
            Arc::downgrade(&inner),
            objects,
            inner.options.poll_interval,
        ));
        Mesh { inner }
    }

    /// Istio's sidecar injector as a pod-admission hook: mutates `pod` (the pod being
    /// created) given its Namespace object. Reads istiod Deployments from the latest
    /// snapshot (at most `poll_interval` old).
    pub fn inject(&self, pod: &mut Value, namespace: &Value) {
        if self.inner.faults.injector_down() {
            return;
        }
        let world = self.inner.timeline.latest();
        let decision = inject::inject(
            &world,
            pod,
            namespace,
            self.inner.faults.injector_annotates_only(),
            self.inner.options.native_sidecars,
        );
        if let (inject::Decision::Injected { .. }, Some(tag)) =
            (decision, self.inner.faults.injected_proxy_tag())
        {
            inject::pin_proxy_tag(pod, &tag);
        }
    }

    /// Where a port-forward to (pod, pod port) lands; anything not listening is
    /// `Refused`.
    pub fn port_target(&self, pod: &Value, port: u16) -> PortTarget {
        let inner = &self.inner;
        let parsed = Pod::parse(pod);
        let now = inner.timeline.latest();
        let pod = now
            .pod_by_uid(&parsed.uid)
            .or_else(|| now.pod(&parsed.namespace, &parsed.name))
            .cloned()
            .unwrap_or(parsed);
        let refused = |why: &str| {
            PortTarget::Refused(format!(
                "error forwarding port {port} to pod {}{why}: dial tcp {}:{port}: connect: connection refused",
                pod.name,
                pod.ip.as_deref().unwrap_or("<none>"),
            ))
        };
        if !pod.running() {
            return refused(" (not running)");
        }
        if control_plane::is_prometheus(&pod) && port == 9090 {
            return match *inner.prometheus.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(a) => PortTarget::Tcp(a),
                None => refused(" (no Prometheus set)"),
            };
        }
        match inner.role_for(&pod, port) {
            Some(role) => match inner.listeners.ensure(inner, &pod.uid, port, role) {
                Ok(a) => PortTarget::Tcp(a),
                Err(e) => refused(&format!(" ({e})")),
            },
            None => refused(""),
        }
    }

    /// Objects that make an installed Istio of `version` and the Prometheus addon.
    pub fn control_plane(version: &str) -> Vec<Value> {
        control_plane::objects(version)
    }

    /// istiod of `revision` at `version` (Deployment and Service), as `istioctl install
    /// --set revision=<revision>` leaves it beside the running control plane.
    pub fn istiod_revision(version: &str, revision: &str) -> Vec<Value> {
        control_plane::istiod(version, revision)
    }

    /// Where the Prometheus pod's port 9090 leads.
    pub fn set_prometheus(&self, address: SocketAddr) {
        *self
            .inner
            .prometheus
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(address);
    }

    /// The Prometheus file_sd JSON file the mesh keeps current.
    pub fn file_sd_path(&self) -> PathBuf {
        self.inner.file_sd.clone()
    }

    /// The loopback server all file_sd targets point at.
    pub fn metrics_address(&self) -> SocketAddr {
        self.inner.metrics_addr
    }

    pub fn set_fault(&self, fault: Fault) {
        self.inner.faults.set(fault);
    }

    pub fn clear_faults(&self) {
        self.inner.faults.clear();
    }

    pub fn stats(&self) -> MeshStats {
        self.inner.stats.snapshot()
    }

    /// The access log of a pod's proxy (Istio's text format), newest last.
    pub fn proxy_logs(&self, namespace: &str, pod: &str) -> Vec<String> {
        let now = self.inner.timeline.latest();
        match now.pod(namespace, pod) {
            Some(p) => self.inner.telemetry.logs(&p.uid),
            None => vec![],
        }
    }

    /// Waits until what the API server holds now has reached the proxies and the
    /// gateway's credentials (for tests that change config and then send traffic).
    pub async fn settle(&self) {
        let o = &self.inner.options;
        let wait = o.poll_interval * 3
            + o.push_delay.max(o.sds_delay)
            + self.inner.faults.extra_push_delay();
        tokio::time::sleep(wait).await;
    }
}
