//! The stored session record: one flat JSON object per session at `<prefix>session:{<id>}`.
//!
//! Format 2 (this release): the identity and the session's metadata are plain fields, so that
//! `/auth`, the session index and revocation read them without decoding anything else; the
//! provider's tokens are sealed (AES-256-GCM) with a key of their own per session, which only
//! the browser's signed cookie carries (`<id>.<key>`): whoever reads Redis — a backup, a
//! replica, a leaked ACL password — learns who is signed in, but cannot act as them.
//!
//! Format 1 (the previous release): actix-session's map of JSON strings,
//! `{"identity": "{…}", "tokens": "{…}"}`, with a cookie carrying only the id. Such records are
//! read as they are (nobody is signed out by the upgrade); their first write moves them to
//! format 2 (see `migrations/README.md`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::CorruptData;
use crate::identity::{Identity, TokenSet};

pub const FORMAT: u8 = 2;
pub const KEY_LEN: usize = 32;

/// Why a stored record cannot be used. The text never quotes the record: it may hold
/// personal data, and a format-1 record holds tokens in the clear.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("the stored session is not valid ({0})")]
    Corrupt(CorruptData),
    #[error("the stored session has format {0}, which this release does not know")]
    Format(u8),
    #[error("the stored session's tokens cannot be opened with this cookie's key")]
    Sealed,
    #[error("the session could not be encoded")]
    Encode,
}

impl RecordError {
    pub fn corrupt(e: serde_json::Error) -> Self {
        RecordError::Corrupt(e.into())
    }
}

/// A session key as the cookie carries it: `<id>.<key>` (format 2) or `<id>` (format 1).
#[derive(Clone, Copy)]
pub struct SessionKey<'a> {
    /// The record's id in Redis.
    pub id: &'a str,
    /// The key sealing the record's tokens; `None` for a format-1 session.
    pub key: Option<[u8; KEY_LEN]>,
}

impl<'a> SessionKey<'a> {
    pub fn parse(text: &'a str) -> Option<SessionKey<'a>> {
        let (id, key) = match text.split_once('.') {
            Some((id, key)) => {
                let mut bytes = [0u8; KEY_LEN];
                let decoded = URL_SAFE_NO_PAD.decode(key).ok()?;
                if decoded.len() != KEY_LEN {
                    return None;
                }
                bytes.copy_from_slice(&decoded);
                (id, Some(bytes))
            }
            None => (text, None),
        };
        let valid_id = (16..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid_id.then_some(SessionKey { id, key })
    }

    /// A fresh key: a new id and a new sealing key, as the cookie's text.
    pub fn mint() -> String {
        let mut key = [0u8; KEY_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        format!("{}.{}", crate::random::token(), URL_SAFE_NO_PAD.encode(key))
    }
}

/// What gatehouse knows about a session besides who and which tokens: for the session list,
/// the absolute lifetime and back-channel logout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Meta {
    /// The opaque handle the session is listed and revoked by (never the cookie's id).
    pub handle: String,
    /// Unix seconds; `None` for a format-1 session (its start was not recorded).
    pub created_at: Option<u64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The provider's name (`default` unless several are configured).
    pub provider: Option<String>,
    /// The provider's session id (`sid` in the ID token), for back-channel logout.
    pub sid: Option<String>,
}

/// A whole session, decoded.
#[derive(Debug, Clone)]
pub struct Session {
    pub identity: Identity,
    pub meta: Meta,
    pub tokens: TokenSet,
}

#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    v: u8,
    #[serde(borrow)]
    sub: Cow<'a, str>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    email: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    preferred_username: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "BTreeMap::is_empty")]
    claims: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(borrow)]
    handle: Cow<'a, str>,
    #[serde(default)]
    created_at: Option<u64>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    ip: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    user_agent: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    provider: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    sid: Option<Cow<'a, str>>,
    /// The access token's expiry (unix seconds), readable: `/auth` decides on refresh by it.
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    refreshable: bool,
    /// The sealed tokens (format 2 with a key).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    sealed: Option<Cow<'a, str>>,
    /// Tokens in the clear: only a session upgraded from format 1 whose cookie has no key
    /// yet; its next page visit gives it one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens: Option<TokenSet>,
}

