//! The runner's sequencing and the JUnit file, read back with quick-junit's parser.
//! The world here is scripted: these tests judge the runner and the report, not Istio.

use harness::cli::Cli;
use harness::config::RunConfig;
use harness::progress::Progress;
use harness::report::junit;
use harness::runner::Shared;
use harness::runner::canary::CanaryOp;
use harness::runner::record::RunProperties;
use harness::runner::world::{EnvError, Phase, World};
use harness::suite::source::SuiteSource;
use harness::suite::{self, Action, Expectation, Step, Suite};
use harness::verdict::{Evidence, Judged, Judgement, Verdict};
use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default, Clone)]
struct Script {
    setup_error: Option<String>,
    upgrade_error: Option<String>,
    /// trial name → verdict of its first expectation (others pass)
    verdicts: HashMap<String, Verdict>,
    /// every action carried out, as "<suite>: <action>"
    actions: Arc<Mutex<Vec<String>>>,
    judged: Arc<Mutex<Vec<String>>>,
    /// The Istio version the cluster runs (changed by a successful upgrade); when it
    /// never changes, an upgrade "succeeds" without upgrading.
    istio: Arc<Mutex<String>>,
    upgrade_changes_nothing: bool,
    /// A canary change whose description contains the first text fails with the second.
    canary_error: Option<(String, String)>,
    /// The judge of this trial (plain name) panics: a harness bug in an expectation.
    panic_in_judge: Option<String>,
    /// Reading istiod's version fails (the world answers None).
    istiod_unreadable: bool,
    /// The version every proxy runs, when it is not the control plane's.
    proxies_on: Arc<Mutex<Option<String>>>,
    /// A successful upgrade moves the proxies to its version (also when istiod stays).
    upgrade_moves_proxies: bool,
    /// An action whose description contains this text fails (an environment error).
    act_error: Option<String>,
    /// Releasing the run (`finish`) fails with this message.
    finish_error: Option<String>,
}

struct ScriptedWorld(Script);

fn script() -> Script {
    Script {
        istio: Arc::new(Mutex::new("1.31.2".into())),
        ..Script::default()
    }
}

impl World for ScriptedWorld {
    fn setup(&mut self, _suites: &[Arc<Suite>]) -> Result<(), EnvError> {
        match &self.0.setup_error {
            Some(m) => Err(EnvError::new(Phase::Provision, m.clone())),
            None => Ok(()),
        }
    }
    fn istio_version(&mut self) -> Option<String> {
        if self.0.istiod_unreadable {
            return None;
        }
        Some(self.0.istio.lock().unwrap().clone())
    }
    /// One scripted proxy: on the control plane's version, unless the script moved it.
    fn proxies_not_on(&mut self, version: &str) -> Result<(Vec<String>, usize), String> {
        let runs = self
            .0
            .proxies_on
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| self.0.istio.lock().unwrap().clone());
        let off = (runs != version)
            .then(|| format!("scripted-proxy runs proxyv2:{runs}"))
            .into_iter()
            .collect();
        Ok((off, 1))
    }
    fn properties(&self) -> RunProperties {
        RunProperties {
            istio_version: "1.31.2".into(),
            kubernetes_version: "v1.34.0".into(),
            kind_node_image: "kindest/node:v1.34.0".into(),
            cluster_name: "scripted".into(),
            ..RunProperties::default()
        }
    }
    fn act(
        &mut self,
        suite: &Suite,
        action: &Action,
        log: &mut Vec<String>,
    ) -> Result<(), EnvError> {
        self.0
            .actions
            .lock()
            .unwrap()
            .push(format!("{}: {action}", suite.name));
        if let Some(text) = &self.0.act_error
            && action.to_string().contains(text.as_str())
        {
            return Err(EnvError::new(Phase::Delete, format!("cannot {action}")));
        }
        log.push("done".into());
        Ok(())
    }
    fn judge(&mut self, _suite: &Suite, step: &Step, expectation: &Expectation) -> Judged {
        self.0.judged.lock().unwrap().push(step.trial_name());
        if self.0.panic_in_judge.as_deref() == Some(step.trial_name().as_str()) {
            panic!("scripted harness bug while judging {}", step.trial_name());
        }
        let verdict = self
            .0
            .verdicts
            .get(&step.trial_name())
            .copied()
            .unwrap_or(Verdict::Passed);
        let summary = match verdict {
            Verdict::Failed => {
                "expected 20 consecutive http-500, saw 17; codes: 500×17, 200×3; after 42.1 s"
            }
            Verdict::Errored => "port-forward to the ingress gateway died",
            Verdict::Passed => "10/10 ok",
        };
        Judged {
            description: expectation.to_string(),
            judgement: Judgement {
                verdict,
                evidence: Evidence::new(summary).with_details(vec!["codes: 500×17, 200×3".into()]),
                elapsed: Duration::from_millis(1500),
            },
        }
    }
    fn upgrade(
        &mut self,
        version: &str,
        _judged: bool,
        log: &mut Vec<String>,
    ) -> Result<(), EnvError> {
        self.0
            .actions
            .lock()
            .unwrap()
            .push(format!("upgrade to {version}"));
        log.push(format!("upgraded to {version}"));
        match &self.0.upgrade_error {
            Some(m) => Err(EnvError::new(Phase::Upgrade, m.clone())),
            None => {
                if !self.0.upgrade_changes_nothing {
                    *self.0.istio.lock().unwrap() = version.to_string();
                }
                if self.0.upgrade_moves_proxies {
                    *self.0.proxies_on.lock().unwrap() = Some(version.to_string());
                }
                Ok(())
            }
        }
    }
    fn canary(&mut self, op: &CanaryOp, log: &mut Vec<String>) -> Result<(), EnvError> {
        self.0.actions.lock().unwrap().push(format!("canary: {op}"));
        log.push(format!("done: {op}"));
        if let Some((which, message)) = &self.0.canary_error
            && op.to_string().contains(which.as_str())
        {
            return Err(EnvError::new(Phase::Upgrade, message.clone()));
        }
        if *op == CanaryOp::RemoveOld {
            *self.0.istio.lock().unwrap() = "1.31.2".into();
        }
        Ok(())
    }
    fn diagnostics(&mut self, _suite: &Suite, step: &Step, label: &str) -> Option<PathBuf> {
        Some(PathBuf::from(format!(
            "reports/diagnostics/{label}-{}",
            step.slug()
        )))
    }
    fn finish(&mut self) -> Result<(), EnvError> {
        match &self.0.finish_error {
            Some(m) => Err(EnvError::new(Phase::Cleanup, m.clone())),
            None => Ok(()),
        }
    }
}

