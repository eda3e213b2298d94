//! Istio on the cluster: which version (and which revisions) run, and the istioctl
//! command lines: install, in-place upgrade, and the canary verbs (a revision beside
//! the running control plane, the `default` revision tag, uninstalling a revision).

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
/// The label (on istiod, the injector's webhooks, injected pods and the gateway) that
/// names a control plane revision; namespaces and pods select a revision with it.
pub const REVISION_LABEL: &str = "istio.io/rev";
/// The revision of an install without `--set revision` (charts: `.Values.revision |
/// default "default"`); its istiod is the Deployment `istiod`.
pub const DEFAULT_REVISION: &str = "default";
/// istiod's Deployments and pods carry `app: istiod`, whatever their revision.
pub const ISTIOD_SELECTOR: &str = "app=istiod";

/// The revision name for `version`: `.` is not valid in a revision name, so Istio's
/// canary docs name revision `1-31-2` for Istio 1.31.2 (istio.io
/// docs/setup/upgrade/canary: "you must replace `.` characters in the revision name").
pub fn revision_name(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

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

/// `istioctl install` of `version` as revision `revision`, beside what runs: profile
/// `minimal` installs its istiod (and the shared base) only; profile `default` also
/// renders the ingress gateway for that revision, which upgrades the existing gateway
/// Deployment in place to it (see `world/canary.rs`).
pub fn revision_install_args(
    version: &str,
    revision: &str,
    profile: &str,
    hub: &str,
) -> Vec<String> {
    let mut args = istioctl_args("install", version, hub);
    args[3] = format!("profile={profile}");
    args.splice(4..4, ["--set".to_string(), format!("revision={revision}")]);
    args
}

/// `istioctl tag set default --revision <revision> --overwrite -y`: that revision
/// handles the `istio-injection=enabled` namespaces (and validation) from now on; the
/// webhooks of an un-revisioned install are made to match nothing (istioctl/pkg/tag
/// `DeactivateIstioInjectionWebhook`). `--overwrite`: `istioctl install` already made
/// the `default` tag (operator/pkg/webhook/webhook.go `WebhooksToDeploy`), and
/// `tag set` refuses an existing tag without it (istioctl/pkg/tag/generate.go
/// `checkTagDuplicate`: `revision tag "default" already exists, and --overwrite is
/// false`, exit 1), in Istio 1.30 and 1.31 alike.
pub fn tag_default_args(revision: &str) -> Vec<String> {
    [
        "tag",
        "set",
        DEFAULT_REVISION,
        "--revision",
        revision,
        "--overwrite",
        "-y",
    ]
    .map(str::to_string)
    .to_vec()
}

/// `istioctl uninstall --revision <revision> -y`: removes that revision's istiod,
/// webhooks and any gateway still labelled with it (operator/pkg/uninstall/prune.go
/// selects `istio.io/rev=<revision>`, the install's namespace and the Pilot/gateway
/// components). The `default` tag survives once `tag set` pointed it elsewhere (its
/// `istio.io/rev` then names the new revision); istioctl refuses a revision no webhook
/// names (`could not find target revision`).
pub fn uninstall_args(revision: &str) -> Vec<String> {
    ["uninstall", "--revision", revision, "-y"]
        .map(str::to_string)
        .to_vec()
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

/// The revision an istiod (Deployment or pod) serves: its `istio.io/rev` label, which
/// the chart sets, else `default`.
pub fn revision_of(labels: Option<&std::collections::BTreeMap<String, String>>) -> String {
    labels
        .and_then(|l| l.get(REVISION_LABEL).cloned())
        .unwrap_or_else(|| DEFAULT_REVISION.to_string())
}

/// The version an istiod runs: the tag of its container's image.
pub fn version_of(containers: &[k8s_openapi::api::core::v1::Container]) -> Option<String> {
    containers
        .iter()
        .find_map(|c| c.image.as_deref().and_then(image_tag).map(str::to_string))
}

/// One control plane revision that runs: its istiod Deployment, revision and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPlane {
    pub deployment: String,
    pub revision: String,
    pub version: String,
}

/// Every istiod Deployment in `istio-system` (one per revision), the default revision
/// first.
pub async fn control_planes(client: &Client) -> Result<Vec<ControlPlane>, String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ISTIO_NAMESPACE);
    let list = api
        .list(&kube::api::ListParams::default().labels(ISTIOD_SELECTOR))
        .await
        .map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot list the istiod deployments in {ISTIO_NAMESPACE}: {e}")
        })?;
    let mut planes: Vec<ControlPlane> = list
        .items
        .into_iter()
        .filter(|d| d.metadata.deletion_timestamp.is_none())
        .filter_map(|d| {
            let deployment = d.metadata.name.clone()?;
            let revision = revision_of(d.metadata.labels.as_ref());
            let version = version_of(&d.spec?.template.spec?.containers)?;
            Some(ControlPlane {
                deployment,
                revision,
                version,
            })
        })
        .collect();
    planes.sort_by_key(|p| (p.revision != DEFAULT_REVISION, p.revision.clone()));
    Ok(planes)
}

/// What the control plane runs, as one version when every revision runs the same one
/// (`1.31.2`), else each with its revision (`1.30.3 (default), 1.31.2 (1-31-2)`); None
/// when Istio is not installed.
pub fn describe_versions(planes: &[ControlPlane]) -> Option<String> {
    let first = planes.first()?;
    if planes.iter().all(|p| p.version == first.version) {
        return Some(first.version.clone());
    }
    Some(
        planes
            .iter()
            .map(|p| format!("{} ({})", p.version, p.revision))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// The version istiod runs, from its image tag (see [`describe_versions`] when several
/// revisions run); None when Istio is not installed.
pub async fn installed_version(client: &Client) -> Result<Option<String>, String> {
    Ok(describe_versions(&control_planes(client).await?))
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
    istioctl_with(istioctl, &istioctl_args(verb, version, hub), cluster).await
}

/// Runs istioctl with `args` against the run's cluster (bounded by its deadline).
pub async fn istioctl_with(
    istioctl: &Path,
    args: &[String],
    cluster: &[String],
) -> Result<(), String> {
    let mut args = args.to_vec();
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
    fn revisions_are_named_without_dots_and_installed_beside_the_default() {
        assert_eq!(revision_name("1.31.2"), "1-31-2");
        assert_eq!(revision_name("1.32.0-beta.1"), "1-32-0-beta-1");
        assert_eq!(
            revision_install_args("1.31.2", "1-31-2", "minimal", "docker.io/istio").join(" "),
            "install -y --set profile=minimal --set revision=1-31-2 --set hub=docker.io/istio --set tag=1.31.2 --set meshConfig.accessLogFile=/dev/stdout"
        );
        assert_eq!(
            tag_default_args("1-31-2").join(" "),
            "tag set default --revision 1-31-2 --overwrite -y"
        );
        assert_eq!(
            uninstall_args("default").join(" "),
            "uninstall --revision default -y"
        );
    }

    #[test]
    fn several_revisions_show_each_version_with_its_revision() {
        let plane = |revision: &str, version: &str| ControlPlane {
            deployment: format!("istiod-{revision}"),
            revision: revision.into(),
            version: version.into(),
        };
        assert_eq!(describe_versions(&[]), None);
        assert_eq!(
            describe_versions(&[plane("1-31-2", "1.31.2")]).as_deref(),
            Some("1.31.2")
        );
        assert_eq!(
            describe_versions(&[plane("default", "1.30.3"), plane("1-31-2", "1.31.2")]).as_deref(),
            Some("1.30.3 (default), 1.31.2 (1-31-2)")
        );
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
