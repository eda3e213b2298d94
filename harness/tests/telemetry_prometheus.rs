//! The telemetry oracle against a real Prometheus server: the test serves
//! `istio_requests_total` counters on loopback, Prometheus scrapes them every second,
//! and the phases of O5 and O6 are judged, with the mutations that must fail.

mod common;

use common::{Reply, serve};
use harness::expect::mtls;
use harness::telemetry::phase::{self as telemetry_phase, Traffic};
use harness::telemetry::prometheus::Prometheus;
use harness::telemetry::targets::Targets;
use harness::verdict::{EdgeExpectation, Judgement, Padlock, Verdict};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit_mesh::PrometheusProcess;

type Counters = Arc<Mutex<BTreeMap<(String, String, String, String), f64>>>;

fn exposition(counters: &Counters) -> String {
    let mut out = String::from("# TYPE istio_requests_total counter\n");
    for ((src, dst, version, policy), value) in counters.lock().unwrap().iter() {
        out.push_str(&format!(
            "istio_requests_total{{reporter=\"destination\",source_workload=\"{src}\",destination_workload=\"{dst}\",destination_version=\"{version}\",connection_security_policy=\"{policy}\",response_code=\"200\"}} {value}\n"
        ));
        // What the source side reports: always `unknown`, never judged.
        out.push_str(&format!(
            "istio_requests_total{{reporter=\"source\",source_workload=\"{src}\",destination_workload=\"{dst}\",destination_version=\"{version}\",connection_security_policy=\"unknown\",response_code=\"200\"}} {value}\n"
        ));
    }
    out
}

fn add(counters: &Counters, src: &str, dst: &str, policy: &str, n: f64) {
    let version = if dst.ends_with("-v2") { "v2" } else { "v1" };
    *counters
        .lock()
        .unwrap()
        .entry((src.into(), dst.into(), version.into(), policy.into()))
        .or_default() += n;
}

async fn start_prometheus(
    binary: &std::path::Path,
    target: std::net::SocketAddr,
    file_sd_dir: &std::path::Path,
) -> PrometheusProcess {
    let file_sd = file_sd_dir.join("targets.json");
    std::fs::write(
        &file_sd,
        format!("[{{\"targets\":[\"{target}\"],\"labels\":{{}}}}]"),
    )
    .unwrap();
    PrometheusProcess::start(binary, &file_sd, Duration::from_secs(1))
        .await
        .unwrap()
}

/// The exporter's scrape job, as the addon's `kubernetes-pods` is for real sidecars.
const TARGETS: &str = r#"up{job="kubernetes-pods"}"#;

fn edge(from: &str, to: &str, padlock: bool) -> EdgeExpectation {
    EdgeExpectation::new(from, to, padlock)
}

fn traffic(summary: &str) -> Traffic {
    Traffic {
        summary: summary.to_string(),
        ..Traffic::default()
    }
}

/// A telemetry phase judging `edges` as the `mtls` expectation does (without the
/// request accounting, which needs the app).
async fn phase<F, Fut>(
    prometheus: &Prometheus,
    targets: &str,
    edges: &[EdgeExpectation],
    deadline: Duration,
    send: F,
) -> Judgement
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    telemetry_phase::run(
        prometheus,
        &Targets::Selector(targets.to_string()),
        deadline,
        || async move { send().await.map(|s| traffic(&s)) },
        |deltas, traffic| mtls::look(edges, &[], deltas, traffic),
    )
    .await
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = libtest_mimic::Arguments::from_args();
    let trials = vec![
        common::trial_needing(
            "phases_of_o5_and_o6_are_judged_on_deltas_against_a_real_prometheus",
            "prometheus",
            "apt-get install prometheus",
            |binary| common::block_on(phases_of_o5_and_o6(binary)),
        ),
        common::trial("an_unreachable_prometheus_is_an_environment_error", || {
            common::block_on(an_unreachable_prometheus_is_an_environment_error())
        }),
    ];
    libtest_mimic::run(&args, trials).exit();
}

