//! gatehouse's pages and the browser security headers on every answer: a strict
//! Content-Security-Policy (nonce-allowed inline style only; the logo's origin for images only
//! when one is set; the provider for forms only with provider logout), `frame-ancestors`,
//! `Referrer-Policy`, `nosniff`, `no-store`; the product name and logo settings; and the
//! accessibility basics that can be read in the HTML. The real browser's view of the same is
//! in browser.rs.

use std::collections::HashMap;

use crate::helpers::*;

const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// A browser page load of `path` on `app`, with `client`'s cookies.
async fn navigate(app: &TestApp, client: &reqwest::Client, path: &str) -> reqwest::Response {
    client
        .get(app.url(path))
        .header("accept", HTML)
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("answered")
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header"))
        .unwrap_or_default()
}

/// The directives of a Content-Security-Policy, by name.
fn directives(policy: &str) -> HashMap<String, String> {
    policy
        .split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| match d.split_once(' ') {
            Some((name, value)) => (name.to_owned(), value.trim().to_owned()),
            None => (d.to_owned(), String::new()),
        })
        .collect()
}

/// The value of `attribute` on the first `<tag …>` of `page`.
fn attribute(page: &str, tag: &str, attribute: &str) -> Option<String> {
    let start = page.find(&format!("<{tag}"))?;
    let end = start + page[start..].find('>')?;
    let element = &page[start..end];
    let at = element.find(&format!(" {attribute}=\""))? + attribute.len() + 3;
    let len = element[at..].find('"')?;
    Some(element[at..at + len].to_owned())
}

