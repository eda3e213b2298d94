//! The pod admission hook as Istio's sidecar injector: a native sidecar in labelled
//! namespaces, started and ready with the pod.

use crate::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use std::sync::Arc;

#[tokio::test]
async fn an_injected_native_sidecar_runs_and_gates_readiness() {
    let (cluster, client) = start(Options::default()).await;
    let reader = cluster.clone();
    cluster.set_pod_admission(Arc::new(move |pod: &mut serde_json::Value, ns: &serde_json::Value| {
        // Hooks may read the cluster: the store is not locked while they run.
        let _ = reader.list("", "ConfigMap", Some("istio-system"));
        if ns["metadata"]["labels"]["istio-injection"] != "enabled" {
            return;
        }
        let init = pod["spec"]["initContainers"].as_array().cloned().unwrap_or_default();
        let mut init = init;
        init.push(json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.0", "restartPolicy": "Always",
                         "ports": [{"name": "http-envoy-prom", "containerPort": 15090}]}));
        pod["spec"]["initContainers"] = json!(init);
        pod["metadata"]["annotations"]["sidecar.istio.io/status"] = json!("{\"containers\":[\"istio-proxy\"]}");
    }));
    create_namespace(&client, "mesh", json!({"istio-injection": "enabled"})).await;
    create_namespace(&client, "plain", json!({})).await;
    for ns in ["mesh", "plain"] {
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        api.create(
            &PostParams::default(),
            &deployment("app", "app", "v1", "app:1"),
        )
        .await
        .unwrap();
        wait_rollout(&client, ns, "app").await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "mesh");
    let pod = pods
        .list(&ListParams::default().labels("app=app"))
        .await
        .unwrap()
        .items
        .remove(0);
    let spec = pod.spec.unwrap();
    let proxy = &spec.init_containers.unwrap()[0];
    assert_eq!(
        (proxy.name.as_str(), proxy.restart_policy.as_deref()),
        ("istio-proxy", Some("Always"))
    );
    let status = pod.status.unwrap();
    let sidecar = &status.init_container_statuses.unwrap()[0];
    assert!(
        sidecar.ready && sidecar.started == Some(true),
        "{sidecar:?}"
    );
    assert!(sidecar.state.as_ref().unwrap().running.is_some());
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    assert!(
        pod.metadata
            .annotations
            .unwrap()
            .contains_key("sidecar.istio.io/status")
    );

    let plain: Api<Pod> = Api::namespaced(client.clone(), "plain");
    let pod = plain
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    assert!(pod.spec.unwrap().init_containers.is_none());
}

#[tokio::test]
async fn a_sidecar_that_is_not_ready_keeps_the_pod_unready() {
    let (cluster, client) = start(Options::default()).await;
    cluster.set_image_behaviour(
        "slow-proxy",
        testkit_k8s::ImageBehaviour::StartsAfter(Duration::from_millis(400)),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"initContainers": [{"name": "init", "image": "busybox:1"}, {"name": "proxy", "image": "slow-proxy:1", "restartPolicy": "Always"}],
                 "containers": [{"name": "app", "image": "app:1"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let p = eventually("p running", DEADLINE, || {
        let pods = pods.clone();
        async move {
            pods.get("p")
                .await
                .ok()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        }
    })
    .await;
    let status = p.status.unwrap();
    let inits = status.init_container_statuses.unwrap();
    let init = inits[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_eq!(
        (init.reason.as_deref(), init.exit_code),
        (Some("Completed"), 0)
    );
    assert!(!inits[1].ready && inits[1].started == Some(true));
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert!(ready.message.unwrap().contains("proxy"));
    eventually("p ready once its sidecar is", DEADLINE, || {
        let pods = pods.clone();
        async move {
            let p = pods.get("p").await.ok()?;
            p.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_dry_run_pod_create_is_admitted_and_not_stored() {
    let (cluster, client) = start(Options::default()).await;
    cluster.set_pod_admission(Arc::new(
        |pod: &mut serde_json::Value, _: &serde_json::Value| {
            pod["metadata"]["annotations"]["sidecar.istio.io/status"] = json!("{}");
        },
    ));
    create_namespace(&client, "mesh", json!({})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "mesh");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "probe-"},
        "spec": {"containers": [{"name": "c", "image": "app:1"}]}
    }))
    .unwrap();
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let admitted = pods.create(&dry, &pod).await.unwrap();
    assert!(admitted.metadata.name.unwrap().starts_with("probe-"));
    assert!(
        admitted
            .metadata
            .annotations
            .unwrap()
            .contains_key("sidecar.istio.io/status")
    );
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Any other dry run is still refused, never silently persisted.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, "mesh");
    let cm = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    assert!(cms.create(&dry, &cm).await.is_err());
}
