//! Token lifetime: refresh before expiry exactly once per session (also across instances and
//! with a slow provider that rotates single-use refresh tokens), invalid_grant, outages,
//! sessions without refresh tokens, and sign-out that revokes and logs out at the provider.
//!
//! A controllable fake provider (wiremock) plays the provider where a fault or a count is
//! needed; the real development provider checks the same against a real implementation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::*;
use crate::id_tokens::{other_jwk, other_key, sign_rs256, signed, test_jwk, TEST_KID};

#[derive(Clone, Copy, PartialEq, Eq)]
enum OnRefresh {
    /// Rotate: the presented token must be the current one, and is then spent.
    Rotate,
    InvalidGrant,
    Fail,
}

struct FakeState {
    current_refresh: String,
    generation: u32,
    refresh_calls: u32,
    first_expires_in: i64,
    with_refresh_token: bool,
    refresh_delay: Duration,
    on_refresh: OnRefresh,
    revoked: Vec<String>,
    /// The `groups` claim of the sign-in's ID token.
    code_groups: Vec<String>,
    /// When set, a refresh also answers with a new ID token stating these groups.
    refresh_groups: Option<Vec<String>>,
    /// When set, that new ID token is signed by a key the provider has just rotated in (kid
    /// `rotated`): verifying it makes gatehouse fetch the JWKS again.
    refresh_rotated_key: bool,
}

#[derive(Clone)]
struct TokenEndpoint {
    issuer: String,
    state: Arc<Mutex<FakeState>>,
}

fn form(req: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect()
}

impl Respond for TokenEndpoint {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let form = form(req);
        let mut s = self.state.lock().expect("fake state");
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                // The test passes the sign-in's nonce as the code.
                let nonce = form.get("code").cloned().unwrap_or_default();
                let now = gatehouse::identity::now_unix();
                let id_token = signed(&json!({
                    "iss": self.issuer, "sub": "frank", "aud": CLIENT_ID,
                    "exp": now + 600, "iat": now, "nonce": nonce,
                    "email": "frank@example.com", "email_verified": true,
                    "groups": s.code_groups,
                }));
                let mut body = json!({
                    "access_token": "at-0", "token_type": "Bearer",
                    "expires_in": s.first_expires_in, "id_token": id_token,
                });
                if s.with_refresh_token {
                    body["refresh_token"] = json!(s.current_refresh);
                }
                ResponseTemplate::new(200).set_body_json(body)
            }
            Some("refresh_token") => {
                s.refresh_calls += 1;
                let presented = form.get("refresh_token").cloned().unwrap_or_default();
                let refused =
                    ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}));
                match s.on_refresh {
                    OnRefresh::InvalidGrant => refused,
                    OnRefresh::Fail => ResponseTemplate::new(500),
                    OnRefresh::Rotate if presented != s.current_refresh => refused,
                    OnRefresh::Rotate => {
                        s.generation += 1;
                        s.current_refresh = format!("rt-{}", s.generation);
                        let mut body = json!({
                            "access_token": format!("at-{}", s.generation),
                            "token_type": "Bearer", "expires_in": 3600,
                            "refresh_token": s.current_refresh,
                        });
                        if let Some(groups) = &s.refresh_groups {
                            let now = gatehouse::identity::now_unix();
                            let claims = json!({
                                "iss": self.issuer, "sub": "frank", "aud": CLIENT_ID,
                                "exp": now + 600, "iat": now, "groups": groups,
                            });
                            body["id_token"] = json!(if s.refresh_rotated_key {
                                sign_rs256(&claims, "rotated", &other_key())
                            } else {
                                signed(&claims)
                            });
                        }
                        ResponseTemplate::new(200)
                            .set_body_json(body)
                            .set_delay(s.refresh_delay)
                    }
                }
            }
            _ => {
                ResponseTemplate::new(400).set_body_json(json!({"error": "unsupported_grant_type"}))
            }
        }
    }
}

#[derive(Clone)]
struct Revocation(Arc<Mutex<FakeState>>);

