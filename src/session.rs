//! The signed-in session as kept by actix-session: identity and tokens, server side.

use actix_session::Session;

use crate::error::AppError;
use crate::identity::{Identity, TokenSet};

const IDENTITY: &str = "identity";
pub const TOKENS: &str = "tokens";

/// Who is signed in on this session, if anyone. Unreadable data counts as signed out.
pub fn identity(session: &Session) -> Option<Identity> {
    session.get::<Identity>(IDENTITY).ok().flatten()
}

pub fn tokens(session: &Session) -> Option<TokenSet> {
    session.get::<TokenSet>(TOKENS).ok().flatten()
}

/// Just what the per-request expiry check needs: read without copying the tokens themselves
/// (the ID token alone is most of the record), so `/auth`'s common path stays cheap.
#[derive(serde::Deserialize)]
pub struct TokenTimes {
    pub expires_at: Option<u64>,
    #[serde(default)]
    refresh_token: Option<serde::de::IgnoredAny>,
}

impl TokenTimes {
    pub fn refreshable(&self) -> bool {
        self.refresh_token.is_some()
    }
}

pub fn token_times(session: &Session) -> Option<TokenTimes> {
    session.get::<TokenTimes>(TOKENS).ok().flatten()
}

/// The id of this session's record in Redis (given by our store on load), for locks and
/// direct re-reads.
pub fn key(session: &Session) -> Option<String> {
    session
        .get::<String>(crate::store::sessions::KEY_ENTRY)
        .ok()
        .flatten()
}

/// Signs the session in under a NEW session id (no fixation): the old id dies with it.
pub fn establish(
    session: &Session,
    identity: &Identity,
    tokens: &TokenSet,
) -> Result<(), AppError> {
    session.renew();
    session.clear();
    session
        .insert(IDENTITY, identity)
        .and_then(|_| session.insert(TOKENS, tokens))
        .map_err(|_| AppError::Internal)
}

/// Ends the session: deleted in Redis, cookie expired.
pub fn end(session: &Session) {
    session.purge();
}
