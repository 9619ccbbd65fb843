//! The security properties the peers get wrong, each proven against the real provider.

use crate::helpers::*;

#[tokio::test]
async fn a_callback_from_another_browser_is_refused_and_signs_nobody_in() {
    let app = spawn_app_with_idp(&[]).await;
    let victim = browser();
    let authorize = app.start_sign_in(&victim, None).await;
    let callback = idp_login(&victim, &authorize, "victim").await;

    let attacker = browser();
    // The attacker's browser first gets a binding of its own, then replays the victim's URL.
    let _ = app.start_sign_in(&attacker, None).await;
    let res = app.follow_callback(&attacker, &callback).await;
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"], "invalid_state");
    let auth = attacker.get(app.url("/auth")).send().await.expect("auth");
    assert_eq!(auth.status().as_u16(), 401);
    assert!(
        app.keys("session").await.is_empty(),
        "no session was created"
    );
}

#[tokio::test]
async fn signing_in_renews_the_session_id_and_kills_the_old_one() {
    let app = spawn_app_with_idp(&[]).await;
    assert_eq!(
        app.sign_in(&app.client, "gina", None)
            .await
            .status()
            .as_u16(),
        303
    );
    let before = app.cookie_header();
    assert_eq!(
        app.sign_in(&app.client, "gina", None)
            .await
            .status()
            .as_u16(),
        303
    );
    let after = app.cookie_header();
    let id = |c: &str| {
        c.split("; ")
            .find(|kv| kv.starts_with("gatehouse="))
            .map(str::to_owned)
            .expect("session cookie")
    };
    assert_ne!(id(&before), id(&after), "a new session id at sign-in");
    let replay = reqwest::Client::new()
        .get(app.url("/auth"))
        .header("cookie", id(&before))
        .send()
        .await
        .expect("auth");
    assert_eq!(replay.status().as_u16(), 401, "the pre-sign-in id is dead");
    assert_eq!(app.keys("session").await.len(), 1);
}

/// Open-redirect payloads: every one must land on `/` after a real sign-in.
const OPEN_REDIRECTS: &[&str] = &[
    "//evil.example",
    "//evil.example/path",
    "/\\evil.example",
    "\\/evil.example",
    "\\\\evil.example",
    "https://evil.example",
    "http://evil.example",
    "HTTPS://evil.example",
    "//evil.example@gatehouse.test",
    "https://gatehouse.test@evil.example",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/%2f%2fevil.example",
    "/%5Cevil.example",
    "/%252F%252Fevil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/\tevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "//user:pass@evil.example",
    "///evil.example",
    "////evil.example",
    "/%09/evil.example",
    "/%0a/evil.example",
    "evil.example",
    "ftp://evil.example",
    "//evil%E3%80%82example",
    "/\u{3002}/evil.example",
    "",
];

#[tokio::test]
async fn open_redirect_payloads_fall_back_to_the_home_page() {
    let app = spawn_app_with_idp(&[]).await;
    // The provider remembers the consent after the first round, so later rounds are quick.
    for payload in OPEN_REDIRECTS {
        let res = app.sign_in(&app.client, "henry", Some(payload)).await;
        assert_eq!(res.status().as_u16(), 303, "{payload:?}");
        assert_eq!(
            location(&res),
            "/",
            "return_to {payload:?} must fall back to /"
        );
    }
    let res = app
        .sign_in(&app.client, "henry", Some("/ok/path?q=1"))
        .await;
    assert_eq!(location(&res), "/ok/path?q=1", "a same-origin path is kept");
}

#[tokio::test]
async fn cookies_carry_the_contract_attributes() {
    // Secure is on by default; a browser would not send Secure cookies over plain http, so
    // this test carries them by hand.
    let app = spawn_app_with_idp(&[("GATEHOUSE__SESSION__COOKIE_SECURE", "")]).await;
    let (binding, res) = sign_in_carrying_cookies(&app, "iris").await;
    assert_attributes(&binding);
    assert_eq!(res.status().as_u16(), 303);
    let session = set_cookie(&res, "gatehouse");
    assert_attributes(&session);
    assert!(
        !session.to_ascii_lowercase().contains("max-age"),
        "a browser-session cookie: {session}"
    );
    assert!(
        session.len() < 200,
        "the cookie holds only a signed id: {session}"
    );
}

fn assert_attributes(cookie: &str) {
    let lower = cookie.to_ascii_lowercase();
    for attr in ["httponly", "samesite=lax", "path=/", "secure"] {
        assert!(lower.contains(attr), "{attr} missing in {cookie}");
    }
}

#[tokio::test]
async fn provider_refusal_is_a_clear_error_and_no_session() {
    let app = spawn_app_with_idp(&[]).await;
    let authorize = app.start_sign_in(&app.client, None).await;
    let callback = idp_cancel(&app.client, &authorize).await;
    assert_eq!(
        query_param(&callback, "error").as_deref(),
        Some("access_denied")
    );
    let res = app.follow_callback(&app.client, &callback).await;
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"], "provider_error");
    assert!(body["message"]
        .as_str()
        .unwrap_or_default()
        .contains("access_denied"));
    assert!(app.keys("session").await.is_empty());
}

