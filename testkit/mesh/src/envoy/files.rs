//! Where a proxy's xDS resources live on disk, and how they are replaced. Each resource
//! set is a `DiscoveryResponse` JSON file that Envoy reads through a
//! `path_config_source`: listeners (`lds.json`), clusters (`cds.json`), and one file per
//! route configuration, per cluster's endpoints and per secret (Envoy's EDS, RDS and SDS
//! subscriptions each take the one resource named for them). A file is replaced by
//! writing a temporary file beside it and renaming it over the old one: Envoy watches
//! each path for that move and reloads it.
//!
//! Why files and not an ADS server: Envoy's filesystem subscriptions apply every
//! resource as it would from istiod (the same protos, validation and warming), with
//! nothing to build but JSON; what istiod adds over gRPC (nonces, ACKs) is read back
//! from Envoy's own `version_text` stats instead.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The files of one proxy, under its own folder.
#[derive(Debug, Clone)]
pub(crate) struct ConfigFiles {
    dir: PathBuf,
}

/// A file-safe name for a resource name (`outbound|5000||name.sentences…`).
fn slug(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    let readable: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(48)
        .collect();
    format!("{readable}-{h:016x}")
}

impl ConfigFiles {
    pub fn new(dir: &Path) -> ConfigFiles {
        ConfigFiles {
            dir: dir.to_path_buf(),
        }
    }

    pub fn bootstrap(&self) -> PathBuf {
        self.dir.join("bootstrap.json")
    }

    pub fn lds(&self) -> PathBuf {
        self.dir.join("lds.json")
    }

    pub fn cds(&self) -> PathBuf {
        self.dir.join("cds.json")
    }

    pub fn rds(&self, route_config: &str) -> PathBuf {
        self.dir.join(format!("rds-{}.json", slug(route_config)))
    }

    pub fn eds(&self, cluster: &str) -> PathBuf {
        self.dir.join(format!("eds-{}.json", slug(cluster)))
    }

    pub fn sds(&self, secret: &str) -> PathBuf {
        self.dir.join(format!("sds-{}.json", slug(secret)))
    }

    /// The JSON access log the telemetry is read from.
    pub fn telemetry_log(&self) -> PathBuf {
        self.dir.join("telemetry.log")
    }
}

/// A `ConfigSource` that reads `path` (and waits for it indefinitely, as Istio's
/// `initial_fetch_timeout: 0s` does).
pub(crate) fn source(path: &Path) -> Value {
    json!({
        "path_config_source": {"path": path.display().to_string()},
        "resource_api_version": "V3",
        "initial_fetch_timeout": "0s",
    })
}

/// A `DiscoveryResponse` of `resources` at `version`.
pub(crate) fn discovery_response(version: &str, resources: Vec<Value>) -> Value {
    json!({"version_info": version, "resources": resources})
}

/// Replaces `path` with `value` in one rename.
pub(crate) fn replace(path: &Path, value: &Value) -> Result<(), String> {
    let text = serde_json::to_string(value).map_err(|e| format!("{}: {e}", path.display()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename onto {}: {e}", path.display()))
}
