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
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
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
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(',').next().unwrap_or_default().trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let proto = header("x-forwarded-proto")?;
        let host = header("x-forwarded-host")?;
        let uri = header("x-forwarded-uri").unwrap_or_else(|| "/".to_owned());
        if !matches!(proto.as_str(), "http" | "https") || !uri.starts_with('/') {
            return None;
        }
        Some(format!("{proto}://{host}{uri}"))
    }
}
