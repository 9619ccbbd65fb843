//! Back-channel logout tokens seen, so that each is used once across all instances: one lone
//! key per token, `<prefix>logout-jti:<sha256(issuer, jti)>`, written `SET NX EX`. Hashed, so
//! that a sender's choice of `jti` never shapes our key names or their length.

use std::time::Duration;

use super::RedisStore;
use crate::oauth::logout_token::JtiRegistry;

const KIND: &str = "logout-jti";

#[derive(Clone)]
pub struct LogoutJtis {
    store: RedisStore,
}

impl LogoutJtis {
    pub fn new(store: RedisStore) -> Self {
        LogoutJtis { store }
    }

    fn key(&self, issuer: &str, jti: &str) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        // Length-prefixed: ("ab", "c") and ("a", "bc") are different tokens.
        ctx.update(&(issuer.len() as u64).to_be_bytes());
        ctx.update(issuer.as_bytes());
        ctx.update(jti.as_bytes());
        let hex: String = ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.store.lone_key(KIND, &hex)
    }
}

impl JtiRegistry for LogoutJtis {
    async fn first_use(&self, issuer: &str, jti: &str, ttl: Duration) -> Result<bool, String> {
        let mut conn = self.store.conn();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(issuer, jti))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("redis is unavailable: {e}"))?;
        Ok(set.is_some())
    }
}
