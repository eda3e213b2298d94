//! Istio version numbers and what a user may ask for: an exact version (`1.31.2`,
//! also a pre-release such as `1.32.0-rc.1`), a minor (`1.31`: its newest patch), or
//! `latest` (the newest release). Ordering follows the release order: 1.31.10 is
//! newer than 1.31.9, and a pre-release comes before its release.

use std::cmp::Ordering;
use std::fmt;

/// `X.Y`, e.g. `1.31`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Minor {
    pub major: u32,
    pub minor: u32,
}

impl Minor {
    pub fn parse(text: &str) -> Option<Minor> {
        let (major, minor) = text.split_once('.')?;
        Some(Minor {
            major: number(major)?,
            minor: number(minor)?,
        })
    }
}

impl fmt::Display for Minor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// An exact Istio version as Istio tags its releases (no leading `v`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IstioVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// The pre-release suffix without its dash (`rc.1`), if any.
    pub pre: Option<String>,
}

impl IstioVersion {
    pub fn parse(text: &str) -> Option<IstioVersion> {
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) if !pre.is_empty() => (core, Some(pre.to_string())),
            Some(_) => return None,
            None => (text, None),
        };
        let mut parts = core.split('.');
        let version = IstioVersion {
            major: number(parts.next()?)?,
            minor: number(parts.next()?)?,
            patch: number(parts.next()?)?,
            pre,
        };
        parts.next().is_none().then_some(version)
    }

    pub fn minor(&self) -> Minor {
        Minor {
            major: self.major,
            minor: self.minor,
        }
    }

    /// `-alpha`, `-beta`, `-rc` and any other suffix: not a release to resolve to.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some()
    }
}

impl fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        match &self.pre {
            Some(pre) => write!(f, "-{pre}"),
            None => Ok(()),
        }
    }
}

impl Ord for IstioVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => compare_pre(a, b),
            })
    }
}

impl PartialOrd for IstioVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `alpha.2` < `beta.0` < `rc.10`: dot-separated parts, numbers compared as numbers.
fn compare_pre(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// What `--istio-version` / `--upgrade-from` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionRequest {
    Exact(IstioVersion),
    Minor(Minor),
    Latest,
}

impl VersionRequest {
    pub fn parse(text: &str) -> Result<VersionRequest, String> {
        if text == "latest" {
            return Ok(VersionRequest::Latest);
        }
        if let Some(version) = IstioVersion::parse(text) {
            return Ok(VersionRequest::Exact(version));
        }
        if let Some(minor) = Minor::parse(text) {
            return Ok(VersionRequest::Minor(minor));
        }
        Err(format!(
            "`{text}` is not an Istio version: expected an exact version (1.31.2), a minor (1.31: its newest patch) or `latest`"
        ))
    }

    /// Whether resolving it needs the release list (an exact version does not).
    pub fn needs_release_list(&self) -> bool {
        !matches!(self, VersionRequest::Exact(_))
    }

    /// The minor the request is bound to, if any (`latest` is not).
    pub fn minor(&self) -> Option<Minor> {
        match self {
            VersionRequest::Exact(v) => Some(v.minor()),
            VersionRequest::Minor(m) => Some(*m),
            VersionRequest::Latest => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> IstioVersion {
        IstioVersion::parse(text).unwrap()
    }

    #[test]
    fn requests_of_every_form_parse_and_the_rest_is_refused() {
        assert_eq!(
            VersionRequest::parse("1.31.2").unwrap(),
            VersionRequest::Exact(v("1.31.2"))
        );
        assert_eq!(
            VersionRequest::parse("1.32.0-rc.1").unwrap(),
            VersionRequest::Exact(v("1.32.0-rc.1"))
        );
        assert_eq!(
            VersionRequest::parse("1.31").unwrap(),
            VersionRequest::Minor(Minor {
                major: 1,
                minor: 31
            })
        );
        assert_eq!(
            VersionRequest::parse("latest").unwrap(),
            VersionRequest::Latest
        );
        for bad in [
            "", "1", "1.", "1.31.", "1.31.x", "v1.31.2", "v1.31", "1..2", "1.31.2.4", "Latest",
            "1.31.2-", "-1.31",
        ] {
            let err = VersionRequest::parse(bad).unwrap_err();
            assert!(err.contains("expected an exact version"), "{bad}: {err}");
        }
    }

    #[test]
    fn versions_order_as_releases_do() {
        let mut list: Vec<IstioVersion> = [
            "1.31.10",
            "1.31.9",
            "1.32.0-rc.10",
            "1.32.0-rc.2",
            "1.32.0",
            "1.32.0-alpha.0",
            "1.32.0-beta.1",
            "1.30.5",
        ]
        .iter()
        .map(|t| v(t))
        .collect();
        list.sort();
        let names: Vec<String> = list.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            names,
            [
                "1.30.5",
                "1.31.9",
                "1.31.10",
                "1.32.0-alpha.0",
                "1.32.0-beta.1",
                "1.32.0-rc.2",
                "1.32.0-rc.10",
                "1.32.0"
            ]
        );
        assert!(v("1.32.0-rc.0").is_prerelease());
        assert!(!v("1.32.0").is_prerelease());
        assert_eq!(v("1.31.2").minor().to_string(), "1.31");
    }
}
