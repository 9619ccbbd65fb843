//! Providers as companies run them (issue 14, contract part 2 "Providers"): private_key_jwt,
//! a provider behind a private CA, extra authorization parameters, https-only provider URLs
//! and the exact `iss`; against the real development provider.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse::oauth::client_key::{ClientKey, ASSERTION_TYPE};
use reqwest::cookie::Jar;
use reqwest::redirect::Policy;

use crate::helpers::*;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).expect("test key readable")
}

/// The settings of a private_key_jwt client signing with `key_file`.
fn jwt_client(key_file: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GATEHOUSE__PROVIDER__CLIENT_ID", JWT_CLIENT_ID.to_owned()),
        ("GATEHOUSE__PROVIDER__CLIENT_SECRET", String::new()),
        (
            "GATEHOUSE__PROVIDER__CLIENT_AUTH",
            "private_key_jwt".to_owned(),
        ),
        ("GATEHOUSE__PROVIDER__CLIENT_KEY_FILE", key_file.to_owned()),
    ]
}

async fn app_with_jwt_client(key_file: &str, extra: &[(&str, &str)]) -> TestApp {
    let vars = jwt_client(key_file);
    let mut overrides: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.extend_from_slice(extra);
    spawn_app_with_idp(&overrides).await
}

/// A refresh at the development provider authenticated by a fresh assertion of `key_file`:
/// the provider's answer (status, JSON body).
async fn refresh_directly(key_file: &str, refresh_token: &str) -> (u16, serde_json::Value) {
    let key = ClientKey::from_pem(&read(key_file), None).expect("key");
    let token_url = format!("{}/token", idp().issuer);
    let assertion = key
        .client_assertion(JWT_CLIENT_ID, &token_url, gatehouse::identity::now_unix())
        .expect("signed");
    let res = reqwest::Client::new()
        .post(&token_url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", JWT_CLIENT_ID),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .expect("token endpoint");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

#[tokio::test]
async fn private_key_jwt_signs_in_refreshes_and_revokes_with_an_rsa_key() {
    // Every token counts as about to expire, so the first /auth refreshes.
    let app = app_with_jwt_client(
        JWT_CLIENT_RSA_KEY,
        &[("GATEHOUSE__TOKENS__REFRESH_BEFORE_SECS", "86400")],
    )
    .await;
    let res = app.sign_in(&app.client, "rosa", None).await;
    assert_eq!(
        res.status().as_u16(),
        303,
        "code exchanged with an assertion"
    );
    let before = app.stored_tokens().await;
    assert_eq!(app.get("/auth").await.status().as_u16(), 200);
    let after = app.stored_tokens().await;
    assert_ne!(
        before["access_token"], after["access_token"],
        "refreshed with an assertion"
    );
    let refresh = after["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    // The refresh token works until sign-out revokes it (the revocation authenticates with an
    // assertion too; a refused one would leave the token alive).
    let out = app
        .client
        .post(app.url("/signout"))
        .header("origin", PUBLIC_URL)
        .send()
        .await
        .expect("signout");
    assert_eq!(out.status().as_u16(), 303);
    let (status, body) = refresh_directly(JWT_CLIENT_RSA_KEY, &refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

#[tokio::test]
async fn private_key_jwt_with_an_ec_key_signs_in_and_an_unregistered_key_is_refused() {
    let app = app_with_jwt_client(JWT_CLIENT_EC_KEY, &[]).await;
    let res = app.sign_in(&app.client, "esme", None).await;
    assert_eq!(res.status().as_u16(), 303, "ES256 assertion accepted");
    assert_eq!(app.get("/auth").await.status().as_u16(), 200);

    // The key with its certificate in one file (Azure Key Vault's export): the assertion also
    // carries x5t and x5t#S256, which a provider that finds keys by `kid` ignores.
    let dir = TempDir::new();
    let key_and_cert = dir.write(
        "key-and-cert.pem",
        &format!(
            "{}{}",
            read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/test-only-keys/rsa-cert.pem"
            )),
            read(JWT_CLIENT_RSA_KEY)
        ),
    );
    let app = app_with_jwt_client(&key_and_cert, &[]).await;
    let res = app.sign_in(&app.client, "esme", None).await;
    assert_eq!(
        res.status().as_u16(),
        303,
        "RS256 assertion with x5t accepted"
    );

    // A key the provider does not know: the provider refuses the client, nobody signs in.
    let other = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/test-only-keys/other-rsa-key.pem"
    );
    let app = app_with_jwt_client(other, &[]).await;
    let res = app.sign_in(&app.client, "esme", None).await;
    assert_json_error(res, 502, "exchange_failed").await;
    assert_eq!(app.get("/auth").await.status().as_u16(), 401);
}

/// `gatehouse client-jwk` with exactly these variables: (exit code, stdout, stderr).
fn client_jwk(vars: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let dir = TempDir::new();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("client-jwk")
        .args(args)
        .env_clear()
        .env("GATEHOUSE_CONFIG_DIR", &dir.path)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_key_client_jwk_prints_is_what_the_provider_needs() {
    // A key as `openssl ecparam -genkey` writes it: EC PARAMETERS, then a SEC1 EC PRIVATE KEY.
    let dir = TempDir::new();
    let out = Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "key.pem",
        ])
        .current_dir(&dir.path)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{out:?}");
    let key_file = dir.path.join("key.pem").to_string_lossy().into_owned();
    assert!(read(&key_file).contains("BEGIN EC PRIVATE KEY"));

    let (code, stdout, stderr) = client_jwk(
        &[("GATEHOUSE__PROVIDER__CLIENT_KEY_FILE", &key_file)],
        &["--set"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let set: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    let jwk = &set["keys"][0];
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!(
        (jwk["use"].as_str(), jwk["alg"].as_str()),
        (Some("sig"), Some("ES256"))
    );
    assert!(jwk["kid"].as_str().is_some_and(|k| k.len() == 43), "{jwk}");
    assert!(jwk.get("d").is_none(), "never the private part");

    // Registered as printed at a provider of our own, it signs in.
    let own = start_idp("http", &[("IDP_JWT_CLIENT_JWKS", set.to_string())]);
    let vars = jwt_client(&key_file);
    let mut overrides: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.extend([
        ("GATEHOUSE__PROVIDER__ISSUER", own.issuer.as_str()),
        ("GATEHOUSE__PROVIDER__AUTH_URL", ""),
        ("GATEHOUSE__PROVIDER__TOKEN_URL", ""),
        ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "10"),
    ]);
    let app = spawn_app_with(&overrides).await;
    let res = app.sign_in(&app.client, "jack", None).await;
    assert_eq!(res.status().as_u16(), 303);

    // Without a key to print: one line naming the setting.
    let (code, stdout, stderr) = client_jwk(&[], &[]);
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("GATEHOUSE__PROVIDER__CLIENT_KEY_FILE"),
        "{stderr}"
    );
}

#[test]
fn a_key_file_that_does_not_parse_stops_start_up_with_one_line_naming_it() {
    let dir = TempDir::new();
    let garbage = dir.write(
        "garbage.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let public = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/test-only-keys/rsa-public.pem"
    );
    let missing = dir.path.join("missing.pem").to_string_lossy().into_owned();
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/test-only-keys/");
    let wrong_certificate = dir.write(
        "wrong-cert.pem",
        &format!(
            "{}{}",
            read(&format!("{keys}rsa-key.pem")),
            read(&format!("{keys}other-rsa-cert.pem"))
        ),
    );
    for file in [
        garbage.as_str(),
        public,
        missing.as_str(),
        wrong_certificate.as_str(),
    ] {
        let mut vars = base_vars();
        for (k, v) in jwt_client(file) {
            vars.insert(k.to_owned(), v);
        }
        let err = load(vars.clone()).expect_err("refused").0;
        assert!(
            err.starts_with("GATEHOUSE__PROVIDER__CLIENT_KEY_FILE ") && !err.contains('\n'),
            "{file}: {err}"
        );
        // The real binary: exit status 2, that one line.
        let started = gatehouse_binary(&vars, &dir).output().expect("binary runs");
        assert_eq!(started.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&started.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("GATEHOUSE__PROVIDER__CLIENT_KEY_FILE"),
            "{stderr}"
        );
    }
}

#[test]
fn client_authentication_settings_must_agree() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("GATEHOUSE__PROVIDER__CLIENT_AUTH", "private_key_jwt"),
                ("GATEHOUSE__PROVIDER__CLIENT_SECRET", ""),
            ],
            "GATEHOUSE__PROVIDER__CLIENT_KEY_FILE",
        ),
        (
            &[
                ("GATEHOUSE__PROVIDER__CLIENT_AUTH", "private_key_jwt"),
                ("GATEHOUSE__PROVIDER__CLIENT_KEY_FILE", JWT_CLIENT_EC_KEY),
            ],
            "GATEHOUSE__PROVIDER__CLIENT_SECRET",
        ),
        (
            &[("GATEHOUSE__PROVIDER__CLIENT_KEY_FILE", JWT_CLIENT_EC_KEY)],
            "GATEHOUSE__PROVIDER__CLIENT_KEY_FILE",
        ),
        (
            &[("GATEHOUSE__PROVIDER__CLIENT_KEY_ID", "k1")],
            "GATEHOUSE__PROVIDER__CLIENT_KEY_ID",
        ),
        (
            &[("GATEHOUSE__PROVIDER__CLIENT_AUTH", "jwt")],
            "GATEHOUSE__PROVIDER__CLIENT_AUTH",
        ),
    ];
    for (overrides, named) in cases {
        let mut vars = base_vars();
        for (k, v) in *overrides {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let err = load(vars).expect_err("refused").0;
        assert!(
            err.starts_with(&format!("{named} ")),
            "{overrides:?}: {err}"
        );
    }
    let mut vars = base_vars();
    for (k, v) in jwt_client(JWT_CLIENT_RSA_KEY) {
        vars.insert(k.to_owned(), v);
    }
    vars.insert("GATEHOUSE__PROVIDER__CLIENT_KEY_ID".into(), "corp-1".into());
    let settings = load(vars).expect("a whole private_key_jwt client");
    assert_eq!(
        settings.provider.client_key.map(|k| k.kid().to_owned()),
        Some("corp-1".to_owned())
    );
}

