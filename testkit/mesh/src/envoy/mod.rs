//! The data plane: a real Envoy per proxy pod (every injected sidecar and every gateway
//! replica), started when its pod runs, stopped when the pod is gone, and served each
//! push of the stand-in istiod through its xDS endpoint ([`xds_server`]).
//!
//! What a proxy acked is what its Envoy says it applied: after a push at version `V`, a
//! type is acked once every subscription of that type (CDS, LDS, each route
//! configuration, each cluster's EDS, each secret) has asked again with `V`. A proxy is
//! ready (its `istio-proxy` container, through the kubelet's probe) once Envoy's
//! `/ready` says `LIVE`, as pilot-agent's `/healthz/ready` requires.

pub mod binary;
pub(crate) mod files;
pub(crate) mod process;
pub(crate) mod xds_server;

use crate::addresses::PodAddresses;
use crate::client;
use crate::objects::{Pod, ProxyKind};
use crate::world::World;
use crate::xds::{self, ProxyConfig};
use files::ProxyFiles;
use process::EnvoyProcess;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub(crate) const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub(crate) const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub(crate) const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub(crate) const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub(crate) const SDS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// How long Envoy may take to become `LIVE`.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How often Envoy's readiness and liveness are looked at.
const POLL: Duration = Duration::from_millis(20);

/// What was pushed last, and what Envoy has applied of it.
#[derive(Debug, Clone)]
pub(crate) struct Push {
    pub version: String,
    /// The version of the secrets (they follow SDS, not the push).
    pub sds_version: String,
    pub at: SystemTime,
    /// The config snapshot the push was built from (istiod's push context).
    pub world: Arc<World>,
    /// Type URL → acked (every subscription of the type asked again with this version).
    pub acked: BTreeMap<&'static str, bool>,
}

/// The config a proxy is served, at a version.
struct Served {
    version: String,
    sds_version: String,
    at: SystemTime,
    world: Arc<World>,
    config: Arc<ProxyConfig>,
}

/// What decides whether a proxy's config must be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushKey {
    pub version: String,
    pub credentials: u64,
    pub replica: usize,
}

/// One proxy: its Envoy, its folder, and what it is served.
pub(crate) struct Proxy {
    pub namespace: String,
    pub name: String,
    pub kind: ProxyKind,
    pub addresses: PodAddresses,
    pub node_id: String,
    pub files: ProxyFiles,
    _dir: tempfile::TempDir,
    process: Mutex<Option<EnvoyProcess>>,
    key: Mutex<Option<PushKey>>,
    served: Mutex<Option<Served>>,
    pushes: tokio::sync::watch::Sender<u64>,
    /// (type URL, resource name or "") → the version Envoy last said it applied.
    acks: Mutex<HashMap<(&'static str, String), String>>,
    ready: AtomicBool,
    failure: Mutex<Option<String>>,
    telemetry_offset: Mutex<u64>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("pod", &format!("{}/{}", self.namespace, self.name))
            .field("ready", &self.is_ready())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proxy {
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::new(self.addresses.local.into(), 15000)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    fn fail(&self, why: String) {
        self.ready.store(false, Ordering::SeqCst);
        let mut f = lock(&self.failure);
        if f.is_none() {
            *f = Some(why);
        }
    }

    /// The last push, with what Envoy has acked of it.
    pub fn push(&self) -> Option<Push> {
        let served = lock(&self.served);
        let served = served.as_ref()?;
        let acks = lock(&self.acks);
        let applied = |t: &'static str, name: &str| {
            acks.get(&(t, name.to_string())).map(String::as_str) == Some(served.version.as_str())
        };
        let c = &served.config;
        let mut acked = BTreeMap::new();
        acked.insert(CDS, applied(CDS, ""));
        acked.insert(LDS, applied(LDS, ""));
        acked.insert(RDS, c.route_configs.iter().all(|(n, _)| applied(RDS, n)));
        acked.insert(EDS, c.eds_clusters.iter().all(|n| applied(EDS, n)));
        if self.kind == ProxyKind::Gateway {
            let sds = |name: &str| {
                acks.get(&(SDS, name.to_string())).map(String::as_str)
                    == Some(served.sds_version.as_str())
            };
            acked.insert(SDS, c.secrets.iter().all(|(n, _)| sds(n)));
        }
        Some(Push {
            version: served.version.clone(),
            sds_version: served.sds_version.clone(),
            at: served.at,
            world: Arc::clone(&served.world),
            acked,
        })
    }

    /// Records what one of Envoy's subscriptions says it applied.
    pub fn record_ack(&self, type_url: &'static str, names: &[String], version: &str) {
        if version.is_empty() {
            return;
        }
        let mut acks = lock(&self.acks);
        if names.is_empty() {
            acks.insert((type_url, String::new()), version.to_string());
        }
        for n in names {
            acks.insert((type_url, n.clone()), version.to_string());
        }
    }

    /// A receiver that changes on every push.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.pushes.subscribe()
    }

