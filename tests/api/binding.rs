//! The browser-binding cookies (issue 12, point 6): host-only and `__Host-` prefixed whenever
//! Secure, even with a cookie domain; signed with a key of their own, so that a value signed
//! as one kind of cookie never passes as the other; the session cookie signed as it always
//! was (an upgrade logs nobody out); rotating the secret keeps sign-ins under way.

use actix_web::cookie::{Cookie, CookieJar, Key};
use base64::Engine;
use reqwest::redirect::Policy;

use crate::helpers::*;

fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

fn secret_bytes(app: &TestApp) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(&app.vars["GATEHOUSE__SESSION__SECRET"])
        .expect("base64 secret")
}

/// `name=value` with `value` signed by `key`, encoded as a browser sends it back.
fn signed_pair(key: &Key, name: &str, value: &str) -> String {
    let mut jar = CookieJar::new();
    jar.signed_mut(key)
        .add(Cookie::new(name.to_owned(), value.to_owned()));
    jar.get(name)
        .expect("signed")
        .encoded()
        .stripped()
        .to_string()
}

/// Stores a pending sign-in for `state`, bound to `browser_id`, as /signin would.
async fn put_pending(app: &TestApp, state: &str, browser_id: &str) {
    let record = serde_json::json!({
        "browser_id": browser_id,
        "pkce_verifier": gatehouse::random::token(),
        "nonce": null,
        "return_to": "/",
        "created_at": 0,
    });
    let mut conn = app.redis().await;
    let _: () = redis::cmd("SET")
        .arg(format!("{}signin:{state}", app.prefix))
        .arg(record.to_string())
        .arg("EX")
        .arg(600)
        .query_async(&mut conn)
        .await
        .expect("SET");
}

