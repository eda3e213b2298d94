//! Istio's mesh (1.30/1.31, native sidecars) and the exercise's "sentences" app on
//! loopback, so the harness's tests can run its mutual-TLS checks end to end without a
//! cluster. The data plane is real: every injected sidecar and every ingress gateway
//! replica is an Envoy 1.40 process, configured the way istiod configures it; the
//! control plane around it (injector, istiod's pushes and debug endpoints, the app,
//! pilot-agent's metrics) is a stand-in.
//!
//! The mesh reads the cluster through [`Objects`] (the tests glue it to their fake API
//! server) and never hard-codes app names. What it serves:
//! - the injector ([`Mesh::inject`], an admission hook);
//! - the kubelet's readiness of proxy and app containers ([`Mesh::container_ready`]);
//! - pod ports behind port-forwards ([`Mesh::port_target`]): Envoy's own listeners and
//!   admin (15000), pilot-agent's merged metrics (15020), stats (15090) and readiness
//!   (15021), the app's port, Prometheus (9090), istiod's debug endpoints (15014, 8080);
//! - a Prometheus file_sd file ([`Mesh::file_sd_path`]) with the addon's targets, and a
//!   real Prometheus process for tests ([`PrometheusProcess`]);
//! - faults ([`Fault`]), most of them as wrong Envoy config.
//!
//! Pods must have loopback IPs from a reserved block ([`PodNetwork`]). `FACTS.md`
//! beside this crate lists the Istio behaviours followed and their sources.

mod access_logging;
mod addresses;
mod app;
mod app_server;
mod ca;
mod client;
mod control_plane;
pub mod envoy;
mod faults;
mod http;
mod inject;
mod istio_config;
mod istiod;
mod listeners;
mod objects;
mod policy;
mod prometheus;
mod routing;
mod telemetry;
mod world;
mod xds;

pub use addresses::PodNetwork;
pub use app::WerkzeugPage;
pub use faults::Fault;
pub use objects::Objects;
pub use prometheus::PrometheusProcess;

use crate::app_server::AppServer;
use crate::http::Response;
use crate::listeners::Role;
use crate::objects::{Pod, ProxyKind, str_at};
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
    /// Seed of every random choice (names, ages, kube-proxy's picks).
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
    /// Werkzeug generation of the app's error pages. Default [`WerkzeugPage::Legacy`].
    pub werkzeug: WerkzeugPage,
    /// `meshConfig.accessLogFile=/dev/stdout`, as the harness installs Istio. Default
    /// true; false is Istio's own default (no access log unless a Telemetry asks).
    pub access_log_file: bool,
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
            werkzeug: WerkzeugPage::Legacy,
            access_log_file: true,
        }
    }
}

/// The mesh. Cheap to clone; background tasks and Envoys stop when the last clone
/// drops.
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
    pub(crate) fleet: envoy::Fleet,
    xds: Result<envoy::xds_server::XdsServer, String>,
    apps: Mutex<HashMap<String, AppServer>>,
    ca: Result<ca::CaSet, String>,
    listeners: listeners::Registry,
    prometheus: Mutex<Option<SocketAddr>>,
    rng: Mutex<u64>,
    round_robin: Mutex<HashMap<String, usize>>,
    metrics_addr: SocketAddr,
    file_sd: PathBuf,
    _file_sd_dir: tempfile::TempDir,
    pub(crate) runtime: tokio::runtime::Handle,
    weak: Weak<Inner>,
    stopped: std::sync::atomic::AtomicBool,
}

impl Inner {
    /// The cluster as istiod pushes it to the proxies: delayed by `push_delay`, never
    /// older than what the proxies already got.
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

    /// What the stand-in serves on `port` of `pod` itself (pilot-agent, istiod).
    fn role_for(&self, pod: &Pod, port: u16) -> Option<Role> {
        if !pod.running() {
            return None;
        }
        match (pod.live_proxy(), port) {
            (Some(_), 15020) => Some(Role::MergedMetrics),
            (Some(_), 15090) => Some(Role::EnvoyStats),
            (Some(_), 15021) => Some(Role::Health),
            (None, 15014 | 8080) if control_plane::is_istiod(pod) => Some(Role::IstiodDebug),
            _ => None,
        }
    }

    pub(crate) fn port_open(&self, uid: &str, port: u16, role: Role) -> bool {
        let now = self.timeline.latest();
        now.pod_by_uid(uid).and_then(|p| self.role_for(p, port)) == Some(role)
    }

    /// Brings the proxy's counters up to what its Envoy has logged.
    fn ingest_telemetry(&self, pod: &Pod) -> telemetry::ProxyMeta {
        let meta = telemetry::ProxyMeta::of(pod, &self.options.trust_domain);
        if let Some(proxy) = self.fleet.get(&pod.uid) {
            let lines = proxy.new_telemetry_lines();
            let world = self.timeline.latest();
            self.telemetry
                .ingest(&meta, &lines, &world, &self.options.trust_domain);
        }
        meta
    }

