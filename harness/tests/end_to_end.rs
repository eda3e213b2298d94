//! The harness binary, end to end, against a stand-in cluster: the stateful fake
//! Kubernetes API server with Istio's behaviour and the app simulated behind it, and a
//! real Prometheus. The right world must pass every step; each wrong world must make the
//! right step fail or error, never pass. (`harness = false`: without Prometheus these
//! show as ignored tests with the reason.)

mod common;
#[path = "common/stand_in.rs"]
mod stand_in;

use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
use stand_in::StandIn;
use std::path::Path;
use std::time::{Duration, Instant};

const ISTIO: &str = "1.31.2";

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = libtest_mimic::Arguments::from_args();
    let with_prometheus = |name: &'static str, test: fn(&Path)| {
        common::trial_needing(
            name,
            "prometheus",
            "apt-get install prometheus",
            move |bin| test(&bin),
        )
    };
    let trials = vec![with_prometheus(
        "every_step_passes_on_a_stand_in_cluster_that_behaves_like_istio",
        every_step_passes,
    )];
    libtest_mimic::run(&args, trials).exit();
}

/// Runs the harness binary against `stand_in` with `extra` arguments; returns its exit
/// code, the JUnit report, stderr, and the reports folder.
async fn run_harness(
    stand_in: &StandIn,
    extra: &[&str],
) -> (i32, Report, String, tempfile::TempDir) {
    let reports = tempfile::tempdir().unwrap();
    let mut args = stand_in.args();
    args.extend(["--reports-dir".into(), reports.path().display().to_string()]);
    args.extend(["--istio-version".into(), ISTIO.into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(&args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(400), child)
        .await
        .expect("the harness finished within its deadlines")
        .expect("the harness ran");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let xml = std::fs::read_to_string(reports.path().join("junit.xml"))
        .unwrap_or_else(|e| panic!("no junit.xml ({e}); stderr:\n{stderr}"));
    let report = Report::deserialize_from_str(&xml).unwrap();
    (out.status.code().unwrap_or(-1), report, stderr, reports)
}

fn outcome(report: &Report) -> Vec<(String, String)> {
    report
        .test_suites
        .iter()
        .flat_map(|s| {
            s.test_cases.iter().map(move |c| {
                let status = match &c.status {
                    TestCaseStatus::Success { .. } => "passed".to_string(),
                    TestCaseStatus::NonSuccess {
                        kind: NonSuccessKind::Failure,
                        message,
                        ..
                    } => {
                        format!(
                            "FAILED: {}",
                            message.as_ref().map(|m| m.as_str()).unwrap_or("")
                        )
                    }
                    TestCaseStatus::NonSuccess { message, .. } => {
                        format!(
                            "ERROR: {}",
                            message.as_ref().map(|m| m.as_str()).unwrap_or("")
                        )
                    }
                    TestCaseStatus::Skipped { message, .. } => {
                        format!(
                            "skipped: {}",
                            message.as_ref().map(|m| m.as_str()).unwrap_or("")
                        )
                    }
                };
                (format!("{}::{}", s.name.as_str(), c.name.as_str()), status)
            })
        })
        .collect()
}

fn every_step_passes(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        let started = Instant::now();
        let (code, report, stderr, reports) = run_harness(&stand_in, &[]).await;
        let results = outcome(&report);
        if std::env::var_os("E2E_SHOW").is_some() {
            let junit = std::fs::read_to_string(reports.path().join("junit.xml")).unwrap();
            let summary = std::fs::read_to_string(reports.path().join("summary.md")).unwrap();
            eprintln!("{stderr}\n{junit}\n{summary}");
        }
        eprintln!("end to end in {:.1} s", started.elapsed().as_secs_f64());
        for (name, status) in &results {
            eprintln!("  {name}: {status}");
        }
        assert_eq!(code, 0, "{results:#?}\n{stderr}");
        assert_eq!(results.len(), 10, "{results:#?}");
        assert!(results.iter().all(|(_, s)| s == "passed"), "{results:#?}");
    });
}
