//! `GET /.well-known/gatehouse`: what `gatehouse login --server URL` needs to sign in from the
//! command line, so a user needs only gatehouse's URL. Public and the same for everyone.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};

use crate::config::{CliSettings, ProviderSettings};
use crate::error::AppError;

/// The document, serialized once at start; `None` when command-line sign-in is off.
pub struct GatehouseDocument(Option<String>);

impl GatehouseDocument {
    pub fn new(cli: &CliSettings, provider: &ProviderSettings) -> GatehouseDocument {
        let body = match (&cli.client_id, &provider.issuer) {
            (Some(client_id), Some(issuer)) => Some(
                serde_json::json!({
                    // As providers write it (and as ID tokens carry it): no trailing slash.
                    // Exactly as configured: `iss` values are compared with it as they are.
                    "issuer": issuer,
                    "cli_client_id": client_id,
                    "scopes": cli.scopes,
                })
                .to_string(),
            ),
            _ => None,
        };
        GatehouseDocument(body)
    }
}

pub async fn gatehouse(doc: web::Data<GatehouseDocument>) -> Result<HttpResponse, AppError> {
    let body = doc.0.clone().ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body))
}
