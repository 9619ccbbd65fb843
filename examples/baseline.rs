//! The floor gatehouse's `GET /auth` is measured against (`scripts/bench`): the least a
//! forward-auth check can do with gatehouse's building blocks. One handler: verify the
//! HMAC-signed session cookie (actix-web's signed cookie jar, a `Key` from 64+ bytes, like
//! gatehouse), ONE Redis GET on a shared `ConnectionManager` (the redis crate, configured as
//! gatehouse's store), 200 with `X-Auth-Request-User` = the stored value, else 401.
//! No middleware, no logging, no JSON.
//!
//! Same worker count as gatehouse (actix's default), so the two differ only in per-request
//! work. Settings (environment):
//!
//! - `BASELINE_BIND`        listen address (default `127.0.0.1:8090`)
//! - `BASELINE_REDIS_URL`   (default `redis://127.0.0.1:6379`)
//! - `BASELINE_KEY_PREFIX`  the Redis key is `<prefix><session id>` (default `baseline:`)
//! - `BASELINE_SECRET`      base64 of at least 64 bytes: the cookie-signing key (required)
//! - `BASELINE_COOKIE_NAME` (default `gatehouse`: the same cookie works against both)

use std::time::Duration;

use actix_web::cookie::{CookieJar, Key};
use actix_web::http::header::HeaderValue;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

struct State {
    key: Key,
    cookie_name: String,
    prefix: String,
    redis: ConnectionManager,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

async fn auth(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    // Exactly what actix-session does with a signed cookie: parse, then verify the HMAC.
    let Some(cookie) = req.cookie(&state.cookie_name) else {
        return HttpResponse::Unauthorized().finish();
    };
    let mut jar = CookieJar::new();
    jar.add_original(cookie);
    let Some(verified) = jar.signed(&state.key).get(&state.cookie_name) else {
        return HttpResponse::Unauthorized().finish();
    };
    let mut conn = state.redis.clone();
    let value: Result<Option<String>, _> = redis::cmd("GET")
        .arg(format!("{}{}", state.prefix, verified.value()))
        .query_async(&mut conn)
        .await;
    match value {
        Ok(Some(user)) => match HeaderValue::from_str(&user) {
            Ok(v) => HttpResponse::Ok()
                .insert_header(("X-Auth-Request-User", v))
                .finish(),
            Err(_) => HttpResponse::Unauthorized().finish(),
        },
        Ok(None) => HttpResponse::Unauthorized().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

fn key_from_env() -> Key {
    let secret = std::env::var("BASELINE_SECRET").expect("BASELINE_SECRET is set");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret.trim())
        .expect("BASELINE_SECRET is base64");
    Key::try_from(bytes.as_slice()).expect("BASELINE_SECRET has at least 64 bytes")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = env_or("BASELINE_BIND", "127.0.0.1:8090");
    let client = redis::Client::open(env_or("BASELINE_REDIS_URL", "redis://127.0.0.1:6379"))
        .expect("a valid Redis URL");
    // The same connection settings as gatehouse's store (src/store/mod.rs): one lazily
    // connected, multiplexed connection shared by every worker.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(1000)))
        .set_response_timeout(Some(Duration::from_millis(1000)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(250));
    let redis = ConnectionManager::new_lazy_with_config(client, config).expect("redis client");
    let state = web::Data::new(State {
        key: key_from_env(),
        cookie_name: env_or("BASELINE_COOKIE_NAME", "gatehouse"),
        prefix: env_or("BASELINE_KEY_PREFIX", "baseline:"),
        redis,
    });
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/auth", web::get().to(auth))
            .route("/healthz", web::get().to(HttpResponse::Ok))
    })
    .bind(bind)?
    .run()
    .await
}
