//! The exercise's app in each pod, served on loopback where the pod's container would
//! listen: the pod IP without a sidecar, the pod's localhost behind one. Its calls
//! (`requests.get(url, timeout=1)`, a new connection each) leave the way a pod's do:
//! with a sidecar, to the sidecar's outbound listener for the port (iptables'
//! redirect); without one, to a ready endpoint of the Service, picked as kube-proxy
//! would, from the pod's IP. Whatever answers is real: the caller's and the callee's
//! Envoys decide.

use crate::Inner;
use crate::app::{self, AppWorld, CallRaised, WerkzeugPage};
use crate::client;
use crate::http::{self, AsyncHandler, Request, Response};
use crate::objects::Pod;
use crate::routing;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// `requests.get(..., timeout=1)`.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Envoy's reply when an upstream resets before answering (the `BackendLocalReply`
/// fault pastes it).
const RESET_BODY: &str = "upstream connect error or disconnect/reset before headers. reset reason: connection termination";

pub(crate) struct AppServer {
    task: JoinHandle<()>,
}

impl Drop for AppServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `http://host[:port][/path]` → (host, port, path).
fn parse_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    Some((host.to_string(), port, path))
}

struct Calls<'a> {
    inner: &'a Inner,
    pod: &'a Pod,
}

impl Calls<'_> {
    async fn call(&self, url: &str) -> Result<String, CallRaised> {
        let (host, port, path) = parse_url(url).ok_or(CallRaised)?;
        let authority = format!("{host}:{port}");
        let world = self.inner.timeline.latest();
        let own_ip: Option<IpAddr> = self.pod.ip.as_deref().and_then(|ip| ip.parse().ok());
        let target = if self.pod.has_sidecar() {
            let addresses =
                crate::addresses::PodAddresses::of(self.pod.ip.as_deref().unwrap_or(""))
                    .ok_or(CallRaised)?;
            SocketAddr::new(addresses.outbound.into(), port)
        } else {
            let service = world
                .resolve(&host, &self.pod.namespace)
                .ok_or(CallRaised)?;
            let sport = service.port(port).ok_or(CallRaised)?;
            let eps = routing::endpoints(&world, service, sport);
            if eps.is_empty() {
                return Err(CallRaised);
            }
            let pick = self
                .inner
                .next_round_robin(&format!("kube-proxy|{}", service.host()), eps.len());
            let ip: IpAddr = eps[pick].ip.parse().map_err(|_| CallRaised)?;
            SocketAddr::new(ip, eps[pick].port)
        };
        let from = if self.pod.has_sidecar() { None } else { own_ip };
        client::get(target, &authority, &path, from, CALL_TIMEOUT)
            .await
            .map(|got| got.body)
            .map_err(|_| CallRaised)
    }
}

impl AppWorld for Calls<'_> {
    fn random(&self, below: u64) -> u64 {
        self.inner.random(below)
    }

    fn get(
        &self,
        url: &str,
    ) -> impl std::future::Future<Output = Result<String, CallRaised>> + Send {
        self.call(url)
    }

    fn page_style(&self) -> WerkzeugPage {
        self.inner.options.werkzeug
    }
}

async fn answer(weak: Weak<Inner>, uid: String, req: Request) -> Response {
    let Some(inner) = weak.upgrade() else {
        return Response::text(503, "shutting down\n");
    };
    let world = inner.timeline.latest();
    let Some(pod) = world.pod_by_uid(&uid).cloned() else {
        return Response::text(503, "no such pod\n");
    };
    if inner.faults.backend_local_reply(&pod.workload_name()) {
        return Response::new(503, "text/plain", RESET_BODY).with("connection", "close");
    }
    let calls = Calls {
        inner: &inner,
        pod: &pod,
    };
    let a = app::handle(&app::mode(&pod), &req.path, &calls).await;
    // Werkzeug's development server speaks HTTP/1.0: one request per connection.
    Response::new(a.status, "text/html; charset=utf-8", a.body)
        .with("server", "Werkzeug/1.0.1 Python/3.9.0")
        .with("connection", "close")
}

impl AppServer {
    /// Serves the app of the pod `uid` on `address`.
    pub fn start(
        weak: Weak<Inner>,
        uid: &str,
        address: SocketAddr,
        runtime: &tokio::runtime::Handle,
    ) -> Result<AppServer, String> {
        let std = std::net::TcpListener::bind(address)
            .map_err(|e| format!("the app cannot listen on {address}: {e}"))?;
        std.set_nonblocking(true)
            .map_err(|e| format!("{address}: {e}"))?;
        let _guard = runtime.enter();
        let listener = TcpListener::from_std(std).map_err(|e| format!("{address}: {e}"))?;
        let uid = uid.to_string();
        let task = runtime.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = sock.set_nodelay(true);
                let (weak, uid) = (weak.clone(), uid.clone());
                let handler: AsyncHandler =
                    Arc::new(move |req| Box::pin(answer(weak.clone(), uid.clone(), req)));
                tokio::spawn(http::serve_async(sock, handler, false));
            }
        });
        Ok(AppServer { task })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        assert_eq!(
            parse_url("http://name:5000"),
            Some(("name".into(), 5000, "/".into()))
        );
        assert_eq!(
            parse_url("http://age.s/x?y"),
            Some(("age.s".into(), 80, "/x?y".into()))
        );
    }
}
