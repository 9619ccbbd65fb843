//! The loopback redirect listener of RFC 8252 (7.3, 8.3): `127.0.0.1` only (never a wildcard
//! address), on a port the system picks, for one sign-in.
//!
//! Any local process can connect to it, and another one may race for the callback: a request
//! that does not carry this sign-in's state is answered with a page saying so and otherwise
//! ignored, and the listener keeps waiting for the right one. The first request with the right
//! state ends the wait, whatever it carries (a code or an error); the listener closes then.
//! Each connection is read with bounds on size and time, a few at a time, so a hostile one
//! can neither hold the sign-in up nor eat memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The callback path registered at the provider (`http://127.0.0.1/callback`, any port).
pub const CALLBACK_PATH: &str = "/callback";
/// A request head longer than this is no callback of ours.
const MAX_HEAD: usize = 16 * 1024;
/// Each connection must deliver its request head within this.
const READ_BOUND: Duration = Duration::from_secs(10);
/// Connections handled at once; more are closed unanswered.
const MAX_CONNECTIONS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error("cannot listen on 127.0.0.1 for the browser's return: {0}")]
    Listen(std::io::Error),
    #[error("no sign-in came back within {0} s; run gatehouse login again")]
    TimedOut(u64),
}

/// What the browser is shown.
pub enum Page {
    SignedIn,
    Failed(String),
    NotThisSignIn,
    NotFound,
    BadRequest,
}

impl Page {
    fn render(&self) -> Vec<u8> {
        let (status, title, text) = match self {
            Page::SignedIn => (
                "200 OK",
                "Signed in",
                "You are signed in. You may close this tab and return to the terminal.".to_owned(),
            ),
            Page::Failed(why) => (
                "400 Bad Request",
                "Sign-in failed",
                format!(
                    "The sign-in failed: {why}. You may close this tab; the terminal says \
                     what to do next."
                ),
            ),
            Page::NotThisSignIn => (
                "400 Bad Request",
                "Not this sign-in",
                "This is not the sign-in the terminal is waiting for (its state does not \
                 match). It was ignored."
                    .to_owned(),
            ),
            Page::NotFound => ("404 Not Found", "Not found", "Nothing here.".to_owned()),
            Page::BadRequest => (
                "400 Bad Request",
                "Bad request",
                "This request could not be read.".to_owned(),
            ),
        };
        let body = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>gatehouse: {title}</title></head>\
             <body><h1>{title}</h1><p>{}</p></body></html>\n",
            escape(&text)
        );
        let mut out = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\n\
             content-length: {}\r\ncache-control: no-store\r\nreferrer-policy: no-referrer\r\n\
             x-content-type-options: nosniff\r\ncontent-security-policy: default-src 'none'\r\n\
             x-frame-options: DENY\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// The callback that carried this sign-in's state; the browser waits for [`Arrival::answer`].
pub struct Arrival {
    /// Its query parameters, as sent (a name may repeat).
    pub params: Vec<(String, String)>,
    stream: TcpStream,
}

impl Arrival {
    /// The parameter `name` when it was sent exactly once.
    pub fn param(&self, name: &str) -> Result<Option<&str>, String> {
        single(&self.params, name)
    }

    pub async fn answer(mut self, page: Page) {
        respond(&mut self.stream, &page).await;
    }
}

fn single<'a>(params: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, String> {
    let mut values = params.iter().filter(|(k, _)| k == name);
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some((_, v)), None) => Ok(Some(v.as_str())),
        (Some(_), Some(_)) => Err(format!("the `{name}` parameter is repeated")),
    }
}

async fn respond(stream: &mut TcpStream, page: &Page) {
    // The browser may have gone; nothing to do about it then.
    let _ = tokio::time::timeout(READ_BOUND, async {
        stream.write_all(&page.render()).await?;
        stream.shutdown().await
    })
    .await;
}

pub struct Loopback {
    listener: TcpListener,
    port: u16,
}

