//! The Istio release list (GitHub's releases API, or a mirror serving the same JSON):
//! read page by page with bounded requests, kept in the download cache, and read back
//! from there only when the list cannot be reached, saying so.

use crate::version::{IstioVersion, Minor};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Replaces `istio.releases_url` of `clusters/versions.yaml` (a mirror, or a test's
/// loopback server).
pub const URL_ENV: &str = "HARNESS_ISTIO_RELEASES_URL";
/// A GitHub token, sent as `Authorization: Bearer` to the release list's own host.
pub const TOKEN_ENV: &str = "GITHUB_TOKEN";

/// One request: connecting, and the whole exchange.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Every page together.
const LIST_DEADLINE: Duration = Duration::from_secs(60);
/// GitHub's largest page.
const PER_PAGE: usize = 100;
/// Far more than the releases since the oldest supported minor fill.
const MAX_PAGES: usize = 30;

/// A release as the GitHub API describes it (the fields the harness reads).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub tag_name: String,
    #[serde(default)]
    pub prerelease: bool,
    #[serde(default)]
    pub draft: bool,
}

impl Release {
    /// The version of a published release (drafts are not releases); pre-releases are
    /// included, marked by their tag or their flag.
    pub fn version(&self) -> Option<IstioVersion> {
        if self.draft {
            return None;
        }
        IstioVersion::parse(&self.tag_name)
    }

    /// A published, final release: not a draft, not flagged or tagged as a pre-release.
    pub fn stable_version(&self) -> Option<IstioVersion> {
        self.version()
            .filter(|v| !self.prerelease && !v.is_prerelease())
    }
}

/// Where the list comes from.
#[derive(Clone, Debug)]
pub struct ReleaseSource {
    pub url: String,
    /// Never printed.
    pub token: Option<String>,
    /// Where the last list read is kept; `None` without a cache folder (no `HOME`).
    pub cache_dir: Option<PathBuf>,
}

impl ReleaseSource {
    /// `HARNESS_ISTIO_RELEASES_URL` or `istio.releases_url`, `GITHUB_TOKEN`, and the
    /// download cache.
    pub fn from_env(releases_url: &str) -> ReleaseSource {
        let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        ReleaseSource {
            url: non_empty(URL_ENV).unwrap_or_else(|| releases_url.to_string()),
            token: non_empty(TOKEN_ENV),
            cache_dir: super::download::cache_dir().ok(),
        }
    }

    /// The cached copy of this URL's list (one file per URL, so a mirror's list never
    /// stands in for another's).
    pub fn cache_file(&self) -> Option<PathBuf> {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.url.as_bytes());
        let short: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        self.cache_dir
            .as_ref()
            .map(|d| d.join(format!("istio-releases-{short}.json")))
    }
}

/// The list and, when it was read from the cache, the line that says so.
#[derive(Clone, Debug)]
pub struct ReleaseList {
    pub releases: Vec<Release>,
    pub from_cache: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    url: String,
    releases: Vec<Release>,
}

/// The release list, read until a page holds no release of `floor` or newer (the
/// list is newest first; older minors are of no use to the harness), or to its end.
/// When the list cannot be read, the cached copy of an earlier read stands in, with
/// a line saying so; without one, the error says what failed.
pub async fn fetch(source: &ReleaseSource, floor: Minor) -> Result<ReleaseList, String> {
    let live = match tokio::time::timeout(LIST_DEADLINE, read_pages(source, floor)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no complete answer within {} s",
            LIST_DEADLINE.as_secs()
        )),
    };
    match live {
        Ok(releases) => {
            if let Err(e) = write_cache(source, &releases) {
                eprintln!("warning: {e}");
            }
            Ok(ReleaseList {
                releases,
                from_cache: None,
            })
        }
        Err(live_error) => {
            let why = format!(
                "cannot read the Istio release list {}: {live_error}",
                source.url
            );
            match read_cache(source) {
                Some((releases, age)) => Ok(ReleaseList {
                    releases,
                    from_cache: Some(format!(
                        "{why}; using the copy cached {} ago ({})",
                        describe_age(age),
                        source
                            .cache_file()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    )),
                }),
                None => Err(format!("{why}, and no copy of it is cached")),
            }
        }
    }
}

/// [`fetch`] for callers outside an async runtime (the command line, before the run's
/// runtime exists).
pub fn fetch_blocking(source: &ReleaseSource, floor: Minor) -> Result<ReleaseList, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(fetch(source, floor))
}

fn client() -> Result<reqwest::Client, String> {
    crate::ensure_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("istio-mtls-harness/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// `url` with `per_page` and `page` added to its query.
pub fn page_url(url: &str, page: usize) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}per_page={PER_PAGE}&page={page}")
}

/// The `rel="next"` target of a `Link` header (RFC 8288), if there is one.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

