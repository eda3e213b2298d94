//! `apply`, `ensure` and `delete`: manifests of the suite, rendered, sent to the apply
//! engine. `apply` and `ensure` wait for the rollout of every Deployment among them
//! (an image that cannot be pulled is an error at once, naming it), so the next
//! expectation judges the app that was asked for, not pods still starting.

use super::Ctx;
use crate::cluster::apply::describe;
use crate::cluster::rollout;
use crate::deadlines;
use crate::runner::world::{EnvError, Phase};
use crate::suite::model::names;
use crate::suite::validation::Validation;
use crate::suite::{Suite, SuiteError};
use kube::api::DynamicObject;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Apply {
    pub manifests: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Ensure {
    pub manifests: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Delete {
    pub manifests: Vec<Spanned<String>>,
}

fn validate_list(
    ctx: &mut Validation<'_>,
    verb: &str,
    list: &[Spanned<String>],
    plain: bool,
) -> Result<(), SuiteError> {
    if list.is_empty() {
        return Err(ctx.at_step(format!("`{verb}` names no manifest")));
    }
    for reference in list {
        if plain {
            ctx.plain_manifest(reference)?;
        } else {
            ctx.manifest(reference)?;
        }
    }
    Ok(())
}

/// The deadline of applying `list`: the apply, and the rollout when any manifest holds
/// a Deployment (its rollout is then waited for).
fn apply_deadline(suite: &Suite, list: &[Spanned<String>]) -> Duration {
    let rolls_out = list.iter().any(|m| {
        suite
            .manifests
            .get(&m.value)
            .is_some_and(|m| m.kinds.iter().any(|k| k == "Deployment"))
    });
    deadlines::APPLY
        + if rolls_out {
            deadlines::ROLLOUT
        } else {
            Duration::ZERO
        }
}

fn list_names(list: &[Spanned<String>]) -> Vec<&str> {
    list.iter().map(|s| s.value.as_str()).collect()
}

fn is_deployment(obj: &DynamicObject) -> bool {
    obj.types.as_ref().is_some_and(|t| t.kind == "Deployment")
}

/// Waits for the rollouts of the Deployments among `objects`, logging each.
async fn wait_rollouts(ctx: &mut Ctx<'_>, objects: &[DynamicObject]) -> Result<(), EnvError> {
    let deployments: Vec<(String, String)> = objects
        .iter()
        .filter(|o| is_deployment(o))
        .filter_map(|o| Some((o.metadata.namespace.clone()?, o.metadata.name.clone()?)))
        .collect();
    if deployments.is_empty() {
        return Ok(());
    }
    let _wait = ctx.progress.wait("waiting for the rollouts");
    for (namespace, name) in deployments {
        let done = rollout::wait(&ctx.cluster.client, &namespace, &name, deadlines::ROLLOUT)
            .await
            .map_err(|e| EnvError::new(Phase::Rollout, e))?;
        ctx.log.push(done.describe(&name));
    }
    Ok(())
}

impl Apply {
    pub fn validate(&self, ctx: &mut Validation<'_>) -> Result<(), SuiteError> {
        validate_list(ctx, "apply", &self.manifests, true)
    }

    pub fn deadline(&self, suite: &Suite) -> Duration {
        apply_deadline(suite, &self.manifests)
    }

    pub fn manifests(&self) -> (&'static str, Vec<&str>) {
        ("apply", list_names(&self.manifests))
    }

    pub async fn execute(&self, ctx: &mut Ctx<'_>) -> Result<(), EnvError> {
        let mut applied = Vec::new();
        for name in &self.manifests {
            applied.extend(ctx.apply_manifest(&name.value).await?);
        }
        wait_rollouts(ctx, &applied).await
    }
}

impl fmt::Display for Apply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "apply {}", names(&self.manifests))
    }
}

impl Ensure {
    pub fn validate(&self, ctx: &mut Validation<'_>) -> Result<(), SuiteError> {
        validate_list(ctx, "ensure", &self.manifests, true)
    }

    pub fn deadline(&self, suite: &Suite) -> Duration {
        apply_deadline(suite, &self.manifests)
    }

    pub fn manifests(&self) -> (&'static str, Vec<&str>) {
        ("ensure", list_names(&self.manifests))
    }

    pub async fn execute(&self, ctx: &mut Ctx<'_>) -> Result<(), EnvError> {
        let mut seen = Vec::new();
        for name in &self.manifests {
            for obj in ctx.objects(&name.value, false)? {
                let created = ctx
                    .cluster
                    .applier
                    .ensure(&obj)
                    .await
                    .map_err(|e| EnvError::new(Phase::Apply, e))?;
                ctx.log.push(format!(
                    "{} {}",
                    if created { "created" } else { "exists:" },
                    describe(&obj)
                ));
                seen.push(obj);
            }
        }
        wait_rollouts(ctx, &seen).await
    }
}

impl fmt::Display for Ensure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ensure {} exist (create only what is missing)",
            names(&self.manifests)
        )
    }
}

impl Delete {
    pub fn validate(&self, ctx: &mut Validation<'_>) -> Result<(), SuiteError> {
        validate_list(ctx, "delete", &self.manifests, false)
    }

    pub fn deadline(&self, _suite: &Suite) -> Duration {
        deadlines::DELETE
    }

    pub fn manifests(&self) -> (&'static str, Vec<&str>) {
        ("delete", list_names(&self.manifests))
    }

    pub async fn execute(&self, ctx: &mut Ctx<'_>) -> Result<(), EnvError> {
        for name in &self.manifests {
            let objects = ctx.objects(&name.value, true)?;
            for obj in objects.iter().rev() {
                let existed = ctx
                    .cluster
                    .applier
                    .delete_and_wait(obj, deadlines::DELETE)
                    .await
                    .map_err(|e| EnvError::new(Phase::Delete, e))?;
                ctx.log.push(format!(
                    "{} {}",
                    if existed { "deleted" } else { "absent:" },
                    describe(obj)
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Delete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "delete {} and wait until gone", names(&self.manifests))
    }
}
