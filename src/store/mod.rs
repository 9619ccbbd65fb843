//! Redis: tuned connections, one per worker thread; key naming; pending sign-ins; sessions.
//!
//! Everything the service keeps lives under `REDIS__KEY_PREFIX`. Each worker thread opens a
//! connection of its own on first use (see `LINKS` for why not one shared by all): it
//! multiplexes that worker's commands, bounds every connect and command, and reconnects by
//! itself when Redis comes back. It is either a single server (`redis://`, `rediss://`, with
//! an ACL user in the URL if any) or a Redis Cluster (`REDIS__CLUSTER`/`REDIS__CLUSTER_NODES`);
//! [`Connection`] hides which, so the stores have one code path.
//!
//! Key layout: `<prefix><kind>:{<id>}` for everything that belongs to a session (its record
//! and its refresh lease), so that in a cluster all of a session's keys hash to one slot (the
//! `{…}` is a hash tag); a pending sign-in is a lone key and keeps `<prefix>signin:<state>`.

pub mod index;
pub mod locks;
pub mod logout_jti;
pub mod pending;
pub mod record;
pub mod sessions;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, TlsCertificates, Value};
use secrecy::ExposeSecret;

use crate::config::{env_name, RedisSettings};

/// Bounds chosen so that a dead Redis turns into a 503 within about a second, and a revived
/// one is used again within a second (see "Redis outage" in docs/operations.md).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Cluster only: a command may follow a `MOVED`/`ASK` redirection or a reconnect this many
/// times, all within [`RESPONSE_TIMEOUT`] overall (a failover answers 503 rather than wait).
const CLUSTER_RETRIES: u32 = 2;
const RETRY_MIN_WAIT: Duration = Duration::from_millis(50);
const RETRY_MAX_WAIT: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis is unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    #[error("stored data could not be read: {0}")]
    Corrupt(CorruptData),
    #[error("{0}")]
    Record(record::RecordError),
}

/// Why stored data could not be read: the kind of fault and where, never the data. serde_json's
/// own messages quote the offending value (`invalid type: string "…"`), and a stored value may
/// be a PKCE verifier, a nonce or a token, so they must not reach a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{category} at line {line} column {column}")]
pub struct CorruptData {
    pub category: &'static str,
    pub line: usize,
    pub column: usize,
}

impl From<serde_json::Error> for CorruptData {
    fn from(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        CorruptData {
            category: match e.classify() {
                Category::Io => "read error",
                Category::Syntax => "syntax error",
                Category::Data => "unexpected content",
                Category::Eof => "unexpected end",
            },
            line: e.line(),
            column: e.column(),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.into())
    }
}

/// Why the Redis settings cannot be used. The text names the setting and never carries a URL
/// (URLs may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("{setting} {reason}")]
pub struct ConnectError {
    setting: String,
    reason: String,
}

impl ConnectError {
    fn new(key: &str, reason: impl std::fmt::Display) -> Self {
        ConnectError {
            setting: env_name(key),
            reason: reason.to_string(),
        }
    }
}

/// Reports each command's duration and success (metrics), without knowing who listens.
pub type Observer = Arc<dyn Fn(Duration, bool) + Send + Sync>;

