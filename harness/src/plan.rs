//! `--dry-run`: the ordered plan as text — provisioning, then the schedule with, per
//! step, whether it is judged or only carried out as setup of a later selected step —
//! and every manifest the run would apply, rendered, under
//! `<reports-dir>/plan/NN-<suite>-<step>/`. Its PKI goes to `<reports-dir>/plan/pki/`,
//! never over the `pki/` a kept cluster may still use. Nothing is touched.
//!
//! Longer than most files because steps, upgrade stages and the canary's moves each
//! print in the order a run takes them, which one walk over the schedule keeps true.

use crate::config::RunConfig;
use crate::pki::Pki;
use crate::runner::canary::{CanaryPlan, Op};
use crate::runner::schedule::{Item, Role, Schedule, Stage};
use crate::suite::template::{self, Variables};
use crate::suite::{Action, Suite};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// What a dry run produced.
#[derive(Debug)]
pub struct Plan {
    pub text: String,
    pub written: Vec<PathBuf>,
}

/// Renders one action's manifests to `(file name, rendered)` pairs.
fn rendered_manifests(
    suite: &Suite,
    action_index: usize,
    action: &Action,
    variables: &Variables,
) -> Result<Vec<(String, template::Rendered)>, String> {
    let (verb, names) = action.manifests();
    let mut out = Vec::new();
    for name in names {
        let manifest = &suite.manifests[name];
        let rendered = template::render(&manifest.template, variables)
            .map_err(|e| format!("{}:{}:{}: {}", manifest.path, e.line, e.column, e.message))?;
        let file = format!(
            "{:02}-{verb}-{}.yaml",
            action_index + 1,
            name.replace('/', "-")
        );
        out.push((file, rendered));
    }
    Ok(out)
}

fn human(d: Duration) -> String {
    crate::suite::duration::HumanDuration(d).to_string()
}

