//! Behind a real Caddy (Debian package `caddy`, which has `forward_auth`), running the shipped
//! deploy/caddy/Caddyfile with only its addresses replaced (the site becomes
//! `http://127.0.0.1:<port>`, the two gatehouse upstreams and the app become local ports) in
//! front of two gatehouse instances and an echo app: signed out, a page load gets gatehouse's
//! 401 page leading to sign-in and back; signed in, the app gets the identity headers and
//! never a client's forged ones; sign-out through Caddy. Each test has its own Caddy, ports,
//! temp dir and Redis prefix. `caddy adapt` lints the file as shipped.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use url::Url;

use crate::helpers::*;

const CADDYFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/caddy/Caddyfile");
const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// Whether caddy can run here: in CI it must (scripts/test installs it), elsewhere the tests
/// say they were skipped.
fn caddy_missing(test: &str) -> bool {
    match Command::new("caddy").arg("version").output() {
        Ok(out) if out.status.success() => false,
        other => {
            assert!(
                std::env::var_os("CI").is_none(),
                "caddy is not installed ({other:?}); scripts/test installs it"
            );
            println!("SKIPPED {test}: caddy is not installed (apt-get install caddy)");
            true
        }
    }
}

/// The shipped Caddyfile with its addresses replaced, after a global block that keeps Caddy
/// to this test (no admin endpoint, no automatic HTTPS, its storage in `dir`). Each address is
/// replaced exactly where the shipped file has it, or the test fails: the rest is verbatim.
fn caddyfile_for(dir: &TempDir, port: u16, gatehouse: &[u16; 2], app: u16) -> String {
    let shipped = std::fs::read_to_string(CADDYFILE).expect("deploy/caddy/Caddyfile");
    let replace = |text: String, from: &str, to: &str, times: usize| {
        assert_eq!(
            text.matches(from).count(),
            times,
            "the shipped Caddyfile names {from:?} {times} time(s)"
        );
        text.replace(from, to)
    };
    let site = replace(
        shipped,
        "\napp.example.com {",
        &format!("\nhttp://127.0.0.1:{port} {{"),
        1,
    );
    let upstreams = replace(
        site,
        "reverse_proxy gatehouse-a:8080 gatehouse-b:8080",
        &format!(
            "reverse_proxy 127.0.0.1:{} 127.0.0.1:{}",
            gatehouse[0], gatehouse[1]
        ),
        // gatehouse's own pages, the /admin rule's check and the site's check.
        3,
    );
    let body = replace(
        upstreams,
        "reverse_proxy app:80",
        &format!("reverse_proxy 127.0.0.1:{app}"),
        // /admin's app and the site's app.
        2,
    );
    format!(
        "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {}\n}}\n\n{body}",
        dir.path.join("data").display()
    )
}

/// A real `caddy run` on 127.0.0.1:`port`; killed on drop.
struct Caddy {
    origin: String,
    _child: Running,
    log: mpsc::Receiver<String>,
    _dir: TempDir,
}

impl Caddy {
    /// Err(its output) when the port was taken meanwhile (the caller starts again).
    fn start(port: u16, gatehouse: &[u16; 2], app: u16) -> Result<Caddy, String> {
        let dir = TempDir::new();
        let config = dir.write("Caddyfile", &caddyfile_for(&dir, port, gatehouse, app));
        let mut child = Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config", &config])
            .env("HOME", &dir.path)
            .env("XDG_CONFIG_HOME", dir.path.join("config"))
            .env("XDG_DATA_HOME", dir.path.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("caddy runs");
        let stderr = child.stderr.take().expect("stderr");
        let child = Running(child);
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match log.recv_timeout(Duration::from_secs(30)) {
                // Logged once the listeners are bound and the config is running.
                Ok(line) if line.contains("serving initial configuration") => break,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let all = seen.join("\n");
                    if all.contains("address already in use") {
                        return Err(all);
                    }
                    panic!("caddy did not start:\n{all}");
                }
            }
        }
        Ok(Caddy {
            origin: format!("http://127.0.0.1:{port}"),
            _child: child,
            log,
            _dir: dir,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.origin, path)
    }

    /// What Caddy logged at warning level or above since it started (to explain a failure).
    fn trouble(&self) -> Vec<String> {
        self.log
            .try_iter()
            .filter(|l| {
                ["\"warn\"", "\"error\"", "\"fatal\""]
                    .iter()
                    .any(|t| l.contains(t))
            })
            .collect()
    }
}

struct BehindCaddy {
    _apps: Vec<TestApp>,
    _echo: Echo,
    caddy: Caddy,
}