/// One server or a cluster, behind one type: the rest of the store has a single code path.
#[derive(Clone)]
pub enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A handle on this thread's connection that reports every command to the observer.
#[derive(Clone)]
pub struct Connection {
    link: Link,
    observer: Option<Observer>,
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let started = Instant::now();
        let observer = self.observer.clone();
        let call = match &mut self.link {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        };
        Box::pin(async move {
            let result = call.await;
            if let Some(observe) = observer {
                observe(started.elapsed(), result.is_ok());
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.link {
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

/// How to open a (lazy) connection: once per thread that uses the store.
#[derive(Clone)]
enum Opener {
    Single(redis::Client, ConnectionManagerConfig),
    Cluster(redis::cluster::ClusterClient, ClusterConfig),
}

impl Opener {
    fn open(&self) -> Result<Link, redis::RedisError> {
        Ok(match self {
            Opener::Single(client, config) => Link::Single(
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?,
            ),
            Opener::Cluster(client, config) => Link::Cluster(
                client
                    .clone()
                    .get_pending_async_connection_with_config(config.clone()),
            ),
        })
    }
}

static NEXT_STORE_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// This thread's connection per store. redis-rs spawns a connection's driver (and every
    /// reconnect) on the runtime that polls it, and an actix worker's runtime is dropped when
    /// that worker stops: a connection shared by all workers died with the first worker to stop
    /// at shutdown, under the other worker's in-flight requests. One connection per worker dies
    /// only with its own worker, and costs no hop between threads per command.
    static LINKS: std::cell::RefCell<Vec<(usize, Link)>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[derive(Clone)]
pub struct RedisStore {
    id: usize,
    opener: Opener,
    /// Opened once at start-up: proves the settings work, and serves if a thread cannot open.
    fallback: Link,
    prefix: Arc<str>,
    observer: Option<Observer>,
}

impl RedisStore {
    /// Connects lazily: start-up never waits for Redis (readiness reports it instead). Only
    /// settings that cannot work are refused here.
    pub fn connect(settings: &RedisSettings) -> Result<Self, ConnectError> {
        let ca = read_ca_file(settings)?;
        let opener = if settings.is_cluster() {
            if settings.key_prefix.contains(['{', '}']) {
                tracing::warn!(
                    "{} holds a brace: Redis Cluster would take it for a hash tag, and a \
                     session's keys might not share a slot",
                    env_name("redis.key_prefix")
                );
            }
            connect_cluster(settings, ca)?
        } else {
            connect_single(settings, ca)?
        };
        let fallback = opener
            .open()
            .map_err(|e| ConnectError::new("redis.url", format_args!("is not usable: {e}")))?;
        Ok(RedisStore {
            id: NEXT_STORE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            opener,
            fallback,
            prefix: Arc::from(settings.key_prefix.as_str()),
            observer: None,
        })
    }

    /// Every command's duration and outcome go to `observer` (the metrics).
    pub fn observed(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// `<prefix><kind>:{<id>}`: the id is a hash tag, so that every key of one id (a
    /// session's record and its lease) lives in the same cluster slot. Harmless on one server.
    pub fn key(&self, kind: &str, id: &str) -> String {
        key_for(&self.prefix, kind, id)
    }

    /// `<prefix><kind>:<id>`, for a record that shares its slot with nothing.
    pub fn lone_key(&self, kind: &str, id: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + id.len() + 1);
        key.push_str(&self.prefix);
        key.push_str(kind);
        key.push(':');
        key.push_str(id);
        key
    }

    /// Whether this is a Redis Cluster: a script there may only touch keys of one slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self.opener, Opener::Cluster(..))
    }

    /// A clone is a handle on the same multiplexed connection.
    pub fn conn(&self) -> Connection {
        let link = LINKS.with(|links| {
            let mut links = links.borrow_mut();
            if let Some((_, link)) = links.iter().find(|(id, _)| *id == self.id) {
                return link.clone();
            }
            let link = self.opener.open().unwrap_or_else(|_| self.fallback.clone());
            links.push((self.id, link.clone()));
            link
        });
        Connection {
            link,
            observer: self.observer.clone(),
        }
    }

    /// One server: PING. A cluster: PING every primary (all must answer).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

/// The name [`RedisStore::key`] gives (public for tests and tools that inspect Redis).
pub fn key_for(prefix: &str, kind: &str, id: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + kind.len() + id.len() + 3);
    key.push_str(prefix);
    key.push_str(kind);
    key.push_str(":{");
    key.push_str(id);
    key.push('}');
    key
}

fn is_tls_url(url: &str) -> bool {
    url.get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
}

/// The CA bundle for `rediss://`, when one is set; refused with plain `redis://` URLs (a CA
/// that is never used would hide a connection that is not encrypted).
fn read_ca_file(settings: &RedisSettings) -> Result<Option<Vec<u8>>, ConnectError> {
    let Some(path) = &settings.ca_file else {
        return Ok(None);
    };
    let plain = if settings.is_cluster() {
        settings
            .cluster_nodes
            .iter()
            .any(|n| !is_tls_url(n.expose_secret()))
    } else {
        !is_tls_url(settings.url.expose_secret())
    };
    if plain {
        let urls = if settings.is_cluster() {
            "redis.cluster_nodes"
        } else {
            "redis.url"
        };
        return Err(ConnectError::new(
            "redis.ca_file",
            format_args!("is set, but {} is not rediss:// (TLS)", env_name(urls)),
        ));
    }
    let pem = std::fs::read(path).map_err(|e| {
        ConnectError::new(
            "redis.ca_file",
            format_args!("cannot be read ({}): {e}", path.display()),
        )
    })?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(ConnectError::new(
            "redis.ca_file",
            format_args!("({}) holds no PEM certificate", path.display()),
        ));
    }
    Ok(Some(pem))
}

fn tls_certificates(ca: Vec<u8>) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(ca),
    }
}

fn connect_single(settings: &RedisSettings, ca: Option<Vec<u8>>) -> Result<Opener, ConnectError> {
    let url = settings.url.expose_secret();
    // The crate's URL errors name what is wrong ("Invalid database number"), never the URL.
    let client = match ca {
        Some(ca) => redis::Client::build_with_tls(url, tls_certificates(ca)),
        None => redis::Client::open(url),
    }
    .map_err(|e| ConnectError::new("redis.url", format_args!("is not usable: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(RETRY_MIN_WAIT)
        .set_max_delay(RETRY_MAX_WAIT);
    Ok(Opener::Single(client, config))
}

fn connect_cluster(settings: &RedisSettings, ca: Option<Vec<u8>>) -> Result<Opener, ConnectError> {
    let nodes: Vec<&str> = settings
        .cluster_nodes
        .iter()
        .map(|n| n.expose_secret())
        .collect();
    let mut builder = ClusterClient::builder(nodes)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .overall_response_timeout(Some(RESPONSE_TIMEOUT))
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(RETRY_MIN_WAIT.as_millis() as u64)
        .max_retry_wait(RETRY_MAX_WAIT.as_millis() as u64);
    if let Some(ca) = ca {
        builder = builder.certs(tls_certificates(ca));
    }
    // The builder's messages ("Cannot use different password among initial nodes") quote
    // no URL.
    let client = builder.build().map_err(|e| {
        ConnectError::new("redis.cluster_nodes", format_args!("are not usable: {e}"))
    })?;
    // The per-connection bounds must be given again here: this config replaces them.
    let config = ClusterConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT);
    Ok(Opener::Cluster(client, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_carry_the_id_as_a_hash_tag() {
        assert_eq!(key_for("gh:", "session", "abc"), "gh:session:{abc}");
        assert_eq!(key_for("", "lock", "abc"), "lock:{abc}");
    }

    #[test]
    fn a_corrupt_record_is_described_without_its_content() {
        let secret = "pkce-verifier-that-must-not-be-logged";
        let raw = format!(r#"{{"created_at":"{secret}"}}"#);
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Record {
            created_at: u64,
        }
        let e = serde_json::from_str::<Record>(&raw).expect_err("a string is not a number");
        assert!(
            e.to_string().contains(secret),
            "serde quotes the value: {e}"
        );
        let described = StoreError::from(e).to_string();
        assert!(!described.contains(secret), "{described}");
        assert!(
            described.contains("unexpected content at line 1 column"),
            "{described}"
        );
    }

    #[test]
    fn tls_urls_are_recognised_whatever_the_case() {
        assert!(is_tls_url("rediss://h:1"));
        assert!(is_tls_url("REDISS://h:1"));
        assert!(!is_tls_url("redis://h:1"));
        assert!(!is_tls_url("rediss"));
    }
}
