//! Browser page loads versus API calls: only the former may be sent to sign in.

use actix_web::http::{header, Method};
use actix_web::HttpRequest;

use crate::error::Format;

/// XHR/fetch, JSON clients and non-GET requests: they need a status, not a redirect.
pub fn is_api_request(req: &HttpRequest) -> bool {
    let text = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return true;
    }
    if text("x-requested-with").is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest")) {
        return true;
    }
    if text("sec-fetch-mode").is_some_and(|mode| mode != "navigate") {
        return true;
    }
    let accept = req.headers().get(header::ACCEPT);
    accept
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
        && Format::negotiate(accept) == Format::Json
}

/// A top-level page load by a browser (it wants HTML and is not an API call).
pub fn is_browser_navigation(req: &HttpRequest) -> bool {
    !is_api_request(req) && Format::negotiate(req.headers().get(header::ACCEPT)) == Format::Html
}
