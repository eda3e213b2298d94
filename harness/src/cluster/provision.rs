//! Setup of a real run: preflight, the kind cluster (created, reused or none), Istio at
//! the requested version, the Prometheus addon (with a short scrape interval), and the
//! port-forwards to the ingress gateway and Prometheus.
//!
//! What does not depend on each other runs at the same time: the Istio release is
//! downloaded while kind creates the cluster; the app's and Istio's images are pulled
//! onto the kind node while istioctl installs; the addon is applied while istiod rolls
//! out; istiod, the gateway and Prometheus are waited for together.
//!
//! Longer than most files because setup is one sequence over shared state (clients,
//! the release, the applier, background tasks): split, it would pass all of it around.
//! The `--dry-run` description of this sequence is in `provision_plan.rs`.

use super::Live;
use super::apply::{Applier, parse_documents};
use super::connect::{self, Clients};
use super::kind::OwnedCluster;
use super::portforward::{self, Pick};
use super::{istio, kind, preflight, rollout, tools, workloads};
use crate::config::RunConfig;
use crate::deadlines::ISTIO_READY as READY_DEADLINE;
use crate::probe::http::Target;
use crate::progress::Progress;
use crate::runner::record::{RunProperties, Timeline};
use crate::runner::world::{EnvError, Phase};
use crate::telemetry::addon;
use kube::api::DynamicObject;
use std::sync::{Arc, Mutex};

fn env(phase: Phase) -> impl Fn(String) -> EnvError {
    EnvError::at(phase)
}

fn set(properties: &Mutex<RunProperties>, f: impl FnOnce(&mut RunProperties)) {
    f(&mut properties.lock().unwrap_or_else(|p| p.into_inner()));
}

/// The images the run will need on the node: the app's and Istio's of `version`.
pub fn images_to_prepull(config: &RunConfig, version: &str) -> Vec<String> {
    let hub = &config.versions.istio.hub;
    vec![
        config.image.clone(),
        format!("{hub}/proxyv2:{version}"),
        format!("{hub}/pilot:{version}"),
    ]
}

/// Why a cluster that already runs another Istio cannot be used, and what to do.
fn refuse_other_istio(config: &RunConfig, found: &str, requested: &str, uses_kind: bool) -> String {
    let fresh = if uses_kind {
        format!(
            "delete it (kind delete cluster --name {})",
            config.cluster_name
        )
    } else {
        "use a cluster without Istio".to_string()
    };
    match &config.upgrade_from {
        Some(_) if found == config.istio_version => format!(
            "the cluster already runs Istio {found}, the version this run upgrades to: {fresh} so the run can install {requested} first, or run without --upgrade-from"
        ),
        Some(_) => format!(
            "the cluster runs Istio {found}, the upgrade run starts from {requested}: {fresh}, or pass --upgrade-from {found}"
        ),
        None => format!(
            "the cluster runs Istio {found}, the run asks for {requested}: {fresh}, or run with --istio-version {found}"
        ),
    }
}

