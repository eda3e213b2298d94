//! Whether a workload's sidecars write Istio's access log, and turning it on for the
//! run's namespace when they do not. The ground truth is the proxy's own config: the
//! `virtualInbound` listener's `access_log` in its config dump (Istio puts the `NR`
//! listener log there from the Telemetry API, else from `meshConfig.accessLogFile`,
//! unless `disableEnvoyListenerLog` is set: pilot/pkg/networking/core/accesslog.go
//! `setListenerAccessLog`, 1.30 and 1.31). Istio's default install logs nothing
//! (`meshConfig.accessLogFile` unset); a `telemetry.istio.io/v1` Telemetry in the
//! namespace naming the `envoy` provider turns it on for that namespace only. An empty
//! `providers` list would mean the mesh's default providers, which a default install has
//! none of, so the provider is named.

use super::apply::FIELD_MANAGER;
use super::{envoy_admin, portforward, workloads};
use crate::deadlines;
use crate::wait::{self, Check};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use std::time::Duration;

/// The Telemetry the harness creates in the app namespace (gone with the namespace).
pub const TELEMETRY_NAME: &str = "istio-mtls-harness-access-log";

/// Whether the config dump's `virtualInbound` listener (active or warming) logs.
pub fn inbound_listener_logs(dump: &Value) -> Option<bool> {
    let listeners = dump
        .get("configs")?
        .as_array()?
        .iter()
        .find(|c| {
            c.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("admin.v3.ListenersConfigDump"))
        })?
        .get("dynamic_listeners")?
        .as_array()?;
    listeners.iter().find_map(|l| {
        let listener = l
            .pointer("/active_state/listener")
            .or_else(|| l.pointer("/warming_state/listener"))?;
        (listener.get("name").and_then(Value::as_str) == Some("virtualInbound")).then(|| {
            listener
                .get("access_log")
                .and_then(Value::as_array)
                .is_some_and(|logs| !logs.is_empty())
        })
    })
}

/// Each ready pod of `workload` with whether its inbound listener logs.
async fn logging_of(
    client: &Client,
    namespace: &str,
    workload: &str,
) -> Result<Vec<(String, bool)>, String> {
    let selector = workloads::selector_of(client, namespace, workload).await?;
    let mut out = Vec::new();
    for pod in portforward::ready_pods(client, namespace, &selector).await? {
        let dump = envoy_admin::get_json(client, namespace, &pod, "/config_dump").await?;
        let logs = inbound_listener_logs(&dump).ok_or_else(|| {
            format!("{namespace}/{pod}'s config dump has no virtualInbound listener yet")
        })?;
        out.push((pod, logs));
    }
    Ok(out)
}

fn telemetry_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "telemetry.istio.io",
        "v1",
        "Telemetry",
    ))
}

/// The Telemetry that turns the `envoy` access log on for `namespace`.
pub fn telemetry(namespace: &str) -> Value {
    json!({
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": { "name": TELEMETRY_NAME, "namespace": namespace },
        "spec": { "accessLogging": [ { "providers": [ { "name": "envoy" } ] } ] }
    })
}

/// Makes sure `workload`'s sidecars log: `Ok(None)` when they already did, `Ok(Some(what
/// was done))` once a Telemetry turned it on, `Err(why it cannot be judged)` otherwise.
pub async fn ensure(
    client: &Client,
    namespace: &str,
    workload: &str,
    deadline: Duration,
) -> Result<Option<String>, String> {
    let now = logging_of(client, namespace, workload).await?;
    if now.iter().all(|(_, logs)| *logs) {
        return Ok(None);
    }
    let silent: Vec<&str> = now
        .iter()
        .filter(|(_, l)| !l)
        .map(|(p, _)| p.as_str())
        .collect();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &telemetry_resource());
    let object: DynamicObject = serde_json::from_value(telemetry(namespace))
        .map_err(|e| format!("the access-log Telemetry does not parse: {e}"))?;
    match api
        .patch(
            TELEMETRY_NAME,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(format!(
                "{} writes no access log (meshConfig.accessLogFile unset, no Telemetry asks for one) and this cluster serves no telemetry.istio.io/v1 Telemetry to turn it on; set meshConfig.accessLogFile=/dev/stdout",
                silent.join(", ")
            ));
        }
        Err(e) => {
            return Err(format!(
                "{} writes no access log and the Telemetry {namespace}/{TELEMETRY_NAME} that would turn it on could not be applied: {}",
                silent.join(", "),
                crate::words::kube_error(&e)
            ));
        }
    }
    let waited = wait::until(deadline, deadlines::POLL, || async {
        match logging_of(client, namespace, workload).await {
            Ok(pods) if pods.iter().all(|(_, l)| *l) => Check::Ready(()),
            Ok(pods) => Check::NotYet(format!(
                "not logging yet: {}",
                pods.iter()
                    .filter(|(_, l)| !l)
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(e) => Check::NotYet(e),
        }
    })
    .await;
    match waited {
        Ok(()) => Ok(Some(format!(
            "{} wrote no access log (meshConfig.accessLogFile unset is Istio's default): turned it on for namespace {namespace} with Telemetry {TELEMETRY_NAME} (provider envoy), removed with the namespace",
            silent.join(", ")
        ))),
        Err(e) => Err(format!(
            "{} writes no access log, and after Telemetry {namespace}/{TELEMETRY_NAME} (provider envoy) was applied it still did not within {} s ({e}); a mesh config with disableEnvoyListenerLog: true keeps the listener's log off",
            silent.join(", "),
            deadline.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(access_log: Value) -> Value {
        json!({ "configs": [
            { "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump" },
            { "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
              "dynamic_listeners": [
                { "name": "0.0.0.0_5000", "active_state": { "listener": { "name": "0.0.0.0_5000", "access_log": [ {} ] } } },
                { "name": "virtualInbound", "active_state": { "listener": { "name": "virtualInbound", "access_log": access_log } } }
              ] }
        ] })
    }

    #[test]
    fn the_inbound_listeners_log_is_read_by_structure() {
        assert_eq!(
            inbound_listener_logs(&dump(json!([ { "name": "envoy.access_loggers.file" } ]))),
            Some(true)
        );
        assert_eq!(inbound_listener_logs(&dump(json!([]))), Some(false));
        assert_eq!(inbound_listener_logs(&dump(Value::Null)), Some(false));
        // Another listener's log is not the inbound listener's.
        let no_inbound = json!({ "configs": [ { "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "dynamic_listeners": [ { "active_state": { "listener": { "name": "0.0.0.0_5000", "access_log": [ {} ] } } } ] } ] });
        assert_eq!(inbound_listener_logs(&no_inbound), None);
    }

    #[test]
    fn the_telemetry_names_the_envoy_provider() {
        let t = telemetry("sentences");
        assert_eq!(
            t.pointer("/spec/accessLogging/0/providers/0/name"),
            Some(&json!("envoy"))
        );
        assert_eq!(t["metadata"]["namespace"], "sentences");
    }
}
