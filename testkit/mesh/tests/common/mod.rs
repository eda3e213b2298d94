//! The mesh's own tests' world: the fake Kubernetes API server (testkit-k8s) with the
//! mesh plugged in as it is in the harness's stand-in (injection as pod admission, the
//! kubelet probing proxies and apps through the mesh, loopback pod IPs from a reserved
//! block), the exercise's manifests (MichaelVL/istio-katas `deploy/mtls/*.yaml`) as
//! JSON, raw HTTP and TLS clients, Envoy's own stats, and a PKI. Tests that need Envoy
//! skip (or, under HARNESS_REQUIRE_ALL_TESTS, fail) where it is not installed.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use testkit_k8s::{FakeCluster, Options};
use testkit_mesh::{Mesh, MeshOptions, Objects, PodNetwork, PortTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const APP_NS: &str = "sentences";
pub const IMAGE: &str = "ghcr.io/michaelvl/istio-katas@sha256:9ec280c27e4cfc88cef63866a35652e1e6238b3cbbbf4a46246343392310a31f";
pub const VERSION: &str = "1.31.0";

/// Whether Envoy is there; `None` when the test may run, else why it skips. Under
/// HARNESS_REQUIRE_ALL_TESTS a missing Envoy fails the test instead.
pub fn skip_without_envoy() -> Option<String> {
    match testkit_mesh::envoy::binary::envoy() {
        Ok(_) => None,
        Err(why) => {
            assert!(
                std::env::var_os("HARNESS_REQUIRE_ALL_TESTS").is_none(),
                "{why} and HARNESS_REQUIRE_ALL_TESTS is set"
            );
            eprintln!("skipped: {why}");
            Some(why)
        }
    }
}

/// Returns early from a test that needs Envoy when it is not installed.
#[macro_export]
macro_rules! needs_envoy {
    () => {
        if common::skip_without_envoy().is_some() {
            return;
        }
    };
}

/// The mesh reads the fake API server's objects.
struct View(FakeCluster);

impl Objects for View {
    fn list(&self, group: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        self.0.list(group, kind, namespace)
    }
}

/// The API group a kind is served in.
fn group_of(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "ReplicaSet" => "apps",
        "EndpointSlice" => "discovery.k8s.io",
        "PeerAuthentication" => "security.istio.io",
        "DestinationRule" | "VirtualService" | "Gateway" => "networking.istio.io",
        "MutatingWebhookConfiguration" => "admissionregistration.k8s.io",
        _ => "",
    }
}

/// The fake cluster, with the helpers the mesh's tests use.
#[derive(Clone)]
pub struct Cluster {
    pub fake: FakeCluster,
}

