//! The platform the downloads are for, in the names kind and Istio publish them under:
//! `linux`/`darwin` and `amd64`/`arm64`. Istio names its macOS archives differently
//! (`osx-…`); that mapping lives in `clusters/versions.yaml` (`istio.platforms`).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform {
    /// `linux` or `darwin`.
    pub os: &'static str,
    /// `amd64` or `arm64`.
    pub arch: &'static str,
}

impl Platform {
    /// From Rust's names (`std::env::consts::{OS, ARCH}`); anything but Linux and macOS
    /// on x86_64 and aarch64 is refused, naming it.
    pub fn from_rust(os: &str, arch: &str) -> Result<Platform, String> {
        let known_os = match os {
            "linux" => Some("linux"),
            "macos" => Some("darwin"),
            _ => None,
        };
        let known_arch = match arch {
            "x86_64" => Some("amd64"),
            "aarch64" => Some("arm64"),
            _ => None,
        };
        match (known_os, known_arch) {
            (Some(os), Some(arch)) => Ok(Platform { os, arch }),
            _ => Err(format!(
                "the platform {os}/{arch} is not supported: kind and the Istio release archive are published for Linux and macOS on x86_64 and aarch64 only"
            )),
        }
    }

    /// The platform this harness runs on.
    pub fn current() -> Result<Platform, String> {
        Platform::from_rust(std::env::consts::OS, std::env::consts::ARCH)
    }

    /// Every platform the downloads exist for.
    pub fn all() -> [Platform; 4] {
        [
            Platform {
                os: "linux",
                arch: "amd64",
            },
            Platform {
                os: "linux",
                arch: "arm64",
            },
            Platform {
                os: "darwin",
                arch: "amd64",
            },
            Platform {
                os: "darwin",
                arch: "arm64",
            },
        ]
    }
}

/// `linux-amd64`: the key of `istio.platforms` in `clusters/versions.yaml`.
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.os, self.arch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_names_map_to_download_names_and_others_are_refused() {
        assert_eq!(
            Platform::from_rust("linux", "x86_64").unwrap().to_string(),
            "linux-amd64"
        );
        assert_eq!(
            Platform::from_rust("linux", "aarch64").unwrap().to_string(),
            "linux-arm64"
        );
        assert_eq!(
            Platform::from_rust("macos", "x86_64").unwrap().to_string(),
            "darwin-amd64"
        );
        assert_eq!(
            Platform::from_rust("macos", "aarch64").unwrap().to_string(),
            "darwin-arm64"
        );
        for (os, arch) in [
            ("windows", "x86_64"),
            ("linux", "riscv64"),
            ("freebsd", "aarch64"),
        ] {
            let err = Platform::from_rust(os, arch).unwrap_err();
            assert!(
                err.contains(&format!("{os}/{arch} is not supported")),
                "{err}"
            );
            assert_eq!(err.lines().count(), 1);
        }
        assert!(
            Platform::current().is_ok(),
            "the tests run on a supported platform"
        );
    }
}
