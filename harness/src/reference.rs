//! Values of the command line that name something elsewhere, checked by their syntax
//! alone while arguments are parsed: `HOST:PORT` (resolved only when connecting, so a
//! name that resolves later, or only from the cluster's network, is accepted), an OCI
//! image reference (the grammar of distribution/reference), and a Prometheus URL.

use std::fmt;
use std::net::SocketAddr;

/// `HOST:PORT`, with HOST a DNS name, an IPv4 address or a bracketed IPv6 address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl HostPort {
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, port) = rest
                .split_once("]:")
                .ok_or("an IPv6 address is written [ADDRESS]:PORT")?;
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("`{host}` is not an IPv6 address"))?;
            (host, port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or("expected HOST:PORT")?;
            if host.contains(':') {
                return Err("an IPv6 address is written [ADDRESS]:PORT".into());
            }
            if !is_dns_name(host) {
                return Err(format!("`{host}` is not a host name or address"));
            }
            (host, port)
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{port}` is not a port (1 to 65535)"))?;
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }

    /// The first address the name resolves to, when the harness connects.
    pub async fn resolve(&self) -> Result<SocketAddr, String> {
        let mut addresses = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {self}: {e}"))?;
        addresses
            .next()
            .ok_or_else(|| format!("{self} resolves to no address"))
    }
}

fn is_path_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let alnum = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit();
    let mut chars = c.chars().peekable();
    if !chars.peek().copied().is_some_and(alnum) {
        return false;
    }
    let mut separator = String::new();
    for ch in chars {
        if alnum(ch) {
            let ok = separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.chars().all(|s| s == '-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(ch, '.' | '_' | '-') {
            separator.push(ch);
        } else {
            return false;
        }
    }
    separator.is_empty()
}

fn is_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && (is_dns_name(host)
            || host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok()))
}

fn is_digest(d: &str) -> bool {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return false;
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    let length_ok = match algorithm {
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => hex.len() >= 32,
    };
    algorithm_ok
        && length_ok
        && hex
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | '_' | '-'))
        && (!algorithm.starts_with("sha")
            || hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
}

/// Checks an OCI image reference: `[DOMAIN[:PORT]/]PATH[:TAG][@DIGEST]`.
pub fn check_image(reference: &str) -> Result<(), String> {
    let (name_and_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest
        && !is_digest(d)
    {
        return Err(format!(
            "`{d}` is not a digest (such as sha256:<64 hex digits>)"
        ));
    }
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_and_tag[..last_slash + i],
            Some(&name_and_tag[last_slash + i + 1..]),
        ),
        None => (name_and_tag, None),
    };
    if let Some(tag) = tag {
        let mut chars = tag.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok
            || tag.len() > 128
            || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(format!(
                "`{tag}` is not a tag (letters, digits, _ . -, at most 128)"
            ));
        }
    }
    if name.is_empty() || name.len() > 255 {
        return Err("the repository name is empty or longer than 255 characters".into());
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 {
        let first = components[0];
        if first.contains(['.', ':'])
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase())
        {
            if !is_domain(first) {
                return Err(format!("`{first}` is not a registry host"));
            }
            components.remove(0);
        }
    }
    match components.iter().find(|c| !is_path_component(c)) {
        Some(bad) => Err(format!(
            "`{bad}` is not a repository path component (lowercase letters and digits, separated by . _ __ or -)"
        )),
        None => Ok(()),
    }
}

/// Checks a Prometheus base URL: http or https, with a host.
pub fn check_prometheus_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("it must start with http:// or https://".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it names no host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_accepted_without_being_resolved() {
        let hp = HostPort::parse("gateway.does-not-resolve.invalid:443").unwrap();
        assert_eq!(hp.host, "gateway.does-not-resolve.invalid");
        assert_eq!(hp.port, 443);
        assert_eq!(
            HostPort::parse("[::1]:8443").unwrap().to_string(),
            "[::1]:8443"
        );
        assert_eq!(HostPort::parse("10.0.0.7:80").unwrap().port, 80);
        for bad in [
            "gateway",
            "gateway:",
            ":443",
            "gate way:80",
            "host:0",
            "host:70000",
            "::1:443",
            "[zz]:1",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_references_follow_the_oci_grammar() {
        for good in [
            "docker.io/mvlmvl/sentences:v1",
            "sentences",
            "localhost:5000/team/sentences:1.2_rc-3",
            "ghcr.io/org/app:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "[::1]:5000/app",
            "my__app/x-y.z",
        ] {
            assert!(check_image(good).is_ok(), "{good}: {:?}", check_image(good));
        }
        for bad in [
            "Sentences:v1",
            "docker.io/Team/app",
            "app:",
            "app:-tag",
            "app@sha256:abc",
            "docker.io//app",
            "app/",
            "http://docker.io/app",
            "app:v1:v2",
        ] {
            assert!(check_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_prometheus_url_needs_a_scheme_and_a_host() {
        assert!(check_prometheus_url("http://prometheus.monitoring:9090").is_ok());
        assert!(check_prometheus_url("https://10.0.0.1/prom").is_ok());
        for bad in ["http://", "prometheus:9090", "ftp://p:21", "http://:9090"] {
            assert!(check_prometheus_url(bad).is_err(), "{bad}");
        }
    }
}
