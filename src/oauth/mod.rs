//! The provider: authorize URL, token exchange and refresh, identity (ID token verified against
//! the provider's JWKS, or userinfo), revocation, end-session URL, discovery.
//!
//! Every call to the provider goes through one HTTP client that follows no redirects and is
//! bounded by `PROVIDER__TIMEOUT_SECS`. Errors carry what the log needs, never a code or token.

pub mod client;
mod client_auth;
pub mod client_jwk;
// Lives at the top (settings parse the key at start-up); re-exported where it is used.
pub use crate::client_key;
pub mod discovery;
mod error;
pub(crate) mod http;
pub mod id_token;
pub mod jwks;
pub mod jws;
pub mod logout_token;
pub mod slot;
mod token_response;
mod trust;
pub mod userinfo;

pub use client::Provider;
pub use error::ProviderError;
pub use slot::ProviderSlot;
