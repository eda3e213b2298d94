//! The TLS checks judged on every ready replica of the ingress gateway, each through a
//! forward of its own. One forward that takes the replicas in turn is not enough: a
//! rejection check interleaves two clients (the refused one and the trusted control),
//! so with an even number of replicas the refused client would only ever meet every
//! other replica, and one replica still serving without a client certificate could hide
//! behind its neighbours. Behind an address given on the command line (a load
//! balancer) the replicas cannot be told apart, and the evidence says so.

use crate::cluster::portforward::{self, Forward, Workload};
use crate::probe::http::Target;
use crate::verdict::{Evidence, Judgement, Verdict};
use std::future::Future;
use std::sync::Arc;

/// Where a check runs: one gateway replica (by pod name), or the given address.
pub struct Replica {
    pub pod: Option<String>,
    pub target: Target,
    /// Held while the check runs: dropping it closes the forward.
    _forward: Option<Forward>,
}

/// A forward to each ready gateway replica, or the one target the run was given.
pub async fn replicas(pods: Option<&Workload>, given: &Target) -> Result<Vec<Replica>, String> {
    let Some(workload) = pods else {
        return Ok(vec![Replica {
            pod: None,
            target: given.clone(),
            _forward: None,
        }]);
    };
    let forwards = portforward::each_ready(workload).await?;
    Ok(forwards
        .into_iter()
        .map(|(pod, forward)| Replica {
            pod: Some(pod),
            target: Target {
                address: forward.local,
                health: Some(Arc::clone(&forward.health)),
            },
            _forward: Some(forward),
        })
        .collect())
}

/// Runs `check` on every replica at once and judges them together: passed when each
/// passed; otherwise the first failed replica (else the first errored one) decides,
/// named, with how the others ended.
pub async fn judge<F, Fut>(replicas: Vec<Replica>, check: F) -> Judgement
where
    F: Fn(&Replica) -> Result<Fut, String>,
    Fut: Future<Output = Judgement> + Send + 'static,
{
    let mut tasks = Vec::new();
    for replica in &replicas {
        match check(replica) {
            Ok(future) => tasks.push(tokio::spawn(future)),
            Err(e) => return Judgement::errored(e, std::time::Duration::ZERO),
        }
    }
    let mut judged = Vec::new();
    for (replica, task) in replicas.iter().zip(tasks) {
        let judgement = task.await.unwrap_or_else(|e| {
            Judgement::errored(
                format!("the check of this replica stopped: {e}"),
                std::time::Duration::ZERO,
            )
        });
        judged.push((replica.pod.clone(), judgement));
    }
    combine(judged)
}

/// One judgement from each replica's (see [`judge`]).
pub fn combine(judged: Vec<(Option<String>, Judgement)>) -> Judgement {
    let elapsed = judged
        .iter()
        .map(|(_, j)| j.elapsed)
        .max()
        .unwrap_or_default();
    if let [(None, only)] = judged.as_slice() {
        let mut only = only.clone();
        only.evidence.details.push(
            "through the address given on the command line: the gateway replicas behind it are not checked one by one".into(),
        );
        return only;
    }
    let name = |pod: &Option<String>| pod.clone().unwrap_or_else(|| "the gateway".into());
    let outcome = |(pod, j): &(Option<String>, Judgement)| {
        format!(
            "{}: {} ({})",
            name(pod),
            j.verdict.mark(),
            j.evidence.summary
        )
    };
    let decisive = judged
        .iter()
        .find(|(_, j)| j.verdict == Verdict::Failed)
        .or_else(|| judged.iter().find(|(_, j)| j.verdict == Verdict::Errored));
    match decisive {
        None => {
            let names: Vec<String> = judged.iter().map(|(p, _)| name(p)).collect();
            let first = judged
                .first()
                .map(|(_, j)| j.evidence.summary.clone())
                .unwrap_or_default();
            let mut details = vec![format!(
                "each of the {} ready gateway replicas checked through a forward of its own",
                judged.len()
            )];
            for (pod, j) in &judged {
                details.extend(
                    j.evidence
                        .details
                        .iter()
                        .map(|d| format!("{}: {d}", name(pod))),
                );
            }
            Judgement::passed(
                Evidence::new(format!(
                    "on each of the {} ready gateway replicas ({}): {first}",
                    judged.len(),
                    names.join(", ")
                ))
                .with_details(details),
                elapsed,
            )
        }
        Some((pod, j)) => {
            let mut details = j.evidence.details.clone();
            details.push(format!(
                "every replica: {}",
                judged.iter().map(outcome).collect::<Vec<_>>().join("; ")
            ));
            Judgement {
                verdict: j.verdict,
                evidence: Evidence::new(format!(
                    "gateway replica {} of {}: {}",
                    name(pod),
                    judged.len(),
                    j.evidence.summary
                ))
                .with_details(details),
                elapsed,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn passed(summary: &str) -> Judgement {
        Judgement::passed(Evidence::new(summary), Duration::from_millis(10))
    }

    #[test]
    fn one_replica_failing_among_passing_ones_fails_the_check_naming_it() {
        let j = combine(vec![
            (Some("gw-a".into()), passed("3 consecutive rejections")),
            (
                Some("gw-b".into()),
                Judgement::failed(
                    Evidence::new("the gateway answered HTTP at attempt 1"),
                    Duration::from_secs(1),
                ),
            ),
            (Some("gw-c".into()), passed("3 consecutive rejections")),
        ]);
        assert_eq!(j.verdict, Verdict::Failed);
        assert!(
            j.evidence.summary.starts_with("gateway replica gw-b of 3:"),
            "{}",
            j.evidence.summary
        );
        assert!(j.evidence.details.iter().any(|d| d.contains("gw-a: PASS")));
        assert_eq!(j.elapsed, Duration::from_secs(1));
    }

    #[test]
    fn a_failure_outweighs_an_error_and_all_passing_names_every_replica() {
        let j = combine(vec![
            (
                Some("gw-a".into()),
                Judgement::errored("port-forward", Duration::ZERO),
            ),
            (
                Some("gw-b".into()),
                Judgement::failed(Evidence::new("no alert"), Duration::ZERO),
            ),
        ]);
        assert_eq!(j.verdict, Verdict::Failed);
        let j = combine(vec![
            (Some("gw-a".into()), passed("ok")),
            (Some("gw-b".into()), passed("ok")),
        ]);
        assert_eq!(j.verdict, Verdict::Passed);
        assert!(
            j.evidence.summary.contains("(gw-a, gw-b)"),
            "{}",
            j.evidence.summary
        );
    }

    #[test]
    fn behind_a_given_address_the_evidence_says_replicas_were_not_told_apart() {
        let j = combine(vec![(None, passed("ok"))]);
        assert_eq!(j.verdict, Verdict::Passed);
        assert!(
            j.evidence
                .details
                .iter()
                .any(|d| d.contains("not checked one by one"))
        );
    }
}
