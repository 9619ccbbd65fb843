//! Sign-in floods (contract part 2, "Limits that protect everyone"): a loop of cookie-less
//! `/signin?return_to=<2 KB>` must not fill Redis, one client's flood must not stop others,
//! and past either limit the answer is 429 `rate_limited` with `Retry-After` (1–60 s).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::helpers::*;

/// One `/signin` answer of a flood.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    code: String,
}

/// `n` cookie-less `GET /signin?return_to=<2 KB>`, `concurrency` at a time; request `i` comes
/// from the client `forwarded_for(i)` names (an `X-Forwarded-For`), if any.
async fn flood(
    app: &TestApp,
    n: usize,
    concurrency: usize,
    forwarded_for: fn(usize) -> Option<String>,
) -> Vec<Answer> {
    let url = Arc::new(app.url(&format!("/signin?return_to=/{}", "a".repeat(2047))));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (url, client, next) = (url.clone(), client.clone(), next.clone());
        workers.spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return answers;
                }
                let mut req = client.get(url.as_str());
                if let Some(ip) = forwarded_for(i) {
                    req = req.header("x-forwarded-for", ip);
                }
                let res = req.send().await.expect("signin answered");
                let status = res.status().as_u16();
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let code = if status == 303 {
                    String::new()
                } else {
                    let body: serde_json::Value = res.json().await.unwrap_or_default();
                    body["error"].as_str().unwrap_or_default().to_owned()
                };
                answers.push(Answer {
                    status,
                    retry_after,
                    code,
                });
            }
        });
    }
    let mut all = Vec::new();
    while let Some(done) = workers.join_next().await {
        all.extend(done.expect("flood worker"));
    }
    assert_eq!(all.len(), n);
    all
}

/// Started sign-ins among `answers`; asserts every other one is a proper 429.
fn admitted(answers: &[Answer]) -> usize {
    let mut started = 0;
    for a in answers {
        if a.status == 303 {
            started += 1;
            continue;
        }
        assert_eq!(a.status, 429, "{a:?}");
        assert_eq!(a.code, "rate_limited", "{a:?}");
        assert!(
            a.retry_after.is_some_and(|s| (1..=60).contains(&s)),
            "Retry-After of 1–60 s: {a:?}"
        );
    }
    started
}

async fn used_memory(redis: &RedisServer) -> i64 {
    let info = redis.cli(&["INFO", "memory"]).await;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("used_memory in {info}"))
}

