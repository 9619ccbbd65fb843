//! The log's writer: each formatted line goes through a bounded queue to one writer thread, so
//! no request waits on stdout (a terminal, a pipe, a container runtime's reader) or on the
//! lock around it, and a burst of lines costs a few large writes instead of one system call
//! per line.
//!
//! A line is never waited for: when the queue is full (the reader of stdout is slower than the
//! lines come) the line is dropped and counted ([`dropped_lines`], shown in `/metrics` as
//! `gatehouse_log_lines_dropped_total`), and the writer logs how many were lost once it has
//! room again. The [`Guard`] given at start-up writes out what is queued when it is dropped,
//! so the lines logged just before exit are not lost.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Lines lost since start, process-wide (there is one log per process).
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// How many of them a line in the log has reported (set once that line is queued).
static REPORTED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set when a line written on this thread was dropped: tells the writer thread whether
    /// its own report got into the queue.
    static DROPPED_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How long the guard waits at exit for the queue to be written out: a reader that stopped
/// reading must not keep the process from exiting.
const FLUSH_BOUND: Duration = Duration::from_secs(2);

/// The writer thread writes at most this many queued lines before flushing and checking for
/// lost lines to report, so a report is not postponed forever under a steady stream.
const BATCH: usize = 1024;

/// While lines come, the writer looks at the queue every [`GATHER`] instead of waiting on it:
/// a thread waiting on the queue must be woken by the sender of each line (a system call and a
/// context switch on the request's behalf, which cost more than the line itself), a polling
/// one is not, and writes what a pause gathered in one go. After [`PARK_AFTER`] empty looks in
/// a row (an idle server), it waits on the queue, so that idling costs nothing.
const GATHER: Duration = Duration::from_millis(1);
const PARK_AFTER: u32 = 50;

/// Lines dropped because the queue was full, since the process started.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

enum Message {
    Line(Vec<u8>),
    /// Write out everything queued before this, then answer.
    Flush(SyncSender<()>),
}

/// The subscriber's writer: hands each line to the queue without waiting.
#[derive(Clone)]
pub struct NonBlocking {
    queue: SyncSender<Message>,
}

/// Keep it until exit: dropping it writes out what is queued (bounded by [`FLUSH_BOUND`]).
#[must_use = "the guard writes out the queued lines when dropped: keep it until exit"]
pub struct Guard {
    queue: SyncSender<Message>,
}

/// Starts the writer thread on `out` with room for `capacity` queued lines.
pub fn spawn<W: Write + Send + 'static>(
    out: W,
    capacity: usize,
) -> io::Result<(NonBlocking, Guard)> {
    let (queue, lines) = mpsc::sync_channel(capacity.max(1));
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(lines, out))?;
    Ok((
        NonBlocking {
            queue: queue.clone(),
        },
        Guard { queue },
    ))
}

