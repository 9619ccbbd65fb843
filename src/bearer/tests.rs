//! Bearer verification against a JWKS served by a local mock, with the test-only keys.

use actix_web::http::header::HeaderValue;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

const RSA_KEY: &str = include_str!("../../tests/data/test-only-keys/rsa-key.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/data/test-only-keys/rsa-public.pem");
const RSA_JWK: &str = include_str!("../../tests/data/test-only-keys/rsa-jwk.json");
const OTHER_RSA_KEY: &str = include_str!("../../tests/data/test-only-keys/other-rsa-key.pem");

const ISSUER: &str = "https://idp.example";

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body")
}

async fn provider_keys() -> (MockServer, KeySet) {
    let mock = MockServer::start().await;
    let mut jwk: serde_json::Value = serde_json::from_str(RSA_JWK).expect("jwk");
    jwk["kid"] = serde_json::json!("k1");
    Mock::given(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"keys": [jwk]})))
        .mount(&mock)
        .await;
    let url = url::Url::parse(&format!("{}/jwks", mock.uri())).expect("url");
    (mock, KeySet::new(url, oauth2::reqwest::Client::new()))
}

fn bearer(extra: &[&str]) -> Bearer {
    let settings = BearerSettings {
        enabled: true,
        audiences: vec!["api".into()],
        extra_issuers: extra.iter().map(|u| (*u).to_owned()).collect(),
    };
    Bearer::start(
        &settings,
        Some(ISSUER),
        Duration::from_secs(1),
        vec!["groups".into()],
        vec![vec!["dept".into()]],
    )
    .expect("bearer")
}

fn claims() -> serde_json::Value {
    let now = now_unix();
    serde_json::json!({
        "iss": ISSUER, "sub": "svc", "aud": "api", "exp": now + 300, "iat": now,
        "groups": ["ops"], "dept": "billing", "email": "svc@example.com"
    })
}

fn sign(header: Header, claims: &serde_json::Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).expect("signed")
}

fn rs256(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    header
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_der(&der(RSA_KEY))
}

#[tokio::test]
async fn a_valid_token_is_verified_once_then_served_from_memory() {
    let (_mock, keys) = provider_keys().await;
    let b = bearer(&[]);
    let token = sign(rs256("k1"), &claims(), &rsa());
    let first = b.verify(&token, Some(&keys)).await.expect("valid");
    assert_eq!(first.subject, "svc");
    assert_eq!(first.groups, vec!["ops"]);
    assert_eq!(first.claims["dept"], "billing");
    // Without any key at hand, only the cache can answer.
    let again = b.verify(&token, None).await.expect("from the cache");
    assert!(Arc::ptr_eq(&first, &again));
    // Another token is not in it.
    let mut other = claims();
    other["sub"] = serde_json::json!("svc2");
    let token2 = sign(rs256("k1"), &other, &rsa());
    assert_eq!(
        b.verify(&token2, None).await.err(),
        Some(BearerError::KeysUnavailable)
    );
}

#[tokio::test]
async fn forged_and_misdirected_tokens_are_refused_and_not_cached() {
    let (_mock, keys) = provider_keys().await;
    let b = bearer(&[]);
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let good = sign(rs256("k1"), &claims(), &rsa());
    let payload = good.split('.').nth(1).expect("payload");

    let unsigned = format!("{}.{payload}.", b64(serde_json::json!({"alg": "none"})));
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let confused = sign(
        hs,
        &claims(),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    );
    let other_key = sign(
        rs256("k1"),
        &claims(),
        &EncodingKey::from_rsa_der(&der(OTHER_RSA_KEY)),
    );
    let mut logout = rs256("k1");
    logout.typ = Some("logout+jwt".into());
    let logout = sign(logout, &claims(), &rsa());
    let with = |field: &str, value: serde_json::Value| {
        let mut c = claims();
        c[field] = value;
        sign(rs256("k1"), &c, &rsa())
    };
    let cases = [
        (unsigned, BearerError::Jws(JwsError::Unsigned)),
        (
            confused,
            BearerError::Jws(JwsError::Algorithm("HS256".into())),
        ),
        (other_key, BearerError::Jws(JwsError::Signature)),
        (logout, BearerError::Type),
        (
            with("iss", serde_json::json!("https://evil.example")),
            BearerError::Issuer,
        ),
        (
            with("aud", serde_json::json!("someone-else")),
            BearerError::Audience,
        ),
        (
            with("exp", serde_json::json!(now_unix() - 61)),
            BearerError::Expired,
        ),
        ("a.b".to_owned(), BearerError::Jws(JwsError::Format)),
        ("x".repeat(MAX_TOKEN_LEN + 1), BearerError::TooLong),
    ];
    for (token, want) in cases {
        for _ in 0..2 {
            assert_eq!(
                b.verify(&token, Some(&keys)).await.err(),
                Some(want.clone())
            );
        }
    }
    assert!(b.cache.is_empty(), "refusals are not cached");
}

#[tokio::test]
async fn an_unknown_kid_is_refused() {
    let (_mock, keys) = provider_keys().await;
    let b = bearer(&[]);
    let token = sign(rs256("not-a-key-of-theirs"), &claims(), &rsa());
    assert_eq!(
        b.verify(&token, Some(&keys)).await.err(),
        Some(BearerError::Jws(JwsError::UnknownKey))
    );
}

#[tokio::test]
async fn a_listed_issuer_not_yet_discovered_is_unavailable_not_invalid() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let extra = format!("http://127.0.0.1:{dead}");
    let b = bearer(&[&extra]);
    let mut c = claims();
    c["iss"] = serde_json::json!(extra);
    let token = sign(rs256("k1"), &c, &rsa());
    let err = b.verify(&token, None).await.expect_err("refused");
    assert_eq!(err, BearerError::KeysUnavailable);
    assert!(err.is_unavailable());
}

#[test]
fn the_authorization_header_is_read_per_rfc_6750() {
    let read = |value: &[u8]| {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(value).expect("header"),
        );
        token_in(&headers).map(|r| r.map(str::to_owned))
    };
    assert_eq!(
        read(b"Bearer abc.def-_~+/=="),
        Some(Ok("abc.def-_~+/==".into()))
    );
    assert_eq!(read(b"bearer  abc "), Some(Ok("abc".into())));
    assert_eq!(read(b"BEARER abc"), Some(Ok("abc".into())));
    assert_eq!(
        read(b"Basic dXNlcjpwYXNz"),
        None,
        "another scheme: the cookie decides"
    );
    assert_eq!(read(b"Bearerabc"), None);
    for bad in [
        b"Bearer".as_slice(),
        b"Bearer ",
        b"Bearer a b",
        b"Bearer a\"b",
        b"Bearer ==",
        b"Bearer \xe9t\xe9",
    ] {
        assert_eq!(read(bad), Some(Err(BearerError::Malformed)), "{bad:?}");
    }
    assert!(token_in(&HeaderMap::new()).is_none());
}
