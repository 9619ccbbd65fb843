//! The floor gatehouse's `GET /auth` is measured against (`scripts/bench`): the least a
//! forward-auth check can do with gatehouse's building blocks (actix-web, redis-rs, the same
//! signed cookie). If gatehouse ever beats it, this file is wrong, not gatehouse fast.
//!
//! Per request: find the session cookie in the `Cookie` header, verify its HMAC-SHA256 exactly
//! as actix's signed cookies (and so actix-session's `Signed` content security) do, ONE
//! `GETEX` that also extends the idle lifetime, parse only subject, email and expiry out of a
//! flat JSON record of gatehouse's size whose token fields are skipped unread, and answer 200
//! with `X-Auth-Request-User` and `X-Auth-Request-Email`, else 401 (503 when Redis fails).
//! No middleware, no logging, no session framework.
//!
//! One Redis connection per worker, opened by `App::data_factory` on that worker's own
//! runtime: its driver task then runs on the thread that sends the commands, so no command
//! hops threads (a connection made in `main` is driven from main's thread). gatehouse does
//! the same with a per-thread connection (src/store/mod.rs). Same worker count as gatehouse
//! (actix's default), so the two differ only in per-request work.
//!
//! `baseline` serves; `baseline seed <key> <subject> <email> <bytes>` stores one record of
//! about <bytes> bytes (the size of gatehouse's record for the same user) under <key> for an
//! hour, so the record layout lives in this file only. Settings (environment):
//!
//! - `BASELINE_BIND`        listen address (default `127.0.0.1:8090`)
//! - `BASELINE_REDIS_URL`   (default `redis://127.0.0.1:6379`)
//! - `BASELINE_KEY_PREFIX`  the Redis key is `<prefix><session id>` (default `baseline:`)
//! - `BASELINE_SECRET`      base64 of at least 64 bytes: the cookie-signing key (required)
//! - `BASELINE_COOKIE_NAME` (default `gatehouse`: the same cookie works against both)
//! - `BASELINE_TTL_SECS`    idle lifetime set by each GETEX (default 86400, gatehouse's)

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::cookie::Key;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Shared, read-only settings (the connection is per worker, see `main`).
struct State {
    key: ring::hmac::Key,
    cookie_name: String,
    prefix: String,
    ttl_secs: u64,
}

/// What `/auth` reads of the record; every other field is skipped by the parser.
#[derive(serde::Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    sub: Cow<'a, str>,
    #[serde(borrow, default)]
    email: Option<Cow<'a, str>>,
    /// Unix seconds after which the session is over.
    exp: u64,
}

/// The length of the base64 HMAC-SHA256 tag that prefixes a signed cookie's value.
const TAG_LEN: usize = 44;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The raw (still percent-encoded) value of cookie `name` in a `Cookie` header.
fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (n, v) = pair.trim_start().split_once('=')?;
        (n == name).then_some(v)
    })
}

/// The session id, when the cookie's HMAC verifies. actix-web percent-encodes cookie values
/// (base64's `+`, `/`, `=`), and the cookie crate signs `base64(HMAC-SHA256(value)) + value`.
fn verified_id(state: &State, raw: &str) -> Option<String> {
    let value = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    if !value.is_char_boundary(TAG_LEN) {
        return None;
    }
    let (tag, id) = value.split_at(TAG_LEN);
    let mut mac = [0u8; 33];
    let len = base64::engine::general_purpose::STANDARD
        .decode_slice(tag, &mut mac)
        .ok()?;
    ring::hmac::verify(&state.key, id.as_bytes(), &mac[..len]).ok()?;
    Some(id.to_owned())
}

async fn auth(
    req: HttpRequest,
    state: web::Data<State>,
    redis: web::Data<ConnectionManager>,
) -> HttpResponse {
    let id = req
        .headers()
        .get(header::COOKIE)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| cookie_value(h, &state.cookie_name))
        .and_then(|raw| verified_id(&state, raw));
    let Some(id) = id else {
        return HttpResponse::Unauthorized().finish();
    };
    let mut key = String::with_capacity(state.prefix.len() + id.len());
    key.push_str(&state.prefix);
    key.push_str(&id);
    let mut conn = redis.get_ref().clone();
    let stored: Result<Option<Vec<u8>>, _> = redis::cmd("GETEX")
        .arg(key)
        .arg("EX")
        .arg(state.ttl_secs)
        .query_async(&mut conn)
        .await;
    let bytes = match stored {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return HttpResponse::Unauthorized().finish(),
        Err(_) => return HttpResponse::ServiceUnavailable().finish(),
    };
    let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
        return HttpResponse::Unauthorized().finish();
    };
    if record.exp <= now() {
        return HttpResponse::Unauthorized().finish();
    }
    let Ok(user) = HeaderValue::from_str(&record.sub) else {
        return HttpResponse::Unauthorized().finish();
    };
    let mut res = HttpResponse::Ok();
    res.insert_header(("X-Auth-Request-User", user));
    if let Some(email) = record.email.and_then(|e| HeaderValue::from_str(&e).ok()) {
        res.insert_header(("X-Auth-Request-Email", email));
    }
    res.finish()
}