impl Cluster {
    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let ns = (!ns.is_empty()).then_some(ns);
        self.fake.get(group_of(kind), kind, ns, name)
    }

    pub fn list(&self, group: &str, kind: &str, ns: Option<&str>) -> Vec<Value> {
        self.fake.list(group, kind, ns)
    }

    pub fn pods(&self, ns: &str) -> Vec<Value> {
        self.fake.list("", "Pod", Some(ns))
    }

    /// The pods of a Deployment that are not being deleted.
    pub fn pods_of(&self, ns: &str, deployment: &str) -> Vec<Value> {
        self.pods(ns)
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| {
                p["metadata"]["ownerReferences"][0]["name"]
                    .as_str()
                    .is_some_and(|o| {
                        o.strip_prefix(deployment).is_some_and(|r| {
                            r.starts_with('-') && r[1..].chars().all(|c| c.is_ascii_alphanumeric())
                        })
                    })
            })
            .collect()
    }

    pub fn pod_of(&self, ns: &str, deployment: &str) -> Value {
        self.pods_of(ns, deployment)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no pod of {ns}/{deployment}"))
    }

    /// Server-side applies an object (namespaced ones default to the app namespace).
    pub fn apply(&self, mut v: Value) {
        let cluster_scoped = matches!(
            v["kind"].as_str(),
            Some("Namespace" | "MutatingWebhookConfiguration")
        );
        if v["metadata"]["namespace"].is_null() && !cluster_scoped {
            v["metadata"]["namespace"] = json!(APP_NS);
        }
        let what = format!("{} {}", v["kind"], v["metadata"]["name"]);
        self.fake
            .apply(v)
            .unwrap_or_else(|e| panic!("{what} does not apply: {e}"));
    }

    pub fn delete(&self, kind: &str, ns: &str, name: &str) {
        let ns = (!ns.is_empty()).then_some(ns);
        self.fake.delete(group_of(kind), kind, ns, name);
    }

    /// Waits until every Deployment in `ns` has rolled out (its replicas updated and
    /// available, no pod of an older template left) and every Service's EndpointSlices
    /// list exactly the pods it selects, ready.
    pub async fn rolled_out(&self, ns: &str) {
        let ns = ns.to_string();
        self.fake
            .wait_for("the Deployments rolled out", Duration::from_secs(30), |c| {
                let cluster = Cluster { fake: c.clone() };
                let deployments = c.list("apps", "Deployment", Some(&ns)).iter().all(|d| {
                    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
                    let s = &d["status"];
                    let name = d["metadata"]["name"].as_str().unwrap_or("");
                    let pods = cluster.pods_of(&ns, name).len() as i64;
                    s["observedGeneration"] == d["metadata"]["generation"]
                        && s["updatedReplicas"].as_i64() == Some(want)
                        && s["availableReplicas"].as_i64() == Some(want)
                        && pods == want
                });
                deployments && cluster.endpoints_current(&ns)
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Whether each Service of `ns` with a selector has exactly its selected pods as
    /// ready endpoints.
    fn endpoints_current(&self, ns: &str) -> bool {
        let pods = self.pods(ns);
        let slices = self.list("discovery.k8s.io", "EndpointSlice", Some(ns));
        self.list("", "Service", Some(ns)).iter().all(|svc| {
            let Some(selector) = svc["spec"]["selector"].as_object() else {
                return true;
            };
            let name = svc["metadata"]["name"].as_str().unwrap_or("");
            let mut want: Vec<String> = pods
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter(|p| {
                    selector
                        .iter()
                        .all(|(k, v)| &p["metadata"]["labels"][k] == v)
                })
                .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
                .collect();
            let mut have: Vec<String> = slices
                .iter()
                .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == name)
                .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                .filter(|e| e["conditions"]["ready"] == true)
                .filter_map(|e| e["targetRef"]["name"].as_str().map(str::to_string))
                .collect();
            want.sort();
            have.sort();
            want == have
        })
    }
}

// ---- Setup ---------------------------------------------------------------------------

pub struct World {
    pub cluster: Cluster,
    pub mesh: Mesh,
    _network: PodNetwork,
}

impl Drop for World {
    fn drop(&mut self) {
        let problems = self.mesh.data_plane_problems();
        self.mesh.shutdown();
        self.cluster.fake.shutdown();
        if problems.is_empty() {
            return;
        }
        let text = format!("the data plane had problems:\n{}", problems.join("\n"));
        if std::thread::panicking() {
            eprintln!("{text}");
        } else {
            panic!("{text}");
        }
    }
}

pub fn fast_options() -> MeshOptions {
    MeshOptions {
        push_delay: Duration::from_millis(30),
        sds_delay: Duration::from_millis(60),
        poll_interval: Duration::from_millis(10),
        seed: 7,
        ..MeshOptions::default()
    }
}

/// Istio installed (its pods ready), nothing else.
pub async fn istio(options: MeshOptions) -> World {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let network = PodNetwork::reserve().expect("a block of loopback addresses");
    let fake = FakeCluster::start(Options {
        pod_ip_prefix: network.prefix().to_string(),
        ..Options::default()
    })
    .await;
    let mesh = Mesh::start(Arc::new(View(fake.clone())), options).await;
    let injector = mesh.clone();
    fake.set_pod_admission(Arc::new(move |pod, ns| injector.inject(pod, ns)));
    let probe = mesh.clone();
    fake.set_readiness_probe(Arc::new(move |pod, c| probe.container_ready(pod, c)));
    let cluster = Cluster { fake };
    for o in Mesh::control_plane(VERSION) {
        cluster.apply(o);
    }
    cluster.rolled_out("istio-system").await;
    World {
        cluster,
        mesh,
        _network: network,
    }
}

/// Istio installed, the app deployed as the exercise starts (no sidecars), the HTTP
/// gateway applied, everything rolled out and pushed.
pub async fn exercise(options: MeshOptions) -> World {
    let w = istio(options).await;
    w.cluster.apply(namespace());
    for o in app() {
        w.cluster.apply(o);
    }
    for o in http_gateway() {
        w.cluster.apply(o);
    }
    w.cluster.rolled_out(APP_NS).await;
    assert!(
        w.mesh.settle_within(Duration::from_secs(20)).await,
        "the mesh settles"
    );
    w
}

impl World {
    pub fn gateway_pod(&self) -> Value {
        self.cluster.pod_of("istio-system", "istio-ingressgateway")
    }

    pub fn target(&self, pod: &Value, port: u16) -> SocketAddr {
        match self.mesh.port_target(pod, port) {
            PortTarget::Tcp(a) => a,
            PortTarget::Refused(e) => panic!("port {port} refused: {e}"),
        }
    }

    /// GET through the gateway's HTTP port (8080) with `Host: sentences.example.com`.
    pub async fn through_gateway(&self) -> (u16, String) {
        let addr = self.target(&self.gateway_pod(), 8080);
        http_get(addr, "sentences.example.com", "/")
            .await
            .expect("gateway answers")
    }

    pub async fn admin_text(&self, ns: &str, deployment: &str, path: &str) -> String {
        let pod = self.cluster.pod_of(ns, deployment);
        let addr = self.target(&pod, 15000);
        let (status, body) = http_get(addr, "localhost", path)
            .await
            .expect("admin answers");
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    pub async fn admin(&self, ns: &str, deployment: &str, path: &str) -> Value {
        let body = self.admin_text(ns, deployment, path).await;
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON: {e}: {body}"))
    }

    /// Envoy's own counters of a Deployment's proxy (`/stats`), by name.
    pub async fn envoy_stats(&self, ns: &str, deployment: &str) -> HashMap<String, u64> {
        self.admin_text(ns, deployment, "/stats")
            .await
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }

    pub async fn metrics(&self, ns: &str, deployment: &str) -> String {
        let pod = self.cluster.pod_of(ns, deployment);
        let addr = self.target(&pod, 15020);
        let (status, body) = http_get(addr, "localhost", "/stats/prometheus")
            .await
            .expect("metrics");
        assert_eq!(status, 200);
        body
    }

    /// The proxy's metrics once `holds` says they show what the test waits for (Envoy
    /// flushes its access log every 20 ms, so the last requests may not be counted at
    /// once), or as they are after two seconds.
    pub async fn metrics_when(
        &self,
        ns: &str,
        deployment: &str,
        holds: impl Fn(&str) -> bool,
    ) -> String {
        let found = eventually(Duration::from_secs(2), || async {
            let m = self.metrics(ns, deployment).await;
            holds(&m).then_some(m)
        })
        .await;
        match found {
            Some(m) => m,
            None => self.metrics(ns, deployment).await,
        }
    }

    /// The pod IP of a Deployment's pod.
    pub fn pod_ip(&self, ns: &str, deployment: &str) -> String {
        self.cluster.pod_of(ns, deployment)["status"]["podIP"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// The sum of an Envoy counter over every stat named `prefix…suffix`.
pub fn stat(stats: &HashMap<String, u64>, prefix: &str, suffix: &str) -> u64 {
    stats
        .iter()
        .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
        .map(|(_, v)| *v)
        .sum()
}

// ---- The exercise's manifests ----------------------------------------------------------

pub fn namespace() -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": APP_NS, "labels": {"istio-injection": "enabled", "kubernetes.io/metadata.name": APP_NS}}})
}

fn deployment(name: &str, labels: Value, env: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": APP_NS, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {"dummy": "123", "sidecar.istio.io/inject": "false"}},
                "spec": {"containers": [{"image": IMAGE, "name": name.trim_end_matches("-v2"), "env": env}]}
            }
        }
    })
}

