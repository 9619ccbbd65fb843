//! The settings loader: required and invalid settings, secrets from files, secrets kept out of
//! `Debug` and errors, unknown keys, and the loading order (file < env file < env var).

use std::collections::HashMap;

use gatehouse::config::{ClientAuth, LogFormat, Settings, SettingsError, Sources};
use secrecy::ExposeSecret;

use crate::helpers::*;

/// `base_vars()` with `set` applied (an empty value is kept as an empty variable) and `unset`
/// removed.
fn vars(set: &[(&str, &str)], unset: &[&str]) -> HashMap<String, String> {
    let mut vars = base_vars();
    for key in unset {
        vars.remove(*key);
    }
    for (k, v) in set {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}

/// The loader's error for these variables; it must be a single line.
fn error_for(vars: HashMap<String, String>) -> String {
    let SettingsError(text) = load(vars).expect_err("these settings must be refused");
    assert!(!text.contains('\n'), "error is one line: {text:?}");
    assert!(!text.is_empty());
    text
}

fn assert_names(error: &str, var: &str) {
    assert!(error.contains(var), "error {error:?} should name {var}");
}

/// Names both `var` and `var_FILE`.
fn assert_names_both(error: &str, var: &str) {
    assert_names(error, &format!("{var}_FILE"));
    let inline_alone = error
        .match_indices(var)
        .filter(|(at, _)| !error[at + var.len()..].starts_with("_FILE"))
        .count();
    assert_eq!(inline_alone, 1, "error {error:?} should name {var} itself");
}

#[test]
fn base_vars_are_valid() {
    let settings = load(base_vars()).expect("base settings load");
    assert_eq!(settings.provider.client_id, CLIENT_ID);
    assert_eq!(
        settings
            .provider
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
        Some(CLIENT_SECRET.to_owned())
    );
    assert_eq!(settings.provider.client_auth, ClientAuth::Basic);
    assert_eq!(settings.provider.timeout.as_secs(), 2);
    assert_eq!(
        settings.provider.scopes,
        vec!["openid".to_owned(), "email".into(), "profile".into()]
    );
    assert!(!settings.session.cookie_secure);
    assert_eq!(settings.session.cookie_name, "gatehouse");
    assert_eq!(settings.log.format, LogFormat::Pretty);
    assert_eq!(settings.log.buffer_lines, 16384);
}

#[test]
fn each_missing_required_setting_is_named() {
    let cases = [
        "GATEHOUSE__PROVIDER__CLIENT_ID",
        "GATEHOUSE__SESSION__SECRET",
        "GATEHOUSE__PROVIDER__AUTH_URL",
        "GATEHOUSE__PROVIDER__TOKEN_URL",
    ];
    for var in cases {
        let error = error_for(vars(&[], &[var]));
        assert_names(&error, var);
    }
}

#[test]
fn endpoints_are_not_required_when_an_issuer_is_set() {
    let settings = load(vars(
        &[("GATEHOUSE__PROVIDER__ISSUER", "https://idp.example")],
        &[
            "GATEHOUSE__PROVIDER__AUTH_URL",
            "GATEHOUSE__PROVIDER__TOKEN_URL",
        ],
    ))
    .expect("an issuer stands in for the endpoints");
    assert!(settings.provider.auth_url.is_none());
    // Kept exactly as written: `iss` values are compared with it as they are.
    assert_eq!(
        settings.provider.issuer.as_deref(),
        Some("https://idp.example")
    );
}

#[test]
fn userinfo_url_is_required_without_openid_scope() {
    let error = error_for(vars(
        &[("GATEHOUSE__PROVIDER__SCOPES", "email profile")],
        &[],
    ));
    assert_names(&error, "GATEHOUSE__PROVIDER__USERINFO_URL");

    // With a userinfo endpoint, or an issuer to discover one, the same scopes are fine.
    load(vars(
        &[
            ("GATEHOUSE__PROVIDER__SCOPES", "email profile"),
            (
                "GATEHOUSE__PROVIDER__USERINFO_URL",
                "https://idp.example/userinfo",
            ),
        ],
        &[],
    ))
    .expect("userinfo given");
    load(vars(
        &[
            ("GATEHOUSE__PROVIDER__SCOPES", "email profile"),
            ("GATEHOUSE__PROVIDER__ISSUER", "https://idp.example"),
        ],
        &[],
    ))
    .expect("issuer given");
}

#[test]
fn each_invalid_value_is_named() {
    use base64::Engine;
    let short_secret = base64::engine::general_purpose::STANDARD.encode([7u8; 63]);
    let cases: &[(&str, &str)] = &[
        ("GATEHOUSE__SESSION__SECRET", &short_secret),
        ("GATEHOUSE__SESSION__SECRET", "this is not base64 at all!!"),
        ("GATEHOUSE__SERVER__BIND", "localhost"),
        ("GATEHOUSE__SERVER__BIND", "127.0.0.1:99999"),
        ("GATEHOUSE__SERVER__PUBLIC_URL", "not a url"),
        ("GATEHOUSE__SERVER__PUBLIC_URL", "ftp://gatehouse.test"),
        ("GATEHOUSE__PROVIDER__AUTH_URL", "idp.example/authorize"),
        ("GATEHOUSE__PROVIDER__TOKEN_URL", "file:///etc/passwd"),
        ("GATEHOUSE__REDIS__URL", "http://x"),
        ("GATEHOUSE__REDIS__URL", "not a url"),
        ("GATEHOUSE__PROVIDER__CLIENT_AUTH", "other"),
        ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "abc"),
        ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "0"),
        ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "-1"),
        ("GATEHOUSE__LOG__BUFFER_LINES", "0"),
        ("GATEHOUSE__LOG__BUFFER_LINES", "many"),
        ("GATEHOUSE__SESSION__COOKIE_SECURE", "maybe"),
        ("GATEHOUSE__LOG__FORMAT", "xml"),
        ("GATEHOUSE__SESSION__COOKIE_NAME", "my cookie"),
        ("GATEHOUSE__SESSION__COOKIE_NAME", "a;b"),
        ("GATEHOUSE__SESSION__TTL_SECS", "soon"),
    ];
    for (var, value) in cases {
        let error = error_for(vars(&[(var, value)], &[]));
        assert_names(&error, var);
    }
}