impl Respond for Revocation {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(token) = form(req).get("token") {
            self.0
                .lock()
                .expect("fake state")
                .revoked
                .push(token.clone());
        }
        ResponseTemplate::new(200)
    }
}

struct Fake {
    mock: MockServer,
    state: Arc<Mutex<FakeState>>,
}

impl Fake {
    async fn start(first_expires_in: i64, on_refresh: OnRefresh, refresh_delay: Duration) -> Fake {
        let mock = MockServer::start().await;
        let issuer = mock.uri();
        let state = Arc::new(Mutex::new(FakeState {
            current_refresh: "rt-0".into(),
            generation: 0,
            refresh_calls: 0,
            first_expires_in,
            with_refresh_token: true,
            refresh_delay,
            on_refresh,
            revoked: Vec::new(),
            code_groups: Vec::new(),
            refresh_groups: None,
            refresh_rotated_key: false,
        }));
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/auth"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/jwks"),
                "revocation_endpoint": format!("{issuer}/revoke"),
                "end_session_endpoint": format!("{issuer}/session/end"),
            })))
            .mount(&mock)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"keys": [test_jwk(TEST_KID)]})),
            )
            .mount(&mock)
            .await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(TokenEndpoint {
                issuer: issuer.clone(),
                state: state.clone(),
            })
            .mount(&mock)
            .await;
        Mock::given(method("POST"))
            .and(path("/revoke"))
            .respond_with(Revocation(state.clone()))
            .mount(&mock)
            .await;
        Fake { mock, state }
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GATEHOUSE__PROVIDER__ISSUER", self.mock.uri()),
            ("GATEHOUSE__PROVIDER__AUTH_URL", String::new()),
            ("GATEHOUSE__PROVIDER__TOKEN_URL", String::new()),
            ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "10".into()),
            ("GATEHOUSE__TOKENS__REFRESH_BEFORE_SECS", "60".into()),
        ]
    }

    async fn app(&self, extra: &[(&str, &str)]) -> TestApp {
        let owned = self.vars();
        let mut vars: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        vars.extend_from_slice(extra);
        spawn_app_with(&vars).await
    }

    fn refresh_calls(&self) -> u32 {
        self.state.lock().expect("fake state").refresh_calls
    }

    /// Signs the app's browser in through this fake provider.
    async fn sign_in(&self, app: &TestApp) {
        let authorize = app.start_sign_in(&app.client, None).await;
        let state = query_param(&authorize, "state").expect("state");
        let nonce = query_param(&authorize, "nonce").expect("nonce");
        let res = app
            .get(&format!("/redirect?code={nonce}&state={state}"))
            .await;
        assert_eq!(
            res.status().as_u16(),
            303,
            "signed in through the fake provider"
        );
    }
}

async fn statuses(app: &TestApp, n: usize) -> Vec<u16> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let client = app.client.clone();
        let url = app.url("/auth");
        set.spawn(async move {
            client
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        });
    }
    let mut out = Vec::new();
    while let Some(s) = set.join_next().await {
        out.push(s.expect("request task"));
    }
    out
}

async fn session_expiry(app: &TestApp) -> u64 {
    let session: serde_json::Value = app.get("/session").await.json().await.expect("json");
    session["expires_at"].as_u64().expect("expires_at")
}

#[tokio::test]
async fn twenty_requests_on_an_expiring_session_refresh_exactly_once_with_a_slow_rotating_provider()
{
    // The refresh takes 6 s: longer than a fixed few-second lease would last. The lease is
    // sized from TIMEOUT_SECS (10 s), so no second refresh starts while the first runs even
    // though requests keep coming the whole time.
    let fake = Fake::start(30, OnRefresh::Rotate, Duration::from_secs(6)).await;
    let app = Arc::new(fake.app(&[]).await);
    fake.sign_in(&app).await;
    let mut clients = JoinSet::new();
    for _ in 0..20 {
        let app = app.clone();
        clients.spawn(async move {
            let mut seen = Vec::new();
            // Back-to-back requests until the refreshed token is stored (bounded).
            for _ in 0..5_000 {
                let status = app.get("/auth").await.status().as_u16();
                seen.push(status);
                if status != 200 || app.stored_tokens().await["access_token"] == "at-1" {
                    break;
                }
            }
            seen
        });
    }
    let mut requests = 0;
    while let Some(seen) = clients.join_next().await {
        let seen = seen.expect("client task");
        assert!(
            seen.iter().all(|s| *s == 200),
            "no request answered otherwise: {seen:?}"
        );
        requests += seen.len();
    }
    assert!(
        requests >= 40,
        "traffic went on during the refresh ({requests} requests)"
    );
    assert_eq!(fake.refresh_calls(), 1, "exactly one refresh call");
    assert!(
        session_expiry(&app).await > gatehouse::identity::now_unix() + 3000,
        "the new token is in"
    );
    assert_eq!(statuses(&app, 5).await, vec![200; 5]);
    assert_eq!(
        fake.refresh_calls(),
        1,
        "a fresh token is not refreshed again"
    );
}

