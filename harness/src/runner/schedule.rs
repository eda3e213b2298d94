//! One schedule of a run — passes × suites → trials, in order, with which are selected
//! by FILTER/`--skip`/`--exact` — shared by the runner, `--list` and `--dry-run`, so
//! what is listed, planned and run is the same.
//!
//! Selection follows libtest (substring, or whole name with `--exact`), matched against
//! the trial name and, in an upgrade run, also against the name without the pass label:
//! `mesh::01` selects `mesh@A::01-…` and `mesh@B::01-…`. A selected step has the
//! actions of the earlier steps of its suite (in the same pass) carried out first; a
//! selected step of the second pass has the upgrade carried out first.
//!
//! The upgrade between the passes is one trial in place (`upgrade::A-to-B`) and two as a
//! canary (`upgrade::canary-mixed`, then `upgrade::canary-complete`); a selected stage
//! has the stages before it carried out first, as setup.

use super::record::{StepRecord, StepStatus};
use crate::cli::UpgradeMode;
use crate::suite::Suite;
use std::sync::Arc;

/// FILTER, `--skip` and `--exact`, as libtest takes them.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// A trial matching any of them is selected (none: every trial).
    pub filters: Vec<String>,
    pub skip: Vec<String>,
    pub exact: bool,
}

impl Selection {
    fn hit(&self, pattern: &str, name: &str) -> bool {
        if self.exact {
            name == pattern
        } else {
            name.contains(pattern)
        }
    }

    /// Whether a trial known by any of `names` is selected.
    pub fn selects(&self, names: &[&str]) -> bool {
        let wanted = self.filters.is_empty()
            || self
                .filters
                .iter()
                .any(|f| names.iter().any(|n| self.hit(f, n)));
        wanted
            && !self
                .skip
                .iter()
                .any(|s| names.iter().any(|n| self.hit(s, n)))
    }

    pub fn is_everything(&self) -> bool {
        self.filters.is_empty() && self.skip.is_empty()
    }

    /// `mesh::3` / `--skip x`, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        parts.extend(self.filters.iter().map(|f| format!("`{f}`")));
        parts.extend(self.skip.iter().map(|s| format!("--skip `{s}`")));
        if self.exact {
            parts.push("--exact".into());
        }
        parts.join(" ")
    }
}

/// One pass over the suites; an upgrade run has two, around the upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    /// Appended to suite names in trial names and reports, e.g. `@1.30.5`.
    pub suffix: String,
    /// The Istio version the pass runs on.
    pub version: String,
}

#[derive(Clone, Debug)]
pub enum Item {
    Step {
        pass: usize,
        suite: Arc<Suite>,
        index: usize,
        selected: bool,
    },
    Upgrade {
        from: String,
        to: String,
        stage: Stage,
        selected: bool,
    },
}

/// One trial of the upgrade between the passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `istioctl upgrade` in place, the app restarted, every proxy on the new version.
    InPlace,
    /// Canary: the new version as a revision beside the old one, part of the app moved
    /// to it, mTLS judged across the revisions under STRICT.
    CanaryMixed,
    /// Canary: the rest moved (the ingress gateway last), the old revision removed.
    CanaryComplete,
}

impl Stage {
    /// The stages of an upgrade in `mode`, in order.
    pub fn all(mode: UpgradeMode) -> &'static [Stage] {
        match mode {
            UpgradeMode::InPlace => &[Stage::InPlace],
            UpgradeMode::Canary => &[Stage::CanaryMixed, Stage::CanaryComplete],
        }
    }

    /// The test case name in the `upgrade` testsuite.
    pub fn slug(self, from: &str, to: &str) -> String {
        match self {
            Stage::InPlace => format!("{from}-to-{to}"),
            Stage::CanaryMixed => "canary-mixed".into(),
            Stage::CanaryComplete => "canary-complete".into(),
        }
    }

    pub fn title(self, from: &str, to: &str) -> String {
        match self {
            Stage::InPlace => format!("upgrade Istio in place from {from} to {to}"),
            Stage::CanaryMixed => format!(
                "canary upgrade from {from} to {to}: {to} as a revision beside {from}, part of the app moved to it, mTLS across the revisions under STRICT"
            ),
            Stage::CanaryComplete => format!(
                "canary upgrade from {from} to {to}: the rest of the app and the ingress gateway moved to {to}, the {from} control plane removed"
            ),
        }
    }
}