impl BehindCaddy {
    fn url(&self, path: &str) -> String {
        self.caddy.url(path)
    }
}

/// Two gatehouse instances (one secret, one Redis prefix) behind Caddy, as the Caddyfile
/// deploys them: PUBLIC_URL = Caddy's origin, Caddy's address trusted, the development
/// provider (its loopback redirect URIs match any port), then `overrides`.
async fn behind_caddy(overrides: &[(&str, &str)]) -> BehindCaddy {
    let mut last = String::new();
    for _ in 0..3 {
        let port = dead_port();
        let origin = format!("http://127.0.0.1:{port}");
        let issuer = idp().issuer.clone();
        let mut vars: Vec<(&str, &str)> = vec![
            ("GATEHOUSE__PROVIDER__ISSUER", &issuer),
            ("GATEHOUSE__PROVIDER__AUTH_URL", ""),
            ("GATEHOUSE__PROVIDER__TOKEN_URL", ""),
            ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "10"),
            ("GATEHOUSE__SERVER__PUBLIC_URL", &origin),
            ("GATEHOUSE__PROXY__TRUSTED", "127.0.0.1/32"),
        ];
        vars.extend_from_slice(overrides);
        let a = spawn_app_with(&vars).await;
        let (secret, prefix) = (
            a.vars["GATEHOUSE__SESSION__SECRET"].clone(),
            a.prefix.clone(),
        );
        vars.push(("GATEHOUSE__SESSION__SECRET", &secret));
        vars.push(("GATEHOUSE__REDIS__KEY_PREFIX", &prefix));
        let b = spawn_app_with(&vars).await;
        let echo = Echo::start().await;
        match Caddy::start(port, &[a.port, b.port], echo.port) {
            Ok(caddy) => {
                return BehindCaddy {
                    _apps: vec![a, b],
                    _echo: echo,
                    caddy,
                }
            }
            Err(log) => last = log,
        }
    }
    panic!("caddy never got a free port:\n{last}");
}

/// A top-level browser navigation.
async fn navigate(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .get(url)
        .header("accept", HTML)
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("caddy answered")
}

