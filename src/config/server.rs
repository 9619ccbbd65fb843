//! Settings of the listener, its public URL and where it may send users back to; trusted proxies.

use std::net::SocketAddr;

use url::Url;

use super::reader::Reader;
use super::{invalid, SettingsError};

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    /// Without a trailing slash.
    pub public_url: Url,
    pub allowed_redirect_hosts: Vec<HostRule>,
}

/// One `ALLOWED_REDIRECT_HOSTS` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// Lower-case host, without the leading dot of a suffix rule.
    pub host: String,
    /// Also the host's subdomains (`.example.com`).
    pub suffix: bool,
    /// `None`: the scheme's default port only.
    pub port: Option<u16>,
}

impl HostRule {
    pub fn parse(entry: &str) -> Option<HostRule> {
        let entry = entry.trim().to_ascii_lowercase();
        let (suffix, rest) = match entry.strip_prefix('.') {
            Some(rest) => (true, rest.to_owned()),
            None => (false, entry),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                Some(p.parse::<u16>().ok().filter(|p| *p > 0)?),
            ),
            None => (rest, None),
        };
        is_dns_name(&host).then_some(HostRule { host, suffix, port })
    }

    /// Whether `host` (lower-case) and `port` (the URL's explicit port; `default_port`, the
    /// scheme's, when it has none) are what this rule allows. A host that is not a DNS name
    /// never is: `evil.example..example.test` ends with `.example.test`, yet is no subdomain.
    pub fn allows(&self, host: &str, port: Option<u16>, default_port: Option<u16>) -> bool {
        let host_ok = is_dns_name(host)
            && (host == self.host
                || (self.suffix
                    && host
                        .strip_suffix(self.host.as_str())
                        .is_some_and(|sub| sub.ends_with('.'))));
        let port_ok = match self.port {
            None => port.is_none(),
            Some(p) => port.or(default_port) == Some(p),
        };
        host_ok && port_ok
    }
}

/// A host name as DNS has them (RFC 1123 section 2.1): dot-separated labels of ASCII letters,
/// digits and hyphens, 1 to 63 bytes each, not starting or ending with a hyphen, 253 bytes in
/// all, no empty label (so no leading, trailing or doubled dot). Browsers and the `url` crate
/// accept far more in a host (`&`, `_`, empty labels); a suffix rule must not.
pub fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    pub trusted: Vec<ipnet::IpNet>,
}

impl ServerSettings {
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}/redirect",
            self.public_url.as_str().trim_end_matches('/')
        )
    }
}

impl ServerSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let bind = r
            .required("server.bind")?
            .parse::<SocketAddr>()
            .map_err(|_| invalid("server.bind", "must be an address such as 127.0.0.1:8080"))?;
        let public_url = r
            .url("server.public_url")?
            .ok_or_else(|| invalid("server.public_url", "is required"))?;
        if public_url.query().is_some() || public_url.fragment().is_some() {
            return Err(invalid(
                "server.public_url",
                "must not have a query or fragment",
            ));
        }
        let allowed_redirect_hosts = r
            .list("server.allowed_redirect_hosts")?
            .iter()
            .map(|entry| {
                HostRule::parse(entry).ok_or_else(|| {
                    invalid(
                        "server.allowed_redirect_hosts",
                        format!("has an invalid entry {entry:?} (host, host:port or .suffix)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ServerSettings {
            bind,
            public_url,
            allowed_redirect_hosts,
        })
    }
}

impl ProxySettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let trusted = r
            .list("proxy.trusted")?
            .iter()
            .map(|entry| {
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        invalid(
                            "proxy.trusted",
                            format!("has an invalid entry {entry:?} (CIDR such as 10.0.0.0/8)"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProxySettings { trusted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_dns_names() {
        for ok in [
            "app.example.com",
            ".example.com",
            "a-b.example:8443",
            "localhost",
        ] {
            assert!(HostRule::parse(ok).is_some(), "{ok}");
        }
        let long = format!("{}.example.com", "a".repeat(64));
        for bad in [
            "",
            ".",
            "..example.com",
            "a..example.com",
            "example.com.",
            "-a.example.com",
            "a-.example.com",
            "a_b.example.com",
            "a&b.example.com",
            "example.com:0",
            "example.com:x",
            long.as_str(),
        ] {
            assert!(HostRule::parse(bad).is_none(), "{bad:?}");
        }
    }
}
