//! ID-token verification: signatures against the provider's JWKS (a mock's, serving the
//! test-only keys in tests/data/test-only-keys, and the real development provider's), the
//! algorithm allow-list, claims, key rotation; RFC 9207; and the provider API the session code
//! builds on (refresh, revoke, end-session URL), against the real provider.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use gatehouse::identity::{Token, TokenSet};
use gatehouse::oauth::{Provider, ProviderError};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

use crate::helpers::*;

// ---- Test-only keys and signed tokens (also used by exchange_faults.rs) ----

const RSA_KEY: &str = include_str!("../data/test-only-keys/rsa-key.pem");
const RSA_PUBLIC: &str = include_str!("../data/test-only-keys/rsa-public.pem");
const RSA_JWK: &str = include_str!("../data/test-only-keys/rsa-jwk.json");
const OTHER_RSA_KEY: &str = include_str!("../data/test-only-keys/other-rsa-key.pem");
const OTHER_RSA_JWK: &str = include_str!("../data/test-only-keys/other-rsa-jwk.json");

/// The `kid` under which the mock provider publishes the test-only key.
pub const TEST_KID: &str = "test-only-key-1";

/// A PEM's DER body (tests only: jsonwebtoken's PEM support is not compiled in).
fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body")
}

/// The test-only key the mock provider signs with.
pub fn test_key() -> EncodingKey {
    EncodingKey::from_rsa_der(&der(RSA_KEY))
}

/// Another key, never published: what a forger signs with.
pub fn other_key() -> EncodingKey {
    EncodingKey::from_rsa_der(&der(OTHER_RSA_KEY))
}

fn public_jwk(text: &str, kid: &str) -> serde_json::Value {
    let mut key: serde_json::Value = serde_json::from_str(text).expect("jwk");
    key["kid"] = json!(kid);
    key["use"] = json!("sig");
    key["alg"] = json!("RS256");
    key
}

/// The test-only key's public half as a JWK with this kid.
pub fn test_jwk(kid: &str) -> serde_json::Value {
    public_jwk(RSA_JWK, kid)
}

/// The other key's public half (for a rotation: published later).
pub fn other_jwk(kid: &str) -> serde_json::Value {
    public_jwk(OTHER_RSA_JWK, kid)
}

/// `claims` as an RS256 JWS by `key`, naming `kid`.
pub fn sign_rs256(claims: &serde_json::Value, kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("token signed")
}

/// `claims` signed by the test-only key under TEST_KID: what the mock provider issues.
pub fn signed(claims: &serde_json::Value) -> String {
    sign_rs256(claims, TEST_KID, &test_key())
}

/// Serves `{"keys": keys}` at `<mock>/jwks`.
pub async fn mount_jwks(mock: &MockServer, keys: Vec<serde_json::Value>) {
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": keys })))
        .mount(mock)
        .await;
}

fn b64url(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token's claims, unverified (to read what a real provider put there).
fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

// ---- A mock provider: token endpoint + JWKS ----

const MOCK_ISSUER: &str = "https://idp.example";

fn claims(nonce: &str) -> serde_json::Value {
    let now = gatehouse::identity::now_unix();
    json!({
        "iss": MOCK_ISSUER,
        "sub": "mock-user",
        "aud": CLIENT_ID,
        "exp": now + 600,
        "iat": now,
        "nonce": nonce,
        "email": "mock@example.com",
    })
}

fn token_response(id_token: &str) -> serde_json::Value {
    json!({
        "access_token": "at-3f1e",
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": "rt-9a7c",
        "id_token": id_token,
    })
}

/// A token endpoint answering each code with the body registered for it: concurrent sign-ins
/// each get their own ID token (with their own nonce).
#[derive(Clone, Default)]
struct TokensByCode(Arc<Mutex<HashMap<String, serde_json::Value>>>);

impl TokensByCode {
    fn register(&self, code: &str, id_token: String) {
        self.0
            .lock()
            .expect("lock")
            .insert(code.to_owned(), token_response(&id_token));
    }
}

impl Respond for TokensByCode {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let code = url::form_urlencoded::parse(&request.body)
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        match self.0.lock().expect("lock").get(&code) {
            Some(body) => ResponseTemplate::new(200).set_body_json(body.clone()),
            None => ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})),
        }
    }
}

