//! Keeping a session's access token usable: refresh shortly before expiry, exactly once per
//! session at a time across all instances.
//!
//! Rotating refresh tokens are single-use, so two concurrent refreshes of one session would
//! log the user out (the loser presents a spent token and gets `invalid_grant`). Hence: a
//! Redis lease per session, sized from the provider timeout so it outlives the token call; a
//! re-read of the stored session after taking it (someone may have refreshed meanwhile); the
//! new tokens written to Redis before the lease is given back. Requests that find the lease
//! taken serve the still-valid token, or wait briefly for the result when it has expired.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_session::Session;

use crate::error::AppError;
use crate::identity::{now_unix, TokenSet};
use crate::oauth::ProviderError;
use crate::session;
use crate::startup::AppState;

/// How long past the provider timeout a lease lasts: the call is bounded by the timeout, the
/// margin covers writing the result.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Signed in, with a usable access token.
    Live,
    /// Not signed in (any more): answer 401.
    Ended,
}

/// Checks the session's tokens and refreshes them when they are about to expire.
pub async fn ensure_fresh(session: &Session, state: &AppState) -> Result<Outcome, AppError> {
    let Some(times) = session::token_times(session) else {
        return Ok(Outcome::Live);
    };
    let Some(expires_at) = times.expires_at else {
        return Ok(Outcome::Live);
    };
    let now = now_unix();
    if now.saturating_add(state.tokens.refresh_before.as_secs()) < expires_at {
        return Ok(Outcome::Live);
    }
    let still_valid = now < expires_at;
    if !times.refreshable() {
        if still_valid || state.tokens.outlive_access_token {
            return Ok(Outcome::Live);
        }
        tracing::info!("access token expired and cannot be refreshed: session ended");
        session::end(session);
        return Ok(Outcome::Ended);
    }
    let (Some(key), Some(provider)) = (session::key(session), state.provider.get()) else {
        return Ok(if still_valid {
            Outcome::Live
        } else {
            Outcome::Ended
        });
    };
    let lease_time = provider.settings().timeout + LEASE_MARGIN;
    match state.locks.try_acquire(&key, lease_time).await? {
        Some(lease) => {
            let outcome = refresh_holding_lease(session, state, &provider, &key, expires_at).await;
            // Give the lease back whatever happened; an error here only delays the next one.
            if let Err(e) = state.locks.release(lease).await {
                tracing::warn!(error = %e, "could not release a refresh lease");
            }
            outcome
        }
        None if still_valid => Ok(Outcome::Live),
        None => wait_for_other_refresh(session, state, &key, expires_at, lease_time).await,
    }
}

async fn refresh_holding_lease(
    session: &Session,
    state: &AppState,
    provider: &crate::oauth::Provider,
    key: &str,
    seen_expires_at: u64,
) -> Result<Outcome, AppError> {
    let Some(mut stored) = state.sessions.read(key).await? else {
        // Signed out (or expired) meanwhile.
        return Ok(Outcome::Ended);
    };
    let Some(current) = stored_tokens(&stored) else {
        return Ok(Outcome::Ended);
    };
    if current.expires_at != Some(seen_expires_at) {
        // Another request refreshed while we were getting here: adopt its result.
        adopt(session, &current)?;
        return Ok(Outcome::Live);
    }
    let Some(identity) = session::identity(session) else {
        return Ok(Outcome::Ended);
    };
    if let Err(e) = crate::access::check(&state.access, &identity) {
        tracing::info!("access policy no longer admits this user: session ended");
        end_everywhere(session, state, key).await?;
        return Err(e);
    }
    let Some(refresh_token) = current.refresh_token.clone() else {
        return Ok(if now_unix() < seen_expires_at {
            Outcome::Live
        } else {
            Outcome::Ended
        });
    };
    match provider.refresh(&refresh_token, &identity.subject).await {
        Ok(fresh) => {
            let merged = TokenSet {
                access_token: fresh.access_token,
                // The provider did not rotate it: the old one stays valid.
                refresh_token: fresh.refresh_token.or(current.refresh_token),
                id_token: fresh.id_token.or(current.id_token),
                expires_at: fresh.expires_at,
                scopes: if fresh.scopes.is_empty() {
                    current.scopes
                } else {
                    fresh.scopes
                },
            };
            let encoded = serde_json::to_string(&merged).map_err(|_| AppError::Internal)?;
            stored.insert(session::TOKENS.to_owned(), encoded);
            if !state.sessions.replace(key, &stored).await? {
                return Ok(Outcome::Ended);
            }
            adopt(session, &merged)?;
            state.metrics.refreshed("ok");
            tracing::info!(subject = %identity.subject, "access token refreshed");
            Ok(Outcome::Live)
        }
        Err(ProviderError::ErrorResponse(code)) if code == "invalid_grant" => {
            state.metrics.refreshed("invalid_grant");
            tracing::info!("refresh token refused (invalid_grant): session ended");
            end_everywhere(session, state, key).await?;
            Ok(Outcome::Ended)
        }
        Err(e) => {
            state.metrics.refreshed("failed");
            // A provider outage must not log anyone out before their token actually expires.
            tracing::warn!(reason = %e, "refresh failed; keeping the session while the token lasts");
            Ok(if now_unix() < seen_expires_at {
                Outcome::Live
            } else {
                Outcome::Ended
            })
        }
    }
}

/// Someone else holds the lease and our token has expired: wait (bounded) for their result.
async fn wait_for_other_refresh(
    session: &Session,
    state: &AppState,
    key: &str,
    seen_expires_at: u64,
    bound: Duration,
) -> Result<Outcome, AppError> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        let Some(stored) = state.sessions.read(key).await? else {
            return Ok(Outcome::Ended);
        };
        if let Some(current) = stored_tokens(&stored) {
            if current.expires_at != Some(seen_expires_at) {
                adopt(session, &current)?;
                return Ok(Outcome::Live);
            }
        }
    }
    Ok(Outcome::Ended)
}

fn stored_tokens(stored: &HashMap<String, String>) -> Option<TokenSet> {
    stored
        .get(session::TOKENS)
        .and_then(|t| serde_json::from_str(t).ok())
}

/// Puts tokens already stored in Redis into this request's session snapshot, so the
/// middleware's write at the end of the request repeats them instead of older ones.
fn adopt(session: &Session, tokens: &TokenSet) -> Result<(), AppError> {
    session
        .insert(session::TOKENS, tokens)
        .map_err(|_| AppError::Internal)
}

async fn end_everywhere(session: &Session, state: &AppState, key: &str) -> Result<(), AppError> {
    state.sessions.delete_now(key).await?;
    session::end(session);
    Ok(())
}
