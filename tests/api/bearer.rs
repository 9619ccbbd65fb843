//! Bearer tokens on `/auth` (`BEARER__*`), through HTTP only: real tokens from the development
//! provider's client-credentials grant (JWT access tokens), a second provider instance as an
//! extra issuer, and forged tokens.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use crate::helpers::*;

const API_CLIENT: &str = "gatehouse-api";
const WWW_AUTHENTICATE: &str = r#"Bearer error="invalid_token""#;

/// An access token for the API client from `issuer`'s token endpoint (client-credentials
/// grant); `resource` picks the audience (see tests/idp/README.md).
async fn client_credentials(issuer: &str, resource: Option<&str>) -> String {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(resource) = resource {
        form.push(("resource", resource));
    }
    let res = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth(API_CLIENT, Some(CLIENT_SECRET))
        .form(&form)
        .send()
        .await
        .expect("token endpoint answered");
    assert_eq!(res.status().as_u16(), 200, "client credentials granted");
    let body: Value = res.json().await.expect("json");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn auth_with(app: &TestApp, authorization: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url("/auth"))
        .header("authorization", authorization)
        .send()
        .await
        .expect("auth answered")
}

async fn bearer(app: &TestApp, token: &str) -> reqwest::Response {
    auth_with(app, &format!("Bearer {token}")).await
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn assert_invalid_token(res: reqwest::Response, what: &str) {
    assert_eq!(res.status().as_u16(), 401, "{what}");
    assert_eq!(
        header(&res, "www-authenticate").as_deref(),
        Some(WWW_AUTHENTICATE),
        "{what}"
    );
    assert!(header(&res, "x-auth-request-user").is_none(), "{what}");
    assert_json_error(res, 401, "invalid_token").await;
}

async fn app_accepting_bearer(overrides: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("GATEHOUSE__BEARER__ENABLED", "true")];
    vars.extend_from_slice(overrides);
    spawn_app_with_idp(&vars).await
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A second development provider with its own signing key, started once.
fn second_idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(|| {
        spawn_idp(&[
            ("IDP_FRESH_KEY", "1".to_owned()),
            ("IDP_API_GROUPS", "partners".to_owned()),
        ])
    })
}

#[tokio::test]
async fn an_api_clients_token_passes_with_its_identity_and_writes_nothing() {
    let app = app_accepting_bearer(&[("GATEHOUSE__FORWARD__ASSERTION", "true")]).await;
    let token = client_credentials(&idp().issuer, None).await;
    let claims = payload(&token);
    assert_eq!(claims["aud"], CLIENT_ID, "{claims}");
    for _ in 0..3 {
        let res = bearer(&app, &token).await;
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(
            header(&res, "x-auth-request-user").as_deref(),
            Some(API_CLIENT)
        );
        assert_eq!(
            header(&res, "x-auth-request-groups").as_deref(),
            Some("api-clients")
        );
        assert!(header(&res, "set-cookie").is_none(), "no session made");
        assert_eq!(header(&res, "cache-control").as_deref(), Some("no-store"));
        // The signed assertion speaks for the token's subject too.
        let assertion = header(&res, "x-auth-request-assertion").expect("assertion");
        let said = payload(&assertion);
        assert_eq!(said["sub"], API_CLIENT);
        assert_eq!(said["groups"], serde_json::json!(["api-clients"]));
    }
    let mut redis = app.redis().await;
    let written: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", app.prefix))
        .query_async(&mut redis)
        .await
        .expect("KEYS");
    assert!(written.is_empty(), "no Redis write: {written:?}");
}

#[tokio::test]
async fn real_tokens_for_another_audience_issuer_or_expired_are_refused() {
    let app = app_accepting_bearer(&[]).await;
    let other = client_credentials(&idp().issuer, Some("urn:gatehouse:other-api")).await;
    assert_eq!(payload(&other)["aud"], "other-api");
    assert_invalid_token(bearer(&app, &other).await, "another audience").await;
    let expired = client_credentials(&idp().issuer, Some("urn:gatehouse:expired")).await;
    let exp = payload(&expired)["exp"].as_u64().expect("exp");
    assert!(
        exp + 60 < gatehouse::identity::now_unix(),
        "expired beyond the leeway"
    );
    assert_invalid_token(bearer(&app, &expired).await, "expired").await;
    let wrong_iss = client_credentials(&idp().issuer, Some("urn:gatehouse:wrong-issuer")).await;
    assert_eq!(payload(&wrong_iss)["iss"], "https://issuer.invalid");
    assert_invalid_token(bearer(&app, &wrong_iss).await, "wrong issuer").await;

    // Listing the other audience lets its tokens in, and only those.
    let app = app_accepting_bearer(&[("GATEHOUSE__BEARER__AUDIENCES", "other-api, more")]).await;
    assert_eq!(bearer(&app, &other).await.status().as_u16(), 200);
    let default = client_credentials(&idp().issuer, None).await;
    assert_invalid_token(bearer(&app, &default).await, "aud not listed any more").await;
}

