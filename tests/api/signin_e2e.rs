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
