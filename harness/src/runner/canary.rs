//! The canary upgrade as the runner carries it out: which steps of
//! `canary-upgrade/suite.yaml` each of the two trials runs, in which order with the
//! revision moves, and how they are judged. The cluster side of each move (the exact
//! istioctl and kubectl equivalents, and what Istio documents about them) is in
//! `world/canary.rs`.
//!
//! The suite's first step prepares the app on the old revision (its actions, then its
//! expectations); each later step says with its `proxy-versions` expectation which
//! workloads must run the new revision, and the runner moves what is not there yet
//! before judging the step, so the file is the one place that says what moves when:
//!
//! - `upgrade::canary-mixed`: the first step; the new version installed as a revision
//!   beside the old one (istiod only: the gateway stays); then every step but the last,
//!   each after its moves. The first move detaches the namespace from
//!   `istio-injection` (which would win over any `istio.io/rev`) and pins the workloads
//!   that stay to the old revision, so a restart cannot leave them without a sidecar.
//! - `upgrade::canary-complete`: the last step's moves (the ingress gateway with them:
//!   Istio's docs upgrade gateways last, after the new revision proved itself), the old
//!   revision removed (`default` tag to the new one, old one uninstalled), the last
//!   step judged, the suite's teardown.
//!
//! A stage carried out as setup (of a later stage or a second-pass step) does what it
//! does without judging, as the earlier steps of a suite are carried out for a selected
//! step. A stage that judges ends FAILED when an expectation on Istio's behaviour does
//! not hold and ERROR when the harness or the cluster failed, like any step.
//!
//! Longer than most files because the checks of the canary file at load (everything
//! moved once, nothing back, the gateway last) and the sequence they guarantee are one
//! idea and are tested together.

use super::record::StepStatus;
use super::schedule::Stage;
use super::step;
use super::world::{EnvError, World};
use crate::expect::{Expectation, proxy_versions};
use crate::suite::{INGRESS_GATEWAY_WORKLOAD, Suite};
use crate::verdict::{Judged, Timing};
use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

/// The folder (in the suites folder) holding the canary steps.
pub const SUITE: &str = "canary-upgrade";

/// Which control plane a workload is sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Old,
    New,
}

/// What the world does to the cluster during a canary upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CanaryOp {
    /// The new version installed as a revision beside the old control plane (istiod
    /// only; the ingress gateway stays on the old revision).
    InstallRevision,
    /// The app namespace no longer selects a revision (`istio-injection` removed): each
    /// workload's pod-template label `istio.io/rev` does.
    DetachNamespace,
    /// Pod-template label `istio.io/rev` set to the side's revision and the pods
    /// restarted, so the injector of that revision re-injects them; waits for the
    /// rollouts.
    Label(Vec<(String, Side)>),
    /// The ingress gateway re-rendered for the new revision (upgraded in place).
    MoveGateway,
    /// The new revision made the `default` one, the old revision uninstalled, the app
    /// namespace labelled `istio-injection=enabled` again (served by the new revision).
    RemoveOld,
}

impl fmt::Display for CanaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CanaryOp::InstallRevision => {
                f.write_str("install the new version as a revision beside the old one")
            }
            CanaryOp::DetachNamespace => f.write_str(
                "remove the app namespace's istio-injection label (it wins over istio.io/rev)",
            ),
            CanaryOp::Label(moves) => {
                let side = |want: Side| {
                    moves
                        .iter()
                        .filter(|(_, s)| *s == want)
                        .map(|(w, _)| w.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let (new, old) = (side(Side::New), side(Side::Old));
                let mut parts = Vec::new();
                if !new.is_empty() {
                    parts.push(format!("move {new} to the new revision"));
                }
                if !old.is_empty() {
                    parts.push(format!("pin {old} to the old revision"));
                }
                write!(f, "{} (restart, wait for the rollouts)", parts.join("; "))
            }
            CanaryOp::MoveGateway => f.write_str("move the ingress gateway to the new revision"),
            CanaryOp::RemoveOld => {
                f.write_str("make the new revision the default one and uninstall the old revision")
            }
        }
    }
}

