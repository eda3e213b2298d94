//! Benchmark (not a test): how long one telemetry phase (O5's four padlocked edges)
//! takes against a real Prometheus at the harness's scrape interval (5 s, what the run
//! sets on the addon) and at the addon's stock 15 s. A loopback exporter serves
//! `istio_requests_total`; the phase's "traffic" adds to its counters. Needs the
//! `prometheus` binary (apt-get install prometheus). Run:
//! `cargo run --release -p harness --example telemetry_phase`

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Reply, serve};
use harness::expect::mtls;
use harness::telemetry::phase::{self, Traffic};
use harness::telemetry::prometheus::Prometheus;
use harness::telemetry::targets::Targets;
use harness::verdict::{EdgeExpectation, Verdict};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit_mesh::PrometheusProcess;

const RUNS: usize = 3;
const EDGES: [(&str, &str); 4] = [
    ("istio-ingressgateway", "sentences"),
    ("sentences", "age"),
    ("sentences", "name"),
    ("sentences", "name-v2"),
];

fn exposition(count: f64) -> String {
    let mut out = String::from("# TYPE istio_requests_total counter\n");
    for (src, dst) in EDGES {
        let version = if dst.ends_with("-v2") { "v2" } else { "v1" };
        out.push_str(&format!(
            "istio_requests_total{{reporter=\"destination\",source_workload=\"{src}\",destination_workload=\"{dst}\",destination_version=\"{version}\",connection_security_policy=\"mutual_tls\",response_code=\"200\"}} {count}\n"
        ));
    }
    out
}

async fn phase_durations(binary: &std::path::Path, interval: Duration) -> Vec<Duration> {
    let count = Arc::new(Mutex::new(0.0_f64));
    let served = Arc::clone(&count);
    let exporter = serve(move |path, _| match path {
        "/metrics" => Reply::Http {
            status: 200,
            body: exposition(*served.lock().expect("counter")).into_bytes(),
            content_type: "text/plain; version=0.0.4",
        },
        _ => Reply::text(404, "no"),
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file_sd = dir.path().join("targets.json");
    std::fs::write(
        &file_sd,
        format!("[{{\"targets\":[\"{}\"],\"labels\":{{}}}}]", exporter.addr),
    )
    .expect("file_sd written");
    let process = PrometheusProcess::start(binary, &file_sd, interval)
        .await
        .expect("prometheus starts");
    let prometheus = Prometheus::new(&process.url).expect("prometheus client");
    let targets = Targets::Selector(r#"up{job="kubernetes-pods"}"#.into());
    let edges: Vec<EdgeExpectation> = EDGES
        .iter()
        .map(|(from, to)| EdgeExpectation::new(from, to, true))
        .collect();
    let mut durations = Vec::new();
    for _ in 0..RUNS {
        let count = Arc::clone(&count);
        let started = Instant::now();
        let judgement = phase::run(
            &prometheus,
            &targets,
            Duration::from_secs(180),
            || async move {
                *count.lock().expect("counter") += 20.0;
                Ok(Traffic {
                    summary: "20 requests per edge".into(),
                    ..Traffic::default()
                })
            },
            |deltas, traffic| mtls::look(&edges, &[], deltas, traffic),
        )
        .await;
        assert_eq!(
            judgement.verdict,
            Verdict::Passed,
            "{:#?}",
            judgement.evidence
        );
        durations.push(started.elapsed());
    }
    durations
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(binary) = common::find_binary("prometheus") else {
        eprintln!("no `prometheus` binary on PATH: apt-get install prometheus");
        std::process::exit(1);
    };
    println!("one telemetry phase (O5, 4 edges), {RUNS} runs per scrape interval:");
    for seconds in [5, 15] {
        let durations = phase_durations(&binary, Duration::from_secs(seconds)).await;
        let shown: Vec<String> = durations
            .iter()
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .collect();
        let mean = durations.iter().sum::<Duration>() / durations.len() as u32;
        println!(
            "  scrape interval {seconds:>2} s: mean {:5.1} s  ({})",
            mean.as_secs_f64(),
            shown.join(", ")
        );
    }
}
