//! The context every action and expectation validates itself against at load time:
//! errors at `file:line:column`, the suite's workloads, and its manifests (read and
//! checked once: placeholders known, every document addressable).

use super::source::SuiteSource;
use super::template::{self, PKI_VARIABLES};
use super::{INGRESS_GATEWAY_WORKLOAD, Manifest, SuiteError};
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SHARED_PREFIX: &str = "shared/";

pub struct Validation<'a> {
    source: &'a SuiteSource,
    suite: &'a str,
    /// The suite file, where locations point.
    path: &'a Path,
    workloads: &'a [String],
    pub(super) manifests: BTreeMap<String, Manifest>,
    /// Where the step being validated starts (its `id`), for errors about the step.
    pub(super) step: Location,
}

impl<'a> Validation<'a> {
    pub(super) fn new(
        source: &'a SuiteSource,
        suite: &'a str,
        path: &'a Path,
        workloads: &'a [String],
    ) -> Self {
        Validation {
            source,
            suite,
            path,
            workloads,
            manifests: BTreeMap::new(),
            step: Location::UNKNOWN,
        }
    }

    pub fn error(&self, location: &Location, message: impl Into<String>) -> SuiteError {
        SuiteError {
            file: self.source.display(self.path),
            line: location.line(),
            column: location.column(),
            message: message.into(),
        }
    }

    /// An error about the step as a whole, at its `id`.
    pub fn at_step(&self, message: impl Into<String>) -> SuiteError {
        self.error(&self.step.clone(), message)
    }

    /// A count that must be at least 1.
    pub fn positive(&self, field: &str, value: u32) -> Result<(), SuiteError> {
        if value == 0 {
            return Err(self.at_step(format!("`{field}` must be at least 1")));
        }
        Ok(())
    }

    /// A workload the suite declares (or the ingress gateway, where a caller may be it).
    pub fn workload(&self, name: &Spanned<String>, allow_gateway: bool) -> Result<(), SuiteError> {
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

    fn manifest_path(&self, reference: &str) -> PathBuf {
        match reference.strip_prefix(SHARED_PREFIX) {
            Some(shared) => PathBuf::from("shared/manifests").join(format!("{shared}.yaml")),
            None => PathBuf::from(self.suite)
                .join("manifests")
                .join(format!("{reference}.yaml")),
        }
    }

    /// Resolves a manifest reference, validating its template once.
    pub fn manifest(&mut self, reference: &Spanned<String>) -> Result<&Manifest, SuiteError> {
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
            let file = self.source.display(&relative);
            let found = template::placeholders(text).map_err(|e| SuiteError {
                file: file.clone(),
                line: e.line,
                column: e.column,
                message: e.message,
            })?;
            let documents = documents(&file, text)?;
            let uses_pki = found
                .iter()
                .any(|p| PKI_VARIABLES.contains(&p.name.as_str()));
            self.manifests.insert(
                name.clone(),
                Manifest {
                    reference: name.clone(),
                    path: file,
                    template: text.to_string(),
                    uses_pki,
                    kinds: documents
                        .iter()
                        .filter_map(|d| d.get("kind").and_then(|k| k.as_str()))
                        .map(str::to_string)
                        .collect(),
                },
            );
        }
        Ok(&self.manifests[&name])
    }

    /// A manifest that the plain `apply`/`ensure` may take: not one carrying the PKI.
    pub fn plain_manifest(&mut self, reference: &Spanned<String>) -> Result<(), SuiteError> {
        if self.manifest(reference)?.uses_pki {
            return Err(self.error(
                &reference.referenced,
                format!(
                    "manifest `{}` uses the run's PKI: apply it with `issue-pki: {{ secret: {} }}`",
                    reference.value, reference.value
                ),
            ));
        }
        Ok(())
    }
}

/// serde-saphyr's messages may carry a location prefix and a source snippet; the
/// position is reported separately, so keep only the message.
pub(super) fn first_line(message: &str) -> String {
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

/// The documents of a manifest template, rendered with a dummy for every placeholder.
/// Every document must name apiVersion, kind and metadata.name, so the apply engine can
/// address it.
pub(super) fn documents(file: &str, text: &str) -> Result<Vec<serde_json::Value>, SuiteError> {
    let mut dummy = template::Variables::default();
    for name in template::VARIABLES {
        dummy.set(name, "x");
    }
    let rendered = template::render(text, &dummy).map_err(|e| SuiteError {
        file: file.to_string(),
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
                file: file.to_string(),
                line,
                column,
                message: first_line(&err.to_string()),
            }
        })?;
    let documents: Vec<serde_json::Value> =
        documents.into_iter().filter(|d| !d.is_null()).collect();
    if documents.is_empty() {
        return Err(SuiteError {
            file: file.to_string(),
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
                file: file.to_string(),
                line: 1,
                column: 1,
                message: format!("document {} lacks {}", index + 1, missing.join(", ")),
            });
        }
    }
    Ok(documents)
}
