//! Request shapes of the cluster layer against a mock API server (tower-test, kube's
//! own pattern), and the preflight against real sockets.

mod common;

use common::kube_mock::{Seen, deployment, endpoint, list, mock, not_found, pod, replica_set};
use harness::cluster::apply::{Applier, FIELD_MANAGER, parse_documents};
use harness::cluster::{connect, istio_objects, istiod_debug, rollout, workloads};
use harness::verdict::Verdict;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn istio_security_resources() -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "security.istio.io/v1",
        "resources": [{"name": "peerauthentications", "singularName": "peerauthentication", "namespaced": true,
                       "kind": "PeerAuthentication", "verbs": ["create","delete","get","list","patch","update","watch"]}]
    })
}

const PEER_AUTH: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: sentences\nspec:\n  mtls:\n    mode: STRICT\n";

#[tokio::test]
async fn apply_is_a_forced_server_side_apply_under_the_harness_field_manager() {
    let (client, log) = mock(
        |method, uri, _| match (method, uri.split('?').next().unwrap()) {
            ("GET", "/apis/security.istio.io/v1") => (200, istio_security_resources()),
            ("PATCH", _) => (
                200,
                json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": "sentences"}}),
            ),
            _ => not_found(uri),
        },
    );
    let obj = parse_documents(PEER_AUTH).unwrap().remove(0);
    Applier::new(client).apply(&obj).await.unwrap();
    let log = log.lock().unwrap();
    let patch = log.iter().find(|s| s.method == "PATCH").expect("a PATCH");
    let (path, query) = patch.uri.split_once('?').unwrap();
    assert_eq!(
        path,
        "/apis/security.istio.io/v1/namespaces/sentences/peerauthentications/default"
    );
    assert!(query.split('&').any(|p| p == "force=true"), "{query}");
    assert!(
        query
            .split('&')
            .any(|p| p == format!("fieldManager={FIELD_MANAGER}")),
        "{query}"
    );
    assert_eq!(patch.content_type, "application/apply-patch+yaml");
    assert_eq!(patch.body["spec"]["mtls"]["mode"], "STRICT");
    assert_eq!(patch.body["kind"], "PeerAuthentication");
}

#[tokio::test]
async fn apply_waits_for_a_kind_whose_crd_is_not_established_yet() {
    let (client, log) = mock(
        |method, uri, n| match (method, uri.split('?').next().unwrap()) {
            // The group is not served for the first two discovery calls.
            ("GET", "/apis/security.istio.io/v1") if n < 2 => not_found("security.istio.io/v1"),
            ("GET", "/apis/security.istio.io/v1") => (200, istio_security_resources()),
            ("PATCH", _) => (
                200,
                json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default"}}),
            ),
            _ => not_found(uri),
        },
    );
    let obj = parse_documents(PEER_AUTH).unwrap().remove(0);
    Applier::new(client).apply(&obj).await.unwrap();
    let log = log.lock().unwrap();
    let discovery = log
        .iter()
        .filter(|s| s.uri.starts_with("/apis/security.istio.io/v1") && s.method == "GET")
        .count();
    assert_eq!(discovery, 3, "{log:?}");
    assert_eq!(log.last().unwrap().method, "PATCH");
}

#[tokio::test]
async fn ensure_creates_only_what_is_missing() {
    let (client, log) = mock(
        |method, uri, _| match (method, uri.split('?').next().unwrap()) {
            ("GET", "/apis/security.istio.io/v1") => (200, istio_security_resources()),
            ("GET", _) => (
                200,
                json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": "sentences"}}),
            ),
            _ => (500, json!({})),
        },
    );
    let obj = parse_documents(PEER_AUTH).unwrap().remove(0);
    assert!(
        !Applier::new(client).ensure(&obj).await.unwrap(),
        "an existing object is left alone"
    );
    assert!(log.lock().unwrap().iter().all(|s| s.method == "GET"));

    let (client, log) = mock(
        |method, uri, _| match (method, uri.split('?').next().unwrap()) {
            ("GET", "/apis/security.istio.io/v1") => (200, istio_security_resources()),
            ("GET", _) => not_found("default"),
            ("POST", _) => (
                201,
                json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": "sentences"}}),
            ),
            _ => (500, json!({})),
        },
    );
    assert!(Applier::new(client).ensure(&obj).await.unwrap());
    let log = log.lock().unwrap();
    let post = log.iter().find(|s| s.method == "POST").unwrap();
    assert!(
        post.uri
            .starts_with("/apis/security.istio.io/v1/namespaces/sentences/peerauthentications?"),
        "{}",
        post.uri
    );
    assert!(post.uri.contains(&format!("fieldManager={FIELD_MANAGER}")));
}

