//! Which label makes the app namespace injected on this cluster. The exercise labels it
//! `istio-injection=enabled`, which only the default revision (or the `default` tag)
//! answers (webhook `namespace.sidecar-injector.istio.io`). A control plane installed
//! only as a revision (`istiod-1-31-2`, webhooks `rev.namespace.` / `rev.object.`) answers
//! `istio.io/rev=<revision or tag>` instead (chart `istio-discovery/templates/
//! mutatingwebhook.yaml`, `revision-tags-mwc.yaml`). Decided from the cluster's
//! MutatingWebhookConfigurations by evaluating each injector webhook's
//! `namespaceSelector` and `objectSelector` against the app namespace's and pods' labels
//! (deactivated webhooks, `istio.io/deactivated`, select nothing by their own
//! selectors).

use serde_json::Value;
use std::collections::BTreeMap;

pub const ISTIO_INJECTION: (&str, &str) = ("istio-injection", "enabled");
pub const REVISION_LABEL: &str = "istio.io/rev";

type Labels = BTreeMap<String, String>;

/// Whether a Kubernetes label selector (`matchLabels`, `matchExpressions`) selects
/// `labels`; an absent selector selects everything.
pub fn selects(selector: Option<&Value>, labels: &Labels) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return true;
    };
    let match_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let have = labels.get(key).map(String::as_str);
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => have.is_some_and(|h| values.contains(&h)),
                Some("NotIn") => have.is_none_or(|h| !values.contains(&h)),
                Some("Exists") => have.is_some(),
                Some("DoesNotExist") => have.is_none(),
                _ => false,
            }
        });
    match_labels && expressions
}

/// The injector webhooks of every MutatingWebhookConfiguration, with the
/// configuration's name.
fn injector_webhooks(configurations: &[Value]) -> Vec<(String, &Value)> {
    configurations
        .iter()
        .flat_map(|c| {
            let name = c
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            c.get("webhooks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|w| {
                    w.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.ends_with("sidecar-injector.istio.io"))
                })
                .map(move |w| (name.clone(), w))
        })
        .collect()
}

/// Whether some injector webhook injects an app pod (labels `pod`) in a namespace
/// labelled `namespace`.
fn injects(webhooks: &[(String, &Value)], namespace: &Labels, pod: &Labels) -> Option<String> {
    webhooks.iter().find_map(|(configuration, w)| {
        (selects(w.get("namespaceSelector"), namespace) && selects(w.get("objectSelector"), pod))
            .then(|| configuration.clone())
    })
}

/// The label to put on the app namespace, and which webhook configuration answers it;
/// `istio-injection=enabled` whenever something answers it, else a tag, else a
/// revision.
pub fn choose(
    configurations: &[Value],
    pod_labels: &Labels,
) -> Result<((String, String), String), String> {
    let webhooks = injector_webhooks(configurations);
    let namespace = |key: &str, value: &str| Labels::from([(key.to_string(), value.to_string())]);
    let (key, value) = ISTIO_INJECTION;
    if let Some(by) = injects(&webhooks, &namespace(key, value), pod_labels) {
        return Ok(((key.into(), value.into()), by));
    }
    // The revisions and tags the webhooks name, tags first.
    let mut named: Vec<(bool, String)> = Vec::new();
    for (configuration, w) in &webhooks {
        let is_tag = configuration.starts_with("istio-revision-tag-");
        for e in w
            .pointer("/namespaceSelector/matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| e.get("key").and_then(Value::as_str) == Some(REVISION_LABEL))
        {
            for v in e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !named.iter().any(|(_, n)| n == v) {
                    named.push((is_tag, v.to_string()));
                }
            }
        }
    }
    named.sort_by_key(|(is_tag, _)| !*is_tag);
    for (_, revision) in named {
        if let Some(by) = injects(&webhooks, &namespace(REVISION_LABEL, &revision), pod_labels) {
            return Ok(((REVISION_LABEL.into(), revision), by));
        }
    }
    Err(format!(
        "no sidecar injector on this cluster injects into a namespace labelled istio-injection=enabled or istio.io/rev=<revision> ({} injector webhook(s) found); install Istio or check its MutatingWebhookConfigurations",
        webhooks.len()
    ))
}

