//! OpenID Connect discovery: in the background, retried until it works; not ready meanwhile.

use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn document(issuer: &str) -> serde_json::Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "userinfo_endpoint": format!("{issuer}/me"),
    })
}

async fn unready_app(issuer: &str) -> TestApp {
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__PROVIDER__ISSUER".into(), issuer.to_owned());
    vars.insert("GATEHOUSE__PROVIDER__AUTH_URL".into(), String::new());
    vars.insert("GATEHOUSE__PROVIDER__TOKEN_URL".into(), String::new());
    spawn_app_unready(vars).await
}

async fn readyz(app: &TestApp) -> (u16, serde_json::Value) {
    let res = app.get("/readyz").await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_provider_that_comes_up_late_is_discovered_and_the_service_becomes_ready() {
    let port = dead_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = unready_app(&issuer).await;
    let (status, body) = readyz(&app).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("provider_unavailable"))
    );
    assert_json_error(app.get("/signin").await, 503, "provider_unavailable").await;
    assert_eq!(
        app.get("/healthz").await.status().as_u16(),
        200,
        "alive all the same"
    );

    // The provider appears on that address.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("port still free");
    let mock = MockServer::builder().listener(listener).start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(document(&issuer)))
        .mount(&mock)
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz(&app).await.0 != 200 {
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let authorize = app.start_sign_in(&app.client, None).await;
    assert!(
        authorize.starts_with(&format!("{issuer}/auth?")),
        "{authorize}"
    );
}

#[tokio::test]
async fn a_document_for_another_issuer_is_refused() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(document("https://other.example")))
        .mount(&mock)
        .await;
    let app = unready_app(&mock.uri()).await;
    // Wait until discovery has been tried (and retried) at least twice.
    let deadline = Instant::now() + Duration::from_secs(10);
    while mock.received_requests().await.unwrap_or_default().len() < 2 {
        assert!(Instant::now() < deadline, "discovery was not retried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = readyz(&app).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("provider_unavailable"))
    );
}

#[tokio::test]
async fn explicit_endpoint_settings_win_over_discovery() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(document(&mock.uri())))
        .mount(&mock)
        .await;
    let app = spawn_app_with(&[
        ("GATEHOUSE__PROVIDER__ISSUER", &mock.uri()),
        (
            "GATEHOUSE__PROVIDER__AUTH_URL",
            "https://login.example/authorize",
        ),
        ("GATEHOUSE__PROVIDER__TOKEN_URL", ""),
    ])
    .await;
    let authorize = app.start_sign_in(&app.client, None).await;
    assert!(
        authorize.starts_with("https://login.example/authorize?"),
        "{authorize}"
    );
}

#[tokio::test]
async fn an_oversized_discovery_document_is_refused() {
    let mock = MockServer::start().await;
    let mut doc = document(&mock.uri());
    doc["padding"] = serde_json::json!("x".repeat(300 * 1024));
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(doc))
        .mount(&mock)
        .await;
    let app = unready_app(&mock.uri()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while mock.received_requests().await.unwrap_or_default().len() < 2 {
        assert!(Instant::now() < deadline, "discovery was not retried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = readyz(&app).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("provider_unavailable"))
    );
}

/// Waits until `mock` has served discovery at least twice (tried, failed, retried).
async fn discovery_retried(mock: &MockServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while mock.received_requests().await.unwrap_or_default().len() < 2 {
        assert!(Instant::now() < deadline, "discovery was not retried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_discovered_plain_http_endpoint_is_a_discovery_failure() {
    for (member, plain) in [
        ("token_endpoint", "http://idp.example/token"),
        ("jwks_uri", "http://idp.example/jwks"),
        ("end_session_endpoint", "http://10.0.0.1/logout"),
        ("revocation_endpoint", "http://idp.example/revoke"),
    ] {
        let mock = MockServer::start().await;
        let mut doc = document(&mock.uri());
        doc[member] = json!(plain);
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(doc))
            .mount(&mock)
            .await;
        let app = unready_app(&mock.uri()).await;
        discovery_retried(&mock).await;
        let (status, body) = readyz(&app).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("provider_unavailable")),
            "{member}"
        );
    }
    // The control: the same document with https there is fine.
    let mock = MockServer::start().await;
    let mut doc = document(&mock.uri());
    doc["token_endpoint"] = json!("https://idp.example/token");
    doc["end_session_endpoint"] = json!("https://idp.example/logout");
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(doc))
        .mount(&mock)
        .await;
    let app = unready_app(&mock.uri()).await;
    app.wait_for_provider().await;
    assert_eq!(readyz(&app).await.0, 200);
}

#[tokio::test]
async fn the_discovered_issuer_must_equal_the_setting_exactly() {
    // Configured with a trailing slash, the document says it without: another issuer.
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(document(&mock.uri())))
        .mount(&mock)
        .await;
    let app = unready_app(&format!("{}/", mock.uri())).await;
    discovery_retried(&mock).await;
    let (status, body) = readyz(&app).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("provider_unavailable"))
    );
    // Written as the provider writes it, the same document is accepted.
    let app = unready_app(&mock.uri()).await;
    app.wait_for_provider().await;
    assert_eq!(readyz(&app).await.0, 200);
}