struct MockIdp {
    mock: MockServer,
    tokens: TokensByCode,
}

impl MockIdp {
    /// A token endpoint (TokensByCode) at `/token`; the JWKS is mounted by each test.
    async fn start() -> MockIdp {
        let mock = MockServer::start().await;
        let tokens = TokensByCode::default();
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(tokens.clone())
            .mount(&mock)
            .await;
        MockIdp { mock, tokens }
    }

    /// An app using this mock's token endpoint and `/jwks`, issuer MOCK_ISSUER (iss checked;
    /// no discovery, every endpoint is explicit).
    async fn app(&self) -> TestApp {
        let token_url = format!("{}/token", self.mock.uri());
        let jwks_url = format!("{}/jwks", self.mock.uri());
        spawn_app_with(&[
            ("GATEHOUSE__PROVIDER__ISSUER", MOCK_ISSUER),
            ("GATEHOUSE__PROVIDER__TOKEN_URL", &token_url),
            ("GATEHOUSE__PROVIDER__JWKS_URL", &jwks_url),
        ])
        .await
    }

    async fn jwks_requests(&self) -> usize {
        self.mock
            .received_requests()
            .await
            .expect("recording on")
            .iter()
            .filter(|r| r.url.path() == "/jwks")
            .count()
    }
}

/// A sign-in started in the app's browser: its state and nonce.
struct Pending {
    state: String,
    nonce: String,
}

async fn start(app: &TestApp) -> Pending {
    let authorize = app.start_sign_in(&app.client, None).await;
    Pending {
        state: query_param(&authorize, "state").expect("state"),
        nonce: query_param(&authorize, "nonce").expect("nonce"),
    }
}

/// Starts a sign-in, has the mock answer its code with `make(nonce)`, and calls back.
async fn sign_in_with(
    idp: &MockIdp,
    app: &TestApp,
    make: impl FnOnce(&str) -> String,
) -> reqwest::Response {
    let pending = start(app).await;
    let code = gatehouse::random::token();
    idp.tokens.register(&code, make(&pending.nonce));
    app.get(&format!(
        "/redirect?code={code}&state={}&iss={}",
        pending.state,
        url::form_urlencoded::byte_serialize(MOCK_ISSUER.as_bytes()).collect::<String>()
    ))
    .await
}

/// The same app, seen from a new browser (empty cookie jar).
fn another_browser(app: &TestApp) -> TestApp {
    TestApp::at(app.port, app.prefix.clone(), app.vars.clone())
}

async fn assert_signed_out(app: &TestApp) {
    assert_eq!(app.get("/auth").await.status().as_u16(), 401);
    assert!(app.keys("session").await.is_empty(), "no session stored");
}

