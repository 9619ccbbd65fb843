//! The audit trail on both engines: events written in order off the request path; a database
//! outage delays nothing and loses nothing that fits in the queue; what does not fit is counted.

use std::time::Duration;

use gatehouse::directory::{
    Audit, AuditEvent, AuditFilter, AuditMetrics, AuditRecord, Directory, EventKind, SeenUser,
};

use crate::databases::*;

/// Long enough for a loaded 2-core machine; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(30);

async fn migrated(db: &TestDb) -> Directory {
    let directory = Directory::open(&db.settings(true)).expect("directory opens");
    directory.migrate().await.expect("migrates");
    directory
}

async fn all_events(d: &Directory) -> Vec<AuditRecord> {
    d.audit_page(&AuditFilter::default(), None, 10_000)
        .await
        .expect("audit read")
}

/// Polls a gauge until it shows `want` (the writer's state changes asynchronously).
async fn until(gauge: &prometheus::IntGauge, want: i64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while gauge.get() != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauge stayed at {} (want {want})",
            gauge.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn events_are_written_in_order_with_their_fields() {
    for db in TestDb::both().await {
        let d = migrated(&db).await;
        let metrics = AuditMetrics::unregistered();
        let audit = Audit::start(d.clone(), metrics.clone(), 1_000);
        let request = uuid::Uuid::new_v4();
        audit.signed_in(
            SeenUser {
                subject: "alice".into(),
                email: Some("alice@example.com".into()),
                name: None,
                at: 1_000,
            },
            AuditEvent::new(EventKind::Signin)
                .subject("alice")
                .ip(Some("192.0.2.7".parse().expect("ip")))
                .request_id(request)
                .at(1_000),
        );
        for i in 0..120 {
            audit.record(
                AuditEvent::new(EventKind::SigninRefused)
                    .subject(&format!("u{i:03}"))
                    .reason("access_denied")
                    .at(1_000),
            );
        }
        audit.record(AuditEvent::new(EventKind::Signout).subject("alice").at(999));
        audit.flush(PATIENCE).await.expect("written");

        let events = all_events(&d).await;
        assert_eq!(events.len(), 122, "{:?}", db.kind);
        // Oldest first: the one stamped 999 leads; the rest in the order they were recorded.
        assert_eq!(events[0].event, "signout");
        assert_eq!(events[1].event, "signin");
        assert_eq!(events[1].ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(events[1].request_id, Some(request.to_string()));
        assert_eq!(events[1].reason, None);
        let refused: Vec<String> = events[2..]
            .iter()
            .map(|e| e.subject.clone().unwrap_or_default())
            .collect();
        let expected: Vec<String> = (0..120).map(|i| format!("u{i:03}")).collect();
        assert_eq!(refused, expected);
        assert!(events[2..]
            .iter()
            .all(|e| e.event == "signin_refused" && e.reason.as_deref() == Some("access_denied")));
        let line = serde_json::to_value(&events[0]).expect("json");
        assert_eq!(
            line,
            serde_json::json!({"time": 999, "event": "signout", "subject": "alice"})
        );

        // The sign-in also reached the directory, in the same transaction.
        let alice = d.user("alice").await.expect("read").expect("known");
        assert_eq!((alice.signin_count, alice.last_seen_at), (1, Some(1_000)));
        assert_eq!(metrics.written.get(), 122);
        assert_eq!(metrics.pending.get(), 0);
        assert_eq!(metrics.dropped.get(), 0);
        db.remove().await;
    }
}

#[tokio::test]
async fn audit_filters_and_pages_oldest_first() {
    for db in TestDb::both().await {
        let d = migrated(&db).await;
        let events: Vec<AuditEvent> = [(10, "a"), (20, "b"), (20, "a"), (30, "a"), (40, "b")]
            .into_iter()
            .map(|(t, s)| AuditEvent::new(EventKind::Signin).subject(s).at(t))
            .collect();
        d.write_events(&events).await.expect("written");
        let filter = AuditFilter {
            subject: Some("a".into()),
            since: Some(20),
        };
        let first = d.audit_page(&filter, None, 1).await.expect("page 1");
        let second = d
            .audit_page(&filter, first.last(), 1)
            .await
            .expect("page 2");
        let third = d
            .audit_page(&filter, second.last(), 1)
            .await
            .expect("page 3");
        let times: Vec<u64> = [first, second, third]
            .concat()
            .iter()
            .map(|r| r.time)
            .collect();
        assert_eq!(times, [20, 30], "{:?}", db.kind);
        db.remove().await;
    }
}

#[tokio::test]
async fn a_database_outage_delays_nothing_and_events_are_written_when_it_returns() {
    for db in TestDb::both().await {
        let d = migrated(&db).await;
        let metrics = AuditMetrics::unregistered();
        let audit = Audit::start(d.clone(), metrics.clone(), 1_000);
        audit.record(AuditEvent::new(EventKind::Signin).subject("before"));
        audit.flush(PATIENCE).await.expect("written while up");

        let outage = db.take_down().await;
        for i in 0..50 {
            // Returns at once: it only queues.
            audit.record(AuditEvent::new(EventKind::Signout).subject(&format!("s{i:02}")));
        }
        assert_eq!(metrics.dropped.get(), 0);
        until(&metrics.degraded, 1).await;
        assert!(
            audit.flush(Duration::from_millis(300)).await.is_err(),
            "nothing can be written while the database is down ({:?})",
            db.kind
        );
        assert_eq!(metrics.pending.get(), 50);

        outage.end().await;
        audit
            .flush(PATIENCE)
            .await
            .expect("written once it is back");
        assert_eq!(metrics.degraded.get(), 0);
        assert_eq!(metrics.pending.get(), 0);
        let subjects: Vec<String> = all_events(&d)
            .await
            .into_iter()
            .filter_map(|e| e.subject)
            .collect();
        let mut expected = vec!["before".to_owned()];
        expected.extend((0..50).map(|i| format!("s{i:02}")));
        assert_eq!(subjects, expected, "{:?}", db.kind);
        db.remove().await;
    }
}

#[tokio::test]
async fn what_overflows_the_queue_is_counted_and_the_rest_is_kept() {
    for db in TestDb::both().await {
        let d = migrated(&db).await;
        let metrics = AuditMetrics::unregistered();
        let audit = Audit::start(d.clone(), metrics.clone(), 5);
        audit.record(AuditEvent::new(EventKind::Signin).subject("up"));
        audit.flush(PATIENCE).await.expect("written while up");
        assert_eq!(metrics.degraded.get(), 0);
        let outage = db.take_down().await;
        // The writer takes this one and, once it reports the outage, is stuck retrying it:
        // the queue itself is empty then.
        audit.record(AuditEvent::new(EventKind::Signin).subject("first"));
        until(&metrics.degraded, 1).await;
        for i in 0..8 {
            audit.record(AuditEvent::new(EventKind::Signin).subject(&format!("q{i}")));
        }
        assert_eq!(metrics.dropped.get(), 3, "{:?}", db.kind);
        assert_eq!(metrics.pending.get(), 6);

        outage.end().await;
        audit
            .flush(PATIENCE)
            .await
            .expect("written once it is back");
        let subjects: Vec<String> = all_events(&d)
            .await
            .into_iter()
            .filter_map(|e| e.subject)
            .collect();
        assert_eq!(subjects, ["up", "first", "q0", "q1", "q2", "q3", "q4"]);
        db.remove().await;
    }
}