    /// A pod's metrics endpoint on `port` (15020 merged, 15090 Envoy's).
    pub(crate) fn metrics(&self, pod: &Pod, port: u16) -> Response {
        const CT: &str = "text/plain; version=0.0.4; charset=utf-8";
        if pod.live_proxy().is_none() {
            return Response::new(
                200,
                CT,
                "# this component's own metrics are not simulated\n",
            );
        }
        if self.faults.no_telemetry(&pod.workload_name()) {
            return Response::text(503, "");
        }
        if port != 15020 && port != 15090 {
            return Response::text(404, "404 page not found\n");
        }
        let meta = self.ingest_telemetry(pod);
        let live = self.fleet.get(&pod.uid).is_some_and(|p| p.is_ready());
        Response::new(200, CT, self.telemetry.render(&meta, live))
    }

    /// Whether the proxy of `uid` is ready (pilot-agent's `/healthz/ready`).
    pub(crate) fn proxy_ready(&self, uid: &str) -> bool {
        self.fleet.get(uid).is_some_and(|p| p.is_ready())
    }

    /// Starts and stops the apps of the pods that run now.
    fn reconcile_apps(&self, now: &World) {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.retain(|uid, _| now.pod_by_uid(uid).is_some_and(Pod::running));
        for pod in now.pods.iter().filter(|p| p.running()) {
            if apps.contains_key(&pod.uid) || control_plane::is_istio_component(pod) {
                continue;
            }
            let Some(address) = app_address(pod) else {
                continue;
            };
            if let Ok(server) =
                AppServer::start(self.weak.clone(), &pod.uid, address, &self.runtime)
            {
                apps.insert(pod.uid.clone(), server);
            }
        }
    }

