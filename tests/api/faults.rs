//! Faults production brings: the identity provider down (signed-in users keep working, new
//! sign-ins fail with a clear answer), and SIGTERM in the middle of load (no request the server
//! has taken in is dropped; the process exits 0).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use url::Url;

use crate::helpers::*;

// ---- The provider down ----

/// `GET path` with this `Cookie` header (no jar), as an API client or as a browser.
async fn get_with_cookie(app: &TestApp, path: &str, cookie: &str, html: bool) -> reqwest::Response {
    let mut req = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url(path))
        .header("cookie", cookie);
    if html {
        req = req.header("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
    }
    req.send().await.expect("answered")
}

/// A second instance of the same deployment (same session secret, same Redis prefix) whose
/// provider is unreachable: every provider URL points at a port where nothing listens.
async fn instance_with_the_provider_down(of: &TestApp) -> TestApp {
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let (auth, token, jwks) = (
        format!("{dead}/authorize"),
        format!("{dead}/token"),
        format!("{dead}/jwks"),
    );
    spawn_app_with(&[
        (
            "GATEHOUSE__SESSION__SECRET",
            &of.vars["GATEHOUSE__SESSION__SECRET"],
        ),
        ("GATEHOUSE__REDIS__KEY_PREFIX", &of.prefix),
        ("GATEHOUSE__PROVIDER__AUTH_URL", &auth),
        ("GATEHOUSE__PROVIDER__TOKEN_URL", &token),
        ("GATEHOUSE__PROVIDER__JWKS_URL", &jwks),
    ])
    .await
}

#[tokio::test]
async fn with_the_provider_down_signed_in_users_keep_working() {
    let up = spawn_app_with_idp(&[]).await;
    let res = up.sign_in(&up.client, "still-here", None).await;
    assert_eq!(res.status().as_u16(), 303, "signed in at the real provider");
    let cookie = up.cookie_header();
    let me: serde_json::Value = get_with_cookie(&up, "/session", &cookie, false)
        .await
        .json()
        .await
        .expect("session JSON");
    let subject = me["subject"].as_str().expect("a subject").to_owned();

    let down = instance_with_the_provider_down(&up).await;
    // A failed sign-in by someone else in between changes nothing for this user.
    for round in 0..3 {
        let res = get_with_cookie(&down, "/auth", &cookie, false).await;
        assert_eq!(res.status().as_u16(), 200, "/auth, round {round}");
        assert_eq!(res.headers()["x-auth-request-user"], subject.as_str());
        let res = get_with_cookie(&down, "/session", &cookie, false).await;
        assert_eq!(res.status().as_u16(), 200, "/session, round {round}");
        let body: serde_json::Value = res.json().await.expect("session JSON");
        assert_eq!(body["subject"], subject.as_str());
        let page = get_with_cookie(&down, "/", &cookie, true).await;
        assert_eq!(page.status().as_u16(), 200);

        let stranger = browser();
        let authorize = down.start_sign_in(&stranger, None).await;
        let state = query_param(&authorize, "state").expect("state");
        let res = stranger
            .get(down.url(&format!("/redirect?code=x&state={state}")))
            .send()
            .await
            .expect("answered");
        assert_json_error(res, 502, "exchange_failed").await;
    }

    // Signing out needs no provider either (no revocation endpoint configured here).
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(down.url("/signout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status().as_u16(), 303);
    let res = get_with_cookie(&up, "/auth", &cookie, false).await;
    assert_eq!(res.status().as_u16(), 401, "signed out on every instance");
}

#[tokio::test]
async fn with_the_provider_down_a_sign_in_fails_with_a_clear_answer() {
    let up = spawn_app_with_idp(&[]).await;
    let down = instance_with_the_provider_down(&up).await;

    // The start still works: the authorize URL is just a URL.
    let (browser_client, _jar) = browser_with_jar();
    let authorize = down.start_sign_in(&browser_client, Some("/app")).await;
    assert!(
        authorize.starts_with("http://127.0.0.1:") && authorize.contains("/authorize?"),
        "{authorize}"
    );
    let state = query_param(&authorize, "state").expect("state");

    // A browser coming back (say the provider answered, then fell over before the exchange)
    // gets a page that says what happened and offers to start again. (Nothing listens at the
    // provider's address: the connection is refused at once, nothing to wait for.)
    let res = browser_client
        .get(down.url(&format!("/redirect?code=x&state={state}")))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status().as_u16(), 502);
    assert!(res.headers()["content-type"]
        .to_str()
        .expect("text")
        .starts_with("text/html"));
    assert!(
        res.headers()
            .get("set-cookie")
            .is_none_or(|c| !c.to_str().unwrap_or_default().starts_with("gatehouse=")),
        "no session cookie"
    );
    let page = res.text().await.expect("page");
    assert!(page.contains("exchange_failed"), "{page}");
    assert!(page.contains("Sign in again"), "{page}");
    assert!(page.contains("href=\"/signin"), "{page}");
    // Nobody got signed in.
    let res = browser_client
        .get(down.url("/auth"))
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status().as_u16(), 401);

    // An API client gets the JSON error.
    let authorize = down.start_sign_in(&down.client, None).await;
    let state = query_param(&authorize, "state").expect("state");
    let res = down.get(&format!("/redirect?code=x&state={state}")).await;
    let body = assert_json_error(res, 502, "exchange_failed").await;
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no internals: {body}"
    );

    // The same deployment with its provider up still signs people in.
    let res = up.sign_in(&up.client, "fine", None).await;
    assert_eq!(res.status().as_u16(), 303);
}

