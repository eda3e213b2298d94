//! The Markdown summary: a table per suite (step, verdict, evidence in one line, time)
//! and, for steps that judged edges, the mTLS graph as Kiali would draw it (Mermaid)
//! followed by the same data as a table. Written to `<reports-dir>/summary.md` on every
//! run and appended to `$GITHUB_STEP_SUMMARY` when it is set.

use crate::runner::record::{RunRecord, StepRecord, StepStatus};
use crate::verdict::{EdgeRow, Padlock};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "summary.md";

/// Text fit for one table cell: one line, pipes escaped, bounded length.
pub fn cell(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut escaped = one_line.replace('|', "\\|");
    if escaped.chars().count() > 300 {
        escaped = escaped.chars().take(297).collect::<String>() + "...";
    }
    escaped
}

fn verdict(step: &StepRecord) -> &'static str {
    match step.status {
        StepStatus::Passed => "✅ passed",
        StepStatus::Failed { .. } => "❌ failed",
        StepStatus::Errored { .. } => "⚠️ error",
        StepStatus::Ignored { .. } => "⏭️ ignored",
    }
}

fn evidence(step: &StepRecord) -> String {
    match &step.status {
        StepStatus::Failed { message } | StepStatus::Errored { message } => message.clone(),
        StepStatus::Ignored { reason } => reason.clone(),
        StepStatus::Passed => step
            .expectations
            .last()
            .map(|e| e.judgement.evidence.summary.clone())
            .unwrap_or_default(),
    }
}

/// A Mermaid node id: letters, digits and `_` only.
fn node(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("n_{id}[\"{name}\"]")
}

/// The edge graph of one step, as Kiali draws it: a padlock where telemetry saw mTLS,
/// the error rate where there were errors.
pub fn mermaid(rows: &[EdgeRow]) -> String {
    let mut out = String::from("```mermaid\nflowchart LR\n");
    for row in rows {
        let wrong = row.padlock != row.expected;
        let mut label = row.padlock.icon().to_string();
        if let Some(rate) = row.error_rate().filter(|r| *r > 0.0) {
            label.push_str(&format!(", {rate:.0} % errors"));
        }
        if wrong {
            label.push_str(&format!(" (expected {})", row.expected));
        }
        let _ = writeln!(
            out,
            "  {} -- \"{label}\" --> {}",
            node(&row.from),
            node(&row.to)
        );
    }
    out.push_str("```\n");
    out
}

pub fn edge_table(rows: &[EdgeRow]) -> String {
    let mut out = String::from(
        "| edge | requests Δ | mutual_tls Δ | plaintext Δ | errors | padlock (telemetry) | expected | proxy config |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} → {} | {} | {} | {} | {} | {} | {} | {} |",
            r.from,
            r.to,
            r.total(),
            r.mutual_tls,
            r.plaintext,
            r.errors,
            r.padlock.icon(),
            match r.expected {
                Padlock::Present => "🔒 mTLS only",
                Padlock::Absent => "🔓 plaintext only",
                Padlock::NoTraffic => "no traffic",
            },
            match r.proxy_config_mtls {
                Some(true) => "mTLS",
                Some(false) => "plaintext",
                None => "—",
            }
        );
    }
    out
}

/// The run in one line: how many of the selected steps ran and how they ended.
pub fn headline(record: &RunRecord) -> String {
    let steps: Vec<&StepRecord> = record.suites.iter().flat_map(|(_, s)| s).collect();
    let count = |f: fn(&StepStatus) -> bool| steps.iter().filter(|s| f(&s.status)).count();
    let passed = count(|s| matches!(s, StepStatus::Passed));
    let failed = count(|s| matches!(s, StepStatus::Failed { .. }));
    let errored = count(|s| matches!(s, StepStatus::Errored { .. }));
    let ran = passed + failed + errored;
    let interrupted = record
        .setup_failures
        .iter()
        .any(|f| f.phase.ends_with("interrupted"));
    let opening = if interrupted {
        "interrupted"
    } else if !record.setup_failures.is_empty() && ran == 0 {
        "setup failed"
    } else if failed > 0 {
        "failed"
    } else if errored > 0 || !record.setup_failures.is_empty() {
        "errors"
    } else if ran < steps.len() {
        "partial"
    } else {
        "passed"
    };
    format!(
        "{opening}: {ran} of {} steps ran ({passed} passed, {failed} failed, {errored} errors, {} not run)",
        steps.len(),
        steps.len() - ran
    )
}