/// The cluster's MutatingWebhookConfigurations as JSON.
pub async fn configurations(client: &kube::Client) -> Result<Vec<Value>, String> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use kube::api::{Api, ListParams};
    let list = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            format!(
                "cannot list the MutatingWebhookConfigurations to see which namespace label injects sidecars: {}",
                crate::words::kube_error(&e)
            )
        })?;
    list.items
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .map_err(|e| format!("a webhook configuration does not serialize: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn webhook(name: &str, namespace: Value, object: Value) -> Value {
        json!({ "name": name, "namespaceSelector": namespace, "objectSelector": object })
    }

    fn configuration(name: &str, webhooks: Vec<Value>) -> Value {
        json!({ "metadata": { "name": name }, "webhooks": webhooks })
    }

    fn not_false() -> Value {
        json!({ "key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"] })
    }

    fn revision(rev: &str) -> Vec<Value> {
        vec![
            webhook(
                "rev.namespace.sidecar-injector.istio.io",
                json!({ "matchExpressions": [ { "key": "istio.io/rev", "operator": "In", "values": [rev] },
                                              { "key": "istio-injection", "operator": "DoesNotExist" } ] }),
                json!({ "matchExpressions": [ not_false() ] }),
            ),
            webhook(
                "rev.object.sidecar-injector.istio.io",
                json!({ "matchExpressions": [ { "key": "istio.io/rev", "operator": "DoesNotExist" },
                                              { "key": "istio-injection", "operator": "DoesNotExist" } ] }),
                json!({ "matchExpressions": [ not_false(), { "key": "istio.io/rev", "operator": "In", "values": [rev] } ] }),
            ),
        ]
    }

    fn default_webhooks() -> Vec<Value> {
        vec![webhook(
            "namespace.sidecar-injector.istio.io",
            json!({ "matchExpressions": [ { "key": "istio-injection", "operator": "In", "values": ["enabled"] } ] }),
            json!({ "matchExpressions": [ not_false() ] }),
        )]
    }

    fn app_pod() -> Labels {
        Labels::from([("app".to_string(), "age".to_string())])
    }

    #[test]
    fn a_default_revision_answers_istio_injection() {
        let mut webhooks = revision("default");
        webhooks.extend(default_webhooks());
        let chosen = choose(
            &[configuration("istio-sidecar-injector", webhooks)],
            &app_pod(),
        )
        .unwrap();
        assert_eq!(chosen.0, ("istio-injection".into(), "enabled".into()));
    }

    #[test]
    fn a_revision_only_control_plane_gets_its_revision_and_a_tag_wins_over_it() {
        let only = [configuration(
            "istio-sidecar-injector-1-31-2",
            revision("1-31-2"),
        )];
        let chosen = choose(&only, &app_pod()).unwrap();
        assert_eq!(chosen.0, ("istio.io/rev".into(), "1-31-2".into()));
        assert_eq!(chosen.1, "istio-sidecar-injector-1-31-2");
        let with_tag = [
            configuration("istio-sidecar-injector-1-31-2", revision("1-31-2")),
            configuration("istio-revision-tag-prod", revision("prod")),
        ];
        assert_eq!(choose(&with_tag, &app_pod()).unwrap().0.1, "prod");
    }

    #[test]
    fn deactivated_webhooks_and_none_at_all_inject_nothing() {
        let never = json!({ "matchLabels": { "istio.io/deactivated": "never-match" } });
        let deactivated = vec![webhook(
            "namespace.sidecar-injector.istio.io",
            never.clone(),
            never,
        )];
        let e = choose(
            &[configuration("istio-sidecar-injector", deactivated)],
            &app_pod(),
        )
        .unwrap_err();
        assert!(e.contains("no sidecar injector"), "{e}");
        assert!(choose(&[], &app_pod()).is_err());
    }
}
