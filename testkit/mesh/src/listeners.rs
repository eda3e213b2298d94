//! Loopback listeners for the pod ports the stand-in itself serves (pilot-agent's
//! metrics and readiness, istiod's debug endpoints). A port-forward to (pod, port)
//! lands on a listener made for that pod and port on first use; it answers only while
//! the port would be open in the cluster, and is dropped when the pod is gone. One more
//! listener serves every proxy's merged metrics under a per-pod path, for Prometheus'
//! file_sd targets.

use crate::http::{self, Handler, Request, Response};
use crate::objects::Pod;
use crate::{Inner, istiod};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

const MAX_CONNECTIONS: usize = 256;

/// What a listener stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    /// pilot-agent's merged metrics (15020).
    MergedMetrics,
    /// Envoy's Prometheus endpoint (15090), with Istio's stats.
    EnvoyStats,
    /// The readiness port (15021).
    Health,
    /// istiod's debug endpoints (15014, 8080).
    IstiodDebug,
}

struct Entry {
    addr: SocketAddr,
    role: Role,
    task: JoinHandle<()>,
    created: Instant,
}

/// A listener made for a pod the snapshot does not show yet is kept this long.
const GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(crate) struct Registry {
    map: Mutex<HashMap<(String, u16), Entry>>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let map = self.map.get_mut().unwrap_or_else(|p| p.into_inner());
        for (_, e) in map.drain() {
            e.task.abort();
        }
    }
}

impl Registry {
    /// The listener for (pod uid, port) in `role`, made if needed.
    pub fn ensure(
        &self,
        inner: &Arc<Inner>,
        uid: &str,
        port: u16,
        role: Role,
    ) -> Result<SocketAddr, String> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = (uid.to_string(), port);
        if let Some(e) = map.get(&key) {
            if e.role == role && !e.task.is_finished() {
                return Ok(e.addr);
            }
            e.task.abort();
        }
        let (listener, addr) = bind(inner)?;
        let weak = Arc::downgrade(inner);
        let task = inner
            .runtime
            .spawn(accept_loop(listener, weak, uid.to_string(), port, role));
        map.insert(
            key,
            Entry {
                addr,
                role,
                task,
                created: Instant::now(),
            },
        );
        Ok(addr)
    }

    /// Stops every listener.
    pub fn clear(&self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for (_, e) in map.drain() {
            e.task.abort();
        }
    }

    /// Stops the listeners of pods that are gone.
    pub fn retain(&self, alive: impl Fn(&str) -> bool) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(uid, _), e| {
            let keep = uid.is_empty() || alive(uid) || e.created.elapsed() < GRACE;
            if !keep {
                e.task.abort();
            }
            keep
        });
    }

    /// Keeps a task that lives as long as the registry (the shared metrics server).
    pub fn keep(&self, addr: SocketAddr, task: JoinHandle<()>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(
            (String::new(), addr.port()),
            Entry {
                addr,
                role: Role::MergedMetrics,
                task,
                created: Instant::now(),
            },
        );
    }
}

fn bind(inner: &Inner) -> Result<(TcpListener, SocketAddr), String> {
    let std = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    std.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = std.local_addr().map_err(|e| e.to_string())?;
    let _guard = inner.runtime.enter();
    let listener = TcpListener::from_std(std).map_err(|e| e.to_string())?;
    Ok((listener, addr))
}

/// Binds the shared merged-metrics server.
pub(crate) fn bind_std() -> Result<std::net::TcpListener, String> {
    let std = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    std.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(std)
}

async fn accept_loop(listener: TcpListener, weak: Weak<Inner>, uid: String, port: u16, role: Role) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if weak.strong_count() == 0 {
            return;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(sock);
            continue;
        };
        let weak = weak.clone();
        let uid = uid.clone();
        tokio::spawn(async move {
            if open_soon(&weak, &uid, port, role).await {
                serve(weak, uid, role, sock).await;
            }
            drop(permit);
        });
    }
}

/// Whether the port is open, allowing a just-created pod to reach the snapshot (the
/// port-forward may come before the next poll).
async fn open_soon(weak: &Weak<Inner>, uid: &str, port: u16, role: Role) -> bool {
    for _ in 0..50 {
        let Some(inner) = weak.upgrade() else {
            return false;
        };
        if inner.timeline.latest().pod_by_uid(uid).is_some() {
            return inner.port_open(uid, port, role);
        }
        let wait = inner.options.poll_interval;
        drop(inner);
        tokio::time::sleep(wait).await;
    }
    false
}

fn pod_handler(
    weak: Weak<Inner>,
    uid: String,
    f: fn(&Inner, &Pod, &Request) -> Response,
) -> Handler {
    Arc::new(move |req: Request| {
        let Some(inner) = weak.upgrade() else {
            return Response::text(503, "shutting down\n");
        };
        let now = inner.timeline.latest();
        match now.pod_by_uid(&uid) {
            Some(pod) => f(&inner, pod, &req),
            None => Response::text(503, "no such pod\n"),
        }
    })
}

async fn serve(weak: Weak<Inner>, uid: String, role: Role, sock: TcpStream) {
    let _ = sock.set_nodelay(true);
    match role {
        Role::MergedMetrics => {
            let h = pod_handler(weak, uid, |inner, pod, req| match req.path_only() {
                "/stats/prometheus" | "/metrics" => inner.metrics(pod, 15020),
                "/healthz/ready" if inner.proxy_ready(&pod.uid) => Response::text(200, ""),
                "/healthz/ready" => Response::text(503, ""),
                _ => Response::text(404, "404 page not found\n"),
            });
            http::serve(sock, h, false).await;
        }
        Role::EnvoyStats => {
            let h = pod_handler(weak, uid, |inner, pod, req| match req.path_only() {
                "/stats/prometheus" => inner.metrics(pod, 15090),
                _ => Response::text(404, ""),
            });
            http::serve(sock, h, true).await;
        }
        Role::Health => {
            let h = pod_handler(weak, uid, |inner, pod, req| match req.path_only() {
                "/healthz/ready" if inner.proxy_ready(&pod.uid) => Response::text(200, ""),
                _ => Response::text(503, ""),
            });
            http::serve(sock, h, true).await;
        }
        Role::IstiodDebug => {
            http::serve(sock, pod_handler(weak, uid, istiod::handle), false).await;
        }
    }
}

/// The shared metrics server: `/<namespace>/<pod>/<port>/<path>` is that pod's metrics
/// endpoint (the file_sd target's `__metrics_path__`).
pub(crate) async fn metrics_server(listener: TcpListener, weak: Weak<Inner>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if weak.strong_count() == 0 {
            return;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let weak = weak.clone();
        tokio::spawn(async move {
            let h: Handler = Arc::new(move |req: Request| {
                let Some(inner) = weak.upgrade() else {
                    return Response::text(503, "");
                };
                let parts: Vec<&str> = req.path_only().splitn(5, '/').collect();
                let (ns, name, port) = match parts.as_slice() {
                    ["", ns, name, port, _rest] => (*ns, *name, port.parse::<u16>().unwrap_or(0)),
                    _ => return Response::text(404, "404 page not found\n"),
                };
                let now = inner.timeline.latest();
                match now.pod(ns, name) {
                    Some(pod) if pod.running() => inner.metrics(pod, port),
                    // The pod is gone: its address no longer answers.
                    _ => Response::text(503, ""),
                }
            });
            http::serve(sock, h, false).await;
            drop(permit);
        });
    }
}
