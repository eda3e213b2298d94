//! Deployments → ReplicaSets → pods → EndpointSlices, and the endpoints lag behind a
//! finished rollout.

use crate::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams};
use std::collections::BTreeSet;

const NS: &str = "sentences";
const REVISION: &str = "deployment.kubernetes.io/revision";

/// (pod name, ready) of every endpoint of Service `name`.
async fn endpoints(slices: &Api<EndpointSlice>, service: &str) -> BTreeSet<(String, bool)> {
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .unwrap();
    list.items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            let name = e
                .target_ref
                .as_ref()
                .and_then(|t| t.name.clone())
                .unwrap_or_default();
            (
                name,
                e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false),
            )
        })
        .collect()
}

async fn pod_names(pods: &Api<Pod>, selector: &str) -> Vec<String> {
    let mut names: Vec<String> = pods
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn two_deployments_behind_one_service_roll_out_and_slices_lag_the_pods() {
    let options = Options {
        endpoints_lag: Duration::from_millis(300),
        ..Default::default()
    };
    let (_cluster, client) = start(options).await;
    create_namespace(&client, NS, json!({})).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let pp = PostParams::default();
    deployments
        .create(
            &pp,
            &deployment("name", "sentences-name", "v1", "sentences/name:1"),
        )
        .await
        .unwrap();
    deployments
        .create(
            &pp,
            &deployment("name-v2", "sentences-name", "v2", "sentences/name:2"),
        )
        .await
        .unwrap();
    services
        .create(&pp, &service("name", "sentences-name"))
        .await
        .unwrap();

    let v1 = wait_rollout(&client, NS, "name").await;
    wait_rollout(&client, NS, "name-v2").await;
    assert_eq!(v1.metadata.annotations.as_ref().unwrap()[REVISION], "1");
    let old_pods = pod_names(&pods, "app=sentences-name,version=v1").await;
    let v2_pods = pod_names(&pods, "app=sentences-name,version=v2").await;
    assert_eq!((old_pods.len(), v2_pods.len()), (1, 1));
    let old_pod = old_pods[0].clone();
    let rs_v1 = sets
        .list(&ListParams::default().labels("version=v1"))
        .await
        .unwrap()
        .items;
    assert_eq!(rs_v1.len(), 1);
    let rs_name = rs_v1[0].metadata.name.clone().unwrap();
    let hash = rs_v1[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(rs_name, format!("name-{hash}"));
    assert!(
        !hash.is_empty()
            && hash.len() <= 10
            && hash
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{hash}"
    );
    assert!(
        old_pod.starts_with(&format!("{rs_name}-")) && old_pod.len() == rs_name.len() + 6,
        "{old_pod}"
    );
    let owner = &rs_v1[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Deployment", "name", Some(true))
    );

    // Both Deployments' pods are behind the one Service, by targetRef.
    let both: BTreeSet<(String, bool)> =
        [(old_pod.clone(), true), (v2_pods[0].clone(), true)].into();
    eventually("both pods in the slices", DEADLINE, || {
        let slices = slices.clone();
        let both = both.clone();
        async move { (endpoints(&slices, "name").await == both).then_some(()) }
    })
    .await;
    let slice = &slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=name"))
        .await
        .unwrap()
        .items[0];
    assert!(slice.metadata.name.as_ref().unwrap().starts_with("name-"));
    assert_eq!(slice.address_type, "IPv4");
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.port, port.app_protocol.as_deref()),
        (Some(8080), Some("http"))
    );
    let endpoint = &slice.endpoints[0];
    assert!(endpoint.addresses[0].starts_with("10.244."));
    assert_eq!(endpoint.node_name.as_deref(), Some("kind-control-plane"));

    // A template change (kubectl rollout restart) starts revision 2.
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}}}});
    deployments
        .patch("name", &PatchParams::default(), &Patch::Merge(&restart))
        .await
        .unwrap();
    let done = wait_rollout(&client, NS, "name").await;
    // Right after the Deployment says it is done, the old pod is terminating and its
    // endpoint is still listed ready: the slices lag.
    let seen = endpoints(&slices, "name").await;
    assert!(
        seen.contains(&(old_pod.clone(), true)),
        "old endpoint not ready any more: {seen:?}"
    );
    assert_eq!(done.metadata.annotations.as_ref().unwrap()[REVISION], "2");
    let old = pods.get_opt(&old_pod).await.unwrap();
    assert!(
        old.is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        "the old pod is not terminating"
    );
    let new_sets: Vec<ReplicaSet> = sets
        .list(&ListParams::default().labels("version=v1"))
        .await
        .unwrap()
        .items;
    let new_rs = new_sets
        .iter()
        .find(|rs| rs.metadata.annotations.as_ref().unwrap()[REVISION] == "2")
        .expect("a replica set of revision 2");
    assert_ne!(new_rs.metadata.name.as_ref(), Some(&rs_name));
    assert_eq!(new_rs.spec.as_ref().unwrap().replicas, Some(1));
    let old_rs = new_sets
        .iter()
        .find(|rs| rs.metadata.name.as_ref() == Some(&rs_name))
        .unwrap();
    assert_eq!(old_rs.spec.as_ref().unwrap().replicas, Some(0));

    // Then only the new pod and name-v2's remain, both ready.
    let new_pod = eventually("the old pod gone", DEADLINE, || {
        let pods = pods.clone();
        let old_pod = old_pod.clone();
        async move {
            let names = pod_names(&pods, "app=sentences-name,version=v1").await;
            (names.len() == 1 && names[0] != old_pod).then(|| names[0].clone())
        }
    })
    .await;
    let expected: BTreeSet<(String, bool)> = [(new_pod, true), (v2_pods[0].clone(), true)].into();
    eventually(
        "only the new pod and name-v2's in the slices",
        DEADLINE,
        || {
            let slices = slices.clone();
            let expected = expected.clone();
            async move { (endpoints(&slices, "name").await == expected).then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn rolling_update_keeps_availability_with_three_replicas() {
    let (cluster, client) = start(Options::default()).await;
    create_namespace(&client, "scale", json!({})).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "scale");
    let mut d = deployment("web", "web", "v1", "web:1");
    d.spec.as_mut().unwrap().replicas = Some(3);
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    wait_rollout(&client, "scale", "web").await;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&image))
        .await
        .unwrap();
    // maxSurge 1, maxUnavailable 0 for 3 replicas: never fewer than 3 ready pods,
    // never more than 4 pods not terminating.
    let started = Instant::now();
    loop {
        let pods = cluster.list("", "Pod", Some("scale"));
        let live: Vec<&serde_json::Value> = pods
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let ready = live
            .iter()
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count();
        assert!(
            live.len() <= 4,
            "more than replicas + maxSurge pods: {}",
            live.len()
        );
        assert!(
            ready >= 3,
            "fewer than replicas - maxUnavailable ready: {ready}"
        );
        let d = deployments.get("web").await.unwrap();
        if rollout_done(&d) && d.metadata.annotations.as_ref().unwrap()[REVISION] == "2" {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "rollout to web:2 did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let d = deployments.get("web").await.unwrap();
    let conditions = d.status.unwrap().conditions.unwrap();
    let progressing = conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    );
    // Rolling back to the first template reuses its ReplicaSet with revision 3.
    let back = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&back))
        .await
        .unwrap();
    eventually("rollback to revision 3", DEADLINE, || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("web").await.ok()?;
            (rollout_done(&d) && d.metadata.annotations.as_ref()?[REVISION] == "3").then_some(())
        }
    })
    .await;
    assert_eq!(cluster.list("apps", "ReplicaSet", Some("scale")).len(), 2);
}

