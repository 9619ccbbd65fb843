//! Liveness and readiness, and failing closed when Redis is dead or hung.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::Url;

use crate::helpers::*;

/// Bound on any answer while Redis is dead or hung: the probe and the proxy must not hang.
const DEAD_STORE_BOUND: Duration = Duration::from_secs(5);

#[tokio::test]
async fn healthz_is_200_json() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_is_200_with_a_live_redis() {
    let app = spawn_app().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["status"], "ready");
}

/// GETs `path` (with `cookie`, if any) and checks it is answered within the bound.
async fn timed_get(app: &TestApp, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(app.url(path));
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let started = Instant::now();
    let res = req
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("answered");
    let took = started.elapsed();
    assert!(
        took < DEAD_STORE_BOUND,
        "{path} took {took:?} with Redis dead"
    );
    res
}

#[tokio::test]
async fn readyz_is_503_quickly_when_nothing_listens_on_the_redis_port() {
    let url = format!("redis://127.0.0.1:{}", dead_port());
    let app = spawn_app_with(&[("GATEHOUSE__REDIS__URL", &url)]).await;
    let res = timed_get(&app, "/readyz", None).await;
    assert_json_error(res, 503, "store_unavailable").await;

    // Liveness does not depend on Redis.
    let res = timed_get(&app, "/healthz", None).await;
    assert_eq!(res.status().as_u16(), 200);
}

#[tokio::test]
async fn readyz_is_503_quickly_when_redis_hangs() {
    let hole = BlackHole::start();
    let app = spawn_app_with(&[("GATEHOUSE__REDIS__URL", &hole.redis_url())]).await;
    let res = timed_get(&app, "/readyz", None).await;
    assert!(
        hole.accepted() >= 1,
        "readiness really tried the hung Redis"
    );
    assert_json_error(res, 503, "store_unavailable").await;

    let res = timed_get(&app, "/healthz", None).await;
    assert_eq!(res.status().as_u16(), 200);

    // Still failing (not hanging) on the next probe.
    let res = timed_get(&app, "/readyz", None).await;
    assert_json_error(res, 503, "store_unavailable").await;
}

#[tokio::test]
async fn readyz_stays_200_over_repeated_probes() {
    // Many probes in a row share the one connection and all succeed.
    let app = spawn_app().await;
    for _ in 0..20 {
        assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
    }
}

#[tokio::test]
async fn signin_is_503_when_redis_is_dead() {
    let url = format!("redis://127.0.0.1:{}", dead_port());
    let app = spawn_app_with(&[("GATEHOUSE__REDIS__URL", &url)]).await;
    let res = timed_get(&app, "/signin", None).await;
    assert!(res.headers().get("location").is_none());
    assert_json_error(res, 503, "store_unavailable").await;
}

/// A signed-in cookie (from an app on the real Redis) and the settings that make it valid.
async fn signed_in_cookie(secret: &str, prefix: &str) -> String {
    let app = spawn_app_with_idp(&[
        ("GATEHOUSE__SESSION__SECRET", secret),
        ("GATEHOUSE__REDIS__KEY_PREFIX", prefix),
    ])
    .await;
    let res = app.sign_in(&app.client, "alice", None).await;
    assert_eq!(res.status().as_u16(), 303, "signed in");
    let cookie = app.cookie_header();
    assert!(cookie.contains("gatehouse="), "{cookie}");
    cookie
}