fn service(name: &str, labels: Value, selector: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": APP_NS, "labels": labels},
        "spec": {"ports": [{"name": "api", "port": 5000, "protocol": "TCP", "targetPort": 5000, "appProtocol": "http"}],
                 "selector": selector, "type": "ClusterIP"}
    })
}

/// `deploy/mtls/{sentences,age,name}.yaml`.
pub fn app() -> Vec<Value> {
    vec![
        deployment(
            "sentences",
            json!({"app": "sentences", "mode": "sentence", "app.kubernetes.io/part-of": "sentences"}),
            json!([{"name": "SENTENCE_MODE", "value": "sentence"}]),
        ),
        service(
            "sentences",
            json!({"app": "sentences", "mode": "sentence", "app.kubernetes.io/part-of": "sentences"}),
            json!({"app": "sentences", "mode": "sentence"}),
        ),
        deployment(
            "age",
            json!({"app": "sentences-age", "mode": "age", "app.kubernetes.io/part-of": "sentences"}),
            json!([{"name": "SENTENCE_MODE", "value": "age"}]),
        ),
        service(
            "age",
            json!({"app": "sentences-age", "mode": "age", "app.kubernetes.io/part-of": "sentences"}),
            json!({"app": "sentences-age", "mode": "age"}),
        ),
        deployment(
            "name",
            json!({"app": "sentences-name", "mode": "name", "app.kubernetes.io/part-of": "sentences", "version": "v1"}),
            json!([{"name": "SENTENCE_MODE", "value": "name"}]),
        ),
        service(
            "name",
            json!({"app": "sentences-name", "mode": "name"}),
            json!({"app": "sentences-name", "mode": "name"}),
        ),
        deployment(
            "name-v2",
            json!({"app": "sentences-name", "mode": "name", "app.kubernetes.io/part-of": "sentences", "version": "v2"}),
            json!([{"name": "SENTENCE_MODE", "value": "name"},
                   {"name": "SENTENCE_NAMES", "value": "Athos (v2),Porthos (v2),Aramis (v2),d'Artagnan (v2)"}]),
        ),
    ]
}

