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
use crate::error::AppError;
use crate::identity::{now_unix, Identity};
use crate::refresh::{Outcome, Seen};
use crate::startup::AppState;
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
    let Some(cookie) = state.session_cookie.read(req.headers()) else {
        return Err(not_signed_in(&req, &state));
    };
    let Some(key) = SessionKey::parse(&cookie) else {
        return Err(not_signed_in(&req, &state));
    };
    let Some(bytes) = state.sessions.touch(key.id).await? else {
        return Err(not_signed_in(&req, &state));
    };
    let view = match record::view(&bytes) {
        Ok(view) => view,
        Err(e) => {
            tracing::warn!(error = %e, "stored session could not be read");
            return Err(not_signed_in(&req, &state));
        }
    };
    let index = state.sessions.index();
    if index.past_lifetime(view.created_at, now_unix()) {
        tracing::info!("session reached its absolute lifetime: ended");
        index.end(key.id).await?;
        return Err(not_signed_in(&req, &state));
    }
    let seen = Seen {
        id: key.id,
        key: key.key,
        expires_at: view.expires_at,
        refreshable: view.refreshable,
    };
    let refreshed = match state.refresher.ensure_fresh(seen).await? {
        Outcome::Live => None,
        Outcome::Refreshed(session) => Some(session),
        Outcome::Ended => return Err(not_signed_in(&req, &state)),
        Outcome::Refused => {
            return Err(AppError::AccessDenied(
                "you are no longer allowed here; ask your administrator for access",
            ))
        }
    };
    let answer = match &refreshed {
        Some(session) => Answer::of_identity(&session.identity, &view),
        None => Answer::of_view(&view),
    };
    let who = Who {
        email: answer.email,
        email_verified: answer.email_verified,
        groups: &answer.groups,
    };
    let provider = view.provider.as_deref().unwrap_or("default");
    let checked = crate::access::check_who(&state.access, &who)
        .and_then(|()| crate::access::check_route(&state.access, &rules, &who, provider));
    if let Err(refusal) = checked {
        refusal.log(answer.subject, "by /auth");
        return Err(refusal.into());
    }

    let mut res = HttpResponse::Ok();
    res.insert_header(super::no_store());
    add(&mut res, "x-auth-request-user", answer.subject);
    if crate::access::email_counts_as_verified(&state.access, &who) {
        if let Some(email) = answer.email {
            add(&mut res, "x-auth-request-email", email);
        }
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
    if state.forward.pass_access_token {
        let access_token = match &refreshed {
            Some(session) => Some(session.tokens.access_token.clone()),
            None => record::decode(&bytes, key.id, key.key.as_ref())
                .ok()
                .map(|s| s.tokens.access_token),
        };
        if let Some(token) = access_token {
            add(&mut res, "x-auth-request-access-token", token.expose());
        }
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

    fn of_identity(identity: &'a Identity, view: &'a AuthView<'a>) -> Self {
        let _ = view;
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
