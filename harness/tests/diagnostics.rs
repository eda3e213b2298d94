//! The diagnostics bundle against a mock API server: what it asks for, what it writes,
//! and that an error or a timeout is recorded without hanging or hiding anything.

mod common;

use common::kube_mock::{list, mock, not_found};
use harness::cli::Cli;
use harness::cluster::diagnostics::collect_within;
use harness::config::RunConfig;
use harness::suite::source::SuiteSource;
use serde_json::json;
use std::time::{Duration, Instant};

fn config(reports: &std::path::Path) -> RunConfig {
    RunConfig::from_cli(
        &Cli::parse_from_args(["harness", "--reports-dir", reports.to_str().unwrap()]).unwrap(),
    )
    .unwrap()
}

fn pod() -> serde_json::Value {
    json!({"metadata": {"name": "age-1", "namespace": "sentences"},
           "spec": {"initContainers": [{"name": "istio-init"}, {"name": "istio-proxy", "restartPolicy": "Always"}],
                    "containers": [{"name": "age"}]}})
}

#[tokio::test]
async fn the_bundle_holds_pods_logs_events_and_istio_resources_and_lists_what_failed() {
    let (client, log) = mock(|method, uri, _| {
        let path = uri.split('?').next().unwrap();
        match (method, path) {
            ("GET", p) if p.ends_with("/pods") => (200, list("PodList", vec![pod()])),
            ("GET", p) if p.contains("/pods/") && p.ends_with("/log") => (200, json!("log line\n")),
            ("GET", p) if p.ends_with("/events") => (
                200,
                list(
                    "EventList",
                    vec![json!({
                "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "age-1"},
                "reason": "BackOff", "message": "Back-off pulling image", "type": "Warning"})],
                ),
            ),
            ("GET", p)
                if p.starts_with("/apis/networking.istio.io/")
                    || p.starts_with("/apis/security.istio.io/") =>
            {
                (
                    200,
                    list(
                        "List",
                        vec![
                            json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default"}, "spec": {"mtls": {"mode": "STRICT"}}}),
                        ],
                    ),
                )
            }
            // No deployments: the proxy configs cannot be found, which the bundle records.
            _ => not_found(uri),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir
        .path()
        .join("diagnostics/mesh-03-strict-partial-injection");
    let catalog = harness::suite::load(&SuiteSource::embedded()).unwrap();
    let result = collect_within(
        &client,
        &config(dir.path()),
        &catalog.suites[0],
        &bundle,
        None,
        Duration::from_secs(20),
    )
    .await;

    let err = result.expect_err("the proxy configs could not be collected");
    assert!(err.contains("errors.txt"), "{err}");
    let errors = std::fs::read_to_string(bundle.join("errors.txt")).unwrap();
    assert!(
        errors.contains("selector of istio-ingressgateway")
            && errors.contains("selector of sentences")
            && errors.contains("istiod pods: no ready istiod pod"),
        "{errors}"
    );

    let pods = std::fs::read_to_string(bundle.join("pods.yaml")).unwrap();
    assert!(
        pods.contains("age-1") && pods.contains("istio-proxy"),
        "{pods}"
    );
    assert!(bundle.join("logs/age-1.age.log").is_file());
    assert!(
        bundle.join("logs/age-1.istio-proxy.log").is_file(),
        "the native sidecar's log is kept too"
    );
    let events = std::fs::read_to_string(bundle.join("events-sentences.txt")).unwrap();
    assert!(
        events.contains("Pod/age-1: BackOff Back-off pulling image"),
        "{events}"
    );
    let pa =
        std::fs::read_to_string(bundle.join("istio/sentences.peerauthentications.yaml")).unwrap();
    assert!(pa.contains("STRICT"), "{pa}");

    let log = log.lock().unwrap();
    let logs_of_proxy = log
        .iter()
        .find(|s| s.uri.contains("/pods/age-1/log") && s.uri.contains("container=istio-proxy"))
        .expect("istio-proxy logs asked for");
    assert!(
        logs_of_proxy.uri.contains("tailLines=500"),
        "{}",
        logs_of_proxy.uri
    );
    assert!(
        log.iter().any(
            |s| s.uri.starts_with("/api/v1/namespaces/istio-system/pods?")
                && s.uri.contains("app%3Distiod")
        ),
        "istiod's pods"
    );
    assert!(
        log.iter().any(|s| s
            .uri
            .starts_with("/apis/networking.istio.io/v1/namespaces/istio-system/gateways")),
        "gateways in the ingress namespace"
    );
    assert!(
        log.iter().all(|s| s.method == "GET"),
        "collection only reads"
    );
}

#[tokio::test]
async fn a_silent_api_server_stops_the_collection_at_its_deadline() {
    // tower-test with nobody answering: every request hangs.
    let (service, _handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let client = kube::Client::new(service, "default");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("diagnostics/x");
    let catalog = harness::suite::load(&SuiteSource::embedded()).unwrap();
    let started = Instant::now();
    let err = collect_within(
        &client,
        &config(dir.path()),
        &catalog.suites[0],
        &bundle,
        None,
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("could not be collected"), "{err}");
    let errors = std::fs::read_to_string(bundle.join("errors.txt")).unwrap();
    assert!(
        errors.contains("collection stopped at its 1 s deadline"),
        "{errors}"
    );
}
