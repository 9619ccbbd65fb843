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
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        valid.then_some(HostRule { host, suffix, port })
    }
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
