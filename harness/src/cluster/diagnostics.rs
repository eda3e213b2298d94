//! The diagnostics bundle of a step that did not pass, under
//! `<reports-dir>/diagnostics/<suite>-<step>/`: pods, events, logs (app containers and
//! `istio-proxy`, istiod, the ingress gateway), the Istio resources of the namespaces,
//! the calling sidecars' cluster config, istiod's account of what each proxy acked
//! (`/debug/syncz` of every istiod), and `kind export logs` when the harness owns the
//! cluster. Collection is best effort under its own deadline: what fails is listed
//! in `errors.txt`, and nothing here changes the step's verdict.

use super::envoy_admin;
use super::istio::{INGRESS_GATEWAY, ISTIO_NAMESPACE, ISTIOD};
use crate::config::RunConfig;
use crate::suite::Suite;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, LogParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LOG_LINES: i64 = 500;

/// The Istio kinds whose objects the bundle keeps.
pub const ISTIO_KINDS: [(&str, &str, &str); 4] = [
    ("security.istio.io", "v1", "PeerAuthentication"),
    ("networking.istio.io", "v1", "DestinationRule"),
    ("networking.istio.io", "v1", "VirtualService"),
    ("networking.istio.io", "v1", "Gateway"),
];

struct Bundle {
    dir: PathBuf,
    errors: Vec<String>,
}

impl Bundle {
    fn write(&mut self, name: &str, text: &str) {
        if let Err(e) =
            crate::report::write_atomically(&self.dir.join(name), text.as_bytes(), false)
        {
            self.errors.push(e);
        }
    }

    fn note<T>(&mut self, what: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(format!("{what}: {e}"));
                None
            }
        }
    }
}

fn yaml<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_saphyr::to_string(value).map_err(|e| format!("cannot render YAML: {e}"))
}

async fn pods_and_logs(
    client: &Client,
    namespace: &str,
    selector: Option<&str>,
    prefix: &str,
    bundle: &mut Bundle,
) {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = match selector {
        Some(s) => ListParams::default().labels(s),
        None => ListParams::default(),
    };
    let Some(pods) = bundle.note(
        &format!("list pods in {namespace}"),
        api.list(&params).await.map_err(|e| e.to_string()),
    ) else {
        return;
    };
    if let Some(text) = bundle.note("render pods", yaml(&pods.items)) {
        bundle.write(&format!("{prefix}pods.yaml"), &text);
    }
    for pod in &pods.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let containers = spec.containers.iter().map(|c| c.name.clone()).chain(
            spec.init_containers
                .iter()
                .flatten()
                .filter(|c| c.name == "istio-proxy")
                .map(|c| c.name.clone()),
        );
        for container in containers {
            let params = LogParams {
                container: Some(container.clone()),
                tail_lines: Some(LOG_LINES),
                ..LogParams::default()
            };
            if let Some(text) = bundle.note(
                &format!("logs of {namespace}/{name}/{container}"),
                api.logs(&name, &params).await.map_err(|e| e.to_string()),
            ) {
                bundle.write(&format!("logs/{prefix}{name}.{container}.log"), &text);
            }
        }
    }
}

async fn events(client: &Client, namespace: &str, bundle: &mut Bundle) {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    if let Some(list) = bundle.note(
        &format!("events in {namespace}"),
        api.list(&ListParams::default())
            .await
            .map_err(|e| e.to_string()),
    ) {
        let mut lines: Vec<String> = list
            .items
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}/{}: {} {}",
                    e.last_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .unwrap_or_default(),
                    e.type_.as_deref().unwrap_or(""),
                    e.involved_object.kind.as_deref().unwrap_or(""),
                    e.involved_object.name.as_deref().unwrap_or(""),
                    e.reason.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or("")
                )
            })
            .collect();
        lines.sort();
        bundle.write(&format!("events-{namespace}.txt"), &lines.join("\n"));
    }
}

async fn istio_resources(client: &Client, namespaces: &[&str], bundle: &mut Bundle) {
    for (group, version, kind) in ISTIO_KINDS {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        for namespace in namespaces {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &resource);
            if let Some(list) = bundle.note(
                &format!("{kind}s in {namespace}"),
                api.list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string()),
            ) && let Some(text) = bundle.note("render", yaml(&list.items))
            {
                bundle.write(
                    &format!("istio/{namespace}.{}.yaml", resource.plural),
                    &text,
                );
            }
        }
    }
}