/// The token `make` builds is refused: 502 exchange_failed, nobody signed in. A control
/// sign-in with a good token on the same app first proves the setup accepts good tokens.
async fn assert_refused(make: impl FnOnce(&str) -> String) {
    let idp = MockIdp::start().await;
    mount_jwks(&idp.mock, vec![test_jwk(TEST_KID)]).await;
    let control = idp.app().await;
    let res = sign_in_with(&idp, &control, |n| signed(&claims(n))).await;
    assert_eq!(res.status().as_u16(), 303, "the control sign-in succeeds");

    let app = idp.app().await;
    let res = sign_in_with(&idp, &app, make).await;
    assert_json_error(res, 502, "exchange_failed").await;
    assert_signed_out(&app).await;
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused() {
    assert_refused(|n| sign_rs256(&claims(n), TEST_KID, &other_key())).await;
}

#[tokio::test]
async fn a_token_whose_claims_were_changed_after_signing_is_refused() {
    assert_refused(|n| {
        let token = signed(&claims(n));
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut changed = claims(n);
        changed["sub"] = json!("admin");
        parts[1] = b64url(changed.to_string());
        parts.join(".")
    })
    .await;
}

#[tokio::test]
async fn an_expired_signed_token_is_refused() {
    assert_refused(|n| {
        let mut c = claims(n);
        let now = gatehouse::identity::now_unix();
        c["exp"] = json!(now - 120);
        c["iat"] = json!(now - 720);
        signed(&c)
    })
    .await;
}

#[tokio::test]
async fn a_signed_token_for_another_audience_is_refused() {
    assert_refused(|n| {
        let mut c = claims(n);
        c["aud"] = json!("another-client");
        signed(&c)
    })
    .await;
}

#[tokio::test]
async fn a_signed_token_with_an_untrusted_second_audience_is_refused_even_with_azp() {
    // OIDC Core 3.1.3.7 3: every audience must be trusted (PROVIDER__EXTRA_AUDIENCES is empty).
    assert_refused(|n| {
        let mut c = claims(n);
        c["aud"] = json!([CLIENT_ID, "another-client"]);
        c["azp"] = json!(CLIENT_ID);
        signed(&c)
    })
    .await;
}

#[tokio::test]
async fn a_signed_token_from_another_issuer_is_refused() {
    assert_refused(|n| {
        let mut c = claims(n);
        c["iss"] = json!("https://evil.example");
        signed(&c)
    })
    .await;
}

#[tokio::test]
async fn a_signed_token_with_another_nonce_is_refused() {
    assert_refused(|_| signed(&claims("a-nonce-from-another-sign-in"))).await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    assert_refused(|n| {
        format!(
            "{}.{}.",
            b64url(json!({"alg": "none", "kid": TEST_KID}).to_string()),
            b64url(claims(n).to_string())
        )
    })
    .await;
}

#[tokio::test]
async fn hs256_with_the_public_key_as_secret_is_refused() {
    // Key confusion: a verifier that let the token pick HMAC would use the published key's
    // bytes as the secret, which anyone has.
    for secret in [RSA_PUBLIC.as_bytes().to_vec(), der(RSA_PUBLIC)] {
        assert_refused(|n| {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(TEST_KID.to_owned());
            jsonwebtoken::encode(&header, &claims(n), &EncodingKey::from_secret(&secret))
                .expect("signed")
        })
        .await;
    }
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_once_and_then_accepts() {
    let idp = MockIdp::start().await;
    // The first fetch sees only the old key; every later one also the new key.
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [test_jwk("old")]})))
        .up_to_n_times(1)
        .mount(&idp.mock)
        .await;
    mount_jwks(&idp.mock, vec![test_jwk("old"), other_jwk("new")]).await;
    let app = idp.app().await;

    let res = sign_in_with(&idp, &app, |n| sign_rs256(&claims(n), "old", &test_key())).await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(idp.jwks_requests().await, 1, "fetched on first use");

    // The provider rotated: its new key signs now.
    let app2 = another_browser(&app);
    let res = sign_in_with(&idp, &app2, |n| sign_rs256(&claims(n), "new", &other_key())).await;
    assert_eq!(res.status().as_u16(), 303, "the rotated key is accepted");
    assert_eq!(idp.jwks_requests().await, 2, "refetched once");
    assert_eq!(app2.get("/auth").await.status().as_u16(), 200);

    // Both keys are cached now: no more fetches.
    for kid in ["old", "new"] {
        let app3 = another_browser(&app);
        let key = if kid == "old" {
            test_key()
        } else {
            other_key()
        };
        let res = sign_in_with(&idp, &app3, |n| sign_rs256(&claims(n), kid, &key)).await;
        assert_eq!(res.status().as_u16(), 303, "{kid}");
    }
    assert_eq!(idp.jwks_requests().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_unknown_kids_refetches_at_most_once_per_interval() {
    let idp = MockIdp::start().await;
    mount_jwks(&idp.mock, vec![test_jwk(TEST_KID)]).await;
    let app = idp.app().await;
    let res = sign_in_with(&idp, &app, |n| signed(&claims(n))).await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(idp.jwks_requests().await, 1);

    // 20 sign-ins, each with a token naming a kid nobody published, all at once.
    let began = Instant::now();
    let mut callbacks = Vec::new();
    for _ in 0..20 {
        let one = another_browser(&app);
        let pending = start(&one).await;
        let code = gatehouse::random::token();
        let kid = format!("made-up-{}", gatehouse::random::token());
        idp.tokens.register(
            &code,
            sign_rs256(&claims(&pending.nonce), &kid, &test_key()),
        );
        callbacks.push((
            one,
            format!("/redirect?code={code}&state={}", pending.state),
        ));
    }
    let mut calls = tokio::task::JoinSet::new();
    for (one, callback) in callbacks {
        calls.spawn(async move { one.get(&callback).await.status().as_u16() });
    }
    let statuses = calls.join_all().await;
    let elapsed = began.elapsed();
    assert!(statuses.iter().all(|s| *s == 502), "{statuses:?}");

    // The first unknown kid may refetch; the others wait for the interval (10 s). Counted
    // against the time the flood really took, so a slow machine cannot fail this.
    let allowed = 1 + 1 + (elapsed.as_secs() / 10) as usize;
    let fetched = idp.jwks_requests().await;
    assert!(
        (2..=allowed).contains(&fetched),
        "{fetched} JWKS fetches for 20 unknown kids in {elapsed:?}"
    );

    // The known key still works without another fetch.
    let last = another_browser(&app);
    let res = sign_in_with(&idp, &last, |n| signed(&claims(n))).await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(idp.jwks_requests().await, fetched);
}

#[tokio::test]
async fn without_any_jwks_url_only_the_claims_are_checked() {
    // The documented fallback (no issuer, no JWKS URL): a token is taken on the strength of the
    // connection to the token endpoint, its claims still checked.
    let idp = MockIdp::start().await;
    let token_url = format!("{}/token", idp.mock.uri());
    let app = spawn_app_with(&[("GATEHOUSE__PROVIDER__TOKEN_URL", &token_url)]).await;
    let fake_signature = |n: &str| {
        format!(
            "{}.{}.{}",
            b64url(json!({"alg": "RS256"}).to_string()),
            b64url(claims(n).to_string()),
            b64url("not-a-signature")
        )
    };
    let res = sign_in_with(&idp, &app, fake_signature).await;
    assert_eq!(res.status().as_u16(), 303);
    let other = another_browser(&app);
    let res = sign_in_with(&idp, &other, |_| {
        signed(&claims("a-nonce-from-another-sign-in"))
    })
    .await;
    assert_json_error(res, 502, "exchange_failed").await;
    assert_eq!(idp.jwks_requests().await, 0);
}

// ---- The real development provider ----

/// Walks a real sign-in up to the callback, then redeems the code at the real token endpoint
/// itself, as gatehouse would (the PKCE verifier read from the pending sign-in in Redis): a
/// genuine ID token for this very sign-in (its nonce). Returns it and the callback URL.
async fn real_id_token_for(app: &TestApp, login: &str) -> (String, String) {
    let issuer = &idp().issuer;
    let authorize = app.start_sign_in(&app.client, None).await;
    let state = query_param(&authorize, "state").expect("state");
    let pending = app
        .get_key(&format!("signin:{state}"))
        .await
        .expect("pending sign-in");
    let pending: serde_json::Value = serde_json::from_str(&pending).expect("json");
    let verifier = pending["pkce_verifier"].as_str().expect("verifier");
    let callback = idp_login(&app.client, &authorize, login).await;
    let code = query_param(&callback, "code").expect("code");
    let redirect_uri = format!("{PUBLIC_URL}/redirect");
    let res = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("token endpoint");
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    let id_token = body["id_token"].as_str().expect("id_token").to_owned();
    (id_token, callback)
}

/// One base64url character of the signature changed (not the last, whose low bits may be
/// padding).
fn tamper_signature(token: &str) -> String {
    let (signed_part, signature) = token.rsplit_once('.').expect("a JWS");
    let mut chars: Vec<char> = signature.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    format!("{signed_part}.{}", chars.into_iter().collect::<String>())
}

#[tokio::test]
async fn a_real_rs256_token_verifies_and_one_changed_signature_byte_is_refused() {
    let issuer = idp().issuer.clone();
    for tamper in [false, true] {
        // The real authorize endpoint and JWKS, a mock token endpoint handing out the real
        // token (perhaps tampered with); explicit endpoints, so no discovery.
        let mock = MockServer::start().await;
        let app = spawn_app_with(&[
            ("GATEHOUSE__PROVIDER__ISSUER", &issuer),
            ("GATEHOUSE__PROVIDER__AUTH_URL", &format!("{issuer}/auth")),
            (
                "GATEHOUSE__PROVIDER__TOKEN_URL",
                &format!("{}/token", mock.uri()),
            ),
            ("GATEHOUSE__PROVIDER__JWKS_URL", &format!("{issuer}/jwks")),
        ])
        .await;
        let (id_token, callback) = real_id_token_for(&app, "tamara").await;
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(id_token.split('.').next().expect("header"))
                .expect("base64url"),
        )
        .expect("json");
        assert_eq!(header["alg"], "RS256");
        let served = if tamper {
            tamper_signature(&id_token)
        } else {
            id_token.clone()
        };
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(token_response(&served)))
            .mount(&mock)
            .await;
        let res = app.follow_callback(&app.client, &callback).await;
        if tamper {
            assert_json_error(res, 502, "exchange_failed").await;
            assert_signed_out(&app).await;
        } else {
            assert_eq!(res.status().as_u16(), 303, "the genuine token is accepted");
            let auth = app.get("/auth").await;
            assert_eq!(auth.headers()["x-auth-request-user"], "tamara");
        }
    }
}