    fn refresh(&self, mut world: World) {
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        world.access_log_file = self.options.access_log_file;
        world.with_faults(self.faults.snapshot());
        self.pushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stamp(&mut world);
        let keep = self.options.push_delay.max(self.options.sds_delay)
            + self.faults.extra_push_delay()
            + Duration::from_secs(1);
        self.timeline.push(world, keep);
        let now = self.timeline.latest();
        self.reconcile_apps(&now);
        if let (Ok(ca), Ok(xds)) = (&self.ca, &self.xds) {
            let config = self.config_view();
            let credentials = self.credential_view();
            self.fleet.reconcile(&envoy::Pass {
                now: &now,
                config: &config,
                credentials: &credentials,
                ca,
                root_namespace: &self.options.root_namespace,
                trust_domain: &self.options.trust_domain,
                runtime: &self.runtime,
                xds: xds.address,
            });
        }
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

/// Where a pod's app listens: its first container port (5000 if it names none), on
/// the pod IP without a sidecar, on the pod's localhost behind one.
fn app_address(pod: &Pod) -> Option<SocketAddr> {
    let addresses = addresses::PodAddresses::of(pod.ip.as_deref()?)?;
    let port = pod
        .app_container()
        .and_then(|c| {
            c.get("ports")?
                .as_array()?
                .first()?
                .get("containerPort")?
                .as_u64()
        })
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(5000);
    let ip = if pod.proxy_kind() == Some(ProxyKind::Sidecar) {
        addresses.local
    } else {
        addresses.ip
    };
    Some(SocketAddr::new(ip.into(), port))
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
    /// Starts the mesh: reads the cluster, binds the metrics server, and keeps polling.
    /// Must run inside a tokio runtime.
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
        let ca = ca::CaSet::new(&options.trust_domain);
        let inner = Arc::new_cyclic(|weak| Inner {
            objects: objects.clone(),
            rng: Mutex::new(options.seed),
            options,
            timeline: Timeline::new(first),
            config_seen: Mutex::new(None),
            pushes: Mutex::new(pushes),
            faults: faults::Faults::default(),
            telemetry: telemetry::Registry::default(),
            fleet: envoy::Fleet::default(),
            xds: envoy::xds_server::XdsServer::start(weak.clone(), &runtime),
            apps: Mutex::new(HashMap::new()),
            ca,
            listeners: listeners::Registry::default(),
            prometheus: Mutex::new(None),
            round_robin: Mutex::new(HashMap::new()),
            metrics_addr,
            file_sd,
            _file_sd_dir: dir,
            runtime,
            weak: weak.clone(),
            stopped: std::sync::atomic::AtomicBool::new(false),
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

    /// The kubelet's readiness probe: an `istio-proxy` container is ready once its
    /// Envoy is `LIVE`; an app container once its app listens. `None` for the rest.
    /// Answers from the mesh's own state (never the cluster).
    pub fn container_ready(&self, pod: &Value, container: &str) -> Option<bool> {
        let uid = str_at(pod, &["metadata", "uid"])?;
        if container == "istio-proxy" {
            return Some(self.inner.proxy_ready(uid));
        }
        let apps = self.inner.apps.lock().unwrap_or_else(|p| p.into_inner());
        let parsed = Pod::parse(pod);
        let is_app = parsed.app_container().and_then(|c| str_at(c, &["name"])) == Some(container)
            && !control_plane::is_istio_component(&parsed);
        is_app.then(|| apps.contains_key(uid))
    }

    /// Where a port-forward to (pod, pod port) lands; anything not listening is
    /// refused, as the kubelet refuses it.
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
        if let Some(role) = inner.role_for(&pod, port) {
            return match inner.listeners.ensure(inner, &pod.uid, port, role) {
                Ok(a) => PortTarget::Tcp(a),
                Err(e) => refused(&format!(" ({e})")),
            };
        }
        let Some(addresses) = pod.ip.as_deref().and_then(addresses::PodAddresses::of) else {
            return refused(" (no loopback address)");
        };
        // What listens in the pod is real: Envoy's admin on its localhost, Envoy's
        // listeners on the pod IP, the app where it was started. A port nothing
        // listens on is refused when the forward connects.
        match pod.live_proxy() {
            Some(_) if port == 15000 => {
                PortTarget::Tcp(SocketAddr::new(addresses.local.into(), port))
            }
            Some(ProxyKind::Gateway) => PortTarget::Tcp(SocketAddr::new(addresses.ip.into(), port)),
            _ => match app_address(&pod).filter(|a| a.port() == port) {
                Some(a) => PortTarget::Tcp(a),
                None => refused(""),
            },
        }
    }

    /// Objects that make an installed Istio of `version` and the Prometheus addon.
    pub fn control_plane(version: &str) -> Vec<Value> {
        control_plane::objects(version)
    }

    /// istiod of `revision` at `version` (Deployment, Service and its injector
    /// webhooks), as `istioctl install --set revision=<revision>` leaves it beside the
    /// running control plane.
    pub fn istiod_revision(version: &str, revision: &str) -> Vec<Value> {
        let mut out = control_plane::istiod(version, revision);
        out.push(control_plane::injector(version, revision));
        out
    }

    /// The revision tag `tag` pointing at `revision`: its webhook configuration and
    /// Service, as `istioctl tag set` (`installed: false`) or `istioctl install`
    /// (`installed: true`, with the install's owner labels) makes them.
    pub fn revision_tag(version: &str, tag: &str, revision: &str, installed: bool) -> Vec<Value> {
        control_plane::revision_tag(version, tag, revision, installed)
    }

    /// A revision's injector webhooks with every selector made to match nothing, as
    /// istioctl leaves the default revision's once the `default` tag takes over.
    pub fn deactivated_injector(version: &str, revision: &str) -> Value {
        control_plane::deactivated(control_plane::injector(version, revision))
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

    /// The log of a pod's proxy (Envoy's standard output and error: Istio's access log
    /// and Envoy's own messages) from line `from` on, and the index after the last.
    pub fn proxy_log_since(&self, namespace: &str, pod: &str, from: usize) -> (Vec<String>, usize) {
        let now = self.inner.timeline.latest();
        match now
            .pod(namespace, pod)
            .and_then(|p| self.inner.fleet.get(&p.uid))
        {
            Some(proxy) => proxy.log_since(from),
            None => (vec![], from),
        }
    }

    /// The log of a pod's proxy, oldest line first.
    pub fn proxy_logs(&self, namespace: &str, pod: &str) -> Vec<String> {
        self.proxy_log_since(namespace, pod, 0).0
    }

    /// What went wrong with the data plane: proxies whose Envoy could not start or
    /// exited, and config updates Envoy rejected. Empty in a healthy world.
    pub fn data_plane_problems(&self) -> Vec<String> {
        let mut out = vec![];
        if let Err(e) = &self.inner.ca {
            out.push(e.clone());
        }
        if let Err(e) = &self.inner.xds {
            out.push(e.clone());
        }
        for p in self.inner.fleet.all() {
            if let Some(f) = p.failure() {
                out.push(f);
            }
            for line in p.rejections() {
                out.push(format!("{}/{}: {line}", p.namespace, p.name));
            }
        }
        out.sort();
        out
    }

    /// Waits until what the API server holds now has reached the proxies (istiod's
    /// view is the newest snapshot, the gateway's credentials are current, every proxy
    /// acked that push) or `within` passes; says whether it did.
    pub async fn settle_within(&self, within: Duration) -> bool {
        let inner = &self.inner;
        let deadline = tokio::time::Instant::now() + within;
        // A snapshot taken after this call: what the API server holds now.
        let asked = std::time::Instant::now();
        loop {
            let latest = inner.timeline.latest();
            let config = inner.config_view();
            let credentials = inner.credential_view();
            let current = latest.taken >= asked
                && config.push_version == latest.push_version
                && credentials.taken >= asked;
            let acked = inner.fleet.all().iter().all(|p| {
                p.failure().is_some()
                    || (p.is_ready()
                        && p.push().is_some_and(|push| {
                            push.version == latest.push_version && push.acked.values().all(|a| *a)
                        }))
            });
            if current && acked {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(inner.options.poll_interval).await;
        }
    }

    /// Stops every Envoy and app and stops following the cluster. Hooks handed to the
    /// cluster keep the mesh alive, so a test ends a world with this.
    pub fn shutdown(&self) {
        self.inner
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.fleet.clear();
        self.inner
            .apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.inner.listeners.clear();
    }

    /// [`Mesh::settle_within`] ten seconds.
    pub async fn settle(&self) {
        let _ = self.settle_within(Duration::from_secs(10)).await;
    }
}
