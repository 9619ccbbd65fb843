//! Test harness: each test gets its own gatehouse on port 0, its own Redis key prefix on the
//! real Redis, and (when it signs in) the real development OpenID provider from tests/idp.

#![allow(dead_code)] // each test module uses a different part of the harness

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use std::time::Instant;

use gatehouse::config::{Settings, Sources};
use gatehouse::startup::Application;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::LOCATION;
use reqwest::redirect::Policy;
use url::Url;

/// The public URL every test app claims; the provider has its `/redirect` registered. Tests
/// never resolve it: they replay its path and query against the app's real address.
pub const PUBLIC_URL: &str = "http://gatehouse.test";
pub const CLIENT_ID: &str = "gatehouse";
pub const CLIENT_SECRET: &str = "gatehouse-dev-secret";

pub fn redis_url() -> String {
    std::env::var("GATEHOUSE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// 64+ random bytes, base64: a valid session secret.
pub fn session_secret() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unique_prefix() -> String {
    format!("gatehouse-test:{}:", gatehouse::random::token())
}

/// The settings every test app starts from, as environment variables. A dead provider by
/// default: tests that sign in point it at the development provider or a mock.
pub fn base_vars() -> HashMap<String, String> {
    [
        ("GATEHOUSE__SERVER__BIND", "127.0.0.1:0".to_owned()),
        ("GATEHOUSE__SERVER__PUBLIC_URL", PUBLIC_URL.to_owned()),
        (
            "GATEHOUSE__PROVIDER__AUTH_URL",
            "http://127.0.0.1:9/authorize".to_owned(),
        ),
        (
            "GATEHOUSE__PROVIDER__TOKEN_URL",
            "http://127.0.0.1:9/token".to_owned(),
        ),
        ("GATEHOUSE__PROVIDER__CLIENT_ID", CLIENT_ID.to_owned()),
        (
            "GATEHOUSE__PROVIDER__CLIENT_SECRET",
            CLIENT_SECRET.to_owned(),
        ),
        ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "2".to_owned()),
        ("GATEHOUSE__REDIS__URL", redis_url()),
        ("GATEHOUSE__REDIS__KEY_PREFIX", unique_prefix()),
        ("GATEHOUSE__SESSION__SECRET", session_secret()),
        ("GATEHOUSE__SESSION__COOKIE_SECURE", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Loads settings through the real loader (embedded defaults + these variables only).
pub fn load(vars: HashMap<String, String>) -> Result<Settings, gatehouse::config::SettingsError> {
    Settings::load(Sources {
        config_dir: None,
        environment: None,
        vars,
    })
    .map(|l| l.settings)
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub prefix: String,
    pub vars: HashMap<String, String>,
    /// Keeps cookies (in `jar`), follows no redirects.
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A test app whose provider is the development OpenID provider.
pub async fn spawn_app_with_idp(overrides: &[(&str, &str)]) -> TestApp {
    let idp = idp();
    let mut vars: Vec<(&str, &str)> = vec![
        ("GATEHOUSE__PROVIDER__ISSUER", idp.issuer.as_str()),
        ("GATEHOUSE__PROVIDER__AUTH_URL", ""),
        ("GATEHOUSE__PROVIDER__TOKEN_URL", ""),
    ];
    vars.extend_from_slice(overrides);
    spawn_app_with(&vars).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let mut vars = base_vars();
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    spawn_app_from_vars(vars).await
}

pub async fn spawn_app_from_vars(vars: HashMap<String, String>) -> TestApp {
    let settings = load(vars.clone()).expect("test settings are valid");
    let prefix = settings.redis.key_prefix.clone();
    let app = Application::build(settings).await.expect("app builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    let (client, jar) = browser_with_jar();
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        prefix,
        vars,
        client,
        jar,
    }
}

/// A client like a browser's cookie jar, that shows us every redirect instead of following.
pub fn browser() -> reqwest::Client {
    browser_with_jar().0
}

pub fn browser_with_jar() -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_provider(jar.clone())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client builds");
    (client, jar)
}

pub fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl TestApp {
    /// A handle on an app running elsewhere (e.g. the real binary) on this port.
    pub fn at(port: u16, prefix: String, vars: HashMap<String, String>) -> TestApp {
        let (client, jar) = browser_with_jar();
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            port,
            prefix,
            vars,
            client,
            jar,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// Same request, as a browser navigation (HTML preferred).
    pub async fn get_html(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .send()
            .await
            .expect("request sent")
    }

    /// Starts a sign-in; returns the provider URL gatehouse redirected to.
    pub async fn start_sign_in(&self, client: &reqwest::Client, return_to: Option<&str>) -> String {
        let mut url = Url::parse(&self.url("/signin")).expect("url");
        if let Some(rt) = return_to {
            url.query_pairs_mut().append_pair("return_to", rt);
        }
        let res = client.get(url).send().await.expect("signin answered");
        assert_eq!(
            res.status().as_u16(),
            303,
            "signin redirects to the provider"
        );
        location(&res)
    }

    /// Replays a callback URL the provider produced (on PUBLIC_URL) against this app.
    pub async fn follow_callback(
        &self,
        client: &reqwest::Client,
        callback: &str,
    ) -> reqwest::Response {
        let cb = Url::parse(callback).expect("callback url");
        let mut target = format!("{}{}", self.address, cb.path());
        if let Some(q) = cb.query() {
            target.push('?');
            target.push_str(q);
        }
        client.get(target).send().await.expect("callback answered")
    }

    /// A whole sign-in through the development provider's login form, as `login`. Returns
    /// the callback's response (a 303 to return_to on success).
    pub async fn sign_in(
        &self,
        client: &reqwest::Client,
        login: &str,
        return_to: Option<&str>,
    ) -> reqwest::Response {
        let authorize = self.start_sign_in(client, return_to).await;
        let callback = idp_login(client, &authorize, login).await;
        self.follow_callback(client, &callback).await
    }

    /// The `Cookie` header this app's browser would send.
    pub fn cookie_header(&self) -> String {
        let url = Url::parse(&self.address).expect("url");
        self.jar
            .cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
            .unwrap_or_default()
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connects")
    }

    /// The raw value under `<prefix><key>`.
    pub async fn get_key(&self, key: &str) -> Option<String> {
        let mut conn = self.redis().await;
        redis::cmd("GET")
            .arg(format!("{}{}", self.prefix, key))
            .query_async(&mut conn)
            .await
            .expect("GET")
    }

    /// Keys this app wrote, for assertions on what is (not) stored.
    pub async fn keys(&self, kind: &str) -> Vec<String> {
        let mut conn = self.redis().await;
        redis::cmd("KEYS")
            .arg(format!("{}{}:*", self.prefix, kind))
            .query_async(&mut conn)
            .await
            .expect("KEYS")
    }
}

/// The development OpenID provider (tests/idp), started once per test binary, or the one
/// named by GATEHOUSE_TEST_IDP_URL.
pub struct Idp {
    pub issuer: String,
    _child: Option<Child>,
}

pub fn idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(|| {
        if let Ok(issuer) = std::env::var("GATEHOUSE_TEST_IDP_URL") {
            return Idp {
                issuer,
                _child: None,
            };
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp");
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(dir)
            .env("IDP_PORT", port.to_string())
            .env("IDP_EXIT_WITH_STDIN", "1")
            .env("IDP_REDIRECT_URIS", format!("{PUBLIC_URL}/redirect"))
            .env("IDP_POST_LOGOUT_REDIRECT_URIS", format!("{PUBLIC_URL}/"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs tests/idp/server.mjs (run `npm ci` in tests/idp, or scripts/test)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.any(|l| l.map(|l| l.contains("idp listening")).unwrap_or(false));
        assert!(ready, "the development provider did not start");
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Idp {
            issuer: format!("http://127.0.0.1:{port}"),
            _child: Some(child),
        }
    })
}

fn resolve(base: &str, location: &str) -> String {
    Url::parse(base)
        .and_then(|b| b.join(location))
        .map(|u| u.to_string())
        .expect("resolvable location")
}

/// Walks the provider's dev login and consent forms; returns the callback URL it sends the
/// browser to (on PUBLIC_URL). Documented in tests/idp/README.md.
pub async fn idp_login(client: &reqwest::Client, authorize: &str, login: &str) -> String {
    let mut url = authorize.to_owned();
    for _ in 0..10 {
        if url.starts_with(PUBLIC_URL) {
            return url;
        }
        let res = client.get(&url).send().await.expect("provider answered");
        if res.status().is_redirection() {
            url = resolve(&url, &location(&res));
            continue;
        }
        assert_eq!(res.status().as_u16(), 200, "provider page at {url}");
        let body = res.text().await.expect("page body");
        let form = if body.contains("name=\"login\"") {
            vec![("prompt", "login"), ("login", login), ("password", "x")]
        } else {
            vec![("prompt", "consent")]
        };
        let res = client
            .post(&url)
            .form(&form)
            .send()
            .await
            .expect("form posted");
        assert!(
            res.status().is_redirection(),
            "form answered {}",
            res.status()
        );
        url = resolve(&url, &location(&res));
    }
    panic!("the provider did not send the browser back");
}

/// Walks to the provider's page and presses Cancel; returns the callback URL (error=…).
pub async fn idp_cancel(client: &reqwest::Client, authorize: &str) -> String {
    let res = client
        .get(authorize)
        .send()
        .await
        .expect("provider answered");
    let interaction = resolve(authorize, &location(&res));
    let res = client
        .get(format!("{interaction}/abort"))
        .send()
        .await
        .expect("abort answered");
    let resume = resolve(&interaction, &location(&res));
    let res = client.get(&resume).send().await.expect("resume answered");
    location(&res)
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        let path =
            std::env::temp_dir().join(format!("gatehouse-test-{}", gatehouse::random::token()));
        std::fs::create_dir_all(&path).expect("temp dir created");
        TempDir { path }
    }

    /// Writes `contents` to `name` in this directory; returns its path as text.
    pub fn write(&self, name: &str, contents: &str) -> String {
        let file = self.path.join(name);
        std::fs::write(&file, contents).expect("temp file written");
        file.to_str().expect("utf-8 temp path").to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A TCP server that accepts connections and never answers nor closes them (a hung Redis or
/// provider). Stops accepting and closes what it holds on drop.
pub struct BlackHole {
    pub port: u16,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl BlackHole {
    pub fn start() -> BlackHole {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("black hole binds");
        let port = listener.local_addr().expect("local addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    held.push(stream);
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        BlackHole {
            port,
            accepted,
            stop,
        }
    }

    /// How many connections it has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Asserts `res` is a contract error in JSON: status, `{"error": code, "message": text}`,
/// `cache-control: no-store` and an `x-request-id`. Returns the body.
pub async fn assert_json_error(
    res: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    let url = res.url().clone();
    assert_eq!(res.status().as_u16(), status, "status of {url}");
    let headers = res.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "content-type of {url}: {content_type:?}"
    );
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "cache-control of {url}"
    );
    assert!(
        headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.is_empty()),
        "x-request-id on {url}"
    );
    let text = res.text().await.expect("error body");
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("JSON body from {url} ({e}): {text}"));
    assert_eq!(body["error"], code, "error code from {url}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message from {url}: {body}"
    );
    body
}

// ---- The real binary ----

/// The binary with exactly these variables (plus PATH) and an empty config directory.
pub fn gatehouse_binary(vars: &HashMap<String, String>, config_dir: &TempDir) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GATEHOUSE_CONFIG_DIR", &config_dir.path)
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Kills the child if a test fails before it exits.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Running {
    /// Polls for the exit, up to `bound`.
    pub fn wait_exit(&mut self, bound: Duration) -> ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gatehouse did not exit within {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }
}

/// The binary started with `vars` (JSON logs): its stdout lines arrive on the channel.
pub struct Started {
    pub child: Running,
    pub lines: mpsc::Receiver<String>,
    pub port: u16,
    /// Everything logged up to and including the "listening" line.
    pub early: Vec<String>,
}

pub fn start_binary(vars: &HashMap<String, String>, dir: &TempDir) -> Started {
    let mut child = Running(gatehouse_binary(vars, dir).spawn().expect("binary starts"));
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut early = Vec::new();
    let port = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no \"gatehouse listening\" line; got {early:?}"));
        early.push(line.clone());
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if json["message"] == "gatehouse listening" {
            break json["port"].as_u64().expect("a port field") as u16;
        }
    };
    Started {
        child,
        lines,
        port,
        early,
    }
}