fn run(script: &Script, extra_args: &[&str]) -> (u8, Report, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = run_in(&dir, script, extra_args);
    (code, report, dir)
}

/// [`run`] into a reports folder of the caller's (a rerun into the same folder).
fn run_in(dir: &tempfile::TempDir, script: &Script, extra_args: &[&str]) -> (u8, Report) {
    let code = run_code_in(dir, script, extra_args);
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    (code, Report::deserialize_from_str(&xml).unwrap())
}

/// [`run_in`] without reading the report back: the exit code.
fn run_code_in(dir: &tempfile::TempDir, script: &Script, extra_args: &[&str]) -> u8 {
    // libtest's own output goes to a file, so it does not mix with cargo test's.
    let logfile = dir.path().join("libtest.log");
    let mut argv = vec![
        "harness",
        "--reports-dir",
        dir.path().to_str().unwrap(),
        "--logfile",
        logfile.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra_args);
    let cli = Cli::parse_from_args(argv).unwrap();
    let config = RunConfig::from_cli(&cli).unwrap();
    let catalog = suite::load(&SuiteSource::embedded()).unwrap();
    let suites: Vec<Arc<Suite>> = catalog.select(&cli.suites).unwrap();
    let schedule = harness::app::schedule(&cli, &suites, &config).unwrap();
    // istiod runs what setup installs: the upgrade's start, else the requested version.
    *script.istio.lock().unwrap() = config.install_version().to_string();
    harness::app::run_with_world(
        &cli.libtest(),
        schedule,
        Box::new(ScriptedWorld(script.clone())),
        &Shared::default(),
        &Progress::new(),
        &config,
    )
}

fn property<'a>(suite: &'a quick_junit::TestSuite, name: &str) -> &'a str {
    suite
        .properties
        .iter()
        .find(|p| p.name.as_str() == name)
        .map(|p| p.value.as_str())
        .unwrap_or("<absent>")
}

