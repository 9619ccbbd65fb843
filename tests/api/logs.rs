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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_pending_sign_in_is_logged_without_its_content() {
    // serde_json's own messages quote the value they choke on: a record whose fields have the
    // wrong type would put its verifier or nonce in the log line.
    let dir = TempDir::new();
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__LOG__FORMAT".into(), "json".into());
    vars.insert("RUST_LOG".into(), "debug".into());
    let prefix = vars["GATEHOUSE__REDIS__KEY_PREFIX"].clone();
    let mut started = start_binary(&vars, &dir);
    let app = TestApp::at(started.port, prefix.clone(), vars.clone());

    let secret = format!("verifier-{}", gatehouse::random::token());
    let corrupt = [
        format!(
            r#"{{"browser_id":"b","pkce_verifier":"v","nonce":null,"return_to":"/","created_at":"{secret}"}}"#
        ),
        format!(
            r#"{{"browser_id":"b","pkce_verifier":{{"{secret}":1}},"nonce":null,"return_to":"/","created_at":0}}"#
        ),
        format!(
            r#"{{"browser_id":"b","pkce_verifier":"v","nonce":["{secret}"],"return_to":"/","created_at":0}}"#
        ),
    ];
    let mut conn = app.redis().await;
    for record in &corrupt {
        let state = gatehouse::random::token();
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}signin:{state}"))
            .arg(record)
            .arg("EX")
            .arg(60)
            .query_async(&mut conn)
            .await
            .expect("SET");
        let res = app.get(&format!("/redirect?code=c&state={state}")).await;
        assert_json_error(res, 400, "invalid_state").await;
    }

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
        !logs.contains(&secret),
        "the stored value reached the logs: {logs}"
    );
    assert_eq!(
        logs.matches("stored data could not be read").count(),
        corrupt.len(),
        "each corrupt record is reported: {logs}"
    );
    assert!(logs.contains("line"), "with where it broke: {logs}");
}

/// Stops the binary and returns every line it wrote, parsed (JSON logs).
fn all_lines(mut started: Started) -> Vec<serde_json::Value> {
    started.child.sigterm();
    assert_eq!(
        started.child.wait_exit(Duration::from_secs(10)).code(),
        Some(0)
    );
    let mut lines = started.early.clone();
    lines.extend(started.lines.iter());
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a JSON log line ({e}): {l}")))
        .collect()
}

/// The one line with this message.
fn the_line<'a>(lines: &'a [serde_json::Value], message: &str) -> &'a serde_json::Value {
    let found: Vec<_> = lines.iter().filter(|l| l["message"] == message).collect();
    assert_eq!(found.len(), 1, "one {message:?} line in {lines:#?}");
    found[0]
}

/// Asserts the refusal `line` is at info, names `rule` and `claims`, and that none of its
/// fields but the subject holds any of `values`. (The development provider's subjects carry
/// the groups as `+` tags, e.g. `ann+admins`; the subject is who was refused, which the log
/// must say.)
fn assert_refusal(line: &serde_json::Value, rule: &str, claims: &str, values: &[&str]) {
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["rule"], rule, "{line}");
    assert_eq!(line["claims"], claims, "{line}");
    for (field, value) in line.as_object().expect("an object") {
        if field == "subject" {
            continue;
        }
        let text = value.to_string();
        for v in values {
            assert!(
                !text.contains(v),
                "the claim value {v:?} in `{field}`: {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_rule_and_the_claims_never_their_values() {
    let idp = idp();
    let dir = TempDir::new();
    let mut vars = base_vars();
    for (k, v) in [
        ("GATEHOUSE__PROVIDER__ISSUER", idp.issuer.as_str()),
        ("GATEHOUSE__PROVIDER__AUTH_URL", ""),
        ("GATEHOUSE__PROVIDER__TOKEN_URL", ""),
        ("GATEHOUSE__ACCESS__ALLOW_ANY_USER", "false"),
        ("GATEHOUSE__ACCESS__ALLOWED_GROUPS", "staff"),
        // A dotted path, so that the claim's name in the log is unmistakably the setting's.
        ("GATEHOUSE__ACCESS__GROUPS_CLAIM", "realm_access.roles"),
        ("GATEHOUSE__LOG__FORMAT", "json"),
        ("RUST_LOG", "info"),
    ] {
        vars.insert(k.into(), v.into());
    }
    let prefix = vars["GATEHOUSE__REDIS__KEY_PREFIX"].clone();
    let started = start_binary(&vars, &dir);
    let app = TestApp::at(started.port, prefix, vars.clone());
    app.wait_for_provider().await;

    // The global group rule, at sign-in: refused, no session.
    let outsider = browser();
    let refused = app.sign_in(&outsider, "ann+admins+payroll", None).await;
    assert_eq!(refused.status().as_u16(), 403);

    // Per-route rules on /auth, for a user the global rule lets in.
    assert_eq!(
        app.sign_in(&app.client, "cy+staff", None)
            .await
            .status()
            .as_u16(),
        303
    );
    assert_eq!(app.get("/auth").await.status().as_u16(), 200);
    for refused in [
        "/auth?allowed_groups=admins",
        "/auth?allowed_email_domains=corp.test",
    ] {
        assert_eq!(app.get(refused).await.status().as_u16(), 403, "{refused}");
    }

    let lines = all_lines(started);
    let emails = ["ann+admins+payroll@example.com", "cy+staff@example.com"];
    let at_sign_in = the_line(&lines, "access refused at sign-in");
    assert_refusal(
        at_sign_in,
        "allowed_groups",
        "realm_access.roles",
        &["admins", "payroll", "example.com"],
    );
    assert_eq!(at_sign_in["subject"], "ann+admins+payroll");
    assert_eq!(at_sign_in["groups_found"], 2, "a count, not the groups");

    let by_auth: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "access refused by /auth")
        .collect();
    assert_eq!(by_auth.len(), 2, "{by_auth:#?}");
    assert_refusal(
        by_auth[0],
        "route allowed_groups",
        "realm_access.roles",
        &["staff", "example.com"],
    );
    assert_eq!(by_auth[0]["subject"], "cy+staff");
    assert_eq!(by_auth[0]["groups_found"], 1);
    assert_refusal(
        by_auth[1],
        "route allowed_emails/allowed_email_domains",
        "email, email_verified",
        &["staff", "example.com", "true"],
    );
    assert!(by_auth[1].get("groups_found").is_none(), "{}", by_auth[1]);

    // No line at all holds an email address: not the refusals, not the sign-ins around them.
    for line in &lines {
        let text = line.to_string();
        for email in emails {
            assert!(!text.contains(email), "an email in the logs: {text}");
        }
    }
}
