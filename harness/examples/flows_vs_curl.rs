//! Benchmark (not a test): time to a K=20 "flows" verdict by the prober, against a loop
//! of `curl` with a 0.3 s sleep as in the exercise's `loop-query-loadbalancer-ep.sh`,
//! side by side against the same loopback server. Run:
//! `cargo run --release -p harness --example flows_vs_curl`

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Reply, serve};
use harness::expect::traffic::flows;
use harness::probe::http::{HttpProbe, Target};
use harness::probe::sentence::Grammar;
use harness::verdict::Verdict;
use std::sync::Arc;
use std::time::{Duration, Instant};

const K: u32 = 20;
const HOST: &str = "sentences.example.com";

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = serve(|_, _| Reply::text(200, "Peter is 42 years")).await;

    let probe = HttpProbe::new(
        HOST,
        Target::direct(server.addr),
        Arc::new(Grammar::app_defaults()),
    )
    .expect("prober");
    let started = Instant::now();
    let judgement = flows(&probe, K, &[], Duration::from_secs(60)).await;
    let prober = started.elapsed();
    assert_eq!(
        judgement.verdict,
        Verdict::Passed,
        "{}",
        judgement.evidence.summary
    );

    // The exercise's way: curl in a loop, 0.3 s apart, until K sentences in a row.
    let script = format!(
        "ok=0; while [ $ok -lt {K} ]; do \
           body=$(curl -s --max-time 5 --resolve {HOST}:{port}:127.0.0.1 http://{HOST}:{port}/); \
           if echo \"$body\" | grep -Eq '^.+ is [0-9]+ years$'; then ok=$((ok+1)); else ok=0; fi; \
           sleep 0.3; \
         done",
        port = server.addr.port()
    );
    let started = Instant::now();
    let status = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .status()
        .await;
    let curl = started.elapsed();
    match status {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("the curl loop did not run ({other:?}); is curl installed?");
            std::process::exit(1);
        }
    }
    let ratio = curl.as_secs_f64() / prober.as_secs_f64();
    println!(
        "K={K} flows verdict: prober {:.1} ms, curl loop {:.0} ms, ratio {ratio:.0}× (goal ≥ 50×)",
        prober.as_secs_f64() * 1000.0,
        curl.as_secs_f64() * 1000.0
    );
}
