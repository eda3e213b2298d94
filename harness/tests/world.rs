//! The cluster world's glue, end to end without a cluster: actions go to a mock API
//! server (tower-test), probes go to stand-ins of the ingress gateway on loopback (an
//! HTTP server, and a rustls server in MUTUAL mode using the PKI the world issued).

mod common;

use common::kube_mock::{Seen, deployment, endpoint, list, mock, not_found, pod, replica_set};
use common::tls_server::{ServerSpec, Version, serve_on};
use common::{Reply, serve};
use harness::cli::Cli;
use harness::cluster::Live;
use harness::config::RunConfig;
use harness::progress::Progress;
use harness::runner::world::World;
use harness::suite::source::SuiteSource;
use harness::verdict::Verdict;
use harness::world::ClusterWorld;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn api_resources(group_version: &str, kind: &str, plural: &str) -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
           "resources": [{"name": plural, "singularName": kind.to_lowercase(), "namespaced": true, "kind": kind,
                          "verbs": ["create","delete","get","list","patch","update","watch"]}]})
}

fn route(method: &str, uri: &str, _n: usize) -> (u16, Value) {
    let path = uri.split('?').next().unwrap();
    match (method, path) {
        ("GET", "/apis/security.istio.io/v1") => (
            200,
            api_resources(
                "security.istio.io/v1",
                "PeerAuthentication",
                "peerauthentications",
            ),
        ),
        ("GET", "/api/v1") => (200, api_resources("v1", "Secret", "secrets")),
        ("PATCH", p)
            if p.starts_with("/apis/security.istio.io/")
                || p.starts_with("/api/v1/namespaces/istio-system/secrets/") =>
        {
            (
                200,
                json!({"apiVersion": "v1", "kind": "Status", "metadata": {"name": "x"}}),
            )
        }
        ("PATCH", "/apis/apps/v1/namespaces/sentences/deployments/age") => {
            (200, deployment(2, 1, 0, 1, 1))
        }
        ("GET", "/apis/apps/v1/namespaces/sentences/deployments/age") => {
            (200, deployment(2, 2, 1, 1, 1))
        }
        ("GET", "/api/v1/namespaces/sentences/pods") => (
            200,
            list("PodList", vec![pod("age-new-x1", "new", "10.0.0.2", None)]),
        ),
        ("GET", "/apis/apps/v1/namespaces/sentences/replicasets") => {
            (200, list("ReplicaSetList", vec![replica_set("new", "2")]))
        }
        ("GET", "/api/v1/namespaces/sentences/services") => (
            200,
            list(
                "ServiceList",
                vec![json!({"metadata": {"name": "age"}, "spec": {"selector": {"app": "age"}}})],
            ),
        ),
        ("GET", "/apis/discovery.k8s.io/v1/namespaces/sentences/endpointslices") => (
            200,
            list(
                "EndpointSliceList",
                vec![
                    json!({"metadata": {"name": "age-x"}, "addressType": "IPv4", "endpoints": [endpoint("10.0.0.2", "age-new-x1", true)]}),
                ],
            ),
        ),
        _ => not_found(uri),
    }
}

