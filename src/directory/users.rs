//! Users: who has signed in (first and last time, how often) and who is blocked.

use serde::Serialize;

use super::{with_pool, Directory, DirectoryError, BLOCKED_CHECK_BOUND};

/// One row of the directory. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// None for a user blocked before their first sign-in.
    pub first_seen_at: Option<u64>,
    pub last_seen_at: Option<u64>,
    pub signin_count: u64,
    pub blocked: bool,
    pub blocked_at: Option<u64>,
}

/// Whether a sign-in must be refused. `Unknown`: the database did not answer within
/// [`BLOCKED_CHECK_BOUND`]; the caller lets the sign-in proceed (a database outage never fails a
/// sign-in) and says so in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    Yes,
    No,
    Unknown,
}

type UserRow = (
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    i64,
    bool,
    Option<i64>,
);

const USER_COLUMNS: &str =
    "subject, email, name, first_seen_at, last_seen_at, signin_count, blocked, blocked_at";

fn user_from(row: UserRow) -> User {
    let (subject, email, name, first, last, count, blocked, blocked_at) = row;
    let secs = |t: Option<i64>| t.map(|t| t.max(0) as u64);
    User {
        subject,
        email,
        name,
        first_seen_at: secs(first),
        last_seen_at: secs(last),
        signin_count: count.max(0) as u64,
        blocked,
        blocked_at: secs(blocked_at),
    }
}

