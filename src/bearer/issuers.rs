//! `BEARER__EXTRA_ISSUERS`: further issuers whose tokens are accepted, each with its keys from
//! its own discovery document. Discovery runs in the background and is retried with backoff, so
//! an unreachable issuer never stops start-up; until it has answered, its tokens get 503.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::oauth::discovery;
use crate::oauth::jwks::KeySet;

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(30);

struct Issuer {
    /// As tokens write it: without a trailing slash.
    name: String,
    keys: OnceLock<KeySet>,
}

/// What is known about a token's `iss`.
pub enum Lookup<'a> {
    /// Not one of the extra issuers.
    Unknown,
    /// Listed, but its discovery has not succeeded yet.
    Pending,
    Ready(&'a KeySet),
}

pub struct ExtraIssuers {
    issuers: Vec<Arc<Issuer>>,
}

impl ExtraIssuers {
    /// Starts discovery of each issuer in the background (needs a Tokio runtime).
    pub fn start(urls: &[String], http: oauth2::reqwest::Client) -> ExtraIssuers {
        let issuers: Vec<Arc<Issuer>> = urls
            .iter()
            .map(|url| {
                Arc::new(Issuer {
                    name: url.clone(),
                    keys: OnceLock::new(),
                })
            })
            .collect();
        for (issuer, url) in issuers.iter().zip(urls) {
            tokio::spawn(discover(Arc::downgrade(issuer), url.clone(), http.clone()));
        }
        ExtraIssuers { issuers }
    }

    pub fn lookup(&self, iss: &str) -> Lookup<'_> {
        let iss = iss.trim_end_matches('/');
        match self.issuers.iter().find(|i| i.name == iss) {
            None => Lookup::Unknown,
            Some(issuer) => issuer.keys.get().map_or(Lookup::Pending, Lookup::Ready),
        }
    }
}

/// Until discovery succeeds, or the app that wanted it is gone.
async fn discover(issuer: Weak<Issuer>, url: String, http: oauth2::reqwest::Client) {
    let mut delay = FIRST_RETRY;
    loop {
        if issuer.strong_count() == 0 {
            return;
        }
        match discovery::jwks_uri(&url, &http).await {
            Ok(jwks) => {
                if let Some(issuer) = issuer.upgrade() {
                    tracing::info!(issuer = %url, "extra bearer-token issuer discovered");
                    let _ = issuer.keys.set(KeySet::new(jwks, http));
                }
                return;
            }
            Err(e) => {
                tracing::warn!(issuer = %url, error = %e, retry_in_ms = delay.as_millis() as u64,
                    "extra bearer-token issuer: discovery failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY);
            }
        }
    }
}
