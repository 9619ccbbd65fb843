//! Signing in from the command line (RFC 8252): `gatehouse login`, `gatehouse token`,
//! `gatehouse logout`.
//!
//! The provider is talked to through the server's own code (`oauth::Provider`: discovery, PKCE,
//! token exchange, refresh, revocation, and the ID-token checks of `oauth::id_token` against
//! the provider's JWKS); only the redirect URI differs, the loopback listener's. Nothing is
//! logged: the terminal gets one line per outcome, and tokens reach stdout only through
//! `gatehouse token`.

mod args;
mod document;
mod flow;
mod loopback;
mod store;
mod tokens;

use std::time::Duration;

use url::Url;

use crate::config::{ClientAuth, ProviderSettings};
use crate::oauth::{Provider, ProviderError};

pub use args::{parse, Command, UsageError, USAGE};

/// Bound on every call to the server and the provider.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Exit status of a command line that cannot be run (as for a bad setting).
const EXIT_USAGE: i32 = 2;
const EXIT_FAILED: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Document(#[from] document::DocumentError),
    #[error(transparent)]
    Loopback(#[from] loopback::LoopbackError),
    #[error("the identity provider {issuer}: {source}")]
    Provider {
        issuer: String,
        source: ProviderError,
    },
    #[error("sign-in failed: {0}")]
    SignIn(String),
    #[error("signed out: run gatehouse login --server {0}")]
    SignedOut(String),
    #[error("cannot refresh the access token: {0}")]
    Refresh(ProviderError),
    #[error("signed out here, but the provider did not revoke the refresh token: {0}")]
    NotRevoked(ProviderError),
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILED,
        }
    }
}

/// Runs `gatehouse <args>` (the subcommand first); returns the process's exit status. Errors
/// are one line on stderr.
pub async fn run(args: &[String]) -> i32 {
    let outcome = match parse(args) {
        Ok(Command::Login(login)) => flow::login(login).await,
        Ok(Command::Token(target)) => tokens::token(target).await,
        Ok(Command::Logout(target)) => tokens::logout(target).await,
        Ok(Command::Help) => {
            use std::io::Write;
            writeln!(std::io::stdout(), "{USAGE}").map_err(CliError::Stdout)
        }
        Err(e) => Err(e.into()),
    };
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            e.exit_code()
        }
    }
}

/// The provider as the server would build it, for our public, native client: endpoints and
/// keys from the issuer's discovery, no secret (PKCE alone, RFC 8252 8.4).
async fn provider(
    issuer: &str,
    client_id: &str,
    scopes: &[String],
    redirect_uri: &str,
) -> Result<Provider, CliError> {
    let failed = |source| CliError::Provider {
        issuer: issuer.to_owned(),
        source,
    };
    Url::parse(issuer)
        .map_err(|_| failed(ProviderError::Settings("the issuer is not a URL".into())))?;
    let settings = ProviderSettings {
        issuer: Some(issuer.to_owned()),
        auth_url: None,
        token_url: None,
        userinfo_url: None,
        jwks_url: None,
        client_id: client_id.to_owned(),
        client_secret: None,
        client_auth: ClientAuth::Basic,
        client_key: None,
        scopes: scopes.to_vec(),
        timeout: HTTP_TIMEOUT,
        ca_certificates: Vec::new(),
        extra_audiences: Vec::new(),
        auth_params: Vec::new(),
        subject_claim: "sub".to_owned(),
        email_claim: "email".to_owned(),
        plain_http_hosts: Vec::new(),
    };
    Provider::build_for_redirect(settings, redirect_uri)
        .await
        .map_err(failed)
}

/// Text from the outside (a provider's error code or description) as it may reach a terminal:
/// no control characters (escape sequences), bounded.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}
