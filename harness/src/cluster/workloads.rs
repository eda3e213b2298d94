//! Workloads of the app: switching sidecar injection, telling whether pods carry a
//! sidecar, restarting, and which proxy image pods run.
//!
//! Just over 400 lines with its tests: what counts as a sidecar (the injector's, ready,
//! classic or native) is decided here once, and tested beside the rule.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, Patch};
use std::collections::BTreeMap;
use std::fmt;

/// The pod-template annotation (and label) Istio's injector reads per workload.
pub const INJECT_KEY: &str = "sidecar.istio.io/inject";
pub const SIDECAR_CONTAINER: &str = "istio-proxy";
const SIDECAR_STATUS_ANNOTATION: &str = "sidecar.istio.io/status";

/// How a pod carries its `istio-proxy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In `spec.containers`.
    Classic,
    /// In `spec.initContainers` with `restartPolicy: Always` (native sidecar, Istio ≥ 1.28
    /// on Kubernetes ≥ 1.33).
    Native,
}

/// What a pod shows about its sidecar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sidecar {
    /// An `istio-proxy` container that is ready (native: started and ready).
    Ready(Placement),
    /// An `istio-proxy` container that is not (yet) ready.
    NotReady(Placement, String),
    /// The injector's status annotation without any `istio-proxy` container: not a
    /// sidecar.
    AnnotatedOnly,
    /// An `istio-proxy` container the injector did not add (its status annotation is
    /// absent or does not list it): not the injector's sidecar, yet not its absence
    /// either (an Envoy may run in the pod); neither `present` nor `absent` holds.
    NotInjected(Placement),
    /// No sidecar.
    None,
}

impl Sidecar {
    /// Whether the pod has an `istio-proxy` container at all.
    pub fn present(&self) -> bool {
        matches!(self, Sidecar::Ready(_) | Sidecar::NotReady(..))
    }
}

impl fmt::Display for Sidecar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sidecar::Ready(Placement::Classic) => f.write_str("ready sidecar container"),
            Sidecar::Ready(Placement::Native) => f.write_str("ready native sidecar"),
            Sidecar::NotReady(p, why) => write!(
                f,
                "{} not ready: {why}",
                if *p == Placement::Native {
                    "native sidecar"
                } else {
                    "sidecar container"
                }
            ),
            Sidecar::AnnotatedOnly => {
                f.write_str("injector's annotation but no istio-proxy container")
            }
            Sidecar::NotInjected(_) => f.write_str(
                "an istio-proxy container the injector did not add (sidecar.istio.io/status does not list it)",
            ),
            Sidecar::None => f.write_str("no sidecar"),
        }
    }
}

/// Whether the pod has a sidecar: a container named `istio-proxy` among the containers,
/// or among the init containers with `restartPolicy: Always`, and whether it is ready.
/// Containers are never counted (native sidecars are init containers; other injectors
/// add containers); the injector's annotation alone is not a sidecar.
///
/// The proxy must also be the injector's: `sidecar.istio.io/status` lists `istio-proxy`
/// among what the injection template added (Istio's `getInjectionStatus`,
/// pkg/kube/inject/webhook.go, lists the template's init containers and containers).
pub fn sidecar(pod: &Pod) -> Sidecar {
    let found = proxy(pod);
    let placement = match &found {
        Sidecar::Ready(p) | Sidecar::NotReady(p, _) => *p,
        _ => return found,
    };
    if injector_added_proxy(pod) {
        found
    } else {
        Sidecar::NotInjected(placement)
    }
}

/// Whether the injector's status annotation lists `istio-proxy`.
fn injector_added_proxy(pod: &Pod) -> bool {
    let Some(status) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SIDECAR_STATUS_ANNOTATION))
    else {
        return false;
    };
    let Ok(status) = serde_json::from_str::<serde_json::Value>(status) else {
        return false;
    };
    ["containers", "initContainers"].iter().any(|field| {
        status[field]
            .as_array()
            .is_some_and(|names| names.iter().any(|n| n == SIDECAR_CONTAINER))
    })
}

