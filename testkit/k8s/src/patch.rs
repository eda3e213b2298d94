//! Patches as the API server applies them: JSON merge patch (RFC 7386), strategic merge
//! patch, JSON patch (RFC 6902), and server-side apply's merge, which also removes the
//! fields a manager applied before and no longer applies.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// RFC 7386: objects merge recursively, `null` removes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The keys that identify the items of a built-in list field (its
/// `x-kubernetes-list-map-keys`), or None when the list is atomic and replaced whole.
pub fn list_keys(field: &str, items: &[Value]) -> Option<&'static [&'static str]> {
    let keys: &'static [&'static str] = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => &["name"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "hostAliases" => &["ip"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        // Container ports are keyed by containerPort, Service ports by port (with the
        // protocol, TCP when absent).
        "ports" if items.iter().all(|i| i.get("containerPort").is_some()) => {
            &["containerPort", "protocol"]
        }
        "ports" if items.iter().all(|i| i.get("port").is_some()) => &["port", "protocol"],
        _ => return None,
    };
    items
        .iter()
        .all(|i| i.get(keys[0]).is_some())
        .then_some(keys)
}

fn item_key(keys: &[&str], item: &Value) -> String {
    keys.iter()
        .map(|k| match item.get(*k) {
            Some(v) => v.to_string(),
            None if *k == "protocol" => "\"TCP\"".to_string(),
            None => "null".to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// List fields whose scalar items form a set (strategic merge and apply take the union).
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

fn union_into(target: &mut Value, items: &[Value]) {
    let mut out = target.as_array().cloned().unwrap_or_default();
    for i in items {
        if !out.contains(i) {
            out.push(i.clone());
        }
    }
    *target = Value::Array(out);
}

/// Removes `$`-directives from a value that is inserted as is.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Strategic merge patch for built-in kinds: maps merge like a merge patch; keyed lists
/// (containers, env, ports, volumes, …) merge item by item; `finalizers` is a set; other
/// lists are replaced. Understands `$patch: replace|delete`, `$deleteFromPrimitiveList/…`
/// and ignores `$setElementOrder/…` and `$retainKeys`.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    match patch {
        Value::Object(p) => smp_map(target, p),
        _ => Err("the strategic merge patch must be a JSON object".into()),
    }
}

fn smp_map(target: &mut Value, patch: &Map<String, Value>) -> Result<(), String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = strip_directives(&Value::Object(patch.clone()));
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other:?} in map")),
    }
    if !target.is_object() {
        *target = json!({});
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    for (k, v) in patch {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = t.get_mut(field) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(m) if m.get("$patch").and_then(Value::as_str) == Some("delete") => {
                t.remove(k);
            }
            Value::Object(m) => smp_map(t.entry(k.clone()).or_insert(Value::Null), m)?,
            Value::Array(items) => smp_list(k, t.entry(k.clone()).or_insert(Value::Null), items)?,
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

fn smp_list(field: &str, target: &mut Value, items: &[Value]) -> Result<(), String> {
    let is_replace = |i: &Value| i.get("$patch").and_then(Value::as_str) == Some("replace");
    if items.iter().any(is_replace) {
        *target = Value::Array(
            items
                .iter()
                .filter(|i| !is_replace(i))
                .map(strip_directives)
                .collect(),
        );
        return Ok(());
    }
    if is_set_list(field) {
        union_into(target, items);
        return Ok(());
    }
    let Some(keys) = list_keys(field, items) else {
        *target = strip_directives(&Value::Array(items.to_vec()));
        return Ok(());
    };
    let mut out = target.as_array().cloned().unwrap_or_default();
    for item in items {
        let Value::Object(m) = item else {
            return Err(format!("the items of {field} must be objects"));
        };
        let key = item_key(keys, item);
        let pos = out.iter().position(|x| item_key(keys, x) == key);
        if m.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(p) = pos {
                out.remove(p);
            }
            continue;
        }
        match pos {
            Some(p) => smp_map(&mut out[p], m)?,
            None => out.push(strip_directives(item)),
        }
    }
    *target = Value::Array(out);
    Ok(())
}

fn unescape_token(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

/// The parent pointer and the last token of a JSON pointer.
fn split_pointer(path: &str) -> Result<(&str, String), String> {
    if !path.starts_with('/') {
        return Err(format!("invalid JSON pointer {path:?}"));
    }
    let at = path.rfind('/').unwrap_or(0);
    Ok((&path[..at], unescape_token(&path[at + 1..])))
}

fn array_index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if allow_end && token == "-" {
        return Ok(len);
    }
    match token.parse::<usize>() {
        Ok(i) if i < len || (allow_end && i == len) => Ok(i),
        _ => Err(format!("array index {token:?} out of bounds")),
    }
}

fn pointer_add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = array_index(&last, a.len(), true)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("doc is missing path: {path:?}")),
    }
}