/// Just what `/auth` needs, borrowed from the stored bytes where JSON allows.
#[derive(Debug)]
pub struct AuthView<'a> {
    pub subject: Cow<'a, str>,
    pub email: Option<Cow<'a, str>>,
    pub email_verified: Option<bool>,
    pub preferred_username: Option<Cow<'a, str>>,
    pub groups: Vec<Cow<'a, str>>,
    pub claims: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    pub handle: Cow<'a, str>,
    pub created_at: Option<u64>,
    pub provider: Option<Cow<'a, str>>,
    pub expires_at: Option<u64>,
    pub refreshable: bool,
}

/// The record to store for `session` under `id`, its tokens sealed with `key` when there is
/// one (a format-1 cookie has none).
pub fn encode(
    session: &Session,
    id: &str,
    key: Option<&[u8; KEY_LEN]>,
) -> Result<String, RecordError> {
    let (sealed, tokens) = match key {
        Some(key) => {
            let plain = serde_json::to_vec(&session.tokens).map_err(|_| RecordError::Encode)?;
            (Some(Cow::Owned(seal(key, id, plain)?)), None)
        }
        None => (None, Some(session.tokens.clone())),
    };
    let i = &session.identity;
    let m = &session.meta;
    let stored = Stored {
        v: FORMAT,
        sub: Cow::Borrowed(&i.subject),
        email: i.email.as_deref().map(Cow::Borrowed),
        email_verified: i.email_verified,
        name: i.name.as_deref().map(Cow::Borrowed),
        preferred_username: i.preferred_username.as_deref().map(Cow::Borrowed),
        groups: i.groups.iter().map(|g| Cow::Borrowed(g.as_str())).collect(),
        claims: i
            .claims
            .iter()
            .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
            .collect(),
        handle: Cow::Borrowed(&m.handle),
        created_at: m.created_at,
        ip: m.ip.as_deref().map(Cow::Borrowed),
        user_agent: m.user_agent.as_deref().map(Cow::Borrowed),
        provider: m.provider.as_deref().map(Cow::Borrowed),
        sid: m.sid.as_deref().map(Cow::Borrowed),
        expires_at: session.tokens.expires_at,
        refreshable: session.tokens.refresh_token.is_some(),
        sealed,
        tokens,
    };
    serde_json::to_string(&stored).map_err(|_| RecordError::Encode)
}

/// The whole session, tokens opened with the cookie's key.
pub fn decode(bytes: &[u8], id: &str, key: Option<&[u8; KEY_LEN]>) -> Result<Session, RecordError> {
    if is_format_1(bytes) {
        return decode_format_1(bytes);
    }
    let stored: Stored = serde_json::from_slice(bytes).map_err(RecordError::corrupt)?;
    if stored.v != FORMAT {
        return Err(RecordError::Format(stored.v));
    }
    let tokens = match (&stored.sealed, &stored.tokens, key) {
        (Some(sealed), _, Some(key)) => {
            let plain = open(key, id, sealed)?;
            serde_json::from_slice(&plain).map_err(RecordError::corrupt)?
        }
        (None, Some(tokens), _) => tokens.clone(),
        _ => return Err(RecordError::Sealed),
    };
    let own = |c: Option<Cow<str>>| c.map(Cow::into_owned);
    Ok(Session {
        identity: Identity {
            subject: stored.sub.into_owned(),
            email: own(stored.email),
            email_verified: stored.email_verified,
            name: own(stored.name),
            preferred_username: own(stored.preferred_username),
            groups: stored.groups.into_iter().map(Cow::into_owned).collect(),
            claims: stored
                .claims
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            ..Identity::default()
        },
        meta: Meta {
            handle: stored.handle.into_owned(),
            created_at: stored.created_at,
            ip: own(stored.ip),
            user_agent: own(stored.user_agent),
            provider: own(stored.provider),
            sid: own(stored.sid),
        },
        tokens,
    })
}