#[test]
fn a_failed_step_ignores_the_rest_of_its_suite_and_the_next_suite_runs() {
    let mut script = script();
    script
        .verdicts
        .insert("mesh::03-strict-partial-injection".into(), Verdict::Failed);
    let (code, report, _dir) = run(&script, &[]);
    assert_eq!(code, 1, "an outcome failed");
    let log = std::fs::read_to_string(_dir.path().join("libtest.log")).unwrap();
    assert!(
        log.contains("test result: FAILED. 6 passed; 1 failed; 3 ignored"),
        "libtest's summary stays: {log}"
    );
    assert!(
        log.contains("ignored (mesh::03-strict-partial-injection did not pass)"),
        "{log}"
    );

    assert_eq!(report.test_suites.len(), 2);
    let mesh = &report.test_suites[0];
    assert_eq!(mesh.name.as_str(), "mesh");
    assert_eq!(
        (mesh.tests, mesh.failures, mesh.errors, mesh.skipped),
        (6, 1, 0, 3)
    );
    let names: Vec<&str> = mesh.test_cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names[2], "03-strict-partial-injection");
    match &mesh.test_cases[2].status {
        TestCaseStatus::NonSuccess {
            kind,
            message,
            description,
            ..
        } => {
            assert_eq!(*kind, NonSuccessKind::Failure);
            let message = message.as_ref().unwrap().as_str();
            assert!(
                message.contains("saw 17; codes: 500×17, 200×3; after 42.1 s"),
                "{message}"
            );
            assert!(
                message.ends_with(
                    " [diagnostics: reports/diagnostics/mesh-03-strict-partial-injection]"
                ),
                "the failure names the folder: {message}"
            );
            assert!(
                description
                    .as_ref()
                    .unwrap()
                    .as_str()
                    .contains("diagnostics: reports/diagnostics/mesh-03-strict-partial-injection")
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    for case in &mesh.test_cases[3..] {
        match &case.status {
            TestCaseStatus::Skipped { message, .. } => assert_eq!(
                message.as_ref().unwrap().as_str(),
                "mesh::03-strict-partial-injection did not pass"
            ),
            other => panic!("{:?} should be skipped, got {other:?}", case.name),
        }
    }
    let first = &mesh.test_cases[0];
    assert!(matches!(first.status, TestCaseStatus::Success { .. }));
    assert_eq!(first.classname.as_ref().unwrap().as_str(), "mesh");
    assert!(first.time.unwrap() < Duration::from_secs(5));
    assert!(
        first
            .system_out
            .as_ref()
            .unwrap()
            .as_str()
            .contains("[PASS]"),
        "the step log and evidence go to system-out"
    );
    assert!(
        first
            .properties
            .iter()
            .any(|p| p.name.as_str() == "outcome" && p.value.as_str() == "O1")
    );

    let ingress = &report.test_suites[1];
    assert_eq!(
        (
            ingress.tests,
            ingress.failures,
            ingress.errors,
            ingress.skipped
        ),
        (4, 0, 0, 0)
    );
    for suite in &report.test_suites {
        assert_eq!(property(suite, "istio.version"), "1.31.2");
        assert_eq!(property(suite, "kubernetes.version"), "v1.34.0");
        assert_eq!(property(suite, "kind.node_image"), "kindest/node:v1.34.0");
        assert_eq!(property(suite, "cluster.name"), "scripted");
        assert_eq!(
            property(suite, "harness.version"),
            env!("CARGO_PKG_VERSION")
        );
    }
    // Steps after the failure were not judged; both suites were torn down.
    let judged = script.judged.lock().unwrap().clone();
    assert!(
        !judged.iter().any(|n| n.starts_with("mesh::04")),
        "{judged:?}"
    );
    let actions = script.actions.lock().unwrap().clone();
    assert!(
        actions
            .iter()
            .any(|a| a.starts_with("mesh: delete name-destination-rule")),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| a.starts_with("ingress: delete virtual-service-mutual, gateway-mutual")),
        "{actions:?}"
    );
}

#[test]
fn an_environment_error_is_a_junit_error_and_exit_code_3() {
    let mut script = script();
    script.verdicts.insert(
        "ingress::02-mutual-gateway-accepts-client-certificate".into(),
        Verdict::Errored,
    );
    let (code, report, _dir) = run(&script, &["--suite", "ingress"]);
    assert_eq!(code, 3);
    assert_eq!(report.test_suites.len(), 1, "only the selected suite");
    let ingress = &report.test_suites[0];
    assert_eq!(
        (
            ingress.tests,
            ingress.failures,
            ingress.errors,
            ingress.skipped
        ),
        (4, 0, 1, 2)
    );
    match &ingress.test_cases[1].status {
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, NonSuccessKind::Error);
            assert!(
                message
                    .as_ref()
                    .unwrap()
                    .as_str()
                    .contains("port-forward to the ingress gateway died")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn setup_failure_still_writes_junit_naming_the_cause() {
    let script = Script {
        setup_error: Some("no Docker engine reachable at unix:///var/run/docker.sock".into()),
        ..script()
    };
    let (code, report, _dir) = run(&script, &[]);
    assert_eq!(code, 3);
    // After the setup case, every selected step as skipped with the setup's reason.
    assert!(report.test_suites.len() > 1);
    for suite in &report.test_suites[1..] {
        assert_eq!(suite.skipped, suite.tests, "{}", suite.name.as_str());
        for case in &suite.test_cases {
            match &case.status {
                TestCaseStatus::Skipped { message, .. } => assert!(
                    message
                        .as_ref()
                        .unwrap()
                        .as_str()
                        .contains("setup failed (provision): no Docker engine reachable")
                ),
                other => panic!("{other:?}"),
            }
        }
    }
    let setup = &report.test_suites[0];
    assert_eq!(setup.name.as_str(), "setup");
    assert_eq!((setup.tests, setup.errors), (1, 1));
    assert_eq!(setup.test_cases[0].name.as_str(), "provision");
    match &setup.test_cases[0].status {
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, NonSuccessKind::Error);
            assert!(
                message
                    .as_ref()
                    .unwrap()
                    .as_str()
                    .contains("no Docker engine")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(property(setup, "cluster.name"), "scripted");
    assert!(
        script.judged.lock().unwrap().is_empty(),
        "no step runs after a failed setup"
    );
}

#[test]
fn a_filter_runs_the_earlier_steps_actions_as_setup_and_reports_only_the_selected_step() {
    let script = script();
    let (code, report, _dir) = run(&script, &["mesh::03", "--suite", "mesh"]);
    assert_eq!(code, 0);
    let mesh = &report.test_suites[0];
    assert_eq!(mesh.test_cases.len(), 1);
    assert_eq!(
        mesh.test_cases[0].name.as_str(),
        "03-strict-partial-injection"
    );
    let out = mesh.test_cases[0]
        .system_out
        .as_ref()
        .unwrap()
        .as_str()
        .to_string();
    assert!(
        out.contains("(setup from mesh::01-no-sidecars) apply shared/namespace"),
        "{out}"
    );
    assert!(
        out.contains("(setup from mesh::02-strict-without-sidecars) apply peer-auth-strict"),
        "{out}"
    );
    let catalog = suite::load(&SuiteSource::embedded()).unwrap();
    let expectations = catalog.suites[0].steps[2].expect.len();
    assert_eq!(
        *script.judged.lock().unwrap(),
        vec!["mesh::03-strict-partial-injection"; expectations],
        "only the selected step is judged, every expectation of it"
    );
}

#[test]
fn keep_skips_the_suite_teardown() {
    let script = script();
    let (code, _report, _dir) = run(&script, &["--keep", "--suite", "ingress"]);
    assert_eq!(code, 0);
    assert!(
        !script
            .actions
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.contains("delete gateway-mutual"))
    );
}

#[test]
fn an_interrupted_run_is_reported_with_the_running_step() {
    let shared = Shared::default();
    *shared.current.lock().unwrap() = Some(("mesh".into(), "03-strict-partial-injection".into()));
    let record = shared.interrupted_snapshot("Ctrl-C");
    let dir = tempfile::tempdir().unwrap();
    junit::write(&record, dir.path()).unwrap();
    let report = Report::deserialize_from_str(
        &std::fs::read_to_string(dir.path().join("junit.xml")).unwrap(),
    )
    .unwrap();
    let setup = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "setup")
        .unwrap();
    assert_eq!(setup.test_cases[0].name.as_str(), "interrupted");
    let mesh = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "mesh")
        .unwrap();
    assert!(
        matches!(&mesh.test_cases[0].status, TestCaseStatus::NonSuccess { kind: NonSuccessKind::Error, message, .. }
        if message.as_ref().unwrap().as_str().contains("interrupted"))
    );
    assert_eq!(record.exit_code(), 3);
}

#[test]
fn an_upgrade_run_reports_both_passes_as_separate_testsuites() {
    let script = script();
    let (code, report, dir) = run(
        &script,
        &["--upgrade-from", "1.30.5", "--istio-version", "1.31.2"],
    );
    assert_eq!(code, 0);
    let names: Vec<&str> = report.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mesh@1.30.5",
            "ingress@1.30.5",
            "upgrade",
            "mesh@1.31.2",
            "ingress@1.31.2"
        ]
    );
    assert_eq!(
        report.test_suites[2].test_cases[0].name.as_str(),
        "1.30.5-to-1.31.2"
    );
    assert_eq!(report.test_suites[3].tests, 6);
    let actions = script.actions.lock().unwrap().clone();
    let upgrade_at = actions
        .iter()
        .position(|a| a == "upgrade to 1.31.2")
        .expect("the upgrade ran");
    assert!(
        actions[..upgrade_at]
            .iter()
            .any(|a| a.starts_with("ingress: ")),
        "pass 1 before the upgrade"
    );
    assert!(
        actions[upgrade_at..]
            .iter()
            .any(|a| a.starts_with("mesh: ")),
        "pass 2 after it"
    );
    let log = std::fs::read_to_string(dir.path().join("libtest.log")).unwrap();
    assert!(log.contains("test upgrade::1.30.5-to-1.31.2"), "{log}");
    assert!(
        log.contains("test mesh@1.31.2::06-destination-rule-subsets"),
        "{log}"
    );
}

