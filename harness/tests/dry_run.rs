//! The provisioning part of `--dry-run`: the phases in the order setup runs them, what
//! runs at the same time, and the commands a real run would execute.

use std::process::Command;

fn provisioning(args: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["--dry-run", "--reports-dir", dir.path().to_str().unwrap()])
        .args(args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("KUBECONFIG")
        .output()
        .expect("the harness binary runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let start = text
        .find("provision (")
        .unwrap_or_else(|| panic!("no provisioning section:\n{text}"));
    let end = text.find("suite ").unwrap_or(text.len());
    text[start..end].lines().map(str::to_string).collect()
}

/// The numbered phase lines, without their numbers.
fn phases(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            let t = l.trim_start();
            let (n, rest) = t.split_once(". ")?;
            n.parse::<u32>().ok().map(|_| rest.to_string())
        })
        .collect()
}

#[test]
fn a_kind_run_shows_every_phase_in_order_with_what_runs_at_the_same_time() {
    let lines = provisioning(&["--istio-version", "1.31.2", "--scrape-interval", "15s"]);
    let phases = phases(&lines);
    let expected_starts = [
        "preflight: the Docker engine answers /_ping at unix:///nonexistent/docker.sock",
        "tools: kind ",
        "create the kind cluster  ∥  download the Istio release",
        "preflight: the API server answers",
        "istioctl install  ∥  the Prometheus addon  ∥  pre-pull images onto the node",
        "wait until rolled out: istio-system/istiod  ∥  istio-system/istio-ingressgateway  ∥  istio-system/prometheus",
        "reach the gateway and Prometheus",
    ];
    assert_eq!(phases.len(), expected_starts.len(), "{lines:#?}");
    for (phase, start) in phases.iter().zip(expected_starts) {
        assert!(phase.starts_with(start), "`{phase}` should start `{start}`");
    }
    assert!(lines[0].contains("7 phases in order"), "{}", lines[0]);
    let all = lines.join("\n");
    for needle in [
        "kind create cluster --name istio-mtls --image kindest/node:",
        "download Istio 1.31.2: https://github.com/istio/istio/releases/download/1.31.2/istio-1.31.2-",
        "istioctl install -y --set profile=default --set hub=docker.io/istio --set tag=1.31.2",
        "scrape interval 15s",
        "docker.io/istio/proxyv2:1.31.2",
        "port-forward to the one the cluster runs (istio-system/prometheus pod port 9090",
    ] {
        assert!(all.contains(needle), "lacks {needle}:\n{all}");
    }
    // The commands sit under the phase that runs them.
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}"))
    };
    assert!(position("kind create cluster --name") > position("3. create the kind cluster"));
    assert!(position("kind create cluster --name") < position("4. preflight"));
    assert!(position("istioctl install -y") > position("5. istioctl install"));
    assert!(position("istioctl install -y") < position("6. wait until"));
}

#[test]
fn an_existing_cluster_with_its_own_prometheus_skips_kind_the_addon_and_the_pre_pull() {
    // A dry run checks the kubeconfig and its context as a run does.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: ci\ncontexts:\n- name: ci\n  context: {cluster: c, user: u}\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:6443\"}\nusers:\n- name: u\n  user: {token: t}\n",
    )
    .unwrap();
    let kubeconfig = kubeconfig.display().to_string();
    let lines = provisioning(&[
        "--kubeconfig",
        &kubeconfig,
        "--context",
        "ci",
        "--prometheus-url",
        "http://prometheus.example:9090",
        "--ingress-address",
        "127.0.0.1:8080",
    ]);
    let phases = phases(&lines);
    let all = lines.join("\n");
    assert!(
        phases[0].starts_with(&format!(
            "existing cluster: kubeconfig {kubeconfig}, context ci"
        )),
        "{all}"
    );
    assert!(
        !all.contains("kind create") && !all.contains("Docker"),
        "{all}"
    );
    assert!(
        !all.contains("pre-pull") && !all.contains("addon:"),
        "{all}"
    );
    assert!(
        phases.iter().any(|p| p == "istioctl install"),
        "install runs alone: {all}"
    );
    assert!(
        phases
            .iter()
            .any(|p| p.starts_with("wait until rolled out:") && !p.contains("prometheus")),
        "{all}"
    );
    for needle in [
        "ingress gateway HTTP: 127.0.0.1:8080",
        "ingress gateway HTTPS: port-forward to the istio-system/istio-ingressgateway pod port behind service port 443",
        "Prometheus: http://prometheus.example:9090",
    ] {
        assert!(all.contains(needle), "lacks {needle}:\n{all}");
    }
}

#[test]
fn an_upgrade_run_installs_the_version_it_starts_from() {
    let lines = provisioning(&["--upgrade-from", "1.30.5", "--istio-version", "1.31.2"]);
    let all = lines.join("\n");
    assert!(
        all.contains("--set tag=1.30.5") && all.contains("download Istio 1.30.5"),
        "{all}"
    );
    assert!(!all.contains("--set tag=1.31.2"), "{all}");
}

/// The plan's whole text for `args`.
fn plan(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["--dry-run", "--reports-dir", dir.path().to_str().unwrap()])
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("the harness binary runs");
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// (lower bound, windows, telemetry phases) from the plan's lower-bound line.
fn lower_bound(text: &str) -> (u64, u64, u64) {
    let line = text
        .lines()
        .find(|l| l.starts_with("Expected lower bound of the judged steps: "))
        .unwrap_or_else(|| panic!("no lower bound in:\n{text}"));
    let secs = |s: &str| {
        harness::suite::duration::HumanDuration::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .0
            .as_secs()
    };
    let rest = line.trim_start_matches("Expected lower bound of the judged steps: ");
    let (bound, rest) = rest.split_once(" (hold and fail windows ").unwrap();
    let (windows, rest) = rest.split_once(", ").unwrap();
    let phases = rest.split_once(' ').unwrap().0.parse().unwrap();
    (secs(bound), secs(windows), phases)
}

#[test]
fn the_lower_bound_adds_the_windows_and_three_scrapes_per_telemetry_phase() {
    let (at_5s, windows, phases) = lower_bound(&plan(&[]));
    assert!(
        windows >= 30 && phases >= 5,
        "O2's hold and O3's fail window, five telemetry phases"
    );
    assert_eq!(at_5s, windows + phases * 3 * 5);
    let (at_15s, windows_15, phases_15) = lower_bound(&plan(&["--scrape-interval", "15s"]));
    assert_eq!((windows_15, phases_15), (windows, phases));
    assert_eq!(at_15s, windows + phases * 3 * 15);
    // Only what is judged counts: the ingress suite has no windows and no telemetry.
    assert_eq!(lower_bound(&plan(&["--suite", "ingress"])), (0, 0, 0));
    // A Prometheus of the user's: its interval is unknown to a dry run.
    let text = plan(&["--prometheus-url", "http://prometheus.example:9090"]);
    assert!(text.contains("unknown to a dry run: 15s assumed"), "{text}");
    assert_eq!(lower_bound(&text).0, windows + phases * 3 * 15);
}