/// An Envoy in the pod whoever put it there (the ingress gateway's own container, or a
/// sidecar): an `istio-proxy` container, and whether it is ready.
pub fn proxy(pod: &Pod) -> Sidecar {
    let Some(spec) = pod.spec.as_ref() else {
        return Sidecar::None;
    };
    let status = pod.status.as_ref();
    let placement = if spec.containers.iter().any(|c| c.name == SIDECAR_CONTAINER) {
        Some(Placement::Classic)
    } else if spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| c.name == SIDECAR_CONTAINER && c.restart_policy.as_deref() == Some("Always"))
    {
        Some(Placement::Native)
    } else {
        None
    };
    let Some(placement) = placement else {
        let annotated = pod
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(SIDECAR_STATUS_ANNOTATION));
        return if annotated {
            Sidecar::AnnotatedOnly
        } else {
            Sidecar::None
        };
    };
    let statuses = match placement {
        Placement::Classic => status.and_then(|s| s.container_statuses.as_ref()),
        Placement::Native => status.and_then(|s| s.init_container_statuses.as_ref()),
    };
    let Some(container) = statuses
        .into_iter()
        .flatten()
        .find(|c| c.name == SIDECAR_CONTAINER)
    else {
        return Sidecar::NotReady(placement, "no status yet".into());
    };
    let started = container.started.unwrap_or(false);
    if container.ready && (placement == Placement::Classic || started) {
        Sidecar::Ready(placement)
    } else {
        let waiting = container
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone());
        Sidecar::NotReady(
            placement,
            waiting.unwrap_or_else(|| format!("ready={}, started={started}", container.ready)),
        )
    }
}

/// The merge patch that switches injection the exercise's way: `true` removes the
/// pod-template annotation `sidecar.istio.io/inject: 'false'` (`grep -v inject`),
/// `false` sets it; any label of the same name is removed (it would win over the
/// annotation).
pub fn injection_patch(inject: bool) -> serde_json::Value {
    let annotation = if inject {
        serde_json::Value::Null
    } else {
        serde_json::Value::String("false".into())
    };
    serde_json::json!({
        "spec": { "template": { "metadata": {
            "annotations": { INJECT_KEY: annotation },
            "labels": { INJECT_KEY: null }
        } } }
    })
}

pub async fn set_injection(
    client: &Client,
    namespace: &str,
    deployment: &str,
    inject: bool,
) -> Result<(), String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    api.patch(
        deployment,
        &super::apply::patch_params(),
        &Patch::Merge(injection_patch(inject)),
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        format!(
            "cannot {} sidecar injection of deployment {namespace}/{deployment}: {e}",
            if inject { "enable" } else { "disable" }
        )
    })
}

/// `app=age,version=v1`: a label selector from match labels.
pub fn label_selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The label selector of a deployment's pods.
pub async fn selector_of(
    client: &Client,
    namespace: &str,
    deployment: &str,
) -> Result<String, String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let d = api.get(deployment).await.map_err(|e| {
        let e = crate::words::Said::said(&e);
        format!("cannot read deployment {namespace}/{deployment}: {e}")
    })?;
    let labels = d
        .spec
        .and_then(|s| s.selector.match_labels)
        .unwrap_or_default();
    if labels.is_empty() {
        return Err(format!(
            "deployment {namespace}/{deployment} has no matchLabels selector"
        ));
    }
    Ok(label_selector(&labels))
}

/// Every non-terminating pod of the deployment, for the `sidecars` expectation.
pub async fn pods_of(
    client: &Client,
    namespace: &str,
    deployment: &str,
) -> Result<Vec<Pod>, String> {
    let selector = selector_of(client, namespace, deployment).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot list pods of {namespace}/{deployment}: {e}")
        })?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Restarts a deployment the way `kubectl rollout restart` does: a new pod template
/// annotation, so every pod is replaced (and re-injected with the current proxy).
pub async fn restart(
    client: &Client,
    namespace: &str,
    deployment: &str,
    stamp: &str,
) -> Result<(), String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({
        "spec": { "template": { "metadata": { "annotations": { "kubectl.kubernetes.io/restartedAt": stamp } } } }
    });
    api.patch(
        deployment,
        &super::apply::patch_params(),
        &Patch::Merge(patch),
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        let e = crate::words::Said::said(&e);
        format!("cannot restart deployment {namespace}/{deployment}: {e}")
    })
}

/// The names of the deployments in a namespace.
pub async fn deployments(client: &Client, namespace: &str) -> Result<Vec<String>, String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            let e = crate::words::Said::said(&e);
            format!("cannot list deployments in {namespace}: {e}")
        })?
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect())
}

/// The image of the `istio-proxy` container (classic or native) of a pod.
pub fn proxy_image(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == SIDECAR_CONTAINER)
        .and_then(|c| c.image.clone())
}

/// Every non-terminating pod of the namespace (matching `selector`) that runs a proxy,
/// with the proxy's image.
pub async fn proxy_images(
    client: &Client,
    namespace: &str,
    selector: Option<&str>,
) -> Result<Vec<(String, String)>, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = match selector {
        Some(s) => ListParams::default().labels(s),
        None => ListParams::default(),
    };
    let pods = api.list(&params).await.map_err(|e| {
        let e = crate::words::Said::said(&e);
        format!("cannot list pods in {namespace}: {e}")
    })?;
    Ok(pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| Some((p.metadata.name.clone()?, proxy_image(p)?)))
        .collect())
}

