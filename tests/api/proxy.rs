//! Behind a reverse proxy: return URLs on allowed hosts, the cookie domain, trusted forwarded
//! headers, browser-versus-API answers and the forward-auth headers.

use crate::helpers::*;

fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[test]
fn list_settings_take_commas_and_bad_entries_are_named() {
    let mut vars = base_vars();
    vars.insert(
        "GATEHOUSE__PROXY__TRUSTED".into(),
        "127.0.0.1/32, 10.0.0.0/8,::1".into(),
    );
    vars.insert(
        "GATEHOUSE__SERVER__ALLOWED_REDIRECT_HOSTS".into(),
        "app.example.com,app.example.com:8443, .corp.example".into(),
    );
    let settings = load(vars.clone()).expect("valid");
    assert_eq!(settings.proxy.trusted.len(), 3);
    assert_eq!(settings.server.allowed_redirect_hosts.len(), 3);

    for (var, value) in [
        ("GATEHOUSE__PROXY__TRUSTED", "10.0.0.0/8,nonsense"),
        ("GATEHOUSE__PROXY__TRUSTED", "10.0.0.0/33"),
        (
            "GATEHOUSE__SERVER__ALLOWED_REDIRECT_HOSTS",
            "app.example.com:port",
        ),
        (
            "GATEHOUSE__SERVER__ALLOWED_REDIRECT_HOSTS",
            "https://app.example.com",
        ),
        ("GATEHOUSE__SESSION__COOKIE_DOMAIN", "exa mple.com"),
        ("GATEHOUSE__SESSION__COOKIE_DOMAIN", "example.com:443"),
        ("GATEHOUSE__FORWARD__PASS_ACCESS_TOKEN", "sometimes"),
    ] {
        let mut bad = vars.clone();
        bad.insert(var.into(), value.into());
        let err = load(bad).expect_err(value).to_string();
        assert!(err.starts_with(var), "{value}: {err}");
        assert_eq!(err.lines().count(), 1);
    }
}

#[test]
fn list_settings_take_toml_arrays_in_files() {
    let dir = TempDir::new();
    dir.write(
        "production.toml",
        "[proxy]\ntrusted = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n[server]\nallowed_redirect_hosts = [\".example.com\"]\n",
    );
    let loaded = gatehouse::config::Settings::load(gatehouse::config::Sources {
        config_dir: Some(dir.path.clone()),
        environment: Some("production".into()),
        vars: base_vars(),
    })
    .expect("valid");
    assert_eq!(loaded.settings.proxy.trusted.len(), 2);
    assert!(loaded.settings.server.allowed_redirect_hosts[0].suffix);
}

#[tokio::test]
async fn absolute_return_urls_on_our_origin_and_allowed_hosts_are_kept() {
    let app = spawn_app_with_idp(&[(
        "GATEHOUSE__SERVER__ALLOWED_REDIRECT_HOSTS",
        ".example.com,app.test:8443",
    )])
    .await;
    for (asked, landed) in [
        (
            "http://gatehouse.test/abs?x=1",
            "http://gatehouse.test/abs?x=1",
        ),
        (
            "https://app.example.com/page",
            "https://app.example.com/page",
        ),
        ("https://example.com/", "https://example.com/"),
        ("https://app.test:8443/x", "https://app.test:8443/x"),
        ("https://app.test/x", "/"),
        ("https://app.example.com.evil.test/", "/"),
        ("https://user@app.example.com/", "/"),
        ("http://gatehouse.test:8080/", "/"),
    ] {
        let res = app.sign_in(&app.client, "pia", Some(asked)).await;
        assert_eq!(res.status().as_u16(), 303, "{asked}");
        assert_eq!(location(&res), landed, "return_to {asked}");
    }
}

#[tokio::test]
async fn the_proxy_can_name_the_page_to_return_to_in_a_header() {
    let app = spawn_app_with_idp(&[]).await;
    let res = app
        .client
        .get(app.url("/signin"))
        .header(
            "x-auth-request-redirect",
            "http://gatehouse.test/wanted?q=1",
        )
        .send()
        .await
        .expect("signin");
    assert_eq!(res.status().as_u16(), 303);
    let callback = idp_login(&app.client, &location(&res), "quinn").await;
    let done = app.follow_callback(&app.client, &callback).await;
    assert_eq!(location(&done), "http://gatehouse.test/wanted?q=1");
    // The query parameter, when given, wins over the header; both are validated alike.
    let res = app
        .client
        .get(app.url("/signin?return_to=%2Fquery"))
        .header("x-auth-request-redirect", "https://evil.example/")
        .send()
        .await
        .expect("signin");
    let callback = idp_login(&app.client, &location(&res), "quinn").await;
    assert_eq!(
        location(&app.follow_callback(&app.client, &callback).await),
        "/query"
    );
}

