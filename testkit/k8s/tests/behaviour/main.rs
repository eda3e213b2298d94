//! The fake cluster driven by real kube 5 clients, as the harness drives a cluster.

mod admission;
mod api;
mod discovery;
mod faults;
mod images;
mod namespaces;
mod portforward;
mod readiness;
mod rollout;
mod server_side_apply;
mod tls;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, PostParams};
use serde_json::json;
use std::future::Future;
use std::time::{Duration, Instant};
use testkit_k8s::{FakeCluster, Options};

pub const DEADLINE: Duration = Duration::from_secs(5);

/// Polls `f` until it yields a value; panics naming `what` after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn start(options: Options) -> (FakeCluster, kube::Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = FakeCluster::start(options).await;
    let client = cluster.client();
    (cluster, client)
}

pub async fn create_namespace(client: &kube::Client, name: &str, labels: serde_json::Value) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
}

/// A Deployment of the sentences app's shape: `app: sentences-<app>`, `version: <v>`.
pub fn deployment(name: &str, app: &str, version: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app, "version": version}},
            "template": {
                "metadata": {"labels": {"app": app, "version": version}},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"name": "http", "containerPort": 8080}]}]},
            },
        },
    }))
    .unwrap()
}

pub fn service(name: &str, app: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": "http", "appProtocol": "http"}]},
    }))
    .unwrap()
}

/// The harness's notion of a finished rollout: the controller saw the latest spec and
/// every replica is updated and available with no extra one.
pub fn rollout_done(d: &Deployment) -> bool {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = d.status.as_ref() else {
        return false;
    };
    s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && s.updated_replicas.unwrap_or(0) == desired
        && s.available_replicas.unwrap_or(0) == desired
        && s.replicas.unwrap_or(0) == desired
}

pub async fn wait_rollout(client: &kube::Client, ns: &str, name: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually(&format!("rollout of {ns}/{name}"), DEADLINE, || {
        let api = api.clone();
        async move { api.get(name).await.ok().filter(rollout_done) }
    })
    .await
}

pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
