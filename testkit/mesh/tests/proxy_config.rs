//! What the real Envoys' admin shows of the config the stand-in istiod sends: config
//! dump shapes (auto mTLS, subsets under DISABLE and ISTIO_MUTUAL, endpoint metadata),
//! config arriving after `push_delay`, Envoy's own TLS failure text when ISTIO_MUTUAL
//! meets a pod without a sidecar, server_info.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;
use testkit_mesh::{MeshOptions, PortTarget};

fn cluster<'a>(dump: &'a Value, name: &str) -> Option<&'a Value> {
    dump["configs"]
        .as_array()?
        .iter()
        .find_map(|c| {
            c["dynamic_active_clusters"]
                .as_array()?
                .iter()
                .find(|d| d["cluster"]["name"] == name)
        })
        .map(|d| &d["cluster"])
}

fn endpoints(dump: &Value, name: &str) -> Vec<Value> {
    dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump")
        .flat_map(|c| c["dynamic_endpoint_configs"].as_array().unwrap())
        .filter(|e| e["endpoint_config"]["cluster_name"] == name)
        .flat_map(|e| {
            e["endpoint_config"]["endpoints"][0]["lb_endpoints"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn tls_mode(e: &Value) -> Option<&str> {
    e["metadata"]["filter_metadata"]["envoy.transport_socket_match"]["tlsMode"].as_str()
}

#[tokio::test]
async fn auto_mtls_marks_only_sidecar_endpoints() {
    needs_envoy!();
    let w = exercise(fast_options()).await;
    enable_injection_all(&w.cluster, &["sentences", "age"]).await;
    w.mesh.settle().await;
    let dump = w
        .admin(APP_NS, "sentences", "/config_dump?include_eds")
        .await;
    let types: Vec<&str> = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["@type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
            "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "type.googleapis.com/envoy.admin.v3.ScopedRoutesConfigDump",
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
            "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
        ]
    );
    for svc in ["age", "name"] {
        let c = cluster(
            &dump,
            &format!("outbound|5000||{svc}.sentences.svc.cluster.local"),
        )
        .unwrap();
        assert_eq!(c["type"], "EDS");
        let m = &c["transport_socket_matches"];
        assert_eq!(m[0]["name"], "tlsMode-istio");
        assert_eq!(m[0]["match"]["tlsMode"], "istio");
        assert_eq!(
            m[0]["transport_socket"]["name"],
            "envoy.transport_sockets.tls"
        );
        assert_eq!(
            m[0]["transport_socket"]["typed_config"]["common_tls_context"]["tls_certificate_sds_secret_configs"]
                [0]["name"],
            "default"
        );
        assert_eq!(m[1]["name"], "tlsMode-disabled");
        assert_eq!(m[1]["match"], serde_json::json!({}));
        assert_eq!(
            m[1]["transport_socket"]["name"],
            "envoy.transport_sockets.raw_buffer"
        );
        assert!(c.get("transport_socket").is_none());
        assert_eq!(
            c["metadata"]["filter_metadata"]["istio"]["services"][0]["name"],
            svc
        );
    }
    let age = endpoints(&dump, "outbound|5000||age.sentences.svc.cluster.local");
    assert_eq!(age.len(), 1);
    assert_eq!(tls_mode(&age[0]), Some("istio"));
    assert_eq!(
        age[0]["metadata"]["filter_metadata"]["istio"]["workload"],
        "age;sentences;sentences-age;;Kubernetes"
    );
    let name = endpoints(&dump, "outbound|5000||name.sentences.svc.cluster.local");
    assert_eq!(name.len(), 2);
    assert!(
        name.iter().all(|e| tls_mode(e).is_none()),
        "no sidecar, no tlsMode"
    );
    let workloads: Vec<&str> = name
        .iter()
        .map(|e| {
            e["metadata"]["filter_metadata"]["istio"]["workload"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(workloads.contains(&"name;sentences;sentences-name;v1;Kubernetes"));
    assert!(workloads.contains(&"name-v2;sentences;sentences-name;v2;Kubernetes"));

    // The workload certificate and the root it trusts, from SDS, as Envoy shows them.
    let secrets: Vec<&Value> = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.SecretsConfigDump")
        .flat_map(|c| c["dynamic_active_secrets"].as_array().unwrap())
        .collect();
    let secret = |name: &str| {
        secrets
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| &s["secret"])
            .unwrap_or_else(|| panic!("no secret {name} in {secrets:?}"))
    };
    let root = &secret("ROOTCA")["validation_context"]["trusted_ca"];
    assert!(
        root["inline_bytes"].is_string() || root["inline_string"].is_string(),
        "{root}"
    );
    let cert = &secret("default")["tls_certificate"];
    assert!(cert["certificate_chain"].is_object(), "{cert}");
    assert_eq!(cert["private_key"]["inline_string"], "[redacted]", "{cert}");

    // resource= returns typed items.
    let only = w
        .admin(
            APP_NS,
            "sentences",
            "/config_dump?resource=dynamic_active_clusters",
        )
        .await;
    let first = &only["configs"][0];
    assert_eq!(
        first["@type"],
        "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster"
    );
    assert!(first["cluster"]["name"].is_string() && first["version_info"].is_string());
}

#[tokio::test]
async fn subsets_follow_the_destination_rule_after_the_push_delay() {
    needs_envoy!();
    let w = exercise(MeshOptions {
        push_delay: Duration::from_millis(400),
        ..fast_options()
    })
    .await;
    enable_injection(&w.cluster, "sentences").await;
    w.mesh.settle().await;
    let applied = tokio::time::Instant::now();
    for o in dest_rule() {
        w.cluster.apply(o);
    }
    let dump = w
        .admin(
            APP_NS,
            "sentences",
            "/config_dump?resource=dynamic_active_clusters",
        )
        .await;
    assert!(
        cluster_in_items(
            &dump,
            "outbound|5000|name-v1|name.sentences.svc.cluster.local"
        )
        .is_none(),
        "config reached the proxy before the push delay"
    );
    let dump = eventually(Duration::from_secs(5), || async {
        let d = w
            .admin(APP_NS, "sentences", "/config_dump?include_eds")
            .await;
        cluster(&d, "outbound|5000|name-v1|name.sentences.svc.cluster.local")
            .is_some()
            .then_some(d)
    })
    .await
    .expect("subsets arrive");
    assert!(applied.elapsed() >= Duration::from_millis(400));
    let v1 = cluster(
        &dump,
        "outbound|5000|name-v1|name.sentences.svc.cluster.local",
    )
    .unwrap();
    assert!(v1.get("transport_socket").is_none() && v1.get("transport_socket_matches").is_none());
    assert_eq!(
        v1["metadata"]["filter_metadata"]["istio"]["subset"],
        "name-v1"
    );
    assert_eq!(
        v1["metadata"]["filter_metadata"]["istio"]["config"],
        "/apis/networking.istio.io/v1/namespaces/sentences/destination-rule/name"
    );
    let v2 = cluster(
        &dump,
        "outbound|5000|name-v2|name.sentences.svc.cluster.local",
    )
    .unwrap();
    assert_eq!(
        v2["transport_socket"]["name"],
        "envoy.transport_sockets.tls"
    );
    assert!(v2.get("transport_socket_matches").is_none());
    let sans = &v2["transport_socket"]["typed_config"]["common_tls_context"]["combined_validation_context"]
        ["default_validation_context"]["match_subject_alt_names"];
    assert_eq!(
        sans[0]["exact"],
        "spiffe://cluster.local/ns/sentences/sa/default"
    );
    // The rule's subsets decide endpoint metadata: ISTIO_MUTUAL marks v2 even without a
    // sidecar there (mtls_checker.go), DISABLE marks nothing.
    let e1 = endpoints(
        &dump,
        "outbound|5000|name-v1|name.sentences.svc.cluster.local",
    );
    let e2 = endpoints(
        &dump,
        "outbound|5000|name-v2|name.sentences.svc.cluster.local",
    );
    assert_eq!((e1.len(), e2.len()), (1, 1));
    assert_eq!(tls_mode(&e1[0]), None);
    assert_eq!(tls_mode(&e2[0]), Some("istio"));
    // With v2 lacking a sidecar, ISTIO_MUTUAL fails the handshake: the frontend pastes
    // Envoy's 503 body into its sentence whenever the route picks v2.
    w.mesh.settle().await;
    let mut tls_errors = vec![];
    for _ in 0..20 {
        let (code, body) = w.through_gateway().await;
        assert_eq!(code, 200, "{body}");
        // Envoy 1.40's words (the transport failure is in its access log only).
        if body.starts_with("upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure is ") {
            tls_errors.push(body);
        } else {
            assert!(is_sentence(&body), "{body}");
        }
    }
    assert!(!tls_errors.is_empty());
    // BoringSSL's own reason for a peer that answers the ClientHello in plaintext, in
    // the caller's access log (`%UPSTREAM_TRANSPORT_FAILURE_REASON%`, flags `URX,UF`).
    let pod = w.cluster.pod_of(APP_NS, "sentences");
    let logs = w
        .mesh
        .proxy_logs(APP_NS, pod["metadata"]["name"].as_str().unwrap());
    assert!(
        logs.iter()
            .any(|l| l.contains(" 503 URX,UF ") && l.contains("WRONG_VERSION_NUMBER")),
        "{}",
        logs.join("\n")
    );
}

fn cluster_in_items<'a>(dump: &'a Value, name: &str) -> Option<&'a Value> {
    dump["configs"]
        .as_array()?
        .iter()
        .find(|c| c["cluster"]["name"] == name)
}

#[tokio::test]
async fn server_info_names_the_node_and_the_envoy_that_runs() {
    needs_envoy!();
    let w = exercise(fast_options()).await;
    enable_injection(&w.cluster, "age").await;
    let info = w.admin(APP_NS, "age", "/server_info").await;
    assert_eq!(info["state"], "LIVE");
    assert_eq!(info["node"]["metadata"]["ISTIO_VERSION"], "1.31.0");
    // The Envoy that really runs.
    assert!(
        info["version"].as_str().unwrap().contains("/1.40."),
        "{}",
        info["version"]
    );
    let ip = w.pod_ip(APP_NS, "age");
    assert_eq!(
        info["node"]["id"].as_str().unwrap(),
        format!(
            "sidecar~{ip}~{}.sentences~sentences.svc.cluster.local",
            w.cluster.pod_of(APP_NS, "age")["metadata"]["name"]
                .as_str()
                .unwrap()
        )
    );
    let gw = w
        .admin("istio-system", "istio-ingressgateway", "/server_info")
        .await;
    assert!(gw["node"]["id"].as_str().unwrap().starts_with("router~"));

    // A pod without a sidecar has no admin port.
    assert!(matches!(
        w.mesh.port_target(&w.cluster.pod_of(APP_NS, "name"), 15000),
        PortTarget::Refused(_)
    ));
    // The app's own port answers directly.
    let (code, body) = http_get(
        w.target(&w.cluster.pod_of(APP_NS, "name"), 5000),
        "x",
        "/choices",
    )
    .await
    .unwrap();
    assert_eq!((code, body.as_str()), (200, "['Peter', 'Ray', 'Egon']"));
}
