//! The runner: one libtest trial per selected step (and per stage of the upgrade
//! between the passes of an upgrade run), in schedule order, on one thread. A step that
//! does not pass makes the rest of its suite (in its pass) skipped with the reason; the
//! next suite still runs. An upgrade stage that does not pass makes what depends on it
//! (later stages, the second pass) skipped with the reason; carried out as the setup of
//! a selected trial, its failure is that trial's error. Results are collected as a
//! [`record::RunRecord`] for the reports.
//!
//! Longer than most files because the trials share one record, one interrupt path and
//! one rule for what a failure skips; apart, the JUnit and the exit code could disagree.

pub mod canary;
pub mod record;
pub mod schedule;
mod step;
pub mod world;

use crate::progress::Progress;
use crate::verdict::Timing;
use libtest_mimic::{Arguments, Completion, Conclusion, Failed, Trial};
use record::{RunRecord, SetupFailure, StepRecord, StepStatus};
use schedule::{Item, Schedule, Stage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use world::World;

pub use step::execute as execute_step;

/// What an interruption must undo before the process exits, registered by the world
/// when it creates something the run owns (a kind cluster).
pub struct InterruptCleanup {
    /// What is at stake, e.g. "kind cluster `istio-mtls`".
    pub what: String,
    /// Undoes it; None when the user asked to keep it (the hint is printed instead).
    pub undo: Option<Box<dyn FnOnce() -> Result<(), String> + Send>>,
    /// How the user removes it by hand.
    pub hint: String,
}

/// State shared by the trials, the world and the interrupt handler.
#[derive(Clone)]
pub struct Shared {
    pub record: Arc<Mutex<RunRecord>>,
    /// The trial running now, so an interruption can name it.
    pub current: Arc<Mutex<Option<(String, String)>>>,
    /// Facts about the system under test as the world learns them (also during setup).
    pub properties: Arc<Mutex<record::RunProperties>>,
    pub interrupt_cleanup: Arc<Mutex<Option<InterruptCleanup>>>,
    /// Setup's phases and their times.
    pub timeline: record::Timeline,
    /// Held while the reports are written; true once an interruption wrote them, so the
    /// run's own ending never writes over the interrupted report.
    pub interrupted_reports: Arc<Mutex<bool>>,
    /// The exit code of a signal being handled: its handler cleans up and ends the
    /// process, and the run's own ending must not end it first with another code.
    pub signal: Arc<Mutex<Option<u8>>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            record: Arc::new(Mutex::new(RunRecord::default())),
            current: Arc::new(Mutex::new(None)),
            properties: Arc::new(Mutex::new(record::RunProperties::default())),
            interrupt_cleanup: Arc::new(Mutex::new(None)),
            timeline: record::Timeline::default(),
            interrupted_reports: Arc::new(Mutex::new(false)),
            signal: Arc::new(Mutex::new(None)),
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
    pub fn interrupted_snapshot(&self, signal: &str) -> RunRecord {
        let mut record = lock(&self.record).clone();
        record.properties = lock(&self.properties).clone();
        record.setup_phases = self.timeline.phases();
        if let Some((suite, slug)) = lock(&self.current).clone() {
            let status = StepStatus::Errored {
                message: format!("interrupted ({signal}) while this step ran"),
            };
            record.push_step(&suite, StepRecord::new(&suite, slug, status));
        }
        record.setup_failures.push(SetupFailure {
            phase: "setup::interrupted".into(),
            message: format!(
                "the run was interrupted ({signal}); steps after the interruption did not run"
            ),
            elapsed: std::time::Duration::ZERO,
        });
        record
    }
}

/// How an upgrade stage went, once it ran (a stage not in the map has not run yet).
#[derive(Clone, Debug)]
enum UpgradeState {
    Done,
    /// Why it did not pass.
    Failed(String),
}

struct RunState {
    world: Box<dyn World>,
    /// Labels of suites (in a pass) whose remaining steps are skipped, with the trial
    /// that did not pass.
    blocked: HashMap<String, String>,
    /// Each upgrade stage by its position in the schedule.
    stages: HashMap<usize, UpgradeState>,
    /// The canary steps and what each stage does with them, in a canary upgrade run.
    canary: Option<(Arc<crate::suite::Suite>, canary::CanaryPlan)>,
    keep: bool,
}

/// The libtest arguments the runner hands to libtest-mimic: its output options, never
/// its filters (the schedule selected already), one thread.
pub fn libtest_arguments(base: &Arguments) -> Arguments {
    let mut args = base.clone();
    args.filter = None;
    args.skip.clear();
    args.exact = false;
    args.list = false;
    args.ignored = false;
    args.include_ignored = false;
    // Steps change one cluster in order: never in parallel.
    args.test_threads = Some(1);
    args
}

/// What one upgrade stage did.
struct StageResult {
    status: StepStatus,
    log: Vec<String>,
    expectations: Vec<crate::verdict::Judged>,
    diagnostics: Option<std::path::PathBuf>,
    timing: Timing,
}

/// One upgrade stage, as `schedule` names it.
#[derive(Clone, Debug)]
struct StageRef {
    position: usize,
    stage: Stage,
    from: String,
    to: String,
}

impl StageRef {
    fn name(&self) -> String {
        schedule::stage_name(self.stage, &self.from, &self.to)
    }

    /// Why what depends on this stage is not run, given its failure.
    fn blocks(&self, why: &str) -> String {
        match self.stage {
            Stage::InPlace => format!("the upgrade to {} did not pass: {why}", self.to),
            Stage::CanaryMixed | Stage::CanaryComplete => {
                format!("{} did not pass: {why}", self.name())
            }
        }
    }
}

/// Carries out `stage` (judged when it is its own trial, else as setup) and records
/// its state.
fn carry_out(
    state: &mut RunState,
    shared: &Shared,
    progress: &Progress,
    stage: &StageRef,
    judged: bool,
) -> StageResult {
    *lock(&shared.current) = Some((
        schedule::UPGRADE_SUITE.into(),
        stage.stage.slug(&stage.from, &stage.to),
    ));
    progress.line(&stage.stage.title(&stage.from, &stage.to));
    let mut result = StageResult {
        status: StepStatus::Passed,
        log: Vec::new(),
        expectations: Vec::new(),
        diagnostics: None,
        timing: Timing::default(),
    };
    match stage.stage {
        Stage::InPlace => {
            let started = Instant::now();
            if let Err(e) = state.world.upgrade(&stage.to, judged, &mut result.log) {
                result.status = StepStatus::Errored {
                    message: e.to_string(),
                };
            }
            result.timing.actions = started.elapsed();
        }
        Stage::CanaryMixed | Stage::CanaryComplete => match &state.canary {
            None => {
                result.status = StepStatus::Errored {
                    message: "the canary steps were not loaded; this is a harness bug".into(),
                };
            }
            Some((suite, plan)) => {
                let run = canary::run_stage(
                    state.world.as_mut(),
                    plan,
                    suite,
                    stage.stage,
                    judged,
                    state.keep,
                );
                if let Some(e) = run.teardown_error {
                    lock(&shared.record).setup_failures.push(SetupFailure {
                        phase: format!("teardown::{}", suite.name),
                        message: e.to_string(),
                        elapsed: std::time::Duration::ZERO,
                    });
                }
                result.status = run.status;
                result.log = run.log;
                result.expectations = run.expectations;
                result.diagnostics = run.diagnostics;
                result.timing = run.timing;
            }
        },
    }
    *lock(&shared.current) = None;
    let new_state = match &result.status {
        StepStatus::Passed | StepStatus::Ignored { .. } => UpgradeState::Done,
        StepStatus::Failed { message } | StepStatus::Errored { message } => {
            UpgradeState::Failed(message.clone())
        }
    };
    state.stages.insert(stage.position, new_state);
    result
}

/// Why the stages before `until` (a position in the schedule) cannot be relied on.
struct Blocked {
    /// The reason, naming the stage that did not pass.
    reason: String,
    /// The failing stage was carried out here, as this trial's setup.
    here: bool,
}

/// Carries out, as setup, every stage before position `until` that has not run yet;
/// the setup log lines go to `log`.
fn stages_before(
    state: &mut RunState,
    shared: &Shared,
    progress: &Progress,
    stages: &[StageRef],
    until: usize,
    log: &mut Vec<String>,
) -> Result<(), Blocked> {
    for stage in stages.iter().filter(|s| s.position < until) {
        match state.stages.get(&stage.position).cloned() {
            Some(UpgradeState::Done) => continue,
            Some(UpgradeState::Failed(why)) => {
                return Err(Blocked {
                    reason: stage.blocks(&why),
                    here: false,
                });
            }
            None => {}
        }
        let result = carry_out(state, shared, progress, stage, false);
        log.push(match stage.stage {
            Stage::InPlace => format!(
                "(setup) upgraded Istio from {} to {} before this step",
                stage.from, stage.to
            ),
            Stage::CanaryMixed | Stage::CanaryComplete => {
                format!("(setup) carried out {} before this trial", stage.name())
            }
        });
        log.extend(result.log.into_iter().map(|l| format!("(setup) {l}")));
        if let StepStatus::Failed { message } | StepStatus::Errored { message } = &result.status {
            return Err(Blocked {
                reason: stage.blocks(message),
                here: true,
            });
        }
    }
    Ok(())
}

fn completion(status: &StepStatus) -> Result<Completion, Failed> {
    match status {
        StepStatus::Passed => Ok(Completion::Completed),
        StepStatus::Ignored { reason } => Ok(Completion::ignored_with(reason.clone())),
        StepStatus::Failed { message } => Err(Failed::from(message)),
        StepStatus::Errored { message } => Err(Failed::from(format!(
            "ERROR (harness/environment, not an Istio verdict): {message}"
        ))),
    }
}

fn verdict_word(status: &StepStatus) -> &'static str {
    match status {
        StepStatus::Passed => "passed",
        StepStatus::Failed { .. } => "FAILED",
        StepStatus::Errored { .. } => "ERROR",
        StepStatus::Ignored { .. } => "skipped",
    }
}

