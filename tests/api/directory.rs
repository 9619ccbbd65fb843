//! The directory on both engines: migrations (also several at once), users, blocks, and the
//! operators' commands through the session-ending seam.

use std::sync::Mutex;

use gatehouse::directory::admin;
use gatehouse::directory::{AuditFilter, Blocked, Directory, SessionEndError, SessionEnder};

use crate::databases::*;

async fn migrated(db: &TestDb) -> Directory {
    let directory = Directory::open(&db.settings(true)).expect("directory opens");
    assert_eq!(directory.migrate().await.expect("migrates"), 1);
    directory
}

#[tokio::test]
async fn migrations_apply_once_and_again_as_a_no_op() {
    for db in TestDb::both().await {
        let directory = migrated(&db).await;
        // Again: nothing pending, same version, nothing broken.
        assert_eq!(
            directory.migrate().await.expect("again"),
            1,
            "{:?}",
            db.kind
        );
        assert!(directory
            .users_page(None, 10)
            .await
            .expect("users")
            .is_empty());
        db.remove().await;
    }
}

/// During a rolling upgrade (or after a rollback) an older binary meets migrations it does not
/// know: it must still start.
#[tokio::test]
async fn a_schema_migrated_further_by_a_newer_release_still_starts() {
    for db in TestDb::both().await {
        let directory = migrated(&db).await;
        let checksum = match db.kind {
            Kind::Sqlite => "x'00'",
            Kind::Postgres => "decode('00', 'hex')",
        };
        db.execute(&format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (9999, 'from a newer release', TRUE, {checksum}, 0)"
        ))
        .await;
        assert_eq!(
            directory.migrate().await.expect("still migrates"),
            9999,
            "{:?}",
            db.kind
        );
        db.remove().await;
    }
}

#[tokio::test]
async fn sqlite_creates_the_file_and_its_folders() {
    let db = TestDb::sqlite();
    let nested = db
        .sqlite_path()
        .with_extension("d")
        .join("a/b/gatehouse.db");
    let settings =
        gatehouse::config::DatabaseSettings::new(&format!("sqlite://{}", nested.display()), true)
            .expect("settings");
    let directory = Directory::open(&settings).expect("opens");
    assert_eq!(directory.migrate().await.expect("migrates"), 1);
    assert!(nested.is_file(), "{} created", nested.display());
}

/// Several instances starting at once on one fresh database: every migrator succeeds and the
/// schema is applied once (SQLite: the lock file; PostgreSQL: sqlx's advisory lock). Without
/// the lock file, SQLite failed about one run in three here ("table users already exists").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrators_on_one_fresh_database_do_not_race() {
    for db in TestDb::both().await {
        let mut runs = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let settings = db.settings(true);
            runs.spawn(async move {
                // A pool per instance, as separate processes would have.
                let directory = Directory::open(&settings).expect("opens");
                directory.migrate().await.map_err(|e| e.to_string())
            });
        }
        for outcome in runs.join_all().await {
            assert_eq!(outcome, Ok(1), "{:?}", db.kind);
        }
        db.remove().await;
    }
}

#[tokio::test]
async fn sign_ins_are_recorded_and_blocks_kept() {
    for db in TestDb::both().await {
        let d = migrated(&db).await;
        d.record_signin("alice", Some("alice@example.com"), Some("Alice"), 1_000)
            .await
            .expect("first sign-in");
        d.record_signin("alice", None, Some("Alice A."), 2_000)
            .await
            .expect("second");
        // Out of order (another instance, a late batch): first and last seen stay right.
        d.record_signin("alice", None, None, 1_500)
            .await
            .expect("third");
        let alice = d.user("alice").await.expect("read").expect("known");
        assert_eq!(
            alice.email.as_deref(),
            Some("alice@example.com"),
            "{:?}",
            db.kind
        );
        assert_eq!(alice.name.as_deref(), Some("Alice A."));
        assert_eq!(alice.first_seen_at, Some(1_000));
        assert_eq!(alice.last_seen_at, Some(2_000));
        assert_eq!(alice.signin_count, 3);
        assert!(!alice.blocked);

        assert_eq!(d.is_blocked("alice").await, Blocked::No);
        assert_eq!(d.is_blocked("nobody").await, Blocked::No);
        d.block("alice", 3_000).await.expect("block");
        d.block("alice", 4_000).await.expect("block again");
        assert_eq!(d.is_blocked("alice").await, Blocked::Yes);
        let alice = d.user("alice").await.expect("read").expect("known");
        assert_eq!((alice.blocked, alice.blocked_at), (true, Some(3_000)));

        // Blocked before ever signing in.
        d.block("mallory", 5_000).await.expect("pre-block");
        assert_eq!(d.is_blocked("mallory").await, Blocked::Yes);
        let mallory = d.user("mallory").await.expect("read").expect("row");
        assert_eq!((mallory.first_seen_at, mallory.signin_count), (None, 0));

        assert!(d.unblock("alice").await.expect("unblock"));
        assert!(!d.unblock("nobody").await.expect("unknown"));
        assert_eq!(d.is_blocked("alice").await, Blocked::No);
        let alice = d.user("alice").await.expect("read").expect("known");
        assert_eq!((alice.blocked, alice.blocked_at), (false, None));

        // Paging by subject.
        d.record_signin("bob", None, None, 10).await.expect("bob");
        let first = d.users_page(None, 2).await.expect("page 1");
        let subjects: Vec<_> = first.iter().map(|u| u.subject.as_str()).collect();
        assert_eq!(subjects, ["alice", "bob"]);
        let next = d.users_page(Some("bob"), 2).await.expect("page 2");
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].subject, "mallory");
        db.remove().await;
    }
}

