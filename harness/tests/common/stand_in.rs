//! A stand-in for a kind cluster with Istio: the stateful fake Kubernetes API server
//! (testkit-k8s) with the mesh and app (testkit-mesh) plugged in — sidecar injection as
//! its pod admission, real Envoy sidecars and gateways whose readiness is the kubelet's
//! probe of their containers, pod ports behind its port-forwards, the proxies' output
//! as pod logs — Istio's control plane and Prometheus deployed, and a real Prometheus
//! process scraping the proxies. The harness reaches it with a kubeconfig, exactly as
//! it reaches a real cluster.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use testkit_k8s::{FakeCluster, Options, Upstream};
use testkit_mesh::{Mesh, MeshOptions, Objects, PodNetwork, PortTarget, PrometheusProcess};

/// The mesh reads the fake API server's objects.
struct View(FakeCluster);

impl Objects for View {
    fn list(&self, group: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        self.0.list(group, kind, namespace)
    }
}

/// How port-forwards to a pod port fail, for wrong worlds of the harness's own path.
#[derive(Clone, Debug)]
pub enum ForwardFault {
    /// The kubelet cannot reach the port: an error on the port's error channel.
    Refused,
    /// The API server refuses the upgrade.
    Rejected,
    /// The forward is opened, then closed with nothing sent either way.
    Dropped,
    /// The forward is opened to a server that accepts and never answers (a hung
    /// process).
    Silent,
}

/// A listener that accepts connections and holds them open without reading or writing,
/// for as long as the returned task runs.
async fn black_hole() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port for the black hole");
    let address = listener.local_addr().expect("the black hole's address");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (address, task)
}

type ForwardFaults = Arc<std::sync::Mutex<std::collections::HashMap<u16, ForwardFault>>>;

pub struct StandIn {
    pub cluster: FakeCluster,
    forward_faults: ForwardFaults,
    pub mesh: Mesh,
    pub prometheus: PrometheusProcess,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    log_copier: tokio::task::JoinHandle<()>,
    black_hole: tokio::task::JoinHandle<()>,
    _network: PodNetwork,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.log_copier.abort();
        self.black_hole.abort();
        let problems = self.mesh.data_plane_problems();
        self.mesh.shutdown();
        self.cluster.shutdown();
        // A config Envoy rejected or an Envoy that died is a bug of the stand-in.
        if problems.is_empty() {
            return;
        }
        let text = format!(
            "the stand-in's data plane had problems:\n{}",
            problems.join("\n")
        );
        if std::thread::panicking() {
            eprintln!("{text}");
        } else {
            panic!("{text}");
        }
    }
}

pub const CONTEXT: &str = "stand-in";

impl StandIn {
    /// A cluster running Istio `version` with the Prometheus addon, scraped every
    /// `scrape_interval` by a real Prometheus.
    pub async fn start(version: &str, prometheus: &Path, scrape_interval: Duration) -> StandIn {
        Self::start_with(version, prometheus, scrape_interval, MeshOptions::default()).await
    }

