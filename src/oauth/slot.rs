//! One provider as the app sees it: ready once its settings (and discovery) are in.
//!
//! With an issuer to discover, start-up does not wait for the provider: discovery runs in the
//! background, retried with backoff, and `/readyz` says which providers are not ready until it
//! has succeeded. Sign-ins with it meanwhile get 503 `provider_unavailable`; signed-in users
//! and the other providers are not affected.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{Provider, ProviderError};
use crate::config::{ProviderSettings, ServerSettings};

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct ProviderSlot {
    ready: RwLock<Option<Arc<Provider>>>,
}

impl ProviderSlot {
    pub fn get(&self) -> Option<Arc<Provider>> {
        self.ready.read().ok().and_then(|p| p.clone())
    }

    fn set(&self, provider: Provider) {
        if let Ok(mut slot) = self.ready.write() {
            *slot = Some(Arc::new(provider));
        }
    }

    /// Builds the provider now when nothing needs fetching; otherwise in the background,
    /// retrying with exponential backoff until discovery succeeds.
    /// `name` is the provider's (for the log).
    pub async fn start_named(
        self: &Arc<Self>,
        name: &str,
        settings: ProviderSettings,
        server: ServerSettings,
    ) -> Result<(), ProviderError> {
        if !Provider::needs_discovery(&settings) {
            self.set(Provider::build(settings, &server).await?);
            return Ok(());
        }
        let slot = Arc::clone(self);
        let name = name.to_owned();
        tokio::spawn(async move {
            let mut delay = FIRST_RETRY;
            loop {
                match Provider::build(settings.clone(), &server).await {
                    Ok(provider) => {
                        tracing::info!(provider = %name, "provider discovery succeeded");
                        slot.set(provider);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(provider = %name, error = %e, retry_in_ms = delay.as_millis() as u64, "provider discovery failed");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(MAX_RETRY);
                    }
                }
            }
        });
        Ok(())
    }
}