/// The suite (in the JUnit file) the upgrade's trials belong to.
pub const UPGRADE_SUITE: &str = "upgrade";

/// How an item of the schedule takes part in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Judged,
    /// Carried out, not judged: an earlier step's actions, or an upgrade stage.
    Setup,
    NotRun,
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub passes: Vec<Pass>,
    pub items: Vec<Item>,
    /// The steps the canary stages carry out and judge (`canary-upgrade/suite.yaml`),
    /// in a canary upgrade run.
    pub canary: Option<Arc<Suite>>,
}

pub fn upgrade_name(from: &str, to: &str) -> String {
    stage_name(Stage::InPlace, from, to)
}

/// `upgrade::1.30.5-to-1.31.2`, `upgrade::canary-mixed`.
pub fn stage_name(stage: Stage, from: &str, to: &str) -> String {
    format!("{UPGRADE_SUITE}::{}", stage.slug(from, to))
}

impl Schedule {
    /// `version`: the Istio version of a single-pass run; `upgrade`: (from, to, mode).
    pub fn new(
        suites: &[Arc<Suite>],
        version: &str,
        upgrade: Option<(&str, &str, UpgradeMode)>,
        selection: &Selection,
    ) -> Schedule {
        let passes = match upgrade {
            None => vec![Pass {
                suffix: String::new(),
                version: version.to_string(),
            }],
            Some((from, to, _)) => vec![
                Pass {
                    suffix: format!("@{from}"),
                    version: from.to_string(),
                },
                Pass {
                    suffix: format!("@{to}"),
                    version: to.to_string(),
                },
            ],
        };
        let mut items = Vec::new();
        for (p, pass) in passes.iter().enumerate() {
            if p == 1
                && let Some((from, to, mode)) = upgrade
            {
                for &stage in Stage::all(mode) {
                    let name = stage_name(stage, from, to);
                    items.push(Item::Upgrade {
                        from: from.to_string(),
                        to: to.to_string(),
                        stage,
                        selected: selection.selects(&[&name]),
                    });
                }
            }
            for suite in suites {
                for (index, step) in suite.steps.iter().enumerate() {
                    let labelled = format!("{}{}::{}", suite.name, pass.suffix, step.slug());
                    let plain = step.trial_name();
                    items.push(Item::Step {
                        pass: p,
                        suite: Arc::clone(suite),
                        index,
                        selected: selection.selects(&[&labelled, &plain]),
                    });
                }
            }
        }
        Schedule {
            passes,
            items,
            canary: None,
        }
    }

    /// The suites of the schedule, each once, in order.
    pub fn suites(&self) -> Vec<Arc<Suite>> {
        let mut out: Vec<Arc<Suite>> = Vec::new();
        for item in &self.items {
            if let Item::Step { suite, .. } = item
                && !out.iter().any(|s| s.name == suite.name)
            {
                out.push(Arc::clone(suite));
            }
        }
        out
    }

    /// `mesh@1.30.5` — the suite as reports name it in pass `pass`.
    pub fn label(&self, pass: usize, suite: &Suite) -> String {
        format!("{}{}", suite.name, self.passes[pass].suffix)
    }

    pub fn name(&self, item: &Item) -> String {
        match item {
            Item::Step {
                pass, suite, index, ..
            } => format!(
                "{}::{}",
                self.label(*pass, suite),
                suite.steps[*index].slug()
            ),
            Item::Upgrade {
                from, to, stage, ..
            } => stage_name(*stage, from, to),
        }
    }

    pub fn is_selected(item: &Item) -> bool {
        match item {
            Item::Step { selected, .. } | Item::Upgrade { selected, .. } => *selected,
        }
    }

    /// Whether any step (not only the upgrade) is selected.
    pub fn selects_a_step(&self) -> bool {
        self.items
            .iter()
            .any(|i| matches!(i, Item::Step { selected: true, .. }))
    }

    /// The upgrade runs when one of its stages is selected or a step after it is.
    pub fn runs_upgrade(&self) -> bool {
        self.items
            .iter()
            .position(|i| matches!(i, Item::Upgrade { .. }))
            .is_some_and(|first| self.runs_stage(first))
    }

