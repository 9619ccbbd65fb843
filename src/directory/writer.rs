//! The audit writer: one background task drains the queue and writes what it finds in batches,
//! one transaction per batch, retrying a failed batch with backoff until the database takes it.
//! It keeps `gatehouse_directory_degraded` and the pending/written counts true, and probes the
//! database when idle.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::audit::{AuditMetrics, Entry, LOG_EVERY};
use super::Directory;

/// Events per transaction, at most.
const BATCH: usize = 500;
/// The first retry after a failed write, doubling up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// A write (one batch) that takes longer counts as failed and is retried.
const WRITE_BOUND: Duration = Duration::from_secs(10);
/// With nothing to write, the database is probed this often, so that the degraded gauge also
/// tells the truth on a quiet night.
const PROBE_EVERY: Duration = Duration::from_secs(30);

pub(super) struct Writer {
    directory: Directory,
    metrics: AuditMetrics,
    degraded_since: Option<Instant>,
    last_warning: Option<Instant>,
}

impl Writer {
    pub(super) fn new(directory: Directory, metrics: AuditMetrics) -> Writer {
        Writer {
            directory,
            metrics,
            degraded_since: None,
            last_warning: None,
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Entry>) {
        // At once: with DATABASE__MIGRATE off nothing else has asked the database yet.
        self.probe().await;
        loop {
            let first = match tokio::time::timeout(PROBE_EVERY, rx.recv()).await {
                Ok(Some(entry)) => entry,
                Ok(None) => return,
                Err(_) => {
                    self.probe().await;
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
            self.write(batch).await;
        }
    }

    /// Writes one batch, retrying with backoff until it is in; then answers its flushes.
    async fn write(&mut self, batch: Vec<Entry>) {
        let mut rows = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        for entry in batch {
            match entry {
                Entry::Flush(done) => flushes.push(done),
                other => rows.push(other),
            }
        }
        let mut wait = RETRY_MIN;
        while !rows.is_empty() {
            let outcome =
                tokio::time::timeout(WRITE_BOUND, self.directory.write_entries(&rows)).await;
            match outcome {
                Ok(Ok(())) => {
                    let n = rows.len() as i64;
                    self.metrics.pending.sub(n);
                    self.metrics.written.inc_by(n as u64);
                    self.healthy();
                    break;
                }
                Ok(Err(e)) => self.failed(&e.to_string(), rows.len()),
                Err(_) => self.failed("the write timed out", rows.len()),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }

    async fn probe(&mut self) {
        match tokio::time::timeout(WRITE_BOUND, self.directory.ping()).await {
            Ok(Ok(())) => self.healthy(),
            Ok(Err(e)) => self.failed(&e.to_string(), 0),
            Err(_) => self.failed("the probe timed out", 0),
        }
    }

    fn failed(&mut self, why: &str, in_hand: usize) {
        let now = Instant::now();
        let pending = self.metrics.pending.get();
        if self.degraded_since.is_none() {
            self.degraded_since = Some(now);
            self.metrics.degraded.set(1);
            self.last_warning = Some(now);
            tracing::warn!(
                error = %why,
                pending,
                "directory degraded: the database cannot be written; audit events wait in \
                 the queue (serving goes on)"
            );
        } else if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            self.last_warning = Some(now);
            tracing::warn!(
                error = %why,
                pending,
                in_hand,
                down_secs = self.degraded_since.map(|t| now.duration_since(t).as_secs()),
                "directory still degraded"
            );
        }
    }

    fn healthy(&mut self) {
        if let Some(since) = self.degraded_since.take() {
            self.metrics.degraded.set(0);
            tracing::info!(
                down_secs = since.elapsed().as_secs(),
                "directory recovered: queued audit events are being written"
            );
        }
    }
}
