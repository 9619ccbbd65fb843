//! `gatehouse token` and `logout` after a login, the token store, and the command line itself.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::helpers::*;

// ---- The whole path ----

#[tokio::test]
async fn login_stores_tokens_only_the_user_can_read_token_prints_one_and_logout_revokes() {
    let cli = Cli::start().await;
    let login = cli.sign_in("lena").await;
    assert!(
        login
            .stderr
            .iter()
            .any(|l| l.contains("signed in") && l.contains("as lena (lena@example.com)")),
        "{:?}",
        login.stderr
    );
    assert_eq!(login.stdout, "", "login prints no token");

    // The default place, readable by the user only.
    assert_eq!(mode(&cli.store()), 0o600);
    assert_eq!(mode(cli.store().parent().expect("dir")), 0o700);
    let entry = cli.stored();
    assert_eq!(entry["subject"], "lena");
    assert_eq!(entry["issuer"], cli.issuer);
    assert_eq!(entry["client_id"], CLI_CLIENT);
    let access = text(&entry["access_token"]);
    let refresh = text(&entry["refresh_token"]);
    for line in &login.stderr {
        assert!(
            !line.contains(&access) && !line.contains(&refresh),
            "a token on stderr"
        );
    }

    // A fresh token is printed as stored, alone on stdout, and it is the user's.
    let out = cli.token().await;
    out.assert_success("token");
    assert_eq!(out.stdout, format!("{access}\n"));
    assert_eq!(out.stderr, Vec::<String>::new());
    assert_eq!(
        userinfo_subject(&cli.issuer, &access).await.as_deref(),
        Ok("lena")
    );

    // Logout revokes at the provider and deletes the store.
    let out = cli.logout().await;
    out.assert_success("logout");
    assert!(!cli.store().exists(), "the store is deleted");
    let (status, body) = provider_refresh(&cli.issuer, &refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the revoked refresh token is dead: {body}"
    );

    let out = cli.token().await;
    out.assert_failed(1, "signed out: run gatehouse login");
    let out = cli.logout().await;
    out.assert_success("a second logout");
    assert!(out.stderr.iter().any(|l| l.contains("not signed in")));
}

#[tokio::test]
async fn token_refreshes_an_expiring_access_token_and_keeps_the_rotated_refresh_token() {
    let issuer = short_ttl_idp();
    let cli = Cli::with_issuer(issuer).await;
    cli.sign_in("rita").await;
    let first = cli.stored();
    let expires_in = first["expires_at"].as_u64().expect("expires_at") as i64
        - gatehouse::identity::now_unix() as i64;
    assert!(expires_in <= 30, "the provider's short TTL: {expires_in}");

    let out = cli.token().await;
    out.assert_success("token");
    let second = cli.stored();
    assert_eq!(out.stdout, format!("{}\n", text(&second["access_token"])));
    assert_ne!(second["access_token"], first["access_token"], "refreshed");
    assert_ne!(
        second["refresh_token"], first["refresh_token"],
        "the rotated refresh token is stored"
    );

    // The next refresh uses the rotated one (the spent one would be refused).
    let out = cli.token().await;
    out.assert_success("a second token");
    let third = cli.stored();
    assert_ne!(third["access_token"], second["access_token"]);
    assert_ne!(third["refresh_token"], second["refresh_token"]);
    let access = text(&third["access_token"]);
    assert_eq!(
        userinfo_subject(issuer, &access).await.as_deref(),
        Ok("rita")
    );

    // Two at once: the store's lock makes them refresh one after the other, each with the
    // refresh token the other stored (both reading the same one would spend it twice).
    let (one, two) = tokio::join!(cli.token(), cli.token());
    one.assert_success("concurrent token");
    two.assert_success("concurrent token");
    assert_ne!(one.stdout, two.stdout, "each refreshed in turn");
    let last = format!("{}\n", text(&cli.stored()["access_token"]));
    assert!(
        last == one.stdout || last == two.stdout,
        "the store holds the later of the two"
    );

    let (status, body) = provider_refresh(issuer, &text(&first["refresh_token"])).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the first refresh token was spent: {body}"
    );
}

#[tokio::test]
async fn a_refresh_the_provider_refuses_means_signed_out() {
    let issuer = short_ttl_idp();
    let cli = Cli::with_issuer(issuer).await;
    cli.sign_in("rolf").await;
    let refresh = text(&cli.stored()["refresh_token"]);
    let res = reqwest::Client::new()
        .post(format!("{issuer}/token/revocation"))
        .form(&[
            ("token", refresh.as_str()),
            ("token_type_hint", "refresh_token"),
            ("client_id", CLI_CLIENT),
        ])
        .send()
        .await
        .expect("the provider answers");
    assert!(res.status().is_success(), "revoked at the provider");

    let out = cli.token().await;
    out.assert_failed(1, "signed out: run gatehouse login");
    assert_eq!(out.stderr.len(), 1, "one line: {:?}", out.stderr);
    assert!(!cli.store().exists(), "the dead entry is forgotten");
}

// ---- The store and the command line ----

#[tokio::test]
async fn a_store_others_can_read_is_refused_naming_the_file_and_its_mode() {
    let cli = Cli::start().await;
    let dir = cli.home.path.join("shared");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("tokens.json");
    let contents = r#"{"servers": {}}"#;
    std::fs::write(&path, contents).expect("written");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let store = path.to_str().expect("utf-8");

    for args in [
        vec!["token", "--server", cli.server(), "--store", store],
        vec!["logout", "--server", cli.server(), "--store", store],
        vec![
            "login",
            "--server",
            cli.server(),
            "--no-browser",
            "--store",
            store,
        ],
    ] {
        let out = cli.run(&args).await;
        out.assert_failed(1, store);
        assert_eq!(out.stderr.len(), 1, "{args:?}: one line: {:?}", out.stderr);
        assert!(out.stderr[0].contains("0644"), "{:?}", out.stderr);
    }
    assert_eq!(mode(&path), 0o644, "left as it was");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), contents);
}

#[tokio::test]
async fn command_line_mistakes_exit_2_with_one_line_and_help_exits_0() {
    let cli = Cli::start().await;
    for args in [
        vec!["login"],
        vec!["token", "--server"],
        vec!["token", "--server", cli.server(), "--bogus"],
        vec!["logout", "--server", cli.server(), "--no-browser"],
        vec!["login", "--server", cli.server(), "--timeout", "soon"],
        vec!["token", "--server", "http://gate.example"],
    ] {
        let out = cli.run(&args).await;
        out.assert_failed(2, "usage: gatehouse login --server URL");
        assert_eq!(out.stderr.len(), 1, "{args:?}: {:?}", out.stderr);
    }
    let out = cli.run(&["token", "--help"]).await;
    out.assert_success("help");
    assert!(out.stdout.starts_with("usage: gatehouse login"));
}

#[tokio::test]
async fn login_at_a_gatehouse_without_command_line_sign_in_says_so() {
    let cli = Cli::start().await;
    let off = spawn_app().await;
    let out = cli
        .run(&["login", "--server", &off.address, "--no-browser"])
        .await;
    out.assert_failed(1, "does not offer command-line sign-in");
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(!cli.store().exists());
}
