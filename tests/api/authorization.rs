//! Who may go where, against the real development provider (its logins carry groups and flags
//! as `+` tags: tests/idp/README.md): group rules at sign-in, per-route rules on /auth, the
//! identity headers.

use crate::helpers::*;

/// Signs the app's own browser in as `login`; returns the callback's status.
async fn sign_in_as(app: &TestApp, login: &str) -> u16 {
    app.sign_in(&app.client, login, None)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_group_rule_refuses_at_sign_in_and_says_why() {
    let app = spawn_app_with_idp(&[
        ("GATEHOUSE__ACCESS__ALLOW_ANY_USER", "false"),
        ("GATEHOUSE__ACCESS__ALLOWED_GROUPS", "admins,ops"),
    ])
    .await;
    let client = browser();
    let authorize = app.start_sign_in(&client, None).await;
    let callback = idp_login(&client, &authorize, "ann+staff").await;
    let cb = url::Url::parse(&callback).expect("callback url");
    let refused = client
        .get(format!(
            "{}{}?{}",
            app.address,
            cb.path(),
            cb.query().unwrap_or("")
        ))
        .header("accept", "text/html")
        .send()
        .await
        .expect("callback answered");
    assert_eq!(refused.status().as_u16(), 403);
    let page = refused.text().await.expect("page");
    assert!(page.contains("not in a group allowed here"), "{page}");
    assert!(app.keys("session").await.is_empty(), "no session");

    assert_eq!(sign_in_as(&app, "bob+ops").await, 303);
    let res = app.get("/auth").await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-auth-request-user"], "bob+ops");
    assert_eq!(res.headers()["x-auth-request-groups"], "ops");
}

#[tokio::test]
async fn groups_come_from_a_dotted_claim_path() {
    let app = spawn_app_with_idp(&[
        ("GATEHOUSE__ACCESS__ALLOW_ANY_USER", "false"),
        ("GATEHOUSE__ACCESS__ALLOWED_GROUPS", "ops"),
        ("GATEHOUSE__ACCESS__GROUPS_CLAIM", "realm_access.roles"),
    ])
    .await;
    assert_eq!(sign_in_as(&app, "cy+ops+staff").await, 303);
    let res = app.get("/auth").await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-auth-request-groups"], "ops,staff");
}

#[tokio::test]
async fn per_route_rules_answer_403_never_a_redirect() {
    let app = spawn_app_with_idp(&[]).await;
    assert_eq!(sign_in_as(&app, "dan+staff").await, 303);
    for allowed in [
        "/auth",
        "/auth?allowed_groups=admins,staff",
        "/auth?allowed_groups=%20staff%20",
        "/auth?allowed_email_domains=example.com",
        "/auth?allowed_email_domains=Example.COM",
        "/auth?allowed_emails=dan%2Bstaff@example.com",
        // Emails and domains: either one matching is enough.
        "/auth?allowed_emails=boss@corp.test&allowed_email_domains=example.com",
        "/auth?allowed_groups=staff&allowed_email_domains=example.com",
        "/auth?unknown=ignored",
    ] {
        assert_eq!(app.get(allowed).await.status().as_u16(), 200, "{allowed}");
    }
    for refused in [
        "/auth?allowed_groups=admins",
        "/auth?allowed_email_domains=corp.test",
        "/auth?allowed_email_domains=sub.example.com",
        "/auth?allowed_emails=boss@corp.test",
        // Every given parameter must pass.
        "/auth?allowed_groups=staff&allowed_email_domains=corp.test",
        "/auth?provider=corp",
    ] {
        assert_json_error(app.get(refused).await, 403, "access_denied").await;
        // A browser page load is refused the same way: a page, not a sign-in loop.
        let page = app.get_html(refused).await;
        assert_eq!(page.status().as_u16(), 403, "{refused}");
        assert!(page.headers().get("location").is_none(), "{refused}");
    }
    for malformed in [
        "/auth?allowed_groups=",
        "/auth?allowed_groups=,,%20,",
        "/auth?allowed_emails=not-an-email",
        "/auth?allowed_groups=a&allowed_groups=b",
    ] {
        assert_json_error(app.get(malformed).await, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn an_unverified_email_is_neither_forwarded_nor_matched() {
    let app = spawn_app_with_idp(&[]).await;
    assert_eq!(sign_in_as(&app, "eve+unverified").await, 303);
    let res = app.get("/auth").await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-auth-request-user"], "eve+unverified");
    assert!(
        res.headers().get("x-auth-request-email").is_none(),
        "an unverified email could be anyone's"
    );
    assert_json_error(
        app.get("/auth?allowed_email_domains=example.com").await,
        403,
        "access_denied",
    )
    .await;

    // An operator who vouches for the provider's emails says so, for rules and headers alike.
    let trusting =
        spawn_app_with_idp(&[("GATEHOUSE__ACCESS__REQUIRE_EMAIL_VERIFIED", "false")]).await;
    assert_eq!(sign_in_as(&trusting, "eve+unverified").await, 303);
    let res = trusting
        .get("/auth?allowed_email_domains=example.com")
        .await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers()["x-auth-request-email"],
        "eve+unverified@example.com"
    );
}

#[tokio::test]
async fn a_global_email_rule_refuses_an_unverified_email_at_sign_in() {
    let app = spawn_app_with_idp(&[
        ("GATEHOUSE__ACCESS__ALLOW_ANY_USER", "false"),
        ("GATEHOUSE__ACCESS__ALLOWED_EMAIL_DOMAINS", "example.com"),
    ])
    .await;
    // Its own browser: the provider remembers who signed in there.
    let other = browser();
    assert_eq!(
        app.sign_in(&other, "mal+unverified", None)
            .await
            .status()
            .as_u16(),
        403
    );
    assert!(app.keys("session").await.is_empty());
    assert_eq!(sign_in_as(&app, "val").await, 303);
    assert_eq!(
        app.get("/auth").await.headers()["x-auth-request-email"],
        "val@example.com"
    );
}

#[tokio::test]
async fn claim_headers_carry_configured_claims_percent_encoded_when_not_ascii() {
    let app = spawn_app_with_idp(&[(
        "GATEHOUSE__FORWARD__CLAIM_HEADERS",
        "name=X-User-Name,realm_access.roles=X-Roles,email_verified=X-Email-Verified",
    )])
    .await;
    assert_eq!(sign_in_as(&app, "zed+accented+ops").await, 303);
    let res = app.get("/auth").await;
    assert_eq!(res.status().as_u16(), 200);
    let h = res.headers();
    assert_eq!(h["x-user-name"], "Zo%C3%AB Zed+accented+ops");
    assert_eq!(h["x-roles"], "ops");
    assert_eq!(h["x-email-verified"], "true");
    // Only what a header or rule needs is kept: the session record holds no other claim.
    let record = app
        .get_key(app.keys("session").await[0].trim_start_matches(&app.prefix))
        .await
        .expect("record");
    let record: serde_json::Value = serde_json::from_str(&record).expect("json");
    let mut kept: Vec<&str> = record["claims"]
        .as_object()
        .expect("claims")
        .keys()
        .map(String::as_str)
        .collect();
    kept.sort();
    assert_eq!(kept, ["email_verified", "name", "realm_access.roles"]);
    assert!(record.get("realm_access").is_none(), "{record}");
}

#[tokio::test]
async fn a_subject_that_is_not_ascii_is_sent_percent_encoded_never_dropped() {
    let app = spawn_app_with_idp(&[]).await;
    assert_eq!(sign_in_as(&app, "jösé").await, 303);
    let res = app.get("/auth").await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-auth-request-user"], "j%C3%B6s%C3%A9");
}
