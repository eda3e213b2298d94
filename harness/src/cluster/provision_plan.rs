//! The provisioning part of the `--dry-run` plan: the phases of setup in the order
//! [`super::provision::setup`] runs them, with the parts that run at the same time
//! joined by `∥`, and the commands a real run would execute.

use super::provision::images_to_prepull;
use super::{istio, kind, preflight};
use crate::config::RunConfig;
use crate::deadlines::ISTIO_READY;

/// Joins parts that setup runs at the same time.
const AT_THE_SAME_TIME: &str = "  ∥  ";

pub fn provisioning_plan(config: &RunConfig) -> String {
    let mut phases: Vec<(String, Vec<String>)> = Vec::new();
    let uses_kind = config.kubeconfig.is_none() && config.context.is_none();
    let install = config.install_version();
    let download = match config.versions.istio_archive_url(install) {
        Ok(url) => format!(
            "download Istio {install}: {url} (verified against {url}.sha256; istioctl from PATH if that version)"
        ),
        Err(e) => format!("download Istio {install}: {e}"),
    };
    if uses_kind {
        phases.push((
            format!(
                "preflight: the Docker engine answers /_ping at {}",
                preflight::docker_endpoint()
            ),
            vec![],
        ));
        phases.push((
            match config.versions.kind_url() {
                Ok(url) => format!(
                    "tools: kind {} (from PATH if that version, else {url} verified against {url}.sha256sum)",
                    config.versions.kind.version
                ),
                Err(e) => format!("tools: kind {}: {e}", config.versions.kind.version),
            },
            vec![],
        ));
        let kubeconfig = config.reports_dir.join("kubeconfig");
        let kind_config = config.reports_dir.join("kind-config.yaml");
        let mut detail = vec![format!(
            "kind {}",
            kind::create_args(
                &config.cluster_name,
                &config.versions.kind.node_image,
                &kind_config,
                &kubeconfig
            )
            .join(" ")
        )];
        detail.push(format!(
            "reused instead when a kind cluster `{}` exists (then never deleted by the run){}",
            config.cluster_name,
            if config.keep_cluster {
                "; kept at the end (--keep-cluster)"
            } else {
                "; a cluster this run creates is deleted at the end unless --keep-cluster"
            }
        ));
        detail.push(format!(
            "kind config (the run writes it to {}; a dry run writes nothing there):",
            kind_config.display()
        ));
        detail.extend(
            crate::config::kind_config()
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("  {l}")),
        );
        detail.push(download.clone());
        phases.push((
            format!("create the kind cluster{AT_THE_SAME_TIME}download the Istio release"),
            detail,
        ));
    } else {
        phases.push((
            format!(
                "existing cluster: kubeconfig {}, context {} (never deleted by the run)",
                config
                    .kubeconfig
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "from KUBECONFIG or ~/.kube/config".into()),
                config.context.as_deref().unwrap_or("current")
            ),
            vec![],
        ));
    }
    phases.push((
        format!(
            "preflight: the API server answers and runs Kubernetes {} or newer; Istio there is absent or {install}",
            config.versions.kubernetes.minimum
        ),
        vec![],
    ));
    if !uses_kind {
        phases.push((
            "download the Istio release (when Istio or the Prometheus addon must be installed)"
                .into(),
            vec![download],
        ));
    }
    let mut parts = vec!["istioctl install".to_string()];
    let mut detail = vec![format!(
        "istioctl {}   (skipped when istiod already runs {install})",
        istio::istioctl_args("install", install, &config.versions.istio.hub).join(" ")
    )];
    match &config.prometheus_url {
        Some(url) => detail.push(format!("Prometheus: {url} (--prometheus-url), no addon")),
        None => {
            parts.push("the Prometheus addon".into());
            detail.push(format!(
                "the Prometheus addon: samples/addons/prometheus.yaml of the release, scrape interval {}s (--scrape-interval), applied server-side in {} unless Prometheus runs there",
                config.scrape_interval.as_secs(),
                istio::ISTIO_NAMESPACE
            ));
        }
    }
    if uses_kind {
        parts.push("pre-pull images onto the node".into());
        detail.push(format!(
            "pre-pull (best effort; the kubelet pulls what is missing): {}",
            images_to_prepull(config, install).join(", ")
        ));
    }
    phases.push((parts.join(AT_THE_SAME_TIME), detail));
    let mut ready = vec![
        format!("{}/{}", istio::ISTIO_NAMESPACE, istio::ISTIOD),
        format!("{}/{}", config.ingress_namespace, istio::INGRESS_GATEWAY),
    ];
    if config.prometheus_url.is_none() {
        ready.push(format!("{}/{}", istio::ISTIO_NAMESPACE, istio::PROMETHEUS));
    }
    phases.push((
        format!(
            "wait until rolled out: {} (deadline {}s each)",
            ready.join(AT_THE_SAME_TIME),
            ISTIO_READY.as_secs()
        ),
        vec![],
    ));
    let gateway = |address: Option<&crate::reference::HostPort>, service_port: u16| {
        address.map(|a| a.to_string()).unwrap_or_else(|| {
            format!(
                "port-forward to the {}/{} pod port behind service port {service_port}",
                config.ingress_namespace,
                istio::INGRESS_GATEWAY
            )
        })
    };
    let mut detail = vec![
        format!(
            "ingress gateway HTTP: {}",
            gateway(config.ingress_address.as_ref(), 80)
        ),
        format!(
            "ingress gateway HTTPS: {}",
            gateway(config.ingress_tls_address.as_ref(), 443)
        ),
    ];
    detail.push(match &config.prometheus_url {
        Some(url) => format!("Prometheus: {url}"),
        None => format!(
            "Prometheus: port-forward to the one the cluster runs ({}/{} pod port 9090, else a Service of the prometheus-community chart or the operator in any namespace, on the port it targets; the addon is installed only into a kind cluster)",
            istio::ISTIO_NAMESPACE,
            istio::PROMETHEUS
        ),
    });
    phases.push(("reach the gateway and Prometheus".into(), detail));

    let mut lines = vec![format!(
        "provision ({} phases in order; parts joined by `∥` run at the same time):",
        phases.len()
    )];
    for (i, (title, detail)) in phases.iter().enumerate() {
        lines.push(format!("  {}. {title}", i + 1));
        lines.extend(detail.iter().map(|d| format!("       {d}")));
    }
    lines.join("\n")
}