/// A development provider of this test's own, on `port`, killed on drop.
struct OwnIdp {
    child: Running,
}

impl OwnIdp {
    fn start(port: u16) -> OwnIdp {
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp"))
            .env("IDP_PORT", port.to_string())
            .env("IDP_FRESH_KEY", "1")
            .env("IDP_EXIT_WITH_STDIN", "1")
            .env("IDP_REDIRECT_URIS", format!("{PUBLIC_URL}/redirect"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs tests/idp/server.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.any(|l| l.map(|l| l.contains("idp listening")).unwrap_or(false));
        assert!(ready, "the provider did not start on port {port}");
        std::thread::spawn(move || for _ in lines {});
        OwnIdp {
            child: Running(child),
        }
    }

    fn stop(mut self) {
        self.child.0.kill().expect("provider killed");
        self.child.0.wait().expect("provider reaped");
    }
}

async fn kids_at(issuer: &str) -> Vec<String> {
    let jwks: serde_json::Value = reqwest::get(format!("{issuer}/jwks"))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_provider_that_rotates_its_signing_key_is_followed() {
    let port = dead_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let first = OwnIdp::start(port);
    let first_kids = kids_at(&issuer).await;
    let app = spawn_app_with(&[
        ("GATEHOUSE__PROVIDER__ISSUER", &issuer),
        ("GATEHOUSE__PROVIDER__AUTH_URL", ""),
        ("GATEHOUSE__PROVIDER__TOKEN_URL", ""),
    ])
    .await;
    let res = app.sign_in(&app.client, "rosa", None).await;
    assert_eq!(res.status().as_u16(), 303, "signed in under the first key");

    // The provider restarts with a new key on the same address.
    first.stop();
    let _second = OwnIdp::start(port);
    let second_kids = kids_at(&issuer).await;
    assert_eq!(second_kids.len(), 1);
    assert!(
        !first_kids.contains(&second_kids[0]),
        "the key was rotated: {first_kids:?} then {second_kids:?}"
    );

    let again = another_browser(&app);
    let res = again.sign_in(&again.client, "rosa", None).await;
    assert_eq!(
        res.status().as_u16(),
        303,
        "signed in under the rotated key"
    );
    assert_eq!(again.get("/auth").await.status().as_u16(), 200);
}

#[tokio::test]
async fn rfc9207_a_callback_without_iss_is_refused_and_spends_the_state() {
    let app = spawn_app_with_idp(&[]).await;
    let authorize = app.start_sign_in(&app.client, None).await;
    let callback = idp_login(&app.client, &authorize, "ivan").await;
    let genuine = url::Url::parse(&callback).expect("callback");
    assert!(
        genuine.query_pairs().any(|(k, _)| k == "iss"),
        "the provider sends iss: {callback}"
    );
    let mut stripped = genuine.clone();
    stripped
        .query_pairs_mut()
        .clear()
        .extend_pairs(genuine.query_pairs().filter(|(k, _)| k != "iss"));

    let res = app.follow_callback(&app.client, stripped.as_str()).await;
    let body = assert_json_error(res, 400, "invalid_request").await;
    assert!(
        body["message"].as_str().unwrap_or_default().contains("iss"),
        "{body}"
    );
    assert_signed_out(&app).await;

    let res = app.follow_callback(&app.client, &callback).await;
    assert_json_error(res, 400, "invalid_state").await;
    assert_signed_out(&app).await;
}

async fn provider_like(app: &TestApp) -> Provider {
    let settings = load(app.vars.clone()).expect("settings");
    Provider::build(settings.provider, &settings.server)
        .await
        .expect("provider builds")
}

#[tokio::test]
async fn refresh_revoke_and_end_session_against_the_real_provider() {
    let issuer = idp().issuer.clone();
    let app = spawn_app_with_idp(&[]).await;
    let res = app.sign_in(&app.client, "rita", None).await;
    assert_eq!(res.status().as_u16(), 303);
    let tokens = app.stored_tokens().await;
    let refresh_token = Token::new(tokens["refresh_token"].as_str().expect("rt").to_owned());
    let id_token = Token::new(tokens["id_token"].as_str().expect("id").to_owned());
    let old_access = tokens["access_token"].as_str().expect("at").to_owned();

    let provider = provider_like(&app).await;
    assert!(provider.requires_iss(), "the provider advertises RFC 9207");

    let (refreshed, identity) = provider
        .refresh(&refresh_token, "rita")
        .await
        .expect("refreshed");
    assert_eq!(identity.map(|i| i.subject).as_deref(), Some("rita"));
    assert!(!refreshed.access_token.expose().is_empty());
    assert_ne!(refreshed.access_token.expose(), old_access);
    let new_id = refreshed.id_token.as_ref().expect("a new ID token");
    assert_eq!(claims_of(new_id.expose())["sub"], "rita");
    // A confidential client gets its refresh token back unchanged from this provider
    // (tests/idp/README.md): that is no rotation. Should it rotate, the new one must differ.
    let current = match &refreshed.refresh_token {
        None => refresh_token.clone(),
        Some(rotated) => {
            assert_ne!(rotated.expose(), refresh_token.expose());
            rotated.clone()
        }
    };
    let me = reqwest::Client::new()
        .get(format!("{issuer}/me"))
        .bearer_auth(refreshed.access_token.expose())
        .send()
        .await
        .expect("userinfo");
    assert_eq!(me.status().as_u16(), 200, "the new access token works");

    // A refreshed ID token about someone else is refused.
    let wrong = provider.refresh(&current, "not-rita").await;
    assert!(matches!(wrong, Err(ProviderError::IdToken(_))), "{wrong:?}");

    assert!(provider.revoke(&current).await.expect("revoked"));
    match provider.refresh(&current, "rita").await {
        Err(ProviderError::ErrorResponse(code)) => assert_eq!(code, "invalid_grant"),
        other => panic!("refresh with a revoked token: {other:?}"),
    }

    let post_logout = format!("{PUBLIC_URL}/");
    let url = provider
        .end_session_url(Some(&id_token), &post_logout)
        .expect("an end-session endpoint is known");
    assert!(
        url.as_str().starts_with(&format!("{issuer}/session/end?")),
        "{url}"
    );
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["id_token_hint"], id_token.expose());
    assert_eq!(query["post_logout_redirect_uri"], post_logout);
    assert_eq!(query["client_id"], CLIENT_ID);
    // The provider accepts it: its sign-out confirmation page, not an error.
    let page = app
        .client
        .get(url.as_str())
        .send()
        .await
        .expect("end session");
    assert_eq!(page.status().as_u16(), 200);
    let text = page.text().await.expect("page");
    assert!(text.contains("logoutForm"), "{text}");
}

#[tokio::test]
async fn without_discovery_there_is_nothing_to_revoke_at_and_no_logout_url() {
    let app = spawn_app().await;
    let provider = provider_like(&app).await;
    assert!(!provider.requires_iss());
    let token = Token::new("rt-never-sent".into());
    assert!(!provider.revoke(&token).await.expect("nothing to do"));
    assert_eq!(provider.end_session_url(Some(&token), "http://x/"), None);
}

/// A discovery document with the endpoints the session code uses; a mock behind them.
async fn discovered_mock() -> (MockServer, TestApp) {
    let mock = MockServer::start().await;
    let issuer = mock.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "end_session_endpoint": format!("{issuer}/logout?tenant=t1"),
        })))
        .mount(&mock)
        .await;
    mount_jwks(&mock, vec![test_jwk(TEST_KID)]).await;
    let app = spawn_app_with(&[
        ("GATEHOUSE__PROVIDER__ISSUER", &issuer),
        ("GATEHOUSE__PROVIDER__AUTH_URL", ""),
        ("GATEHOUSE__PROVIDER__TOKEN_URL", ""),
    ])
    .await;
    (mock, app)
}

