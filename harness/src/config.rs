//! The run's configuration, checked once: everything a user can get wrong is refused
//! here with exit code 2 before anything is touched.
//!
//! Longer than most files because it is one table: every flag's check, the versions
//! file it is checked against, and the defaults, kept together so no check is missed.

use crate::cli::{Cli, UpgradeMode};
use crate::cluster::platform::Platform;
use crate::exit::HarnessError;
use crate::reference::HostPort;
use crate::suite::template::Variables;
use crate::version::{IstioVersion, Minor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The host name the exercise routes through the gateway.
pub const HOST: &str = "sentences.example.com";

/// Replaces `istio.download_url` (same placeholders): a mirror for air-gapped users, or
/// the tests' loopback server. The `.sha256` beside each archive is still required.
pub const DOWNLOAD_URL_ENV: &str = "HARNESS_ISTIO_DOWNLOAD_URL";

static VERSIONS_YAML: &str = include_str!("../../clusters/versions.yaml");
static KIND_CONFIG: &str = include_str!("../../clusters/kind.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    pub istio: IstioVersions,
    pub kind: KindVersions,
    pub kubernetes: KubernetesVersions,
    pub app: AppVersions,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppVersions {
    pub image: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IstioVersions {
    /// An exact version: a run that asks for nothing needs no network to resolve it.
    pub default: String,
    /// Supported minors (`1.31`), oldest first.
    pub supported: Vec<String>,
    /// The oldest minor the harness supports (`1.28`).
    pub minimum: String,
    pub hub: String,
    /// The release list minors and `latest` resolve against.
    pub releases_url: String,
    /// With `{version}` and `{platform}`.
    pub download_url: String,
    /// `{platform}` of `download_url` per `<os>-<arch>` (`darwin-amd64: osx-amd64`).
    pub platforms: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindVersions {
    pub version: String,
    /// With `{version}`, `{os}` and `{arch}`.
    pub download_url: String,
    pub node_image: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesVersions {
    pub minimum: String,
}

impl Versions {
    pub fn embedded() -> Versions {
        // The file is part of the build and checked by a test; a broken one is a bug.
        serde_saphyr::from_str(VERSIONS_YAML).expect("clusters/versions.yaml is valid")
    }

    /// `istio.minimum` as (major, minor).
    pub fn minimum_istio(&self) -> (u32, u32) {
        let mut parts = self
            .istio
            .minimum
            .split('.')
            .map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(1), parts.next().unwrap_or(28))
    }

    /// `istio.supported` as minors (the file's test checks every entry is one).
    pub fn supported_minors(&self) -> Vec<Minor> {
        self.istio
            .supported
            .iter()
            .filter_map(|m| Minor::parse(m))
            .collect()
    }

    /// A version (or minor) older than `istio.minimum` is refused with the reason.
    pub fn too_old(&self, flag: &str, text: &str, minor: Minor) -> Option<HarnessError> {
        let (major, min) = self.minimum_istio();
        ((minor.major, minor.minor) < (major, min)).then(|| {
            HarnessError::usage(format!(
                "{flag} {text} is older than the harness supports: it needs Istio {major}.{min} or newer (native sidecars, on Kubernetes {} or newer)",
                self.kubernetes.minimum
            ))
        })
    }

    /// The release archive of `version` for `platform`.
    pub fn istio_archive_url_for(
        &self,
        version: &str,
        platform: Platform,
    ) -> Result<String, String> {
        let name = self
            .istio
            .platforms
            .get(&platform.to_string())
            .ok_or_else(|| {
                format!(
                    "clusters/versions.yaml names no Istio archive for {platform} (istio.platforms)"
                )
            })?;
        Ok(self
            .istio_download_template()?
            .replace("{version}", version)
            .replace("{platform}", name))
    }

    /// `HARNESS_ISTIO_DOWNLOAD_URL` when set, else `istio.download_url`.
    pub fn istio_download_template(&self) -> Result<String, String> {
        download_template(
            std::env::var(DOWNLOAD_URL_ENV).ok().as_deref(),
            &self.istio.download_url,
        )
    }

    /// The release archive of `version` for the platform the harness runs on.
    pub fn istio_archive_url(&self, version: &str) -> Result<String, String> {
        self.istio_archive_url_for(version, Platform::current()?)
    }

    /// The kind binary for `platform`.
    pub fn kind_url_for(&self, platform: Platform) -> String {
        self.kind
            .download_url
            .replace("{version}", &self.kind.version)
            .replace("{os}", platform.os)
            .replace("{arch}", platform.arch)
    }

    /// The kind binary for the platform the harness runs on.
    pub fn kind_url(&self) -> Result<String, String> {
        Ok(self.kind_url_for(Platform::current()?))
    }
}

/// The archive URL template: `overridden` (the environment variable's value) when it is
/// set and not blank, else the file's.
pub fn download_template(overridden: Option<&str>, file: &str) -> Result<String, String> {
    match overridden.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(file.to_string()),
        Some(t) if t.contains("{version}") => Ok(t.to_string()),
        Some(t) => Err(format!(
            "{DOWNLOAD_URL_ENV} `{t}` has no {{version}} placeholder; give a template like istio.download_url in clusters/versions.yaml, e.g. https://mirror.example/istio/{{version}}/istio-{{version}}-{{platform}}.tar.gz"
        )),
    }
}

/// The last path segment of a download URL: the name a download is cached under.
pub fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

pub fn kind_config() -> &'static str {
    KIND_CONFIG
}

/// An exact Istio version, `X.Y.Z` (optionally with a pre-release suffix like `-beta.1`).
pub fn parse_istio_version(text: &str) -> Result<IstioVersion, String> {
    IstioVersion::parse(text).ok_or_else(|| {
        format!(
            "`{text}` is not an exact Istio version: expected X.Y.Z such as 1.31.2 (see clusters/versions.yaml)"
        )
    })
}

/// The `istio.requested` property: the version flags as given (`default` without
/// --istio-version), `from → to` in an upgrade run.
pub fn requested(upgrade_from: Option<&str>, istio_version: Option<&str>) -> String {
    let target = istio_version.unwrap_or("default");
    match upgrade_from {
        Some(from) => format!("{from} → {target}"),
        None => target.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub reports_dir: PathBuf,
    /// The version the run ends on (and the only one without an upgrade).
    pub istio_version: String,
    /// What the user asked for before resolution (`1.31`, `latest`, `1.30 → 1.31`), or
    /// `default`; the report shows it beside what was installed.
    pub istio_requested: String,
    /// The version installed first when validating an upgrade.
    pub upgrade_from: Option<String>,
    /// How the upgrade is carried out (in place, or as a canary with revisions).
    pub upgrade_mode: UpgradeMode,
    pub versions: Versions,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub cluster_name: String,
    pub keep_cluster: bool,
    pub keep: bool,
    /// An existing cluster run without `--istio-version` (and without an upgrade): the
    /// Istio installed there is judged as found.
    pub istio_as_found: bool,
    pub app_namespace: String,
    pub ingress_namespace: String,
    pub image: String,
    pub ingress_address: Option<HostPort>,
    pub ingress_tls_address: Option<HostPort>,
    pub prometheus_url: Option<String>,
    /// The scrape interval set in the Prometheus addon the harness installs.
    pub scrape_interval: std::time::Duration,
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `HOST:PORT` by its syntax; the name is resolved when the harness connects.
fn parse_address(flag: &str, text: &Option<String>) -> Result<Option<HostPort>, HarnessError> {
    text.as_deref()
        .map(|t| {
            HostPort::parse(t)
                .map_err(|e| HarnessError::usage(format!("{flag} `{t}` is not HOST:PORT: {e}")))
        })
        .transpose()
}

impl RunConfig {
    pub fn from_cli(cli: &Cli) -> Result<RunConfig, HarnessError> {
        let versions = Versions::embedded();
        let istio_version = cli
            .istio_version
            .clone()
            .unwrap_or_else(|| versions.istio.default.clone());
        let target = parse_istio_version(&istio_version).map_err(HarnessError::usage)?;
        // resolve_run checked this already for the command line; a config built
        // another way (embedding, tests) gets the same refusal.
        if let Some(e) = versions.too_old("--istio-version", &istio_version, target.minor()) {
            return Err(e);
        }
        if let Some(from) = &cli.upgrade_from {
            let start = parse_istio_version(from)
                .map_err(|e| HarnessError::usage(format!("--upgrade-from: {e}")))?;
            if let Some(e) = versions.too_old("--upgrade-from", from, start.minor()) {
                return Err(e);
            }
            if start >= target {
                return Err(HarnessError::usage(format!(
                    "--upgrade-from {from} must be older than --istio-version {istio_version}"
                )));
            }
        }
        if cli.upgrade_mode == UpgradeMode::Canary && cli.upgrade_from.is_none() {
            return Err(HarnessError::usage(
                "--upgrade-mode canary needs --upgrade-from VERSION (the version the canary upgrade starts from)",
            ));
        }
        for (flag, ns) in [
            ("--app-namespace", &cli.app_namespace),
            ("--ingress-namespace", &cli.ingress_namespace),
        ] {
            if !is_dns_label(ns) {
                return Err(HarnessError::usage(format!(
                    "{flag} `{ns}` is not a valid namespace name (lowercase letters, digits and '-', at most 63)"
                )));
            }
        }
        if !is_dns_label(&cli.cluster_name) {
            return Err(HarnessError::usage(format!(
                "--cluster-name `{}` is not a valid kind cluster name (lowercase letters, digits and '-')",
                cli.cluster_name
            )));
        }
        let image = cli
            .image
            .clone()
            .unwrap_or_else(|| versions.app.image.clone());
        if let Err(e) = crate::reference::check_image(&image) {
            return Err(HarnessError::usage(format!(
                "--image `{image}` is not an image reference: {e}"
            )));
        }
        if let Some(url) = &cli.prometheus_url
            && let Err(e) = crate::reference::check_prometheus_url(url)
        {
            return Err(HarnessError::usage(format!(
                "--prometheus-url `{url}`: {e}"
            )));
        }
        let scrape_interval = crate::suite::duration::HumanDuration::parse(&cli.scrape_interval)
            .map_err(|e| HarnessError::usage(format!("--scrape-interval: {e}")))?
            .0;
        if scrape_interval < std::time::Duration::from_secs(1)
            || scrape_interval > std::time::Duration::from_secs(60)
        {
            return Err(HarnessError::usage(format!(
                "--scrape-interval {} is out of range (1s to 1m)",
                cli.scrape_interval
            )));
        }
        let istio_requested = requested(cli.upgrade_from.as_deref(), cli.istio_version.as_deref());
        Ok(RunConfig {
            scrape_interval,
            reports_dir: cli.reports_dir.clone(),
            istio_version,
            istio_requested,
            upgrade_from: cli.upgrade_from.clone(),
            upgrade_mode: cli.upgrade_mode,
            versions,
            kubeconfig: cli.kubeconfig.clone(),
            context: cli.context.clone(),
            cluster_name: cli.cluster_name.clone(),
            keep_cluster: cli.keep_cluster,
            keep: cli.keep,
            istio_as_found: false,
            app_namespace: cli.app_namespace.clone(),
            ingress_namespace: cli.ingress_namespace.clone(),
            image,
            ingress_address: parse_address("--ingress-address", &cli.ingress_address)?,
            ingress_tls_address: parse_address("--ingress-tls-address", &cli.ingress_tls_address)?,
            prometheus_url: cli.prometheus_url.clone(),
        })
    }

    /// The template variables known before any step runs (PKI ones come with `issue-pki`).
    pub fn variables(&self) -> Variables {
        let mut v = Variables::default();
        v.set("app_namespace", self.app_namespace.clone());
        v.set("ingress_namespace", self.ingress_namespace.clone());
        v.set("app_image", self.image.clone());
        v.set("host", HOST);
        // The exercise's; setup replaces it where only a revision answers
        // (`cluster/injection_label.rs`).
        let (key, value) = crate::cluster::injection_label::ISTIO_INJECTION;
        v.set("injection_label_key", key);
        v.set("injection_label_value", value);
        v
    }

    /// The version setup installs: the upgrade's start, else the requested one.
    pub fn install_version(&self) -> &str {
        self.upgrade_from.as_deref().unwrap_or(&self.istio_version)
    }

    pub fn plan_dir(&self) -> PathBuf {
        self.reports_dir.join("plan")
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.reports_dir.join("pki")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_file_is_valid_and_consistent() {
        let v = Versions::embedded();
        let default = crate::version::IstioVersion::parse(&v.istio.default)
            .expect("istio.default is an exact version");
        assert!(!default.is_prerelease(), "the default is a release");
        let minors = v.supported_minors();
        assert_eq!(
            minors.len(),
            v.istio.supported.len(),
            "every istio.supported entry is a minor such as 1.31: {:?}",
            v.istio.supported
        );
        assert!(minors.windows(2).all(|w| w[0] < w[1]), "oldest first");
        assert!(
            minors.contains(&default.minor()),
            "the default's minor must be supported"
        );
        assert!(minors.len() >= 2, "nightly needs a matrix of at least two");
        for minor in &minors {
            assert!(
                (minor.major, minor.minor) >= v.minimum_istio(),
                "{minor}: native sidecars need Istio >= {}",
                v.istio.minimum
            );
        }
        assert_eq!(v.minimum_istio(), (1, 28));
        assert!(v.istio.releases_url.starts_with("https://"));
        assert!(
            v.kind.node_image.contains("@sha256:"),
            "the kind node image is pinned by digest"
        );
        // kindest/node:v1.36.4@sha256:… runs Kubernetes 1.36: at least the minimum.
        let node_minor = v
            .kind
            .node_image
            .split_once(":v")
            .and_then(|(_, rest)| {
                let mut parts = rest.split(['.', '@']);
                Some((
                    parts.next()?.parse::<u32>().ok()?,
                    parts.next()?.parse::<u32>().ok()?,
                ))
            })
            .expect("the node image's tag names its Kubernetes version");
        let (major, minor) = v
            .kubernetes
            .minimum
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .expect("kubernetes.minimum is a minor such as 1.33");
        assert!(
            node_minor >= (major, minor),
            "the node image's Kubernetes {node_minor:?} is older than kubernetes.minimum {}",
            v.kubernetes.minimum
        );
        assert!(
            v.app
                .image
                .starts_with("ghcr.io/michaelvl/istio-katas@sha256:9ec280c27e4cfc88"),
            "the exercise's image by digest"
        );
        assert_eq!(v.istio.hub, "docker.io/istio");
    }

    #[test]
    fn downloads_are_named_for_each_of_the_four_platforms() {
        let v = Versions::embedded();
        let base = "https://github.com/istio/istio/releases/download/1.31.2";
        let kind = format!(
            "https://github.com/kubernetes-sigs/kind/releases/download/{}",
            v.kind.version
        );
        let expected = [
            (
                "linux",
                "x86_64",
                "istio-1.31.2-linux-amd64.tar.gz",
                "kind-linux-amd64",
            ),
            (
                "linux",
                "aarch64",
                "istio-1.31.2-linux-arm64.tar.gz",
                "kind-linux-arm64",
            ),
            (
                "macos",
                "x86_64",
                "istio-1.31.2-osx-amd64.tar.gz",
                "kind-darwin-amd64",
            ),
            (
                "macos",
                "aarch64",
                "istio-1.31.2-osx-arm64.tar.gz",
                "kind-darwin-arm64",
            ),
        ];
        for (os, arch, istio, kind_name) in expected {
            let platform = Platform::from_rust(os, arch).unwrap();
            let url = v.istio_archive_url_for("1.31.2", platform).unwrap();
            assert_eq!(url, format!("{base}/{istio}"), "{os}/{arch}");
            assert_eq!(file_name(&url), istio);
            assert_eq!(v.kind_url_for(platform), format!("{kind}/{kind_name}"));
        }
        for platform in Platform::all() {
            assert!(
                v.istio_archive_url_for("1.31.2", platform).is_ok(),
                "istio.platforms lacks {platform}"
            );
        }
        let mut missing = v.clone();
        missing.istio.platforms.remove("darwin-arm64");
        let err = missing
            .istio_archive_url_for("1.31.2", Platform::from_rust("macos", "aarch64").unwrap())
            .unwrap_err();
        assert!(err.contains("darwin-arm64"), "{err}");
    }

    #[test]
    fn a_mirror_replaces_the_archive_url_template() {
        let file = "https://github.com/istio/istio/releases/download/{version}/istio-{version}-{platform}.tar.gz";
        assert_eq!(download_template(None, file).unwrap(), file);
        assert_eq!(download_template(Some("  "), file).unwrap(), file);
        assert_eq!(
            download_template(
                Some("http://127.0.0.1:8080/istio/{version}/istio-{version}-{platform}.tar.gz"),
                file
            )
            .unwrap(),
            "http://127.0.0.1:8080/istio/{version}/istio-{version}-{platform}.tar.gz"
        );
        let err = download_template(Some("http://mirror/istio.tar.gz"), file).unwrap_err();
        assert!(
            err.starts_with("HARNESS_ISTIO_DOWNLOAD_URL `http://mirror/istio.tar.gz` has no {version} placeholder"),
            "{err}"
        );
    }

    #[test]
    fn the_requested_versions_read_as_given() {
        assert_eq!(requested(None, None), "default");
        assert_eq!(requested(None, Some("1.31")), "1.31");
        assert_eq!(requested(Some("1.30"), Some("latest")), "1.30 → latest");
    }

    #[test]
    fn malformed_istio_versions_are_refused() {
        for bad in [
            "", "1.31", "1.31.x", "v1.31.2", "1..2", "latest", "1.31.2.4",
        ] {
            assert!(parse_istio_version(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(parse_istio_version("1.31.2").unwrap().to_string(), "1.31.2");
        assert_eq!(
            parse_istio_version("1.32.0-beta.1").unwrap().to_string(),
            "1.32.0-beta.1"
        );
        // Ordered as releases are: a pre-release comes before its release.
        assert!(
            parse_istio_version("1.31.0-rc.0").unwrap() < parse_istio_version("1.31.0").unwrap()
        );
    }
}
