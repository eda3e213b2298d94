//! Downloads verified against the checksum published beside them, into the cache
//! folder. A mismatch refuses to run, naming the file and both digests.

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// `$XDG_CACHE_HOME/istio-mtls-harness`, else `$HOME/.cache/istio-mtls-harness`. Never
/// a shared folder such as `/tmp`: what the harness downloads there it later runs, and
/// another user could have put a binary in its place.
pub fn cache_dir() -> Result<PathBuf, String> {
    cache_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

/// [`cache_dir`] from the values of `XDG_CACHE_HOME` and `HOME`; a relative or empty
/// value counts as unset, as the XDG spec says.
pub fn cache_dir_from(
    xdg_cache_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf, String> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    xdg_cache_home
        .and_then(absolute)
        .or_else(|| home.and_then(absolute).map(|h| h.join(".cache")))
        .map(|base| base.join("istio-mtls-harness"))
        .ok_or_else(|| {
            "no cache folder: set XDG_CACHE_HOME or HOME to an absolute path (the harness \
             keeps the binaries it downloads there and never falls back to a shared folder \
             such as /tmp, where another user could put one in their place)"
                .to_string()
        })
}

/// The cache folder, made if missing (mode 0700), and refused unless it belongs to
/// the user running the harness and nobody else can write to it.
pub fn secure_cache_dir() -> Result<PathBuf, String> {
    private_dir(cache_dir()?)
}

/// `dir`, made if missing (mode 0700), refused unless private to this user.
pub fn private_dir(dir: PathBuf) -> Result<PathBuf, String> {
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the cache folder {}: {e}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("cannot restrict the cache folder {}: {e}", dir.display()))?;
        }
    }
    check_private(&dir)?;
    Ok(dir)
}

