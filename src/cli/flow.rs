//! `gatehouse login`: the loopback flow of RFC 8252, one fresh state, PKCE verifier and nonce
//! per run; the callback checked in the server's order (state, then `iss`, then the provider's
//! error, then the exchange and the ID token); tokens stored only when every check passed.

use crate::identity::{Identity, TokenSet};
use crate::oauth::Provider;
use crate::random::token;

use super::args::Login;
use super::loopback::{Arrival, Loopback, Page};
use super::store::{server_key, Entry, Store};
use super::{document, printable, CliError};

pub async fn login(cmd: Login) -> Result<(), CliError> {
    let store = Store::locate(cmd.target.store.clone())?;
    // A store we could not write to is refused before anyone signs in for nothing.
    store.lock(false)?.read()?;
    let doc = document::fetch(&cmd.target.server).await?;
    let loopback = Loopback::bind().await?;
    let provider = super::provider(
        &doc.issuer,
        &doc.client_id,
        &doc.scopes,
        &loopback.redirect_uri(),
    )
    .await?;

    let state = token();
    let nonce = token();
    let request = provider.authorization_request(&state, Some(&nonce));
    eprintln!(
        "gatehouse: to sign in, open this address in a browser:\n{}",
        request.url
    );
    if !cmd.no_browser {
        open_browser(request.url.as_str());
    }
    eprintln!(
        "gatehouse: waiting for the browser (up to {} s)",
        cmd.timeout.as_secs()
    );
    let arrival = loopback.wait(&state, cmd.timeout).await?;

    let outcome = match finish(&provider, &arrival, &request.pkce_verifier, &nonce).await {
        Ok((identity, tokens)) => save(&store, &cmd, &doc, &identity, tokens).map(|()| identity),
        Err(e) => Err(e),
    };
    arrival
        .answer(match &outcome {
            Ok(_) => Page::SignedIn,
            Err(CliError::SignIn(why)) => Page::Failed(why.clone()),
            Err(e) => Page::Failed(e.to_string()),
        })
        .await;
    let identity = outcome?;
    let email = identity
        .email
        .as_deref()
        .map(|e| format!(" ({})", printable(e)))
        .unwrap_or_default();
    eprintln!(
        "gatehouse: signed in to {} as {}{email}; tokens kept in {}",
        server_key(&cmd.target.server),
        printable(&identity.subject),
        store.path().display()
    );
    Ok(())
}

/// The callback that carried our state: `iss` (RFC 9207: before anything else in it is
/// believed), the provider's error, then the code, exchanged with our PKCE verifier, and the
/// ID token verified (signature, iss, aud, azp, exp, iat, our nonce) by the server's code.
async fn finish(
    provider: &Provider,
    arrival: &Arrival,
    pkce_verifier: &str,
    nonce: &str,
) -> Result<(Identity, TokenSet), CliError> {
    let param = |name| arrival.param(name).map_err(CliError::SignIn);
    match (param("iss")?, provider.issuer()) {
        (Some(iss), Some(expected)) if iss.trim_end_matches('/') != expected => {
            return Err(CliError::SignIn(
                "the `iss` parameter names another provider (RFC 9207)".into(),
            ));
        }
        (None, _) if provider.requires_iss() => {
            return Err(CliError::SignIn(
                "the `iss` parameter is missing, and the provider always sends it (RFC 9207)"
                    .into(),
            ));
        }
        _ => {}
    }
    if let Some(error) = param("error")? {
        let description = param("error_description")?
            .map(|d| format!(" ({})", printable(d)))
            .unwrap_or_default();
        return Err(CliError::SignIn(format!(
            "the provider answered `{}`{description}",
            printable(error)
        )));
    }
    let code = param("code")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| CliError::SignIn("the callback carries no code".into()))?;
    provider
        .sign_in(code, pkce_verifier, Some(nonce))
        .await
        .map_err(|e| CliError::SignIn(e.to_string()))
}

fn save(
    store: &Store,
    cmd: &Login,
    doc: &document::ServerDocument,
    identity: &Identity,
    tokens: TokenSet,
) -> Result<(), CliError> {
    let entry = Entry {
        issuer: doc.issuer.clone(),
        client_id: doc.client_id.clone(),
        scopes: tokens.scopes,
        subject: identity.subject.clone(),
        email: identity.email.clone(),
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_at: tokens.expires_at,
    };
    let locked = store.lock(true)?;
    let mut all = locked.read()?;
    all.insert(&server_key(&cmd.target.server), entry);
    locked.write(&all)?;
    Ok(())
}

/// Asks the desktop to open `url`; failing is not fatal (the address is on the terminal).
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        // Reaped in the background, so it never lingers as a zombie.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => {
            eprintln!("gatehouse: could not start {opener} ({e}); open the address above yourself")
        }
    }
}
