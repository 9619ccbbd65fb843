//! /metrics: Prometheus text with requests by route and status, latency, sign-ins, refreshes;
//! on the main listener only when METRICS__PUBLIC says so.

use crate::helpers::*;

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn scrape(app: &TestApp) -> String {
    let res = app.get("/metrics").await;
    assert_eq!(res.status().as_u16(), 200);
    let ct = res.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    res.text().await.expect("metrics text")
}

#[tokio::test]
async fn metrics_count_requests_sign_ins_failures_and_refreshes() {
    let app = spawn_app_with_idp(&[
        ("GATEHOUSE__TOKENS__REFRESH_BEFORE_SECS", "86400"),
        ("GATEHOUSE__METRICS__PUBLIC", "true"),
    ])
    .await;
    assert_eq!(
        app.sign_in(&app.client, "xena", None)
            .await
            .status()
            .as_u16(),
        303
    );
    assert_eq!(app.get("/auth").await.status().as_u16(), 200); // refreshes (REFRESH_BEFORE)
    let _ = app
        .get("/redirect?state=not-a-known-state-but-long-enough-0000&code=x")
        .await;
    let _ = app.get("/no/such/page/12345").await;

    let text = scrape(&app).await;
    assert_eq!(
        value(
            &text,
            "gatehouse_signins_started_total{provider=\"default\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "gatehouse_signins_completed_total{provider=\"default\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "gatehouse_signins_failed_total{provider=\"\",reason=\"invalid_state\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "gatehouse_token_refreshes_total{outcome=\"ok\",provider=\"default\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "gatehouse_http_requests_total{route=\"/auth\",status=\"200\"}"
        ),
        Some(1.0)
    );
    assert!(
        value(
            &text,
            "gatehouse_http_request_duration_seconds_count{route=\"/auth\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        text.contains("route=\"unmatched\",status=\"404\""),
        "{text}"
    );
    assert!(
        !text.contains("/no/such/page"),
        "raw paths never become labels"
    );
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener() {
    let port = dead_port();
    let dir = TempDir::new();
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__LOG__FORMAT".into(), "json".into());
    vars.insert(
        "GATEHOUSE__METRICS__BIND".into(),
        format!("127.0.0.1:{port}"),
    );
    let mut started = start_binary(&vars, &dir);
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://127.0.0.1:{}/healthz", started.port))
        .send()
        .await
        .expect("main listener");
    assert_eq!(health.status().as_u16(), 200);
    let separate = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics listener");
    assert_eq!(separate.status().as_u16(), 200);
    let text = separate.text().await.expect("text");
    assert!(
        text.contains("gatehouse_http_requests_total{route=\"/healthz\",status=\"200\"} 1"),
        "{text}"
    );
    let main = client
        .get(format!("http://127.0.0.1:{}/metrics", started.port))
        .send()
        .await
        .expect("main listener");
    assert_eq!(main.status().as_u16(), 404, "not on the main listener then");
    started.child.sigterm();
    assert_eq!(
        started
            .child
            .wait_exit(std::time::Duration::from_secs(10))
            .code(),
        Some(0)
    );
}

#[tokio::test]
async fn failed_redis_commands_are_counted() {
    let app = spawn_app_with(&[
        (
            "GATEHOUSE__REDIS__URL",
            &format!("redis://127.0.0.1:{}", dead_port()),
        ),
        ("GATEHOUSE__METRICS__PUBLIC", "true"),
    ])
    .await;
    assert_eq!(app.get("/readyz").await.status().as_u16(), 503);
    let text = scrape(&app).await;
    assert!(
        value(&text, "gatehouse_redis_errors_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

#[tokio::test]
async fn the_public_listener_serves_no_metrics_unless_asked() {
    let app = spawn_app().await;
    let _ = app.get("/healthz").await;
    let res = app.get("/metrics").await;
    assert_json_error(res, 404, "not_found").await;
    let page = app.get_html("/metrics").await;
    assert_eq!(page.status().as_u16(), 404, "a browser gets the 404 page");
    let text = page.text().await.expect("page");
    assert!(!text.contains("gatehouse_http_requests_total"), "{text}");

    let open = spawn_app_with(&[("GATEHOUSE__METRICS__PUBLIC", "true")]).await;
    let _ = open.get("/healthz").await;
    let text = scrape(&open).await;
    assert!(text.contains("gatehouse_http_requests_total"), "{text}");
}

#[tokio::test]
async fn metrics_public_and_a_listener_of_their_own_serve_both() {
    let port = dead_port();
    let dir = TempDir::new();
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__LOG__FORMAT".into(), "json".into());
    vars.insert("GATEHOUSE__METRICS__PUBLIC".into(), "true".into());
    vars.insert(
        "GATEHOUSE__METRICS__BIND".into(),
        format!("127.0.0.1:{port}"),
    );
    let mut started = start_binary(&vars, &dir);
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://127.0.0.1:{}/healthz", started.port))
        .send()
        .await
        .expect("main listener");
    assert_eq!(health.status().as_u16(), 200);
    for url in [
        format!("http://127.0.0.1:{port}/metrics"),
        format!("http://127.0.0.1:{}/metrics", started.port),
    ] {
        let res = client.get(&url).send().await.expect("metrics");
        assert_eq!(res.status().as_u16(), 200, "{url}");
        let text = res.text().await.expect("text");
        assert!(
            text.contains("gatehouse_http_requests_total"),
            "{url}: {text}"
        );
    }
    started.child.sigterm();
    assert_eq!(
        started
            .child
            .wait_exit(std::time::Duration::from_secs(10))
            .code(),
        Some(0)
    );
}

#[test]
fn metrics_public_must_be_a_boolean() {
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__METRICS__PUBLIC".into(), "maybe".into());
    let err = load(vars).expect_err("not a boolean");
    assert!(err.0.contains("GATEHOUSE__METRICS__PUBLIC"), "{err}");
    assert!(!load(base_vars()).expect("defaults").metrics.public);
}
