//! `proxy-versions`: in an upgrade run, which control plane each workload's proxies
//! belong to — the `--upgrade-from` version and its revision (`old`), or the
//! `--istio-version` and its revision (`new`: `default` in place, `1-31-2` as a
//! canary). A proxy is read from the pod: the image tag of its `istio-proxy` container
//! (sidecar, native sidecar or the gateway's own) and the revision the injector wrote
//! (annotation `istio.io/rev`, else the pod label). Every pod's version is in the
//! evidence, so a mixed-revision verdict shows which side of each edge ran what. Once
//! the pods are right, every ready istiod's `/debug/syncz` must show each proxy served by
//! an istiod of its side's revision: a pod can carry the new image and revision and
//! still be served by the old control plane.
//!
//! Polled until it holds; once a workload's rollout is complete its pods will not
//! change by themselves, so a proxy of the wrong revision there is final (the injector
//! chose it) and reported at once.
//!
//! Just over 400 lines with its tests: the schema, the look per workload and the wait
//! belong together; which istiod serves a proxy is `served_by.rs`.

use super::served_by::{Proxy, Served, UNKNOWN_SERVER, served};
use super::{Env, secs};
use crate::cli::UpgradeMode;
use crate::cluster::rollout::{self, RolloutState};
use crate::cluster::{istio, workloads};
use crate::config::RunConfig;
use crate::deadlines;
use crate::suite::duration::HumanDuration;
use crate::suite::model::names;
use crate::suite::validation::Validation;
use crate::suite::{Expectation, INGRESS_GATEWAY_WORKLOAD, SuiteError};
use crate::telemetry::xds_sync;
use crate::verdict::{Evidence, Judgement};
use crate::wait::{self, Check};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::fmt;
use std::time::{Duration, Instant};

fn proxy_versions_deadline() -> HumanDuration {
    HumanDuration(deadlines::SIDECARS)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyVersions {
    /// Workloads (or `istio-ingressgateway`) whose proxies run the version upgraded to.
    #[serde(default)]
    pub new: Vec<Spanned<String>>,
    /// Workloads (or `istio-ingressgateway`) whose proxies still run the version the
    /// upgrade started from.
    #[serde(default)]
    pub old: Vec<Spanned<String>>,
    #[serde(default = "proxy_versions_deadline")]
    pub deadline: HumanDuration,
}

/// How the summary of a judgement that holds starts.
const HOLDS: &str = "proxies as expected after ";

/// The proxies a judgement of this expectation that held saw, each workload with its
/// version and revision (`age 1.31.2 (1-31-2), sentences 1.30.3 (default)`).
pub fn seen(evidence: &Evidence) -> Option<&str> {
    evidence
        .summary
        .strip_prefix(HOLDS)?
        .split_once(": ")
        .map(|(_, proxies)| proxies)
}

/// One side of an upgrade: the version and the revision its proxies are injected by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    pub version: String,
    pub revision: String,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (revision {})", self.version, self.revision)
    }
}

/// (old, new) of the run's upgrade; None without `--upgrade-from`.
pub fn sides(config: &RunConfig) -> Option<(Side, Side)> {
    let from = config.upgrade_from.as_ref()?;
    let old = Side {
        version: from.clone(),
        revision: istio::DEFAULT_REVISION.to_string(),
    };
    let new = Side {
        version: config.istio_version.clone(),
        revision: match config.upgrade_mode {
            UpgradeMode::InPlace => istio::DEFAULT_REVISION.to_string(),
            UpgradeMode::Canary => istio::revision_name(&config.istio_version),
        },
    };
    Some((old, new))
}

/// What one pod's proxy is: (version, revision), or why there is none.
pub fn proxy_of(pod: &Pod) -> Result<(String, String), String> {
    let image = workloads::proxy_image(pod).ok_or("no istio-proxy container")?;
    let version = istio::image_tag(&image)
        .ok_or_else(|| format!("istio-proxy image {image} has no tag"))?
        .to_string();
    let meta = &pod.metadata;
    let revision = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(istio::REVISION_LABEL))
        .or_else(|| {
            meta.labels
                .as_ref()
                .and_then(|l| l.get(istio::REVISION_LABEL))
        })
        .cloned()
        .unwrap_or_else(|| istio::DEFAULT_REVISION.to_string());
    Ok((version, revision))
}

/// One workload at one look.
struct Look {
    /// `age: age-5f7c (1.31.2, revision 1-31-2)`
    line: String,
    /// `age 1.31.2 (1-31-2)`, for the summary.
    short: String,
    holds: bool,
    /// Wrong and cannot change by itself (rollout complete, pods final).
    settled: bool,
}

