//! Trusted reverse proxies: only from peers in `PROXY__TRUSTED` are `X-Forwarded-*` believed.

use std::net::IpAddr;

use actix_web::HttpRequest;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<ipnet::IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<ipnet::IpNet>) -> Self {
        TrustedProxies { nets }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether this request came straight from a trusted proxy.
    pub fn from_trusted_peer(&self, req: &HttpRequest) -> bool {
        req.peer_addr().is_some_and(|peer| self.trusts(peer.ip()))
    }

    /// The client's address: the peer, or — when the peer is trusted — the right-most
    /// address in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        let hops = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Some(client)
    }

    /// The URL the user asked the proxy for (`X-Forwarded-Proto`, `-Host`, `-Uri`), only from a
    /// trusted peer. Validated later like any other return_to.
    pub fn original_url(&self, req: &HttpRequest) -> Option<String> {
        if !self.from_trusted_peer(req) {
            return None;
        }
        let header = |name: &str| forwarded(req, name);
        let proto = header("x-forwarded-proto")?;
        let host = header("x-forwarded-host")?;
        let uri = header("x-forwarded-uri").unwrap_or_else(|| "/".to_owned());
        if !matches!(proto.as_str(), "http" | "https") || !uri.starts_with('/') {
            return None;
        }
        Some(format!("{proto}://{host}{uri}"))
    }

    /// The origin (`scheme://host[:port]`, lower-case, default port left out) the user asked
    /// the proxy for, from `X-Forwarded-Proto` and `-Host`; only from a trusted peer, and only
    /// when the two make a plain origin (no user info, path or stray characters).
    pub fn original_origin(&self, req: &HttpRequest) -> Option<String> {
        if !self.from_trusted_peer(req) {
            return None;
        }
        let proto = forwarded(req, "x-forwarded-proto")?;
        let host = forwarded(req, "x-forwarded-host")?;
        if !matches!(proto.as_str(), "http" | "https") || host.contains(['/', '\\', '@', '?', '#'])
        {
            return None;
        }
        let url = url::Url::parse(&format!("{proto}://{host}")).ok()?;
        url.host()?;
        Some(url.origin().ascii_serialization())
    }
}

/// The first value of a forwarded header (proxies append with commas), trimmed; `None` when
/// absent or empty.
fn forwarded(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or_default().trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(vec![
            "10.0.0.0/8".parse().expect("net"),
            "127.0.0.1/32".parse().expect("net"),
        ])
    }

    fn request(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(peer.parse().expect("addr"));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        req.to_http_request()
    }

    const FORWARDED: &[(&str, &str)] = &[
        ("x-forwarded-for", "198.51.100.9, 203.0.113.7, 10.1.2.3"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example.com"),
        ("x-forwarded-uri", "/x?y=1"),
    ];

    #[test]
    fn a_trusted_peer_is_believed() {
        let req = request("127.0.0.1:5000", FORWARDED);
        let p = proxies();
        // The right-most address that is not one of our proxies: 203.0.113.7 (198.51.100.9
        // was written by the client itself and could be anything).
        assert_eq!(p.client_ip(&req), Some("203.0.113.7".parse().expect("ip")));
        assert_eq!(
            p.original_url(&req).as_deref(),
            Some("https://app.example.com/x?y=1")
        );
    }

    #[test]
    fn an_untrusted_peer_changes_nothing() {
        let req = request("192.0.2.50:5000", FORWARDED);
        let p = proxies();
        assert_eq!(p.client_ip(&req), Some("192.0.2.50".parse().expect("ip")));
        assert_eq!(p.original_url(&req), None);
        let none = TrustedProxies::default();
        let req = request("127.0.0.1:5000", FORWARDED);
        assert_eq!(none.client_ip(&req), Some("127.0.0.1".parse().expect("ip")));
        assert_eq!(none.original_url(&req), None, "trust none by default");
    }

    #[test]
    fn garbage_forwarded_values_are_not_used() {
        let p = proxies();
        let req = request(
            "127.0.0.1:5000",
            &[
                ("x-forwarded-for", "not-an-ip"),
                ("x-forwarded-proto", "javascript"),
                ("x-forwarded-host", "h"),
            ],
        );
        assert_eq!(p.client_ip(&req), Some("127.0.0.1".parse().expect("ip")));
        assert_eq!(p.original_url(&req), None);
        assert_eq!(p.original_origin(&req), None);
    }

    #[test]
    fn the_original_origin_is_a_plain_origin() {
        let p = proxies();
        let origin = |proto: &str, host: &str| {
            let headers = [("x-forwarded-proto", proto), ("x-forwarded-host", host)];
            p.original_origin(&request("10.0.0.1:5000", &headers))
        };
        assert_eq!(
            origin("https", "App.Example.com").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            origin("https", "app.example.com:443").as_deref(),
            Some("https://app.example.com"),
            "the default port is left out"
        );
        assert_eq!(
            origin("http", "127.0.0.1:8080, evil.example").as_deref(),
            Some("http://127.0.0.1:8080"),
            "the first (proxy-written) value"
        );
        for (proto, host) in [
            ("https", "user@app.example.com"),
            ("https", "app.example.com/path"),
            ("https", "app.example.com?x"),
            ("https", "app.example.com:99999"),
            ("https", ""),
            ("ftp", "app.example.com"),
        ] {
            assert_eq!(origin(proto, host), None, "{proto} {host}");
        }
        let untrusted = request(
            "192.0.2.1:5000",
            &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "a.example"),
            ],
        );
        assert_eq!(p.original_origin(&untrusted), None);
    }
}
