//! The generic API surface: lists with selectors, generateName, watches refused, pod
//! logs, events, scale, cluster-wide lists.

use crate::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod};
use kube::api::{ListParams, LogParams, WatchParams};

fn labelled(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

#[tokio::test]
async fn lists_select_by_labels_and_fields() {
    let (_cluster, client) = start(Options::default()).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    maps.create(&pp, &labelled("a", json!({"tier": "web", "env": "prod"})))
        .await
        .unwrap();
    maps.create(&pp, &labelled("b", json!({"tier": "db", "env": "prod"})))
        .await
        .unwrap();
    maps.create(&pp, &labelled("c", json!({"tier": "web"})))
        .await
        .unwrap();
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        let mut v: Vec<String> = l
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        v.sort();
        v
    };
    let cases = [
        ("tier=web", vec!["a", "c"]),
        ("tier==web,env=prod", vec!["a"]),
        ("env!=prod,tier", vec!["c"]),
        ("tier in (db, cache)", vec!["b"]),
        ("tier,tier notin (db),!env", vec!["c"]),
        // Every namespace holds kube-root-ca.crt, which has no labels.
        ("!tier", vec!["kube-root-ca.crt"]),
        ("env", vec!["a", "b"]),
    ];
    for (selector, expected) in cases {
        let got = names(
            maps.list(&ListParams::default().labels(selector))
                .await
                .unwrap(),
        );
        assert_eq!(got, expected, "{selector}");
    }
    let got = names(
        maps.list(&ListParams::default().fields("metadata.name=b"))
            .await
            .unwrap(),
    );
    assert_eq!(got, ["b"]);
    let err = maps
        .list(&ListParams::default().labels("tier in (web"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(400));
    let err = maps
        .list(&ListParams::default().fields("data.x=1"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(400));
    let list = maps.list(&ListParams::default()).await.unwrap();
    assert!(list.metadata.resource_version.is_some());

    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let made = maps.create(&pp, &generated).await.unwrap();
    let name = made.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    assert!(made.metadata.uid.is_some() && made.metadata.creation_timestamp.is_some());

    let err = maps.watch(&WatchParams::default(), "0").await;
    let refused = match err {
        Err(e) => api_code(&e),
        Ok(stream) => {
            let mut stream = Box::pin(stream);
            match stream.next().await {
                Some(Err(e)) => api_code(&e),
                _ => None,
            }
        }
    };
    assert_eq!(refused, Some(405));

    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get("kind-control-plane").await.unwrap();
    assert!(
        node.status
            .unwrap()
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
}

#[tokio::test]
async fn logs_events_scale_and_cluster_wide_lists() {
    let (cluster, client) = start(Options::default()).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment("web", "web", "v1", "web:1"),
        )
        .await
        .unwrap();
    wait_rollout(&client, "default", "web").await;
    let scale = deployments.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    deployments
        .patch_scale(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    let d = wait_rollout(&client, "default", "web").await;
    assert_eq!(d.status.unwrap().ready_replicas, Some(2));
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "scaling is not a new revision"
    );

    let all_pods: Api<Pod> = Api::all(client.clone());
    let pods = all_pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(pods.len(), 2);
    let pod = pods[0].metadata.name.clone().unwrap();
    let running = all_pods
        .list(
            &ListParams::default().fields("status.phase=Running,spec.nodeName=kind-control-plane"),
        )
        .await
        .unwrap();
    assert!(running.items.len() >= 2);

    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    cluster.append_pod_log(
        "default",
        &pod,
        "app",
        "GET /sentence 200\nGET /sentence 503",
    );
    let log = pods_api.logs(&pod, &LogParams::default()).await.unwrap();
    assert_eq!(
        log,
        format!("fake log of {pod}/app\nGET /sentence 200\nGET /sentence 503\n")
    );
    let tail = pods_api
        .logs(
            &pod,
            &LogParams {
                tail_lines: Some(1),
                container: Some("app".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail, "GET /sentence 503\n");
    let err = pods_api
        .logs(
            &pod,
            &LogParams {
                container: Some("nope".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(400), "{err}");

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for expected in [
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "Scheduled",
        "Pulling",
        "Started",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "no {expected} in {reasons:?}"
        );
    }
    pods_api.delete(&pod, &Default::default()).await.unwrap();
    eventually("a Killing event", DEADLINE, || {
        let events = events.clone();
        async move {
            let list = events
                .list(&ListParams::default().fields("reason=Killing"))
                .await
                .ok()?;
            (!list.items.is_empty()).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn malformed_requests_get_a_status_and_the_server_lives_on() {
    let (_cluster, client) = start(Options::default()).await;
    let raw = |method: &str, path: &str, content_type: &str, body: &str| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .body(body.as_bytes().to_vec())
            .unwrap()
    };
    let cases = [
        (
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            "application/json",
            "not json {",
            400,
        ),
        (
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            "application/json",
            r#"{"metadata": {"name": "x"}, "spec": {"replicas": "two"}}"#,
            400,
        ),
        (
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            "application/json",
            r#"{"metadata": {"name": "x"}, "spec": "nope"}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            r#"[1, 2]"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            r#"{"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            r#"{"metadata": {"name": "Bad_Name"}}"#,
            422,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/kube-root-ca.crt",
            "text/plain",
            "{}",
            415,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/kube-root-ca.crt",
            "application/json-patch+json",
            r#"{"op": "add"}"#,
            400,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/kube-root-ca.crt",
            "application/apply-patch+yaml",
            "data: {}",
            422,
        ),
        (
            "PATCH",
            "/apis/networking.istio.io/v1/namespaces/default/gateways/gw",
            "application/strategic-merge-patch+json",
            "{}",
            415,
        ),
        (
            "PATCH",
            "/apis/networking.istio.io/v1/namespaces/default/gateways/gw",
            "application/merge-patch+json",
            "{}",
            404,
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/default/deployments?watch=true",
            "application/json",
            "",
            405,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps?dryRun=All",
            "application/json",
            r#"{"metadata": {"name": "dry"}}"#,
            400,
        ),
        (
            "GET",
            "/apis/nope.example.com/v1",
            "application/json",
            "",
            404,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/widgets",
            "application/json",
            "",
            404,
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/configmaps/absent",
            "application/json",
            "",
            404,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods/absent/log",
            "application/json",
            "",
            404,
        ),
    ];
    for (method, path, content_type, body, code) in cases {
        let err = client
            .request_text(raw(method, path, content_type, body))
            .await
            .unwrap_err();
        assert_eq!(api_code(&err), Some(code), "{method} {path} {body}: {err}");
    }
    // Still serving.
    client.apiserver_version().await.unwrap();
}

#[tokio::test]
async fn a_test_can_flip_a_pods_readiness_and_the_slices_follow() {
    let (cluster, client) = start(Options::default()).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment("web", "web", "v1", "web:1"),
        )
        .await
        .unwrap();
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &service("web", "web"))
        .await
        .unwrap();
    wait_rollout(&client, "default", "web").await;
    let ready_endpoints = |c: &FakeCluster| -> Vec<bool> {
        c.list("discovery.k8s.io", "EndpointSlice", Some("default"))
            .iter()
            .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "web")
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .map(|e| e["conditions"]["ready"] == true)
            .collect()
    };
    cluster
        .wait_for("a ready endpoint", DEADLINE, |c| {
            ready_endpoints(c) == [true]
        })
        .await
        .unwrap();
    let pod = cluster
        .list("", "Pod", Some("default"))
        .into_iter()
        .find(|p| p["metadata"]["labels"]["app"] == "web")
        .unwrap();
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    cluster.update("", "Pod", Some("default"), &name, |p| {
        for c in p["status"]["conditions"].as_array_mut().unwrap() {
            if c["type"] == "Ready" {
                c["status"] = json!("False");
            }
        }
    });
    cluster
        .wait_for("the endpoint not ready", DEADLINE, |c| {
            ready_endpoints(c) == [false]
        })
        .await
        .unwrap();
    let d = deployments.get("web").await.unwrap();
    assert_eq!(
        d.status.unwrap().available_replicas,
        None,
        "the Deployment sees the pod unavailable"
    );
}