/// Asserts the headers every HTML answer carries and the page's own consistency with its
/// policy (its one inline style carries the policy's nonce); returns the page and the policy.
pub(crate) async fn assert_secure_page(
    res: reqwest::Response,
    status: u16,
    what: &str,
) -> (String, HashMap<String, String>) {
    assert_eq!(res.status().as_u16(), status, "{what}: status");
    assert!(
        header(&res, "content-type").starts_with("text/html"),
        "{what}: content-type {}",
        header(&res, "content-type")
    );
    assert_eq!(header(&res, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(&res, "cache-control"), "no-store", "{what}");
    assert_eq!(header(&res, "x-frame-options"), "DENY", "{what}");
    let csp = directives(header(&res, "content-security-policy"));
    let page = res.text().await.expect("page");

    assert_eq!(csp["default-src"], "'none'", "{what}: {csp:?}");
    assert_eq!(csp["base-uri"], "'none'", "{what}: {csp:?}");
    assert_eq!(csp["frame-ancestors"], "'none'", "{what}: {csp:?}");
    assert!(csp["form-action"].starts_with("'self'"), "{what}: {csp:?}");
    assert!(
        !csp.contains_key("script-src"),
        "no script allowed: {csp:?}"
    );
    let all: String = csp.values().cloned().collect::<Vec<_>>().join(" ");
    for loose in [
        "'unsafe-inline'",
        "'unsafe-eval'",
        "*",
        "data:",
        "http:",
        "https:",
    ] {
        assert!(
            !all.split(' ').any(|source| source == loose),
            "{what}: {loose} in {csp:?}"
        );
    }
    // The one inline style is allowed by its nonce, fresh for the page.
    let nonce = attribute(&page, "style", "nonce").expect("the style has a nonce");
    assert!(nonce.len() >= 22, "{what}: nonce {nonce}");
    assert_eq!(csp["style-src"], format!("'nonce-{nonce}'"), "{what}");
    assert_eq!(page.matches("<style").count(), 1, "{what}: one style");
    assert!(!page.contains("<script"), "{what}: no script: {page}");
    assert!(!page.contains("style=\""), "{what}: no style attribute");
    assert!(
        !page.contains("<link rel=\"stylesheet\""),
        "{what}: no external style"
    );
    (page, csp)
}

/// The accessibility basics readable in HTML.
pub(crate) fn assert_accessible(page: &str, what: &str) {
    assert!(page.starts_with("<!doctype html>"), "{what}: doctype");
    assert!(page.contains("<html lang=\"en\">"), "{what}: lang");
    assert!(
        page.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"),
        "{what}: readable at phone width"
    );
    assert_eq!(page.matches("<h1").count(), 1, "{what}: one h1: {page}");
    assert_eq!(page.matches("<main").count(), 1, "{what}: one main");
    let title = page
        .split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
        .map(|(title, _)| title.trim().to_owned())
        .unwrap_or_default();
    assert!(!title.is_empty(), "{what}: a title");
    // Every form control has a label (a text, or a <label for=id>).
    for control in ["<input", "<select", "<textarea"] {
        for (at, _) in page.match_indices(control) {
            let element = &page[at..at + page[at..].find('>').expect("closed")];
            if element.contains("type=\"hidden\"") {
                continue;
            }
            let id = attribute(element, &control[1..], "id").expect("a control has an id");
            assert!(
                page.contains(&format!("<label for=\"{id}\"")),
                "{what}: no label for {element}"
            );
        }
    }
    for (at, _) in page.match_indices("<button") {
        let inner = &page[at + page[at..].find('>').expect("closed") + 1..];
        let text = &inner[..inner.find("</button>").expect("closed")];
        assert!(!text.trim().is_empty(), "{what}: a button without text");
    }
    for (at, _) in page.match_indices("<img") {
        let element = &page[at..at + page[at..].find('>').expect("closed")];
        assert!(element.contains(" alt=\""), "{what}: img without alt");
    }
    for (at, _) in page.match_indices("<a ") {
        let inner = &page[at + page[at..].find('>').expect("closed") + 1..];
        let text = &inner[..inner.find("</a>").expect("closed")];
        assert!(!text.trim().is_empty(), "{what}: a link without text");
    }
}

#[tokio::test]
async fn every_html_answer_carries_a_strict_policy_and_the_browser_headers() {
    let app = spawn_app().await;
    let client = browser();
    let cases: Vec<(&str, reqwest::Response, u16)> = vec![
        ("home", navigate(&app, &client, "/").await, 200),
        ("404", navigate(&app, &client, "/no/such/page").await, 404),
        (
            "invalid_state",
            navigate(
                &app,
                &client,
                "/redirect?code=c&state=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            )
            .await,
            400,
        ),
        (
            "invalid_request",
            navigate(&app, &client, "/redirect?code=c").await,
            400,
        ),
        (
            "401 page of /auth",
            navigate(&app, &client, "/auth").await,
            401,
        ),
        (
            "405",
            client
                .delete(app.url("/"))
                .header("accept", HTML)
                .send()
                .await
                .expect("answered"),
            405,
        ),
        (
            "403 cross-site sign-out",
            client
                .post(app.url("/signout"))
                .header("accept", HTML)
                .header("sec-fetch-site", "cross-site")
                .send()
                .await
                .expect("answered"),
            403,
        ),
    ];
    let mut nonces = Vec::new();
    for (what, res, status) in cases {
        let referrer = header(&res, "referrer-policy").to_owned();
        // The home page relaxes it to same-origin: under no-referrer, browsers send its
        // sign-out form with `Origin: null` (seen in browser.rs), which sign-out refuses.
        let want = if what == "home" {
            "same-origin"
        } else {
            "no-referrer"
        };
        assert_eq!(referrer, want, "{what}: referrer-policy");
        let (page, csp) = assert_secure_page(res, status, what).await;
        assert_eq!(csp["img-src"], "'none'", "{what}: no logo, no image");
        assert_eq!(csp["form-action"], "'self'", "{what}");
        assert_accessible(&page, what);
        nonces.push(csp["style-src"].clone());
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 7, "a new nonce for every page");
}

#[tokio::test]
async fn every_other_answer_carries_nosniff_and_no_referrer_and_no_page_policy() {
    let app = spawn_app_with_idp(&[("GATEHOUSE__METRICS__PUBLIC", "true")]).await;
    let plain = browser();
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("/healthz", plain.get(app.url("/healthz"))),
        ("/readyz", plain.get(app.url("/readyz"))),
        ("/metrics", plain.get(app.url("/metrics"))),
        ("/session 401", plain.get(app.url("/session"))),
        ("/auth 401", plain.get(app.url("/auth"))),
        ("404 JSON", plain.get(app.url("/nope"))),
        (
            "405 JSON",
            plain
                .post(app.url("/auth"))
                .header("accept", "application/json"),
        ),
        ("/signin 303", plain.get(app.url("/signin"))),
        (
            "/signin 401 JSON (API call)",
            plain
                .get(app.url("/signin"))
                .header("accept", "application/json"),
        ),
        ("/signout 303", plain.post(app.url("/signout"))),
    ];
    for (what, request) in cases {
        let res = request.send().await.expect("answered");
        assert_eq!(header(&res, "x-content-type-options"), "nosniff", "{what}");
        assert_eq!(header(&res, "referrer-policy"), "no-referrer", "{what}");
        assert!(
            !header(&res, "content-type").starts_with("text/html"),
            "{what}: {}",
            header(&res, "content-type")
        );
        assert!(
            res.headers().get("content-security-policy").is_none(),
            "{what}: a page policy only on pages"
        );
    }
}

#[tokio::test]
async fn signing_in_answers_no_store_no_referrer_and_leaves_no_code_in_the_url() {
    let app = spawn_app_with_idp(&[]).await;
    let (client, _jar) = browser_with_jar();
    let authorize = app.start_sign_in(&client, Some("/after?x=1")).await;
    let callback = idp_login(&client, &authorize, "alice").await;
    assert!(callback.contains("code="), "the provider sent a code");
    let res = app.follow_callback(&client, &callback).await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(
        header(&res, "location"),
        "/after?x=1",
        "the code stays behind"
    );
    assert_eq!(header(&res, "cache-control"), "no-store");
    assert_eq!(header(&res, "referrer-policy"), "no-referrer");
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");

    let session = client
        .get(app.url("/session"))
        .send()
        .await
        .expect("session");
    assert_eq!(session.status().as_u16(), 200);
    assert_eq!(header(&session, "cache-control"), "no-store");
    assert_eq!(header(&session, "x-content-type-options"), "nosniff");

    // The signed-in page: never cached, and its sign-out is a real form POST.
    let res = navigate(&app, &client, "/").await;
    assert_eq!(header(&res, "referrer-policy"), "same-origin");
    let (page, _) = assert_secure_page(res, 200, "signed-in home").await;
    assert_accessible(&page, "signed-in home");
    assert!(page.contains("<h1>Signed in as Alice</h1>"), "{page}");
    assert!(page.contains("alice@example.com"), "{page}");
    assert!(
        page.contains("method=\"post\" action=\"/signout\">\n<button type=\"submit\">Sign out</button>\n</form>"),
        "{page}"
    );
    assert!(!page.contains("href=\"/signin\""), "{page}");

    // The used callback again: a clear page, "Sign in again", no-store and no-referrer (its
    // URL holds the code).
    let res = client
        .get(format!("{}{}", app.address, &callback[PUBLIC_URL.len()..]))
        .header("accept", HTML)
        .send()
        .await
        .expect("callback again");
    assert_eq!(header(&res, "referrer-policy"), "no-referrer");
    let (page, _) = assert_secure_page(res, 400, "used callback").await;
    assert!(
        page.contains("This sign-in link is no longer valid"),
        "{page}"
    );
    assert!(page.contains(">Sign in again</a>"), "{page}");
}

#[tokio::test]
async fn the_signed_out_home_offers_sign_in() {
    let app = spawn_app().await;
    let (page, _) = assert_secure_page(navigate(&app, &app.client, "/").await, 200, "home").await;
    assert!(page.contains("<h1>You are not signed in</h1>"), "{page}");
    assert!(
        page.contains("<a class=\"button\" href=\"/signin\">Sign in</a>"),
        "{page}"
    );
    assert!(!page.contains("<form"), "{page}");
    assert!(
        page.contains("<title>Sign in — gatehouse</title>"),
        "{page}"
    );
}

#[tokio::test]
async fn the_product_name_and_logo_appear_and_only_the_logo_origin_may_serve_images() {
    let app = spawn_app_with(&[
        ("GATEHOUSE__UI__TITLE", "Acme <Staff> & Co"),
        (
            "GATEHOUSE__UI__LOGO_URL",
            "https://static.acme.test:8443/brand/logo.svg?v=\"2\"",
        ),
    ])
    .await;
    for (what, path, status) in [("home", "/", 200), ("error", "/nope", 404)] {
        let res = navigate(&app, &app.client, path).await;
        let (page, csp) = assert_secure_page(res, status, what).await;
        assert_accessible(&page, what);
        assert_eq!(csp["img-src"], "https://static.acme.test:8443", "{what}");
        assert!(
            page.contains("<span class=\"product\">Acme &#60;Staff&#62; &#38; Co</span>")
                || page.contains("<span class=\"product\">Acme &lt;Staff&gt; &amp; Co</span>"),
            "{what}: the name, escaped: {page}"
        );
        assert!(page.contains(" — Acme &"), "{what}: in the title: {page}");
        let src = attribute(&page, "img", "src").expect("a logo");
        assert!(
            src.starts_with("https://static.acme.test:8443/brand/logo.svg?v="),
            "{src}"
        );
        assert!(!src.contains('"'), "escaped: {src}");
        assert_eq!(
            attribute(&page, "img", "alt").as_deref(),
            Some(""),
            "beside its name"
        );
        assert!(!page.contains(">gatehouse<"), "{what}: no default name");
    }

    let plain = spawn_app().await;
    let (page, csp) =
        assert_secure_page(navigate(&plain, &plain.client, "/").await, 200, "default").await;
    assert_eq!(csp["img-src"], "'none'");
    assert!(!page.contains("<img"), "{page}");
    assert!(
        page.contains("<span class=\"product\">gatehouse</span>"),
        "{page}"
    );
}

#[tokio::test]
async fn the_ui_settings_are_checked_at_start_up() {
    let with = |key: &str, value: &str| {
        let mut vars = base_vars();
        vars.insert(key.to_owned(), value.to_owned());
        load(vars)
    };
    let defaults = load(base_vars()).expect("defaults load");
    assert_eq!(defaults.ui.title, "gatehouse");
    assert_eq!(defaults.ui.logo_url, None);
    let set = with("GATEHOUSE__UI__LOGO_URL", "https://cdn.example.com/l.png").expect("loads");
    assert_eq!(
        set.ui.logo_url.map(|u| u.to_string()).as_deref(),
        Some("https://cdn.example.com/l.png")
    );
    for (key, value) in [
        ("GATEHOUSE__UI__LOGO_URL", "javascript:alert(1)"),
        ("GATEHOUSE__UI__LOGO_URL", "data:image/png;base64,AAAA"),
        ("GATEHOUSE__UI__LOGO_URL", "/logo.png"),
        ("GATEHOUSE__UI__TITLE", &"x".repeat(81)),
        ("GATEHOUSE__UI__TITLE", "two\nlines"),
    ] {
        let err = with(key, value).expect_err(value);
        assert!(err.0.starts_with(key), "{value:?}: {}", err.0);
    }
}

#[tokio::test]
async fn provider_logout_lets_the_sign_out_form_reach_the_provider_and_nothing_else() {
    let issuer = url::Url::parse(&idp().issuer).expect("issuer");
    let provider = issuer.origin().ascii_serialization();
    let on = spawn_app_with_idp(&[("GATEHOUSE__SIGNOUT__PROVIDER_LOGOUT", "true")]).await;
    let (_, csp) = assert_secure_page(navigate(&on, &on.client, "/").await, 200, "on").await;
    assert_eq!(csp["form-action"], format!("'self' {provider}"));

    let off = spawn_app_with_idp(&[]).await;
    let (_, csp) = assert_secure_page(navigate(&off, &off.client, "/").await, 200, "off").await;
    assert_eq!(csp["form-action"], "'self'");
}

#[tokio::test]
async fn a_page_for_a_failed_session_store_is_secured_too() {
    // A valid signed cookie from an app with Redis, shown to one with the same secret whose
    // Redis is down: the session middleware fails (the error path that is not a response).
    let app = spawn_app_with_idp(&[]).await;
    let (client, jar) = browser_with_jar();
    assert_eq!(
        app.sign_in(&client, "alice", None).await.status().as_u16(),
        303
    );
    let down = spawn_app_with_idp(&[
        (
            "GATEHOUSE__SESSION__SECRET",
            app.vars["GATEHOUSE__SESSION__SECRET"].as_str(),
        ),
        (
            "GATEHOUSE__REDIS__URL",
            &format!("redis://127.0.0.1:{}", dead_port()),
        ),
    ])
    .await;
    let cookies = {
        use reqwest::cookie::CookieStore;
        let url = url::Url::parse(&app.address).expect("url");
        jar.cookies(&url).expect("signed in")
    };
    let res = plain_client()
        .get(down.url("/"))
        .header("accept", HTML)
        .header("cookie", cookies)
        .send()
        .await
        .expect("answered");
    assert_eq!(header(&res, "referrer-policy"), "no-referrer");
    let (page, _) = assert_secure_page(res, 503, "store_unavailable").await;
    assert!(page.contains("store_unavailable"), "{page}");
    assert_accessible(&page, "store_unavailable");
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}
