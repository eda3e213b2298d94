//! Namespace termination, and creating into missing or terminating namespaces.

use crate::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams};

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn a_deleted_namespace_terminates_its_content_then_disappears() {
    let (cluster, client) = start(Options::default()).await;
    create_namespace(&client, "doomed", json!({})).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    assert_eq!(
        ns.metadata.labels.unwrap()["kubernetes.io/metadata.name"],
        "doomed"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "doomed");
    deployments
        .create(
            &PostParams::default(),
            &deployment("app", "app", "v1", "app:1"),
        )
        .await
        .unwrap();
    wait_rollout(&client, "doomed", "app").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "doomed");
    assert!(
        accounts.get_opt("default").await.unwrap().is_some(),
        "every namespace has its default service account"
    );

    let deleted = namespaces
        .delete("doomed", &DeleteParams::background())
        .await
        .unwrap();
    let ns = deleted
        .left()
        .expect("a terminating namespace is returned, not a Status");
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let ns = namespaces.get("doomed").await.unwrap();
    assert!(ns.metadata.deletion_timestamp.is_some());
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));

    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let err = maps
        .create(&PostParams::default(), &config_map("late"))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err}")
    };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        "configmaps \"late\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
    );
    let again = namespaces
        .delete("doomed", &DeleteParams::background())
        .await
        .unwrap_err();
    assert_eq!(api_code(&again), Some(409));

    // Pods terminate gracefully (deletionTimestamp first), then everything goes.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "doomed");
    eventually("the pods terminating", DEADLINE, || {
        let pods = pods.clone();
        async move {
            let items = pods.list(&ListParams::default()).await.ok()?.items;
            (!items.is_empty()
                && items
                    .iter()
                    .all(|p| p.metadata.deletion_timestamp.is_some()))
            .then_some(())
        }
    })
    .await;
    eventually("the namespace gone", DEADLINE, || {
        let namespaces = namespaces.clone();
        async move { matches!(namespaces.get_opt("doomed").await, Ok(None)).then_some(()) }
    })
    .await;
    assert!(cluster.list("", "Pod", Some("doomed")).is_empty());
    assert!(
        cluster
            .list("apps", "ReplicaSet", Some("doomed"))
            .is_empty()
    );

    // A rerun can create it again, and it is empty and Active.
    create_namespace(&client, "doomed", json!({})).await;
    maps.create(&PostParams::default(), &config_map("fresh"))
        .await
        .unwrap();

    let nowhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = nowhere
        .create(&PostParams::default(), &config_map("x"))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (status.code, status.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );
}

#[tokio::test]
async fn deletion_propagation_and_finalizers() {
    let (cluster, client) = start(Options::default()).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    deployments
        .create(&pp, &deployment("fg", "fg", "v1", "fg:1"))
        .await
        .unwrap();
    deployments
        .create(&pp, &deployment("orphan", "orphan", "v1", "orphan:1"))
        .await
        .unwrap();
    wait_rollout(&client, "default", "fg").await;
    wait_rollout(&client, "default", "orphan").await;

    // Foreground: the Deployment waits (finalizer) until its ReplicaSet and pods are gone.
    let d = deployments
        .delete("fg", &DeleteParams::foreground())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(
        d.metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_string())
    );
    let pods_of = |c: &FakeCluster, app: &str| {
        c.list("", "Pod", Some("default"))
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["app"] == app)
            .count()
    };
    let started = Instant::now();
    while cluster
        .get("apps", "Deployment", Some("default"), "fg")
        .is_some()
    {
        assert!(
            started.elapsed() < DEADLINE,
            "the foreground deletion did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        pods_of(&cluster, "fg"),
        0,
        "the Deployment went before its pods"
    );

    // Orphan: the Deployment goes at once, its ReplicaSet and pod stay, unowned.
    let gone = deployments
        .delete("orphan", &DeleteParams::orphan())
        .await
        .unwrap();
    assert!(
        gone.is_right(),
        "an immediately deleted object answers a Status"
    );
    let rs = cluster.list("apps", "ReplicaSet", Some("default"));
    let rs: Vec<_> = rs
        .iter()
        .filter(|r| r["metadata"]["labels"]["app"] == "orphan")
        .collect();
    assert_eq!(rs.len(), 1);
    assert!(rs[0]["metadata"]["ownerReferences"].is_null());
    let collected = cluster
        .wait_for(
            "the orphans to be collected (they must not be)",
            Duration::from_millis(200),
            |c| pods_of(c, "orphan") == 0,
        )
        .await;
    assert!(collected.is_err());

    // Finalizers hold an object until they are removed.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut held = config_map("held");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    maps.create(&pp, &held).await.unwrap();
    let marked = maps
        .delete("held", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(maps.get_opt("held").await.unwrap().is_some());
    let release = json!({"metadata": {"finalizers": null}});
    maps.patch(
        "held",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&release),
    )
    .await
    .unwrap();
    assert!(maps.get_opt("held").await.unwrap().is_none());
    let err = maps
        .delete("held", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(404));
}
