//! Browser security headers on every answer, and what gatehouse's pages render with.
//!
//! [`SecurityHeaders`] wraps the whole app (outside the error middleware, so it sees the final
//! answers, errors included):
//!
//! * every answer: `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer` (the
//!   callback's URL carries a code; no page of ours may leak its URL in a `Referer`), unless
//!   the answer chose a policy itself (the home page: `same-origin`, see routes/pages.rs);
//! * every HTML answer: a strict `Content-Security-Policy` — nothing is allowed but the page's
//!   own inline style (by a per-answer nonce), the configured logo's origin for images, and
//!   forms posting to this origin (plus the provider's, when sign-out continues there) — and
//!   `X-Frame-Options: DENY`; `Cache-Control: no-store` unless the answer set its own.
//!
//! While a request is handled, [`PageContext::current`] gives pages (templates, error pages)
//! the product name, the logo, the request id and the style nonce the policy will name. It is
//! a task-local set around the inner service: handlers and the error middleware run within
//! that future.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::HttpMessage;
use url::Url;

use crate::config::UiSettings;
use crate::providers::Providers;

tokio::task_local! {
    static PAGE: PageContext;
}

/// What a page being rendered for the current request may use.
#[derive(Clone, Debug)]
pub struct PageContext {
    ui: Arc<UiSettings>,
    request_id: Option<String>,
    /// Made on first use; the policy allows the inline style carrying it.
    style_nonce: Arc<OnceLock<String>>,
}

impl PageContext {
    fn new(ui: Arc<UiSettings>, request_id: Option<String>) -> PageContext {
        PageContext {
            ui,
            request_id,
            style_nonce: Arc::new(OnceLock::new()),
        }
    }

    /// The current request's context; outside a request (unit tests), the default settings
    /// and no request id.
    pub fn current() -> PageContext {
        PAGE.try_with(Clone::clone)
            .unwrap_or_else(|_| PageContext::new(Arc::new(UiSettings::default()), None))
    }

    /// The product name (`UI__TITLE`).
    pub fn title(&self) -> &str {
        &self.ui.title
    }

    /// The logo's URL (`UI__LOGO_URL`), when set.
    pub fn logo_url(&self) -> Option<&str> {
        self.ui.logo_url.as_ref().map(Url::as_str)
    }

    /// The request id (as in `X-Request-Id` and the logs), to quote to support.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The nonce of the page's `<style>` element: 256 random bits, new for every answer.
    pub fn style_nonce(&self) -> &str {
        self.style_nonce.get_or_init(crate::random::token)
    }
}

/// The `Content-Security-Policy` of an HTML answer.
///
/// `style_nonce`: the nonce of the page's inline style, if it has one. `logo`: the configured
/// logo, whose origin may serve images. `form_targets`: other origins a form may end up on
/// (Chrome applies `form-action` to the redirects after a form's POST too, and sign-out may
/// continue at the provider).
pub fn content_security_policy(
    style_nonce: Option<&str>,
    logo: Option<&Url>,
    form_targets: &[Url],
) -> String {
    let style = match style_nonce {
        Some(nonce) => format!("'nonce-{nonce}'"),
        None => "'none'".to_owned(),
    };
    let img = match logo {
        Some(url) => url.origin().ascii_serialization(),
        None => "'none'".to_owned(),
    };
    let mut form = "'self'".to_owned();
    for url in form_targets {
        let origin = url.origin().ascii_serialization();
        if !form.split(' ').any(|o| o == origin) {
            form.push(' ');
            form.push_str(&origin);
        }
    }
    format!(
        "default-src 'none'; style-src {style}; img-src {img}; form-action {form}; \
         base-uri 'none'; frame-ancestors 'none'"
    )
}

/// The middleware; `.wrap(SecurityHeaders::new(&settings.ui, …))` outside the error
/// middleware.
#[derive(Clone)]
pub struct SecurityHeaders {
    ui: Arc<UiSettings>,
    /// With provider logout: the provider whose end-session endpoint the sign-out form's POST
    /// is redirected to (the pages' `form-action` must allow it).
    logout_at: Option<Arc<Providers>>,
}

