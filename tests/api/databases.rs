//! Databases for tests: a fresh SQLite file, or a fresh PostgreSQL database on the server named
//! by `GATEHOUSE_TEST_POSTGRES_URL` (scripts/test starts a throwaway cluster and sets it), and
//! ways to take either away and give it back.

#![allow(dead_code)] // each test module uses a different part

use std::path::PathBuf;

use gatehouse::config::DatabaseSettings;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;

pub use crate::helpers::fresh_sqlite_url;

/// The PostgreSQL server the tests use: a URL to its `postgres` database as a superuser.
pub fn postgres_admin_url() -> String {
    std::env::var("GATEHOUSE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "GATEHOUSE_TEST_POSTGRES_URL is not set: run scripts/test (it starts a throwaway \
             PostgreSQL), or point it at a server, e.g. postgres://postgres@127.0.0.1:5432/postgres"
        )
    })
}

/// `admin` with its database replaced by `name`.
fn with_database(admin: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin).expect("GATEHOUSE_TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// One test's database.
pub struct TestDb {
    pub kind: Kind,
    pub url: String,
    /// PostgreSQL: the database's name (dropped by [`TestDb::remove`]).
    name: String,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb {
            kind: Kind::Sqlite,
            url: fresh_sqlite_url(),
            name: String::new(),
        }
    }

    /// `CREATE DATABASE t_<random>` on the test server.
    pub async fn postgres() -> TestDb {
        let admin = postgres_admin_url();
        let name = format!(
            "t_{}",
            gatehouse::random::token().to_lowercase().replace('-', "_")
        );
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("the test PostgreSQL answers (GATEHOUSE_TEST_POSTGRES_URL)");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        TestDb {
            kind: Kind::Postgres,
            url: with_database(&admin, &name),
            name,
        }
    }

    /// A fresh database of each engine.
    pub async fn both() -> Vec<TestDb> {
        vec![TestDb::sqlite(), TestDb::postgres().await]
    }

    pub fn settings(&self, migrate: bool) -> DatabaseSettings {
        DatabaseSettings::new(&self.url, migrate).expect("a valid database URL")
    }

    /// Runs `sql` on this database, outside gatehouse.
    pub async fn execute(&self, sql: &str) {
        match self.kind {
            Kind::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url)
                    .await
                    .expect("connects");
                sqlx::query(sql).execute(&mut conn).await.expect(sql);
                let _ = conn.close().await;
            }
            Kind::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await.expect("connects");
                sqlx::query(sql).execute(&mut conn).await.expect(sql);
                let _ = conn.close().await;
            }
        }
    }

    /// SQLite: the file's path.
    pub fn sqlite_path(&self) -> PathBuf {
        PathBuf::from(self.url.trim_start_matches("sqlite://"))
    }

    /// Makes the database refuse every write until [`Outage::end`]: SQLite, another connection
    /// holds the write lock; PostgreSQL, the database takes no connections and those it had are
    /// terminated (other tests' databases on the same server are untouched).
    pub async fn take_down(&self) -> Outage {
        match self.kind {
            Kind::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url)
                    .await
                    .expect("sqlite opens");
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .expect("exclusive lock");
                Outage::Sqlite(conn)
            }
            Kind::Postgres => {
                let mut admin = PgConnection::connect(&postgres_admin_url())
                    .await
                    .expect("admin connects");
                sqlx::query(&format!(
                    "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false",
                    self.name
                ))
                .execute(&mut admin)
                .await
                .expect("ALTER DATABASE");
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&self.name)
                .execute(&mut admin)
                .await
                .expect("terminate");
                Outage::Postgres(admin, self.name.clone())
            }
        }
    }

    /// PostgreSQL: drops the database (SQLite files go with the process's folder).
    pub async fn remove(self) {
        if self.kind == Kind::Postgres {
            if let Ok(mut admin) = PgConnection::connect(&postgres_admin_url()).await {
                let _ = sqlx::query(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .execute(&mut admin)
                .await;
                let _ = admin.close().await;
            }
        }
    }
}

pub enum Outage {
    Sqlite(SqliteConnection),
    Postgres(PgConnection, String),
}

impl Outage {
    /// The database is back.
    pub async fn end(self) {
        match self {
            Outage::Sqlite(mut conn) => {
                sqlx::query("COMMIT")
                    .execute(&mut conn)
                    .await
                    .expect("lock released");
                let _ = conn.close().await;
            }
            Outage::Postgres(mut admin, name) => {
                sqlx::query(&format!(
                    "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS true"
                ))
                .execute(&mut admin)
                .await
                .expect("ALTER DATABASE");
                let _ = admin.close().await;
            }
        }
    }
}
