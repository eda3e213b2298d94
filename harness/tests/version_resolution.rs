//! The binary resolving versions as a user or the nightly runs it, against a release
//! list served on loopback (HARNESS_ISTIO_RELEASES_URL): `--print-matrix`, `--list` and
//! `--dry-run` with minors and `latest`, what the report records, and the exit codes
//! of a version never released and of a list out of reach.

#[path = "common/release_list.rs"]
mod release_list;

use release_list::{ReleaseServer, paged, release, serve};
use serde_json::Value;
use std::process::{Command, Output};

/// 1.32.0 has shipped; clusters/versions.yaml lists 1.30 and 1.31.
fn served() -> ReleaseServer {
    serve(paged(
        vec![
            release("1.32.1", false, true),
            release("1.32.0", false, false),
            release("1.32.0-rc.2", true, false),
            release("1.31.2", false, false),
            release("1.30.5", false, false),
            release("1.31.1", false, false),
            release("1.30.4", false, false),
            release("1.31.0", false, false),
            release("1.29.7", false, false),
        ],
        4,
        true,
    ))
}

fn harness(url: &str, cache: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .env("HARNESS_ISTIO_RELEASES_URL", url)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("GITHUB_TOKEN")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("KUBECONFIG")
        .output()
        .expect("the harness binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A URL nothing listens on.
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/repos/istio/istio/releases")
}

#[test]
fn print_matrix_is_one_json_line_with_the_new_minor_marked_unlisted() {
    let server = served();
    let cache = tempfile::tempdir().unwrap();
    let out = harness(&server.url, cache.path(), &["--print-matrix"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "{\"include\":[{\"istio\":\"1.30.5\",\"minor\":\"1.30\",\"listed\":true},{\"istio\":\"1.31.2\",\"minor\":\"1.31\",\"listed\":true},{\"istio\":\"1.32.0\",\"minor\":\"1.32\",\"listed\":false}],\"upgrade\":{\"from\":\"1.30.5\",\"to\":\"1.31.2\"}}\n"
    );
    let matrix: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(matrix["include"].as_array().unwrap().len(), 3);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn list_and_dry_run_show_the_resolved_versions_and_say_how_they_were_resolved() {
    let server = served();
    let cache = tempfile::tempdir().unwrap();
    let out = harness(
        &server.url,
        cache.path(),
        &[
            "--list",
            "--upgrade-from",
            "1.30",
            "--istio-version",
            "1.31",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(listed[0], "mesh@1.30.5::01-no-sidecars: test");
    assert_eq!(listed[10], "upgrade::1.30.5-to-1.31.2: test");
    assert_eq!(listed[11], "mesh@1.31.2::01-no-sidecars: test");
    assert_eq!(
        stderr(&out),
        "Istio 1.30 → 1.30.5 (newest patch of 1.30)\nIstio 1.31 → 1.31.2 (newest patch of 1.31)\n"
    );

    let out = harness(
        &server.url,
        cache.path(),
        &["--list", "--istio-version", "1.31"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("mesh::01-no-sidecars: test\n"));
    assert_eq!(stderr(&out), "Istio 1.31 → 1.31.2 (newest patch of 1.31)\n");

    let reports = tempfile::tempdir().unwrap();
    let out = harness(
        &server.url,
        cache.path(),
        &[
            "--dry-run",
            "--istio-version",
            "latest",
            "--reports-dir",
            reports.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "Istio latest → 1.32.0 (newest release)\n");
    let plan = stdout(&out);
    assert!(plan.contains("--set tag=1.32.0"), "{plan}");
    assert!(
        plan.contains("/1.32.0/istio-1.32.0-") && !plan.contains("1.32.1"),
        "{plan}"
    );
}

#[test]
fn a_run_records_what_was_asked_for_beside_what_was_installed() {
    let server = served();
    let cache = tempfile::tempdir().unwrap();
    let reports = tempfile::tempdir().unwrap();
    // No Docker here: the run stops at preflight, and still writes its report.
    let out = harness(
        &server.url,
        cache.path(),
        &[
            "--istio-version",
            "1.31",
            "--reports-dir",
            reports.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let xml = std::fs::read_to_string(reports.path().join("junit.xml")).unwrap();
    let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    let property = |name: &str| {
        report.test_suites[0]
            .properties
            .iter()
            .find(|p| p.name.as_str() == name)
            .map(|p| p.value.as_str().to_string())
    };
    assert_eq!(
        property("istio.requested").as_deref(),
        Some("1.31"),
        "{xml}"
    );
    assert_eq!(
        property("istio.version").as_deref(),
        Some("1.31.2"),
        "{xml}"
    );
    assert_eq!(
        property("istio.installed"),
        None,
        "nothing installed: {xml}"
    );
    let summary = std::fs::read_to_string(reports.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("Istio 1.31.2 (requested: 1.31, nothing installed) · Kubernetes"),
        "{summary}"
    );
}

#[test]
fn a_version_never_released_exits_3_naming_the_newest_patch_of_its_minor() {
    let server = served();
    let cache = tempfile::tempdir().unwrap();
    let out = harness(
        &server.url,
        cache.path(),
        &[
            "--list",
            "--upgrade-from",
            "1.30",
            "--istio-version",
            "1.31.9",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "error: Istio 1.31.9 was never released; the newest 1.31 patch is 1.31.2\n"
    );
    assert!(stdout(&out).is_empty(), "nothing listed");
    let out = harness(
        &server.url,
        cache.path(),
        &["--list", "--istio-version", "1.33"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out),
        "error: Istio 1.33 has no release yet; the newest release is 1.32.0\n"
    );
}

#[test]
fn an_unreachable_list_exits_3_unless_a_copy_is_cached_and_exact_versions_never_need_it() {
    let cache = tempfile::tempdir().unwrap();
    let url = closed_url();
    let out = harness(&url, cache.path(), &["--list", "--istio-version", "1.31"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: cannot resolve --istio-version 1.31: cannot read the Istio release list {url}: "
        )) && err
            .contains(", and no copy of it is cached; pass an exact version instead (such as "),
        "{err}"
    );
    let out = harness(&url, cache.path(), &["--print-matrix"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("error: --print-matrix needs the release list: "),
        "{}",
        stderr(&out)
    );

    // Exact versions: no request at all.
    let server = served();
    let out = harness(
        &server.url,
        cache.path(),
        &[
            "--list",
            "--upgrade-from",
            "1.30.1",
            "--istio-version",
            "1.31.7",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(server.requests().is_empty());
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    // A read that worked leaves a copy; with the list gone, the copy is used, saying so.
    let out = harness(
        &server.url,
        cache.path(),
        &["--list", "--istio-version", "1.31"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let url = server.url.clone();
    drop(server);
    let out = harness(&url, cache.path(), &["--list", "--istio-version", "1.31"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "warning: cannot read the Istio release list {url}: "
        )) && lines[0].contains("; using the copy cached less than a minute ago ("),
        "{err}"
    );
    assert_eq!(lines[1], "Istio 1.31 → 1.31.2 (newest patch of 1.31)");
}