#[test]
fn a_short_session_secret_is_refused_and_64_bytes_are_accepted() {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let error = error_for(vars(
        &[("GATEHOUSE__SESSION__SECRET", &engine.encode([1u8; 63]))],
        &[],
    ));
    assert_names(&error, "GATEHOUSE__SESSION__SECRET");
    let settings = load(vars(
        &[("GATEHOUSE__SESSION__SECRET", &engine.encode([1u8; 64]))],
        &[],
    ))
    .expect("64 bytes are enough");
    assert_eq!(
        settings.session.secret.expose_secret().as_slice(),
        &[1u8; 64]
    );
}

#[test]
fn secrets_come_from_files_without_their_trailing_newline() {
    use base64::Engine;
    let dir = TempDir::new();
    let secret_bytes: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
    let secret_text = base64::engine::general_purpose::STANDARD.encode(&secret_bytes);
    let session_file = dir.write("session-secret", &format!("{secret_text}\n"));
    let client_file = dir.write("client-secret", "s3cret-from-file\r\n");

    let settings = load(vars(
        &[
            ("GATEHOUSE__SESSION__SECRET_FILE", &session_file),
            ("GATEHOUSE__PROVIDER__CLIENT_SECRET_FILE", &client_file),
        ],
        &[
            "GATEHOUSE__SESSION__SECRET",
            "GATEHOUSE__PROVIDER__CLIENT_SECRET",
        ],
    ))
    .expect("secrets read from files");
    assert_eq!(
        settings.session.secret.expose_secret().as_slice(),
        secret_bytes.as_slice()
    );
    assert_eq!(
        settings
            .provider
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
        Some("s3cret-from-file".to_owned())
    );
}

#[test]
fn a_missing_secret_file_names_the_file_variable() {
    let dir = TempDir::new();
    let missing = dir.path.join("no-such-file");
    let missing = missing.to_str().expect("utf-8");
    for (file_var, inline_var) in [
        (
            "GATEHOUSE__SESSION__SECRET_FILE",
            "GATEHOUSE__SESSION__SECRET",
        ),
        (
            "GATEHOUSE__PROVIDER__CLIENT_SECRET_FILE",
            "GATEHOUSE__PROVIDER__CLIENT_SECRET",
        ),
    ] {
        let error = error_for(vars(&[(file_var, missing)], &[inline_var]));
        assert_names(&error, file_var);
    }
}

#[test]
fn an_empty_secret_file_is_refused() {
    let dir = TempDir::new();
    let empty = dir.write("empty", "\n");
    let error = error_for(vars(
        &[("GATEHOUSE__PROVIDER__CLIENT_SECRET_FILE", &empty)],
        &["GATEHOUSE__PROVIDER__CLIENT_SECRET"],
    ));
    assert_names(&error, "GATEHOUSE__PROVIDER__CLIENT_SECRET_FILE");
}

