//! Where a finished sign-in may send the browser: paths on this service's own origin, absolute
//! URLs on `PUBLIC_URL`'s origin, and absolute URLs on `ALLOWED_REDIRECT_HOSTS`.
//!
//! Anything else falls back to `/`. Browsers are lenient (they read `/\host` and `//host` as
//! other hosts, strip tabs and newlines, and some proxies decode `%2F`), so the rules are
//! strict: no backslash, no control, space or non-ASCII characters, nothing that decodes into
//! those, no userinfo, http(s) only (https only when `PUBLIC_URL` is https), a host that is a
//! DNS name, and the host and port must be listed.

use url::Url;

use crate::config::{HostRule, ServerSettings};

pub const FALLBACK: &str = "/";
const MAX_LEN: usize = 2048;

#[derive(Debug, Clone)]
pub struct RedirectPolicy {
    scheme: String,
    host: String,
    port: Option<u16>,
    rules: Vec<HostRule>,
}

impl RedirectPolicy {
    pub fn new(server: &ServerSettings) -> Self {
        let public = &server.public_url;
        RedirectPolicy {
            scheme: public.scheme().to_owned(),
            host: public.host_str().unwrap_or_default().to_ascii_lowercase(),
            port: public.port_or_known_default(),
            rules: server.allowed_redirect_hosts.clone(),
        }
    }

    /// The validated return_to, or `/`.
    pub fn sanitize(&self, candidate: Option<&str>) -> String {
        candidate
            .and_then(|c| {
                if c.starts_with('/') {
                    is_safe_local_path(c).then(|| c.to_owned())
                } else {
                    self.allowed_absolute(c)
                }
            })
            .unwrap_or_else(|| FALLBACK.to_owned())
    }

    /// Whether `origin` (`scheme://host[:port]`, as browsers send in `Origin`) is this
    /// service's own (PUBLIC_URL's). The hosts listed for redirects are not: being a place a
    /// user may be sent back to is no licence to end their session (see docs/deployment.md).
    pub fn is_own_origin(&self, origin: &str) -> bool {
        Url::parse(origin).is_ok_and(|u| {
            u.path() == "/"
                && u.query().is_none()
                && u.username().is_empty()
                && u.password().is_none()
                && u.scheme() == self.scheme
                && u.host_str().map(str::to_ascii_lowercase).as_deref() == Some(self.host.as_str())
                && u.port_or_known_default() == self.port
        })
    }

    fn allowed_absolute(&self, raw: &str) -> Option<String> {
        if raw.len() > MAX_LEN || has_unsafe_bytes(raw) {
            return None;
        }
        let decoded = percent_decode_repeatedly(raw);
        if has_unsafe_bytes(&decoded) {
            return None;
        }
        // `https:evil.example` parses as https://evil.example/: insist on the `//` ourselves.
        let lower = raw.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https:")
            .or_else(|| lower.strip_prefix("http:"))?;
        if !rest.starts_with("//") {
            return None;
        }
        let authority = rest[2..].split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains(['%', '@']) || authority.is_empty() {
            return None;
        }
        let url = Url::parse(raw).ok()?;
        self.url_is_allowed(&url).then(|| url.to_string())
    }

    fn url_is_allowed(&self, url: &Url) -> bool {
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return false;
        }
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return false;
        };
        if url.scheme() == self.scheme
            && host == self.host
            && url.port_or_known_default() == self.port
        {
            return true;
        }
        // Behind https, a listed host over plain http would hand the user (and whatever the
        // URL carries) to anyone on the path.
        if self.scheme == "https" && url.scheme() != "https" {
            return false;
        }
        let default_port = url.port_or_known_default();
        self.rules
            .iter()
            .any(|rule| rule.allows(&host, url.port(), default_port))
    }
}

fn has_unsafe_bytes(s: &str) -> bool {
    s.bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\' || b >= 0x80)
}

fn is_safe_local_path(p: &str) -> bool {
    if p.is_empty() || p.len() > MAX_LEN || !p.starts_with('/') || p.starts_with("//") {
        return false;
    }
    if has_unsafe_bytes(p) {
        return false;
    }
    // Decoded forms must be just as harmless: `/%2F%2Fevil`, `/%5Cevil`, `/%09/evil`.
    let decoded = percent_decode_repeatedly(p);
    if decoded.starts_with("//") || decoded.bytes().any(|b| b == b'\\' || b.is_ascii_control()) {
        return false;
    }
    let Ok(base) = Url::parse("http://gatehouse.invalid/") else {
        return false;
    };
    matches!(base.join(p), Ok(u) if u.host_str() == Some("gatehouse.invalid") && u.port().is_none() && u.username().is_empty())
}