// ---- SIGTERM under load ----

/// A TCP relay in front of Redis that can hold gatehouse's commands: while paused, what
/// gatehouse sends is kept (and recorded) instead of forwarded, so a request waiting on Redis
/// stays in flight inside gatehouse for as long as the test wants; on resume it is forwarded
/// in order. Commands forwarded before the pause are answered as usual. What gatehouse sent
/// while paused is the proof that a given request was taken in by the server.
struct RedisGate {
    port: u16,
    paused: watch::Sender<bool>,
    seen: Arc<Mutex<Vec<u8>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl RedisGate {
    async fn start(upstream: String) -> RedisGate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("gate binds");
        let port = listener.local_addr().expect("addr").port();
        let (paused, _) = watch::channel(false);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (paused_tx, seen_all) = (paused.clone(), seen.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let (mut paused_rx, seen) = (paused_tx.subscribe(), seen_all.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut held: Vec<u8> = Vec::new();
                    loop {
                        tokio::select! {
                            read = from_client.read(&mut buf) => {
                                let n = match read {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => n,
                                };
                                if *paused_rx.borrow() {
                                    seen.lock().expect("lock").extend_from_slice(&buf[..n]);
                                    held.extend_from_slice(&buf[..n]);
                                    continue;
                                }
                                held.extend_from_slice(&buf[..n]);
                            }
                            changed = paused_rx.changed() => {
                                if changed.is_err() {
                                    break;
                                }
                                if *paused_rx.borrow_and_update() {
                                    continue;
                                }
                            }
                        }
                        if !held.is_empty() {
                            if to_server.write_all(&held).await.is_err() {
                                break;
                            }
                            held.clear();
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                });
            }
        });
        RedisGate {
            port,
            paused,
            seen,
            accept,
        }
    }

    fn pause(&self) {
        self.seen.lock().expect("lock").clear();
        self.paused.send_replace(true);
    }

    fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Whether gatehouse sent `needle` to Redis since the pause.
    fn saw(&self, needle: &str) -> bool {
        let seen = self.seen.lock().expect("lock");
        seen.windows(needle.len()).any(|w| w == needle.as_bytes())
    }
}