#[test]
fn a_secret_given_inline_and_as_a_file_names_both() {
    let dir = TempDir::new();
    let file = dir.write("secret", &session_secret());
    let error = error_for(vars(&[("GATEHOUSE__SESSION__SECRET_FILE", &file)], &[]));
    assert_names_both(&error, "GATEHOUSE__SESSION__SECRET");

    let file = dir.write("client", "from-file");
    let error = error_for(vars(
        &[("GATEHOUSE__PROVIDER__CLIENT_SECRET_FILE", &file)],
        &[],
    ));
    assert_names_both(&error, "GATEHOUSE__PROVIDER__CLIENT_SECRET");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let session = session_secret();
    let client_secret = "client-secret-4f1d9a";
    let loaded = Settings::load(Sources {
        config_dir: None,
        environment: None,
        vars: vars(
            &[
                ("GATEHOUSE__SESSION__SECRET", &session),
                ("GATEHOUSE__PROVIDER__CLIENT_SECRET", client_secret),
                (
                    "GATEHOUSE__REDIS__URL",
                    "redis://user:hunter2@127.0.0.1:6379",
                ),
            ],
            &[],
        ),
    })
    .expect("settings load");
    // The secrets really are loaded (else the check below proves nothing).
    assert_eq!(
        loaded.settings.redis.url.expose_secret(),
        "redis://user:hunter2@127.0.0.1:6379"
    );
    let decoded = loaded.settings.session.secret.expose_secret().clone();
    let decoded_debug = format!("{:?}", &decoded[..8]);
    let decoded_debug = decoded_debug.trim_start_matches('[').trim_end_matches(']');

    for text in [
        format!("{:?}", loaded.settings),
        format!("{:#?}", loaded.settings),
        format!("{loaded:?}"),
    ] {
        assert!(!text.contains(&session), "session secret in {text}");
        assert!(!text.contains(client_secret), "client secret in {text}");
        assert!(!text.contains("hunter2"), "redis password in {text}");
        assert!(!text.contains(decoded_debug), "session key bytes in {text}");
        assert!(text.contains("cookie_name"), "it is a real Debug: {text}");
    }
}

#[test]
fn secrets_never_appear_in_errors() {
    let cases = [
        // Not base64: the value must not be echoed.
        ("GATEHOUSE__SESSION__SECRET", "hunter2-not-base64!!"),
        (
            "GATEHOUSE__REDIS__URL",
            "http://user:hunter2@127.0.0.1:6379",
        ),
        ("GATEHOUSE__REDIS__URL", "redis://user:hunter2@"),
    ];
    for (var, value) in cases {
        let error = error_for(vars(&[(var, value)], &[]));
        assert_names(&error, var);
        assert!(!error.contains("hunter2"), "secret in error: {error}");
    }
}

#[test]
fn scopes_are_space_separated() {
    let settings = load(vars(
        &[("GATEHOUSE__PROVIDER__SCOPES", "  openid   email\tgroups ")],
        &[],
    ))
    .expect("scopes load");
    assert_eq!(
        settings.provider.scopes,
        vec!["openid".to_owned(), "email".into(), "groups".into()]
    );
    assert!(settings.provider.wants_openid());
}

#[test]
fn empty_values_count_as_unset() {
    // An empty variable does not override the default...
    let settings = load(vars(
        &[
            ("GATEHOUSE__SESSION__COOKIE_NAME", ""),
            ("GATEHOUSE__PROVIDER__CLIENT_SECRET", ""),
            ("GATEHOUSE__PROVIDER__USERINFO_URL", ""),
        ],
        &[],
    ))
    .expect("empty values are ignored");
    assert_eq!(settings.session.cookie_name, "gatehouse");
    assert!(settings.provider.client_secret.is_none());
    assert!(settings.provider.userinfo_url.is_none());

    // ...and does not satisfy a required setting.
    let error = error_for(vars(&[("GATEHOUSE__PROVIDER__CLIENT_ID", "")], &[]));
    assert_names(&error, "GATEHOUSE__PROVIDER__CLIENT_ID");
    let error = error_for(vars(&[("GATEHOUSE__SESSION__SECRET", "")], &[]));
    assert_names(&error, "GATEHOUSE__SESSION__SECRET");
}

#[test]
fn unknown_variables_produce_warnings() {
    let loaded = Settings::load(Sources {
        config_dir: None,
        environment: None,
        vars: vars(
            &[("GATEHOUSE__PROVIDER__CLIENT_SECRTE", "typo")],
            &["GATEHOUSE__PROVIDER__CLIENT_SECRET"],
        ),
    })
    .expect("an unknown key is not fatal");
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("GATEHOUSE__PROVIDER__CLIENT_SECRTE")),
        "{:?}",
        loaded.warnings
    );
    assert!(
        loaded.warnings.iter().all(|w| !w.contains("typo")),
        "the value is not echoed: {:?}",
        loaded.warnings
    );

    let clean = Settings::load(Sources {
        config_dir: None,
        environment: None,
        vars: base_vars(),
    })
    .expect("base settings load");
    assert!(clean.warnings.is_empty(), "{:?}", clean.warnings);
}

