//! Downloads verified against the checksum published beside them, into the cache
//! folder. A mismatch refuses to run, naming the file and both digests.

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// `$XDG_CACHE_HOME/istio-mtls-harness`, else `~/.cache/istio-mtls-harness`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("istio-mtls-harness")
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
    let record = PathBuf::from(format!("{}.sha256", dest.display()));
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
}