impl Drop for RedisGate {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// How one request of the load ended.
#[derive(Debug, Clone)]
#[allow(dead_code)] // the reasons are for the failure report (Debug)
enum Attempt {
    /// A whole answer (`error`: the code of an error answer).
    Answered {
        status: u16,
        closes: bool,
        error: Option<String>,
        /// Its X-Request-Id, to find what gatehouse logged about it.
        request_id: Option<String>,
    },
    /// A new connection refused: the server no longer listens.
    Refused,
    /// Any other failure to connect.
    ConnectFailed(String),
    /// The request could not be written: the server had closed the connection.
    WriteFailed(String),
    /// The connection ended before a single byte of an answer.
    NoAnswer(String),
    /// Part of an answer, then the end: always a failure.
    Partial(String),
}

#[derive(Debug, Clone)]
struct Outcome {
    seq: i64,
    /// When the outcome was known, and how long after the request was sent.
    at: Instant,
    took: Duration,
    attempt: Attempt,
}

/// One client of the load: sequential requests over a keep-alive connection, reconnecting
/// when the server closes it, until a connection is refused (the server stopped listening)
/// or `stop` is set.
struct Loader {
    path: &'static str,
    cookie: Option<String>,
    /// Requests answered so far.
    answered: Arc<AtomicUsize>,
    /// The sequence number of the request in flight, or -1.
    in_flight: Arc<AtomicI64>,
}

impl Loader {
    async fn run(self, port: u16, stop: Arc<AtomicBool>) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        let mut conn: Option<TcpStream> = None;
        let mut extra = vec![];
        if let Some(cookie) = &self.cookie {
            extra.push(("Cookie", cookie.as_str()));
        }
        let request = raw_get(self.path, &extra);
        let mut seq: i64 = 0;
        let mut sent = Instant::now();
        let mut record = |seq: i64, sent: Instant, attempt: Attempt| {
            outcomes.push(Outcome {
                seq,
                at: Instant::now(),
                took: sent.elapsed(),
                attempt,
            })
        };
        while !stop.load(Ordering::SeqCst) {
            let stream = match conn.as_mut() {
                Some(stream) => stream,
                None => match TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        conn.insert(stream)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        record(seq, sent, Attempt::Refused);
                        break;
                    }
                    Err(e) => {
                        record(seq, sent, Attempt::ConnectFailed(e.to_string()));
                        break;
                    }
                },
            };
            self.in_flight.store(seq, Ordering::SeqCst);
            sent = Instant::now();
            if let Err(e) = stream.write_all(&request).await {
                record(seq, sent, Attempt::WriteFailed(e.to_string()));
                conn = None;
            } else {
                match read_raw_response(stream, Duration::from_secs(20)).await {
                    RawRead::Complete(res) => {
                        let closes = res.closes();
                        let error = serde_json::from_slice::<serde_json::Value>(&res.body)
                            .ok()
                            .and_then(|b| b["error"].as_str().map(str::to_owned));
                        let request_id = res.header("x-request-id").map(str::to_owned);
                        record(
                            seq,
                            sent,
                            Attempt::Answered {
                                status: res.status,
                                closes,
                                error,
                                request_id,
                            },
                        );
                        self.answered.fetch_add(1, Ordering::SeqCst);
                        if closes {
                            conn = None;
                        }
                    }
                    RawRead::NoAnswer(why) => {
                        record(seq, sent, Attempt::NoAnswer(why));
                        conn = None;
                    }
                    RawRead::Partial { got, why } => {
                        let got = String::from_utf8_lossy(&got).into_owned();
                        record(seq, sent, Attempt::Partial(format!("{why}; got {got:?}")));
                        conn = None;
                    }
                }
            }
            self.in_flight.store(-1, Ordering::SeqCst);
            seq += 1;
        }
        outcomes
    }
}

