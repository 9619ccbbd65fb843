//! GET /auth: the reverse proxy asks whether this request's user may go where it is going.
//!
//! The hot path, outside actix-session: the cookie's signature checked once, one `GETEX` of
//! the flat record, only the fields the answer needs read (borrowed where JSON allows), the
//! tokens left sealed unless a refresh is due or the access token is forwarded.

use std::borrow::Cow;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::access::{RouteRules, Who};
use crate::assertion::AssertionClaims;
use crate::error::AppError;
use crate::identity::{now_unix, Identity};
use crate::providers::ProviderEntry;
use crate::refresh::{Outcome, Seen};
use crate::state::AppState;
use crate::store::record::{self, AuthView, SessionKey};

/// What a header value must not carry as is: control characters (and, so that an encoded
/// value decodes unambiguously, `%`). Non-ASCII is always encoded.
const NOT_HEADER_SAFE: &AsciiSet = &CONTROLS.add(b'%');

/// 200 with identity headers, 401, or 403 when signed in but a rule refuses. Never a redirect:
/// proxies and XHRs need a status. A browser page load gets a 401 page that leads to sign-in
/// (for proxies such as Traefik and Caddy that show gatehouse's answer to the browser),
/// returning to the page it asked for when a trusted proxy said which.
pub async fn forward_auth(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let rules = RouteRules::parse(req.query_string())?;
    // An API client's bearer token, when enabled; without one the session cookie decides.
    if let (Some(bearer), Some(token)) = (&state.bearer, crate::bearer::token_in(req.headers())) {
        // Bearer tokens are the default provider's (or an extra issuer's), under [access].
        let entry = state.providers.primary();
        let provider = entry.ready();
        let token = bearer
            .verify(token?, provider.as_ref().and_then(|p| p.keys()))
            .await?;
        let claims: Vec<(&str, String)> = token
            .claims
            .iter()
            .filter_map(|(path, value)| crate::claims::text(value).map(|v| (path.as_str(), v)))
            .collect();
        let answer = Answer {
            subject: &token.subject,
            email: token.email.as_deref(),
            email_verified: token.email_verified,
            preferred_username: token.preferred_username.as_deref(),
            groups: token.groups.iter().map(String::as_str).collect(),
            claims: claims.iter().map(|(k, v)| (*k, v.as_str())).collect(),
        };
        return respond(&req, &state, &rules, &answer, entry, None);
    }
    let Some(cookie) = state.session_cookie.read(req.headers()) else {
        return Err(not_signed_in(&req, &state, &rules));
    };
    let Some(key) = SessionKey::parse(&cookie) else {
        return Err(not_signed_in(&req, &state, &rules));
    };
    let Some(bytes) = state.sessions.touch(key.id).await? else {
        return Err(not_signed_in(&req, &state, &rules));
    };
    let view = match record::view(&bytes) {
        Ok(view) => view,
        Err(e) => {
            tracing::warn!(error = %e, "stored session could not be read");
            return Err(not_signed_in(&req, &state, &rules));
        }
    };
    // The session's provider decides its rules; a provider no longer configured signs no one
    // in any more.
    let Some(entry) = state.providers.of_record(view.provider.as_deref()) else {
        tracing::info!("session of a provider no longer configured: not signed in");
        return Err(not_signed_in(&req, &state, &rules));
    };
    let index = state.sessions.index();
    if index.past_lifetime(view.created_at, now_unix()) {
        tracing::info!("session reached its absolute lifetime: ended");
        index.end(key.id).await?;
        return Err(not_signed_in(&req, &state, &rules));
    }
    let seen = Seen {
        id: key.id,
        key: key.key,
        expires_at: view.expires_at,
        refreshable: view.refreshable,
        provider: Some(&entry.name),
    };
    let refreshed = match state.refresher.ensure_fresh(seen).await? {
        Outcome::Live => None,
        Outcome::Refreshed(session) => Some(session),
        Outcome::Ended => return Err(not_signed_in(&req, &state, &rules)),
        Outcome::Refused => {
            return Err(AppError::AccessDenied(
                "you are no longer allowed here; ask your administrator for access",
            ))
        }
    };
    let answer = match &refreshed {
        Some(session) => Answer::of_identity(&session.identity),
        None => Answer::of_view(&view),
    };
    let access_token = match (state.forward.pass_access_token, &refreshed) {
        (false, _) => None,
        (true, Some(session)) => Some(session.tokens.access_token.clone()),
        (true, None) => record::decode(&bytes, key.id, key.key.as_ref())
            .ok()
            .map(|s| s.tokens.access_token),
    };
    respond(
        &req,
        &state,
        &rules,
        &answer,
        entry,
        access_token.as_ref().map(|t| t.expose()),
    )
}

