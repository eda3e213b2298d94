//! Loading suites from a [`SuiteSource`] with strict validation: every problem is
//! reported as `file:line:column: what is wrong`.

use super::model::{Action, Expectation, SuiteFile, SuiteIndex};
use super::source::SuiteSource;
use super::template::{self, PKI_VARIABLES};
use super::{Catalog, INGRESS_GATEWAY_WORKLOAD, Manifest, Step, Suite};
use serde_saphyr::{Location, Spanned};
use std::collections::{BTreeMap, BTreeSet};
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
const SHARED_PREFIX: &str = "shared/";

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
    for name in &index.suites {
        if !seen.insert(name.value.clone()) {
            return Err(at(
                source,
                index_path,
                &name.referenced,
                format!("suite `{}` listed twice", name.value),
            ));
        }
        let suite_path = PathBuf::from(&name.value).join("suite.yaml");
        let Some(text) = source.get(&suite_path) else {
            return Err(at(
                source,
                index_path,
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

/// serde-saphyr's messages may carry a location prefix and a source snippet; the
/// position is reported separately, so keep only the message.
fn first_line(message: &str) -> String {
    let line = crate::exit::one_line(message);
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    let line = match line.rfind(" at line ") {
        Some(cut) => &line[..cut],
        None => line,
    };
    // "line 37 column 5: unknown field ..." → "unknown field ..."
    let positioned = line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "));
    match positioned {
        Some((coordinates, message)) if coordinates.contains(" column ") => message.to_string(),
        _ => line.to_string(),
    }
}

fn at(source: &SuiteSource, path: &Path, location: &Location, message: String) -> SuiteError {
    SuiteError {
        file: source.display(path),
        line: location.line(),
        column: location.column(),
        message,
    }
}

struct SuiteContext<'a> {
    source: &'a SuiteSource,
    suite: &'a str,
    path: &'a Path,
    workloads: &'a [String],
    manifests: BTreeMap<String, Manifest>,
}

impl SuiteContext<'_> {
    fn error(&self, location: &Location, message: String) -> SuiteError {
        at(self.source, self.path, location, message)
    }

    fn manifest_path(&self, reference: &str) -> PathBuf {
        match reference.strip_prefix(SHARED_PREFIX) {
            Some(shared) => PathBuf::from("shared/manifests").join(format!("{shared}.yaml")),
            None => PathBuf::from(self.suite)
                .join("manifests")
                .join(format!("{reference}.yaml")),
        }
    }

    /// Resolves a manifest reference, validating its template once.
    fn manifest(&mut self, reference: &Spanned<String>) -> Result<&Manifest, SuiteError> {
        let name = reference.value.clone();
        if !self.manifests.contains_key(&name) {
            let relative = self.manifest_path(&name);
            let Some(text) = self.source.get(&relative) else {
                return Err(self.error(
                    &reference.referenced,
                    format!(
                        "manifest `{name}` not found: expected {}",
                        self.source.display(&relative)
                    ),
                ));
            };
            let found = template::placeholders(text).map_err(|e| SuiteError {
                file: self.source.display(&relative),
                line: e.line,
                column: e.column,
                message: e.message,
            })?;
            validate_manifest_shape(self.source, &relative, text)?;
            let uses_pki = found
                .iter()
                .any(|p| PKI_VARIABLES.contains(&p.name.as_str()));
            self.manifests.insert(
                name.clone(),
                Manifest {
                    reference: name.clone(),
                    path: self.source.display(&relative),
                    template: text.to_string(),
                    uses_pki,
                },
            );
        }
        Ok(&self.manifests[&name])
    }

    fn workload(&self, name: &Spanned<String>, allow_gateway: bool) -> Result<(), SuiteError> {
        let known = self.workloads.contains(&name.value)
            || (allow_gateway && name.value == INGRESS_GATEWAY_WORKLOAD);
        if known {
            return Ok(());
        }
        let mut valid = self.workloads.to_vec();
        if allow_gateway {
            valid.push(INGRESS_GATEWAY_WORKLOAD.to_string());
        }
        Err(self.error(
            &name.referenced,
            format!(
                "unknown workload `{}`; this suite declares: {}",
                name.value,
                valid.join(", ")
            ),
        ))
    }

    fn action(&mut self, action: &Action) -> Result<(), SuiteError> {
        match action {
            Action::Apply(list) | Action::Ensure(list) => {
                for reference in list {
                    if self.manifest(reference)?.uses_pki {
                        return Err(self.error(
                            &reference.referenced,
                            format!(
                                "manifest `{}` uses the run's PKI: apply it with `issue-pki: {{ secret: {} }}`",
                                reference.value, reference.value
                            ),
                        ));
                    }
                }
            }
            Action::Delete(list) => {
                for reference in list {
                    self.manifest(reference)?;
                }
            }
            Action::Inject(inject) => {
                if inject.workloads.is_empty() {
                    return Err(self.error(&Location::UNKNOWN, "`inject` names no workload".into()));
                }
                for workload in &inject.workloads {
                    self.workload(workload, false)?;
                }
            }
            Action::IssuePki(pki) => {
                if !self.manifest(&pki.secret)?.uses_pki {
                    return Err(self.error(
                        &pki.secret.referenced,
                        format!(
                            "manifest `{}` does not use the PKI variables ({}); nothing would carry the certificates",
                            pki.secret.value,
                            PKI_VARIABLES.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn expectations(
        &self,
        step_id: &Spanned<String>,
        expect: &[Expectation],
    ) -> Result<(), SuiteError> {
        let positive = |e: &Expectation| matches!(e, Expectation::TlsAccepts(t) if t.client == super::model::ClientIdentity::Trusted);
        for (index, expectation) in expect.iter().enumerate() {
            match expectation {
                Expectation::Sidecars(e) => {
                    if e.present.is_empty() && e.absent.is_empty() {
                        return Err(
                            self.error(&step_id.referenced, "`sidecars` names no workload".into())
                        );
                    }
                    for w in e.present.iter().chain(&e.absent) {
                        self.workload(w, false)?;
                    }
                }
                Expectation::Flows(e) => {
                    positive_count(self, step_id, "flows.consecutive", e.consecutive)?
                }
                Expectation::Fails(e) => {
                    positive_count(self, step_id, "fails.consecutive", e.consecutive)?;
                    if e.class.value == super::model::ResultClass::Ok || !e.class.value.is_http() {
                        return Err(self.error(
                            &e.class.referenced,
                            format!(
                                "`fails` needs an HTTP error class such as http-500: `{}` cannot be told apart from a dead path to the gateway",
                                e.class.value
                            ),
                        ));
                    }
                }
                Expectation::Holds(e) => {
                    positive_count(self, step_id, "holds.min_requests", e.min_requests)?;
                }
                Expectation::TlsAccepts(e) => {
                    positive_count(self, step_id, "tls-accepts.consecutive", e.consecutive)?
                }
                Expectation::TlsRejects(e) => {
                    positive_count(self, step_id, "tls-rejects.consecutive", e.consecutive)?;
                    if e.client == super::model::ClientIdentity::Trusted {
                        return Err(self.error(
                            &step_id.referenced,
                            "`tls-rejects` with the trusted client contradicts the exercise".into(),
                        ));
                    }
                    if !expect[..index].iter().any(positive) {
                        return Err(self.error(
                            &step_id.referenced,
                            "`tls-rejects` needs a positive control first in the same step: `tls-accepts: { client: trusted }`".into(),
                        ));
                    }
                }
                Expectation::Mtls(e) => {
                    if e.edges.is_empty() {
                        return Err(self.error(&step_id.referenced, "`mtls` names no edge".into()));
                    }
                    positive_count(self, step_id, "mtls.requests", e.requests)?;
                    for edge in &e.edges {
                        self.workload(&edge.from, true)?;
                        self.workload(&edge.to, false)?;
                    }
                }
                Expectation::ProxyConfig(e) => {
                    self.workload(&e.client, true)?;
                    if e.clusters.is_empty() {
                        return Err(self.error(
                            &e.client.referenced,
                            "`proxy-config` names no cluster".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn positive_count(
    ctx: &SuiteContext<'_>,
    step: &Spanned<String>,
    field: &str,
    value: u32,
) -> Result<(), SuiteError> {
    if value == 0 {
        return Err(ctx.error(&step.referenced, format!("`{field}` must be at least 1")));
    }
    Ok(())
}

/// Every document of a manifest must name apiVersion, kind and metadata.name, so the
/// apply engine can address it. Placeholders are replaced by a dummy first.
fn validate_manifest_shape(
    source: &SuiteSource,
    relative: &Path,
    text: &str,
) -> Result<(), SuiteError> {
    let mut dummy = template::Variables::default();
    for name in template::VARIABLES {
        dummy.set(name, "x");
    }
    let rendered = template::render(text, &dummy).map_err(|e| SuiteError {
        file: source.display(relative),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&rendered.text).map_err(|err| {
            let (line, column) = err
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            SuiteError {
                file: source.display(relative),
                line,
                column,
                message: first_line(&err.to_string()),
            }
        })?;
    if documents.is_empty() {
        return Err(SuiteError {
            file: source.display(relative),
            line: 1,
            column: 1,
            message: "manifest holds no Kubernetes object".into(),
        });
    }
    for (index, doc) in documents.iter().enumerate() {
        let missing: Vec<&str> = [
            ("apiVersion", doc.get("apiVersion").and_then(|v| v.as_str())),
            ("kind", doc.get("kind").and_then(|v| v.as_str())),
            (
                "metadata.name",
                doc.pointer("/metadata/name").and_then(|v| v.as_str()),
            ),
        ]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
        if !missing.is_empty() {
            return Err(SuiteError {
                file: source.display(relative),
                line: 1,
                column: 1,
                message: format!("document {} lacks {}", index + 1, missing.join(", ")),
            });
        }
    }
    Ok(())
}

fn validate_suite(
    source: &SuiteSource,
    name: &str,
    path: &Path,
    file: SuiteFile,
) -> Result<Suite, SuiteError> {
    let mut ctx = SuiteContext {
        source,
        suite: name,
        path,
        workloads: &file.workloads,
        manifests: BTreeMap::new(),
    };
    let mut ids = BTreeSet::new();
    let mut steps = Vec::new();
    for (index, step) in file.steps.into_iter().enumerate() {
        let id = &step.id;
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
            return Err(ctx.error(
                &id.referenced,
                format!(
                    "step `{}` expects nothing: every step must judge an outcome",
                    id.value
                ),
            ));
        }
        for action in &step.actions {
            ctx.action(action)?;
        }
        ctx.expectations(&step.id, &step.expect)?;
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
    for action in &file.teardown {
        ctx.action(action)?;
    }
    let manifests = ctx.manifests;
    Ok(Suite {
        name: name.to_string(),
        title: file.title,
        workloads: file.workloads,
        steps,
        teardown: file.teardown,
        manifests,
    })
}
