//! Keeping a session's access token usable: refresh shortly before expiry, exactly once per
//! session at a time across all instances, and to the end even when the client goes away.
//!
//! Rotating refresh tokens are single-use: two concurrent refreshes of one session would log the
//! user out (the loser presents a spent token, and some providers then revoke the whole family).
//! Hence:
//! - a Redis lease per session, sized to outlast the whole critical section (the token call and
//!   a JWKS refetch, each bounded by the provider timeout), and the critical section itself
//!   bounded below the lease;
//! - the refresh runs in a task of its own: a proxy that drops the connection after the provider
//!   rotated the token cannot lose the new one;
//! - the new tokens are written only while the lease is still ours, and the lease is given back
//!   in the same atomic step (and on every other path);
//! - within an instance, requests for one session share one refresh (or one wait): requests
//!   that find another instance refreshing wait with a backoff, one poller per session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::claims::ClaimNeeds;
use crate::config::{TokenSettings, DEFAULT_PROVIDER};
use crate::directory::{Audit, AuditEvent, EventKind};
use crate::identity::{now_unix, Identity, TokenSet};
use crate::metrics::Metrics;
use crate::oauth::{Provider, ProviderError};
use crate::providers::{ProviderEntry, Providers};
use crate::store::index::SessionIndex;
use crate::store::locks::Locks;
use crate::store::record::{Session, KEY_LEN};
use crate::store::sessions::{LeasedWrite, RedisSessionStore};
use crate::store::StoreError;

/// What the lease outlives the critical section by: the final write and the release.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Waiting for another instance's refresh: first poll, and the longest gap between polls.
const FIRST_POLL: Duration = Duration::from_millis(50);
const MAX_POLL: Duration = Duration::from_millis(800);

#[derive(Debug, Clone)]
pub enum Outcome {
    /// Signed in; the stored tokens are (still) usable.
    Live,
    /// Signed in with newer tokens (and possibly newer claims) than the caller read.
    Refreshed(Box<Session>),
    /// Not signed in (any more): answer 401.
    Ended,
    /// The access rules no longer admit the user (their claims changed): the session ended;
    /// answer 403.
    Refused,
}

/// What the caller read of the session: enough to decide whether a refresh is due.
pub struct Seen<'a> {
    pub id: &'a str,
    pub key: Option<[u8; KEY_LEN]>,
    pub expires_at: Option<u64>,
    pub refreshable: bool,
    /// The session's provider (`None`: the default one): the refresh goes there.
    pub provider: Option<&'a str>,
}

type Shared = watch::Receiver<Option<Result<Outcome, ()>>>;

pub struct Refresher {
    sessions: RedisSessionStore,
    locks: Locks,
    /// Each session is refreshed at its own provider, under that provider's rules.
    providers: Arc<Providers>,
    settings: TokenSettings,
    metrics: Arc<Metrics>,
    audit: Audit,
    /// Refreshes (or waits) under way in this process, by record id.
    inflight: Mutex<HashMap<String, Shared>>,
}

