//! The sign-in flow: start (state, PKCE, nonce, pending record) and finish (the callback's
//! checks, in the order RFC 9700 asks, then the exchange).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::browser::same_secret;
use crate::error::AppError;
use crate::identity::{now_unix, Identity, TokenSet};
use crate::oauth::{Provider, ProviderError};
use crate::random::token;
use crate::return_to::RedirectPolicy;
use crate::store::pending::{Admission, PendingSignIn, PendingSignIns};
use crate::store::StoreError;

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "redis call failed");
                AppError::StoreUnavailable
            }
            StoreError::Record(e) => {
                tracing::warn!(error = %e, "stored session could not be read");
                AppError::Unauthorized
            }
            StoreError::Corrupt(e) => {
                // Not the client's fault, but not worth a 500 either: the record is unusable,
                // so the sign-in must start again. `e` says what kind of fault and where,
                // never the stored content (which may hold a verifier, a nonce or a token).
                tracing::warn!(
                    category = e.category,
                    line = e.line,
                    column = e.column,
                    "stored data could not be read"
                );
                AppError::InvalidState(
                    "this sign-in can no longer be completed; please sign in again",
                )
            }
        }
    }
}

impl From<ProviderError> for AppError {
    fn from(e: ProviderError) -> Self {
        tracing::warn!(reason = %e, "token exchange failed");
        AppError::ExchangeFailed
    }
}

/// Starts a sign-in for `browser_id` at `provider` (configured as `provider_name`), on behalf
/// of `client` (who the per-client limit counts; `None` when unknown); returns the provider URL
/// to send the browser to.
pub async fn start(
    provider: &Provider,
    provider_name: &str,
    pending: &PendingSignIns,
    redirects: &RedirectPolicy,
    browser_id: &str,
    client: Option<&str>,
    requested_return_to: Option<&str>,
) -> Result<url::Url, AppError> {
    let state = token();
    let nonce = provider.settings().wants_openid().then(token);
    let request = provider.authorization_request(&state, nonce.as_deref());
    let record = PendingSignIn {
        browser_id: browser_id.to_owned(),
        pkce_verifier: request.pkce_verifier,
        nonce,
        return_to: redirects.sanitize(requested_return_to),
        created_at: now_unix(),
        provider: Some(provider_name.to_owned()),
    };
    match pending.put(&state, &record, client).await? {
        Admission::Admitted => Ok(request.url),
        Admission::ClientLimited(wait) => {
            // Per request, so not above debug: a flood must not become a flood of log lines.
            tracing::debug!("sign-in refused: this client's limit per minute is reached");
            Err(AppError::RateLimited(retry_after(wait)))
        }
        Admission::Full(wait) => {
            warn_at_most_once_a_minute();
            Err(AppError::RateLimited(retry_after(wait)))
        }
        Admission::Exists => {
            // 256 random bits collided: something is badly wrong with the RNG.
            tracing::error!("a freshly drawn state already exists");
            Err(AppError::Internal)
        }
    }
}

/// `Retry-After` in whole seconds, 1–60 as the contract says.
fn retry_after(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).clamp(1, 60) as u64
}

/// Every sign-in is refused while the global cap is reached: operators must hear of it, but a
/// flood must not flood the log.
fn warn_at_most_once_a_minute() {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_unix();
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 60
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            "sign-ins refused: SIGNIN__MAX_PENDING sign-ins are pending (a flood, or a limit \
             too low); logged at most once a minute"
        );
    }
}

/// The callback's parameters, already checked for shape.
#[derive(Default)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

pub struct SignedIn {
    pub identity: Identity,
    pub tokens: TokenSet,
    pub return_to: String,
}

/// A pending sign-in redeemed by the browser that started it.
pub struct Redeemed {
    record: PendingSignIn,
    /// Which of the browser ids offered carried the binding.
    pub matched: usize,
}

impl Redeemed {
    /// The name of the provider the sign-in was started with (`None`: the default one).
    pub fn provider(&self) -> Option<&str> {
        self.record.provider.as_deref()
    }
}

/// Which provider the pending sign-in `state` was started with, without redeeming it:
/// `Some(name)` (`Some(None)`: the default one), or `None` when there is no such sign-in (the
/// redemption will say so).
pub async fn provider_of(
    pending: &PendingSignIns,
    state: Option<&str>,
) -> Result<Option<Option<String>>, AppError> {
    let Some(state) = state.filter(|s| looks_like_state(s)) else {
        return Ok(None);
    };
    Ok(pending.peek(state).await?.map(|p| p.provider))
}

/// The callback's first checks: the state is redeemed (once, whoever asks) and must be bound
/// to one of `browser_ids`, the ids this browser's binding cookies carry.
pub async fn redeem(
    pending: &PendingSignIns,
    browser_ids: &[&str],
    state: Option<&str>,
) -> Result<Redeemed, AppError> {
    let state =
        state.ok_or_else(|| AppError::InvalidRequest("the `state` parameter is missing".into()))?;
    if !looks_like_state(state) {
        return Err(AppError::InvalidState(
            "this sign-in is unknown or has expired",
        ));
    }
    let record = pending.take(state).await?.ok_or(AppError::InvalidState(
        "this sign-in is unknown, has expired or was already used",
    ))?;
    // Every id is compared (in constant time each): which one matches is not a secret, the
    // ids are.
    let mut matched = None;
    for (i, id) in browser_ids.iter().enumerate() {
        if same_secret(id, &record.browser_id) {
            matched = Some(i);
        }
    }
    let Some(matched) = matched else {
        tracing::warn!("callback state was started by another browser");
        return Err(AppError::InvalidState(
            "this sign-in was started in another browser or tab session",
        ));
    };
    Ok(Redeemed { record, matched })
}

/// Finishes a redeemed sign-in. Order: state (see [`redeem`]) → iss (RFC 9207) → provider error
/// → code exchange. No code is exchanged before the state checks out.
pub async fn finish(
    provider: &Provider,
    redeemed: Redeemed,
    callback: Callback,
) -> Result<SignedIn, AppError> {
    let record = redeemed.record;
    // RFC 9207 (mix-up defence): a present `iss` must be our issuer; and when the provider
    // advertises that it always sends one, a callback without it did not come from it.
    match (callback.iss.as_deref(), provider.issuer()) {
        (Some(iss), Some(expected)) if iss != expected => {
            tracing::warn!("callback iss does not match the configured issuer");
            return Err(AppError::InvalidRequest(
                "the `iss` parameter does not match the identity provider".into(),
            ));
        }
        (None, _) if provider.requires_iss() => {
            tracing::warn!("callback lacks the iss parameter the provider always sends");
            return Err(AppError::InvalidRequest(
                "the `iss` parameter is missing (the identity provider always sends it)".into(),
            ));
        }
        _ => {}
    }
    if let Some(error) = callback.error {
        let mut message = error;
        if let Some(description) = callback.error_description {
            message = format!("{message} ({description})");
        }
        return Err(AppError::ProviderError(message));
    }
    let code = callback
        .code
        .ok_or_else(|| AppError::InvalidRequest("the `code` parameter is missing".into()))?;
    let (identity, tokens) = provider
        .sign_in(&code, &record.pkce_verifier, record.nonce.as_deref())
        .await?;
    tracing::info!(subject = %identity.subject, "sign-in completed");
    Ok(SignedIn {
        identity,
        tokens,
        return_to: record.return_to,
    })
}

/// Our states are 43 URL-safe characters; anything else cannot be one, so Redis is spared.
fn looks_like_state(s: &str) -> bool {
    (16..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