#[tokio::test]
async fn progress_deadline_exceeded_when_pods_never_become_ready() {
    let options = Options {
        progress_deadline_unit: Duration::from_millis(100),
        ..Default::default()
    };
    let (cluster, client) = start(options).await;
    cluster.set_image_behaviour(
        "never-ready",
        testkit_k8s::ImageBehaviour::StartsAfter(Duration::from_secs(3600)),
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("slow", "slow", "v1", "example/never-ready:1");
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(2);
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    eventually("ProgressDeadlineExceeded", DEADLINE, || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("slow").await.ok()?;
            let c = d
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Progressing")?;
            (c.reason.as_deref() == Some("ProgressDeadlineExceeded") && c.status == "False")
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn recreate_stops_the_old_pods_before_starting_new_ones() {
    let (cluster, client) = start(Options::default()).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("batch", "batch", "v1", "batch:1");
    d.spec.as_mut().unwrap().strategy =
        Some(serde_json::from_value(json!({"type": "Recreate"})).unwrap());
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    wait_rollout(&client, "default", "batch").await;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "batch:2"}]}}}});
    deployments
        .patch("batch", &PatchParams::default(), &Patch::Strategic(&image))
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let images: Vec<String> = cluster
            .list("", "Pod", Some("default"))
            .iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "batch")
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert!(
            !(images.iter().any(|i| i == "batch:1") && images.iter().any(|i| i == "batch:2")),
            "old and new pods at once: {images:?}"
        );
        if images == ["batch:2"] && rollout_done(&deployments.get("batch").await.unwrap()) {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the Recreate rollout did not finish: {images:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
