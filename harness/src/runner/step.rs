//! Executing one step: its actions in order (after the actions of earlier steps that
//! were not selected, as setup), then its expectations in order, stopping at the first
//! that does not pass; the diagnostics bundle when it did not pass.

use super::record::{StepRecord, StepStatus};
use super::world::{EnvError, World};
use crate::progress::Progress;
use crate::suite::Suite;
use crate::verdict::{Timing, Verdict};
use std::time::Instant;

/// Runs step `index` of `suite`, reported under `label` (the suite with its pass). The
/// actions of `prerequisites` (steps the filters left out) run first, so the cluster is
/// in the state this step assumes. When `version` is given, istiod must run it: a step
/// whose pass names another version than the cluster runs is an error, never a pass.
pub fn execute(
    world: &mut dyn World,
    suite: &Suite,
    index: usize,
    prerequisites: &[usize],
    label: &str,
    version: Option<&str>,
) -> StepRecord {
    let step = &suite.steps[index];
    let started = Instant::now();
    let mut log = Vec::new();
    let mut expectations = Vec::new();
    let mut status = StepStatus::Passed;
    let mut timing = Timing::default();
    let mut actions: Vec<(String, &crate::suite::Action)> = Vec::new();
    for &p in prerequisites {
        let pre = &suite.steps[p];
        actions.extend(
            pre.actions
                .iter()
                .map(|a| (format!("(setup from {label}::{}) ", pre.slug()), a)),
        );
    }
    actions.extend(step.actions.iter().map(|a| (String::new(), a)));
    // Reading istiod's version is part of preparing the step: counted with its actions.
    let actions_started = Instant::now();
    let istio_version = world.istio_version();
    match (version, istio_version.as_deref()) {
        (Some(want), Some(runs)) if want != runs => {
            status = StepStatus::Errored {
                message: format!(
                    "this step belongs to the pass on Istio {want}, but istiod runs {runs}; not judged"
                ),
            };
        }
        (Some(want), None) => {
            status = StepStatus::Errored {
                message: format!(
                    "this step belongs to the pass on Istio {want}, but which version istiod runs cannot be read; not judged"
                ),
            };
        }
        _ => {}
    }
    if let Some(runs) = &istio_version {
        log.push(format!("istiod runs Istio {runs}"));
    }
    if status == StepStatus::Passed {
        for (prefix, action) in actions {
            log.push(format!("do: {prefix}{action}"));
            if let Err(EnvError { phase, message }) = world.act(suite, action, &mut log) {
                status = StepStatus::Errored {
                    message: format!("{prefix}{action}: {phase}: {message}"),
                };
                break;
            }
        }
    }
    if status == StepStatus::Passed
        && let Some(want) = version
    {
        // The step judges the pass on `want`: every proxy must run it, not only istiod
        // (an injector left on the old proxy, a pod the upgrade did not restart).
        match world.proxies_not_on(want) {
            Ok((off, _)) if off.is_empty() => {}
            Ok((off, checked)) => {
                status = StepStatus::Errored {
                    message: format!(
                        "this step belongs to the pass on Istio {want}, but {} of {checked} proxies run another version: {}; not judged",
                        off.len(),
                        off.join(", ")
                    ),
                };
            }
            Err(e) => {
                status = StepStatus::Errored {
                    message: format!("cannot tell which version the proxies run: {e}"),
                };
            }
        }
    }
    timing.actions = actions_started.elapsed();
    if status == StepStatus::Passed {
        status = judge_all(world, suite, step, &mut log, &mut timing, &mut expectations);
    }
    let diagnostics = if status == StepStatus::Passed {
        None
    } else {
        world.diagnostics(suite, step, label)
    };
    if let Some(dir) = &diagnostics
        && let StepStatus::Failed { message } | StepStatus::Errored { message } = &mut status
    {
        message.push_str(&format!(" [diagnostics: {}]", dir.display()));
    }
    StepRecord {
        suite: label.to_string(),
        slug: step.slug(),
        title: step.title.clone(),
        outcome: step.outcome.clone(),
        status,
        duration: started.elapsed(),
        log,
        expectations,
        diagnostics,
        istio_version,
        timing,
    }
}

/// Judges the step's expectations in order, stopping at the first that does not pass;
/// each goes into `expectations` (and a line into `log`). The status says how it ended.
pub fn judge_all(
    world: &mut dyn World,
    suite: &Suite,
    step: &crate::suite::Step,
    log: &mut Vec<String>,
    timing: &mut Timing,
    expectations: &mut Vec<crate::verdict::Judged>,
) -> StepStatus {
    for expectation in &step.expect {
        let judged = world.judge(suite, step, expectation);
        let j = &judged.judgement;
        log.push(format!(
            "expect: {} → {}: {}",
            judged.description,
            j.verdict.mark(),
            j.evidence.summary
        ));
        timing.add(&j.evidence.timing);
        let message = format!("{}: {}", judged.description, j.evidence.summary);
        let verdict = j.verdict;
        expectations.push(judged);
        match verdict {
            Verdict::Passed => continue,
            Verdict::Failed => return StepStatus::Failed { message },
            Verdict::Errored => return StepStatus::Errored { message },
        }
    }
    StepStatus::Passed
}

/// The suite's teardown actions, all of them even when one fails; the first error is
/// returned.
pub fn teardown(world: &mut dyn World, suite: &Suite, progress: &Progress) -> Result<(), EnvError> {
    let mut first_error = None;
    for action in &suite.teardown {
        progress.line(&format!("teardown {}: {action}", suite.name));
        let mut log = Vec::new();
        if let Err(e) = world.act(suite, action, &mut log) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
