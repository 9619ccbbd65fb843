//! The durable directory: who has signed in, who is blocked, and the audit trail, in SQL.
//!
//! SQLite (one embedded file, the default) or PostgreSQL (several instances), chosen by
//! `DATABASE__URL`. Every query is written once with `$N` placeholders, which both drivers
//! accept, and run on whichever pool is configured ([`with_pool!`]). Queries are built at run
//! time (no `query!` macros), so building gatehouse needs no database.
//!
//! Serving depends on Redis only: the pool connects lazily, nothing on the request path waits on
//! the database for more than [`BLOCKED_CHECK_BOUND`], and audit events go through a bounded
//! queue ([`audit::Audit`]). Only the start-up migration (when `DATABASE__MIGRATE` is on) needs
//! the database to answer.

pub mod admin;
pub mod audit;
pub mod events;
mod migrate;
pub mod users;
mod writer;

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::config::{env_name, DatabaseSettings, Engine};

pub use audit::{Audit, AuditEvent, AuditMetrics, EventKind, SeenUser};
pub use events::{AuditFilter, AuditRecord};
pub use users::{Blocked, User};

/// How long a sign-in may wait to learn whether its user is blocked; past it the answer is
/// [`Blocked::Unknown`] (the contract: a database outage never delays a sign-in by more than a
/// second).
pub const BLOCKED_CHECK_BOUND: Duration = Duration::from_millis(500);
/// After the blocked check found the database away, how long it answers `Unknown` at once.
pub const AWAY_PAUSE: Duration = Duration::from_secs(5);
/// A connection from the pool, or give up (the writer retries, readers answer "unknown").
const ACQUIRE_BOUND: Duration = Duration::from_secs(3);
/// Connecting for a migration (start-up, `gatehouse migrate`): long enough for a database on
/// another continent, short enough that a wrong URL fails start-up promptly.
const MIGRATE_CONNECT_BOUND: Duration = Duration::from_secs(10);
/// SQLite: how long a statement waits for another connection's write lock. The writer retries
/// after it; nothing on a request path waits this long (see [`BLOCKED_CHECK_BOUND`]).
/// How long a SQLite write waits for another writer (the audit writer's batch, an operator's
/// command). Below the writer's own bound on a batch, so that a batch that timed out was not
/// committed later (it is retried).
const SQLITE_BUSY_BOUND: Duration = Duration::from_secs(2);
const SQLITE_CONNECTIONS: u32 = 4;
const POSTGRES_CONNECTIONS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The driver's text names what failed (refused, authentication, a locked file); it never
    /// quotes the URL.
    #[error("{0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Local(String),
}

/// Ends sessions in the session index (Redis), for `gatehouse users block` and
/// `gatehouse sessions revoke --subject`.
///
/// HOOK for the session index: the lead implements it on the Redis session index and passes it
/// to [`admin::main`] from `src/main.rs`.
pub trait SessionEnder {
    /// Ends every live session of `subject` on every instance (the next `/auth` with any of them
    /// is 401); returns how many were ended.
    fn end_all_for_subject(
        &self,
        subject: &str,
    ) -> impl Future<Output = Result<usize, SessionEndError>>;
}

