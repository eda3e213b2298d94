//! What the suite's manifests deploy, read once at load: the Deployments (their pod
//! labels and the app's configuration in their env) and the Services, so the harness
//! knows what a success of *this* app looks like and which workload answers which name,
//! without assuming that a Service is named after an `app` label.

use crate::probe::sentence::Grammar;
use serde_json::Value;
use std::collections::BTreeMap;

/// The app's defaults (MichaelVL/istio-katas `sentences-app/app/app.py`).
pub const DEFAULT_NAMES: &str = "Peter,Ray,Egon";
pub const DEFAULT_MODE: &str = "age";
pub const DEFAULT_AGE_MIN: u32 = 0;
pub const DEFAULT_AGE_MAX: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `SENTENCE_MODE`: `sentence`, `name` or `age`.
    pub mode: String,
    pub pod_labels: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct App {
    pub deployments: BTreeMap<String, Workload>,
    /// Service name → selector.
    pub services: BTreeMap<String, BTreeMap<String, String>>,
    pub grammar: std::sync::Arc<Grammar>,
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl App {
    pub fn from_objects(objects: &[Value]) -> App {
        let mut app = App::default();
        for object in objects {
            let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            match object.get("kind").and_then(Value::as_str) {
                Some("Deployment") => {
                    let template = object.pointer("/spec/template");
                    let mut env = BTreeMap::new();
                    for container in template
                        .and_then(|t| t.pointer("/spec/containers"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        for e in container
                            .get("env")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            if let (Some(k), Some(v)) = (
                                e.get("name").and_then(Value::as_str),
                                e.get("value").and_then(Value::as_str),
                            ) {
                                env.insert(k.to_string(), v.to_string());
                            }
                        }
                    }
                    let mode = env
                        .get("SENTENCE_MODE")
                        .cloned()
                        .unwrap_or_else(|| DEFAULT_MODE.to_string());
                    app.deployments.insert(
                        name.to_string(),
                        Workload {
                            mode,
                            pod_labels: string_map(
                                template.and_then(|t| t.pointer("/metadata/labels")),
                            ),
                            env,
                        },
                    );
                }
                Some("Service") => {
                    app.services.insert(
                        name.to_string(),
                        string_map(object.pointer("/spec/selector")),
                    );
                }
                _ => {}
            }
        }
        app.grammar = std::sync::Arc::new(app.grammar());
        app
    }

    fn grammar(&self) -> Grammar {
        let names: Vec<(String, Vec<String>)> = self
            .deployments
            .iter()
            .filter(|(_, w)| w.mode == "name")
            .map(|(name, w)| {
                let list = w
                    .env
                    .get("SENTENCE_NAMES")
                    .map(String::as_str)
                    .unwrap_or(DEFAULT_NAMES);
                (name.clone(), list.split(',').map(str::to_string).collect())
            })
            .collect();
        let age = |key: &str, default: u32| {
            self.deployments
                .values()
                .filter(|w| w.mode == "age")
                .find_map(|w| w.env.get(key)?.parse().ok())
                .unwrap_or(default)
        };
        Grammar::new(
            &names,
            (
                age("SENTENCE_AGE_MIN", DEFAULT_AGE_MIN),
                age("SENTENCE_AGE_MAX", DEFAULT_AGE_MAX),
            ),
        )
    }

    /// The Services whose selector matches the workload's pods.
    pub fn services_of(&self, workload: &str) -> Vec<String> {
        let Some(w) = self.deployments.get(workload) else {
            return Vec::new();
        };
        self.services
            .iter()
            .filter(|(_, selector)| {
                !selector.is_empty() && selector.iter().all(|(k, v)| w.pod_labels.get(k) == Some(v))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }
}
