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
use gatehouse::store::record::{self, SessionKey};
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
        // The tests that are not about access rules let every signed-in user pass, and say so.
        ("GATEHOUSE__ACCESS__ALLOW_ANY_USER", "true".to_owned()),
        // Each app its own directory: a fresh SQLite file (tests/api/databases.rs: PostgreSQL).
        ("GATEHOUSE__DATABASE__URL", fresh_sqlite_url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A fresh SQLite URL in this test process's own folder under the temp dir. Folders of test
/// processes that have exited are removed the first time a process asks.
pub fn fresh_sqlite_url() -> String {
    let file = process_folder().join(format!("{}.db", gatehouse::random::token()));
    format!("sqlite://{}", file.display())
}

fn process_folder() -> &'static std::path::PathBuf {
    static FOLDER: OnceLock<std::path::PathBuf> = OnceLock::new();
    FOLDER.get_or_init(|| {
        let root = std::env::temp_dir().join("gatehouse-test-db");
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let pid = entry.file_name().to_string_lossy().into_owned();
                if pid.parse::<u32>().is_ok()
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let folder = root.join(std::process::id().to_string());
        std::fs::create_dir_all(&folder).expect("test database folder");
        folder
    })
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
        // The real provider is one Node process shared by parallel tests: on a loaded
        // 2-core machine it can take seconds to answer, which is not what these tests test.
        ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "10"),
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
    let app = spawn_app_unready(vars).await;
    if app
        .vars
        .get("GATEHOUSE__PROVIDER__ISSUER")
        .is_some_and(|i| !i.is_empty())
    {
        app.wait_for_provider().await;
    }
    app
}

/// Like `spawn_app_from_vars`, without waiting for discovery.
pub async fn spawn_app_unready(vars: HashMap<String, String>) -> TestApp {
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
        // gatehouse closes a keep-alive connection idle for 5 s (actix's default); a browser
        // whose sign-in at the provider takes that long on a loaded machine would otherwise
        // reuse the connection just as it closes (hyper's IncompleteMessage).
        .pool_idle_timeout(Duration::from_secs(2))
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

    /// Discovery runs in the background: poll readiness until the provider is in (Redis may
    /// still be down on purpose).
    pub async fn wait_for_provider(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let res = self
                .client
                .get(self.url("/readyz"))
                .send()
                .await
                .expect("readyz");
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            if body["error"] != "provider_unavailable" {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "provider discovery did not finish"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
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

    /// The tokens of this app's one signed-in session, as stored in Redis.
    pub async fn stored_tokens(&self) -> serde_json::Value {
        let keys = self.keys("session").await;
        assert_eq!(keys.len(), 1, "one session");
        let stored = self
            .get_key(keys[0].trim_start_matches(&self.prefix))
            .await
            .expect("session");
        // The tokens are sealed with the key only the browser's cookie carries.
        let session_key = self
            .session_key()
            .expect("this app's browser has a session cookie");
        let parts = SessionKey::parse(&session_key).expect("a session key of ours");
        let session = record::decode(stored.as_bytes(), parts.id, parts.key.as_ref())
            .expect("the stored session opens with the cookie's key");
        serde_json::to_value(&session.tokens).expect("tokens")
    }

    /// The session key this app's browser holds: the session cookie's value without its
    /// signature (44 characters of base64 in front).
    pub fn session_key(&self) -> Option<String> {
        let name = self
            .vars
            .get("GATEHOUSE__SESSION__COOKIE_NAME")
            .cloned()
            .unwrap_or_else(|| "gatehouse".to_owned());
        session_key_in(&self.cookie_header(), &name)
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

/// The session key in a `Cookie` header's session cookie named `name`.
pub fn session_key_in(cookie_header: &str, name: &str) -> Option<String> {
    cookie_header.split(';').find_map(|pair| {
        let (n, v) = pair.trim().split_once('=')?;
        let v = percent_encoding::percent_decode_str(v).decode_utf8().ok()?;
        (n == name && v.len() > 44).then(|| v[44..].to_owned())
    })
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
        start_idp("http", &[("IDP_JWT_CLIENT_JWKS", jwt_client_jwks())])
    })
}

/// The client of the development provider that authenticates with private_key_jwt
/// (`IDP_JWT_CLIENT_JWKS`): `idp()` registers the public halves of these test-only keys for it.
pub const JWT_CLIENT_ID: &str = "gatehouse-jwt";
pub const JWT_CLIENT_RSA_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/test-only-keys/rsa-key.pem"
);
pub const JWT_CLIENT_EC_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/test-only-keys/ec-p256-key.pem"
);

