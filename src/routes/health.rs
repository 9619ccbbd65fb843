//! Liveness and readiness.

use std::time::Duration;

use actix_web::{web, HttpResponse};

use crate::error::AppError;
use crate::state::AppState;

/// A dead Redis must make readiness fail fast, not hang the probe.
const READINESS_BOUND: Duration = Duration::from_millis(1500);

/// Liveness: the process answers. Touches no dependency.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(super::no_store())
        .json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: at least one provider is ready (discovery done) and Redis answers a PING within
/// the bound. The body says which providers are ready: one provider down leaves the others
/// signing people in, so it alone does not make the instance unready.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let providers: serde_json::Map<String, serde_json::Value> = state
        .providers
        .iter()
        .map(|e| {
            let word = if e.ready().is_some() {
                "ready"
            } else {
                "unavailable"
            };
            (e.name.clone(), word.into())
        })
        .collect();
    if !providers.values().any(|v| v == "ready") {
        return Err(AppError::ProviderUnavailable);
    }
    match tokio::time::timeout(READINESS_BOUND, state.store.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok()
            .insert_header(super::no_store())
            .json(serde_json::json!({ "status": "ready", "providers": providers }))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: redis ping failed");
            Err(AppError::StoreUnavailable)
        }
        Err(_) => {
            tracing::warn!("readiness: redis ping timed out");
            Err(AppError::StoreUnavailable)
        }
    }
}
