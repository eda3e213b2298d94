//! Counting what a series of requests came back with, for the evidence: per class,
//! per `name` workload that answered, per origin of error answers, first and last.

use super::class::{Origin, ResultClass};
use super::classify::{Observation, TlsSignal};
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: u32,
    pub by_class: BTreeMap<String, u32>,
    /// Successful answers per `name` workload whose name was in the sentence.
    pub by_name_workload: BTreeMap<String, u32>,
    /// HTTP error answers per (status, origin).
    pub errors_by_origin: BTreeMap<(u16, Origin), u32>,
    pub first: Option<Observation>,
    pub last: Option<Observation>,
    /// The last answer that was not a sentence: what broke the runs of `flows`.
    pub last_not_ok: Option<Observation>,
    pub reached: u32,
    /// Requests lost to the harness's own path (a failed port-forward), and the last cause.
    pub not_reached: u32,
    pub path_cause: Option<String>,
    pub longest_run: u32,
    /// Why this client refused the server's certificate, if it ever did.
    pub server_untrusted: Option<String>,
}

impl Tally {
    pub fn add(&mut self, obs: &Observation) {
        self.sent += 1;
        *self.by_class.entry(obs.class.to_string()).or_default() += 1;
        if obs.reached() {
            self.reached += 1;
        }
        if obs.class == ResultClass::NotReached {
            self.not_reached += 1;
            self.path_cause = Some(obs.detail.clone());
        }
        if let Some(sentence) = &obs.sentence {
            *self
                .by_name_workload
                .entry(sentence.from.clone())
                .or_default() += 1;
        }
        if let (ResultClass::HttpError(Some(status)), Some(origin)) = (obs.class, obs.origin) {
            *self.errors_by_origin.entry((status, origin)).or_default() += 1;
        }
        if let Some(TlsSignal::ServerUntrusted(why)) = &obs.tls {
            self.server_untrusted.get_or_insert_with(|| why.clone());
        }
        if self.first.is_none() {
            self.first = Some(obs.clone());
        }
        if obs.class != ResultClass::Ok {
            self.last_not_ok = Some(obs.clone());
        }
        self.last = Some(obs.clone());
    }

    /// `http-500×17, ok×3`, most frequent first.
    pub fn classes(&self) -> String {
        most_first(&self.by_class)
    }

    /// `name×6, name-v2×4`
    pub fn names(&self) -> String {
        most_first(&self.by_name_workload)
    }

    /// `500 from the app×17, 503 from an Envoy local reply×2`
    pub fn origins(&self) -> String {
        let labelled: BTreeMap<String, u32> = self
            .errors_by_origin
            .iter()
            .map(|((status, origin), n)| (format!("{status} from {origin}"), *n))
            .collect();
        most_first(&labelled)
    }

    pub fn details(&self, target: &str) -> Vec<String> {
        let mut lines = vec![
            format!("target: {target}"),
            format!("requests: {}; classes: {}", self.sent, self.classes()),
        ];
        if !self.by_name_workload.is_empty() {
            lines.push(format!("sentences by name workload: {}", self.names()));
        }
        if !self.errors_by_origin.is_empty() {
            lines.push(format!("error answers: {}", self.origins()));
        }
        if let Some(cause) = &self.path_cause {
            lines.push(format!(
                "not reached {}×; last cause: {cause}",
                self.not_reached
            ));
        }
        if let Some(first) = &self.first {
            lines.push(format!("first: {}", first.short()));
        }
        if let Some(last) = &self.last {
            lines.push(format!("last: {}", last.short()));
        }
        lines
    }
}

fn most_first(counts: &BTreeMap<String, u32>) -> String {
    let mut counts: Vec<(&String, &u32)> = counts.iter().collect();
    counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    counts
        .iter()
        .map(|(c, n)| format!("{c}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
