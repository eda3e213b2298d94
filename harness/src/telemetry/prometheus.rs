//! A small client of the Prometheus HTTP API (`/api/v1/query`): instant vectors and
//! scalars, with bounded requests.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Sample {
    metric: Labels,
    value: (f64, String),
}

impl Prometheus {
    pub fn new(base: &str) -> Result<Self, String> {
        crate::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the Prometheus client: {e}"))?;
        Ok(Prometheus {
            base: base.trim_end_matches('/').to_string(),
            client,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET <base><path>?<query>`, bounded; an unreachable Prometheus says so.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Response, String> {
        self.client
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "Prometheus at {} is unreachable: {}",
                    self.base,
                    crate::probe::classify::chain(&e)
                )
            })
    }

    async fn query_raw(&self, promql: &str) -> Result<Data, String> {
        let response = self.get("/api/v1/query", &[("query", promql)]).await?;
        let status = response.status();
        let envelope: Envelope = response.json().await.map_err(|e| {
            format!("Prometheus answered {status} with something that is not its API: {e}")
        })?;
        if envelope.status != "success" {
            return Err(format!(
                "Prometheus refused `{promql}`: {}",
                envelope.error.unwrap_or_else(|| "no reason given".into())
            ));
        }
        envelope
            .data
            .ok_or_else(|| format!("Prometheus returned no data for `{promql}`"))
    }

    /// An instant vector: every series with its labels and value.
    pub async fn vector(&self, promql: &str) -> Result<Vec<(Labels, f64)>, String> {
        let data = self.query_raw(promql).await?;
        if data.result_type != "vector" {
            return Err(format!(
                "`{promql}` returned a {}, not a vector",
                data.result_type
            ));
        }
        let samples: Vec<Sample> = serde_json::from_value(data.result)
            .map_err(|e| format!("unreadable vector for `{promql}`: {e}"))?;
        samples
            .into_iter()
            .map(|s| {
                s.value
                    .1
                    .parse::<f64>()
                    .map(|v| (s.metric, v))
                    .map_err(|_| format!("unreadable sample value `{}` for `{promql}`", s.value.1))
            })
            .collect()
    }

    /// A scalar, or the single value of a one-series vector; None for an empty vector.
    pub async fn value(&self, promql: &str) -> Result<Option<f64>, String> {
        let data = self.query_raw(promql).await?;
        match data.result_type.as_str() {
            "scalar" => {
                let (_, v): (f64, String) = serde_json::from_value(data.result)
                    .map_err(|e| format!("unreadable scalar for `{promql}`: {e}"))?;
                v.parse()
                    .map(Some)
                    .map_err(|_| format!("unreadable scalar `{v}`"))
            }
            "vector" => {
                let samples: Vec<Sample> = serde_json::from_value(data.result)
                    .map_err(|e| format!("unreadable vector for `{promql}`: {e}"))?;
                match samples.as_slice() {
                    [] => Ok(None),
                    [one] => one
                        .value
                        .1
                        .parse()
                        .map(Some)
                        .map_err(|_| format!("unreadable value `{}`", one.value.1)),
                    _ => Err(format!(
                        "`{promql}` returned {} series, expected one",
                        samples.len()
                    )),
                }
            }
            other => Err(format!("`{promql}` returned a {other}")),
        }
    }

    /// The configuration Prometheus runs with (`/api/v1/status/config`, YAML text).
    pub async fn config_yaml(&self) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Status {
            status: String,
            data: Option<ConfigData>,
        }
        #[derive(Deserialize)]
        struct ConfigData {
            yaml: String,
        }
        let status: Status = self
            .get("/api/v1/status/config", &[])
            .await?
            .json()
            .await
            .map_err(|e| format!("Prometheus' configuration is unreadable: {e}"))?;
        match (status.status.as_str(), status.data) {
            ("success", Some(data)) => Ok(data.yaml),
            _ => Err("Prometheus did not return its configuration".into()),
        }
    }

    /// Prometheus' own clock (`time()`), so phase boundaries do not depend on the
    /// harness's clock agreeing with the cluster's.
    pub async fn now(&self) -> Result<f64, String> {
        self.value("time()")
            .await?
            .ok_or_else(|| "Prometheus returned no value for time()".to_string())
    }

    /// The time of the oldest "latest scrape" over the targets `up_selector` names
    /// (e.g. `up{job="kubernetes-pods"}`): once it passes a moment, each of them has
    /// been scraped since. None when no target matches.
    pub async fn oldest_last_scrape(&self, up_selector: &str) -> Result<Option<f64>, String> {
        self.value(&format!("min(timestamp({up_selector}))")).await
    }
}
