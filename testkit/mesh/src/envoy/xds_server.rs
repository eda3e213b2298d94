//! The stand-in istiod's xDS endpoint: Envoy's REST-JSON xDS (`api_type: REST`), one
//! loopback HTTP server per mesh. Every subscription of every proxy (listeners,
//! clusters, each route configuration, each cluster's endpoints, each secret) POSTs a
//! `DiscoveryRequest` carrying the version it last applied and gets the proxy's current
//! `DiscoveryResponse`. A request at the current version is held until the next push
//! (or a few seconds), so a push reaches Envoy at once, as istiod's streams do.
//!
//! Why REST and not files or gRPC: a filesystem subscription costs an inotify instance
//! each (128 per user by default, exhausted by a few proxies), and gRPC needs Envoy's
//! protobuf types; REST takes the same JSON. What istiod learns from ACKs comes with
//! each request: the version Envoy applied, per subscription.

use super::Proxy;
use crate::Inner;
use crate::http::{self, AsyncHandler, Request, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The bootstrap cluster every proxy reaches the endpoint through.
pub(crate) const CLUSTER: &str = "xds-rest";

/// How long a request at the current version is held before it is answered anyway.
const HOLD: Duration = Duration::from_secs(4);

/// A `ConfigSource` for the stand-in istiod (and to wait for it indefinitely, as
/// Istio's `initial_fetch_timeout: 0s` does).
pub(crate) fn source() -> Value {
    json!({
        "api_config_source": {
            "api_type": "REST",
            "transport_api_version": "V3",
            "cluster_names": [CLUSTER],
            "refresh_delay": "0.01s",
            "request_timeout": "10s",
        },
        "resource_api_version": "V3",
        "initial_fetch_timeout": "0s",
    })
}

/// The bootstrap's static cluster towards the endpoint.
pub(crate) fn cluster(address: SocketAddr) -> Value {
    json!({
        "name": CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": CLUSTER, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": address.ip().to_string(),
                                                        "port_value": address.port()}}}}]}]},
    })
}

/// The xDS type a REST path serves.
fn type_of(path: &str) -> Option<&'static str> {
    match path.split('?').next()?.strip_prefix("/v3/discovery:")? {
        "listeners" => Some(super::LDS),
        "clusters" => Some(super::CDS),
        "routes" => Some(super::RDS),
        "endpoints" => Some(super::EDS),
        "secrets" => Some(super::SDS),
        _ => None,
    }
}

fn names(request: &Value) -> Vec<String> {
    request
        .get("resource_names")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn answer(weak: Weak<Inner>, req: Request) -> Response {
    let Some(type_url) = type_of(&req.path) else {
        return Response::text(404, "not an xDS path\n");
    };
    let Ok(request) = serde_json::from_slice::<Value>(&req.body) else {
        return Response::text(400, "not a DiscoveryRequest\n");
    };
    let node = request
        .pointer("/node/id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let applied = request
        .get("version_info")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let names = names(&request);
    let proxy: Option<Arc<Proxy>> = weak.upgrade().and_then(|i| i.fleet.by_node(&node));
    let Some(proxy) = proxy else {
        return Response::text(503, "no such proxy\n");
    };
    proxy.record_ack(type_url, &names, &applied);
    let mut changes = proxy.changes();
    let current = proxy.served_version(type_url);
    if current.as_deref() == Some(applied.as_str()) || current.is_none() {
        let _ = tokio::time::timeout(HOLD, changes.changed()).await;
    }
    match proxy.discovery_response(type_url, &names) {
        Some(response) => Response::json(&response),
        None => Response::text(503, "nothing pushed yet\n"),
    }
}

pub(crate) struct XdsServer {
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for XdsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl XdsServer {
    pub fn start(weak: Weak<Inner>, runtime: &tokio::runtime::Handle) -> Result<XdsServer, String> {
        let std = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("the xDS endpoint cannot listen: {e}"))?;
        std.set_nonblocking(true).map_err(|e| e.to_string())?;
        let address = std.local_addr().map_err(|e| e.to_string())?;
        let _guard = runtime.enter();
        let listener = TcpListener::from_std(std).map_err(|e| e.to_string())?;
        let task = runtime.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = sock.set_nodelay(true);
                let weak = weak.clone();
                let handler: AsyncHandler =
                    Arc::new(move |req| Box::pin(answer(weak.clone(), req)));
                tokio::spawn(http::serve_async(sock, handler, false));
            }
        });
        Ok(XdsServer { address, task })
    }
}
