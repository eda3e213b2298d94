//! A container's readiness follows the probe a test sets (the stand-in for the kubelet
//! probing it), and pod IPs come from the configured prefix.

use crate::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const NS: &str = "probed";

async fn the_pod(pods: &Api<Pod>) -> Option<Pod> {
    pods.list(&ListParams::default().labels("app=probed"))
        .await
        .ok()?
        .items
        .into_iter()
        .next()
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[tokio::test]
async fn a_container_is_ready_only_once_its_probe_says_so_and_ips_use_the_prefix() {
    let options = Options {
        pod_ip_prefix: "127.42".into(),
        ..Default::default()
    };
    let (cluster, client) = start(options).await;
    let up = Arc::new(AtomicBool::new(false));
    let probe_up = Arc::clone(&up);
    cluster.set_readiness_probe(Arc::new(move |_pod, container| {
        (container == "app").then(|| probe_up.load(Ordering::SeqCst))
    }));
    create_namespace(&client, NS, json!({})).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    deployments
        .create(
            &PostParams::default(),
            &deployment("probed", "probed", "v1", "registry.example/app:1"),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let running = eventually("the pod running", DEADLINE, || async {
        the_pod(&pods)
            .await
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    let ip = running
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    assert!(ip.starts_with("127.42."), "{ip}");
    // Running well past the fake's own ready time, still not ready.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = the_pod(&pods).await.unwrap();
    assert!(!ready(&still), "the probe says not ready");
    up.store(true, Ordering::SeqCst);
    eventually("the pod ready once its probe passes", DEADLINE, || async {
        the_pod(&pods).await.filter(ready)
    })
    .await;
}