    /// The version of `type_url` the proxy is served now.
    pub fn served_version(&self, type_url: &str) -> Option<String> {
        lock(&self.served).as_ref().map(|s| {
            if type_url == SDS {
                s.sds_version.clone()
            } else {
                s.version.clone()
            }
        })
    }

    /// The `DiscoveryResponse` for one subscription: every listener or cluster, or the
    /// named route configurations, load assignments or secrets.
    pub fn discovery_response(&self, type_url: &'static str, names: &[String]) -> Option<Value> {
        let served = lock(&self.served);
        let served = served.as_ref()?;
        let c = &served.config;
        let named = |list: &[(String, Value)]| -> Vec<Value> {
            list.iter()
                .filter(|(n, _)| names.contains(n))
                .map(|(_, v)| v.clone())
                .collect()
        };
        let resources = match type_url {
            LDS => c.listeners.clone(),
            CDS => c.clusters.clone(),
            RDS => named(&c.route_configs),
            EDS => named(&c.load_assignments),
            SDS => named(&c.secrets),
            _ => vec![],
        };
        let version = if type_url == SDS {
            &served.sds_version
        } else {
            &served.version
        };
        Some(serde_json::json!({
            "version_info": version,
            "resources": resources,
            "type_url": type_url,
        }))
    }

    /// What Envoy logged as rejected config (a stand-in bug when it happens).
    pub fn rejections(&self) -> Vec<String> {
        let (lines, _) = self.log_since(0);
        lines
            .into_iter()
            .filter(|l| l.contains(" rejected: ") && !l.contains("Missing SDS resources"))
            .collect()
    }

    /// Log lines from the `from`-th on, and the index after the last.
    pub fn log_since(&self, from: usize) -> (Vec<String>, usize) {
        match &*lock(&self.process) {
            Some(p) => lock(&p.log).since(from),
            None => (vec![], from),
        }
    }

    /// Whole lines Envoy appended to the telemetry log since the last call.
    pub fn new_telemetry_lines(&self) -> Vec<String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut offset = lock(&self.telemetry_offset);
        let Ok(mut file) = std::fs::File::open(self.files.telemetry_log()) else {
            return vec![];
        };
        if file.seek(SeekFrom::Start(*offset)).is_err() {
            return vec![];
        }
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            return vec![];
        }
        let Some(end) = text.rfind('\n') else {
            return vec![];
        };
        *offset += (end + 1) as u64;
        text[..end].lines().map(str::to_string).collect()
    }
}

/// Everything a push needs besides the proxy.
pub(crate) struct PushInputs<'a> {
    pub config: &'a Arc<World>,
    pub credentials: &'a World,
    pub pod: &'a Pod,
    pub ca: &'a crate::ca::CaSet,
    pub root_namespace: &'a str,
    pub trust_domain: &'a str,
    pub replica: usize,
}

fn credentials_hash(credentials: &World, namespace: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in credentials
        .secrets
        .iter()
        .filter(|s| s.namespace == namespace)
    {
        s.name.hash(&mut h);
        s.data.hash(&mut h);
    }
    h.finish()
}

/// Builds the proxy's config and serves it when its inputs changed since the last push.
fn push(proxy: &Proxy, i: &PushInputs<'_>) -> Result<(), String> {
    let key = PushKey {
        version: i.config.push_version.clone(),
        credentials: if proxy.kind == ProxyKind::Gateway {
            credentials_hash(i.credentials, &proxy.namespace)
        } else {
            0
        },
        replica: i.replica,
    };
    let mut last = lock(&proxy.key);
    if last.as_ref() == Some(&key) {
        return Ok(());
    }
    let faults = crate::faults::ConfigFaults::new(i.config.faults.clone());
    let ca =
        i.ca.for_revision(&i.pod.revision(), faults.revisions_do_not_share_a_root())?;
    let config = xds::build(&xds::BuildInputs {
        world: i.config,
        credentials: i.credentials,
        pod: i.pod,
        kind: proxy.kind,
        addresses: proxy.addresses,
        files: &proxy.files,
        faults: &faults,
        ca: &ca,
        root_namespace: i.root_namespace,
        trust_domain: i.trust_domain,
        replica: i.replica,
    })?;
    *lock(&proxy.served) = Some(Served {
        version: i.config.push_version.clone(),
        // Credentials follow SDS, not the config push: their own version.
        sds_version: format!("{}/sds-{:016x}", i.config.push_version, key.credentials),
        at: SystemTime::now(),
        world: Arc::clone(i.config),
        config: Arc::new(config),
    });
    proxy.pushes.send_modify(|n| *n += 1);
    *last = Some(key);
    Ok(())
}

