//! Signing in from the command line (RFC 8252): the real binary (`gatehouse login | token |
//! logout`, so argument parsing and exit codes are covered) against a real gatehouse and the
//! real development provider, whose native client `gatehouse-cli` has the redirect URI
//! `http://127.0.0.1/callback` (any port). The test plays the browser: it follows the
//! authorize URL the binary prints with an HTTP client through the provider's login and consent
//! forms, then visits the callback on the binary's loopback listener.
//!
//! This file is the harness; the tests are by concern in the files beside it.

mod callbacks;
mod nginx;
mod tokens;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;
use url::Url;

use crate::helpers::*;

pub(super) const CLI_CLIENT: &str = "gatehouse-cli";
/// A bound on every wait for the binary (never a timing assertion: a loaded machine is slow).
pub(super) const BOUND: Duration = Duration::from_secs(60);

/// A gatehouse offering command-line sign-in at `issuer`, and a home of this test's own for
/// the binary (`XDG_CONFIG_HOME` inside it).
pub(super) struct Cli {
    pub(super) app: TestApp,
    pub(super) issuer: String,
    pub(super) home: TempDir,
}

impl Cli {
    pub(super) async fn start() -> Cli {
        Cli::with_issuer(&idp().issuer).await
    }

    pub(super) async fn with_issuer(issuer: &str) -> Cli {
        let app = spawn_app_with(&[
            ("GATEHOUSE__PROVIDER__ISSUER", issuer),
            ("GATEHOUSE__PROVIDER__AUTH_URL", ""),
            ("GATEHOUSE__PROVIDER__TOKEN_URL", ""),
            ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "10"),
            ("GATEHOUSE__CLI__CLIENT_ID", CLI_CLIENT),
        ])
        .await;
        Cli {
            app,
            issuer: issuer.to_owned(),
            home: TempDir::new(),
        }
    }

    pub(super) fn server(&self) -> &str {
        &self.app.address
    }

    /// The default store, `$XDG_CONFIG_HOME/gatehouse/tokens.json`.
    pub(super) fn store(&self) -> PathBuf {
        self.home.path.join("config/gatehouse/tokens.json")
    }

    pub(super) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let vars: HashMap<String, String> = [
            ("XDG_CONFIG_HOME", self.home.path.join("config")),
            ("HOME", self.home.path.join("home")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_string_lossy().into_owned()))
        .collect();
        let mut cmd = tokio::process::Command::from(gatehouse_binary(&vars, &self.home));
        cmd.args(args).kill_on_drop(true);
        cmd
    }

    /// `gatehouse login --server <this gatehouse> --no-browser <extra>`, running.
    pub(super) fn login(&self, extra: &[&str]) -> Login {
        let mut args = vec!["login", "--server", self.server(), "--no-browser"];
        args.extend_from_slice(extra);
        Login::spawn(self.command(&args))
    }

    pub(super) async fn run(&self, args: &[&str]) -> Finished {
        let out = tokio::time::timeout(BOUND, self.command(args).output())
            .await
            .expect("the command ends")
            .expect("the binary runs");
        Finished {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(str::to_owned)
                .collect(),
        }
    }

    pub(super) async fn token(&self) -> Finished {
        self.run(&["token", "--server", self.server()]).await
    }

    pub(super) async fn logout(&self) -> Finished {
        self.run(&["logout", "--server", self.server()]).await
    }

    /// A whole `gatehouse login` as `login`, which must succeed.
    pub(super) async fn sign_in(&self, login: &str) -> Finished {
        let mut running = self.login(&[]);
        let authorize = running.authorize_url().await;
        let callback = browser_signs_in(&authorize, login).await;
        let (status, page) = visit(&callback).await;
        assert_eq!(status, 200, "the browser's page: {page}");
        assert!(page.contains("close this tab"), "{page}");
        let done = running.finish().await;
        done.assert_success("login");
        done
    }

    /// This server's entry in the default store.
    pub(super) fn stored(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.store()).expect("the store exists");
        let all: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        all["servers"][self.server()].clone()
    }
}

/// A running `gatehouse login`: its stderr lines as they come.
pub(super) struct Login {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    stdout: tokio::task::JoinHandle<String>,
}