impl Loopback {
    pub async fn bind() -> Result<Loopback, LoopbackError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(LoopbackError::Listen)?;
        let port = listener.local_addr().map_err(LoopbackError::Listen)?.port();
        Ok(Loopback { listener, port })
    }

    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}{CALLBACK_PATH}", self.port)
    }

    /// Waits until a callback carries `state` (compared in constant time), or `timeout`.
    /// Consumes the listener: once this returns, the port is closed.
    pub async fn wait(self, state: &str, timeout: Duration) -> Result<Arrival, LoopbackError> {
        let deadline = Instant::now() + timeout;
        let (tx, mut rx) = mpsc::channel::<(Vec<(String, String)>, TcpStream)>(MAX_CONNECTIONS);
        let busy = Arc::new(AtomicUsize::new(0));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(LoopbackError::TimedOut(timeout.as_secs()));
                }
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        // Out of descriptors, say: give others a moment rather than spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                        busy.fetch_sub(1, Ordering::AcqRel);
                        continue; // dropped: closed unanswered
                    }
                    let (tx, busy) = (tx.clone(), Arc::clone(&busy));
                    tokio::spawn(async move {
                        read_callback(stream, tx).await;
                        busy.fetch_sub(1, Ordering::AcqRel);
                    });
                }
                Some((params, mut stream)) = rx.recv() => {
                    let matches = single(&params, "state")
                        .ok()
                        .flatten()
                        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(state.as_bytes())));
                    if matches {
                        return Ok(Arrival { params, stream });
                    }
                    tokio::spawn(async move { respond(&mut stream, &Page::NotThisSignIn).await });
                }
            }
        }
    }
}

/// Reads one request; a GET of the callback path goes to the waiting sign-in, anything else
/// is answered here.
async fn read_callback(
    mut stream: TcpStream,
    to_sign_in: mpsc::Sender<(Vec<(String, String)>, TcpStream)>,
) {
    let head = match tokio::time::timeout(READ_BOUND, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        // Too slow, too large or closed: not worth an answer.
        _ => return,
    };
    let page = match parse_request_line(&head) {
        Ok(params) => {
            // The sign-in has ended (the receiver is gone) when this fails: the stream drops.
            let _ = to_sign_in.send((params, stream)).await;
            return;
        }
        Err(page) => page,
    };
    respond(&mut stream, &page).await;
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return String::from_utf8(buf).ok();
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
}

/// `GET /callback?query HTTP/1.x` → the query's parameters; anything else → the page to
/// answer with.
fn parse_request_line(head: &str) -> Result<Vec<(String, String)>, Page> {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Page::BadRequest);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Page::BadRequest);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != CALLBACK_PATH {
        return Err(Page::NotFound);
    }
    if method != "GET" {
        return Err(Page::BadRequest);
    }
    Ok(url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_get_of_the_callback_path_is_a_callback() {
        let params =
            parse_request_line("GET /callback?code=c&state=s%2B1 HTTP/1.1\r\nHost: x").ok();
        assert_eq!(
            params,
            Some(vec![
                ("code".to_owned(), "c".to_owned()),
                ("state".to_owned(), "s+1".to_owned())
            ])
        );
        for (line, want) in [
            ("GET /favicon.ico HTTP/1.1", "404"),
            ("GET /callbackx?state=s HTTP/1.1", "404"),
            ("POST /callback?state=s HTTP/1.1", "400"),
            ("GET /callback?state=s", "400"),
            ("GET /callback?state=s SPDY/3", "400"),
            ("", "400"),
        ] {
            let page = parse_request_line(line).expect_err("not a callback");
            let text = String::from_utf8(page.render()).expect("utf-8");
            assert!(
                text.starts_with(&format!("HTTP/1.1 {want}")),
                "{line}: {text}"
            );
        }
    }

    #[test]
    fn repeated_parameters_are_not_taken() {
        let params = vec![
            ("state".to_owned(), "a".to_owned()),
            ("state".to_owned(), "b".to_owned()),
        ];
        assert!(single(&params, "state").is_err());
        assert_eq!(single(&params, "code"), Ok(None));
    }

    #[test]
    fn pages_escape_what_they_quote() {
        let page = Page::Failed("<script>alert(1)</script>".into()).render();
        let text = String::from_utf8(page).expect("utf-8");
        assert!(!text.contains("<script>") && text.contains("&lt;script&gt;"));
        assert!(text.contains("content-security-policy: default-src 'none'"));
    }
}
