//! Reports of a run: JUnit, and the files every report writer shares.

pub mod junit;
pub mod lock;
pub mod summary;

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
/// `private` files (keys, secrets) are created with mode 0600 before any byte is written.
pub fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<PathBuf, String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create {}: {e}; check --reports-dir points at a writable folder",
            dir.display()
        )
    })?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("report");
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    // A leftover temporary file would keep its old mode; start from a new one.
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    Ok(path.to_path_buf())
}