/// Decodes until stable (bounded), so double encodings are judged by what they become.
fn percent_decode_repeatedly(p: &str) -> String {
    let mut current = p.to_owned();
    for _ in 0..4 {
        let next = percent_encoding::percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if next == current {
            break;
        }
        current = next;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerSettings;

    fn policy() -> RedirectPolicy {
        let rules = ["app.example.com", "app.example.com:8443", ".corp.example"]
            .iter()
            .map(|r| HostRule::parse(r).expect("rule"))
            .collect();
        RedirectPolicy::new(&ServerSettings {
            bind: "127.0.0.1:0".parse().expect("addr"),
            public_url: Url::parse("https://auth.example.com").expect("url"),
            allowed_redirect_hosts: rules,
        })
    }

    #[test]
    fn keeps_local_paths_and_allowed_urls() {
        let p = policy();
        for ok in [
            "/",
            "/app",
            "/x/y?z=1&w=%20",
            "/a#frag",
            "/path;p=1",
            "/.well-known",
        ] {
            assert_eq!(p.sanitize(Some(ok)), ok, "{ok}");
        }
        for (given, kept) in [
            (
                "https://auth.example.com/x?y=1",
                "https://auth.example.com/x?y=1",
            ),
            (
                "https://auth.example.com:443/x",
                "https://auth.example.com/x",
            ),
            (
                "https://app.example.com/page?q=1",
                "https://app.example.com/page?q=1",
            ),
            ("https://APP.example.com", "https://app.example.com/"),
            (
                "https://app.example.com:8443/x",
                "https://app.example.com:8443/x",
            ),
            ("https://a.corp.example/x", "https://a.corp.example/x"),
            (
                "https://deep.a.corp.example/",
                "https://deep.a.corp.example/",
            ),
            ("https://corp.example/", "https://corp.example/"),
        ] {
            assert_eq!(p.sanitize(Some(given)), kept, "{given}");
        }
    }

    /// The open-redirect table (tests/data/open_redirects.jsonl, one JSON string a line).
    #[test]
    fn every_open_redirect_payload_falls_back_to_the_home_page() {
        let table = include_str!("../tests/data/open_redirects.jsonl");
        let payloads: Vec<String> = table
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON string per line"))
            .collect();
        assert!(
            payloads.len() >= 139,
            "the table has {} payloads",
            payloads.len()
        );
        let p = policy();
        for payload in &payloads {
            assert_eq!(p.sanitize(Some(payload)), FALLBACK, "{payload:?}");
        }
        assert_eq!(p.sanitize(None), FALLBACK);
    }

    #[test]
    fn only_our_own_origin_may_sign_out() {
        let p = policy();
        assert!(p.is_own_origin("https://auth.example.com"));
        assert!(p.is_own_origin("https://AUTH.example.com:443"));
        // Listed for redirects, yet not us.
        assert!(!p.is_own_origin("https://app.example.com"));
        assert!(!p.is_own_origin("https://a.corp.example"));
        assert!(!p.is_own_origin("https://evil.example"));
        assert!(!p.is_own_origin("null"));
        assert!(!p.is_own_origin("http://auth.example.com"));
        assert!(!p.is_own_origin("https://auth.example.com:8443"));
        assert!(!p.is_own_origin("https://auth.example.com.evil.example"));
    }

    #[test]
    fn suffix_rules_admit_only_dns_names() {
        let p = policy();
        for host in [
            "evil.example..corp.example",
            ".corp.example",
            "..corp.example",
            "evil&.corp.example",
            "a.corp.example.",
            "-evil.corp.example",
            "evil-.corp.example",
            "ev_il.corp.example",
        ] {
            let url = format!("https://{host}/");
            assert_eq!(p.sanitize(Some(&url)), FALLBACK, "{url}");
        }
        let long_label = "a".repeat(64);
        let url = format!("https://{long_label}.corp.example/");
        assert_eq!(p.sanitize(Some(&url)), FALLBACK, "a 64-byte label");
        let ok_label = "a".repeat(63);
        let url = format!("https://{ok_label}.corp.example/");
        assert_eq!(p.sanitize(Some(&url)), url, "a 63-byte label");
        // 253 bytes in all is the most a name may have.
        let labels = vec!["a".repeat(60); 4].join(".");
        let url = format!("https://{labels}.corp.example/");
        assert_eq!(p.sanitize(Some(&url)), FALLBACK, "a name over 253 bytes");
    }

    #[test]
    fn behind_https_listed_hosts_are_https_only() {
        let p = policy();
        for url in [
            "http://app.example.com/",
            "http://app.example.com:443/",
            "http://app.example.com:8443/x",
            "http://a.corp.example/",
        ] {
            assert_eq!(p.sanitize(Some(url)), FALLBACK, "{url}");
        }
        // Behind plain http (development), both schemes remain possible.
        let plain = RedirectPolicy::new(&ServerSettings {
            bind: "127.0.0.1:0".parse().expect("addr"),
            public_url: Url::parse("http://127.0.0.1:8080").expect("url"),
            allowed_redirect_hosts: vec![HostRule::parse("app.example.com").expect("rule")],
        });
        for url in ["http://app.example.com/", "https://app.example.com/"] {
            assert_eq!(plain.sanitize(Some(url)), url);
        }
    }
}
