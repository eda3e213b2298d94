//! `kind` and `istioctl`: taken from PATH when their versions match, otherwise
//! downloaded into the cache and verified. The Istio release archive also provides
//! the Prometheus addon (`samples/addons/prometheus.yaml`).

use super::download::{fetch_verified, http_client};
use super::process::run;
use super::releases::{self, ReleaseSource};
use crate::config::Versions;
use crate::version::Minor;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct IstioRelease {
    pub version: String,
    pub istioctl: PathBuf,
    pub prometheus_addon: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// The client version `istioctl version --remote=false --short` prints: `client
/// version: 1.31.2` on current releases, a bare `1.31.2` on older ones.
pub fn istioctl_client_version(output: &str) -> Option<&str> {
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("client version:") {
            return Some(rest.trim());
        }
        if crate::config::parse_istio_version(line).is_ok() {
            return Some(line);
        }
    }
    None
}

/// `kind v0.30.0 go1.24.5 linux/amd64` → true for `v0.30.0`.
pub fn kind_version_matches(output: &str, version: &str) -> bool {
    output.split_whitespace().nth(1) == Some(version)
}

/// What a kind of another version on PATH is told as.
pub fn other_kind_note(path: &Path, version_output: &str, pinned: &str) -> String {
    format!(
        "kind on PATH ({}) is {}, not the pinned {pinned}: using the pinned one, downloaded and verified",
        path.display(),
        version_output
            .split_whitespace()
            .nth(1)
            .unwrap_or("of an unknown version"),
    )
}

/// kind from PATH if it is the pinned version, else the verified download; with a note
/// when a kind of another version was found on PATH.
pub async fn kind(versions: &Versions, cache: &Path) -> Result<(PathBuf, Option<String>), String> {
    let mut note = None;
    if let Some(path) = on_path("kind") {
        match run(&path, &["version"], Duration::from_secs(10)).await {
            Ok(out) if kind_version_matches(&out, &versions.kind.version) => {
                return Ok((path, None));
            }
            Ok(out) => note = Some(other_kind_note(&path, &out, &versions.kind.version)),
            Err(e) => {
                note = Some(format!(
                    "kind on PATH ({}) did not tell its version ({}): using the pinned {}, downloaded and verified",
                    path.display(),
                    crate::exit::one_line(&e),
                    versions.kind.version
                ));
            }
        }
    }
    let url = versions.kind_url()?;
    let dest = cache.join(format!(
        "{}-{}",
        crate::config::file_name(&url),
        versions.kind.version
    ));
    let path = fetch_verified(&http_client()?, &url, &format!("{url}.sha256sum"), &dest).await?;
    make_executable(&path)?;
    Ok((path, note))
}

fn make_executable(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot make {} executable: {e}", path.display()))?;
    }
    Ok(())
}

/// The Istio release: the archive is downloaded and verified once per version (it
/// holds the Prometheus addon); istioctl from PATH is preferred when it is that version.
pub async fn istio(
    versions: &Versions,
    version: &str,
    cache: &Path,
) -> Result<IstioRelease, String> {
    let url = versions.istio_archive_url(version)?;
    let source = ReleaseSource::from_env(&versions.istio.releases_url);
    istio_from(versions, version, cache, &url, &source).await
}

/// [`istio`] with the archive's URL and the release list given (the environment
/// chooses them for a run).
pub async fn istio_from(
    versions: &Versions,
    version: &str,
    cache: &Path,
    url: &str,
    releases: &ReleaseSource,
) -> Result<IstioRelease, String> {
    let dir = cache.join(format!("istio-{version}"));
    let archive = cache.join(crate::config::file_name(url));
    if let Err(e) = fetch_verified(&http_client()?, url, &format!("{url}.sha256"), &archive).await {
        if !e.not_found {
            return Err(e.message);
        }
        return Err(missing_release(releases, versions, version, &e.message).await);
    }
    let prometheus_addon = dir.join("samples/addons/prometheus.yaml");
    let bundled = dir.join("bin/istioctl");
    let record = super::download::record_of(&bundled);
    if !prometheus_addon.exists() || !bundled.exists() || !record.exists() {
        extract(&archive, &dir, version)?;
        // istioctl comes out of the verified archive: its digest now is the one to
        // check before every run.
        let digest = super::download::sha256_file(&bundled)?;
        std::fs::write(&record, digest)
            .map_err(|e| format!("cannot write {}: {e}", record.display()))?;
    }
    let istioctl = match on_path("istioctl") {
        Some(path)
            if run(
                &path,
                &["version", "--remote=false", "--short"],
                Duration::from_secs(10),
            )
            .await
            .is_ok_and(|out| istioctl_client_version(&out) == Some(version)) =>
        {
            path
        }
        _ => bundled,
    };
    Ok(IstioRelease {
        version: version.to_string(),
        istioctl,
        prometheus_addon,
    })
}

