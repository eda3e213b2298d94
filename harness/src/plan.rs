//! `--dry-run`: the ordered plan as text, and every manifest the run would apply,
//! rendered, under `<reports-dir>/plan/NN-<suite>-<step>/`. Nothing is touched.

use crate::config::RunConfig;
use crate::pki::Pki;
use crate::suite::template::{self, Variables};
use crate::suite::{Action, Suite};
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
    let (verb, names): (&str, Vec<&str>) = match action {
        Action::Apply(list) => ("apply", list.iter().map(|s| s.value.as_str()).collect()),
        Action::Ensure(list) => ("ensure", list.iter().map(|s| s.value.as_str()).collect()),
        Action::Delete(list) => ("delete", list.iter().map(|s| s.value.as_str()).collect()),
        Action::IssuePki(p) => ("apply", vec![p.secret.value.as_str()]),
        Action::Inject(_) => return Ok(Vec::new()),
    };
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

/// Builds the plan for `suites` and writes the rendered manifests.
/// `provisioning` is the cluster side's own plan (kind, Istio, addon), printed first.
pub fn write(
    config: &RunConfig,
    suites: &[std::sync::Arc<Suite>],
    provisioning: &str,
) -> Result<Plan, String> {
    let plan_dir = config.plan_dir();
    if plan_dir.exists() {
        std::fs::remove_dir_all(&plan_dir)
            .map_err(|e| format!("cannot clear the previous plan {}: {e}", plan_dir.display()))?;
    }
    let mut text = String::new();
    let mut written = Vec::new();
    let steps: usize = suites.iter().map(|s| s.steps.len()).sum();
    let _ = writeln!(
        text,
        "Plan: {} suite(s), {steps} step(s); nothing is touched (--dry-run)",
        suites.len()
    );
    let _ = writeln!(text, "{provisioning}");
    let mut global = 0usize;
    let upgrade = config
        .upgrade_from
        .as_deref()
        .map(|from| (from, config.istio_version.as_str()));
    let passes = crate::runner::passes(upgrade);
    for (pass_index, pass) in passes.iter().enumerate() {
        if let Some((from, to)) = upgrade {
            if pass_index == 1 {
                let _ = writeln!(
                    text,
                    "{}: upgrade Istio in place from {from} to {to}",
                    crate::runner::upgrade_name(from, to)
                );
                let _ = writeln!(
                    text,
                    "    do:     istioctl {} (istioctl of {to}, from its verified release archive)",
                    crate::cluster::istio::istioctl_args("upgrade", to, &config.versions.istio.hub)
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
            let _ = writeln!(
                text,
                "pass {} on Istio {}:",
                pass_index + 1,
                if pass_index == 0 { from } else { to }
            );
        }
        for suite in suites {
            let mut variables = config.variables();
            let label = format!("{}{}", suite.name, pass.suffix);
            let _ = writeln!(text, "suite {label} — {}", suite.title);
            let mut sections: Vec<(String, String, &[Action], Option<&crate::suite::Step>)> = suite
                .steps
                .iter()
                .map(|s| {
                    (
                        s.slug(),
                        format!("{label}::{}", s.slug()),
                        s.actions.as_slice(),
                        Some(s),
                    )
                })
                .collect();
            sections.push((
                "teardown".into(),
                format!("{label}::teardown"),
                suite.teardown.as_slice(),
                None,
            ));
            for (slug, name, actions, step) in sections {
                global += 1;
                let folder = plan_dir.join(format!("{global:02}-{label}-{slug}"));
                match step {
                    Some(step) => {
                        let outcome = step
                            .outcome
                            .as_deref()
                            .map(|o| format!(" [{o}]"))
                            .unwrap_or_default();
                        let _ = writeln!(text, "  {name}{outcome}: {}", step.title);
                    }
                    None => {
                        let _ = writeln!(text, "  {name}: unless --keep");
                    }
                }
                for (index, action) in actions.iter().enumerate() {
                    if let Action::IssuePki(_) = action {
                        let mut pki = Pki::issue(crate::config::HOST)?;
                        pki.write(&config.pki_dir())?;
                        for (name, value) in pki.template_values() {
                            variables.set(name, value);
                        }
                        let _ = writeln!(
                            text,
                            "    do:     {action} (PKI written to {})",
                            config.pki_dir().display()
                        );
                    } else {
                        let _ = writeln!(text, "    do:     {action}");
                    }
                    for (file, rendered) in rendered_manifests(suite, index, action, &variables)? {
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
                if let Some(step) = step {
                    let mut total = Duration::ZERO;
                    for expectation in &step.expect {
                        total += expectation.deadline();
                        let _ = writeln!(text, "    expect: {expectation}");
                    }
                    let _ = writeln!(text, "    deadline: {} for all expectations", human(total));
                }
            }
        }
    }
    let _ = writeln!(
        text,
        "Rendered manifests: {} under {}",
        written.len(),
        plan_dir.display()
    );
    Ok(Plan { text, written })
}