/// The JWK Set of JWT_CLIENT_RSA_KEY and JWT_CLIENT_EC_KEY, without `kid`s (the provider gives
/// each its RFC 7638 thumbprint).
fn jwt_client_jwks() -> String {
    let key = |name: &str| -> serde_json::Value {
        let path = format!(
            "{}/tests/data/test-only-keys/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).expect("test key")).expect("jwk")
    };
    serde_json::json!({"keys": [key("rsa-jwk.json"), key("ec-p256-jwk.json")]}).to_string()
}

/// A plain-http development provider of the caller's own (see [`start_idp`]), e.g. with
/// `IDP_BACKCHANNEL_URI`.
pub fn spawn_idp(extra: &[(&str, String)]) -> Idp {
    start_idp("http", extra)
}

/// A development provider of the caller's own on a free port, with the harness's redirect URIs
/// and these extra `IDP_*` variables; its issuer is `<scheme>://127.0.0.1:<port>` (for https,
/// pass IDP_TLS_CERT and IDP_TLS_KEY). It exits when the returned value is dropped.
pub fn start_idp(scheme: &str, extra: &[(&str, String)]) -> Idp {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let issuer = format!("{scheme}://127.0.0.1:{port}");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp");
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(dir)
        .env("IDP_PORT", port.to_string())
        .env("IDP_ISSUER", &issuer)
        .env("IDP_EXIT_WITH_STDIN", "1")
        // The loopback URIs match any port (RFC 8252 7.3, see tests/idp): gatehouse
        // behind a test nginx has PUBLIC_URL http://127.0.0.1:<port>.
        .env(
            "IDP_REDIRECT_URIS",
            format!("{PUBLIC_URL}/redirect,http://127.0.0.1/redirect"),
        )
        .env(
            "IDP_POST_LOGOUT_REDIRECT_URIS",
            format!("{PUBLIC_URL}/,http://127.0.0.1/"),
        )
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
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
        issuer,
        _child: Some(child),
    }
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
    idp_login_to(client, authorize, login, PUBLIC_URL).await
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

// ---- Behind a real nginx (deploy/nginx) ----

/// Like `idp_login`, for a client whose redirect URI is `callback` (e.g. an nginx origin +
/// `/redirect`): walks the login and consent forms and returns the callback URL, unvisited.
pub async fn idp_login_to(
    client: &reqwest::Client,
    authorize: &str,
    login: &str,
    callback: &str,
) -> String {
    let mut url = authorize.to_owned();
    for _ in 0..10 {
        if url.starts_with(callback) {
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
    panic!("the provider did not send the browser back to {callback}");
}

/// A tiny upstream app: answers every request 200 with JSON `{"method", "path" (with the
/// query), "headers": {every x-auth-request-* and x-forwarded-* header, lower-cased}}`.
pub struct Echo {
    pub port: u16,
    handle: actix_web::dev::ServerHandle,
}

impl Echo {
    pub async fn start() -> Echo {
        use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
        async fn echo(req: HttpRequest) -> HttpResponse {
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .filter(|(name, _)| {
                    name.as_str().starts_with("x-auth-request-")
                        || name.as_str().starts_with("x-forwarded-")
                })
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), serde_json::Value::String(value))
                })
                .collect();
            HttpResponse::Ok().json(serde_json::json!({
                "method": req.method().as_str(),
                "path": req.uri().to_string(),
                "headers": headers,
            }))
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("echo binds");
        let port = listener.local_addr().expect("local addr").port();
        let server = HttpServer::new(|| App::new().default_service(web::to(echo)))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .expect("echo listens")
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        Echo { port, handle }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        // The stop command is sent now; nobody needs to wait for it to complete.
        drop(self.handle.stop(false));
    }
}