#[test]
fn the_world_carries_out_actions_and_judges_through_its_endpoints() {
    harness::ensure_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let reports = tempfile::tempdir().unwrap();
    let config = RunConfig::from_cli(
        &Cli::parse_from_args(["harness", "--reports-dir", reports.path().to_str().unwrap()])
            .unwrap(),
    )
    .unwrap();

    // The gateway's HTTP side: 500s until flipped, then sentences.
    let restored = Arc::new(AtomicBool::new(false));
    let state = Arc::clone(&restored);
    let http = runtime.block_on(serve(move |_, _| {
        if state.load(Ordering::SeqCst) {
            Reply::text(200, "Peter is 42 years")
        } else {
            // Werkzeug's page: the frontend's own 500 when a backend reset it.
            Reply::Http {
                status: 500,
                body: b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n".to_vec(),
                content_type: "text/html",
            }
        }
    }));
    // The HTTPS side: bound now, served once the world has issued its PKI.
    let tls_listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let tls_address = tls_listener.local_addr().unwrap();

    let (client, seen) = runtime.block_on(async { mock(route) });
    let live = Live::direct(client, http.addr, tls_address, "http://127.0.0.1:1");
    let mut world =
        ClusterWorld::from_live(config, runtime.handle().clone(), Progress::new(), live);
    let catalog = harness::suite::load(&SuiteSource::embedded()).unwrap();
    let (mesh, ingress) = (&catalog.suites[0], &catalog.suites[1]);
    let mut log = Vec::new();

    // mesh::02's action: PeerAuthentication STRICT, server-side applied.
    world
        .act(mesh, &mesh.steps[1].actions[0], &mut log)
        .unwrap();
    assert!(
        log.contains(&"applied PeerAuthentication sentences/default".to_string()),
        "{log:?}"
    );

    // mesh::03: sidecar into age, waiting for the rollout; then 100 % errors.
    world
        .act(mesh, &mesh.steps[2].actions[0], &mut log)
        .unwrap();
    assert!(
        log.iter()
            .any(|l| l.starts_with("age: revision 2 rolled out in")
                && l.ends_with("serving pods: age-new-x1")),
        "{log:?}"
    );
    let quick_fails: harness::suite::Expectation = serde_saphyr::from_str(
        "fails: { class: http-500, consecutive: 10, window: 1s, min_requests: 5 }",
    )
    .unwrap();
    let record = world.judge(mesh, &mesh.steps[2], &quick_fails).judgement;
    assert_eq!(record.verdict, Verdict::Passed, "{:?}", record.evidence);
    assert!(
        record
            .evidence
            .summary
            .starts_with("every request failed with http-500 from the app"),
        "{}",
        record.evidence.summary
    );

    // mesh::04's expectation after the change: traffic restored.
    let quick: harness::suite::Expectation =
        serde_saphyr::from_str("flows: { consecutive: 10, deadline: 2s }").unwrap();
    let record = world.judge(mesh, &mesh.steps[3], &quick).judgement;
    assert_eq!(
        record.verdict,
        Verdict::Failed,
        "still 500s: the flows verdict must fail"
    );
    restored.store(true, Ordering::SeqCst);
    let record = world
        .judge(mesh, &mesh.steps[3], &mesh.steps[3].expect[0])
        .judgement;
    assert_eq!(record.verdict, Verdict::Passed, "{:?}", record.evidence);

    // ingress::02: the run's PKI, its Secret applied where the gateway pods run.
    world
        .act(ingress, &ingress.steps[1].actions[0], &mut log)
        .unwrap();
    assert!(
        log.contains(&"applied Secret istio-system/sentences-tls-secret".to_string()),
        "{log:?}"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains("PRIVATE KEY") || l.contains("LS0t")),
        "no key material in the log: {log:?}"
    );
    let secret: Seen = seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.method == "PATCH" && s.uri.contains("/secrets/sentences-tls-secret"))
        .cloned()
        .expect("the Secret was applied");
    let pki_dir = reports.path().join("pki");
    use base64::Engine;
    let decode = |field: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(secret.body["data"][field].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        decode("cert"),
        std::fs::read_to_string(pki_dir.join("server.crt")).unwrap()
    );
    assert_eq!(
        decode("cacert"),
        std::fs::read_to_string(pki_dir.join("ca.crt")).unwrap()
    );
    assert_eq!(
        decode("key"),
        std::fs::read_to_string(pki_dir.join("server.key")).unwrap()
    );

    // The MUTUAL gateway stand-in serves with exactly that PKI.
    let read = |f: &str| std::fs::read_to_string(pki_dir.join(f)).unwrap();
    {
        let _guard = runtime.enter();
        serve_on(
            tls_listener,
            ServerSpec {
                version: Version::Tls13,
                require_client_cert: true,
                status: 200,
            },
            &read("server.crt"),
            &read("server.key"),
            &read("ca.crt"),
        );
    }
    let record = world
        .judge(ingress, &ingress.steps[1], &ingress.steps[1].expect[0])
        .judgement;
    assert_eq!(record.verdict, Verdict::Passed, "O7: {:?}", record.evidence);
    let curl = record
        .evidence
        .details
        .iter()
        .find(|d| d.starts_with("reproduce: "))
        .expect("a curl line");
    assert_eq!(
        curl,
        &format!(
            "reproduce: curl -sv --resolve sentences.example.com:{port}:127.0.0.1 --cacert {ca} --cert {cert} --key {key} https://sentences.example.com:{port}/",
            port = tls_address.port(),
            ca = pki_dir.join("ca.crt").display(),
            cert = pki_dir.join("client.crt").display(),
            key = pki_dir.join("client.key").display()
        )
    );
    for step in &ingress.steps[2..] {
        for expectation in &step.expect {
            let record = world.judge(ingress, step, expectation).judgement;
            assert_eq!(
                record.verdict,
                Verdict::Passed,
                "{}: {:?}",
                step.trial_name(),
                record.evidence
            );
        }
    }

    // Telemetry with Prometheus unreachable is an environment error, not a verdict.
    let record = world
        .judge(mesh, &mesh.steps[5], &mesh.steps[5].expect[2])
        .judgement;
    assert_eq!(record.verdict, Verdict::Errored, "{:?}", record.evidence);
    drop(world);
}