async fn get_admin(proxy: &Proxy, path: &str) -> Option<client::Got> {
    client::get(
        proxy.admin(),
        "localhost",
        path,
        None,
        Duration::from_secs(2),
    )
    .await
    .ok()
}

/// Starts the proxy's Envoy, waits for it to be `LIVE`, then watches that it lives.
async fn run(proxy: Arc<Proxy>, binary: binary::EnvoyBinary, runtime: tokio::runtime::Handle) {
    match EnvoyProcess::start(&binary, &proxy.files.bootstrap(), &runtime) {
        Ok(p) => *lock(&proxy.process) = Some(p),
        Err(e) => return proxy.fail(e),
    }
    let started = Instant::now();
    loop {
        let exited = lock(&proxy.process).as_ref().and_then(EnvoyProcess::exited);
        if let Some(why) = exited {
            let tail = lock(&proxy.process)
                .as_ref()
                .map(|p| p.tail(80))
                .unwrap_or_default();
            return proxy.fail(format!(
                "Envoy of {}/{} exited ({why}) before it was LIVE:\n{tail}",
                proxy.namespace, proxy.name
            ));
        }
        if let Some(r) = get_admin(&proxy, "/ready").await
            && r.status == 200
            && r.body.trim() == "LIVE"
        {
            break;
        }
        if started.elapsed() > START_DEADLINE {
            let tail = lock(&proxy.process)
                .as_ref()
                .map(|p| p.tail(80))
                .unwrap_or_default();
            return proxy.fail(format!(
                "Envoy of {}/{} was not LIVE within {START_DEADLINE:?}:\n{tail}",
                proxy.namespace, proxy.name
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    proxy.ready.store(true, Ordering::SeqCst);
    loop {
        let exited = lock(&proxy.process).as_ref().and_then(EnvoyProcess::exited);
        if let Some(why) = exited {
            let tail = lock(&proxy.process)
                .as_ref()
                .map(|p| p.tail(40))
                .unwrap_or_default();
            return proxy.fail(format!(
                "Envoy of {}/{} exited ({why}):\n{tail}",
                proxy.namespace, proxy.name
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A proxy and the task that runs its Envoy.
type Running = (Arc<Proxy>, tokio::task::JoinHandle<()>);

/// Every proxy of the world, by pod uid.
#[derive(Default)]
pub(crate) struct Fleet {
    proxies: Mutex<HashMap<String, Running>>,
    /// Proxies of pods that are gone, kept until their drain ends.
    draining: Mutex<Vec<(Instant, Running)>>,
}

/// How long a proxy outlives its pod object: in a cluster the kubelet stops the pod's
/// containers only after its grace period, and pilot-agent drains Envoy
/// (`terminationDrainDuration`, 5 s by default) while peers still learn that the
/// endpoint is gone; killing Envoy the moment the object disappears would reset
/// connections a peer has not stopped using yet.
const DRAIN: Duration = Duration::from_secs(3);

impl Drop for Fleet {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Each gateway pod's place among the running pods of its workload, in name order.
fn replicas(world: &World) -> HashMap<String, usize> {
    let mut groups: BTreeMap<(String, String), Vec<&Pod>> = BTreeMap::new();
    for p in world
        .pods
        .iter()
        .filter(|p| p.live_proxy() == Some(ProxyKind::Gateway))
    {
        groups
            .entry((p.namespace.clone(), p.workload_name()))
            .or_default()
            .push(p);
    }
    let mut out = HashMap::new();
    for (_, mut pods) in groups {
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        for (i, p) in pods.iter().enumerate() {
            out.insert(p.uid.clone(), i);
        }
    }
    out
}

/// What the fleet needs from the mesh on every pass.
pub(crate) struct Pass<'a> {
    pub now: &'a World,
    pub config: &'a Arc<World>,
    pub credentials: &'a World,
    pub ca: &'a crate::ca::CaSet,
    pub root_namespace: &'a str,
    pub trust_domain: &'a str,
    pub runtime: &'a tokio::runtime::Handle,
    /// The stand-in istiod's xDS endpoint.
    pub xds: SocketAddr,
}

impl Fleet {
    /// Stops every proxy.
    pub fn clear(&self) {
        for (_, (_, task)) in lock(&self.proxies).drain() {
            task.abort();
        }
        for (_, (_, task)) in lock(&self.draining).drain(..) {
            task.abort();
        }
    }

    pub fn by_node(&self, node_id: &str) -> Option<Arc<Proxy>> {
        lock(&self.proxies)
            .values()
            .find(|(p, _)| p.node_id == node_id)
            .map(|(p, _)| Arc::clone(p))
    }

    pub fn get(&self, uid: &str) -> Option<Arc<Proxy>> {
        lock(&self.proxies).get(uid).map(|(p, _)| Arc::clone(p))
    }

    pub fn all(&self) -> Vec<Arc<Proxy>> {
        lock(&self.proxies)
            .values()
            .map(|(p, _)| Arc::clone(p))
            .collect()
    }

    /// Starts proxies for pods that now run one, pushes config to every proxy whose
    /// inputs changed, and stops the proxies of pods that are gone.
    pub fn reconcile(&self, pass: &Pass<'_>) {
        let replicas = replicas(pass.now);
        let mut proxies = lock(&self.proxies);
        let gone: Vec<String> = proxies
            .keys()
            .filter(|uid| {
                pass.now
                    .pod_by_uid(uid)
                    .is_none_or(|p| p.live_proxy().is_none())
            })
            .cloned()
            .collect();
        let mut draining = lock(&self.draining);
        for uid in gone {
            if let Some(running) = proxies.remove(&uid) {
                draining.push((Instant::now() + DRAIN, running));
            }
        }
        draining.retain(|(until, (_, task))| {
            let keep = Instant::now() < *until;
            if !keep {
                task.abort();
            }
            keep
        });
        drop(draining);
        for pod in pass.now.pods.iter() {
            let Some(kind) = pod.live_proxy() else {
                continue;
            };
            // Config comes from istiod's view; the pod may not be in it yet.
            let view_pod = pass.config.pod_by_uid(&pod.uid).unwrap_or(pod);
            let inputs = PushInputs {
                config: pass.config,
                credentials: pass.credentials,
                pod: view_pod,
                ca: pass.ca,
                root_namespace: pass.root_namespace,
                trust_domain: pass.trust_domain,
                replica: replicas.get(&pod.uid).copied().unwrap_or(0),
            };
            if let Some((proxy, _)) = proxies.get(&pod.uid) {
                if proxy.failure().is_none()
                    && let Err(e) = push(proxy, &inputs)
                {
                    proxy.fail(e);
                }
                continue;
            }
            let Some(started) = start(pod, kind, &inputs, pass) else {
                continue;
            };
            proxies.insert(pod.uid.clone(), started);
        }
    }
}

/// A new proxy for `pod`: its folder and bootstrap written, its first config served,
/// its Envoy started in the background.
fn start(pod: &Pod, kind: ProxyKind, inputs: &PushInputs<'_>, pass: &Pass<'_>) -> Option<Running> {
    let runtime = pass.runtime;
    let ip = pod.ip.as_deref()?;
    let addresses = PodAddresses::of(ip)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("envoy-{}-", pod.name))
        .tempdir()
        .ok()?;
    let files = ProxyFiles::new(dir.path());
    let proxy = Arc::new(Proxy {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        kind,
        addresses,
        node_id: xds::node_id(kind, ip, &pod.name, &pod.namespace),
        files,
        _dir: dir,
        process: Mutex::new(None),
        key: Mutex::new(None),
        served: Mutex::new(None),
        pushes: tokio::sync::watch::channel(0).0,
        acks: Mutex::new(HashMap::new()),
        ready: AtomicBool::new(false),
        failure: Mutex::new(None),
        telemetry_offset: Mutex::new(0),
    });
    let binary = match binary::envoy() {
        Ok(b) => b,
        Err(e) => {
            proxy.fail(e);
            return Some((proxy, runtime.spawn(async {})));
        }
    };
    let bootstrap = xds::bootstrap(kind, pod, addresses, pass.xds);
    let prepared =
        push(&proxy, inputs).and_then(|()| files::write(&proxy.files.bootstrap(), &bootstrap));
    if let Err(e) = prepared {
        proxy.fail(e);
        return Some((proxy, runtime.spawn(async {})));
    }
    let task = runtime.spawn(run(Arc::clone(&proxy), binary, runtime.clone()));
    Some((proxy, task))
}