async fn read_pages(source: &ReleaseSource, floor: Minor) -> Result<Vec<Release>, String> {
    let client = client()?;
    let host = reqwest::Url::parse(&source.url)
        .map_err(|e| format!("`{}` is not a URL ({e})", source.url))?
        .host_str()
        .map(str::to_string);
    let mut releases = Vec::new();
    let mut url = page_url(&source.url, 1);
    for page in 1..=MAX_PAGES {
        let parsed =
            reqwest::Url::parse(&url).map_err(|e| format!("`{url}` is not a URL ({e})"))?;
        let mut request = client
            .get(parsed.clone())
            .header(reqwest::header::ACCEPT, "application/vnd.github+json");
        // The token is for the configured host only, never for one a Link points to.
        if let Some(token) = &source.token
            && parsed.host_str().map(str::to_string) == host
        {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(error_text)?;
        let status = response.status();
        if !status.is_success() {
            return Err(describe_status(status, response.headers()));
        }
        let link = response
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("page {page} broke off: {}", error_text(e)))?;
        let items: Vec<Release> = serde_json::from_slice(&body)
            .map_err(|e| format!("page {page} is not a list of releases ({e})"))?;
        if items.is_empty() {
            return Ok(releases);
        }
        let recent = items
            .iter()
            .filter_map(Release::version)
            .any(|v| v.minor() >= floor);
        releases.extend(items);
        if !recent {
            return Ok(releases);
        }
        url = match link {
            // With a Link header the server says where the next page is, or that
            // there is none; without one, ask for the next page number until empty.
            Some(link) => match next_link(&link) {
                Some(next) => parsed
                    .join(&next)
                    .map_err(|e| format!("bad next-page link `{next}` ({e})"))?
                    .to_string(),
                None => return Ok(releases),
            },
            None => page_url(&source.url, page + 1),
        };
    }
    Err(format!(
        "more than {MAX_PAGES} pages of releases; the list does not end"
    ))
}

/// The error with its causes, on one line (reqwest's own text omits them).
fn error_text(e: reqwest::Error) -> String {
    crate::exit::one_line(&crate::probe::classify::chain(&e.without_url()))
}

fn describe_status(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap) -> String {
    let rate_limited = headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        == Some("0");
    if rate_limited || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return format!(
            "HTTP {status}: the rate limit is used up (set {TOKEN_ENV} to a GitHub token for a higher one)"
        );
    }
    format!("HTTP {status}")
}

fn write_cache(source: &ReleaseSource, releases: &[Release]) -> Result<(), String> {
    let (Some(dir), Some(path)) = (&source.cache_dir, source.cache_file()) else {
        return Err(
            "no cache folder (XDG_CACHE_HOME or HOME): the Istio release list is not cached".into(),
        );
    };
    let text = serde_json::to_vec(&CacheFile {
        url: source.url.clone(),
        releases: releases.to_vec(),
    })
    .map_err(|e| format!("cannot serialise the release list: {e}"))?;
    std::fs::create_dir_all(dir)
        .and_then(|_| {
            let tmp = path.with_extension("part");
            std::fs::write(&tmp, &text)?;
            std::fs::rename(&tmp, &path)
        })
        .map_err(|e| {
            format!(
                "cannot cache the Istio release list at {} ({e}); the next run without network cannot fall back on it",
                path.display()
            )
        })
}

/// The cached list of this URL and how old it is; `None` when there is none that
/// reads back.
fn read_cache(source: &ReleaseSource) -> Option<(Vec<Release>, Duration)> {
    let path = source.cache_file()?;
    let text = std::fs::read(&path).ok()?;
    let cached: CacheFile = serde_json::from_slice(&text).ok()?;
    if cached.url != source.url || cached.releases.is_empty() {
        return None;
    }
    let age = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    Some((cached.releases, age))
}

fn describe_age(age: Duration) -> String {
    let minutes = age.as_secs() / 60;
    match minutes {
        0 => "less than a minute".into(),
        1..120 => format!("{minutes} min"),
        120..2880 => format!("{} h", minutes / 60),
        _ => format!("{} days", minutes / 1440),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let header = r#"<https://api.github.com/repositories/1/releases?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/releases?per_page=100&page=7>; rel="last""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.github.com/repositories/1/releases?per_page=100&page=2")
        );
        let last =
            r#"<https://x/releases?page=6>; rel="prev", <https://x/releases?page=1>; rel="first""#;
        assert_eq!(next_link(last), None);
        assert_eq!(
            next_link("</r?page=3>;rel=next").as_deref(),
            Some("/r?page=3")
        );
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn page_urls_keep_an_existing_query() {
        assert_eq!(
            page_url("https://api.github.com/repos/istio/istio/releases", 2),
            "https://api.github.com/repos/istio/istio/releases?per_page=100&page=2"
        );
        assert_eq!(
            page_url("http://mirror/releases?token=x", 1),
            "http://mirror/releases?token=x&per_page=100&page=1"
        );
    }

    #[test]
    fn drafts_never_count_and_pre_releases_are_not_stable() {
        let r = |tag: &str, prerelease: bool, draft: bool| Release {
            tag_name: tag.into(),
            prerelease,
            draft,
        };
        assert!(r("1.31.2", false, false).stable_version().is_some());
        assert!(r("1.31.3", false, true).version().is_none());
        assert!(r("1.32.0", true, false).stable_version().is_none());
        assert!(r("1.32.0", true, false).version().is_some());
        assert!(r("1.32.0-rc.1", false, false).stable_version().is_none());
        assert!(r("not-a-version", false, false).version().is_none());
    }

    #[test]
    fn ages_read_in_units_that_fit() {
        assert_eq!(describe_age(Duration::from_secs(30)), "less than a minute");
        assert_eq!(describe_age(Duration::from_secs(600)), "10 min");
        assert_eq!(describe_age(Duration::from_secs(5 * 3600)), "5 h");
        assert_eq!(describe_age(Duration::from_secs(3 * 86400)), "3 days");
    }
}