#[tokio::test]
async fn a_wrong_iss_is_refused_before_any_exchange() {
    let app = spawn_app_with_idp(&[]).await;
    let authorize = app.start_sign_in(&app.client, None).await;
    let callback = idp_login(&app.client, &authorize, "jack").await;
    let mut cb = reqwest::Url::parse(&callback).expect("cb");
    let pairs: Vec<(String, String)> = cb
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "iss" {
                "https://evil.example".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    cb.query_pairs_mut().clear().extend_pairs(pairs);
    let res = app.follow_callback(&app.client, cb.as_str()).await;
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"], "invalid_request");
    // The state is spent: the genuine callback cannot be used afterwards either.
    let res = app.follow_callback(&app.client, &callback).await;
    assert_eq!(res.status().as_u16(), 400);
}

#[tokio::test]
async fn tampered_cookies_are_worthless() {
    let app = spawn_app_with_idp(&[]).await;
    assert_eq!(
        app.sign_in(&app.client, "olga", None)
            .await
            .status()
            .as_u16(),
        303
    );
    let cookies = app.cookie_header();
    // Flip one character of each cookie value: the signature no longer matches.
    let tampered: Vec<String> = cookies
        .split("; ")
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let mut v: Vec<char> = v.chars().collect();
            if let Some(c) = v.last_mut() {
                *c = if *c == 'A' { 'B' } else { 'A' };
            }
            format!("{k}={}", v.into_iter().collect::<String>())
        })
        .collect();
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = plain
        .get(app.url("/auth"))
        .header("cookie", tampered.join("; "))
        .send()
        .await
        .expect("auth");
    assert_eq!(
        res.status().as_u16(),
        401,
        "a tampered session cookie signs nobody in"
    );

    // A tampered binding cookie cannot finish a sign-in started by the real one.
    let authorize = app.start_sign_in(&app.client, None).await;
    let callback = idp_login(&app.client, &authorize, "olga").await;
    let cb = reqwest::Url::parse(&callback).expect("cb");
    let res = plain
        .get(format!(
            "{}/redirect?{}",
            app.address,
            cb.query().unwrap_or_default()
        ))
        .header("cookie", tampered.join("; "))
        .send()
        .await
        .expect("callback");
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"], "invalid_state");
}

/// The session cookie's value is actix's signed form: base64 of the HMAC-SHA256 tag (44
/// characters) followed by the value it signs. This changes the tag alone and keeps the real
/// session id, so a 401 can only come from the signature check (the id itself is live: the
/// untouched cookie still passes). Default settings, no previous secrets.
#[tokio::test]
async fn a_live_session_id_under_a_changed_signature_signs_nobody_in() {
    use base64::Engine;
    const TAG_LEN: usize = 44;

    let app = spawn_app_with_idp(&[]).await;
    assert_eq!(
        app.sign_in(&app.client, "sigrid", None)
            .await
            .status()
            .as_u16(),
        303
    );
    let jar = app.cookie_header();
    let real = jar
        .split("; ")
        .find_map(|kv| kv.strip_prefix("gatehouse="))
        .expect("a session cookie")
        .to_owned();
    // On the wire the value is percent-encoded (base64's `+`, `/` and `=`).
    let decoded = percent_encoding::percent_decode_str(&real)
        .decode_utf8()
        .expect("UTF-8")
        .into_owned();
    assert!(decoded.len() > TAG_LEN, "tag and value: {decoded}");
    let (tag, signed) = decoded.split_at(TAG_LEN);
    let tag_bytes = base64::engine::general_purpose::STANDARD
        .decode(tag)
        .expect("the first 44 characters are a base64 tag");
    assert_eq!(tag_bytes.len(), 32, "an HMAC-SHA256 tag");

    let engine = base64::engine::general_purpose::STANDARD;
    let mut flipped = tag_bytes.clone();
    flipped[0] ^= 0x01;
    let forged_tags = [
        ("one bit of the tag flipped", engine.encode(&flipped)),
        ("the tag's bytes reversed", {
            let mut r = tag_bytes.clone();
            r.reverse();
            engine.encode(&r)
        }),
        ("an all-zero tag", engine.encode([0u8; 32])),
        ("a tag under another secret", {
            let other = actix_web::cookie::Key::generate();
            let mut jar = actix_web::cookie::CookieJar::new();
            jar.signed_mut(&other).add(actix_web::cookie::Cookie::new(
                "gatehouse",
                signed.to_owned(),
            ));
            let value = jar.get("gatehouse").expect("signed").value().to_owned();
            assert!(
                value.ends_with(signed),
                "actix's signed form: tag, then value"
            );
            value[..TAG_LEN].to_owned()
        }),
    ];
    let plain = reqwest::Client::new();
    let ask = |path: &'static str, value: String| {
        plain
            .get(app.url(path))
            .header("cookie", format!("gatehouse={value}"))
            .send()
    };
    let encode = |v: &str| {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    // Re-encoded untouched, the cookie still works: the 401s below are the signature's.
    let res = ask("/auth", encode(&decoded)).await.expect("auth");
    assert_eq!(res.status().as_u16(), 200, "the re-encoded real cookie");
    for (what, forged) in forged_tags {
        assert_eq!(forged.len(), TAG_LEN, "{what}");
        assert_ne!(forged, tag, "{what}");
        let value = encode(&format!("{forged}{signed}"));
        let res = ask("/auth", value.clone()).await.expect("auth");
        assert_eq!(res.status().as_u16(), 401, "/auth with {what}");
        let res = ask("/session", value).await.expect("session");
        assert_json_error(res, 401, "unauthorized").await;
    }
    // The session itself was live all along, and still is.
    let res = ask("/auth", real.clone()).await.expect("auth");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-auth-request-user"], "sigrid");
    let res = ask("/session", real).await.expect("session");
    assert_eq!(res.status().as_u16(), 200);
}
