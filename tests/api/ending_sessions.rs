//! Ending sessions from outside the browser, end to end: an operator blocks a user (the real
//! binary, both database engines), and the provider's back-channel logout (the real
//! development provider, and forged tokens). Every one is 401 on the very next `/auth`, on
//! every instance, and audited.

use std::time::Duration;

use crate::admin_cli::gatehouse;
use crate::databases::TestDb;
use crate::helpers::*;
use crate::logout_tokens::end_session_at_provider;

async fn status(app: &TestApp, client: &reqwest::Client, path: &str) -> u16 {
    client
        .get(app.url(path))
        .send()
        .await
        .expect("answered")
        .status()
        .as_u16()
}

/// The audit trail as `gatehouse audit` prints it, once it holds `event`: events are written
/// off the request path, so this waits (bounded) for the writer, without blocking the runtime
/// the app (and its writer) runs on.
async fn audit(app: &TestApp, args: &str, event: &str) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for _ in 0..100 {
        let (vars, args) = (app.vars.clone(), format!("audit {args}"));
        let ran = tokio::task::spawn_blocking(move || gatehouse(&vars, &args))
            .await
            .expect("audit ran");
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        lines = ran.json_lines();
        if lines.iter().any(|l| l["event"] == event) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lines
}

/// `gatehouse <args>` off the runtime the app serves on.
async fn run(app: &TestApp, args: &str) -> crate::admin_cli::Ran {
    let (vars, args) = (app.vars.clone(), args.to_owned());
    tokio::task::spawn_blocking(move || gatehouse(&vars, &args))
        .await
        .expect("command ran")
}

fn events(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn blocking_a_user_ends_every_session_at_once_and_refuses_the_next_sign_in() {
    for db in [TestDb::sqlite(), TestDb::postgres().await] {
        let app = spawn_app_with_idp(&[("GATEHOUSE__DATABASE__URL", &db.url)]).await;
        let second = spawn_app_from_vars(app.vars.clone()).await;
        let (laptop, phone) = (browser(), browser());
        assert_eq!(
            app.sign_in(&laptop, "blair", None).await.status().as_u16(),
            303
        );
        assert_eq!(
            app.sign_in(&phone, "blair", None).await.status().as_u16(),
            303
        );
        assert_eq!(status(&second, &phone, "/auth").await, 200);

        let ran = run(&app, "users block blair").await;
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        for client in [&laptop, &phone] {
            assert_eq!(status(&app, client, "/auth").await, 401, "ended at once");
            assert_eq!(status(&second, client, "/auth").await, 401, "everywhere");
        }
        let again = app.sign_in(&browser(), "blair", None).await;
        assert_json_error(again, 403, "access_denied").await;
        assert!(app.keys("session").await.is_empty(), "no new session");

        let users = run(&app, "users list").await.json_lines();
        let blair = users
            .iter()
            .find(|u| u["subject"] == "blair")
            .expect("listed");
        assert_eq!(blair["blocked"], true);

        let trail = audit(&app, "--subject blair", "signin_refused").await;
        let kinds = events(&trail);
        // Oldest first by the second; within one second, in the order they were written (the
        // server's events are written off the request path, the command's at once).
        assert_eq!(
            kinds.iter().filter(|k| *k == "signin").count(),
            2,
            "{kinds:?}"
        );
        assert!(kinds.contains(&"user_blocked".into()), "{kinds:?}");
        let refused = trail
            .iter()
            .find(|l| l["event"] == "signin_refused")
            .unwrap_or_else(|| panic!("the refused sign-in is audited: {trail:?}"));
        assert_eq!(refused["reason"], "access_denied");
        assert_eq!(refused["ip"], "127.0.0.1");
        assert!(refused["request_id"]
            .as_str()
            .is_some_and(|id| id.len() >= 32));

        let ran = run(&app, "users unblock blair").await;
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        assert_eq!(
            app.sign_in(&browser(), "blair", None)
                .await
                .status()
                .as_u16(),
            303
        );
        db.remove().await;
    }
}

#[tokio::test]
async fn an_operator_revokes_every_session_of_a_subject() {
    let app = spawn_app_with_idp(&[]).await;
    let (a, b, other) = (browser(), browser(), browser());
    assert_eq!(app.sign_in(&a, "cass", None).await.status().as_u16(), 303);
    assert_eq!(app.sign_in(&b, "cass", None).await.status().as_u16(), 303);
    assert_eq!(
        app.sign_in(&other, "dee", None).await.status().as_u16(),
        303
    );
    let ran = run(&app, "sessions revoke --subject cass").await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(status(&app, &a, "/auth").await, 401);
    assert_eq!(status(&app, &b, "/auth").await, 401);
    assert_eq!(status(&app, &other, "/auth").await, 200, "only cass's");
    // Not blocked: cass may sign in again.
    assert_eq!(
        app.sign_in(&browser(), "cass", None)
            .await
            .status()
            .as_u16(),
        303
    );
}

/// An app whose provider is a development provider of its own, that will call this app's
/// back-channel logout endpoint, as its client `gatehouse-bcl`.
async fn app_with_backchannel() -> (TestApp, Idp) {
    let port = dead_port();
    let idp = spawn_idp(&[(
        "IDP_BACKCHANNEL_URI",
        format!("http://127.0.0.1:{port}/backchannel-logout"),
    )]);
    let bind = format!("127.0.0.1:{port}");
    let app = spawn_app_with(&[
        ("GATEHOUSE__SERVER__BIND", &bind),
        ("GATEHOUSE__PROVIDER__ISSUER", &idp.issuer),
        ("GATEHOUSE__PROVIDER__AUTH_URL", ""),
        ("GATEHOUSE__PROVIDER__TOKEN_URL", ""),
        ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "10"),
        ("GATEHOUSE__PROVIDER__CLIENT_ID", "gatehouse-bcl"),
    ])
    .await;
    (app, idp)
}

