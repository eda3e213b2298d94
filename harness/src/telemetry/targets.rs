//! The scrape targets a telemetry phase needs, and waiting on them. A baseline taken
//! before a proxy's first scrape misses its counters, so requests sent before the
//! phase would count in it: before the baseline, every pod whose proxy reports the
//! phase's traffic must be a target that is up and was scraped after the pod became
//! ready. A pod that never becomes one is an environment error naming it, never a "no
//! traffic" failure.

use super::prometheus::Prometheus;
use crate::wait::{self, Check};
use std::time::Duration;

/// A pod whose proxy's metrics the phase needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedTarget {
    pub namespace: String,
    pub pod: String,
    /// When the pod became ready (seconds since the epoch), if known.
    pub ready_since: Option<f64>,
}

/// What a phase waits on.
#[derive(Clone, Debug)]
pub enum Targets {
    /// The pods whose proxies report the phase's traffic (the app's sidecars and the
    /// ingress gateway).
    Pods(Vec<ExpectedTarget>),
    /// Every target matching an `up{...}` selector (a user's own setup, tests).
    Selector(String),
}

/// `a|b|c` for `pod=~"..."`: regex metacharacters escaped (a backslash, doubled inside
/// the PromQL string). Kubernetes names hold only `a-z`, `0-9`, `-` and `.`.
fn alternation(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            n.chars()
                .map(|c| {
                    if ".+*?()|[]{}^$\\".contains(c) {
                        format!("\\\\{c}")
                    } else {
                        c.to_string()
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("|")
}

impl Targets {
    /// The `up` selector of the targets.
    pub fn selector(&self) -> String {
        match self {
            Targets::Selector(s) => s.clone(),
            Targets::Pods(pods) => {
                let names: Vec<&str> = pods.iter().map(|p| p.pod.as_str()).collect();
                let namespaces: Vec<&str> = {
                    let mut n: Vec<&str> = pods.iter().map(|p| p.namespace.as_str()).collect();
                    n.sort();
                    n.dedup();
                    n
                };
                format!(
                    r#"up{{namespace=~"{}",pod=~"{}"}}"#,
                    alternation(&namespaces),
                    alternation(&names)
                )
            }
        }
    }

    /// Waits until every expected pod is a target that is up and was scraped after it
    /// became ready; returns a summary for the evidence, or why not (naming the pods).
    pub async fn ready(
        &self,
        prometheus: &Prometheus,
        deadline: Duration,
        pace: Duration,
    ) -> Result<String, String> {
        let Targets::Pods(pods) = self else {
            return Ok(format!("targets: every target of `{}`", self.selector()));
        };
        if pods.is_empty() {
            return Ok("targets: no proxy reports this phase's traffic".into());
        }
        let selector = self.selector();
        wait::until(deadline, pace, || async {
            let up = match prometheus.vector(&selector).await {
                Ok(v) => v,
                Err(e) => return Check::Abort(e),
            };
            let stamps = match prometheus.vector(&format!("timestamp({selector})")).await {
                Ok(v) => v,
                Err(e) => return Check::Abort(e),
            };
            let mut problems = Vec::new();
            for expected in pods {
                let matches = |labels: &super::prometheus::Labels| {
                    labels.get("pod").map(String::as_str) == Some(expected.pod.as_str())
                        && labels.get("namespace").map(String::as_str)
                            == Some(expected.namespace.as_str())
                };
                let Some((_, value)) = up.iter().find(|(l, _)| matches(l)) else {
                    problems.push(format!(
                        "pod {}/{} is not a Prometheus target (is its proxy scraped?)",
                        expected.namespace, expected.pod
                    ));
                    continue;
                };
                if *value != 1.0 {
                    problems.push(format!(
                        "the target of pod {}/{} is down (up = {value})",
                        expected.namespace, expected.pod
                    ));
                    continue;
                }
                let scraped = stamps.iter().find(|(l, _)| matches(l)).map(|(_, t)| *t);
                if let (Some(ready), Some(scraped)) = (expected.ready_since, scraped)
                    && scraped <= ready
                {
                    problems.push(format!(
                        "pod {}/{} was not scraped since it became ready",
                        expected.namespace, expected.pod
                    ));
                }
            }
            if problems.is_empty() {
                Check::Ready(format!(
                    "targets: {} proxies up and scraped since their pods became ready ({})",
                    pods.len(),
                    pods.iter()
                        .map(|p| p.pod.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            } else {
                Check::NotYet(problems.join("; "))
            }
        })
        .await
        .map_err(|e| match e {
            wait::WaitError::Deadline { after, last } => format!(
                "{last} — after {:.0} s; the telemetry baseline would miss its counters",
                after.as_secs_f64()
            ),
            wait::WaitError::Aborted(why) => why,
        })
    }

    /// Waits until every target was scraped after `moment` (Prometheus time); returns
    /// the oldest last scrape.
    pub async fn scraped_after(
        &self,
        prometheus: &Prometheus,
        moment: f64,
        deadline: Duration,
        pace: Duration,
    ) -> Result<f64, String> {
        let selector = self.selector();
        wait::until(deadline, pace, || async {
            match prometheus.oldest_last_scrape(&selector).await {
                Ok(Some(t)) if t > moment => Check::Ready(t),
                Ok(Some(_)) => Check::NotYet(format!(
                    "Prometheus has not scraped every target of `{selector}` again (is one down?)"
                )),
                Ok(None) => Check::NotYet(format!(
                    "no Prometheus target matches `{selector}`: are the proxies scraped?"
                )),
                Err(e) => Check::Abort(e),
            }
        })
        .await
        .map_err(|e| match e {
            wait::WaitError::Deadline { last, .. } => last,
            wait::WaitError::Aborted(why) => why,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_names_the_pods_and_their_namespaces() {
        let t = Targets::Pods(vec![
            ExpectedTarget {
                namespace: "sentences".into(),
                pod: "age-7d9f-x2".into(),
                ready_since: None,
            },
            ExpectedTarget {
                namespace: "istio-system".into(),
                pod: "istio-ingressgateway-5c-q".into(),
                ready_since: None,
            },
        ]);
        assert_eq!(
            t.selector(),
            r#"up{namespace=~"istio-system|sentences",pod=~"age-7d9f-x2|istio-ingressgateway-5c-q"}"#
        );
        assert_eq!(alternation(&["a.b"]), r"a\\.b");
    }
}
