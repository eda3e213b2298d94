//! The files of a suites folder: `index.yaml` and each suite's `suite.yaml`. Every
//! struct refuses unknown fields. The vocabulary of steps — what they do and what they
//! expect — lives with its implementation in `action/` and `expect/`.

use crate::action::Action;
use crate::expect::Expectation;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// `suites/index.yaml`: which suites exist, in the order a full run takes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteIndex {
    pub suites: Vec<Spanned<String>>,
}

/// `suites/<name>/suite.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    pub title: String,
    /// Deployments of the app (in the app namespace) that steps may name; they are
    /// also Istio's workload names in telemetry.
    pub workloads: Vec<String>,
    pub steps: Vec<StepFile>,
    /// Actions run after the last step unless the user asked to keep what was created.
    #[serde(default)]
    pub teardown: Vec<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    pub id: Spanned<String>,
    pub title: String,
    /// The documented outcome this step proves (O1..O9), for the plan and the report.
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub actions: Vec<Action>,
    pub expect: Vec<Expectation>,
}

/// `a, b, c` from spanned names.
pub fn names(list: &[Spanned<String>]) -> String {
    list.iter()
        .map(|s| s.value.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