fn pointer_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let missing = || format!("unable to remove nonexistent key: {path}: missing value");
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(missing),
        Some(Value::Array(a)) => {
            let i = array_index(&last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// Why a JSON patch failed: the document does not decode as one (400), or an
/// operation does not apply to the object (422).
#[derive(Debug, Clone, PartialEq)]
pub enum JsonPatchError {
    Decode(String),
    Apply(String),
}

/// RFC 6902: add, remove, replace, move, copy, test.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), JsonPatchError> {
    let decode = |m: String| JsonPatchError::Decode(m);
    let ops = ops
        .as_array()
        .ok_or_else(|| decode("the JSON patch must be an array of operations".into()))?;
    for op in ops {
        let name = op["op"]
            .as_str()
            .ok_or_else(|| decode("an operation has no \"op\"".into()))?;
        if !matches!(
            name,
            "add" | "remove" | "replace" | "move" | "copy" | "test"
        ) {
            return Err(decode(format!("unexpected operation {name:?}")));
        }
        if !op["path"].is_string() || (matches!(name, "move" | "copy") && !op["from"].is_string()) {
            return Err(decode(format!(
                "operation {name:?} lacks \"path\" or \"from\""
            )));
        }
        if matches!(name, "add" | "replace" | "test") && op.get("value").is_none() {
            return Err(decode(format!("operation {name:?} has no \"value\"")));
        }
    }
    for op in ops {
        apply_op(doc, op).map_err(JsonPatchError::Apply)?;
    }
    Ok(())
}

fn apply_op(doc: &mut Value, op: &Value) -> Result<(), String> {
    let name = op["op"].as_str().unwrap_or_default();
    let path = op["path"].as_str().unwrap_or_default();
    let value = || {
        op.get("value")
            .cloned()
            .ok_or_else(|| format!("operation {name:?} has no \"value\""))
    };
    let from = || {
        op["from"]
            .as_str()
            .ok_or_else(|| format!("operation {name:?} has no \"from\""))
    };
    match name {
        "add" => pointer_add(doc, path, value()?)?,
        "remove" => {
            pointer_remove(doc, path)?;
        }
        "replace" => {
            let v = value()?;
            *doc.pointer_mut(path).ok_or_else(|| {
                format!(
                    "replace operation does not apply: doc is missing key: {path}: missing value"
                )
            })? = v;
        }
        "move" => {
            let v = pointer_remove(doc, from()?)?;
            pointer_add(doc, path, v)?;
        }
        "copy" => {
            let v = doc
                .pointer(from()?)
                .cloned()
                .ok_or_else(|| format!("copy from a missing path {:?}", from()))?;
            pointer_add(doc, path, v)?;
        }
        "test" => {
            if doc.pointer(path) != Some(&value()?) {
                return Err(format!("testing value {path} failed: test failed"));
            }
        }
        other => return Err(format!("unexpected operation {other:?}")),
    }
    Ok(())
}

/// One step of a field path as server-side apply tracks ownership.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Field(String),
    /// An item of a keyed list, by its key.
    Item(String),
    /// A member of a set list.
    Member(String),
}

type FieldPath = Vec<Seg>;

