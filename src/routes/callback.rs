//! GET /redirect: the provider sends the browser back here.

use actix_session::Session;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::config::DEFAULT_PROVIDER;
use crate::directory::{Blocked, EventKind, SeenUser};
use crate::error::AppError;
use crate::identity::now_unix;
use crate::signin::Callback;
use crate::state::AppState;
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
    let mut spent = None;
    let mut provider = None;
    let result = complete(&req, &session, &state, &mut spent, &mut provider).await;
    let mut res = match result {
        Ok(return_to) => {
            state
                .metrics
                .signin_completed(provider.unwrap_or(DEFAULT_PROVIDER));
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, return_to))
                .insert_header(super::no_store())
                .finish()
        }
        Err(e) => {
            state.metrics.signin_failed(e.code(), provider);
            // Refusals of a known user were audited with their subject in `complete`.
            if !matches!(e, AppError::AccessDenied(_)) {
                state.audit.record(
                    super::audit_event(&req, &state, EventKind::SigninRefused).reason(e.code()),
                );
            }
            match spent {
                // The error middleware renders it in the contract's format and keeps cookies.
                Some(_) => HttpResponse::from_error(e),
                None => return Err(e),
            }
        }
    };
    if let Some(cookie) = spent {
        // The sign-in is over either way (its state is redeemed): its binding cookie goes.
        res.add_cookie(&cookie).map_err(|_| AppError::Internal)?;
    }
    Ok(res)
}

/// The callback's work; returns where to send the browser. Once the state is redeemed,
/// `spent` holds the removal of its binding cookie (unless other sign-ins share it), and
/// `provider` the name of the provider the sign-in was started with (a configured one).
async fn complete<'s>(
    req: &HttpRequest,
    session: &Session,
    state: &'s AppState,
    spent: &mut Option<actix_web::cookie::Cookie<'static>>,
    provider_name: &mut Option<&'s str>,
) -> Result<String, AppError> {
    let params = parse(req.query_string())?;
    // Before the state is redeemed: a provider not loaded yet must not cost the sign-in. Only
    // while some provider is not ready is the pending sign-in read first to learn which.
    if !state.providers.all_ready() {
        if let Some(name) =
            crate::signin::provider_of(&state.pending, params.state.as_deref()).await?
        {
            if let Some(entry) = state.providers.of_record(name.as_deref()) {
                if entry.ready().is_none() {
                    *provider_name = Some(entry.name.as_str());
                    return Err(AppError::ProviderUnavailable);
                }
            }
        }
    }
    let (carried, _) = state.binding.carried(req);
    let ids: Vec<&str> = carried.iter().map(|c| c.id.as_str()).collect();
    let redeemed = crate::signin::redeem(&state.pending, &ids, params.state.as_deref()).await?;
    *spent = carried
        .get(redeemed.matched)
        .and_then(|c| state.binding.spent(c));
    // The provider the sign-in was started with, as its pending record says: never one a
    // callback parameter names.
    let entry = state
        .providers
        .of_record(redeemed.provider())
        .ok_or_else(|| {
            tracing::warn!("callback for a provider that is no longer configured");
            AppError::InvalidState(
                "this sign-in was started with an identity provider that is no longer \
                 configured; please sign in again",
            )
        })?;
    *provider_name = Some(entry.name.as_str());
    let provider = entry.ready().ok_or(AppError::ProviderUnavailable)?;
    let signed_in = crate::signin::finish(&provider, redeemed, params).await?;
    let mut identity = signed_in.identity;
    crate::claims::complete(
        &mut identity,
        &entry.needs,
        &provider,
        &signed_in.tokens.access_token,
    )
    .await;
    let refused = |e: AppError| {
        state.audit.record(
            super::audit_event(req, state, EventKind::SigninRefused)
                .subject(&identity.subject)
                .reason(e.code()),
        );
        e
    };
    // A blocked user gets no new session. The directory unreachable: the sign-in goes on
    // (Redis, not the directory, is what serving needs); it logs that it could not tell.
    if state.directory.is_blocked(&identity.subject).await == Blocked::Yes {
        tracing::info!(subject = %identity.subject, "sign-in refused: the user is blocked");
        return Err(refused(AppError::AccessDenied(
            "your account is blocked here; ask your administrator",
        )));
    }
    // Refused users get a clear 403 (saying why) and no session.
    if let Err(refusal) = crate::access::check(&entry.access, &identity) {
        refusal.log(&identity.subject, "at sign-in");
        return Err(refused(refusal.into()));
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
        provider: Some(entry.name.clone()),
        sid: identity
            .raw_claims
            .get("sid")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    };
    crate::session::establish(session, &identity, &signed_in.tokens, &meta)?;
    state.audit.signed_in(
        SeenUser {
            subject: identity.subject.clone(),
            email: identity.email.clone(),
            name: identity.name.clone(),
            at: now_unix(),
        },
        super::audit_event(req, state, EventKind::Signin).subject(&identity.subject),
    );
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
