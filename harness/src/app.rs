//! One run from parsed arguments to exit code: load and select suites, resolve the
//! Istio versions asked for, validate the configuration, build the schedule, then
//! list, plan (`--dry-run`) or run (`--print-matrix` only resolves and prints). The JUnit
//! file is written on every run that gets as far as running (also on setup failure and
//! on interruption).

use crate::cli::Cli;
use crate::cluster::releases::ReleaseSource;
use crate::config::RunConfig;
use crate::exit::{self, HarnessError};
use crate::progress::Progress;
use crate::report::junit;
use crate::runner::record::{RunRecord, SetupFailure};
use crate::runner::schedule::Schedule;
use crate::runner::{self, InterruptCleanup, Shared, world::World};
use crate::suite::{self, Catalog, source::SuiteSource};
use crate::world::ClusterWorld;
use std::io::Write;
use std::sync::Arc;

fn suite_source(cli: &Cli) -> Result<SuiteSource, HarnessError> {
    match &cli.suites_dir {
        Some(dir) => SuiteSource::from_dir(dir).map_err(HarnessError::usage),
        None => Ok(SuiteSource::embedded()),
    }
}

pub fn load_catalog(cli: &Cli) -> Result<Catalog, HarnessError> {
    suite::load(&suite_source(cli)?)
        .map_err(|e| HarnessError::usage(format!("invalid suite file: {e}")))
}

/// The canary upgrade's steps (`canary-upgrade/suite.yaml` of the suites folder),
/// checked as a canary plan.
pub fn load_canary(cli: &Cli) -> Result<Arc<suite::Suite>, HarnessError> {
    let suite = suite::load_one(&suite_source(cli)?, runner::canary::SUITE)
        .map_err(|e| HarnessError::usage(format!("invalid suite file: {e}")))?;
    runner::canary::CanaryPlan::new(&suite).map_err(HarnessError::usage)?;
    Ok(Arc::new(suite))
}

fn fail(e: HarnessError) -> u8 {
    eprintln!("error: {e}");
    e.code
}

/// The schedule of this run; a selection that selects no step is a usage error that
/// names the steps there are.
pub fn schedule(
    cli: &Cli,
    suites: &[Arc<suite::Suite>],
    config: &RunConfig,
) -> Result<Schedule, HarnessError> {
    let upgrade = config
        .upgrade_from
        .as_deref()
        .map(|from| (from, config.istio_version.as_str(), config.upgrade_mode));
    let selection = cli.selection();
    let mut schedule = Schedule::new(suites, &config.istio_version, upgrade, &selection);
    if upgrade.is_some() && config.upgrade_mode == crate::cli::UpgradeMode::Canary {
        schedule.canary = Some(load_canary(cli)?);
    }
    if schedule.selected_names().is_empty() {
        return Err(HarnessError::usage(format!(
            "no step matches {}; steps are: {}",
            selection.describe(),
            schedule.all_names().join(", ")
        )));
    }
    Ok(schedule)
}

/// `--list`: one line per trial that would run, then libtest's count line, as libtest
/// prints them. What is carried out only as setup of those trials (earlier steps'
/// actions, upgrade stages) goes to standard error, so the list stays what libtest
/// tools parse. A closed or full standard output is an error (see [`print_all`]).
fn list(schedule: &Schedule) -> u8 {
    for line in setup_only_lines(schedule) {
        eprintln!("{line}");
    }
    let names = schedule.selected_names();
    let mut text = String::new();
    for name in &names {
        text.push_str(&format!("{name}: test\n"));
    }
    let tests = match names.len() {
        1 => "1 test".to_string(),
        n => format!("{n} tests"),
    };
    text.push_str(&format!("\n{tests}, 0 benchmarks\n"));
    print_all(&text)
}

/// `text` on standard output; a closed or full output is an error of one line (exit
/// 3), never a panic and never a silent success.
fn print_all(text: &str) -> u8 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => exit::SUCCESS,
        Err(e) => fail(HarnessError::environment(format!(
            "cannot write to standard output ({e}); nothing was lost but this listing"
        ))),
    }
}

