//! The real binary: start-up failures are one line on stderr and a non-zero exit; SIGTERM lets
//! an in-flight request finish, then the process exits 0.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// Start-up with these settings must fail: returns (exit status, stdout, stderr).
fn failed_start(vars: &HashMap<String, String>) -> (ExitStatus, String, String) {
    let dir = TempDir::new();
    let mut child = Running(gatehouse_binary(vars, &dir).spawn().expect("binary starts"));
    let status = child.wait_exit(Duration::from_secs(5));
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .0
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("stdout read");
    child
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr read");
    assert!(!status.success(), "start-up must fail: {stdout}{stderr}");
    (status, stdout, stderr)
}

/// Asserts stderr is exactly one line naming `var`, and no secret of `vars` is printed.
fn assert_one_line_naming(vars: &HashMap<String, String>, stdout: &str, stderr: &str, var: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr: {stderr:?}");
    assert!(lines[0].contains(var), "{var} named: {stderr:?}");
    for secret in [
        vars.get("GATEHOUSE__SESSION__SECRET"),
        vars.get("GATEHOUSE__PROVIDER__CLIENT_SECRET"),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!stdout.contains(secret.as_str()), "secret on stdout");
        assert!(!stderr.contains(secret.as_str()), "secret on stderr");
    }
}

#[test]
fn a_missing_client_id_stops_start_up_with_one_line() {
    let mut vars = base_vars();
    vars.remove("GATEHOUSE__PROVIDER__CLIENT_ID");
    let (_, stdout, stderr) = failed_start(&vars);
    assert_one_line_naming(&vars, &stdout, &stderr, "GATEHOUSE__PROVIDER__CLIENT_ID");
}

#[test]
fn an_invalid_value_stops_start_up_with_one_line() {
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__PROVIDER__TIMEOUT_SECS".into(), "abc".into());
    let (_, stdout, stderr) = failed_start(&vars);
    assert_one_line_naming(&vars, &stdout, &stderr, "GATEHOUSE__PROVIDER__TIMEOUT_SECS");
}

#[test]
fn a_bad_session_secret_is_named_but_not_printed() {
    let mut vars = base_vars();
    vars.insert(
        "GATEHOUSE__SESSION__SECRET".into(),
        "hunter2hunter2hunter2".into(),
    );
    let (_, stdout, stderr) = failed_start(&vars);
    assert_one_line_naming(&vars, &stdout, &stderr, "GATEHOUSE__SESSION__SECRET");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_busy_bind_address_stops_start_up_with_one_line() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__SERVER__BIND".into(), addr);
    let (_, stdout, stderr) = failed_start(&vars);
    assert_one_line_naming(&vars, &stdout, &stderr, "GATEHOUSE__SERVER__BIND");
    drop(busy);
}

/// The status of a plain HTTP/1.1 GET (the connection closed after it).
fn status_of(port: u16, path: &str) -> u16 {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("request written");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

#[test]
fn unknown_variables_are_warned_about_at_start_up() {
    let dir = TempDir::new();
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__LOG__FORMAT".into(), "json".into());
    vars.insert("GATEHOUSE__PROVIDER__CLIENT_SECRTE".into(), "typo".into());
    let mut started = start_binary(&vars, &dir);
    let warning = started
        .early
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| {
            j["message"]
                .as_str()
                .is_some_and(|m| m.contains("GATEHOUSE__PROVIDER__CLIENT_SECRTE"))
        })
        .unwrap_or_else(|| panic!("no warning in {:?}", started.early));
    assert_eq!(warning["level"], "WARN");
    assert!(
        !warning.to_string().contains("typo"),
        "the value is not logged: {warning}"
    );

    // Serving (and an idle server stops cleanly on SIGTERM).
    assert_eq!(status_of(started.port, "/healthz"), 200);
    started.child.sigterm();
    let exit = started.child.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

#[test]
fn sigterm_right_after_the_listening_line_exits_0() {
    // The window is a few milliseconds wide: try several times.
    for attempt in 0..10 {
        let dir = TempDir::new();
        let mut vars = base_vars();
        vars.insert("GATEHOUSE__LOG__FORMAT".into(), "json".into());
        let mut started = start_binary(&vars, &dir);
        started.child.sigterm();
        let exit = started.child.wait_exit(Duration::from_secs(10));
        assert_eq!(exit.code(), Some(0), "attempt {attempt}: {exit:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_0() {
    let hole = BlackHole::start();
    let dir = TempDir::new();
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__LOG__FORMAT".into(), "json".into());
    vars.insert("GATEHOUSE__REDIS__URL".into(), hole.redis_url());
    let secret = vars["GATEHOUSE__SESSION__SECRET"].clone();
    let mut started = start_binary(&vars, &dir);
    assert_eq!(hole.accepted(), 0, "Redis is connected lazily");

    // Like a reverse proxy: an idle keep-alive connection stays open across the shutdown.
    let proxy = reqwest::Client::new();
    let res = proxy
        .get(format!("http://127.0.0.1:{}/healthz", started.port))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status().as_u16(), 200);
    res.bytes()
        .await
        .expect("body read, connection back in the pool");

    // /readyz waits on the hung Redis for its whole bound.
    let url = format!("http://127.0.0.1:{}/readyz", started.port);
    let in_flight = tokio::spawn(async move {
        let res = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = res.text().await?;
        Ok::<_, reqwest::Error>((status, content_type, body))
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while hole.accepted() == 0 {
        assert!(
            Instant::now() < deadline,
            "/readyz never reached the hung Redis"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!in_flight.is_finished(), "the request is still in flight");

    started.child.sigterm();
    let signalled = Instant::now();

    let (status, content_type, body) = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request is answered")
        .expect("task")
        .expect("a complete response, not a dropped connection");
    assert_eq!(status, 503, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: serde_json::Value = serde_json::from_str(&body).expect("complete JSON body");
    assert_eq!(body["error"], "store_unavailable");

    let left = Duration::from_secs(10).saturating_sub(signalled.elapsed());
    let exit = started.child.wait_exit(left);
    drop(proxy);
    assert!(exit.success(), "exit status {exit:?}");
    assert_eq!(exit.code(), Some(0));

    // It said so, and never printed the session secret.
    let mut rest = Vec::new();
    while let Ok(line) = started.lines.recv_timeout(Duration::from_secs(5)) {
        rest.push(line); // until the reader sees EOF and hangs up
    }
    let all: Vec<&String> = started.early.iter().chain(rest.iter()).collect();
    assert!(
        all.iter().any(|l| l.contains("gatehouse stopped")),
        "{all:?}"
    );
    assert!(all.iter().all(|l| !l.contains(&secret)), "secret logged");
}

#[test]
fn pretty_logs_are_human_readable_lines() {
    let dir = TempDir::new();
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__LOG__FORMAT".into(), "pretty".into());
    let mut child = Running(
        gatehouse_binary(&vars, &dir)
            .spawn()
            .expect("binary starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("gatehouse listening"))
        .expect("a listening line");
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err(),
        "not JSON: {line}"
    );
    assert!(line.contains("INFO") && line.contains("port="), "{line}");
    child.sigterm();
    assert_eq!(child.wait_exit(Duration::from_secs(10)).code(), Some(0));
}