impl Login {
    pub(super) fn spawn(mut cmd: tokio::process::Command) -> Login {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut out = child.stdout.take().expect("stdout");
        let stdout = tokio::spawn(async move {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text).await;
            text
        });
        Login {
            child,
            lines,
            seen: Vec::new(),
            stdout,
        }
    }

    /// The authorize URL it printed on stderr.
    pub(super) async fn authorize_url(&mut self) -> String {
        loop {
            let line = tokio::time::timeout(BOUND, self.lines.recv())
                .await
                .expect("login printed something");
            let Some(line) = line else {
                panic!("login ended without an authorize URL: {:?}", self.seen);
            };
            self.seen.push(line.clone());
            if line.starts_with("http") {
                return line;
            }
        }
    }

    pub(super) async fn finish(mut self) -> Finished {
        let status = tokio::time::timeout(BOUND, self.child.wait())
            .await
            .expect("login ends")
            .expect("exit status");
        while let Some(line) = self.lines.recv().await {
            self.seen.push(line);
        }
        Finished {
            status,
            stdout: self.stdout.await.expect("stdout read"),
            stderr: self.seen,
        }
    }
}

pub(super) struct Finished {
    pub(super) status: ExitStatus,
    pub(super) stdout: String,
    pub(super) stderr: Vec<String>,
}

impl Finished {
    pub(super) fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what} failed ({}): {:?}",
            self.status,
            self.stderr
        );
    }

    /// Failed with exit status `code`, the outcome told in its last line on stderr, which says
    /// `needle`; nothing on stdout.
    pub(super) fn assert_failed(&self, code: i32, needle: &str) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "exit status; stderr {:?}",
            self.stderr
        );
        let last = self.stderr.last().map(String::as_str).unwrap_or_default();
        assert!(last.starts_with("gatehouse: "), "{:?}", self.stderr);
        assert!(last.contains(needle), "{needle:?} in {last:?}");
        assert_eq!(self.stdout, "", "nothing on stdout");
    }
}

/// Plays the browser at the provider as `login` (login and consent forms); returns the
/// callback URL on the binary's loopback listener, unvisited.
pub(super) async fn browser_signs_in(authorize: &str, login: &str) -> String {
    let redirect = query_param(authorize, "redirect_uri").expect("a redirect_uri");
    idp_login_to(&browser(), authorize, login, &redirect).await
}

/// The browser's visit to a loopback URL: status and page.
pub(super) async fn visit(url: &str) -> (u16, String) {
    let res = reqwest::get(url).await.expect("the listener answers");
    let status = res.status().as_u16();
    (status, res.text().await.expect("a page"))
}

/// `url` with its query parameter `name` set to `value` (`None`: removed).
pub(super) fn with_param(url: &str, name: &str, value: Option<&str>) -> String {
    let mut url = Url::parse(url).expect("url");
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut query = url.query_pairs_mut();
        query.clear();
        for (k, v) in &pairs {
            query.append_pair(k, v);
        }
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    url.to_string()
}

pub(super) fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

pub(super) fn text(value: &serde_json::Value) -> String {
    value.as_str().expect("a string").to_owned()
}

/// A refresh at the provider, as our native client: (status, body).
pub(super) async fn provider_refresh(
    issuer: &str,
    refresh_token: &str,
) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLI_CLIENT),
        ])
        .send()
        .await
        .expect("the provider answers");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

/// Whom an access token belongs to: a JWT says so itself (a resource server's token, which
/// userinfo would refuse); an opaque one is asked about at the provider's userinfo (or its
/// status comes back).
pub(super) async fn userinfo_subject(issuer: &str, access_token: &str) -> Result<String, u16> {
    if let [_, payload, _] = access_token.split('.').collect::<Vec<_>>()[..] {
        use base64::Engine;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("a JWT payload");
        let claims: serde_json::Value = serde_json::from_slice(&claims).expect("JSON claims");
        return Ok(text(&claims["sub"]));
    }
    let res = reqwest::Client::new()
        .get(format!("{issuer}/me"))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("the provider answers");
    if !res.status().is_success() {
        return Err(res.status().as_u16());
    }
    let body: serde_json::Value = res.json().await.expect("JSON");
    Ok(text(&body["sub"]))
}

/// A development provider of these tests' own whose access tokens live 30 s: always within
/// `gatehouse token`'s 60 s margin, so every `token` refreshes (no waiting for an expiry).
pub(super) fn short_ttl_idp() -> &'static str {
    static IDP: OnceLock<(String, Running)> = OnceLock::new();
    let (issuer, _) = IDP.get_or_init(|| {
        use std::io::BufRead;
        let port = dead_port();
        let mut child = std::process::Command::new("node")
            .arg("server.mjs")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp"))
            .env("IDP_PORT", port.to_string())
            .env("IDP_ACCESS_TOKEN_TTL", "30")
            .env("IDP_EXIT_WITH_STDIN", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs tests/idp/server.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let ready = lines.any(|l| l.map(|l| l.contains("idp listening")).unwrap_or(false));
        assert!(ready, "the short-TTL provider did not start");
        std::thread::spawn(move || for _ in lines {});
        (format!("http://127.0.0.1:{port}"), Running(child))
    });
    issuer
}