/// Why the release archive of `version` is not where it should be: a version never
/// released is named with the newest patch of its minor (from the release list); a
/// released one is missing from the download host (a mirror that lacks it).
pub async fn missing_release(
    source: &ReleaseSource,
    versions: &Versions,
    version: &str,
    not_found: &str,
) -> String {
    let request = match crate::version::VersionRequest::parse(version) {
        Ok(request) => request,
        Err(e) => return format!("{not_found}; {e}"),
    };
    let (major, minor) = versions.minimum_istio();
    match releases::fetch(source, Minor { major, minor }).await {
        Ok(list) => match crate::resolve::resolve(&request, version, &list.releases) {
            // A cached list may predate the release: say so rather than deny it.
            Err(never_released) if list.from_cache.is_some() => format!(
                "{not_found}; by the cached release list, {never_released} ({})",
                list.from_cache.as_deref().unwrap_or_default()
            ),
            Err(never_released) => format!(
                "{never_released} ({not_found}); pass a released version, or the minor alone for its newest patch"
            ),
            Ok(_) => format!(
                "Istio {version} is released, but {not_found}: the download host ({}) lacks it",
                crate::config::DOWNLOAD_URL_ENV
            ),
        },
        Err(e) => format!("{not_found}; whether Istio {version} was ever released is unknown: {e}"),
    }
}

/// Extracts `istio-<v>/bin/istioctl` and `istio-<v>/samples/addons/*` into `dir`.
pub fn extract(archive: &Path, dir: &Path, version: &str) -> Result<(), String> {
    let file = std::fs::File::open(archive)
        .map_err(|e| format!("cannot open {}: {e}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let prefix = PathBuf::from(format!("istio-{version}"));
    let wanted = [prefix.join("bin/istioctl"), prefix.join("samples/addons")];
    let entries = tar
        .entries()
        .map_err(|e| format!("{} is not a tar.gz archive: {e}", archive.display()))?;
    let mut found = 0;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("cannot read {}: {e}", archive.display()))?;
        let path = entry
            .path()
            .map_err(|e| format!("bad path in {}: {e}", archive.display()))?
            .into_owned();
        if !wanted.iter().any(|w| path.starts_with(w)) {
            continue;
        }
        let relative = path.strip_prefix(&prefix).unwrap_or(&path);
        let target = dir.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        entry
            .unpack(&target)
            .map_err(|e| format!("cannot extract {}: {e}", target.display()))?;
        found += 1;
    }
    if !dir.join("bin/istioctl").exists() || !dir.join("samples/addons/prometheus.yaml").exists() {
        return Err(format!(
            "{} lacks istio-{version}/bin/istioctl or samples/addons/prometheus.yaml ({found} matching entries)",
            archive.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istioctl_client_version_is_read_in_both_forms() {
        assert_eq!(
            istioctl_client_version("client version: 1.31.2\n"),
            Some("1.31.2")
        );
        assert_eq!(istioctl_client_version("1.30.5\n"), Some("1.30.5"));
        assert_eq!(
            istioctl_client_version("no running Istio pods in \"istio-system\"\n"),
            None
        );
    }

    #[test]
    fn a_kind_of_another_version_is_named_with_the_pinned_one() {
        let note = other_kind_note(
            Path::new("/usr/local/bin/kind"),
            "kind v0.29.0 go1.24.2 linux/amd64\n",
            "v0.30.0",
        );
        assert_eq!(
            note,
            "kind on PATH (/usr/local/bin/kind) is v0.29.0, not the pinned v0.30.0: using the pinned one, downloaded and verified"
        );
    }

    #[test]
    fn kind_version_line_is_read() {
        assert!(kind_version_matches(
            "kind v0.30.0 go1.24.5 linux/amd64\n",
            "v0.30.0"
        ));
        assert!(!kind_version_matches(
            "kind v0.29.0 go1.24.2 linux/amd64",
            "v0.30.0"
        ));
    }
}
