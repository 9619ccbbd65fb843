//! Full sign-ins against the real development OpenID provider (oidc-provider).

use crate::helpers::*;

#[tokio::test]
async fn full_sign_in_session_auth_and_sign_out() {
    let app = spawn_app_with_idp(&[]).await;
    let res = app.sign_in(&app.client, "alice", Some("/after?x=1")).await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(location(&res), "/after?x=1");

    let session: serde_json::Value = app.get("/session").await.json().await.expect("json");
    assert_eq!(session["subject"], "alice");
    assert_eq!(session["email"], "alice@example.com");
    assert!(session["expires_at"]
        .as_u64()
        .is_some_and(|t| t > gatehouse::identity::now_unix()));
    assert_eq!(
        session["scopes"],
        serde_json::json!(["openid", "email", "profile"])
    );
    let text = session.to_string();
    assert!(!text.contains("token"), "no token in /session: {text}");

    let auth = app.get("/auth").await;
    assert_eq!(auth.status().as_u16(), 200);
    assert_eq!(auth.headers()["x-auth-request-user"], "alice");
    assert_eq!(auth.headers()["x-auth-request-email"], "alice@example.com");

    let home = app.get_html("/").await.text().await.expect("page");
    assert!(home.contains("Signed in as Alice"), "{home}");

    // Keep the signed-in cookie to replay it after sign-out.
    let cookie = app.cookie_header();
    assert!(cookie.contains("gatehouse="), "{cookie}");
    let out = app
        .client
        .post(app.url("/signout"))
        .header("origin", PUBLIC_URL)
        .send()
        .await
        .expect("signout");
    assert_eq!(out.status().as_u16(), 303);
    assert_eq!(location(&out), "/");
    assert_eq!(app.get("/auth").await.status().as_u16(), 401);
    assert!(
        app.keys("session").await.is_empty(),
        "session deleted in Redis"
    );

    let replay = reqwest::Client::new()
        .get(app.url("/auth"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("auth");
    assert_eq!(replay.status().as_u16(), 401, "the old cookie is dead");
}

async fn signs_in_with_client(overrides: &[(&str, &str)], login: &str) {
    let app = spawn_app_with_idp(overrides).await;
    let res = app.sign_in(&app.client, login, None).await;
    assert_eq!(res.status().as_u16(), 303, "{overrides:?}");
    let auth = app.get("/auth").await;
    assert_eq!(auth.status().as_u16(), 200);
    assert_eq!(auth.headers()["x-auth-request-user"], login);
    assert!(auth.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn client_secret_post_works_against_the_real_provider() {
    signs_in_with_client(
        &[
            ("GATEHOUSE__PROVIDER__CLIENT_ID", "gatehouse-post"),
            ("GATEHOUSE__PROVIDER__CLIENT_AUTH", "post"),
        ],
        "lena",
    )
    .await;
}

#[tokio::test]
async fn a_public_client_signs_in_with_pkce_alone() {
    signs_in_with_client(
        &[
            ("GATEHOUSE__PROVIDER__CLIENT_ID", "gatehouse-public"),
            ("GATEHOUSE__PROVIDER__CLIENT_SECRET", ""),
        ],
        "mona",
    )
    .await;
}

#[tokio::test]
async fn the_authorize_url_carries_every_parameter_of_the_contract() {
    let app = spawn_app_with_idp(&[]).await;
    let a = app.start_sign_in(&app.client, None).await;
    let b = app.start_sign_in(&app.client, None).await;
    assert!(a.starts_with(&format!("{}/auth?", idp().issuer)), "{a}");
    for (name, want) in [
        ("response_type", Some("code")),
        ("client_id", Some(CLIENT_ID)),
        ("redirect_uri", Some("http://gatehouse.test/redirect")),
        ("scope", Some("openid email profile")),
        ("code_challenge_method", Some("S256")),
    ] {
        assert_eq!(query_param(&a, name).as_deref(), want, "{name}");
    }
    for name in ["state", "nonce", "code_challenge"] {
        let va = query_param(&a, name).unwrap_or_default();
        let vb = query_param(&b, name).unwrap_or_default();
        assert!(va.len() >= 43, "{name} carries at least 256 bits: {va}");
        assert!(
            va.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{name} is URL-safe"
        );
        assert_ne!(va, vb, "{name} is fresh for every sign-in");
    }
    // The pending sign-in expires with SIGNIN_TTL_SECS.
    let state = query_param(&a, "state").unwrap_or_default();
    let mut conn = app.redis().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{}signin:{state}", app.prefix))
        .query_async(&mut conn)
        .await
        .expect("TTL");
    assert!((590..=600).contains(&ttl), "pending sign-in TTL {ttl}");
}

#[tokio::test]
async fn scopes_without_openid_send_no_nonce() {
    let app = spawn_app_with_idp(&[("GATEHOUSE__PROVIDER__SCOPES", "email profile")]).await;
    let a = app.start_sign_in(&app.client, None).await;
    assert_eq!(query_param(&a, "scope").as_deref(), Some("email profile"));
    assert_eq!(query_param(&a, "nonce"), None);
}

#[tokio::test]
async fn an_expired_sign_in_is_refused() {
    let app = spawn_app_with_idp(&[]).await;
    let authorize = app.start_sign_in(&app.client, None).await;
    let callback = idp_login(&app.client, &authorize, "nora").await;
    // Expire it now, as Redis does when SIGNIN_TTL_SECS runs out (a non-positive TTL).
    let state = query_param(&authorize, "state").unwrap_or_default();
    let key = format!("{}signin:{state}", app.prefix);
    let mut conn = app.redis().await;
    let _: i64 = redis::cmd("EXPIRE")
        .arg(&key)
        .arg(0)
        .query_async(&mut conn)
        .await
        .expect("EXPIRE");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 0, "the sign-in expired");
    let res = app.follow_callback(&app.client, &callback).await;
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"], "invalid_state");
}