/// The echo app's JSON (what the upstream received), or a failure showing what came instead.
async fn echoed(res: reqwest::Response, stack: &BehindCaddy, what: &str) -> serde_json::Value {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    assert_eq!(
        status,
        200,
        "{what}: {text}\ncaddy: {:#?}",
        stack.caddy.trouble()
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: echo JSON ({e}): {text}"))
}

/// The `href` of the 401 page's "Sign in" link, HTML-unescaped.
fn sign_in_link(page: &str) -> String {
    let start = page
        .find("href=\"/signin")
        .or_else(|| page.find("href=\"http"))
        .unwrap_or_else(|| panic!("no sign-in link in {page}"))
        + "href=\"".len();
    let end = start + page[start..].find('"').expect("closing quote");
    page[start..end].replace("&amp;", "&")
}

/// Signed out, `page` through Caddy: gatehouse's 401 page → its sign-in link → the provider as
/// `login` → the callback through Caddy, which sends the browser back to `page`.
async fn sign_in_through_caddy(
    stack: &BehindCaddy,
    client: &reqwest::Client,
    page: &str,
    login: &str,
) {
    let res = navigate(client, page).await;
    assert_eq!(res.status().as_u16(), 401, "a page load, signed out");
    let html = res.text().await.expect("page");
    let link = sign_in_link(&html);
    let signin = Url::parse(&stack.caddy.origin)
        .and_then(|o| o.join(&link))
        .expect("sign-in URL");
    assert_eq!(signin.path(), "/signin", "{link}");
    assert_eq!(
        query_param(signin.as_str(), "return_to").as_deref(),
        Some(page),
        "the link comes back to the page, rebuilt from Caddy's X-Forwarded-* headers"
    );
    let res = navigate(client, signin.as_str()).await;
    assert_eq!(res.status().as_u16(), 303, "/signin through Caddy");
    let authorize = location(&res);
    assert!(
        authorize.starts_with(&format!("{}/auth?", idp().issuer)),
        "{authorize}"
    );
    assert_eq!(
        query_param(&authorize, "redirect_uri").as_deref(),
        Some(stack.url("/redirect").as_str()),
        "the callback is PUBLIC_URL's, i.e. Caddy's"
    );
    let callback = idp_login_to(client, &authorize, login, &stack.url("/redirect")).await;
    let done = navigate(client, &callback).await;
    assert_eq!(done.status().as_u16(), 303, "the callback through Caddy");
    assert_eq!(location(&done), page, "back on the page first asked for");
}

#[tokio::test]
async fn signed_out_caddy_leads_to_sign_in_and_signed_in_the_app_gets_the_identity() {
    if caddy_missing("caddy: sign-in") {
        return;
    }
    let stack = behind_caddy(&[]).await;
    let (client, _jar) = browser_with_jar();
    let page = stack.url("/app/page?x=1");

    // An API call gets gatehouse's 401 JSON as it is; nothing reaches the app.
    let res = client
        .get(&page)
        .header("accept", "application/json")
        .header("x-auth-request-user", "forged")
        .send()
        .await
        .expect("caddy answered");
    assert_json_error(res, 401, "unauthorized").await;

    sign_in_through_caddy(&stack, &client, &page, "alice").await;
    let seen = echoed(
        navigate(&client, &page).await,
        &stack,
        "the page, signed in",
    )
    .await;
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
    assert!(
        seen["headers"].get("x-auth-request-groups").is_none(),
        "no groups, no header (not Caddy's placeholder text): {seen}"
    );
    // /admin is for the group `admins` (the Caddyfile's per-location rule): alice is not in it,
    // and gets gatehouse's 403, not a sign-in. A client's own query never reaches /auth.
    let admin = client
        .get(stack.url("/admin/panel?allowed_groups=staff"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("caddy answered");
    assert_json_error(admin, 403, "access_denied").await;
    let admin = navigate(&client, &stack.url("/admin")).await;
    assert_eq!(admin.status().as_u16(), 403);
    assert!(admin.headers().get("location").is_none());
    // Neither does the site's check take a rule from the client's query.
    let seen = echoed(
        navigate(&client, &stack.url("/app/page?allowed_groups=admins")).await,
        &stack,
        "a page with a rule in its query",
    )
    .await;
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice");
    // gatehouse's own endpoints answer on Caddy's origin, on either instance.
    for _ in 0..2 {
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

    // Sign-out through Caddy (gatehouse's own origin is Caddy's): the page asks again.
    let out = client
        .post(stack.url("/signout"))
        .header("origin", &stack.caddy.origin)
        .send()
        .await
        .expect("signout");
    assert_eq!(out.status().as_u16(), 303);
    let res = navigate(&client, &page).await;
    assert_eq!(res.status().as_u16(), 401, "signed out");
}

#[tokio::test]
async fn behind_caddy_the_app_never_sees_identity_headers_a_client_forged() {
    if caddy_missing("caddy: forged headers") {
        return;
    }
    // Scope `openid` alone: the provider tells no email and no username, so gatehouse sends
    // no X-Auth-Request-Email or -Preferred-Username and Caddy's copy_headers has nothing to
    // copy over the client's (Caddy before the fix for GHSA-7r4p-vjf4-gxv4, such as Debian's
    // 2.6, then kept them). The Caddyfile must drop them itself.
    let stack = behind_caddy(&[("GATEHOUSE__PROVIDER__SCOPES", "openid")]).await;
    let (client, _jar) = browser_with_jar();
    let page = stack.url("/app/mine");
    sign_in_through_caddy(&stack, &client, &page, "una").await;
    let res = client
        .get(&page)
        .header("accept", HTML)
        .header("x-auth-request-user", "ceo")
        .header("x-auth-request-email", "ceo@example.com")
        .header("x-auth-request-preferred-username", "ceo")
        .send()
        .await
        .expect("caddy answered");
    let seen = echoed(res, &stack, "the page, with forged headers").await;
    assert_eq!(seen["headers"]["x-auth-request-user"], "una", "{seen}");
    for name in ["x-auth-request-email", "x-auth-request-preferred-username"] {
        assert!(
            seen["headers"].get(name).is_none(),
            "a forged {name} reached the app: {seen}"
        );
    }
}

#[test]
fn the_caddyfile_adapts() {
    if caddy_missing("the_caddyfile_adapts") {
        return;
    }
    let out = Command::new("caddy")
        .args(["adapt", "--adapter", "caddyfile", "--config", CADDYFILE])
        .output()
        .expect("caddy adapt runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "caddy adapt failed:\n{stderr}");
    assert!(
        !stderr.contains("not formatted"),
        "run `caddy fmt --overwrite deploy/caddy/Caddyfile`:\n{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("caddy JSON");
    let text = json.to_string();
    for needle in [
        "/auth?",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Auth-Request-Preferred-Username",
        "/signin",
        "/redirect",
        "/signout",
        "/session",
        // The per-location rule: /admin asks /auth with its group rule; groups reach the app.
        "\"/admin*\"",
        "/auth?allowed_groups=admins",
        "X-Auth-Request-Groups",
    ] {
        assert!(text.contains(needle), "adapted Caddyfile lacks {needle}");
    }
}
