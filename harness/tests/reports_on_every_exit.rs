//! The binary as CI runs it: every exit of a run leaves `junit.xml` and `summary.md`
//! (a version that cannot be resolved, a kubeconfig that cannot be used, a setup
//! failure, SIGHUP, a signal while the run still resolves its version), a setup failure
//! lists every selected step as skipped, and two runs never share a reports folder.

#![cfg(target_os = "linux")]

#[path = "common/processes.rs"]
mod processes;

use processes::wait_bounded;
use quick_junit::{Report, TestCaseStatus};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The harness with no Docker, no kubeconfig, an empty cache and `releases` as the
/// Istio release list.
fn harness(cache: &Path, releases: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_harness"));
    command
        .args(args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("HARNESS_ISTIO_RELEASES_URL", releases)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("GITHUB_TOKEN")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("KUBECONFIG");
    command
}

/// A URL nothing listens on.
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/repos/istio/istio/releases")
}

fn junit(reports: &Path) -> Report {
    let xml = std::fs::read_to_string(reports.join("junit.xml")).expect("junit.xml written");
    Report::deserialize_from_str(&xml).expect("junit.xml parses")
}

/// `(suite, case, skipped?)` of every case, in order.
fn cases(report: &Report) -> Vec<(String, String, bool)> {
    report
        .test_suites
        .iter()
        .flat_map(|s| {
            s.test_cases.iter().map(move |c| {
                (
                    s.name.to_string(),
                    c.name.to_string(),
                    matches!(c.status, TestCaseStatus::Skipped { .. }),
                )
            })
        })
        .collect()
}

fn property(report: &Report, name: &str) -> Option<String> {
    report.test_suites[0]
        .properties
        .iter()
        .find(|p| p.name.as_str() == name)
        .map(|p| p.value.to_string())
}

