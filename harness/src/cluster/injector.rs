//! What Istio's sidecar injector gives a new pod, asked without creating one: a dry-run
//! pod create (`dryRun=All`) goes through the mutating webhooks and nothing is stored.
//! The API server calls a webhook on a dry run only when it declares no side effects;
//! Istio's injector declares `sideEffects: None` (chart
//! `istio-discovery/templates/mutatingwebhook.yaml`). The pod carries the label
//! `sidecar.istio.io/inject: "true"`, which the default revision's webhooks select both
//! in a namespace labelled `istio-injection=enabled` and in one without injection labels.

use super::workloads::{INJECT_KEY, proxy_image};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};

/// The `istio-proxy` image the injector puts into a new pod of `namespace` running
/// `image`, or None when it injects nothing.
pub async fn injected_proxy(
    client: &Client,
    namespace: &str,
    image: &str,
) -> Result<Option<String>, String> {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {
            "generateName": "harness-injector-probe-",
            "labels": {INJECT_KEY: "true"},
        },
        "spec": {"containers": [{"name": "probe", "image": image}]},
    }))
    .map_err(|e| format!("the injector probe pod does not build: {e}"))?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let admitted = Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&dry_run, &pod)
        .await
        .map_err(|e| { let e = crate::words::Said::said(&e); format!("a dry-run pod create in {namespace} (to see what the injector gives new pods) failed: {e}") })?;
    Ok(proxy_image(&admitted))
}
