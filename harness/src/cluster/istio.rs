//! Istio on the cluster: which version runs, installing with istioctl, the Prometheus
//! addon, and waiting until the control plane and the ingress gateway serve.

use super::process::run;
use crate::deadlines::ISTIOCTL as INSTALL_DEADLINE;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::Api;
use std::path::Path;

pub const ISTIO_NAMESPACE: &str = "istio-system";
pub const ISTIOD: &str = "istiod";
pub const INGRESS_GATEWAY: &str = "istio-ingressgateway";
/// The label selector of the ingress gateway's pods.
pub const INGRESS_GATEWAY_SELECTOR: &str = "istio=ingressgateway";
pub const PROMETHEUS: &str = "prometheus";

/// The arguments of `istioctl <verb>` (`install` or `upgrade`): profile `default`,
/// images from `hub` at the exact version, access logs to stdout for diagnostics.
pub fn istioctl_args(verb: &str, version: &str, hub: &str) -> Vec<String> {
    vec![
        verb.into(),
        "-y".into(),
        "--set".into(),
        "profile=default".into(),
        "--set".into(),
        format!("hub={hub}"),
        "--set".into(),
        format!("tag={version}"),
        "--set".into(),
        "meshConfig.accessLogFile=/dev/stdout".into(),
    ]
}

/// `--kubeconfig`/`--context` for istioctl, so it talks to the same cluster.
pub fn cluster_args(kubeconfig: Option<&Path>, context: Option<&str>) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(k) = kubeconfig {
        args.push("--kubeconfig".into());
        args.push(k.display().to_string());
    }
    if let Some(c) = context {
        args.push("--context".into());
        args.push(c.to_string());
    }
    args
}

/// The tag of an image reference: `docker.io/istio/pilot:1.31.2` → `1.31.2`.
pub fn image_tag(image: &str) -> Option<&str> {
    let last = image.rsplit('/').next()?;
    let tag = last.split_once(':').map(|(_, t)| t)?;
    Some(tag.split('@').next().unwrap_or(tag))
}

/// The version istiod runs, from its image tag; None when Istio is not installed.
pub async fn installed_version(client: &Client) -> Result<Option<String>, String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ISTIO_NAMESPACE);
    let deployment = api
        .get_opt(ISTIOD)
        .await
        .map_err(|e| format!("cannot read deployment {ISTIO_NAMESPACE}/{ISTIOD}: {e}"))?;
    Ok(deployment.and_then(|d| {
        d.spec?
            .template
            .spec?
            .containers
            .iter()
            .find_map(|c| c.image.as_deref().and_then(image_tag).map(str::to_string))
    }))
}

/// `istioctl install` of `version` (from the same release's istioctl).
pub async fn install(
    istioctl: &Path,
    version: &str,
    hub: &str,
    cluster: &[String],
) -> Result<(), String> {
    istioctl_run(istioctl, "install", version, hub, cluster).await
}

/// `istioctl upgrade` in place to `version` (with that release's istioctl).
pub async fn upgrade(
    istioctl: &Path,
    version: &str,
    hub: &str,
    cluster: &[String],
) -> Result<(), String> {
    istioctl_run(istioctl, "upgrade", version, hub, cluster).await
}

async fn istioctl_run(
    istioctl: &Path,
    verb: &str,
    version: &str,
    hub: &str,
    cluster: &[String],
) -> Result<(), String> {
    let mut args = istioctl_args(verb, version, hub);
    args.extend(cluster.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(istioctl, &args, INSTALL_DEADLINE).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags_are_read_with_or_without_registry_port_and_digest() {
        assert_eq!(image_tag("docker.io/istio/pilot:1.31.2"), Some("1.31.2"));
        assert_eq!(
            image_tag("localhost:5000/istio/pilot:1.30.5"),
            Some("1.30.5")
        );
        assert_eq!(
            image_tag("docker.io/istio/pilot:1.31.2@sha256:abc"),
            Some("1.31.2")
        );
        assert_eq!(image_tag("docker.io/istio/pilot"), None);
    }

    #[test]
    fn install_uses_docker_hub_images_at_the_exact_version_with_access_logs() {
        let args = istioctl_args("install", "1.31.2", "docker.io/istio").join(" ");
        assert_eq!(
            args,
            "install -y --set profile=default --set hub=docker.io/istio --set tag=1.31.2 --set meshConfig.accessLogFile=/dev/stdout"
        );
    }
}
