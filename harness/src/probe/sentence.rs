//! What a success looks like: the frontend's `"<name> is <age> years"`, where the name
//! is one that a deployed `name` workload is configured with (`SENTENCE_NAMES`, default
//! `Peter,Ray,Egon`) and the age an integer in the `age` workload's range (default
//! 0–100). The frontend pastes whatever its backends answer, whatever their status, so
//! "200 and something with `is ... years`" proves nothing: an Envoy local reply pasted
//! into it (`no healthy upstream is 42 years`) must not pass.

use regex::Regex;
use std::collections::BTreeMap;
use std::sync::LazyLock;

static SHAPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(.+) is (\d+) years$").expect("valid regex"));

/// The names and ages the deployed app can answer, and which workload each name comes
/// from (so the evidence can count answers per `name` version).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grammar {
    /// name → the workloads configured with it
    names: BTreeMap<String, Vec<String>>,
    age_min: u32,
    age_max: u32,
}

/// A parsed success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentence {
    pub name: String,
    /// The `name` workload(s) that answer this name, joined with `|` when ambiguous.
    pub from: String,
    pub age: u32,
}

impl Grammar {
    /// `names`: per `name` workload, the names it answers; `ages`: the `age` range.
    pub fn new(names: &[(String, Vec<String>)], ages: (u32, u32)) -> Grammar {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (workload, list) in names {
            for name in list {
                map.entry(name.clone()).or_default().push(workload.clone());
            }
        }
        Grammar {
            names: map,
            age_min: ages.0,
            age_max: ages.1,
        }
    }

    /// The app with its defaults and one `name` workload: for tests and examples.
    pub fn app_defaults() -> Grammar {
        Grammar::new(
            &[(
                "name".to_string(),
                vec!["Peter".into(), "Ray".into(), "Egon".into()],
            )],
            (0, 100),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn parse(&self, body: &str) -> Option<Sentence> {
        let captures = SHAPE.captures(body.trim())?;
        let name = captures.get(1)?.as_str();
        let age: u32 = captures.get(2)?.as_str().parse().ok()?;
        let workloads = self.names.get(name)?;
        (self.age_min..=self.age_max)
            .contains(&age)
            .then(|| Sentence {
                name: name.to_string(),
                from: workloads.join("|"),
                age,
            })
    }

    /// `Peter, Ray, Egon (name); Athos (v2), ... (name-v2); ages 0–100`
    pub fn describe(&self) -> String {
        let mut by_workload: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (name, workloads) in &self.names {
            by_workload
                .entry(workloads.join("|"))
                .or_default()
                .push(name);
        }
        let names: Vec<String> = by_workload
            .iter()
            .map(|(w, n)| format!("{} ({w})", n.join(", ")))
            .collect();
        format!(
            "{}; ages {}–{}",
            names.join("; "),
            self.age_min,
            self.age_max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise() -> Grammar {
        Grammar::new(
            &[
                (
                    "name".into(),
                    vec!["Peter".into(), "Ray".into(), "Egon".into()],
                ),
                (
                    "name-v2".into(),
                    vec![
                        "Athos (v2)".into(),
                        "Porthos (v2)".into(),
                        "Aramis (v2)".into(),
                        "d'Artagnan (v2)".into(),
                    ],
                ),
            ],
            (0, 100),
        )
    }

    #[test]
    fn sentences_of_the_configured_names_parse_with_their_workload() {
        let g = exercise();
        assert_eq!(
            g.parse("Ray is 42 years\n"),
            Some(Sentence {
                name: "Ray".into(),
                from: "name".into(),
                age: 42
            })
        );
        assert_eq!(
            g.parse("d'Artagnan (v2) is 0 years").unwrap().from,
            "name-v2"
        );
        assert!(g.parse("Athos (v2) is 100 years").is_some());
    }

    #[test]
    fn envoy_replies_pasted_into_a_sentence_are_not_sentences() {
        let g = exercise();
        for body in [
            "no healthy upstream is 42 years",
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination is 42 years",
            "Peter is upstream connect error or disconnect/reset before headers. reset reason: connection termination years",
            "Alice is 42 years",
            "Peter is 101 years",
            "Peter is -1 years",
            "",
        ] {
            assert_eq!(g.parse(body), None, "{body}");
        }
    }
}
