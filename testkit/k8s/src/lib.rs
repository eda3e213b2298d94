//! A stateful fake Kubernetes API server on loopback, for tests that drive real `kube`
//! clients (and a CLI built on them) against something that behaves like Kubernetes:
//! objects are stored and versioned, Deployments roll out through ReplicaSets and pods,
//! pods go Pending → Running → Ready and terminate gracefully, EndpointSlices follow the
//! pods with a lag, namespaces terminate, server-side apply merges and prunes, and
//! port-forwards speak kube's websocket channel protocol to wherever a hook says.
//!
//! ```ignore
//! let cluster = FakeCluster::start(Options::default()).await;
//! let client = cluster.client();
//! // ... drive `client` (or a kubeconfig from `write_kubeconfig`) as against a cluster
//! cluster.wait_for("pods ready", Duration::from_secs(5), |c| c.list("", "Pod", Some("ns")).len() == 2).await?;
//! ```
//!
//! Hooks (pod admission, port-forward targets) are never called with the store locked,
//! so they may call [`FakeCluster::list`] and [`FakeCluster::get`].
//!
//! Where the fake knowingly differs from a real API server:
//! - no watches (`watch=true` is 405) and no `limit`/`continue` paging (all items come
//!   back); `dryRun` is refused with 400 rather than silently persisted;
//! - no authentication or authorization (use [`FakeCluster::fault`] for 401/403);
//! - `managedFields` list the server-side apply managers only (manager and operation,
//!   no field sets); apply conflicts are detected between apply managers only (not
//!   against fields set by plain updates);
//! - DaemonSets and StatefulSets are stored but have no controller; ReplicaSets do not
//!   adopt orphan pods; one node (`kind-control-plane`), everything schedules on it;
//! - pod logs are `fake log of <pod>/<container>` plus [`FakeCluster::append_pod_log`]
//!   text; `follow` does not stream;
//! - port-forward is websocket only (`v4.channel.k8s.io`), no SPDY; no exec/attach.

mod cluster;
mod controllers;
mod defaults;
mod discovery;
mod errors;
mod faults;
mod kinds;
mod kubeconfig;
mod logs;
mod meta;
mod names;
mod patch;
mod portforward;
mod selectors;
mod server;
mod store;
mod time;
mod tls;

pub use faults::ApiFault;
pub use portforward::{Upstream, connection_refused_message};
pub use server::RequestRecord;

use cluster::Shared;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{DeleteOptions, Write};

/// Timing and shape of the fake cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// What `/version` reports (`gitVersion` `v{major}.{minor}.0`).
    pub kubernetes_version: (u32, u32),
    /// Pod created → containers started, Running and (normally) Ready.
    pub pod_ready_after: Duration,
    /// deletionTimestamp set → pod object gone (Ready turns False halfway).
    pub pod_terminate_after: Duration,
    /// Pod change → reflected in EndpointSlices and Endpoints.
    pub endpoints_lag: Duration,
    /// Terminating namespace empty → namespace object gone.
    pub namespace_finalize_after: Duration,
    /// The controllers' reconcile period.
    pub controller_tick: Duration,
    /// How long one second of a Deployment's `spec.progressDeadlineSeconds` lasts, so
    /// ProgressDeadlineExceeded can be tested without waiting minutes.
    pub progress_deadline_unit: Duration,
    /// Serve the Istio kinds from the start, as if their CRDs were installed. When
    /// false they are served only once CRDs for them are stored (and established),
    /// like a real cluster before `istioctl install`.
    pub istio_kinds_preinstalled: bool,
    /// The first two octets of pod IPs: `10.244` (kind's pod CIDR) by default; a
    /// `127.x` prefix gives every pod a loopback address processes can bind.
    pub pod_ip_prefix: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            kubernetes_version: (1, 34),
            pod_ready_after: Duration::from_millis(60),
            pod_terminate_after: Duration::from_millis(150),
            endpoints_lag: Duration::from_millis(40),
            namespace_finalize_after: Duration::from_millis(100),
            controller_tick: Duration::from_millis(10),
            progress_deadline_unit: Duration::from_secs(1),
            istio_kinds_preinstalled: true,
            pod_ip_prefix: "10.244".into(),
        }
    }
}

/// Called on every pod being created (by POST, apply, or a ReplicaSet), before it is
/// stored, with the pod and its Namespace object — the stand-in for mutating admission
/// webhooks such as Istio's sidecar injector. As with a real webhook, a ReplicaSet's
/// pod has `metadata.generateName` but no name and no uid yet; `metadata.namespace` is
/// set. Defaulting has already run.
pub type PodAdmission = Arc<dyn Fn(&mut Value, &Value) + Send + Sync>;

/// The kubelet's readiness probe of one running container: `(pod, container name)` →
/// `Some(ready)`, or `None` to keep the fake's own timing. Called on every kubelet pass
/// with the store locked: it must answer from its own state and never call the cluster.
pub type ReadinessProbe = Arc<dyn Fn(&Value, &str) -> Option<bool> + Send + Sync>;