#[tokio::test]
async fn the_providers_back_channel_logout_ends_that_session_and_only_it() {
    let (app, idp) = app_with_backchannel().await;
    let (laptop, phone) = (browser(), browser());
    assert_eq!(
        app.sign_in(&laptop, "erin", None).await.status().as_u16(),
        303
    );
    assert_eq!(
        app.sign_in(&phone, "erin", None).await.status().as_u16(),
        303
    );
    assert_eq!(status(&app, &laptop, "/auth").await, 200);
    // The laptop's session ends at the provider: it tells gatehouse, with the session's sid.
    end_session_at_provider(&idp, &laptop).await;
    let mut after = 200;
    for _ in 0..100 {
        after = status(&app, &laptop, "/auth").await;
        if after == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(after, 401, "the provider's logout reached gatehouse");
    assert_eq!(
        status(&app, &phone, "/auth").await,
        200,
        "another session of the same user (another provider session) stays"
    );
    let trail = audit(&app, "--subject erin", "backchannel_logout").await;
    assert!(
        events(&trail).contains(&"backchannel_logout".into()),
        "{trail:?}"
    );
}

#[tokio::test]
async fn forged_logout_tokens_change_nothing() {
    let (app, _idp) = app_with_backchannel().await;
    let browser = browser();
    assert_eq!(
        app.sign_in(&browser, "finn", None).await.status().as_u16(),
        303
    );
    let now = gatehouse::identity::now_unix();
    let claims = serde_json::json!({
        "iss": _idp.issuer, "aud": "gatehouse-bcl", "iat": now, "jti": "j-1", "sub": "finn",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    let b64 = |v: &serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none"})),
        b64(&claims)
    );
    let wrong_key = crate::id_tokens::sign_rs256(&claims, "k", &crate::id_tokens::other_key());
    let hs256 = format!(
        "{}.{}.c2ln",
        b64(&serde_json::json!({"alg": "HS256"})),
        b64(&claims)
    );
    for (name, form) in [
        ("unsigned", format!("logout_token={unsigned}")),
        ("another key", format!("logout_token={wrong_key}")),
        ("HS256", format!("logout_token={hs256}")),
        ("garbage", "logout_token=not.a.jwt".to_owned()),
        ("missing", "other=1".to_owned()),
        ("empty", "logout_token=".to_owned()),
    ] {
        let res = reqwest::Client::new()
            .post(app.url("/backchannel-logout"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("posted");
        assert_eq!(res.status().as_u16(), 400, "{name}");
        assert_eq!(
            status(&app, &browser, "/auth").await,
            200,
            "{name} ended nothing"
        );
    }
}
