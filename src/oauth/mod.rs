//! The provider: authorize URL, token exchange, identity (ID token or userinfo), discovery.
//!
//! Every call to the provider goes through one HTTP client that follows no redirects and is
//! bounded by `PROVIDER__TIMEOUT_SECS`. Errors carry what the log needs, never a code or token.

pub mod client;
pub mod discovery;
pub mod id_token;
pub mod slot;
pub mod userinfo;

pub use client::{Provider, ProviderError};
pub use slot::ProviderSlot;
