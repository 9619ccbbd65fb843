//! `gatehouse login`: the server's document, and what may come back to the loopback listener.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use url::Url;

use super::*;
use crate::helpers::*;

// ---- The server's document ----

#[tokio::test]
async fn the_gatehouse_document_names_the_issuer_the_native_client_and_the_scopes() {
    let cli = Cli::start().await;
    let res = cli.app.get("/.well-known/gatehouse").await;
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({
            "issuer": idp().issuer,
            "cli_client_id": CLI_CLIENT,
            "scopes": ["openid", "email", "profile", "offline_access"],
        })
    );

    let off = spawn_app().await;
    let res = off.get("/.well-known/gatehouse").await;
    assert_json_error(res, 404, "not_found").await;
}

#[test]
fn cli_settings_need_an_issuer_and_openid() {
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__CLI__CLIENT_ID".into(), CLI_CLIENT.into());
    let err = load(vars.clone()).expect_err("no issuer");
    assert!(err.0.contains("GATEHOUSE__CLI__CLIENT_ID"), "{err}");
    assert!(err.0.contains("GATEHOUSE__PROVIDER__ISSUER"), "{err}");

    vars.insert(
        "GATEHOUSE__PROVIDER__ISSUER".into(),
        "https://idp.example".into(),
    );
    vars.insert("GATEHOUSE__CLI__SCOPES".into(), "email profile".into());
    let err = load(vars.clone()).expect_err("no openid");
    assert!(err.0.contains("GATEHOUSE__CLI__SCOPES"), "{err}");

    vars.insert("GATEHOUSE__CLI__SCOPES".into(), "openid".into());
    let settings = load(vars).expect("valid");
    assert_eq!(settings.cli.client_id.as_deref(), Some(CLI_CLIENT));
    assert_eq!(settings.cli.scopes, vec!["openid".to_owned()]);
}

// ---- Hostile and broken callbacks ----

#[tokio::test]
async fn callbacks_without_this_sign_ins_state_are_refused_and_login_keeps_waiting() {
    let cli = Cli::start().await;
    let mut login = cli.login(&[]);
    let authorize = login.authorize_url().await;
    let redirect = query_param(&authorize, "redirect_uri").expect("redirect_uri");
    let state = query_param(&authorize, "state").expect("state");
    let redirect_url = Url::parse(&redirect).expect("url");
    assert_eq!(redirect_url.host_str(), Some("127.0.0.1"));
    assert_eq!(redirect_url.path(), "/callback");

    // Another local process racing for the port: wrong state, none, the right one smuggled
    // beside a wrong one.
    for forged in [
        format!("{redirect}?code=forged&state=not-the-state"),
        format!("{redirect}?code=forged"),
        format!("{redirect}?error=access_denied"),
        format!("{redirect}?code=forged&state=x&state={state}"),
    ] {
        let (status, page) = visit(&forged).await;
        assert_eq!(status, 400, "{forged}");
        assert!(page.contains("not the sign-in"), "{forged}: {page}");
    }
    let origin = format!("http://127.0.0.1:{}", redirect_url.port().expect("port"));
    let (status, _) = visit(&format!("{origin}/favicon.ico")).await;
    assert_eq!(status, 404);

    // The right callback still gets through.
    let callback = browser_signs_in(&authorize, "wanda").await;
    let (status, page) = visit(&callback).await;
    assert_eq!(status, 200, "{page}");
    let done = login.finish().await;
    done.assert_success("login after forged callbacks");
    assert_eq!(cli.stored()["subject"], "wanda");
}

#[tokio::test]
async fn a_provider_error_ends_login_with_one_line_and_nothing_stored() {
    let cli = Cli::start().await;
    let mut login = cli.login(&[]);
    let authorize = login.authorize_url().await;
    let callback = idp_cancel(&browser(), &authorize).await;
    assert_eq!(
        query_param(&callback, "error").as_deref(),
        Some("access_denied")
    );
    let (status, page) = visit(&callback).await;
    assert_eq!(status, 400);
    assert!(page.contains("failed"), "{page}");
    let done = login.finish().await;
    done.assert_failed(1, "access_denied");
    assert!(!cli.store().exists(), "nothing stored");
}

#[tokio::test]
async fn a_callback_with_another_or_no_iss_is_refused_rfc_9207() {
    let cli = Cli::start().await;
    for (what, iss) in [
        ("another issuer", Some("https://evil.example")),
        ("no iss", None),
    ] {
        let mut login = cli.login(&[]);
        let authorize = login.authorize_url().await;
        let callback = browser_signs_in(&authorize, "ivan").await;
        assert!(
            query_param(&callback, "iss").is_some(),
            "the provider sends iss"
        );
        let (status, _) = visit(&with_param(&callback, "iss", iss)).await;
        assert_eq!(status, 400, "{what}");
        let done = login.finish().await;
        done.assert_failed(1, "`iss`");
        assert!(!cli.store().exists(), "{what}: nothing stored");
    }
}

