//! What a step changes: the closed vocabulary of actions. Each kind lives in its own
//! file with its schema, its validation at load time, its description for the plan,
//! its deadline, and its execution; this enum only delegates.
//!
//! Adding an action kind: a file here with a struct implementing the same four
//! methods, a variant below, and a line in `each_action!`.

pub mod apply;
pub mod inject;
pub mod issue_pki;

use crate::cluster::Live;
use crate::cluster::apply::parse_documents;
use crate::config::RunConfig;
use crate::pki::Pki;
use crate::progress::Progress;
use crate::runner::world::{EnvError, Phase};
use crate::suite::template::{self, Variables};
use crate::suite::validation::Validation;
use crate::suite::{Suite, SuiteError};
use kube::api::DynamicObject;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Server-side apply the manifests (create or update); wait for the rollouts of the
    /// Deployments among them.
    Apply(apply::Apply),
    /// Create what is missing; leave what exists untouched.
    Ensure(apply::Ensure),
    /// Delete the objects of the manifests and wait until they are gone.
    Delete(apply::Delete),
    /// Switch sidecar injection per workload the way the exercise does, and wait for the
    /// rollouts.
    Inject(inject::Inject),
    /// Issue this run's PKI, then apply the manifest that carries it (the TLS Secret).
    IssuePki(issue_pki::IssuePki),
}

/// One `match` over the kinds: `each_action!(self, a => a.method())`.
macro_rules! each_action {
    ($action:expr, $a:ident => $body:expr) => {
        match $action {
            Action::Apply($a) => $body,
            Action::Ensure($a) => $body,
            Action::Delete($a) => $body,
            Action::Inject($a) => $body,
            Action::IssuePki($a) => $body,
        }
    };
}

impl Action {
    pub fn validate(&self, ctx: &mut Validation<'_>) -> Result<(), SuiteError> {
        each_action!(self, a => a.validate(ctx))
    }

    /// The longest the action may take (for the plan's totals).
    pub fn deadline(&self, suite: &Suite) -> Duration {
        each_action!(self, a => a.deadline(suite))
    }

    /// The manifests the action renders, with the verb the plan files them under.
    pub fn manifests(&self) -> (&'static str, Vec<&str>) {
        each_action!(self, a => a.manifests())
    }

    pub async fn execute(&self, ctx: &mut Ctx<'_>) -> Result<(), EnvError> {
        each_action!(self, a => a.execute(ctx).await)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        each_action!(self, a => a.fmt(f))
    }
}

/// What an action works with while it runs.
pub struct Ctx<'a> {
    pub config: &'a RunConfig,
    pub suite: &'a Suite,
    pub cluster: &'a mut Live,
    pub variables: &'a mut Variables,
    pub pki: &'a mut Option<Pki>,
    pub progress: &'a Progress,
    pub log: &'a mut Vec<String>,
}

impl Ctx<'_> {
    /// Renders a manifest of the suite. Deletes only need names, so PKI variables that
    /// have no value yet are filled with a placeholder for them.
    pub fn render(&self, name: &str, for_delete: bool) -> Result<String, EnvError> {
        let manifest = self.suite.manifests.get(name).ok_or_else(|| {
            EnvError::new(Phase::Render, format!("manifest `{name}` is not loaded"))
        })?;
        let mut variables = self.variables.clone();
        if for_delete {
            for v in template::PKI_VARIABLES {
                if variables.get(v).is_none() {
                    variables.set(v, "");
                }
            }
        }
        template::render(&manifest.template, &variables)
            .map(|r| r.text)
            .map_err(|e| {
                EnvError::new(
                    Phase::Render,
                    format!("{}:{}:{}: {}", manifest.path, e.line, e.column, e.message),
                )
            })
    }

    /// Server-side applies a manifest's objects, logging what (never their content).
    pub async fn apply_manifest(&mut self, name: &str) -> Result<Vec<DynamicObject>, EnvError> {
        let objects = self.objects(name, false)?;
        for obj in &objects {
            self.cluster
                .applier
                .apply(obj)
                .await
                .map_err(|e| EnvError::new(Phase::Apply, e))?;
            self.log
                .push(format!("applied {}", crate::cluster::apply::describe(obj)));
        }
        Ok(objects)
    }

    /// The objects of a rendered manifest.
    pub fn objects(&self, name: &str, for_delete: bool) -> Result<Vec<DynamicObject>, EnvError> {
        let text = self.render(name, for_delete)?;
        parse_documents(&text).map_err(|e| EnvError::new(Phase::Render, format!("{name}: {e}")))
    }
}
