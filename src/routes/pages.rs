//! GET /: the one page people see: "Sign in", or who is signed in with a sign-out button.

use actix_session::Session;
use actix_web::HttpResponse;
use askama::Template;

use crate::error::AppError;

#[derive(Template)]
#[template(path = "index.html")]
struct Index<'a> {
    who: Option<&'a str>,
    email: Option<&'a str>,
}

pub async fn index(session: Session) -> Result<HttpResponse, AppError> {
    let identity = crate::session::identity(&session);
    let page = Index {
        who: identity
            .as_ref()
            .map(|i| i.name.as_deref().unwrap_or(i.subject.as_str())),
        email: identity.as_ref().and_then(|i| i.email.as_deref()),
    };
    let html = page.render().map_err(|_| AppError::Internal)?;
    Ok(HttpResponse::Ok()
        .insert_header(super::no_store())
        .content_type("text/html; charset=utf-8")
        .body(html))
}