#[test]
fn unknown_file_keys_produce_warnings() {
    let dir = TempDir::new();
    dir.write("default.toml", "[session]\ncookie_nmae = \"x\"\n");
    let loaded = Settings::load(Sources {
        config_dir: Some(dir.path.clone()),
        environment: None,
        vars: base_vars(),
    })
    .expect("an unknown key is not fatal");
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("GATEHOUSE__SESSION__COOKIE_NMAE")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn loading_order_is_defaults_then_file_then_environment_file_then_variables() {
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        "[session]\ncookie_name = \"from_default\"\nttl_secs = 1234\n",
    );
    dir.write(
        "production.toml",
        "[session]\ncookie_name = \"from_production\"\n",
    );
    let load_with = |environment: Option<&str>, set: &[(&str, &str)]| {
        Settings::load(Sources {
            config_dir: Some(dir.path.clone()),
            environment: environment.map(str::to_owned),
            vars: vars(set, &[]),
        })
        .expect("settings load")
        .settings
    };

    let s = load_with(None, &[]);
    assert_eq!(s.session.cookie_name, "from_default");
    assert_eq!(s.session.ttl.as_secs(), 1234);
    // Keys in no file keep the built-in default.
    assert_eq!(s.session.signin_ttl.as_secs(), 600);

    let s = load_with(Some("production"), &[]);
    assert_eq!(s.session.cookie_name, "from_production");
    assert_eq!(s.session.ttl.as_secs(), 1234, "default.toml still applies");

    let s = load_with(
        Some("production"),
        &[("GATEHOUSE__SESSION__COOKIE_NAME", "from_env")],
    );
    assert_eq!(s.session.cookie_name, "from_env");

    // An environment without a file is not an error.
    let s = load_with(Some("staging"), &[]);
    assert_eq!(s.session.cookie_name, "from_default");
}

#[test]
fn an_invalid_settings_file_is_one_line_error() {
    let dir = TempDir::new();
    dir.write("default.toml", "[session\ncookie_name = \n");
    let err = Settings::load(Sources {
        config_dir: Some(dir.path.clone()),
        environment: None,
        vars: base_vars(),
    })
    .expect_err("broken TOML is refused");
    assert!(!err.0.contains('\n'), "one line: {:?}", err.0);
}

#[test]
fn a_broken_settings_file_does_not_echo_a_secret() {
    let dir = TempDir::new();
    // An unterminated string: the parser's message quotes the offending line.
    dir.write(
        "production.toml",
        "[provider]\nclient_secret = \"hunter2-in-a-file\n",
    );
    let err = Settings::load(Sources {
        config_dir: Some(dir.path.clone()),
        environment: Some("production".into()),
        vars: base_vars(),
    })
    .expect_err("broken TOML is refused");
    assert!(
        err.0.contains("production.toml"),
        "names the file: {}",
        err.0
    );
    assert!(!err.0.contains("hunter2"), "secret in error: {}", err.0);
}

#[test]
fn no_access_rule_and_no_explicit_choice_stops_start_up() {
    let mut vars = base_vars();
    vars.remove("GATEHOUSE__ACCESS__ALLOW_ANY_USER");
    let err = load(vars.clone()).expect_err("no rule, no choice");
    assert!(
        err.0.contains("GATEHOUSE__ACCESS__ALLOW_ANY_USER")
            && err.0.contains("GATEHOUSE__ACCESS__ALLOWED_GROUPS"),
        "{err}"
    );
    assert_eq!(err.0.lines().count(), 1, "one line: {err}");
    for (key, value) in [
        ("GATEHOUSE__ACCESS__ALLOWED_GROUPS", "staff"),
        ("GATEHOUSE__ACCESS__ALLOWED_EMAILS", "ann@example.com"),
        ("GATEHOUSE__ACCESS__ALLOWED_EMAIL_DOMAINS", "example.com"),
        ("GATEHOUSE__ACCESS__ALLOW_ANY_USER", "true"),
    ] {
        let mut with = vars.clone();
        with.insert(key.into(), value.into());
        assert!(load(with).is_ok(), "{key} is a choice");
    }
}

#[test]
fn groups_claim_is_a_name_or_a_dotted_path() {
    let mut vars = base_vars();
    vars.insert(
        "GATEHOUSE__ACCESS__GROUPS_CLAIM".into(),
        "realm_access.roles".into(),
    );
    let settings = load(vars.clone()).expect("a dotted path");
    assert_eq!(settings.access.groups_claim, ["realm_access", "roles"]);
    vars.insert(
        "GATEHOUSE__ACCESS__GROUPS_CLAIM".into(),
        "realm_access..roles".into(),
    );
    let err = load(vars).expect_err("an empty segment");
    assert!(err.0.contains("GATEHOUSE__ACCESS__GROUPS_CLAIM"), "{err}");
}