#[test]
fn a_failed_upgrade_skips_the_second_pass_with_the_reason() {
    let script = Script {
        upgrade_error: Some(
            "the data plane is not on 1.31.2: sentences-abc runs docker.io/istio/proxyv2:1.30.5"
                .into(),
        ),
        ..script()
    };
    let (code, report, _dir) = run(
        &script,
        &[
            "--upgrade-from",
            "1.30.5",
            "--istio-version",
            "1.31.2",
            "--suite",
            "ingress",
        ],
    );
    assert_eq!(code, 3);
    let upgrade = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "upgrade")
        .unwrap();
    assert_eq!(upgrade.errors, 1);
    let after = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "ingress@1.31.2")
        .unwrap();
    assert_eq!(after.skipped, 4);
    assert!(
        matches!(&after.test_cases[0].status, TestCaseStatus::Skipped { message, .. }
        if message.as_ref().unwrap().as_str().starts_with("the upgrade to 1.31.2 did not pass: upgrade: the data plane is not on 1.31.2"))
    );
}

fn case_property<'a>(case: &'a quick_junit::TestCase, name: &str) -> Option<&'a str> {
    case.properties
        .iter()
        .find(|p| p.name.as_str() == name)
        .map(|p| p.value.as_str())
}

#[test]
fn a_selected_step_of_the_second_pass_runs_after_the_upgrade_and_reports_its_version() {
    let script = script();
    let (code, report, _dir) = run(
        &script,
        &[
            "--upgrade-from",
            "1.30.5",
            "--istio-version",
            "1.31.2",
            "mesh@1.31.2::01",
        ],
    );
    assert_eq!(code, 0);
    let names: Vec<&str> = report.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["mesh@1.31.2"], "only the selected step is reported");
    let actions = script.actions.lock().unwrap().clone();
    let upgrade_at = actions
        .iter()
        .position(|a| a == "upgrade to 1.31.2")
        .expect("the upgrade ran as the step's setup");
    assert!(
        actions[upgrade_at..]
            .iter()
            .any(|a| a.starts_with("mesh: apply shared/namespace")),
        "the step's own actions ran on the upgraded Istio: {actions:?}"
    );
    let case = &report.test_suites[0].test_cases[0];
    assert_eq!(case.name.as_str(), "01-no-sidecars");
    assert_eq!(case_property(case, "istio.version"), Some("1.31.2"));
    assert!(
        case.system_out
            .as_ref()
            .unwrap()
            .as_str()
            .contains("(setup) upgraded Istio from 1.30.5 to 1.31.2 before this step"),
        "{:?}",
        case.system_out
    );
}

