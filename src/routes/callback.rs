//! GET /redirect: the provider sends the browser back here.

use actix_session::Session;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::AppError;
use crate::identity::now_unix;
use crate::signin::Callback;
use crate::startup::AppState;
use crate::store::record::Meta;

/// Generous for any real provider; larger is an attack or a mistake.
const MAX_QUERY_LEN: usize = 8 * 1024;
const MAX_VALUE_LEN: usize = 4 * 1024;
/// Enough to tell devices apart in the session list.
const MAX_USER_AGENT_CHARS: usize = 256;

pub async fn callback(
    req: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    match complete(&req, &session, &state).await {
        Ok(return_to) => {
            state.metrics.signin_completed();
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, return_to))
                .insert_header(super::no_store())
                .finish())
        }
        Err(e) => {
            state.metrics.signin_failed(e.code());
            Err(e)
        }
    }
}

/// The callback's work; returns where to send the browser.
async fn complete(
    req: &HttpRequest,
    session: &Session,
    state: &AppState,
) -> Result<String, AppError> {
    let params = parse(req.query_string())?;
    let browser_id = state.binding.read(req);
    let signed_in = crate::signin::finish(
        &*state.provider()?,
        &state.pending,
        browser_id.as_deref(),
        params,
    )
    .await?;
    let mut identity = signed_in.identity;
    let provider = state.provider()?;
    crate::claims::complete(
        &mut identity,
        &state.needs,
        &provider,
        &signed_in.tokens.access_token,
    )
    .await;
    // Refused users get a clear 403 (saying why) and no session.
    if let Err(refusal) = crate::access::check(&state.access, &identity) {
        refusal.log(&identity.subject, "at sign-in");
        return Err(refusal.into());
    }
    let meta = Meta {
        handle: crate::random::token(),
        created_at: Some(now_unix()),
        ip: state.proxies.client_ip(req).map(|ip| ip.to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
        provider: Some("default".to_owned()),
        sid: identity
            .raw_claims
            .get("sid")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    };
    crate::session::establish(session, &identity, &signed_in.tokens, &meta)?;
    Ok(signed_in.return_to)
}

/// Reads the callback's parameters: each at most once, bounded in size. Unknown parameters
/// (providers add their own, e.g. `session_state`) are ignored.
fn parse(query: &str) -> Result<Callback, AppError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(AppError::InvalidRequest(
            "the callback's query string is too long".into(),
        ));
    }
    let mut cb = Callback::default();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match key.as_ref() {
            "state" => &mut cb.state,
            "code" => &mut cb.code,
            "iss" => &mut cb.iss,
            "error" => &mut cb.error,
            "error_description" => &mut cb.error_description,
            _ => continue,
        };
        if slot.is_some() {
            return Err(AppError::InvalidRequest(format!(
                "the `{key}` parameter is repeated"
            )));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(AppError::InvalidRequest(format!(
                "the `{key}` parameter is too long"
            )));
        }
        if value.is_empty() {
            return Err(AppError::InvalidRequest(format!(
                "the `{key}` parameter is empty"
            )));
        }
        *slot = Some(printable(&value));
    }
    Ok(cb)
}

/// Keeps what a provider may legitimately send (RFC 6749 limits these to printable ASCII);
/// anything else is replaced, so it can be shown and logged safely.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}
