//! The signed-in session as kept by actix-session: identity, metadata and tokens, server side.
//! (`/auth` reads the stored record directly: see `routes::forward_auth`.)

use actix_session::Session;

use crate::error::AppError;
use crate::identity::{Identity, TokenSet};
use crate::store::record::{Meta, SessionKey};
use crate::store::sessions::{IDENTITY, KEY_ENTRY, META, TOKENS, UPGRADE_ENTRY};

/// Who is signed in on this session, if anyone. Unreadable data counts as signed out.
pub fn identity(session: &Session) -> Option<Identity> {
    session.get::<Identity>(IDENTITY).ok().flatten()
}

pub fn tokens(session: &Session) -> Option<TokenSet> {
    session.get::<TokenSet>(TOKENS).ok().flatten()
}

pub fn meta(session: &Session) -> Option<Meta> {
    session.get::<Meta>(META).ok().flatten()
}

/// The cookie's session key (`<id>.<key>`), as the store handed it over on load.
pub fn key(session: &Session) -> Option<String> {
    session.get::<String>(KEY_ENTRY).ok().flatten()
}

/// The record's id and sealing key, for direct reads and writes (refresh, revocation).
pub fn with_key<T>(session: &Session, f: impl FnOnce(SessionKey<'_>) -> T) -> Option<T> {
    let text = key(session)?;
    SessionKey::parse(&text).map(f)
}

/// Signs the session in under a NEW session id (no fixation): the old id dies with it.
pub fn establish(
    session: &Session,
    identity: &Identity,
    tokens: &TokenSet,
    meta: &Meta,
) -> Result<(), AppError> {
    session.renew();
    session.clear();
    session
        .insert(IDENTITY, identity)
        .and_then(|_| session.insert(TOKENS, tokens))
        .and_then(|_| session.insert(META, meta))
        .map_err(|_| AppError::Internal)
}

/// A session stored in the previous release's format is rewritten (under a new key that seals
/// its tokens) by the end of this request: marking it changed is enough.
pub fn upgrade_if_needed(session: &Session) {
    if session.contains_key(UPGRADE_ENTRY) {
        session.remove(UPGRADE_ENTRY);
    }
}

/// Ends the session: deleted in Redis, cookie expired.
pub fn end(session: &Session) {
    session.purge();
}
