//! GET /signin: start a sign-in and send the browser to the provider.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::AppError;
use crate::startup::AppState;

pub async fn signin(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let return_to = single_param(req.query_string(), "return_to")?;
    let (browser_id, new_cookie) = state.binding.read_or_mint(&req);
    let url = crate::signin::start(
        &state.provider,
        &state.pending,
        &browser_id,
        return_to.as_deref(),
    )
    .await?;
    let mut res = HttpResponse::SeeOther();
    res.insert_header((header::LOCATION, url.as_str()))
        .insert_header(super::no_store());
    if let Some(cookie) = new_cookie {
        res.cookie(cookie);
    }
    Ok(res.finish())
}

/// The value of `name` in a query string; a repeated parameter is ambiguous and refused.
pub fn single_param(query: &str, name: &str) -> Result<Option<String>, AppError> {
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == name {
            if found.is_some() {
                return Err(AppError::InvalidRequest(format!(
                    "the `{name}` parameter is repeated"
                )));
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}