/// Preflight and provisioning. `created` is called as soon as the harness has created a
/// kind cluster, so it is deleted (or reported) even if a later part of setup fails.
pub async fn setup(
    config: &RunConfig,
    progress: &Progress,
    properties: &Mutex<RunProperties>,
    created: &(dyn Fn(OwnedCluster) + Send + Sync),
    timeline: &Timeline,
) -> Result<Live, EnvError> {
    let uses_kind = config.kubeconfig.is_none() && config.context.is_none();
    // Checked where a download needs it: a run that downloads nothing needs none.
    let cache = super::download::secure_cache_dir();
    let requested = config.install_version().to_string();
    // The release (istioctl and the addon): downloaded in the background while kind
    // creates a cluster (which certainly needs Istio), else only when needed.
    let download = || {
        let versions = config.versions.clone();
        let version = requested.clone();
        let cache = cache.clone();
        let timeline = timeline.clone();
        tokio::spawn(async move {
            timeline
                .time("download the Istio release", Some("cluster"), async move {
                    tools::istio(&versions, &version, &cache?).await
                })
                .await
        })
    };
    let mut early_download = AbortOnDrop(None);
    let mut kind_name = None;
    let kubeconfig = if uses_kind {
        timeline
            .time(
                "preflight: Docker",
                None,
                preflight::docker_reachable(&preflight::docker_endpoint()),
            )
            .await
            .map_err(env(Phase::Preflight))?;
        let (kind_bin, kind_note) = timeline
            .time("tools: kind", None, async {
                tools::kind(&config.versions, cache.as_ref().map_err(Clone::clone)?).await
            })
            .await
            .map_err(env(Phase::Tools))?;
        if let Some(note) = kind_note {
            progress.line(&note);
        }
        let kubeconfig = config.reports_dir.join("kubeconfig");
        let name = &config.cluster_name;
        if kind::exists(&kind_bin, name)
            .await
            .map_err(env(Phase::Provision))?
        {
            progress.line(&format!(
                "reusing kind cluster `{name}` (not created by this run: never deleted by it)"
            ));
            let image = kind::node_image(name)
                .await
                .unwrap_or_else(|| "unknown".into());
            set(properties, |p| p.kind_node_image = image);
        } else {
            early_download = AbortOnDrop(Some(download()));
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
            // Ours from the moment kind starts making it: an interruption during the
            // create, or a create that fails half-way, must still delete it.
            created(OwnedCluster {
                kind: kind_bin.clone(),
                name: name.clone(),
            });
            timeline
                .time(
                    "create the kind cluster",
                    Some("cluster"),
                    kind::create(
                        &kind_bin,
                        name,
                        &config.versions.kind.node_image,
                        &kind_config,
                        &kubeconfig,
                    ),
                )
                .await
                .map_err(env(Phase::Provision))?;
            set(properties, |p| {
                p.kind_node_image = config.versions.kind.node_image.clone()
            });
        }
        kind::export_kubeconfig(&kind_bin, name, &kubeconfig)
            .await
            .map_err(env(Phase::Provision))?;
        set(properties, |p| p.cluster_name = name.clone());
        kind_name = Some(name.clone());
        Some(kubeconfig)
    } else {
        let name = config
            .context
            .clone()
            .unwrap_or_else(|| "current context".into());
        set(properties, |p| p.cluster_name = name);
        config.kubeconfig.clone()
    };

    let clients: Clients = connect::clients(kubeconfig.as_deref(), config.context.as_deref())
        .await
        .map_err(env(Phase::Preflight))?;
    let client = clients.client.clone();
    let minimum = parse_minimum(&config.versions.kubernetes.minimum);
    let server = timeline
        .time(
            "preflight: API server",
            None,
            connect::check_server(&clients, minimum),
        )
        .await
        .map_err(env(Phase::Preflight))?;
    set(properties, |p| {
        p.kubernetes_version = server.git_version.clone()
    });
    let cluster_args = istio::cluster_args(kubeconfig.as_deref(), config.context.as_deref());

    let installed = istio::installed_version(&client)
        .await
        .map_err(env(Phase::Istio))?;
    // An existing cluster run without --istio-version judges the Istio it runs.
    let requested = match &installed {
        Some(found) if config.istio_as_found && found != &requested => {
            let note = format!(
                "Istio {found} found on the cluster: judged as found (no --istio-version given)"
            );
            progress.line(&note);
            set(properties, |p| p.notes.push(note));
            found.clone()
        }
        _ => requested.clone(),
    };
    if let Some(found) = &installed
        && found != &requested
    {
        return Err(EnvError::new(
            Phase::Istio,
            refuse_other_istio(config, found, &requested, uses_kind),
        ));
    }
    // The cluster's own Prometheus, in any namespace; the addon only where there is
    // none, and only into a kind cluster: never into a cluster the harness did not create.
    let found_prometheus = match &config.prometheus_url {
        Some(_) => None,
        None => super::prometheus_found::find(&client)
            .await
            .map_err(env(Phase::Prometheus))?,
    };
    let wants_addon = config.prometheus_url.is_none() && found_prometheus.is_none();
    if wants_addon && !uses_kind {
        return Err(EnvError::new(
            Phase::Prometheus,
            "no Prometheus on this cluster (looked in every namespace for a Service labelled app.kubernetes.io/name=prometheus with component server, or operated-prometheus=true, or named prometheus, prometheus-server or prometheus-operated), and the harness installs Istio's Prometheus addon only into a kind cluster of its own; pass --prometheus-url URL of the Prometheus that scrapes the mesh, or install samples/addons/prometheus.yaml of your Istio release",
        ));
    }
    let addon_service = |f: &super::prometheus_found::Found| {
        f.namespace == istio::ISTIO_NAMESPACE && f.service == istio::PROMETHEUS
    };
    if let Some(found) = found_prometheus.as_ref().filter(|f| !addon_service(f)) {
        let note = format!(
            "Prometheus found on the cluster: {} (its scrape interval is read back)",
            found.describe()
        );
        progress.line(&note);
        set(properties, |p| p.notes.push(note));
    }
    let release = if installed.is_none() || wants_addon {
        let _wait = progress.wait(&format!("downloading the Istio {requested} release"));
        let task = early_download.0.take().unwrap_or_else(download);
        Some(
            task.await
                .map_err(|e| EnvError::new(Phase::Tools, format!("the download task failed: {e}")))?
                .map_err(env(Phase::Tools))?,
        )
    } else {
        None
    };
    drop(early_download);
    // Images onto the node while Istio installs (best effort, in the background).
    let prepull = kind_name.map(|name| {
        let images = images_to_prepull(config, &requested);
        let timeline = timeline.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            for image in images {
                if let Err(e) = kind::prepull(&name, &image).await {
                    tracing::debug!("pre-pulling {image} failed (the kubelet pulls it later): {e}");
                }
            }
            timeline.record(
                "pre-pull images onto the node",
                Some(crate::runner::record::BACKGROUND),
                started.elapsed(),
            );
        })
    });
    let mut applier = Applier::new(client.clone());
    let install = async {
        match (&installed, &release) {
            (Some(found), _) => {
                progress.line(&format!("Istio {found} already installed"));
                Ok(())
            }
            (None, Some(r)) => {
                let _wait = progress.wait(&format!("installing Istio {requested}"));
                timeline
                    .time(
                        "istioctl install",
                        Some("install"),
                        istio::install(
                            &r.istioctl,
                            &requested,
                            &config.versions.istio.hub,
                            &cluster_args,
                        ),
                    )
                    .await
                    .map_err(env(Phase::Istio))
            }
            (None, None) => Err(EnvError::new(
                Phase::Istio,
                "no release to install from; this is a harness bug",
            )),
        }
    };
    let addon = async {
        let Some(r) = release.as_ref().filter(|_| wants_addon) else {
            return Ok(());
        };
        timeline
            .time(
                "apply the Prometheus addon",
                Some("install"),
                apply_addon(&mut applier, &r.prometheus_addon, config),
            )
            .await
    };
    let (installed_now, addon_applied) = tokio::join!(install, addon);
    installed_now?;
    addon_applied?;
    set(properties, |p| {
        p.istio_version = requested.clone();
        p.istio_installed = Some(installed.clone().unwrap_or_else(|| requested.clone()));
    });
    {
        let _wait = progress.wait("waiting for istiod, the ingress gateway and Prometheus");
        // Every control plane: a cluster kept after a canary run has only `istiod-<rev>`.
        let istiod = async {
            let names = match istio::control_planes(&client).await {
                Ok(planes) if !planes.is_empty() => {
                    planes.into_iter().map(|p| p.deployment).collect()
                }
                _ => vec![istio::ISTIOD.to_string()],
            };
            for name in names {
                rollout::wait(&client, istio::ISTIO_NAMESPACE, &name, READY_DEADLINE).await?;
            }
            Ok::<(), String>(())
        };
        let gateway = rollout::wait(
            &client,
            &config.ingress_namespace,
            istio::INGRESS_GATEWAY,
            READY_DEADLINE,
        );
        let prometheus = async {
            if config.prometheus_url.is_some() {
                return Ok(());
            }
            match found_prometheus.as_ref().filter(|f| !addon_service(f)) {
                // Whatever runs it (a Deployment, the operator's StatefulSet): a ready pod.
                Some(found) => {
                    crate::wait::until(READY_DEADLINE, crate::deadlines::POLL, || async {
                        match portforward::ready_pod(&client, &found.namespace, &found.selector)
                            .await
                        {
                            Ok(_) => crate::wait::Check::Ready(()),
                            Err(e) => crate::wait::Check::NotYet(e),
                        }
                    })
                    .await
                    .map_err(|e| format!("Prometheus {}: {e}", found.describe()))
                }
                None => rollout::wait(
                    &client,
                    istio::ISTIO_NAMESPACE,
                    istio::PROMETHEUS,
                    READY_DEADLINE,
                )
                .await
                .map(|_| ()),
            }
        };
        let (istiod, gateway, prometheus) = timeline
            .time(
                "istiod, the ingress gateway and Prometheus ready",
                None,
                async { tokio::join!(istiod, gateway, prometheus) },
            )
            .await;
        istiod.map_err(env(Phase::Istio))?;
        gateway.map_err(|e| {
            EnvError::new(Phase::Istio, format!("{e} (is --ingress-namespace right?)"))
        })?;
        prometheus.map_err(env(Phase::Prometheus))?;
    }
    // O7–O9 are judged on the gateway's Envoy: it must run the version the report names
    // (istiod and the gateway are upgraded separately with Helm, or by a half-done run).
    let gateway_proxies = workloads::proxy_images(
        &client,
        &config.ingress_namespace,
        Some(istio::INGRESS_GATEWAY_SELECTOR),
    )
    .await
    .map_err(env(Phase::Istio))?;
    let other: Vec<String> = gateway_proxies
        .iter()
        .filter(|(_, image)| istio::image_tag(image) != Some(requested.as_str()))
        .map(|(pod, image)| format!("{pod} runs {image}"))
        .collect();
    if !other.is_empty() {
        return Err(EnvError::new(
            Phase::Istio,
            format!(
                "istiod runs {requested} but the ingress gateway does not ({}): the ingress steps would be judged on another Envoy than the report names; finish upgrading the gateway, or use a cluster where both run one version",
                other.join(", ")
            ),
        ));
    }

    // Reaching the gateway and Prometheus, through the client without read timeouts.
    let forwards_started = std::time::Instant::now();
    let streams = clients.streams.clone();
    let mut forwards = Vec::new();
    let gateway_selector =
        workloads::selector_of(&client, &config.ingress_namespace, istio::INGRESS_GATEWAY)
            .await
            .map_err(env(Phase::PortForward))?;
    let forward_gateway = |service_port: i32| {
        let client = client.clone();
        let streams = streams.clone();
        let namespace = config.ingress_namespace.clone();
        let selector = gateway_selector.clone();
        async move {
            let pod_port =
                portforward::target_port(&client, &namespace, istio::INGRESS_GATEWAY, service_port)
                    .await?;
            portforward::start(streams, &namespace, &selector, pod_port, Pick::InTurn).await
        }
    };
    // The address given on the command line, else a port-forward to the gateway's pods.
    let mut reach_gateway = async |given: Option<&crate::reference::HostPort>,
                                   service_port: i32,
                                   what: &str|
           -> Result<Target, EnvError> {
        if let Some(given) = given {
            let address = given.resolve().await.map_err(env(Phase::PortForward))?;
            return Ok(Target::direct(address));
        }
        let f = forward_gateway(service_port)
            .await
            .map_err(env(Phase::PortForward))?;
        progress.line(&format!("ingress gateway {what}: {}", f.description));
        let target = Target {
            address: f.local,
            health: Some(Arc::clone(&f.health)),
        };
        forwards.push(f);
        Ok(target)
    };
    let gateway_http = reach_gateway(config.ingress_address.as_ref(), 80, "HTTP").await?;
    let gateway_tls = reach_gateway(config.ingress_tls_address.as_ref(), 443, "HTTPS").await?;
    let gateway_tls_pods = match config.ingress_tls_address {
        Some(_) => None,
        None => Some(portforward::Workload {
            client: streams.clone(),
            namespace: config.ingress_namespace.clone(),
            selector: gateway_selector.clone(),
            pod_port: portforward::target_port(
                &client,
                &config.ingress_namespace,
                istio::INGRESS_GATEWAY,
                443,
            )
            .await
            .map_err(env(Phase::PortForward))?,
        }),
    };
    let prometheus_url = match &config.prometheus_url {
        Some(url) => url.clone(),
        None => {
            let (namespace, selector, pod_port) = match &found_prometheus {
                Some(found) => (
                    found.namespace.clone(),
                    found.selector.clone(),
                    found.pod_port,
                ),
                None => (
                    istio::ISTIO_NAMESPACE.to_string(),
                    workloads::selector_of(&client, istio::ISTIO_NAMESPACE, istio::PROMETHEUS)
                        .await
                        .map_err(env(Phase::PortForward))?,
                    9090,
                ),
            };
            let f = portforward::start(
                streams.clone(),
                &namespace,
                &selector,
                pod_port,
                Pick::First,
            )
            .await
            .map_err(env(Phase::PortForward))?;
            progress.line(&format!("Prometheus: {}", f.description));
            let url = format!("http://{}", f.local);
            forwards.push(f);
            url
        }
    };
    timeline.record("port-forwards", None, forwards_started.elapsed());
    let mut live = Live::direct(
        client,
        gateway_http.address,
        gateway_tls.address,
        &prometheus_url,
    );
    live.gateway_http = gateway_http;
    live.gateway_tls = gateway_tls;
    live.gateway_tls_pods = gateway_tls_pods;
    live.applier = applier;
    live.streams = streams;
    live.cluster_args = cluster_args;
    live.forwards = forwards;
    live.background = prepull.into_iter().collect();
    Ok(live)
}