#[test]
fn a_step_whose_pass_names_another_version_than_istiod_runs_is_an_error() {
    let mut script = script();
    script.upgrade_changes_nothing = true;
    let (code, report, _dir) = run(
        &script,
        &[
            "--upgrade-from",
            "1.30.5",
            "--istio-version",
            "1.31.2",
            "--suite",
            "ingress",
        ],
    );
    assert_eq!(code, 3);
    let after = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "ingress@1.31.2")
        .unwrap();
    assert_eq!(
        after.errors, 1,
        "the first step errors, the rest is skipped"
    );
    match &after.test_cases[0].status {
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, NonSuccessKind::Error);
            let message = message.as_ref().unwrap().as_str();
            assert!(
                message.contains("belongs to the pass on Istio 1.31.2, but istiod runs 1.30.5"),
                "{message}"
            );
        }
        other => panic!("never a pass: {other:?}"),
    }
    assert_eq!(
        case_property(&after.test_cases[0], "istio.version"),
        Some("1.30.5")
    );
}

#[test]
fn a_filter_without_a_pass_label_selects_the_step_in_both_passes() {
    let script = script();
    let (code, report, _dir) = run(
        &script,
        &[
            "--upgrade-from",
            "1.30.5",
            "--istio-version",
            "1.31.2",
            "mesh::01",
        ],
    );
    assert_eq!(code, 0);
    let names: Vec<&str> = report.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["mesh@1.30.5", "mesh@1.31.2"]);
    let catalog = suite::load(&SuiteSource::embedded()).unwrap();
    let expectations = catalog.suites[0].steps[0].expect.len();
    assert_eq!(
        *script.judged.lock().unwrap(),
        vec!["mesh::01-no-sidecars"; 2 * expectations],
        "every expectation judged in each pass"
    );
}