async fn phases_of_o5_and_o6(binary: std::path::PathBuf) {
    let counters: Counters = Arc::default();
    let served = Arc::clone(&counters);
    let exporter = serve(move |path, _| match path {
        "/metrics" => Reply::Http {
            status: 200,
            body: exposition(&served).into_bytes(),
            content_type: "text/plain; version=0.0.4",
        },
        _ => Reply::text(404, "no"),
    })
    .await;
    // Traffic from before the phases: mTLS everywhere, as after O5.
    add(&counters, "sentences", "name", "mutual_tls", 100.0);
    let sd = tempfile::tempdir().unwrap();
    let prom = start_prometheus(&binary, exporter.addr, sd.path()).await;
    let prometheus = Prometheus::new(&prom.url).unwrap();
    let deadline = Duration::from_secs(20);

    // O5: every edge carries mTLS.
    let o5 = [
        edge("istio-ingressgateway", "sentences", true),
        edge("sentences", "age", true),
        edge("sentences", "name", true),
        edge("sentences", "name-v2", true),
    ];
    let c = Arc::clone(&counters);
    let started = Instant::now();
    let result = phase(&prometheus, TARGETS, &o5, deadline, || async move {
        for (src, dst) in [
            ("istio-ingressgateway", "sentences"),
            ("sentences", "age"),
            ("sentences", "name"),
            ("sentences", "name-v2"),
        ] {
            add(&c, src, dst, "mutual_tls", 20.0);
        }
        Ok("40 requests".to_string())
    })
    .await;
    eprintln!(
        "O5 phase: {:?} in {:.1} s: {}",
        result.verdict,
        started.elapsed().as_secs_f64(),
        result.evidence.summary
    );
    assert_eq!(result.verdict, Verdict::Passed, "{:#?}", result.evidence);
    assert_eq!(result.evidence.edges.len(), 4);
    assert!(
        result
            .evidence
            .edges
            .iter()
            .all(|r| r.mutual_tls == 20.0 && r.plaintext == 0.0),
        "{:#?}",
        result.evidence.edges
    );

    // O6: v1 without mTLS, v2 with. The stale mutual_tls series of name-v1 (120 so far)
    // stays exported and must not put a padlock on v1.
    let o6 = [
        edge("sentences", "name", false),
        edge("sentences", "name-v2", true),
    ];
    let c = Arc::clone(&counters);
    let result = phase(&prometheus, TARGETS, &o6, deadline, || async move {
        add(&c, "sentences", "name", "none", 20.0);
        add(&c, "sentences", "name-v2", "mutual_tls", 20.0);
        Ok("40 requests".to_string())
    })
    .await;
    assert_eq!(result.verdict, Verdict::Passed, "{:#?}", result.evidence);
    let v1 = &result.evidence.edges[0];
    assert_eq!(
        (v1.mutual_tls, v1.plaintext, v1.padlock),
        (0.0, 20.0, Padlock::Absent)
    );

    // Mutation: v1 gets mTLS traffic in the phase → the verdict fails, at once.
    let c = Arc::clone(&counters);
    let started = Instant::now();
    let result = phase(&prometheus, TARGETS, &o6, deadline, || async move {
        add(&c, "sentences", "name", "mutual_tls", 10.0);
        add(&c, "sentences", "name", "none", 10.0);
        add(&c, "sentences", "name-v2", "mutual_tls", 20.0);
        Ok("40 requests".to_string())
    })
    .await;
    assert_eq!(result.verdict, Verdict::Failed, "{:#?}", result.evidence);
    assert!(
        result.evidence.summary.contains(
            "sentences → name: mutual_tls Δ 10, plaintext Δ 10 (Kiali: padlock shown), expected all plaintext"
        ),
        "{}",
        result.evidence.summary
    );
    assert!(
        started.elapsed() < deadline,
        "a padlock that appeared cannot go away: no need to wait for the deadline"
    );

    // Mutation: 80 % of the calls to the ISTIO_MUTUAL subset are plaintext. Kiali would
    // show the padlock (a mutual_tls share > 0); the verdict fails, at once.
    let c = Arc::clone(&counters);
    let started = Instant::now();
    let result = phase(&prometheus, TARGETS, &o6, deadline, || async move {
        add(&c, "sentences", "name", "none", 20.0);
        add(&c, "sentences", "name-v2", "mutual_tls", 4.0);
        add(&c, "sentences", "name-v2", "none", 16.0);
        Ok("40 requests".to_string())
    })
    .await;
    assert_eq!(result.verdict, Verdict::Failed, "{:#?}", result.evidence);
    let v2 = &result.evidence.edges[1];
    assert_eq!((v2.padlock, v2.plaintext), (Padlock::Present, 16.0));
    assert!(
        result
            .evidence
            .summary
            .contains("sentences → name-v2: mutual_tls Δ 4, plaintext Δ 16 (Kiali: padlock shown), expected all mTLS"),
        "{}",
        result.evidence.summary
    );
    assert!(
        started.elapsed() < deadline,
        "plaintext that arrived cannot go away"
    );

    // Mutation: one plaintext request under STRICT (O5) fails the edge.
    let c = Arc::clone(&counters);
    let result = phase(&prometheus, TARGETS, &o5, deadline, || async move {
        for (src, dst) in [
            ("istio-ingressgateway", "sentences"),
            ("sentences", "age"),
            ("sentences", "name"),
            ("sentences", "name-v2"),
        ] {
            add(&c, src, dst, "mutual_tls", 20.0);
        }
        add(&c, "sentences", "age", "none", 1.0);
        Ok("40 requests".to_string())
    })
    .await;
    assert_eq!(result.verdict, Verdict::Failed, "{:#?}", result.evidence);
    assert!(
        result
            .evidence
            .summary
            .contains("sentences → age: mutual_tls Δ 20, plaintext Δ 1"),
        "{}",
        result.evidence.summary
    );

    // Mutation: no traffic at all on name-v2 → nothing proves its padlock → fails at the deadline.
    let c = Arc::clone(&counters);
    let result = phase(
        &prometheus,
        TARGETS,
        &o6,
        Duration::from_secs(6),
        || async move {
            add(&c, "sentences", "name", "none", 20.0);
            Ok("20 requests".to_string())
        },
    )
    .await;
    assert_eq!(result.verdict, Verdict::Failed, "{:#?}", result.evidence);
    assert!(
        result
            .evidence
            .summary
            .contains("sentences → name-v2: no traffic in this phase"),
        "{}",
        result.evidence.summary
    );

    // Waiting on targets that do not exist is an environment error naming the selector.
    let result = phase(
        &prometheus,
        r#"up{job="kubernetes-pods",namespace="nope"}"#,
        &o6,
        Duration::from_secs(3),
        || async { Ok(String::new()) },
    )
    .await;
    assert_eq!(result.verdict, Verdict::Errored, "{:#?}", result.evidence);
    assert!(
        result.evidence.summary.contains(
            "no Prometheus target matches `up{job=\"kubernetes-pods\",namespace=\"nope\"}`"
        ),
        "{}",
        result.evidence.summary
    );
}

async fn an_unreachable_prometheus_is_an_environment_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let prometheus = Prometheus::new(&format!("http://{closed}")).unwrap();
    let result = phase(
        &prometheus,
        TARGETS,
        &[edge("a", "b", true)],
        Duration::from_secs(2),
        || async { Ok(String::new()) },
    )
    .await;
    assert_eq!(result.verdict, Verdict::Errored);
    assert!(
        result.evidence.summary.contains("unreachable"),
        "{}",
        result.evidence.summary
    );
}