fn write_lines<W: Write>(lines: Receiver<Message>, out: W) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    let mut empty_looks = 0;
    loop {
        let first = if empty_looks < PARK_AFTER {
            match lines.try_recv() {
                Ok(message) => message,
                Err(mpsc::TryRecvError::Empty) => {
                    empty_looks += 1;
                    std::thread::sleep(GATHER);
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        } else {
            // Idle: the next line wakes this thread.
            match lines.recv() {
                Ok(message) => message,
                Err(_) => break,
            }
        };
        empty_looks = 0;
        let mut next = Some(first);
        let mut written = 0;
        while let Some(message) = next {
            match message {
                // A failed write (stdout closed) has nowhere to be reported.
                Message::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Message::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            written += 1;
            next = if written < BATCH {
                lines.try_recv().ok()
            } else {
                None
            };
        }
        let _ = out.flush();
        let dropped = DROPPED.load(Ordering::SeqCst);
        let reported = REPORTED.load(Ordering::SeqCst);
        if dropped > reported {
            // Through the subscriber like any line. If it is dropped too, the next round
            // reports again (what it would have said, and itself).
            DROPPED_HERE.with(|d| d.set(false));
            tracing::warn!(
                lost = dropped - reported,
                lost_since_start = dropped,
                "log lines were dropped: the log's reader fell behind"
            );
            if !DROPPED_HERE.with(|d| d.get()) {
                REPORTED.store(dropped, Ordering::SeqCst);
            }
        }
        // A full batch: more is waiting. Else let the next lines gather.
        if written < BATCH {
            std::thread::sleep(GATHER);
        }
    }
    let _ = out.flush();
}

/// One formatted line (the subscriber writes each event with a single `write_all`).
pub struct LineSender<'a> {
    queue: &'a SyncSender<Message>,
}

impl Write for LineSender<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        match self.queue.try_send(Message::Line(line.to_vec())) {
            Ok(()) => {}
            // Full: the reader fell behind. Disconnected: the writer thread is gone.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                DROPPED.fetch_add(1, Ordering::SeqCst);
                DROPPED_HERE.with(|d| d.set(true));
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for NonBlocking {
    type Writer = LineSender<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineSender { queue: &self.queue }
    }
}

impl Guard {
    /// Waits (bounded) until every line queued before this call is written, and the line
    /// reporting lines dropped so far too: nothing is lost silently, even at exit.
    pub fn flush(&self) {
        let deadline = Instant::now() + FLUSH_BOUND;
        loop {
            // Read before the round trip: a report counted here was queued before the round
            // trip's message, so it is written by the time the round trip ends.
            let all_reported = REPORTED.load(Ordering::SeqCst) >= DROPPED.load(Ordering::SeqCst);
            if !self.round_trip(deadline) || all_reported {
                return;
            }
        }
    }

    /// Sends a flush through the queue and waits for the writer to reach it; false when it
    /// cannot within `deadline`.
    fn round_trip(&self, deadline: Instant) -> bool {
        let (done, written) = mpsc::sync_channel(1);
        let mut message = Message::Flush(done);
        // The queue may be full; the writer empties it unless its reader stopped reading.
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Full(_)) => return false,
            }
        }
        written
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An output that says when a write starts, and whose writes wait until the test opens
    /// the gate.
    #[derive(Clone)]
    struct Gated {
        gate: Arc<Mutex<()>>,
        entered: mpsc::Sender<()>,
        seen: Arc<Mutex<Vec<u8>>>,
    }

    impl Gated {
        fn new() -> (Gated, mpsc::Receiver<()>) {
            let (entered, writes) = mpsc::channel();
            let out = Gated {
                gate: Arc::default(),
                entered,
                seen: Arc::default(),
            };
            (out, writes)
        }

        fn seen(&self) -> String {
            String::from_utf8(self.seen.lock().expect("seen").clone()).expect("utf-8")
        }
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.entered.send(());
            let _open = self.gate.lock().expect("gate");
            self.seen.lock().expect("seen").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// As the subscriber writes a line: one `write_all`.
    fn line(writer: &NonBlocking, text: &str) {
        writer
            .make_writer()
            .write_all(text.as_bytes())
            .expect("never an error, never a wait");
    }

    #[test]
    fn queued_lines_are_all_written_in_order_once_the_guard_has_flushed() {
        let (out, _writes) = Gated::new();
        let (writer, guard) = spawn(out.clone(), 64).expect("thread");
        for i in 0..50 {
            line(&writer, &format!("line {i}\n"));
        }
        guard.flush();
        let expected: String = (0..50).map(|i| format!("line {i}\n")).collect();
        assert_eq!(out.seen(), expected);
    }

    #[test]
    fn a_full_queue_drops_and_counts_lines_instead_of_waiting() {
        let (out, writes) = Gated::new();
        let closed = out.gate.lock().expect("gate");
        let (writer, guard) = spawn(out.clone(), 2).expect("thread");
        line(&writer, "line 0\n");
        // The writer thread is now stuck writing line 0: the queue holds two more lines.
        writes.recv().expect("the writer started writing");
        let before = dropped_lines();
        for i in 1..=10 {
            line(&writer, &format!("line {i}\n"));
        }
        // At least: other tests in this process never fill a queue.
        assert!(
            dropped_lines() - before >= 8,
            "{}",
            dropped_lines() - before
        );
        drop(closed);
        guard.flush();
        assert_eq!(out.seen(), "line 0\nline 1\nline 2\n");
    }
}