impl Refresher {
    /// The parts a refresh touches, each named (built once, in `startup`).
    pub fn new(
        sessions: RedisSessionStore,
        locks: Locks,
        providers: Arc<Providers>,
        settings: TokenSettings,
        metrics: Arc<Metrics>,
        audit: Audit,
    ) -> Self {
        Refresher {
            sessions,
            locks,
            providers,
            settings,
            metrics,
            audit,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    fn index(&self) -> &SessionIndex {
        self.sessions.index()
    }

    /// Usually nothing to do; near expiry, one refresh per session across instances.
    pub async fn ensure_fresh(self: &Arc<Self>, seen: Seen<'_>) -> Result<Outcome, StoreError> {
        let Some(expires_at) = seen.expires_at else {
            return Ok(Outcome::Live);
        };
        let now = now_unix();
        if now.saturating_add(self.settings.refresh_before.as_secs()) < expires_at {
            return Ok(Outcome::Live);
        }
        let still_valid = now < expires_at;
        if !seen.refreshable {
            if still_valid || self.settings.outlive_access_token {
                return Ok(Outcome::Live);
            }
            tracing::info!("access token expired and cannot be refreshed: session ended");
            self.index().end(seen.id).await?;
            return Ok(Outcome::Ended);
        }
        let provider = seen.provider.unwrap_or(DEFAULT_PROVIDER).to_owned();
        let (mut shared, started) = self.shared_refresh(seen.id, seen.key, expires_at, provider);
        if still_valid && !started {
            // The token still serves: the refresh under way goes on without this request.
            return Ok(Outcome::Live);
        }
        // This request may be dropped here (the client went away): the task goes on.
        let outcome = match shared.wait_for(Option::is_some).await {
            Ok(done) => done.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(outcome)) => Ok(outcome),
            Some(Err(())) | None => Err(StoreError::Unavailable(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the session could not be refreshed",
            )))),
        }
    }

    /// Joins the refresh under way in this process for `id`, or starts one in its own task
    /// (then `true`: the request that starts a refresh waits for its result).
    fn shared_refresh(
        self: &Arc<Self>,
        id: &str,
        key: Option<[u8; KEY_LEN]>,
        seen: u64,
        provider: String,
    ) -> (Shared, bool) {
        let Ok(mut inflight) = self.inflight.lock() else {
            // A poisoned map only loses the sharing, never the refresh.
            return (self.spawn(id.to_owned(), key, seen, provider, false), true);
        };
        if let Some(rx) = inflight.get(id) {
            return (rx.clone(), false);
        }
        let rx = self.spawn(id.to_owned(), key, seen, provider, true);
        inflight.insert(id.to_owned(), rx.clone());
        (rx, true)
    }

    fn spawn(
        self: &Arc<Self>,
        id: String,
        key: Option<[u8; KEY_LEN]>,
        seen: u64,
        provider: String,
        shared: bool,
    ) -> Shared {
        let (tx, rx) = watch::channel(None);
        let this = Arc::clone(self);
        actix_web::rt::spawn(async move {
            let outcome = this.run(&id, key, seen, &provider).await.map_err(|e| {
                tracing::warn!(error = %e, "redis call failed during a refresh");
            });
            if shared {
                if let Ok(mut inflight) = this.inflight.lock() {
                    inflight.remove(&id);
                }
            }
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    async fn run(
        &self,
        id: &str,
        key: Option<[u8; KEY_LEN]>,
        seen: u64,
        provider_name: &str,
    ) -> Result<Outcome, StoreError> {
        let still_valid = || now_unix() < seen;
        // A provider no longer configured cannot refresh: its sessions last while their
        // tokens do, as with a provider that is down.
        let Some(entry) = self.providers.get(provider_name) else {
            tracing::warn!("session of a provider no longer configured: not refreshed");
            return Ok(if still_valid() {
                Outcome::Live
            } else {
                Outcome::Ended
            });
        };
        let Some(provider) = entry.ready() else {
            return Ok(if still_valid() {
                Outcome::Live
            } else {
                Outcome::Ended
            });
        };
        let timeout = provider.settings().timeout;
        // The token call, then perhaps a JWKS refetch for a new ID token: each bounded by the
        // provider timeout. The lease outlives both, with a margin for the write.
        let critical = timeout * 2;
        let lease_time = critical + LEASE_MARGIN;
        let Some(lease) = self.locks.try_acquire(id, lease_time).await? else {
            if still_valid() {
                return Ok(Outcome::Live);
            }
            return self.wait_for_other(id, key, seen, lease_time).await;
        };
        let refresh = self.refresh(entry, &provider, id, key, seen, &lease);
        let outcome = match tokio::time::timeout(critical, refresh).await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::warn!(
                    "refresh took longer than its bound; keeping the session while the token lasts"
                );
                self.metrics.refreshed("timeout", &entry.name);
                Ok(if still_valid() {
                    Outcome::Live
                } else {
                    Outcome::Ended
                })
            }
        };
        // Every path gives the lease back (a no-op when the write already did).
        if let Err(e) = self.locks.release(lease).await {
            tracing::warn!(error = %e, "could not release a refresh lease");
        }
        outcome
    }

    async fn refresh(
        &self,
        entry: &ProviderEntry,
        provider: &Provider,
        id: &str,
        key: Option<[u8; KEY_LEN]>,
        seen: u64,
        lease: &crate::store::locks::Lease,
    ) -> Result<Outcome, StoreError> {
        let still_valid = now_unix() < seen;
        let Some(mut current) = self.sessions.read(id, key.as_ref()).await? else {
            // Signed out (or expired) meanwhile.
            return Ok(Outcome::Ended);
        };
        if current.tokens.expires_at != Some(seen) {
            // Refreshed while we were getting here: adopt that result.
            return Ok(Outcome::Refreshed(Box::new(current)));
        }
        let Some(refresh_token) = current.tokens.refresh_token.clone() else {
            return Ok(if still_valid {
                Outcome::Live
            } else {
                Outcome::Ended
            });
        };
        match provider
            .refresh(&refresh_token, &current.identity.subject)
            .await
        {
            Ok((fresh, identity)) => {
                current.tokens = merge(current.tokens, fresh);
                if let Some(newer) = identity {
                    current.identity = renewed_identity(
                        current.identity,
                        newer,
                        &entry.needs,
                        provider,
                        &current.tokens,
                    )
                    .await;
                }
                if let Err(refusal) = crate::access::check(&entry.access, &current.identity) {
                    refusal.log(&current.identity.subject, "after a refresh");
                    self.audit.record(
                        AuditEvent::new(EventKind::RefreshFailed)
                            .subject(&current.identity.subject)
                            .reason("access_denied"),
                    );
                    self.index().end(id).await?;
                    self.metrics.refreshed("refused", &entry.name);
                    return Ok(Outcome::Refused);
                }
                match self
                    .sessions
                    .write_under_lease(id, key.as_ref(), &current, lease)
                    .await?
                {
                    LeasedWrite::Written => {}
                    LeasedWrite::Gone => return Ok(Outcome::Ended),
                    LeasedWrite::LeaseLost => {
                        // Only when Redis or this process stalled past the lease: the tokens
                        // serve this request, the next refresh starts from what is stored.
                        tracing::warn!("refresh lease expired before the write; tokens not stored");
                    }
                }
                self.metrics.refreshed("ok", &entry.name);
                tracing::info!(subject = %current.identity.subject, "access token refreshed");
                Ok(Outcome::Refreshed(Box::new(current)))
            }
            Err(ProviderError::ErrorResponse(code)) if code == "invalid_grant" => {
                self.metrics.refreshed("invalid_grant", &entry.name);
                tracing::info!("refresh token refused (invalid_grant): session ended");
                self.audit.record(
                    AuditEvent::new(EventKind::RefreshFailed)
                        .subject(&current.identity.subject)
                        .reason("invalid_grant"),
                );
                self.index().end(id).await?;
                Ok(Outcome::Ended)
            }
            Err(e) => {
                self.metrics.refreshed("failed", &entry.name);
                // A provider outage must not log anyone out before their token actually expires.
                tracing::warn!(reason = %e, "refresh failed; keeping the session while the token lasts");
                Ok(if still_valid {
                    Outcome::Live
                } else {
                    Outcome::Ended
                })
            }
        }
    }

    /// Another instance holds the lease and our token has expired: wait (bounded) for its
    /// result, polling with a growing gap.
    async fn wait_for_other(
        &self,
        id: &str,
        key: Option<[u8; KEY_LEN]>,
        seen: u64,
        bound: Duration,
    ) -> Result<Outcome, StoreError> {
        let deadline = Instant::now() + bound;
        let mut gap = FIRST_POLL;
        while Instant::now() < deadline {
            tokio::time::sleep(gap).await;
            gap = (gap * 2).min(MAX_POLL);
            let Some(current) = self.sessions.read(id, key.as_ref()).await? else {
                return Ok(Outcome::Ended);
            };
            if current.tokens.expires_at != Some(seen) {
                return Ok(Outcome::Refreshed(Box::new(current)));
            }
        }
        Ok(Outcome::Ended)
    }
}

