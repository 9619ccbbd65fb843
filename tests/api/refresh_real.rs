//! Refresh exactly once, against the real development provider (not a fake): a provider of
//! this test's own whose access tokens live a few seconds, the public client (whose refresh
//! tokens rotate: a second refresh with the spent one would be `invalid_grant`, and the
//! session lost), and a relay in front of its token endpoint that counts the refresh grants
//! that reach it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::helpers::*;

/// How long the test provider's access tokens live.
const ACCESS_TOKEN_TTL_SECS: u64 = 6;

/// The development provider (tests/idp/server.mjs) on a port of its own, with its own
/// settings; it exits when dropped.
fn own_provider(settings: &[(&str, &str)]) -> Idp {
    let settings: Vec<(&str, String)> = settings
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    spawn_idp(&settings)
}

/// A TCP relay to `upstream` that keeps what clients sent, to count requests by their bytes.
struct CountingRelay {
    port: u16,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CountingRelay {
    async fn start(upstream: u16) -> CountingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay binds");
        let port = listener.local_addr().expect("addr").port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let all = sent.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let slot = {
                    let mut all = all.lock().expect("lock");
                    all.push(Vec::new());
                    all.len() - 1
                };
                let (mut from_client, mut to_server) = (client, server);
                let all = all.clone();
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = from_client.split();
                    let (mut server_read, mut server_write) = to_server.split();
                    let upstream = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            // Recorded before it is forwarded: counted by the time it is
                            // answered.
                            all.lock().expect("lock")[slot].extend_from_slice(&buf[..n]);
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = server_write.shutdown().await;
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        });
        CountingRelay { port, sent, accept }
    }

    /// How many times clients sent `needle` (each connection's bytes searched as a whole).
    fn count(&self, needle: &str) -> usize {
        let sent = self.sent.lock().expect("lock");
        sent.iter()
            .map(|bytes| {
                bytes
                    .windows(needle.len())
                    .filter(|w| *w == needle.as_bytes())
                    .count()
            })
            .sum()
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn expires_at(client: &reqwest::Client, app: &TestApp) -> u64 {
    let res = client
        .get(app.url("/session"))
        .send()
        .await
        .expect("session");
    assert_eq!(res.status().as_u16(), 200, "signed in");
    let body: serde_json::Value = res.json().await.expect("json");
    body["expires_at"].as_u64().expect("expires_at")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_after_expiry_refresh_exactly_once_at_the_real_provider() {
    const REFRESH_GRANT: &str = "grant_type=refresh_token";
    let ttl = ACCESS_TOKEN_TTL_SECS.to_string();
    let provider = own_provider(&[("IDP_ACCESS_TOKEN_TTL", ttl.as_str())]);
    let upstream: u16 = provider
        .issuer
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the provider's port");
    let relay = CountingRelay::start(upstream).await;
    let token_url = format!("http://127.0.0.1:{}/token", relay.port);
    let app = Arc::new(
        spawn_app_with(&[
            ("GATEHOUSE__PROVIDER__ISSUER", provider.issuer.as_str()),
            ("GATEHOUSE__PROVIDER__AUTH_URL", ""),
            // Discovery fills the rest; the token endpoint is reached through the relay.
            ("GATEHOUSE__PROVIDER__TOKEN_URL", token_url.as_str()),
            // The public client: PKCE only, and rotating refresh tokens.
            ("GATEHOUSE__PROVIDER__CLIENT_ID", "gatehouse-public"),
            ("GATEHOUSE__PROVIDER__CLIENT_SECRET", ""),
            ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "10"),
            // Refresh only once the access token has expired.
            ("GATEHOUSE__TOKENS__REFRESH_BEFORE_SECS", "0"),
        ])
        .await,
    );
    let (client, _jar) = browser_with_jar();
    let res = app.sign_in(&client, "rhea", None).await;
    assert_eq!(res.status().as_u16(), 303, "signed in at the real provider");
    assert_eq!(relay.count("grant_type=authorization_code"), 1);

    // The token expires: wait for the clock (a deadline, not a race). Reading /session may
    // itself refresh when a slow sign-in outlasted the token; count from after that.
    let expiry = expires_at(&client, &app).await;
    let before = relay.count(REFRESH_GRANT);
    while gatehouse::identity::now_unix() <= expiry {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Many requests at once, every one holding the expired token.
    let mut burst = JoinSet::new();
    for _ in 0..20 {
        let (client, url) = (client.clone(), app.url("/auth"));
        burst.spawn(async move {
            let res = client.get(url).send().await.expect("auth");
            let user = res
                .headers()
                .get("x-auth-request-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (res.status().as_u16(), user)
        });
    }
    while let Some(done) = burst.join_next().await {
        let (status, user) = done.expect("request task");
        assert_eq!(status, 200, "every request waits for the one refresh");
        assert_eq!(user, "rhea");
    }
    assert_eq!(
        relay.count(REFRESH_GRANT),
        before + 1,
        "exactly one refresh reached the provider"
    );
    let renewed = expires_at(&client, &app).await;
    assert!(renewed > expiry, "a new access token: {renewed} > {expiry}");
}