async fn pending_records(redis: &RedisServer, prefix: &str) -> usize {
    redis
        .cli(&["--scan", "--pattern", &format!("{prefix}signin:*")])
        .await
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_sign_ins_is_refused_before_it_fills_redis_and_others_keep_signing_in() {
    // A Redis of its own that refuses writes when full, as many are set up: unbounded pending
    // sign-ins (about 3,500 of 2.4 KB here) would fill it and stop every sign-in and session.
    let redis = RedisServer::start(|port| {
        vec![
            "--port".into(),
            port.to_string(),
            "--maxmemory".into(),
            "4mb".into(),
            "--maxmemory-policy".into(),
            "noeviction".into(),
        ]
    })
    .await;
    const PER_CLIENT: usize = 50;
    const MAX_PENDING: usize = 200;
    let app = spawn_app_with_idp(&[
        ("GATEHOUSE__REDIS__URL", &redis.url()),
        ("GATEHOUSE__PROXY__TRUSTED", "127.0.0.1/32"),
        (
            "GATEHOUSE__SIGNIN__PER_CLIENT_PER_MINUTE",
            &PER_CLIENT.to_string(),
        ),
        ("GATEHOUSE__SIGNIN__MAX_PENDING", &MAX_PENDING.to_string()),
    ])
    .await;

    // Before the flood: one user signed in, another half-way through signing in.
    let (signed_in, _jar) = browser_with_jar();
    assert_eq!(
        app.sign_in(&signed_in, "vera", None)
            .await
            .status()
            .as_u16(),
        303
    );
    let (halfway, _jar2) = browser_with_jar();
    let authorize = app.start_sign_in(&halfway, Some("/halfway")).await;
    let baseline = used_memory(&redis).await;

    // One client floods; meanwhile another (the proxy's own address) signs in.
    let (other, _jar3) = browser_with_jar();
    let (answers, other_signed_in) = tokio::join!(
        flood(&app, 1000, 8, |_| Some("203.0.113.1".into())),
        app.sign_in(&other, "otto", Some("/other")),
    );
    assert_eq!(admitted(&answers), PER_CLIENT, "one client's limit");
    assert_eq!(other_signed_in.status().as_u16(), 303, "others sign in");
    assert_eq!(location(&other_signed_in), "/other");

    // Many clients at once: the global cap.
    let answers = flood(&app, 2000, 8, |i| {
        Some(format!(
            "10.{}.{}.{}",
            i / 65536 % 256,
            i / 256 % 256,
            i % 256
        ))
    })
    .await;
    let pending_before = PER_CLIENT + 1;
    assert_eq!(
        admitted(&answers),
        MAX_PENDING - pending_before,
        "sign-ins past the cap are refused"
    );
    assert_eq!(pending_records(&redis, &app.prefix).await, MAX_PENDING);

    // Redis holds at most the cap's worth: under 4 KB per pending sign-in with a 2 KB
    // return_to (the record, its key, its place in the count, its client's window; measured
    // about 3.6 KB here), whatever the flood. Without the cap it would have grown by 7 MB.
    let grown = used_memory(&redis).await - baseline;
    let bound = (MAX_PENDING * 4 * 1024 + 256 * 1024) as i64;
    assert!(
        grown <= bound,
        "Redis grew by {grown} bytes (bound {bound})"
    );

    // Nothing already pending or signed in was touched.
    let callback = idp_login(&halfway, &authorize, "hal").await;
    let done = app.follow_callback(&halfway, &callback).await;
    assert_eq!(
        done.status().as_u16(),
        303,
        "a sign-in pending before the flood"
    );
    assert_eq!(location(&done), "/halfway");
    for (browser, who) in [(&signed_in, "vera"), (&other, "otto"), (&halfway, "hal")] {
        let res = browser.get(app.url("/auth")).send().await.expect("auth");
        assert_eq!(res.status().as_u16(), 200, "{who}");
        assert_eq!(res.headers()["x-auth-request-user"], who);
    }
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
}

#[tokio::test]
async fn the_per_client_limit_counts_the_client_a_trusted_proxy_names() {
    let app = spawn_app_with(&[
        ("GATEHOUSE__PROXY__TRUSTED", "127.0.0.1/32"),
        ("GATEHOUSE__SIGNIN__PER_CLIENT_PER_MINUTE", "5"),
    ])
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let signin = |ip: &'static str| {
        client
            .get(app.url("/signin?return_to=/x"))
            .header("x-forwarded-for", ip)
            .header("accept", "text/html")
            .send()
    };
    for _ in 0..5 {
        assert_eq!(signin("198.51.100.1").await.expect("signin").status(), 303);
    }
    let refused = signin("198.51.100.1").await.expect("signin");
    assert_eq!(refused.status().as_u16(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert!(
        refused.headers().get("set-cookie").is_none(),
        "a refused sign-in sets no binding cookie"
    );
    let page = refused.text().await.expect("page");
    assert!(page.contains("rate_limited"), "{page}");
    assert!(page.contains("Too many sign-ins"), "{page}");
    // Another client behind the same proxy is not held back.
    assert_eq!(signin("198.51.100.2").await.expect("signin").status(), 303);
    // The refused client's started sign-ins are all still there.
    assert_eq!(app.keys("signin").await.len(), 6);

    // Without trusted proxies the header is the client's say-so: ignored, so every request
    // here comes from one client, 127.0.0.1 (as all users behind an untrusted proxy would).
    let untrusted = spawn_app_with(&[("GATEHOUSE__SIGNIN__PER_CLIENT_PER_MINUTE", "3")]).await;
    for i in 0..4 {
        let res = client
            .get(untrusted.url("/signin"))
            .header("x-forwarded-for", format!("192.0.2.{i}"))
            .send()
            .await
            .expect("signin");
        let expected = if i < 3 { 303 } else { 429 };
        assert_eq!(res.status().as_u16(), expected, "request {i}");
    }

    // 0: no per-client limit.
    let unlimited = spawn_app_with(&[("GATEHOUSE__SIGNIN__PER_CLIENT_PER_MINUTE", "0")]).await;
    for _ in 0..20 {
        let res = client
            .get(unlimited.url("/signin"))
            .send()
            .await
            .expect("signin");
        assert_eq!(res.status().as_u16(), 303);
    }
}

#[tokio::test]
async fn the_sign_in_limits_are_settings_with_the_contract_defaults() {
    let settings = load(base_vars()).expect("defaults load");
    assert_eq!(settings.signin.per_client_per_minute, 300);
    assert_eq!(settings.signin.max_pending, 100_000);
    for (var, bad) in [
        ("GATEHOUSE__SIGNIN__PER_CLIENT_PER_MINUTE", "-1"),
        ("GATEHOUSE__SIGNIN__PER_CLIENT_PER_MINUTE", "lots"),
        ("GATEHOUSE__SIGNIN__MAX_PENDING", "0"),
    ] {
        let mut vars = base_vars();
        vars.insert(var.into(), bad.into());
        let err = load(vars).expect_err("refused").to_string();
        assert!(err.starts_with(var), "{err}");
    }
}