/// Builds the plan for `schedule` and writes the rendered manifests.
/// `provisioning` is the cluster side's own plan (kind, Istio, addon), printed first.
pub fn write(config: &RunConfig, schedule: &Schedule, provisioning: &str) -> Result<Plan, String> {
    let plan_dir = config.plan_dir();
    if plan_dir.exists() {
        std::fs::remove_dir_all(&plan_dir)
            .map_err(|e| format!("cannot clear the previous plan {}: {e}", plan_dir.display()))?;
    }
    let roles = schedule.roles();
    let mut text = String::new();
    let judged = schedule
        .items
        .iter()
        .zip(&roles)
        .filter(|(i, r)| matches!(i, Item::Step { .. }) && **r == Role::Judged)
        .count();
    let _ = writeln!(
        text,
        "Plan: {judged} step(s) judged of {} in the schedule; nothing is touched (--dry-run)",
        schedule
            .items
            .iter()
            .filter(|i| matches!(i, Item::Step { .. }))
            .count()
    );
    let _ = writeln!(text, "{provisioning}");
    let mut totals = Totals::new(config);
    let mut folders = Folders {
        plan_dir: plan_dir.clone(),
        pki_dir: plan_dir.join("pki"),
        index: 0,
        written: Vec::new(),
    };
    let mut variables_by_suite: BTreeMap<String, Variables> = BTreeMap::new();
    let mut current_pass = usize::MAX;
    for (position, item) in schedule.items.iter().enumerate() {
        match item {
            Item::Upgrade {
                from,
                to,
                stage,
                selected,
            } => {
                let runs = schedule.runs_stage(position);
                let _ = writeln!(
                    text,
                    "{}: {}{}",
                    schedule.name(item),
                    stage.title(from, to),
                    if *selected {
                        ""
                    } else if runs {
                        " [setup: carried out before the selected trials after it, not judged]"
                    } else {
                        " [not run]"
                    }
                );
                if !runs {
                    continue;
                }
                match stage {
                    Stage::InPlace => {
                        let _ = writeln!(
                            text,
                            "    do:     istioctl {} (istioctl of {to}, from its verified release archive)",
                            crate::cluster::istio::istioctl_args(
                                "upgrade",
                                to,
                                &config.versions.istio.hub
                            )
                            .join(" ")
                        );
                        let _ = writeln!(
                            text,
                            "    do:     wait for istiod and the ingress gateway; istiod must run {to}"
                        );
                        let _ = writeln!(
                            text,
                            "    do:     restart every deployment in {} and wait for the rollouts",
                            config.app_namespace
                        );
                        let _ = writeln!(
                            text,
                            "    expect: every istio-proxy (app pods and ingress gateway) runs {to}"
                        );
                    }
                    Stage::CanaryMixed | Stage::CanaryComplete => {
                        let Some(suite) = &schedule.canary else {
                            return Err(
                                "the canary steps were not loaded; this is a harness bug".into()
                            );
                        };
                        let plan = CanaryPlan::new(suite)?;
                        let variables = variables_by_suite
                            .entry(suite.name.clone())
                            .or_insert_with(|| config.variables());
                        for op in plan.ops(*stage) {
                            match op {
                                Op::Actions(index) => {
                                    let step = &suite.steps[*index];
                                    let _ = writeln!(
                                        text,
                                        "  {}: {} [its actions]",
                                        step.trial_name(),
                                        step.title
                                    );
                                    let name = format!("{}-{}", suite.name, step.slug());
                                    folders.actions(
                                        &mut text,
                                        suite,
                                        &step.actions,
                                        variables,
                                        &name,
                                        &mut totals.deadlines,
                                    )?;
                                }
                                Op::Cluster(op) => {
                                    let _ = writeln!(text, "  {op}:");
                                    for command in crate::world::canary::commands(op, config) {
                                        let _ = writeln!(text, "    do:     {command}");
                                    }
                                    totals.deadlines += crate::deadlines::ISTIOCTL;
                                }
                                Op::Judge(index) => {
                                    let step = &suite.steps[*index];
                                    let _ = writeln!(
                                        text,
                                        "  {}: {}{}",
                                        step.trial_name(),
                                        step.title,
                                        if *selected {
                                            ""
                                        } else {
                                            " [setup only: not judged]"
                                        }
                                    );
                                    if *selected {
                                        plan_expectations(&mut text, step, &mut totals);
                                    }
                                }
                                Op::Teardown => {
                                    let _ =
                                        writeln!(text, "  {}::teardown: unless --keep", suite.name);
                                    let name = format!("{}-teardown", suite.name);
                                    folders.actions(
                                        &mut text,
                                        suite,
                                        &suite.teardown,
                                        variables,
                                        &name,
                                        &mut totals.deadlines,
                                    )?;
                                }
                            }
                        }
                    }
                }
            }
            Item::Step {
                pass, suite, index, ..
            } => {
                if *pass != current_pass {
                    current_pass = *pass;
                    if schedule.passes.len() > 1 {
                        let _ = writeln!(
                            text,
                            "pass {} on Istio {}:",
                            pass + 1,
                            schedule.passes[*pass].version
                        );
                    }
                }
                let label = schedule.label(*pass, suite);
                if *index == 0 {
                    let _ = writeln!(text, "suite {label} — {}", suite.title);
                    variables_by_suite.insert(label.clone(), config.variables());
                }
                let step = &suite.steps[*index];
                let role = roles.get(position).copied().unwrap_or(Role::NotRun);
                let outcome = step
                    .outcome
                    .as_deref()
                    .map(|o| format!(" [{o}]"))
                    .unwrap_or_default();
                let marker = match role {
                    Role::Judged => "",
                    Role::Setup => " [setup only: its actions run, it is not judged]",
                    Role::NotRun => " [not run]",
                };
                let _ = writeln!(
                    text,
                    "  {label}::{}{outcome}: {}{marker}",
                    step.slug(),
                    step.title
                );
                if role == Role::NotRun {
                    continue;
                }
                let variables = variables_by_suite
                    .entry(label.clone())
                    .or_insert_with(|| config.variables());
                folders.actions(
                    &mut text,
                    suite,
                    &step.actions,
                    variables,
                    &format!("{label}-{}", step.slug()),
                    &mut totals.deadlines,
                )?;
                if role == Role::Judged {
                    plan_expectations(&mut text, step, &mut totals);
                }
                if schedule.last_of_suite(position) && role == Role::Judged {
                    let _ = writeln!(text, "  {label}::teardown: unless --keep");
                    folders.actions(
                        &mut text,
                        suite,
                        &suite.teardown,
                        variables,
                        &format!("{label}-teardown"),
                        &mut totals.deadlines,
                    )?;
                }
            }
        }
    }
    let _ = writeln!(
        text,
        "Deadlines add up to {} at most (actions and expectations; provisioning not included)",
        human(totals.deadlines)
    );
    let _ = writeln!(text, "{}", totals.lower_bound());
    let _ = writeln!(
        text,
        "Rendered manifests: {} under {}",
        folders.written.len(),
        plan_dir.display()
    );
    Ok(Plan {
        text,
        written: folders.written,
    })
}