#[tokio::test]
async fn delete_waits_until_the_object_is_gone() {
    let (client, log) = mock(
        |method, uri, n| match (method, uri.split('?').next().unwrap()) {
            ("GET", "/apis/security.istio.io/v1") => (200, istio_security_resources()),
            ("DELETE", _) => (
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            ("GET", _) if n < 2 => (
                200,
                json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": "sentences", "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            ),
            ("GET", _) => not_found("default"),
            _ => (500, json!({})),
        },
    );
    let obj = parse_documents(PEER_AUTH).unwrap().remove(0);
    Applier::new(client)
        .delete_and_wait(&obj, Duration::from_secs(10))
        .await
        .unwrap();
    let log = log.lock().unwrap();
    let calls: Vec<String> = log
        .iter()
        .map(|s| format!("{} {}", s.method, s.uri.split('?').next().unwrap()))
        .collect();
    let object = "/apis/security.istio.io/v1/namespaces/sentences/peerauthentications/default";
    assert_eq!(
        calls[1..],
        [
            format!("DELETE {object}"),
            format!("GET {object}"),
            format!("GET {object}"),
            format!("GET {object}")
        ],
        "{calls:?}"
    );
}

#[tokio::test]
async fn delete_that_never_completes_is_an_error_at_the_deadline() {
    let (client, _log) = mock(
        |method, uri, _| match (method, uri.split('?').next().unwrap()) {
            ("GET", "/apis/security.istio.io/v1") => (200, istio_security_resources()),
            ("DELETE", _) => (
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            ("GET", _) => (
                200,
                json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": "sentences", "finalizers": ["x"]}}),
            ),
            _ => (500, json!({})),
        },
    );
    let obj = parse_documents(PEER_AUTH).unwrap().remove(0);
    let err = Applier::new(client)
        .delete_and_wait(&obj, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        err.contains("still exists") && err.contains("finalizer"),
        "{err}"
    );
}

#[tokio::test]
async fn injection_removes_the_pod_template_annotation_with_a_merge_patch() {
    let (client, log) = mock(|_, _, _| {
        (
            200,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "age"}}),
        )
    });
    workloads::set_injection(&client, "sentences", "age", true)
        .await
        .unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log[0].method, "PATCH");
    assert_eq!(
        log[0].uri.split('?').next().unwrap(),
        "/apis/apps/v1/namespaces/sentences/deployments/age"
    );
    assert_eq!(log[0].content_type, "application/merge-patch+json");
    // Under the harness's field manager, so what it changes stays recorded as its own.
    assert!(
        log[0]
            .uri
            .contains(&format!("fieldManager={FIELD_MANAGER}")),
        "{}",
        log[0].uri
    );
    // The exercise's way: the annotation `sidecar.istio.io/inject: 'false'` removed
    // (`grep -v inject`), and a label of the same name (which would win) too.
    assert_eq!(
        log[0].body,
        json!({"spec": {"template": {"metadata": {
            "annotations": {"sidecar.istio.io/inject": null},
            "labels": {"sidecar.istio.io/inject": null}}}}})
    );
}

