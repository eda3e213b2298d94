//! The data plane: a real Envoy per proxy pod (every injected sidecar and every gateway
//! replica), started when its pod runs, stopped when the pod is gone, sent each push
//! of the stand-in istiod as files, and watched for what it applied.
//!
//! What a proxy acked is read back from Envoy itself: after a push at version `V`,
//! a type is acked once Envoy's `version_text` stats for it (CDS, LDS, each route
//! configuration, each cluster's EDS, each secret) all read `V`; a rejected update
//! (`update_rejected`) is recorded as istiod records a NACK. A proxy is ready (its
//! `istio-proxy` container, through the kubelet's probe) once Envoy's `/ready` says
//! `LIVE`, as pilot-agent's `/healthz/ready` requires.

pub mod binary;
pub(crate) mod files;
pub(crate) mod process;

use crate::addresses::PodAddresses;
use crate::client;
use crate::objects::{Pod, ProxyKind};
use crate::world::World;
use crate::xds::{self, ProxyConfig};
use files::{ConfigFiles, discovery_response};
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
/// How often a pending push's acks are looked for.
const ACK_POLL: Duration = Duration::from_millis(20);

/// What was pushed last, and what Envoy has applied of it.
#[derive(Debug, Clone)]
pub(crate) struct Push {
    pub version: String,
    pub at: SystemTime,
    /// The config snapshot the push was built from (istiod's push context).
    pub world: Arc<World>,
    route_configs: Vec<String>,
    eds_clusters: Vec<String>,
    secrets: Vec<String>,
    /// Type URL → acked (Envoy reports this push's version for all of the type).
    pub acked: BTreeMap<&'static str, bool>,
    /// Type URL → why Envoy rejected the update.
    pub rejected: BTreeMap<&'static str, String>,
    rejected_before: BTreeMap<String, u64>,
}

/// What decides whether a proxy's config must be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushKey {
    pub version: String,
    pub credentials: u64,
    pub faults: u64,
    pub replica: usize,
}

/// One proxy: its Envoy, its files, and its pushes.
pub(crate) struct Proxy {
    pub namespace: String,
    pub name: String,
    pub kind: ProxyKind,
    pub addresses: PodAddresses,
    pub files: ConfigFiles,
    _dir: tempfile::TempDir,
    process: Mutex<Option<EnvoyProcess>>,
    key: Mutex<Option<PushKey>>,
    push: Mutex<Option<Push>>,
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

    /// The last push, if any.
    pub fn push(&self) -> Option<Push> {
        lock(&self.push).clone()
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

    /// Writes `config` at `version`: secrets, endpoints and routes first, then clusters
    /// and listeners, so nothing names a file that is not there yet.
    fn write(&self, version: &str, config: &ProxyConfig) -> Result<(), String> {
        let f = &self.files;
        for (name, secret) in &config.secrets {
            files::replace(&f.sds(name), &discovery_response(version, vec![secret.clone()]))?;
        }
        for (cluster, cla) in &config.load_assignments {
            files::replace(&f.eds(cluster), &discovery_response(version, vec![cla.clone()]))?;
        }
        for (name, rc) in &config.route_configs {
            files::replace(&f.rds(name), &discovery_response(version, vec![rc.clone()]))?;
        }
        files::replace(&f.cds(), &discovery_response(version, config.clusters.clone()))?;
        files::replace(&f.lds(), &discovery_response(version, config.listeners.clone()))?;
        Ok(())
    }
}

/// Everything a push needs besides the proxy.
pub(crate) struct PushInputs<'a> {
    pub config: &'a Arc<World>,
    pub credentials: &'a World,
    pub pod: &'a Pod,
    pub faults: &'a crate::faults::Faults,
    pub ca: &'a crate::ca::MeshCa,
    pub root_namespace: &'a str,
    pub trust_domain: &'a str,
    pub replica: usize,
}

fn credentials_hash(credentials: &World, namespace: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in credentials.secrets.iter().filter(|s| s.namespace == namespace) {
        s.name.hash(&mut h);
        s.data.hash(&mut h);
    }
    h.finish()
}