#[test]
fn diagnostics_of_the_two_passes_go_to_separate_folders() {
    let mut script = script();
    script.verdicts.insert(
        "ingress::03-rejects-client-without-certificate".into(),
        Verdict::Failed,
    );
    let (_code, report, _dir) = run(
        &script,
        &[
            "--upgrade-from",
            "1.30.5",
            "--istio-version",
            "1.31.2",
            "--suite",
            "ingress",
        ],
    );
    let folders: Vec<String> = report
        .test_suites
        .iter()
        .flat_map(|s| s.test_cases.iter())
        .filter_map(|c| case_property(c, "diagnostics").map(str::to_string))
        .collect();
    assert_eq!(
        folders,
        [
            "reports/diagnostics/ingress@1.30.5-03-rejects-client-without-certificate",
            "reports/diagnostics/ingress@1.31.2-03-rejects-client-without-certificate"
        ]
    );
}

const CANARY: [&str; 6] = [
    "--upgrade-from",
    "1.30.5",
    "--istio-version",
    "1.31.2",
    "--upgrade-mode",
    "canary",
];

fn canary_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = CANARY.to_vec();
    args.extend_from_slice(extra);
    args
}

fn status_of<'a>(report: &'a Report, suite: &str, case: &str) -> &'a TestCaseStatus {
    &report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == suite)
        .unwrap_or_else(|| panic!("no testsuite {suite}"))
        .test_cases
        .iter()
        .find(|c| c.name.as_str() == case)
        .unwrap_or_else(|| panic!("no test case {suite}::{case}"))
        .status
}

fn skipped_because(status: &TestCaseStatus, reason: &str) -> bool {
    matches!(status, TestCaseStatus::Skipped { message, .. }
        if message.as_ref().is_some_and(|m| m.as_str().starts_with(reason)))
}

#[test]
fn a_canary_run_has_two_upgrade_trials_between_the_passes_and_judges_each_batch() {
    let script = script();
    let (code, report, dir) = run(&script, &canary_args(&["--suite", "ingress"]));
    assert_eq!(code, 0);
    let names: Vec<&str> = report.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ingress@1.30.5", "upgrade", "ingress@1.31.2"]);
    let upgrade: Vec<&str> = report.test_suites[1]
        .test_cases
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(upgrade, ["canary-mixed", "canary-complete"]);
    let log = std::fs::read_to_string(dir.path().join("libtest.log")).unwrap();
    let mixed = log.find("test upgrade::canary-mixed").expect("listed");
    let complete = log.find("test upgrade::canary-complete").expect("listed");
    assert!(mixed < complete, "{log}");
    // The moves, in order, between the passes; the canary steps judged in between.
    let actions = script.actions.lock().unwrap().clone();
    let canary: Vec<&str> = actions
        .iter()
        .filter(|a| a.starts_with("canary: "))
        .map(String::as_str)
        .collect();
    assert_eq!(
        canary,
        [
            "canary: install the new version as a revision beside the old one",
            "canary: remove the app namespace's istio-injection label (it wins over istio.io/rev)",
            "canary: move age, name-v2 to the new revision; pin sentences, name to the old revision (restart, wait for the rollouts)",
            "canary: move sentences to the new revision (restart, wait for the rollouts)",
            "canary: move name to the new revision (restart, wait for the rollouts)",
            "canary: move the ingress gateway to the new revision",
            "canary: make the new revision the default one and uninstall the old revision",
        ]
    );
    // Pass 1, then the prepare step's actions, then the moves, then pass 2.
    let first = actions
        .iter()
        .position(|a| a.starts_with("canary: "))
        .unwrap();
    let prepare = actions
        .iter()
        .position(|a| a == "canary-upgrade: apply peer-auth-strict")
        .expect("the prepare step's actions ran");
    assert!(prepare < first, "{actions:?}");
    assert!(
        actions[..prepare]
            .iter()
            .any(|a| a.starts_with("ingress: "))
    );
    assert!(
        actions[first..]
            .iter()
            .any(|a| a == "canary-upgrade: delete peer-auth-strict and wait until gone"),
        "the canary steps' teardown after the last phase: {actions:?}"
    );
    let judged = script.judged.lock().unwrap().clone();
    for step in [
        "canary-upgrade::01-prepare",
        "canary-upgrade::02-old-to-new",
        "canary-upgrade::03-new-to-old",
        "canary-upgrade::04-complete",
    ] {
        assert!(
            judged.iter().any(|j| j == step),
            "{step} judged: {judged:?}"
        );
    }
    let case = &report.test_suites[1].test_cases[0];
    assert!(
        case.system_out
            .as_ref()
            .unwrap()
            .as_str()
            .contains("judge: canary-upgrade::02-old-to-new"),
        "{:?}",
        case.system_out
    );
    assert_eq!(
        case_property(&report.test_suites[2].test_cases[0], "istio.version"),
        Some("1.31.2")
    );
}

