//! Forged and broken logout tokens, one rule at a time, signed with the test-only keys and
//! checked against a JWKS served by a local mock.

use std::collections::HashSet;
use std::sync::Mutex;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

const RSA_KEY: &str = include_str!("../../tests/data/test-only-keys/rsa-key.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/data/test-only-keys/rsa-public.pem");
const RSA_JWK: &str = include_str!("../../tests/data/test-only-keys/rsa-jwk.json");
const OTHER_RSA_KEY: &str = include_str!("../../tests/data/test-only-keys/other-rsa-key.pem");

const ISSUER: &str = "https://idp.example";
const CLIENT: &str = "gh";

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body")
}

fn now() -> u64 {
    crate::identity::now_unix()
}

async fn keys() -> (MockServer, KeySet) {
    let mut jwk: Value = serde_json::from_str(RSA_JWK).expect("jwk");
    jwk["kid"] = json!("r1");
    let mock = MockServer::start().await;
    Mock::given(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": [jwk] })))
        .mount(&mock)
        .await;
    let url = url::Url::parse(&format!("{}/jwks", mock.uri())).expect("url");
    (mock, KeySet::new(url, oauth2::reqwest::Client::new()))
}

/// A logout token as oidc-provider sends one (its `typ` is `logout+jwt`).
fn claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "aud": CLIENT, "iat": now, "exp": now + 120,
        "jti": crate::random::token(), "sub": "alice", "sid": "sid-1",
        "events": { BACKCHANNEL_LOGOUT_EVENT: {} }
    })
}

fn sign_with(claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some("r1".into());
    header.typ = Some("logout+jwt".into());
    jsonwebtoken::encode(&header, claims, key).expect("signed")
}

fn sign(claims: &Value) -> String {
    sign_with(
        claims,
        Algorithm::RS256,
        &EncodingKey::from_rsa_der(&der(RSA_KEY)),
    )
}

#[derive(Default)]
struct Seen(Mutex<HashSet<String>>);

impl JtiRegistry for Seen {
    async fn first_use(&self, issuer: &str, jti: &str, ttl: Duration) -> Result<bool, String> {
        assert_eq!(ttl, JTI_MEMORY);
        Ok(self
            .0
            .lock()
            .expect("lock")
            .insert(format!("{issuer} {jti}")))
    }
}

struct Broken;

impl JtiRegistry for Broken {
    async fn first_use(&self, _: &str, _: &str, _: Duration) -> Result<bool, String> {
        Err("redis is unavailable".into())
    }
}

fn expect() -> Expectations<'static> {
    Expectations {
        issuer: "https://idp.example/",
        client_id: CLIENT,
        now: now(),
    }
}

async fn check(token: &str) -> Result<LogoutTarget, LogoutTokenError> {
    let (_mock, set) = keys().await;
    verify(token, &set, &expect(), &Seen::default()).await
}

