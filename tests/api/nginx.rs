//! Behind a real nginx (Debian package `nginx`), configured with deploy/nginx/gatehouse.conf as
//! shipped and deploy/nginx/example.conf's locations verbatim (`/` for anyone signed in,
//! `/admin` for the group `admins` through its own internal auth location), in front of an echo
//! app: browser sign-in back to the page asked for, API calls, sign-out, two instances
//! round-robin, the per-location rule. Each test has its own nginx, ports, temp dir and Redis
//! prefix. (Caddy has tests/api/caddy.rs.)

use std::collections::HashSet;

use crate::helpers::*;

const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// A top-level browser navigation to `url`.
async fn navigate(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .get(url)
        .header("accept", HTML)
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("nginx answered")
}

/// Asserts `res` sends the browser to the loopback provider's authorize endpoint with
/// redirect_uri = nginx's origin + /redirect; returns that URL.
async fn assert_sent_to_provider(
    res: reqwest::Response,
    stack: &BehindNginx,
    what: &str,
) -> String {
    let res = expect_status(res, 303, what).await;
    let to = location(&res);
    assert!(
        to.starts_with(&format!("{}/auth?", idp().issuer)),
        "{what}: Location {to}"
    );
    assert_eq!(
        query_param(&to, "redirect_uri").as_deref(),
        Some(stack.url("/redirect").as_str()),
        "{what}: the redirect_uri is PUBLIC_URL's, i.e. nginx's"
    );
    to
}

/// Asserts the status of `res`, showing its Location and body when it differs.
async fn expect_status(res: reqwest::Response, want: u16, what: &str) -> reqwest::Response {
    if res.status().as_u16() == want {
        return res;
    }
    let (status, to) = (res.status().as_u16(), location(&res));
    let upstream = res
        .headers()
        .get("x-gatehouse-upstream")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = res.text().await.unwrap_or_default();
    panic!("{what}: status {status}, want {want} (Location {to:?}, upstream {upstream:?}): {body}");
}