/// Like an actix worker: a thread with a runtime of its own asks; the query runs on the pool's
/// home runtime (here the test's), which is busy awaiting that thread.
#[tokio::test]
async fn checks_from_another_threads_runtime_work() {
    for db in TestDb::both().await {
        let d = migrated(&db).await;
        d.block("carol", 1).await.expect("block");
        let worker = d.clone();
        let answers = tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("worker runtime");
            rt.block_on(async {
                (
                    worker.is_blocked("carol").await,
                    worker.is_blocked("dave").await,
                    worker.record_signin("dave", None, None, 5).await.is_ok(),
                )
            })
        })
        .await
        .expect("worker thread");
        assert_eq!(answers, (Blocked::Yes, Blocked::No, true), "{:?}", db.kind);
        db.remove().await;
    }
}

#[tokio::test]
async fn an_unreachable_database_makes_the_blocked_check_unknown_not_an_error() {
    let dead = format!(
        "postgres://gatehouse@127.0.0.1:{}/gatehouse",
        crate::helpers::dead_port()
    );
    // A file that cannot be created: its "folder" is a regular file.
    let unopenable = "sqlite:///proc/version/gatehouse.db".to_owned();
    for url in [dead, unopenable] {
        let settings = gatehouse::config::DatabaseSettings::new(&url, false).expect("settings");
        let directory = Directory::open(&settings).expect("opening never connects");
        assert_eq!(
            directory.is_blocked("alice").await,
            Blocked::Unknown,
            "{url}"
        );
        assert!(directory.ping().await.is_err(), "{url}");
        assert!(directory.migrate().await.is_err(), "{url}");
    }
}

/// Records the subjects it was asked to end, and answers `result`.
struct FakeSessions {
    asked: Mutex<Vec<String>>,
    result: Result<usize, String>,
}

impl FakeSessions {
    fn ending(n: usize) -> FakeSessions {
        FakeSessions {
            asked: Mutex::new(Vec::new()),
            result: Ok(n),
        }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("lock").clone()
    }
}

impl SessionEnder for FakeSessions {
    async fn end_all_for_subject(&self, subject: &str) -> Result<usize, SessionEndError> {
        self.asked.lock().expect("lock").push(subject.to_owned());
        self.result.clone().map_err(SessionEndError)
    }
}

async fn run(
    d: &Directory,
    sessions: &FakeSessions,
    line: &str,
) -> Result<Vec<serde_json::Value>, String> {
    let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    let command = admin::parse(&words)?;
    let mut out = Vec::new();
    admin::run(&command, d, sessions, &mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect())
}

#[tokio::test]
async fn block_ends_every_session_through_the_seam_refuses_sign_ins_and_is_audited() {
    for db in TestDb::both().await {
        let d = migrated(&db).await;
        d.record_signin("alice", Some("alice@example.com"), None, 100)
            .await
            .expect("seen");
        let sessions = FakeSessions::ending(3);
        let out = run(&d, &sessions, "users block alice")
            .await
            .expect("blocks");
        assert_eq!(
            out,
            [serde_json::json!({"subject": "alice", "blocked": true, "sessions_ended": 3})]
        );
        assert_eq!(sessions.asked(), ["alice"]);
        assert_eq!(d.is_blocked("alice").await, Blocked::Yes, "{:?}", db.kind);

        let out = run(&d, &sessions, "sessions revoke --subject alice")
            .await
            .expect("revokes");
        assert_eq!(
            out,
            [serde_json::json!({"subject": "alice", "sessions_ended": 3})]
        );
        assert_eq!(sessions.asked(), ["alice", "alice"]);

        let out = run(&d, &sessions, "users unblock alice")
            .await
            .expect("unblocks");
        assert_eq!(
            out,
            [serde_json::json!({"subject": "alice", "blocked": false})]
        );
        assert_eq!(d.is_blocked("alice").await, Blocked::No);
        let err = run(&d, &sessions, "users unblock nobody")
            .await
            .expect_err("unknown");
        assert!(err.contains("nobody"), "{err}");

        let events: Vec<(String, Option<String>)> = d
            .audit_page(&AuditFilter::default(), None, 100)
            .await
            .expect("audit")
            .into_iter()
            .map(|r| (r.event, r.subject))
            .collect();
        let alice = Some("alice".to_owned());
        assert_eq!(
            events,
            [
                ("user_blocked".to_owned(), alice.clone()),
                ("session_revoked".to_owned(), alice.clone()),
                ("user_unblocked".to_owned(), alice),
            ]
        );

        let listed = run(&d, &sessions, "users list").await.expect("lists");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["subject"], "alice");
        assert_eq!(listed[0]["email"], "alice@example.com");
        assert_eq!(listed[0]["first_seen_at"], 100);
        assert_eq!(listed[0]["last_seen_at"], 100);
        assert_eq!(listed[0]["blocked"], false);
        db.remove().await;
    }
}

#[tokio::test]
async fn a_block_whose_sessions_cannot_be_ended_still_blocks_and_says_so() {
    let db = TestDb::sqlite();
    let d = migrated(&db).await;
    let sessions = FakeSessions {
        asked: Mutex::new(Vec::new()),
        result: Err("redis is unavailable".into()),
    };
    let err = run(&d, &sessions, "users block bob")
        .await
        .expect_err("fails");
    assert!(
        err.contains("bob is blocked") && err.contains("redis is unavailable"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    assert_eq!(d.is_blocked("bob").await, Blocked::Yes);
    let err = run(&d, &sessions, "sessions revoke --subject bob")
        .await
        .expect_err("fails");
    assert!(err.contains("redis is unavailable"), "{err}");
    assert_eq!(
        run(&d, &sessions, "migrate").await.expect("migrate"),
        [serde_json::json!({"schema_version": 1})]
    );
}
