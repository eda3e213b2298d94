//! A proxy's folder: the bootstrap Envoy starts from, and the JSON access log its
//! telemetry is read from.

use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub(crate) struct ProxyFiles {
    dir: PathBuf,
}

impl ProxyFiles {
    pub fn new(dir: &Path) -> ProxyFiles {
        ProxyFiles {
            dir: dir.to_path_buf(),
        }
    }

    pub fn bootstrap(&self) -> PathBuf {
        self.dir.join("bootstrap.json")
    }

    /// The JSON access log the telemetry is read from.
    pub fn telemetry_log(&self) -> PathBuf {
        self.dir.join("telemetry.log")
    }
}

/// Writes `value` to `path` as JSON.
pub(crate) fn write(path: &Path, value: &Value) -> Result<(), String> {
    let text = serde_json::to_string(value).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