fn look(workload: &str, want: &Side, pods: &[Pod], rollout_done: bool) -> Look {
    let mut seen = Vec::new();
    let mut holds = !pods.is_empty();
    let mut wrong_for_good = false;
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match proxy_of(pod) {
            Ok((version, revision)) => {
                let right = version == want.version && revision == want.revision;
                holds &= right;
                wrong_for_good |= !right;
                seen.push((
                    name,
                    format!("{version}, revision {revision}"),
                    version,
                    revision,
                ));
            }
            Err(why) => {
                holds = false;
                wrong_for_good = true;
                seen.push((name, why, "none".into(), "-".into()));
            }
        }
    }
    let described = if seen.is_empty() {
        "no pods".to_string()
    } else {
        seen.iter()
            .map(|(pod, what, _, _)| format!("{pod} ({what})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut versions: Vec<String> = seen
        .iter()
        .map(|(_, _, v, r)| format!("{v} ({r})"))
        .collect();
    versions.dedup();
    Look {
        line: format!("{workload}: {described} — expected {want}"),
        short: format!(
            "{workload} {}",
            if versions.is_empty() {
                "no pods".to_string()
            } else {
                versions.join("+")
            }
        ),
        holds,
        settled: rollout_done && wrong_for_good,
    }
}

/// The pods of a workload (the gateway's by its selector) and whether its rollout is
/// complete.
pub(super) async fn pods_and_rollout(
    env: &Env<'_>,
    workload: &str,
) -> Result<(Vec<Pod>, bool), String> {
    let client = &env.cluster.client;
    let (namespace, deployment, pods) = if workload == INGRESS_GATEWAY_WORKLOAD {
        let namespace = env.config.ingress_namespace.clone();
        let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
            .list(&ListParams::default().labels(istio::INGRESS_GATEWAY_SELECTOR))
            .await
            .map_err(|e| {
                let e = crate::words::Said::said(&e);
                format!("cannot list the ingress gateway's pods in {namespace}: {e}")
            })?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        (namespace, istio::INGRESS_GATEWAY.to_string(), pods)
    } else {
        let namespace = env.config.app_namespace.clone();
        let pods = workloads::pods_of(client, &namespace, workload).await?;
        (namespace, workload.to_string(), pods)
    };
    let done = match rollout::observe(client, &namespace, &deployment).await {
        Ok(o) => rollout::rollout_state(&o.deployment) == RolloutState::Done,
        Err(_) => false,
    };
    Ok((pods, done))
}

/// How a look ended the wait.
enum Ended {
    Holds(Vec<String>, Vec<String>),
    Settled(Vec<String>, Vec<String>),
    Broken(String),
}

impl ProxyVersions {
    /// The part of the step's time it spends (see [`Part`](crate::verdict::Part)).
    pub fn part(&self) -> crate::verdict::Part {
        crate::verdict::Part::Convergence
    }

    /// The least time it takes in a world already as expected: nothing beyond the
    /// cluster's own waits.
    pub fn least_time(&self, _scrape: Duration) -> Duration {
        Duration::ZERO
    }

    pub fn validate(
        &self,
        ctx: &mut Validation<'_>,
        _earlier: &[Expectation],
    ) -> Result<(), SuiteError> {
        if self.new.is_empty() && self.old.is_empty() {
            return Err(ctx.at_step("`proxy-versions` names no workload"));
        }
        for w in self.new.iter().chain(&self.old) {
            ctx.workload(w, true)?;
        }
        if let Some(both) = self
            .new
            .iter()
            .find(|n| self.old.iter().any(|o| o.value == n.value))
        {
            return Err(ctx.error(
                &both.referenced,
                format!("`{}` is listed as both new and old", both.value),
            ));
        }
        Ok(())
    }

    pub fn deadline(&self) -> Duration {
        self.deadline.0
    }

    /// The workloads listed on the new side, in order.
    pub fn new_side(&self) -> Vec<String> {
        self.new.iter().map(|w| w.value.clone()).collect()
    }

    pub async fn judge(&self, env: &Env<'_>) -> Judgement {
        let started = Instant::now();
        let Some((old, new)) = sides(env.config) else {
            return Judgement::errored(
                "`proxy-versions` needs an upgrade run (--upgrade-from): there is no old and new version to tell apart",
                Duration::ZERO,
            );
        };
        let wanted: Vec<(&str, &Side)> = self
            .new
            .iter()
            .map(|w| (w.value.as_str(), &new))
            .chain(self.old.iter().map(|w| (w.value.as_str(), &old)))
            .collect();
        let result = wait::until(self.deadline.0, deadlines::POLL, || async {
            let mut lines = Vec::new();
            let mut shorts = Vec::new();
            let mut failing = Vec::new();
            let mut settled = false;
            let mut proxies = Vec::new();
            for (workload, side) in &wanted {
                let (pods, done) = match pods_and_rollout(env, workload).await {
                    Ok(x) => x,
                    Err(e) => return Check::Ready(Ended::Broken(e)),
                };
                let l = look(workload, side, &pods, done);
                if !l.holds {
                    failing.push(l.line.clone());
                    settled |= l.settled;
                }
                shorts.push(l.short);
                lines.push(l.line);
                proxies.extend(pods.iter().filter_map(|p| {
                    Some(Proxy {
                        workload: workload.to_string(),
                        id: xds_sync::proxy_id(
                            p.metadata.name.as_deref()?,
                            p.metadata.namespace.as_deref()?,
                        ),
                        side: (*side).clone(),
                        rollout_done: done,
                    })
                }));
            }
            if !failing.is_empty() {
                return if settled {
                    Check::Ready(Ended::Settled(failing, lines))
                } else {
                    Check::NotYet(failing.join("; "))
                };
            }
            match served(env, &proxies).await {
                Served::Right(served) => {
                    lines.extend(served);
                    Check::Ready(Ended::Holds(shorts, lines))
                }
                Served::Wrong {
                    wrong,
                    settled: true,
                } => {
                    lines.extend(wrong.iter().cloned());
                    Check::Ready(Ended::Settled(wrong, lines))
                }
                Served::Wrong { wrong, .. } => Check::NotYet(wrong.join("; ")),
                Served::Unknown(why) => Check::NotYet(format!("{UNKNOWN_SERVER}: {why}")),
            }
        })
        .await;
        let elapsed = started.elapsed();
        match result {
            Ok(Ended::Holds(shorts, lines)) => Judgement::passed(
                Evidence::new(format!(
                    "{HOLDS}{}: {}",
                    secs(elapsed),
                    shorts.join(", ")
                ))
                .with_details(lines),
                elapsed,
            ),
            Ok(Ended::Settled(failing, lines)) => Judgement::failed(
                Evidence::new(format!(
                    "{}; the rollouts are complete, so these pods will not change ({} after the start)",
                    failing.join("; "),
                    secs(elapsed)
                ))
                .with_details(lines),
                elapsed,
            ),
            Ok(Ended::Broken(e)) => Judgement::errored(e, elapsed),
            Err(wait::WaitError::Deadline { last, .. }) if last.starts_with(UNKNOWN_SERVER) => {
                Judgement::errored(format!("{last}; after {}", secs(elapsed)), elapsed)
            }
            Err(wait::WaitError::Deadline { last, .. }) => Judgement::failed(
                Evidence::new(format!("{last}; after {}", secs(elapsed))),
                elapsed,
            ),
            Err(wait::WaitError::Aborted(why)) => Judgement::errored(why, elapsed),
        }
    }
}

impl fmt::Display for ProxyVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.new.is_empty() {
            parts.push(format!(
                "{} on the new version and revision",
                names(&self.new)
            ));
        }
        if !self.old.is_empty() {
            parts.push(format!("{} on the old", names(&self.old)));
        }
        write!(
            f,
            "proxy versions: {} (within {})",
            parts.join("; "),
            self.deadline
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(image: &str, revision: Option<&str>) -> Pod {
        let annotations = revision
            .map(|r| serde_json::json!({"istio.io/rev": r}))
            .unwrap_or(serde_json::json!({}));
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "age-1", "annotations": annotations},
            "spec": {"initContainers": [{"name": "istio-proxy", "image": image, "restartPolicy": "Always"}],
                     "containers": [{"name": "age"}]}}))
        .unwrap()
    }

    #[test]
    fn a_proxy_is_its_image_tag_and_the_revision_that_injected_it() {
        let side = Side {
            version: "1.31.2".into(),
            revision: "1-31-2".into(),
        };
        let right = look(
            "age",
            &side,
            &[pod("docker.io/istio/proxyv2:1.31.2", Some("1-31-2"))],
            true,
        );
        assert!(right.holds && !right.settled, "{}", right.line);
        assert_eq!(right.short, "age 1.31.2 (1-31-2)");
        let old = look(
            "age",
            &side,
            &[pod("docker.io/istio/proxyv2:1.30.3", None)],
            true,
        );
        assert!(!old.holds && old.settled, "{}", old.line);
        assert!(
            old.line.contains("1.30.3, revision default")
                && old.line.contains("expected 1.31.2 (revision 1-31-2)"),
            "{}",
            old.line
        );
        let rolling = look(
            "age",
            &side,
            &[pod("docker.io/istio/proxyv2:1.30.3", None)],
            false,
        );
        assert!(!rolling.holds && !rolling.settled);
        assert!(!look("age", &side, &[], true).holds);
        let evidence = Evidence::new(format!("{HOLDS}0.3 s: age 1.31.2 (1-31-2)"));
        assert_eq!(seen(&evidence), Some("age 1.31.2 (1-31-2)"));
        assert_eq!(seen(&Evidence::new("age: no pods")), None);
    }
}