/// The nginx binary: $GATEHOUSE_TEST_NGINX, else `nginx` on PATH or in the usual sbin folders.
pub fn nginx_binary() -> String {
    if let Ok(path) = std::env::var("GATEHOUSE_TEST_NGINX") {
        return path;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"])
        .map(|dir| std::path::Path::new(dir).join("nginx"))
        .find(|candidate| candidate.is_file());
    found
        .map(|found| found.to_string_lossy().into_owned())
        .expect(
            "nginx is not installed: scripts/test installs it (apt-get install nginx), \
             or set GATEHOUSE_TEST_NGINX to its path",
        )
}

pub const NGINX_SNIPPET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/gatehouse.conf");
pub const NGINX_EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/example.conf");

/// Every `location` block of deploy/nginx/example.conf's `server {}` (the per-rule internal
/// location, `/admin` with its rule, the protected `/`), verbatim, in order.
pub fn example_locations() -> String {
    let example = std::fs::read_to_string(NGINX_EXAMPLE).expect("example.conf readable");
    let mut blocks = String::new();
    let mut depth = 0;
    let mut inside = false;
    for line in example.lines() {
        // Comments may hold braces (the snippet's examples do); they count for nothing.
        let code = line.split('#').next().unwrap_or_default();
        if depth == 1 && code.trim_start().starts_with("location ") {
            inside = true;
        }
        if inside {
            blocks.push_str(line);
            blocks.push('\n');
        }
        depth += code.matches('{').count();
        depth -= code.matches('}').count();
        if inside && depth == 1 {
            inside = false;
        }
    }
    assert!(
        blocks.contains("location / {"),
        "example.conf's server has a `location / {{` block"
    );
    blocks
}

/// `nginx -t` on `conf` with prefix `dir`: Ok, or Err(nginx's output).
pub fn nginx_t(dir: &std::path::Path, conf: &str) -> Result<(), String> {
    let out = Command::new(nginx_binary())
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .args(["-e", "stderr", "-c", conf])
        .output()
        .expect("nginx -t runs");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(())
    } else {
        Err(text)
    }
}

