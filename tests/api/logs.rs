//! Nothing secret reaches the logs: the real binary signs a user in at debug level, and its
//! whole output is searched for every secret, code and token of that sign-in.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;

#[tokio::test]
async fn secrets_codes_and_tokens_never_reach_the_logs() {
    let idp = idp();
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__PROVIDER__ISSUER".into(), idp.issuer.clone());
    vars.insert("GATEHOUSE__PROVIDER__AUTH_URL".into(), String::new());
    vars.insert("GATEHOUSE__PROVIDER__TOKEN_URL".into(), String::new());
    vars.insert("GATEHOUSE__LOG__FORMAT".into(), "json".into());
    let prefix = vars["GATEHOUSE__REDIS__KEY_PREFIX"].clone();
    let session_secret = vars["GATEHOUSE__SESSION__SECRET"].clone();
    let dir = std::env::temp_dir().join(format!("gatehouse-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log_path = dir.join(format!("{}.log", gatehouse::random::token()));
    let log_file = std::fs::File::create(&log_path).expect("log file");

    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .env_clear()
        .envs(&vars)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "debug")
        .env("GATEHOUSE_CONFIG_DIR", &dir)
        .stdout(log_file.try_clone().expect("clone"))
        .stderr(log_file)
        .spawn()
        .expect("binary starts");

    let port = wait_for_port(&log_path).await;
    let app = TestApp::at(port, prefix, vars.clone());
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

    let keys = app.keys("session").await;
    assert_eq!(keys.len(), 1);
    let stored = app
        .get_key(keys[0].trim_start_matches(&app.prefix))
        .await
        .expect("session");
    let map: std::collections::HashMap<String, String> =
        serde_json::from_str(&stored).expect("map");
    let tokens: serde_json::Value = serde_json::from_str(&map["tokens"]).expect("tokens");
    let cookie = app.cookie_header();

    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let mut logs = String::new();
    std::fs::File::open(&log_path)
        .and_then(|mut f| f.read_to_string(&mut logs))
        .expect("logs readable");
    let _ = std::fs::remove_file(&log_path);
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

async fn wait_for_port(log_path: &std::path::Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log_path).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("gatehouse listening")) {
            if let Some(port) = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["port"].as_u64())
            {
                return port as u16;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the binary did not report its port");
}
