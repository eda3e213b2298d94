//! Server-side apply, merge and JSON patches, generation and observedGeneration.

use crate::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{ListParams, Patch, PatchParams};

fn applied(annotations: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "web:1"}]},
            },
        },
    })
}

/// kube's `Patch::Json` needs its `jsonpatch` feature; the request is simple enough.
fn json_patch(ops: serde_json::Value) -> http::Request<Vec<u8>> {
    http::Request::patch("/apis/apps/v1/namespaces/default/deployments/web")
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&ops).unwrap())
        .unwrap()
}

#[tokio::test]
async fn apply_removes_fields_the_manager_stopped_applying_and_patches_work() {
    let (cluster, client) = start(Options::default()).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let m = PatchParams::apply("m");
    let created = api
        .patch("web", &m, &Patch::Apply(applied(json!({"a": "1"}))))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(
        created.spec.as_ref().unwrap().replicas,
        Some(1),
        "defaulted"
    );
    wait_rollout(&client, "default", "web").await;

    // Another manager's change to a field m never applied survives m's applies.
    let other = json!({"metadata": {"labels": {"team": "blue"}}});
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::Merge(&other))
        .await
        .unwrap();
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "metadata changes do not bump generation"
    );

    // Applying again without the annotation removes it and starts a rollout.
    let reapplied = api
        .patch("web", &m, &Patch::Apply(applied(json!({}))))
        .await
        .unwrap();
    let template_annotations = reapplied
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone();
    assert!(
        !template_annotations.unwrap_or_default().contains_key("a"),
        "the annotation m stopped applying is still there"
    );
    assert_eq!(reapplied.metadata.labels.as_ref().unwrap()["team"], "blue");
    assert_eq!(reapplied.metadata.generation, Some(2));
    assert_eq!(
        reapplied.status.as_ref().unwrap().observed_generation,
        Some(1),
        "observedGeneration is the controller's, not set by the write"
    );
    let done = wait_rollout(&client, "default", "web").await;
    assert_eq!(done.status.unwrap().observed_generation, Some(2));
    assert_eq!(
        done.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        sets.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    // A second manager applying a conflicting value: 409 unless forced.
    let mut replicas = applied(json!({}));
    replicas["spec"]["replicas"] = json!(3);
    let mine = api
        .patch(
            "web",
            &PatchParams::apply("m"),
            &Patch::Apply(replicas.clone()),
        )
        .await
        .unwrap();
    assert_eq!(mine.spec.unwrap().replicas, Some(3));
    replicas["spec"]["replicas"] = json!(2);
    let err = api
        .patch(
            "web",
            &PatchParams::apply("other"),
            &Patch::Apply(replicas.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(409), "{err}");
    assert!(err.to_string().contains("conflict with \"m\""), "{err}");
    let forced = api
        .patch(
            "web",
            &PatchParams::apply("other").force(),
            &Patch::Apply(replicas),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().replicas, Some(2));

    // Merge patch: null removes a key.
    let add = json!({"metadata": {"annotations": {"note": "x", "keep": "y"}}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(&add))
        .await
        .unwrap();
    let remove = json!({"metadata": {"annotations": {"note": null}}});
    let d = api
        .patch("web", &PatchParams::default(), &Patch::Merge(&remove))
        .await
        .unwrap();
    let annotations = d.metadata.annotations.unwrap();
    assert!(!annotations.contains_key("note") && annotations["keep"] == "y");

    // JSON patch: test + replace bumps generation; a failing test is 422.
    let generation = d.metadata.generation.unwrap();
    let d: Deployment = client
        .request(json_patch(json!([
            {"op": "test", "path": "/spec/replicas", "value": 2},
            {"op": "replace", "path": "/spec/replicas", "value": 1},
        ])))
        .await
        .unwrap();
    assert_eq!(
        (d.spec.unwrap().replicas, d.metadata.generation),
        (Some(1), Some(generation + 1))
    );
    let err = client
        .request::<Deployment>(json_patch(
            json!([{"op": "test", "path": "/spec/replicas", "value": 5}]),
        ))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(422), "{err}");

    // The test-facing apply is the same machinery under manager "testkit".
    let mut obj = applied(json!({"b": "2"}));
    obj["spec"]["replicas"] = json!(1);
    let out = cluster.apply(obj).unwrap();
    assert_eq!(out["spec"]["template"]["metadata"]["annotations"]["b"], "2");
}

#[tokio::test]
async fn writes_are_versioned_and_validated_like_the_api_server() {
    let (_cluster, client) = start(Options::default()).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut bad = deployment("bad", "a", "v1", "a:1");
    bad.spec
        .as_mut()
        .unwrap()
        .template
        .metadata
        .as_mut()
        .unwrap()
        .labels = Some([("app".to_string(), "b".to_string())].into());
    let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
    assert_eq!(api_code(&err), Some(422));
    assert!(
        err.to_string()
            .contains("`selector` does not match template `labels`"),
        "{err}"
    );

    let d = api
        .create(&PostParams::default(), &deployment("ok", "a", "v1", "a:1"))
        .await
        .unwrap();
    let err = api
        .create(&PostParams::default(), &deployment("ok", "a", "v1", "a:1"))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(status.message, "deployments.apps \"ok\" already exists");

    // A replace with a stale resourceVersion is a conflict.
    let mut stale = d.clone();
    api.patch(
        "ok",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    stale.spec.as_mut().unwrap().replicas = Some(2);
    let err = api
        .replace("ok", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(409));
    assert!(
        err.to_string().contains("the object has been modified"),
        "{err}"
    );

    let err = api.get("missing").await.unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (status.code, status.message.as_str()),
        (404, "deployments.apps \"missing\" not found")
    );
}
