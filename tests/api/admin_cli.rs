//! The real binary and the directory: `gatehouse migrate | users … | audit …`, start-up with an
//! unreachable database, and serving without one.

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use gatehouse::directory::{AuditEvent, Directory, EventKind};

use crate::databases::*;
use crate::helpers::*;

pub(crate) struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }

    /// Exactly one line on stderr.
    fn one_error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {:?}", self.stderr);
        lines[0]
    }
}

fn vars_for(db: &TestDb) -> HashMap<String, String> {
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__DATABASE__URL".into(), db.url.clone());
    vars
}

/// Runs `gatehouse <args>` to completion.
pub(crate) fn gatehouse(vars: &HashMap<String, String>, args: &str) -> Ran {
    let dir = TempDir::new();
    let mut cmd = gatehouse_binary(vars, &dir);
    cmd.args(args.split_whitespace());
    let mut child = Running(cmd.spawn().expect("binary starts"));
    let status = child.wait_exit(Duration::from_secs(30));
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = child
        .0
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout);
    let _ = child
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    Ran {
        code: status.code(),
        stdout,
        stderr,
    }
}

#[tokio::test]
async fn migrate_applies_the_schema_and_exits_0() {
    for db in TestDb::both().await {
        let vars = vars_for(&db);
        for _ in 0..2 {
            let ran = gatehouse(&vars, "migrate");
            assert_eq!(ran.code, Some(0), "{:?}: {}", db.kind, ran.stderr);
            assert_eq!(ran.json_lines(), [serde_json::json!({"schema_version": 1})]);
        }
        db.remove().await;
    }
}

#[test]
fn migrate_processes_started_at_once_on_one_fresh_sqlite_file_all_succeed() {
    let db = TestDb::sqlite();
    let vars = vars_for(&db);
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let vars = vars.clone();
            std::thread::spawn(move || gatehouse(&vars, "migrate"))
        })
        .collect();
    for run in runs {
        let ran = run.join().expect("thread");
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    }
}

#[tokio::test]
async fn users_and_audit_print_json_lines() {
    for db in TestDb::both().await {
        let vars = vars_for(&db);
        let directory = Directory::open(&db.settings(true)).expect("opens");
        directory.migrate().await.expect("migrated");
        directory
            .record_signin("alice", Some("alice@example.com"), Some("Alice"), 1_000)
            .await
            .expect("alice");
        directory.block("bob", 1_500).await.expect("bob");
        directory
            .write_events(&[
                AuditEvent::new(EventKind::Signin)
                    .subject("alice")
                    .ip(Some("192.0.2.1".parse().expect("ip")))
                    .at(1_000),
                AuditEvent::new(EventKind::UserBlocked)
                    .subject("bob")
                    .at(1_500),
            ])
            .await
            .expect("events");

        let ran = gatehouse(&vars, "users list");
        assert_eq!(ran.code, Some(0), "{:?}: {}", db.kind, ran.stderr);
        let users = ran.json_lines();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0]["subject"], "alice");
        assert_eq!(users[0]["email"], "alice@example.com");
        assert_eq!(users[0]["first_seen_at"], 1_000);
        assert_eq!(users[0]["last_seen_at"], 1_000);
        assert_eq!(users[0]["blocked"], false);
        assert_eq!(users[1]["subject"], "bob");
        assert_eq!(users[1]["first_seen_at"], serde_json::Value::Null);
        assert_eq!(users[1]["blocked"], true);

        let ran = gatehouse(&vars, "users unblock bob");
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        assert_eq!(
            ran.json_lines(),
            [serde_json::json!({"subject": "bob", "blocked": false})]
        );

        let ran = gatehouse(&vars, "audit");
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        let events = ran.json_lines();
        let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(names, ["signin", "user_blocked", "user_unblocked"]);
        assert_eq!(
            events[0],
            serde_json::json!({"time": 1_000, "event": "signin", "subject": "alice", "ip": "192.0.2.1"})
        );

        let ran = gatehouse(&vars, "audit --subject bob --since 1500");
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        let names: Vec<String> = ran
            .json_lines()
            .iter()
            .filter_map(|e| e["event"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(names, ["user_blocked", "user_unblocked"]);
        let ran = gatehouse(&vars, "audit --since 99999999999");
        assert_eq!((ran.code, ran.stdout.as_str()), (Some(0), ""));
        db.remove().await;
    }
}

