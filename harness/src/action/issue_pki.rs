//! `issue-pki`: this run's PKI (CA, server and client certificates, an unrelated CA and
//! its client), written under `<reports-dir>/pki/` with keys 0600, then the manifest
//! that carries it (the gateway's TLS Secret) applied. Key material never reaches a log.

use super::Ctx;
use crate::config::HOST;
use crate::deadlines;
use crate::pki::Pki;
use crate::runner::world::{EnvError, Phase};
use crate::suite::template::PKI_VARIABLES;
use crate::suite::validation::Validation;
use crate::suite::{Suite, SuiteError};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuePki {
    pub secret: Spanned<String>,
}

impl IssuePki {
    pub fn validate(&self, ctx: &mut Validation<'_>) -> Result<(), SuiteError> {
        if !ctx.manifest(&self.secret)?.uses_pki {
            return Err(ctx.error(
                &self.secret.referenced,
                format!(
                    "manifest `{}` does not use the PKI variables ({}); nothing would carry the certificates",
                    self.secret.value,
                    PKI_VARIABLES.join(", ")
                ),
            ));
        }
        Ok(())
    }

    pub fn deadline(&self, _suite: &Suite) -> Duration {
        deadlines::ISSUE_PKI
    }

    pub fn manifests(&self) -> (&'static str, Vec<&str>) {
        ("apply", vec![self.secret.value.as_str()])
    }

    pub async fn execute(&self, ctx: &mut Ctx<'_>) -> Result<(), EnvError> {
        let dir = ctx.config.pki_dir();
        let mut pki = Pki::issue(HOST).map_err(|e| EnvError::new(Phase::Pki, e))?;
        pki.write(&dir).map_err(|e| EnvError::new(Phase::Pki, e))?;
        for (name, value) in pki.template_values() {
            ctx.variables.set(name, value);
        }
        ctx.log
            .push(format!("issued the run's PKI into {}", dir.display()));
        *ctx.pki = Some(pki);
        // The Secret's content is never logged: only what it is.
        ctx.apply_manifest(&self.secret.value).await.map(|_| ())
    }
}

impl fmt::Display for IssuePki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "issue the run's PKI, then apply {}", self.secret.value)
    }
}