#[tokio::test]
async fn api_calls_to_signin_get_401_not_a_redirect() {
    let app = spawn_app().await;
    let cases: Vec<(reqwest::Method, Vec<(&str, &str)>)> = vec![
        (
            reqwest::Method::GET,
            vec![("x-requested-with", "XMLHttpRequest")],
        ),
        (reqwest::Method::GET, vec![("sec-fetch-mode", "cors")]),
        (reqwest::Method::GET, vec![("accept", "application/json")]),
        (reqwest::Method::POST, vec![]),
        (reqwest::Method::DELETE, vec![]),
    ];
    for (method, headers) in cases {
        let mut req = app.client.request(method.clone(), app.url("/signin"));
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("signin");
        assert!(
            res.headers().get("location").is_none(),
            "{method} {headers:?}"
        );
        assert_json_error(res, 401, "unauthorized").await;
    }
    // A page load (and plain curl) still starts a sign-in.
    for headers in [
        vec![("accept", "text/html"), ("sec-fetch-mode", "navigate")],
        vec![],
    ] {
        let mut req = app.client.get(app.url("/signin"));
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("signin");
        assert_eq!(res.status().as_u16(), 303, "{headers:?}");
    }
}

const FORWARDED: &[(&str, &str)] = &[
    ("accept", "text/html,application/xhtml+xml"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "app.example.com"),
    ("x-forwarded-uri", "/reports?id=7"),
];

