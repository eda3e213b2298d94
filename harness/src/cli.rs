//! Command line: libtest's own flags (filter, --list, --exact, --skip, ...) plus the
//! harness's.

use clap::Parser;
use std::path::PathBuf;

/// The image of the exercise; `--image` overrides it (e.g. a mirror).
pub const DEFAULT_IMAGE: &str = "ghcr.io/michaelvl/istio-katas@sha256:430d3a01a502c2b13af2619ad41f2247e6e46282e1c100db4f27c917b2867555";

const ABOUT: &str = "Istio mutual-TLS conformance harness: proves every documented outcome of the exercise on a kind cluster";

#[derive(Debug, Parser)]
#[command(
    name = "harness",
    version,
    about = "Istio mutual-TLS conformance harness: proves every documented outcome of the exercise on a kind cluster"
)]
pub struct Cli {
    #[command(flatten)]
    pub libtest: libtest_mimic::Arguments,

    /// Run only this suite (repeatable); default: every suite, in order.
    #[arg(long = "suite", value_name = "NAME")]
    pub suites: Vec<String>,

    /// Load suites from this folder instead of the copy built into the binary.
    #[arg(long, value_name = "DIR")]
    pub suites_dir: Option<PathBuf>,

    /// Where junit.xml, the plan, the PKI and diagnostics are written.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub reports_dir: PathBuf,

    /// Print the ordered plan and write every rendered manifest; touch nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Istio version to install (exact, e.g. 1.31.2); default from clusters/versions.yaml.
    #[arg(long, value_name = "X.Y.Z")]
    pub istio_version: Option<String>,

    /// Upgrade validation: install Istio at this version, run the suites, upgrade in
    /// place to --istio-version, restart the app, check the data plane, run them again.
    #[arg(long, value_name = "X.Y.Z")]
    pub upgrade_from: Option<String>,

    /// Use the existing cluster of this kubeconfig instead of creating a kind cluster
    /// (KUBECONFIG is respected the same way).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Context of the kubeconfig to use.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,

    /// Name of the kind cluster to create or reuse.
    #[arg(long, value_name = "NAME", default_value = "istio-mtls")]
    pub cluster_name: String,

    /// Keep the kind cluster the harness created (a cluster it did not create is never deleted).
    #[arg(long)]
    pub keep_cluster: bool,

    /// Keep what the suites created (app namespace, gateways, secrets) at the end.
    #[arg(long)]
    pub keep: bool,

    /// Namespace of the app.
    #[arg(long, value_name = "NS", default_value = "sentences")]
    pub app_namespace: String,

    /// Namespace of the ingress gateway pods (where the TLS secret and Gateway go).
    #[arg(long, value_name = "NS", default_value = "istio-system")]
    pub ingress_namespace: String,

    /// Image of the sentences app.
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,

    /// Reach the ingress gateway's HTTP port here instead of port-forwarding.
    #[arg(long, value_name = "HOST:PORT")]
    pub ingress_address: Option<String>,

    /// Reach the ingress gateway's HTTPS port here instead of port-forwarding.
    #[arg(long, value_name = "HOST:PORT")]
    pub ingress_tls_address: Option<String>,

    /// Query this Prometheus instead of port-forwarding to the addon.
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
}

impl Cli {
    /// The command with our help and version: libtest's flattened arguments bring their
    /// own template, which would hide the harness's name and disable `--version`.
    pub fn command_with_help() -> clap::Command {
        use clap::CommandFactory;
        Cli::command()
            .disable_version_flag(false)
            .version(env!("CARGO_PKG_VERSION"))
            .about(ABOUT)
            .long_about(ABOUT)
            .help_template("{name} {version}\n{about}\n\nUsage: {usage}\n\n{all-args}{after-help}")
            .after_help(
                "\nExit codes: 0 all passed, 1 an outcome failed, 2 bad usage or input, \
                 3 environment or setup error, 130 interrupted.\n\
                 Steps are named <suite>::<NN>-<step>; FILTER, --exact and --skip select them like libtest.",
            )
    }

    pub fn parse_from_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches;
        let matches = Cli::command_with_help().try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }
}
