//! The token exchange against a mock token endpoint (wiremock): what gatehouse sends, how each
//! fault of the endpoint is answered (502 exchange_failed, state spent), and that no code is
//! exchanged before the state checks out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;
use crate::id_tokens::{mount_jwks, signed, test_jwk, TEST_KID};

const ACCESS_TOKEN: &str = "at-secret-3b9d1f";
const REFRESH_TOKEN: &str = "rt-secret-77c0e2";

/// An app whose token endpoint is `<mock>/token` (timeout 2 s) and whose JWKS is the mock's
/// `/jwks` (the test-only key, mounted here), plus `overrides`.
async fn app_for(mock: &MockServer, overrides: &[(&str, &str)]) -> TestApp {
    mount_jwks(mock, vec![test_jwk(TEST_KID)]).await;
    let token_url = format!("{}/token", mock.uri());
    let jwks_url = format!("{}/jwks", mock.uri());
    let mut vars = vec![
        ("GATEHOUSE__PROVIDER__TOKEN_URL", token_url.as_str()),
        ("GATEHOUSE__PROVIDER__JWKS_URL", jwks_url.as_str()),
        ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "2"),
    ];
    vars.extend_from_slice(overrides);
    spawn_app_with(&vars).await
}

/// A started sign-in: the authorize URL's state and nonce.
struct Started {
    authorize: String,
    state: String,
    nonce: String,
}

async fn start(app: &TestApp) -> Started {
    let authorize = app.start_sign_in(&app.client, None).await;
    Started {
        state: query_param(&authorize, "state").expect("state"),
        nonce: query_param(&authorize, "nonce").expect("nonce"),
        authorize,
    }
}

/// The provider's redirect back with `code=abc`, in the app's browser.
async fn callback(app: &TestApp, state: &str) -> reqwest::Response {
    app.get(&format!("/redirect?code=abc&state={state}")).await
}

async fn requests_to(mock: &MockServer, to: &str) -> Vec<wiremock::Request> {
    mock.received_requests()
        .await
        .expect("request recording is on")
        .into_iter()
        .filter(|r| r.url.path() == to)
        .collect()
}

fn form(req: &wiremock::Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect()
}

fn b64url(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An ID token with these claims, RS256-signed by the test-only key the mock's `/jwks` serves.
fn jwt(claims: &serde_json::Value) -> String {
    signed(claims)
}

/// A token with this header and a signature that is not one (for `alg: none`).
fn jwt_with_header(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string()),
        b64url(claims.to_string()),
        b64url("not-a-real-signature")
    )
}

fn good_claims(nonce: &str) -> serde_json::Value {
    let now = gatehouse::identity::now_unix();
    json!({
        "iss": "https://idp.example",
        "sub": "mock-user",
        "aud": CLIENT_ID,
        "exp": now + 600,
        "iat": now,
        "nonce": nonce,
        "email": "mock@example.com",
    })
}

fn token_response(id_token: Option<&str>) -> serde_json::Value {
    let mut body = json!({
        "access_token": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": REFRESH_TOKEN,
        "scope": "openid email",
    });
    if let Some(id_token) = id_token {
        body["id_token"] = json!(id_token);
    }
    body
}

async fn mount_token(mock: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(response)
        .mount(mock)
        .await;
}

/// Asserts nobody is signed in on the app's browser, and nothing was stored as a session.
async fn assert_signed_out(app: &TestApp) {
    assert_json_error(app.get("/session").await, 401, "unauthorized").await;
    assert_eq!(app.get("/auth").await.status().as_u16(), 401);
    assert!(app.keys("session").await.is_empty(), "no session stored");
}

/// One fault of the token endpoint: 502 exchange_failed, exactly one token request, the state
/// spent, nobody signed in.
async fn assert_fault_gives_502(response: ResponseTemplate) {
    let mock = MockServer::start().await;
    mount_token(&mock, response).await;
    let app = app_for(&mock, &[]).await;
    let started = start(&app).await;

    let res = callback(&app, &started.state).await;
    assert_json_error(res, 502, "exchange_failed").await;
    assert_eq!(requests_to(&mock, "/token").await.len(), 1);

    let replay = callback(&app, &started.state).await;
    assert_json_error(replay, 400, "invalid_state").await;
    assert_eq!(
        requests_to(&mock, "/token").await.len(),
        1,
        "a spent state never reaches the token endpoint"
    );
    assert_signed_out(&app).await;
}

