//! The binary as a user runs it: exit codes, --list, --dry-run, a run without Docker.

#[cfg(target_os = "linux")]
#[path = "common/processes.rs"]
mod processes;
#[cfg(target_os = "linux")]
use processes::{process_runs, wait_bounded};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        // No Docker engine here; make sure of it even on a machine that has one.
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("KUBECONFIG")
        .output()
        .expect("the harness binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn unknown_suite_exits_2_with_one_line_listing_the_valid_ones() {
    let out = harness(&["--suite", "nope", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("unknown suite `nope`; valid suites: mesh, ingress"),
        "{err}"
    );
}

#[test]
fn bad_input_exits_2() {
    for args in [
        &["--istio-version", "1.31.x", "--dry-run"][..],
        &["--app-namespace", "Not_A_Namespace", "--dry-run"][..],
        &["--ingress-address", "nowhere", "--dry-run"][..],
        &["--no-such-flag"][..],
    ] {
        let out = harness(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = harness(&["--suites-dir", dir.path().to_str().unwrap(), "--list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("index.yaml:1:1"), "{}", stderr(&out));
}

#[test]
fn a_kubeconfig_that_cannot_be_used_exits_2_before_the_cluster_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let malformed = dir.path().join("malformed");
    std::fs::write(&malformed, "clusters: [oops").unwrap();
    let one_context = dir.path().join("one-context");
    std::fs::write(
        &one_context,
        "apiVersion: v1\nkind: Config\ncurrent-context: a\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\nclusters: []\nusers: []\n",
    )
    .unwrap();
    let missing = dir.path().join("missing");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--kubeconfig", missing.to_str().unwrap()],
            "does not exist",
        ),
        (
            &["--kubeconfig", malformed.to_str().unwrap()],
            "is malformed",
        ),
        (
            &[
                "--kubeconfig",
                one_context.to_str().unwrap(),
                "--context",
                "b",
            ],
            "context `b` is not in",
        ),
    ];
    for (args, needle) in cases {
        let started = Instant::now();
        let mut all = args.to_vec();
        all.extend(["--reports-dir", reports.to_str().unwrap()]);
        let out = harness(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert!(errors.len() == 1 && errors[0].contains(needle), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // The report says why nothing ran (every step skipped, see reports_on_every_exit).
        let xml = std::fs::read_to_string(reports.join("junit.xml")).unwrap();
        assert!(
            xml.contains("name=\"kubeconfig\"") && xml.contains(needle),
            "{xml}"
        );
    }
}

#[test]
fn list_names_every_step_in_order() {
    let out = harness(&["--list"]);
    assert_eq!(out.status.code(), Some(0));
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test").map(str::to_string))
        .collect();
    assert_eq!(listed.len(), 10, "{listed:?}");
    assert_eq!(listed[0], "mesh::01-no-sidecars");
    assert_eq!(listed[5], "mesh::06-destination-rule-subsets");
    assert_eq!(
        listed[9],
        "ingress::04-rejects-untrusted-client-certificate"
    );
    let out = harness(&["--list", "--suite", "ingress"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.ends_with(": test"))
            .count(),
        4
    );
}

#[test]
fn dry_run_writes_the_rendered_plan_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let out = harness(&[
        "--dry-run",
        "--reports-dir",
        reports.to_str().unwrap(),
        "--image",
        "registry.local/katas:1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    for needle in [
        "mesh::01-no-sidecars [O1]",
        "mesh::06-destination-rule-subsets [O6]",
        "ingress::04-rejects-untrusted-client-certificate [O9]",
        "expect:",
        "deadline:",
    ] {
        assert!(plan.contains(needle), "plan lacks {needle}:\n{plan}");
    }
    let name = std::fs::read_to_string(
        reports.join("plan/01-mesh-01-no-sidecars/01-apply-shared-name.yaml"),
    )
    .unwrap();
    assert!(
        name.contains("image: registry.local/katas:1") && name.contains("namespace: sentences")
    );
    assert!(name.contains("sidecar.istio.io/inject: 'false'"));
    assert!(!name.contains("{{"), "every placeholder rendered");
    let secret = reports.join(
        "plan/09-ingress-02-mutual-gateway-accepts-client-certificate/01-apply-tls-secret.yaml",
    );
    let text = std::fs::read_to_string(&secret).unwrap();
    assert!(text.contains("namespace: istio-system") && text.contains("cacert: "));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(reports.join("plan/pki/server.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    assert!(
        !plan.contains("PRIVATE KEY") && !stderr(&out).contains("PRIVATE KEY"),
        "no key is printed"
    );
    assert!(
        !reports.join("junit.xml").exists(),
        "a dry run judges nothing"
    );
    assert!(
        !reports.join("pki").exists(),
        "the plan's PKI never replaces the pki/ a kept cluster still uses"
    );
}

#[test]
fn dry_run_shows_the_exercise_app_as_upstream_ships_it() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let out = harness(&["--dry-run", "--reports-dir", reports.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let folder = reports.join("plan/01-mesh-01-no-sidecars");
    let read = |f: &str| std::fs::read_to_string(folder.join(f)).unwrap();
    let digest = "image: ghcr.io/michaelvl/istio-katas@sha256:9ec280c27e4cfc88cef63866a35652e1e6238b3cbbbf4a46246343392310a31f";
    for (file, facts) in [
        (
            "01-apply-shared-sentences.yaml",
            &[
                "name: sentences",
                "app: sentences",
                "mode: sentence",
                "value: \"sentence\"",
            ][..],
        ),
        (
            "01-apply-shared-age.yaml",
            &["name: age", "app: sentences-age", "mode: age"][..],
        ),
        (
            "01-apply-shared-name.yaml",
            &[
                "name: name\n",
                "name: name-v2",
                "app: sentences-name",
                "version: v1",
                "version: v2",
                "value: \"Athos (v2),Porthos (v2),Aramis (v2),d'Artagnan (v2)\"",
            ][..],
        ),
    ] {
        let text = read(file);
        assert!(
            text.contains(digest),
            "{file}: the exercise's image by digest"
        );
        for fact in facts.iter().chain(&[
            "app.kubernetes.io/part-of: sentences",
            "sidecar.istio.io/inject: 'false'",
            "name: api",
            "appProtocol: http",
            "port: 5000",
        ]) {
            assert!(text.contains(fact), "{file} lacks `{fact}`:\n{text}");
        }
    }
    let namespace = read("01-apply-shared-namespace.yaml");
    assert!(
        namespace.contains("istio-injection: enabled")
            && namespace.contains("app.kubernetes.io/managed-by: istio-mtls-harness"),
        "{namespace}"
    );

    // Object by object, so a fact cannot be borrowed from a neighbour in the same file:
    // every Deployment (name, version, mode, env, annotation, image) and every Service
    // (port, selector) as upstream's deploy/mtls/ has them.
    let documents: Vec<serde_json::Value> = ["sentences", "age", "name"]
        .iter()
        .flat_map(|f| {
            serde_saphyr::from_multiple::<serde_json::Value>(&read(&format!(
                "01-apply-shared-{f}.yaml"
            )))
            .unwrap()
        })
        .filter(|d| !d.is_null())
        .collect();
    let of_kind = |kind: &str| -> Vec<&serde_json::Value> {
        documents.iter().filter(|d| d["kind"] == kind).collect()
    };
    let image = digest.trim_start_matches("image: ");
    let deployments = of_kind("Deployment");
    let expected = [
        ("sentences", "sentences", "sentence", None),
        ("age", "sentences-age", "age", None),
        ("name", "sentences-name", "name", Some("v1")),
        ("name-v2", "sentences-name", "name", Some("v2")),
    ];
    assert_eq!(deployments.len(), expected.len());
    for (name, app, mode, version) in expected {
        let d = deployments
            .iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Deployment {name}"));
        let template = &d["spec"]["template"];
        let labels = &template["metadata"]["labels"];
        assert_eq!(labels["app"], app, "{name}");
        assert_eq!(labels["mode"], mode, "{name}");
        assert_eq!(labels["app.kubernetes.io/part-of"], "sentences", "{name}");
        if let Some(version) = version {
            assert_eq!(labels["version"], version, "{name}");
        }
        assert_eq!(
            d["spec"]["selector"]["matchLabels"]["app"], app,
            "{name}: the selector picks the template's pods"
        );
        let annotations = &template["metadata"]["annotations"];
        assert_eq!(annotations["sidecar.istio.io/inject"], "false", "{name}");
        assert_eq!(annotations["dummy"], "123", "{name}");
        let container = &template["spec"]["containers"][0];
        assert_eq!(container["image"], image, "{name}");
        let env = container["env"].as_array().unwrap();
        let var = |n: &str| env.iter().find(|e| e["name"] == n).map(|e| &e["value"]);
        assert_eq!(
            var("SENTENCE_MODE"),
            Some(&serde_json::json!(mode)),
            "{name}"
        );
        assert_eq!(
            var("SENTENCE_NAMES").is_some(),
            name == "name-v2",
            "{name}: only v2 names the musketeers"
        );
    }
    let services = of_kind("Service");
    assert_eq!(services.len(), 3);
    for (name, app) in [
        ("sentences", "sentences"),
        ("age", "sentences-age"),
        ("name", "sentences-name"),
    ] {
        let svc = services
            .iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Service {name}"));
        let port = &svc["spec"]["ports"][0];
        assert_eq!(
            (
                &port["name"],
                &port["port"],
                &port["targetPort"],
                &port["appProtocol"]
            ),
            (
                &serde_json::json!("api"),
                &serde_json::json!(5000),
                &serde_json::json!(5000),
                &serde_json::json!("http")
            ),
            "{name}"
        );
        assert_eq!(svc["spec"]["selector"]["app"], app, "{name}");
        assert!(
            svc["spec"]["selector"].get("version").is_none(),
            "{name}: the Service selects every version"
        );
    }
}

#[test]
fn a_run_without_docker_exits_3_within_seconds_and_leaves_a_junit_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    // What a previous run left in the same folder: none of it may read as this run's.
    let stale = dir
        .path()
        .join("diagnostics/mesh-03-strict-partial-injection");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("pods.yaml"), "kind: PodList\n").unwrap();
    std::fs::write(dir.path().join("junit.xml"), "<testsuites/>").unwrap();
    std::fs::write(dir.path().join("summary.md"), "all passed").unwrap();
    let started = Instant::now();
    let out = harness(&["--reports-dir", dir.path().to_str().unwrap()]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: preflight: no Docker engine reachable")),
        "{err}"
    );
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("⚠️ **setup::preflight**: no Docker engine reachable"),
        "{summary}"
    );
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    let case = &report.test_suites[0].test_cases[0];
    assert_eq!(case.name.as_str(), "preflight");
    assert!(
        matches!(&case.status, quick_junit::TestCaseStatus::NonSuccess { message, .. }
        if message.as_ref().unwrap().as_str().contains("no Docker engine"))
    );
    assert!(
        !dir.path().join("diagnostics").exists(),
        "the previous run's diagnostics are gone"
    );
    assert!(!summary.contains("all passed"), "{summary}");
}

#[test]
fn dry_run_shows_the_upgrade_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let out = harness(&[
        "--dry-run",
        "--upgrade-from",
        "1.30.5",
        "--istio-version",
        "1.31.2",
        "--reports-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    let order = [
        "--set tag=1.30.5",
        "pass 1 on Istio 1.30.5:",
        "mesh@1.30.5::01-no-sidecars",
        "ingress@1.30.5::04-rejects-untrusted-client-certificate",
        "upgrade::1.30.5-to-1.31.2: upgrade Istio in place from 1.30.5 to 1.31.2",
        "istioctl upgrade -y --set profile=default --set hub=docker.io/istio --set tag=1.31.2",
        "restart every deployment in sentences",
        "every istio-proxy (app pods and ingress gateway) runs 1.31.2",
        "pass 2 on Istio 1.31.2:",
        "mesh@1.31.2::06-destination-rule-subsets",
    ];
    let mut at = 0;
    for needle in order {
        let found = plan[at..]
            .find(needle)
            .unwrap_or_else(|| panic!("`{needle}` missing or out of order in:\n{plan}"));
        at += found + needle.len();
    }
    let out = harness(&[
        "--dry-run",
        "--upgrade-from",
        "1.31.2",
        "--istio-version",
        "1.30.5",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("must be older"), "{}", stderr(&out));
}

#[test]
fn ctrl_c_during_setup_writes_the_junit_and_exits_130() {
    // A Docker socket that accepts and never answers keeps preflight waiting (bounded).
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let reports = dir.path().join("reports");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["--reports-dir", reports.to_str().unwrap()])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the harness is in its setup (it says so), then interrupt it.
    let started = Instant::now();
    let stderr = child.stderr.take().unwrap();
    let mut reader = std::io::BufReader::new(stderr);
    let mut line = String::new();
    use std::io::BufRead;
    while reader.read_line(&mut line).unwrap() > 0 && !line.contains("setting up the cluster") {
        line.clear();
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130));
    let xml = std::fs::read_to_string(reports.join("junit.xml")).expect("JUnit written on Ctrl-C");
    let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    let names: Vec<&str> = report.test_suites[0]
        .test_cases
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["interrupted"], "{xml}");
}

#[test]
fn a_selection_that_matches_nothing_exits_2_before_any_setup() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = harness(&["mesh::3", "--reports-dir", dir.path().to_str().unwrap()]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no step matches `mesh::3`; steps are: mesh::01-no-sidecars, "),
        "{err}"
    );
    assert!(!dir.path().join("junit.xml").exists(), "nothing ran");
    let out = harness(&["--skip", "mesh", "--skip", "ingress", "--list"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn dry_run_honours_the_selection_and_marks_setup_only_steps() {
    let dir = tempfile::tempdir().unwrap();
    let out = harness(&[
        "mesh::03",
        "--suite",
        "mesh",
        "--dry-run",
        "--reports-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(plan.contains("Plan: 1 step(s) judged of 6"), "{plan}");
    assert!(
        plan.contains("mesh::01-no-sidecars [O1]: Without sidecars, traffic flows through the ingress gateway [setup only: its actions run, it is not judged]"),
        "{plan}"
    );
    assert!(
        plan.contains("mesh::04-permissive-restores [O4]: PERMISSIVE restores traffic [not run]"),
        "{plan}"
    );
    assert!(!plan.contains("suite ingress"), "--suite honoured: {plan}");
    // The judged step lists its expectations; setup-only ones do not.
    let o3 = &plan[plan.find("mesh::03-strict-partial-injection").unwrap()..];
    assert!(o3.contains("expect: traffic fails"), "{plan}");
    let o1 = &plan[plan.find("mesh::01-no-sidecars").unwrap()..plan.find("mesh::02").unwrap()];
    assert!(!o1.contains("expect:"), "{o1}");
    assert!(o1.contains("do:     apply shared/namespace"), "{o1}");
}

#[test]
fn list_validates_like_a_run_and_prints_the_real_trial_names() {
    let out = harness(&[
        "--list",
        "--upgrade-from",
        "1.30.5",
        "--istio-version",
        "1.31.2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.ends_with("\n\n21 tests, 0 benchmarks\n"), "{text}");
    let listed: Vec<String> = text
        .lines()
        .filter(|l| l.ends_with(": test"))
        .map(str::to_string)
        .collect();
    assert_eq!(listed.len(), 21, "{listed:?}");
    assert_eq!(listed[0], "mesh@1.30.5::01-no-sidecars: test");
    assert_eq!(listed[10], "upgrade::1.30.5-to-1.31.2: test");
    assert_eq!(listed[11], "mesh@1.31.2::01-no-sidecars: test");
    assert!(!listed.iter().any(|l| l.contains("<target>")));
    // `--list` of an upgrade run with a filter: (stdout lines, stderr lines).
    let list_upgrade = |filter: &str| {
        let out = harness(&[
            "--list",
            "--upgrade-from",
            "1.30.5",
            "--istio-version",
            "1.31.2",
            filter,
        ]);
        let lines = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let listed: Vec<String> = lines(&out.stdout)
            .into_iter()
            .filter(|l| l.ends_with(": test"))
            .collect();
        (listed, lines(&out.stderr))
    };
    // A filter without the pass label selects the step in both passes (and the upgrade
    // runs between them as its setup).
    let (listed, setup) = list_upgrade("mesh::01");
    assert_eq!(
        listed,
        [
            "mesh@1.30.5::01-no-sidecars: test",
            "mesh@1.31.2::01-no-sidecars: test"
        ]
    );
    assert_eq!(
        setup,
        [
            "setup only: upgrade::1.30.5-to-1.31.2 (the upgrade is carried out before the trials after it)"
        ]
    );
    // A later step: the earlier steps of each pass are carried out as its setup, shown
    // on standard error so the list stays what libtest tools parse.
    let (listed, setup) = list_upgrade("mesh::03");
    assert_eq!(
        listed,
        [
            "mesh@1.30.5::03-strict-partial-injection: test",
            "mesh@1.31.2::03-strict-partial-injection: test"
        ]
    );
    assert_eq!(
        setup,
        [
            "setup only: mesh@1.30.5::01-no-sidecars (its actions run, it is not judged)",
            "setup only: mesh@1.30.5::02-strict-without-sidecars (its actions run, it is not judged)",
            "setup only: upgrade::1.30.5-to-1.31.2 (the upgrade is carried out before the trials after it)",
            "setup only: mesh@1.31.2::01-no-sidecars (its actions run, it is not judged)",
            "setup only: mesh@1.31.2::02-strict-without-sidecars (its actions run, it is not judged)",
        ]
    );
    // --list refuses what a run refuses.
    let out = harness(&[
        "--list",
        "--upgrade-from",
        "1.31.2",
        "--istio-version",
        "1.30.5",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("must be older"), "{}", stderr(&out));
}

#[test]
fn versions_older_than_native_sidecars_are_refused_with_the_reason() {
    for args in [
        &["--istio-version", "1.27.3", "--list"][..],
        &[
            "--upgrade-from",
            "1.26.0",
            "--istio-version",
            "1.31.2",
            "--list",
        ][..],
    ] {
        let out = harness(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("older than the harness supports") && err.contains("native sidecars"),
            "{err}"
        );
    }
}

#[test]
fn help_starts_with_the_harness_options_grouped_and_argument_errors_are_one_line() {
    let out = harness(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let order = [
        "Selection:",
        "--suite",
        "Cluster:",
        "--istio-version",
        "Reaching the cluster:",
        "--prometheus-url",
        "Reports:",
        "--reports-dir",
        "Output (as libtest):",
        "--format",
        "Accepted for compatibility, no effect:",
        "--test-threads",
    ];
    let mut at = 0;
    for needle in order {
        let found = help[at..]
            .find(needle)
            .unwrap_or_else(|| panic!("`{needle}` missing or out of order in:\n{help}"));
        at += found + needle.len();
    }
    for untrue in ["in parallel", "benchmark", "Benchmark"] {
        assert!(!help.contains(untrue), "`{untrue}` in:\n{help}");
    }
    let out = harness(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("--no-such-flag") && err.contains("--help"),
        "{err}"
    );
}

#[test]
fn list_and_dry_run_into_a_closed_or_full_output_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    for args in [
        &[
            "--list",
            "--upgrade-from",
            "1.30.5",
            "--istio-version",
            "1.31.2",
        ][..],
        &[
            "--dry-run",
            "--istio-version",
            "1.31.2",
            "--reports-dir",
            reports.to_str().unwrap(),
        ][..],
    ] {
        // A pipe whose reading end is closed (`| head` gone), and a full device.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        for (what, stdout) in [
            ("closed", std::process::Stdio::from(writer)),
            ("full", std::process::Stdio::from(full)),
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_harness"))
                .args(args)
                .env_remove("KUBECONFIG")
                .stdout(stdout)
                .stderr(std::process::Stdio::piped())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(!err.contains("panicked"), "{what} {args:?}: {err}");
            assert_eq!(out.status.code(), Some(3), "{what} {args:?}: {err}");
            let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
            assert!(
                errors.len() == 1 && errors[0].contains("cannot write to standard output"),
                "{what} {args:?}: {err}"
            );
        }
    }
}

#[test]
fn list_ends_with_libtests_count_line_and_takes_several_filters() {
    let out = harness(&["--list", "mesh::01", "ingress::02"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        text,
        "mesh::01-no-sidecars: test\ningress::02-mutual-gateway-accepts-client-certificate: test\n\n2 tests, 0 benchmarks\n"
    );
}

#[test]
fn unwritable_reports_and_logfile_fail_before_setup_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    // A reports folder below a regular file cannot exist.
    let reports = file.join("reports");
    let out = harness(&["--reports-dir", reports.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "printed once: {err}");
    assert!(
        err.contains(reports.to_str().unwrap()) && err.contains("not writable"),
        "{err}"
    );
    let out = harness(&[
        "--reports-dir",
        dir.path().join("reports").to_str().unwrap(),
        "--logfile",
        file.join("log.txt").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("--logfile"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn sigterm_is_handled_like_ctrl_c_with_the_runs_properties_and_exit_143() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let reports = dir.path().join("reports");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "--reports-dir",
            reports.to_str().unwrap(),
            "--istio-version",
            "1.30.5",
        ])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let stderr = child.stderr.take().unwrap();
    let mut reader = std::io::BufReader::new(stderr);
    let mut line = String::new();
    use std::io::BufRead;
    while reader.read_line(&mut line).unwrap() > 0 && !line.contains("setting up the cluster") {
        line.clear();
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(143));
    let mut rest = String::new();
    use std::io::Read;
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("interrupted (SIGTERM)"), "{rest}");
    assert!(
        !rest.contains("kind delete cluster"),
        "no cluster was created, so no hint to delete one: {rest}"
    );
    let xml = std::fs::read_to_string(reports.join("junit.xml")).expect("JUnit written on SIGTERM");
    let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    let setup = &report.test_suites[0];
    assert!(
        setup
            .properties
            .iter()
            .any(|p| p.name.as_str() == "istio.version" && p.value.as_str() == "1.30.5"),
        "the interrupted report carries the run's properties: {xml}"
    );
    assert!(reports.join("summary.md").exists());
}

/// A Docker engine that answers `/_ping` and nothing else, on a unix socket.
fn docker_ping_stand_in(socket: &std::path::Path) {
    let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK");
        }
    });
}

/// A machine for kind runs: a Docker engine that answers `/_ping`, and a `kind` of the
/// pinned version on PATH whose subcommands run the given shell snippets and append
/// their arguments to `kind.log`.
#[cfg(target_os = "linux")]
struct FakeKind {
    dir: tempfile::TempDir,
}

#[cfg(target_os = "linux")]
impl FakeKind {
    fn new(get: &str, create: &str, delete: &str) -> FakeKind {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        docker_ping_stand_in(&dir.path().join("docker.sock"));
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let kind_version = harness::config::Versions::embedded().kind.version;
        let script = format!(
            "#!/bin/sh\ncd {dir}\ncase \"$1\" in\n  version) echo \"kind {kind_version} go1.25 linux/amd64\" ;;\n  get) {get} ;;\n  create) echo \"$*\" >> kind.log; {create} ;;\n  delete) echo \"$*\" >> kind.log; {delete} ;;\n  *) exit 1 ;;\nesac\n",
            dir = dir.path().display(),
        );
        std::fs::write(bin.join("kind"), script).unwrap();
        std::fs::set_permissions(bin.join("kind"), std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeKind { dir }
    }

    fn path(&self, file: &str) -> std::path::PathBuf {
        self.dir.path().join(file)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("kind.log")).unwrap_or_default()
    }

    /// The harness on this machine, creating cluster `name`.
    fn run(&self, name: &str) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_harness"))
            .args([
                "--reports-dir",
                self.path("reports").to_str().unwrap(),
                "--istio-version",
                "1.30.5",
                "--cluster-name",
                name,
            ])
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.path("docker.sock").display()),
            )
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.path("bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("XDG_CACHE_HOME", self.path("cache"))
            // The release download runs beside the create; it must not reach the network.
            .env(
                "HARNESS_ISTIO_DOWNLOAD_URL",
                "http://127.0.0.1:9/{version}/{file}",
            )
            .env_remove("KUBECONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until `file` exists, failing with the harness's stderr if it ended first.
    fn wait_for(&self, file: &str, harness: &mut std::process::Child) {
        let started = Instant::now();
        while !self.path(file).exists() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{file} never appeared; kind calls: {}",
                self.log()
            );
            if let Some(status) = harness.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                harness
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("the harness ended ({status}) before {file} appeared: {err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(target_os = "linux")]
fn sigterm(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[cfg(target_os = "linux")]
#[test]
fn sigterm_while_kind_creates_the_cluster_stops_kind_and_deletes_the_cluster() {
    // A `create cluster` that takes as long as a real one.
    let kind = FakeKind::new(
        "true",
        "echo $$ > create.pid.tmp; mv create.pid.tmp create.pid; exec sleep 120",
        "true",
    );
    let mut child = kind.run("sigterm-during-create");
    kind.wait_for("create.pid", &mut child);
    let kind_create = std::fs::read_to_string(kind.path("create.pid")).unwrap();
    assert!(process_runs(&kind_create));
    sigterm(&child);
    let (code, err) = wait_bounded(child);
    assert_eq!(code, Some(143), "{err}");
    assert!(
        err.contains("deleted kind cluster `sigterm-during-create`"),
        "{err}"
    );
    assert!(!err.contains("delete it with"), "{err}");
    let calls = kind.log();
    assert_eq!(
        calls
            .lines()
            .filter(|l| *l == "delete cluster --name sigterm-during-create")
            .count(),
        1,
        "the cluster being created is deleted, once (two kind deletes at once fail): {calls}"
    );
    // The create itself was stopped, so it cannot finish a cluster after the delete.
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_runs(&kind_create) {
        assert!(
            Instant::now() < deadline,
            "kind create outlived the harness"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn sigterm_while_the_run_deletes_its_cluster_lets_the_delete_finish() {
    // The cluster is made, its API server cannot be reached (setup fails), and the run's
    // end deletes it; the signal comes while that `kind delete` is under way.
    let kubeconfig = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:9\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {token: t}\n";
    let kind = FakeKind::new(
        &format!("printf '%s' '{kubeconfig}'"),
        "true",
        "touch delete.started; sleep 2; echo finished >> kind.log",
    );
    let mut child = kind.run("sigterm-during-delete");
    kind.wait_for("delete.started", &mut child);
    sigterm(&child);
    let (code, err) = wait_bounded(child);
    assert_eq!(code, Some(143), "{err}");
    // Not killed half-way: the delete ran to its end before the harness exited, and the
    // interruption waited for it instead of starting a second one.
    let calls = kind.log();
    assert_eq!(
        calls.lines().filter(|l| *l == "finished").count(),
        1,
        "the run's kind delete was stopped half-way: {calls}\n{err}"
    );
    assert_eq!(
        calls
            .lines()
            .filter(|l| l.starts_with("delete cluster"))
            .count(),
        1,
        "one kind delete, not two at once: {calls}"
    );
    assert!(
        err.contains("deleted kind cluster `sigterm-during-delete`"),
        "{err}"
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

#[test]
fn list_shows_the_two_canary_trials_between_the_passes() {
    let mut args = vec!["--list", "--suite", "ingress"];
    args.extend_from_slice(&CANARY);
    let out = harness(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test").map(str::to_string))
        .collect();
    let steps = [
        "01-app-with-sidecars",
        "02-mutual-gateway-accepts-client-certificate",
        "03-rejects-client-without-certificate",
        "04-rejects-untrusted-client-certificate",
    ];
    let mut expected: Vec<String> = steps
        .iter()
        .map(|s| format!("ingress@1.30.5::{s}"))
        .collect();
    expected.push("upgrade::canary-mixed".into());
    expected.push("upgrade::canary-complete".into());
    expected.extend(steps.iter().map(|s| format!("ingress@1.31.2::{s}")));
    assert_eq!(listed, expected);
    // `upgrade::canary` selects both phases; the in-place mode keeps its single trial.
    let mut args = vec!["--list", "upgrade::canary"];
    args.extend_from_slice(&CANARY);
    let out = harness(&args);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "upgrade::canary-mixed: test\nupgrade::canary-complete: test\n\n2 tests, 0 benchmarks\n"
    );
    let out = harness(&[
        "--list",
        "upgrade::",
        "--upgrade-from",
        "1.30.5",
        "--istio-version",
        "1.31.2",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "upgrade::1.30.5-to-1.31.2: test\n\n1 test, 0 benchmarks\n"
    );
    // Canary without an upgrade is a usage error.
    let out = harness(&["--list", "--upgrade-mode", "canary"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--upgrade-mode canary needs --upgrade-from"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dry_run_shows_the_canary_sequence_with_the_exact_commands_and_labels_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--dry-run", "--reports-dir", dir.path().to_str().unwrap()];
    args.extend_from_slice(&CANARY);
    let out = harness(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    let order = [
        "istioctl install -y --set profile=default --set hub=docker.io/istio --set tag=1.30.5",
        "pass 1 on Istio 1.30.5:",
        "ingress@1.30.5::04-rejects-untrusted-client-certificate",
        "upgrade::canary-mixed: canary upgrade from 1.30.5 to 1.31.2",
        "canary-upgrade::01-prepare",
        "apply peer-auth-strict",
        "istioctl install -y --set profile=minimal --set revision=1-31-2 --set hub=docker.io/istio --set tag=1.31.2 --set meshConfig.accessLogFile=/dev/stdout",
        "kubectl label namespace sentences istio-injection-",
        r#"kubectl -n sentences patch deployment sentences --type merge -p '{"spec":{"template":{"metadata":{"labels":{"istio.io/rev":"default"}}}}}'"#,
        r#"kubectl -n sentences patch deployment age --type merge -p '{"spec":{"template":{"metadata":{"labels":{"istio.io/rev":"1-31-2"}}}}}'"#,
        "canary-upgrade::02-old-to-new",
        "expect: telemetry after 40 requests: istio-ingressgateway → sentences all mTLS (padlock), sentences → age all mTLS (padlock)",
        r#"kubectl -n sentences patch deployment sentences --type merge -p '{"spec":{"template":{"metadata":{"labels":{"istio.io/rev":"1-31-2"}}}}}'"#,
        "canary-upgrade::03-new-to-old",
        "upgrade::canary-complete: canary upgrade from 1.30.5 to 1.31.2",
        r#"kubectl -n sentences patch deployment name --type merge -p '{"spec":{"template":{"metadata":{"labels":{"istio.io/rev":"1-31-2"}}}}}'"#,
        "istioctl install -y --set profile=default --set revision=1-31-2 --set hub=docker.io/istio --set tag=1.31.2",
        "istioctl tag set default --revision 1-31-2 --overwrite -y",
        "istioctl uninstall --revision default -y",
        "kubectl label namespace sentences istio-injection=enabled",
        "canary-upgrade::04-complete",
        "expect: proxy versions: istio-ingressgateway, sentences, age, name, name-v2 on the new version and revision",
        "canary-upgrade::teardown: unless --keep",
        "pass 2 on Istio 1.31.2:",
        "mesh@1.31.2::01-no-sidecars",
        "ingress@1.31.2::04-rejects-untrusted-client-certificate",
    ];
    let mut at = 0;
    for needle in order {
        let found = plan[at..]
            .find(needle)
            .unwrap_or_else(|| panic!("`{needle}` missing or out of order in:\n{plan}"));
        at += found + needle.len();
    }
    assert!(
        !plan.contains("istioctl upgrade"),
        "a canary never upgrades in place:\n{plan}"
    );
    // A selected second phase carries out the first as setup, without judging it.
    let mut args = vec![
        "--dry-run",
        "--reports-dir",
        dir.path().to_str().unwrap(),
        "upgrade::canary-complete",
    ];
    args.extend_from_slice(&CANARY);
    let plan = String::from_utf8_lossy(&harness(&args).stdout).to_string();
    assert!(
        plan.contains("upgrade::canary-mixed: canary upgrade from 1.30.5 to 1.31.2: 1.31.2 as a revision beside 1.30.5, part of the app moved to it, mTLS across the revisions under STRICT [setup: carried out before the selected trials after it, not judged]")
            && plan.contains("canary-upgrade::02-old-to-new: age and name-v2 on the new revision; old-revision sentences calls them over mTLS [setup only: not judged]"),
        "{plan}"
    );
}

#[test]
fn help_wraps_to_the_terminal_and_names_every_environment_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("--help")
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let long: Vec<&str> = help.lines().filter(|l| l.chars().count() > 80).collect();
    assert!(long.is_empty(), "lines wider than the terminal: {long:#?}");
    for var in [
        "KUBECONFIG",
        "DOCKER_HOST",
        "XDG_CACHE_HOME",
        "HOME",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_TOKEN",
        "RUST_LOG",
        "HARNESS_ISTIO_RELEASES_URL",
        "HARNESS_ISTIO_DOWNLOAD_URL",
        "PATH",
    ] {
        assert!(
            help.contains(&format!("{var}:")) || help.contains(&format!("{var},")),
            "{var} missing:\n{help}"
        );
    }
    assert!(help.contains("129 hung up (SIGHUP)"), "{help}");
}

#[test]
fn arguments_naming_things_elsewhere_are_checked_by_syntax_not_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let reports = reports.to_str().unwrap();
    // A host name that resolves nowhere is accepted (resolved when connecting).
    let out = harness(&[
        "--dry-run",
        "--reports-dir",
        reports,
        "--ingress-address",
        "gateway.does-not-resolve.invalid:80",
        "--ingress-tls-address",
        "[::1]:8443",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        plan.contains("ingress gateway HTTP: gateway.does-not-resolve.invalid:80")
            && plan.contains("ingress gateway HTTPS: [::1]:8443"),
        "{plan}"
    );
    for (args, needle) in [
        (&["--ingress-address", "gateway"][..], "is not HOST:PORT"),
        (
            &["--image", "Docker.io/App:v1"][..],
            "is not an image reference",
        ),
        (&["--image", "sentences@sha256:abc"][..], "is not a digest"),
        (&["--prometheus-url", "http://"][..], "not a URL"),
        (
            &["--prometheus-url", "http://:9090"][..],
            "--prometheus-url",
        ),
    ] {
        let mut all = vec!["--dry-run", "--reports-dir", reports];
        all.extend_from_slice(args);
        let out = harness(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}

#[test]
fn dry_run_checks_the_kubeconfig_and_names_no_file_it_does_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let missing = dir.path().join("missing");
    let out = harness(&[
        "--dry-run",
        "--reports-dir",
        reports.to_str().unwrap(),
        "--kubeconfig",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let out = harness(&["--dry-run", "--reports-dir", reports.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    // Every file under the reports folder the plan names as written is there.
    for line in plan.lines().filter(|l| l.trim_start().starts_with("→ ")) {
        let path = line.trim_start().trim_start_matches("→ ");
        let path = path.split(" (").next().unwrap();
        assert!(
            std::path::Path::new(path).is_file(),
            "named but not written: {line}"
        );
    }
    let kind_config = reports.join("kind-config.yaml");
    assert!(!kind_config.exists());
    for line in plan.lines().filter(|l| l.contains("kind-config.yaml")) {
        assert!(
            line.contains("the run writes it") || line.contains("kind create cluster"),
            "names a file the dry run does not write: {line}"
        );
    }
}

#[test]
fn an_ssh_docker_host_is_refused_at_once_saying_what_works() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "--reports-dir",
            dir.path().join("reports").to_str().unwrap(),
            "--istio-version",
            "1.31.2",
        ])
        .env("DOCKER_HOST", "ssh://builder@remote")
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(
        errors.len() == 1
            && errors[0].contains("`ssh`, which the harness does not support")
            && errors[0].contains("DOCKER_HOST=unix:///tmp/docker.sock"),
        "{err}"
    );
}

/// With neither XDG_CACHE_HOME nor HOME the run is refused where it first needs its
/// cache (the pinned kind), naming both: nothing is downloaded to, or run from, /tmp.
#[cfg(target_os = "linux")]
#[test]
fn without_a_cache_home_the_run_is_refused_and_nothing_lands_in_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    docker_ping_stand_in(&socket);
    let empty_path = dir.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let reports = dir.path().join("reports");
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "--reports-dir",
            reports.to_str().unwrap(),
            "--istio-version",
            "1.31.2",
        ])
        .env_clear()
        .env("PATH", &empty_path)
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env("TMPDIR", dir.path().join("tmp"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(
        errors.len() == 1
            && errors[0].contains("no cache folder: set XDG_CACHE_HOME or HOME")
            && errors[0].contains("/tmp"),
        "{err}"
    );
    assert!(!dir.path().join("tmp/istio-mtls-harness").exists());
}