/// Builds and writes the proxy's config when its inputs changed since the last push.
fn push(proxy: &Proxy, i: &PushInputs<'_>) -> Result<(), String> {
    let key = PushKey {
        version: i.config.push_version.clone(),
        credentials: if proxy.kind == ProxyKind::Gateway {
            credentials_hash(i.credentials, &proxy.namespace)
        } else {
            0
        },
        faults: i.faults.generation(),
        replica: i.replica,
    };
    let mut last = lock(&proxy.key);
    if last.as_ref() == Some(&key) {
        return Ok(());
    }
    let faults = crate::faults::ConfigFaults::new(i.faults.snapshot());
    let config = xds::build(&xds::BuildInputs {
        world: i.config,
        credentials: i.credentials,
        pod: i.pod,
        kind: proxy.kind,
        addresses: proxy.addresses,
        files: &proxy.files,
        faults: &faults,
        ca: i.ca,
        root_namespace: i.root_namespace,
        trust_domain: i.trust_domain,
        replica: i.replica,
    })?;
    // A new version per write, so each write's acks can be told apart.
    let version = i.config.push_version.clone();
    proxy.write(&version, &config)?;
    let cds_eds: Vec<String> = config
        .load_assignments
        .iter()
        .map(|(c, _)| c.clone())
        .filter(|c| {
            config.clusters.iter().any(|cl| {
                cl.get("name").and_then(Value::as_str) == Some(c)
                    && cl.pointer("/eds_cluster_config/eds_config/path_config_source").is_some()
            })
        })
        .collect();
    let mut acked = BTreeMap::new();
    for t in [CDS, EDS, LDS, RDS] {
        acked.insert(t, false);
    }
    if proxy.kind == ProxyKind::Gateway {
        acked.insert(SDS, false);
    }
    let rejected_before = lock(&proxy.push)
        .as_ref()
        .map(|p| p.rejected_before.clone())
        .unwrap_or_default();
    *lock(&proxy.push) = Some(Push {
        version,
        at: SystemTime::now(),
        world: Arc::clone(i.config),
        route_configs: config.route_configs.iter().map(|(n, _)| n.clone()).collect(),
        eds_clusters: cds_eds,
        secrets: config.secrets.iter().map(|(n, _)| n.clone()).collect(),
        acked,
        rejected: BTreeMap::new(),
        rejected_before,
    });
    *last = Some(key);
    Ok(())
}