/// Every owned leaf of an applied configuration with its value (keyed-list items are
/// owned as a whole too, with a null marker).
fn leaves(v: &Value, builtin: bool) -> BTreeMap<FieldPath, Value> {
    fn walk(
        v: &Value,
        builtin: bool,
        field: &str,
        path: &mut FieldPath,
        out: &mut BTreeMap<FieldPath, Value>,
    ) {
        match v {
            Value::Object(m) if m.is_empty() && !path.is_empty() => {
                out.insert(path.clone(), v.clone());
            }
            Value::Object(m) => {
                for (k, c) in m {
                    path.push(Seg::Field(k.clone()));
                    walk(c, builtin, k, path, out);
                    path.pop();
                }
            }
            Value::Array(items) if builtin && is_set_list(field) => {
                for i in items {
                    path.push(Seg::Member(i.to_string()));
                    out.insert(path.clone(), i.clone());
                    path.pop();
                }
            }
            Value::Array(items) if builtin && list_keys(field, items).is_some() => {
                let keys = list_keys(field, items).unwrap_or(&[]);
                for i in items {
                    path.push(Seg::Item(item_key(keys, i)));
                    out.insert(path.clone(), Value::Null);
                    walk(i, builtin, "", path, out);
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(v, builtin, "", &mut Vec::new(), &mut out);
    out
}

fn display_path(path: &FieldPath) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Field(f) => format!(".{f}"),
            Seg::Item(k) => format!("[{k}]"),
            Seg::Member(m) => format!("[{m}]"),
        })
        .collect()
}

/// Removes one field path; maps emptied on the way are removed too (as omitempty maps
/// vanish in the real API).
fn remove_path(v: &mut Value, path: &[Seg], field: &str) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match (first, v) {
        (Seg::Field(k), Value::Object(m)) => {
            if rest.is_empty() {
                m.remove(k);
            } else if let Some(child) = m.get_mut(k) {
                let was_empty = child.as_object().is_some_and(Map::is_empty);
                remove_path(child, rest, k);
                if !was_empty && child.as_object().is_some_and(Map::is_empty) {
                    m.remove(k);
                }
            }
        }
        (Seg::Item(key), Value::Array(items)) => {
            let Some(keys) = list_keys(field, items) else {
                return;
            };
            if let Some(pos) = items.iter().position(|i| item_key(keys, i) == *key) {
                if rest.is_empty() {
                    items.remove(pos);
                } else {
                    remove_path(&mut items[pos], rest, "");
                }
            }
        }
        (Seg::Member(m), Value::Array(items)) => {
            let member: Value = serde_json::from_str(m).unwrap_or(Value::Null);
            items.retain(|i| *i != member);
        }
        _ => {}
    }
}

fn ssa_merge(live: &mut Value, applied: &Value, builtin: bool, field: &str) {
    match applied {
        Value::Object(a) => {
            if !live.is_object() {
                *live = json!({});
            }
            if let Value::Object(l) = live {
                for (k, v) in a {
                    if v.is_null() {
                        l.remove(k);
                    } else {
                        ssa_merge(l.entry(k.clone()).or_insert(Value::Null), v, builtin, k);
                    }
                }
            }
        }
        Value::Array(items) if builtin && is_set_list(field) => union_into(live, items),
        Value::Array(items) if builtin && list_keys(field, items).is_some() => {
            let keys = list_keys(field, items).unwrap_or(&[]);
            let mut out = live.as_array().cloned().unwrap_or_default();
            for item in items {
                let key = item_key(keys, item);
                match out.iter().position(|x| item_key(keys, x) == key) {
                    Some(p) => ssa_merge(&mut out[p], item, builtin, ""),
                    None => out.push(item.clone()),
                }
            }
            *live = Value::Array(out);
        }
        _ => *live = applied.clone(),
    }
}

/// Fields no manager owns: they identify the object.
fn is_identity(path: &FieldPath) -> bool {
    let f = |s: &str| Seg::Field(s.to_string());
    matches!(path.as_slice(), [a] if *a == f("apiVersion") || *a == f("kind"))
        || matches!(path.as_slice(), [m, n] if *m == f("metadata") && (*n == f("name") || *n == f("namespace")))
}

/// What server-side apply produced.
#[derive(Debug)]
pub struct Applied {
    pub object: Value,
    /// The other apply managers' configurations, without the fields this apply took
    /// over by force.
    pub others: Vec<(String, Value)>,
}