/// The provider's answer over what we had: a refresh token or ID token it did not send again
/// stays as it was.
fn merge(current: TokenSet, fresh: TokenSet) -> TokenSet {
    TokenSet {
        access_token: fresh.access_token,
        refresh_token: fresh.refresh_token.or(current.refresh_token),
        id_token: fresh.id_token.or(current.id_token),
        expires_at: fresh.expires_at,
        scopes: if fresh.scopes.is_empty() {
            current.scopes
        } else {
            fresh.scopes
        },
    }
}

/// The identity a refreshed ID token states, over what we knew: claims may have changed
/// (groups above all); what the new token leaves out stays as it was.
async fn renewed_identity(
    old: Identity,
    mut newer: Identity,
    needs: &ClaimNeeds,
    provider: &Provider,
    tokens: &TokenSet,
) -> Identity {
    crate::claims::complete(&mut newer, needs, provider, &tokens.access_token).await;
    let has_groups =
        crate::claims::lookup(&newer.raw_claims, needs.groups.iter().map(String::as_str)).is_some();
    Identity {
        email: newer.email.or(old.email),
        email_verified: newer.email_verified.or(old.email_verified),
        name: newer.name.or(old.name),
        preferred_username: newer.preferred_username.or(old.preferred_username),
        groups: if has_groups { newer.groups } else { old.groups },
        claims: {
            let mut claims = old.claims;
            claims.extend(newer.claims);
            claims
        },
        subject: newer.subject,
        ..Identity::default()
    }
}