/// A browser that trusts `ca` (the development provider's TLS) and keeps cookies.
fn browser_trusting(ca: &str) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("ca");
    reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_provider(Arc::new(Jar::default()))
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("ca pem"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_behind_a_private_ca_is_trusted_through_ca_file_and_only_then() {
    let dir = TempDir::new();
    let tls = make_tls_files(&dir);
    let own = start_idp(
        "https",
        &[
            ("IDP_TLS_CERT", tls.cert.clone()),
            ("IDP_TLS_KEY", tls.key.clone()),
        ],
    );
    assert!(own.issuer.starts_with("https://"));
    let common = [
        ("GATEHOUSE__PROVIDER__ISSUER", own.issuer.as_str()),
        ("GATEHOUSE__PROVIDER__AUTH_URL", ""),
        ("GATEHOUSE__PROVIDER__TOKEN_URL", ""),
        ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "10"),
    ];

    // With the CA: discovery, the exchange and the JWKS all go over the private CA's TLS.
    let mut with_ca = common.to_vec();
    with_ca.push(("GATEHOUSE__PROVIDER__CA_FILE", tls.ca.as_str()));
    let app = spawn_app_with(&with_ca).await;
    let browser = browser_trusting(&tls.ca);
    let authorize = app.start_sign_in(&browser, None).await;
    assert!(
        authorize.starts_with(&format!("{}/auth?", own.issuer)),
        "{authorize}"
    );
    let callback = idp_login(&browser, &authorize, "tess").await;
    let res = app.follow_callback(&browser, &callback).await;
    assert_eq!(res.status().as_u16(), 303);
    let auth = browser.get(app.url("/auth")).send().await.expect("auth");
    assert_eq!(auth.status().as_u16(), 200);

    // Without it: not ready, sign-ins 503, and the log says which certificate problem.
    let mut vars = base_vars();
    for (k, v) in common {
        vars.insert(k.to_owned(), v.to_owned());
    }
    vars.insert("GATEHOUSE__LOG__FORMAT".into(), "json".into());
    let started = start_binary(&vars, &dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = started
            .lines
            .recv_timeout(left)
            .expect("a discovery failure is logged");
        if line.contains("provider discovery failed") {
            break line;
        }
    };
    let logged: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
    let error = logged["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("certificate")
            && error.contains("UnknownIssuer")
            && error.contains("GATEHOUSE__PROVIDER__CA_FILE"),
        "{line}"
    );
    let unready = TestApp::at(
        started.port,
        vars["GATEHOUSE__REDIS__KEY_PREFIX"].clone(),
        vars.clone(),
    );
    assert_json_error(unready.get("/readyz").await, 503, "provider_unavailable").await;
    assert_json_error(unready.get("/signin").await, 503, "provider_unavailable").await;

    // The system's trust store counts too: the CA given the way OpenSSL-minded tools take it
    // (SSL_CERT_FILE replaces the system store for rustls-native-certs), no CA_FILE.
    let mut system = vars.clone();
    system.insert("SSL_CERT_FILE".into(), tls.ca.clone());
    system.insert(
        "GATEHOUSE__REDIS__KEY_PREFIX".into(),
        format!("{}system:", vars["GATEHOUSE__REDIS__KEY_PREFIX"]),
    );
    let trusting = start_binary(&system, &dir);
    let ready = TestApp::at(
        trusting.port,
        system["GATEHOUSE__REDIS__KEY_PREFIX"].clone(),
        system.clone(),
    );
    ready.wait_for_provider().await;
    assert_eq!(ready.get("/readyz").await.status().as_u16(), 200);
}