#[tokio::test]
async fn two_instances_share_one_refresh() {
    let fake = Fake::start(30, OnRefresh::Rotate, Duration::from_secs(2)).await;
    let a = fake.app(&[]).await;
    let secret = a.vars["GATEHOUSE__SESSION__SECRET"].clone();
    let b = fake
        .app(&[
            ("GATEHOUSE__SESSION__SECRET", &secret),
            ("GATEHOUSE__REDIS__KEY_PREFIX", &a.prefix),
        ])
        .await;
    fake.sign_in(&a).await;
    // The same browser (one jar, both on 127.0.0.1) asks both instances at once.
    let b_view = TestApp {
        client: a.client.clone(),
        jar: a.jar.clone(),
        ..TestApp::at(b.port, b.prefix.clone(), b.vars.clone())
    };
    let (on_a, on_b) = tokio::join!(statuses(&a, 10), statuses(&b_view, 10));
    assert_eq!(on_a, vec![200; 10]);
    assert_eq!(on_b, vec![200; 10]);
    assert_eq!(fake.refresh_calls(), 1, "one refresh across both instances");
}

#[tokio::test]
async fn requests_holding_an_expired_token_wait_for_the_refresh() {
    let fake = Fake::start(0, OnRefresh::Rotate, Duration::from_secs(1)).await;
    let app = fake.app(&[]).await;
    fake.sign_in(&app).await;
    let all = statuses(&app, 10).await;
    assert_eq!(all, vec![200; 10], "they waited for the one refresh");
    assert_eq!(fake.refresh_calls(), 1);
}

#[tokio::test]
async fn invalid_grant_ends_the_session() {
    let fake = Fake::start(30, OnRefresh::InvalidGrant, Duration::ZERO).await;
    let app = fake.app(&[]).await;
    fake.sign_in(&app).await;
    assert_eq!(app.keys("session").await.len(), 1);
    assert_json_error(app.get("/auth").await, 401, "unauthorized").await;
    assert!(
        app.keys("session").await.is_empty(),
        "the session is deleted"
    );
    assert_eq!(app.get("/session").await.status().as_u16(), 401);
}

#[tokio::test]
async fn a_provider_outage_keeps_the_session_while_the_token_lasts() {
    let fake = Fake::start(30, OnRefresh::Fail, Duration::ZERO).await;
    let app = fake.app(&[]).await;
    fake.sign_in(&app).await;
    assert_eq!(statuses(&app, 3).await, vec![200; 3]);
    assert!(fake.refresh_calls() >= 1, "it tried");
    assert_eq!(app.keys("session").await.len(), 1, "still signed in");
}

#[tokio::test]
async fn without_a_refresh_token_the_session_ends_with_the_access_token_unless_told_otherwise() {
    let fake = Fake::start(0, OnRefresh::Rotate, Duration::ZERO).await;
    fake.state.lock().expect("state").with_refresh_token = false;
    let app = fake.app(&[]).await;
    fake.sign_in(&app).await;
    assert_eq!(app.get("/auth").await.status().as_u16(), 401);
    assert!(app.keys("session").await.is_empty());

    let outliving = fake
        .app(&[("GATEHOUSE__TOKENS__OUTLIVE_ACCESS_TOKEN", "true")])
        .await;
    fake.sign_in(&outliving).await;
    assert_eq!(outliving.get("/auth").await.status().as_u16(), 200);
    assert_eq!(fake.refresh_calls(), 0);
}