/// The first lines of a generated nginx.conf that keep everything in `dir` (pid, logs,
/// temp paths), in one process that dies with `kill`, without touching /etc or /var.
pub fn nginx_main_context(dir: &std::path::Path) -> String {
    let d = dir.display();
    let user = if is_root() { "user root;\n" } else { "" };
    format!(
        "daemon off;\nmaster_process off;\n{user}pid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         access_log {d}/access.log;\n\
         client_body_temp_path {d}/client_body;\n\
         proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n"
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A real nginx on 127.0.0.1:`port`, configured like deploy/nginx/example.conf: the shipped
/// snippet included as-is, example.conf's locations verbatim, `upstream gatehouse`
/// with the given instances (round-robin) and `upstream app` the echo. Test-only addition:
/// every answer carries `X-Gatehouse-Upstream: $upstream_addr`. Killed on drop.
pub struct Nginx {
    pub port: u16,
    pub origin: String,
    child: Running,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx and waits until it listens; Err(its error log) when it could not listen
    /// on `port` (taken meanwhile: the caller picks another and retries). Panics on anything
    /// else.
    pub async fn start(port: u16, gatehouse_ports: &[u16], app_port: u16) -> Result<Nginx, String> {
        let dir = TempDir::new();
        let servers: String = gatehouse_ports
            .iter()
            .map(|p| format!("    server 127.0.0.1:{p};\n"))
            .collect();
        let conf = format!(
            "{main}\
             upstream gatehouse {{\n{servers}}}\n\
             upstream app {{\n    server 127.0.0.1:{app_port};\n}}\n\
             server {{\n\
             listen 127.0.0.1:{port};\n\
             server_name app.test;\n\
             add_header X-Gatehouse-Upstream $upstream_addr always;\n\
             include {NGINX_SNIPPET};\n\
             {location}\n\
             }}\n}}\n",
            main = nginx_main_context(&dir.path),
            location = example_locations(),
        );
        let conf = dir.write("nginx.conf", &conf);
        if let Err(out) = nginx_t(&dir.path, &conf) {
            panic!("nginx -t refused the generated config:\n{out}");
        }
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(&dir.path)
            .args(["-e", "stderr", "-c", &conf])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx {
            port,
            origin: format!("http://127.0.0.1:{port}"),
            child: Running(child),
            dir,
        };
        for _ in 0..500 {
            if let Ok(Some(status)) = nginx.child.0.try_wait() {
                let log = nginx.error_log();
                if log.contains("Address already in use") {
                    return Err(log);
                }
                panic!("nginx exited ({status}):\n{log}");
            }
            // nginx writes its pid file once its listening sockets are bound. (A connect
            // would not do: whoever took the port meanwhile would answer it.)
            let pid = std::fs::read_to_string(nginx.dir.path.join("nginx.pid"));
            if pid.is_ok_and(|p| p.trim() == nginx.child.0.id().to_string()) {
                return Ok(nginx);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("nginx did not listen on {port}:\n{}", nginx.error_log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.origin, path)
    }

    /// nginx's error log so far (to explain a failure).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("error.log")).unwrap_or_default()
    }
}

/// gatehouse instances behind one real nginx, as deployed: PUBLIC_URL = nginx's origin,
/// GATEHOUSE__PROXY__TRUSTED = 127.0.0.1/32, the loopback development provider, and with
/// several instances one session secret and one Redis prefix.
pub struct BehindNginx {
    pub apps: Vec<TestApp>,
    pub echo: Echo,
    pub nginx: Nginx,
}

pub async fn behind_nginx(instances: usize, overrides: &[(&str, &str)]) -> BehindNginx {
    // nginx's port is chosen first (gatehouse's PUBLIC_URL names it, nginx's config names
    // gatehouse's ports), so another test may take it meanwhile: then everything starts again.
    let mut last = String::new();
    for _ in 0..3 {
        match try_behind_nginx(instances, overrides).await {
            Ok(stack) => return stack,
            Err(log) => last = log,
        }
    }
    panic!("nginx never got a free port:\n{last}");
}

async fn try_behind_nginx(
    instances: usize,
    overrides: &[(&str, &str)],
) -> Result<BehindNginx, String> {
    let issuer = idp().issuer.clone();
    let port = dead_port();
    let origin = format!("http://127.0.0.1:{port}");
    let mut vars: Vec<(&str, &str)> = vec![
        ("GATEHOUSE__PROVIDER__ISSUER", &issuer),
        ("GATEHOUSE__PROVIDER__AUTH_URL", ""),
        ("GATEHOUSE__PROVIDER__TOKEN_URL", ""),
        // As in spawn_app_with_idp: the shared provider is slow on a loaded machine.
        ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "10"),
        ("GATEHOUSE__SERVER__PUBLIC_URL", &origin),
        ("GATEHOUSE__PROXY__TRUSTED", "127.0.0.1/32"),
    ];
    vars.extend_from_slice(overrides);
    let first = spawn_app_with(&vars).await;
    let secret = first.vars["GATEHOUSE__SESSION__SECRET"].clone();
    let prefix = first.prefix.clone();
    vars.push(("GATEHOUSE__SESSION__SECRET", &secret));
    vars.push(("GATEHOUSE__REDIS__KEY_PREFIX", &prefix));
    let mut apps = vec![first];
    for _ in 1..instances {
        apps.push(spawn_app_with(&vars).await);
    }
    let echo = Echo::start().await;
    let ports: Vec<u16> = apps.iter().map(|a| a.port).collect();
    let nginx = Nginx::start(port, &ports, echo.port).await?;
    Ok(BehindNginx { apps, echo, nginx })
}

impl BehindNginx {
    pub fn url(&self, path: &str) -> String {
        self.nginx.url(path)
    }
}

// ---- Redis servers of a test's own (tests/api/redis_modes.rs) ----

/// A `redis-server` a test started itself on a free loopback port, in its own directory (log,
/// data files), killed on drop. Its options come from a function of the chosen port (called
/// again with another port if that one was taken meanwhile), after `--bind 127.0.0.1 --dir
/// <dir> --logfile <log> --save ""`.
pub struct RedisServer {
    pub port: u16,
    pub dir: TempDir,
    args: Vec<String>,
    /// `redis-cli` options to reach it (TLS, user and password).
    cli_auth: Vec<String>,
    child: Option<Running>,
    log: std::path::PathBuf,
    /// "Ready to accept connections" lines in the log so far.
    starts: usize,
}

impl RedisServer {
    pub async fn start(options: impl Fn(u16) -> Vec<String>) -> RedisServer {
        let mut server = RedisServer {
            port: 0,
            dir: TempDir::new(),
            args: Vec::new(),
            cli_auth: Vec::new(),
            child: None,
            log: std::path::PathBuf::new(),
            starts: 0,
        };
        let mut last = String::new();
        for _ in 0..5 {
            server.port = dead_port();
            server.log = server.dir.path.join(format!("redis-{}.log", server.port));
            server.args = options(server.port);
            match server.launch().await {
                Ok(()) => return server,
                Err(log) => last = log,
            }
        }
        panic!("redis-server never got a free port:\n{last}");
    }

    /// Starts the process on `self.port`; Err(its log) if the port was taken.
    async fn launch(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir.path)
            .arg("--logfile")
            .arg(&self.log)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("redis-server runs (scripts/test installs it: apt-get install redis-server)");
        let mut child = Running(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let ready = log.matches("Ready to accept connections").count();
            if ready > self.starts {
                self.starts = ready;
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                let mut stderr = String::new();
                if let Some(mut err) = child.0.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
                }
                let all = format!("{log}{stderr}");
                if all.contains("Address already in use") {
                    return Err(all);
                }
                panic!("redis-server exited ({status}):\n{all}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not get ready:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `redis-cli` needs these options to reach it (e.g. `--tls --cacert …`, `--user … --pass …`).
    pub fn with_cli_options(mut self, options: &[&str]) -> Self {
        self.cli_auth = options.iter().map(|o| (*o).to_owned()).collect();
        self
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.0.kill();
            let _ = child.0.wait();
        }
    }

    /// The same server again (same port, options and directory), once it accepts connections.
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.launch().await {
            panic!("port {} was taken while Redis was down:\n{log}", self.port);
        }
    }

    /// `redis-cli -p <port> <args>` (with the server's TLS/ACL options): its stdout, trimmed.
    pub async fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, &self.cli_auth, args).await
    }

    /// The server's log so far (to explain a failure).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-cli -h 127.0.0.1 -p <port> <options> <args>`, without blocking the runtime (the app
/// under test may be driving its Redis connection on it), bounded. Its stdout, trimmed.
pub async fn redis_cli(port: u16, options: &[String], args: &[&str]) -> String {
    let run = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(options)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or_else(|_| panic!("redis-cli {args:?} did not finish within 30 s"))
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Files for a TLS Redis: a CA, and a server certificate it signed for 127.0.0.1 and
/// localhost. All in `dir`, made with the `openssl` command.
pub struct TlsFiles {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA (P-256) named `name`: `<name>.pem` and `<name>.key` in `dir`.
pub fn make_ca(dir: &TempDir, name: &str) -> String {
    dir.write(
        &format!("{name}.cnf"),
        &format!(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = gatehouse test {name}\n\
             [v3_ca]\nbasicConstraints = critical, CA:TRUE\n\
             keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
        ),
    );
    openssl(
        &dir.path,
        &[
            "req",
            "-x509",
            "-config",
            &format!("{name}.cnf"),
            "-extensions",
            "v3_ca",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
        ],
    );
    dir.path
        .join(format!("{name}.pem"))
        .to_string_lossy()
        .into_owned()
}

/// A CA ("ca") and a server certificate it signed (SAN: IP 127.0.0.1, DNS localhost). The
/// certificate is good for client authentication too: cluster nodes present it to each other
/// (Redis always asks for a peer's certificate on the TLS cluster bus).
pub fn make_tls_files(dir: &TempDir) -> TlsFiles {
    let ca = make_ca(dir, "ca");
    dir.write(
        "server.cnf",
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = 127.0.0.1\n\
         [v3_server]\nbasicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth, clientAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n\
         authorityKeyIdentifier = keyid\n",
    );
    openssl(
        &dir.path,
        &[
            "req",
            "-new",
            "-config",
            "server.cnf",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        &dir.path,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.cnf",
            "-extensions",
            "v3_server",
        ],
    );
    let path = |name: &str| dir.path.join(name).to_string_lossy().into_owned();
    TlsFiles {
        ca,
        cert: path("server.pem"),
        key: path("server.key"),
    }
}

// ---- Raw HTTP/1.1 (what a reqwest error cannot tell apart) ----

/// An answer read off a raw connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server closes the connection after this answer.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("a JSON body ({e}): {}", String::from_utf8_lossy(&self.body))
        })
    }
}

