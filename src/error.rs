//! The one error type, and the one place it becomes HTTP.
//!
//! Every error answer — ours and the framework's — goes through [`render`] (called by the
//! `errors::ContractErrors` middleware), so clients always get the contract's format: JSON for
//! clients that accept JSON, a small HTML page for browsers.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::security_headers::PageContext;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    /// Malformed or missing parameters.
    #[error("{0}")]
    InvalidRequest(String),
    /// State unknown, expired, already used, or started by another browser.
    #[error("{0}")]
    InvalidState(&'static str),
    /// The provider redirected back with `error=`; carries its code (and description).
    #[error("the identity provider refused the sign-in: {0}")]
    ProviderError(String),
    /// Token endpoint unreachable, too slow, non-2xx or malformed. Details go to the log only.
    #[error("the identity provider could not complete the sign-in; please try again")]
    ExchangeFailed,
    /// The provider's settings are not loaded yet (discovery still retrying).
    #[error("the identity provider is not reachable yet; please try again shortly")]
    ProviderUnavailable,
    /// Too many sign-ins started, by this client or by everyone together: try again after
    /// this many seconds (1–60, sent as `Retry-After`).
    #[error("too many sign-ins were started; please try again in {0} seconds")]
    RateLimited(u64),
    /// Redis unreachable: fail closed.
    #[error("the session store is unavailable; please try again shortly")]
    StoreUnavailable,
    #[error("not signed in")]
    Unauthorized,
    /// Not signed in, answering an API call (XHR, JSON client, non-GET) that a proxy sent to
    /// sign in: always JSON, whatever it accepts.
    #[error("not signed in")]
    ApiUnauthorized,
    /// Not signed in, on a browser page load: the page sends the browser to this sign-in URL.
    #[error("not signed in")]
    SignInRequired(String),
    /// A bearer token was sent and refused (RFC 6750): answered with
    /// `WWW-Authenticate: Bearer error="invalid_token"`. Why goes to the log only.
    #[error("the bearer token is not valid")]
    InvalidToken,
    #[error("{0}")]
    Forbidden(&'static str),
    /// The access rules do not admit this user (at sign-in: no session was created). Carries
    /// the reason, in words for the person refused (never a claim's value).
    #[error("{0}")]
    AccessDenied(&'static str),
    #[error("no such page")]
    NotFound,
    /// Carries the methods the resource does allow (`Allow` header).
    #[error("method not allowed here (allowed: {0})")]
    MethodNotAllowed(&'static str),
    /// A bug on our side; never caused by client input.
    #[error("internal error")]
    Internal,
}

/// A refused bearer token is 401 `invalid_token`; keys we cannot get are the provider's fault.
impl From<crate::bearer::BearerError> for AppError {
    fn from(e: crate::bearer::BearerError) -> Self {
        if e.is_unavailable() {
            AppError::ProviderUnavailable
        } else {
            AppError::InvalidToken
        }
    }
}

/// Signing cannot fail in practice; if it ever does, it is ours.
impl From<crate::assertion::AssertionError> for AppError {
    fn from(_: crate::assertion::AssertionError) -> Self {
        AppError::Internal
    }
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::InvalidRequest(_) => "invalid_request",
            AppError::InvalidState(_) => "invalid_state",
            AppError::ProviderError(_) => "provider_error",
            AppError::ExchangeFailed => "exchange_failed",
            AppError::StoreUnavailable => "store_unavailable",
            AppError::RateLimited(_) => "rate_limited",
            AppError::ProviderUnavailable => "provider_unavailable",
            AppError::Unauthorized | AppError::ApiUnauthorized | AppError::SignInRequired(_) => {
                "unauthorized"
            }
            AppError::InvalidToken => "invalid_token",
            AppError::Forbidden(_) => "forbidden",
            AppError::AccessDenied(_) => "access_denied",
            AppError::NotFound => "not_found",
            AppError::MethodNotAllowed(_) => "method_not_allowed",
            AppError::Internal => "internal_error",
        }
    }

    /// The error the contract names for a bare framework status (no `AppError` attached).
    pub fn from_status(status: StatusCode) -> AppError {
        match status.as_u16() {
            401 => AppError::Unauthorized,
            403 => AppError::Forbidden("this request is not allowed"),
            404 => AppError::NotFound,
            405 => AppError::MethodNotAllowed("GET, POST"),
            413 | 414 | 431 => AppError::InvalidRequest("the request is too large".into()),
            400..=499 => AppError::InvalidRequest("the request is malformed".into()),
            502 | 504 => AppError::ExchangeFailed,
            503 => AppError::StoreUnavailable,
            _ => AppError::Internal,
        }
    }

    /// Whether the page should offer to start a sign-in again.
    fn offers_sign_in(&self) -> bool {
        !matches!(self, AppError::NotFound | AppError::MethodNotAllowed(_))
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::InvalidRequest(_)
            | AppError::InvalidState(_)
            | AppError::ProviderError(_) => StatusCode::BAD_REQUEST,
            AppError::ExchangeFailed => StatusCode::BAD_GATEWAY,
            AppError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::StoreUnavailable | AppError::ProviderUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Unauthorized
            | AppError::ApiUnauthorized
            | AppError::SignInRequired(_)
            | AppError::InvalidToken => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::AccessDenied(_) => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// JSON by default; the middleware re-renders as HTML for browsers.
    fn error_response(&self) -> HttpResponse {
        render(self, Format::Json)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
}

impl Format {
    /// HTML when the client prefers `text/html` to `application/json`, JSON otherwise (API
    /// clients, `curl`, `Accept: */*`, no `Accept` at all).
    pub fn negotiate(accept: Option<&HeaderValue>) -> Format {
        let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
            return Format::Json;
        };
        let mut html: Option<(f32, usize)> = None;
        let mut json: Option<(f32, usize)> = None;
        for (pos, item) in accept.split(',').enumerate() {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let slot = match media.as_str() {
                "text/html" | "application/xhtml+xml" => &mut html,
                "application/json" => &mut json,
                _ => continue,
            };
            if q > 0.0 && slot.is_none_or(|(best, _)| q > best) {
                *slot = Some((q, pos));
            }
        }
        match (html, json) {
            (Some(_), None) => Format::Html,
            (Some((hq, hp)), Some((jq, jp))) if hq > jq || (hq == jq && hp < jp) => Format::Html,
            _ => Format::Json,
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    page: PageContext,
    status: u16,
    code: &'a str,
    title: &'a str,
    /// What happened and what to do, in a sentence for people.
    help: &'a str,
    /// The error's own text, when it says more than the title (e.g. the provider's code).
    message: String,
    show_message: bool,
    offer_sign_in: bool,
    /// Where the sign-in button leads; with `refresh`, the page goes there by itself.
    sign_in_url: &'a str,
    sign_in_label: &'a str,
    refresh: bool,
}

fn title(err: &AppError) -> &'static str {
    match err {
        AppError::InvalidRequest(_) => "That request did not look right",
        AppError::InvalidState(_) => "This sign-in link is no longer valid",
        AppError::ProviderError(_) => "The identity provider refused the sign-in",
        AppError::ExchangeFailed => "The identity provider did not answer properly",
        AppError::StoreUnavailable | AppError::ProviderUnavailable => {
            "Sign-in is unavailable right now"
        }
        AppError::RateLimited(_) => "Too many sign-ins at once",
        AppError::Unauthorized | AppError::ApiUnauthorized | AppError::SignInRequired(_) => {
            "You are not signed in"
        }
        AppError::InvalidToken => "Your access token was not accepted",
        AppError::Forbidden(_) => "That request was refused",
        AppError::AccessDenied(_) => "You do not have access",
        AppError::NotFound => "Page not found",
        AppError::MethodNotAllowed(_) => "Method not allowed",
        AppError::Internal => "Something went wrong on our side",
    }
}

/// One sentence for each error code: what it means for the person reading, and what to do.
fn help(err: &AppError) -> &'static str {
    match err {
        AppError::InvalidRequest(_) => {
            "The link or form that brought you here was incomplete or altered on the way. \
             Start again from the application you were using."
        }
        AppError::InvalidState(_) => {
            "A sign-in link works once, for a few minutes, and only in the browser that started \
             it, so going back or reloading at the end of a sign-in lands here. Signing in again \
             will work."
        }
        AppError::ProviderError(_) => {
            "Your identity provider ended the sign-in without signing you in, for example \
             because it was cancelled or declined there. You can try again."
        }
        AppError::ExchangeFailed => {
            "Your identity provider did not confirm the sign-in properly. This is usually \
             temporary: please try again in a moment."
        }
        AppError::ProviderUnavailable => {
            "Your identity provider cannot be reached yet. Please try again in a minute."
        }
        AppError::StoreUnavailable => {
            "Sessions cannot be checked right now, so nobody can be signed in. Please try again \
             in a minute."
        }
        AppError::RateLimited(_) => {
            "Too many sign-ins were started in a short time, from your network or on this \
             service as a whole. Wait a moment, then sign in again."
        }
        AppError::Unauthorized | AppError::ApiUnauthorized | AppError::SignInRequired(_) => {
            "This page is only for signed-in people. Sign in to continue."
        }
        AppError::InvalidToken => {
            "The access token sent with this request is malformed, expired, or not meant for \
             this service. Get a new token from your identity provider and try again."
        }
        AppError::Forbidden(_) => {
            "The request was refused to protect your account, for example because it came \
             from another site."
        }
        AppError::AccessDenied(_) => {
            "You signed in, but your account is not allowed to use this service. Ask your \
             administrator for access."
        }
        AppError::NotFound => "There is no page at this address. Check it, or go to the home page.",
        AppError::MethodNotAllowed(_) => "This address does not accept that kind of request.",
        AppError::Internal => {
            "Something failed on our side. Please try again; if it keeps happening, tell your \
             administrator the reference below."
        }
    }
}

/// The contract's error answer for `err` in the given format.
pub fn render(err: &AppError, format: Format) -> HttpResponse {
    let format = match err {
        AppError::ApiUnauthorized => Format::Json,
        _ => format,
    };
    let status = err.status_code();
    let mut builder = HttpResponse::build(status);
    builder.insert_header((header::CACHE_CONTROL, "no-store"));
    if let AppError::MethodNotAllowed(allow) = err {
        // RFC 9110: a 405 names the methods that would work.
        builder.insert_header((header::ALLOW, *allow));
    }
    if let AppError::InvalidToken = err {
        // RFC 6750 3.1; no error_description: why a token failed is for the log.
        builder.insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#));
    }
    if let AppError::RateLimited(secs) = err {
        // RFC 6585: a 429 may say when to come back; the contract bounds it to 1–60 s.
        builder.insert_header((header::RETRY_AFTER, (*secs).clamp(1, 60)));
    }
    let message = err.to_string();
    match format {
        Format::Json => builder
            .content_type("application/json")
            .body(serde_json::json!({ "error": err.code(), "message": message }).to_string()),
        Format::Html => {
            let (sign_in_url, refresh) = match err {
                AppError::SignInRequired(url) => (url.as_str(), true),
                _ => ("/signin", false),
            };
            let show_message = matches!(
                err,
                AppError::InvalidRequest(_)
                    | AppError::InvalidState(_)
                    | AppError::ProviderError(_)
                    | AppError::Forbidden(_)
                    | AppError::AccessDenied(_)
            );
            let page = ErrorPage {
                page: PageContext::current(),
                status: status.as_u16(),
                code: err.code(),
                title: title(err),
                help: help(err),
                message: capitalised(&message),
                show_message,
                offer_sign_in: err.offers_sign_in(),
                sign_in_url,
                sign_in_label: if refresh { "Sign in" } else { "Sign in again" },
                refresh,
            };
            match page.render() {
                Ok(html) => builder.content_type("text/html; charset=utf-8").body(html),
                Err(_) => builder
                    .content_type("text/plain; charset=utf-8")
                    .body(format!("{}: {}", err.code(), err)),
            }
        }
    }
}

/// The error's text as a sentence on a page: capital first letter.
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<AppError> {
        vec![
            AppError::InvalidRequest("the `state` parameter is missing".into()),
            AppError::InvalidState("this sign-in is unknown or has expired"),
            AppError::ProviderError("access_denied".into()),
            AppError::ExchangeFailed,
            AppError::ProviderUnavailable,
            AppError::StoreUnavailable,
            AppError::RateLimited(30),
            AppError::Unauthorized,
            AppError::SignInRequired("http://gatehouse.test/signin?return_to=%2Fx".into()),
            AppError::InvalidToken,
            AppError::Forbidden("cross-site sign-out requests are refused"),
            AppError::AccessDenied("not in an allowed group"),
            AppError::NotFound,
            AppError::MethodNotAllowed("GET"),
            AppError::Internal,
        ]
    }

    async fn page(err: &AppError) -> String {
        let res = render(err, Format::Html);
        let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[actix_web::test]
    async fn every_code_has_its_own_page_with_a_sentence_for_people() {
        let mut sentences = std::collections::BTreeSet::new();
        for err in every_error() {
            let html = page(&err).await;
            let help = help(&err);
            assert!(help.ends_with('.') && help.len() > 30, "{help}");
            assert!(
                html.contains(&format!("<h1>{}</h1>", title(&err))),
                "{html}"
            );
            assert!(html.contains(&format!("<p>{help}</p>")), "{html}");
            assert!(
                html.contains(&format!("<code>{}</code>", err.code())),
                "{html}"
            );
            assert_eq!(html.matches("<h1").count(), 1);
            assert_eq!(
                html.contains(">Sign in again</a>") || html.contains(">Sign in</a>"),
                err.offers_sign_in(),
                "{html}"
            );
            assert!(html.contains("href=\"/\""), "a way home: {html}");
            sentences.insert(help);
        }
        // Unauthorized and its two forms for proxies and API calls share one.
        assert_eq!(sentences.len(), every_error().len() - 1);
    }

    #[test]
    fn a_refused_bearer_token_says_so_in_www_authenticate() {
        for format in [Format::Json, Format::Html] {
            let res = render(&AppError::InvalidToken, format);
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                res.headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok()),
                Some(r#"Bearer error="invalid_token""#)
            );
        }
        let plain = render(&AppError::Unauthorized, Format::Json);
        assert!(plain.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[actix_web::test]
    async fn the_details_of_what_went_wrong_are_shown_escaped() {
        let html = page(&AppError::ProviderError("<b>access_denied</b>".into())).await;
        assert!(html.contains("access_denied"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        let html = page(&AppError::InvalidState(
            "this sign-in has already been used",
        ))
        .await;
        assert!(
            html.contains("This sign-in has already been used"),
            "{html}"
        );
    }

    #[actix_web::test]
    async fn a_429_says_when_to_come_back_within_a_minute() {
        for (secs, expected) in [(0, "1"), (30, "30"), (600, "60")] {
            for format in [Format::Json, Format::Html] {
                let res = render(&AppError::RateLimited(secs), format);
                assert_eq!(res.status().as_u16(), 429);
                assert_eq!(
                    res.headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()),
                    Some(expected)
                );
            }
        }
        assert_eq!(AppError::RateLimited(5).code(), "rate_limited");
    }

    #[actix_web::test]
    async fn a_page_that_moves_by_itself_says_where() {
        let html = page(&AppError::SignInRequired(
            "http://gatehouse.test/signin?a=1&b=2".into(),
        ))
        .await;
        assert!(
            html.contains("content=\"0; url=http://gatehouse.test/signin?a=1&#38;b=2\"")
                || html.contains("content=\"0; url=http://gatehouse.test/signin?a=1&amp;b=2\""),
            "{html}"
        );
        assert!(html.contains(">Sign in</a>"), "{html}");
    }
}
