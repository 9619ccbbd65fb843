//! Helpers for `scripts/bench` (the `/auth` benchmark), built on the test harness so a sign-in
//! goes through the real development provider exactly as in the tests. Not a benchmark itself.
//!
//! `cargo bench --bench bench_support -- <command>`:
//!
//! - `sign-in <port> <prefix> [<login>]`: signs a fresh browser in at the gatehouse on
//!   127.0.0.1:<port> (whose Redis key prefix is <prefix>) as <login> at the development
//!   provider (default `bench.user+staff@example.com`: in the group `staff`) and prints
//!   `COOKIE=<Cookie header>`, `SESSION_KEY=<its Redis key>`, `SESSION_ID=<the id in the
//!   cookie>`, `SESSION_VALUE=<the whole value the cookie signs>` (the id, or the id and more,
//!   as the cookie format has it), `SUBJECT=<sub>`, `EMAIL=<email>` (both from `GET /session`)
//!   and `RECORD_BYTES=<size of the stored record>` for the shell to `eval`.
//! - `fill <prefix> <session key> <n> <cookie file>`: stores <n> more sessions under <prefix>,
//!   each a copy of that real session's record (`DUMP`/`RESTORE`: whatever the record's type)
//!   under a new random id, and writes one signed `Cookie` header per line to <cookie file>
//!   (key from `BENCH_SESSION_SECRET`, cookie name `gatehouse`), whose value is the real one
//!   (`BENCH_SESSION_VALUE`, default the id alone) with the new id in place of the real one.
//! - `startup <runs>`: start-up to ready without discovery: spawns the release binary with
//!   explicit provider URLs (no issuer) <runs> times and prints each time from spawn to the
//!   first 200 from `/readyz`, then `STARTUP_MS=<median>`.
//!
//! Redis is `GATEHOUSE_TEST_REDIS_URL` and the provider `GATEHOUSE_TEST_IDP_URL`, as in tests.

#[path = "../tests/api/helpers.rs"]
mod helpers;

use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, CookieJar, Key};
use base64::Engine;
use helpers::*;

#[tokio::main]
async fn main() {
    // `cargo bench` appends `--bench` to a harness-less bench's arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |i: usize| -> &str {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("missing argument {i}; see benches/bench_support.rs"))
    };
    match arg(0) {
        "sign-in" => {
            let login = args
                .get(3)
                .map_or("bench.user+staff@example.com", String::as_str);
            sign_in(arg(1).parse().expect("port"), arg(2), login).await
        }
        "fill" => fill(arg(1), arg(2), arg(3).parse().expect("count"), arg(4)).await,
        "startup" => startup(arg(1).parse().expect("runs")),
        other => panic!("unknown command {other}; see benches/bench_support.rs"),
    }
}

async fn sign_in(port: u16, prefix: &str, login: &str) {
    let app = TestApp::at(port, prefix.to_owned(), Default::default());
    let res = app.sign_in(&app.client, login, None).await;
    assert_eq!(res.status().as_u16(), 303, "the sign-in completes");
    let keys = app.keys("session").await;
    assert_eq!(keys.len(), 1, "exactly one session under the fresh prefix");
    // Who signed in, as the contract shows it (whatever the stored layout).
    let session: serde_json::Value = app.get("/session").await.json().await.expect("JSON");
    let mut conn = app.redis().await;
    let bytes: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .ok()
        .flatten()
        .unwrap_or(0);
    let length: u64 = redis::cmd("STRLEN")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap_or(0);
    // The jar also holds the provider's cookies (same host, other port): only ours are sent.
    let header = app.cookie_header();
    let ours: Vec<&str> = header
        .split("; ")
        .filter(|c| c.starts_with("gatehouse=") || c.starts_with("gatehouse_browser="))
        .collect();
    let id = session_id(&keys[0], prefix);
    let value = signed_value(&header, "gatehouse").expect("the session cookie");
    let text = |field: &str| {
        session[field]
            .as_str()
            .unwrap_or_default()
            .replace('\'', "")
    };
    println!("COOKIE='{}'", ours.join("; "));
    println!("SESSION_KEY='{}'", keys[0]);
    println!("SESSION_ID='{id}'");
    println!("SESSION_VALUE='{value}'");
    println!("SUBJECT='{}'", text("subject"));
    println!("EMAIL='{}'", text("email"));
    // A string record's length; else what Redis says the key takes.
    println!("RECORD_BYTES={}", if length > 0 { length } else { bytes });
}

