//! Istio's Prometheus addon (`samples/addons/prometheus.yaml` of the release), made
//! quicker before it is applied: its ConfigMap `prometheus` holds `prometheus.yml`,
//! whose `global.scrape_interval` (15 s upstream) the `kubernetes-pods` job that scrapes
//! the sidecars inherits. Each telemetry verdict waits two scrapes, so the interval is
//! set shorter (5 s by default, `--scrape-interval`); the `*-slow` jobs keep their own.
//! A user's own Prometheus (`--prometheus-url`) is never changed: the oracle reads the
//! interval back from `/api/v1/status/config`.

use serde_json::Value;
use std::time::Duration;

pub const CONFIG_MAP: &str = "prometheus";
pub const CONFIG_KEY: &str = "prometheus.yml";

/// `5s`, `1m30s` as Prometheus writes durations.
pub fn prometheus_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs())
    }
}

/// Sets `global.scrape_interval` (and a `scrape_timeout` that fits in it) in the
/// addon's ConfigMap among `documents`. Errors when the addon has no such ConfigMap.
pub fn set_scrape_interval(documents: &mut [Value], interval: Duration) -> Result<(), String> {
    let config_map = documents
        .iter_mut()
        .find(|d| {
            d.get("kind").and_then(Value::as_str) == Some("ConfigMap")
                && d.pointer("/metadata/name").and_then(Value::as_str) == Some(CONFIG_MAP)
        })
        .ok_or("the Prometheus addon has no ConfigMap `prometheus`")?;
    let text = config_map
        .pointer(&format!("/data/{CONFIG_KEY}"))
        .and_then(Value::as_str)
        .ok_or("the addon's ConfigMap has no prometheus.yml")?;
    let mut config: Value = serde_saphyr::from_str(text)
        .map_err(|e| format!("the addon's prometheus.yml is not YAML: {e}"))?;
    let global = config
        .as_object_mut()
        .ok_or("the addon's prometheus.yml is not a mapping")?
        .entry("global")
        .or_insert_with(|| Value::Object(Default::default()));
    let global = global
        .as_object_mut()
        .ok_or("`global` of the addon's prometheus.yml is not a mapping")?;
    global.insert(
        "scrape_interval".into(),
        Value::String(prometheus_duration(interval)),
    );
    // Prometheus refuses a scrape timeout longer than the interval.
    global.insert(
        "scrape_timeout".into(),
        Value::String(prometheus_duration(interval)),
    );
    let text = serde_saphyr::to_string(&config)
        .map_err(|e| format!("cannot write prometheus.yml back: {e}"))?;
    config_map["data"][CONFIG_KEY] = Value::String(text);
    Ok(())
}

/// The scrape interval of `job` in a Prometheus configuration (YAML as
/// `/api/v1/status/config` returns it): the job's own, else the global one, else
/// Prometheus' default of 1 m.
pub fn scrape_interval(config_yaml: &str, job: &str) -> Result<Duration, String> {
    let config: Value = serde_saphyr::from_str(config_yaml)
        .map_err(|e| format!("Prometheus' configuration is not YAML: {e}"))?;
    let job_interval = config
        .get("scrape_configs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|j| j.get("job_name").and_then(Value::as_str) == Some(job))
        .and_then(|j| j.get("scrape_interval"))
        .and_then(Value::as_str);
    let text = job_interval
        .or_else(|| {
            config
                .pointer("/global/scrape_interval")
                .and_then(Value::as_str)
        })
        .unwrap_or("1m");
    crate::suite::duration::HumanDuration::parse(text)
        .map(|d| d.0)
        .map_err(|e| format!("scrape interval `{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDON: &str = r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: prometheus
  namespace: istio-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: prometheus
  namespace: istio-system
data:
  prometheus.yml: |
    global:
      evaluation_interval: 1m
      scrape_interval: 15s
      scrape_timeout: 10s
    scrape_configs:
    - job_name: kubernetes-pods
      honor_labels: true
      kubernetes_sd_configs:
      - role: pod
    - job_name: kubernetes-pods-slow
      scrape_interval: 5m
      scrape_timeout: 30s
"#;

    #[test]
    fn the_addon_gets_the_shorter_interval_and_the_slow_jobs_keep_theirs() {
        let mut docs: Vec<Value> = serde_saphyr::from_multiple(ADDON).unwrap();
        set_scrape_interval(&mut docs, Duration::from_secs(5)).unwrap();
        let text = docs[1]["data"]["prometheus.yml"].as_str().unwrap();
        assert_eq!(
            scrape_interval(text, "kubernetes-pods").unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            scrape_interval(text, "kubernetes-pods-slow").unwrap(),
            Duration::from_secs(300)
        );
        let config: Value = serde_saphyr::from_str(text).unwrap();
        assert_eq!(config["global"]["scrape_timeout"], "5s");
        assert_eq!(config["global"]["evaluation_interval"], "1m");
    }

    #[test]
    fn an_addon_without_its_config_map_is_an_error() {
        let mut docs: Vec<Value> = serde_saphyr::from_multiple(ADDON).unwrap();
        docs.remove(1);
        assert!(set_scrape_interval(&mut docs, Duration::from_secs(5)).is_err());
        assert_eq!(
            scrape_interval("global: {}\n", "kubernetes-pods").unwrap(),
            Duration::from_secs(60),
            "Prometheus' default"
        );
    }
}
