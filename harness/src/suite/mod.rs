//! Suites as data: the files, where they come from, loading with strict validation,
//! manifest templating, and what the manifests deploy. What a step does and expects is
//! in `action/` and `expect/`.

pub mod app;
pub mod duration;
mod load;
pub mod model;
pub mod source;
pub mod template;
pub mod validation;

pub use crate::action::Action;
pub use crate::expect::Expectation;
pub use load::{SuiteError, load, load_one};

use std::collections::BTreeMap;
use std::sync::Arc;

/// The workload name Istio telemetry gives the ingress gateway; a valid edge source and
/// proxy-config client besides the app's own workloads.
pub const INGRESS_GATEWAY_WORKLOAD: &str = "istio-ingressgateway";

#[derive(Debug)]
pub struct Suite {
    pub name: String,
    pub title: String,
    pub workloads: Vec<String>,
    pub steps: Vec<Step>,
    pub teardown: Vec<Action>,
    /// Every manifest the suite's actions name, by the name they use.
    pub manifests: BTreeMap<String, Manifest>,
    /// What the manifests deploy (and so what a success looks like).
    pub app: Arc<app::App>,
}

#[derive(Debug)]
pub struct Step {
    pub suite: String,
    /// 1-based position in the suite.
    pub number: usize,
    pub id: String,
    pub title: String,
    pub outcome: Option<String>,
    pub actions: Vec<Action>,
    pub expect: Vec<Expectation>,
}

impl Step {
    /// `<suite>::<NN>-<id>`, the libtest trial name (without a pass label).
    pub fn trial_name(&self) -> String {
        format!("{}::{}", self.suite, self.slug())
    }

    /// `<NN>-<id>`.
    pub fn slug(&self) -> String {
        format!("{:02}-{}", self.number, self.id)
    }
}

#[derive(Debug, Clone)]
pub struct Manifest {
    /// The name actions use: `NAME` (the suite's own) or `shared/NAME`.
    pub reference: String,
    /// Where it was read from, for error messages.
    pub path: String,
    pub template: String,
    /// Uses variables that exist only after `issue-pki`.
    pub uses_pki: bool,
    /// The kinds of its documents, in order.
    pub kinds: Vec<String>,
}

/// The loaded suites in run order.
#[derive(Debug)]
pub struct Catalog {
    pub suites: Vec<Arc<Suite>>,
}

impl Catalog {
    pub fn names(&self) -> Vec<&str> {
        self.suites.iter().map(|s| s.name.as_str()).collect()
    }

    /// The suites a run selects, in catalog order; an unknown name is an error listing
    /// the valid ones.
    pub fn select(&self, wanted: &[String]) -> Result<Vec<Arc<Suite>>, String> {
        for name in wanted {
            if !self.suites.iter().any(|s| &s.name == name) {
                return Err(format!(
                    "unknown suite `{name}`; valid suites: {}",
                    self.names().join(", ")
                ));
            }
        }
        Ok(self
            .suites
            .iter()
            .filter(|s| wanted.is_empty() || wanted.contains(&s.name))
            .cloned()
            .collect())
    }
}