pub fn render(record: &RunRecord) -> String {
    let p = &record.properties;
    let installed = match &p.istio_installed {
        Some(v) => format!(", installed: {v}"),
        None => ", nothing installed".into(),
    };
    let mut out = format!(
        "## Istio mTLS conformance — {}\n\nIstio {} (requested: {}{installed}) · Kubernetes {} · node image {} · cluster {} · harness {}\n\n",
        headline(record),
        p.istio_version,
        p.istio_requested,
        p.kubernetes_version,
        p.kind_node_image,
        p.cluster_name,
        p.harness_version
    );
    for note in &p.notes {
        let _ = writeln!(out, "- {}", cell(note));
    }
    if !p.notes.is_empty() {
        out.push('\n');
    }
    for failure in &record.setup_failures {
        let _ = writeln!(
            out,
            "⚠️ **{}**: {}\n",
            failure.phase,
            cell(&failure.message)
        );
    }
    for (label, steps) in &record.suites {
        let _ = writeln!(
            out,
            "### {label}\n\n| step | verdict | evidence | time |\n|---|---|---|---|"
        );
        for step in steps {
            let _ = writeln!(
                out,
                "| {}{} | {} | {} | {:.1} s |",
                step.slug,
                step.outcome
                    .as_deref()
                    .map(|o| format!(" ({o})"))
                    .unwrap_or_default(),
                verdict(step),
                cell(&evidence(step)),
                step.duration.as_secs_f64()
            );
        }
        out.push('\n');
        for step in steps {
            let rows: Vec<EdgeRow> = step.edges().cloned().collect();
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(out, "#### {}::{} — mTLS per edge\n", label, step.slug);
            out.push_str(&mermaid(&rows));
            out.push('\n');
            out.push_str(&edge_table(&rows));
            out.push('\n');
        }
        for step in steps.iter().filter(|s| s.diagnostics.is_some()) {
            if let Some(dir) = &step.diagnostics {
                let _ = writeln!(
                    out,
                    "Diagnostics of {}::{}: `{}`\n",
                    label,
                    step.slug,
                    dir.display()
                );
            }
        }
    }
    out.push_str(&time_budget(record));
    out
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Where the run's time went: setup's phases (those that ran at the same time on one
/// row, the longest of them on the critical path), then every step with its actions,
/// convergence, traffic and telemetry. Steps run one after another: all of them are on
/// the critical path.
pub fn time_budget(record: &RunRecord) -> String {
    let mut rows: Vec<(String, std::time::Duration, String)> = Vec::new();
    // Background phases: shown, not on the critical path (nothing waited for them).
    let mut aside: Vec<(String, std::time::Duration)> = Vec::new();
    // Phases of one group ran at the same time, whatever order they finished (and were
    // recorded) in: a background download may end after the next phase began.
    let mut groups: Vec<Vec<&crate::runner::record::PhaseTime>> = Vec::new();
    for phase in &record.setup_phases {
        if phase.group.as_deref() == Some(crate::runner::record::BACKGROUND) {
            aside.push((
                format!("setup, in the background: {}", phase.name),
                phase.elapsed,
            ));
            continue;
        }
        let same = phase.group.as_ref().and_then(|name| {
            groups
                .iter_mut()
                .find(|g| g.first().and_then(|p| p.group.as_ref()) == Some(name))
        });
        match same {
            Some(group) => group.push(phase),
            None => groups.push(vec![phase]),
        }
    }
    for group in groups {
        let longest = group
            .iter()
            .max_by_key(|p| p.elapsed)
            .map(|p| (p.name.clone(), p.elapsed))
            .unwrap_or_default();
        if group.len() == 1 {
            rows.push((format!("setup: {}", longest.0), longest.1, "✔".into()));
        } else {
            let parts: Vec<String> = group
                .iter()
                .map(|p| format!("{} {}", p.name, secs(p.elapsed)))
                .collect();
            rows.push((
                format!("setup, at the same time: {}", parts.join(" ∥ ")),
                longest.1,
                format!("✔ {}", longest.0),
            ));
        }
    }
    for (label, steps) in &record.suites {
        for step in steps {
            let t = &step.timing;
            let parts = if step.expectations.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.describe())
            };
            rows.push((
                format!("{label}::{}{parts}", step.slug),
                step.duration,
                "✔".into(),
            ));
        }
    }
    if rows.is_empty() && aside.is_empty() {
        return String::new();
    }
    let total: std::time::Duration = rows.iter().map(|(_, d, _)| *d).sum();
    let mut out =
        String::from("### Where the time went\n\n| part | time | critical path |\n|---|---|---|\n");
    for (part, time, critical) in &rows {
        let _ = writeln!(out, "| {} | {} | {} |", cell(part), secs(*time), critical);
    }
    for (part, time) in &aside {
        let _ = writeln!(
            out,
            "| {} | {} | no (nothing waits for it) |",
            cell(part),
            secs(*time)
        );
    }
    let _ = writeln!(out, "| **critical path** | **{}** | |\n", secs(total));
    out
}

/// Writes `summary.md` and appends to `$GITHUB_STEP_SUMMARY` when `step_summary` is set.
pub fn write(
    record: &RunRecord,
    reports_dir: &Path,
    step_summary: Option<&Path>,
) -> Result<PathBuf, String> {
    let text = render(record);
    let path =
        crate::report::write_atomically(&reports_dir.join(FILE_NAME), text.as_bytes(), false)?;
    if let Some(target) = step_summary {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(target)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| {
                format!(
                    "cannot append to $GITHUB_STEP_SUMMARY ({}): {e}",
                    target.display()
                )
            })?;
    }
    Ok(path)
}
