//! [`ClusterWorld`]: the runner's world backed by a real cluster.

use super::apply::{describe, parse_documents};
use super::provision::{self, Live};
use super::{istio, judge, kind, workloads};
use crate::config::{HOST, RunConfig};
use crate::pki::Pki;
use crate::probe::expect::Judgement;
use crate::progress::Progress;
use crate::runner::record::{Evidence, ExpectationRecord, RunProperties, Verdict};
use crate::runner::world::{EnvError, World};
use crate::suite::model::defaults;
use crate::suite::template::{self, Variables};
use crate::suite::{Action, Expectation, Step, Suite};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
use std::path::PathBuf;
use std::time::Duration;

const DELETE_DEADLINE: Duration = Duration::from_secs(120);

pub struct ClusterWorld {
    config: RunConfig,
    runtime: tokio::runtime::Handle,
    progress: Progress,
    properties: RunProperties,
    live: Option<Live>,
    variables: Variables,
    pki: Option<Pki>,
}

impl ClusterWorld {
    pub fn new(config: RunConfig, runtime: tokio::runtime::Handle, progress: Progress) -> Self {
        let properties = RunProperties {
            istio_version: config.istio_version.clone(),
            ..RunProperties::default()
        };
        let variables = config.variables();
        ClusterWorld {
            config,
            runtime,
            progress,
            properties,
            live: None,
            variables,
            pki: None,
        }
    }

    /// A world on a cluster that is already reached (what `setup` would have found):
    /// for embedding the harness, and for tests that drive the world against stand-ins.
    pub fn from_live(
        config: RunConfig,
        runtime: tokio::runtime::Handle,
        progress: Progress,
        live: Live,
    ) -> Self {
        let mut world = ClusterWorld::new(config, runtime, progress);
        world.live = Some(live);
        world
    }

    fn live(&mut self) -> Result<&mut Live, EnvError> {
        self.live.as_mut().ok_or_else(|| {
            EnvError::new("run", "the cluster was not set up; this is a harness bug")
        })
    }

