//! Versioned SQL from `migrations/sqlite` and `migrations/postgres`, compiled into the binary
//! (it runs from any folder) and applied with sqlx's migrator, which records what it applied
//! in `_sqlx_migrations` and refuses a changed or missing migration.
//!
//! Two instances starting at once: on PostgreSQL the migrator holds an advisory lock for the
//! whole run. On SQLite its lock is a no-op, and two migrators on a fresh file both see
//! "nothing applied" and the second fails on `CREATE TABLE` — so gatehouse takes an exclusive
//! lock on a file beside the database (`<file>.migrate-lock`) around the run. SQLite files are
//! local to one machine, so a file lock reaches every process that can open the database.
//!
//! `Migrator::run_direct` rather than `run`: `run(&mut conn)` makes the future's `Send` depend
//! on a higher-ranked `Acquire` bound the compiler cannot prove (sqlx's own comment on
//! `run_direct` says so), and the migration must be spawnable.

use std::borrow::Cow;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;

use super::{make_parent_folder, DirectoryError, Pool, MIGRATE_CONNECT_BOUND};

/// One migration, in both dialects (the versions must match; a test checks the folders).
pub(crate) struct Source {
    pub version: i64,
    pub description: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Every migration, oldest first. A new one: add `NNNN_name.sql` to both folders and a line
/// here; never edit one that was released (the migrator refuses changed checksums).
pub(crate) const MIGRATIONS: &[Source] = &[Source {
    version: 1,
    description: "directory",
    sqlite: include_str!("../../migrations/sqlite/0001_directory.sql"),
    postgres: include_str!("../../migrations/postgres/0001_directory.sql"),
}];

#[derive(Debug, Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug)]
struct Embedded(Dialect);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        let migrations = MIGRATIONS
            .iter()
            .map(|m| {
                let sql = match self.0 {
                    Dialect::Sqlite => m.sqlite,
                    Dialect::Postgres => m.postgres,
                };
                Migration::new(
                    m.version,
                    Cow::Borrowed(m.description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// Migrations a newer release applied are tolerated (not "missing"): during a rolling upgrade,
/// or after a rollback, an older binary must still start on the newer schema. So migrations only
/// ever add (tables, columns with defaults, indexes).
async fn migrator(dialect: Dialect) -> Result<Migrator, DirectoryError> {
    let mut migrator = Migrator::new(Embedded(dialect)).await?;
    migrator.set_ignore_missing(true);
    Ok(migrator)
}

/// Applies what is pending; returns the schema version (the highest applied).
pub(super) async fn run(pool: &Pool) -> Result<i64, DirectoryError> {
    match pool {
        Pool::Sqlite(p) => {
            let options = (*p.connect_options()).clone();
            make_parent_folder(&options)?;
            let _lock = lock_file(&options).await?;
            let mut conn = bounded(SqliteConnection::connect_with(&options)).await?;
            // WAL: readers (sign-in checks, the CLI) never wait for the audit writer. Persistent
            // in the file; switching needs a moment without other writers, which the lock gives
            // us on a fresh file. Best effort: a file that stays in rollback mode works too.
            if let Err(e) = sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&mut conn)
                .await
            {
                tracing::debug!(error = %e, "SQLite stays in its journal mode");
            }
            migrator(Dialect::Sqlite)
                .await?
                .run_direct(&mut conn)
                .await?;
            let version = schema_version_sqlite(&mut conn).await?;
            let _ = conn.close().await;
            Ok(version)
        }
        Pool::Postgres(p) => {
            let options = (*p.connect_options()).clone();
            // Not through the pool: its timeout error would hide why connecting failed
            // (refused, authentication, no such database), which is the line an operator needs.
            let mut conn = bounded(PgConnection::connect_with(&options)).await?;
            migrator(Dialect::Postgres)
                .await?
                .run_direct(&mut conn)
                .await?;
            let version: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                    .fetch_one(&mut conn)
                    .await?;
            let _ = conn.close().await;
            Ok(version.unwrap_or(0))
        }
    }
}

async fn schema_version_sqlite(conn: &mut SqliteConnection) -> Result<i64, DirectoryError> {
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(conn)
        .await?;
    Ok(version.unwrap_or(0))
}

async fn bounded<C>(
    connect: impl Future<Output = Result<C, sqlx::Error>>,
) -> Result<C, DirectoryError> {
    tokio::time::timeout(MIGRATE_CONNECT_BOUND, connect)
        .await
        .map_err(|_| DirectoryError::Timeout(MIGRATE_CONNECT_BOUND))?
        .map_err(DirectoryError::from)
}

/// The lock file beside the database; held (exclusively, waiting for another holder) until the
/// returned file is dropped. The operating system releases it if the process dies.
async fn lock_file(options: &SqliteConnectOptions) -> Result<std::fs::File, DirectoryError> {
    let mut path: PathBuf = options.get_filename().to_path_buf();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".migrate-lock");
    path.set_file_name(name);
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| DirectoryError::Local(format!("locking {shown} failed: {e}")))?
    .map_err(|e| DirectoryError::Local(format!("{shown} cannot be locked: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in both folders is compiled in, with the version its name carries, and the
    /// two dialects move in step.
    #[test]
    fn the_embedded_list_matches_the_migration_folders() {
        for (folder, pick) in [
            (
                "sqlite",
                (|m: &Source| m.sqlite) as fn(&Source) -> &'static str,
            ),
            ("postgres", |m: &Source| m.postgres),
        ] {
            let dir = format!("{}/migrations/{folder}", env!("CARGO_MANIFEST_DIR"));
            let mut files: Vec<(i64, String)> = std::fs::read_dir(&dir)
                .expect("migration folder")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .map(|n| {
                    let version = n
                        .split('_')
                        .next()
                        .and_then(|v| v.parse().ok())
                        .expect("NNNN_name.sql");
                    (
                        version,
                        std::fs::read_to_string(format!("{dir}/{n}")).expect("sql"),
                    )
                })
                .collect();
            files.sort();
            let embedded: Vec<(i64, String)> = MIGRATIONS
                .iter()
                .map(|m| (m.version, pick(m).to_owned()))
                .collect();
            assert_eq!(files, embedded, "migrations/{folder}");
        }
    }
}
