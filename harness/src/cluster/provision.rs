//! Setup of a real run: preflight, the kind cluster (created, reused or none), Istio at
//! the requested version, the Prometheus addon, and the port-forwards to the ingress
//! gateway and Prometheus.

use super::Live;
use super::apply::{Applier, parse_documents};
use super::portforward;
use super::{connect, istio, kind, preflight, rollout, tools, workloads};
use crate::config::RunConfig;
use crate::deadlines::ISTIO_READY as READY_DEADLINE;
use crate::probe::http::Target;
use crate::progress::Progress;
use crate::runner::record::RunProperties;
use crate::runner::world::{EnvError, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use std::sync::Arc;

fn env(phase: Phase) -> impl Fn(String) -> EnvError {
    EnvError::at(phase)
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
            .map_err(env(Phase::Preflight))?;
        let kind_bin = tools::kind(&config.versions, &cache)
            .await
            .map_err(env(Phase::Tools))?;
        let kubeconfig = config.reports_dir.join("kubeconfig");
        let name = &config.cluster_name;
        if kind::exists(&kind_bin, name)
            .await
            .map_err(env(Phase::Provision))?
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
            .map_err(env(Phase::Provision))?;
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
            .map_err(env(Phase::Provision))?;
            owns_cluster = true;
            properties.kind_node_image = config.versions.kind.node_image.clone();
        }
        kind::export_kubeconfig(&kind_bin, name, &kubeconfig)
            .await
            .map_err(env(Phase::Provision))?;
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
        .map_err(env(Phase::Preflight))?;
    let minimum = parse_minimum(&config.versions.kubernetes.minimum);
    let server = connect::check_server(&client, minimum)
        .await
        .map_err(env(Phase::Preflight))?;
    properties.kubernetes_version = server.git_version.clone();
    let cluster_args = istio::cluster_args(kubeconfig.as_deref(), config.context.as_deref());

    // Istio at the requested version.
    let requested = &config.install_version().to_string();
    let mut release = None;
    match istio::installed_version(&client)
        .await
        .map_err(env(Phase::Istio))?
    {
        Some(found) if &found == requested => {
            progress.line(&format!("Istio {found} already installed"))
        }
        Some(found) => {
            return Err(EnvError::new(
                Phase::Istio,
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
                .map_err(env(Phase::Tools))?;
            let _wait = progress.wait(&format!("installing Istio {requested}"));
            istio::install(
                &r.istioctl,
                requested,
                &config.versions.istio.hub,
                &cluster_args,
            )
            .await
            .map_err(env(Phase::Istio))?;
            release = Some(r);
        }
    }
    properties.istio_version = requested.clone();
    {
        let _wait = progress.wait("waiting for istiod and the ingress gateway");
        rollout::wait(
            &client,
            istio::ISTIO_NAMESPACE,
            istio::ISTIOD,
            READY_DEADLINE,
        )
        .await
        .map_err(env(Phase::Istio))?;
        rollout::wait(
            &client,
            &config.ingress_namespace,
            istio::INGRESS_GATEWAY,
            READY_DEADLINE,
        )
        .await
        .map_err(|e| EnvError::new(Phase::Istio, format!("{e} (is --ingress-namespace right?)")))?;
    }

    // The Prometheus addon of the same release.
    let mut applier = Applier::new(client.clone());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), istio::ISTIO_NAMESPACE);
    let has_prometheus = deployments
        .get_opt(istio::PROMETHEUS)
        .await
        .map_err(|e| EnvError::new(Phase::Prometheus, e.to_string()))?
        .is_some();
    if config.prometheus_url.is_none() && !has_prometheus {
        let r = match release {
            Some(r) => r,
            None => tools::istio(&config.versions, requested, &cache)
                .await
                .map_err(env(Phase::Tools))?,
        };
        let text = std::fs::read_to_string(&r.prometheus_addon).map_err(|e| {
            EnvError::new(
                Phase::Prometheus,
                format!("cannot read {}: {e}", r.prometheus_addon.display()),
            )
        })?;
        for obj in parse_documents(&text).map_err(env(Phase::Prometheus))? {
            applier.apply(&obj).await.map_err(env(Phase::Prometheus))?;
        }
    }
    if config.prometheus_url.is_none() {
        let _wait = progress.wait("waiting for Prometheus");
        rollout::wait(
            &client,
            istio::ISTIO_NAMESPACE,
            istio::PROMETHEUS,
            READY_DEADLINE,
        )
        .await
        .map_err(env(Phase::Prometheus))?;
    }

    // Reaching the gateway and Prometheus.
    let mut forwards = Vec::new();
    let gateway_selector =
        workloads::selector_of(&client, &config.ingress_namespace, istio::INGRESS_GATEWAY)
            .await
            .map_err(env(Phase::PortForward))?;
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
    let gateway_http = match config.ingress_address {
        Some(a) => Target::direct(a),
        None => {
            let f = forward_gateway(80).await.map_err(env(Phase::PortForward))?;
            progress.line(&format!("ingress gateway HTTP: {}", f.description));
            let target = Target {
                address: f.local,
                health: Some(Arc::clone(&f.health)),
            };
            forwards.push(f);
            target
        }
    };
    let gateway_tls = match config.ingress_tls_address {
        Some(a) => Target::direct(a),
        None => {
            let f = forward_gateway(443)
                .await
                .map_err(env(Phase::PortForward))?;
            progress.line(&format!("ingress gateway HTTPS: {}", f.description));
            let target = Target {
                address: f.local,
                health: Some(Arc::clone(&f.health)),
            };
            forwards.push(f);
            target
        }
    };
    let prometheus_url = match &config.prometheus_url {
        Some(url) => url.clone(),
        None => {
            let selector =
                workloads::selector_of(&client, istio::ISTIO_NAMESPACE, istio::PROMETHEUS)
                    .await
                    .map_err(env(Phase::PortForward))?;
            let f = portforward::start(client.clone(), istio::ISTIO_NAMESPACE, &selector, 9090)
                .await
                .map_err(env(Phase::PortForward))?;
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
        gateway_http,
        gateway_tls,
        prometheus_url,
        forwards,
    })
}

