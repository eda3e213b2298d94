//! Port-forwarding through the API server (works on kind and on any cluster): a local
//! listener on an ephemeral port; each accepted connection opens a forward to a ready
//! pod chosen at that moment, so a restarted or replaced pod is picked up by itself.
//! Towards the ingress gateway, connections go to its ready replicas in turn, so every
//! replica serves some of the traffic; towards Prometheus, always to the first (each
//! replica has its own data). A check that must see every replica answer (the TLS
//! checks interleave two clients, which taking turns would split between the replicas)
//! opens one forward pinned to each ready replica ([`each_ready`]).
//!
//! The local connection is accepted before the forward exists, so a forward that cannot
//! be opened (no ready pod, the API server refuses, the pod's port is closed) or that
//! breaks can only show to the client as an EOF or a reset, exactly like a server that
//! resets. Every such failure is therefore recorded in the forward's [`PathHealth`]:
//! probes read it around each request and report "not reached" instead of a verdict.

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Failures of the harness's own path to a target, counted so a probe can tell
/// whether one happened while its request was under way.
#[derive(Debug, Default)]
pub struct PathHealth {
    inner: Mutex<(u64, String)>,
}

impl PathHealth {
    pub fn failures(&self) -> u64 {
        self.lock().0
    }

    /// The last failure's cause.
    pub fn last(&self) -> String {
        self.lock().1.clone()
    }

    pub fn record(&self, cause: String) {
        tracing::debug!("path failure: {cause}");
        let mut inner = self.lock();
        inner.0 += 1;
        inner.1 = cause;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, String)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running forward; dropping it stops listening.
pub struct Forward {
    pub local: SocketAddr,
    pub description: String,
    pub health: Arc<PathHealth>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The names of the ready pods matching `selector`, sorted, or why there is none.
pub async fn ready_pods(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<String>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot list pods `{selector}` in {namespace}: {e}")
        })?;
    let mut ready: Vec<String> = list
        .items
        .iter()
        .filter(|p| is_ready(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    if ready.is_empty() {
        return Err(format!("no ready pod `{selector}` in {namespace}"));
    }
    ready.sort();
    Ok(ready)
}

/// The name of a ready pod matching `selector`, or why there is none.
pub async fn ready_pod(client: &Client, namespace: &str, selector: &str) -> Result<String, String> {
    let mut ready = ready_pods(client, namespace, selector).await?;
    Ok(ready.swap_remove(0))
}

/// Which ready pod a new connection goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pick {
    /// The first (by name): one server's view, as for Prometheus.
    First,
    /// The next one in turn: every replica serves some of the connections.
    InTurn,
    /// This pod, as long as it is ready.
    Pod(String),
}

/// How to open forwards to the ready pods of a workload on one of their ports.
#[derive(Clone)]
pub struct Workload {
    pub client: Client,
    pub namespace: String,
    pub selector: String,
    pub pod_port: u16,
}

/// One forward pinned to each ready pod of `workload`, by pod name.
pub async fn each_ready(workload: &Workload) -> Result<Vec<(String, Forward)>, String> {
    let pods = ready_pods(&workload.client, &workload.namespace, &workload.selector).await?;
    let mut forwards = Vec::new();
    for pod in pods {
        let forward = start(
            workload.client.clone(),
            &workload.namespace,
            &workload.selector,
            workload.pod_port,
            Pick::Pod(pod.clone()),
        )
        .await?;
        forwards.push((pod, forward));
    }
    Ok(forwards)
}

/// Forwards 127.0.0.1:<ephemeral> to `port` of the ready pods matching `selector`,
/// each connection to the pod `pick` chooses.
pub async fn start(
    client: Client,
    namespace: &str,
    selector: &str,
    port: u16,
    pick: Pick,
) -> Result<Forward, String> {
    // Fail early and clearly when there is nothing to forward to.
    ready_pod(&client, namespace, selector).await?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on loopback for a port-forward: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("the port-forward's listener has no address: {e}"))?;
    let description = match &pick {
        Pick::Pod(pod) => format!("{local} → {namespace}/{pod}:{port}"),
        _ => format!("{local} → {namespace}/{selector}:{port}"),
    };
    let health = Arc::new(PathHealth::default());
    let target = Target {
        client,
        namespace: namespace.to_string(),
        selector: selector.to_string(),
        port,
        health: Arc::clone(&health),
        pick,
        turn: Arc::default(),
    };
    let task = tokio::spawn(async move {
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                return;
            };
            let target = target.clone();
            tokio::spawn(async move { target.serve(inbound).await });
        }
    });
    Ok(Forward {
        local,
        description,
        health,
        task,
    })
}