#[tokio::test]
async fn a_valid_token_names_its_target() {
    let target = check(&sign(&claims())).await.expect("valid");
    assert_eq!(
        target,
        LogoutTarget {
            sub: Some("alice".into()),
            sid: Some("sid-1".into())
        }
    );
    // sid alone, sub alone, aud as an array, no exp (optional): all fine.
    for change in [
        json!({"sub": null}),
        json!({"sid": null}),
        json!({"aud": ["other", CLIENT]}),
        json!({"exp": null}),
        json!({"events": {BACKCHANNEL_LOGOUT_EVENT: {}, "https://example.com/other": {"a": 1}}}),
    ] {
        let mut c = claims();
        for (k, v) in change.as_object().expect("object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        assert!(check(&sign(&c)).await.is_ok(), "{change}");
    }
}

#[tokio::test]
async fn each_rule_refuses_a_token_that_breaks_it() {
    let now = now();
    let cases: Vec<(&str, Value, LogoutTokenError)> = vec![
        (
            "iss",
            json!("https://evil.example"),
            LogoutTokenError::Issuer,
        ),
        ("aud", json!("someone-else"), LogoutTokenError::Audience),
        ("aud", json!(["a", "b"]), LogoutTokenError::Audience),
        ("iat", Value::Null, LogoutTokenError::IssuedAt),
        (
            "iat",
            json!(now + LEEWAY_SECS + 30),
            LogoutTokenError::IssuedAt,
        ),
        (
            "iat",
            json!(now - MAX_AGE_SECS - 30),
            LogoutTokenError::Stale,
        ),
        (
            "exp",
            json!(now - LEEWAY_SECS - 1),
            LogoutTokenError::Expired,
        ),
        ("jti", Value::Null, LogoutTokenError::Jti),
        ("jti", json!(""), LogoutTokenError::Jti),
        ("events", Value::Null, LogoutTokenError::Events),
        ("events", json!({}), LogoutTokenError::Events),
        (
            "events",
            json!({ BACKCHANNEL_LOGOUT_EVENT: "yes" }),
            LogoutTokenError::Events,
        ),
        (
            "events",
            json!({ BACKCHANNEL_LOGOUT_EVENT: [] }),
            LogoutTokenError::Events,
        ),
        (
            "events",
            json!({ "http://schemas.openid.net/event/backchannel-logout/": {} }),
            LogoutTokenError::Events,
        ),
        ("nonce", json!("n-1"), LogoutTokenError::Nonce),
        ("iss", json!(42), LogoutTokenError::Claims),
    ];
    for (field, value, want) in cases {
        let mut c = claims();
        if value.is_null() {
            c.as_object_mut().expect("object").remove(field);
        } else {
            c[field] = value.clone();
        }
        assert_eq!(check(&sign(&c)).await, Err(want), "{field} = {value}");
    }
    // A nonce is refused even when null; and without sub and sid there is nothing to end.
    let mut c = claims();
    c["nonce"] = Value::Null;
    assert_eq!(check(&sign(&c)).await, Err(LogoutTokenError::Nonce));
    for (sub, sid) in [(Value::Null, Value::Null), (json!(""), json!(""))] {
        let mut c = claims();
        c["sub"] = sub;
        c["sid"] = sid;
        assert_eq!(check(&sign(&c)).await, Err(LogoutTokenError::NoTarget));
    }
}

#[tokio::test]
async fn an_id_token_does_not_pass_for_a_logout_token() {
    let now = now();
    let id_token = json!({
        "iss": ISSUER, "aud": CLIENT, "iat": now, "exp": now + 300, "sub": "alice",
        "nonce": "n-1", "jti": "j-1"
    });
    assert_eq!(check(&sign(&id_token)).await, Err(LogoutTokenError::Events));
}

#[tokio::test]
async fn forged_unsigned_and_confused_signatures_are_refused() {
    let c = claims();
    let forged = sign_with(
        &c,
        Algorithm::RS256,
        &EncodingKey::from_rsa_der(&der(OTHER_RSA_KEY)),
    );
    assert_eq!(
        check(&forged).await,
        Err(LogoutTokenError::Jws(JwsError::Signature))
    );
    // HMAC keyed with the provider's public key.
    let confused = sign_with(
        &c,
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    );
    assert_eq!(
        check(&confused).await,
        Err(LogoutTokenError::Jws(JwsError::Algorithm("HS256".into())))
    );
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&c));
    assert_eq!(
        check(&unsigned).await,
        Err(LogoutTokenError::Jws(JwsError::Unsigned))
    );
    // Claims changed under a valid signature.
    let signed = sign(&c);
    let mut parts: Vec<String> = signed.split('.').map(str::to_owned).collect();
    let mut other = c.clone();
    other["sub"] = json!("bob");
    parts[1] = b64(&other);
    assert_eq!(
        check(&parts.join(".")).await,
        Err(LogoutTokenError::Jws(JwsError::Signature))
    );
    for garbage in ["", "a.b", "a.b.c.d.e", "!!.!!.!!"] {
        assert_eq!(
            check(garbage).await,
            Err(LogoutTokenError::Jws(JwsError::Format)),
            "{garbage:?}"
        );
    }
}

#[tokio::test]
async fn a_jti_is_single_use_and_only_burnt_by_a_valid_token() {
    let (_mock, set) = keys().await;
    let seen = Seen::default();
    let c = claims();
    // Refused for its audience first: the jti stays unused.
    let mut wrong = c.clone();
    wrong["aud"] = json!("someone-else");
    assert_eq!(
        verify(&sign(&wrong), &set, &expect(), &seen).await,
        Err(LogoutTokenError::Audience)
    );
    let token = sign(&c);
    assert!(verify(&token, &set, &expect(), &seen).await.is_ok());
    assert_eq!(
        verify(&token, &set, &expect(), &seen).await,
        Err(LogoutTokenError::Replayed)
    );
    // Same jti from another issuer is another token.
    let mut elsewhere = c.clone();
    elsewhere["iss"] = json!("https://other.example");
    let other = Expectations {
        issuer: "https://other.example",
        ..expect()
    };
    assert!(verify(&sign(&elsewhere), &set, &other, &seen).await.is_ok());

    let err = verify(&sign(&claims()), &set, &expect(), &Broken)
        .await
        .expect_err("no replay check, no logout");
    assert!(err.is_transient(), "{err}");
    assert!(!LogoutTokenError::Replayed.is_transient());
}
