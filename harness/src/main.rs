use std::process::ExitCode;

fn main() -> ExitCode {
    // First thing: one process-wide rustls provider (ring). With two providers linked,
    // rustls refuses to pick one and panics on first use.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("error: a rustls crypto provider was already installed; this is a harness bug");
        return ExitCode::from(harness::exit::ENVIRONMENT);
    }
    // Debug logs of the harness's own plumbing, on request: RUST_LOG=harness=debug.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let cli = match harness::cli::Cli::parse_from_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line: what is wrong, and where to look.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments").trim();
            eprintln!("{first} (see --help)");
            return ExitCode::from(harness::exit::USAGE);
        }
        Err(e) => {
            // --help and --version: printed as clap formats them, on standard output.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    ExitCode::from(harness::app::run(cli))
}