fn refresh_claims(issuer: &str, sub: &str) -> serde_json::Value {
    let now = gatehouse::identity::now_unix();
    json!({"iss": issuer, "sub": sub, "aud": CLIENT_ID, "exp": now + 600, "iat": now})
}

#[tokio::test]
async fn discovery_supplies_revocation_end_session_and_no_iss_requirement_unless_advertised() {
    let (mock, app) = discovered_mock().await;
    let provider = provider_like(&app).await;
    assert!(!provider.requires_iss(), "not advertised");

    // A callback without iss is fine then.
    let pending = start(&app).await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(token_response(&signed(&{
                let mut c = claims(&pending.nonce);
                c["iss"] = json!(mock.uri());
                c
            }))),
        )
        .mount(&mock)
        .await;
    let res = app
        .get(&format!("/redirect?code=c&state={}", pending.state))
        .await;
    assert_eq!(res.status().as_u16(), 303);

    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&mock)
        .await;
    assert!(provider
        .revoke(&Token::new("rt-to-revoke".into()))
        .await
        .expect("revoked"));
    let requests = mock.received_requests().await.expect("recording");
    let revoke = requests
        .iter()
        .find(|r| r.url.path() == "/revoke")
        .expect("a revocation request");
    let form: HashMap<String, String> = url::form_urlencoded::parse(&revoke.body)
        .into_owned()
        .collect();
    assert_eq!(form["token"], "rt-to-revoke");
    assert_eq!(form["token_type_hint"], "refresh_token");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    assert_eq!(revoke.headers["authorization"], expected.as_str());

    let url = provider
        .end_session_url(None, "http://gatehouse.test/")
        .expect("end-session URL");
    assert!(
        url.as_str()
            .starts_with(&format!("{}/logout?tenant=t1&", mock.uri())),
        "{url}"
    );
    assert!(!url.query_pairs().any(|(k, _)| k == "id_token_hint"));
}

