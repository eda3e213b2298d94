//! `<reports-dir>/junit.xml`: one testsuite per suite, one testcase per step, written
//! atomically on every run.

use crate::runner::record::{RunRecord, StepRecord, StepStatus};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::path::Path;
use std::time::Duration;

pub const FILE_NAME: &str = "junit.xml";

pub fn build(record: &RunRecord) -> Report {
    let mut report = Report::new("istio-mtls-conformance");
    let properties: Vec<Property> = record
        .properties
        .pairs()
        .iter()
        .map(|(k, v)| Property::new(*k, *v))
        .collect();
    let mut total = Duration::ZERO;
    if !record.setup_failures.is_empty() {
        let mut suite = TestSuite::new("setup");
        suite.add_properties(properties.clone());
        for failure in &record.setup_failures {
            let name = failure
                .phase
                .strip_prefix("setup::")
                .unwrap_or(&failure.phase);
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(failure.message.clone());
            status.set_type("environment");
            let mut case = TestCase::new(name, status);
            case.set_classname("setup");
            case.set_time(failure.elapsed);
            total += failure.elapsed;
            case.set_system_out(failure.message.clone());
            suite.add_test_case(case);
        }
        suite.set_time(record.setup_failures.iter().map(|f| f.elapsed).sum());
        report.add_test_suite(suite);
    }
    for (label, steps) in &record.suites {
        let mut suite = TestSuite::new(label.as_str());
        suite.add_properties(properties.clone());
        let mut suite_time = Duration::ZERO;
        for step in steps {
            suite_time += step.duration;
            suite.add_test_case(test_case(label, step));
        }
        suite.set_time(suite_time);
        total += suite_time;
        report.add_test_suite(suite);
    }
    report.set_time(total);
    report
}

fn test_case(label: &str, step: &StepRecord) -> TestCase {
    let status = match &step.status {
        StepStatus::Passed => TestCaseStatus::success(),
        StepStatus::Failed { message } => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(message.clone());
            s.set_type("outcome");
            s.set_description(evidence_text(step));
            s
        }
        StepStatus::Errored { message } => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(message.clone());
            s.set_type("environment");
            s.set_description(evidence_text(step));
            s
        }
        StepStatus::Ignored { reason } => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(reason.clone());
            s
        }
    };
    let mut case = TestCase::new(step.slug.as_str(), status);
    case.set_classname(label);
    case.set_time(step.duration);
    if let Some(outcome) = &step.outcome {
        case.add_property(Property::new("outcome", outcome.as_str()));
    }
    if let Some(dir) = &step.diagnostics {
        case.add_property(Property::new("diagnostics", dir.display().to_string()));
    }
    if let Some(version) = &step.istio_version {
        case.add_property(Property::new("istio.version", version.as_str()));
    }
    if step.status != StepStatus::Passed || !step.expectations.is_empty() {
        for (name, d) in [
            ("time.actions", step.timing.actions),
            ("time.convergence", step.timing.convergence),
            ("time.traffic", step.timing.traffic),
            ("time.telemetry", step.timing.telemetry),
        ] {
            case.add_property(Property::new(name, format!("{:.3}", d.as_secs_f64())));
        }
    }
    let mut out = step.log.join("\n");
    let evidence = evidence_text(step);
    if !evidence.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&evidence);
    }
    if !out.is_empty() {
        case.set_system_out(out);
    }
    case
}

/// Every expectation's verdict and evidence, with the edge table where there is one.
pub fn evidence_text(step: &StepRecord) -> String {
    let mut lines = Vec::new();
    for judged in &step.expectations {
        let j = &judged.judgement;
        lines.push(format!(
            "[{}] {} — {} ({:.1} s)",
            j.verdict.mark(),
            judged.description,
            j.evidence.summary,
            j.elapsed.as_secs_f64()
        ));
        lines.extend(j.evidence.details.iter().map(|d| format!("    {d}")));
        if !j.evidence.edges.is_empty() {
            lines.push(
                "    edge | requests Δ | mutual_tls Δ | plaintext Δ | errors | padlock (Kiali) | expected | proxy config"
                    .into(),
            );
            for row in &j.evidence.edges {
                lines.push(format!(
                    "    {} → {} | {} | {} | {} | {} | {} | {} | {}",
                    row.from,
                    row.to,
                    row.total(),
                    row.mutual_tls,
                    row.plaintext,
                    row.errors,
                    row.padlock,
                    row.expected,
                    match row.proxy_config_mtls {
                        Some(true) => "mTLS",
                        Some(false) => "plaintext",
                        None => "-",
                    }
                ));
            }
        }
    }
    if !step.expectations.is_empty() {
        lines.push(format!("time: {}", step.timing.describe()));
    }
    if let Some(dir) = &step.diagnostics {
        lines.push(format!("diagnostics: {}", dir.display()));
    }
    lines.join("\n")
}

/// Writes the report next to its final place and renames it over, so a reader never
/// sees half a file (also when the run is interrupted).
pub fn write(record: &RunRecord, reports_dir: &Path) -> Result<std::path::PathBuf, String> {
    let xml = build(record)
        .to_string()
        .map_err(|e| format!("cannot serialise the JUnit report: {e}"))?;
    crate::report::write_atomically(&reports_dir.join(FILE_NAME), xml.as_bytes(), false)
}
