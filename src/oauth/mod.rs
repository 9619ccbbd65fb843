//! The provider: authorize URL, token exchange and refresh, identity (ID token verified against
//! the provider's JWKS, or userinfo), revocation, end-session URL, discovery.
//!
//! Every call to the provider goes through one HTTP client that follows no redirects and is
//! bounded by `PROVIDER__TIMEOUT_SECS`. Errors carry what the log needs, never a code or token.

pub mod client;
pub mod discovery;
mod http;
pub mod id_token;
pub mod jwks;
pub mod jws;
pub mod logout_token;
pub mod slot;
pub mod userinfo;

pub use client::{Provider, ProviderError};
pub use slot::ProviderSlot;
