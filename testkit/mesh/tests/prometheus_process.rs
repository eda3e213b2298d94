//! A real Prometheus (Debian's `/usr/bin/prometheus`) scraping the mesh's file_sd targets
//! every second: targets of the addon's `kubernetes-pods` job come up, Istio's counters
//! arrive with the labels the harness queries, the loaded config reads back, and the
//! Prometheus pod's port 9090 leads to it. Skipped (with the reason printed) when the
//! binary is absent, unless `HARNESS_REQUIRE_ALL_TESTS` is set.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use testkit_mesh::{Fault, PortTarget, PrometheusProcess};

const BINARY: &str = "/usr/bin/prometheus";

async fn query(p: &PrometheusProcess, q: &str) -> Vec<Value> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let Ok((200, body)) = p.get(&format!("/api/v1/query?query={enc}")).await else {
        return vec![];
    };
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value(v: &Value) -> f64 {
    v["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn prometheus_scrapes_the_sidecars_with_the_addons_labels() {
    if !Path::new(BINARY).exists() {
        if std::env::var_os("HARNESS_REQUIRE_ALL_TESTS").is_some() {
            panic!("{BINARY} is absent and HARNESS_REQUIRE_ALL_TESTS is set");
        }
        println!("skipped: {BINARY} is absent (apt-get install prometheus)");
        return;
    }
    needs_envoy!();
    let w = exercise(fast_options()).await;
    enable_injection_all(&w.cluster, &["sentences", "age", "name", "name-v2"]).await;
    w.cluster.apply(peer_auth("STRICT"));
    w.mesh.settle().await;
    let prom = PrometheusProcess::start(
        Path::new(BINARY),
        &w.mesh.file_sd_path(),
        Duration::from_secs(1),
    )
    .await
    .expect("prometheus starts");

    let (status, body) = prom.get("/api/v1/status/config").await.unwrap();
    assert_eq!(status, 200);
    let cfg: Value = serde_json::from_str(&body).unwrap();
    let yaml = cfg["data"]["yaml"].as_str().unwrap();
    assert!(yaml.contains("scrape_interval: 1s"), "{yaml}");
    assert!(yaml.contains("job_name: kubernetes-pods"));

    let up = r#"up{job="kubernetes-pods",namespace="sentences"}"#;
    let targets = eventually(Duration::from_secs(15), || async {
        let r = query(&prom, up).await;
        (r.len() == 4 && r.iter().all(|s| value(s) == 1.0)).then_some(r)
    })
    .await
    .expect("the four sidecars are scraped");
    let apps: Vec<&str> = targets
        .iter()
        .filter_map(|t| t["metric"]["app"].as_str())
        .collect();
    assert!(apps.contains(&"sentences-age") && apps.contains(&"sentences"));
    assert!(targets.iter().all(|t| t["metric"]["pod"].is_string()));

    for _ in 0..5 {
        let (code, body) = w.through_gateway().await;
        assert!(code == 200 && is_sentence(&body));
    }
    let q = r#"sum by (source_workload, destination_workload) (istio_requests_total{reporter="destination",connection_security_policy="mutual_tls",namespace="sentences"})"#;
    let edges = eventually(Duration::from_secs(10), || async {
        let r = query(&prom, q).await;
        let total: f64 = r.iter().map(value).sum();
        (r.len() >= 4 && total >= 15.0).then_some(r)
    })
    .await
    .expect("mTLS requests reach Prometheus");
    assert!(
        edges
            .iter()
            .any(|e| e["metric"]["source_workload"] == "istio-ingressgateway"
                && e["metric"]["destination_workload"] == "sentences")
    );

    // The Prometheus pod's port leads to this process.
    w.mesh.set_prometheus(prom.address);
    let pod = w.cluster.pod_of("istio-system", "prometheus");
    assert_eq!(
        w.mesh.port_target(&pod, 9090),
        PortTarget::Tcp(prom.address)
    );

    // A proxy whose metrics fail goes down in Prometheus.
    w.mesh.set_fault(Fault::NoTelemetry {
        workload: "age".into(),
    });
    let down = eventually(Duration::from_secs(10), || async {
        let r = query(
            &prom,
            r#"up{job="kubernetes-pods",namespace="sentences",app="sentences-age"}"#,
        )
        .await;
        (r.len() == 1 && value(&r[0]) == 0.0).then_some(())
    })
    .await;
    assert!(down.is_some(), "age's target never went down");
    let pid = prom.pid();
    drop(prom);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "prometheus {pid} still runs"
    );
}