/// One line per item carried out without being judged, in run order.
fn setup_only_lines(schedule: &Schedule) -> Vec<String> {
    use crate::runner::schedule::{Item, Role};
    schedule
        .items
        .iter()
        .zip(schedule.roles())
        .filter(|(_, role)| *role == Role::Setup)
        .map(|(item, _)| match item {
            Item::Upgrade { .. } => format!(
                "setup only: {} (the upgrade is carried out before the trials after it)",
                schedule.name(item)
            ),
            Item::Step { .. } => format!(
                "setup only: {} (its actions run, it is not judged)",
                schedule.name(item)
            ),
        })
        .collect()
}

pub fn run(cli: Cli) -> u8 {
    // The runtime and the signal handlers before anything else: from here on, a signal
    // at any moment ends a run with its reports written.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return fail(HarnessError::environment(format!(
                "cannot start the async runtime: {e}"
            )));
        }
    };
    let shared = Shared::default();
    let writes_reports = !(cli.list || cli.dry_run || cli.print_matrix);
    watch_for_interrupt(&runtime, &shared, cli.reports_dir.clone(), writes_reports);
    let reports = writes_reports.then(|| cli.reports_dir.clone());
    let versions = crate::config::Versions::embedded();
    let releases = ReleaseSource::from_env(&versions.istio.releases_url);
    if cli.print_matrix {
        return match crate::matrix::print(&versions, &releases) {
            Ok(()) => exit::SUCCESS,
            Err(e) => fail(e),
        };
    }
    let progress = Progress::new();
    let catalog = match load_catalog(&cli) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let suites = match catalog.select(&cli.suites) {
        Ok(s) => s,
        Err(e) => return fail(HarnessError::usage(e)),
    };
    // One run per reports folder, taken before anything is written there.
    let _lock = if cli.list {
        None
    } else {
        match check_outputs(&cli).and_then(|()| {
            crate::report::lock::acquire(&cli.reports_dir).map_err(HarnessError::environment)
        }) {
            Ok(lock) => Some(lock),
            Err(e) => return fail(e),
        }
    };
    let resolved = match crate::resolve::resolve_run(
        cli.istio_version.as_deref(),
        cli.upgrade_from.as_deref(),
        &versions,
        &releases,
    ) {
        Ok(r) => r,
        Err(e) => {
            // Reported like a setup failure: every selected step not run, and why.
            let requested =
                crate::config::requested(cli.upgrade_from.as_deref(), cli.istio_version.as_deref());
            // The steps as named by what was asked for (`mesh@1.30::…` in an upgrade).
            let version = cli
                .istio_version
                .as_deref()
                .unwrap_or(&versions.istio.default);
            let upgrade = cli
                .upgrade_from
                .as_deref()
                .map(|from| (from, version, cli.upgrade_mode));
            let not_run = Schedule::new(&suites, version, upgrade, &cli.selection())
                .not_run(&format!("not run: {}", exit::one_line(&e.message)));
            return ended_before_setup(
                e,
                "resolve",
                requested,
                not_run,
                reports.as_deref(),
                &shared,
            );
        }
    };
    let istio_as_found = cli.istio_version.is_none()
        && cli.upgrade_from.is_none()
        && (cli.kubeconfig.is_some() || cli.context.is_some());
    let cli = resolved.apply(cli);
    let config = match RunConfig::from_cli(&cli) {
        Ok(c) => RunConfig {
            istio_requested: resolved.requested,
            istio_as_found,
            ..c
        },
        Err(e) => return fail(e),
    };
    let schedule = match schedule(&cli, &suites, &config) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if cli.list {
        return list(&schedule);
    }
    if config.kubeconfig.is_some() || config.context.is_some() {
        let checked = crate::cluster::connect::check_kubeconfig(
            config.kubeconfig.as_deref(),
            config.context.as_deref(),
        );
        if let Err(e) = checked {
            let not_run = schedule.not_run(&format!("not run: {}", exit::one_line(&e)));
            return ended_before_setup(
                HarnessError::usage(e),
                "kubeconfig",
                config.istio_requested.clone(),
                not_run,
                reports.as_deref(),
                &shared,
            );
        }
    }
    // A dry run checks what a run checks before touching a cluster (the kubeconfig
    // above; image, addresses and URLs when the configuration was read).
    if cli.dry_run {
        let provisioning = crate::cluster::provision_plan::provisioning_plan(&config);
        return match crate::plan::write(&config, &schedule, &provisioning) {
            Ok(plan) => print_all(&plan.text),
            Err(e) => fail(HarnessError::environment(e)),
        };
    }
    runner::lock(&shared.properties).istio_requested = config.istio_requested.clone();
    let world: Box<dyn World> = Box::new(
        ClusterWorld::new(
            config.clone(),
            runtime.handle().clone(),
            progress.clone(),
            &shared,
        )
        .clearing_leftovers_of(catalog.suites.clone()),
    );
    let code = run_with_world(&cli.libtest(), schedule, world, &shared, &progress, &config);
    let signalled = *runner::lock(&shared.signal);
    match signalled {
        // The handler is still cleaning up (a kind delete) and ends the process itself.
        Some(signal_code) => {
            let until = std::time::Instant::now()
                + crate::deadlines::KIND_DELETE
                + std::time::Duration::from_secs(30);
            // Parking may wake early; the bound is what counts.
            while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                std::thread::park_timeout(left);
            }
            signal_code
        }
        None => code,
    }
}

