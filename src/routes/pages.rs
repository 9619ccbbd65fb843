//! GET /: the one page people see: "Sign in", or who is signed in with a sign-out button.

use actix_session::Session;
use actix_web::http::header;
use actix_web::HttpResponse;
use askama::Template;

use crate::error::AppError;
use crate::security_headers::PageContext;

#[derive(Template)]
#[template(path = "index.html")]
struct Index<'a> {
    page: PageContext,
    who: Option<&'a str>,
    email: Option<&'a str>,
}

pub async fn index(session: Session) -> Result<HttpResponse, AppError> {
    let identity = crate::session::identity(&session);
    let page = Index {
        page: PageContext::current(),
        who: identity
            .as_ref()
            .map(|i| i.name.as_deref().unwrap_or(i.subject.as_str())),
        email: identity.as_ref().and_then(|i| i.email.as_deref()),
    };
    let html = page.render().map_err(|_| AppError::Internal)?;
    // Who is signed in is never cached: not by the browser (the back button after sign-out),
    // nor by anything on the way.
    Ok(HttpResponse::Ok()
        .insert_header(super::no_store())
        // Not `no-referrer` (every other answer's): under it, browsers send the sign-out
        // form's POST with `Origin: null`, which the sign-out's cross-site check refuses.
        // `same-origin` still sends no Referer to any other origin, and this page's URL
        // carries nothing secret.
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .content_type("text/html; charset=utf-8")
        .body(html))
}
