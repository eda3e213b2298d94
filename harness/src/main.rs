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
    let cli = match harness::cli::Cli::parse_from_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                harness::exit::USAGE
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    ExitCode::from(harness::app::run(cli))
}