#[tokio::test]
async fn an_id_token_for_another_nonce_is_refused() {
    let cli = Cli::start().await;
    let mut login = cli.login(&[]);
    let authorize = login.authorize_url().await;
    // The provider then signs an ID token carrying another nonce than this login's.
    let replayed = with_param(&authorize, "nonce", Some("another-login-s-nonce"));
    let callback = browser_signs_in(&replayed, "nina").await;
    let (status, page) = visit(&callback).await;
    assert_eq!(status, 400, "{page}");
    let done = login.finish().await;
    done.assert_failed(1, "nonce");
    assert!(!cli.store().exists(), "nothing stored");
}

#[tokio::test]
async fn no_callback_within_the_timeout_ends_login() {
    let cli = Cli::start().await;
    let mut login = cli.login(&["--timeout", "1"]);
    login.authorize_url().await;
    let done = login.finish().await;
    done.assert_failed(1, "within 1 s");
    assert!(!cli.store().exists(), "nothing stored");
}

#[tokio::test]
async fn two_logins_at_once_listen_on_their_own_ports_and_ignore_each_other() {
    let cli = Cli::start().await;
    let second_store = cli.home.path.join("second/tokens.json");
    let mut first = cli.login(&[]);
    let mut second = cli.login(&["--store", second_store.to_str().expect("utf-8")]);
    let (a, b) = (first.authorize_url().await, second.authorize_url().await);
    for name in ["redirect_uri", "state", "nonce", "code_challenge"] {
        assert_ne!(query_param(&a, name), query_param(&b, name), "{name}");
    }
    let b_redirect = query_param(&b, "redirect_uri").expect("redirect_uri");

    // The first login's callback delivered to the second's port: refused there, not spent.
    let a_callback = browser_signs_in(&a, "olga").await;
    let misdelivered = format!(
        "{b_redirect}?{}",
        Url::parse(&a_callback)
            .expect("url")
            .query()
            .expect("query")
    );
    let (status, _) = visit(&misdelivered).await;
    assert_eq!(status, 400);
    let (status, _) = visit(&a_callback).await;
    assert_eq!(status, 200);

    let b_callback = browser_signs_in(&b, "pete").await;
    let (status, _) = visit(&b_callback).await;
    assert_eq!(status, 200);
    first.finish().await.assert_success("first login");
    second.finish().await.assert_success("second login");
    assert_eq!(cli.stored()["subject"], "olga");
    let second_entry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&second_store).expect("second store"))
            .expect("JSON");
    assert_eq!(second_entry["servers"][cli.server()]["subject"], "pete");
}

#[tokio::test]
async fn the_browser_is_asked_to_open_the_authorize_url_and_a_missing_one_is_not_fatal() {
    let cli = Cli::start().await;
    // A desktop whose `xdg-open` writes down what it was asked to open.
    let desktop = TempDir::new();
    let opened = desktop.path.join("opened");
    let opener = desktop.write(
        "xdg-open",
        &format!(
            "#!/bin/sh\nprintf '%s' \"$1\" > {}.tmp && mv {0}.tmp {0}\n",
            opened.display()
        ),
    );
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut cmd = cli.command(&["login", "--server", cli.server()]);
    cmd.env("PATH", format!("{}:/usr/bin:/bin", desktop.path.display()));
    let mut login = Login::spawn(cmd);
    let printed = login.authorize_url().await;
    // The opener runs beside the login: wait (bounded) for what it was given.
    let deadline = std::time::Instant::now() + BOUND;
    let url = loop {
        if let Ok(url) = std::fs::read_to_string(&opened) {
            break url;
        }
        assert!(std::time::Instant::now() < deadline, "xdg-open never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(url, printed, "the browser gets the printed URL");
    let callback = browser_signs_in(&url, "bruno").await;
    assert_eq!(visit(&callback).await.0, 200);
    login.finish().await.assert_success("login with a browser");

    // No opener at all: said, and the login goes on.
    let empty = TempDir::new();
    let mut cmd = cli.command(&["login", "--server", cli.server()]);
    cmd.env("PATH", &empty.path);
    let mut login = Login::spawn(cmd);
    let authorize = login.authorize_url().await;
    let callback = browser_signs_in(&authorize, "bruno").await;
    assert_eq!(visit(&callback).await.0, 200);
    let done = login.finish().await;
    done.assert_success("login without a browser");
    assert!(
        done.stderr
            .iter()
            .any(|l| l.contains("could not start xdg-open")),
        "{:?}",
        done.stderr
    );
}
