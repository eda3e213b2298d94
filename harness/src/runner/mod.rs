//! The runner: one libtest trial per step, in suite order, on one thread. A step that
//! does not pass makes the rest of its suite ignored (with the reason); the next suite
//! still runs. Results are collected as a [`record::RunRecord`] for the reports.

pub mod record;
mod step;
pub mod world;

use crate::progress::Progress;
use crate::suite::Suite;
use libtest_mimic::{Arguments, Completion, Conclusion, Failed, Trial};
use record::{RunRecord, SetupFailure, StepRecord, StepStatus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use world::World;

pub use step::execute as execute_step;

/// State shared by the trials and the Ctrl-C handler.
#[derive(Clone)]
pub struct Shared {
    pub record: Arc<Mutex<RunRecord>>,
    /// The trial running now, so an interruption can name it.
    pub current: Arc<Mutex<Option<(String, String)>>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            record: Arc::new(Mutex::new(RunRecord::default())),
            current: Arc::new(Mutex::new(None)),
        }
    }
}

/// A poisoned lock only means another trial panicked; the data is still the record.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// The record as it stands, with the running step (if any) marked interrupted.
    pub fn interrupted_snapshot(&self) -> RunRecord {
        let mut record = lock(&self.record).clone();
        if let Some((suite, slug)) = lock(&self.current).clone() {
            record.push_step(
                &suite,
                StepRecord {
                    suite: suite.clone(),
                    slug,
                    title: String::new(),
                    outcome: None,
                    status: StepStatus::Errored {
                        message: "interrupted (Ctrl-C) while this step ran".into(),
                    },
                    duration: std::time::Duration::ZERO,
                    log: Vec::new(),
                    expectations: Vec::new(),
                    diagnostics: None,
                },
            );
        }
        record.setup_failures.push(SetupFailure {
            phase: "setup::interrupted".into(),
            message:
                "the run was interrupted with Ctrl-C; steps after the interruption did not run"
                    .into(),
        });
        record
    }
}

/// Trials for `suites`, each running its step against `world`. `keep` skips suite
/// teardowns.
pub fn trials(
    args: &Arguments,
    suites: &[Arc<Suite>],
    world: Arc<Mutex<Box<dyn World>>>,
    shared: &Shared,
    progress: &Progress,
    keep: bool,
) -> Vec<Trial> {
    // Which steps the filters select: unselected steps before a selected one still
    // have their actions carried out, so the cluster is in the state the step expects.
    let mut out = Vec::new();
    for suite in suites {
        let selected: Vec<bool> = suite
            .steps
            .iter()
            .map(|s| !args.is_filtered_out(&Trial::test(s.trial_name(), || Ok(()))))
            .collect();
        let last_selected = selected.iter().rposition(|s| *s);
        let blocked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let mut previous_selected: Option<usize> = None;
        for (index, step) in suite.steps.iter().enumerate() {
            let name = step.trial_name();
            if !selected[index] {
                out.push(Trial::test(name, || Ok(())));
                continue;
            }
            let prerequisites: Vec<usize> =
                (previous_selected.map_or(0, |p| p + 1)..index).collect();
            previous_selected = Some(index);
            let suite = Arc::clone(suite);
            let world = Arc::clone(&world);
            let shared = shared.clone();
            let progress = progress.clone();
            let blocked = Arc::clone(&blocked);
            let is_last = Some(index) == last_selected;
            out.push(Trial::ignorable_test(name.clone(), move || {
                let step = &suite.steps[index];
                let blocker = lock(&blocked).get(&suite.name).cloned();
                let record = match blocker {
                    Some(blocker) => StepRecord {
                        suite: suite.name.clone(),
                        slug: step.slug(),
                        title: step.title.clone(),
                        outcome: step.outcome.clone(),
                        status: StepStatus::Ignored {
                            reason: format!("{blocker} did not pass"),
                        },
                        duration: std::time::Duration::ZERO,
                        log: Vec::new(),
                        expectations: Vec::new(),
                        diagnostics: None,
                    },
                    None => {
                        *lock(&shared.current) = Some((suite.name.clone(), step.slug()));
                        progress.step_started(&name, &step.title);
                        let mut world = lock(&world);
                        let record = step::execute(world.as_mut(), &suite, index, &prerequisites);
                        let verdict = match &record.status {
                            StepStatus::Passed => "passed",
                            StepStatus::Failed { .. } => "FAILED",
                            StepStatus::Errored { .. } => "ERROR",
                            StepStatus::Ignored { .. } => "ignored",
                        };
                        progress.step_finished(&name, verdict, record.duration);
                        *lock(&shared.current) = None;
                        record
                    }
                };
                if !matches!(
                    record.status,
                    StepStatus::Passed | StepStatus::Ignored { .. }
                ) {
                    lock(&blocked).insert(suite.name.clone(), name.clone());
                }
                let status = record.status.clone();
                lock(&shared.record).push_step(&suite.name, record);
                if is_last && !keep {
                    let mut world = lock(&world);
                    if let Err(e) = step::teardown(world.as_mut(), &suite, &progress) {
                        lock(&shared.record).setup_failures.push(SetupFailure {
                            phase: format!("teardown::{}", suite.name),
                            message: e.to_string(),
                        });
                    }
                }
                match status {
                    StepStatus::Passed => Ok(Completion::Completed),
                    StepStatus::Ignored { reason } => Ok(Completion::ignored_with(reason)),
                    StepStatus::Failed { message } => Err(Failed::from(message)),
                    StepStatus::Errored { message } => Err(Failed::from(format!(
                        "ERROR (harness/environment, not an Istio verdict): {message}"
                    ))),
                }
            }));
        }
    }
    out
}

/// Runs the selected suites against `world` with libtest's output and summary; the
/// record holds every result afterwards.
pub fn run(
    args: &Arguments,
    suites: &[Arc<Suite>],
    world: Box<dyn World>,
    shared: &Shared,
    progress: &Progress,
    keep: bool,
) -> Conclusion {
    let mut args = args.clone();
    // Steps change one cluster in order: never in parallel.
    args.test_threads = Some(1);
    let world = Arc::new(Mutex::new(world));
    let conclusion = libtest_mimic::run(
        &args,
        trials(&args, suites, Arc::clone(&world), shared, progress, keep),
    );
    let mut world = lock(&world);
    lock(&shared.record).properties = world.properties();
    if let Err(e) = world.finish() {
        lock(&shared.record).setup_failures.push(SetupFailure {
            phase: format!("setup::{}", e.phase),
            message: e.message,
        });
    }
    conclusion
}
