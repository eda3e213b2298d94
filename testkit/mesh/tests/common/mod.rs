//! A tiny in-memory cluster for the mesh's own tests: objects by kind, a Deployment
//! "controller" that makes pods (through the mesh's injector, with IPs and Ready) and
//! rolls them when the template changes, an EndpointSlice "controller", the exercise's
//! manifests (MichaelVL/istio-katas `deploy/mtls/*.yaml`) as JSON, raw HTTP and TLS
//! clients, and a PKI.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use testkit_mesh::{Mesh, MeshOptions, Objects, PortTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const APP_NS: &str = "sentences";
pub const IMAGE: &str = "ghcr.io/michaelvl/istio-katas@sha256:9ec280c27e4cfc88cef63866a35652e1e6238b3cbbbf4a46246343392310a31f";
pub const VERSION: &str = "1.31.0";

fn group_of(api_version: &str) -> String {
    match api_version.split_once('/') {
        Some((g, _)) => g.to_string(),
        None => String::new(),
    }
}

fn key(v: &Value) -> (String, String, String, String) {
    let api = v["apiVersion"].as_str().unwrap_or("v1");
    (
        group_of(api),
        v["kind"].as_str().unwrap_or("").to_string(),
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        v["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

/// The objects, keyed by (group, kind, namespace, name).
#[derive(Default)]
pub struct Cluster {
    objects: Mutex<BTreeMap<(String, String, String, String), Value>>,
    next_ip: Mutex<u32>,
    seq: Mutex<u64>,
    mesh: OnceLock<Mesh>,
}

impl Objects for Cluster {
    fn list(&self, group: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .lock()
            .unwrap()
            .iter()
            .filter(|((g, k, ns, _), _)| {
                g == group && k == kind && namespace.is_none_or(|n| n == ns)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn hash(v: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{:x}", h & 0xff_ffff_ffff)
}

impl Cluster {
    fn stamp(&self) -> String {
        let mut s = self.seq.lock().unwrap();
        *s += 1;
        format!("2026-09-01T00:{:02}:{:02}Z", (*s / 60) % 60, *s % 60)
    }

    pub fn set_mesh(&self, mesh: Mesh) {
        let _ = self.mesh.set(mesh);
    }

    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .lock()
            .unwrap()
            .iter()
            .find(|((_, k, n, m), _)| k == kind && n == ns && m == name)
            .map(|(_, v)| v.clone())
    }

    pub fn pods(&self, ns: &str) -> Vec<Value> {
        self.list("", "Pod", Some(ns))
    }

    /// The running pods of a Deployment.
    pub fn pods_of(&self, ns: &str, deployment: &str) -> Vec<Value> {
        self.pods(ns)
            .into_iter()
            .filter(|p| {
                p["metadata"]["ownerReferences"][0]["name"]
                    .as_str()
                    .is_some_and(|o| {
                        o.strip_prefix(deployment).is_some_and(|r| {
                            r.starts_with('-') && r[1..].chars().all(|c| c.is_ascii_hexdigit())
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

    /// Creates or replaces an object; Deployments roll their pods when the template
    /// changes; Services and pods keep EndpointSlices current.
    pub fn apply(&self, mut v: Value) {
        if v["metadata"]["namespace"].is_null() && v["kind"] != "Namespace" {
            v["metadata"]["namespace"] = json!(APP_NS);
        }
        if v["metadata"]["creationTimestamp"].is_null() {
            v["metadata"]["creationTimestamp"] = json!(self.stamp());
        }
        let k = key(&v);
        let previous = self.objects.lock().unwrap().insert(k.clone(), v.clone());
        if k.1 == "Deployment" {
            let changed = previous
                .as_ref()
                .is_none_or(|p| p["spec"]["template"] != v["spec"]["template"]);
            if changed {
                self.roll(&v);
            }
        }
        self.sync_endpoints();
    }

    pub fn delete(&self, kind: &str, ns: &str, name: &str) {
        self.objects
            .lock()
            .unwrap()
            .retain(|(_, k, n, m), _| !(k == kind && n == ns && m == name));
        self.sync_endpoints();
    }

    /// Replaces a Deployment's pods with new ones from its template.
    fn roll(&self, d: &Value) {
        let ns = d["metadata"]["namespace"]
            .as_str()
            .unwrap_or(APP_NS)
            .to_string();
        let name = d["metadata"]["name"].as_str().unwrap_or("").to_string();
        for p in self.pods_of(&ns, &name) {
            let pk = key(&p);
            self.objects.lock().unwrap().remove(&pk);
        }
        let template = &d["spec"]["template"];
        let h = hash(template);
        let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1);
        for i in 0..replicas {
            let pod_name = format!("{name}-{h}-{}{i}", &hash(&json!(self.stamp()))[..5]);
            let mut pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": pod_name, "generateName": format!("{name}-{h}-"), "namespace": ns,
                    "labels": template["metadata"]["labels"].clone(),
                    "annotations": template["metadata"]["annotations"].clone(),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-{h}"),
                                         "controller": true, "uid": format!("rs-{h}")}],
                },
                "spec": template["spec"].clone(),
            });
            pod["metadata"]["labels"]["pod-template-hash"] = json!(h);
            if pod["metadata"]["annotations"].is_null() {
                pod["metadata"]["annotations"] = json!({});
            }
            if let Some(mesh) = self.mesh.get() {
                let namespace = self
                    .get("Namespace", "", &ns)
                    .unwrap_or_else(|| json!({"metadata": {"name": ns}}));
                mesh.inject(&mut pod, &namespace);
            }
            let ip = {
                let mut n = self.next_ip.lock().unwrap();
                *n += 1;
                format!("10.244.0.{}", *n + 10)
            };
            pod["metadata"]["uid"] = json!(format!("uid-{pod_name}"));
            pod["metadata"]["creationTimestamp"] = json!(self.stamp());
            pod["spec"]["nodeName"] = json!("kind-control-plane");
            pod["status"] = json!({"phase": "Running", "podIP": ip, "hostIP": "172.18.0.2",
                "conditions": [{"type": "Ready", "status": "True"}]});
            let k = key(&pod);
            self.objects.lock().unwrap().insert(k, pod);
        }
    }

    fn sync_endpoints(&self) {
        let services = self.list("", "Service", None);
        let pods = self.list("", "Pod", None);
        let mut objects = self.objects.lock().unwrap();
        objects.retain(|(_, k, _, _), _| k != "EndpointSlice");
        for s in services {
            let Some(selector) = s["spec"]["selector"].as_object() else {
                continue;
            };
            let ns = s["metadata"]["namespace"].as_str().unwrap_or("");
            let name = s["metadata"]["name"].as_str().unwrap_or("");
            let endpoints: Vec<Value> = pods
                .iter()
                .filter(|p| p["metadata"]["namespace"] == ns)
                .filter(|p| selector.iter().all(|(k, v)| &p["metadata"]["labels"][k] == v))
                .map(|p| json!({
                    "addresses": [p["status"]["podIP"]],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "targetRef": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": ns, "uid": p["metadata"]["uid"]}
                }))
                .collect();
            let ports: Vec<Value> = s["spec"]["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| json!({"name": p["name"], "port": p.get("targetPort").cloned().unwrap_or(p["port"].clone()), "protocol": "TCP"}))
                        .collect()
                })
                .unwrap_or_default();
            let slice = json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{name}-abcde"), "namespace": ns,
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "endpoints": endpoints, "ports": ports
            });
            let k = key(&slice);
            objects.insert(k, slice);
        }
    }
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

/// `cat deploy/mtls/<name>.yaml | grep -v inject | kubectl apply -f -` for one Deployment.
pub fn enable_injection(c: &Cluster, deployment: &str) {
    let mut d = c.get("Deployment", APP_NS, deployment).expect("deployment");
    if let Some(a) = d["spec"]["template"]["metadata"]["annotations"].as_object_mut() {
        a.remove("sidecar.istio.io/inject");
    }
    c.apply(d);
}

// ---- Setup ---------------------------------------------------------------------------

pub struct World {
    pub cluster: Arc<Cluster>,
    pub mesh: Mesh,
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

/// Istio installed, the app deployed as the exercise starts (no sidecars), the HTTP
/// gateway applied.
pub async fn exercise(options: MeshOptions) -> World {
    let cluster = Arc::new(Cluster::default());
    for o in Mesh::control_plane(VERSION) {
        cluster.apply(o);
    }
    let mesh = Mesh::start(cluster.clone(), options).await;
    cluster.set_mesh(mesh.clone());
    cluster.apply(namespace());
    for o in app() {
        cluster.apply(o);
    }
    for o in http_gateway() {
        cluster.apply(o);
    }
    mesh.settle().await;
    World { cluster, mesh }
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

    pub async fn admin(&self, deployment_ns: &str, deployment: &str, path: &str) -> Value {
        let pod = self.cluster.pod_of(deployment_ns, deployment);
        let addr = self.target(&pod, 15000);
        let (status, body) = http_get(addr, "localhost", path)
            .await
            .expect("admin answers");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON: {e}: {body}"))
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
    Ok((
        status,
        String::from_utf8_lossy(&buf[split + 4..]).to_string(),
    ))
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
