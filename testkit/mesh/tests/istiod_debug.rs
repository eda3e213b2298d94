//! istiod's debug endpoints of the stand-in: `/debug/syncz` and `/debug/sidecarz`
//! follow what the proxies' real Envoys applied (a proxy acks a push once its Envoy
//! asked again at that version, and its config dump then shows that version), push
//! versions change with the config and only then, and the faults that make istiod's
//! account unreadable or STALE.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;
use testkit_mesh::{Fault, MeshOptions};

impl World {
    async fn istiod(&self, path: &str) -> (u16, String) {
        let istiod = self.cluster.pod_of("istio-system", "istiod");
        http_get(self.target(&istiod, 15014), "localhost", path)
            .await
            .expect("istiod answers")
    }

    async fn syncz(&self) -> Vec<Value> {
        let (status, body) = self.istiod("/debug/syncz").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    async fn entry(&self, deployment_ns: &str, deployment: &str) -> Value {
        let pod = self.cluster.pod_of(deployment_ns, deployment);
        let id = format!(
            "{}.{deployment_ns}",
            pod["metadata"]["name"].as_str().unwrap()
        );
        self.syncz()
            .await
            .into_iter()
            .find(|e| e["proxy"] == id.as_str())
            .unwrap_or_else(|| panic!("no syncz entry for {id}"))
    }
}

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

fn version(nonce: &Value) -> String {
    let n = nonce.as_str().unwrap();
    n[..n.len() - 36].to_string()
}

#[tokio::test]
async fn a_proxy_acks_the_push_its_envoy_serves_and_its_scope_carries_the_rule() {
    needs_envoy!();
    let w = exercise(MeshOptions {
        push_delay: Duration::from_millis(400),
        ..fast_options()
    })
    .await;
    enable_injection_all(&w.cluster, &["sentences", "age", "name", "name-v2"]).await;
    w.mesh.settle().await;

    let before = w.entry(APP_NS, "sentences").await;
    assert_eq!(before["proxy_type"], "sidecar");
    assert_eq!(before["istio_version"], VERSION);
    assert_eq!(before["cluster_sent"], before["cluster_acked"]);
    let cds = &before["resources"][CDS];
    assert_eq!(cds["sent"], cds["acked"]);
    assert!(cds["sentTime"].as_str().unwrap().ends_with('Z'));
    // Nothing changes, nothing is pushed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.entry(APP_NS, "sentences").await, before);
    let old = version(&cds["acked"]);

    for o in dest_rule() {
        w.cluster.apply(o);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // istiod has the rule, the proxies do not yet: still synced to the old push.
    let pending = w.entry(APP_NS, "sentences").await;
    assert_eq!(version(&pending["resources"][CDS]["acked"]), old);
    let id = pending["proxy"].as_str().unwrap().to_string();
    let (status, body) = w.istiod(&format!("/debug/sidecarz?proxyID={id}")).await;
    assert_eq!(status, 200, "{body}");
    let scope: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(scope["version"], old.as_str());
    assert!(scope["destinationRules"].as_object().unwrap().is_empty());

    w.mesh.settle().await;
    let after = w.entry(APP_NS, "sentences").await;
    let new = version(&after["resources"][CDS]["acked"]);
    assert_ne!(new, old);
    let (_, body) = w.istiod(&format!("/debug/sidecarz?proxyID={id}")).await;
    let scope: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(scope["version"], new.as_str());
    assert_eq!(scope["namespace"], APP_NS);
    let rules = &scope["destinationRules"]["name.sentences.svc.cluster.local"];
    assert_eq!(rules[0]["from"][0]["Name"], "name");
    assert_eq!(rules[0]["rule"]["name"], "name");
    assert_eq!(rules[0]["rule"]["Spec"]["subsets"][0]["name"], "name-v1");
    // Envoy shows the version of the push that brought a cluster (the subset clusters
    // came with the rule); clusters that push left alone keep their older version.
    let dump = w
        .admin(
            APP_NS,
            "sentences",
            "/config_dump?resource=dynamic_active_clusters",
        )
        .await;
    let v1 = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cluster"]["name"] == "outbound|5000|name-v1|name.sentences.svc.cluster.local")
        .expect("the subset cluster is active");
    assert_eq!(v1["version_info"], new.as_str());

    let gateway = w.entry("istio-system", "istio-ingressgateway").await;
    assert_eq!(gateway["proxy_type"], "router");
    assert!(
        gateway["resources"]["type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"]
            .is_object()
    );
}

#[tokio::test]
async fn lookups_and_faults_answer_as_istiod_does() {
    needs_envoy!();
    let w = exercise(fast_options()).await;
    enable_injection(&w.cluster, "sentences").await;
    w.mesh.settle().await;
    let (status, body) = w.istiod("/debug/sidecarz").await;
    assert_eq!(
        (status, body.as_str()),
        (400, "You must provide a proxyID in the query string\n")
    );
    let (status, _) = w.istiod("/debug/sidecarz?proxyID=nobody.nowhere").await;
    assert_eq!(status, 404);
    // The proxy of a workload whose acks istiod never sees is STALE.
    w.mesh.set_fault(Fault::ProxyNeverAcks {
        workload: "sentences".into(),
    });
    let e = w.entry(APP_NS, "sentences").await;
    assert!(e["resources"][CDS]["sent"].is_string());
    assert!(e["resources"][CDS].get("acked").is_none());
    assert!(e.get("cluster_acked").is_none());
    w.mesh.set_fault(Fault::DebugOnHttpDisabled);
    assert_eq!(w.istiod("/debug/syncz").await.0, 404);
}
