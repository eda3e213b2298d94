//! What `--istio-version` and `--upgrade-from` ask for, resolved to exact versions
//! before anything is touched (also for `--list` and `--dry-run`): a minor to its
//! newest released patch, `latest` to the newest release. Exact versions need no
//! network; when the release list is read anyway, an exact version must be in it.

use crate::cli::Cli;
use crate::cluster::releases::{self, Release, ReleaseSource};
use crate::config::Versions;
use crate::exit::HarnessError;
use crate::version::{IstioVersion, Minor, VersionRequest};

/// One version flag, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// As given (`1.31`, `latest`, `1.31.2`).
    pub requested: String,
    /// The exact version.
    pub version: String,
    /// How it was found (`newest patch of 1.31`); `None` for an exact version.
    pub how: Option<String>,
}

impl Resolved {
    fn exact(text: &str) -> Resolved {
        Resolved {
            requested: text.to_string(),
            version: text.to_string(),
            how: None,
        }
    }

    /// The line the resolution is announced with, e.g.
    /// `Istio 1.31 → 1.31.2 (newest patch of 1.31)`.
    pub fn line(&self) -> Option<String> {
        self.how
            .as_ref()
            .map(|how| format!("Istio {} → {} ({how})", self.requested, self.version))
    }
}

/// The stable releases (no drafts, no pre-releases), newest first, each once.
pub fn stable(list: &[Release]) -> Vec<IstioVersion> {
    let mut versions: Vec<IstioVersion> = list.iter().filter_map(Release::stable_version).collect();
    versions.sort_by(|a, b| b.cmp(a));
    versions.dedup();
    versions
}

/// The newest stable patch of `minor`.
pub fn newest_patch(list: &[Release], minor: Minor) -> Option<IstioVersion> {
    stable(list).into_iter().find(|v| v.minor() == minor)
}

/// The newest stable release.
pub fn newest(list: &[Release]) -> Option<IstioVersion> {
    stable(list).into_iter().next()
}

/// Why `minor` has nothing to resolve to, naming what there is instead.
fn no_release_of(minor: Minor, list: &[Release]) -> String {
    let newest = newest(list)
        .map(|v| format!("the newest release is {v}"))
        .unwrap_or_else(|| "the list holds no release at all".into());
    let pre = list
        .iter()
        .filter_map(Release::version)
        .filter(|v| v.minor() == minor)
        .max();
    match pre {
        Some(pre) => format!(
            "Istio {minor} has no release yet, only pre-releases (pass {pre} to test the newest); {newest}"
        ),
        None => format!("Istio {minor} has no release yet; {newest}"),
    }
}

/// Resolves one request against the release list (`text` is the request as given).
pub fn resolve(request: &VersionRequest, text: &str, list: &[Release]) -> Result<Resolved, String> {
    match request {
        VersionRequest::Exact(version) => {
            let published = list
                .iter()
                .filter_map(Release::version)
                .any(|v| &v == version);
            if published {
                return Ok(Resolved::exact(text));
            }
            let minor = version.minor();
            Err(match newest_patch(list, minor) {
                Some(newest) => format!(
                    "Istio {version} was never released; the newest {minor} patch is {newest}"
                ),
                None => format!(
                    "Istio {version} was never released; {}",
                    no_release_of(minor, list)
                ),
            })
        }
        VersionRequest::Minor(minor) => match newest_patch(list, *minor) {
            Some(version) => Ok(Resolved {
                requested: text.to_string(),
                version: version.to_string(),
                how: Some(format!("newest patch of {minor}")),
            }),
            None => Err(no_release_of(*minor, list)),
        },
        VersionRequest::Latest => match newest(list) {
            Some(version) => Ok(Resolved {
                requested: text.to_string(),
                version: version.to_string(),
                how: Some("newest release".into()),
            }),
            None => Err("the Istio release list holds no release".into()),
        },
    }
}

/// The run's versions, resolved.
#[derive(Clone, Debug)]
pub struct RunVersions {
    pub istio: Resolved,
    pub upgrade_from: Option<Resolved>,
    /// The `istio.requested` property (see [`crate::config::requested`]).
    pub requested: String,
}

impl RunVersions {
    /// The command line with exact versions in place of what was asked for.
    pub fn apply(&self, mut cli: Cli) -> Cli {
        cli.istio_version = Some(self.istio.version.clone());
        cli.upgrade_from = self.upgrade_from.as_ref().map(|r| r.version.clone());
        cli
    }
}

/// Resolves `--istio-version` (else `istio.default`) and `--upgrade-from`. The release
/// list is read only when a flag asks for a minor or `latest`; each resolution is
/// announced on stderr. Bad syntax and versions older than the harness supports exit
/// 2; a version that does not exist, or a list that cannot be read, exit 3.
pub fn resolve_run(
    istio_version: Option<&str>,
    upgrade_from: Option<&str>,
    versions: &Versions,
    source: &ReleaseSource,
) -> Result<RunVersions, HarnessError> {
    let target = istio_version.unwrap_or(&versions.istio.default);
    let mut flags = vec![("--istio-version", target)];
    if let Some(from) = upgrade_from {
        flags.push(("--upgrade-from", from));
    }
    let mut requests = Vec::new();
    for (flag, text) in &flags {
        let request =
            VersionRequest::parse(text).map_err(|e| HarnessError::usage(format!("{flag}: {e}")))?;
        if let Some(e) = request
            .minor()
            .and_then(|minor| versions.too_old(flag, text, minor))
        {
            return Err(e);
        }
        requests.push(request);
    }
    let needing_list = flags
        .iter()
        .zip(&requests)
        .find(|(_, request)| request.needs_release_list());
    let resolved: Vec<Resolved> = match needing_list {
        None => flags
            .iter()
            .map(|(_, text)| Resolved::exact(text))
            .collect(),
        Some(((flag, text), _)) => {
            let list = read_list(versions, source).map_err(|e| {
                HarnessError::environment(format!(
                    "cannot resolve {flag} {text}: {e}; pass an exact version instead (such as {})",
                    versions.istio.default
                ))
            })?;
            let resolved = flags
                .iter()
                .zip(&requests)
                .map(|((_, text), request)| resolve(request, text, &list))
                .collect::<Result<Vec<_>, _>>()
                .map_err(HarnessError::environment)?;
            // Announced once all resolved, in the order they are installed.
            for line in resolved.iter().rev().filter_map(Resolved::line) {
                eprintln!("{line}");
            }
            resolved
        }
    };
    let mut resolved = resolved.into_iter();
    let istio = resolved
        .next()
        .ok_or_else(|| HarnessError::usage("no Istio version to resolve"))?;
    Ok(RunVersions {
        istio,
        upgrade_from: resolved.next(),
        requested: crate::config::requested(upgrade_from, istio_version),
    })
}

