//! Command line: the harness's own options first, grouped (selection, cluster, reaching
//! the cluster, reports), then the libtest-compatible ones under their own heading.
//! The harness selects steps itself (see `runner::schedule`) and hands libtest-mimic
//! only its output options.

use crate::runner::schedule::Selection;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;

/// The image of the exercise, pinned by digest as every manifest of its `deploy/mtls/`
/// pins it; `--image` overrides it (e.g. a mirror). Where it comes from:
/// `clusters/versions.yaml` (`app.image`).
pub fn default_image() -> String {
    crate::config::Versions::embedded().app.image
}

const ABOUT: &str = "Istio mutual-TLS conformance harness: proves every documented outcome of the exercise on a kind cluster";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Pretty,
    Terse,
    Json,
}

/// How `--upgrade-from` upgrades: in place (`istioctl upgrade`), or as a canary (the new
/// control plane installed as a revision beside the old one, the app moved over in
/// batches, the old revision removed; see `runner::canary`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum UpgradeMode {
    #[default]
    InPlace,
    Canary,
}

impl std::fmt::Display for UpgradeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpgradeMode::InPlace => "in-place",
            UpgradeMode::Canary => "canary",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Parser)]
#[command(
    name = "harness",
    version,
    about = ABOUT,
    long_about = ABOUT,
    disable_version_flag = false,
    help_template = "{name} {version}\n{about}\n\nUsage: {usage}\n\n{all-args}{after-help}",
    after_help = "\nSteps are named <suite>::<NN>-<step> (<suite>@<version>::… in an upgrade run, where \
                  a FILTER without the version selects the step in both passes). A selected step has the \
                  actions of the earlier steps of its suite carried out first.\n\
                  Exit codes: 0 all passed, 1 an outcome failed, 2 bad usage or input, \
                  3 environment or setup error, 129 hung up (SIGHUP), 130 interrupted (Ctrl-C), \
                  143 terminated (SIGTERM).\n\n\
                  Environment:\n  \
                  KUBECONFIG: the kubeconfig when --kubeconfig is not given (else ~/.kube/config)\n  \
                  DOCKER_HOST: the Docker engine kind uses (unix:// only; default /var/run/docker.sock)\n  \
                  PATH: where istioctl and kind of the pinned versions are looked for first\n  \
                  XDG_CACHE_HOME, HOME: the cache of verified downloads ($XDG_CACHE_HOME/istio-mtls-harness, \
                  else $HOME/.cache/istio-mtls-harness; never a shared folder)\n  \
                  HARNESS_ISTIO_RELEASES_URL: the Istio release list minors and `latest` resolve against \
                  (GitHub's releases JSON; istio.releases_url in clusters/versions.yaml)\n  \
                  GITHUB_TOKEN: sent to the release list when set\n  \
                  HARNESS_ISTIO_DOWNLOAD_URL: the Istio release archive URL: a template with {version} and \
                  {platform}, e.g. a mirror for air-gapped use (the .sha256 beside it is still required)\n  \
                  GITHUB_STEP_SUMMARY: a file the Markdown summary is appended to (GitHub Actions)\n  \
                  RUST_LOG: debug logs of the harness's plumbing, e.g. harness=debug"
)]
pub struct Cli {
    // ---- selection -------------------------------------------------------------
    /// Run only the steps whose name contains a FILTER (several: any of them; see
    /// --exact).
    #[arg(value_name = "FILTER", help_heading = "Selection")]
    pub filters: Vec<String>,

    /// Skip the steps whose name contains FILTER (repeatable).
    #[arg(long, value_name = "FILTER", help_heading = "Selection")]
    pub skip: Vec<String>,

    /// Match FILTER and --skip against whole step names.
    #[arg(long, help_heading = "Selection")]
    pub exact: bool,

    /// Run only this suite (repeatable); default: every suite, in order.
    #[arg(long = "suite", value_name = "NAME", help_heading = "Selection")]
    pub suites: Vec<String>,

    /// List the trials a run would judge, in order, and exit (what runs only as their
    /// setup goes to standard error).
    #[arg(long, help_heading = "Selection")]
    pub list: bool,

    /// Load suites from this folder instead of the copy built into the binary.
    #[arg(long, value_name = "DIR", help_heading = "Selection")]
    pub suites_dir: Option<PathBuf>,

    // ---- cluster ---------------------------------------------------------------
    /// Istio version to install: exact (1.31.2), a minor (1.31: its newest patch), or
    /// `latest`; default from clusters/versions.yaml.
    #[arg(long, value_name = "VERSION", help_heading = "Cluster")]
    pub istio_version: Option<String>,

    /// Upgrade validation: install Istio at this version (same forms as
    /// --istio-version), run the suites, upgrade to --istio-version, run them again.
    #[arg(long, value_name = "VERSION", help_heading = "Cluster")]
    pub upgrade_from: Option<String>,

