//! The page that lists the providers, for a `/signin` without `provider=` when several are
//! configured. Plain links (no script, no form): each starts the sign-in at one provider,
//! keeping the page to return to.

use actix_web::HttpResponse;
use askama::Template;

use crate::error::AppError;
use crate::security_headers::PageContext;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "choose.html")]
struct Choose {
    page: PageContext,
    choices: Vec<Choice>,
}

struct Choice {
    label: String,
    href: String,
    ready: bool,
}

/// The chooser for a sign-in that should come back to `return_to` (already sanitised here, so
/// that the page never carries a URL the sign-in would refuse).
pub fn page(state: &AppState, return_to: Option<&str>) -> Result<HttpResponse, AppError> {
    let back = return_to.map(|rt| state.redirects.sanitize(Some(rt)));
    let choices = state
        .providers
        .iter()
        .map(|entry| {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("provider", &entry.name);
            if let Some(back) = &back {
                query.append_pair("return_to", back);
            }
            Choice {
                label: entry.display_name.clone(),
                href: format!("/signin?{}", query.finish()),
                ready: entry.ready().is_some(),
            }
        })
        .collect();
    let html = Choose {
        page: PageContext::current(),
        choices,
    }
    .render()
    .map_err(|_| AppError::Internal)?;
    Ok(HttpResponse::Ok()
        .insert_header(super::no_store())
        .content_type("text/html; charset=utf-8")
        .body(html))
}