/// The trials of `schedule`, each running against the shared world.
fn trials(
    schedule: &Arc<Schedule>,
    state: &Arc<Mutex<RunState>>,
    shared: &Shared,
    progress: &Progress,
    keep: bool,
) -> Vec<Trial> {
    let mut out = Vec::new();
    let stages: Arc<Vec<StageRef>> = Arc::new(
        schedule
            .items
            .iter()
            .enumerate()
            .filter_map(|(position, item)| match item {
                Item::Upgrade {
                    from, to, stage, ..
                } => Some(StageRef {
                    position,
                    stage: *stage,
                    from: from.clone(),
                    to: to.clone(),
                }),
                Item::Step { .. } => None,
            })
            .collect(),
    );
    for (position, item) in schedule.items.iter().enumerate() {
        if !Schedule::is_selected(item) {
            continue;
        }
        let name = schedule.name(item);
        let schedule = Arc::clone(schedule);
        let state = Arc::clone(state);
        let shared = shared.clone();
        let progress = progress.clone();
        let stages = Arc::clone(&stages);
        match item.clone() {
            Item::Upgrade {
                from, to, stage, ..
            } => {
                let this = StageRef {
                    position,
                    stage,
                    from: from.clone(),
                    to: to.clone(),
                };
                out.push(Trial::ignorable_test(name.clone(), move || {
                    let started = Instant::now();
                    let title = stage.title(&from, &to);
                    progress.step_started(&name, &title);
                    let mut state = lock(&state);
                    let mut setup_log = Vec::new();
                    let result = match stages_before(
                        &mut state,
                        &shared,
                        &progress,
                        &stages,
                        position,
                        &mut setup_log,
                    ) {
                        Ok(()) => {
                            let mut result = carry_out(&mut state, &shared, &progress, &this, true);
                            setup_log.append(&mut result.log);
                            result.log = setup_log;
                            result
                        }
                        Err(blocked) => {
                            state
                                .stages
                                .insert(position, UpgradeState::Failed(blocked.reason.clone()));
                            let status = if blocked.here {
                                StepStatus::Errored {
                                    message: format!("(setup) {}", blocked.reason),
                                }
                            } else {
                                StepStatus::Ignored {
                                    reason: blocked.reason,
                                }
                            };
                            StageResult {
                                status,
                                log: setup_log,
                                expectations: Vec::new(),
                                diagnostics: None,
                                timing: Timing::default(),
                            }
                        }
                    };
                    let istio_version = if matches!(result.status, StepStatus::Ignored { .. }) {
                        None
                    } else {
                        state.world.istio_version()
                    };
                    progress.step_finished(&name, verdict_word(&result.status), started.elapsed());
                    let status = result.status.clone();
                    lock(&shared.record).push_step(
                        schedule::UPGRADE_SUITE,
                        StepRecord {
                            suite: schedule::UPGRADE_SUITE.into(),
                            slug: stage.slug(&from, &to),
                            title,
                            outcome: None,
                            status: result.status,
                            duration: started.elapsed(),
                            log: result.log,
                            expectations: result.expectations,
                            diagnostics: result.diagnostics,
                            istio_version,
                            timing: result.timing,
                        },
                    );
                    completion(&status)
                }));
            }
            Item::Step {
                pass, suite, index, ..
            } => {
                let label = schedule.label(pass, &suite);
                let is_last = schedule.last_of_suite(position);
                let prerequisites = schedule.prerequisites(position);
                let version = schedule.passes[pass].version.clone();
                out.push(Trial::ignorable_test(name.clone(), move || {
                    let step = &suite.steps[index];
                    let mut state = lock(&state);
                    let mut setup_log = Vec::new();
                    let upgrade = if let Some(blocker) = state.blocked.get(&label) {
                        Err(Blocked {
                            reason: format!("{blocker} did not pass"),
                            here: false,
                        })
                    } else {
                        stages_before(&mut state, &shared, &progress, &stages, position, &mut setup_log)
                    };
                    let record = match upgrade {
                        Err(Blocked { reason, here: false }) => {
                            StepRecord::without_run(&label, step, StepStatus::Ignored { reason })
                        }
                        Err(Blocked { reason, here: true }) => {
                            // Its setup (the upgrade) failed here: an error of this step,
                            // never a verdict on the version it belongs to.
                            progress.step_started(&name, &step.title);
                            let runs = state.world.istio_version();
                            let message = match &runs {
                                Some(runs) if runs != &version => format!(
                                    "this step belongs to the pass on Istio {version}, but istiod runs {runs}; not judged: its setup failed: {reason}"
                                ),
                                _ => format!("its setup failed: {reason}; not judged"),
                            };
                            let mut record = StepRecord::without_run(
                                &label,
                                step,
                                StepStatus::Errored { message },
                            );
                            record.istio_version = runs;
                            record.log = setup_log;
                            progress.step_finished(&name, verdict_word(&record.status), record.duration);
                            record
                        }
                        Ok(()) => {
                            *lock(&shared.current) = Some((label.clone(), step.slug()));
                            progress.step_started(&name, &step.title);
                            let started = std::time::Instant::now();
                            let world = state.world.as_mut();
                            // A panic is a harness bug: the step is an error in the report
                            // and blocks its suite like any error, never a missing case.
                            let executed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                step::execute(world, &suite, index, &prerequisites, &label, Some(&version))
                            }));
                            let mut record = executed.unwrap_or_else(|panic| {
                                let mut record = StepRecord::without_run(
                                    &label,
                                    step,
                                    StepStatus::Errored {
                                        message: format!(
                                            "the harness failed while running this step ({}); a harness bug, not a verdict on Istio",
                                            panic_message(panic.as_ref())
                                        ),
                                    },
                                );
                                record.duration = started.elapsed();
                                record
                            });
                            setup_log.append(&mut record.log);
                            record.log = setup_log;
                            progress.step_finished(&name, verdict_word(&record.status), record.duration);
                            *lock(&shared.current) = None;
                            record
                        }
                    };
                    if !matches!(record.status, StepStatus::Passed | StepStatus::Ignored { .. }) {
                        state.blocked.insert(label.clone(), name.clone());
                    }
                    let status = record.status.clone();
                    lock(&shared.record).push_step(&label, record);
                    if is_last
                        && !keep
                        && let Err(e) = step::teardown(state.world.as_mut(), &suite, &progress)
                    {
                        lock(&shared.record).setup_failures.push(SetupFailure {
                            phase: format!("teardown::{label}"),
                            message: e.to_string(),
                            elapsed: std::time::Duration::ZERO,
                        });
                    }
                    completion(&status)
                }));
            }
        }
    }
    out
}

