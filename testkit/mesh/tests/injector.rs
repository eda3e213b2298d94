//! The injector as an admission hook: what it adds with native sidecars, when it acts
//! (namespace labels, revisions, the pod label over the annotation), and the
//! annotate-only fault.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;
use testkit_mesh::{Fault, PortTarget};

/// Istio installed and `extra` applied, the injector having seen them.
async fn mesh_with(extra: Vec<Value>) -> World {
    let w = istio(fast_options()).await;
    for o in extra {
        w.cluster.apply(o);
    }
    assert!(w.mesh.settle_within(Duration::from_secs(20)).await);
    w
}

fn pod(labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "age-6d4b9c7f8-", "namespace": APP_NS, "labels": labels, "annotations": annotations,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "age-6d4b9c7f8", "controller": true}]},
        "spec": {"containers": [{"name": "age", "image": IMAGE, "ports": [{"containerPort": 5000, "name": "http"}],
                                 "env": [{"name": "SENTENCE_MODE", "value": "age"}]}]}
    })
}

fn ns(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP_NS, "labels": labels}})
}

fn container<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|c| c["name"] == name)
}

fn env<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    c["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str()
}

#[tokio::test]
async fn a_native_sidecar_is_injected_as_the_webhook_does() {
    needs_envoy!();
    let w = mesh_with(vec![]).await;
    let mut p = pod(
        json!({"app": "sentences-age", "mode": "age", "pod-template-hash": "6d4b9c7f8"}),
        json!({"dummy": "123"}),
    );
    w.mesh
        .inject(&mut p, &ns(json!({"istio-injection": "enabled"})));

    let inits: Vec<&str> = p["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(inits, ["istio-init", "istio-proxy"]);
    let containers: Vec<&str> = p["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        containers,
        ["age"],
        "native sidecars leave containers alone"
    );
    let proxy = container(&p["spec"]["initContainers"], "istio-proxy").unwrap();
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["image"], "docker.io/istio/proxyv2:1.31.0");
    assert_eq!(proxy["ports"][0]["containerPort"], 15090);
    assert_eq!(proxy["readinessProbe"]["httpGet"]["port"], 15021);
    assert_eq!(proxy["readinessProbe"]["httpGet"]["path"], "/healthz/ready");
    assert_eq!(proxy["args"][1], "sidecar");
    assert_eq!(env(proxy, "ISTIO_META_WORKLOAD_NAME"), Some("age"));
    assert_eq!(
        env(proxy, "ISTIO_META_OWNER"),
        Some("kubernetes://apis/apps/v1/namespaces/sentences/deployments/age")
    );
    assert_eq!(env(proxy, "CA_ADDR"), Some("istiod.istio-system.svc:15012"));
    assert_eq!(env(proxy, "ISTIO_META_APP_CONTAINERS"), Some("age"));
    let init = container(&p["spec"]["initContainers"], "istio-init").unwrap();
    assert_eq!(init["image"], "docker.io/istio/proxyv2:1.31.0");

    let labels = &p["metadata"]["labels"];
    assert_eq!(labels["security.istio.io/tlsMode"], "istio");
    assert_eq!(labels["service.istio.io/canonical-name"], "sentences-age");
    assert_eq!(labels["service.istio.io/canonical-revision"], "latest");
    let a = &p["metadata"]["annotations"];
    assert_eq!(a["istio.io/rev"], "default");
    assert_eq!(a["kubectl.kubernetes.io/default-container"], "age");
    assert_eq!(a["kubectl.kubernetes.io/default-logs-container"], "age");
    assert_eq!(a["prometheus.io/scrape"], "true");
    assert_eq!(a["prometheus.io/port"], "15020");
    assert_eq!(a["prometheus.io/path"], "/stats/prometheus");
    assert_eq!(a["dummy"], "123");
    // Byte for byte as pkg/kube/inject/testdata/inject/native-sidecar.yaml.injected.
    assert_eq!(
        a["sidecar.istio.io/status"],
        r#"{"initContainers":["istio-init","istio-proxy"],"containers":null,"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert","istio-ca-crl"],"imagePullSecrets":null,"revision":"default"}"#
    );
    let volumes: Vec<&str> = p["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(volumes.contains(&"istio-envoy") && volumes.contains(&"istiod-ca-cert"));
}

#[tokio::test]
async fn injection_follows_labels_annotations_and_revisions() {
    needs_envoy!();
    let canary = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "istiod-canary", "namespace": "istio-system", "labels": {"app": "istiod", "istio.io/rev": "canary"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "istiod", "istio.io/rev": "canary"}},
                 "template": {"metadata": {"labels": {"app": "istiod", "istio.io/rev": "canary", "sidecar.istio.io/inject": "false"}},
                              "spec": {"containers": [{"name": "discovery", "image": "docker.io/istio/pilot:1.31.1"}]}}}
    });
    let w = mesh_with(vec![canary]).await;
    let injected = |p: &Value| {
        p["spec"]["initContainers"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["name"] == "istio-proxy"))
    };
    let enabled = ns(json!({"istio-injection": "enabled"}));

    // The exercise's opt-out: annotation "false".
    let mut p = pod(
        json!({"app": "a"}),
        json!({"sidecar.istio.io/inject": "false"}),
    );
    let before = p.clone();
    w.mesh.inject(&mut p, &enabled);
    assert_eq!(p, before, "an opted-out pod is not touched");

    // The label wins over the annotation.
    let mut p = pod(
        json!({"app": "a", "sidecar.istio.io/inject": "true"}),
        json!({"sidecar.istio.io/inject": "false"}),
    );
    w.mesh.inject(&mut p, &enabled);
    assert!(injected(&p));
    let mut p = pod(
        json!({"app": "a", "sidecar.istio.io/inject": "false"}),
        json!({"sidecar.istio.io/inject": "true"}),
    );
    w.mesh.inject(&mut p, &enabled);
    assert!(!injected(&p));

    // No namespace label: only a pod label opts in.
    let mut p = pod(json!({"app": "a"}), json!({}));
    w.mesh.inject(&mut p, &ns(json!({})));
    assert!(!injected(&p));
    let mut p = pod(
        json!({"app": "a", "sidecar.istio.io/inject": "true"}),
        json!({}),
    );
    w.mesh.inject(&mut p, &ns(json!({})));
    assert!(injected(&p));
    let mut p = pod(json!({"app": "a"}), json!({}));
    w.mesh
        .inject(&mut p, &ns(json!({"istio-injection": "disabled"})));
    assert!(!injected(&p));

    // A revision: its istiod's tag and CA address.
    let mut p = pod(json!({"app": "a"}), json!({}));
    w.mesh
        .inject(&mut p, &ns(json!({"istio.io/rev": "canary"})));
    let proxy = container(&p["spec"]["initContainers"], "istio-proxy").expect("injected by canary");
    assert_eq!(proxy["image"], "docker.io/istio/proxyv2:1.31.1");
    assert_eq!(
        env(proxy, "CA_ADDR"),
        Some("istiod-canary.istio-system.svc:15012")
    );
    assert_eq!(p["metadata"]["annotations"]["istio.io/rev"], "canary");
    // A revision nobody serves: no webhook.
    let mut p = pod(json!({"app": "a"}), json!({}));
    w.mesh.inject(&mut p, &ns(json!({"istio.io/rev": "nope"})));
    assert!(!injected(&p));

    // Classic sidecar on request.
    let mut p = pod(
        json!({"app": "a"}),
        json!({"sidecar.istio.io/nativeSidecar": "false"}),
    );
    w.mesh.inject(&mut p, &enabled);
    assert_eq!(p["spec"]["containers"][1]["name"], "istio-proxy");
    assert!(p["spec"]["containers"][1].get("restartPolicy").is_none());
    assert_eq!(p["spec"]["initContainers"][0]["name"], "istio-init");
}

#[tokio::test]
async fn the_annotate_only_fault_leaves_no_sidecar() {
    needs_envoy!();
    let w = exercise(fast_options()).await;
    w.mesh.set_fault(Fault::InjectorAnnotatesOnly);
    enable_injection(&w.cluster, "age").await;
    let age = w.cluster.pod_of(APP_NS, "age");
    assert!(age["metadata"]["annotations"]["sidecar.istio.io/status"].is_string());
    assert!(age["spec"]["initContainers"].is_null(), "{age}");
    assert!(matches!(
        w.mesh.port_target(&age, 15000),
        PortTarget::Refused(_)
    ));
    // So STRICT is not enforced on it: traffic still flows.
    w.cluster.apply(peer_auth("STRICT"));
    w.mesh.settle().await;
    let (code, body) = w.through_gateway().await;
    assert!(code == 200 && is_sentence(&body), "{code} {body}");
}
