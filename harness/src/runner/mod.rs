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

/// One pass over the suites; an upgrade run has two, the second behind the upgrade.
#[derive(Clone, Debug)]
pub struct Pass {
    /// Appended to suite names in trial names and reports, e.g. `@1.30.5`.
    pub suffix: String,
    /// A trial that must have passed first (the upgrade), by name.
    pub after: Option<String>,
}

impl Pass {
    pub fn single() -> Self {
        Pass {
            suffix: String::new(),
            after: None,
        }
    }
}

/// Steps that did not pass, by suite label; the upgrade trial records itself here too.
type Blocked = Arc<Mutex<HashMap<String, String>>>;

/// Trials for `suites` in one pass, each running its step against `world`. `keep`
/// skips suite teardowns.
#[allow(clippy::too_many_arguments)]
pub fn trials(
    args: &Arguments,
    suites: &[Arc<Suite>],
    world: Arc<Mutex<Box<dyn World>>>,
    shared: &Shared,
    progress: &Progress,
    keep: bool,
    pass: &Pass,
    blocked: &Blocked,
) -> Vec<Trial> {
    // Which steps the filters select: unselected steps before a selected one still
    // have their actions carried out, so the cluster is in the state the step expects.
    let mut out = Vec::new();
    for suite in suites {
        let label = format!("{}{}", suite.name, pass.suffix);
        let name_of = |step: &crate::suite::Step| format!("{label}::{}", step.slug());
        let selected: Vec<bool> = suite
            .steps
            .iter()
            .map(|s| !args.is_filtered_out(&Trial::test(name_of(s), || Ok(()))))
            .collect();
        let last_selected = selected.iter().rposition(|s| *s);
        let mut previous_selected: Option<usize> = None;
        for (index, step) in suite.steps.iter().enumerate() {
            let name = name_of(step);
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
            let blocked = Arc::clone(blocked);
            let is_last = Some(index) == last_selected;
            let after = pass.after.clone();
            let label = label.clone();
            out.push(Trial::ignorable_test(name.clone(), move || {
                let step = &suite.steps[index];
                let blocker = {
                    let blocked = lock(&blocked);
                    blocked
                        .get(&label)
                        .or_else(|| after.as_ref().and_then(|a| blocked.get(a)))
                        .cloned()
                };
                let record = match blocker {
                    Some(blocker) => StepRecord {
                        suite: label.clone(),
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
                        *lock(&shared.current) = Some((label.clone(), step.slug()));
                        progress.step_started(&name, &step.title);
                        let mut world = lock(&world);
                        let mut record =
                            step::execute(world.as_mut(), &suite, index, &prerequisites);
                        record.suite = label.clone();
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
                    lock(&blocked).insert(label.clone(), name.clone());
                }
                let status = record.status.clone();
                lock(&shared.record).push_step(&label, record);
                if is_last && !keep {
                    let mut world = lock(&world);
                    if let Err(e) = step::teardown(world.as_mut(), &suite, &progress) {
                        lock(&shared.record).setup_failures.push(SetupFailure {
                            phase: format!("teardown::{label}"),
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

pub fn upgrade_name(from: &str, to: &str) -> String {
    format!("upgrade::{from}-to-{to}")
}

/// The passes of a run: one, or two around an upgrade.
pub fn passes(upgrade: Option<(&str, &str)>) -> Vec<Pass> {
    match upgrade {
        None => vec![Pass::single()],
        Some((from, to)) => vec![
            Pass {
                suffix: format!("@{from}"),
                after: None,
            },
            Pass {
                suffix: format!("@{to}"),
                after: Some(upgrade_name(from, to)),
            },
        ],
    }
}

/// Every trial name of a run, in order (for `--list`).
pub fn trial_names(suites: &[Arc<Suite>], upgrade: Option<(&str, &str)>) -> Vec<String> {
    let mut names = Vec::new();
    for (i, pass) in passes(upgrade).iter().enumerate() {
        if i == 1
            && let Some((from, to)) = upgrade
        {
            names.push(upgrade_name(from, to));
        }
        for suite in suites {
            names.extend(
                suite
                    .steps
                    .iter()
                    .map(|s| format!("{}{}::{}", suite.name, pass.suffix, s.slug())),
            );
        }
    }
    names
}

/// The trial that upgrades Istio between two passes, recorded as suite `upgrade`.
fn upgrade_trial(
    from: &str,
    to: String,
    world: Arc<Mutex<Box<dyn World>>>,
    shared: &Shared,
    progress: &Progress,
    blocked: &Blocked,
) -> Trial {
    let slug = format!("{from}-to-{to}");
    let trial_name = upgrade_name(from, &to);
    let shared = shared.clone();
    let progress = progress.clone();
    let blocked = Arc::clone(blocked);
    Trial::test(trial_name.clone(), move || {
        let started = std::time::Instant::now();
        progress.step_started(&trial_name, &format!("upgrade Istio in place to {to}"));
        *lock(&shared.current) = Some(("upgrade".into(), slug.clone()));
        let mut log = Vec::new();
        let result = lock(&world).upgrade(&to, &mut log);
        *lock(&shared.current) = None;
        let status = match &result {
            Ok(()) => StepStatus::Passed,
            Err(e) => StepStatus::Errored {
                message: e.to_string(),
            },
        };
        if result.is_err() {
            lock(&blocked).insert(trial_name.clone(), trial_name.clone());
        }
        progress.step_finished(
            &trial_name,
            if result.is_ok() { "passed" } else { "ERROR" },
            started.elapsed(),
        );
        lock(&shared.record).push_step(
            "upgrade",
            StepRecord {
                suite: "upgrade".into(),
                slug: slug.clone(),
                title: format!("upgrade Istio in place to {to}"),
                outcome: None,
                status,
                duration: started.elapsed(),
                log,
                expectations: Vec::new(),
                diagnostics: None,
            },
        );
        result.map_err(|e| {
            Failed::from(format!(
                "ERROR (harness/environment, not an Istio verdict): {e}"
            ))
        })
    })
}

/// Runs the selected suites against `world` with libtest's output and summary; the
/// record holds every result afterwards. With `upgrade = Some((from, to))` the suites
/// run twice, before and after an in-place upgrade.
pub fn run(
    args: &Arguments,
    suites: &[Arc<Suite>],
    world: Box<dyn World>,
    shared: &Shared,
    progress: &Progress,
    keep: bool,
    upgrade: Option<(&str, &str)>,
) -> Conclusion {
    let mut args = args.clone();
    // Steps change one cluster in order: never in parallel.
    args.test_threads = Some(1);
    let world = Arc::new(Mutex::new(world));
    let blocked: Blocked = Arc::default();
    let mut all = Vec::new();
    for (i, pass) in passes(upgrade).iter().enumerate() {
        if i == 1
            && let Some((from, to)) = upgrade
        {
            all.push(upgrade_trial(
                from,
                to.to_string(),
                Arc::clone(&world),
                shared,
                progress,
                &blocked,
            ));
        }
        all.extend(trials(
            &args,
            suites,
            Arc::clone(&world),
            shared,
            progress,
            keep,
            pass,
            &blocked,
        ));
    }
    let conclusion = libtest_mimic::run(&args, all);
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
