//! Command-line sign-in (RFC 8252): the provider's native client that `gatehouse login` uses,
//! published at `GET /.well-known/gatehouse`.

use super::reader::Reader;
use super::{env_name, invalid, SettingsError};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliSettings {
    /// The provider's public, native client for the loopback flow; `None` = command-line
    /// sign-in off (the document answers 404).
    pub client_id: Option<String>,
    /// What `gatehouse login` asks for. Always holds `openid`: the command line verifies the
    /// ID token to know who signed in.
    pub scopes: Vec<String>,
}

impl CliSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let client_id = r.optional("cli.client_id");
        let scopes: Vec<String> = r
            .optional("cli.scopes")
            .unwrap_or_default()
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect();
        if client_id.is_some() {
            // The command line finds the provider's endpoints through discovery: the issuer is
            // all the document can tell it.
            if r.optional("provider.issuer").is_none() {
                return Err(invalid(
                    "cli.client_id",
                    format!(
                        "needs {} (command-line sign-in finds the provider by discovery)",
                        env_name("provider.issuer")
                    ),
                ));
            }
            if !scopes.iter().any(|s| s == "openid") {
                return Err(invalid("cli.scopes", "must include openid"));
            }
        }
        Ok(CliSettings { client_id, scopes })
    }
}