/// What `/auth` needs, without opening the tokens (format 2), borrowing what it can.
pub fn view(bytes: &[u8]) -> Result<AuthView<'_>, RecordError> {
    if is_format_1(bytes) {
        let session = decode_format_1(bytes)?;
        let i = session.identity;
        return Ok(AuthView {
            subject: Cow::Owned(i.subject),
            email: i.email.map(Cow::Owned),
            email_verified: i.email_verified,
            preferred_username: i.preferred_username.map(Cow::Owned),
            groups: Vec::new(),
            claims: BTreeMap::new(),
            handle: Cow::Owned(session.meta.handle),
            created_at: None,
            provider: None,
            expires_at: session.tokens.expires_at,
            refreshable: session.tokens.refresh_token.is_some(),
        });
    }
    let stored: Stored = serde_json::from_slice(bytes).map_err(RecordError::corrupt)?;
    if stored.v != FORMAT {
        return Err(RecordError::Format(stored.v));
    }
    Ok(AuthView {
        subject: stored.sub,
        email: stored.email,
        email_verified: stored.email_verified,
        preferred_username: stored.preferred_username,
        groups: stored.groups,
        claims: stored.claims,
        handle: stored.handle,
        created_at: stored.created_at,
        provider: stored.provider,
        expires_at: stored.expires_at,
        refreshable: stored.refreshable,
    })
}

/// What the session list and revocation read: who, and the metadata; never the tokens.
#[derive(Debug)]
pub struct Listing {
    pub subject: String,
    pub handle: String,
    pub created_at: Option<u64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

pub fn decode_meta(bytes: &[u8]) -> Result<Listing, RecordError> {
    if is_format_1(bytes) {
        let session = decode_format_1(bytes)?;
        return Ok(Listing {
            subject: session.identity.subject,
            handle: String::new(),
            created_at: None,
            ip: None,
            user_agent: None,
        });
    }
    let stored: Stored = serde_json::from_slice(bytes).map_err(RecordError::corrupt)?;
    if stored.v != FORMAT {
        return Err(RecordError::Format(stored.v));
    }
    Ok(Listing {
        subject: stored.sub.into_owned(),
        handle: stored.handle.into_owned(),
        created_at: stored.created_at,
        ip: stored.ip.map(Cow::into_owned),
        user_agent: stored.user_agent.map(Cow::into_owned),
    })
}

/// Format 1 is a JSON object without `v`. Format 2 as gatehouse writes it starts with
/// `{"v":` (checked first, for free); a record rewritten by another tool is probed.
fn is_format_1(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        v: Option<serde::de::IgnoredAny>,
    }
    if bytes.starts_with(br#"{"v":"#) {
        return false;
    }
    serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| p.v.is_none())
}

fn decode_format_1(bytes: &[u8]) -> Result<Session, RecordError> {
    let map: BTreeMap<String, String> =
        serde_json::from_slice(bytes).map_err(RecordError::corrupt)?;
    let field = |name: &str| map.get(name).ok_or(RecordError::Format(1));
    let identity: Identity =
        serde_json::from_str(field("identity")?).map_err(RecordError::corrupt)?;
    let tokens: TokenSet = serde_json::from_str(field("tokens")?).map_err(RecordError::corrupt)?;
    Ok(Session {
        identity,
        // Format 1 kept no metadata: a handle is given when the record is rewritten.
        meta: Meta::default(),
        tokens,
    })
}

fn aad(id: &str) -> Vec<u8> {
    let mut aad = b"gatehouse session tokens v2:".to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad
}

fn seal(key: &[u8; KEY_LEN], id: &str, mut plain: Vec<u8>) -> Result<String, RecordError> {
    let sealing =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| RecordError::Encode)?);
    // A fresh random nonce per write: a session's key seals a handful of records in its life,
    // far below the 2^32 writes at which random 96-bit nonces would start to risk a repeat.
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| RecordError::Encode)?;
    sealing
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(id)),
            &mut plain,
        )
        .map_err(|_| RecordError::Encode)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&plain);
    Ok(URL_SAFE_NO_PAD.encode(out))
}

fn open(key: &[u8; KEY_LEN], id: &str, sealed: &str) -> Result<Vec<u8>, RecordError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| RecordError::Sealed)?;
    if bytes.len() < NONCE_LEN {
        return Err(RecordError::Sealed);
    }
    let (nonce, cipher) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| RecordError::Sealed)?;
    let opening =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| RecordError::Sealed)?);
    let mut buf = cipher.to_vec();
    let plain = opening
        .open_in_place(nonce, Aad::from(aad(id)), &mut buf)
        .map_err(|_| RecordError::Sealed)?;
    Ok(plain.to_vec())
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