async fn proxy_configs(client: &Client, config: &RunConfig, suite: &Suite, bundle: &mut Bundle) {
    let mut callers: Vec<(String, String)> = vec![(
        config.ingress_namespace.clone(),
        INGRESS_GATEWAY.to_string(),
    )];
    callers.extend(
        suite
            .workloads
            .iter()
            .map(|w| (config.app_namespace.clone(), w.clone())),
    );
    for (namespace, deployment) in callers {
        let Some(selector) = bundle.note(
            &format!("selector of {deployment}"),
            super::workloads::selector_of(client, &namespace, &deployment).await,
        ) else {
            continue;
        };
        let Some(pod) = bundle.note(
            &format!("pod of {deployment}"),
            super::portforward::ready_pod(client, &namespace, &selector).await,
        ) else {
            continue;
        };
        for (path, file) in [
            ("/config_dump?include_eds", "config_dump"),
            ("/server_info", "server_info"),
        ] {
            if let Some(json) = bundle.note(
                &format!("{path} of {deployment}"),
                envoy_admin::get_json(client, &namespace, &pod, path).await,
            ) {
                bundle.write(
                    &format!("proxy/{deployment}.{file}.json"),
                    &serde_json::to_string_pretty(&json).unwrap_or_default(),
                );
            }
        }
    }
}

/// What every ready istiod reports it sent each proxy and what the proxy acked.
async fn istiod_sync(client: &Client, bundle: &mut Bundle) {
    let Some(pods) = bundle.note("istiod pods", super::istiod_debug::ready_pods(client).await)
    else {
        return;
    };
    for pod in pods {
        if let Some(json) = bundle.note(
            &format!("/debug/syncz of {pod}"),
            super::istiod_debug::get_json(client, &pod, crate::telemetry::xds_sync::SYNCZ_PATH)
                .await,
        ) {
            bundle.write(
                &format!("istiod/{pod}.syncz.json"),
                &serde_json::to_string_pretty(&json).unwrap_or_default(),
            );
        }
    }
}

async fn collect_all(
    client: &Client,
    config: &RunConfig,
    suite: &Suite,
    bundle: &mut Bundle,
    kind: Option<(PathBuf, String)>,
) {
    pods_and_logs(client, &config.app_namespace, None, "", bundle).await;
    events(client, &config.app_namespace, bundle).await;
    pods_and_logs(
        client,
        ISTIO_NAMESPACE,
        Some(&format!("app={ISTIOD}")),
        "istiod-",
        bundle,
    )
    .await;
    pods_and_logs(
        client,
        &config.ingress_namespace,
        Some(super::istio::INGRESS_GATEWAY_SELECTOR),
        "ingressgateway-",
        bundle,
    )
    .await;
    istio_resources(
        client,
        &[&config.app_namespace, &config.ingress_namespace],
        bundle,
    )
    .await;
    proxy_configs(client, config, suite, bundle).await;
    istiod_sync(client, bundle).await;
    if let Some((kind_bin, name)) = kind {
        let target = bundle.dir.join("kind-logs");
        let result = super::kind::export_logs(&kind_bin, &name, &target).await;
        bundle.note("kind export logs", result);
    }
}

/// Collects the bundle into `dir`. Errors and a timeout are written to `errors.txt`
/// and returned as one line; the caller keeps the step's own verdict either way.
pub async fn collect(
    client: &Client,
    config: &RunConfig,
    suite: &Suite,
    dir: &Path,
    kind: Option<(PathBuf, String)>,
) -> Result<(), String> {
    collect_within(
        client,
        config,
        suite,
        dir,
        kind,
        crate::deadlines::DIAGNOSTICS,
    )
    .await
}

pub async fn collect_within(
    client: &Client,
    config: &RunConfig,
    suite: &Suite,
    dir: &Path,
    kind: Option<(PathBuf, String)>,
    deadline: Duration,
) -> Result<(), String> {
    let mut bundle = Bundle {
        dir: dir.to_path_buf(),
        errors: Vec::new(),
    };
    let timed_out = tokio::time::timeout(
        deadline,
        collect_all(client, config, suite, &mut bundle, kind),
    )
    .await
    .is_err();
    if timed_out {
        bundle.errors.push(format!(
            "collection stopped at its {} s deadline",
            deadline.as_secs()
        ));
    }
    if bundle.errors.is_empty() {
        return Ok(());
    }
    let text = bundle.errors.join("\n");
    let count = bundle.errors.len();
    bundle.write("errors.txt", &text);
    Err(format!(
        "{count} part(s) of the diagnostics could not be collected; see {}",
        dir.join("errors.txt").display()
    ))
}
