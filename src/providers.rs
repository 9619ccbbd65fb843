//! The configured providers by name: the default one (`[provider]`, named `default`) first,
//! then the further ones (`[providers.<name>]`) by name. Each has its own slot (discovery,
//! JWKS, HTTP client, readiness), its own access rules and the claims those rules need.
//!
//! A session, a pending sign-in and a metrics label name their provider by one of these names;
//! nothing taken from a request becomes a name unless it is one of them.

use std::sync::Arc;

use url::Url;

use crate::claims::ClaimNeeds;
use crate::config::{env_name, AccessSettings, Settings, DEFAULT_PROVIDER};
use crate::oauth::{Provider, ProviderSlot};

/// One configured provider.
pub struct ProviderEntry {
    /// `default`, or a further provider's lower-case name.
    pub name: String,
    /// What the sign-in page shows.
    pub display_name: String,
    pub slot: Arc<ProviderSlot>,
    /// The rules for its sessions: its own, or `[access]`.
    pub access: AccessSettings,
    pub needs: ClaimNeeds,
}

impl ProviderEntry {
    /// The provider, once ready (discovery done).
    pub fn ready(&self) -> Option<Arc<Provider>> {
        self.slot.get()
    }
}

pub struct Providers {
    /// The default provider first; never empty.
    entries: Vec<ProviderEntry>,
}

impl Providers {
    /// Starts every configured provider: built now when nothing needs fetching, else
    /// discovered in the background, each on its own. The error is the line to print.
    pub async fn start(settings: &Settings) -> Result<Providers, String> {
        let claim_headers: Vec<String> = settings
            .forward
            .claim_headers
            .iter()
            .map(|h| h.claim.clone())
            .collect();
        let needs = |access: &AccessSettings| ClaimNeeds {
            groups: access.groups_claim.clone(),
            groups_required: !access.allowed_groups.is_empty(),
            headers: claim_headers.clone(),
        };
        let mut configured = vec![(
            DEFAULT_PROVIDER.to_owned(),
            settings.providers.default_display_name.clone(),
            "provider".to_owned(),
            settings.provider.clone(),
            settings.access.clone(),
        )];
        for named in &settings.providers.named {
            configured.push((
                named.name.clone(),
                named.display_name.clone(),
                format!("providers.{}", named.name),
                named.provider.clone(),
                named
                    .access
                    .clone()
                    .unwrap_or_else(|| settings.access.clone()),
            ));
        }
        let mut entries = Vec::with_capacity(configured.len());
        for (name, display_name, section, provider, access) in configured {
            let slot = Arc::new(ProviderSlot::default());
            slot.start_named(&name, provider, settings.server.clone())
                .await
                .map_err(|e| format!("{}: {e}", env_name(&format!("{section}.issuer"))))?;
            entries.push(ProviderEntry {
                display_name: display_name.unwrap_or_else(|| name.clone()),
                name,
                slot,
                needs: needs(&access),
                access,
            });
        }
        Ok(Providers { entries })
    }

    /// The default provider (`[provider]`).
    pub fn primary(&self) -> &ProviderEntry {
        &self.entries[0]
    }

    /// The provider configured under `name`.
    pub fn get(&self, name: &str) -> Option<&ProviderEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The provider a session or a pending sign-in names; `None` (a record written before
    /// providers had names) is the default one. A name no longer configured gives `None`.
    pub fn of_record(&self, name: Option<&str>) -> Option<&ProviderEntry> {
        self.get(name.unwrap_or(DEFAULT_PROVIDER))
    }

    pub fn iter(&self) -> impl Iterator<Item = &ProviderEntry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn all_ready(&self) -> bool {
        self.entries.iter().all(|e| e.ready().is_some())
    }

    /// The ready provider whose issuer is exactly `iss` (a logout token's, say), if any.
    pub fn by_issuer(&self, iss: &str) -> Option<(&ProviderEntry, Arc<Provider>)> {
        self.entries.iter().find_map(|e| {
            let provider = e.ready()?;
            (provider.issuer() == Some(iss)).then_some((e, provider))
        })
    }

    /// The end-session endpoints a sign-out may continue to (for the pages' `form-action`).
    pub fn end_session_urls(&self) -> Vec<Url> {
        self.entries
            .iter()
            .filter_map(|e| e.ready()?.end_session_url(None, ""))
            .collect()
    }
}