/// Envoy's `/stats` text readouts and counters, by name.
fn parse_stats(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

/// Marks what Envoy now reports for the last push.
fn record_acks(push: &mut Push, stats: &HashMap<String, String>) {
    let v = push.version.clone();
    let is = |name: &str| stats.get(name).map(String::as_str) == Some(v.as_str());
    let cds = is("cluster_manager.cds.version_text");
    let lds = is("listener_manager.lds.version_text");
    let rds = push.route_configs.iter().all(|r| {
        stats
            .iter()
            .any(|(k, val)| k.starts_with("http.") && k.ends_with(&format!(".rds.{r}.version_text")) && *val == v)
    });
    let eds = push
        .eds_clusters
        .iter()
        .all(|c| is(&format!("cluster.{c}.version_text")));
    let sds = push
        .secrets
        .iter()
        .all(|s| is(&format!("sds.{s}.version_text")));
    for (t, ok) in [(CDS, cds), (LDS, lds), (RDS, rds), (EDS, eds), (SDS, sds)] {
        if let Some(a) = push.acked.get_mut(t) {
            *a |= ok;
        }
    }
    for (t, counter) in [
        (CDS, "cluster_manager.cds.update_rejected"),
        (LDS, "listener_manager.lds.update_rejected"),
    ] {
        let now: u64 = stats.get(counter).and_then(|n| n.parse().ok()).unwrap_or(0);
        let before = push.rejected_before.get(counter).copied().unwrap_or(0);
        if now > before {
            push.rejected.insert(
                t,
                format!("Envoy rejected the update ({counter} rose from {before} to {now}; its log says why)"),
            );
            push.rejected_before.insert(counter.to_string(), now);
        }
    }
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

/// Starts the proxy's Envoy, waits for it to be `LIVE`, then follows its acks for as
/// long as the proxy lives.
async fn run(proxy: Arc<Proxy>, binary: binary::EnvoyBinary, runtime: tokio::runtime::Handle) {
    match EnvoyProcess::start(&binary, &proxy.files.bootstrap(), &runtime) {
        Ok(p) => *lock(&proxy.process) = Some(p),
        Err(e) => return proxy.fail(e),
    }
    let started = Instant::now();
    loop {
        if let Some(why) = lock(&proxy.process).as_ref().and_then(EnvoyProcess::exited) {
            let tail = lock(&proxy.process)
                .as_ref()
                .map(|p| p.tail(20))
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
                .map(|p| p.tail(20))
                .unwrap_or_default();
            return proxy.fail(format!(
                "Envoy of {}/{} was not LIVE within {START_DEADLINE:?}:\n{tail}",
                proxy.namespace, proxy.name
            ));
        }
        tokio::time::sleep(ACK_POLL).await;
    }
    proxy.ready.store(true, Ordering::SeqCst);
    loop {
        let pending = lock(&proxy.push)
            .as_ref()
            .is_some_and(|p| p.acked.values().any(|a| !a));
        if pending
            && let Some(r) = get_admin(&proxy, "/stats?filter=(version_text|update_rejected)$").await
        {
            let stats = parse_stats(&r.body);
            if let Some(p) = lock(&proxy.push).as_mut() {
                record_acks(p, &stats);
            }
        }
        if let Some(why) = lock(&proxy.process).as_ref().and_then(EnvoyProcess::exited) {
            return proxy.fail(format!("Envoy of {}/{} exited ({why})", proxy.namespace, proxy.name));
        }
        tokio::time::sleep(ACK_POLL).await;
    }
}

/// Every proxy of the world, by pod uid.
#[derive(Default)]
pub(crate) struct Fleet {
    proxies: Mutex<HashMap<String, (Arc<Proxy>, tokio::task::JoinHandle<()>)>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let map = self.proxies.get_mut().unwrap_or_else(|p| p.into_inner());
        for (_, (_, task)) in map.drain() {
            task.abort();
        }
    }
}

/// Each gateway pod's place among the running pods of its workload, in name order.
fn replicas(world: &World) -> HashMap<String, usize> {
    let mut groups: BTreeMap<(String, String), Vec<&Pod>> = BTreeMap::new();
    for p in world.pods.iter().filter(|p| p.live_proxy() == Some(ProxyKind::Gateway)) {
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
    pub faults: &'a crate::faults::Faults,
    pub ca: &'a crate::ca::MeshCa,
    pub root_namespace: &'a str,
    pub trust_domain: &'a str,
    pub runtime: &'a tokio::runtime::Handle,
}

impl Fleet {
    /// Stops every proxy.
    pub fn clear(&self) {
        for (_, (_, task)) in lock(&self.proxies).drain() {
            task.abort();
        }
    }

    pub fn get(&self, uid: &str) -> Option<Arc<Proxy>> {
        lock(&self.proxies).get(uid).map(|(p, _)| Arc::clone(p))
    }

    pub fn all(&self) -> Vec<Arc<Proxy>> {
        lock(&self.proxies).values().map(|(p, _)| Arc::clone(p)).collect()
    }

    /// Starts proxies for pods that now run one, pushes config to every proxy whose
    /// inputs changed, and stops the proxies of pods that are gone.
    pub fn reconcile(&self, pass: &Pass<'_>) {
        let replicas = replicas(pass.now);
        let mut proxies = lock(&self.proxies);
        proxies.retain(|uid, (_, task)| {
            let keep = pass
                .now
                .pod_by_uid(uid)
                .is_some_and(|p| p.live_proxy().is_some());
            if !keep {
                task.abort();
            }
            keep
        });
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
                faults: pass.faults,
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
            let Some(started) = start(pod, kind, &inputs, pass.runtime) else {
                continue;
            };
            proxies.insert(pod.uid.clone(), started);
        }
    }
}

/// A new proxy for `pod`: its folder, first config and bootstrap written, its Envoy
/// started in the background.
fn start(
    pod: &Pod,
    kind: ProxyKind,
    inputs: &PushInputs<'_>,
    runtime: &tokio::runtime::Handle,
) -> Option<(Arc<Proxy>, tokio::task::JoinHandle<()>)> {
    let ip = pod.ip.as_deref()?;
    let addresses = PodAddresses::of(ip)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("envoy-{}-", pod.name))
        .tempdir()
        .ok()?;
    let files = ConfigFiles::new(dir.path());
    let proxy = Arc::new(Proxy {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        kind,
        addresses,
        files,
        _dir: dir,
        process: Mutex::new(None),
        key: Mutex::new(None),
        push: Mutex::new(None),
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
    let bootstrap = xds::bootstrap(kind, pod, addresses, &proxy.files);
    let prepared = push(&proxy, inputs)
        .and_then(|()| files::replace(&proxy.files.bootstrap(), &bootstrap));
    if let Err(e) = prepared {
        proxy.fail(e);
        return Some((proxy, runtime.spawn(async {})));
    }
    let task = runtime.spawn(run(Arc::clone(&proxy), binary, runtime.clone()));
    Some((proxy, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_need_every_resource_of_a_type_at_the_pushed_version() {
        let mut p = Push {
            version: "V2".into(),
            at: SystemTime::now(),
            world: Arc::new(World::empty()),
            route_configs: vec!["5000".into()],
            eds_clusters: vec!["outbound|5000||a.s.svc.cluster.local".into(), "outbound|5000||b.s.svc.cluster.local".into()],
            secrets: vec![],
            acked: [CDS, EDS, LDS, RDS].into_iter().map(|t| (t, false)).collect(),
            rejected: BTreeMap::new(),
            rejected_before: BTreeMap::new(),
        };
        let stats = parse_stats(
            "cluster_manager.cds.version_text: \"V2\"\nlistener_manager.lds.version_text: \"V1\"\n\
             http.outbound_0.0.0.0_5000.rds.5000.version_text: \"V2\"\n\
             cluster.outbound|5000||a.s.svc.cluster.local.version_text: \"V2\"\n\
             cluster.outbound|5000||b.s.svc.cluster.local.version_text: \"V1\"\n\
             cluster_manager.cds.update_rejected: 1\n",
        );
        record_acks(&mut p, &stats);
        assert_eq!(p.acked[CDS], true);
        assert_eq!(p.acked[LDS], false);
        assert_eq!(p.acked[RDS], true);
        assert_eq!(p.acked[EDS], false, "one cluster's endpoints are behind");
        assert!(p.rejected[CDS].contains("rose from 0 to 1"));
    }

    #[test]
    fn the_first_push_of_a_world_waits_for_all_types() {
        let s = parse_stats("a.b: 3\nc.version_text: \"x/1\"\n");
        assert_eq!(s["a.b"], "3");
        assert_eq!(s["c.version_text"], "x/1");
    }
}
