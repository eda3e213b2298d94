//! The harness binary, end to end, against a stand-in cluster: the stateful fake
//! Kubernetes API server with Istio's behaviour and the app simulated behind it, and a
//! real Prometheus. The right world must pass every step; each wrong world must make the
//! right step fail or error, never pass. (`harness = false`: without Prometheus these
//! show as ignored tests with the reason.)

mod common;
#[path = "common/stand_in.rs"]
mod stand_in;

use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
use stand_in::{ForwardFault, StandIn};
use std::path::Path;
use std::time::{Duration, Instant};
use testkit_mesh::Fault;

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
    let trials = vec![
        with_prometheus(
            "every_step_passes_on_a_stand_in_cluster_that_behaves_like_istio",
            every_step_passes,
        ),
        with_prometheus("a_gateway_answering_500_itself_does_not_pass_o3", |p| {
            mutation(
                p,
                "mesh::03",
                Outcome::Failed("500 from not the app"),
                |s| s.mesh.set_fault(Fault::GatewayAnswers(500, String::new())),
            )
        }),
        with_prometheus(
            "envoy_local_replies_pasted_into_sentences_do_not_pass_o1",
            |p| {
                mutation(
                    p,
                    "mesh::01",
                    Outcome::Failed("upstream connect error"),
                    |s| {
                        s.mesh.set_fault(Fault::BackendLocalReply {
                            workload: "name".into(),
                        })
                    },
                )
            },
        ),
        with_prometheus("strict_not_enforced_fails_o3", |p| {
            mutation(p, "mesh::03", Outcome::Failed("ok×"), |s| {
                s.mesh.set_fault(Fault::StrictNotEnforced)
            })
        }),
        with_prometheus("an_annotation_without_a_container_is_not_a_sidecar", |p| {
            let started = Instant::now();
            mutation(
                p,
                "ingress::01",
                Outcome::Failed("injector's annotation but no istio-proxy container"),
                |s| s.mesh.set_fault(Fault::InjectorAnnotatesOnly),
            );
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "reported once the rollouts finished, not at the deadline: {:?}",
                started.elapsed()
            );
        }),
        with_prometheus("a_refused_port_forward_is_an_error_never_a_reset", |p| {
            mutation(p, "mesh::03", Outcome::Errored("port-forward"), |s| {
                s.break_forwards(8080, ForwardFault::Refused)
            })
        }),
        with_prometheus("a_rejected_port_forward_is_no_tls_rejection", |p| {
            mutation(p, "ingress::03", Outcome::Errored("port-forward"), |s| {
                s.break_forwards(8443, ForwardFault::Rejected)
            })
        }),
        with_prometheus("a_dropped_port_forward_never_passes_o8", |p| {
            mutation(p, "ingress::03", Outcome::NotPassed, |s| {
                s.break_forwards(8443, ForwardFault::Dropped)
            })
        }),
        with_prometheus("a_gateway_closing_without_an_alert_does_not_pass_o8", |p| {
            mutation(
                p,
                "ingress::03",
                Outcome::Failed("closed without a TLS alert"),
                |s| s.mesh.set_fault(Fault::TlsCloseWithoutAlert),
            )
        }),
        with_prometheus("a_v2_edge_that_is_80_percent_plaintext_fails_o6", |p| {
            mutation(
                p,
                "mesh::06",
                Outcome::Failed("sentences → name-v2"),
                |s| {
                    s.mesh.set_fault(Fault::PlaintextShare {
                        from: "sentences".into(),
                        to: "name-v2".into(),
                        share: 0.8,
                    })
                },
            )
        }),
        with_prometheus(
            "an_ignored_destination_rule_fails_o6_at_the_proxy_config",
            |p| {
                mutation(p, "mesh::06", Outcome::Failed("name-v1"), |s| {
                    s.mesh.set_fault(Fault::DestinationRuleIgnored)
                })
            },
        ),
        with_prometheus(
            "a_proxy_prometheus_cannot_scrape_is_an_error_naming_its_pod",
            |p| {
                mutation(p, "mesh::05", Outcome::Errored("pod sentences/age-"), |s| {
                    s.mesh.set_fault(Fault::NoTelemetry {
                        workload: "age".into(),
                    })
                })
            },
        ),
        with_prometheus(
            "an_image_that_cannot_be_pulled_is_an_error_naming_it_at_once",
            |p| {
                let started = Instant::now();
                mutation(p, "mesh::01", Outcome::Errored("cannot be pulled"), |s| {
                    s.cluster.set_image_behaviour(
                        "ghcr.io/michaelvl/istio-katas",
                        testkit_k8s::ImageBehaviour::Unpullable,
                    )
                });
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{:?}",
                    started.elapsed()
                );
            },
        ),
        with_prometheus("a_crash_looping_rollout_is_an_error_at_once", |p| {
            let started = Instant::now();
            mutation(p, "mesh::01", Outcome::Errored("crash-looping"), |s| {
                s.cluster.set_image_behaviour(
                    "ghcr.io/michaelvl/istio-katas",
                    testkit_k8s::ImageBehaviour::CrashLoop,
                )
            });
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{:?}",
                started.elapsed()
            );
        }),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// What a wrong world must make of the step under test.