#[tokio::test]
async fn token_endpoint_500_is_exchange_failed() {
    assert_fault_gives_502(ResponseTemplate::new(500).set_body_string("oops")).await;
}

#[tokio::test]
async fn token_endpoint_500_with_empty_body_is_exchange_failed() {
    assert_fault_gives_502(ResponseTemplate::new(503)).await;
}

#[tokio::test]
async fn malformed_json_is_exchange_failed() {
    assert_fault_gives_502(
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json")
            .set_body_string("{\"access_token\": \"x\", \"token_type\":"),
    )
    .await;
}

#[tokio::test]
async fn html_instead_of_json_is_exchange_failed() {
    assert_fault_gives_502(
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/html")
            .set_body_string("<html>login</html>"),
    )
    .await;
}

#[tokio::test]
async fn oauth_error_response_is_exchange_failed() {
    assert_fault_gives_502(ResponseTemplate::new(400).set_body_json(json!({
        "error": "invalid_grant",
        "error_description": "code expired"
    })))
    .await;
}

#[tokio::test]
async fn mac_token_type_is_exchange_failed() {
    assert_fault_gives_502(ResponseTemplate::new(200).set_body_json(json!({
        "access_token": ACCESS_TOKEN,
        "token_type": "mac",
        "expires_in": 3600,
    })))
    .await;
}

#[tokio::test]
async fn empty_access_token_is_exchange_failed() {
    assert_fault_gives_502(ResponseTemplate::new(200).set_body_json(json!({
        "access_token": "",
        "token_type": "Bearer",
    })))
    .await;
}