/// The release list back to the oldest supported minor, announcing a fall-back on the
/// cached copy.
pub fn read_list(versions: &Versions, source: &ReleaseSource) -> Result<Vec<Release>, String> {
    let (major, minor) = versions.minimum_istio();
    let list = releases::fetch_blocking(source, Minor { major, minor })?;
    if let Some(note) = &list.from_cache {
        eprintln!("warning: {note}");
    }
    Ok(list.releases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(tags: &[(&str, bool, bool)]) -> Vec<Release> {
        tags.iter()
            .map(|(tag, prerelease, draft)| Release {
                tag_name: tag.to_string(),
                prerelease: *prerelease,
                draft: *draft,
            })
            .collect()
    }

    fn sample() -> Vec<Release> {
        list(&[
            ("1.32.0-rc.0", true, false),
            ("1.31.3", false, true), // a draft is not a release
            ("1.31.2", false, false),
            ("1.30.5", false, false),
            ("1.31.1", false, false),
            ("1.33.0", true, false), // flagged a pre-release without a suffix
            ("1.31.10-beta.0", false, false),
            ("1.30.4", false, false),
            ("1.31.0", false, false),
        ])
    }

    fn req(text: &str) -> Result<Resolved, String> {
        resolve(&VersionRequest::parse(text).unwrap(), text, &sample())
    }

    #[test]
    fn a_minor_resolves_to_its_newest_released_patch() {
        let r = req("1.31").unwrap();
        assert_eq!(r.version, "1.31.2");
        assert_eq!(
            r.line().unwrap(),
            "Istio 1.31 → 1.31.2 (newest patch of 1.31)"
        );
        assert_eq!(req("1.30").unwrap().version, "1.30.5");
        assert_eq!(req("latest").unwrap().version, "1.31.2");
        assert_eq!(
            req("latest").unwrap().line().unwrap(),
            "Istio latest → 1.31.2 (newest release)"
        );
    }

    #[test]
    fn exact_versions_must_have_been_released() {
        assert_eq!(req("1.31.1").unwrap().line(), None);
        assert_eq!(req("1.32.0-rc.0").unwrap().version, "1.32.0-rc.0");
        assert_eq!(
            req("1.31.9").unwrap_err(),
            "Istio 1.31.9 was never released; the newest 1.31 patch is 1.31.2"
        );
        assert_eq!(
            req("1.31.3").unwrap_err(),
            "Istio 1.31.3 was never released; the newest 1.31 patch is 1.31.2",
            "a draft is not a release"
        );
    }

    #[test]
    fn a_minor_without_a_release_names_what_there_is() {
        assert_eq!(
            req("1.32").unwrap_err(),
            "Istio 1.32 has no release yet, only pre-releases (pass 1.32.0-rc.0 to test the newest); the newest release is 1.31.2"
        );
        assert_eq!(
            req("1.34").unwrap_err(),
            "Istio 1.34 has no release yet; the newest release is 1.31.2"
        );
        assert!(
            resolve(&VersionRequest::Latest, "latest", &[])
                .unwrap_err()
                .contains("holds no release")
        );
    }

    #[test]
    fn exact_versions_resolve_without_the_list() {
        let versions = Versions::embedded();
        let unreachable = ReleaseSource {
            url: "http://127.0.0.1:1/releases".into(),
            token: None,
            cache_dir: None,
        };
        let run = resolve_run(None, None, &versions, &unreachable).unwrap();
        assert_eq!(run.istio.version, versions.istio.default);
        assert_eq!(run.requested, "default");
        let run = resolve_run(Some("1.31.7"), Some("1.30.1"), &versions, &unreachable).unwrap();
        assert_eq!(run.istio.version, "1.31.7");
        assert_eq!(run.upgrade_from.unwrap().version, "1.30.1");
        assert_eq!(run.requested, "1.30.1 → 1.31.7");
    }

    #[test]
    fn bad_and_too_old_requests_are_usage_errors_before_any_network() {
        let versions = Versions::embedded();
        let unreachable = ReleaseSource {
            url: "http://127.0.0.1:1/releases".into(),
            token: None,
            cache_dir: None,
        };
        let e = resolve_run(Some("1.31.x"), None, &versions, &unreachable).unwrap_err();
        assert_eq!(e.code, crate::exit::USAGE);
        assert!(
            e.message.starts_with("--istio-version: `1.31.x`"),
            "{}",
            e.message
        );
        let e = resolve_run(Some("1.31"), Some("1.27"), &versions, &unreachable).unwrap_err();
        assert_eq!(e.code, crate::exit::USAGE);
        assert!(
            e.message
                .starts_with("--upgrade-from 1.27 is older than the harness supports"),
            "{}",
            e.message
        );
    }
}
