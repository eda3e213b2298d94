//! Benchmark (not a test): how late a change of traffic is noticed. A loopback server
//! answers 500 until a moment the benchmark picks at random, then sentences; the time
//! from that moment to the verdict is the detection latency. Measured over FLIPS flips
//! for the harness's `flows` (K=1, requests at a fixed pace) and for the previous way
//! (exponential backoff 50 ms → 1 s between requests), side by side. Run:
//! `cargo run --release -p harness --example flip_detection`

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Reply, serve};
use harness::expect::traffic::flows;
use harness::probe::Probe;
use harness::probe::class::ResultClass;
use harness::probe::http::{HttpProbe, Target};
use harness::probe::sentence::Grammar;
use harness::verdict::Verdict;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FLIPS: usize = 25;
const HOST: &str = "sentences.example.com";

/// The previous wait: one request, then sleep 50 ms, 100 ms, … up to 1 s.
async fn backoff_until_ok(probe: &HttpProbe) -> Instant {
    let mut sleep = Duration::from_millis(50);
    loop {
        if probe.once().await.class == ResultClass::Ok {
            return Instant::now();
        }
        tokio::time::sleep(sleep).await;
        sleep = (sleep * 2).min(Duration::from_secs(1));
    }
}

async fn paced_until_ok(probe: &HttpProbe) -> Instant {
    let judgement = flows(probe, 1, &[], Duration::from_secs(30)).await;
    assert_eq!(
        judgement.verdict,
        Verdict::Passed,
        "{}",
        judgement.evidence.summary
    );
    Instant::now()
}

fn describe(name: &str, mut latencies: Vec<Duration>) -> String {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| format!("{:7.1} ms", d.as_secs_f64() * 1000.0);
    format!(
        "{name:<28} median {}  p90 {}  max {}",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(1.0))
    )
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let flip_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let state = Arc::clone(&flip_at);
    let server = serve(move |_, _| {
        let flipped = state
            .lock()
            .map(|f| f.is_some_and(|at| Instant::now() >= at))
            .unwrap_or(false);
        if flipped {
            Reply::text(200, "Peter is 42 years")
        } else {
            Reply::text(500, "Internal Server Error")
        }
    })
    .await;
    let probe = HttpProbe::new(
        HOST,
        Target::direct(server.addr),
        Arc::new(Grammar::app_defaults()),
    )
    .expect("prober");

    // A fixed pseudo-random sequence of flip delays (0.3–2.3 s), the same for both ways.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut delays = Vec::new();
    for _ in 0..FLIPS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        delays.push(Duration::from_millis(300 + seed % 2000));
    }

    let mut results = Vec::new();
    for (name, paced) in [
        ("paced (harness, K=1)", true),
        ("backoff 50 ms → 1 s (old)", false),
    ] {
        let mut latencies = Vec::new();
        for delay in &delays {
            let at = Instant::now() + *delay;
            *flip_at.lock().expect("flip state") = Some(at);
            let seen = if paced {
                paced_until_ok(&probe).await
            } else {
                backoff_until_ok(&probe).await
            };
            latencies.push(seen.saturating_duration_since(at));
        }
        results.push(describe(name, latencies));
    }
    println!("flip detection over {FLIPS} flips (500 → sentence) on loopback:");
    for line in results {
        println!("  {line}");
    }
}
