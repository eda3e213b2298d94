//! The cluster side of a canary upgrade (`--upgrade-mode canary`): each change the
//! runner asks for (`runner::canary::CanaryOp`), carried out with the target release's
//! istioctl and the Kubernetes API, and the exact commands a person would type, for
//! `--dry-run`. The order and what is judged in between are in `runner/canary.rs`.
//!
//! What Istio documents (Istio 1.30/1.31; read with the search tool):
//!
//! - Canary procedure (istio.io `docs/setup/upgrade/canary/index.md`): install the new
//!   control plane next to the old one with `istioctl install --set revision=<name>`;
//!   "you must replace `.` characters in the revision name, for example
//!   `revision=1-31-2` for Istio 1.31.2, because `.` is not a valid revision name
//!   character". Each revision is a full control plane with its own Deployment and
//!   Service (`istiod-<revision>`) and its own injector webhook. Installing it "has no
//!   impact on the existing sidecar proxies"; a namespace moves with `kubectl label
//!   namespace <ns> istio-injection- istio.io/rev=<revision>` — "the `istio-injection`
//!   label must be removed because it takes precedence over the `istio.io/rev` label" —
//!   and a restart re-injects its pods. The old control plane goes with `istioctl
//!   uninstall --revision <old> -y` once nothing uses it.
//! - Which webhook injects (istio/istio release-1.31
//!   `manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml`):
//!   namespace `istio-injection=enabled` → the default revision; else namespace
//!   `istio.io/rev=<r>` → revision r; with neither label on the namespace, the *pod*
//!   label `istio.io/rev=<r>` (`rev.object.` webhooks) → revision r; an install without
//!   a revision answers to `istio.io/rev=default`. So moving single workloads (not a
//!   whole namespace) needs the namespace without either label and `istio.io/rev` in
//!   each pod template: the first move removes `istio-injection` and pins the
//!   workloads that stay to `default` (their restart is re-injected by the old
//!   revision), and each move sets the label and restarts.
//! - Gateways (istio.io `docs/setup/upgrade/gateways/index.md`, "Managing Gateways with
//!   Multiple Revisions"): with a single install, "any gateways defined in the CR
//!   (including the istio-ingressgateway installed in the default profile) are upgraded
//!   in place, even when the canary control plane method is used. This is undesirable
//!   because gateways are a critical component affecting application uptime. They
//!   should be upgraded last, after the new control and data plane versions are
//!   verified to be working" — the control plane is installed with profile `minimal`
//!   and the gateway moved by a later install of the new revision. The canary page
//!   itself confirms that a revision installed with the `default` profile upgrades the
//!   istioctl-installed gateway in place ("Istio gateways do not run revision-specific
//!   instances, but are instead in-place upgraded"); running two gateway Deployments
//!   side by side (`docs/setup/additional-setup/gateway`, "Canary upgrade (advanced)")
//!   is supported only for gateways installed from Kubernetes YAML with injection, not
//!   for this one. Hence: revision B is installed with `--set profile=minimal` (the
//!   gateway stays on A through the mixed phase, so old gateway → new sidecar is judged
//!   too), and the gateway moves with the last batch by `istioctl install --set
//!   revision=<B> --set profile=default`, before A is uninstalled — `istioctl uninstall
//!   --revision` prunes every Deployment of the Pilot and gateway components labelled
//!   with that revision (operator/pkg/uninstall/prune.go), and warns "You are about to
//!   remove the following gateways" (operator/cmd/mesh/uninstall.go) when one is left.
//!   The second install re-applies the same istiod-B, so its prune (operator/pkg/install
//!   install.go: owner labels of revision B) removes nothing of B.
//! - The default revision (`docs/setup/upgrade/canary`, "Default tag"): `istioctl tag
//!   set default --revision <B>` makes B answer `istio-injection=enabled` (and
//!   validation); istioctl deactivates the old un-revisioned webhooks
//!   (istioctl/pkg/tag/util.go `DeactivateIstioInjectionWebhook`). The suites of the
//!   second pass label their namespace `istio-injection=enabled`, so B is made the
//!   default before A goes. `istioctl uninstall --revision default` is accepted for an
//!   install without a revision (operator/cmd/mesh/uninstall.go treats `default`
//!   specially; its resources carry `istio.io/rev: default`); the docs' alternative for
//!   an old control plane without revision labels is `istioctl uninstall -f
//!   <its original IstioOperator> -y`.
//!
//! Longer than most files because what Istio documents stays beside the commands it
//! justifies (the notes above), and each move's commands for `--dry-run` beside the move.

