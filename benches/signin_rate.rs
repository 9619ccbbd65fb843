//! Full sign-ins per second on this machine: the release binary, the real Redis and the
//! development OpenID provider, driven by concurrent fresh "browsers" (each: /signin, the
//! provider's login and consent forms, the callback, then /auth).
//!
//! Run with `scripts/bench-signin` (or `cargo bench --bench signin_rate`). Settings:
//! SIGNIN_BENCH_SECS (default 10), SIGNIN_BENCH_CONCURRENCY (default 16).

#[path = "../tests/api/helpers.rs"]
mod helpers;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use helpers::*;
use tokio::task::JoinSet;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let secs = env_num("SIGNIN_BENCH_SECS", 10);
    let concurrency = env_num("SIGNIN_BENCH_CONCURRENCY", 16);
    let idp = idp();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut vars = base_vars();
    vars.insert(
        "GATEHOUSE__SERVER__BIND".into(),
        format!("127.0.0.1:{port}"),
    );
    vars.insert("GATEHOUSE__PROVIDER__ISSUER".into(), idp.issuer.clone());
    vars.insert("GATEHOUSE__PROVIDER__AUTH_URL".into(), String::new());
    vars.insert("GATEHOUSE__PROVIDER__TOKEN_URL".into(), String::new());
    vars.insert("GATEHOUSE__PROVIDER__TIMEOUT_SECS".into(), "10".into());
    // Every browser here is one client (127.0.0.1): its default limit, 300 a minute, is not
    // what this measures.
    vars.insert(
        "GATEHOUSE__SIGNIN__PER_CLIENT_PER_MINUTE".into(),
        "0".into(),
    );
    // SIGNIN_BENCH_AUDIT=off: a directory that is never reachable (and not migrated), so the
    // audit writer writes nothing: sign-ins with auditing in effect off, for comparison.
    if std::env::var("SIGNIN_BENCH_AUDIT").is_ok_and(|v| v == "off") {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        vars.insert(
            "GATEHOUSE__DATABASE__URL".into(),
            format!("postgres://nobody@127.0.0.1:{dead}/none"),
        );
        vars.insert("GATEHOUSE__DATABASE__MIGRATE".into(), "false".into());
    }
    let prefix = vars["GATEHOUSE__REDIS__KEY_PREFIX"].clone();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .envs(&vars)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("gatehouse binary starts");
    let app = Arc::new(TestApp::at(port, prefix, vars));
    let ready = Instant::now();
    while app.client.get(app.url("/healthz")).send().await.is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(10),
            "gatehouse did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    app.wait_for_provider().await;
    // Warm-up: one sign-in, so first-use costs are not in the figures.
    let warm = browser();
    assert_eq!(
        app.sign_in(&warm, "warmup", None).await.status().as_u16(),
        303
    );

    println!("sign-in benchmark: {concurrency} concurrent browsers for {secs} s");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for w in 0..concurrency {
        let app = app.clone();
        workers.spawn(async move {
            let mut full = Vec::new();
            let mut callback = Vec::new();
            let mut failures = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let client = browser();
                let t0 = Instant::now();
                let authorize = app.start_sign_in(&client, None).await;
                let cb = idp_login(&client, &authorize, &format!("bench{w}x{i}")).await;
                let t1 = Instant::now();
                let res = app.follow_callback(&client, &cb).await;
                let t2 = Instant::now();
                let ok = res.status().as_u16() == 303
                    && client
                        .get(app.url("/auth"))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .ok()
                        == Some(200);
                if ok {
                    full.push(t0.elapsed());
                    callback.push(t2 - t1);
                } else {
                    failures += 1;
                }
            }
            (full, callback, failures)
        });
    }
    let (mut full, mut callback, mut failures) = (Vec::new(), Vec::new(), 0);
    while let Some(done) = workers.join_next().await {
        let (f, c, n) = done.expect("worker");
        full.extend(f);
        callback.extend(c);
        failures += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    full.sort();
    callback.sort();
    let pct = |v: &[Duration], p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[idx].as_secs_f64() * 1000.0
    };
    println!("completed sign-ins:     {}", full.len());
    println!("failed sign-ins:        {failures}");
    println!("sign-ins per second:    {:.1}", full.len() as f64 / elapsed);
    println!(
        "full sign-in p50 / p99: {:.1} ms / {:.1} ms",
        pct(&full, 0.5),
        pct(&full, 0.99)
    );
    println!(
        "callback (gatehouse: state check, token exchange, session) p50 / p99: {:.1} ms / {:.1} ms",
        pct(&callback, 0.5),
        pct(&callback, 0.99)
    );
    let _ = child.kill();
    let _ = child.wait();
}
