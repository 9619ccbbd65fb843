//! GET /signin: start a sign-in and send the browser to the provider.

use std::net::{IpAddr, Ipv6Addr};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use url::Url;

use crate::error::AppError;
use crate::state::AppState;

/// The page to come back to, set by a proxy (same name as oauth2-proxy's).
pub const RETURN_TO_HEADER: &str = "x-auth-request-redirect";

pub async fn signin(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    // A proxy may send an XHR here (nginx's error_page 401): it needs a status, not a page.
    if crate::navigation::is_api_request(&req) {
        return Err(AppError::ApiUnauthorized);
    }
    let return_to = match single_param(req.query_string(), "return_to")? {
        Some(rt) => Some(rt),
        // nginx cannot URL-encode the original URI into a query, so it sends it as a header.
        None => req
            .headers()
            .get(RETURN_TO_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    // Only a configured name goes any further (into a URL, a record or a metrics label).
    let entry = match single_param(req.query_string(), "provider")? {
        Some(name) => Some(state.providers.get(&name).ok_or_else(|| {
            AppError::InvalidRequest(
                "the `provider` parameter names no identity provider configured here".into(),
            )
        })?),
        None if state.providers.len() == 1 => Some(state.providers.primary()),
        None => None,
    };
    let name = entry.map(|e| e.name.as_str());
    if let Some(there) = on_public_host(&req, &state, return_to.as_deref(), name) {
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, there))
            .insert_header(super::no_store())
            .finish());
    }
    let Some(entry) = entry else {
        return super::choose::page(&state, return_to.as_deref());
    };
    let provider = entry.ready().ok_or(AppError::ProviderUnavailable)?;
    let binding = state.binding.for_new_sign_in(&req);
    let client = state.proxies.client_ip(&req).map(client_key);
    // Refused (429, 503…): no binding cookie is set, and none of the browser's is touched.
    let url = crate::signin::start(
        &provider,
        &entry.name,
        &state.pending,
        &state.redirects,
        &binding.id,
        client.as_deref(),
        return_to.as_deref(),
    )
    .await?;
    state.metrics.signin_started(&entry.name);
    let mut res = HttpResponse::SeeOther();
    res.insert_header((header::LOCATION, url.as_str()))
        .insert_header(super::no_store());
    for cookie in binding.cookies {
        res.cookie(cookie);
    }
    Ok(res.finish())
}

/// Where to start this sign-in instead, when a trusted proxy forwarded it for another host than
/// PUBLIC_URL's (nginx's `@gatehouse_signin` on app.example.com, gatehouse's PUBLIC_URL on
/// auth.example.com with a COOKIE_DOMAIN): the binding cookie is host-only and the provider
/// sends the browser back to PUBLIC_URL's host, so the cookie must be set there. Only the host
/// name counts (cookies ignore ports and schemes), so a proxy reporting another port or scheme
/// cannot cause a loop.
fn on_public_host(
    req: &HttpRequest,
    state: &AppState,
    return_to: Option<&str>,
    provider: Option<&str>,
) -> Option<String> {
    if !state.proxies.from_trusted_peer(req) {
        return None;
    }
    let forwarded = req
        .headers()
        .get("x-forwarded-host")?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim();
    let forwarded = Url::parse(&format!("http://{forwarded}/")).ok()?;
    let public = Url::parse(&state.public_url).ok()?;
    let host = |u: &Url| {
        u.host_str()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
    };
    if host(&forwarded)? == host(&public)? {
        return None;
    }
    let mut there = Url::parse(&format!("{}/signin", state.public_url)).ok()?;
    if let Some(name) = provider {
        there.query_pairs_mut().append_pair("provider", name);
    }
    if let Some(back) = return_to
        .map(str::to_owned)
        .or_else(|| state.proxies.original_url(req))
    {
        there.query_pairs_mut().append_pair("return_to", &back);
    }
    Some(there.into())
}

/// Who the per-client limit counts: an IPv4 address, or an IPv6 address's /64 (one host
/// usually has a whole /64 to pick addresses from).
pub fn client_key(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0).to_string() + "/64"
        }
    }
}

/// The value of `name` in a query string; a repeated parameter is ambiguous and refused.
pub fn single_param(query: &str, name: &str) -> Result<Option<String>, AppError> {
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == name {
            if found.is_some() {
                return Err(AppError::InvalidRequest(format!(
                    "the `{name}` parameter is repeated"
                )));
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_64() {
        let key = |s: &str| client_key(s.parse().expect("ip"));
        assert_eq!(key("198.51.100.7"), "198.51.100.7");
        assert_eq!(key("::ffff:198.51.100.7"), "198.51.100.7");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff::1"), key("2001:db8:1:2::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