    /// How --upgrade-from upgrades: in-place (istioctl upgrade, trial
    /// upgrade::A-to-B) or canary (the new version as a revision beside the old one,
    /// the app moved over in batches, the old revision removed; trials
    /// upgrade::canary-mixed and upgrade::canary-complete).
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        default_value = "in-place",
        help_heading = "Cluster"
    )]
    pub upgrade_mode: UpgradeMode,

    /// Print the nightly CI matrix as one JSON line and exit: the newest patch of each
    /// supported minor, the newest release if its minor is not listed yet, and the
    /// upgrade from the previous minor to the newest listed one.
    #[arg(long, help_heading = "Cluster")]
    pub print_matrix: bool,

    /// Use the existing cluster of this kubeconfig instead of creating a kind cluster.
    #[arg(long, value_name = "FILE", help_heading = "Cluster")]
    pub kubeconfig: Option<PathBuf>,

    /// Use this context of the kubeconfig (--kubeconfig, else KUBECONFIG or
    /// ~/.kube/config) instead of creating a kind cluster.
    #[arg(long, value_name = "NAME", help_heading = "Cluster")]
    pub context: Option<String>,

    /// Name of the kind cluster to create or reuse.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "istio-mtls",
        help_heading = "Cluster"
    )]
    pub cluster_name: String,

    /// Keep the kind cluster the harness created (a cluster it did not create is never
    /// deleted).
    #[arg(long, help_heading = "Cluster")]
    pub keep_cluster: bool,

    /// Keep what the suites created (app namespace, gateways, secrets) at the end.
    #[arg(long, help_heading = "Cluster")]
    pub keep: bool,

    /// Namespace of the app.
    #[arg(
        long,
        value_name = "NS",
        default_value = "sentences",
        help_heading = "Cluster"
    )]
    pub app_namespace: String,

    /// Namespace of the ingress gateway pods (where the TLS secret and Gateway go).
    #[arg(
        long,
        value_name = "NS",
        default_value = "istio-system",
        help_heading = "Cluster"
    )]
    pub ingress_namespace: String,

    /// Image of the sentences app [default: the exercise's, by digest].
    #[arg(long, value_name = "IMAGE", help_heading = "Cluster")]
    pub image: Option<String>,

    // ---- reaching the cluster -----------------------------------------------------
    /// Reach the ingress gateway's HTTP port here instead of port-forwarding.
    #[arg(long, value_name = "HOST:PORT", help_heading = "Reaching the cluster")]
    pub ingress_address: Option<String>,

    /// Reach the ingress gateway's HTTPS port here instead of port-forwarding.
    #[arg(long, value_name = "HOST:PORT", help_heading = "Reaching the cluster")]
    pub ingress_tls_address: Option<String>,

    /// Query this Prometheus instead of port-forwarding to the addon (its own scrape
    /// interval is read back and used).
    #[arg(long, value_name = "URL", help_heading = "Reaching the cluster")]
    pub prometheus_url: Option<String>,

    /// Scrape interval set in the Prometheus addon the harness installs (Istio's
    /// default is 15 s); each telemetry phase waits about three of them (one before its traffic, two after).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        help_heading = "Reaching the cluster"
    )]
    pub scrape_interval: String,

    // ---- reports -----------------------------------------------------------------
    /// Where junit.xml, summary.md, the plan, the PKI and diagnostics are written.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "reports",
        help_heading = "Reports"
    )]
    pub reports_dir: PathBuf,

    /// Print the ordered plan and write every rendered manifest; touch nothing.
    #[arg(long, help_heading = "Reports")]
    pub dry_run: bool,

    // ---- libtest compatibility ------------------------------------------------
    /// Write the per-step result lines to this file instead of standard output.
    #[arg(long, value_name = "PATH", help_heading = "Output (as libtest)")]
    pub logfile: Option<PathBuf>,

    /// Result lines: pretty (a line per step), terse (a character per step) or json.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        help_heading = "Output (as libtest)"
    )]
    pub format: Option<Format>,

    /// Same as --format terse.
    #[arg(
        short,
        long,
        conflicts_with = "format",
        help_heading = "Output (as libtest)"
    )]
    pub quiet: bool,

    /// Colour the result lines: auto (when standard output is a terminal), always, never.
    #[arg(
        long,
        value_enum,
        value_name = "WHEN",
        help_heading = "Output (as libtest)"
    )]
    pub color: Option<Color>,

    /// Accepted for compatibility with libtest; steps always run one at a time, in order.
    #[arg(
        long,
        value_name = "N",
        help_heading = "Accepted for compatibility, no effect"
    )]
    pub test_threads: Option<usize>,

    /// Accepted for compatibility with libtest; no step is ignored up front.
    #[arg(long, help_heading = "Accepted for compatibility, no effect")]
    pub ignored: bool,

    /// Accepted for compatibility with libtest; no step is ignored up front.
    #[arg(long, help_heading = "Accepted for compatibility, no effect")]
    pub include_ignored: bool,

    /// Accepted for compatibility with libtest.
    #[arg(long, help_heading = "Accepted for compatibility, no effect")]
    pub test: bool,

    /// Accepted for compatibility with libtest; the result lines always show.
    #[arg(long, help_heading = "Accepted for compatibility, no effect")]
    pub nocapture: bool,

    /// Accepted for compatibility with libtest; the result lines always show.
    #[arg(long, help_heading = "Accepted for compatibility, no effect")]
    pub show_output: bool,
}

impl Cli {
    pub fn parse_from_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from(args)
    }

    pub fn selection(&self) -> Selection {
        Selection {
            filters: self.filters.clone(),
            skip: self.skip.clone(),
            exact: self.exact,
        }
    }

    /// The libtest-mimic arguments for the output: format, colour, logfile.
    pub fn libtest(&self) -> libtest_mimic::Arguments {
        libtest_mimic::Arguments {
            quiet: self.quiet,
            logfile: self.logfile.as_ref().map(|p| p.display().to_string()),
            format: self.format.map(|f| match f {
                Format::Pretty => libtest_mimic::FormatSetting::Pretty,
                Format::Terse => libtest_mimic::FormatSetting::Terse,
                Format::Json => libtest_mimic::FormatSetting::Json,
            }),
            color: self.color.map(|c| match c {
                Color::Auto => libtest_mimic::ColorSetting::Auto,
                Color::Always => libtest_mimic::ColorSetting::Always,
                Color::Never => libtest_mimic::ColorSetting::Never,
            }),
            test_threads: Some(1),
            ..libtest_mimic::Arguments::default()
        }
    }
}