/// What the judged expectations add up to: their deadlines (the most a run can take)
/// and the least they take even in a world that is already as expected.
struct Totals {
    deadlines: Duration,
    windows: Duration,
    telemetry_phases: u32,
    least: Duration,
    scrape: Duration,
    scrape_note: String,
}

impl Totals {
    fn new(config: &RunConfig) -> Totals {
        let (scrape, scrape_note) = match &config.prometheus_url {
            // Read back from that Prometheus at run time; unknown to a dry run.
            Some(_) => (
                Duration::from_secs(15),
                "scrape interval of --prometheus-url unknown to a dry run: 15s assumed".into(),
            ),
            None => (
                config.scrape_interval,
                format!(
                    "scrape interval {} (--scrape-interval)",
                    human(config.scrape_interval)
                ),
            ),
        };
        Totals {
            deadlines: Duration::ZERO,
            windows: Duration::ZERO,
            telemetry_phases: 0,
            least: Duration::ZERO,
            scrape,
            scrape_note,
        }
    }

    fn add(&mut self, expectation: &crate::suite::Expectation) {
        self.deadlines += expectation.deadline();
        let least = expectation.least_time(self.scrape);
        self.least += least;
        if expectation.part() == crate::verdict::Part::Telemetry {
            self.telemetry_phases += 1;
        } else {
            self.windows += least;
        }
    }

    fn lower_bound(&self) -> String {
        format!(
            "Expected lower bound of the judged steps: {} (hold and fail windows {}, {} telemetry phase(s) × 3 scrapes; {}); provisioning, rollouts and the cluster's convergence come on top",
            human(self.least),
            human(self.windows),
            self.telemetry_phases,
            self.scrape_note
        )
    }
}

/// A judged step's expectations, each with its deadline, into the plan and the totals.
fn plan_expectations(text: &mut String, step: &crate::suite::Step, totals: &mut Totals) {
    let mut expectations = Duration::ZERO;
    for expectation in &step.expect {
        expectations += expectation.deadline();
        totals.add(expectation);
        let _ = writeln!(text, "    expect: {expectation}");
    }
    let _ = writeln!(
        text,
        "    deadline: {} for all expectations",
        human(expectations)
    );
}

/// The plan's folders: one per step (numbered in run order) with its rendered
/// manifests, and the plan's PKI.
struct Folders {
    plan_dir: PathBuf,
    pki_dir: PathBuf,
    index: usize,
    written: Vec<PathBuf>,
}

impl Folders {
    /// `actions` into the plan's text, their manifests rendered into the next folder
    /// (`NN-name`), their deadlines added to `total`.
    fn actions(
        &mut self,
        text: &mut String,
        suite: &Suite,
        actions: &[Action],
        variables: &mut Variables,
        name: &str,
        total: &mut Duration,
    ) -> Result<(), String> {
        self.index += 1;
        let folder = self.plan_dir.join(format!("{:02}-{name}", self.index));
        let written = plan_actions(
            text,
            suite,
            actions,
            variables,
            &folder,
            &self.pki_dir,
            total,
        )?;
        self.written.extend(written);
        Ok(())
    }
}

fn plan_actions(
    text: &mut String,
    suite: &Suite,
    actions: &[Action],
    variables: &mut Variables,
    folder: &std::path::Path,
    pki_dir: &std::path::Path,
    total: &mut Duration,
) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    for (index, action) in actions.iter().enumerate() {
        let deadline = action.deadline(suite);
        *total += deadline;
        if let Action::IssuePki(_) = action {
            let mut pki = Pki::issue(crate::config::HOST)?;
            pki.write(pki_dir)?;
            for (name, value) in pki.template_values() {
                variables.set(name, value);
            }
            let _ = writeln!(
                text,
                "    do:     {action} (within {}; the plan's PKI is written to {})",
                human(deadline),
                pki_dir.display()
            );
        } else {
            let _ = writeln!(text, "    do:     {action} (within {})", human(deadline));
        }
        for (file, rendered) in rendered_manifests(suite, index, action, variables)? {
            let path = folder.join(&file);
            crate::report::write_atomically(
                &path,
                rendered.text.as_bytes(),
                rendered.holds_secret,
            )?;
            let _ = writeln!(
                text,
                "            → {}{}",
                path.display(),
                if rendered.holds_secret {
                    " (mode 0600: holds a private key)"
                } else {
                    ""
                }
            );
            written.push(path);
        }
    }
    Ok(written)
}