/// The callback for `state` with the provider's refusal, carrying `cookie`: `provider_error`
/// when the binding was accepted, `invalid_state` when it was not.
async fn refusal_callback(app: &TestApp, state: &str, cookie: &str) -> String {
    let res = bare()
        .get(app.url(&format!(
            "/redirect?state={state}&error=access_denied&iss={}",
            idp().issuer
        )))
        .header("cookie", cookie)
        .send()
        .await
        .expect("callback");
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.expect("json");
    body["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn binding_cookies_are_host_only_and_host_prefixed_whenever_secure() {
    for (secure, domain) in [
        ("true", ""),
        ("true", "gatehouse.test"),
        ("false", ""),
        ("false", "gatehouse.test"),
    ] {
        let app = spawn_app_with(&[
            ("GATEHOUSE__SESSION__COOKIE_SECURE", secure),
            ("GATEHOUSE__SESSION__COOKIE_DOMAIN", domain),
        ])
        .await;
        let res = bare().get(app.url("/signin")).send().await.expect("signin");
        assert_eq!(res.status().as_u16(), 303);
        let cookie = binding_set_cookie(&res);
        let lower = cookie.to_ascii_lowercase();
        let case = format!("secure={secure} domain={domain:?}: {cookie}");
        assert_eq!(
            cookie.starts_with("__Host-gatehouse_signin_"),
            secure == "true",
            "{case}"
        );
        assert!(!lower.contains("domain="), "host-only: {case}");
        assert_eq!(lower.contains("; secure"), secure == "true", "{case}");
        for attr in ["; httponly", "; samesite=lax", "; path=/", "; max-age=600"] {
            assert!(lower.contains(attr), "{attr}: {case}");
        }
        assert!(cookie.len() < 200, "small: {case}");
    }
}

#[tokio::test]
async fn a_value_signed_for_one_cookie_is_refused_as_the_other() {
    let app = spawn_app_with_idp(&[]).await;
    assert_eq!(
        app.sign_in(&app.client, "rita", None)
            .await
            .status()
            .as_u16(),
        303
    );
    let sessions = app.keys("session").await;
    assert_eq!(sessions.len(), 1);
    let session_id = sessions[0]
        .rsplit(':')
        .next()
        .expect("id")
        .trim_matches(['{', '}'])
        .to_owned();
    let session_pair = app
        .cookie_header()
        .split("; ")
        .find(|c| c.starts_with("gatehouse="))
        .expect("session cookie")
        .to_owned();
    let session_value = &session_pair["gatehouse=".len()..];

    // A real binding: accepted for a sign-in bound to its id (the control).
    let res = bare().get(app.url("/signin")).send().await.expect("signin");
    let binding = binding_set_cookie(&res);
    let binding_pair = binding.split(';').next().expect("pair").to_owned();
    let (binding_name, binding_value) = binding_pair.split_once('=').expect("name=value");
    let state = query_param(&location(&res), "state").expect("state");
    let mut conn = app.redis().await;
    let id = pending_sign_in(&mut conn, &app.prefix, &state)
        .await
        .expect("pending")["browser_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let control = gatehouse::random::token();
    put_pending(&app, &control, &id).await;
    assert_eq!(
        refusal_callback(&app, &control, &binding_pair).await,
        "provider_error",
        "the binding is accepted"
    );

    // The session cookie's signed value under a binding cookie's name, for a sign-in bound
    // to the session id it signs: refused.
    let relabelled = gatehouse::random::token();
    put_pending(&app, &relabelled, &session_id).await;
    assert_eq!(
        refusal_callback(
            &app,
            &relabelled,
            &format!("{binding_name}={session_value}")
        )
        .await,
        "invalid_state",
        "a session value is no binding"
    );

    // And the reverse: the live session id signed as a binding cookie (with the binding key),
    // or a binding cookie's value, under the session cookie's name: nobody signed in.
    let secret = secret_bytes(&app);
    let forged = signed_pair(
        &gatehouse::browser::binding_key(&secret),
        "gatehouse",
        &session_id,
    );
    let genuine = signed_pair(&Key::from(&secret), "gatehouse", &session_id);
    for (cookie, expected) in [
        (genuine, 200),
        (session_pair.clone(), 200),
        (forged, 401),
        (format!("gatehouse={binding_value}"), 401),
    ] {
        let res = bare()
            .get(app.url("/auth"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("auth");
        assert_eq!(res.status().as_u16(), expected, "{cookie}");
    }
}

#[tokio::test]
async fn a_sign_in_started_before_a_secret_rotation_completes_after_it() {
    let before = spawn_app_with_idp(&[]).await;
    let old_secret = before.vars["GATEHOUSE__SESSION__SECRET"].clone();
    let new_secret = session_secret();
    let rotated = spawn_app_with_idp(&[
        ("GATEHOUSE__SESSION__SECRET", &new_secret),
        ("GATEHOUSE__SESSION__PREVIOUS_SECRETS", &old_secret),
        ("GATEHOUSE__REDIS__KEY_PREFIX", &before.prefix),
    ])
    .await;
    let only_new = spawn_app_with_idp(&[
        ("GATEHOUSE__SESSION__SECRET", &new_secret),
        ("GATEHOUSE__REDIS__KEY_PREFIX", &before.prefix),
    ])
    .await;

    // Started under the old secret, finished where the old one is a previous secret.
    let (client, _jar) = browser_with_jar();
    let authorize = before.start_sign_in(&client, Some("/rotated")).await;
    let callback = idp_login(&client, &authorize, "rotor").await;
    let res = rotated.follow_callback(&client, &callback).await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(location(&res), "/rotated");

    // Once the old secret is gone, its binding cookies no longer bind.
    let (client, _jar) = browser_with_jar();
    let authorize = before.start_sign_in(&client, None).await;
    let callback = idp_login(&client, &authorize, "rotor").await;
    let res = only_new.follow_callback(&client, &callback).await;
    assert_json_error(res, 400, "invalid_state").await;
}

#[tokio::test]
async fn a_sign_in_forwarded_for_another_subdomain_starts_on_the_public_host() {
    // gatehouse's PUBLIC_URL is on gatehouse.test and it serves apps on *.gatehouse.test
    // (COOKIE_DOMAIN); nginx on app.gatehouse.test hands its 401s to /signin. The binding cookie
    // is host-only, so the sign-in must start where the callback will land.
    let app = spawn_app_with(&[
        ("GATEHOUSE__SESSION__COOKIE_DOMAIN", "gatehouse.test"),
        (
            "GATEHOUSE__SERVER__ALLOWED_REDIRECT_HOSTS",
            ".gatehouse.test",
        ),
        ("GATEHOUSE__PROXY__TRUSTED", "127.0.0.1/32"),
    ])
    .await;
    let page = "http://app.gatehouse.test/reports?id=7";
    let res = bare()
        .get(app.url("/signin"))
        .header("x-forwarded-host", "app.gatehouse.test")
        .header("x-forwarded-proto", "http")
        .header("x-auth-request-redirect", page)
        .send()
        .await
        .expect("signin");
    assert_eq!(res.status().as_u16(), 303);
    assert!(res.headers().get("set-cookie").is_none(), "no cookie there");
    let there = location(&res);
    assert!(
        there.starts_with(&format!("{PUBLIC_URL}/signin?")),
        "{there}"
    );
    assert_eq!(query_param(&there, "return_to").as_deref(), Some(page));

    // On the public host (a port or scheme of its own changes nothing: cookies ignore both),
    // the sign-in starts, bound to a cookie that host's callback receives.
    let path = there.trim_start_matches(PUBLIC_URL);
    for forwarded in ["gatehouse.test", "GATEHOUSE.test:8443"] {
        let res = bare()
            .get(app.url(path))
            .header("x-forwarded-host", forwarded)
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .expect("signin");
        assert_eq!(res.status().as_u16(), 303);
        let authorize = location(&res);
        assert!(
            authorize.starts_with("http://127.0.0.1:9/authorize?"),
            "{authorize}"
        );
        let _ = binding_set_cookie(&res);
        let state = query_param(&authorize, "state").expect("state");
        let mut conn = app.redis().await;
        let pending = pending_sign_in(&mut conn, &app.prefix, &state)
            .await
            .expect("pending");
        assert_eq!(pending["return_to"], page);
    }

    // A host named by an untrusted peer is not believed: the sign-in starts at once.
    let untrusted =
        spawn_app_with(&[("GATEHOUSE__SESSION__COOKIE_DOMAIN", "gatehouse.test")]).await;
    let res = bare()
        .get(untrusted.url("/signin"))
        .header("x-forwarded-host", "app.gatehouse.test")
        .send()
        .await
        .expect("signin");
    assert!(location(&res).starts_with("http://127.0.0.1:9/authorize?"));
}