#[tokio::test]
async fn rollout_waits_for_status_and_for_old_endpoints_to_leave() {
    let (client, log) = mock(|method, uri, n| {
        let path = uri.split('?').next().unwrap();
        match (method, path) {
            // Generation 2 not yet observed, then done.
            ("GET", "/apis/apps/v1/namespaces/sentences/deployments/age") if n == 0 => {
                (200, deployment(2, 1, 0, 1, 1))
            }
            ("GET", "/apis/apps/v1/namespaces/sentences/deployments/age") => {
                (200, deployment(2, 2, 1, 1, 1))
            }
            ("GET", "/api/v1/namespaces/sentences/pods") => (
                200,
                list("PodList", vec![pod("age-new-x1", "new", "10.0.0.2", None)]),
            ),
            ("GET", "/apis/apps/v1/namespaces/sentences/replicasets") => (
                200,
                list(
                    "ReplicaSetList",
                    vec![replica_set("old", "1"), replica_set("new", "2")],
                ),
            ),
            ("GET", "/api/v1/namespaces/sentences/services") => (
                200,
                list(
                    "ServiceList",
                    vec![
                        json!({"metadata": {"name": "age"}, "spec": {"selector": {"app": "age"}}}),
                        json!({"metadata": {"name": "name"}, "spec": {"selector": {"app": "name"}}}),
                    ],
                ),
            ),
            // The old pod (already gone from the pod list) is still a ready endpoint at
            // first; another Deployment's pod behind the same Service never is stale.
            ("GET", "/apis/discovery.k8s.io/v1/namespaces/sentences/endpointslices") => {
                let mut endpoints = vec![
                    endpoint("10.0.0.2", "age-new-x1", true),
                    endpoint("10.0.0.7", "age-canary-7f9c-zz", true),
                ];
                if n == 0 {
                    endpoints.push(endpoint("10.0.0.1", "age-old-q2", true));
                }
                (
                    200,
                    list(
                        "EndpointSliceList",
                        vec![
                            json!({"metadata": {"name": "age-abc"}, "addressType": "IPv4", "endpoints": endpoints}),
                        ],
                    ),
                )
            }
            _ => not_found(uri),
        }
    });
    let rollout = rollout::wait(&client, "sentences", "age", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(rollout.revision, "2");
    assert_eq!(rollout.pods, ["age-new-x1"]);
    let log = log.lock().unwrap();
    let slices: Vec<&Seen> = log
        .iter()
        .filter(|s| s.uri.contains("endpointslices"))
        .collect();
    assert_eq!(slices.len(), 2, "looked again until the old endpoint left");
    assert!(
        slices[0]
            .uri
            .contains("labelSelector=kubernetes.io%2Fservice-name%3Dage"),
        "{}",
        slices[0].uri
    );
    assert!(
        !log.iter().any(|s| s.uri.contains("service-name%3Dname")),
        "only Services selecting the workload"
    );
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_rollout_at_once_naming_the_image() {
    let (client, _log) = mock(
        |method, uri, _| match (method, uri.split('?').next().unwrap()) {
            ("GET", "/apis/apps/v1/namespaces/sentences/deployments/age") => {
                (200, deployment(1, 1, 1, 0, 1))
            }
            ("GET", "/api/v1/namespaces/sentences/pods") => (
                200,
                list(
                    "PodList",
                    vec![pod(
                        "age-new-x",
                        "new",
                        "10.0.0.2",
                        Some("ImagePullBackOff"),
                    )],
                ),
            ),
            ("GET", "/apis/apps/v1/namespaces/sentences/replicasets") => {
                (200, list("ReplicaSetList", vec![replica_set("new", "1")]))
            }
            ("GET", "/api/v1/namespaces/sentences/services") => (200, list("ServiceList", vec![])),
            _ => not_found(uri),
        },
    );
    let started = Instant::now();
    let err = rollout::wait(&client, "sentences", "age", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "not a timeout");
    assert!(
        err.contains("image ghcr.io/x/katas:nope") && err.contains("ImagePullBackOff"),
        "{err}"
    );
}

#[tokio::test]
async fn too_old_a_server_and_missing_permission_are_refused() {
    let (client, _) = mock(|_, uri, _| match uri {
        "/version" => (
            200,
            json!({"major": "1", "minor": "30+", "gitVersion": "v1.30.4", "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": ""}),
        ),
        _ => (200, list("NamespaceList", vec![])),
    });
    let err = connect::check_server(&clients(client), (1, 33))
        .await
        .unwrap_err();
    assert!(
        err.contains("v1.30.4 is too old") && err.contains("1.33"),
        "{err}"
    );

    let (client, _) = mock(|_, uri, _| match uri {
        "/version" => (
            200,
            json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0", "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": ""}),
        ),
        _ => (
            403,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403, "message": "namespaces is forbidden"}),
        ),
    });
    let err = connect::check_server(&clients(client), (1, 33))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("the API server rejected the credentials of context `test`")
            && err.contains("namespaces is forbidden")
            && err.contains("cluster-admin"),
        "{err}"
    );

    let (client, _) = mock(|_, uri, _| match uri {
        "/version" => (
            200,
            json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0", "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": ""}),
        ),
        _ => (200, list("NamespaceList", vec![])),
    });
    let info = connect::check_server(&clients(client), (1, 33))
        .await
        .unwrap();
    assert_eq!(
        (info.git_version.as_str(), info.major, info.minor),
        ("v1.34.0", 1, 34)
    );
}