/// One thing a stage does, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The actions of the suite's step `index`.
    Actions(usize),
    /// A change of revisions, carried out by the world.
    Cluster(CanaryOp),
    /// The expectations of step `index` (only when the stage is a trial).
    Judge(usize),
    /// The suite's teardown (unless `--keep`).
    Teardown,
}

/// What the two canary trials do, derived from (and checked against) the suite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryPlan {
    pub mixed: Vec<Op>,
    pub complete: Vec<Op>,
}

/// The `proxy-versions` expectation of a step: (new, old) workloads.
fn sides_of(step: &crate::suite::Step) -> Option<(Vec<String>, Vec<String>)> {
    step.expect.iter().find_map(|e| match e {
        Expectation::ProxyVersions(p) => Some((
            p.new_side(),
            p.old.iter().map(|w| w.value.clone()).collect(),
        )),
        _ => None,
    })
}

impl CanaryPlan {
    /// The plan for `suite`, or a one-line reason it is not a canary sequence.
    pub fn new(suite: &Suite) -> Result<CanaryPlan, String> {
        let file = format!("{SUITE}/suite.yaml");
        let n = suite.steps.len();
        if n < 3 {
            return Err(format!(
                "{file}: a canary upgrade needs at least three steps (prepare on the old revision, at least one mixed step, the complete one), found {n}"
            ));
        }
        let mut everything: BTreeSet<String> = suite.workloads.iter().cloned().collect();
        everything.insert(INGRESS_GATEWAY_WORKLOAD.to_string());
        let mut moved: BTreeSet<String> = BTreeSet::new();
        let mut mixed = vec![
            Op::Actions(0),
            Op::Judge(0),
            Op::Cluster(CanaryOp::InstallRevision),
        ];
        let mut complete = Vec::new();
        for (index, step) in suite.steps.iter().enumerate() {
            let name = step.trial_name();
            let (new, old) = sides_of(step).ok_or_else(|| {
                format!("{file}: step {name} has no `proxy-versions`: every canary step says where each proxy runs")
            })?;
            let listed: BTreeSet<String> = new.iter().chain(&old).cloned().collect();
            if listed != everything {
                return Err(format!(
                    "{file}: the `proxy-versions` of {name} must list every workload and {INGRESS_GATEWAY_WORKLOAD} once, as new or old (it lists {})",
                    listed.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
            if index == 0 {
                if !new.is_empty() {
                    return Err(format!(
                        "{file}: {name} prepares the app on the old revision; it cannot list new proxies"
                    ));
                }
                continue;
            }
            if !step.actions.is_empty() {
                return Err(format!(
                    "{file}: {name} has actions; after the first step canary steps change the cluster only by moving proxies (put actions in the first step)"
                ));
            }
            if let Some(back) = moved.iter().find(|w| old.contains(w)) {
                return Err(format!(
                    "{file}: {name} lists {back} as old after an earlier step moved it to the new revision"
                ));
            }
            let last = index + 1 == n;
            let gateway = new.iter().any(|w| w == INGRESS_GATEWAY_WORKLOAD);
            if gateway && !last {
                return Err(format!(
                    "{file}: {name} moves {INGRESS_GATEWAY_WORKLOAD} before the last step; gateways move last (Istio's docs: after the new control and data plane proved themselves)"
                ));
            }
            if last && !old.is_empty() {
                return Err(format!(
                    "{file}: the last step {name} must list every proxy as new (the old revision is removed before it is judged); it lists {} as old",
                    old.join(", ")
                ));
            }
            let ops = if last { &mut complete } else { &mut mixed };
            let movers: Vec<String> = new
                .iter()
                .filter(|w| *w != INGRESS_GATEWAY_WORKLOAD && !moved.contains(*w))
                .cloned()
                .collect();
            let mut labels: Vec<(String, Side)> = Vec::new();
            if moved.is_empty() && !movers.is_empty() {
                ops.push(Op::Cluster(CanaryOp::DetachNamespace));
                labels.extend(
                    old.iter()
                        .filter(|w| *w != INGRESS_GATEWAY_WORKLOAD)
                        .map(|w| (w.clone(), Side::Old)),
                );
            }
            labels.extend(movers.iter().map(|w| (w.clone(), Side::New)));
            if !labels.is_empty() {
                ops.push(Op::Cluster(CanaryOp::Label(labels)));
            }
            moved.extend(movers);
            if last {
                if gateway {
                    ops.push(Op::Cluster(CanaryOp::MoveGateway));
                }
                ops.push(Op::Cluster(CanaryOp::RemoveOld));
            }
            ops.push(Op::Judge(index));
            if last {
                ops.push(Op::Teardown);
            }
        }
        Ok(CanaryPlan { mixed, complete })
    }

    pub fn ops(&self, stage: Stage) -> &[Op] {
        match stage {
            Stage::CanaryComplete => &self.complete,
            Stage::CanaryMixed | Stage::InPlace => &self.mixed,
        }
    }
}

/// How a canary stage went.
#[derive(Debug)]
pub struct StageRun {
    pub status: StepStatus,
    pub log: Vec<String>,
    pub expectations: Vec<Judged>,
    pub diagnostics: Option<PathBuf>,
    pub timing: Timing,
    /// The teardown failed (reported as a setup failure, never as the stage's verdict).
    pub teardown_error: Option<EnvError>,
}

/// What the step's `proxy-versions` saw (its judgements start at `first`), as
/// ` [proxies: age 1.31.2 (1-31-2), …]` for the message of a later expectation.
fn proxies_seen(step: &crate::suite::Step, judged: &[Judged], first: usize) -> Option<String> {
    step.expect
        .iter()
        .zip(judged.get(first..).unwrap_or_default())
        .find(|(e, _)| matches!(e, Expectation::ProxyVersions(_)))
        .and_then(|(_, j)| proxy_versions::seen(&j.judgement.evidence))
        .map(|proxies| format!(" [proxies: {proxies}]"))
}

/// Carries out `stage` of `plan` against `world`: judged when `judged` (its own trial),
/// else as setup. Stops at the first operation that errs or expectation that does not
/// pass.
pub fn run_stage(
    world: &mut dyn World,
    plan: &CanaryPlan,
    suite: &Suite,
    stage: Stage,
    judged: bool,
    keep: bool,
) -> StageRun {
    let mut run = StageRun {
        status: StepStatus::Passed,
        log: Vec::new(),
        expectations: Vec::new(),
        diagnostics: None,
        timing: Timing::default(),
        teardown_error: None,
    };
    for op in plan.ops(stage) {
        match op {
            Op::Actions(index) => {
                let step = &suite.steps[*index];
                let started = std::time::Instant::now();
                for action in &step.actions {
                    let prefix = format!("({}) ", step.trial_name());
                    run.log.push(format!("do: {prefix}{action}"));
                    if let Err(EnvError { phase, message }) = world.act(suite, action, &mut run.log)
                    {
                        run.status = StepStatus::Errored {
                            message: format!("{prefix}{action}: {phase}: {message}"),
                        };
                        return run;
                    }
                }
                run.timing.actions += started.elapsed();
            }
            Op::Cluster(op) => {
                let started = std::time::Instant::now();
                run.log.push(format!("do: {op}"));
                if let Err(EnvError { phase, message }) = world.canary(op, &mut run.log) {
                    run.status = StepStatus::Errored {
                        message: format!("{op}: {phase}: {message}"),
                    };
                    return run;
                }
                run.timing.actions += started.elapsed();
            }
            Op::Judge(index) if judged => {
                let step = &suite.steps[*index];
                run.log
                    .push(format!("judge: {} — {}", step.trial_name(), step.title));
                let first = run.expectations.len();
                let status = step::judge_all(
                    world,
                    suite,
                    step,
                    &mut run.log,
                    &mut run.timing,
                    &mut run.expectations,
                );
                let proxies = proxies_seen(step, &run.expectations, first).unwrap_or_default();
                let named = |message: String| format!("{}: {message}{proxies}", step.trial_name());
                run.status = match status {
                    StepStatus::Passed => continue,
                    StepStatus::Failed { message } => StepStatus::Failed {
                        message: named(message),
                    },
                    StepStatus::Errored { message } => StepStatus::Errored {
                        message: named(message),
                    },
                    other => other,
                };
                run.diagnostics = world.diagnostics(suite, step, super::schedule::UPGRADE_SUITE);
                if let Some(dir) = &run.diagnostics
                    && let StepStatus::Failed { message } | StepStatus::Errored { message } =
                        &mut run.status
                {
                    message.push_str(&format!(" [diagnostics: {}]", dir.display()));
                }
                return run;
            }
            Op::Judge(_) => {}
            Op::Teardown if keep => {}
            Op::Teardown => {
                for action in &suite.teardown {
                    run.log.push(format!("teardown: {action}"));
                    if let Err(e) = world.act(suite, action, &mut run.log) {
                        run.teardown_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::source::SuiteSource;

    fn embedded() -> Suite {
        crate::suite::load_one(&SuiteSource::embedded(), SUITE).unwrap()
    }

    #[test]
    fn the_backends_move_first_then_the_frontend_then_the_rest_with_the_gateway() {
        let plan = CanaryPlan::new(&embedded()).unwrap();
        let label = |pairs: &[(&str, Side)]| {
            Op::Cluster(CanaryOp::Label(
                pairs.iter().map(|(w, s)| (w.to_string(), *s)).collect(),
            ))
        };
        assert_eq!(
            plan.mixed,
            vec![
                Op::Actions(0),
                Op::Judge(0),
                Op::Cluster(CanaryOp::InstallRevision),
                Op::Cluster(CanaryOp::DetachNamespace),
                label(&[
                    ("sentences", Side::Old),
                    ("name", Side::Old),
                    ("age", Side::New),
                    ("name-v2", Side::New)
                ]),
                Op::Judge(1),
                label(&[("sentences", Side::New)]),
                Op::Judge(2),
            ]
        );
        assert_eq!(
            plan.complete,
            vec![
                label(&[("name", Side::New)]),
                Op::Cluster(CanaryOp::MoveGateway),
                Op::Cluster(CanaryOp::RemoveOld),
                Op::Judge(3),
                Op::Teardown,
            ]
        );
    }

    #[test]
    fn a_plan_that_moves_the_gateway_early_or_back_is_refused() {
        let source = SuiteSource::embedded();
        let edit = |from: &str, to: &str| {
            let mut s = source.clone();
            let path = std::path::PathBuf::from(SUITE).join("suite.yaml");
            let text = s.files[&path].replacen(from, to, 1);
            assert_ne!(text, s.files[&path], "{from}");
            s.files.insert(path, text);
            CanaryPlan::new(&crate::suite::load_one(&s, SUITE).unwrap()).unwrap_err()
        };
        let early = edit(
            "new: [age, name-v2]\n          old: [istio-ingressgateway, sentences, name]",
            "new: [age, name-v2, istio-ingressgateway]\n          old: [sentences, name]",
        );
        assert!(early.contains("gateways move last"), "{early}");
        let back = edit(
            "new: [sentences, age, name-v2]\n          old: [istio-ingressgateway, name]",
            "new: [sentences, name-v2]\n          old: [istio-ingressgateway, name, age]",
        );
        assert!(back.contains("lists age as old after"), "{back}");
        let missing = edit(
            "old: [istio-ingressgateway, sentences, name]",
            "old: [istio-ingressgateway, sentences]",
        );
        assert!(missing.contains("must list every workload"), "{missing}");
    }
}
