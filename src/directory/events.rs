//! The audit trail's rows: batches written in one transaction, and reading them back in order.

use serde::Serialize;
use sqlx::QueryBuilder;

use super::audit::{AuditEvent, Entry};
use super::users::{as_i64, RECORD_SIGNIN};
use super::{with_pool, Directory, DirectoryError};

/// One event as `gatehouse audit` prints it (absent fields are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Unix seconds.
    pub time: u64,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The row's id: orders events of the same second, and pages.
    #[serde(skip)]
    pub id: i64,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub subject: Option<String>,
    /// Events at or after this unix second.
    pub since: Option<u64>,
}

type EventRow = (
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn record_from(row: EventRow) -> AuditRecord {
    let (id, time, event, subject, reason, ip, request_id) = row;
    AuditRecord {
        time: time.max(0) as u64,
        event,
        subject,
        reason,
        ip,
        request_id,
        id,
    }
}

/// The columns of one event, as bound.
struct Row<'a> {
    time: i64,
    event: &'static str,
    subject: Option<&'a str>,
    reason: Option<&'static str>,
    ip: Option<String>,
    request_id: Option<String>,
}

impl<'a> From<&'a AuditEvent> for Row<'a> {
    fn from(e: &'a AuditEvent) -> Self {
        Row {
            time: as_i64(e.time),
            event: e.kind.as_str(),
            subject: e.subject.as_deref(),
            reason: e.reason,
            ip: e.ip.map(|ip| ip.to_string()),
            request_id: e.request_id.map(|id| id.to_string()),
        }
    }
}

const INSERT_EVENTS: &str =
    "INSERT INTO audit_events (occurred_at, event, subject, reason, ip, request_id) ";

impl Directory {
    /// Writes events now (the CLI; the server goes through [`super::Audit`]).
    pub async fn write_events(&self, events: &[AuditEvent]) -> Result<(), DirectoryError> {
        let entries: Vec<Entry> = events.iter().cloned().map(Entry::Event).collect();
        self.write_entries(&entries).await
    }

    /// One transaction: the sign-ins' upserts, then every event in one multi-row insert, in
    /// queue order.
    pub(super) async fn write_entries(&self, entries: &[Entry]) -> Result<(), DirectoryError> {
        let mut users = Vec::new();
        let mut events = Vec::new();
        for entry in entries {
            match entry {
                Entry::Event(e) => events.push(e.clone()),
                Entry::Signin(user, e) => {
                    users.push(user.clone());
                    events.push(e.clone());
                }
                Entry::Flush(_) => {}
            }
        }
        if events.is_empty() && users.is_empty() {
            return Ok(());
        }
        let pool = self.pool.clone();
        self.at_home(async move {
            with_pool!(&pool, p => {
                let mut tx = p.begin().await?;
                for u in &users {
                    sqlx::query(RECORD_SIGNIN)
                        .bind(&u.subject)
                        .bind(&u.email)
                        .bind(&u.name)
                        .bind(as_i64(u.at))
                        .execute(&mut *tx)
                        .await?;
                }
                if !events.is_empty() {
                    let mut insert = QueryBuilder::new(INSERT_EVENTS);
                    insert.push_values(events.iter().map(Row::from), |mut b, r| {
                        b.push_bind(r.time)
                            .push_bind(r.event)
                            .push_bind(r.subject)
                            .push_bind(r.reason)
                            .push_bind(r.ip)
                            .push_bind(r.request_id);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }

    /// Events matching `filter`, oldest first, `limit` at a time after `after` (the last
    /// record of the previous page).
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        after: Option<&AuditRecord>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, DirectoryError> {
        let pool = self.pool.clone();
        let filter = filter.clone();
        let after = after.map(|r| (as_i64(r.time), r.id));
        self.at_home(async move {
            let rows: Vec<EventRow> = with_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT id, occurred_at, event, subject, reason, ip, request_id \
                     FROM audit_events WHERE 1 = 1",
                );
                if let Some(subject) = &filter.subject {
                    q.push(" AND subject = ").push_bind(subject.clone());
                }
                if let Some(since) = filter.since {
                    q.push(" AND occurred_at >= ").push_bind(as_i64(since));
                }
                if let Some((time, id)) = after {
                    q.push(" AND (occurred_at > ")
                        .push_bind(time)
                        .push(" OR (occurred_at = ")
                        .push_bind(time)
                        .push(" AND id > ")
                        .push_bind(id)
                        .push("))");
                }
                q.push(" ORDER BY occurred_at, id LIMIT ")
                    .push_bind(i64::from(limit));
                q.build_query_as().fetch_all(p).await
            })?;
            Ok(rows.into_iter().map(record_from).collect())
        })
        .await
    }
}
