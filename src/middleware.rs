//! Cross-cutting answers: the contract's error format for every error, and the request id.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use tracing_actix_web::RequestId;

use crate::error::{render, AppError, Format};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Makes every error answer follow the contract (JSON or HTML by `Accept`) and tags every
/// answer with `X-Request-Id`.
///
/// Errors reach this point two ways: as responses (handlers, routing, extractors) and as `Err`
/// (actix-session, when its store fails). The request cannot be cloned before routing (actix
/// panics), so an `Err` is answered by returning an error that renders itself.
pub async fn contract_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let format = Format::negotiate(req.headers().get(header::ACCEPT));
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| HeaderValue::from_str(&id.to_string()).ok());

    match next.call(req).await {
        Ok(res) => {
            let mut res = if res.status().as_u16() >= 400 {
                let mut err = match res
                    .response()
                    .error()
                    .and_then(|e| e.as_error::<AppError>())
                {
                    Some(app) => render(app, format),
                    None => render(&AppError::from_status(res.status()), format),
                };
                // Cookies set on the way (a purged session, a replaced cookie) must survive
                // the re-rendering.
                for cookie in res.headers().get_all(header::SET_COOKIE) {
                    err.headers_mut().append(header::SET_COOKIE, cookie.clone());
                }
                let res = res.into_response(err);
                res.map_into_boxed_body()
            } else {
                res.map_into_boxed_body()
            };
            if let Some(id) = request_id {
                res.headers_mut().insert(REQUEST_ID_HEADER, id);
            }
            Ok(res)
        }
        Err(e) => {
            let app = if let Some(app) = e.as_error::<AppError>() {
                app.clone()
            } else if e
                .as_error::<actix_web::error::InternalError<anyhow::Error>>()
                .is_some()
            {
                // actix-session's only way to report a failed store call.
                tracing::warn!(error = %e, "session store call failed");
                AppError::StoreUnavailable
            } else {
                AppError::from_status(e.as_response_error().status_code())
            };
            Err(Rendered {
                err: app,
                format,
                request_id,
            }
            .into())
        }
    }
}

/// An error already negotiated; renders itself when actix turns the `Err` into a response.
#[derive(Debug)]
struct Rendered {
    err: AppError,
    format: Format,
    request_id: Option<HeaderValue>,
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.err.fmt(f)
    }
}

impl ResponseError for Rendered {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.err.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = render(&self.err, self.format);
        if let Some(id) = &self.request_id {
            res.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
        }
        res
    }
}

/// A session stored in the previous release's format is rewritten in the current one (tokens
/// sealed, under a new cookie) by the first request that carries it through actix-session.
pub async fn upgrade_stored_format(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use actix_session::SessionExt;
    crate::session::upgrade_if_needed(&req.get_session());
    next.call(req).await
}