fn clients(client: kube::Client) -> connect::Clients {
    connect::Clients {
        streams: client.clone(),
        client,
        identity: "context `test` (user `u`, server mock)".into(),
    }
}

/// Context `c` (user `u`, a token) for `server`; `trust` is the cluster's line that says
/// how its certificate is checked.
fn kubeconfig_with(server: &str, trust: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    {trust}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n"
    )
}

fn kubeconfig_for(server: &str) -> String {
    kubeconfig_with(server, "insecure-skip-tls-verify: true")
}

#[tokio::test]
async fn a_kubeconfig_pointing_at_a_closed_port_fails_fast() {
    let port = common::closed_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig_for(&format!("https://127.0.0.1:{port}"))).unwrap();
    let started = Instant::now();
    let clients = connect::clients(Some(&path), None).await.unwrap();
    let err = connect::check_server(&clients, (1, 33)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("unreachable: connection refused") && err.contains("context `c` (user `u`"),
        "{err}"
    );
    assert!(
        !err.contains("Error {") && !err.contains('\n'),
        "no debug dump: {err}"
    );
}

/// A kubeconfig that trusts `ca_pem` (not insecure-skip-tls-verify).
fn kubeconfig_trusting(server: &str, ca_pem: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    kubeconfig_with(server, &format!("certificate-authority-data: {ca}"))
}

#[tokio::test]
async fn a_server_certificate_the_kubeconfig_does_not_trust_is_named_without_a_debug_dump() {
    harness::ensure_crypto_provider();
    let pki = harness::pki::Pki::issue("127.0.0.1").unwrap();
    let spec = common::tls_server::ServerSpec {
        version: common::tls_server::Version::Tls13,
        require_client_cert: false,
        status: 200,
    };
    let addr =
        common::tls_server::gateway(spec, &pki.server_cert, &pki.server_key, &pki.ca_cert).await;
    let dir = tempfile::tempdir().unwrap();
    // Another cluster's CA (the cluster was recreated), and a certificate for another name.
    let other = harness::pki::Pki::issue("other.example").unwrap();
    for (ca, server_cert_of) in [(&pki.untrusted_ca_cert, "another CA"), (&other.ca_cert, "")] {
        let addr = if server_cert_of.is_empty() {
            let spec = common::tls_server::ServerSpec {
                version: common::tls_server::Version::Tls13,
                require_client_cert: false,
                status: 200,
            };
            common::tls_server::gateway(spec, &other.server_cert, &other.server_key, &other.ca_cert)
                .await
        } else {
            addr
        };
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, kubeconfig_trusting(&format!("https://{addr}"), ca)).unwrap();
        let clients = connect::clients(Some(&path), None).await.unwrap();
        let err = connect::check_server(&clients, (1, 33)).await.unwrap_err();
        assert!(
            err.starts_with("the API server's certificate is not trusted (")
                && err.contains("context `c` (user `u`"),
            "{err}"
        );
        assert!(
            !err.contains('{') && !err.contains("Context") && !err.contains('\n'),
            "no debug dump: {err}"
        );
        let cause = if server_cert_of.is_empty() {
            "certificate not valid for name \"127.0.0.1\""
        } else {
            "signed by a CA the kubeconfig does not hold"
        };
        assert!(err.contains(cause), "{err}");
    }
}

