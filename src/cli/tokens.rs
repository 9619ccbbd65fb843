//! `gatehouse token` (a valid access token on stdout, refreshed when it is about to expire) and
//! `gatehouse logout` (revoke at the provider, forget here).

use std::io::Write;

use crate::identity::{now_unix, Token};
use crate::oauth::ProviderError;

use super::args::Target;
use super::store::{server_key, Entry, Store};
use super::CliError;

/// An access token expiring within this is refreshed first: a `curl` that starts now must not
/// arrive with a dead token.
pub const REFRESH_MARGIN_SECS: u64 = 60;

/// Refreshes and revocations need no redirect URI; the provider client wants one.
const UNUSED_REDIRECT: &str = "http://127.0.0.1/callback";

pub async fn token(target: Target) -> Result<(), CliError> {
    let store = Store::locate(target.store.clone())?;
    let key = server_key(&target.server);
    let signed_out = || CliError::SignedOut(key.clone());
    // Held across the refresh: concurrent `gatehouse token` runs refresh once, and a rotated
    // refresh token is stored before anyone else reads the store.
    let locked = store.lock(false)?;
    let mut all = locked.read()?;
    let mut entry = all.get(&key).cloned().ok_or_else(signed_out)?;
    let fresh = entry
        .expires_at
        .is_none_or(|at| at > now_unix().saturating_add(REFRESH_MARGIN_SECS));
    if !fresh {
        let Some(refresh_token) = entry.refresh_token.clone() else {
            all.remove(&key);
            locked.write(&all)?;
            return Err(signed_out());
        };
        let provider = super::provider(
            &entry.issuer,
            &entry.client_id,
            &entry.scopes,
            UNUSED_REDIRECT,
        )
        .await?;
        match provider.refresh(&refresh_token, &entry.subject).await {
            Ok((new, _)) => {
                entry.access_token = new.access_token;
                // Rotation: the old one is spent; `None` means the provider kept it.
                if let Some(rotated) = new.refresh_token {
                    entry.refresh_token = Some(rotated);
                }
                entry.expires_at = new.expires_at;
                entry.scopes = new.scopes;
                all.insert(&key, entry.clone());
                locked.write(&all)?;
            }
            Err(ProviderError::ErrorResponse(code)) if code == "invalid_grant" => {
                // Revoked, expired or reused: no use keeping it.
                all.remove(&key);
                locked.write(&all)?;
                return Err(signed_out());
            }
            Err(e) => return Err(CliError::Refresh(e)),
        }
    }
    print_token(&entry.access_token)
}

fn print_token(token: &Token) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", token.expose())
        .and_then(|()| out.flush())
        .map_err(CliError::Stdout)
}

pub async fn logout(target: Target) -> Result<(), CliError> {
    let store = Store::locate(target.store.clone())?;
    let key = server_key(&target.server);
    let locked = store.lock(false)?;
    let mut all = locked.read()?;
    let Some(entry) = all.remove(&key) else {
        eprintln!("gatehouse: not signed in to {key}");
        return Ok(());
    };
    let revoked = revoke(&entry).await;
    // Forgotten here whatever the provider said: the user asked to sign out.
    locked.write(&all)?;
    match revoked {
        Ok(true) => eprintln!(
            "gatehouse: signed out of {key}; the provider revoked the session's refresh token"
        ),
        Ok(false) => eprintln!(
            "gatehouse: signed out of {key} (nothing to revoke at the provider, or it cannot \
             revoke: its tokens stay valid until they expire)"
        ),
        Err(e) => return Err(e),
    }
    Ok(())
}

/// `Ok(false)`: no refresh token, or the provider has no revocation endpoint.
async fn revoke(entry: &Entry) -> Result<bool, CliError> {
    let Some(refresh_token) = &entry.refresh_token else {
        return Ok(false);
    };
    let provider = super::provider(
        &entry.issuer,
        &entry.client_id,
        &entry.scopes,
        UNUSED_REDIRECT,
    )
    .await
    .map_err(|e| match e {
        CliError::Provider { source, .. } => CliError::NotRevoked(source),
        other => other,
    })?;
    provider
        .revoke(refresh_token)
        .await
        .map_err(CliError::NotRevoked)
}
