//! Several providers side by side (issue 14.5 and 14.6, contract part 2 "Providers"), against
//! two real development providers at once: the shared one as `default`, and `corp`, a second
//! instance whose access tokens live 30 s — under REFRESH_BEFORE_SECS (60), so every `/auth`
//! of a corp session refreshes it, while default sessions (tokens of an hour) never do.
//!
//! This file is the harness; the tests are by concern in the files beside it.

mod sessions;
mod settings;
mod signin;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gatehouse::store::record::{self, SessionKey};

use crate::helpers::*;

pub(super) fn corp_idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(|| start_idp("http", &[("IDP_ACCESS_TOKEN_TTL", "30".to_owned())]))
}

/// An app with the default provider and `corp` (issuer `corp_issuer`), both ready unless
/// `corp_issuer` is dead.
pub(super) async fn two_providers(corp_issuer: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut vars: Vec<(&str, &str)> = vec![
        ("GATEHOUSE__PROVIDERS__CORP__ISSUER", corp_issuer),
        ("GATEHOUSE__PROVIDERS__CORP__CLIENT_ID", CLIENT_ID),
        ("GATEHOUSE__PROVIDERS__CORP__CLIENT_SECRET", CLIENT_SECRET),
        ("GATEHOUSE__PROVIDERS__CORP__TIMEOUT_SECS", "10"),
        ("GATEHOUSE__PROVIDERS__CORP__DISPLAY_NAME", "Corp <staff>"),
        ("GATEHOUSE__PROVIDER__DISPLAY_NAME", "Example ID"),
        ("GATEHOUSE__METRICS__PUBLIC", "true"),
    ];
    vars.extend_from_slice(extra);
    spawn_app_with_idp(&vars).await
}

pub(super) async fn both_ready() -> TestApp {
    let app = two_providers(&corp_idp().issuer, &[]).await;
    wait_until_ready(&app, &["default", "corp"]).await;
    app
}

/// Polls /readyz until each of `names` is ready.
pub(super) async fn wait_until_ready(app: &TestApp, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body: serde_json::Value = app.get("/readyz").await.json().await.unwrap_or_default();
        if names.iter().all(|n| body["providers"][n] == "ready") {
            return;
        }
        assert!(Instant::now() < deadline, "not ready: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Another browser on the same app (a cookie jar of its own).
pub(super) fn another_browser(app: &TestApp) -> TestApp {
    TestApp::at(app.port, app.prefix.clone(), app.vars.clone())
}

/// A whole sign-in through `provider`'s login form, as `login`; the callback's answer.
pub(super) async fn sign_in_at(app: &TestApp, provider: &str, login: &str) -> reqwest::Response {
    let res = app
        .get(&format!("/signin?provider={provider}&return_to=/welcome"))
        .await;
    assert_eq!(res.status().as_u16(), 303, "sign-in at {provider} starts");
    let callback = idp_login(&app.client, &location(&res), login).await;
    app.follow_callback(&app.client, &callback).await
}

/// The stored session of this browser.
pub(super) async fn stored_session(app: &TestApp) -> record::Session {
    let key = app.session_key().expect("signed in");
    let key = SessionKey::parse(&key).expect("a session key");
    let stored = app
        .get_key(&format!("session:{{{}}}", key.id))
        .await
        .expect("stored");
    record::decode(stored.as_bytes(), key.id, key.key.as_ref()).expect("opens")
}

pub(super) async fn session_json(app: &TestApp) -> serde_json::Value {
    let res = app.get("/session").await;
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.expect("json")
}

pub(super) async fn scrape(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.expect("metrics")
}

pub(super) fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// userinfo at `issuer` with this access token: 200 when the token is that provider's.
pub(super) async fn userinfo_status(issuer: &str, access_token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{issuer}/me"))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("userinfo answered")
        .status()
        .as_u16()
}