/// How reading one answer ended.
#[derive(Debug, Clone)]
pub enum RawRead {
    /// A whole answer: status line, headers and exactly the announced body.
    Complete(RawResponse),
    /// The connection ended (EOF or reset) before a single byte of an answer.
    NoAnswer(String),
    /// Some bytes of an answer, then the connection ended or they did not parse.
    Partial { got: Vec<u8>, why: String },
}

/// Reads one answer from `stream` (nothing else must be in flight on it), within `bound`.
pub async fn read_raw_response<S>(stream: &mut S, bound: Duration) -> RawRead
where
    S: tokio::io::AsyncRead + Unpin,
{
    match tokio::time::timeout(bound, read_raw_response_unbounded(stream)).await {
        Ok(read) => read,
        Err(_) => RawRead::Partial {
            got: Vec::new(),
            why: format!("no whole answer within {bound:?}"),
        },
    }
}

async fn read_raw_response_unbounded<S>(stream: &mut S) -> RawRead
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut got: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    // More bytes, or why there are none.
    async fn more<S: tokio::io::AsyncRead + Unpin>(
        stream: &mut S,
        got: &mut Vec<u8>,
        chunk: &mut [u8],
    ) -> Result<(), String> {
        match stream.read(chunk).await {
            Ok(0) => Err("end of stream".into()),
            Ok(n) => {
                got.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("{:?}: {e}", e.kind())),
        }
    }
    let fail = |got: &[u8], why: String| {
        if got.is_empty() {
            RawRead::NoAnswer(why)
        } else {
            RawRead::Partial {
                got: got.to_vec(),
                why,
            }
        }
    };
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if let Err(why) = more(stream, &mut got, &mut chunk).await {
            return fail(&got, why);
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let Some(status) = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
    else {
        return fail(&got, format!("not a status line: {status_line:?}"));
    };
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return fail(&got, format!("not a header line: {line:?}"));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    let mut rest = got[head_end + 4..].to_vec();
    if let Some(length) = response.header("content-length") {
        let Ok(length) = length.parse::<usize>() else {
            return fail(&got, format!("bad content-length {length:?}"));
        };
        while rest.len() < length {
            if let Err(why) = more(stream, &mut rest, &mut chunk).await {
                got.extend_from_slice(&rest);
                return fail(&got, format!("body cut short: {why}"));
            }
        }
        rest.truncate(length);
        response.body = rest;
    } else if response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        loop {
            let size_end = loop {
                if let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if let Err(why) = more(stream, &mut rest, &mut chunk).await {
                    got.extend_from_slice(&rest);
                    return fail(&got, format!("chunk size cut short: {why}"));
                }
            };
            let size_text = String::from_utf8_lossy(&rest[..size_end]).into_owned();
            let Ok(size) =
                usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            else {
                return fail(&got, format!("bad chunk size {size_text:?}"));
            };
            while rest.len() < size_end + 2 + size + 2 {
                if let Err(why) = more(stream, &mut rest, &mut chunk).await {
                    got.extend_from_slice(&rest);
                    return fail(&got, format!("chunk cut short: {why}"));
                }
            }
            body.extend_from_slice(&rest[size_end + 2..size_end + 2 + size]);
            rest.drain(..size_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
        response.body = body;
    } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
        // Delimited by the end of the connection: read it all.
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    got.extend_from_slice(&rest);
                    return fail(&got, format!("body cut short: {e}"));
                }
            }
        }
        response.body = rest;
    }
    RawRead::Complete(response)
}

