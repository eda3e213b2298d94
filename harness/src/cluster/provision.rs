//! Setup of a real run: preflight, the kind cluster (created, reused or none), Istio at
//! the requested version, the Prometheus addon, and the port-forwards to the ingress
//! gateway and Prometheus.

use super::apply::{Applier, parse_documents};
use super::portforward::{self, Forward};
use super::{connect, istio, kind, preflight, tools, workloads};
use crate::config::RunConfig;
use crate::progress::Progress;
use crate::runner::record::RunProperties;
use crate::runner::world::EnvError;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::Api;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const READY_DEADLINE: Duration = Duration::from_secs(300);

/// What setup leaves for the run.
pub struct Live {
    pub client: Client,
    pub applier: Applier,
    /// The harness created the kind cluster `--cluster-name` (and deletes it at the end).
    pub owns_cluster: bool,
    /// The kind binary, when the cluster is a kind cluster of `--cluster-name`.
    pub kind: Option<PathBuf>,
    /// `--kubeconfig`/`--context` for istioctl.
    pub cluster_args: Vec<String>,
    pub http_address: SocketAddr,
    pub tls_address: SocketAddr,
    pub prometheus_url: String,
    /// Held for the run: dropping a forward stops it.
    pub forwards: Vec<Forward>,
}

fn env(phase: &str) -> impl Fn(String) -> EnvError + '_ {
    move |message| EnvError::new(phase, message)
}

