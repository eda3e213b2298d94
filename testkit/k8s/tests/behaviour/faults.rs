//! Injected faults as the client sees them.

use crate::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use testkit_k8s::ApiFault;

#[tokio::test]
async fn status_faults_hangs_and_dropped_connections() {
    let (cluster, client) = start(Options::default()).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    cluster.fault(
        Some("GET"),
        "/api/v1/namespaces",
        ApiFault::Status { code: 403, reason: "Forbidden".into(), message: "namespaces is forbidden: User \"dev\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope".into() },
        Some(1),
    );
    let err = namespaces
        .list(&ListParams::default().limit(1))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err}")
    };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert!(status.message.starts_with("namespaces is forbidden"));
    // `times` ran out: the next request is served.
    let list = namespaces
        .list(&ListParams::default().limit(1))
        .await
        .unwrap();
    assert!(
        list.items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("default"))
    );

    cluster.fault(None, "/version", ApiFault::Hang, None);
    let hung = tokio::time::timeout(Duration::from_secs(1), client.apiserver_version()).await;
    assert!(hung.is_err(), "a hanging /version answered");

    cluster.clear_faults();
    cluster.fault(
        None,
        "/api/v1/namespaces",
        ApiFault::CloseConnection,
        Some(1),
    );
    let err = namespaces.get("default").await.unwrap_err();
    assert_eq!(
        api_code(&err),
        None,
        "a dropped connection is not an API error: {err}"
    );

    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (
            version.major.as_str(),
            version.minor.as_str(),
            version.git_version.as_str()
        ),
        ("1", "34", "v1.34.0")
    );
    let seen = cluster.requests();
    assert_eq!(seen.iter().filter(|r| r.path == "/version").count(), 2);
    assert!(seen.iter().any(|r| r.method == "GET"
        && r.path == "/api/v1/namespaces"
        && r.query.contains("limit=1")));
}