pub(super) fn as_i64(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The sign-in upsert: first seen is kept (the earliest), last seen is the latest, the count
/// grows. An email or name the provider stopped sending is kept.
pub(super) const RECORD_SIGNIN: &str = "\
INSERT INTO users (subject, email, name, first_seen_at, last_seen_at, signin_count) \
VALUES ($1, $2, $3, $4, $4, 1) \
ON CONFLICT (subject) DO UPDATE SET \
    email = COALESCE(excluded.email, users.email), \
    name = COALESCE(excluded.name, users.name), \
    first_seen_at = CASE WHEN users.first_seen_at IS NULL OR users.first_seen_at > excluded.first_seen_at \
        THEN excluded.first_seen_at ELSE users.first_seen_at END, \
    last_seen_at = CASE WHEN users.last_seen_at IS NULL OR users.last_seen_at < excluded.last_seen_at \
        THEN excluded.last_seen_at ELSE users.last_seen_at END, \
    signin_count = users.signin_count + 1";

impl Directory {
    /// Records a sign-in (see [`super::Audit::signed_in`] for the queued, never-blocking way).
    pub async fn record_signin(
        &self,
        subject: &str,
        email: Option<&str>,
        name: Option<&str>,
        at: u64,
    ) -> Result<(), DirectoryError> {
        let pool = self.pool.clone();
        let (subject, email, name) = (
            subject.to_owned(),
            email.map(str::to_owned),
            name.map(str::to_owned),
        );
        self.at_home(async move {
            with_pool!(&pool, p => sqlx::query(RECORD_SIGNIN)
                .bind(&subject)
                .bind(&email)
                .bind(&name)
                .bind(as_i64(at))
                .execute(p)
                .await
                .map(|_| ()))?;
            Ok(())
        })
        .await
    }

    /// Whether `subject` is blocked, answered within [`BLOCKED_CHECK_BOUND`] or `Unknown`.
    pub async fn is_blocked(&self, subject: &str) -> Blocked {
        use std::sync::atomic::Ordering;
        let now_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        if now_ms() < self.away_until.load(Ordering::Relaxed) {
            // Found away moments ago: say so at once rather than make every sign-in wait.
            return Blocked::Unknown;
        }
        let went_away = || {
            self.away_until.store(
                now_ms() + super::AWAY_PAUSE.as_millis() as u64,
                Ordering::Relaxed,
            )
        };
        let pool = self.pool.clone();
        let subject = subject.to_owned();
        let query = self.at_home(async move {
            let blocked: Option<bool> = with_pool!(&pool, p => sqlx::query_scalar(
                "SELECT blocked FROM users WHERE subject = $1"
            )
            .bind(&subject)
            .fetch_optional(p)
            .await)?;
            Ok(blocked)
        });
        match tokio::time::timeout(BLOCKED_CHECK_BOUND, query).await {
            Ok(Ok(Some(true))) => Blocked::Yes,
            Ok(Ok(_)) => Blocked::No,
            Ok(Err(e)) => {
                went_away();
                tracing::warn!(error = %e, "directory: cannot tell whether a user is blocked");
                Blocked::Unknown
            }
            Err(_) => {
                went_away();
                tracing::warn!(
                    bound = ?BLOCKED_CHECK_BOUND,
                    "directory: the blocked check timed out"
                );
                Blocked::Unknown
            }
        }
    }

    /// Blocks `subject` (known or not yet seen: a user can be blocked before a first sign-in).
    pub async fn block(&self, subject: &str, at: u64) -> Result<(), DirectoryError> {
        let pool = self.pool.clone();
        let subject = subject.to_owned();
        self.at_home(async move {
            with_pool!(&pool, p => sqlx::query(
                "INSERT INTO users (subject, blocked, blocked_at) VALUES ($1, TRUE, $2) \
                 ON CONFLICT (subject) DO UPDATE SET blocked = TRUE, \
                 blocked_at = CASE WHEN users.blocked THEN users.blocked_at \
                     ELSE excluded.blocked_at END"
            )
            .bind(&subject)
            .bind(as_i64(at))
            .execute(p)
            .await
            .map(|_| ()))?;
            Ok(())
        })
        .await
    }

    /// Unblocks `subject`; `false` when the directory does not know it.
    pub async fn unblock(&self, subject: &str) -> Result<bool, DirectoryError> {
        let pool = self.pool.clone();
        let subject = subject.to_owned();
        self.at_home(async move {
            let done = with_pool!(&pool, p => sqlx::query(
                "UPDATE users SET blocked = FALSE, blocked_at = NULL WHERE subject = $1"
            )
            .bind(&subject)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
            Ok(done > 0)
        })
        .await
    }

    pub async fn user(&self, subject: &str) -> Result<Option<User>, DirectoryError> {
        let pool = self.pool.clone();
        let subject = subject.to_owned();
        self.at_home(async move {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE subject = $1");
            let row: Option<UserRow> = with_pool!(&pool, p => sqlx::query_as(&sql)
                .bind(&subject)
                .fetch_optional(p)
                .await)?;
            Ok(row.map(user_from))
        })
        .await
    }

    /// Users ordered by subject, `limit` at a time after `after` (keyset paging: a long list
    /// is never held in memory at once).
    pub async fn users_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<User>, DirectoryError> {
        let pool = self.pool.clone();
        let after = after.map(str::to_owned);
        self.at_home(async move {
            let sql = match after {
                Some(_) => format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE subject > $1 ORDER BY subject LIMIT $2"
                ),
                None => format!("SELECT {USER_COLUMNS} FROM users ORDER BY subject LIMIT $1"),
            };
            let rows: Vec<UserRow> = with_pool!(&pool, p => {
                let query = sqlx::query_as(&sql);
                let query = match &after {
                    Some(a) => query.bind(a),
                    None => query,
                };
                query.bind(i64::from(limit)).fetch_all(p).await
            })?;
            Ok(rows.into_iter().map(user_from).collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseSettings;

    #[tokio::test]
    async fn a_database_found_away_is_not_asked_again_at_once() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let settings =
            DatabaseSettings::new(&format!("postgres://nobody@127.0.0.1:{dead}/none"), false)
                .expect("settings");
        let directory = Directory::open(&settings).expect("a lazy pool");
        assert_eq!(directory.is_blocked("ann").await, Blocked::Unknown);
        let away = directory
            .away_until
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(away > 0, "the check remembers the database is away");
        // Within the pause the answer comes without asking (the mark is not pushed further).
        assert_eq!(directory.is_blocked("ann").await, Blocked::Unknown);
        assert_eq!(
            directory
                .away_until
                .load(std::sync::atomic::Ordering::Relaxed),
            away
        );
    }
}