pub async fn setup(
    config: &RunConfig,
    progress: &Progress,
    properties: &mut RunProperties,
) -> Result<Live, EnvError> {
    let uses_kind = config.kubeconfig.is_none() && config.context.is_none();
    let cache = super::download::cache_dir();
    let mut owns_cluster = false;
    let mut kind_path = None;
    let kubeconfig = if uses_kind {
        preflight::docker_reachable(&preflight::docker_endpoint())
            .await
            .map_err(env("preflight"))?;
        let kind_bin = tools::kind(&config.versions, &cache)
            .await
            .map_err(env("tools"))?;
        let kubeconfig = config.reports_dir.join("kubeconfig");
        let name = &config.cluster_name;
        if kind::exists(&kind_bin, name)
            .await
            .map_err(env("provision"))?
        {
            progress.line(&format!("reusing kind cluster `{name}`"));
            properties.kind_node_image = kind::node_image(name)
                .await
                .unwrap_or_else(|| "unknown".into());
        } else {
            let kind_config = config.reports_dir.join("kind-config.yaml");
            crate::report::write_atomically(
                &kind_config,
                crate::config::kind_config().as_bytes(),
                false,
            )
            .map_err(env("provision"))?;
            let _wait = progress.wait(&format!(
                "creating kind cluster `{name}` ({})",
                config.versions.kind.node_image
            ));
            kind::create(
                &kind_bin,
                name,
                &config.versions.kind.node_image,
                &kind_config,
                &kubeconfig,
            )
            .await
            .map_err(env("provision"))?;
            owns_cluster = true;
            properties.kind_node_image = config.versions.kind.node_image.clone();
        }
        kind::export_kubeconfig(&kind_bin, name, &kubeconfig)
            .await
            .map_err(env("provision"))?;
        properties.cluster_name = name.clone();
        kind_path = Some(kind_bin);
        Some(kubeconfig)
    } else {
        properties.cluster_name = config
            .context
            .clone()
            .unwrap_or_else(|| "current context".into());
        config.kubeconfig.clone()
    };

    let client = connect::client(kubeconfig.as_deref(), config.context.as_deref())
        .await
        .map_err(env("preflight"))?;
    let minimum = parse_minimum(&config.versions.kubernetes.minimum);
    let server = connect::check_server(&client, minimum)
        .await
        .map_err(env("preflight"))?;
    properties.kubernetes_version = server.git_version.clone();
    let cluster_args = istio::cluster_args(kubeconfig.as_deref(), config.context.as_deref());

    // Istio at the requested version.
    let requested = &config.install_version().to_string();
    let mut release = None;
    match istio::installed_version(&client)
        .await
        .map_err(env("istio"))?
    {
        Some(found) if &found == requested => {
            progress.line(&format!("Istio {found} already installed"))
        }
        Some(found) => {
            return Err(EnvError::new(
                "istio",
                format!(
                    "the cluster runs Istio {found}, the run asks for {requested}: pass --istio-version {found}, or use a fresh cluster{}",
                    if uses_kind {
                        format!(" (kind delete cluster --name {})", config.cluster_name)
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        None => {
            let r = tools::istio(&config.versions, requested, &cache)
                .await
                .map_err(env("tools"))?;
            let _wait = progress.wait(&format!("installing Istio {requested}"));
            istio::install(
                &r.istioctl,
                requested,
                &config.versions.istio.hub,
                &cluster_args,
            )
            .await
            .map_err(env("istio"))?;
            release = Some(r);
        }
    }
    properties.istio_version = requested.clone();
    {
        let _wait = progress.wait("waiting for istiod and the ingress gateway");
        workloads::wait_rollout(
            &client,
            istio::ISTIO_NAMESPACE,
            istio::ISTIOD,
            READY_DEADLINE,
        )
        .await
        .map_err(env("istio"))?;
        workloads::wait_rollout(
            &client,
            &config.ingress_namespace,
            istio::INGRESS_GATEWAY,
            READY_DEADLINE,
        )
        .await
        .map_err(|e| EnvError::new("istio", format!("{e} (is --ingress-namespace right?)")))?;
    }

    // The Prometheus addon of the same release.
    let mut applier = Applier::new(client.clone());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), istio::ISTIO_NAMESPACE);
    let has_prometheus = deployments
        .get_opt(istio::PROMETHEUS)
        .await
        .map_err(|e| EnvError::new("prometheus", e.to_string()))?
        .is_some();
    if config.prometheus_url.is_none() && !has_prometheus {
        let r = match release {
            Some(r) => r,
            None => tools::istio(&config.versions, requested, &cache)
                .await
                .map_err(env("tools"))?,
        };
        let text = std::fs::read_to_string(&r.prometheus_addon).map_err(|e| {
            EnvError::new(
                "prometheus",
                format!("cannot read {}: {e}", r.prometheus_addon.display()),
            )
        })?;
        for obj in parse_documents(&text).map_err(env("prometheus"))? {
            applier.apply(&obj).await.map_err(env("prometheus"))?;
        }
    }
    if config.prometheus_url.is_none() {
        let _wait = progress.wait("waiting for Prometheus");
        workloads::wait_rollout(
            &client,
            istio::ISTIO_NAMESPACE,
            istio::PROMETHEUS,
            READY_DEADLINE,
        )
        .await
        .map_err(env("prometheus"))?;
    }

    // Reaching the gateway and Prometheus.
    let mut forwards = Vec::new();
    let gateway_selector =
        workloads::selector_of(&client, &config.ingress_namespace, istio::INGRESS_GATEWAY)
            .await
            .map_err(env("port-forward"))?;
    let forward_gateway = |service_port: i32| {
        let client = client.clone();
        let namespace = config.ingress_namespace.clone();
        let selector = gateway_selector.clone();
        async move {
            let pod_port =
                portforward::target_port(&client, &namespace, istio::INGRESS_GATEWAY, service_port)
                    .await?;
            portforward::start(client, &namespace, &selector, pod_port).await
        }
    };
    let http_address = match config.ingress_address {
        Some(a) => a,
        None => {
            let f = forward_gateway(80).await.map_err(env("port-forward"))?;
            progress.line(&format!("ingress gateway HTTP: {}", f.description));
            let a = f.local;
            forwards.push(f);
            a
        }
    };
    let tls_address = match config.ingress_tls_address {
        Some(a) => a,
        None => {
            let f = forward_gateway(443).await.map_err(env("port-forward"))?;
            progress.line(&format!("ingress gateway HTTPS: {}", f.description));
            let a = f.local;
            forwards.push(f);
            a
        }
    };
    let prometheus_url = match &config.prometheus_url {
        Some(url) => url.clone(),
        None => {
            let selector =
                workloads::selector_of(&client, istio::ISTIO_NAMESPACE, istio::PROMETHEUS)
                    .await
                    .map_err(env("port-forward"))?;
            let f = portforward::start(client.clone(), istio::ISTIO_NAMESPACE, &selector, 9090)
                .await
                .map_err(env("port-forward"))?;
            progress.line(&format!("Prometheus: {}", f.description));
            let url = format!("http://{}", f.local);
            forwards.push(f);
            url
        }
    };
    Ok(Live {
        client,
        applier,
        owns_cluster,
        kind: kind_path,
        cluster_args,
        http_address,
        tls_address,
        prometheus_url,
        forwards,
    })
}

fn parse_minimum(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(1), parts.next().unwrap_or(33))
}
