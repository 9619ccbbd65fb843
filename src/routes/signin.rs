//! GET /signin: start a sign-in and send the browser to the provider.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::AppError;
use crate::startup::AppState;

/// The page to come back to, set by a proxy (same name as oauth2-proxy's).
pub const RETURN_TO_HEADER: &str = "x-auth-request-redirect";

pub async fn signin(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    // A proxy may send an XHR here (nginx's error_page 401): it needs a status, not a page.
    if crate::navigation::is_api_request(&req) {
        return Err(AppError::ApiUnauthorized);
    }
    let return_to = match single_param(req.query_string(), "return_to")? {
        Some(rt) => Some(rt),
        // nginx cannot URL-encode the original URI into a query, so it sends it as a header.
        None => req
            .headers()
            .get(RETURN_TO_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let (browser_id, new_cookie) = state.binding.read_or_mint(&req);
    let url = crate::signin::start(
        &*state.provider()?,
        &state.pending,
        &state.redirects,
        &browser_id,
        return_to.as_deref(),
    )
    .await?;
    state.metrics.signin_started();
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