/// Setup, the trials, and the report; separate from [`run`] so tests can drive it
/// with a world of their own.
pub fn run_with_world(
    args: &libtest_mimic::Arguments,
    schedule: Schedule,
    mut world: Box<dyn World>,
    shared: &Shared,
    progress: &Progress,
    config: &RunConfig,
) -> u8 {
    let cleared = {
        let taken = runner::lock(&shared.interrupted_reports);
        if *taken {
            Ok(())
        } else {
            clear_previous_reports(&config.reports_dir)
        }
    };
    if let Err(e) = cleared {
        eprintln!("error: {e}");
        return exit::ENVIRONMENT;
    }
    let setup_started = std::time::Instant::now();
    let setup = {
        let _wait = progress.wait("setting up the cluster");
        world.setup(&schedule.suites())
    };
    runner::lock(&shared.record).setup_phases = shared.timeline.phases();
    if let Err(e) = setup {
        {
            let mut record = runner::lock(&shared.record);
            record.properties = world.properties();
            record.setup_failures.push(SetupFailure {
                phase: format!("setup::{}", e.phase),
                message: e.message.clone(),
                elapsed: setup_started.elapsed(),
            });
            record.suites = schedule.not_run(&format!(
                "not run: setup failed ({}): {}",
                e.phase,
                exit::one_line(&e.message)
            ));
        }
        // Not under the record's lock: an interruption during the cleanup (a kind
        // delete takes a while) reads the record for its report.
        let cleanup = world.finish();
        let record = {
            let mut record = runner::lock(&shared.record);
            if let Err(cleanup) = cleanup {
                record.setup_failures.push(SetupFailure {
                    phase: format!("setup::{}", cleanup.phase),
                    message: cleanup.message,
                    elapsed: std::time::Duration::ZERO,
                });
            }
            record.clone()
        };
        write_report_unless_interrupted(&record, config, shared);
        eprintln!("error: {}: {}", e.phase, e.message);
        return exit::ENVIRONMENT;
    }
    let mut schedule = schedule;
    if config.istio_as_found
        && let Some(found) = world.properties().istio_installed
        && let [pass] = schedule.passes.as_mut_slice()
    {
        pass.version = found;
    }
    let conclusion = runner::run(args, schedule, world, shared, progress, config.keep);
    let record = {
        let mut record = runner::lock(&shared.record);
        // Background phases (the image pre-pull) may have ended after setup's snapshot.
        for phase in shared.timeline.phases() {
            let background = phase.group.as_deref() == Some(runner::record::BACKGROUND);
            if background && !record.setup_phases.iter().any(|p| p.name == phase.name) {
                record.setup_phases.push(phase);
            }
        }
        record.clone()
    };
    let written = write_report_unless_interrupted(&record, config, shared);
    for failure in &record.setup_failures {
        eprintln!("error: {}: {}", failure.phase, failure.message);
    }
    let code = record.exit_code();
    if code == exit::SUCCESS && conclusion.has_failed() {
        eprintln!(
            "error: {} trial(s) failed that the report does not show as failed; a harness bug",
            conclusion.num_failed
        );
        return exit::ENVIRONMENT;
    }
    if code == exit::SUCCESS && !written {
        // A green exit code must come with a report that says so.
        return exit::ENVIRONMENT;
    }
    code
}

