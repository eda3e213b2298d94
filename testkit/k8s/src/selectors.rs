//! Label selectors (`app=x,version!=v2,tier in (a,b),!canary`) and field selectors
//! (`metadata.name=x,status.phase!=Running`) as list requests use them.

use crate::kinds::KindInfo;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; all requirements must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector(Vec<Requirement>);

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 316
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Splits on commas that are not inside parentheses.
fn top_level_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if text.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for raw in top_level_terms(text) {
            let term = raw.trim();
            let bad =
                || format!("unable to parse requirement: found '{term}', expected: identifier");
            if term.is_empty() {
                return Err(format!(
                    "unable to parse requirement: empty term in {text:?}"
                ));
            }
            let req = if let Some(open) = term.find('(') {
                let head = term[..open].trim_end();
                let Some(inner) = term[open + 1..].strip_suffix(')') else {
                    return Err(format!(
                        "unable to parse requirement: found '{term}', expected: ')'"
                    ));
                };
                let values: Vec<String> = inner
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                if values.iter().any(|v| !valid_value(v)) {
                    return Err(format!("invalid label value in {term:?}"));
                }
                if let Some(k) = head.strip_suffix(" notin") {
                    Requirement::NotIn(k.trim().to_string(), values)
                } else if let Some(k) = head.strip_suffix(" in") {
                    Requirement::In(k.trim().to_string(), values)
                } else {
                    return Err(format!(
                        "unable to parse requirement: found '{term}', expected: in, notin"
                    ));
                }
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = term.split_once("==") {
                Requirement::Equals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = term.split_once('=') {
                Requirement::Equals(k.trim().to_string(), v.trim().to_string())
            } else if let Some(k) = term.strip_prefix('!') {
                Requirement::NotExists(k.trim().to_string())
            } else {
                Requirement::Exists(term.to_string())
            };
            let (key, value) = match &req {
                Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => (k, Some(v)),
                Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::NotExists(k) => (k, None),
            };
            if !valid_key(key) || value.is_some_and(|v| !valid_value(v)) {
                return Err(bad());
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether an object's `metadata.labels` (a JSON object, or null) satisfies it.
    pub fn matches(&self, labels: &Value) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v),
            Requirement::NotEquals(k, v) => get(k) != Some(v),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Whether `labels` contain every pair of a `matchLabels`-style map (a Service's
/// selector, a Deployment's `selector.matchLabels`). An empty map selects nothing here,
/// as Services and the controllers treat it.
pub fn map_selects(selector: &Value, labels: &Value) -> bool {
    match selector.as_object() {
        Some(m) if !m.is_empty() => m.iter().all(|(k, v)| labels.get(k) == Some(v)),
        _ => false,
    }
}

/// A metav1.LabelSelector (`matchLabels` and `matchExpressions`) against labels.
pub fn label_selector_matches(selector: &Value, labels: &Value) -> bool {
    let by_labels = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let by_expressions = selector["matchExpressions"].as_array().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let value = labels.get(key).and_then(Value::as_str);
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e["operator"].as_str().unwrap_or_default() {
                "In" => value.is_some_and(|v| values.contains(&v)),
                "NotIn" => !value.is_some_and(|v| values.contains(&v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
    });
    by_labels && by_expressions
}

/// Field selectors the real API server accepts for a kind, beyond metadata.name and
/// metadata.namespace (which every kind has).
fn supported_fields(info: &KindInfo) -> &'static [&'static str] {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "Secret") => &["type"],
        ("", "Namespace") => &["status.phase"],
        ("", "Node") => &["spec.unschedulable"],
        ("apps", "ReplicaSet") => &["status.replicas"],
        _ => &[],
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str, info: &KindInfo) -> Result<FieldSelector, String> {
        let mut out = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                ));
            };
            let field = field.trim();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !supported_fields(info).contains(&field)
            {
                return Err(format!("field label not supported: {field}"));
            }
            out.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let path = if field == "source" {
                "source.component"
            } else {
                field
            };
            let mut v = object;
            for part in path.split('.') {
                v = &v[part];
            }
            let actual = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Bool(b) => b.to_string(),
                other => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_operators() {
        let labels = json!({"app": "sentences-name", "version": "v1", "tier": "web"});
        let yes = [
            "",
            "app=sentences-name",
            "app==sentences-name",
            "version!=v2",
            "tier",
            "!canary",
            "tier in (web, db)",
            "version notin (v2,v3)",
            "app=sentences-name,version=v1",
            "missing!=x",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&labels), "{s}");
        }
        let no = [
            "app=other",
            "version!=v1",
            "canary",
            "!tier",
            "tier in (db)",
            "tier notin (web)",
            "app=sentences-name,version=v2",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&labels), "{s}");
        }
        assert!(LabelSelector::parse("app in (a").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
        assert!(LabelSelector::parse("app=a,,b=c").is_err());
    }

    #[test]
    fn field_selectors_are_limited_to_what_the_api_supports() {
        let kinds = crate::kinds::Kinds::new(false, std::iter::empty());
        let pod = kinds.lookup("", "Pod").unwrap();
        let p = json!({"metadata": {"name": "a", "namespace": "n"}, "status": {"phase": "Running"}, "spec": {}});
        assert!(
            FieldSelector::parse("metadata.name=a,status.phase=Running", &pod)
                .unwrap()
                .matches(&p)
        );
        assert!(
            !FieldSelector::parse("status.phase!=Running", &pod)
                .unwrap()
                .matches(&p)
        );
        assert!(
            FieldSelector::parse("spec.nodeName=", &pod)
                .unwrap()
                .matches(&p)
        );
        let cm = kinds.lookup("", "ConfigMap").unwrap();
        assert_eq!(
            FieldSelector::parse("status.phase=Running", &cm).unwrap_err(),
            "field label not supported: status.phase"
        );
    }

    #[test]
    fn match_expressions() {
        let sel = json!({"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "v", "operator": "In", "values": ["1"]}]});
        assert!(label_selector_matches(&sel, &json!({"app": "a", "v": "1"})));
        assert!(!label_selector_matches(
            &sel,
            &json!({"app": "a", "v": "2"})
        ));
        assert!(!map_selects(&json!({}), &json!({"app": "a"})));
    }
}
