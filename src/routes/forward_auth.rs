//! GET /auth: the reverse proxy asks whether this request's user is signed in.

use actix_session::Session;
use actix_web::http::header::HeaderValue;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::assertion::AssertionClaims;
use crate::error::AppError;
use crate::identity::Identity;
use crate::refresh::Outcome;
use crate::startup::AppState;

/// 200 with identity headers, or 401. Never a redirect: proxies and XHRs need a status. A
/// browser page load gets a 401 page that leads to sign-in (for proxies such as Traefik and
/// Caddy that show gatehouse's answer to the browser), returning to the page it asked for
/// when a trusted proxy said which.
pub async fn forward_auth(
    req: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    // An API client's bearer token, when enabled; without one the session cookie decides.
    if let (Some(bearer), Some(token)) = (&state.bearer, crate::bearer::token_in(req.headers())) {
        let provider = state.provider.get();
        let token = bearer
            .verify(token?, provider.as_ref().and_then(|p| p.keys()))
            .await?;
        let mut identity = token.identity();
        crate::access::check(&state.access, &identity)?;
        let groups_rule = &state.access.allowed_groups;
        if !groups_rule.is_empty() && !token.groups.iter().any(|g| groups_rule.contains(g)) {
            return Err(AppError::AccessDenied);
        }
        // An unverified email is not forwarded (nOAuth).
        if identity.email_verified != Some(true) {
            identity.email = None;
        }
        return answer(&req, &state, &identity, &token.groups, None);
    }
    let Some(identity) = crate::session::identity(&session) else {
        return Err(not_signed_in(&req, &state));
    };
    // Usually nothing to do; near expiry, one refresh per session across instances.
    if crate::refresh::ensure_fresh(&session, &state).await? == Outcome::Ended {
        return Err(not_signed_in(&req, &state));
    }
    let tokens = state
        .forward
        .pass_access_token
        .then(|| crate::session::tokens(&session))
        .flatten();
    answer(
        &req,
        &state,
        &identity,
        &[],
        tokens.as_ref().map(|t| t.access_token.expose()),
    )
}

/// The 200 with the identity headers (and the signed assertion, when enabled).
fn answer(
    req: &HttpRequest,
    state: &AppState,
    identity: &Identity,
    groups: &[String],
    access_token: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let mut res = HttpResponse::Ok();
    res.insert_header(super::no_store());
    let mut add = |name: &'static str, value: Option<&str>| {
        // A value a header cannot carry (control characters) is left out, not a 500.
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            res.insert_header((name, v));
        }
    };
    add("X-Auth-Request-User", Some(&identity.subject));
    add("X-Auth-Request-Email", identity.email.as_deref());
    add(
        "X-Auth-Request-Preferred-Username",
        identity.preferred_username.as_deref(),
    );
    if !groups.is_empty() {
        add("X-Auth-Request-Groups", Some(&groups.join(",")));
    }
    add("X-Auth-Request-Access-Token", access_token);
    if state.forward.assertion {
        let claims = AssertionClaims {
            subject: &identity.subject,
            email: identity
                .email
                .as_deref()
                .filter(|_| identity.email_verified == Some(true)),
            groups,
        };
        let audience = state.proxies.original_origin(req);
        let value = state.assertions.header_for(audience.as_deref(), &claims)?;
        res.insert_header(("X-Auth-Request-Assertion", value));
    }
    Ok(res.finish())
}

fn not_signed_in(req: &HttpRequest, state: &AppState) -> AppError {
    if !crate::navigation::is_browser_navigation(req) {
        return AppError::Unauthorized;
    }
    let mut url = format!("{}/signin", state.public_url);
    if let Some(original) = state.proxies.original_url(req) {
        url.push_str("?return_to=");
        url.extend(url::form_urlencoded::byte_serialize(original.as_bytes()));
    }
    AppError::SignInRequired(url)
}