#[tokio::test]
async fn a_signed_in_cookie_gets_503_not_200_when_redis_is_dead_or_hung() {
    let secret = session_secret();
    let prefix = unique_prefix();
    let cookie = signed_in_cookie(&secret, &prefix).await;

    // Control: another instance with the same secret and Redis accepts the cookie.
    let live = spawn_app_with(&[
        ("GATEHOUSE__SESSION__SECRET", &secret),
        ("GATEHOUSE__REDIS__KEY_PREFIX", &prefix),
    ])
    .await;
    let res = timed_get(&live, "/auth", Some(&cookie)).await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-auth-request-user"], "alice");

    let dead_url = format!("redis://127.0.0.1:{}", dead_port());
    let hole = BlackHole::start();
    let hung_url = hole.redis_url();
    for redis_url in [dead_url.as_str(), hung_url.as_str()] {
        let app = spawn_app_with(&[
            ("GATEHOUSE__SESSION__SECRET", &secret),
            ("GATEHOUSE__REDIS__KEY_PREFIX", &prefix),
            ("GATEHOUSE__REDIS__URL", redis_url),
        ])
        .await;
        for path in ["/auth", "/session"] {
            let res = timed_get(&app, path, Some(&cookie)).await;
            assert!(
                res.headers().get("x-auth-request-user").is_none(),
                "{path} with {redis_url}"
            );
            assert_json_error(res, 503, "store_unavailable").await;
        }
    }
    assert!(hole.accepted() >= 1, "the hung Redis was really asked");
}

/// A TCP relay to the real Redis that can be switched off (existing connections cut, new ones
/// closed at once) and on again: Redis going away and coming back.
struct SwitchableRedis {
    port: u16,
    /// `None` while down; the open relayed sockets while up.
    live: Arc<Mutex<Option<Vec<TcpStream>>>>,
}

impl SwitchableRedis {
    fn start() -> SwitchableRedis {
        let target = Url::parse(&redis_url()).expect("redis url");
        let target = format!(
            "{}:{}",
            target.host_str().expect("redis host"),
            target.port().unwrap_or(6379)
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay binds");
        let port = listener.local_addr().expect("addr").port();
        let live = Arc::new(Mutex::new(Some(Vec::new())));
        let relays = live.clone();
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                let mut live = relays.lock().unwrap();
                let Some(open) = live.as_mut() else {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                };
                let Ok(outbound) = TcpStream::connect(&target) else {
                    continue;
                };
                for (from, to) in [(&inbound, &outbound), (&outbound, &inbound)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
                open.push(inbound);
                open.push(outbound);
            }
        });
        SwitchableRedis { port, live }
    }

    /// The app's Redis URL: the real one, through the relay.
    fn url(&self) -> String {
        let mut url = Url::parse(&redis_url()).expect("redis url");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(self.port)).expect("port");
        url.to_string()
    }

    fn down(&self) {
        if let Some(open) = self.live.lock().unwrap().take() {
            for socket in open {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }

    fn up(&self) {
        self.live.lock().unwrap().get_or_insert_with(Vec::new);
    }
}

impl Drop for SwitchableRedis {
    fn drop(&mut self) {
        self.down();
    }
}

/// Polls `path` until it answers `status`, for at most `bound`.
async fn eventually(app: &TestApp, path: &str, cookie: Option<&str>, status: u16, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        let mut req = reqwest::Client::new().get(app.url(path));
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        let got = req.send().await.expect("answered").status().as_u16();
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {got}, not {status}, after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_service_fails_closed_while_redis_is_away_and_recovers_when_it_returns() {
    let redis = SwitchableRedis::start();
    let app = spawn_app_with_idp(&[("GATEHOUSE__REDIS__URL", &redis.url())]).await;
    let res = app.sign_in(&app.client, "alice", None).await;
    assert_eq!(res.status().as_u16(), 303, "signed in through the relay");
    let cookie = app.cookie_header();
    assert_eq!(
        timed_get(&app, "/readyz", None).await.status().as_u16(),
        200
    );
    assert_eq!(
        timed_get(&app, "/auth", Some(&cookie))
            .await
            .status()
            .as_u16(),
        200
    );

    redis.down();
    for path in ["/readyz", "/auth", "/session"] {
        let res = timed_get(&app, path, Some(&cookie)).await;
        assert_json_error(res, 503, "store_unavailable").await;
    }
    assert_eq!(
        timed_get(&app, "/healthz", None).await.status().as_u16(),
        200
    );

    redis.up();
    eventually(&app, "/readyz", None, 200, DEAD_STORE_BOUND).await;
    eventually(&app, "/auth", Some(&cookie), 200, DEAD_STORE_BOUND).await;
    let res = timed_get(&app, "/auth", Some(&cookie)).await;
    assert_eq!(res.headers()["x-auth-request-user"], "alice");
}