/// Refuses a folder another user owns or can write to.
pub fn check_private(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir)
            .map_err(|e| format!("cannot read the cache folder {}: {e}", dir.display()))?;
        let me = rustix::process::getuid().as_raw();
        if meta.uid() != me {
            return Err(format!(
                "the cache folder {} belongs to uid {}, not to uid {me} running the harness: refusing to run binaries from it (set XDG_CACHE_HOME to a folder of your own)",
                dir.display(),
                meta.uid()
            ));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(format!(
                "the cache folder {} is writable by others (mode {mode:o}): refusing to run binaries from it (chmod go-w it, or set XDG_CACHE_HOME to a private folder)",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// The digest recorded beside a verified file (`<file>.sha256`).
pub fn record_of(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.sha256", path.display()))
}

/// Checks `program` against the digest recorded beside it when it was verified: a
/// cached binary changed since (or never verified) is refused, naming both digests.
pub fn verify_recorded(program: &Path) -> Result<(), String> {
    let record = record_of(program);
    let recorded = std::fs::read_to_string(&record).map_err(|e| {
        format!(
            "{} has no verified digest beside it ({}: {e}): refusing to run it",
            program.display(),
            record.display()
        )
    })?;
    let actual = sha256_file(program)?;
    if actual != recorded.trim() {
        return Err(format!(
            "{} changed since it was verified (recorded sha256 {}, now {actual}): refusing to run it; delete {} and {} to fetch it again",
            program.display(),
            recorded.trim(),
            program.display(),
            record.display()
        ));
    }
    Ok(())
}

/// The digest of a published checksum file (`<hex>  <file>` or just `<hex>`).
pub fn parse_checksum(text: &str) -> Result<String, String> {
    let token = text.split_whitespace().next().unwrap_or("");
    if token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(token.to_ascii_lowercase())
    } else {
        Err(format!(
            "not a SHA-256 checksum file (starts with `{}`)",
            token.chars().take(70).collect::<String>()
        ))
    }
}

pub fn sha256_file(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An HTTP client for downloads: verifies servers against the system's roots (rustls,
/// ring provider), bounded connect time.
pub fn http_client() -> Result<reqwest::Client, String> {
    crate::ensure_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(600))
        .user_agent(concat!("istio-mtls-harness/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the download client: {e}"))
}

/// Why a download failed; `not_found` when the host answered 404 for the checksum (no
/// such file there: for an Istio release, possibly a version never released).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub message: String,
    pub not_found: bool,
}

impl From<String> for FetchError {
    fn from(message: String) -> FetchError {
        FetchError {
            message,
            not_found: false,
        }
    }
}

impl From<FetchError> for String {
    fn from(e: FetchError) -> String {
        e.message
    }
}

/// Downloads `url` to `dest` unless a copy verified earlier is there, and checks it
/// against the digest published at `checksum_url`. The verified digest is kept beside
/// the file (`<dest>.sha256`), so a cached copy is reused without the network.
pub async fn fetch_verified(
    client: &reqwest::Client,
    url: &str,
    checksum_url: &str,
    dest: &Path,
) -> Result<PathBuf, FetchError> {
    let record = record_of(dest);
    if dest.exists()
        && let Ok(recorded) = std::fs::read_to_string(&record)
        && sha256_file(dest)? == recorded.trim()
    {
        return Ok(dest.to_path_buf());
    }
    let published = client
        .get(checksum_url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| match e.status() {
            Some(reqwest::StatusCode::NOT_FOUND) => FetchError {
                message: format!("there is no {checksum_url} (404)"),
                not_found: true,
            },
            _ => format!("cannot fetch the checksum {checksum_url}: {e}; a real run needs network access to the release host").into(),
        })?
        .text()
        .await
        .map_err(|e| format!("cannot read the checksum {checksum_url}: {e}"))?;
    let expected = parse_checksum(&published).map_err(|e| format!("{checksum_url}: {e}"))?;

    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the cache folder {}: {e}", dir.display()))?;
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("cannot download {url}: {e}"))?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(response.content_length().unwrap_or(0));
        bar.set_style(
            ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!(
            "downloading {}",
            dest.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        Some(bar)
    } else {
        eprintln!("downloading {url}");
        None
    };
    let tmp = dest.with_extension("part");
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("download of {url} broke off: {e}"))?
    {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    }
    file.flush()
        .await
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    drop(file);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let actual = hex(&hasher.finalize());
    if actual != expected {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "checksum mismatch for {}: published {expected}, downloaded {actual}; refusing to run it",
            dest.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        )
        .into());
    }
    std::fs::rename(&tmp, dest)
        .map_err(|e| format!("cannot move {} into place: {e}", tmp.display()))?;
    std::fs::write(&record, &actual)
        .map_err(|e| format!("cannot write {}: {e}", record.display()))?;
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_files_of_both_formats_parse() {
        let digest = "a".repeat(64);
        assert_eq!(
            parse_checksum(&format!("{digest}  istio-1.31.2-linux-amd64.tar.gz\n")).unwrap(),
            digest
        );
        assert_eq!(parse_checksum(&digest.to_uppercase()).unwrap(), digest);
        assert!(parse_checksum("<html>Not Found</html>").is_err());
    }

    #[test]
    fn without_xdg_cache_home_and_home_there_is_no_cache_and_no_fallback_to_tmp() {
        let e = cache_dir_from(None, None).unwrap_err();
        assert!(
            e.contains("XDG_CACHE_HOME") && e.contains("HOME") && e.contains("/tmp"),
            "{e}"
        );
        // Relative or empty values are as good as unset.
        assert!(cache_dir_from(Some("".into()), Some("relative/home".into())).is_err());
        assert_eq!(
            cache_dir_from(None, Some("/home/u".into())).unwrap(),
            PathBuf::from("/home/u/.cache/istio-mtls-harness")
        );
        assert_eq!(
            cache_dir_from(Some("/c".into()), Some("/home/u".into())).unwrap(),
            PathBuf::from("/c/istio-mtls-harness")
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_cache_folder_others_can_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let made = private_dir(base.path().join("cache")).unwrap();
        let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        for shared in [0o775, 0o757, 0o1777] {
            std::fs::set_permissions(&made, std::fs::Permissions::from_mode(shared)).unwrap();
            let e = private_dir(made.clone()).unwrap_err();
            assert!(
                e.contains("writable by others") && e.contains("chmod"),
                "{e}"
            );
        }
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(private_dir(made).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_cache_folder_of_another_user_is_refused() {
        // `/` belongs to root; run as root, the folder of another uid is needed.
        let me = rustix::process::getuid().as_raw();
        let foreign = if me == 0 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_path_buf();
            rustix::fs::chown(&path, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
            (Some(dir), path)
        } else {
            (None, PathBuf::from("/"))
        };
        let e = check_private(&foreign.1).unwrap_err();
        assert!(
            e.contains("belongs to uid") && e.contains(&format!("uid {me}")),
            "{e}"
        );
    }

    #[test]
    fn a_cached_binary_changed_since_it_was_verified_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("istioctl");
        std::fs::write(&binary, b"#!/bin/sh\necho verified\n").unwrap();
        let e = verify_recorded(&binary).unwrap_err();
        assert!(e.contains("no verified digest"), "{e}");
        std::fs::write(record_of(&binary), sha256_file(&binary).unwrap()).unwrap();
        verify_recorded(&binary).unwrap();
        std::fs::write(&binary, b"#!/bin/sh\necho planted\n").unwrap();
        let e = verify_recorded(&binary).unwrap_err();
        assert!(
            e.contains("changed since it was verified") && e.contains("delete"),
            "{e}"
        );
    }
}