/// `deploy/mtls/igw/gateway-http.yaml` + `virtual-service-http.yaml`.
pub fn http_gateway() -> Vec<Value> {
    vec![
        json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
               "metadata": {"name": "sentences", "namespace": APP_NS},
               "spec": {"selector": {"app": "istio-ingressgateway", "istio": "ingressgateway"},
                        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                     "hosts": ["sentences.example.com"]}]}}),
        json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
               "metadata": {"name": "sentences", "namespace": APP_NS},
               "spec": {"hosts": ["sentences.example.com"], "gateways": ["sentences"],
                        "http": [{"route": [{"destination": {"host": "sentences"}}]}]}}),
    ]
}

/// `deploy/mtls/peer-auth/{strict,permissive}.yaml`.
pub fn peer_auth(mode: &str) -> Value {
    json!({"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
           "metadata": {"name": "default", "namespace": APP_NS}, "spec": {"mtls": {"mode": mode}}})
}

/// `deploy/mtls/dest-rule/name.yaml`.
pub fn dest_rule() -> Vec<Value> {
    vec![
        json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
               "metadata": {"name": "name", "namespace": APP_NS},
               "spec": {"hosts": ["name"], "gateways": ["mesh"], "http": [{"route": [
                   {"destination": {"host": "name", "port": {"number": 5000}, "subset": "name-v1"}, "weight": 50},
                   {"destination": {"host": "name", "port": {"number": 5000}, "subset": "name-v2"}, "weight": 50}]}]}}),
        json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
               "metadata": {"name": "name", "namespace": APP_NS},
               "spec": {"host": "name", "subsets": [
                   {"name": "name-v1", "labels": {"version": "v1"}, "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
                   {"name": "name-v2", "labels": {"version": "v2"}, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}]}}),
    ]
}

/// `deploy/mtls/igw/gateway.yaml` in the gateway pods' namespace and
/// `virtual-service.yaml` bound to it.
pub fn mutual_gateway(gw_ns: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
               "metadata": {"name": "sentences", "namespace": gw_ns},
               "spec": {"selector": {"app": "istio-ingressgateway", "istio": "ingressgateway"},
                        "servers": [{"port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                                     "tls": {"mode": "MUTUAL", "credentialName": "sentences-tls-secret"},
                                     "hosts": ["sentences.example.com"]}]}}),
        json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
               "metadata": {"name": "sentences", "namespace": APP_NS},
               "spec": {"hosts": ["sentences.example.com"], "gateways": [format!("{gw_ns}/sentences")],
                        "http": [{"route": [{"destination": {"host": "sentences"}}]}]}}),
    ]
}

/// `cat deploy/mtls/<name>.yaml | grep -v inject | kubectl apply -f -` for one
/// Deployment, waiting for the rollout.
pub async fn enable_injection(c: &Cluster, deployment: &str) {
    enable_injection_all(c, &[deployment]).await;
}

/// [`enable_injection`] for several Deployments at once, waiting for every rollout.
pub async fn enable_injection_all(c: &Cluster, deployments: &[&str]) {
    for deployment in deployments {
        let mut d = deployment_manifest(deployment);
        if let Some(a) = d["spec"]["template"]["metadata"]["annotations"].as_object_mut() {
            a.remove("sidecar.istio.io/inject");
        }
        c.apply(d);
    }
    c.rolled_out(APP_NS).await;
}

/// The app's Deployment `name` as the exercise's manifest has it.
pub fn deployment_manifest(name: &str) -> Value {
    app()
        .into_iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Deployment {name} in the app"))
}

