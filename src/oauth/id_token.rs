//! ID tokens (OpenID Connect Core 3.1.3.7): signature against the provider's JWKS, then claims.
//!
//! With a JWKS (from `PROVIDER__JWKS_URL` or discovery) the signature is verified first, with
//! an algorithm from the allow-list whose key type matches the key (see `jwks`). Without one
//! (no issuer and no JWKS URL configured) only the claims are checked: the token then comes
//! straight from the token endpoint over a connection we opened, which OIDC Core allows as the
//! basis of trust for the code flow; the provider warns about that once at start.

use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::jwks::KeySet;
use super::jws::{self, Jws, JwsError};
use crate::identity::Identity;

/// Clock skew we tolerate on `exp` and `iat`.
const LEEWAY_SECS: u64 = 60;

pub struct Expectations<'a> {
    pub client_id: &'a str,
    pub issuer: Option<&'a str>,
    /// The pending sign-in's nonce, compared in constant time. `None` skips the check: only for
    /// ID tokens from a refresh, which OIDC Core 12.2 lets carry no nonce.
    pub nonce: Option<&'a str>,
    pub now: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdTokenError {
    #[error("not a JWS compact token")]
    Format,
    #[error("unsigned tokens (alg none) are refused")]
    Unsigned,
    #[error("signature algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("the token names critical header parameters we do not process")]
    Critical,
    #[error("no signing key of the provider matches the token")]
    UnknownKey,
    #[error("the signature does not verify")]
    Signature,
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
    #[error("claims are not valid JSON")]
    Claims,
    #[error("issuer does not match")]
    Issuer,
    #[error("audience does not contain the client id")]
    Audience,
    #[error("authorized party is not the client id")]
    AuthorizedParty,
    #[error("token has expired")]
    Expired,
    #[error("issued-at time is missing or in the future")]
    IssuedAt,
    #[error("nonce does not match the sign-in")]
    Nonce,
    #[error("subject is empty")]
    Subject,
}

impl From<JwsError> for IdTokenError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::Format => IdTokenError::Format,
            JwsError::Unsigned => IdTokenError::Unsigned,
            JwsError::Algorithm(alg) => IdTokenError::Algorithm(alg),
            JwsError::Critical => IdTokenError::Critical,
            JwsError::UnknownKey => IdTokenError::UnknownKey,
            JwsError::Signature => IdTokenError::Signature,
            JwsError::KeysUnavailable(why) => IdTokenError::KeysUnavailable(why),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, id: &str) -> bool {
        match self {
            Audience::One(a) => a == id,
            Audience::Many(list) => list.iter().any(|a| a == id),
        }
    }

    fn len(&self) -> usize {
        match self {
            Audience::One(_) => 1,
            Audience::Many(list) => list.len(),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: u64,
    iat: Option<u64>,
    nonce: Option<String>,
    azp: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
    preferred_username: Option<String>,
}

/// A token split and decoded, nothing verified yet.
struct Parsed<'a> {
    jws: Jws<'a>,
    claims: Claims,
}

fn parse(token: &str) -> Result<Parsed<'_>, IdTokenError> {
    let jws = jws::split(token)?;
    let claims: Claims = jws.claims().ok_or(IdTokenError::Claims)?;
    Ok(Parsed { jws, claims })
}

/// The full check: the signature against `keys` (when the provider has a JWKS), then the
/// claims. Every failure refuses the token; the error names the check, never the token.
pub async fn verify(
    token: &str,
    keys: Option<&KeySet>,
    expect: &Expectations<'_>,
) -> Result<Identity, IdTokenError> {
    let parsed = parse(token)?;
    if let Some(keys) = keys {
        parsed.jws.verify(keys).await?;
    }
    check_claims(parsed.claims, expect)
}

/// Claims only, for providers without a JWKS (see the module comment).
pub fn verify_claims(token: &str, expect: &Expectations) -> Result<Identity, IdTokenError> {
    check_claims(parse(token)?.claims, expect)
}

