//! The real binary's log is written by a thread of its own: every line logged before exit is
//! written out, and a reader of stdout that falls behind costs lines, never requests, and the
//! loss is counted in /metrics and said in the log.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use crate::helpers::*;

/// The request lines (one per finished request) for `path` among JSON log lines.
fn request_lines(lines: &[String], path: &str) -> usize {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|j| j["message"] == "request" && j["span"]["path"] == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_logged_before_exit_is_written_out() {
    let dir = TempDir::new();
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__LOG__FORMAT".into(), "json".into());
    let mut started = start_binary(&vars, &dir);
    // A burst just before the signal: its lines are still queued when the process ends.
    let client = reqwest::Client::new();
    const REQUESTS: usize = 300;
    for _ in 0..REQUESTS {
        let res = client
            .get(format!("http://127.0.0.1:{}/healthz", started.port))
            .send()
            .await
            .expect("healthz");
        assert_eq!(res.status().as_u16(), 200);
    }
    started.child.sigterm();
    assert_eq!(
        started.child.wait_exit(Duration::from_secs(10)).code(),
        Some(0)
    );
    // The channel ends when the reader sees the end of stdout: these are all the lines.
    let lines: Vec<String> = started
        .early
        .iter()
        .cloned()
        .chain(started.lines.iter())
        .collect();
    assert_eq!(request_lines(&lines, "/healthz"), REQUESTS, "{lines:#?}");
    let last = lines.last().expect("lines");
    assert!(last.contains("gatehouse stopped"), "the last line: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_reader_that_falls_behind_costs_lines_not_requests_and_it_is_counted() {
    let dir = TempDir::new();
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__LOG__FORMAT".into(), "json".into());
    // Room for the start-up lines, little more.
    vars.insert("GATEHOUSE__LOG__BUFFER_LINES".into(), "64".into());
    let metrics_port = dead_port();
    vars.insert(
        "GATEHOUSE__METRICS__BIND".into(),
        format!("127.0.0.1:{metrics_port}"),
    );
    let mut child = Running(
        gatehouse_binary(&vars, &dir)
            .spawn()
            .expect("binary starts"),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().expect("stdout"));
    let mut early = Vec::new();
    let port = loop {
        let mut line = String::new();
        let read = stdout.read_line(&mut line).expect("stdout read");
        assert!(read > 0, "no listening line: {early:?}");
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
            if json["message"] == "gatehouse listening" {
                break json["port"].as_u64().expect("port") as u16;
            }
        }
        early.push(line);
    };

    // Nobody reads stdout from here on: the pipe, then the writer's buffer, then its queue
    // fill up. Requests must go on being answered all the same.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let dropped = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix("gatehouse_log_lines_dropped_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no dropped-lines counter in {text}"))
    };
    let mut answered = 0;
    let mut lost = 0.0;
    // ~128 KiB of pipe and buffer hold a few hundred request lines; 10,000 is far beyond.
    for _ in 0..100 {
        for _ in 0..100 {
            let res = client
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .expect("answered while the log is stuck");
            assert_eq!(res.status().as_u16(), 200);
            answered += 1;
        }
        let metrics = client
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        lost = dropped(&metrics);
        if lost > 0.0 {
            break;
        }
    }
    assert!(lost > 0.0, "no line dropped after {answered} requests");

    // Reading again, and stopping at once: by the time the process has exited, the writer has
    // caught up and said in the log how many lines were lost, every one of them counted.
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    child.sigterm();
    assert_eq!(child.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let rest: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let reports: Vec<&serde_json::Value> = rest
        .iter()
        .filter(|j| {
            j["message"]
                .as_str()
                .is_some_and(|m| m.contains("log lines were dropped"))
        })
        .collect();
    assert!(reports.iter().all(|r| r["level"] == "WARN"), "{reports:#?}");
    let reported: u64 = reports.iter().filter_map(|r| r["lost"].as_u64()).sum();
    assert!(
        reported as f64 >= lost,
        "{reported} lines reported lost in the log, {lost} counted in /metrics: {reports:#?}"
    );
    assert!(
        rest.iter().any(|j| j["message"] == "gatehouse stopped"),
        "{rest:#?}"
    );
}