/// The provider's public key as PEM (what a confused verifier would use as an HMAC secret).
async fn provider_public_pem(jwk: &Value) -> String {
    let out = tokio::process::Command::new("node")
        .arg("-e")
        .arg(
            "process.stdout.write(require('crypto').createPublicKey({key: \
             JSON.parse(process.argv[1]), format: 'jwk'}).export({type: 'spki', format: 'pem'}))",
        )
        .arg(jwk.to_string())
        .output()
        .await
        .expect("node runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("PEM")
}

#[tokio::test]
async fn forged_tokens_are_refused_with_www_authenticate() {
    let app = app_accepting_bearer(&[]).await;
    let real = client_credentials(&idp().issuer, None).await;
    let claims = payload(&real);
    let head: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(real.split('.').next().expect("header"))
            .expect("base64url"),
    )
    .expect("json");
    let kid = head["kid"].as_str().expect("kid").to_owned();
    let jwks: Value = reqwest::get(format!("{}/jwks", idp().issuer))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .expect("the signing key")
        .clone();

    let mut forged: Vec<(&str, String)> = Vec::new();
    // alg none, with and without a signature part.
    for alg in ["none", "None"] {
        let unsigned = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": alg, "typ": "at+jwt"})),
            b64(&claims)
        );
        forged.push(("alg none", unsigned));
    }
    // HS256 keyed with the provider's public key: as PEM, as DER, as the JWK's text.
    let pem = provider_public_pem(&jwk).await;
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(der).expect("DER");
    for secret in [pem.clone().into_bytes(), der, jwk.to_string().into_bytes()] {
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(kid.clone());
        let token =
            jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(&secret)).expect("signed");
        forged.push(("HS256 with the public key", token));
    }
    // Signed with a key the provider does not have, under an unknown kid and under its kid.
    let der = |pem: &str| {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(body).expect("PEM body")
    };
    let stranger =
        EncodingKey::from_rsa_der(&der(include_str!("../data/test-only-keys/rsa-key.pem")));
    for (what, k) in [("unknown kid", "no-such-key"), ("wrong key", kid.as_str())] {
        let mut rs = Header::new(Algorithm::RS256);
        rs.kid = Some(k.to_owned());
        forged.push((
            what,
            jsonwebtoken::encode(&rs, &claims, &stranger).expect("signed"),
        ));
    }
    // The provider's signature over other claims.
    let mut parts: Vec<String> = real.split('.').map(str::to_owned).collect();
    let mut other = claims.clone();
    other["sub"] = serde_json::json!("admin");
    parts[1] = b64(&other);
    forged.push(("changed payload", parts.join(".")));
    // A wrong issuer, with the stranger's key and with the provider's signature kept.
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = serde_json::json!("https://evil.example");
    let mut rs = Header::new(Algorithm::RS256);
    rs.kid = Some(kid.clone());
    forged.push((
        "wrong iss",
        jsonwebtoken::encode(&rs, &wrong_iss, &stranger).expect("signed"),
    ));
    parts[1] = b64(&wrong_iss);
    forged.push(("wrong iss, provider's signature", parts.join(".")));
    for garbage in ["", "x", "a.b", "a.b.c.d", "!!!.???.###", "Zm9v.YmFy.YmF6"] {
        forged.push(("garbage", garbage.to_owned()));
    }

    for (what, token) in forged {
        assert_invalid_token(bearer(&app, &token).await, what).await;
    }
    // The real one, for contrast.
    assert_eq!(bearer(&app, &real).await.status().as_u16(), 200);
}

#[tokio::test]
async fn without_a_bearer_token_the_session_decides() {
    let app = app_accepting_bearer(&[]).await;
    let res = app.sign_in(&app.client, "alice", None).await;
    assert_eq!(res.status().as_u16(), 303);
    let res = app.get("/auth").await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        header(&res, "x-auth-request-user").as_deref(),
        Some("alice")
    );
    // Another scheme is the app's business: the cookie still decides.
    let res = app
        .client
        .get(app.url("/auth"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .expect("answered");
    assert_eq!(
        header(&res, "x-auth-request-user").as_deref(),
        Some("alice")
    );
    // A bearer token that fails is refused even with a valid cookie beside it.
    let res = app
        .client
        .get(app.url("/auth"))
        .header("authorization", "Bearer not.a.token")
        .send()
        .await
        .expect("answered");
    assert_invalid_token(res, "bad token beside a cookie").await;
    // No cookie, no token: 401 without the bearer challenge's error.
    let res = reqwest::Client::new()
        .get(app.url("/auth"))
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status().as_u16(), 401);
    assert_ne!(
        header(&res, "www-authenticate").as_deref(),
        Some(WWW_AUTHENTICATE)
    );
}

#[tokio::test]
async fn off_by_default_a_bearer_token_is_ignored() {
    let app = spawn_app_with_idp(&[]).await;
    let token = client_credentials(&idp().issuer, None).await;
    let res = bearer(&app, &token).await;
    assert_eq!(res.status().as_u16(), 401);
    assert!(header(&res, "www-authenticate").is_none());
    assert_json_error(res, 401, "unauthorized").await;
}