#[test]
fn a_failed_canary_phase_skips_what_depends_on_it_with_the_reason() {
    let mut script = script();
    script
        .verdicts
        .insert("canary-upgrade::02-old-to-new".into(), Verdict::Failed);
    let (code, report, _dir) = run(&script, &canary_args(&["--suite", "ingress"]));
    assert_eq!(code, 1, "Istio got it wrong: an outcome failure");
    match status_of(&report, "upgrade", "canary-mixed") {
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, NonSuccessKind::Failure);
            assert!(
                message
                    .as_ref()
                    .unwrap()
                    .as_str()
                    .starts_with("canary-upgrade::02-old-to-new: "),
                "{message:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let reason = "upgrade::canary-mixed did not pass: canary-upgrade::02-old-to-new";
    assert!(skipped_because(
        status_of(&report, "upgrade", "canary-complete"),
        reason
    ));
    let after = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "ingress@1.31.2")
        .unwrap();
    assert_eq!(after.skipped, 4);
    assert!(
        after
            .test_cases
            .iter()
            .all(|c| skipped_because(&c.status, reason))
    );
    let actions = script.actions.lock().unwrap().clone();
    assert!(
        !actions
            .iter()
            .any(|a| a.contains("uninstall the old revision")),
        "nothing after the failure: {actions:?}"
    );
}

#[test]
fn a_canary_change_that_errs_is_an_environment_error_and_skips_the_second_pass() {
    let script = Script {
        canary_error: Some((
            "uninstall the old revision".into(),
            "`istioctl uninstall --revision default -y` exited with 1".into(),
        )),
        ..script()
    };
    let (code, report, _dir) = run(&script, &canary_args(&["--suite", "ingress"]));
    assert_eq!(code, 3);
    assert!(matches!(
        status_of(&report, "upgrade", "canary-mixed"),
        TestCaseStatus::Success { .. }
    ));
    match status_of(&report, "upgrade", "canary-complete") {
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, NonSuccessKind::Error);
            assert!(
                message.as_ref().unwrap().as_str().contains("exited with 1"),
                "{message:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(skipped_because(
        status_of(&report, "ingress@1.31.2", "01-app-with-sidecars"),
        "upgrade::canary-complete did not pass"
    ));
}

#[test]
fn a_selected_canary_complete_carries_out_the_mixed_phase_as_setup_without_judging_it() {
    let script = script();
    let (code, report, _dir) = run(&script, &canary_args(&["upgrade::canary-complete"]));
    assert_eq!(code, 0);
    let names: Vec<&str> = report.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["upgrade"]);
    assert_eq!(report.test_suites[0].tests, 1);
    let judged = script.judged.lock().unwrap().clone();
    assert!(
        judged.iter().all(|j| j == "canary-upgrade::04-complete") && !judged.is_empty(),
        "{judged:?}"
    );
    let actions = script.actions.lock().unwrap().clone();
    assert!(
        actions
            .iter()
            .any(|a| a == "canary: install the new version as a revision beside the old one"),
        "{actions:?}"
    );
    let out = report.test_suites[0].test_cases[0]
        .system_out
        .as_ref()
        .unwrap()
        .as_str()
        .to_string();
    assert!(
        out.contains("(setup) carried out upgrade::canary-mixed before this trial"),
        "{out}"
    );
}

#[test]
fn canary_mode_needs_an_upgrade() {
    let cli = Cli::parse_from_args(["harness", "--upgrade-mode", "canary"]).unwrap();
    let err = RunConfig::from_cli(&cli).unwrap_err();
    assert_eq!(err.code, 2);
    assert!(err.to_string().contains("needs --upgrade-from"), "{err}");
}

fn suite_named<'a>(report: &'a Report, name: &str) -> &'a quick_junit::TestSuite {
    report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == name)
        .unwrap_or_else(|| panic!("no testsuite {name}"))
}

#[test]
fn a_step_whose_trial_panics_is_in_the_junit_and_the_run_does_not_exit_0() {
    let script = Script {
        panic_in_judge: Some("mesh::03-strict-partial-injection".into()),
        ..script()
    };
    let (code, report, dir) = run(&script, &["--suite", "mesh"]);
    let log = std::fs::read_to_string(dir.path().join("libtest.log")).unwrap();
    assert!(
        log.contains("test mesh::03-strict-partial-injection ... FAILED"),
        "libtest itself saw the trial fail: {log}"
    );
    assert_ne!(
        code, 0,
        "a step that was never judged (its trial panicked) is not a pass"
    );
    let mesh = suite_named(&report, "mesh");
    let case = mesh
        .test_cases
        .iter()
        .find(|c| c.name.as_str() == "03-strict-partial-injection")
        .expect("the step whose trial panicked is in the JUnit");
    assert!(
        matches!(case.status, TestCaseStatus::NonSuccess { .. }),
        "{:?}",
        case.status
    );
    assert!(
        mesh.test_cases[3..]
            .iter()
            .all(|c| matches!(c.status, TestCaseStatus::Skipped { .. })),
        "what follows a step that did not pass is skipped"
    );
}