use crate::cluster::{Live, istio, rollout, tools};
use crate::config::RunConfig;
use crate::deadlines;
use crate::runner::canary::{CanaryOp, Side};
use crate::runner::world::{EnvError, Phase};
use crate::wait::{self, Check};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch};

/// The label that selects the default revision for a whole namespace.
const INJECTION_LABEL: &str = "istio-injection";
/// `kubectl rollout restart` writes this pod-template annotation.
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// The two revisions of the run: (old, new).
pub fn revisions(config: &RunConfig) -> (String, String) {
    (
        istio::DEFAULT_REVISION.to_string(),
        istio::revision_name(&config.istio_version),
    )
}

fn revision_of(config: &RunConfig, side: Side) -> String {
    let (old, new) = revisions(config);
    match side {
        Side::Old => old,
        Side::New => new,
    }
}

/// The merge patch that points a workload at `revision` and restarts it.
pub fn label_patch(revision: &str, stamp: &str) -> serde_json::Value {
    serde_json::json!({"spec": {"template": {"metadata": {
        "labels": {istio::REVISION_LABEL: revision},
        "annotations": {RESTARTED_AT: stamp}
    }}}})
}

/// The commands that carry out `op`, as a person would type them (for `--dry-run`).
pub fn commands(op: &CanaryOp, config: &RunConfig) -> Vec<String> {
    let (old, new) = revisions(config);
    let to = &config.istio_version;
    let hub = &config.versions.istio.hub;
    let app = &config.app_namespace;
    let istioctl = |args: Vec<String>| format!("istioctl {}", args.join(" "));
    match op {
        CanaryOp::InstallRevision => vec![
            format!(
                "{}   (istioctl of {to}, from its verified release archive: istiod-{new} beside istiod, the gateway untouched)",
                istioctl(istio::revision_install_args(to, &new, "minimal", hub))
            ),
            format!(
                "wait for deployment {}/istiod-{new}; it must run {to}",
                istio::ISTIO_NAMESPACE
            ),
        ],
        CanaryOp::DetachNamespace => vec![format!(
            "kubectl label namespace {app} {INJECTION_LABEL}-   (it takes precedence over istio.io/rev: each workload's pod label chooses its revision)"
        )],
        CanaryOp::Label(moves) => {
            let mut lines: Vec<String> = moves
                .iter()
                .map(|(workload, side)| {
                    let revision = revision_of(config, *side);
                    format!(
                        "kubectl -n {app} patch deployment {workload} --type merge -p '{{\"spec\":{{\"template\":{{\"metadata\":{{\"labels\":{{\"{}\":\"{revision}\"}}}}}}}}}}' && kubectl -n {app} rollout restart deployment {workload}",
                        istio::REVISION_LABEL
                    )
                })
                .collect();
            lines.push(format!(
                "wait for the rollouts of {}",
                moves
                    .iter()
                    .map(|(w, _)| w.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            lines
        }
        CanaryOp::MoveGateway => vec![
            format!(
                "{}   (istioctl of {to}: the same istiod-{new}, and {} re-rendered for revision {new}, upgraded in place)",
                istioctl(istio::revision_install_args(to, &new, "default", hub)),
                istio::INGRESS_GATEWAY
            ),
            format!(
                "wait for deployment {}/{}; its proxies must run {to}",
                config.ingress_namespace,
                istio::INGRESS_GATEWAY
            ),
        ],
        CanaryOp::RemoveOld => vec![
            format!(
                "{}   (revision {new} answers istio-injection=enabled from now on)",
                istioctl(istio::tag_default_args(&new))
            ),
            format!(
                "{}   (istiod and the webhooks of the {} install)",
                istioctl(istio::uninstall_args(&old)),
                config.install_version()
            ),
            format!(
                "wait until deployment {}/{} is gone; only istiod-{new} runs, at {to}",
                istio::ISTIO_NAMESPACE,
                istio::ISTIOD
            ),
            format!(
                "kubectl label namespace {app} {INJECTION_LABEL}=enabled   (the exercise's label, now served by revision {new})"
            ),
        ],
    }
}

/// The target release's istioctl (downloaded and verified once, then cached).
async fn istioctl(config: &RunConfig) -> Result<std::path::PathBuf, EnvError> {
    let release = tools::istio(
        &config.versions,
        &config.istio_version,
        &crate::cluster::download::secure_cache_dir().map_err(EnvError::at(Phase::Tools))?,
    )
    .await
    .map_err(EnvError::at(Phase::Tools))?;
    Ok(release.istioctl)
}

async fn run_istioctl(
    live: &Live,
    config: &RunConfig,
    args: Vec<String>,
    log: &mut Vec<String>,
) -> Result<(), EnvError> {
    let bin = istioctl(config).await?;
    istio::istioctl_with(&bin, &args, &live.cluster_args)
        .await
        .map_err(EnvError::at(Phase::Upgrade))?;
    log.push(format!("istioctl {} done", args.join(" ")));
    Ok(())
}

async fn label_namespace(
    live: &Live,
    namespace: &str,
    value: Option<&str>,
    log: &mut Vec<String>,
) -> Result<(), EnvError> {
    let patch = serde_json::json!({"metadata": {"labels": {INJECTION_LABEL: value}}});
    Api::<Namespace>::all(live.client.clone())
        .patch(
            namespace,
            &crate::cluster::apply::patch_params(),
            &Patch::Merge(patch),
        )
        .await
        .map_err(|e| {
            EnvError::new(
                Phase::Upgrade,
                format!("cannot change the labels of namespace {namespace}: {e}"),
            )
        })?;
    log.push(match value {
        Some(v) => format!("namespace {namespace} labelled {INJECTION_LABEL}={v}"),
        None => format!("namespace {namespace}: label {INJECTION_LABEL} removed"),
    });
    Ok(())
}

/// The control plane must be exactly `expected` (revision, version) pairs.
async fn check_control_planes(
    live: &Live,
    expected: &[(&str, &str)],
    after: &str,
    log: &mut Vec<String>,
) -> Result<(), EnvError> {
    let planes = istio::control_planes(&live.client)
        .await
        .map_err(EnvError::at(Phase::Upgrade))?;
    let found: Vec<(String, String)> = planes
        .iter()
        .map(|p| (p.revision.clone(), p.version.clone()))
        .collect();
    let describe = |pairs: &mut dyn Iterator<Item = (String, String)>| {
        pairs
            .map(|(r, v)| format!("{v} (revision {r})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(r, v)| (r.to_string(), v.to_string()))
        .collect();
    let mut have = found.clone();
    want.sort();
    have.sort();
    if want != have {
        return Err(EnvError::new(
            Phase::Upgrade,
            format!(
                "after {after} the control plane runs {}, expected {}",
                if found.is_empty() {
                    "nothing".to_string()
                } else {
                    describe(&mut found.into_iter())
                },
                describe(&mut want.into_iter())
            ),
        ));
    }
    log.push(format!(
        "control plane: {}",
        describe(&mut found.into_iter())
    ));
    Ok(())
}

/// Carries out `op` on the cluster.
pub async fn carry_out(
    live: &Live,
    config: &RunConfig,
    op: &CanaryOp,
    log: &mut Vec<String>,
) -> Result<(), EnvError> {
    let (old, new) = revisions(config);
    let from = config.install_version().to_string();
    let to = config.istio_version.clone();
    let hub = config.versions.istio.hub.clone();
    let app = &config.app_namespace;
    let fail = EnvError::at(Phase::Upgrade);
    match op {
        CanaryOp::InstallRevision => {
            run_istioctl(
                live,
                config,
                istio::revision_install_args(&to, &new, "minimal", &hub),
                log,
            )
            .await?;
            let istiod = format!("istiod-{new}");
            rollout::wait(
                &live.client,
                istio::ISTIO_NAMESPACE,
                &istiod,
                deadlines::ROLLOUT,
            )
            .await
            .map_err(&fail)?;
            check_control_planes(
                live,
                &[(&old, &from), (&new, &to)],
                "installing the new revision",
                log,
            )
            .await
        }
        CanaryOp::DetachNamespace => label_namespace(live, app, None, log).await,
        CanaryOp::Label(moves) => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs().to_string())
                .unwrap_or_default();
            let api: Api<Deployment> = Api::namespaced(live.client.clone(), app);
            for (workload, side) in moves {
                let revision = revision_of(config, *side);
                api.patch(
                    workload,
                    &crate::cluster::apply::patch_params(),
                    &Patch::Merge(label_patch(&revision, &stamp)),
                )
                .await
                .map_err(|e| {
                    EnvError::new(
                        Phase::Upgrade,
                        format!(
                            "cannot point deployment {app}/{workload} at revision {revision}: {e}"
                        ),
                    )
                })?;
            }
            for (workload, side) in moves {
                rollout::wait(&live.client, app, workload, deadlines::ROLLOUT)
                    .await
                    .map_err(&fail)?;
                log.push(format!(
                    "{workload} restarted on revision {}",
                    revision_of(config, *side)
                ));
            }
            Ok(())
        }
        CanaryOp::MoveGateway => {
            run_istioctl(
                live,
                config,
                istio::revision_install_args(&to, &new, "default", &hub),
                log,
            )
            .await?;
            rollout::wait(
                &live.client,
                &config.ingress_namespace,
                istio::INGRESS_GATEWAY,
                deadlines::ROLLOUT,
            )
            .await
            .map_err(&fail)?;
            log.push(format!("{} rolled out", istio::INGRESS_GATEWAY));
            Ok(())
        }
        CanaryOp::RemoveOld => {
            run_istioctl(live, config, istio::tag_default_args(&new), log).await?;
            run_istioctl(live, config, istio::uninstall_args(&old), log).await?;
            let api: Api<Deployment> = Api::namespaced(live.client.clone(), istio::ISTIO_NAMESPACE);
            wait::until(deadlines::DELETE, deadlines::POLL, || async {
                match api.get_opt(istio::ISTIOD).await {
                    Ok(None) => Check::Ready(()),
                    Ok(Some(_)) => Check::NotYet(format!(
                        "deployment {}/{} still exists",
                        istio::ISTIO_NAMESPACE,
                        istio::ISTIOD
                    )),
                    Err(e) => Check::NotYet(format!("cannot read deployment istiod: {e}")),
                }
            })
            .await
            .map_err(|e| {
                EnvError::new(
                    Phase::Upgrade,
                    format!(
                        "`istioctl uninstall --revision {old}` left the old control plane: {e}"
                    ),
                )
            })?;
            log.push(format!(
                "{}/{} (revision {old}) is gone",
                istio::ISTIO_NAMESPACE,
                istio::ISTIOD
            ));
            check_control_planes(live, &[(&new, &to)], "uninstalling the old revision", log)
                .await?;
            label_namespace(live, app, Some("enabled"), log).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RunConfig {
        let cli = crate::cli::Cli::parse_from_args([
            "harness",
            "--upgrade-from",
            "1.30.3",
            "--istio-version",
            "1.31.2",
            "--upgrade-mode",
            "canary",
        ])
        .unwrap();
        RunConfig::from_cli(&cli).unwrap()
    }

    #[test]
    fn the_commands_are_the_documented_ones() {
        let c = config();
        let all = |op: CanaryOp| commands(&op, &c).join("\n");
        let install = all(CanaryOp::InstallRevision);
        assert!(
            install.starts_with("istioctl install -y --set profile=minimal --set revision=1-31-2 --set hub=docker.io/istio --set tag=1.31.2"),
            "{install}"
        );
        assert!(
            all(CanaryOp::DetachNamespace)
                .starts_with("kubectl label namespace sentences istio-injection-")
        );
        let label = all(CanaryOp::Label(vec![
            ("age".into(), Side::New),
            ("name".into(), Side::Old),
        ]));
        assert!(
            label.contains(r#"patch deployment age --type merge -p '{"spec":{"template":{"metadata":{"labels":{"istio.io/rev":"1-31-2"}}}}}'"#)
                && label.contains(r#"patch deployment name --type merge -p '{"spec":{"template":{"metadata":{"labels":{"istio.io/rev":"default"}}}}}'"#),
            "{label}"
        );
        let gateway = all(CanaryOp::MoveGateway);
        assert!(
            gateway.starts_with("istioctl install -y --set profile=default --set revision=1-31-2"),
            "{gateway}"
        );
        let remove = all(CanaryOp::RemoveOld);
        assert!(
            remove.contains("istioctl tag set default --revision 1-31-2 --overwrite -y")
                && remove.contains("istioctl uninstall --revision default -y")
                && remove.contains("kubectl label namespace sentences istio-injection=enabled"),
            "{remove}"
        );
        assert_eq!(
            label_patch("1-31-2", "1"),
            serde_json::json!({"spec": {"template": {"metadata": {
                "labels": {"istio.io/rev": "1-31-2"},
                "annotations": {"kubectl.kubernetes.io/restartedAt": "1"}}}}})
        );
    }
}
