//! Signing in with several providers: each its own, the chooser, `provider=`, the callback
//! finishing at the sign-in's own provider, one provider down.

use super::*;

#[tokio::test]
async fn each_provider_signs_in_its_own_users_and_the_session_remembers_which() {
    let staff = both_ready().await;
    let partner = another_browser(&staff);

    let res = sign_in_at(&staff, "default", "ann").await;
    assert_eq!(res.status().as_u16(), 303, "signed in at default");
    assert_eq!(location(&res), "/welcome");
    let res = partner
        .get("/signin?provider=corp&return_to=/partners")
        .await;
    let authorize = location(&res);
    assert!(
        authorize.starts_with(&format!("{}/auth?", corp_idp().issuer)),
        "{authorize}"
    );
    let callback = idp_login(&partner.client, &authorize, "pia").await;
    // A parameter added to the callback does not choose the provider: the pending sign-in does.
    let res = partner
        .follow_callback(&partner.client, &format!("{callback}&provider=default"))
        .await;
    assert_eq!(res.status().as_u16(), 303, "signed in at corp");
    assert_eq!(location(&res), "/partners");

    assert_eq!(session_json(&staff).await["provider"], "default");
    assert_eq!(session_json(&partner).await["provider"], "corp");
    assert_eq!(
        stored_session(&partner).await.meta.provider.as_deref(),
        Some("corp")
    );
    // Each session's tokens are its provider's.
    let corp_token = stored_session(&partner).await.tokens.access_token;
    assert_eq!(
        userinfo_status(&corp_idp().issuer, corp_token.expose()).await,
        200
    );
    assert_eq!(
        userinfo_status(&idp().issuer, corp_token.expose()).await,
        401
    );

    // /auth?provider=NAME: a route for one provider's users.
    let status = |res: reqwest::Response| res.status().as_u16();
    assert_eq!(status(partner.get("/auth?provider=corp").await), 200);
    assert_eq!(status(staff.get("/auth?provider=default").await), 200);
    assert_json_error(staff.get("/auth?provider=corp").await, 403, "access_denied").await;
    assert_json_error(
        partner.get("/auth?provider=default").await,
        403,
        "access_denied",
    )
    .await;
    assert_eq!(status(staff.get("/auth").await), 200, "no provider rule");

    let text = scrape(&staff).await;
    for name in ["default", "corp"] {
        let started = format!("gatehouse_signins_started_total{{provider=\"{name}\"}}");
        let completed = format!("gatehouse_signins_completed_total{{provider=\"{name}\"}}");
        assert_eq!(series(&text, &started), Some(1.0), "{text}");
        assert_eq!(series(&text, &completed), Some(1.0), "{text}");
    }
}

