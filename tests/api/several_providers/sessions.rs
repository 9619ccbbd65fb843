//! Sessions of several providers: refresh, revocation and logout at the session's own
//! provider, access rules per provider.

use super::*;

#[tokio::test]
async fn refresh_goes_to_the_sessions_provider() {
    let staff = both_ready().await;
    let partner = another_browser(&staff);
    assert_eq!(
        sign_in_at(&staff, "default", "sam").await.status().as_u16(),
        303
    );
    assert_eq!(
        sign_in_at(&partner, "corp", "pat").await.status().as_u16(),
        303
    );
    let staff_before = stored_session(&staff).await.tokens;
    let partner_before = stored_session(&partner).await.tokens;

    for app in [&staff, &partner] {
        assert_eq!(app.get("/auth").await.status().as_u16(), 200);
    }
    let staff_after = stored_session(&staff).await.tokens;
    let partner_after = stored_session(&partner).await.tokens;
    assert_eq!(
        staff_after.access_token.expose(),
        staff_before.access_token.expose(),
        "an hour-long token is not refreshed"
    );
    assert_ne!(
        partner_after.access_token.expose(),
        partner_before.access_token.expose(),
        "corp's 30-second token is refreshed"
    );
    // Refreshed at corp: the new token is corp's, and the session goes on.
    assert_eq!(
        userinfo_status(&corp_idp().issuer, partner_after.access_token.expose()).await,
        200
    );
    assert_eq!(session_json(&partner).await["provider"], "corp");

    let text = scrape(&staff).await;
    assert!(
        series(
            &text,
            "gatehouse_token_refreshes_total{outcome=\"ok\",provider=\"corp\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        !text.contains("gatehouse_token_refreshes_total{outcome=\"ok\",provider=\"default\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn sign_out_revokes_and_logs_out_at_the_sessions_provider() {
    let app = two_providers(
        &corp_idp().issuer,
        &[("GATEHOUSE__SIGNOUT__PROVIDER_LOGOUT", "true")],
    )
    .await;
    wait_until_ready(&app, &["default", "corp"]).await;
    let staff = another_browser(&app);
    assert_eq!(
        sign_in_at(&app, "corp", "quinn").await.status().as_u16(),
        303
    );
    assert_eq!(
        sign_in_at(&staff, "default", "sol").await.status().as_u16(),
        303
    );
    let corp_refresh = stored_session(&app)
        .await
        .tokens
        .refresh_token
        .expect("a refresh token");
    let staff_refresh = stored_session(&staff)
        .await
        .tokens
        .refresh_token
        .expect("a refresh token");

    let out = app
        .client
        .post(app.url("/signout"))
        .header("origin", PUBLIC_URL)
        .send()
        .await
        .expect("signout");
    assert_eq!(out.status().as_u16(), 303);
    let to = location(&out);
    assert!(
        to.starts_with(&format!("{}/session/end?", corp_idp().issuer)),
        "logout at corp: {to}"
    );

    let refresh_at = |issuer: &str, token: &str| {
        let (issuer, token) = (issuer.to_owned(), token.to_owned());
        async move {
            let res = reqwest::Client::new()
                .post(format!("{issuer}/token"))
                .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
                .send()
                .await
                .expect("token endpoint");
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            (
                status,
                body["error"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    assert_eq!(
        refresh_at(&corp_idp().issuer, corp_refresh.expose()).await,
        (400, "invalid_grant".to_owned()),
        "revoked at corp"
    );
    assert_eq!(
        refresh_at(&idp().issuer, staff_refresh.expose()).await.0,
        200,
        "the other session's token is untouched"
    );
}

#[tokio::test]
async fn access_rules_differ_per_provider() {
    // Staff (default) by group; partners (corp) by email domain, with rules of their own.
    let app = two_providers(
        &corp_idp().issuer,
        &[
            ("GATEHOUSE__ACCESS__ALLOW_ANY_USER", "false"),
            ("GATEHOUSE__ACCESS__ALLOWED_GROUPS", "staff"),
            (
                "GATEHOUSE__PROVIDERS__CORP__ACCESS__ALLOWED_EMAIL_DOMAINS",
                "partner.test",
            ),
        ],
    )
    .await;
    wait_until_ready(&app, &["default", "corp"]).await;
    let attempt = |provider: &'static str, login: &'static str| {
        let browser = another_browser(&app);
        async move {
            let status = sign_in_at(&browser, provider, login)
                .await
                .status()
                .as_u16();
            (status, browser)
        }
    };
    let (status, staff) = attempt("default", "ann+staff").await;
    assert_eq!(status, 303);
    assert_eq!(attempt("default", "bob").await.0, 403, "no staff group");
    assert_eq!(
        attempt("default", "carl@partner.test").await.0,
        403,
        "the partners' domain does not count at default"
    );
    let (status, partner) = attempt("corp", "carl@partner.test").await;
    assert_eq!(status, 303, "corp's own rule");
    assert_eq!(
        attempt("corp", "dave+staff@other.test").await.0,
        403,
        "the staff group does not count at corp"
    );

    // /auth judges each session by its provider's rules.
    let res = partner.get("/auth").await;
    assert_eq!(
        res.status().as_u16(),
        200,
        "a partner without groups passes"
    );
    assert_eq!(
        res.headers()["x-auth-request-email"].to_str().ok(),
        Some("carl@partner.test")
    );
    assert_eq!(staff.get("/auth").await.status().as_u16(), 200);
}
