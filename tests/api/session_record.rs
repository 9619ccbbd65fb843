//! The stored session record: no token readable in Redis, records of the previous release
//! still honoured (and upgraded), the absolute lifetime.

use actix_web::cookie::{Cookie, CookieJar, Key};
use base64::Engine;
use redis::AsyncCommands;

use crate::helpers::*;

/// Every value under the app's prefix, whatever its type, as text.
async fn dump(app: &TestApp) -> String {
    let mut conn = app.redis().await;
    let keys: Vec<String> = conn.keys(format!("{}*", app.prefix)).await.expect("KEYS");
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("TYPE");
        let value: String = match kind.as_str() {
            "string" => conn.get(&key).await.expect("GET"),
            "hash" => format!(
                "{:?}",
                conn.hgetall::<_, Vec<String>>(&key).await.expect("HGETALL")
            ),
            "set" => format!(
                "{:?}",
                conn.smembers::<_, Vec<String>>(&key)
                    .await
                    .expect("SMEMBERS")
            ),
            other => panic!("unexpected key type {other} at {key}"),
        };
        out.push_str(&key);
        out.push(' ');
        out.push_str(&value);
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn a_redis_dump_after_sign_in_holds_no_token() {
    let app = spawn_app_with_idp(&[]).await;
    let res = app.sign_in(&app.client, "tess", None).await;
    assert_eq!(res.status().as_u16(), 303);
    let tokens = app.stored_tokens().await;
    let dump = dump(&app).await;
    assert!(dump.contains("tess"), "the identity stays readable: {dump}");
    for name in ["access_token", "refresh_token", "id_token"] {
        let token = tokens[name].as_str().expect(name);
        assert!(token.len() > 10, "{name}");
        assert!(!dump.contains(token), "{name} readable in Redis:\n{dump}");
    }
    // The key that opens them is in the browser's cookie only.
    let session_key = app.session_key().expect("cookie");
    let (_, sealing_key) = session_key.split_once('.').expect("format 2 key");
    assert!(!dump.contains(sealing_key));
}

/// A session exactly as the previous release stored it: actix-session's map of JSON strings
/// under an id that is also the whole cookie value.
async fn previous_release_session(app: &TestApp, subject: &str) -> (String, String) {
    let id = gatehouse::random::token();
    let identity = serde_json::json!({
        "subject": subject, "email": format!("{subject}@example.com"), "email_verified": true,
        "name": "Old Timer", "preferred_username": subject,
    })
    .to_string();
    let tokens = serde_json::json!({
        "access_token": "old-access-token-value", "refresh_token": null, "id_token": null,
        "expires_at": gatehouse::identity::now_unix() + 3600, "scopes": ["openid"],
    })
    .to_string();
    let record = serde_json::json!({"identity": identity, "tokens": tokens}).to_string();
    let mut conn = app.redis().await;
    let () = conn
        .set_ex(format!("{}session:{{{id}}}", app.prefix), record, 600)
        .await
        .expect("SET");
    let secret = base64::engine::general_purpose::STANDARD
        .decode(&app.vars["GATEHOUSE__SESSION__SECRET"])
        .expect("secret");
    let mut jar = CookieJar::new();
    jar.signed_mut(&Key::from(&secret))
        .add(Cookie::new("gatehouse", id.clone()));
    let value = jar.get("gatehouse").expect("signed").value().to_owned();
    (id, format!("gatehouse={value}"))
}

#[tokio::test]
async fn a_session_stored_by_the_previous_release_keeps_working_and_is_upgraded() {
    let app = spawn_app_with_idp(&[]).await;
    let (old_id, cookie) = previous_release_session(&app, "olga").await;
    let client = browser();
    let auth = client
        .get(app.url("/auth"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("auth");
    assert_eq!(
        auth.status().as_u16(),
        200,
        "nobody is signed out by the upgrade"
    );
    assert_eq!(auth.headers()["x-auth-request-user"], "olga");
    assert_eq!(auth.headers()["x-auth-request-email"], "olga@example.com");

    // The first page visit rewrites it in the current format, under a new cookie.
    let page = client
        .get(app.url("/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("session");
    assert_eq!(page.status().as_u16(), 200);
    let set_cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("gatehouse="))
        .expect("a new session cookie")
        .to_owned();
    let body: serde_json::Value = page.json().await.expect("json");
    assert_eq!(body["subject"], "olga");
    let new_cookie = set_cookie.split(';').next().expect("pair").to_owned();
    assert_ne!(new_cookie, cookie);

    assert!(
        app.get_key(&format!("session:{{{old_id}}}"))
            .await
            .is_none(),
        "the old record is gone"
    );
    let keys = app.keys("session").await;
    assert_eq!(keys.len(), 1);
    let stored = app
        .get_key(keys[0].trim_start_matches(&app.prefix))
        .await
        .expect("new record");
    assert!(stored.starts_with(r#"{"v":2,"#), "{stored}");
    assert!(
        !stored.contains("old-access-token-value"),
        "tokens sealed now"
    );

    let auth = client
        .get(app.url("/auth"))
        .header("cookie", &new_cookie)
        .send()
        .await
        .expect("auth");
    assert_eq!(auth.status().as_u16(), 200);
    assert_eq!(auth.headers()["x-auth-request-user"], "olga");
    let old = client
        .get(app.url("/auth"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("auth");
    assert_eq!(old.status().as_u16(), 401, "the old cookie is spent");
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_active() {
    let app = spawn_app_with_idp(&[("GATEHOUSE__SESSION__MAX_LIFETIME_SECS", "3600")]).await;
    assert_eq!(
        app.sign_in(&app.client, "lou", None)
            .await
            .status()
            .as_u16(),
        303
    );
    assert_eq!(app.get("/auth").await.status().as_u16(), 200);
    // Age the record as if it had been created (and used ever since) just over an hour ago:
    // only `created_at` changes, the sealed tokens stay valid.
    let key = app.keys("session").await[0].clone();
    let mut conn = app.redis().await;
    let stored: String = conn.get(&key).await.expect("GET");
    let mut record: serde_json::Value = serde_json::from_str(&stored).expect("json");
    let created = record["created_at"].as_u64().expect("created_at");
    record["created_at"] = serde_json::json!(created - 3601);
    let () = conn
        .set_ex(&key, record.to_string(), 600)
        .await
        .expect("SET");
    assert_eq!(app.get("/auth").await.status().as_u16(), 401);
    assert!(
        app.keys("session").await.is_empty(),
        "the session is deleted"
    );
    assert_eq!(app.get("/session").await.status().as_u16(), 401);
}

#[tokio::test]
async fn a_record_moved_under_another_id_does_not_open() {
    // Someone who can write Redis copies Bob's record under Ann's id: Ann's cookie's key does
    // not open Bob's tokens, so her pages show no one rather than Bob.
    let app = spawn_app_with_idp(&[]).await;
    let bob = browser();
    assert_eq!(app.sign_in(&bob, "bob", None).await.status().as_u16(), 303);
    let bob_key = app.keys("session").await[0].clone();
    assert_eq!(
        app.sign_in(&app.client, "ann", None)
            .await
            .status()
            .as_u16(),
        303
    );
    let ann_id = app
        .session_key()
        .expect("cookie")
        .split_once('.')
        .expect("format 2")
        .0
        .to_owned();
    let mut conn = app.redis().await;
    let bobs: String = conn.get(&bob_key).await.expect("GET");
    let () = conn
        .set_ex(format!("{}session:{{{ann_id}}}", app.prefix), bobs, 600)
        .await
        .expect("SET");
    let res = app.get("/session").await;
    assert_eq!(
        res.status().as_u16(),
        401,
        "a record that does not open is no session"
    );
}

/// The number of Redis commands the app has sent, from its own metrics.
async fn redis_commands(app: &TestApp) -> u64 {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("gatehouse_redis_command_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the Redis command count")
}

#[tokio::test]
async fn auth_is_one_redis_round_trip_with_rules_and_headers() {
    let app = spawn_app_with_idp(&[
        ("GATEHOUSE__METRICS__PUBLIC", "true"),
        ("GATEHOUSE__FORWARD__CLAIM_HEADERS", "name=X-User-Name"),
        ("GATEHOUSE__FORWARD__ASSERTION", "true"),
    ])
    .await;
    assert_eq!(
        app.sign_in(&app.client, "rob+staff", None)
            .await
            .status()
            .as_u16(),
        303
    );
    // Warm: the first /auth may sign the assertion (no Redis either way).
    assert_eq!(app.get("/auth").await.status().as_u16(), 200);
    let before = redis_commands(&app).await;
    for path in [
        "/auth",
        "/auth?allowed_groups=staff",
        "/auth",
        "/auth?allowed_groups=admins",
    ] {
        app.get(path).await;
    }
    let after = redis_commands(&app).await;
    assert_eq!(after - before, 4, "one command per /auth");
}
