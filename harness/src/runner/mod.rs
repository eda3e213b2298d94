//! The runner: one libtest trial per selected step (and the upgrade between the passes
//! of an upgrade run), in schedule order, on one thread. A step that does not pass
//! makes the rest of its suite (in its pass) skipped with the reason; the next suite
//! still runs. Results are collected as a [`record::RunRecord`] for the reports.

pub mod record;
pub mod schedule;
mod step;
pub mod world;

use crate::progress::Progress;
use crate::verdict::Timing;
use libtest_mimic::{Arguments, Completion, Conclusion, Failed, Trial};
use record::{RunRecord, SetupFailure, StepRecord, StepStatus};
use schedule::{Item, Schedule};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
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
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            record: Arc::new(Mutex::new(RunRecord::default())),
            current: Arc::new(Mutex::new(None)),
            properties: Arc::new(Mutex::new(record::RunProperties::default())),
            interrupt_cleanup: Arc::new(Mutex::new(None)),
            timeline: record::Timeline::default(),
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
            record.push_step(
                &suite,
                StepRecord {
                    suite: suite.clone(),
                    slug,
                    title: String::new(),
                    outcome: None,
                    status: StepStatus::Errored {
                        message: format!("interrupted ({signal}) while this step ran"),
                    },
                    duration: Duration::ZERO,
                    log: Vec::new(),
                    expectations: Vec::new(),
                    diagnostics: None,
                    istio_version: None,
                    timing: Timing::default(),
                },
            );
        }
        record.setup_failures.push(SetupFailure {
            phase: "setup::interrupted".into(),
            message: format!(
                "the run was interrupted ({signal}); steps after the interruption did not run"
            ),
        });
        record
    }
}

/// How the upgrade between the passes went, once it ran.
#[derive(Clone, Debug)]
enum UpgradeState {
    NotYet,
    Done,
    Failed(String),
}

struct RunState {
    world: Box<dyn World>,
    /// Labels of suites (in a pass) whose remaining steps are skipped, with the trial
    /// that did not pass.
    blocked: HashMap<String, String>,
    upgrade: UpgradeState,
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

/// Carries out the upgrade, records it as a step of suite `upgrade` when `as_trial`.
fn do_upgrade(
    state: &mut RunState,
    shared: &Shared,
    progress: &Progress,
    from: &str,
    to: &str,
    log: &mut Vec<String>,
) -> Result<(), String> {
    match &state.upgrade {
        UpgradeState::Done => return Ok(()),
        UpgradeState::Failed(why) => return Err(why.clone()),
        UpgradeState::NotYet => {}
    }
    let slug = format!("{from}-to-{to}");
    *lock(&shared.current) = Some(("upgrade".into(), slug));
    progress.line(&format!("upgrading Istio in place from {from} to {to}"));
    let result = state.world.upgrade(to, log).map_err(|e| e.to_string());
    *lock(&shared.current) = None;
    state.upgrade = match &result {
        Ok(()) => UpgradeState::Done,
        Err(e) => UpgradeState::Failed(e.clone()),
    };
    result
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
    for (position, item) in schedule.items.iter().enumerate() {
        if !Schedule::is_selected(item) {
            continue;
        }
        let name = schedule.name(item);
        let schedule = Arc::clone(schedule);
        let state = Arc::clone(state);
        let shared = shared.clone();
        let progress = progress.clone();
        match item.clone() {
            Item::Upgrade { from, to, .. } => {
                out.push(Trial::test(name.clone(), move || {
                    let started = Instant::now();
                    let title = format!("upgrade Istio in place from {from} to {to}");
                    progress.step_started(&name, &title);
                    let mut state = lock(&state);
                    let mut log = Vec::new();
                    let result = do_upgrade(&mut state, &shared, &progress, &from, &to, &mut log);
                    let status = match &result {
                        Ok(()) => StepStatus::Passed,
                        Err(e) => StepStatus::Errored { message: e.clone() },
                    };
                    progress.step_finished(&name, verdict_word(&status), started.elapsed());
                    lock(&shared.record).push_step(
                        "upgrade",
                        StepRecord {
                            suite: "upgrade".into(),
                            slug: format!("{from}-to-{to}"),
                            title,
                            outcome: None,
                            status: status.clone(),
                            duration: started.elapsed(),
                            log,
                            expectations: Vec::new(),
                            diagnostics: None,
                            istio_version: None,
                            timing: Timing::default(),
                        },
                    );
                    completion(&status).map(|_| ())
                }));
            }
            Item::Step {
                pass, suite, index, ..
            } => {
                let label = schedule.label(pass, &suite);
                let is_last = schedule.last_of_suite(position);
                let prerequisites = schedule.prerequisites(position);
                let version = schedule.passes[pass].version.clone();
                let upgrade = schedule.items.iter().find_map(|i| match i {
                    Item::Upgrade { from, to, .. } if pass == 1 => Some((from.clone(), to.clone())),
                    _ => None,
                });
                out.push(Trial::ignorable_test(name.clone(), move || {
                    let step = &suite.steps[index];
                    let mut state = lock(&state);
                    let mut setup_log = Vec::new();
                    let blocker = match (state.blocked.get(&label), &upgrade) {
                        (Some(blocker), _) => Some(format!("{blocker} did not pass")),
                        (None, Some((from, to))) => {
                            let here = matches!(state.upgrade, UpgradeState::NotYet);
                            match do_upgrade(&mut state, &shared, &progress, from, to, &mut setup_log) {
                                Ok(()) => {
                                    if here {
                                        setup_log.insert(0, format!("(setup) upgraded Istio from {from} to {to} before this step"));
                                    }
                                    None
                                }
                                Err(e) => Some(format!("the upgrade to {to} did not pass: {e}")),
                            }
                        }
                        (None, None) => None,
                    };
                    let record = match blocker {
                        Some(reason) => StepRecord::without_run(&label, step, StepStatus::Ignored { reason }),
                        None => {
                            *lock(&shared.current) = Some((label.clone(), step.slug()));
                            progress.step_started(&name, &step.title);
                            let mut record = step::execute(
                                state.world.as_mut(),
                                &suite,
                                index,
                                &prerequisites,
                                &label,
                                Some(&version),
                            );
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
    let state = Arc::new(Mutex::new(RunState {
        world,
        blocked: HashMap::new(),
        upgrade: UpgradeState::NotYet,
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
        });
    }
    conclusion
}