#[tokio::test]
async fn the_access_rules_apply_to_bearer_tokens() {
    let app = app_accepting_bearer(&[
        ("GATEHOUSE__ACCESS__ALLOW_ANY_USER", "false"),
        ("GATEHOUSE__ACCESS__ALLOWED_GROUPS", "admins"),
    ])
    .await;
    let token = client_credentials(&idp().issuer, None).await;
    assert_json_error(bearer(&app, &token).await, 403, "access_denied").await;
    let app = app_accepting_bearer(&[
        ("GATEHOUSE__ACCESS__ALLOW_ANY_USER", "false"),
        ("GATEHOUSE__ACCESS__ALLOWED_GROUPS", "admins,api-clients"),
    ])
    .await;
    assert_eq!(bearer(&app, &token).await.status().as_u16(), 200);
    // Groups from a dotted claim path, as for signed-in users.
    let app = app_accepting_bearer(&[
        ("GATEHOUSE__ACCESS__GROUPS_CLAIM", "realm_access.roles"),
        ("GATEHOUSE__ACCESS__ALLOW_ANY_USER", "false"),
        ("GATEHOUSE__ACCESS__ALLOWED_GROUPS", "api-clients"),
    ])
    .await;
    let res = bearer(&app, &token).await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        header(&res, "x-auth-request-groups").as_deref(),
        Some("api-clients")
    );
}

/// `/auth` with `token` until the extra issuer's discovery is done (503 until then).
async fn once_discovered(app: &TestApp, token: &str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = bearer(app, token).await;
        if res.status().as_u16() != 503 {
            return res;
        }
        assert!(Instant::now() < deadline, "extra issuer never discovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_extra_issuer_is_accepted_only_when_listed() {
    let second = second_idp();
    let token = client_credentials(&second.issuer, None).await;
    assert_eq!(payload(&token)["iss"], second.issuer.as_str());

    let unlisted = app_accepting_bearer(&[]).await;
    assert_invalid_token(bearer(&unlisted, &token).await, "unlisted issuer").await;

    let listed = app_accepting_bearer(&[(
        "GATEHOUSE__BEARER__EXTRA_ISSUERS",
        // Exactly as the issuer writes itself (no trailing-slash leniency, RFC 9207 2.4).
        &second.issuer,
    )])
    .await;
    let res = once_discovered(&listed, &token).await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        header(&res, "x-auth-request-user").as_deref(),
        Some(API_CLIENT)
    );
    assert_eq!(
        header(&res, "x-auth-request-groups").as_deref(),
        Some("partners")
    );
    // The provider's own tokens still pass.
    let own = client_credentials(&idp().issuer, None).await;
    assert_eq!(bearer(&listed, &own).await.status().as_u16(), 200);
    // The second provider's signature does not make the first one's claims true: each issuer's
    // tokens are checked with that issuer's keys only.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = payload(&token);
    claims["iss"] = serde_json::json!(idp().issuer);
    parts[1] = b64(&claims);
    assert_invalid_token(
        bearer(&listed, &parts.join(".")).await,
        "keys of another issuer",
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_extra_issuer_never_stops_start_up() {
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let app = app_accepting_bearer(&[("GATEHOUSE__BEARER__EXTRA_ISSUERS", &dead)]).await;
    assert_eq!(app.get("/healthz").await.status().as_u16(), 200);
    let own = client_credentials(&idp().issuer, None).await;
    assert_eq!(bearer(&app, &own).await.status().as_u16(), 200);
    // Its tokens cannot be checked yet: the provider's fault, not the token's.
    let mut claims = payload(&own);
    claims["iss"] = serde_json::json!(dead);
    let mut rs = Header::new(Algorithm::RS256);
    rs.kid = Some("k".into());
    let body: String = include_str!("../data/test-only-keys/rsa-key.pem")
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let key = EncodingKey::from_rsa_der(&STANDARD.decode(body).expect("DER"));
    let token = jsonwebtoken::encode(&rs, &claims, &key).expect("signed");
    assert_json_error(bearer(&app, &token).await, 503, "provider_unavailable").await;
}

#[test]
fn bearer_settings_are_checked_at_start_up() {
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__BEARER__ENABLED".into(), "true".into());
    let err = load(vars.clone()).expect_err("no issuer to accept tokens from");
    assert!(
        err.0.starts_with("GATEHOUSE__BEARER__ENABLED "),
        "{}",
        err.0
    );
    vars.insert(
        "GATEHOUSE__BEARER__EXTRA_ISSUERS".into(),
        "https://idp.example, not a url".into(),
    );
    let err = load(vars.clone()).expect_err("bad issuer");
    assert!(
        err.0.starts_with("GATEHOUSE__BEARER__EXTRA_ISSUERS "),
        "{}",
        err.0
    );
    vars.insert(
        "GATEHOUSE__BEARER__EXTRA_ISSUERS".into(),
        "https://idp.example".into(),
    );
    let settings = load(vars).expect("valid");
    assert_eq!(settings.bearer.audiences, vec![CLIENT_ID.to_owned()]);
}