fn check_claims(claims: Claims, expect: &Expectations) -> Result<Identity, IdTokenError> {
    if let Some(issuer) = expect.issuer {
        if claims.iss.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(IdTokenError::Issuer);
        }
    }
    if !claims.aud.contains(expect.client_id) {
        return Err(IdTokenError::Audience);
    }
    if (claims.aud.len() > 1 || claims.azp.is_some())
        && claims.azp.as_deref() != Some(expect.client_id)
    {
        return Err(IdTokenError::AuthorizedParty);
    }
    if claims.exp.saturating_add(LEEWAY_SECS) <= expect.now {
        return Err(IdTokenError::Expired);
    }
    // OIDC Core 2: iat is required; one in the future (beyond the skew) was not issued for us now.
    match claims.iat {
        Some(iat) if iat <= expect.now.saturating_add(LEEWAY_SECS) => {}
        _ => return Err(IdTokenError::IssuedAt),
    }
    if let Some(expected) = expect.nonce {
        let got = claims.nonce.as_deref().unwrap_or("");
        if !bool::from(got.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(IdTokenError::Nonce);
        }
    }
    if claims.sub.is_empty() {
        return Err(IdTokenError::Subject);
    }
    Ok(Identity {
        subject: claims.sub,
        email: claims.email,
        email_verified: claims.email_verified,
        name: claims.name,
        preferred_username: claims.preferred_username,
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn b64(v: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn token(header: serde_json::Value, claims: serde_json::Value) -> String {
        format!("{}.{}.c2ln", b64(&header), b64(&claims))
    }

    fn good_claims() -> serde_json::Value {
        serde_json::json!({
            "iss": "https://idp.example", "sub": "alice", "aud": "gh", "exp": 2_000,
            "iat": 900, "nonce": "n-1", "email": "alice@example.com", "name": "Alice"
        })
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            client_id: "gh",
            issuer: Some("https://idp.example/"),
            nonce: Some("n-1"),
            now: 1_000,
        }
    }

    fn check(claims: serde_json::Value) -> Result<Identity, IdTokenError> {
        verify_claims(
            &token(serde_json::json!({"alg": "RS256"}), claims),
            &expect(),
        )
    }

    #[test]
    fn accepts_matching_claims() {
        let id = check(good_claims()).expect("valid");
        assert_eq!(id.subject, "alice");
        assert_eq!(id.email.as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn refuses_each_wrong_claim() {
        let cases = [
            ("nonce", serde_json::json!("other"), IdTokenError::Nonce),
            (
                "aud",
                serde_json::json!("someone-else"),
                IdTokenError::Audience,
            ),
            (
                "aud",
                serde_json::json!(["gh", "x"]),
                IdTokenError::AuthorizedParty,
            ),
            (
                "iss",
                serde_json::json!("https://evil.example"),
                IdTokenError::Issuer,
            ),
            ("exp", serde_json::json!(100), IdTokenError::Expired),
            ("iat", serde_json::json!(1_100), IdTokenError::IssuedAt),
            ("sub", serde_json::json!(""), IdTokenError::Subject),
        ];
        for (field, value, want) in cases {
            let mut claims = good_claims();
            claims[field] = value;
            assert_eq!(check(claims).err(), Some(want), "{field}");
        }
        let mut no_nonce = good_claims();
        no_nonce.as_object_mut().map(|o| o.remove("nonce"));
        assert_eq!(check(no_nonce).err(), Some(IdTokenError::Nonce));
        let mut no_iat = good_claims();
        no_iat.as_object_mut().map(|o| o.remove("iat"));
        assert_eq!(check(no_iat).err(), Some(IdTokenError::IssuedAt));
    }

    #[test]
    fn leeway_is_sixty_seconds_and_no_nonce_expected_skips_the_check() {
        let mut claims = good_claims();
        claims["exp"] = serde_json::json!(941); // expired 59 s ago
        claims["iat"] = serde_json::json!(1_060); // issued 60 s "from now"
        assert!(check(claims.clone()).is_ok());
        claims["exp"] = serde_json::json!(940);
        assert_eq!(check(claims).err(), Some(IdTokenError::Expired));

        let mut other_nonce = good_claims();
        other_nonce["nonce"] = serde_json::json!("other");
        let refresh = Expectations {
            nonce: None,
            ..expect()
        };
        let token = token(serde_json::json!({"alg": "RS256"}), other_nonce);
        assert!(verify_claims(&token, &refresh).is_ok());
    }

    #[test]
    fn refuses_unsigned_and_garbage() {
        let unsigned = token(serde_json::json!({"alg": "none"}), good_claims());
        assert_eq!(
            verify_claims(&unsigned, &expect()).err(),
            Some(IdTokenError::Unsigned)
        );
        assert_eq!(
            verify_claims("a.b", &expect()).err(),
            Some(IdTokenError::Format)
        );
        assert_eq!(
            verify_claims("!!.!!.!!", &expect()).err(),
            Some(IdTokenError::Format)
        );
    }
}

/// Signatures, against a JWKS served by a local mock.
#[cfg(test)]
mod signature_tests {
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    const RSA_KEY: &str = include_str!("../../tests/data/test-only-keys/rsa-key.pem");
    const RSA_PUBLIC: &str = include_str!("../../tests/data/test-only-keys/rsa-public.pem");
    const RSA_JWK: &str = include_str!("../../tests/data/test-only-keys/rsa-jwk.json");
    const OTHER_RSA_KEY: &str = include_str!("../../tests/data/test-only-keys/other-rsa-key.pem");
    const EC_KEY: &str = include_str!("../../tests/data/test-only-keys/ec-p256-key.pem");
    const EC_JWK: &str = include_str!("../../tests/data/test-only-keys/ec-p256-jwk.json");

    fn der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("PEM body")
    }

    fn jwk(text: &str, kid: &str) -> serde_json::Value {
        let mut key: serde_json::Value = serde_json::from_str(text).expect("jwk");
        key["kid"] = serde_json::json!(kid);
        key
    }

    async fn keys(jwks: serde_json::Value) -> (MockServer, KeySet) {
        let mock = MockServer::start().await;
        Mock::given(path("/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(jwks))
            .mount(&mock)
            .await;
        let url = url::Url::parse(&format!("{}/jwks", mock.uri())).expect("url");
        (mock, KeySet::new(url, oauth2::reqwest::Client::new()))
    }

    fn claims() -> serde_json::Value {
        let now = crate::identity::now_unix();
        serde_json::json!({
            "iss": "https://idp.example", "sub": "alice", "aud": "gh",
            "exp": now + 300, "iat": now, "nonce": "n-1"
        })
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            client_id: "gh",
            issuer: Some("https://idp.example"),
            nonce: Some("n-1"),
            now: crate::identity::now_unix(),
        }
    }

    fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims(), key).expect("signed")
    }

    fn rsa() -> EncodingKey {
        EncodingKey::from_rsa_der(&der(RSA_KEY))
    }

    #[tokio::test]
    async fn each_allowed_rsa_algorithm_and_es256_verify() {
        let (_mock, set) = keys(serde_json::json!({"keys": [
            jwk(RSA_JWK, "r1"), jwk(EC_JWK, "e1")
        ]}))
        .await;
        for alg in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            let token = sign(alg, Some("r1"), &rsa());
            let id = verify(&token, Some(&set), &expect()).await;
            assert_eq!(
                id.map(|i| i.subject).ok().as_deref(),
                Some("alice"),
                "{alg:?}"
            );
        }
        let ec = EncodingKey::from_ec_der(&der(EC_KEY));
        let token = sign(Algorithm::ES256, Some("e1"), &ec);
        assert!(verify(&token, Some(&set), &expect()).await.is_ok());
        // Without a kid, the keys that fit the algorithm are tried.
        let token = sign(Algorithm::ES256, None, &ec);
        assert!(verify(&token, Some(&set), &expect()).await.is_ok());
    }

    #[tokio::test]
    async fn forged_confused_and_mismatched_tokens_are_refused() {
        let (_mock, set) = keys(serde_json::json!({"keys": [
            jwk(RSA_JWK, "r1"), jwk(EC_JWK, "e1")
        ]}))
        .await;
        let forged = sign(
            Algorithm::RS256,
            Some("r1"),
            &EncodingKey::from_rsa_der(&der(OTHER_RSA_KEY)),
        );
        assert_eq!(
            verify(&forged, Some(&set), &expect()).await.err(),
            Some(IdTokenError::Signature)
        );
        // Key confusion: HMAC with the public key (as PEM, as DER) for a secret.
        for secret in [RSA_PUBLIC.as_bytes().to_vec(), der(RSA_PUBLIC)] {
            let token = sign(
                Algorithm::HS256,
                Some("r1"),
                &EncodingKey::from_secret(&secret),
            );
            assert_eq!(
                verify(&token, Some(&set), &expect()).await.err(),
                Some(IdTokenError::Algorithm("HS256".into()))
            );
        }
        // An RSA signature presented as from the EC key, and the reverse.
        let token = sign(Algorithm::RS256, Some("e1"), &rsa());
        assert_eq!(
            verify(&token, Some(&set), &expect()).await.err(),
            Some(IdTokenError::UnknownKey)
        );
        let ec = EncodingKey::from_ec_der(&der(EC_KEY));
        let token = sign(Algorithm::ES256, Some("r1"), &ec);
        assert_eq!(
            verify(&token, Some(&set), &expect()).await.err(),
            Some(IdTokenError::UnknownKey)
        );
        // A valid signature over other claims: one byte of the payload changed.
        let token = sign(Algorithm::RS256, Some("r1"), &rsa());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims = claims();
        claims["sub"] = serde_json::json!("mallory");
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        assert_eq!(
            verify(&parts.join("."), Some(&set), &expect()).await.err(),
            Some(IdTokenError::Signature)
        );
    }

    #[tokio::test]
    async fn critical_headers_and_unsigned_tokens_are_refused() {
        let (_mock, set) = keys(serde_json::json!({"keys": [jwk(RSA_JWK, "r1")]})).await;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let signed = sign(Algorithm::RS256, Some("r1"), &rsa());
        let signature = signed.rsplit('.').next().unwrap_or_default();
        let crit = format!(
            "{}.{}.{signature}",
            b64(serde_json::json!({"alg": "RS256", "kid": "r1", "crit": ["exp"], "exp": 1})),
            b64(claims())
        );
        assert_eq!(
            verify(&crit, Some(&set), &expect()).await.err(),
            Some(IdTokenError::Critical)
        );
        for alg in ["none", "NONE"] {
            let unsigned = format!(
                "{}.{}.",
                b64(serde_json::json!({"alg": alg})),
                b64(claims())
            );
            assert_eq!(
                verify(&unsigned, Some(&set), &expect()).await.err(),
                Some(IdTokenError::Unsigned)
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_jwks_refuses_the_token() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/jwks")).expect("url");
        let set = KeySet::new(url, oauth2::reqwest::Client::new());
        let token = sign(Algorithm::RS256, Some("r1"), &rsa());
        assert!(matches!(
            verify(&token, Some(&set), &expect()).await.err(),
            Some(IdTokenError::KeysUnavailable(_))
        ));
    }
}
