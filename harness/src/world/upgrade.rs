//! Upgrading Istio in place between the two passes of an upgrade run: `istioctl
//! upgrade` with the target release's istioctl, the control plane and the gateway on
//! the new version, the app restarted so it gets the new proxies, every proxy checked,
//! and what the injector gives a new pod.

use crate::cluster::{Live, injector, istio, rollout, workloads};
use crate::config::RunConfig;
use crate::deadlines;
use crate::runner::world::{EnvError, Phase};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// `istioctl upgrade` to `version`, then restart the app and check every proxy.
pub async fn upgrade(
    live: &Live,
    config: &RunConfig,
    version: &str,
    judged: bool,
    log: &mut Vec<String>,
) -> Result<(), EnvError> {
    let env = EnvError::at;
    let release = crate::cluster::tools::istio(
        &config.versions,
        version,
        &crate::cluster::download::secure_cache_dir().map_err(env(Phase::Tools))?,
    )
    .await
    .map_err(env(Phase::Tools))?;
    istio::upgrade(
        &release.istioctl,
        version,
        &config.versions.istio.hub,
        &live.cluster_args,
    )
    .await
    .map_err(env(Phase::Upgrade))?;
    log.push(format!("istioctl upgrade to {version} done"));
    let deadline = deadlines::ROLLOUT;
    rollout::wait(
        &live.client,
        istio::ISTIO_NAMESPACE,
        istio::ISTIOD,
        deadline,
    )
    .await
    .map_err(env(Phase::Upgrade))?;
    rollout::wait(
        &live.client,
        &config.ingress_namespace,
        istio::INGRESS_GATEWAY,
        deadline,
    )
    .await
    .map_err(env(Phase::Upgrade))?;
    match istio::installed_version(&live.client)
        .await
        .map_err(env(Phase::Upgrade))?
    {
        Some(v) if v == version => log.push(format!("istiod runs {v}")),
        other => {
            return Err(EnvError::new(
                Phase::Upgrade,
                format!(
                    "after `istioctl upgrade` istiod runs {}, not {version}: istioctl reported success but the control plane did not change; check which istioctl ran (PATH, or the release archive) or upgrade by hand and rerun",
                    other.as_deref().unwrap_or("nothing")
                ),
            ));
        }
    }
    let stamp = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let names = workloads::deployments(&live.client, &config.app_namespace)
        .await
        .map_err(env(Phase::Upgrade))?;
    if names.is_empty() && judged {
        return Err(EnvError::new(
            Phase::Upgrade,
            format!(
                "no Deployment in namespace {} to restart: the upgrade is validated on the app the first pass deployed; select a first-pass step with it, or run without a filter",
                config.app_namespace
            ),
        ));
    }
    if names.is_empty() {
        log.push(format!(
            "no app in namespace {} yet: the second-pass step this upgrade prepares deploys it on {version} and judges it",
            config.app_namespace
        ));
    }
    for name in &names {
        workloads::restart(&live.client, &config.app_namespace, name, &stamp)
            .await
            .map_err(env(Phase::Upgrade))?;
    }
    for name in &names {
        rollout::wait(&live.client, &config.app_namespace, name, deadline)
            .await
            .map_err(env(Phase::Upgrade))?;
    }
    log.push(format!(
        "restarted {} for the new proxies",
        names.join(", ")
    ));
    // Every app pod must come back with the injector's sidecar: a data plane "on B"
    // that lost its sidecars proves nothing about B.
    let pods: Api<Pod> = Api::namespaced(live.client.clone(), &config.app_namespace);
    let listed = pods.list(&ListParams::default()).await.map_err(|e| {
        EnvError::new(
            Phase::Upgrade,
            format!("cannot list pods in {}: {e}", config.app_namespace),
        )
    })?;
    let opts_out = |p: &Pod| {
        let says_false = |m: Option<&std::collections::BTreeMap<String, String>>| {
            m.and_then(|m| m.get(workloads::INJECT_KEY))
                .is_some_and(|v| v == "false")
        };
        says_false(p.metadata.annotations.as_ref()) || says_false(p.metadata.labels.as_ref())
    };
    let current: Vec<&Pod> = listed
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let opted_out = current.iter().filter(|p| opts_out(p)).count();
    let without: Vec<String> = current
        .iter()
        .filter(|p| !opts_out(p))
        .filter_map(|p| {
            let sidecar = workloads::sidecar(p);
            (!matches!(sidecar, workloads::Sidecar::Ready(_))).then(|| {
                format!(
                    "{} ({sidecar})",
                    p.metadata.name.clone().unwrap_or_default()
                )
            })
        })
        .collect();
    if !without.is_empty() {
        return Err(EnvError::new(
            Phase::Upgrade,
            format!(
                "after the upgrade to {version} these app pods have no ready sidecar: {}; the injector of the new control plane did not inject",
                without.join(", ")
            ),
        ));
    }
    let (stale, checked) = workloads::proxies_not_on(
        &live.client,
        &config.app_namespace,
        &config.ingress_namespace,
        version,
    )
    .await
    .map_err(env(Phase::Upgrade))?;
    if !stale.is_empty() {
        return Err(EnvError::new(
            Phase::Upgrade,
            format!("the data plane is not on {version}: {}", stale.join(", ")),
        ));
    }
    log.push(format!(
        "data plane on {version}: {checked} proxies checked{}",
        if opted_out > 0 {
            format!(" ({opted_out} app pods opt out of injection at this point of the suites)")
        } else {
            String::new()
        }
    ));
    if !names.is_empty() {
        check_injector(live, config, version, log).await?;
    }
    Ok(())
}

/// The restarted pods show the injector only where they do not opt out: what it gives
/// a new pod is asked directly (a dry-run create), so an injector left on the old proxy
/// cannot pass behind an app that opts out at this point of the suites.
async fn check_injector(
    live: &Live,
    config: &RunConfig,
    version: &str,
    log: &mut Vec<String>,
) -> Result<(), EnvError> {
    let namespace = &config.app_namespace;
    match injector::injected_proxy(&live.client, namespace, &config.image).await {
        Ok(Some(image)) if istio::image_tag(&image) == Some(version) => {
            log.push(format!(
                "the injector gives new pods in {namespace} {image} (dry-run pod create)"
            ));
            Ok(())
        }
        Ok(Some(image)) => Err(EnvError::new(
            Phase::Upgrade,
            format!(
                "after the upgrade to {version} the injector still gives new pods in {namespace} {image} (dry-run pod create): check the injector's proxy image (values.global.proxy.image, the injection template)"
            ),
        )),
        Ok(None) => Err(EnvError::new(
            Phase::Upgrade,
            format!(
                "after the upgrade to {version} the injector gives a dry-run pod in {namespace} labelled {}=true no istio-proxy: is its webhook installed?",
                workloads::INJECT_KEY
            ),
        )),
        Err(e) => Err(EnvError::new(Phase::Upgrade, e)),
    }
}