/// Runs the schedule against `world` with libtest's output and summary; the record
/// holds every result afterwards.
pub fn run(
    args: &Arguments,
    schedule: Schedule,
    world: Box<dyn World>,
    shared: &Shared,
    progress: &Progress,
    keep: bool,
) -> Conclusion {
    let args = libtest_arguments(args);
    let canary = match &schedule.canary {
        Some(suite) => match canary::CanaryPlan::new(suite) {
            Ok(plan) => Some((Arc::clone(suite), plan)),
            Err(e) => {
                lock(&shared.record).setup_failures.push(SetupFailure {
                    phase: "setup::canary".into(),
                    message: e,
                    elapsed: std::time::Duration::ZERO,
                });
                None
            }
        },
        None => None,
    };
    let state = Arc::new(Mutex::new(RunState {
        world,
        blocked: HashMap::new(),
        stages: HashMap::new(),
        canary,
        keep,
    }));
    let schedule = Arc::new(schedule);
    let all = trials(&schedule, &state, shared, progress, keep);
    let conclusion = libtest_mimic::run(&args, all);
    let mut state = lock(&state);
    lock(&shared.record).properties = state.world.properties();
    if let Err(e) = state.world.finish() {
        lock(&shared.record).setup_failures.push(SetupFailure {
            phase: format!("setup::{}", e.phase),
            message: e.message,
            elapsed: std::time::Duration::ZERO,
        });
    }
    conclusion
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}