impl SecurityHeaders {
    pub fn new(ui: &UiSettings, logout_at: Option<Arc<Providers>>) -> SecurityHeaders {
        SecurityHeaders {
            ui: Arc::new(ui.clone()),
            logout_at,
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for SecurityHeaders
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = SecurityHeadersService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SecurityHeadersService {
            service: Rc::new(service),
            ui: self.ui.clone(),
            logout_at: self.logout_at.clone(),
        }))
    }
}

pub struct SecurityHeadersService<S> {
    service: Rc<S>,
    ui: Arc<UiSettings>,
    logout_at: Option<Arc<Providers>>,
}

type Answer<B> = Result<ServiceResponse<B>, actix_web::Error>;

impl<S, B> Service<ServiceRequest> for SecurityHeadersService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Answer<B>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let request_id = req
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(|id| id.to_string());
        let logout_at = self.logout_at.clone();
        let context = PageContext::new(self.ui.clone(), request_id);
        let service = self.service.clone();
        let inner = PAGE.scope(context.clone(), async move { service.call(req).await });
        Box::pin(async move {
            match inner.await {
                Ok(mut res) => {
                    secure(res.headers_mut(), &context, logout_at.as_deref());
                    Ok(res)
                }
                // An error not yet turned into an answer (the error middleware's for a failed
                // session store): render it now, within the page context, and secure it too.
                Err(err) => {
                    let mut res = PAGE.sync_scope(context.clone(), || err.error_response());
                    secure(res.headers_mut(), &context, logout_at.as_deref());
                    Err(actix_web::error::InternalError::from_response(err.to_string(), res).into())
                }
            }
        })
    }
}

fn secure(headers: &mut HeaderMap, context: &PageContext, logout_at: Option<&Providers>) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A page may relax this to `same-origin` (never sent to another origin): see pages.rs.
    if !headers.contains_key(header::REFERRER_POLICY) {
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/html")
        });
    if !html {
        return;
    }
    // With provider logout, the sign-out form's POST is answered with a redirect to the
    // provider's end-session endpoint.
    // (Any configured provider's: the form does not know whose session it ends.)
    let end_session = logout_at
        .map(Providers::end_session_urls)
        .unwrap_or_default();
    let policy = content_security_policy(
        context.style_nonce.get().map(String::as_str),
        context.ui.logo_url.as_ref(),
        &end_session,
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_nothing_but_what_is_named() {
        assert_eq!(
            content_security_policy(None, None, &[]),
            "default-src 'none'; style-src 'none'; img-src 'none'; form-action 'self'; \
             base-uri 'none'; frame-ancestors 'none'"
        );
        let logo = Url::parse("https://cdn.example.com:8443/brand/logo.svg?v=2").unwrap();
        let provider = Url::parse("https://id.example.com/session/end?x=1").unwrap();
        let policy = content_security_policy(Some("abc_-1"), Some(&logo), &[provider]);
        assert_eq!(
            policy,
            "default-src 'none'; style-src 'nonce-abc_-1'; img-src https://cdn.example.com:8443; \
             form-action 'self' https://id.example.com; base-uri 'none'; frame-ancestors 'none'"
        );
        assert!(!policy.contains("script"), "no script source at all");
        // Several providers: each end-session origin once.
        let corp = Url::parse("https://login.corp.example/logout").unwrap();
        let again = Url::parse("https://id.example.com/other").unwrap();
        let provider = Url::parse("https://id.example.com/session/end").unwrap();
        let policy = content_security_policy(None, None, &[provider, corp, again]);
        assert!(
            policy
                .contains("form-action 'self' https://id.example.com https://login.corp.example;"),
            "{policy}"
        );
    }

    #[test]
    fn outside_a_request_pages_get_the_defaults() {
        let page = PageContext::current();
        assert_eq!(page.title(), "gatehouse");
        assert_eq!(page.logo_url(), None);
        assert_eq!(page.request_id(), None);
        let nonce = page.style_nonce().to_owned();
        assert_eq!(nonce.len(), 43);
        assert_eq!(page.style_nonce(), nonce, "one nonce per page");
        assert_ne!(
            PageContext::current().style_nonce(),
            nonce,
            "new for every page"
        );
    }
}