/// A rerun into the same folder never mixes runs, and a report that cannot be written
/// never leaves the previous run's in its place: its diagnostics, junit.xml and
/// summary.md go before anything else.
fn clear_previous_reports(dir: &std::path::Path) -> Result<(), String> {
    let diagnostics = dir.join("diagnostics");
    if diagnostics.exists() {
        std::fs::remove_dir_all(&diagnostics).map_err(|e| {
            format!(
                "cannot remove the previous run's diagnostics {}: {e}",
                diagnostics.display()
            )
        })?;
    }
    for name in ["junit.xml", "summary.md"] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "cannot remove the previous run's {}: {e}",
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

/// [`write_report`], unless an interruption has written (or is writing) the reports:
/// then they are the interruption's, and this run's ending leaves them alone.
fn write_report_unless_interrupted(
    record: &RunRecord,
    config: &RunConfig,
    shared: &Shared,
) -> bool {
    let taken = runner::lock(&shared.interrupted_reports);
    *taken || write_report(record, &config.reports_dir)
}

/// A run that ends before its setup starts (the version cannot be resolved, the
/// kubeconfig cannot be used) still leaves its reports: the failure as the setup case,
/// every selected step not run.
fn ended_before_setup(
    e: HarnessError,
    phase: &str,
    requested: String,
    not_run: Vec<(String, Vec<crate::runner::record::StepRecord>)>,
    reports: Option<&std::path::Path>,
    shared: &Shared,
) -> u8 {
    if let Some(dir) = reports {
        let mut record = runner::lock(&shared.record);
        record.properties.istio_requested = requested;
        record.setup_failures.push(SetupFailure {
            phase: format!("setup::{phase}"),
            message: e.message.clone(),
            elapsed: std::time::Duration::ZERO,
        });
        record.suites = not_run;
        let record = record.clone();
        let taken = runner::lock(&shared.interrupted_reports);
        if !*taken && clear_previous_reports(dir).is_ok() {
            write_report(&record, dir);
        }
    }
    fail(e)
}

/// JUnit and the Markdown summary (also into `$GITHUB_STEP_SUMMARY` when set); whether
/// every one of them was written.
pub fn write_report(record: &RunRecord, reports_dir: &std::path::Path) -> bool {
    let mut written = true;
    match junit::write(record, reports_dir) {
        Ok(path) => eprintln!("JUnit report: {}", path.display()),
        Err(e) => {
            written = false;
            eprintln!("error: {e}");
        }
    }
    let step_summary = std::env::var_os("GITHUB_STEP_SUMMARY")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from);
    match crate::report::summary::write(record, reports_dir, step_summary.as_deref()) {
        Ok(path) => eprintln!("summary: {}", path.display()),
        Err(e) => {
            written = false;
            eprintln!("error: {e}");
        }
    }
    written
}