/// Where a port-forward to (pod, pod port) lands.
pub type PortForwardHook = Arc<dyn Fn(&Value, u16) -> Upstream + Send + Sync>;

/// How a container image behaves on the fake node (chosen by image substring when a pod
/// is created; the latest matching registration wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageBehaviour {
    /// Pulls and starts; ready after `pod_ready_after`.
    Pullable,
    /// `ErrImagePull`, then `ImagePullBackOff`; the pod stays Pending and never Ready.
    Unpullable,
    /// Starts and exits 1 over and over: `CrashLoopBackOff` with a growing restart
    /// count; the pod is Running but never Ready.
    CrashLoop,
    /// Starts after `pod_ready_after` but is Ready only this long after pod creation.
    StartsAfter(Duration),
}

/// Stops the server and controllers when the last handle is dropped.
struct Lifeline(Arc<Shared>);

impl Drop for Lifeline {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// A running fake cluster. Cheap to clone; the server and controllers stop when the
/// last clone is dropped (or on [`FakeCluster::shutdown`]).
#[derive(Clone)]
pub struct FakeCluster {
    shared: Arc<Shared>,
    url: String,
    /// PEM of the certificates a client must trust (TLS mode only).
    ca_pem: Option<String>,
    _life: Arc<Lifeline>,
}

impl FakeCluster {
    /// Binds 127.0.0.1:0 and spawns the HTTP server and the controllers on the current
    /// tokio runtime.
    pub async fn start(options: Options) -> FakeCluster {
        Self::launch(options, None)
            .await
            .unwrap_or_else(|e| panic!("the fake API server cannot start: {e}"))
    }

    /// Like [`FakeCluster::start`], serving HTTPS with this certificate chain (PEM,
    /// leaf first; it should name IP 127.0.0.1) and private key. The chain is also what
    /// [`FakeCluster::client`] and [`FakeCluster::write_kubeconfig`] trust, so include
    /// the CA in it (or pass the CA to [`FakeCluster::write_kubeconfig_with_ca`]).
    pub async fn start_tls(
        options: Options,
        server_cert_pem: &str,
        server_key_pem: &str,
    ) -> Result<FakeCluster, String> {
        let acceptor = tls::acceptor(server_cert_pem, server_key_pem)?;
        let mut cluster = Self::launch(options, Some(acceptor)).await?;
        cluster.ca_pem = Some(server_cert_pem.to_string());
        Ok(cluster)
    }

    async fn launch(
        options: Options,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Result<FakeCluster, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared::new(options, addr.to_string()));
        tokio::spawn(server::serve(shared.clone(), listener, tls));
        tokio::spawn(controllers::run(shared.clone()));
        Ok(FakeCluster {
            url: format!("{scheme}://{addr}"),
            ca_pem: None,
            _life: Arc::new(Lifeline(shared.clone())),
            shared,
        })
    }

    /// `http://127.0.0.1:PORT` (or `https://` in TLS mode).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Stops serving and reconciling (also happens when the last handle is dropped).
    pub fn shutdown(&self) {
        self.shared.stop();
    }

    /// Writes a kubeconfig (cluster, user with a bearer token, context `context` as the
    /// current context) pointing at [`FakeCluster::url`].
    pub fn write_kubeconfig(&self, path: &Path, context: &str) -> std::io::Result<()> {
        kubeconfig::write(path, context, &self.url, self.ca_pem.as_deref())
    }

    /// Like [`FakeCluster::write_kubeconfig`] with this CA (PEM) as the cluster's
    /// `certificate-authority-data` (e.g. a CA that did not sign the server's
    /// certificate).
    pub fn write_kubeconfig_with_ca(
        &self,
        path: &Path,
        context: &str,
        ca_pem: &str,
    ) -> std::io::Result<()> {
        kubeconfig::write(path, context, &self.url, Some(ca_pem))
    }