fn skipped_message(report: &Report, suite: &str) -> String {
    report
        .test_suites
        .iter()
        .filter(|s| s.name.as_str() == suite)
        .flat_map(|s| &s.test_cases)
        .find_map(|c| match &c.status {
            TestCaseStatus::Skipped { message, .. } => message.as_ref().map(|m| m.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

#[test]
fn a_setup_failure_lists_every_selected_step_as_skipped_and_opens_the_summary_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let out = harness(
        dir.path(),
        &closed_url(),
        &[
            "--reports-dir",
            reports.to_str().unwrap(),
            "--istio-version",
            "1.31.2",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let report = junit(&reports);
    let all = cases(&report);
    let skipped: Vec<_> = all.iter().filter(|(_, _, s)| *s).collect();
    assert_eq!(all[0].0, "setup", "{all:?}");
    assert_eq!(all[0].1, "preflight", "{all:?}");
    assert_eq!(skipped.len(), all.len() - 1, "{all:?}");
    assert!(skipped.len() >= 10, "every step of both suites: {all:?}");
    assert!(
        skipped_message(&report, "mesh").contains("setup failed (preflight): no Docker engine"),
        "{}",
        skipped_message(&report, "mesh")
    );
    assert_eq!(
        property(&report, "istio.requested").as_deref(),
        Some("1.31.2")
    );
    assert_eq!(
        property(&report, "istio.installed"),
        None,
        "nothing was installed"
    );
    let summary = std::fs::read_to_string(reports.join("summary.md")).unwrap();
    let first = summary.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "## Istio mTLS conformance — setup failed: 0 of {n} steps ran (0 passed, 0 failed, 0 errors, {n} not run)",
            n = skipped.len()
        )
    );
}

#[test]
fn a_version_that_cannot_be_resolved_offline_still_leaves_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    for version in ["1.30", "latest"] {
        let out = harness(
            dir.path(),
            &closed_url(),
            &[
                "--reports-dir",
                reports.to_str().unwrap(),
                "--istio-version",
                version,
            ],
        )
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(3), "{err}");
        let report = junit(&reports);
        let all = cases(&report);
        assert_eq!((all[0].0.as_str(), all[0].1.as_str()), ("setup", "resolve"));
        assert!(
            all.iter().skip(1).all(|(_, _, s)| *s) && all.len() > 10,
            "{all:?}"
        );
        assert!(
            skipped_message(&report, "ingress").contains("cannot resolve --istio-version"),
            "{}",
            skipped_message(&report, "ingress")
        );
        assert_eq!(
            property(&report, "istio.requested").as_deref(),
            Some(version)
        );
        let summary = std::fs::read_to_string(reports.join("summary.md")).unwrap();
        assert!(
            summary.starts_with("## Istio mTLS conformance — setup failed: 0 of "),
            "{summary}"
        );
        assert!(
            !reports.join(".harness.lock").exists(),
            "the lock goes with the run"
        );
    }
}

#[test]
fn a_kubeconfig_that_cannot_be_used_leaves_the_reports_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let missing = dir.path().join("missing");
    let out = harness(
        dir.path(),
        &closed_url(),
        &[
            "--reports-dir",
            reports.to_str().unwrap(),
            "--istio-version",
            "1.31.2",
            "--kubeconfig",
            missing.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report = junit(&reports);
    let all = cases(&report);
    assert_eq!(all[0].1, "kubeconfig", "{all:?}");
    assert!(skipped_message(&report, "mesh").contains("does not exist"));
}

#[test]
fn a_second_run_into_the_same_reports_folder_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    // A live process holding the folder (the lock names only its PID, as on a system
    // without /proc).
    let mut holder = Command::new("sleep").arg("30").spawn().unwrap();
    let lock = reports.join(".harness.lock");
    std::fs::write(&lock, holder.id().to_string()).unwrap();
    std::fs::write(reports.join("junit.xml"), "<testsuites/>").unwrap();
    let run = |reports: &Path| {
        harness(
            dir.path(),
            &closed_url(),
            &[
                "--reports-dir",
                reports.to_str().unwrap(),
                "--istio-version",
                "1.31.2",
            ],
        )
        .output()
        .unwrap()
    };
    let out = run(&reports);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "in use by another run of the harness (PID {},",
            holder.id()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        std::fs::read_to_string(reports.join("junit.xml")).unwrap(),
        "<testsuites/>",
        "the first run's report is left alone"
    );
    // Once that process is gone, its lock is stale and taken over.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let out = run(&reports);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(cases(&junit(&reports))[0].1, "preflight");
    assert!(!lock.exists());
}

/// Starts a run whose version resolution hangs on a release list that never answers,
/// and returns once the harness has asked it (so the run is past its first steps),
/// with the list's connection held open: closing it would end the resolution with a
/// reset before the signal arrives.
fn run_stuck_resolving(dir: &Path, reports: &Path) -> (Child, std::net::TcpStream) {
    let list = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/repos/istio/istio/releases",
        list.local_addr().unwrap()
    );
    let child = harness(
        dir,
        &url,
        &[
            "--reports-dir",
            reports.to_str().unwrap(),
            "--istio-version",
            "latest",
        ],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    list.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let connection = loop {
        if let Ok((connection, _)) = list.accept() {
            break connection;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the harness never asked the release list"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    (child, connection)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_signal_while_the_version_is_still_resolved_writes_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let (child, _connection) = run_stuck_resolving(dir.path(), &reports);
    signal(&child, "TERM");
    let (code, err) = wait_bounded(child);
    assert_eq!(code, Some(143), "{err}");
    let all = cases(&junit(&reports));
    assert!(all.iter().any(|(_, c, _)| c == "interrupted"), "{all:?}");
    assert!(reports.join("summary.md").exists());
    assert!(!reports.join(".harness.lock").exists());
}

#[test]
fn sighup_ends_the_run_with_129_and_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let (child, _connection) = run_stuck_resolving(dir.path(), &reports);
    signal(&child, "HUP");
    let (code, err) = wait_bounded(child);
    assert_eq!(code, Some(129), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("interrupted (SIGHUP)")),
        "{err}"
    );
    let summary = std::fs::read_to_string(reports.join("summary.md")).unwrap();
    assert!(
        summary.starts_with("## Istio mTLS conformance — interrupted: 0 of "),
        "{summary}"
    );
}