/// Before anything is touched: the reports folder can be written, and so can
/// `--logfile`. Exit 3 naming the path otherwise.
fn check_outputs(cli: &Cli) -> Result<(), HarnessError> {
    let dir = &cli.reports_dir;
    let probe = dir.join(format!(".write-test.{}", std::process::id()));
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b""))
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            HarnessError::environment(format!(
                "the reports folder {} is not writable ({e}); pass --reports-dir with a writable folder",
                dir.display()
            ))
        })?;
    if let Some(logfile) = &cli.logfile {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logfile)
            .map_err(|e| {
                HarnessError::environment(format!(
                    "--logfile {} cannot be written ({e})",
                    logfile.display()
                ))
            })?;
    }
    Ok(())
}

/// On Ctrl-C (SIGINT) or SIGTERM (what CI sends on cancellation): write what the run
/// found so far (the running step marked interrupted, with the run's properties), undo
/// what the run owns (a kind cluster it created, unless --keep-cluster), then exit
/// 130 or 143.
fn watch_for_interrupt(
    runtime: &tokio::runtime::Runtime,
    shared: &Shared,
    reports_dir: std::path::PathBuf,
    write_reports: bool,
) {
    let shared = shared.clone();
    // Registered here, before setup starts: registering inside the task left a window
    // in which a signal killed the process without a report.
    let signals = {
        let _context = runtime.enter();
        Signals::register()
    };
    runtime.spawn(async move {
        let (signal, code) = signals.wait().await;
        *runner::lock(&shared.signal) = Some(code);
        // First, before anything else can start one: tools still running (a `kind
        // create cluster`) would outlive the exit and undo the deletion below.
        crate::cluster::process::stop_running();
        if !write_reports {
            // `--list`, `--dry-run`, `--print-matrix`: nothing ran, nothing to report.
            crate::report::lock::release(&reports_dir);
            std::process::exit(i32::from(code));
        }
        {
            let mut taken = runner::lock(&shared.interrupted_reports);
            *taken = true;
            let record = shared.interrupted_snapshot(signal);
            write_report(&record, &reports_dir);
        }

        let cleanup = runner::lock(&shared.interrupt_cleanup).take();
        let what = match cleanup {
            None => String::new(),
            Some(InterruptCleanup {
                what,
                undo: Some(undo),
                hint,
            }) => {
                eprintln!("interrupted: deleting {what}");
                // It may wait for the run's own delete to finish: off the async workers.
                let undone = tokio::task::spawn_blocking(undo)
                    .await
                    .unwrap_or_else(|e| Err(format!("the deletion failed: {e}")));
                match undone {
                    Ok(()) => format!("; deleted {what}"),
                    Err(e) => format!("; could not delete {what} ({e}): delete it with `{hint}`"),
                }
            }
            Some(InterruptCleanup {
                what,
                undo: None,
                hint,
            }) => format!("; kept {what} (--keep-cluster): delete it with `{hint}`"),
        };
        eprintln!("interrupted ({signal}): JUnit and summary written{what}");
        crate::report::lock::release(&reports_dir);
        std::process::exit(i32::from(code));
    });
}

/// SIGINT, SIGTERM and SIGHUP (a closed terminal or SSH session), listened for from
/// the moment they are registered.
struct Signals {
    #[cfg(unix)]
    streams: Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
}

impl Signals {
    /// Needs the runtime's context (`Runtime::enter`).
    fn register() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = signal(SignalKind::interrupt())
                .and_then(|int| {
                    Ok((
                        int,
                        signal(SignalKind::terminate())?,
                        signal(SignalKind::hangup())?,
                    ))
                })
                .ok();
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The first of SIGINT, SIGTERM and SIGHUP, with the exit code it ends the run with.
    async fn wait(self) -> (&'static str, u8) {
        #[cfg(unix)]
        if let Some((mut int, mut term, mut hup)) = self.streams {
            return tokio::select! {
                _ = int.recv() => ("Ctrl-C", exit::INTERRUPTED),
                _ = term.recv() => ("SIGTERM", exit::TERMINATED),
                _ = hup.recv() => ("SIGHUP", exit::HUNG_UP),
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        ("Ctrl-C", exit::INTERRUPTED)
    }
}