#[tokio::test]
async fn a_slow_token_endpoint_is_answered_within_the_timeout() {
    let mock = MockServer::start().await;
    mount_token(
        &mock,
        ResponseTemplate::new(200)
            .set_body_json(token_response(None))
            .set_delay(Duration::from_secs(5)),
    )
    .await;
    let app = app_for(&mock, &[]).await;
    let started = start(&app).await;

    let began = Instant::now();
    let res = callback(&app, &started.state).await;
    let took = began.elapsed();
    assert_json_error(res, 502, "exchange_failed").await;
    assert!(
        took < Duration::from_millis(3500),
        "answered after {took:?}: TIMEOUT_SECS=2 must bound the exchange"
    );
    assert!(
        took >= Duration::from_millis(1900),
        "answered after {took:?}: it did not wait for the endpoint at all"
    );
    assert_eq!(requests_to(&mock, "/token").await.len(), 1);
    let replay = callback(&app, &started.state).await;
    assert_json_error(replay, 400, "invalid_state").await;
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_exchange_failed() {
    let token_url = format!("http://127.0.0.1:{}/token", dead_port());
    let app = spawn_app_with(&[("GATEHOUSE__PROVIDER__TOKEN_URL", &token_url)]).await;
    let started = start(&app).await;
    let res = callback(&app, &started.state).await;
    assert_json_error(res, 502, "exchange_failed").await;
    let replay = callback(&app, &started.state).await;
    assert_json_error(replay, 400, "invalid_state").await;
    assert_signed_out(&app).await;
}

#[tokio::test]
async fn a_hung_token_endpoint_is_answered_within_the_timeout() {
    let hole = BlackHole::start();
    let token_url = format!("http://127.0.0.1:{}/token", hole.port);
    let app = spawn_app_with(&[
        ("GATEHOUSE__PROVIDER__TOKEN_URL", &token_url),
        ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "2"),
    ])
    .await;
    let started = start(&app).await;
    let began = Instant::now();
    let res = callback(&app, &started.state).await;
    let took = began.elapsed();
    assert_json_error(res, 502, "exchange_failed").await;
    assert!(hole.accepted() >= 1, "the exchange really went there");
    assert!(
        took < Duration::from_millis(3500),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn token_endpoint_redirects_are_not_followed() {
    for status in [302, 307] {
        let mock = MockServer::start().await;
        let app = app_for(&mock, &[]).await;
        let started = start(&app).await;
        // Following the redirect would succeed: a valid answer waits there.
        Mock::given(path("/token-elsewhere"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(token_response(Some(&jwt(&good_claims(&started.nonce))))),
            )
            .mount(&mock)
            .await;
        mount_token(
            &mock,
            ResponseTemplate::new(status).insert_header(
                "location",
                format!("{}/token-elsewhere", mock.uri()).as_str(),
            ),
        )
        .await;

        let res = callback(&app, &started.state).await;
        assert_json_error(res, 502, "exchange_failed").await;
        assert_eq!(requests_to(&mock, "/token").await.len(), 1);
        assert_eq!(
            requests_to(&mock, "/token-elsewhere").await.len(),
            0,
            "a {status} from the token endpoint must not be followed"
        );
        assert_signed_out(&app).await;
    }
}

#[tokio::test]
async fn the_exchange_sends_code_verifier_and_basic_client_auth() {
    let mock = MockServer::start().await;
    let app = app_for(&mock, &[]).await;
    let started = start(&app).await;
    mount_token(
        &mock,
        ResponseTemplate::new(200)
            .set_body_json(token_response(Some(&jwt(&good_claims(&started.nonce))))),
    )
    .await;
    let res = callback(&app, &started.state).await;
    assert_eq!(res.status().as_u16(), 303);

    let requests = requests_to(&mock, "/token").await;
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.method.as_str(), "POST");
    let body = String::from_utf8_lossy(&req.body).into_owned();
    assert!(body.contains("code=abc"), "{body}");
    assert!(body.contains("code_verifier="), "{body}");
    assert!(body.contains("grant_type=authorization_code"), "{body}");
    assert!(
        req.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded")),
        "{:?}",
        req.headers
    );

    let form = form(req);
    assert_eq!(form["code"], "abc");
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["redirect_uri"], format!("{PUBLIC_URL}/redirect"));
    assert!(!form.contains_key("client_secret"), "{body}");
    assert!(!body.contains(CLIENT_SECRET), "{body}");

    // PKCE: the verifier sent is the one whose S256 challenge went to the provider.
    assert_eq!(
        query_param(&started.authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let challenge = oauth2::PkceCodeChallenge::from_code_verifier_sha256(
        &oauth2::PkceCodeVerifier::new(form["code_verifier"].clone()),
    );
    assert_eq!(
        Some(challenge.as_str()),
        query_param(&started.authorize, "code_challenge").as_deref()
    );

    let auth = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .expect("an Authorization header");
    let encoded = auth.strip_prefix("Basic ").expect("Basic auth");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64 credentials");
    assert_eq!(
        String::from_utf8(decoded).expect("utf-8"),
        format!("{CLIENT_ID}:{CLIENT_SECRET}")
    );
}

#[tokio::test]
async fn client_auth_post_sends_the_secret_in_the_body() {
    let mock = MockServer::start().await;
    mount_token(&mock, ResponseTemplate::new(500)).await;
    let app = app_for(&mock, &[("GATEHOUSE__PROVIDER__CLIENT_AUTH", "post")]).await;
    let started = start(&app).await;
    assert_json_error(callback(&app, &started.state).await, 502, "exchange_failed").await;

    let requests = requests_to(&mock, "/token").await;
    assert_eq!(requests.len(), 1);
    let form = form(&requests[0]);
    assert_eq!(form.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(
        form.get("client_secret").map(String::as_str),
        Some(CLIENT_SECRET)
    );
    assert!(form.contains_key("code_verifier"));
    assert!(
        requests[0].headers.get("authorization").is_none(),
        "{:?}",
        requests[0].headers
    );
}

#[tokio::test]
async fn a_public_client_sends_its_id_and_no_secret() {
    let mock = MockServer::start().await;
    mount_token(&mock, ResponseTemplate::new(500)).await;
    let app = app_for(&mock, &[("GATEHOUSE__PROVIDER__CLIENT_SECRET", "")]).await;
    let started = start(&app).await;
    assert_json_error(callback(&app, &started.state).await, 502, "exchange_failed").await;

    let requests = requests_to(&mock, "/token").await;
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    let form = form(req);
    assert_eq!(form.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert!(!form.contains_key("client_secret"), "{form:?}");
    assert!(form.contains_key("code_verifier"));
    assert!(req.headers.get("authorization").is_none());
    let body = String::from_utf8_lossy(&req.body);
    assert!(!body.contains(CLIENT_SECRET));
    for (name, value) in &req.headers {
        let value = value.to_str().unwrap_or_default();
        assert!(!value.contains(CLIENT_SECRET), "secret in header {name}");
    }
}

#[tokio::test]
async fn an_invalid_state_never_reaches_the_token_endpoint() {
    let mock = MockServer::start().await;
    mount_token(&mock, ResponseTemplate::new(500)).await;
    let app = app_for(&mock, &[]).await;

    for state in [
        "not-a-real-state-but-long-enough-xxxxxxx",
        "%00%01",
        &gatehouse::random::token(),
    ] {
        let res = callback(&app, state).await;
        assert_json_error(res, 400, "invalid_state").await;
    }

    // A real state, presented by another browser.
    let started = start(&app).await;
    let res = browser()
        .get(app.url(&format!("/redirect?code=abc&state={}", started.state)))
        .send()
        .await
        .expect("answered");
    assert_json_error(res, 400, "invalid_state").await;

    // A real state with a provider error, or without a code.
    let started = start(&app).await;
    let res = app
        .get(&format!(
            "/redirect?code=abc&error=access_denied&state={}",
            started.state
        ))
        .await;
    assert_json_error(res, 400, "provider_error").await;
    let started = start(&app).await;
    let res = app.get(&format!("/redirect?state={}", started.state)).await;
    assert_json_error(res, 400, "invalid_request").await;

    assert_eq!(requests_to(&mock, "/token").await.len(), 0);
}

#[tokio::test]
async fn an_expired_sign_in_never_reaches_the_token_endpoint() {
    let mock = MockServer::start().await;
    mount_token(&mock, ResponseTemplate::new(500)).await;
    let app = app_for(&mock, &[("GATEHOUSE__SESSION__SIGNIN_TTL_SECS", "1")]).await;
    let started = start(&app).await;
    assert_eq!(app.keys("signin").await.len(), 1, "the sign-in is pending");
    // Wait (bounded) for Redis to expire it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.keys("signin").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the pending sign-in never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = callback(&app, &started.state).await;
    assert_json_error(res, 400, "invalid_state").await;
    assert_eq!(requests_to(&mock, "/token").await.len(), 0);
}

#[tokio::test]
async fn a_valid_exchange_signs_in_and_keeps_tokens_server_side() {
    let mock = MockServer::start().await;
    let app = app_for(&mock, &[]).await;
    let started = start(&app).await;
    let id_token = jwt(&good_claims(&started.nonce));
    mount_token(
        &mock,
        ResponseTemplate::new(200).set_body_json(token_response(Some(&id_token))),
    )
    .await;

    let res = callback(&app, &started.state).await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(location(&res), "/");

    let res = app.get("/session").await;
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.expect("body");
    for secret in [ACCESS_TOKEN, REFRESH_TOKEN, id_token.as_str()] {
        assert!(!text.contains(secret), "a token in /session: {text}");
    }
    let session: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(session["subject"], "mock-user");
    assert_eq!(session["email"], "mock@example.com");
    assert_eq!(session["scopes"], json!(["openid", "email"]));
    let now = gatehouse::identity::now_unix();
    let expires_at = session["expires_at"].as_u64().expect("expires_at");
    assert!(
        (now + 3500..=now + 3700).contains(&expires_at),
        "expires_at {expires_at}, now {now}"
    );

    let auth = app.get("/auth").await;
    assert_eq!(auth.status().as_u16(), 200);
    assert_eq!(auth.headers()["x-auth-request-user"], "mock-user");
    // This provider does not say the email is verified: it is not forwarded (nOAuth).
    assert!(auth.headers().get("x-auth-request-email").is_none());

    // The state is spent even after a success.
    let replay = callback(&app, &started.state).await;
    assert_json_error(replay, 400, "invalid_state").await;
    assert_eq!(requests_to(&mock, "/token").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callbacks_with_one_state_exchange_the_code_once() {
    let mock = MockServer::start().await;
    let app = app_for(&mock, &[]).await;
    let started = start(&app).await;
    mount_token(
        &mock,
        ResponseTemplate::new(200)
            .set_body_json(token_response(Some(&jwt(&good_claims(&started.nonce))))),
    )
    .await;

    let url = app.url(&format!("/redirect?code=abc&state={}", started.state));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url) = (app.client.clone(), url.clone());
        calls.spawn(async move { client.get(url).send().await.expect("answered").status() });
    }
    let statuses: Vec<u16> = calls
        .join_all()
        .await
        .into_iter()
        .map(|s| s.as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(requests_to(&mock, "/token").await.len(), 1);
}

#[tokio::test]
async fn a_wrong_nonce_is_exchange_failed_and_signs_nobody_in() {
    let mock = MockServer::start().await;
    let app = app_for(&mock, &[]).await;
    let started = start(&app).await;
    mount_token(
        &mock,
        ResponseTemplate::new(200)
            .set_body_json(token_response(Some(&jwt(&good_claims("some-other-nonce"))))),
    )
    .await;
    let res = callback(&app, &started.state).await;
    assert_json_error(res, 502, "exchange_failed").await;
    assert_eq!(requests_to(&mock, "/token").await.len(), 1);
    assert_signed_out(&app).await;
}

#[tokio::test]
async fn each_unacceptable_id_token_is_exchange_failed() {
    let mock = MockServer::start().await;
    let app = app_for(&mock, &[]).await;
    type Case = fn(&str) -> Option<String>;
    let cases: &[(&str, Case)] = &[
        ("no id_token", |_| None),
        ("alg none", |n| {
            Some(jwt_with_header(&json!({"alg": "none"}), &good_claims(n)))
        }),
        ("no nonce", |n| {
            let mut c = good_claims(n);
            c.as_object_mut().map(|o| o.remove("nonce"));
            Some(jwt(&c))
        }),
        ("other audience", |n| {
            let mut c = good_claims(n);
            c["aud"] = json!("someone-else");
            Some(jwt(&c))
        }),
        ("expired", |n| {
            let mut c = good_claims(n);
            c["exp"] = json!(gatehouse::identity::now_unix() - 3600);
            Some(jwt(&c))
        }),
        ("empty subject", |n| {
            let mut c = good_claims(n);
            c["sub"] = json!("");
            Some(jwt(&c))
        }),
        ("not a JWT", |_| Some("a.b".to_owned())),
        ("claims not JSON", |_| {
            Some(format!(
                "{}.{}.{}",
                b64url(r#"{"alg":"RS256"}"#),
                b64url("not json"),
                b64url("sig")
            ))
        }),
    ];
    for (name, make) in cases {
        mock.reset().await;
        mount_jwks(&mock, vec![test_jwk(TEST_KID)]).await;
        let started = start(&app).await;
        let id_token = make(&started.nonce);
        mount_token(
            &mock,
            ResponseTemplate::new(200).set_body_json(token_response(id_token.as_deref())),
        )
        .await;
        let res = callback(&app, &started.state).await;
        assert_eq!(res.status().as_u16(), 502, "{name}");
        assert_json_error(res, 502, "exchange_failed").await;
        assert_eq!(requests_to(&mock, "/token").await.len(), 1, "{name}");
        assert_signed_out(&app).await;
    }
}

#[tokio::test]
async fn without_openid_the_identity_comes_from_userinfo() {
    // GitHub-like: no `sub`; SUBJECT_CLAIM names `id`, a number kept as its decimal string.
    let mock = MockServer::start().await;
    let mut body = token_response(None);
    body["scope"] = json!("email profile");
    mount_token(&mock, ResponseTemplate::new(200).set_body_json(body)).await;
    Mock::given(method("GET"))
        .and(path("/userinfo"))
        .and(wiremock::matchers::header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": 4242, "login": "octo", "email": "octo@example.com", "name": "Octo Cat"
        })))
        .expect(1)
        .mount(&mock)
        .await;
    let userinfo = format!("{}/userinfo", mock.uri());
    let app = app_for(
        &mock,
        &[
            ("GATEHOUSE__PROVIDER__SCOPES", "email profile"),
            ("GATEHOUSE__PROVIDER__USERINFO_URL", &userinfo),
            ("GATEHOUSE__PROVIDER__SUBJECT_CLAIM", "id"),
        ],
    )
    .await;
    let authorize = app.start_sign_in(&app.client, None).await;
    assert_eq!(
        query_param(&authorize, "nonce"),
        None,
        "no nonce without openid"
    );
    let state = query_param(&authorize, "state").expect("state");
    let res = callback(&app, &state).await;
    assert_eq!(res.status().as_u16(), 303);
    let session: serde_json::Value = app.get("/session").await.json().await.expect("json");
    assert_eq!(session["subject"], "4242");
    assert_eq!(session["email"], "octo@example.com");
    assert_eq!(session["scopes"], json!(["email", "profile"]));
}

#[tokio::test]
async fn the_userinfo_fields_are_those_configured_and_a_missing_subject_is_exchange_failed() {
    let mock = MockServer::start().await;
    let mut body = token_response(None);
    body["scope"] = json!("read:user");
    mount_token(&mock, ResponseTemplate::new(200).set_body_json(body)).await;
    Mock::given(method("GET"))
        .and(path("/userinfo"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "user_id": "u-77", "mail": "mail@example.com", "email": "other@example.com",
            "email_verified": true
        })))
        .mount(&mock)
        .await;
    let userinfo = format!("{}/userinfo", mock.uri());
    let settings = [
        ("GATEHOUSE__PROVIDER__SCOPES", "read:user"),
        ("GATEHOUSE__PROVIDER__USERINFO_URL", userinfo.as_str()),
    ];
    // The default subject field, `sub`, is not there: nobody signs in.
    let app = app_for(&mock, &settings).await;
    let state = query_param(&app.start_sign_in(&app.client, None).await, "state").expect("state");
    assert_json_error(callback(&app, &state).await, 502, "exchange_failed").await;
    assert_signed_out(&app).await;
    // Named: the user and the email come from those fields.
    let mut named = settings.to_vec();
    named.push(("GATEHOUSE__PROVIDER__SUBJECT_CLAIM", "user_id"));
    named.push(("GATEHOUSE__PROVIDER__EMAIL_CLAIM", "mail"));
    let app = app_for(&mock, &named).await;
    let state = query_param(&app.start_sign_in(&app.client, None).await, "state").expect("state");
    assert_eq!(callback(&app, &state).await.status().as_u16(), 303);
    let auth = app.get("/auth").await;
    assert_eq!(auth.headers()["x-auth-request-user"], "u-77");
    assert_eq!(auth.headers()["x-auth-request-email"], "mail@example.com");
}

#[tokio::test]
async fn a_failing_userinfo_endpoint_is_exchange_failed() {
    let mock = MockServer::start().await;
    mount_token(
        &mock,
        ResponseTemplate::new(200).set_body_json(token_response(None)),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/userinfo"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&mock)
        .await;
    let userinfo = format!("{}/userinfo", mock.uri());
    let app = app_for(
        &mock,
        &[
            ("GATEHOUSE__PROVIDER__SCOPES", "email"),
            ("GATEHOUSE__PROVIDER__USERINFO_URL", &userinfo),
        ],
    )
    .await;
    let state = query_param(&app.start_sign_in(&app.client, None).await, "state").expect("state");
    assert_json_error(callback(&app, &state).await, 502, "exchange_failed").await;
    assert_signed_out(&app).await;
}

#[tokio::test]
async fn an_id_token_without_email_is_completed_from_userinfo_for_the_same_subject() {
    let mock = MockServer::start().await;
    let app_vars_userinfo = format!("{}/userinfo", mock.uri());
    Mock::given(method("GET"))
        .and(path("/userinfo"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "sub": "mock-user", "email": "filled@example.com", "email_verified": true
        })))
        .expect(1)
        .mount(&mock)
        .await;
    let app = app_for(
        &mock,
        &[("GATEHOUSE__PROVIDER__USERINFO_URL", &app_vars_userinfo)],
    )
    .await;
    let started = start(&app).await;
    let mut claims = good_claims(&started.nonce);
    claims.as_object_mut().map(|c| c.remove("email"));
    mount_token(
        &mock,
        ResponseTemplate::new(200).set_body_json(token_response(Some(&jwt(&claims)))),
    )
    .await;
    assert_eq!(callback(&app, &started.state).await.status().as_u16(), 303);
    let auth = app.get("/auth").await;
    assert_eq!(auth.headers()["x-auth-request-user"], "mock-user");
    assert_eq!(auth.headers()["x-auth-request-email"], "filled@example.com");
}
