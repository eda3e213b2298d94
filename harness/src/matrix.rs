//! `--print-matrix`: the nightly CI matrix as one JSON line, resolved from the release
//! list. The newest patch of every supported minor; the newest release too when its
//! minor is not listed yet (so a new Istio minor is tested the night it ships); and the
//! upgrade from the previous listed minor's newest patch to the newest listed one's.

use crate::cluster::releases::{Release, ReleaseSource};
use crate::config::Versions;
use crate::exit::HarnessError;
use crate::resolve::{newest, newest_patch};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub istio: String,
    pub minor: String,
    /// In `istio.supported`; `false` for a newer minor the file does not list yet.
    pub listed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Upgrade {
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Matrix {
    pub include: Vec<Entry>,
    pub upgrade: Upgrade,
}

impl Matrix {
    pub fn to_json(&self) -> String {
        // Plain strings and booleans: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The matrix for the supported minors of `versions` and the release `list`.
pub fn compute(versions: &Versions, list: &[Release]) -> Result<Matrix, String> {
    let minors = versions.supported_minors();
    let mut include = Vec::new();
    for minor in &minors {
        let version = newest_patch(list, *minor).ok_or_else(|| {
            format!(
                "Istio {minor} is listed in clusters/versions.yaml (istio.supported) but has no release{}; remove it until it ships",
                newest(list)
                    .map(|v| format!(" (the newest release is {v})"))
                    .unwrap_or_default()
            )
        })?;
        include.push(Entry {
            istio: version.to_string(),
            minor: minor.to_string(),
            listed: true,
        });
    }
    let (Some(previous), Some(last)) = (
        include.len().checked_sub(2).and_then(|i| include.get(i)),
        include.last(),
    ) else {
        return Err(
            "clusters/versions.yaml lists fewer than two supported minors (istio.supported): there is no upgrade to test".into(),
        );
    };
    let upgrade = Upgrade {
        from: previous.istio.clone(),
        to: last.istio.clone(),
    };
    if let Some(newest) = newest(list)
        && minors.iter().all(|m| newest.minor() > *m)
    {
        include.push(Entry {
            istio: newest.to_string(),
            minor: newest.minor().to_string(),
            listed: false,
        });
    }
    Ok(Matrix { include, upgrade })
}

/// Reads the release list and prints the matrix on standard output; exit 3 when it
/// cannot be resolved.
pub fn print(versions: &Versions, source: &ReleaseSource) -> Result<(), HarnessError> {
    let list = crate::resolve::read_list(versions, source).map_err(|e| {
        HarnessError::environment(format!("--print-matrix needs the release list: {e}"))
    })?;
    let matrix = compute(versions, &list).map_err(HarnessError::environment)?;
    println!("{}", matrix.to_json());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(tags: &[&str]) -> Vec<Release> {
        tags.iter()
            .map(|tag| Release {
                tag_name: tag.to_string(),
                prerelease: tag.contains('-'),
                draft: false,
            })
            .collect()
    }

    #[test]
    fn a_new_unlisted_minor_joins_the_matrix_marked_as_such() {
        let versions = Versions::embedded();
        let releases = list(&[
            "1.32.0",
            "1.32.0-rc.1",
            "1.31.2",
            "1.30.5",
            "1.31.1",
            "1.30.4",
            "1.29.7",
        ]);
        let matrix = compute(&versions, &releases).unwrap();
        assert_eq!(
            matrix.to_json(),
            r#"{"include":[{"istio":"1.30.5","minor":"1.30","listed":true},{"istio":"1.31.2","minor":"1.31","listed":true},{"istio":"1.32.0","minor":"1.32","listed":false}],"upgrade":{"from":"1.30.5","to":"1.31.2"}}"#
        );
    }

    #[test]
    fn pre_releases_of_a_new_minor_do_not_join() {
        let versions = Versions::embedded();
        let matrix = compute(&versions, &list(&["1.32.0-rc.1", "1.31.2", "1.30.5"])).unwrap();
        assert_eq!(matrix.include.len(), 2);
        assert!(matrix.include.iter().all(|e| e.listed));
    }

    #[test]
    fn a_listed_minor_without_a_release_is_an_error_naming_it() {
        let versions = Versions::embedded();
        let err = compute(&versions, &list(&["1.31.2", "1.29.7"])).unwrap_err();
        assert!(
            err.starts_with("Istio 1.30 is listed in clusters/versions.yaml"),
            "{err}"
        );
    }
}