#[tokio::test]
async fn sign_out_revokes_the_refresh_token_and_can_end_the_provider_session() {
    let fake = Fake::start(3600, OnRefresh::Rotate, Duration::ZERO).await;
    let app = fake.app(&[]).await;
    fake.sign_in(&app).await;
    let out = app
        .client
        .post(app.url("/signout"))
        .header("origin", PUBLIC_URL)
        .send()
        .await
        .expect("signout");
    assert_eq!(out.status().as_u16(), 303);
    assert_eq!(location(&out), "/");
    assert_eq!(
        fake.state.lock().expect("state").revoked,
        vec!["rt-0".to_owned()]
    );

    let logout = fake
        .app(&[("GATEHOUSE__SIGNOUT__PROVIDER_LOGOUT", "true")])
        .await;
    fake.sign_in(&logout).await;
    let out = logout
        .client
        .post(logout.url("/signout"))
        .header("origin", PUBLIC_URL)
        .send()
        .await
        .expect("signout");
    assert_eq!(out.status().as_u16(), 303);
    let to = location(&out);
    assert!(
        to.starts_with(&format!("{}/session/end?", fake.mock.uri())),
        "{to}"
    );
    assert!(
        query_param(&to, "id_token_hint").is_some_and(|t| t.split('.').count() == 3),
        "{to}"
    );
    assert_eq!(
        query_param(&to, "post_logout_redirect_uri").as_deref(),
        Some("http://gatehouse.test/")
    );
    assert_eq!(logout.get("/auth").await.status().as_u16(), 401);
}