#[tokio::test]
async fn the_chooser_lists_the_providers_and_keeps_the_page_to_return_to() {
    let app = both_ready().await;
    let res = app
        .get_html("/signin?return_to=/app/x%3Fa%3D1%26b%3D2")
        .await;
    assert!(
        res.headers().get("set-cookie").is_none(),
        "choosing starts nothing: no binding cookie"
    );
    assert_eq!(
        res.headers()["referrer-policy"].to_str().ok(),
        Some("no-referrer"),
        "the page's URL (with return_to) goes nowhere"
    );
    let (html, _) = crate::pages::assert_secure_page(res, 200, "the chooser").await;
    crate::pages::assert_accessible(&html, "the chooser");
    assert!(
        html.contains("<title>Sign in — gatehouse</title>"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains(
            "<a class=\"button\" href=\"/signin?provider=default&#38;return_to=%2Fapp%2Fx%3Fa%3D1%26b%3D2\">Sign in with Example ID</a>"
        ),
        "{html}"
    );
    assert!(
        html.contains(
            "href=\"/signin?provider=corp&#38;return_to=%2Fapp%2Fx%3Fa%3D1%26b%3D2\">Sign in with Corp &#60;staff&#62;</a>"
        ),
        "the display name is escaped: {html}"
    );
    assert!(app.keys("signin").await.is_empty(), "nothing pending");

    // The link goes straight to that provider, and the sign-in returns to the page.
    let res = app
        .get("/signin?provider=corp&return_to=%2Fapp%2Fx%3Fa%3D1%26b%3D2")
        .await;
    let callback = idp_login(&app.client, &location(&res), "carl").await;
    let res = app.follow_callback(&app.client, &callback).await;
    assert_eq!(location(&res), "/app/x?a=1&b=2");

    // The proxy's header gives the page to return to as well; a foreign one becomes `/`.
    let res = app
        .client
        .get(app.url("/signin"))
        .header("accept", "text/html")
        .header("x-auth-request-redirect", "/from/nginx")
        .send()
        .await
        .expect("chooser");
    let html = res.text().await.expect("page");
    assert!(
        html.contains("provider=corp&#38;return_to=%2Ffrom%2Fnginx\""),
        "{html}"
    );
    let html = app
        .get_html("/signin?return_to=https://evil.example/")
        .await
        .text()
        .await
        .expect("page");
    assert!(html.contains("provider=corp&#38;return_to=%2F\""), "{html}");
    assert!(!html.contains("evil"), "{html}");
    // Without a page to return to, the links carry none.
    let html = app.get_html("/signin").await.text().await.expect("page");
    assert!(html.contains("href=\"/signin?provider=corp\""), "{html}");
}

#[tokio::test]
async fn an_unknown_provider_is_a_bad_request_and_never_a_label() {
    let app = both_ready().await;
    assert_json_error(
        app.get("/signin?provider=nope").await,
        400,
        "invalid_request",
    )
    .await;
    assert_json_error(
        app.get("/signin?provider=corp&provider=default").await,
        400,
        "invalid_request",
    )
    .await;
    assert_json_error(
        app.get("/signin?provider=Corp").await,
        400,
        "invalid_request",
    )
    .await;
    assert!(app.keys("signin").await.is_empty());
    let text = scrape(&app).await;
    assert!(!text.contains("nope"), "{text}");
    assert!(!text.contains("Corp\""), "{text}");
    // Before any sign-in, each configured provider's series exist (at 0), and only those.
    assert_eq!(
        series(&text, "gatehouse_signins_started_total{provider=\"corp\"}"),
        Some(0.0)
    );
    let labelled: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("gatehouse_signins_started_total{"))
        .collect();
    assert_eq!(labelled.len(), 2, "{labelled:?}");

    // With one provider, /signin goes straight there, and only `default` is a name.
    let single = spawn_app_with_idp(&[]).await;
    assert_eq!(single.get("/signin").await.status().as_u16(), 303);
    assert_eq!(
        single
            .get("/signin?provider=default")
            .await
            .status()
            .as_u16(),
        303
    );
    assert_json_error(
        single.get("/signin?provider=corp").await,
        400,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn a_callback_carrying_the_other_providers_answer_is_refused() {
    let app = both_ready().await;
    // Started at default, but the browser comes back with corp's answer (a mix-up attack):
    // the sign-in is finished at default, whose issuer corp's `iss` is not.
    let started = app.get("/signin?provider=default").await;
    let state = query_param(&location(&started), "state").expect("state");
    let other = another_browser(&app);
    let res = other.get("/signin?provider=corp").await;
    let corp_callback = idp_login(&other.client, &location(&res), "mallory").await;
    let mut forged = url::Url::parse(&corp_callback).expect("callback");
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                state.clone()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let res = app.follow_callback(&app.client, forged.as_str()).await;
    assert_json_error(res, 400, "invalid_request").await;
    assert!(app.session_key().is_none(), "nobody signed in");
    let text = scrape(&app).await;
    assert_eq!(
        series(
            &text,
            "gatehouse_signins_failed_total{provider=\"default\",reason=\"invalid_request\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_sign_in_forwarded_for_another_host_keeps_its_provider_on_the_public_host() {
    let app = spawn_app_with(&[
        ("GATEHOUSE__SESSION__COOKIE_DOMAIN", "gatehouse.test"),
        ("GATEHOUSE__PROXY__TRUSTED", "127.0.0.1/32"),
        (
            "GATEHOUSE__PROVIDERS__CORP__AUTH_URL",
            "http://127.0.0.1:9/corp/authorize",
        ),
        (
            "GATEHOUSE__PROVIDERS__CORP__TOKEN_URL",
            "http://127.0.0.1:9/corp/token",
        ),
        ("GATEHOUSE__PROVIDERS__CORP__CLIENT_ID", "corp-client"),
    ])
    .await;
    let forwarded = |path: &str, host: &str| {
        app.client
            .get(app.url(path))
            .header("x-forwarded-host", host)
            .header("x-forwarded-proto", "http")
            .send()
    };
    let res = forwarded("/signin?provider=corp&return_to=/r", "app.gatehouse.test")
        .await
        .expect("signin");
    assert_eq!(res.status().as_u16(), 303);
    let there = location(&res);
    assert_eq!(
        there,
        format!("{PUBLIC_URL}/signin?provider=corp&return_to=%2Fr")
    );
    // Without a choice the chooser, too, is shown on the public host.
    let res = forwarded("/signin?return_to=/r", "app.gatehouse.test")
        .await
        .expect("signin");
    assert_eq!(
        location(&res),
        format!("{PUBLIC_URL}/signin?return_to=%2Fr")
    );

    let res = forwarded(there.trim_start_matches(PUBLIC_URL), "gatehouse.test")
        .await
        .expect("signin");
    let authorize = location(&res);
    assert!(
        authorize.starts_with("http://127.0.0.1:9/corp/authorize?"),
        "{authorize}"
    );
    assert_eq!(
        query_param(&authorize, "client_id").as_deref(),
        Some("corp-client")
    );
    let state = query_param(&authorize, "state").expect("state");
    let mut conn = app.redis().await;
    let pending = pending_sign_in(&mut conn, &app.prefix, &state)
        .await
        .expect("pending");
    assert_eq!(pending["provider"], "corp");
    assert_eq!(pending["return_to"], "/r");
}

#[tokio::test]
async fn a_callback_for_a_provider_not_ready_here_keeps_its_sign_in() {
    // Two instances on one Redis: on the second, corp is down (or still being discovered).
    let first = both_ready().await;
    let mut vars = first.vars.clone();
    let dead = format!("http://127.0.0.1:{}", dead_port());
    vars.insert("GATEHOUSE__PROVIDERS__CORP__ISSUER".into(), dead);
    let second = spawn_app_from_vars(vars.clone()).await;
    wait_until_ready(&second, &["default"]).await;

    let res = first.get("/signin?provider=corp").await;
    let callback = idp_login(&first.client, &location(&res), "vic").await;
    let res = second.follow_callback(&first.client, &callback).await;
    assert_json_error(res, 503, "provider_unavailable").await;
    let text = scrape(&second).await;
    assert_eq!(
        series(
            &text,
            "gatehouse_signins_failed_total{provider=\"corp\",reason=\"provider_unavailable\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // The sign-in was not spent: the instance where corp is ready finishes it.
    let res = first.follow_callback(&first.client, &callback).await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(session_json(&first).await["provider"], "corp");

    // An instance where corp is not configured at all refuses such a sign-in.
    let mut single = vars;
    single.retain(|k, _| !k.starts_with("GATEHOUSE__PROVIDERS__"));
    let third = spawn_app_from_vars(single).await;
    let browser = another_browser(&first);
    let res = browser.get("/signin?provider=corp").await;
    let callback = idp_login(&browser.client, &location(&res), "wes").await;
    let res = third.follow_callback(&browser.client, &callback).await;
    assert_json_error(res, 400, "invalid_state").await;
}
#[tokio::test]
async fn one_provider_down_leaves_sign_ins_with_the_other_working() {
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let app = two_providers(&dead, &[]).await;
    wait_until_ready(&app, &["default"]).await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["providers"],
        serde_json::json!({"default": "ready", "corp": "unavailable"})
    );

    assert_json_error(
        app.get("/signin?provider=corp").await,
        503,
        "provider_unavailable",
    )
    .await;
    let html = app.get_html("/signin").await.text().await.expect("chooser");
    assert!(
        html.contains("Sign in with Corp &#60;staff&#62;</a> <span class=\"muted small\">(unavailable right now)</span>"),
        "{html}"
    );
    assert!(!html.contains("Example ID</a> <span"), "{html}");
    // The callback, too, goes on while corp is down (it looks the sign-in's provider up).
    let res = sign_in_at(&app, "default", "una").await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(app.get("/auth").await.status().as_u16(), 200);

    // With every provider down the instance is not ready.
    let all_dead = spawn_app_unready({
        let mut vars = base_vars();
        vars.insert("GATEHOUSE__PROVIDER__ISSUER".into(), dead.clone());
        vars.insert("GATEHOUSE__PROVIDER__AUTH_URL".into(), String::new());
        vars.insert("GATEHOUSE__PROVIDER__TOKEN_URL".into(), String::new());
        vars.insert("GATEHOUSE__PROVIDERS__CORP__ISSUER".into(), dead.clone());
        vars.insert(
            "GATEHOUSE__PROVIDERS__CORP__CLIENT_ID".into(),
            CLIENT_ID.into(),
        );
        vars
    })
    .await;
    assert_json_error(all_dead.get("/readyz").await, 503, "provider_unavailable").await;
}

#[tokio::test]
async fn a_page_load_refused_by_auth_leads_to_the_routes_provider() {
    let app = spawn_app_with(&[
        ("GATEHOUSE__PROXY__TRUSTED", "127.0.0.1/32"),
        (
            "GATEHOUSE__PROVIDERS__CORP__AUTH_URL",
            "http://127.0.0.1:9/corp/authorize",
        ),
        (
            "GATEHOUSE__PROVIDERS__CORP__TOKEN_URL",
            "http://127.0.0.1:9/corp/token",
        ),
        ("GATEHOUSE__PROVIDERS__CORP__CLIENT_ID", "corp-client"),
    ])
    .await;
    let page_for = |path: &'static str| {
        app.client
            .get(app.url(path))
            .header("accept", "text/html")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "app.example.com")
            .header("x-forwarded-uri", "/partners/x")
            .send()
    };
    let res = page_for("/auth?provider=corp").await.expect("auth");
    assert_eq!(res.status().as_u16(), 401);
    let page = res.text().await.expect("page");
    assert!(
        page.contains(
            "href=\"http://gatehouse.test/signin?provider=corp&#38;return_to=https%3A%2F%2Fapp.example.com%2Fpartners%2Fx\""
        ),
        "{page}"
    );
    // A name that is not configured is not repeated (and signs in nowhere).
    let res = page_for("/auth?provider=nope").await.expect("auth");
    let page = res.text().await.expect("page");
    assert!(
        page.contains(
            "href=\"http://gatehouse.test/signin?return_to=https%3A%2F%2Fapp.example.com%2Fpartners%2Fx\""
        ),
        "{page}"
    );
    assert!(!page.contains("nope"), "{page}");
}