#[tokio::test]
async fn rejected_credentials_say_so_with_the_context_and_user() {
    let (client, _) = mock(|_, _, _| {
        (
            401,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Unauthorized", "code": 401, "message": "Unauthorized"}),
        )
    });
    let err = connect::check_server(&clients(client), (1, 33))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("the API server rejected the credentials of context `test`")
            && err.contains("401 Unauthorized"),
        "{err}"
    );
}

#[tokio::test]
async fn a_silent_api_server_fails_within_the_bound() {
    // Accepts TCP connections and never speaks: the TLS handshake hangs.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig_for(&format!("https://127.0.0.1:{port}"))).unwrap();
    let started = Instant::now();
    let clients = connect::clients(Some(&path), None).await.unwrap();
    let err = connect::check_server(&clients, (1, 33)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("did not answer") || err.contains("unreachable"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_and_malformed_kubeconfigs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = connect::clients(Some(&dir.path().join("nope")), None)
        .await
        .err()
        .unwrap();
    assert!(
        err.contains("does not exist") && err.contains("--kubeconfig"),
        "{err}"
    );
    let path = dir.path().join("bad");
    std::fs::write(&path, "clusters: [this is: not, a kubeconfig").unwrap();
    let err = connect::clients(Some(&path), None).await.err().unwrap();
    assert!(err.contains("malformed"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    let path = dir.path().join("ok");
    std::fs::write(&path, kubeconfig_for("https://127.0.0.1:1")).unwrap();
    let err = connect::clients(dir.path().join("ok").as_path().into(), Some("nope"))
        .await
        .err()
        .unwrap();
    assert!(err.contains("context `nope`"), "{err}");
    let err = connect::clients(Some(dir.path()), None)
        .await
        .err()
        .unwrap();
    assert!(err.contains("is a directory"), "{err}");
}

fn sidecar_pod(name: &str, app: &str, injected: bool) -> Value {
    let mut spec = json!({"containers": [{"name": app}]});
    let mut status = json!({});
    let mut metadata = json!({"name": name, "labels": {"app": app}});
    if injected {
        spec["initContainers"] = json!([{"name": "istio-proxy", "restartPolicy": "Always"}]);
        status["initContainerStatuses"] = json!([{"name": "istio-proxy", "ready": true, "started": true,
            "restartCount": 0, "image": "docker.io/istio/proxyv2:1.31.2", "imageID": ""}]);
        // What Istio's injector writes (getInjectionStatus: the template's containers).
        metadata["annotations"] = json!({"sidecar.istio.io/status":
            r#"{"initContainers":["istio-init","istio-proxy"],"containers":null,"volumes":["istio-envoy"],"imagePullSecrets":null,"revision":"default"}"#});
    }
    json!({"metadata": metadata, "spec": spec, "status": status})
}

fn sidecars_expectation(
    present: &[&str],
    absent: &[&str],
    deadline: &str,
) -> harness::expect::sidecars::Sidecars {
    let yaml = format!(
        "present: [{}]\nabsent: [{}]\ndeadline: {deadline}\n",
        present.join(", "),
        absent.join(", ")
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

#[tokio::test]
async fn the_sidecars_verdict_reads_pods_per_workload_and_fails_on_the_wrong_injection() {
    // age has a native sidecar, sentences has none.
    let route = |_: &str, uri: &str, _: usize| {
        let path = uri.split('?').next().unwrap();
        match path {
            "/apis/apps/v1/namespaces/sentences/deployments/age" => {
                (200, deployment(1, 1, 1, 1, 1))
            }
            "/apis/apps/v1/namespaces/sentences/deployments/sentences" => (
                200,
                json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sentences", "generation": 1},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sentences"}}, "template": {"metadata": {}, "spec": {"containers": [{"name": "sentences"}]}}},
                "status": {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 1, "replicas": 1}}),
            ),
            "/apis/apps/v1/namespaces/sentences/replicasets"
            | "/api/v1/namespaces/sentences/services" => (200, list("List", vec![])),
            "/api/v1/namespaces/sentences/pods" if uri.contains("app%3Dage") => (
                200,
                list("PodList", vec![sidecar_pod("age-1", "age", true)]),
            ),
            "/api/v1/namespaces/sentences/pods" => (
                200,
                list(
                    "PodList",
                    vec![sidecar_pod("sentences-1", "sentences", false)],
                ),
            ),
            _ => not_found(uri),
        }
    };
    let (client, _) = mock(route);
    let j = sidecars_expectation(&["age"], &["sentences"], "2s")
        .judge_in(&client, "sentences")
        .await;
    assert_eq!(j.verdict, Verdict::Passed, "{:?}", j.evidence);
    assert!(
        j.evidence
            .details
            .iter()
            .any(|d| d == "age: age-1 (ready native sidecar) — expected a ready sidecar"),
        "{:?}",
        j.evidence.details
    );

    // The wrong way round must fail, at the deadline, naming the pods.
    let (client, _) = mock(route);
    let started = Instant::now();
    let j = sidecars_expectation(&["sentences"], &["age"], "30s")
        .judge_in(&client, "sentences")
        .await;
    assert_eq!(j.verdict, Verdict::Failed);
    // Both rollouts are complete: the pods will not change, so the verdict comes at once.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        j.evidence
            .summary
            .contains("sentences: sentences-1 (no sidecar) — expected a ready sidecar"),
        "{}",
        j.evidence.summary
    );
    assert!(
        j.evidence
            .summary
            .contains("age: age-1 (ready native sidecar) — expected none"),
        "{}",
        j.evidence.summary
    );
    assert!(
        j.evidence.summary.contains("rollout of"),
        "{}",
        j.evidence.summary
    );
}

/// An istiod pod of `revision`, Ready or not.
fn istiod_pod(name: &str, revision: &str, ready: bool) -> Value {
    json!({"metadata": {"name": name, "namespace": "istio-system",
                        "labels": {"app": "istiod", "istio.io/rev": revision}},
           "spec": {"containers": [{"name": "discovery"}]},
           "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

#[tokio::test]
async fn every_ready_istiod_of_every_revision_is_found_by_its_app_label() {
    let (client, log) = mock(
        |method, uri, _| match (method, uri.split('?').next().unwrap()) {
            ("GET", "/api/v1/namespaces/istio-system/pods") => (
                200,
                list(
                    "PodList",
                    vec![
                        istiod_pod("istiod-5dd764fcbf-x2x7q", "default", true),
                        istiod_pod("istiod-canary-7f9c-abcde", "canary", true),
                        istiod_pod("istiod-5dd764fcbf-starting", "default", false),
                    ],
                ),
            ),
            _ => not_found(uri),
        },
    );
    let pods = istiod_debug::ready_pods(&client).await.unwrap();
    assert_eq!(
        pods,
        ["istiod-5dd764fcbf-x2x7q", "istiod-canary-7f9c-abcde"]
    );
    {
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 1);
        assert!(
            log[0].uri.contains("labelSelector=app%3Distiod"),
            "{}",
            log[0].uri
        );
    }

    let (client, _) = mock(|_, _, _| (200, list("PodList", vec![])));
    let e = istiod_debug::ready_pods(&client).await.unwrap_err();
    assert_eq!(e, "no ready istiod pod (`app=istiod`) in istio-system");
}

#[tokio::test]
async fn destination_rules_are_listed_in_every_namespace_at_networking_v1() {
    let rule = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "name", "namespace": "sentences", "resourceVersion": "812"},
        "spec": {"host": "name", "subsets": [{"name": "name-v1", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}]}});
    let answer = rule.clone();
    let (client, log) =
        mock(
            move |method, uri, _| match (method, uri.split('?').next().unwrap()) {
                ("GET", "/apis/networking.istio.io/v1/destinationrules") => (
                    200,
                    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRuleList",
                   "metadata": {}, "items": [answer.clone()]}),
                ),
                _ => not_found(uri),
            },
        );
    let rules = istio_objects::destination_rules(&client).await.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["metadata"]["resourceVersion"], "812");
    assert_eq!(rules[0]["spec"], rule["spec"]);
    assert_eq!(log.lock().unwrap()[0].method, "GET");

    let (client, _) = mock(|_, uri, _| not_found(uri));
    let e = istio_objects::destination_rules(&client).await.unwrap_err();
    assert!(
        e.starts_with("cannot list DestinationRules in all namespaces"),
        "{e}"
    );
}