    /// [`StandIn::start`] with the mesh's options (e.g. Istio installed without
    /// `meshConfig.accessLogFile`).
    pub async fn start_with(
        version: &str,
        prometheus: &Path,
        scrape_interval: Duration,
        options: MeshOptions,
    ) -> StandIn {
        let network = PodNetwork::reserve().expect("a block of loopback addresses");
        let cluster = FakeCluster::start(Options {
            pod_ip_prefix: network.prefix().to_string(),
            ..Options::default()
        })
        .await;
        let mesh = Mesh::start(Arc::new(View(cluster.clone())), options).await;
        let probe = mesh.clone();
        cluster.set_readiness_probe(Arc::new(move |pod, container| {
            probe.container_ready(pod, container)
        }));
        let injector = mesh.clone();
        cluster.set_pod_admission(Arc::new(move |pod, namespace| {
            injector.inject(pod, namespace)
        }));
        let ports = mesh.clone();
        let forward_faults: ForwardFaults = Arc::default();
        let faults = Arc::clone(&forward_faults);
        let (silent, black_hole) = black_hole().await;
        cluster.set_port_forward(Arc::new(move |pod, port| {
            let fault = faults.lock().unwrap().get(&port).cloned();
            match fault {
                Some(ForwardFault::Refused) => {
                    return Upstream::Refused(testkit_k8s::connection_refused_message(pod, port));
                }
                Some(ForwardFault::Rejected) => {
                    return Upstream::RejectUpgrade {
                        status: 500,
                        message: "error upgrading connection: unable to upgrade connection: container not found".into(),
                    };
                }
                Some(ForwardFault::Dropped) => return Upstream::CloseAfterUpgrade,
                Some(ForwardFault::Silent) => return Upstream::Tcp(silent),
                None => {}
            }
            match ports.port_target(pod, port) {
                PortTarget::Tcp(address) => Upstream::Tcp(address),
                PortTarget::Refused(message) => Upstream::Refused(message),
            }
        }));
        for object in Mesh::control_plane(version) {
            let is_namespace = object.get("kind").and_then(Value::as_str) == Some("Namespace");
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if is_namespace && cluster.get("", "Namespace", None, &name).is_some() {
                continue;
            }
            cluster.apply(object).expect("the control plane applies");
        }
        let prometheus =
            PrometheusProcess::start(prometheus, &mesh.file_sd_path(), scrape_interval)
                .await
                .expect("Prometheus starts");
        mesh.set_prometheus(prometheus.address);
        let dir = tempfile::tempdir().expect("a temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        cluster
            .write_kubeconfig(&kubeconfig, CONTEXT)
            .expect("kubeconfig written");
        let log_copier = tokio::spawn(copy_proxy_logs(cluster.clone(), mesh.clone()));
        // The control plane's pods are up before the harness looks.
        cluster
            .wait_for(
                "istiod, the gateway and Prometheus ready",
                Duration::from_secs(10),
                |c| {
                    ["istiod", "istio-ingressgateway", "prometheus"]
                        .iter()
                        .all(|d| {
                            c.get("apps", "Deployment", Some("istio-system"), d)
                                .and_then(|d| d.pointer("/status/availableReplicas")?.as_i64())
                                == Some(1)
                        })
                },
            )
            .await
            .expect("the control plane comes up");
        StandIn {
            cluster,
            forward_faults,
            mesh,
            prometheus,
            kubeconfig,
            dir,
            log_copier,
            black_hole,
            _network: network,
        }
    }

    /// Scales the ingress gateway to `replicas` and waits until all are available.
    pub async fn scale_gateway(&self, replicas: i64) {
        let mut gateway = self
            .cluster
            .get(
                "apps",
                "Deployment",
                Some("istio-system"),
                "istio-ingressgateway",
            )
            .expect("the stand-in has a gateway");
        gateway["spec"]["replicas"] = serde_json::json!(replicas);
        self.cluster.apply(gateway).expect("the gateway scales");
        self.cluster
            .wait_for("the gateway replicas", Duration::from_secs(20), |c| {
                c.get(
                    "apps",
                    "Deployment",
                    Some("istio-system"),
                    "istio-ingressgateway",
                )
                .and_then(|d| d.pointer("/status/availableReplicas")?.as_i64())
                    == Some(replicas)
            })
            .await
            .expect("every gateway replica is available");
    }

    /// Port-forwards to pod port `port` (of any pod) fail this way from now on.
    pub fn break_forwards(&self, port: u16, fault: ForwardFault) {
        self.forward_faults.lock().unwrap().insert(port, fault);
    }

    /// The harness's arguments that point it at this stand-in.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--context".into(),
            CONTEXT.into(),
        ]
    }
}

/// The proxies' access logs (what `meshConfig.accessLogFile=/dev/stdout` writes) become
/// the `istio-proxy` container logs of their pods, as on a real cluster.
async fn copy_proxy_logs(cluster: FakeCluster, mesh: Mesh) {
    let mut copied: std::collections::HashMap<(String, String), usize> = Default::default();
    loop {
        for pod in cluster.list("", "Pod", None) {
            let (Some(ns), Some(name)) = (
                pod.pointer("/metadata/namespace").and_then(Value::as_str),
                pod.pointer("/metadata/name").and_then(Value::as_str),
            ) else {
                continue;
            };
            let done = copied
                .entry((ns.to_string(), name.to_string()))
                .or_default();
            let (lines, next) = mesh.proxy_log_since(ns, name, *done);
            if !lines.is_empty() {
                let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
                cluster.append_pod_log(ns, name, "istio-proxy", &text);
            }
            *done = next;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