#[tokio::test]
async fn refresh_answers_are_checked_like_the_code_exchange() {
    let (mock, app) = discovered_mock().await;
    let issuer = mock.uri();
    let provider = provider_like(&app).await;
    let old = Token::new("rt-old".into());
    let answer = |body: serde_json::Value| ResponseTemplate::new(200).set_body_json(body);
    type Check = fn(&Result<TokenSet, ProviderError>) -> bool;
    let cases: Vec<(&str, ResponseTemplate, Check)> = vec![
        (
            "invalid_grant",
            ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})),
            |r| matches!(r, Err(ProviderError::ErrorResponse(c)) if c == "invalid_grant"),
        ),
        (
            "not Bearer",
            answer(json!({"access_token": "at", "token_type": "mac"})),
            |r| matches!(r, Err(ProviderError::Malformed(_))),
        ),
        (
            "empty access token",
            answer(json!({"access_token": "", "token_type": "Bearer"})),
            |r| matches!(r, Err(ProviderError::Malformed(_))),
        ),
        (
            "ID token about another subject",
            answer(json!({"access_token": "at", "token_type": "Bearer",
                "id_token": signed(&refresh_claims(&issuer, "someone-else"))})),
            |r| matches!(r, Err(ProviderError::IdToken(_))),
        ),
        (
            "ID token by another key",
            answer(json!({"access_token": "at", "token_type": "Bearer",
                "id_token": sign_rs256(&refresh_claims(&issuer, "mock-user"), TEST_KID, &other_key())})),
            |r| matches!(r, Err(ProviderError::IdToken(_))),
        ),
        (
            "the same refresh token back: no rotation",
            answer(
                json!({"access_token": "at-2", "token_type": "Bearer", "expires_in": 60,
                "refresh_token": "rt-old",
                "id_token": signed(&refresh_claims(&issuer, "mock-user"))}),
            ),
            |r| {
                matches!(r, Ok(t) if t.refresh_token.is_none() && t.id_token.is_some()
                && t.access_token.expose() == "at-2" && t.expires_at.is_some())
            },
        ),
        (
            "rotated, no ID token",
            answer(
                json!({"access_token": "at-3", "token_type": "Bearer", "refresh_token": "rt-new"}),
            ),
            |r| {
                matches!(r, Ok(t) if t.refresh_token.as_ref().map(Token::expose) == Some("rt-new")
                && t.id_token.is_none())
            },
        ),
    ];
    for (name, response, ok) in cases {
        mock.reset().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(response)
            .mount(&mock)
            .await;
        mount_jwks(&mock, vec![test_jwk(TEST_KID)]).await;
        let result = provider
            .refresh(&old, "mock-user")
            .await
            .map(|(tokens, _)| tokens);
        assert!(ok(&result), "{name}: {result:?}");
        let requests = mock.received_requests().await.expect("recording");
        let sent = requests
            .iter()
            .find(|r| r.url.path() == "/token")
            .expect("a token request");
        let form: HashMap<String, String> = url::form_urlencoded::parse(&sent.body)
            .into_owned()
            .collect();
        assert_eq!(form["grant_type"], "refresh_token", "{name}");
        assert_eq!(form["refresh_token"], "rt-old", "{name}");
        assert!(
            sent.headers.get("authorization").is_some(),
            "{name}: client auth"
        );
    }
}