/// What the signed cookie `name` in a `Cookie` header signs: its value, percent-decoded,
/// after the 44-character base64 HMAC.
fn signed_value(header: &str, name: &str) -> Option<String> {
    let raw = header
        .split("; ")
        .find_map(|c| c.strip_prefix(&format!("{name}=")))?;
    let value = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    value.get(44..).map(str::to_owned)
}

/// The id the cookie carries, from the Redis key `<prefix>session:<id>`, where the id may sit
/// in a hash tag (`{<id>}`, for Redis Cluster).
fn session_id<'a>(key: &'a str, prefix: &str) -> &'a str {
    key.strip_prefix(prefix)
        .and_then(|k| k.strip_prefix("session:"))
        .expect("a session key under the prefix")
        .trim_start_matches('{')
        .trim_end_matches('}')
}

async fn fill(prefix: &str, session_key: &str, n: usize, cookie_file: &str) {
    let secret = std::env::var("BENCH_SESSION_SECRET").expect("BENCH_SESSION_SECRET");
    let key = Key::from(
        &base64::engine::general_purpose::STANDARD
            .decode(secret.trim())
            .expect("base64 secret")[..],
    );
    let app = TestApp::at(0, prefix.to_owned(), Default::default());
    let mut conn = app.redis().await;
    let template: Vec<u8> = redis::cmd("DUMP")
        .arg(session_key)
        .query_async::<Option<Vec<u8>>>(&mut conn)
        .await
        .expect("DUMP")
        .expect("the real session is stored");
    // New keys are laid out like the real one, whatever gatehouse's layout is.
    let real_id = session_id(session_key, prefix);
    let real_value = std::env::var("BENCH_SESSION_VALUE").unwrap_or_else(|_| real_id.to_owned());
    let mut out = BufWriter::new(std::fs::File::create(cookie_file).expect("cookie file"));
    let started = Instant::now();
    // Pipelined in batches: 100,000 single commands would take far longer than the benchmark.
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let mut pipe = redis::pipe();
        for _ in chunk {
            let id = gatehouse::random::token();
            // An hour is plenty for the run, and they vanish by themselves if cleanup fails.
            pipe.cmd("RESTORE")
                .arg(session_key.replace(real_id, &id))
                .arg(3_600_000)
                .arg(&template)
                .ignore();
            let mut jar = CookieJar::new();
            let value = real_value.replacen(real_id, &id, 1);
            jar.signed_mut(&key).add(Cookie::new("gatehouse", value));
            let cookie = jar.get("gatehouse").expect("just added");
            writeln!(out, "{}", cookie.encoded().stripped()).expect("cookie written");
        }
        let () = pipe
            .query_async(&mut conn)
            .await
            .expect("pipelined RESTOREs");
    }
    out.flush().expect("cookie file flushed");
    eprintln!(
        "stored {n} copies of the session record ({} bytes serialised) in {:.1} s",
        template.len(),
        started.elapsed().as_secs_f64()
    );
}

/// One `GET /readyz`; the status code, or None when nothing answers yet.
fn readyz(port: u16) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn startup(runs: usize) {
    let idp = std::env::var("GATEHOUSE_TEST_IDP_URL").expect("GATEHOUSE_TEST_IDP_URL");
    let mut times = Vec::new();
    for _ in 0..runs {
        let port = dead_port();
        let mut vars = base_vars();
        vars.insert(
            "GATEHOUSE__SERVER__BIND".into(),
            format!("127.0.0.1:{port}"),
        );
        // Every endpoint explicit and no issuer: nothing is fetched at start-up.
        vars.insert("GATEHOUSE__PROVIDER__ISSUER".into(), String::new());
        vars.insert(
            "GATEHOUSE__PROVIDER__AUTH_URL".into(),
            format!("{idp}/auth"),
        );
        vars.insert(
            "GATEHOUSE__PROVIDER__TOKEN_URL".into(),
            format!("{idp}/token"),
        );
        vars.insert(
            "GATEHOUSE__PROVIDER__JWKS_URL".into(),
            format!("{idp}/jwks"),
        );
        let t0 = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .envs(&vars)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("gatehouse binary starts");
        let mut child = Running(child);
        // A tight loop: a refused connection costs microseconds, so the figure is the
        // binary's, not the poller's.
        let ms = loop {
            if readyz(port) == Some(200) {
                break t0.elapsed().as_secs_f64() * 1000.0;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "never ready");
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("gatehouse exited: {status}");
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        times.push(ms);
        drop(child);
    }
    let shown: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
    eprintln!("start-up to ready (ms), each run: {}", shown.join(" "));
    times.sort_by(f64::total_cmp);
    println!("STARTUP_MS={:.1}", times[times.len() / 2]);
}