#[test]
fn commands_that_fail_say_why_in_one_line() {
    let db = TestDb::sqlite();
    let vars = vars_for(&db);
    for (args, code, says) in [
        ("users", 2, "usage"),
        ("audit --since yesterday", 2, "--since"),
        ("users unblock nobody", 1, "nobody"),
    ] {
        let ran = gatehouse(&vars, args);
        assert_eq!(ran.code, Some(code), "{args}: {}", ran.stderr);
        assert!(
            ran.one_error_line().contains(says),
            "{args}: {}",
            ran.stderr
        );
    }

    let mut dead = vars.clone();
    dead.insert(
        "GATEHOUSE__DATABASE__URL".into(),
        format!(
            "postgres://gatehouse:s3cr3t-pw@127.0.0.1:{}/gatehouse",
            dead_port()
        ),
    );
    for args in ["migrate", "users list", "audit"] {
        let ran = gatehouse(&dead, args);
        assert_eq!(ran.code, Some(1), "{args}: {}", ran.stderr);
        let line = ran.one_error_line();
        assert!(!line.contains("s3cr3t-pw"), "{line}");
    }
    let mut bad = vars;
    bad.insert("GATEHOUSE__DATABASE__URL".into(), "mysql://h/db".into());
    let ran = gatehouse(&bad, "users list");
    assert_eq!(ran.code, Some(2));
    assert!(ran.one_error_line().contains("GATEHOUSE__DATABASE__URL"));
}

#[test]
fn start_up_with_an_unreachable_database_stops_with_one_line() {
    let dead_postgres = format!(
        "postgres://gatehouse:s3cr3t-pw@127.0.0.1:{}/gatehouse",
        dead_port()
    );
    // Its folder would have to be inside a regular file.
    let impossible_sqlite = "sqlite:///proc/version/gatehouse.db".to_owned();
    for url in [dead_postgres, impossible_sqlite] {
        let mut vars = base_vars();
        vars.insert("GATEHOUSE__DATABASE__URL".into(), url.clone());
        let ran = gatehouse(&vars, "");
        assert!(ran.code.is_some_and(|c| c != 0), "{url}: {:?}", ran.code);
        let line = ran.one_error_line();
        assert!(line.contains("GATEHOUSE__DATABASE__URL"), "{line}");
        assert!(
            line.contains("GATEHOUSE__DATABASE__MIGRATE=false"),
            "{line}"
        );
        assert!(!line.contains("s3cr3t-pw"), "{line}");
    }
}

#[tokio::test]
async fn the_server_migrates_its_database_at_start_up() {
    for db in TestDb::both().await {
        let _app = spawn_app_with(&[("GATEHOUSE__DATABASE__URL", db.url.as_str())]).await;
        // Not migrated here: the app did it.
        let directory = Directory::open(&db.settings(false)).expect("opens");
        assert!(directory.users_page(None, 1).await.is_ok(), "{:?}", db.kind);
        db.remove().await;
    }
}

/// With DATABASE__MIGRATE=false nothing waits for the database: the app serves, /readyz is 200
/// (Redis is what serving needs), and /metrics shows the directory degraded.
#[tokio::test]
async fn serving_goes_on_without_the_database_and_metrics_show_it_degraded() {
    let dead = format!("postgres://gatehouse@127.0.0.1:{}/gatehouse", dead_port());
    let app = spawn_app_with(&[
        ("GATEHOUSE__DATABASE__URL", dead.as_str()),
        ("GATEHOUSE__DATABASE__MIGRATE", "false"),
        ("GATEHOUSE__METRICS__PUBLIC", "true"),
    ])
    .await;
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = app.get("/metrics").await.text().await.expect("metrics");
        if text.lines().any(|l| l == "gatehouse_directory_degraded 1") {
            assert!(text.contains("gatehouse_audit_dropped_total 0"), "{text}");
            assert!(text.contains("gatehouse_audit_pending 0"), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the directory never showed degraded: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
}