    /// Whether the upgrade stage at `position` runs: it is selected, or something after
    /// it is (a later stage, or a step of the second pass), which needs it as setup.
    pub fn runs_stage(&self, position: usize) -> bool {
        matches!(self.items.get(position), Some(Item::Upgrade { .. }))
            && self.items[position..].iter().any(Self::is_selected)
    }

    /// The upgrade stages in order, with their positions in `items`.
    pub fn stages(&self) -> Vec<(usize, Stage)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(p, i)| match i {
                Item::Upgrade { stage, .. } => Some((p, *stage)),
                Item::Step { .. } => None,
            })
            .collect()
    }

    /// The selected trials' names, in run order (what `--list` prints).
    pub fn selected_names(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|i| Self::is_selected(i))
            .map(|i| self.name(i))
            .collect()
    }

    /// Every selected trial as not run, for `reason`, grouped by suite label in run
    /// order: what the report lists when setup fails before any trial.
    pub fn not_run(&self, reason: &str) -> Vec<(String, Vec<StepRecord>)> {
        let mut suites: Vec<(String, Vec<StepRecord>)> = Vec::new();
        for item in self.items.iter().filter(|i| Self::is_selected(i)) {
            let ignored = StepStatus::Ignored {
                reason: reason.to_string(),
            };
            let (label, record) = match item {
                Item::Step {
                    pass, suite, index, ..
                } => {
                    let label = self.label(*pass, suite);
                    let record = StepRecord::without_run(&label, &suite.steps[*index], ignored);
                    (label, record)
                }
                Item::Upgrade {
                    from, to, stage, ..
                } => {
                    let mut record = StepRecord::new(UPGRADE_SUITE, stage.slug(from, to), ignored);
                    record.title = stage.title(from, to);
                    (UPGRADE_SUITE.to_string(), record)
                }
            };
            match suites.last_mut() {
                Some((last, steps)) if *last == label => steps.push(record),
                _ => suites.push((label, vec![record])),
            }
        }
        suites
    }

    /// Every trial name, selected or not.
    pub fn all_names(&self) -> Vec<String> {
        self.items.iter().map(|i| self.name(i)).collect()
    }

    /// For the selected step at `position` in `items`: the indexes (in its suite) of the
    /// earlier, unselected steps of the same pass whose actions run as its setup.
    pub fn prerequisites(&self, position: usize) -> Vec<usize> {
        let Some(Item::Step {
            pass, suite, index, ..
        }) = self.items.get(position)
        else {
            return Vec::new();
        };
        let previous_selected = self.items[..position]
            .iter()
            .filter_map(|i| match i {
                Item::Step {
                    pass: p,
                    suite: s,
                    index: x,
                    selected: true,
                } if p == pass && s.name == suite.name => Some(*x),
                _ => None,
            })
            .max();
        (previous_selected.map_or(0, |p| p + 1)..*index).collect()
    }

    /// How each item (by position) takes part: judged when selected; carried out as
    /// setup when it is an earlier step whose actions a selected step needs, or an
    /// upgrade stage before a selected trial; else not run.
    pub fn roles(&self) -> Vec<Role> {
        let mut roles: Vec<Role> = self
            .items
            .iter()
            .enumerate()
            .map(|(position, item)| match item {
                _ if Self::is_selected(item) => Role::Judged,
                Item::Upgrade { .. } if self.runs_stage(position) => Role::Setup,
                _ => Role::NotRun,
            })
            .collect();
        for (position, item) in self.items.iter().enumerate() {
            let Item::Step {
                pass,
                suite,
                selected: true,
                ..
            } = item
            else {
                continue;
            };
            for index in self.prerequisites(position) {
                let needed = self.items.iter().position(|i| {
                    matches!(i, Item::Step { pass: p, suite: s, index: x, .. }
                        if p == pass && s.name == suite.name && *x == index)
                });
                if let Some(needed) = needed {
                    roles[needed] = Role::Setup;
                }
            }
        }
        roles
    }

    /// Whether the selected step at `position` is the last selected one of its suite in
    /// its pass (its suite's teardown follows it).
    pub fn last_of_suite(&self, position: usize) -> bool {
        let Some(Item::Step { pass, suite, .. }) = self.items.get(position) else {
            return false;
        };
        !self.items[position + 1..].iter().any(|i| {
            matches!(i, Item::Step { pass: p, suite: s, selected: true, .. } if p == pass && s.name == suite.name)
        })
    }
}
