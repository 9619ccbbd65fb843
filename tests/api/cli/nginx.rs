//! The README's path through a real nginx: `gatehouse login`, then `curl` with `$(gatehouse token)`.

use super::*;
use crate::helpers::*;

// ---- Through nginx, with a bearer token ----

/// The audience the development provider puts in the CLI client's JWT access tokens, which
/// BEARER__AUDIENCES must accept: its default resource for `gatehouse-cli`
/// (`IDP_CLI_AUDIENCE`, tests/idp/README.md).
const CLI_ACCESS_TOKEN_AUDIENCE: &str = "http://gatehouse.test";

/// The README's path, exactly: `gatehouse login`, then `curl` through nginx with
/// `$(gatehouse token)`. Needs `/auth` to accept bearer tokens and the development provider to
/// issue JWT access tokens to `gatehouse-cli`.
#[tokio::test]
async fn login_then_curl_through_nginx_with_the_token() {
    let stack = behind_nginx(
        1,
        &[
            ("GATEHOUSE__CLI__CLIENT_ID", CLI_CLIENT),
            ("GATEHOUSE__BEARER__ENABLED", "true"),
            ("GATEHOUSE__BEARER__AUDIENCES", CLI_ACCESS_TOKEN_AUDIENCE),
        ],
    )
    .await;
    let home = TempDir::new();
    let vars: HashMap<String, String> = [(
        "XDG_CONFIG_HOME".to_owned(),
        home.path.join("config").to_string_lossy().into_owned(),
    )]
    .into_iter()
    .collect();
    let origin = stack.url("");
    let mut cmd = tokio::process::Command::from(gatehouse_binary(&vars, &home));
    cmd.args(["login", "--server", &origin, "--no-browser"])
        .kill_on_drop(true);
    let mut login = Login::spawn(cmd);
    let authorize = login.authorize_url().await;
    let callback = browser_signs_in(&authorize, "carla").await;
    assert_eq!(visit(&callback).await.0, 200);
    login.finish().await.assert_success("login through nginx");

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_gatehouse"))
        .parent()
        .expect("bin dir");
    let curl = |with_token: bool, path: &str| {
        let header = if with_token {
            format!("-H \"Authorization: Bearer $(gatehouse token --server {origin})\"")
        } else {
            String::new()
        };
        // An API call: without a valid token it gets 401, not the sign-in redirect.
        let script = format!(
            "curl -s -w '\\n%{{http_code}}' -H 'Accept: application/json' {header} {}",
            stack.url(path)
        );
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", &script])
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("XDG_CONFIG_HOME", home.path.join("config"));
        cmd
    };
    let out = curl(true, "/api/hello").output().await.expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    assert_eq!(status, "200", "{text}");
    let echoed: serde_json::Value = serde_json::from_str(body).expect("the app's echo");
    assert_eq!(echoed["headers"]["x-auth-request-user"], "carla");
    assert_eq!(
        echoed["headers"]["x-auth-request-email"], "carla@example.com",
        "the token's verified email: {echoed}"
    );

    let out = curl(false, "/api/hello").output().await.expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.ends_with("\n401"), "without the token: {text}");

    // The per-location rule holds for tokens too: carla is in no group, so /admin (group
    // `admins` in example.conf) is 403, not 401: the token is fine, the rule refuses.
    let out = curl(true, "/admin/api").output().await.expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.ends_with("\n403"), "/admin with carla's token: {text}");
}