/// Why sessions could not be ended; one line, no secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SessionEndError(pub String);

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the configured pool: the same text compiles once per engine.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::directory::Pool::Sqlite($p) => $body,
            $crate::directory::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Directory {
    pool: Pool,
    /// The runtime the pool lives on. Queries from other threads (actix workers) run there, so
    /// that a connection's socket is always driven by the runtime that opened it and never dies
    /// with a worker's runtime at shutdown.
    home: tokio::runtime::Handle,
    /// Until when (unix milliseconds) the blocked check answers `Unknown` without asking: after
    /// it found the database away, sign-ins do not each wait for it again.
    pub(crate) away_until: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Directory {
    /// Prepares the pool without connecting (serving never waits for the database). Only a URL
    /// the driver cannot parse is refused here. Must run inside a Tokio runtime, which becomes
    /// the pool's home.
    pub fn open(settings: &DatabaseSettings) -> Result<Directory, DirectoryError> {
        let unusable = |e: sqlx::Error| {
            DirectoryError::Local(format!("{} is not usable: {e}", env_name("database.url")))
        };
        let pool = match settings.engine {
            Engine::Sqlite => {
                let options = SqliteConnectOptions::from_str(settings.url())
                    .map_err(unusable)?
                    .create_if_missing(true)
                    .busy_timeout(SQLITE_BUSY_BOUND)
                    // With WAL (set by the migration), NORMAL is crash-safe and commits without
                    // an fsync each: writers hold the lock for far less time.
                    .pragma("synchronous", "NORMAL");
                // Best effort here: `migrate` reports a folder it cannot create.
                let _ = make_parent_folder(&options);
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(SQLITE_CONNECTIONS)
                        .acquire_timeout(ACQUIRE_BOUND)
                        .connect_lazy_with(options),
                )
            }
            Engine::Postgres => {
                let options = PgConnectOptions::from_str(settings.url())
                    .map_err(unusable)?
                    .application_name("gatehouse");
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(POSTGRES_CONNECTIONS)
                        .acquire_timeout(ACQUIRE_BOUND)
                        .connect_lazy_with(options),
                )
            }
        };
        Ok(Directory {
            pool,
            home: tokio::runtime::Handle::current(),
            away_until: Default::default(),
        })
    }

    pub fn engine(&self) -> Engine {
        match self.pool {
            Pool::Sqlite(_) => Engine::Sqlite,
            Pool::Postgres(_) => Engine::Postgres,
        }
    }

    /// Applies pending migrations; two instances doing it at once do not race. Returns the
    /// schema version. Runs on the caller's runtime: start-up and the CLI, never a worker.
    pub async fn migrate(&self) -> Result<i64, DirectoryError> {
        migrate::run(&self.pool).await
    }

    /// One `SELECT 1`: whether the database answers now.
    pub async fn ping(&self) -> Result<(), DirectoryError> {
        let pool = self.pool.clone();
        self.at_home(async move {
            with_pool!(&pool, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
            Ok(())
        })
        .await
    }

    /// Closes the pool's connections (the CLI, before it exits).
    pub async fn close(&self) {
        with_pool!(&self.pool, p => p.close().await)
    }

    /// Runs `work` on the pool's home runtime and waits for it.
    async fn at_home<T, F>(&self, work: F) -> Result<T, DirectoryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, DirectoryError>> + Send + 'static,
    {
        self.home
            .spawn(work)
            .await
            .map_err(|e| DirectoryError::Local(format!("database task failed: {e}")))?
    }
}

/// SQLite creates a missing file but not its folder (`data/` in the default URL).
fn make_parent_folder(options: &SqliteConnectOptions) -> Result<(), DirectoryError> {
    let file = options.get_filename();
    match file.parent() {
        Some(parent)
            if !parent.as_os_str().is_empty() && file != std::path::Path::new(":memory:") =>
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                DirectoryError::Local(format!(
                    "the folder {} cannot be created: {e}",
                    parent.display()
                ))
            })
        }
        _ => Ok(()),
    }
}

/// What the server needs at start-up: the directory (migrated when `DATABASE__MIGRATE` is on)
/// and the audit queue with its writer running on the current runtime. An error is one line
/// naming the setting: start-up stops on it.
pub async fn start(
    settings: &DatabaseSettings,
    metrics: AuditMetrics,
) -> Result<(Directory, Audit), DirectoryError> {
    let directory = Directory::open(settings)?;
    if settings.migrate {
        directory.migrate().await.map_err(|e| {
            DirectoryError::Local(format!(
                "{}: the database cannot be migrated: {e} (set {}=false to start without it)",
                env_name("database.url"),
                env_name("database.migrate"),
            ))
        })?;
    }
    let audit = Audit::start(directory.clone(), metrics, audit::QUEUE_CAPACITY);
    Ok((directory, audit))
}