async fn auth_page(app: &TestApp, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = plain().get(app.url("/auth"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("auth");
    assert!(
        res.headers().get("location").is_none(),
        "/auth never redirects"
    );
    (res.status().as_u16(), res.text().await.expect("body"))
}

#[tokio::test]
async fn forwarded_headers_from_a_trusted_proxy_lead_back_to_the_original_page() {
    let trusted = spawn_app_with(&[("GATEHOUSE__PROXY__TRUSTED", "127.0.0.1/32")]).await;
    let (status, page) = auth_page(&trusted, FORWARDED).await;
    assert_eq!(status, 401);
    let target =
        "http://gatehouse.test/signin?return_to=https%3A%2F%2Fapp.example.com%2Freports%3Fid%3D7";
    assert!(
        page.contains(&format!(
            "content=\"0; url={}",
            target.replace('&', "&amp;")
        )),
        "{page}"
    );
    assert!(page.contains(&format!("href=\"{target}\"")), "{page}");

    // The same headers from a peer that is not trusted change nothing.
    let untrusted = spawn_app().await;
    let (status, page) = auth_page(&untrusted, FORWARDED).await;
    assert_eq!(status, 401);
    assert!(
        page.contains("href=\"http://gatehouse.test/signin\""),
        "{page}"
    );
    assert!(!page.contains("app.example.com"), "{page}");

    // An API call gets JSON, never a page that moves.
    let (status, body) = auth_page(&trusted, &[("accept", "application/json")]).await;
    assert_eq!(status, 401);
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["error"], "unauthorized");
}

#[tokio::test]
async fn auth_passes_identity_headers_and_the_access_token_only_on_request() {
    let app = spawn_app_with_idp(&[]).await;
    assert_eq!(
        app.sign_in(&app.client, "rosa@corp.test", None)
            .await
            .status()
            .as_u16(),
        303
    );
    let res = app.get("/auth").await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-auth-request-user"], "rosa");
    assert_eq!(res.headers()["x-auth-request-email"], "rosa@corp.test");
    assert_eq!(
        res.headers()["x-auth-request-preferred-username"],
        "rosa@corp.test"
    );
    assert!(
        res.headers().get("x-auth-request-access-token").is_none(),
        "off by default"
    );

    let opted = spawn_app_with_idp(&[("GATEHOUSE__FORWARD__PASS_ACCESS_TOKEN", "true")]).await;
    assert_eq!(
        opted
            .sign_in(&opted.client, "sam", None)
            .await
            .status()
            .as_u16(),
        303
    );
    let res = opted.get("/auth").await;
    let token = res.headers()["x-auth-request-access-token"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let tokens = opted.stored_tokens().await;
    assert_eq!(tokens["access_token"], token.as_str());
}

#[tokio::test]
async fn the_cookie_domain_is_set_on_the_session_cookie_only() {
    let app = spawn_app_with_idp(&[("GATEHOUSE__SESSION__COOKIE_DOMAIN", "gatehouse.test")]).await;
    let (binding, res) = sign_in_carrying_cookies(&app, "tess").await;
    // The browser binding stays host-only: a sibling subdomain must not be able to plant one.
    assert!(
        !binding.to_ascii_lowercase().contains("domain="),
        "{binding}"
    );
    assert_eq!(res.status().as_u16(), 303);
    let session = set_cookie(&res, "gatehouse");
    assert!(
        session
            .to_ascii_lowercase()
            .contains("domain=gatehouse.test"),
        "{session}"
    );

    // Default: host-only cookies.
    let plain_app = spawn_app().await;
    let res = plain()
        .get(plain_app.url("/signin"))
        .send()
        .await
        .expect("signin");
    let binding = binding_set_cookie(&res);
    assert!(
        !binding.to_ascii_lowercase().contains("domain="),
        "{binding}"
    );
}

#[tokio::test]
async fn only_our_own_origin_may_sign_out_not_even_a_listed_sister_app() {
    // A host listed for redirects is a place users may be sent back to, not a page that may
    // end their session: only gatehouse's own origin may (docs/deployment.md says why).
    let app =
        spawn_app_with_idp(&[("GATEHOUSE__SERVER__ALLOWED_REDIRECT_HOSTS", ".example.com")]).await;
    let res = app.sign_in(&app.client, "sister", None).await;
    assert_eq!(res.status().as_u16(), 303);
    let post = |headers: Vec<(&'static str, &'static str)>| {
        let mut req = app.client.post(app.url("/signout"));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    for (what, headers) in [
        (
            "a listed sister app, same-site",
            vec![
                ("origin", "https://app.example.com"),
                ("sec-fetch-site", "same-site"),
            ],
        ),
        (
            "a listed sister app, no fetch metadata",
            vec![("origin", "https://app.example.com")],
        ),
        (
            "a listed sister app's page as Referer",
            vec![("referer", "https://app.example.com/settings")],
        ),
        (
            "our host on another scheme",
            vec![("origin", "https://gatehouse.test")],
        ),
        (
            "another site claiming same-site",
            vec![
                ("origin", "https://evil.test"),
                ("sec-fetch-site", "same-site"),
            ],
        ),
        (
            "our own origin, but the browser says cross-site",
            vec![("origin", PUBLIC_URL), ("sec-fetch-site", "cross-site")],
        ),
    ] {
        let res = post(headers).await.expect("signout");
        assert_json_error(res, 403, "forbidden").await;
        assert_eq!(
            app.get("/auth").await.status().as_u16(),
            200,
            "still signed in after a refused sign-out from {what}"
        );
    }
    let res = post(vec![
        ("origin", PUBLIC_URL),
        ("sec-fetch-site", "same-origin"),
    ])
    .await
    .expect("signout");
    assert_eq!(res.status().as_u16(), 303, "our own page signs out");
    assert_eq!(app.get("/auth").await.status().as_u16(), 401);
}

#[tokio::test]
async fn a_suffix_rule_sends_users_back_only_to_real_subdomains() {
    let app =
        spawn_app_with_idp(&[("GATEHOUSE__SERVER__ALLOWED_REDIRECT_HOSTS", ".example.test")]).await;
    for (asked, back) in [
        (
            "http://app.example.test/x?y=1",
            "http://app.example.test/x?y=1",
        ),
        ("http://evil.example..example.test/", "/"),
        ("http://.example.test/", "/"),
        ("http://evil&.example.test/", "/"),
        ("http://example.test./", "/"),
    ] {
        let (client, _jar) = browser_with_jar();
        let res = app.sign_in(&client, "rita", Some(asked)).await;
        assert_eq!(res.status().as_u16(), 303, "{asked}");
        assert_eq!(location(&res), back, "return_to {asked:?}");
    }
}

#[tokio::test]
async fn a_same_origin_form_post_signs_out_even_with_a_null_origin() {
    // Chrome sends `Origin: null` on form posts from a page with Referrer-Policy: no-referrer;
    // its fetch metadata still says same-origin, which pages cannot forge.
    let app = spawn_app().await;
    let post = |headers: Vec<(&'static str, &'static str)>| {
        let mut req = app.client.post(app.url("/signout"));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let ok = post(vec![("origin", "null"), ("sec-fetch-site", "same-origin")])
        .await
        .expect("signout");
    assert_eq!(ok.status().as_u16(), 303);
    let refused = post(vec![("origin", "null")]).await.expect("signout");
    assert_eq!(refused.status().as_u16(), 403);
}