/// A background task that stops when setup no longer needs it (or returns early).
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// The addon of the release with the run's scrape interval, applied server-side.
async fn apply_addon(
    applier: &mut Applier,
    path: &std::path::Path,
    config: &RunConfig,
) -> Result<(), EnvError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        EnvError::new(
            Phase::Prometheus,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let mut documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| EnvError::new(Phase::Prometheus, format!("{}: {e}", path.display())))?;
    documents.retain(|d| !d.is_null());
    addon::set_scrape_interval(&mut documents, config.scrape_interval)
        .map_err(env(Phase::Prometheus))?;
    // istioctl creates istio-system; the addon may be applied before it finished.
    let namespace: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": istio::ISTIO_NAMESPACE}
    }))
    .map_err(|e| EnvError::new(Phase::Prometheus, e.to_string()))?;
    applier
        .ensure(&namespace)
        .await
        .map_err(env(Phase::Prometheus))?;
    let text = documents
        .iter()
        .map(|d| serde_saphyr::to_string(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n");
    for obj in parse_documents(&text).map_err(env(Phase::Prometheus))? {
        applier.apply(&obj).await.map_err(env(Phase::Prometheus))?;
    }
    Ok(())
}

fn parse_minimum(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(1), parts.next().unwrap_or(33))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> RunConfig {
        let mut argv = vec!["harness"];
        argv.extend_from_slice(args);
        RunConfig::from_cli(&crate::cli::Cli::parse_from_args(argv).unwrap()).unwrap()
    }

    #[test]
    fn refusals_give_advice_that_works_and_never_a_flag_already_set() {
        // An upgrade run on a cluster already at the target.
        let c = config(&["--upgrade-from", "1.30.5", "--istio-version", "1.31.2"]);
        let text = refuse_other_istio(&c, "1.31.2", "1.30.5", true);
        assert!(
            text.contains("already runs Istio 1.31.2, the version this run upgrades to")
                && text.contains("kind delete cluster --name istio-mtls")
                && text.contains("run without --upgrade-from"),
            "{text}"
        );
        assert!(!text.contains("--istio-version 1.31.2"), "{text}");
        // An upgrade run on a cluster at a third version.
        let text = refuse_other_istio(&c, "1.29.1", "1.30.5", false);
        assert!(
            text.contains("use a cluster without Istio") && text.contains("--upgrade-from 1.29.1"),
            "{text}"
        );
        // A plain run.
        let c = config(&["--istio-version", "1.31.2"]);
        let text = refuse_other_istio(&c, "1.30.5", "1.31.2", true);
        assert!(
            text.ends_with("or run with --istio-version 1.30.5"),
            "{text}"
        );
    }
}
