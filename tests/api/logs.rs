//! Nothing secret reaches the logs: the real binary signs a user in at debug level, and its
//! whole output is searched for every secret, code and token of that sign-in.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_codes_and_tokens_never_reach_the_logs() {
    let idp = idp();
    let dir = TempDir::new();
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__PROVIDER__ISSUER".into(), idp.issuer.clone());
    vars.insert("GATEHOUSE__PROVIDER__AUTH_URL".into(), String::new());
    vars.insert("GATEHOUSE__PROVIDER__TOKEN_URL".into(), String::new());
    vars.insert("GATEHOUSE__LOG__FORMAT".into(), "json".into());
    vars.insert("RUST_LOG".into(), "debug".into());
    let prefix = vars["GATEHOUSE__REDIS__KEY_PREFIX"].clone();
    let session_secret = vars["GATEHOUSE__SESSION__SECRET"].clone();
    let mut started = start_binary(&vars, &dir);

    let app = TestApp::at(started.port, prefix, vars.clone());
    app.wait_for_provider().await;
    let authorize = app.start_sign_in(&app.client, None).await;
    let state = query_param(&authorize, "state").expect("state");
    let nonce = query_param(&authorize, "nonce").expect("nonce");
    let pending = app
        .get_key(&format!("signin:{state}"))
        .await
        .expect("pending sign-in stored");
    let pending: serde_json::Value = serde_json::from_str(&pending).expect("json");
    let verifier = pending["pkce_verifier"]
        .as_str()
        .expect("verifier")
        .to_owned();
    let callback = idp_login(&app.client, &authorize, "kate").await;
    let code = query_param(&callback, "code").expect("code");
    let res = app.follow_callback(&app.client, &callback).await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(app.get("/auth").await.status().as_u16(), 200);

    let tokens = app.stored_tokens().await;
    let cookie = app.cookie_header();

    // Stop the binary; its output channel then ends, so this collects every line it wrote.
    started.child.sigterm();
    assert_eq!(
        started.child.wait_exit(Duration::from_secs(10)).code(),
        Some(0)
    );
    let mut logs = started.early.join("\n");
    for line in started.lines.iter() {
        logs.push('\n');
        logs.push_str(&line);
    }
    assert!(
        logs.contains("sign-in completed"),
        "the logs were captured: {logs}"
    );

    let mut secrets = vec![
        ("client secret", CLIENT_SECRET.to_owned()),
        ("session secret", session_secret),
        ("state", state),
        ("nonce", nonce),
        ("code", code),
        ("PKCE verifier", verifier),
    ];
    for field in ["access_token", "refresh_token", "id_token"] {
        let value = tokens[field].as_str().unwrap_or_default().to_owned();
        assert!(!value.is_empty(), "{field} kept server side");
        secrets.push((field, value));
    }
    for part in cookie.split("; ") {
        if let Some((_, value)) = part.split_once('=') {
            secrets.push(("cookie value", value.to_owned()));
        }
    }
    for (what, value) in secrets {
        assert!(!logs.contains(&value), "the {what} appears in the logs");
    }
}
