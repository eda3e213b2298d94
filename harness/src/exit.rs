//! Exit codes and the one error type that reaches `main`.

use std::fmt;

pub const SUCCESS: u8 = 0;
/// A documented outcome did not hold.
pub const OUTCOME_FAILED: u8 = 1;
/// Bad usage or input: unknown suite, malformed suite file, bad version string.
pub const USAGE: u8 = 2;
/// Environment or setup: no Docker, cluster unreachable, tool missing, checksum mismatch.
pub const ENVIRONMENT: u8 = 3;
/// The terminal or session went away (128 + SIGHUP).
pub const HUNG_UP: u8 = 129;
/// Interrupted with Ctrl-C (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;
/// Terminated with SIGTERM, as CI cancels a job (128 + SIGTERM).
pub const TERMINATED: u8 = 143;

/// An error that ends the run, printed as one line.
#[derive(Debug)]
pub struct HarnessError {
    pub code: u8,
    pub message: String,
}

impl HarnessError {
    pub fn usage(message: impl Into<String>) -> Self {
        HarnessError {
            code: USAGE,
            message: message.into(),
        }
    }

    pub fn environment(message: impl Into<String>) -> Self {
        HarnessError {
            code: ENVIRONMENT,
            message: message.into(),
        }
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HarnessError {}

/// The first line of an error text: some libraries append source snippets, and every
/// error the harness prints is one line.
pub fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}