fn parse_minimum(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(1), parts.next().unwrap_or(33))
}

/// The provisioning part of the `--dry-run` plan.
pub fn provisioning_plan(config: &RunConfig) -> String {
    let mut lines = Vec::new();
    if config.kubeconfig.is_none() && config.context.is_none() {
        let kubeconfig = config.reports_dir.join("kubeconfig");
        let kind_config = config.reports_dir.join("kind-config.yaml");
        lines.push(format!(
            "provision: kind {} (from PATH if that version, else {} verified against {}.sha256sum)",
            config.versions.kind.version,
            config.versions.kind_url(),
            config.versions.kind_url()
        ));
        lines.push(format!(
            "  kind {}   (reused instead when a kind cluster `{}` exists){}",
            kind::create_args(
                &config.cluster_name,
                &config.versions.kind.node_image,
                &kind_config,
                &kubeconfig
            )
            .join(" "),
            config.cluster_name,
            if config.keep_cluster {
                ""
            } else {
                "; deleted at the end unless --keep-cluster"
            }
        ));
        lines.push(format!("  kind config ({}):", kind_config.display()));
        lines.extend(
            crate::config::kind_config()
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("    {l}")),
        );
    } else {
        lines.push(format!(
            "provision: existing cluster (kubeconfig {}, context {}); never deleted",
            config
                .kubeconfig
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "from KUBECONFIG or ~/.kube/config".into()),
            config.context.as_deref().unwrap_or("current")
        ));
    }
    let install = config.install_version();
    let url = config.versions.istio_archive_url(install);
    lines.push(format!(
        "  Istio {}: {url} (verified against {url}.sha256; istioctl from PATH if that version)",
        install
    ));
    lines.push(format!(
        "  istioctl {}   (skipped when istiod already runs {})",
        istio::istioctl_args("install", install, &config.versions.istio.hub).join(" "),
        install
    ));
    lines.push(match &config.prometheus_url {
        Some(url) => format!("  Prometheus: {url} (--prometheus-url)"),
        None => "  Prometheus: samples/addons/prometheus.yaml of the release, applied server-side in istio-system, reached by port-forward".into(),
    });
    lines.push(format!(
        "  ingress gateway: {} (HTTP), {} (HTTPS)",
        config
            .ingress_address
            .map(|a| a.to_string())
            .unwrap_or_else(|| format!(
                "port-forward to {}/istio-ingressgateway pod port behind service port 80",
                config.ingress_namespace
            )),
        config
            .ingress_tls_address
            .map(|a| a.to_string())
            .unwrap_or_else(|| "port-forward to the pod port behind service port 443".into())
    ));
    lines.join("\n")
}
