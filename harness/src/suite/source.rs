//! Where suite files come from: the copy embedded in the binary, or a directory.

use include_dir::{Dir, include_dir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../suites");

/// The text files of a suites folder, keyed by their path relative to it.
#[derive(Debug, Clone)]
pub struct SuiteSource {
    /// How error messages name the folder: `suites` (embedded) or the directory given.
    pub origin: String,
    pub files: BTreeMap<PathBuf, String>,
}

impl SuiteSource {
    pub fn embedded() -> Self {
        let mut files = BTreeMap::new();
        collect_embedded(&EMBEDDED, &mut files);
        SuiteSource {
            origin: "suites".into(),
            files,
        }
    }

    pub fn from_dir(dir: &Path) -> Result<Self, String> {
        let mut files = BTreeMap::new();
        collect_dir(dir, dir, &mut files)?;
        Ok(SuiteSource {
            origin: dir.display().to_string(),
            files,
        })
    }

    pub fn get(&self, relative: &Path) -> Option<&str> {
        self.files.get(relative).map(String::as_str)
    }

    /// The path to show a user for a file of this source.
    pub fn display(&self, relative: &Path) -> String {
        Path::new(&self.origin).join(relative).display().to_string()
    }
}

fn collect_embedded(dir: &Dir<'static>, files: &mut BTreeMap<PathBuf, String>) {
    for file in dir.files() {
        if let Some(text) = file.contents_utf8() {
            files.insert(file.path().to_path_buf(), text.to_string());
        }
    }
    for sub in dir.dirs() {
        collect_embedded(sub, files);
    }
}

fn collect_dir(
    root: &Path,
    dir: &Path,
    files: &mut BTreeMap<PathBuf, String>,
) -> Result<(), String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read suites folder {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let path = entry.path();
        if path.is_dir() {
            collect_dir(root, &path, files)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            files.insert(relative, text);
        }
    }
    Ok(())
}