/// The echo app's answer: 200 and its JSON.
async fn echoed(res: reqwest::Response, what: &str) -> serde_json::Value {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    assert_eq!(status, 200, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: echo JSON ({e}): {text}"))
}

/// Anonymous navigation to `page` through nginx, the provider's forms as `login`, and the
/// callback through nginx. Returns the callback's answer.
async fn sign_in_at(
    stack: &BehindNginx,
    client: &reqwest::Client,
    page: &str,
    login: &str,
) -> reqwest::Response {
    let res = navigate(client, page).await;
    let authorize = assert_sent_to_provider(res, stack, &format!("anonymous GET {page}")).await;
    let callback = idp_login_to(client, &authorize, login, &stack.url("/redirect")).await;
    client
        .get(&callback)
        .header("accept", HTML)
        .send()
        .await
        .expect("callback through nginx")
}

#[tokio::test]
async fn an_anonymous_browser_signs_in_through_nginx_and_lands_on_the_page_it_asked_for() {
    let stack = behind_nginx(1, &[]).await;
    let (client, _jar) = browser_with_jar();
    let page = stack.url("/app/page?x=1");

    let done = sign_in_at(&stack, &client, &page, "alice").await;
    assert_eq!(done.status().as_u16(), 303, "the callback through nginx");
    assert_eq!(location(&done), page, "back on the page first asked for");

    let seen = echoed(navigate(&client, &page).await, "the protected page").await;
    assert_eq!(seen["path"], "/app/page?x=1");
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice", "{seen}");
    assert_eq!(
        seen["headers"]["x-auth-request-email"], "alice@example.com",
        "{seen}"
    );
    assert_eq!(
        seen["headers"]["x-auth-request-preferred-username"], "alice",
        "{seen}"
    );
    // gatehouse's own endpoints answer on nginx's origin too.
    let session: serde_json::Value = client
        .get(stack.url("/session"))
        .send()
        .await
        .expect("/session")
        .json()
        .await
        .expect("session JSON");
    assert_eq!(session["subject"], "alice");
}

/// Sends each request; every one must get 401 JSON `{"error": "unauthorized"}` and no
/// redirect.
async fn assert_all_unauthorized_json(requests: Vec<(&str, reqwest::RequestBuilder)>) {
    for (what, request) in requests {
        let res = request.send().await.expect("nginx answered");
        assert!(
            res.headers().get("location").is_none(),
            "{what}: no redirect, got Location {:?}",
            location(&res)
        );
        let res = expect_status(res, 401, what).await;
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = res.text().await.expect("body");
        assert!(
            content_type.starts_with("application/json"),
            "{what}: 401 JSON, got {content_type:?}: {text}"
        );
        let body: serde_json::Value = serde_json::from_str(&text).expect("JSON body");
        assert_eq!(body["error"], "unauthorized", "{what}: {body}");
    }
}

#[tokio::test]
async fn api_calls_through_nginx_get_401_json_and_navigations_get_the_sign_in() {
    let stack = behind_nginx(1, &[]).await;
    let page = stack.url("/app/api/items?x=1");
    let client = browser();
    assert_all_unauthorized_json(vec![
        (
            "XHR",
            client
                .get(&page)
                .header("x-requested-with", "XMLHttpRequest")
                .header("accept", "application/json"),
        ),
        (
            "Accept: application/json",
            client.get(&page).header("accept", "application/json"),
        ),
        (
            "fetch() (Sec-Fetch-Mode: cors)",
            client
                .get(&page)
                .header("accept", "*/*")
                .header("sec-fetch-mode", "cors"),
        ),
        (
            "fetch() POST with a JSON body",
            client
                .post(&page)
                .header("accept", "application/json")
                .header("sec-fetch-mode", "cors")
                .json(&serde_json::json!({"a": 1})),
        ),
        (
            "body-less POST",
            client.post(&page).header("accept", "application/json"),
        ),
    ])
    .await;

    let navigations = [
        ("navigation", client.get(&page).header("accept", HTML)),
        (
            "navigation with Sec-Fetch-Mode",
            client
                .get(&page)
                .header("accept", HTML)
                .header("sec-fetch-mode", "navigate"),
        ),
    ];
    for (what, request) in navigations {
        let res = request.send().await.expect("nginx answered");
        assert_sent_to_provider(res, &stack, what).await;
    }
}

#[tokio::test]
async fn non_get_requests_get_401_json_even_when_they_prefer_html() {
    // Issue 4, "Browser vs API": XHR, Accept: application/json and non-GET requests get 401
    // JSON. A form POST cannot be replayed after a sign-in, so it is never sent to sign in.
    let stack = behind_nginx(1, &[]).await;
    let page = stack.url("/app/form");
    let client = browser();
    assert_all_unauthorized_json(vec![
        (
            "form POST",
            client
                .post(&page)
                .header("accept", HTML)
                .form(&[("a", "b")]),
        ),
        ("DELETE", client.delete(&page).header("accept", HTML)),
    ])
    .await;
}

#[tokio::test]
async fn sign_out_through_nginx_sends_the_next_visit_back_to_sign_in() {
    let stack = behind_nginx(1, &[]).await;
    let (client, _jar) = browser_with_jar();
    let page = stack.url("/app/private");
    let done = sign_in_at(&stack, &client, &page, "olga").await;
    assert_eq!(done.status().as_u16(), 303, "signed in");
    let seen = echoed(navigate(&client, &page).await, "signed in").await;
    assert_eq!(seen["headers"]["x-auth-request-user"], "olga");

    let out = client
        .post(stack.url("/signout"))
        .header("origin", &stack.nginx.origin)
        .send()
        .await
        .expect("sign-out through nginx");
    let out = expect_status(out, 303, "sign-out").await;
    assert_eq!(location(&out), "/");

    let res = navigate(&client, &page).await;
    assert_sent_to_provider(res, &stack, "the protected page after sign-out").await;
    let res = client
        .get(stack.url("/session"))
        .send()
        .await
        .expect("/session");
    assert_eq!(res.status().as_u16(), 401, "no session after sign-out");

    // A cross-site sign-out through nginx is still refused.
    let forged = client
        .post(stack.url("/signout"))
        .header("origin", "http://evil.test")
        .send()
        .await
        .expect("forged sign-out");
    assert_eq!(forged.status().as_u16(), 403);
}

#[tokio::test]
async fn two_instances_round_robin_behind_nginx_share_sign_ins_and_sign_outs() {
    let stack = behind_nginx(2, &[]).await;
    let instances: HashSet<String> = stack
        .apps
        .iter()
        .map(|a| format!("127.0.0.1:{}", a.port))
        .collect();

    // Round-robin decides which instance starts and which finishes each sign-in (the auth
    // subrequest also takes a turn), so several sign-ins cover both orders; all must work.
    let mut browsers = Vec::new();
    for i in 0..4 {
        let (client, _jar) = browser_with_jar();
        let page = stack.url(&format!("/app/visit/{i}?n={i}"));
        let login = format!("user{i}");
        let done = sign_in_at(&stack, &client, &page, &login).await;
        assert_eq!(done.status().as_u16(), 303, "sign-in {i}");
        assert_eq!(location(&done), page, "sign-in {i} lands on its page");
        browsers.push((client, login));
    }

    let (client, login) = &browsers[0];
    let page = stack.url("/app/dashboard");
    for n in 0..10 {
        let seen = echoed(navigate(client, &page).await, &format!("request {n}")).await;
        assert_eq!(seen["headers"]["x-auth-request-user"], login.as_str());
    }
    let mut served_by = HashSet::new();
    for n in 0..10 {
        let res = client
            .get(stack.url("/session"))
            .send()
            .await
            .expect("/session");
        let upstream = res
            .headers()
            .get("x-gatehouse-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(res.status().as_u16(), 200, "/session {n} from {upstream}");
        let session: serde_json::Value = res.json().await.expect("session JSON");
        assert_eq!(session["subject"], login.as_str(), "from {upstream}");
        served_by.insert(upstream);
    }
    assert_eq!(served_by, instances, "both instances answered");

    let out = client
        .post(stack.url("/signout"))
        .header("origin", &stack.nginx.origin)
        .send()
        .await
        .expect("sign-out");
    assert_eq!(out.status().as_u16(), 303);
    for n in 0..10 {
        let res = navigate(client, &page).await;
        assert_sent_to_provider(res, &stack, &format!("request {n} after sign-out")).await;
    }
    for n in 0..4 {
        let res = client
            .get(stack.url("/session"))
            .send()
            .await
            .expect("/session");
        assert_eq!(res.status().as_u16(), 401, "/session {n} after sign-out");
    }

    // The other browsers are still signed in, on both instances.
    for (client, login) in &browsers[1..] {
        for n in 0..2 {
            let seen = echoed(navigate(client, &page).await, &format!("{login} {n}")).await;
            assert_eq!(seen["headers"]["x-auth-request-user"], login.as_str());
        }
    }
}

#[tokio::test]
async fn the_auth_location_is_internal_and_identity_headers_cannot_be_forged() {
    let stack = behind_nginx(1, &[]).await;
    let (client, _jar) = browser_with_jar();

    let res = client
        .get(stack.url("/_gatehouse_auth"))
        .send()
        .await
        .expect("nginx answered");
    assert_eq!(res.status().as_u16(), 404, "internal location");

    let page = stack.url("/app/admin");
    let forged = [
        ("x-auth-request-user", "root"),
        ("x-auth-request-email", "root@example.com"),
        ("x-auth-request-preferred-username", "root"),
    ];
    // Anonymous with forged identity headers: still sent to sign in.
    let mut request = client.get(&page).header("accept", HTML);
    for (name, value) in forged {
        request = request.header(name, value);
    }
    let res = request.send().await.expect("nginx answered");
    assert_sent_to_provider(res, &stack, "anonymous with forged identity headers").await;

    let done = sign_in_at(&stack, &client, &page, "pat").await;
    assert_eq!(done.status().as_u16(), 303);
    let mut request = client.get(&page).header("accept", HTML);
    for (name, value) in forged {
        request = request.header(name, value);
    }
    let seen = echoed(request.send().await.expect("nginx answered"), "forged").await;
    assert_eq!(seen["headers"]["x-auth-request-user"], "pat", "{seen}");
    assert_eq!(
        seen["headers"]["x-auth-request-email"], "pat@example.com",
        "{seen}"
    );
    assert_ne!(
        seen["headers"]["x-auth-request-preferred-username"], "root",
        "the client's header never reaches the app: {seen}"
    );
}

/// The claims of a JWT, unverified (the assertion's own tests verify it).
fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Asserts `res` is nginx passing on gatehouse's 403: no redirect (to sign-in or anywhere),
/// nothing from the app.
async fn assert_refused_403(res: reqwest::Response, what: &str) {
    assert!(
        res.headers().get("location").is_none(),
        "{what}: no redirect, got Location {:?}",
        location(&res)
    );
    let res = expect_status(res, 403, what).await;
    let body = res.text().await.expect("body");
    assert!(
        !body.contains("\"headers\""),
        "{what}: the app answered: {body}"
    );
}

#[tokio::test]
async fn behind_nginx_admin_needs_the_group_and_the_rest_of_the_site_does_not() {
    let stack = behind_nginx(1, &[("GATEHOUSE__FORWARD__ASSERTION", "true")]).await;

    // A member of `admins` signs in at /admin and lands there; / is open to them too.
    let (admin, _jar) = browser_with_jar();
    let panel = stack.url("/admin/panel?tab=1");
    let done = sign_in_at(&stack, &admin, &panel, "x+admins").await;
    let done = expect_status(done, 303, "the admin's callback").await;
    assert_eq!(location(&done), panel, "back on /admin/panel");
    for page in ["/admin/panel?tab=1", "/admin", "/"] {
        let seen = echoed(navigate(&admin, &stack.url(page)).await, page).await;
        let headers = &seen["headers"];
        assert_eq!(headers["x-auth-request-user"], "x+admins", "{page}: {seen}");
        assert_eq!(headers["x-auth-request-groups"], "admins", "{page}: {seen}");
        assert_eq!(
            headers["x-auth-request-email"], "x+admins@example.com",
            "{page}: {seen}"
        );
        // The signed assertion reaches the app too, made for nginx's origin.
        let assertion = headers["x-auth-request-assertion"]
            .as_str()
            .unwrap_or_else(|| panic!("{page}: no assertion: {seen}"));
        let claims = jwt_claims(assertion);
        assert_eq!(claims["sub"], "x+admins", "{claims}");
        assert_eq!(claims["groups"], serde_json::json!(["admins"]), "{claims}");
        assert_eq!(claims["aud"], stack.nginx.origin.as_str(), "{claims}");
    }

    // Signed in, but not in the group: / works, /admin is 403 every time (never a redirect to
    // sign in again, so never a loop), for page loads and API calls alike.
    let (staff, _jar) = browser_with_jar();
    let done = sign_in_at(&stack, &staff, &stack.url("/admin"), "y+staff").await;
    let done = expect_status(done, 303, "the non-member's callback").await;
    assert_eq!(location(&done), stack.url("/admin"), "sent back to /admin");
    let seen = echoed(navigate(&staff, &stack.url("/")).await, "/ for staff").await;
    assert_eq!(seen["headers"]["x-auth-request-user"], "y+staff", "{seen}");
    assert_eq!(seen["headers"]["x-auth-request-groups"], "staff", "{seen}");
    for n in 0..3 {
        let res = navigate(&staff, &stack.url("/admin")).await;
        assert_refused_403(res, &format!("/admin for staff, visit {n}")).await;
    }
    let res = navigate(&staff, &stack.url("/admin/panel?tab=1")).await;
    assert_refused_403(res, "/admin/panel for staff").await;
    let res = staff
        .get(stack.url("/admin/api/users"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("nginx answered");
    assert_refused_403(res, "an API call to /admin for staff").await;
    // Still signed in: the refusal ended nothing.
    let seen = echoed(navigate(&staff, &stack.url("/")).await, "/ again").await;
    assert_eq!(seen["headers"]["x-auth-request-user"], "y+staff");

    // Signed out: /admin sends a browser to sign in, and an API call gets 401 JSON.
    let anonymous = browser();
    let res = navigate(&anonymous, &stack.url("/admin")).await;
    assert_sent_to_provider(res, &stack, "anonymous /admin").await;
    assert_all_unauthorized_json(vec![(
        "anonymous API call to /admin",
        anonymous
            .get(stack.url("/admin/api/users"))
            .header("accept", "application/json"),
    )])
    .await;
}

#[tokio::test]
async fn behind_nginx_a_forged_groups_header_opens_nothing_and_reaches_no_app() {
    let stack = behind_nginx(1, &[]).await;
    let (client, _jar) = browser_with_jar();
    let done = sign_in_at(&stack, &client, &stack.url("/"), "zoe").await;
    expect_status(done, 303, "signed in").await;

    let forged = |path: &str| {
        client
            .get(stack.url(path))
            .header("accept", HTML)
            .header("x-auth-request-groups", "admins")
            .header("x-auth-request-assertion", "forged.jwt.value")
    };
    let seen = echoed(forged("/").send().await.expect("nginx"), "forged /").await;
    assert_eq!(seen["headers"]["x-auth-request-user"], "zoe", "{seen}");
    let headers = seen["headers"].as_object().expect("headers");
    assert!(
        !headers.contains_key("x-auth-request-groups"),
        "no groups, and the client's header is dropped: {seen}"
    );
    assert!(
        !headers.contains_key("x-auth-request-assertion"),
        "assertions off, and the client's header is dropped: {seen}"
    );
    let res = forged("/admin").send().await.expect("nginx");
    assert_refused_403(res, "/admin with a forged groups header").await;

    // The rule's internal location is not reachable from outside.
    let res = client
        .get(stack.url("/_gatehouse_auth/admins"))
        .send()
        .await
        .expect("nginx answered");
    assert_eq!(res.status().as_u16(), 404, "internal location");
}

#[tokio::test]
async fn the_shipped_nginx_example_passes_nginx_t() {
    // example.conf as shipped, with only its upstream addresses (container names, which do
    // not resolve here) and the snippet's install path replaced.
    let example = std::fs::read_to_string(NGINX_EXAMPLE).expect("example.conf");
    let mut edited = example.clone();
    for (from, to) in [
        ("server gatehouse-a:8080;", "server 127.0.0.1:18080;"),
        ("server gatehouse-b:8080;", "server 127.0.0.1:18081;"),
        ("server app:80;", "server 127.0.0.1:18082;"),
        ("/etc/nginx/snippets/gatehouse.conf", NGINX_SNIPPET),
    ] {
        assert!(edited.contains(from), "example.conf has {from:?}");
        edited = edited.replace(from, to);
    }
    let dir = TempDir::new();
    dir.write("example.conf", &edited);
    let conf = dir.write(
        "nginx.conf",
        &format!(
            "{}include {}/example.conf;\n}}\n",
            nginx_main_context(&dir.path),
            dir.path.display()
        ),
    );
    if let Err(out) = nginx_t(&dir.path, &conf) {
        panic!("nginx -t refused deploy/nginx/example.conf:\n{out}");
    }

    // And nginx -t can fail: a snippet without its upstream is refused.
    let broken = dir.write(
        "broken.conf",
        &format!(
            "{}server {{ listen 127.0.0.1:18083; include {NGINX_SNIPPET}; }}\n}}\n",
            nginx_main_context(&dir.path)
        ),
    );
    assert!(
        nginx_t(&dir.path, &broken).is_err(),
        "nginx -t accepted a config without `upstream gatehouse`"
    );
}