fn key_from_env() -> ring::hmac::Key {
    let secret = std::env::var("BASELINE_SECRET").expect("BASELINE_SECRET is set");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret.trim())
        .expect("BASELINE_SECRET is base64");
    // The cookie crate's split of a 64-byte master key: the first 32 bytes sign.
    let key = Key::try_from(bytes.as_slice()).expect("BASELINE_SECRET has at least 64 bytes");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.signing())
}

/// gatehouse's store settings (src/store/mod.rs): bounded connect and response times.
fn redis_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(1000)))
        .set_response_timeout(Some(Duration::from_millis(1000)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(250))
}

/// A token-shaped filler (base64url characters, as in a JWT): nothing to unescape.
fn filler(len: usize, seed: u8) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..len)
        .map(|i| ALPHABET[(i * 7 + seed as usize) % ALPHABET.len()] as char)
        .collect()
}

/// The record: the three fields `/auth` reads first, then token-sized fields it skips, padded
/// so the whole is `bytes` long (or the least the fields take).
fn record(subject: &str, email: &str, bytes: usize) -> String {
    let build = |tokens: usize| {
        // Roughly how gatehouse's tokens split: an ID token, an access token, a refresh token.
        let (id_len, access_len) = (tokens / 2, tokens * 2 / 5);
        let refresh_len = tokens - id_len - access_len;
        serde_json::json!({
            "sub": subject,
            "email": email,
            "exp": now() + 3600,
            "email_verified": true,
            "name": "Bench User",
            "access_token": filler(access_len, 1),
            "id_token": filler(id_len, 2),
            "refresh_token": filler(refresh_len, 3),
            "token_expires_at": now() + 3600,
            "scopes": ["openid", "email", "profile"],
        })
        .to_string()
    };
    let short = build(300);
    build(300 + bytes.saturating_sub(short.len()))
}

async fn seed(args: &[String]) {
    let [key, subject, email, bytes] = args else {
        panic!("usage: baseline seed <key> <subject> <email> <bytes>");
    };
    let bytes: usize = bytes.parse().expect("<bytes> is a number");
    let client = redis::Client::open(env_or("BASELINE_REDIS_URL", "redis://127.0.0.1:6379"))
        .expect("a valid Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let value = record(subject, email, bytes);
    let () = redis::cmd("SET")
        .arg(key)
        .arg(&value)
        .arg("EX")
        .arg(3600)
        .query_async(&mut conn)
        .await
        .expect("SET");
    println!("stored a {} byte record", value.len());
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("seed") {
        seed(&args[1..]).await;
        return Ok(());
    }
    let bind = env_or("BASELINE_BIND", "127.0.0.1:8090");
    let client = redis::Client::open(env_or("BASELINE_REDIS_URL", "redis://127.0.0.1:6379"))
        .expect("a valid Redis URL");
    let state = web::Data::new(State {
        key: key_from_env(),
        cookie_name: env_or("BASELINE_COOKIE_NAME", "gatehouse"),
        prefix: env_or("BASELINE_KEY_PREFIX", "baseline:"),
        ttl_secs: env_or("BASELINE_TTL_SECS", "86400")
            .parse()
            .expect("BASELINE_TTL_SECS is a number"),
    });
    HttpServer::new(move || {
        let client = client.clone();
        App::new()
            .app_data(state.clone())
            // Runs on each worker's own runtime, once per worker.
            .data_factory(move || {
                ConnectionManager::new_with_config(client.clone(), redis_config())
            })
            .route("/auth", web::get().to(auth))
            .route("/healthz", web::get().to(HttpResponse::Ok))
    })
    .bind(bind)?
    .run()
    .await
}
