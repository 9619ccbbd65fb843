//! The audit trail, written off the request path.
//!
//! [`Audit::record`] puts an event in a bounded queue and returns: it never waits, never touches
//! the database. One background task drains the queue and writes what it finds in batches, one
//! transaction per batch. While the database is away the batch in hand is retried with backoff,
//! the queue fills, and what does not fit is dropped, counted (`gatehouse_audit_dropped_total`)
//! and logged at most every [`LOG_EVERY`]. `gatehouse_directory_degraded` is 1 while writes (or
//! the idle probe) fail.
//!
//! An [`AuditEvent`] cannot carry a token, a code, a cookie or a session id: its fields are an
//! event kind, a subject, an error code (a `&'static str`, i.e. one of our own codes), an IP
//! address and a request id (a UUID).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use tokio::sync::{mpsc, oneshot};

use super::Directory;

/// Events waiting to be written, at most. About 2 MB at worst; at 100 sign-ins a second it
/// covers a database outage of well over a minute.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Repeated warnings (drops, a long outage) at most this often.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(60);

/// What happened. The names are the contract's (`gatehouse audit` prints them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Signin,
    SigninRefused,
    Signout,
    SessionRevoked,
    BackchannelLogout,
    UserBlocked,
    UserUnblocked,
    RefreshFailed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Signin => "signin",
            EventKind::SigninRefused => "signin_refused",
            EventKind::Signout => "signout",
            EventKind::SessionRevoked => "session_revoked",
            EventKind::BackchannelLogout => "backchannel_logout",
            EventKind::UserBlocked => "user_blocked",
            EventKind::UserUnblocked => "user_unblocked",
            EventKind::RefreshFailed => "refresh_failed",
        }
    }
}

/// One audit event. Build it with [`AuditEvent::new`] and the setters:
///
/// ```
/// # use gatehouse::directory::{AuditEvent, EventKind};
/// let event = AuditEvent::new(EventKind::SigninRefused)
///     .subject("alice")
///     .reason("access_denied")
///     .ip(Some("192.0.2.7".parse().unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub(super) time: u64,
    pub(super) kind: EventKind,
    pub(super) subject: Option<String>,
    pub(super) reason: Option<&'static str>,
    pub(super) ip: Option<IpAddr>,
    pub(super) request_id: Option<uuid::Uuid>,
}

impl AuditEvent {
    /// An event that happens now.
    pub fn new(kind: EventKind) -> AuditEvent {
        AuditEvent {
            time: crate::identity::now_unix(),
            kind,
            subject: None,
            reason: None,
            ip: None,
            request_id: None,
        }
    }

    /// The user it concerns (the provider's subject).
    pub fn subject(mut self, subject: &str) -> Self {
        self.subject = Some(subject.to_owned());
        self
    }

    /// For refusals and failures: the error code (`AppError::code()`, e.g. `access_denied`).
    pub fn reason(mut self, code: &'static str) -> Self {
        self.reason = Some(code);
        self
    }

    /// The client's address as resolved through trusted proxies (`TrustedProxies::client_ip`).
    pub fn ip(mut self, ip: Option<IpAddr>) -> Self {
        self.ip = ip;
        self
    }

    /// The request that caused it (`tracing_actix_web::RequestId` converts into a UUID).
    pub fn request_id(mut self, id: impl Into<uuid::Uuid>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// When it happened, in unix seconds (default: when it was built).
    pub fn at(mut self, time: u64) -> Self {
        self.time = time;
        self
    }

    pub fn kind(&self) -> EventKind {
        self.kind
    }
}

/// A sign-in's user, for the directory's upsert (first/last seen, count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenUser {
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Unix seconds.
    pub at: u64,
}

/// The writer's gauges and counters. The app's metrics registry gives registered ones;
/// [`AuditMetrics::unregistered`] is for tools and tests that serve no `/metrics`.
#[derive(Clone)]
pub struct AuditMetrics {
    /// Events that did not fit in the queue.
    pub dropped: IntCounter,
    /// Events accepted and not yet written.
    pub pending: IntGauge,
    /// Events written.
    pub written: IntCounter,
    /// 1 while the database cannot be written or does not answer the probe.
    pub degraded: IntGauge,
}

impl AuditMetrics {
    pub fn unregistered() -> AuditMetrics {
        let counter = |name: &str| IntCounter::new(name, name).expect("a valid metric name");
        let gauge = |name: &str| IntGauge::new(name, name).expect("a valid metric name");
        AuditMetrics {
            dropped: counter("audit_dropped"),
            pending: gauge("audit_pending"),
            written: counter("audit_written"),
            degraded: gauge("directory_degraded"),
        }
    }
}

pub(super) enum Entry {
    Event(AuditEvent),
    /// A sign-in: the directory's upsert and the event, in the same transaction.
    Signin(SeenUser, AuditEvent),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The handle every request path holds; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    queue: mpsc::Sender<Entry>,
    metrics: AuditMetrics,
    drops: Arc<DropLog>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlushError {
    #[error("the audit queue was not written within {0:?}")]
    Timeout(Duration),
    #[error("the audit writer has stopped")]
    Stopped,
}

impl Audit {
    /// Starts the writer on the current runtime; `capacity` bounds the queue.
    pub fn start(directory: Directory, metrics: AuditMetrics, capacity: usize) -> Audit {
        let (queue, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(super::writer::Writer::new(directory, metrics.clone()).run(rx));
        Audit {
            queue,
            metrics,
            drops: Arc::new(DropLog::default()),
        }
    }

    /// Queues `event`; returns at once, whatever the database does.
    pub fn record(&self, event: AuditEvent) {
        self.push(Entry::Event(event));
    }

    /// Queues a sign-in: the user's directory row (first/last seen, count) and the `signin`
    /// event (give it `EventKind::Signin`). Returns at once.
    pub fn signed_in(&self, user: SeenUser, event: AuditEvent) {
        self.push(Entry::Signin(user, event));
    }

    fn push(&self, entry: Entry) {
        match self.queue.try_send(entry) {
            Ok(()) => self.metrics.pending.inc(),
            Err(_) => {
                self.metrics.dropped.inc();
                self.drops.dropped();
            }
        }
    }

    /// Waits (at most `bound`) until everything queued before this call is written. For
    /// shutdown and tests; never on a request path.
    pub async fn flush(&self, bound: Duration) -> Result<(), FlushError> {
        let (done, written) = oneshot::channel();
        let wait = async {
            self.queue
                .send(Entry::Flush(done))
                .await
                .map_err(|_| FlushError::Stopped)?;
            written.await.map_err(|_| FlushError::Stopped)
        };
        tokio::time::timeout(bound, wait)
            .await
            .map_err(|_| FlushError::Timeout(bound))?
    }
}

/// Rate-limits the "queue full" warning: a flood of drops is one line a minute with a count.
#[derive(Default)]
struct DropLog {
    unreported: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl DropLog {
    fn dropped(&self) {
        self.unreported.fetch_add(1, Ordering::Relaxed);
        // Never wait on a request path: whoever holds the lock is about to log anyway.
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return;
        }
        *last = Some(now);
        tracing::warn!(
            dropped = self.unreported.swap(0, Ordering::Relaxed),
            "audit queue full: events dropped (the database is slow or unreachable)"
        );
    }
}