#[test]
fn a_step_is_not_judged_when_istiods_version_is_unknown() {
    // The upgrade moves every proxy to 1.31.2 but leaves istiod on 1.30.5, and istiod's
    // version cannot be read (a transient API error, or an image without a tag).
    let script = Script {
        upgrade_changes_nothing: true,
        upgrade_moves_proxies: true,
        istiod_unreadable: true,
        ..script()
    };
    let (code, report, _dir) = run(
        &script,
        &[
            "--upgrade-from",
            "1.30.5",
            "--istio-version",
            "1.31.2",
            "--suite",
            "ingress",
        ],
    );
    let after = suite_named(&report, "ingress@1.31.2");
    assert!(
        !matches!(after.test_cases[0].status, TestCaseStatus::Success { .. }),
        "README: every step is judged only when istiod and every proxy run its pass's version; \
         istiod's version is unknown (it runs 1.30.5), yet: {:?} (istio.version = {:?})",
        after.test_cases[0].status,
        case_property(&after.test_cases[0], "istio.version")
    );
    assert_ne!(code, 0);
}

#[test]
fn a_report_that_cannot_be_written_never_leaves_the_previous_runs_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    // A first run into the folder: everything passes.
    let (code, _) = run_in(&dir, &script(), &["--suite", "ingress"]);
    assert_eq!(code, 0);
    // The reruns cannot write their reports (here: the temporary files they are written
    // through cannot be created; in CI: a full disk, a folder gone read-only).
    for name in ["junit.xml", "summary.md"] {
        let blocker = dir
            .path()
            .join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
    }
    let mut failing = script();
    failing
        .verdicts
        .insert("ingress::01-app-with-sidecars".into(), Verdict::Failed);
    let code = run_code_in(&dir, &failing, &["--suite", "ingress"]);
    assert_eq!(code, 1, "the steps' outcome still decides the exit code");
    for name in ["junit.xml", "summary.md"] {
        assert!(
            !dir.path().join(name).exists(),
            "the previous run's {name} (all passed) must not stand for this failed run"
        );
    }
    // A run whose steps pass but whose reports cannot be written does not exit 0.
    let code = run_code_in(&dir, &script(), &["--suite", "ingress"]);
    assert_eq!(code, 3, "a green exit code needs a report that says so");
}

/// An interruption wrote the reports (and is deleting the cluster): the run's own
/// ending, which may still come, never writes over them.
#[test]
fn the_run_never_writes_over_the_reports_of_an_interruption() {
    let dir = tempfile::tempdir().unwrap();
    let interrupted = "<testsuites><!-- the interruption's report --></testsuites>";
    std::fs::write(dir.path().join("junit.xml"), interrupted).unwrap();
    let logfile = dir.path().join("libtest.log");
    let argv = vec![
        "harness",
        "--reports-dir",
        dir.path().to_str().unwrap(),
        "--logfile",
        logfile.to_str().unwrap(),
        "--suite",
        "ingress",
    ];
    let cli = Cli::parse_from_args(argv).unwrap();
    let config = RunConfig::from_cli(&cli).unwrap();
    let catalog = suite::load(&SuiteSource::embedded()).unwrap();
    let suites: Vec<Arc<Suite>> = catalog.select(&cli.suites).unwrap();
    let schedule = harness::app::schedule(&cli, &suites, &config).unwrap();
    let shared = Shared::default();
    *shared.interrupted_reports.lock().unwrap() = true;
    harness::app::run_with_world(
        &cli.libtest(),
        schedule,
        Box::new(ScriptedWorld(script())),
        &shared,
        &Progress::new(),
        &config,
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("junit.xml")).unwrap(),
        interrupted
    );
    assert!(!dir.path().join("summary.md").exists());
}

#[test]
fn a_teardown_or_cleanup_failure_after_every_step_passed_is_an_error_and_exit_3() {
    let scripted = Script {
        act_error: Some("virtual-service-mutual, gateway-mutual, tls-secret".into()),
        ..script()
    };
    let (code, report, _dir) = run(&scripted, &["--suite", "ingress"]);
    assert_eq!(code, 3);
    let setup = suite_named(&report, "setup");
    assert_eq!(setup.test_cases[0].name.as_str(), "teardown::ingress");
    assert_eq!(setup.errors, 1);
    assert_eq!(suite_named(&report, "ingress").failures, 0);

    let scripted = Script {
        finish_error: Some("kind delete cluster failed".into()),
        ..script()
    };
    let (code, report, _dir) = run(&scripted, &["--suite", "ingress"]);
    assert_eq!(code, 3);
    let setup = suite_named(&report, "setup");
    assert_eq!(setup.test_cases[0].name.as_str(), "cleanup");
}