/// A `GET path` over `stream` as HTTP/1.1 keep-alive, with these extra header lines.
pub fn raw_get(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in extra {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// The pending sign-in stored for `state` (`<prefix>signin:<state>`), as JSON.
pub async fn pending_sign_in(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    state: &str,
) -> Option<serde_json::Value> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}signin:{state}"))
        .query_async(conn)
        .await
        .expect("GET");
    raw.map(|r| serde_json::from_str(&r).expect("a pending sign-in is JSON"))
}

// ---- A real browser's stack (tests/api/browser.rs) ----

/// One gatehouse behind a real nginx (as `behind_nginx(1, …)`: the shipped snippet, the echo
/// app, the loopback development provider, PUBLIC_URL = nginx's origin), whose own address is
/// also known to itself: `SERVER__ALLOWED_REDIRECT_HOSTS` names it, so a browser may use
/// gatehouse's own pages there (the home page and its sign-out button, as where gatehouse
/// serves them on its own origin) besides the app through nginx. Cookies are per host, not per
/// port: both origins share them.
pub struct DirectAndBehindNginx {
    pub app: TestApp,
    /// gatehouse's own origin, `http://127.0.0.1:<port>`.
    pub direct: String,
    pub echo: Echo,
    pub nginx: Nginx,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for DirectAndBehindNginx {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// gatehouse on a port chosen in advance (so its settings can name it), retried on another
/// port if that one was taken meanwhile; the settings are `vars(port)`.
async fn spawn_app_on_chosen_port(
    vars: impl Fn(u16) -> HashMap<String, String>,
) -> (TestApp, actix_web::dev::ServerHandle) {
    for _ in 0..5 {
        let port = dead_port();
        let vars = vars(port);
        let settings = load(vars.clone()).expect("test settings are valid");
        let prefix = settings.redis.key_prefix.clone();
        match Application::build(settings).await {
            Ok(app) => {
                let handle = app.handle();
                tokio::spawn(app.run_until_stopped());
                let app = TestApp::at(port, prefix, vars);
                app.wait_for_provider().await;
                return (app, handle);
            }
            Err(gatehouse::startup::StartupError::Bind { .. }) => continue,
            Err(e) => panic!("app builds: {e}"),
        }
    }
    panic!("gatehouse never got a free port");
}

pub async fn direct_and_behind_nginx(overrides: &[(&str, &str)]) -> DirectAndBehindNginx {
    let echo = Echo::start().await;
    let issuer = idp().issuer.clone();
    let mut last = String::new();
    for _ in 0..3 {
        let nginx_port = dead_port();
        let (app, handle) = spawn_app_on_chosen_port(|port| {
            let mut vars = base_vars();
            for (k, v) in [
                ("GATEHOUSE__PROVIDER__ISSUER", issuer.clone()),
                ("GATEHOUSE__PROVIDER__AUTH_URL", String::new()),
                ("GATEHOUSE__PROVIDER__TOKEN_URL", String::new()),
                // As in spawn_app_with_idp: the shared provider is slow on a loaded machine.
                ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "10".to_owned()),
                (
                    "GATEHOUSE__SERVER__PUBLIC_URL",
                    format!("http://127.0.0.1:{nginx_port}"),
                ),
                ("GATEHOUSE__PROXY__TRUSTED", "127.0.0.1/32".to_owned()),
                ("GATEHOUSE__SERVER__BIND", format!("127.0.0.1:{port}")),
                (
                    "GATEHOUSE__SERVER__ALLOWED_REDIRECT_HOSTS",
                    format!("127.0.0.1:{port}"),
                ),
            ] {
                vars.insert(k.to_owned(), v);
            }
            for (k, v) in overrides {
                vars.insert((*k).to_owned(), (*v).to_owned());
            }
            vars
        })
        .await;
        match Nginx::start(nginx_port, &[app.port], echo.port).await {
            Ok(nginx) => {
                return DirectAndBehindNginx {
                    direct: app.address.clone(),
                    app,
                    echo,
                    nginx,
                    handle,
                }
            }
            Err(log) => {
                drop(handle.stop(false));
                last = log;
            }
        }
    }
    panic!("nginx never got a free port:\n{last}");
}

/// The `Set-Cookie` line `res` sets for `name` (panics if none).
pub fn set_cookie(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_owned()
}

/// The `Set-Cookie` line `res` sets for a sign-in's browser-binding cookie
/// (`[__Host-]gatehouse_signin_<random>`; panics if none).
pub fn binding_set_cookie(res: &reqwest::Response) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| {
            let name = c.split('=').next().unwrap_or_default();
            name.trim_start_matches("__Host-")
                .starts_with("gatehouse_signin_")
        })
        .unwrap_or_else(|| panic!("no binding cookie"))
        .to_owned()
}

/// A sign-in that carries gatehouse's cookies by hand (a jar would drop Secure cookies over
/// plain http, or cookies for another domain): returns the binding cookie's `Set-Cookie` line
/// from /signin and the callback's response.
pub async fn sign_in_carrying_cookies(app: &TestApp, login: &str) -> (String, reqwest::Response) {
    let gate = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    let res = gate.get(app.url("/signin")).send().await.expect("signin");
    let binding = binding_set_cookie(&res);
    let callback = idp_login(&browser(), &location(&res), login).await;
    let cb = Url::parse(&callback).expect("cb");
    let res = gate
        .get(format!(
            "{}/redirect?{}",
            app.address,
            cb.query().unwrap_or_default()
        ))
        .header("cookie", binding.split(';').next().unwrap_or_default())
        .send()
        .await
        .expect("callback");
    (binding, res)
}