#[test]
fn a_ca_file_without_certificates_stops_start_up() {
    let dir = TempDir::new();
    let empty = dir.write("empty.pem", "no certificates here\n");
    let broken = dir.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let missing = dir.path.join("missing.pem").to_string_lossy().into_owned();
    for file in [empty, broken, missing] {
        let mut vars = base_vars();
        vars.insert("GATEHOUSE__PROVIDER__CA_FILE".into(), file.clone());
        let err = load(vars).expect_err("refused").0;
        assert!(
            err.starts_with("GATEHOUSE__PROVIDER__CA_FILE ") && !err.contains('\n'),
            "{file}: {err}"
        );
    }
}

#[tokio::test]
async fn auth_params_reach_the_provider() {
    // A plain app and one that asks the provider to show its login page every time.
    let plain = spawn_app_with_idp(&[]).await;
    let prompting = spawn_app_with_idp(&[(
        "GATEHOUSE__PROVIDER__AUTH_PARAMS",
        "prompt=login,login_hint=nina@example.com",
    )])
    .await;
    let (browser, _jar) = browser_with_jar();
    assert_eq!(
        plain
            .sign_in(&browser, "nina", None)
            .await
            .status()
            .as_u16(),
        303
    );
    // Signed in at the provider now: the plain app's next sign-in comes straight back.
    let again = plain.start_sign_in(&browser, None).await;
    assert_eq!(query_param(&again, "prompt"), None);
    let res = browser.get(&again).send().await.expect("authorize");
    assert!(
        location(&res).starts_with(&format!("{PUBLIC_URL}/redirect?")),
        "no login page without prompt=login: {}",
        location(&res)
    );

    let authorize = prompting.start_sign_in(&browser, None).await;
    assert_eq!(query_param(&authorize, "prompt").as_deref(), Some("login"));
    assert_eq!(
        query_param(&authorize, "login_hint").as_deref(),
        Some("nina@example.com")
    );
    let url = url::Url::parse(&authorize).expect("url");
    assert_eq!(
        url.query_pairs().filter(|(k, _)| k == "state").count(),
        1,
        "gatehouse's own parameters once"
    );
    // The provider honours prompt=login: its login page again, despite its session.
    let res = browser.get(&authorize).send().await.expect("authorize");
    let interaction = url.join(&location(&res)).expect("interaction url");
    let page = browser
        .get(interaction)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("name=\"login\""), "the login form: {page}");
    let callback = idp_login(&browser, &authorize, "nina").await;
    assert_eq!(
        prompting
            .follow_callback(&browser, &callback)
            .await
            .status()
            .as_u16(),
        303
    );
}

