//! Executing one step: its actions in order, then its expectations in order, stopping
//! at the first that does not pass.

use super::record::{StepRecord, StepStatus, Verdict};
use super::world::{EnvError, World};
use crate::progress::Progress;
use crate::suite::Suite;
use std::time::Instant;

/// Runs step `index` of `suite`. The actions of `prerequisites` (steps the filters left
/// out) run first, so the cluster is in the state this step assumes.
pub fn execute(
    world: &mut dyn World,
    suite: &Suite,
    index: usize,
    prerequisites: &[usize],
) -> StepRecord {
    let step = &suite.steps[index];
    let started = Instant::now();
    let mut log = Vec::new();
    let mut expectations = Vec::new();
    let mut status = StepStatus::Passed;
    let mut actions: Vec<(String, &crate::suite::Action)> = Vec::new();
    for &p in prerequisites {
        let pre = &suite.steps[p];
        actions.extend(
            pre.actions
                .iter()
                .map(|a| (format!("(setup from {}) ", pre.trial_name()), a)),
        );
    }
    actions.extend(step.actions.iter().map(|a| (String::new(), a)));
    for (prefix, action) in actions {
        log.push(format!("do: {prefix}{action}"));
        if let Err(EnvError { phase, message }) = world.act(suite, action, &mut log) {
            status = StepStatus::Errored {
                message: format!("{prefix}{action}: {phase}: {message}"),
            };
            break;
        }
    }
    if status == StepStatus::Passed {
        for expectation in &step.expect {
            let record = world.judge(suite, step, expectation);
            log.push(format!(
                "expect: {} → {:?}: {}",
                record.description, record.verdict, record.evidence.summary
            ));
            let message = format!("{}: {}", record.description, record.evidence.summary);
            let verdict = record.verdict;
            expectations.push(record);
            match verdict {
                Verdict::Passed => continue,
                Verdict::Failed => status = StepStatus::Failed { message },
                Verdict::Errored => status = StepStatus::Errored { message },
            }
            break;
        }
    }
    let diagnostics = if status == StepStatus::Passed {
        None
    } else {
        world.diagnostics(suite, step)
    };
    if let Some(dir) = &diagnostics
        && let StepStatus::Failed { message } | StepStatus::Errored { message } = &mut status
    {
        message.push_str(&format!(" [diagnostics: {}]", dir.display()));
    }
    StepRecord {
        suite: suite.name.clone(),
        slug: step.slug(),
        title: step.title.clone(),
        outcome: step.outcome.clone(),
        status,
        duration: started.elapsed(),
        log,
        expectations,
        diagnostics,
    }
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