/// Server-side apply of `applied` by one manager onto `live` (None: create). `previous`
/// is what the same manager applied last time; `others` what the other apply managers
/// applied last. Fields the manager applied before and no longer applies are removed
/// unless another manager applies them too. A field another manager applies with a
/// different value is a conflict unless `force` (then that manager loses it).
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    previous: Option<&Value>,
    others: &[(String, Value)],
    builtin: bool,
    force: bool,
) -> Result<Applied, Vec<(String, String)>> {
    let mine = leaves(applied, builtin);
    let mut others: Vec<(String, Value)> = others.to_vec();
    let mut conflicts = Vec::new();
    for (manager, config) in &mut others {
        let theirs = leaves(config, builtin);
        let clashing: Vec<FieldPath> = mine
            .iter()
            .filter(|(p, v)| !is_identity(p) && theirs.get(*p).is_some_and(|t| t != *v))
            .map(|(p, _)| p.clone())
            .collect();
        if force {
            for p in &clashing {
                remove_path(config, p, "");
            }
        } else {
            conflicts.extend(clashing.iter().map(|p| (manager.clone(), display_path(p))));
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let kept: BTreeSet<FieldPath> = others
        .iter()
        .flat_map(|(_, c)| leaves(c, builtin).into_keys())
        .collect();
    let mut object = live.cloned().unwrap_or_else(|| json!({}));
    if let Some(prev) = previous {
        for path in leaves(prev, builtin).into_keys() {
            if !mine.contains_key(&path) && !kept.contains(&path) && !is_identity(&path) {
                remove_path(&mut object, &path, "");
            }
        }
    }
    ssa_merge(&mut object, applied, builtin, "");
    Ok(Applied { object, others })
}

/// How a conflict list reads in the 409 message.
pub fn conflict_message(conflicts: &[(String, String)]) -> String {
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(m, p)| format!("conflict with \"{m}\": {p}"))
        .collect();
    match lines.as_slice() {
        [one] => format!("Apply failed with 1 conflict: {one}"),
        _ => format!(
            "Apply failed with {} conflicts: {}",
            lines.len(),
            lines.join("\n")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_removes_nulls() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut t = json!({"spec": {"containers": [
            {"name": "app", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "side", "image": "s:1"}],
            "tolerations": [{"key": "a"}]},
            "metadata": {"finalizers": ["a"]}});
        strategic_merge_patch(&mut t, &json!({
            "spec": {"containers": [{"name": "app", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
                                    {"name": "side", "$patch": "delete"}],
                     "$setElementOrder/containers": [{"name": "app"}],
                     "tolerations": [{"key": "b"}]},
            "metadata": {"finalizers": ["b"]}})).unwrap();
        assert_eq!(
            t,
            json!({"spec": {"containers": [
            {"name": "app", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}],
            "tolerations": [{"key": "b"}]},
            "metadata": {"finalizers": ["a", "b"]}})
        );
    }

    #[test]
    fn json_patch_operations() {
        let mut d = json!({"a": [1, 2], "b": {"c": "x"}});
        json_patch(
            &mut d,
            &json!([
                {"op": "add", "path": "/a/-", "value": 3},
                {"op": "remove", "path": "/a/0"},
                {"op": "replace", "path": "/b/c", "value": "y"},
                {"op": "test", "path": "/b/c", "value": "y"},
                {"op": "add", "path": "/b/d~1e", "value": true},
                {"op": "copy", "from": "/b/c", "path": "/f"},
                {"op": "move", "from": "/f", "path": "/g"},
            ]),
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"a": [2, 3], "b": {"c": "y", "d/e": true}, "g": "y"})
        );
        assert!(json_patch(&mut d, &json!([{"op": "test", "path": "/g", "value": "z"}])).is_err());
        assert!(json_patch(&mut d, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(&mut d, &json!({"op": "add"})).is_err());
    }

    #[test]
    fn apply_removes_what_the_manager_stopped_applying() {
        let first = json!({"spec": {"template": {"metadata": {"annotations": {"a": "1"}},
            "spec": {"containers": [{"name": "app", "image": "a:1"}, {"name": "b", "image": "b"}]}}}});
        let created = server_side_apply(None, &first, None, &[], true, false)
            .unwrap()
            .object;
        let mut live = created.clone();
        live["spec"]["template"]["metadata"]["labels"] = json!({"other": "x"});
        let second = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "a:2"}]}}}});
        let out = server_side_apply(Some(&live), &second, Some(&first), &[], true, false)
            .unwrap()
            .object;
        assert_eq!(
            out,
            json!({"spec": {"template": {"metadata": {"labels": {"other": "x"}},
            "spec": {"containers": [{"name": "app", "image": "a:2"}]}}}})
        );
    }

    #[test]
    fn apply_conflicts_with_another_manager_unless_forced() {
        let theirs = json!({"spec": {"replicas": 2}});
        let live = json!({"spec": {"replicas": 2}});
        let mine = json!({"spec": {"replicas": 3}});
        let others = vec![("m2".to_string(), theirs)];
        let err = server_side_apply(Some(&live), &mine, None, &others, true, false).unwrap_err();
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 1 conflict: conflict with \"m2\": .spec.replicas"
        );
        let ok = server_side_apply(Some(&live), &mine, None, &others, true, true).unwrap();
        assert_eq!(ok.object["spec"]["replicas"], 3);
        assert_eq!(ok.others[0].1, json!({}));
    }
}