#[derive(Clone)]
struct Target {
    client: Client,
    namespace: String,
    selector: String,
    port: u16,
    health: Arc<PathHealth>,
    pick: Pick,
    /// Connections served so far, for [`Pick::InTurn`].
    turn: Arc<std::sync::atomic::AtomicUsize>,
}

impl Target {
    async fn serve(&self, mut inbound: tokio::net::TcpStream) {
        let (namespace, port) = (&self.namespace, self.port);
        let mut ready = match ready_pods(&self.client, namespace, &self.selector).await {
            Ok(pods) => pods,
            Err(e) => return self.health.record(format!("port-forward: {e}")),
        };
        let index = match &self.pick {
            Pick::First => 0,
            Pick::InTurn => {
                self.turn.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % ready.len()
            }
            Pick::Pod(pod) => match ready.iter().position(|p| p == pod) {
                Some(index) => index,
                None => {
                    return self.health.record(format!(
                        "port-forward: {namespace}/{pod} is no longer ready (ready now: {})",
                        ready.join(", ")
                    ));
                }
            },
        };
        let pod = ready.swap_remove(index);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut forwarder = match pods.portforward(&pod, &[port]).await {
            Ok(f) => f,
            Err(e) => {
                return self.health.record(format!(
                    "port-forward to {namespace}/{pod}:{port} could not be opened: {e}"
                ));
            }
        };
        let (Some(mut upstream), Some(error)) =
            (forwarder.take_stream(port), forwarder.take_error(port))
        else {
            return self.health.record(format!(
                "port-forward to {namespace}/{pod}:{port} has no stream"
            ));
        };
        // The kubelet reports a pod port it cannot reach (and other failures) on the
        // port's error channel; a broken websocket ends the forwarder with an error.
        // A failure counts against the path only when nothing came back from the pod:
        // once the far side answered (an HTTP response, a TLS alert), the path worked
        // for this connection, whatever happens while it is torn down.
        let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut counted = Counting {
            inner: &mut upstream,
            read: Arc::clone(&answered),
        };
        let mut copy = Box::pin(tokio::io::copy_bidirectional(&mut inbound, &mut counted));
        let mut error = Box::pin(error);
        let mut error_done = false;
        let mut failure = None;
        loop {
            tokio::select! {
                result = &mut copy => {
                    if let Err(e) = result && !is_client_gone(&e) {
                        failure = Some(e.to_string());
                    }
                    break;
                }
                message = &mut error, if !error_done => {
                    error_done = true;
                    if let Some(message) = message {
                        failure = Some(message);
                        break;
                    }
                }
            }
        }
        if failure.is_none()
            && !error_done
            && let Ok(Some(message)) =
                tokio::time::timeout(std::time::Duration::from_millis(50), &mut error).await
        {
            // The error message raced the close of the stream.
            failure = Some(message);
        }
        drop(copy);
        drop(upstream);
        let joined = forwarder.join().await;
        let failure = failure.or_else(|| joined.err().map(|e| e.to_string()));
        let answered = answered.load(std::sync::atomic::Ordering::SeqCst) > 0;
        if let Some(cause) = failure.filter(|_| !answered) {
            self.health.record(format!(
                "port-forward to {namespace}/{pod}:{port} failed: {}",
                crate::exit::one_line(&cause)
            ));
        }
    }
}

/// Counts the bytes read from the pod's side of a forward.
struct Counting<'a, T> {
    inner: &'a mut T,
    read: Arc<std::sync::atomic::AtomicU64>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counting<'_, T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut *self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.read
            .fetch_add(read as u64, std::sync::atomic::Ordering::SeqCst);
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counting<'_, T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// The local client closing its side is not a failure of the path.
fn is_client_gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionAborted
    )
}

/// The pod port behind a Service port (`targetPort`), e.g. 80 → 8080 on Istio's
/// ingress gateway, whose pods listen on unprivileged ports.
pub async fn target_port(
    client: &Client,
    namespace: &str,
    service: &str,
    port: i32,
) -> Result<u16, String> {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let svc = api.get(service).await.map_err(|e| {
        let e = crate::words::Said::said(&e);
        format!("cannot read service {namespace}/{service}: {e}")
    })?;
    let ports = svc.spec.and_then(|s| s.ports).unwrap_or_default();
    let entry = ports
        .iter()
        .find(|p| p.port == port)
        .ok_or_else(|| format!("service {namespace}/{service} has no port {port}"))?;
    match &entry.target_port {
        Some(IntOrString::Int(n)) => u16::try_from(*n).map_err(|_| format!("bad targetPort {n}")),
        None => u16::try_from(port).map_err(|_| format!("bad port {port}")),
        Some(IntOrString::String(name)) => Err(format!(
            "service {namespace}/{service} port {port} targets the named port `{name}`; pass --ingress-address"
        )),
    }
}
