//! The HTTPS mode and kubeconfigs.

use crate::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};

fn ca_and_server() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "testkit CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let server = params.signed_by(&server_key, &issuer).unwrap();
    (
        ca.pem(),
        format!("{}{}", server.pem(), ca.pem()),
        server_key.serialize_pem(),
    )
}

async fn client_from(path: &std::path::Path, context: &str) -> kube::Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(path).unwrap();
    let options = KubeConfigOptions {
        context: Some(context.into()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .unwrap();
    kube::Client::try_from(config)
}

#[tokio::test]
async fn a_written_kubeconfig_reaches_the_fake() {
    let (cluster, _) = start(Options::default()).await;
    let dir = std::env::temp_dir().join(format!("testkit-k8s-kubeconfig-{}", std::process::id()));
    let path = dir.join("config");
    cluster.write_kubeconfig(&path, "kind-mtls").unwrap();
    let client = client_from(&path, "kind-mtls").await.unwrap();
    assert_eq!(
        client.apiserver_version().await.unwrap().git_version,
        "v1.34.0"
    );
    let seen = cluster.requests();
    assert!(seen.iter().all(|r| r.path == "/version"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn tls_mode_serves_https_and_a_foreign_ca_is_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (_, chain, key) = ca_and_server();
    let cluster = FakeCluster::start_tls(Options::default(), &chain, &key)
        .await
        .unwrap();
    assert!(cluster.url().starts_with("https://127.0.0.1:"));
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    assert!(
        !namespaces
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let dir = std::env::temp_dir().join(format!("testkit-k8s-tls-{}", std::process::id()));
    let good = dir.join("good");
    cluster.write_kubeconfig(&good, "fake").unwrap();
    let client = client_from(&good, "fake").await.unwrap();
    client.apiserver_version().await.unwrap();

    let (other_ca, _, _) = ca_and_server();
    let bad = dir.join("bad");
    cluster
        .write_kubeconfig_with_ca(&bad, "fake", &other_ca)
        .unwrap();
    let client = client_from(&bad, "fake").await.unwrap();
    let err = client.apiserver_version().await.unwrap_err();
    assert!(api_code(&err).is_none(), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