/// The proxies of the app namespace and of the ingress gateway that do not run
/// `version` (by image tag), each as `pod runs image`, and how many were checked.
pub async fn proxies_not_on(
    client: &Client,
    app_namespace: &str,
    ingress_namespace: &str,
    version: &str,
) -> Result<(Vec<String>, usize), String> {
    let mut proxies = proxy_images(client, app_namespace, None).await?;
    proxies.extend(
        proxy_images(
            client,
            ingress_namespace,
            Some(super::istio::INGRESS_GATEWAY_SELECTOR),
        )
        .await?,
    );
    let off = proxies
        .iter()
        .filter(|(_, image)| super::istio::image_tag(image) != Some(version))
        .map(|(pod, image)| format!("{pod} runs {image}"))
        .collect();
    Ok((off, proxies.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn classic_native_annotated_and_absent_sidecars_are_told_apart() {
        let classic = pod(serde_json::json!({
            "metadata": {"annotations": {"sidecar.istio.io/status": r#"{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":null,"imagePullSecrets":null,"revision":"default"}"#}},
            "spec": {"containers": [{"name": "age"}, {"name": "istio-proxy"}]},
            "status": {"containerStatuses": [
                {"name": "istio-proxy", "ready": true, "restartCount": 0, "image": "proxyv2", "imageID": ""}]}}));
        let injected = serde_json::json!({"sidecar.istio.io/status": r#"{"initContainers":["istio-init","istio-proxy"],"containers":null,"volumes":null,"imagePullSecrets":null,"revision":"default"}"#});
        let native = pod(
            serde_json::json!({"metadata": {"annotations": injected}, "spec": {
            "initContainers": [{"name": "istio-init"}, {"name": "istio-proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "age"}]},
            "status": {"initContainerStatuses": [
                {"name": "istio-proxy", "ready": true, "started": true, "restartCount": 0, "image": "proxyv2", "imageID": ""}]}}),
        );
        let starting = pod(
            serde_json::json!({"metadata": {"annotations": injected}, "spec": {
            "initContainers": [{"name": "istio-proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "age"}]},
            "status": {"initContainerStatuses": [
                {"name": "istio-proxy", "ready": false, "started": false, "restartCount": 0, "image": "proxyv2", "imageID": "",
                 "state": {"waiting": {"reason": "PodInitializing"}}}]}}),
        );
        let init_only = pod(serde_json::json!({"spec": {
            "initContainers": [{"name": "istio-proxy"}], "containers": [{"name": "age"}]}}));
        let none = pod(
            serde_json::json!({"spec": {"containers": [{"name": "age"}, {"name": "log-shipper"}]}}),
        );
        let annotated = pod(serde_json::json!({
            "metadata": {"annotations": {"sidecar.istio.io/status": "{}"}},
            "spec": {"containers": [{"name": "age"}]}}));
        assert_eq!(sidecar(&classic), Sidecar::Ready(Placement::Classic));
        assert_eq!(sidecar(&native), Sidecar::Ready(Placement::Native));
        assert_eq!(
            sidecar(&starting),
            Sidecar::NotReady(Placement::Native, "PodInitializing".into())
        );
        assert_eq!(
            sidecar(&init_only),
            Sidecar::None,
            "an init container that exits is not a sidecar"
        );
        assert_eq!(
            sidecar(&none),
            Sidecar::None,
            "two containers is not a sidecar"
        );
        assert_eq!(sidecar(&annotated), Sidecar::AnnotatedOnly);
        assert!(!Sidecar::AnnotatedOnly.present());
        // A container named istio-proxy in the pod's own template (injection off), or
        // with a status that does not list it: not a sidecar; the same container in the
        // ingress gateway (installed, not injected) is its proxy.
        let own = pod(serde_json::json!({
            "spec": {"containers": [{"name": "age"}, {"name": "istio-proxy"}]},
            "status": {"containerStatuses": [
                {"name": "istio-proxy", "ready": true, "restartCount": 0, "image": "busybox", "imageID": ""}]}}));
        assert_eq!(sidecar(&own), Sidecar::NotInjected(Placement::Classic));
        assert!(!sidecar(&own).present());
        assert_eq!(proxy(&own), Sidecar::Ready(Placement::Classic));
        let mut other_status = own.clone();
        other_status.metadata.annotations = Some(
            [(
                "sidecar.istio.io/status".to_string(),
                r#"{"initContainers":["istio-init"],"containers":["other"]}"#.to_string(),
            )]
            .into(),
        );
        assert_eq!(
            sidecar(&other_status),
            Sidecar::NotInjected(Placement::Classic)
        );
    }

    #[test]
    fn injection_is_switched_by_the_annotation_the_exercise_uses() {
        assert_eq!(
            injection_patch(true),
            serde_json::json!({"spec": {"template": {"metadata": {
                "annotations": {"sidecar.istio.io/inject": null},
                "labels": {"sidecar.istio.io/inject": null}}}}})
        );
        assert_eq!(
            injection_patch(false)["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"],
            "false"
        );
    }
}
