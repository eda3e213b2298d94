//! `GET .../pods/{name}/log`: the kubelet's answers, including its refusals (no
//! container named, a container that never started, no previous instance).

use crate::errors::{ApiError, ApiResult};
use crate::meta;
use crate::store::Store;
use serde_json::Value;

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The log text of one container of `pod`.
pub fn pod_log(
    store: &Store,
    pod: &Value,
    container: Option<&str>,
    tail_lines: Option<&str>,
    previous: bool,
) -> ApiResult<String> {
    let name = meta::name(pod);
    let mains = names(pod, "containers");
    let inits = names(pod, "initContainers");
    let container = match container {
        Some(c) if !c.is_empty() => c.to_string(),
        _ if mains.len() == 1 => mains[0].clone(),
        _ => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                mains.join(" ")
            );
            if !inits.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    inits.join(" ")
                ));
            }
            return Err(ApiError::bad_request(msg));
        }
    };
    if !mains.contains(&container) && !inits.contains(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let status = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .chain(pod["status"]["initContainerStatuses"].as_array())
        .flatten()
        .find(|s| s["name"] == container.as_str());
    let restarts = status.and_then(|s| s["restartCount"].as_i64()).unwrap_or(0);
    if previous && restarts == 0 {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        )));
    }
    let ran = status.is_some_and(|s| {
        s["state"]["running"].is_object() || s["state"]["terminated"].is_object() || restarts > 0
    });
    if !ran {
        let reason = status
            .and_then(|s| s["state"]["waiting"]["reason"].as_str())
            .unwrap_or("ContainerCreating");
        let why = match reason {
            "ErrImagePull" | "ImagePullBackOff" => "trying and failing to pull image",
            other => other,
        };
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {why}"
        )));
    }
    let mut text = format!("fake log of {name}/{container}\n");
    let key = (
        meta::namespace(pod).to_string(),
        name.to_string(),
        container.clone(),
    );
    if let Some(extra) = store.logs.get(&key) {
        text.push_str(extra);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    if let Some(n) = tail_lines.and_then(|t| t.parse::<usize>().ok()) {
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(n);
        text = lines[start..].iter().map(|l| format!("{l}\n")).collect();
    }
    Ok(text)
}