/// The rules, then the 200 with the identity headers (and the signed assertion, when on).
fn respond(
    req: &HttpRequest,
    state: &AppState,
    rules: &RouteRules,
    answer: &Answer<'_>,
    provider: &ProviderEntry,
    access_token: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let policy = &provider.access;
    let who = Who {
        email: answer.email,
        email_verified: answer.email_verified,
        groups: &answer.groups,
    };
    let checked = crate::access::check_who(policy, &who)
        .and_then(|()| crate::access::check_route(policy, rules, &who, &provider.name));
    if let Err(refusal) = checked {
        refusal.log(answer.subject, "by /auth");
        return Err(refusal.into());
    }

    let mut res = HttpResponse::Ok();
    res.insert_header(super::no_store());
    add(&mut res, "x-auth-request-user", answer.subject);
    let verified_email = answer
        .email
        .filter(|_| crate::access::email_counts_as_verified(policy, &who));
    if let Some(email) = verified_email {
        add(&mut res, "x-auth-request-email", email);
    }
    if let Some(name) = answer.preferred_username {
        add(&mut res, "x-auth-request-preferred-username", name);
    }
    if !answer.groups.is_empty() {
        add(&mut res, "x-auth-request-groups", &answer.groups.join(","));
    }
    for header in &state.forward.claim_headers {
        if let Some(value) = answer.claim(&header.claim) {
            add_named(&mut res, header.header.clone(), value);
        }
    }
    if let Some(token) = access_token {
        add(&mut res, "x-auth-request-access-token", token);
    }
    if state.forward.assertion {
        let groups: Vec<String> = answer.groups.iter().map(|g| (*g).to_owned()).collect();
        let claims = AssertionClaims {
            subject: answer.subject,
            email: verified_email,
            groups: &groups,
        };
        let audience = state.proxies.original_origin(req);
        let value = state.assertions.header_for(audience.as_deref(), &claims)?;
        res.insert_header((HeaderName::from_static("x-auth-request-assertion"), value));
    }
    Ok(res.finish())
}

/// The facts the answer is made of, from the stored view or from a just-refreshed identity.
struct Answer<'a> {
    subject: &'a str,
    email: Option<&'a str>,
    email_verified: Option<bool>,
    preferred_username: Option<&'a str>,
    groups: Vec<&'a str>,
    claims: Vec<(&'a str, &'a str)>,
}

impl<'a> Answer<'a> {
    fn of_view(view: &'a AuthView<'a>) -> Self {
        Answer {
            subject: &view.subject,
            email: view.email.as_deref(),
            email_verified: view.email_verified,
            preferred_username: view.preferred_username.as_deref(),
            groups: view.groups.iter().map(Cow::as_ref).collect(),
            claims: view
                .claims
                .iter()
                .map(|(k, v)| (k.as_ref(), v.as_ref()))
                .collect(),
        }
    }

    fn of_identity(identity: &'a Identity) -> Self {
        Answer {
            subject: &identity.subject,
            email: identity.email.as_deref(),
            email_verified: identity.email_verified,
            preferred_username: identity.preferred_username.as_deref(),
            groups: identity.groups.iter().map(String::as_str).collect(),
            claims: identity
                .claims
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }

    fn claim(&self, path: &str) -> Option<&'a str> {
        self.claims
            .iter()
            .find(|(k, _)| *k == path)
            .map(|(_, v)| *v)
    }
}

/// Sets a header, percent-encoding (UTF-8) a value that is not plain printable ASCII: the
/// subject in particular is never silently dropped from a 200.
fn add(res: &mut HttpResponseBuilder, name: &'static str, value: &str) {
    add_named(res, HeaderName::from_static(name), value)
}

fn add_named(res: &mut HttpResponseBuilder, name: HeaderName, value: &str) {
    let plain = value.bytes().all(|b| (b' '..=b'~').contains(&b));
    let value = if plain {
        HeaderValue::from_str(value)
    } else {
        HeaderValue::from_str(&utf8_percent_encode(value, NOT_HEADER_SAFE).to_string())
    };
    // Both forms are visible ASCII by construction; a failure here would be a bug.
    if let Ok(v) = value {
        res.insert_header((name, v));
    }
}

/// 401; for a page load, a page that leads to sign-in (at the provider the route asks for,
/// when it names a configured one).
fn not_signed_in(req: &HttpRequest, state: &AppState, rules: &RouteRules) -> AppError {
    if !crate::navigation::is_browser_navigation(req) {
        return AppError::Unauthorized;
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(entry) = rules
        .provider
        .as_deref()
        .and_then(|n| state.providers.get(n))
    {
        query.append_pair("provider", &entry.name);
    }
    if let Some(original) = state.proxies.original_url(req) {
        query.append_pair("return_to", &original);
    }
    let query = query.finish();
    let mut url = format!("{}/signin", state.public_url);
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    AppError::SignInRequired(url)
}
