//! A mock Kubernetes API server on tower-test (kube's own pattern): every request is
//! recorded and answered by a routing function.

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// One request as the mock API server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub content_type: String,
    pub body: Value,
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

/// A mock API server answering each request with `route(method, uri, n)` where `n`
/// counts earlier requests to the same method and path.
pub fn mock<F>(route: F) -> (Client, Log)
where
    F: Fn(&str, &str, usize) -> (u16, Value) + Send + 'static,
{
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let path = uri.split('?').next().unwrap().to_string();
            let n = seen
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.method == method && s.uri.split('?').next().unwrap() == path)
                .count();
            seen.lock().unwrap().push(Seen {
                method: method.clone(),
                uri: uri.clone(),
                content_type,
                body,
            });
            let (status, reply) = route(&method, &uri, n);
            respond.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), log)
}

pub fn not_found(what: &str) -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{what} not found")}),
    )
}

pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {}, "items": items})
}

/// Deployment `age` (selector app=age,version=v1) at revision 2 with the given status.
pub fn deployment(
    generation: i64,
    observed: i64,
    updated: i32,
    available: i32,
    total: i32,
) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "age", "namespace": "sentences", "generation": generation,
                     "annotations": {"deployment.kubernetes.io/revision": "2"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "age", "version": "v1"}},
                 "template": {"metadata": {"labels": {"app": "age", "version": "v1", "sidecar.istio.io/inject": "true"}}, "spec": {"containers": [{"name": "age", "image": "katas"}]}}},
        "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available, "replicas": total}
    })
}

/// A pod of `age` of the given pod-template-hash and IP (owned by ReplicaSet
/// `age-<hash>`), optionally stuck pulling.
pub fn pod(name: &str, hash: &str, ip: &str, waiting: Option<&str>) -> Value {
    let mut status = json!({"podIPs": [{"ip": ip}]});
    if let Some(reason) = waiting {
        status["containerStatuses"] = json!([{"name": "age", "image": "ghcr.io/x/katas:nope", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": "pull access denied"}}}]);
    }
    json!({"metadata": {"name": name, "labels": {"app": "age", "version": "v1", "pod-template-hash": hash},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("age-{hash}"), "uid": format!("rs-{hash}")}]},
           "spec": {"containers": [{"name": "age"}]}, "status": status})
}

/// ReplicaSet `age-<hash>` of Deployment `age`, at `revision`.
pub fn replica_set(hash: &str, revision: &str) -> Value {
    json!({"metadata": {"name": format!("age-{hash}"), "labels": {"app": "age", "version": "v1", "pod-template-hash": hash},
                        "annotations": {"deployment.kubernetes.io/revision": revision},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "age", "uid": "dep-age"}]},
           "spec": {"selector": {}}})
}

/// An endpoint of an EndpointSlice pointing at `pod`.
pub fn endpoint(ip: &str, pod: &str, ready: bool) -> Value {
    json!({"addresses": [ip], "conditions": {"ready": ready}, "targetRef": {"kind": "Pod", "name": pod, "namespace": "sentences"}})
}