#[test]
fn auth_params_may_not_override_the_protocol_and_must_be_name_value() {
    for name in [
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "redirect_uri",
        "client_id",
        "response_type",
        "scope",
        "Scope",
        "response_mode",
        "request_uri",
    ] {
        let mut vars = base_vars();
        vars.insert(
            "GATEHOUSE__PROVIDER__AUTH_PARAMS".into(),
            format!("prompt=login,{name}=x"),
        );
        let err = load(vars).expect_err("refused").0;
        assert!(
            err.starts_with("GATEHOUSE__PROVIDER__AUTH_PARAMS ")
                && err.contains(&format!("`{name}`"))
                && !err.contains('\n'),
            "{name}: {err}"
        );
    }
    for bad in [
        "prompt",
        "=login",
        "prompt=",
        "a b=c",
        "prompt=login,prompt=none",
    ] {
        let mut vars = base_vars();
        vars.insert("GATEHOUSE__PROVIDER__AUTH_PARAMS".into(), bad.into());
        let err = load(vars).expect_err(bad).0;
        assert!(
            err.starts_with("GATEHOUSE__PROVIDER__AUTH_PARAMS "),
            "{bad}: {err}"
        );
    }
    let mut vars = base_vars();
    vars.insert(
        "GATEHOUSE__PROVIDER__AUTH_PARAMS".into(),
        "acr_values=urn:mace:incommon:iap:silver, domain_hint=example.com".into(),
    );
    vars.insert(
        "GATEHOUSE__PROVIDER__EXTRA_AUDIENCES".into(),
        "api://corp,https://graph.example".into(),
    );
    let provider = load(vars).expect("valid").provider;
    assert_eq!(
        provider.auth_params,
        vec![
            (
                "acr_values".to_owned(),
                "urn:mace:incommon:iap:silver".to_owned()
            ),
            ("domain_hint".to_owned(), "example.com".to_owned())
        ]
    );
    assert_eq!(
        provider.extra_audiences,
        ["api://corp", "https://graph.example"]
    );
}

