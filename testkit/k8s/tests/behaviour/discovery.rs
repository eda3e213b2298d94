//! Discovery as kube resolves kinds, and one kind served under several versions.

use crate::*;
use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use kube::discovery::{self, Discovery, Scope};

#[tokio::test]
async fn kube_discovery_resolves_served_kinds_and_rejects_unknown_groups() {
    let (_cluster, client) = start(Options::default()).await;
    let gvk = GroupVersionKind::gvk("security.istio.io", "v1", "PeerAuthentication");
    let (ar, caps) = discovery::pinned_kind(&client, &gvk).await.unwrap();
    assert_eq!(
        (ar.plural.as_str(), ar.api_version.as_str()),
        ("peerauthentications", "security.istio.io/v1")
    );
    assert_eq!(caps.scope, Scope::Namespaced);

    let (ar, caps) =
        discovery::pinned_kind(&client, &GroupVersionKind::gvk("apps", "v1", "Deployment"))
            .await
            .unwrap();
    assert_eq!(ar.plural, "deployments");
    let subresources: Vec<&str> = caps
        .subresources
        .iter()
        .map(|(r, _)| r.plural.as_str())
        .collect();
    assert!(
        subresources.contains(&"status") && subresources.contains(&"scale"),
        "{subresources:?}"
    );

    let (_, caps) = discovery::pinned_kind(&client, &GroupVersionKind::gvk("", "v1", "Namespace"))
        .await
        .unwrap();
    assert_eq!(caps.scope, Scope::Cluster);

    let err = discovery::pinned_kind(
        &client,
        &GroupVersionKind::gvk("nope.example.com", "v1", "Thing"),
    )
    .await
    .unwrap_err();
    assert_eq!(api_code(&err), Some(404), "{err}");
    assert!(
        discovery::pinned_kind(&client, &GroupVersionKind::gvk("apps", "v1", "Nope"))
            .await
            .is_err()
    );

    let all = Discovery::new(client.clone()).run().await.unwrap();
    assert!(all.has_group("networking.istio.io"));
    let net = all.get("networking.istio.io").unwrap();
    assert_eq!(net.preferred_version_or_latest(), "v1");

    let aggregated = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert!(aggregated.has_group("security.istio.io") && aggregated.has_group(""));
    let apps = aggregated.get("apps").unwrap();
    let (deploy, caps) = apps.recommended_kind("Deployment").unwrap();
    assert_eq!(
        (deploy.plural.as_str(), caps.scope.clone()),
        ("deployments", Scope::Namespaced)
    );

    // One object, whichever version writes or reads it; answers carry the asked version.
    let (beta, _) = discovery::pinned_kind(
        &client,
        &GroupVersionKind::gvk("networking.istio.io", "v1beta1", "VirtualService"),
    )
    .await
    .unwrap();
    let (v1, _) = discovery::pinned_kind(
        &client,
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
    )
    .await
    .unwrap();
    let beta_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &beta);
    let v1_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &v1);
    let mut vs = DynamicObject::new("route", &beta);
    vs.data = json!({"spec": {"hosts": ["name"], "http": [{"route": [{"destination": {"host": "name"}}]}]}});
    beta_api.create(&PostParams::default(), &vs).await.unwrap();
    let read = v1_api.get("route").await.unwrap();
    assert_eq!(read.types.unwrap().api_version, "networking.istio.io/v1");
    assert_eq!(read.data["spec"]["hosts"][0], "name");
}

#[tokio::test]
async fn istio_kinds_can_wait_for_their_crds() {
    let options = Options {
        istio_kinds_preinstalled: false,
        ..Default::default()
    };
    let (cluster, client) = start(options).await;
    let gvk = GroupVersionKind::gvk("security.istio.io", "v1", "PeerAuthentication");
    let err = discovery::pinned_kind(&client, &gvk).await.unwrap_err();
    assert_eq!(api_code(&err), Some(404), "{err}");
    cluster
        .create(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "peerauthentications.security.istio.io"},
            "spec": {"group": "security.istio.io", "scope": "Namespaced",
                     "names": {"kind": "PeerAuthentication", "plural": "peerauthentications", "singular": "peerauthentication", "shortNames": ["pa"]},
                     "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                                  {"name": "v1beta1", "served": true, "storage": false}]},
        }))
        .unwrap();
    let (ar, _) = eventually("the CRD established", DEADLINE, || {
        let client = client.clone();
        let gvk = gvk.clone();
        async move { discovery::pinned_kind(&client, &gvk).await.ok() }
    })
    .await;
    assert_eq!(ar.plural, "peerauthentications");
    let crd = cluster
        .get(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            None,
            "peerauthentications.security.istio.io",
        )
        .unwrap();
    assert!(
        crd["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );
}