/// Whether a body is a sentence of the configured names.
pub fn is_sentence(body: &str) -> bool {
    let names = [
        "Peter",
        "Ray",
        "Egon",
        "Athos (v2)",
        "Porthos (v2)",
        "Aramis (v2)",
        "d'Artagnan (v2)",
    ];
    let Some((name, rest)) = body.split_once(" is ") else {
        return false;
    };
    let Some(age) = rest.strip_suffix(" years") else {
        return false;
    };
    names.contains(&name) && age.parse::<u32>().is_ok_and(|a| a <= 100)
}

pub fn is_flask_500(body: &str) -> bool {
    body.contains("<title>500 Internal Server Error</title>")
        && body.contains("<h1>Internal Server Error</h1>")
}

// ---- Clients ---------------------------------------------------------------------------

/// A raw HTTP/1.1 GET over TCP (Connection: close).
pub async fn http_get(addr: SocketAddr, host: &str, path: &str) -> Result<(u16, String), String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: test\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![];
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        parse(&buf)
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| "timeout".to_string())?
}

pub fn parse(buf: &[u8]) -> Result<(u16, String), String> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no headers in {:?}", String::from_utf8_lossy(buf)))?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let body = &buf[split + 4..];
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

/// The body of a `Transfer-Encoding: chunked` message (Envoy's admin answers so).
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = vec![];
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk without its size line")?;
        let size_text = String::from_utf8_lossy(&rest[..eol]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("a chunk shorter than its size")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("a chunk without its end")?;
    }
}

/// Polls `f` until it returns `Some` or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the `istio_requests_total` series whose labels include all `want`.
pub fn requests(metrics: &str, want: &[(&str, &str)]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter(|l| {
            want.iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

// ---- PKI ---------------------------------------------------------------------------------

pub struct Pki {
    pub ca_pem: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

pub fn pki(org: &str) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::OrganizationName, org);
    ca.distinguished_name
        .push(DnType::CommonName, "example.com");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.distinguished_name
            .push(DnType::OrganizationName, "ACMEorg");
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("sentences.example.com");
    let (client_cert, client_key) = leaf("client.example.com");
    Pki {
        ca_pem: ca_cert.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// Secret `sentences-tls-secret` (generic; keys cert, key, cacert).
pub fn tls_secret(ns: &str, pki: &Pki) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "sentences-tls-secret", "namespace": ns},
           "stringData": {"cert": pki.server_cert, "key": pki.server_key, "cacert": pki.ca_pem}})
}

pub enum Version {
    Tls12,
    Tls13,
}

/// A rustls client config (ring): trusts `ca`, presents `client` if given.
pub fn client_config(
    ca: &str,
    client: Option<(&str, &str)>,
    version: Version,
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        Version::Tls12 => &[&rustls::version::TLS12],
        Version::Tls13 => &[&rustls::version::TLS13],
    };
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(|c| c.unwrap())
                    .collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    Arc::new(cfg)
}

/// What a TLS client saw.
#[derive(Debug)]
pub enum TlsResult {
    /// An HTTP answer.
    Http(u16, String),
    /// The server's alert (during connect or on first read).
    Alert(rustls::AlertDescription),
    /// Closed without an alert (EOF or reset), or another error.
    Closed(String),
}

pub async fn tls_get(addr: SocketAddr, sni: &str, cfg: Arc<rustls::ClientConfig>) -> TlsResult {
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let fut = async {
        let tcp = match tokio::net::TcpStream::connect(addr).await {
            Ok(t) => t,
            Err(e) => return TlsResult::Closed(format!("connect: {e}")),
        };
        let mut s = match connector.connect(name, tcp).await {
            Ok(s) => s,
            Err(e) => return classify(e),
        };
        let req = format!("GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n");
        if let Err(e) = s.write_all(req.as_bytes()).await {
            return classify(e);
        }
        let mut buf = vec![];
        match s.read_to_end(&mut buf).await {
            Ok(_) => match parse(&buf) {
                Ok((code, body)) => TlsResult::Http(code, body),
                Err(e) => TlsResult::Closed(e),
            },
            Err(e) => classify(e),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| TlsResult::Closed("timeout".into()))
}

fn classify(e: std::io::Error) -> TlsResult {
    if let Some(rustls::Error::AlertReceived(a)) =
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
    {
        return TlsResult::Alert(*a);
    }
    TlsResult::Closed(e.to_string())
}
