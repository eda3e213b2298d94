//! One schedule of a run — passes × suites → trials, in order, with which are selected
//! by FILTER/`--skip`/`--exact` — shared by the runner, `--list` and `--dry-run`, so
//! what is listed, planned and run is the same.
//!
//! Selection follows libtest (substring, or whole name with `--exact`), matched against
//! the trial name and, in an upgrade run, also against the name without the pass label:
//! `mesh::01` selects `mesh@A::01-…` and `mesh@B::01-…`. A selected step has the
//! actions of the earlier steps of its suite (in the same pass) carried out first; a
//! selected step of the second pass has the upgrade carried out first.

use crate::suite::Suite;
use std::sync::Arc;

/// FILTER, `--skip` and `--exact`, as libtest takes them.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub filter: Option<String>,
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
        let wanted = match &self.filter {
            None => true,
            Some(f) => names.iter().any(|n| self.hit(f, n)),
        };
        wanted
            && !self
                .skip
                .iter()
                .any(|s| names.iter().any(|n| self.hit(s, n)))
    }

    pub fn is_everything(&self) -> bool {
        self.filter.is_none() && self.skip.is_empty()
    }

    /// `mesh::3` / `--skip x`, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.filter {
            parts.push(format!("`{f}`"));
        }
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
        selected: bool,
    },
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub passes: Vec<Pass>,
    pub items: Vec<Item>,
}

pub fn upgrade_name(from: &str, to: &str) -> String {
    format!("upgrade::{from}-to-{to}")
}

impl Schedule {
    /// `version`: the Istio version of a single-pass run; `upgrade`: (from, to).
    pub fn new(
        suites: &[Arc<Suite>],
        version: &str,
        upgrade: Option<(&str, &str)>,
        selection: &Selection,
    ) -> Schedule {
        let passes = match upgrade {
            None => vec![Pass {
                suffix: String::new(),
                version: version.to_string(),
            }],
            Some((from, to)) => vec![
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
                && let Some((from, to)) = upgrade
            {
                let name = upgrade_name(from, to);
                items.push(Item::Upgrade {
                    from: from.to_string(),
                    to: to.to_string(),
                    selected: selection.selects(&[&name]),
                });
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
        Schedule { passes, items }
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
            Item::Upgrade { from, to, .. } => upgrade_name(from, to),
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

    /// The upgrade runs when it is selected or when a step after it is.
    pub fn runs_upgrade(&self) -> bool {
        let mut after = false;
        for item in &self.items {
            match item {
                Item::Upgrade { selected, .. } => {
                    if *selected {
                        return true;
                    }
                    after = true;
                }
                Item::Step { selected: true, .. } if after => return true,
                _ => {}
            }
        }
        false
    }

    /// The selected trials' names, in run order (what `--list` prints).
    pub fn selected_names(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|i| Self::is_selected(i))
            .map(|i| self.name(i))
            .collect()
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