    /// A kube client for [`FakeCluster::url`] (installs rustls' ring provider if no
    /// process-wide provider is installed yet).
    pub fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let uri = self
            .url
            .parse()
            .unwrap_or_else(|e| panic!("the fake's own URL {} does not parse: {e}", self.url));
        let mut config = kube::Config::new(uri);
        if let Some(pem) = &self.ca_pem {
            config.root_cert = Some(tls::certificates_der(pem));
        }
        kube::Client::try_from(config)
            .unwrap_or_else(|e| panic!("cannot build a client for the fake: {e}"))
    }

    fn resolve(&self, group: &str, kind: &str) -> Option<Arc<kinds::KindInfo>> {
        self.shared.lock().kinds().lookup(group, kind)
    }

    /// Objects of a kind (Kind, plural, singular or short name; group "" is core), in
    /// one namespace or all, as stored (apiVersion of the preferred version, metadata
    /// filled in). Unknown kinds give an empty list.
    pub fn list(&self, group: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let Some(info) = self.resolve(group, kind) else {
            return Vec::new();
        };
        self.shared
            .lock()
            .list(&info, namespace)
            .into_iter()
            .cloned()
            .collect()
    }

    /// One object, as stored.
    pub fn get(
        &self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let info = self.resolve(group, kind)?;
        self.shared
            .lock()
            .get(&info, namespace.unwrap_or_default(), name)
            .cloned()
    }

    fn kind_of(&self, object: &Value) -> Result<Arc<kinds::KindInfo>, String> {
        let api_version = object["apiVersion"]
            .as_str()
            .ok_or("the object has no apiVersion")?;
        let kind = object["kind"].as_str().ok_or("the object has no kind")?;
        let (group, version) = kinds::split_api_version(api_version);
        self.shared
            .lock()
            .kinds()
            .by_kind(group, version, kind)
            .ok_or_else(|| format!("no kind {kind} is served at {api_version}"))
    }

    fn namespace_of(info: &kinds::KindInfo, object: &Value) -> String {
        match meta::namespace(object) {
            "" if info.namespaced => "default".to_string(),
            ns => ns.to_string(),
        }
    }

    /// Creates an object as POST would (pod admission runs); a namespaced object
    /// without `metadata.namespace` goes to `default`. Errors are the Status message.
    pub fn create(&self, object: Value) -> Result<Value, String> {
        let info = self.kind_of(&object)?;
        let ns = Self::namespace_of(&info, &object);
        self.shared
            .create(&info, &ns, object)
            .map_err(|e| e.message)
    }

    /// Server-side apply under field manager `testkit`, forced: creates the object or
    /// merges into it, dropping fields `testkit` applied before and no longer applies.
    pub fn apply(&self, object: Value) -> Result<Value, String> {
        let info = self.kind_of(&object)?;
        let ns = Self::namespace_of(&info, &object);
        let name = meta::name(&object).to_string();
        if name.is_empty() {
            return Err("metadata.name is required for apply".into());
        }
        let target = cluster::ApplyTarget {
            info: &info,
            version: "",
            namespace: &ns,
            name: &name,
        };
        self.shared
            .apply(&target, object, "testkit", true)
            .map(|(o, _)| o)
            .map_err(|e| e.message)
    }

    /// Deletes like `DELETE` with background propagation and the default grace period
    /// (pods terminate gracefully, namespaces terminate, finalizers hold objects).
    /// Missing objects are ignored.
    pub fn delete(&self, group: &str, kind: &str, namespace: Option<&str>, name: &str) {
        if let Some(info) = self.resolve(group, kind) {
            let _ = self.shared.lock().delete(
                &info,
                namespace.unwrap_or_default(),
                name,
                &DeleteOptions::default(),
            );
        }
    }

    /// Changes an object in place (any field, status included; no validation), as a
    /// controller would. `f` runs without the store lock held. Missing objects are
    /// ignored.
    pub fn update(
        &self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) {
        let Some(info) = self.resolve(group, kind) else {
            return;
        };
        let ns = namespace.unwrap_or_default();
        let Some(mut obj) = self.shared.lock().get(&info, ns, name).cloned() else {
            return;
        };
        f(&mut obj);
        let mut store = self.shared.lock();
        if store.get(&info, ns, name).is_some() {
            let _ = store.replace(&info, ns, name, obj, Write::Internal);
        }
    }

    /// Appends text to what `pods/{name}/log` returns for a container.
    pub fn append_pod_log(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        let mut store = self.shared.lock();
        let entry = store
            .logs
            .entry((
                namespace.to_string(),
                pod.to_string(),
                container.to_string(),
            ))
            .or_default();
        entry.push_str(text);
        if !entry.ends_with('\n') {
            entry.push('\n');
        }
    }

    pub fn set_pod_admission(&self, hook: PodAdmission) {
        self.shared.set_admission(hook);
    }

    pub fn set_port_forward(&self, hook: PortForwardHook) {
        self.shared.set_port_forward(hook);
    }

    /// Running containers are ready only when `probe` says so (where it answers).
    pub fn set_readiness_probe(&self, probe: ReadinessProbe) {
        self.shared.lock().readiness = Some(probe);
    }

    /// How containers whose image contains `image_substring` behave, for pods created
    /// from now on.
    pub fn set_image_behaviour(&self, image_substring: &str, behaviour: ImageBehaviour) {
        self.shared
            .lock()
            .images
            .push((image_substring.to_string(), behaviour));
    }

    /// Requests with `method` (any when None) whose path starts with `path_prefix` get
    /// `fault`, `times` times (None: until cleared). Earlier registrations match first.
    pub fn fault(
        &self,
        method: Option<&str>,
        path_prefix: &str,
        fault: ApiFault,
        times: Option<usize>,
    ) {
        cluster::lock(&self.shared.faults).add(method, path_prefix, fault, times);
    }

    pub fn clear_faults(&self) {
        cluster::lock(&self.shared.faults).clear();
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        cluster::lock(&self.shared.requests).clone()
    }

    /// Polls `f` every 5 ms until it holds; Err naming `what` after `deadline`.
    pub async fn wait_for(
        &self,
        what: &str,
        deadline: Duration,
        f: impl Fn(&FakeCluster) -> bool,
    ) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if f(self) {
                return Ok(());
            }
            if started.elapsed() >= deadline {
                return Err(format!("timed out after {deadline:?} waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