    /// Renders a manifest of the suite. Deletes only need names, so PKI variables that
    /// have no value yet are filled with a placeholder for them.
    fn render(&self, suite: &Suite, name: &str, for_delete: bool) -> Result<String, EnvError> {
        let manifest = suite
            .manifests
            .get(name)
            .ok_or_else(|| EnvError::new("render", format!("manifest `{name}` is not loaded")))?;
        let mut variables = self.variables.clone();
        if for_delete {
            for v in template::PKI_VARIABLES {
                if variables.get(v).is_none() {
                    variables.set(v, "");
                }
            }
        }
        template::render(&manifest.template, &variables)
            .map(|r| r.text)
            .map_err(|e| {
                EnvError::new(
                    "render",
                    format!("{}:{}:{}: {}", manifest.path, e.line, e.column, e.message),
                )
            })
    }
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

/// `istioctl upgrade` to `version`, then restart the app and check every proxy.
async fn upgrade(
    live: &Live,
    config: &RunConfig,
    version: &str,
    log: &mut Vec<String>,
) -> Result<(), EnvError> {
    let env = |phase: &'static str| move |m: String| EnvError::new(phase, m);
    let release = super::tools::istio(&config.versions, version, &super::download::cache_dir())
        .await
        .map_err(env("tools"))?;
    istio::upgrade(
        &release.istioctl,
        version,
        &config.versions.istio.hub,
        &live.cluster_args,
    )
    .await
    .map_err(env("upgrade"))?;
    log.push(format!("istioctl upgrade to {version} done"));
    let deadline = defaults::rollout_deadline().0;
    workloads::wait_rollout(
        &live.client,
        istio::ISTIO_NAMESPACE,
        istio::ISTIOD,
        deadline,
    )
    .await
    .map_err(env("upgrade"))?;
    workloads::wait_rollout(
        &live.client,
        &config.ingress_namespace,
        istio::INGRESS_GATEWAY,
        deadline,
    )
    .await
    .map_err(env("upgrade"))?;
    match istio::installed_version(&live.client)
        .await
        .map_err(env("upgrade"))?
    {
        Some(v) if v == version => log.push(format!("istiod runs {v}")),
        other => {
            return Err(EnvError::new(
                "upgrade",
                format!("istiod runs {other:?} after the upgrade, expected {version}"),
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
        .map_err(env("upgrade"))?;
    for name in &names {
        workloads::restart(&live.client, &config.app_namespace, name, &stamp)
            .await
            .map_err(env("upgrade"))?;
    }
    for name in &names {
        workloads::wait_rollout(&live.client, &config.app_namespace, name, deadline)
            .await
            .map_err(env("upgrade"))?;
    }
    log.push(format!(
        "restarted {} for the new proxies",
        names.join(", ")
    ));
    let mut proxies = workloads::proxy_images(&live.client, &config.app_namespace, None)
        .await
        .map_err(env("upgrade"))?;
    proxies.extend(
        workloads::proxy_images(
            &live.client,
            &config.ingress_namespace,
            Some("istio=ingressgateway"),
        )
        .await
        .map_err(env("upgrade"))?,
    );
    let stale: Vec<String> = proxies
        .iter()
        .filter(|(_, image)| istio::image_tag(image) != Some(version))
        .map(|(pod, image)| format!("{pod} runs {image}"))
        .collect();
    if !stale.is_empty() {
        return Err(EnvError::new(
            "upgrade",
            format!("the data plane is not on {version}: {}", stale.join(", ")),
        ));
    }
    log.push(format!(
        "data plane on {version}: {} proxies checked",
        proxies.len()
    ));
    Ok(())
}

fn record(description: String, judgement: Judgement) -> ExpectationRecord {
    ExpectationRecord {
        description,
        verdict: judgement.verdict,
        evidence: judgement.evidence,
        elapsed: judgement.elapsed,
    }
}

impl World for ClusterWorld {
    fn setup(&mut self) -> Result<(), EnvError> {
        let live = self.runtime.block_on(provision::setup(
            &self.config,
            &self.progress,
            &mut self.properties,
        ))?;
        self.live = Some(live);
        Ok(())
    }

    fn properties(&self) -> RunProperties {
        self.properties.clone()
    }

    fn act(
        &mut self,
        suite: &Suite,
        action: &Action,
        log: &mut Vec<String>,
    ) -> Result<(), EnvError> {
        let runtime = self.runtime.clone();
        match action {
            Action::Apply(list) | Action::Ensure(list) => {
                let ensure = matches!(action, Action::Ensure(_));
                for name in list {
                    let text = self.render(suite, &name.value, false)?;
                    let objects = parse_documents(&text)
                        .map_err(|e| EnvError::new("apply", format!("{}: {e}", name.value)))?;
                    let live = self.live()?;
                    for obj in &objects {
                        if ensure {
                            let created = runtime
                                .block_on(live.applier.ensure(obj))
                                .map_err(|e| EnvError::new("apply", e))?;
                            log.push(format!(
                                "{} {}",
                                if created { "created" } else { "exists:" },
                                describe(obj)
                            ));
                        } else {
                            runtime
                                .block_on(live.applier.apply(obj))
                                .map_err(|e| EnvError::new("apply", e))?;
                            log.push(format!("applied {}", describe(obj)));
                        }
                    }
                }
            }
            Action::Delete(list) => {
                for name in list {
                    let text = self.render(suite, &name.value, true)?;
                    let objects = parse_documents(&text)
                        .map_err(|e| EnvError::new("delete", format!("{}: {e}", name.value)))?;
                    let live = self.live()?;
                    for obj in objects.iter().rev() {
                        runtime
                            .block_on(live.applier.delete_and_wait(obj, DELETE_DEADLINE))
                            .map_err(|e| EnvError::new("delete", e))?;
                        log.push(format!("deleted {}", describe(obj)));
                    }
                }
            }
            Action::Inject(inject) => {
                let namespace = self.config.app_namespace.clone();
                let live = self.live()?;
                for w in &inject.workloads {
                    runtime
                        .block_on(workloads::set_injection(
                            &live.client,
                            &namespace,
                            &w.value,
                            inject.sidecar,
                        ))
                        .map_err(|e| EnvError::new("inject", e))?;
                }
                let _wait = self.progress.wait("waiting for the rollouts");
                let live = self.live()?;
                for w in &inject.workloads {
                    let rollout = runtime
                        .block_on(workloads::wait_rollout(
                            &live.client,
                            &namespace,
                            &w.value,
                            defaults::rollout_deadline().0,
                        ))
                        .map_err(|e| EnvError::new("rollout", e))?;
                    log.push(format!(
                        "{}: revision {} rolled out in {:.1} s; serving pods: {}",
                        w.value,
                        rollout.revision,
                        rollout.elapsed.as_secs_f64(),
                        rollout.pods.join(", ")
                    ));
                }
            }
            Action::IssuePki(pki_action) => {
                let mut pki = Pki::issue(HOST).map_err(|e| EnvError::new("pki", e))?;
                pki.write(&self.config.pki_dir())
                    .map_err(|e| EnvError::new("pki", e))?;
                for (name, value) in pki.template_values() {
                    self.variables.set(name, value);
                }
                log.push(format!(
                    "issued the run's PKI into {}",
                    self.config.pki_dir().display()
                ));
                self.pki = Some(pki);
                let text = self.render(suite, &pki_action.secret.value, false)?;
                let objects = parse_documents(&text).map_err(|e| EnvError::new("apply", e))?;
                let live = self.live()?;
                for obj in &objects {
                    runtime
                        .block_on(live.applier.apply(obj))
                        .map_err(|e| EnvError::new("apply", e))?;
                    // The Secret's content is never logged: only what it is.
                    log.push(format!("applied {}", describe(obj)));
                }
            }
        }
        Ok(())
    }

    fn judge(
        &mut self,
        suite: &Suite,
        _step: &Step,
        expectation: &Expectation,
    ) -> ExpectationRecord {
        let description = expectation.to_string();
        let Some(live) = self.live.as_ref() else {
            return ExpectationRecord {
                description,
                verdict: Verdict::Errored,
                evidence: Evidence::new("the cluster was not set up"),
                elapsed: Duration::ZERO,
            };
        };
        let _wait = self.progress.wait(&description);
        let config = &self.config;
        let judgement = self.runtime.block_on(async {
            match expectation {
                Expectation::Sidecars(e) => {
                    judge::sidecars(&live.client, &config.app_namespace, e).await
                }
                Expectation::Flows(e) => {
                    judge::consecutive(
                        live,
                        crate::suite::model::ResultClass::Ok,
                        e.consecutive,
                        e.deadline.0,
                    )
                    .await
                }
                Expectation::Fails(e) => {
                    judge::consecutive(live, e.class.value, e.consecutive, e.deadline.0).await
                }
                Expectation::Holds(e) => {
                    judge::holds(live, e.class, e.window.0, e.min_requests).await
                }
                Expectation::TlsAccepts(e) => judge::tls(live, self.pki.as_ref(), e, true).await,
                Expectation::TlsRejects(e) => judge::tls(live, self.pki.as_ref(), e, false).await,
                Expectation::Mtls(e) => judge::mtls(live, config, suite, e).await,
                Expectation::ProxyConfig(e) => judge::proxy_config(live, config, e).await,
            }
        });
        record(description, judgement)
    }

    fn upgrade(&mut self, version: &str, log: &mut Vec<String>) -> Result<(), EnvError> {
        let config = self.config.clone();
        let progress = self.progress.clone();
        let runtime = self.runtime.clone();
        let live = self.live()?;
        let _wait = progress.wait(&format!("upgrading Istio to {version}"));
        runtime.block_on(upgrade(live, &config, version, log))?;
        self.properties.istio_version = format!("{} → {version}", config.install_version());
        Ok(())
    }

    fn diagnostics(&mut self, suite: &Suite, step: &Step) -> Option<PathBuf> {
        let live = self.live.as_ref()?;
        let dir = self.config.reports_dir.join("diagnostics").join(format!(
            "{}-{}",
            suite.name,
            step.slug()
        ));
        let kind = live
            .kind
            .as_ref()
            .map(|k| (k.clone(), self.config.cluster_name.clone()));
        let report = self.runtime.block_on(super::diagnostics::collect(
            &live.client,
            &self.config,
            suite,
            &dir,
            kind,
        ));
        match report {
            Ok(()) => Some(dir),
            Err(e) => {
                self.progress
                    .line(&format!("diagnostics for {}: {e}", step.trial_name()));
                Some(dir)
            }
        }
    }

    fn finish(&mut self) -> Result<(), EnvError> {
        let Some(live) = self.live.take() else {
            return Ok(());
        };
        let mut first_error = None;
        if !self.config.keep {
            let namespaces: Api<Namespace> = Api::all(live.client.clone());
            let deleted = self.runtime.block_on(
                namespaces.delete(&self.config.app_namespace, &DeleteParams::background()),
            );
            match deleted {
                Ok(_) => self
                    .progress
                    .line(&format!("deleted namespace {}", self.config.app_namespace)),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    first_error.get_or_insert(EnvError::new(
                        "cleanup",
                        format!("cannot delete namespace {}: {e}", self.config.app_namespace),
                    ));
                }
            }
        }
        if live.owns_cluster
            && let Some(kind_bin) = &live.kind
        {
            let name = &self.config.cluster_name;
            if self.config.keep_cluster {
                self.progress.line(&format!(
                    "kept kind cluster `{name}` (--keep-cluster); kubeconfig: {}",
                    self.config.reports_dir.join("kubeconfig").display()
                ));
            } else {
                let _wait = self
                    .progress
                    .wait(&format!("deleting kind cluster `{name}`"));
                if let Err(e) = self.runtime.block_on(kind::delete(kind_bin, name)) {
                    first_error.get_or_insert(EnvError::new("cleanup", e));
                }
            }
        }
        drop(live);
        first_error.map_or(Ok(()), Err)
    }
}