#[test]
fn provider_urls_must_be_https_except_on_loopback() {
    let keys = [
        "GATEHOUSE__PROVIDER__ISSUER",
        "GATEHOUSE__PROVIDER__AUTH_URL",
        "GATEHOUSE__PROVIDER__TOKEN_URL",
        "GATEHOUSE__PROVIDER__USERINFO_URL",
        "GATEHOUSE__PROVIDER__JWKS_URL",
    ];
    let with = |key: &str, url: &str, plain: &str| {
        let mut vars = base_vars();
        vars.insert(key.to_owned(), url.to_owned());
        vars.insert("GATEHOUSE__PROVIDER__PLAIN_HTTP_HOSTS".into(), plain.into());
        load(vars)
    };
    for key in keys {
        let err = with(key, "http://idp.example/x", "")
            .expect_err("plain http")
            .0;
        assert!(
            err.starts_with(&format!("{key} ")) && err.contains("https") && !err.contains('\n'),
            "{key}: {err}"
        );
        for fine in [
            "https://idp.example/x",
            "http://127.0.0.1:9/x",
            "http://127.0.0.53/x",
            "http://[::1]:9/x",
            "http://localhost:9/x",
        ] {
            assert!(with(key, fine, "").is_ok(), "{key} = {fine}");
        }
        // A development provider in a container network, named on purpose.
        assert!(with(key, "http://idp:9090/x", "idp").is_ok(), "{key}");
        assert!(with(key, "http://idp:9090/x", "other").is_err(), "{key}");
    }
    let err = with(
        "GATEHOUSE__PROVIDER__ISSUER",
        "https://idp.example/?tenant=1",
        "",
    )
    .expect_err("query")
    .0;
    assert!(err.starts_with("GATEHOUSE__PROVIDER__ISSUER "), "{err}");
}

#[tokio::test]
async fn a_callback_iss_is_compared_exactly() {
    let app = spawn_app_with_idp(&[]).await;
    let authorize = app.start_sign_in(&app.client, None).await;
    let callback = idp_login(&app.client, &authorize, "ivan").await;
    let genuine = url::Url::parse(&callback).expect("callback");
    let iss = query_param(&callback, "iss").expect("the provider sends iss");
    assert_eq!(iss, idp().issuer);
    // The same issuer with a trailing slash is another issuer (RFC 9207 2.4).
    let mut tampered = genuine.clone();
    tampered
        .query_pairs_mut()
        .clear()
        .extend_pairs(genuine.query_pairs().map(|(k, v)| {
            let v = if k == "iss" {
                format!("{v}/")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        }));
    let res = app.follow_callback(&app.client, tampered.as_str()).await;
    let body = assert_json_error(res, 400, "invalid_request").await;
    assert!(body["message"].as_str().unwrap_or_default().contains("iss"));
    assert_eq!(app.get("/auth").await.status().as_u16(), 401);
}