#[tokio::test]
async fn refresh_and_sign_out_against_the_real_provider() {
    // Every token counts as "about to expire", so the first /auth refreshes.
    let app = spawn_app_with_idp(&[
        ("GATEHOUSE__TOKENS__REFRESH_BEFORE_SECS", "86400"),
        ("GATEHOUSE__SIGNOUT__PROVIDER_LOGOUT", "true"),
    ])
    .await;
    assert_eq!(
        app.sign_in(&app.client, "uma", None)
            .await
            .status()
            .as_u16(),
        303
    );
    let before = app.stored_tokens().await;
    assert_eq!(app.get("/auth").await.status().as_u16(), 200);
    let after = app.stored_tokens().await;
    assert_ne!(
        before["access_token"], after["access_token"],
        "refreshed at the provider"
    );
    let refresh = after["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();

    let out = app
        .client
        .post(app.url("/signout"))
        .header("origin", PUBLIC_URL)
        .send()
        .await
        .expect("signout");
    let to = location(&out);
    assert!(
        to.starts_with(&format!("{}/session/end?", idp().issuer)),
        "{to}"
    );
    // The refresh token no longer works at the provider.
    let res = reqwest::Client::new()
        .post(format!("{}/token", idp().issuer))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .expect("token endpoint");
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn a_client_that_goes_away_mid_refresh_loses_nothing() {
    // The provider takes 1.5 s to rotate; the client gives up after 200 ms. The refresh runs on
    // in its own task: the rotated token is stored, once, and the session goes on.
    let fake = Fake::start(30, OnRefresh::Rotate, Duration::from_millis(1500)).await;
    let app = fake.app(&[]).await;
    fake.sign_in(&app).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let cut = impatient
        .get(app.url("/auth"))
        .header("Cookie", app.cookie_header())
        .send()
        .await;
    assert!(cut.is_err(), "the client gave up before the answer");
    // Wait (bounded) for the rotated token to be stored: the event, not a guess at its time.
    let mut stored = String::new();
    for _ in 0..200 {
        stored = app.stored_tokens().await["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if stored == "at-1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored, "at-1", "the refresh finished without its client");
    assert_eq!(app.get("/auth").await.status().as_u16(), 200);
    assert_eq!(fake.refresh_calls(), 1, "one refresh at the provider");
    let tokens = app.stored_tokens().await;
    assert_eq!(
        tokens["refresh_token"], "rt-1",
        "the rotated token was kept"
    );
    assert!(
        app.keys("lock").await.is_empty(),
        "the lease was given back"
    );
}

#[tokio::test]
async fn claims_are_checked_again_after_a_refresh() {
    // Signed in as a member of `staff`; the refreshed ID token says the user left the group.
    let fake = Fake::start(30, OnRefresh::Rotate, Duration::ZERO).await;
    {
        let mut s = fake.state.lock().expect("state");
        s.code_groups = vec!["staff".into()];
        s.refresh_groups = Some(vec!["alumni".into()]);
    }
    let app = fake
        .app(&[("GATEHOUSE__ACCESS__ALLOWED_GROUPS", "staff")])
        .await;
    fake.sign_in(&app).await;
    assert_json_error(app.get("/auth").await, 403, "access_denied").await;
    assert_eq!(fake.refresh_calls(), 1);
    assert!(app.keys("session").await.is_empty(), "the session ended");
    assert_eq!(app.get("/auth").await.status().as_u16(), 401);
}

#[tokio::test]
async fn a_refresh_with_new_groups_updates_the_headers() {
    let fake = Fake::start(30, OnRefresh::Rotate, Duration::ZERO).await;
    {
        let mut s = fake.state.lock().expect("state");
        s.code_groups = vec!["staff".into()];
        s.refresh_groups = Some(vec!["staff".into(), "admins".into()]);
    }
    let app = fake.app(&[]).await;
    fake.sign_in(&app).await;
    let res = app.get("/auth").await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-auth-request-groups"], "staff,admins");
    // And they stay: the refreshed record holds them.
    let res = app.get("/auth?allowed_groups=admins").await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(fake.refresh_calls(), 1);
}

/// A JWKS that gains a rotated key after its first answer, and from then on answers slowly.
#[derive(Clone)]
struct RotatingJwks {
    calls: Arc<Mutex<u32>>,
    delay: Duration,
}

impl Respond for RotatingJwks {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut calls = self.calls.lock().expect("calls");
        *calls += 1;
        if *calls == 1 {
            ResponseTemplate::new(200).set_body_json(json!({"keys": [test_jwk(TEST_KID)]}))
        } else {
            ResponseTemplate::new(200)
                .set_body_json(json!({"keys": [test_jwk(TEST_KID), other_jwk("rotated")]}))
                .set_delay(self.delay)
        }
    }
}

#[tokio::test]
async fn a_slow_jwks_refetch_during_a_refresh_stays_inside_the_lease() {
    // The access token has expired: every request needs the refresh. Its new ID token is
    // signed by a key the provider rotated in, so gatehouse fetches the JWKS again, which
    // takes 1.5 s. The refresh still happens once, under its lease, and everyone gets 200.
    let fake = Fake::start(0, OnRefresh::Rotate, Duration::ZERO).await;
    {
        let mut s = fake.state.lock().expect("state");
        s.refresh_groups = Some(vec!["staff".into()]);
        s.refresh_rotated_key = true;
    }
    let jwks_calls = Arc::new(Mutex::new(0));
    // Takes precedence over the fake's static JWKS (mounted later, same path).
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(RotatingJwks {
            calls: jwks_calls.clone(),
            delay: Duration::from_millis(1500),
        })
        .with_priority(1)
        .mount(&fake.mock)
        .await;
    let app = Arc::new(fake.app(&[]).await);
    fake.sign_in(&app).await;
    let statuses = statuses(&app, 10).await;
    assert_eq!(statuses, vec![200; 10]);
    assert_eq!(fake.refresh_calls(), 1, "exactly one refresh");
    assert_eq!(
        *jwks_calls.lock().expect("calls"),
        2,
        "one refetch of the keys"
    );
    assert_eq!(app.stored_tokens().await["access_token"], "at-1");
    assert!(
        app.keys("lock").await.is_empty(),
        "the lease was given back"
    );
    let res = app.get("/auth").await;
    assert_eq!(res.headers()["x-auth-request-groups"], "staff");
}