enum Outcome {
    /// A failure (Istio or the app did not behave) whose message contains this.
    Failed(&'static str),
    /// An environment error whose message contains this.
    Errored(&'static str),
    /// Anything but a pass.
    NotPassed,
}

/// The embedded suites with deadlines short enough that a wrong world is reported in
/// seconds (the verdicts themselves are the same).
fn quick_suites(dir: &Path) {
    let source = harness::suite::source::SuiteSource::embedded();
    let shorten = [
        ("- flows: { ", "- flows: { deadline: 15s, "),
        ("- fails: { ", "- fails: { deadline: 15s, "),
        ("- sidecars: { ", "- sidecars: { deadline: 30s, "),
        ("- tls-accepts: { ", "- tls-accepts: { deadline: 15s, "),
        ("- tls-rejects: { ", "- tls-rejects: { deadline: 15s, "),
        ("- proxy-log: { ", "- proxy-log: { deadline: 15s, "),
        ("- telemetry:\n", "- telemetry:\n          deadline: 20s\n"),
        ("- mtls:\n", "- mtls:\n          deadline: 20s\n"),
        (
            "- proxy-config:\n",
            "- proxy-config:\n          deadline: 10s\n",
        ),
    ];
    for (path, text) in &source.files {
        let mut text = text.clone();
        if path.ends_with("suite.yaml") {
            for (from, to) in shorten {
                text = text.replace(from, to);
            }
        }
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    }
}

/// Runs step `filter` (earlier steps' actions as its setup) in the world `break_it`
/// made wrong, and checks the step did not pass, in the way `outcome` says.
fn mutation(prometheus: &Path, filter: &str, outcome: Outcome, break_it: impl FnOnce(&StandIn)) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        break_it(&stand_in);
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, _reports) =
            run_harness(&stand_in, &[filter, "--suites-dir", &suites_dir]).await;
        let results = results_of(&report);
        let judged: Vec<&(String, String)> = results
            .iter()
            .filter(|(name, _)| !name.starts_with("setup::"))
            .collect();
        assert_eq!(judged.len(), 1, "{results:#?}\n{stderr}");
        let (name, status) = judged[0];
        eprintln!("{name}: {status}");
        assert!(
            !status.starts_with("passed"),
            "a wrong world must not pass: {name}: {status}"
        );
        match outcome {
            Outcome::Failed(text) => {
                assert!(
                    status.starts_with("FAILED") && status.contains(text),
                    "{status}\n{stderr}"
                );
                assert_eq!(code, 1, "{stderr}");
            }
            Outcome::Errored(text) => {
                assert!(
                    status.starts_with("ERROR") && status.contains(text),
                    "{status}\n{stderr}"
                );
                assert_eq!(code, 3, "{stderr}");
            }
            Outcome::NotPassed => assert_ne!(code, 0),
        }
    });
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

fn results_of(report: &Report) -> Vec<(String, String)> {
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
        let results = results_of(&report);
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
