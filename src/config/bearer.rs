//! Bearer tokens on `/auth` for API clients: whether, whose, and for which audience.

use url::Url;

use super::reader::Reader;
use super::{invalid, SettingsError};

#[derive(Debug, Clone, Default)]
pub struct BearerSettings {
    pub enabled: bool,
    /// A token passes when one of its `aud` values is listed. Never empty: the client id when
    /// the setting is.
    pub audiences: Vec<String>,
    /// Issuers besides the provider's whose tokens are accepted (keys from their discovery).
    pub extra_issuers: Vec<String>,
}

impl BearerSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let enabled = r.boolean("bearer.enabled")?;
        let mut audiences = r.list("bearer.audiences")?;
        if audiences.is_empty() {
            audiences.push(r.required("provider.client_id")?);
        }
        let extra_issuers = r
            .list("bearer.extra_issuers")?
            .iter()
            .map(|text| {
                Url::parse(text)
                    .ok()
                    .filter(|u| {
                        matches!(u.scheme(), "http" | "https")
                            && u.host().is_some()
                            && u.query().is_none()
                            && u.fragment().is_none()
                            && super::secure_enough(u, &[])
                    })
                    // Kept exactly as written: a token's `iss` must equal it.
                    .map(|_| text.clone())
                    .ok_or_else(|| {
                        invalid(
                            "bearer.extra_issuers",
                            format!(
                                "has an invalid entry {text:?} (an https:// issuer URL; http:// on loopback only)"
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Tokens are matched to keys by their `iss`: with no issuer at all, none could pass.
        if enabled && r.optional("provider.issuer").is_none() && extra_issuers.is_empty() {
            return Err(invalid(
                "bearer.enabled",
                "needs an issuer to accept tokens from: set GATEHOUSE__PROVIDER__ISSUER or \
                 GATEHOUSE__BEARER__EXTRA_ISSUERS",
            ));
        }
        Ok(BearerSettings {
            enabled,
            audiences,
            extra_issuers,
        })
    }
}
