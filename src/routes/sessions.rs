//! GET /sessions and POST /sessions/revoke: the signed-in user's own sessions (devices), and
//! ending them. Never a cookie's session id: sessions are named by opaque handles.

use actix_session::Session;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Serialize;

use crate::directory::EventKind;
use crate::error::{AppError, Format};
use crate::security_headers::PageContext;
use crate::state::AppState;
use crate::store::index::Listed;
use crate::store::record::SessionKey;

#[derive(Serialize)]
struct Listing<'a> {
    id: &'a str,
    created_at: Option<u64>,
    last_seen_at: u64,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    current: bool,
}

struct Row<'a> {
    id: &'a str,
    created: String,
    last_seen: String,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    current: bool,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct Page<'a> {
    page: PageContext,
    sessions: Vec<Row<'a>>,
    others: bool,
}

/// Who is asking: their subject, and the record id of the session they ask with.
fn caller(session: &Session) -> Result<(String, String), AppError> {
    let identity = crate::session::identity(session).ok_or(AppError::Unauthorized)?;
    let id = crate::session::with_key(session, |k: SessionKey<'_>| k.id.to_owned())
        .ok_or(AppError::Unauthorized)?;
    Ok((identity.subject, id))
}

pub async fn list(
    req: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let (subject, own_id) = caller(&session)?;
    let listed = state.sessions.index().list(&subject).await?;
    let current = |l: &Listed| l.id == own_id;
    let mut res = HttpResponse::Ok();
    res.insert_header(super::no_store())
        // Same reason as the home page: the revoke forms post to our own origin.
        .insert_header((header::REFERRER_POLICY, "same-origin"));
    match Format::negotiate(req.headers().get(header::ACCEPT)) {
        Format::Json => {
            let sessions: Vec<Listing> = listed
                .iter()
                .map(|l| Listing {
                    id: &l.handle,
                    created_at: l.created_at,
                    last_seen_at: l.last_seen_at,
                    ip: l.ip.as_deref(),
                    user_agent: l.user_agent.as_deref(),
                    current: current(l),
                })
                .collect();
            Ok(res.json(serde_json::json!({ "sessions": sessions })))
        }
        Format::Html => {
            let rows: Vec<Row> = listed
                .iter()
                .map(|l| Row {
                    id: &l.handle,
                    created: l.created_at.map(utc).unwrap_or_else(|| "earlier".into()),
                    last_seen: utc(l.last_seen_at),
                    ip: l.ip.as_deref(),
                    user_agent: l.user_agent.as_deref(),
                    current: current(l),
                })
                .collect();
            let others = rows.iter().any(|r| !r.current);
            let html = Page {
                page: PageContext::current(),
                sessions: rows,
                others,
            }
            .render()
            .map_err(|_| AppError::Internal)?;
            Ok(res.content_type("text/html; charset=utf-8").body(html))
        }
    }
}

/// What the revoke form names: one handle, or every other session.
enum Target {
    One(String),
    AllOthers,
}

fn target(body: &[u8]) -> Result<Target, AppError> {
    let mut id = None;
    let mut all_others = None;
    for (name, value) in url::form_urlencoded::parse(body) {
        let slot = match name.as_ref() {
            "id" => &mut id,
            "all_others" => &mut all_others,
            _ => continue,
        };
        if slot.is_some() {
            return Err(AppError::InvalidRequest(format!(
                "the `{name}` field is repeated"
            )));
        }
        *slot = Some(value.into_owned());
    }
    match (id, all_others.as_deref()) {
        (Some(id), None) if !id.is_empty() && id.len() <= 128 => Ok(Target::One(id)),
        (None, Some("true")) => Ok(Target::AllOthers),
        _ => Err(AppError::InvalidRequest(
            "give either `id` (a session's id) or `all_others=true`".into(),
        )),
    }
}

pub async fn revoke(
    req: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    if !super::signout::same_origin(req.headers(), &state.redirects) {
        tracing::warn!("cross-site session revocation refused");
        return Err(AppError::Forbidden(
            "cross-site requests to end sessions are refused",
        ));
    }
    let (subject, _) = caller(&session)?;
    let index = state.sessions.index();
    match target(&body)? {
        Target::One(handle) => {
            let own = crate::session::meta(&session).is_some_and(|m| m.handle == handle);
            if !index.end_handle(&subject, &handle).await? {
                return Err(AppError::NotFound);
            }
            tracing::info!(subject = %subject, "a session was ended by its user");
            state.audit.record(
                super::audit_event(&req, &state, EventKind::SessionRevoked).subject(&subject),
            );
            if own {
                crate::session::end(&session);
            }
        }
        Target::AllOthers => {
            let own_handle = crate::session::meta(&session).map(|m| m.handle);
            let ended = index.end_all(&subject, own_handle.as_deref()).await?;
            tracing::info!(subject = %subject, ended, "other sessions were ended by their user");
            for _ in 0..ended {
                state.audit.record(
                    super::audit_event(&req, &state, EventKind::SessionRevoked).subject(&subject),
                );
            }
        }
    }
    Ok(match Format::negotiate(req.headers().get(header::ACCEPT)) {
        Format::Json => HttpResponse::NoContent()
            .insert_header(super::no_store())
            .finish(),
        Format::Html => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/sessions"))
            .insert_header(super::no_store())
            .finish(),
    })
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC` (the proleptic Gregorian calendar, days from
/// 1970-01-01 by Howard Hinnant's civil_from_days).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_printed_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_796_062_247), "2026-11-30 18:10 UTC");
    }

    #[test]
    fn the_form_names_one_target() {
        assert!(matches!(target(b"id=abc"), Ok(Target::One(h)) if h == "abc"));
        assert!(matches!(target(b"all_others=true"), Ok(Target::AllOthers)));
        for bad in [
            &b""[..],
            b"id=",
            b"all_others=yes",
            b"id=a&all_others=true",
            b"id=a&id=b",
        ] {
            assert!(target(bad).is_err(), "{bad:?}");
        }
    }
}
