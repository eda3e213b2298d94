//! Loading suites from a [`SuiteSource`] with strict validation: every problem is
//! reported as `file:line:column: what is wrong`. Each action and expectation validates
//! itself (see `action/` and `expect/`); this file walks the files and the steps.

use super::model::{SuiteFile, SuiteIndex};
use super::source::SuiteSource;
use super::validation::{Validation, documents, first_line};
use super::{Catalog, Step, Suite, app};
use serde_saphyr::Location;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for SuiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for SuiteError {}

const INDEX: &str = "index.yaml";

/// Loads and validates every suite the source's `index.yaml` lists.
pub fn load(source: &SuiteSource) -> Result<Catalog, SuiteError> {
    let index_path = Path::new(INDEX);
    let index_text = source.get(index_path).ok_or_else(|| SuiteError {
        file: source.display(index_path),
        line: 1,
        column: 1,
        message: "missing: a suites folder needs an index.yaml listing its suites in order".into(),
    })?;
    let index: SuiteIndex = parse(source, index_path, index_text)?;
    let mut suites = Vec::new();
    let mut seen = BTreeSet::new();
    let at = |location: &Location, message: String| SuiteError {
        file: source.display(index_path),
        line: location.line(),
        column: location.column(),
        message,
    };
    for name in &index.suites {
        if !seen.insert(name.value.clone()) {
            return Err(at(
                &name.referenced,
                format!("suite `{}` listed twice", name.value),
            ));
        }
        let suite_path = PathBuf::from(&name.value).join("suite.yaml");
        let Some(text) = source.get(&suite_path) else {
            return Err(at(
                &name.referenced,
                format!(
                    "suite `{}` has no {}",
                    name.value,
                    source.display(&suite_path)
                ),
            ));
        };
        let file: SuiteFile = parse(source, &suite_path, text)?;
        suites.push(std::sync::Arc::new(validate_suite(
            source,
            &name.value,
            &suite_path,
            file,
        )?));
    }
    Ok(Catalog { suites })
}

/// Loads and validates `<name>/suite.yaml` of the source, a suite the index does not
/// list (the canary upgrade's phases, `canary-upgrade`).
pub fn load_one(source: &SuiteSource, name: &str) -> Result<Suite, SuiteError> {
    let suite_path = PathBuf::from(name).join("suite.yaml");
    let text = source.get(&suite_path).ok_or_else(|| SuiteError {
        file: source.display(&suite_path),
        line: 1,
        column: 1,
        message: format!("missing: the suites folder has no `{name}` (needed by this run)"),
    })?;
    let file: SuiteFile = parse(source, &suite_path, text)?;
    validate_suite(source, name, &suite_path, file)
}

fn parse<T: serde::de::DeserializeOwned>(
    source: &SuiteSource,
    path: &Path,
    text: &str,
) -> Result<T, SuiteError> {
    serde_saphyr::from_str(text).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        SuiteError {
            file: source.display(path),
            line,
            column,
            message: first_line(&err.to_string()),
        }
    })
}

fn validate_suite(
    source: &SuiteSource,
    name: &str,
    path: &Path,
    file: SuiteFile,
) -> Result<Suite, SuiteError> {
    let mut ctx = Validation::new(source, name, path, &file.workloads);
    let mut ids = BTreeSet::new();
    let mut steps = Vec::new();
    for (index, step) in file.steps.into_iter().enumerate() {
        let id = &step.id;
        ctx.step = id.referenced;
        let valid_id = !id.value.is_empty()
            && id
                .value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_id {
            return Err(ctx.error(
                &id.referenced,
                format!("step id `{}` must be kebab-case (a-z, 0-9, -)", id.value),
            ));
        }
        if !ids.insert(id.value.clone()) {
            return Err(ctx.error(&id.referenced, format!("step id `{}` used twice", id.value)));
        }
        if step.expect.is_empty() {
            return Err(ctx.at_step(format!(
                "step `{}` expects nothing: every step must judge an outcome",
                id.value
            )));
        }
        for action in &step.actions {
            action.validate(&mut ctx)?;
        }
        for (i, expectation) in step.expect.iter().enumerate() {
            expectation.validate(&mut ctx, &step.expect[..i])?;
        }
        steps.push(Step {
            suite: name.to_string(),
            number: index + 1,
            id: step.id.value,
            title: step.title,
            outcome: step.outcome,
            actions: step.actions,
            expect: step.expect,
        });
    }
    if steps.is_empty() {
        return Err(SuiteError {
            file: source.display(path),
            line: 1,
            column: 1,
            message: format!("suite `{name}` has no steps"),
        });
    }
    ctx.step = Location::UNKNOWN;
    for action in &file.teardown {
        action.validate(&mut ctx)?;
    }
    let manifests = ctx.manifests;
    let mut objects = Vec::new();
    for manifest in manifests.values() {
        objects.extend(documents(&manifest.path, &manifest.template)?);
    }
    let app = app::App::from_objects(&objects);
    for workload in &file.workloads {
        if !app.deployments.contains_key(workload) {
            return Err(SuiteError {
                file: source.display(path),
                line: 1,
                column: 1,
                message: format!(
                    "workload `{workload}` is not a Deployment of the suite's manifests (found: {})",
                    app.deployments
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    Ok(Suite {
        name: name.to_string(),
        title: file.title,
        workloads: file.workloads,
        steps,
        teardown: file.teardown,
        manifests,
        app: std::sync::Arc::new(app),
    })
}