/// Polls `done` every few milliseconds, up to `bound`; panics with `what` on time-out.
async fn wait_until(bound: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The request ids for which gatehouse logged (JSON, a warning or an error in the request's
/// span) that a Redis reply did not come within its bound ("timed out"). A held `/auth`
/// answered 503 is fail-closed and right exactly when this happened to it: when the hold
/// outlasted gatehouse's reply bound, which a loaded machine may make it do. A 503 for any
/// other reason (say, the Redis connection torn down under the request by the shutdown) is a
/// failure. Decided by what gatehouse reports, not by the test's clock.
fn redis_timeouts(logs: &[String]) -> std::collections::HashSet<String> {
    logs.iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|l| matches!(l["level"].as_str(), Some("WARN" | "ERROR")))
        .filter(|l| l.to_string().contains("timed out"))
        .filter_map(|l| l["span"]["request_id"].as_str().map(str::to_owned))
        .collect()
}

/// SIGTERM in the middle of keep-alive load on /healthz and /auth: every request the server
/// has taken in gets a whole answer, and the process exits 0.
///
/// What a client can observe, and how this test knows which requests the server had taken
/// in: a request that gets no byte of an answer after the shutdown began may be one the
/// server never read (it was still in the kernel's buffers when the server closed an idle
/// keep-alive connection, or it came on a new connection once the server stopped listening)
/// — HTTP/1.1 lets clients retry those (RFC 9112, 9.3.1). So it cannot prove a drop by
/// itself. Proof comes from Redis: each /auth client has its own session; while a relay holds
/// gatehouse's Redis commands, a request whose session key reaches the relay is certainly
/// inside gatehouse. SIGTERM is sent while one such request per /auth client is held; once
/// the server is shutting down (its idle keep-alive connections closed), the commands flow
/// again, and each of those requests must be answered 200, completely.
///
/// Failures: any partial answer; any status other than 200 (save a 503 `store_unavailable` to
/// an /auth whose Redis reply gatehouse logged as timed out: see `redis_timeouts`); any
/// refused, failed or unanswered request before SIGTERM; a held request not answered; an exit
/// status other than 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_drops_no_request_the_server_has_taken_in() {
    const AUTH_CLIENTS: usize = 4;
    const HEALTH_CLIENTS: usize = 4;
    const IDLE_PROBES: usize = 6;

    // Redis behind the gate.
    let real = Url::parse(&redis_url()).expect("redis url");
    let upstream = format!(
        "{}:{}",
        real.host_str().expect("redis host"),
        real.port().unwrap_or(6379)
    );
    let gate = RedisGate::start(upstream).await;
    let mut gated = real.clone();
    gated.set_host(Some("127.0.0.1")).expect("host");
    gated.set_port(Some(gate.port)).expect("port");

    let idp = idp();
    let dir = TempDir::new();
    let mut vars = base_vars();
    for (k, v) in [
        ("GATEHOUSE__LOG__FORMAT", "json"),
        ("GATEHOUSE__PROVIDER__ISSUER", idp.issuer.as_str()),
        ("GATEHOUSE__PROVIDER__AUTH_URL", ""),
        ("GATEHOUSE__PROVIDER__TOKEN_URL", ""),
        ("GATEHOUSE__REDIS__URL", gated.as_str()),
    ] {
        vars.insert(k.to_owned(), v.to_owned());
    }
    let prefix = vars["GATEHOUSE__REDIS__KEY_PREFIX"].clone();
    let mut started = start_binary(&vars, &dir);
    let port = started.port;
    let app = TestApp::at(port, prefix.clone(), vars.clone());
    app.wait_for_provider().await;

    // One signed-in user per /auth client.
    let mut cookies = Vec::new();
    for i in 0..AUTH_CLIENTS {
        let (client, jar) = browser_with_jar();
        let res = app.sign_in(&client, &format!("load-{i}"), None).await;
        assert_eq!(res.status().as_u16(), 303, "user {i} signed in");
        let url = Url::parse(&app.address).expect("url");
        let header = reqwest::cookie::CookieStore::cookies(&*jar, &url)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
            .expect("cookies");
        cookies.push(header);
    }
    let session_ids: Vec<String> = {
        let mut conn = app.redis().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}session:*"))
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        keys.iter()
            .map(|k| {
                k.trim_start_matches(&format!("{prefix}session:"))
                    .trim_matches(['{', '}'])
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(session_ids.len(), AUTH_CLIENTS, "one session per user");

    // Idle keep-alive connections: the server closes them when its shutdown begins.
    let mut probes = Vec::new();
    for _ in 0..IDLE_PROBES {
        let mut probe = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("probe connects");
        probe
            .write_all(&raw_get("/healthz", &[]))
            .await
            .expect("probe request");
        match read_raw_response(&mut probe, Duration::from_secs(10)).await {
            RawRead::Complete(res) => assert!(res.status == 200 && !res.closes(), "{res:?}"),
            other => panic!("probe: {other:?}"),
        }
        probes.push(probe);
    }

    // The load.
    let stop = Arc::new(AtomicBool::new(false));
    let mut loaders = Vec::new();
    let mut auth_in_flight = Vec::new();
    let mut answered = Vec::new();
    let clients = cookies
        .iter()
        .map(|cookie| ("/auth", Some(cookie.clone())))
        .chain((0..HEALTH_CLIENTS).map(|_| ("/healthz", None)));
    for (i, (path, cookie)) in clients.enumerate() {
        let loader = Loader {
            path,
            cookie,
            answered: Arc::new(AtomicUsize::new(0)),
            in_flight: Arc::new(AtomicI64::new(-1)),
        };
        if i < AUTH_CLIENTS {
            auth_in_flight.push(loader.in_flight.clone());
        }
        answered.push(loader.answered.clone());
        loaders.push((path, tokio::spawn(loader.run(port, stop.clone()))));
    }
    wait_until(Duration::from_secs(20), "the load to get going", || {
        answered.iter().all(|a| a.load(Ordering::SeqCst) >= 20)
    })
    .await;

    // Hold Redis until one request per /auth client is provably inside gatehouse.
    gate.pause();
    wait_until(
        Duration::from_secs(5),
        "every /auth client's request to reach Redis",
        || session_ids.iter().all(|id| gate.saw(id)),
    )
    .await;
    let held: Vec<i64> = auth_in_flight
        .iter()
        .map(|f| f.load(Ordering::SeqCst))
        .collect();
    assert!(held.iter().all(|s| *s >= 0), "held requests: {held:?}");
    // The probes must still be open (not closed by the keep-alive timeout meanwhile), or they
    // could not tell when the shutdown begins.
    for probe in &probes {
        let mut byte = [0u8; 1];
        match probe.try_read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("an idle probe closed before SIGTERM: {other:?}"),
        }
    }

    let sigterm_at = Instant::now();
    started.child.sigterm();
    // Shutdown has begun once the server has closed its idle connections.
    for probe in &mut probes {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), probe.read(&mut byte))
            .await
            .expect("the server closes idle keep-alive connections on SIGTERM");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "an idle connection got bytes: {read:?}"
        );
    }
    gate.resume();

    let mut results = Vec::new();
    for (path, loader) in loaders {
        let outcomes = tokio::time::timeout(Duration::from_secs(60), loader)
            .await
            .unwrap_or_else(|_| panic!("a {path} client never finished"))
            .expect("loader task");
        results.push((path, outcomes));
    }
    stop.store(true, Ordering::SeqCst);
    let exit = started.child.wait_exit(Duration::from_secs(40));
    let mut logs = started.early.clone();
    while let Ok(line) = started.lines.recv_timeout(Duration::from_secs(5)) {
        logs.push(line); // until the reader sees EOF and hangs up
    }
    let warnings: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
        .collect();
    let timed_out = redis_timeouts(&logs);
    let fail_closed = |attempt: &Attempt| {
        matches!(attempt, Attempt::Answered { status: 503, error: Some(e), request_id: Some(id), .. }
            if e == "store_unavailable" && timed_out.contains(id))
    };

    // Every answer whole and right; failures only once the shutdown began; the held requests
    // answered.
    let mut failures = Vec::new();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for (i, (path, outcomes)) in results.iter().enumerate() {
        for o in outcomes {
            let kind = match &o.attempt {
                Attempt::Answered { status, .. } => format!("{path} {status}"),
                Attempt::Refused => format!("{path} refused"),
                Attempt::ConnectFailed(_) => format!("{path} connect failed"),
                Attempt::WriteFailed(_) => format!("{path} write failed"),
                Attempt::NoAnswer(_) => format!("{path} no answer"),
                Attempt::Partial(_) => format!("{path} partial"),
            };
            *counts.entry(kind).or_default() += 1;
            let before_sigterm = o.at < sigterm_at;
            match &o.attempt {
                Attempt::Answered { status: 200, .. } => {}
                // Held past gatehouse's Redis bound (it says so): fail-closed is right.
                attempt if *path == "/auth" && fail_closed(attempt) => {}
                Attempt::Answered { status, error, .. } => failures.push(format!(
                    "client {i} {path} #{}: status {status} {error:?} after {:?}",
                    o.seq, o.took
                )),
                Attempt::Partial(why) => {
                    failures.push(format!("client {i} {path} #{}: partial: {why}", o.seq))
                }
                other if before_sigterm => failures.push(format!(
                    "client {i} {path} #{}: {other:?} before SIGTERM",
                    o.seq
                )),
                _ => {}
            }
        }
        if i < AUTH_CLIENTS {
            let seq = held[i];
            let held_outcome = outcomes.iter().find(|o| o.seq == seq);
            match held_outcome.map(|o| &o.attempt) {
                Some(Attempt::Answered { status: 200, .. }) => {}
                Some(attempt) if fail_closed(attempt) => {}
                _ => failures.push(format!(
                    "client {i} /auth #{seq}, in flight at SIGTERM: {held_outcome:?}"
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}\nall outcomes: {counts:#?}\n\
         gatehouse's warnings: {warnings:#?}",
        failures.len()
    );
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}");
    assert!(
        logs.iter().any(|l| l.contains("gatehouse stopped")),
        "the process said it stopped"
    );
}
