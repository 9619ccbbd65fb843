//! Settings of several providers (issue 14.5, contract part 2 "Providers"):
//! `GATEHOUSE__PROVIDERS__<NAME>__<KEY>` read and validated like `[provider]`, names checked,
//! per-provider access rules under the same safe default, unknown keys warned about, and files
//! and environment naming the same provider.

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use gatehouse::config::{Settings, SettingsError, Sources};
use secrecy::ExposeSecret;

use crate::helpers::*;

/// `base_vars()` plus a further provider `corp` with the least it needs.
fn with_corp(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars = base_vars();
    for (k, v) in [
        (
            "GATEHOUSE__PROVIDERS__CORP__AUTH_URL",
            "https://login.corp.example/authorize",
        ),
        (
            "GATEHOUSE__PROVIDERS__CORP__TOKEN_URL",
            "https://login.corp.example/token",
        ),
        ("GATEHOUSE__PROVIDERS__CORP__CLIENT_ID", "corp-client"),
    ]
    .iter()
    .chain(extra)
    {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}

fn error_for(vars: HashMap<String, String>) -> String {
    let SettingsError(text) = load(vars).expect_err("these settings must be refused");
    assert!(!text.contains('\n'), "error is one line: {text:?}");
    text
}

#[test]
fn a_further_provider_is_read_like_the_default_one_and_inherits_nothing() {
    let settings = load(with_corp(&[
        ("GATEHOUSE__PROVIDERS__CORP__DISPLAY_NAME", "Corp staff"),
        ("GATEHOUSE__PROVIDERS__CORP__AUTH_PARAMS", "prompt=login"),
        ("GATEHOUSE__PROVIDER__SCOPES", "openid email"),
        ("GATEHOUSE__PROVIDER__TIMEOUT_SECS", "7"),
    ]))
    .expect("valid");
    assert_eq!(settings.providers.named.len(), 1);
    let corp = &settings.providers.named[0];
    assert_eq!(
        corp.name, "corp",
        "lower case, whatever the variable's case"
    );
    assert_eq!(corp.display_name.as_deref(), Some("Corp staff"));
    assert_eq!(corp.provider.client_id, "corp-client");
    assert_eq!(
        corp.provider.auth_params,
        vec![("prompt".to_owned(), "login".to_owned())]
    );
    // The built-in defaults, not the default provider's values.
    assert!(corp.provider.client_secret.is_none(), "no secret inherited");
    assert_eq!(corp.provider.scopes, ["openid", "email", "profile"]);
    assert_eq!(corp.provider.timeout, Duration::from_secs(10));
    assert!(corp.access.is_none(), "[access] applies to it");
    assert!(settings.providers.default_display_name.is_none());
    // The default provider is as it was.
    assert_eq!(settings.provider.client_id, CLIENT_ID);
    assert_eq!(
        settings
            .provider
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
        Some(CLIENT_SECRET.to_owned())
    );
}

#[test]
fn each_provider_setting_is_validated_and_named_with_its_provider() {
    let mut missing_id = with_corp(&[]);
    missing_id.remove("GATEHOUSE__PROVIDERS__CORP__CLIENT_ID");
    let error = error_for(missing_id);
    assert!(
        error.contains("GATEHOUSE__PROVIDERS__CORP__CLIENT_ID is required"),
        "{error}"
    );

    let mut no_endpoint = with_corp(&[]);
    no_endpoint.remove("GATEHOUSE__PROVIDERS__CORP__AUTH_URL");
    let error = error_for(no_endpoint);
    assert!(
        error.contains(
            "GATEHOUSE__PROVIDERS__CORP__AUTH_URL is required unless \
             GATEHOUSE__PROVIDERS__CORP__ISSUER is set"
        ),
        "{error}"
    );

    for (key, value, named) in [
        (
            "GATEHOUSE__PROVIDERS__CORP__ISSUER",
            "http://login.corp.example",
            "GATEHOUSE__PROVIDERS__CORP__PLAIN_HTTP_HOSTS",
        ),
        (
            "GATEHOUSE__PROVIDERS__CORP__AUTH_PARAMS",
            "state=x",
            "GATEHOUSE__PROVIDERS__CORP__AUTH_PARAMS",
        ),
        (
            "GATEHOUSE__PROVIDERS__CORP__TIMEOUT_SECS",
            "0",
            "GATEHOUSE__PROVIDERS__CORP__TIMEOUT_SECS",
        ),
        (
            "GATEHOUSE__PROVIDERS__CORP__CLIENT_AUTH",
            "private_key_jwt",
            "GATEHOUSE__PROVIDERS__CORP__CLIENT_KEY_FILE",
        ),
        (
            "GATEHOUSE__PROVIDERS__CORP__DISPLAY_NAME",
            "a\u{7}bell",
            "GATEHOUSE__PROVIDERS__CORP__DISPLAY_NAME",
        ),
    ] {
        let error = error_for(with_corp(&[(key, value)]));
        assert!(error.contains(named), "{key}={value:?}: {error}");
        assert!(
            !error.contains("GATEHOUSE__PROVIDER__"),
            "names the provider's own variables: {error}"
        );
    }
}

#[test]
fn invalid_provider_names_stop_start_up_with_one_line() {
    for (var, says) in [
        ("GATEHOUSE__PROVIDERS__CORP_EU__CLIENT_ID", "\"corp_eu\""),
        ("GATEHOUSE__PROVIDERS__CORP-EU__CLIENT_ID", "\"corp-eu\""),
        ("GATEHOUSE__PROVIDERS__DEFAULT__CLIENT_ID", "`default`"),
        (
            "GATEHOUSE__PROVIDERS__ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456__CLIENT_ID",
            "longer than 32",
        ),
    ] {
        let mut vars = base_vars();
        vars.insert(var.to_owned(), "x".to_owned());
        let error = error_for(vars);
        assert!(error.contains(says), "{var}: {error}");
        assert!(error.contains("GATEHOUSE__PROVIDERS__"), "{var}: {error}");
    }
    // A variable naming the provider without a key.
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__PROVIDERS__CORP".to_owned(), "x".to_owned());
    let error = error_for(vars);
    assert!(
        error.contains("GATEHOUSE__PROVIDERS__CORP must be a section"),
        "{error}"
    );
}

#[test]
fn a_provider_with_rules_of_its_own_is_held_to_the_safe_default() {
    let settings = load(with_corp(&[
        (
            "GATEHOUSE__PROVIDERS__CORP__ACCESS__ALLOWED_EMAIL_DOMAINS",
            "@Partner.Example",
        ),
        ("GATEHOUSE__ACCESS__ALLOWED_GROUPS", "staff"),
        ("GATEHOUSE__ACCESS__ALLOW_ANY_USER", "false"),
    ]))
    .expect("valid");
    let corp = settings.providers.named[0]
        .access
        .as_ref()
        .expect("rules of its own");
    assert_eq!(corp.allowed_email_domains, ["partner.example"]);
    assert!(corp.allowed_groups.is_empty(), "[access] is not merged in");
    assert!(
        corp.require_email_verified,
        "email rules need verified emails"
    );
    assert_eq!(corp.groups_claim, ["groups"]);
    assert_eq!(settings.access.allowed_groups, ["staff"]);

    // Rules of its own but none that admits anyone: refused, naming its own variables.
    let error = error_for(with_corp(&[(
        "GATEHOUSE__PROVIDERS__CORP__ACCESS__GROUPS_CLAIM",
        "roles",
    )]));
    assert!(
        error.starts_with("GATEHOUSE__PROVIDERS__CORP__ACCESS__ALLOW_ANY_USER is not true"),
        "{error}"
    );
    assert!(
        error.contains("GATEHOUSE__PROVIDERS__CORP__ACCESS__ALLOWED_GROUPS"),
        "{error}"
    );
    let error = error_for(with_corp(&[(
        "GATEHOUSE__PROVIDERS__CORP__ACCESS__ALLOWED_EMAILS",
        "not-an-address",
    )]));
    assert!(
        error.contains("GATEHOUSE__PROVIDERS__CORP__ACCESS__ALLOWED_EMAILS"),
        "{error}"
    );
}

#[test]
fn unknown_keys_of_a_further_provider_are_warned_about() {
    let loaded = Settings::load(Sources {
        config_dir: None,
        environment: None,
        vars: with_corp(&[
            ("GATEHOUSE__PROVIDERS__CORP__CLIENT_SECRTE", "typo"),
            ("GATEHOUSE__PROVIDERS__CORP__ACCESS__ALLOWED_GROUP", "typo"),
            (
                "GATEHOUSE__PROVIDERS__CORP__ACCESS__ALLOWED_GROUPS",
                "staff",
            ),
            ("GATEHOUSE__PROVIDERS__CORP__DISPLAY_NAME", "Corp"),
            ("GATEHOUSE__PROVIDERS__CORP__SCOPES", "openid"),
        ]),
    })
    .expect("unknown keys are not fatal");
    let mut warned: Vec<&str> = loaded.warnings.iter().map(String::as_str).collect();
    warned.sort();
    assert_eq!(
        warned,
        [
            "unknown setting GATEHOUSE__PROVIDERS__CORP__ACCESS__ALLOWED_GROUP is ignored",
            "unknown setting GATEHOUSE__PROVIDERS__CORP__CLIENT_SECRTE is ignored",
        ]
    );
}

#[test]
fn files_write_names_in_lower_case_and_meet_the_environment() {
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        "[providers.corp]\nauth_url = \"https://login.corp.example/authorize\"\n\
         token_url = \"https://login.corp.example/token\"\nclient_id = \"from-file\"\n\
         [providers.corp.access]\nallowed_groups = [\"staff\"]\n",
    );
    let load_with = |vars: HashMap<String, String>| {
        Settings::load(Sources {
            config_dir: Some(dir.path.clone()),
            environment: None,
            vars,
        })
    };
    let mut vars = base_vars();
    vars.insert(
        "GATEHOUSE__PROVIDERS__CORP__CLIENT_SECRET".into(),
        "corp-secret".into(),
    );
    let loaded = load_with(vars).expect("valid");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let corp = &loaded.settings.providers.named[0];
    assert_eq!(corp.provider.client_id, "from-file");
    assert_eq!(
        corp.provider
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
        Some("corp-secret".to_owned()),
        "the environment adds to the file's section"
    );
    assert_eq!(
        corp.access.as_ref().map(|a| a.allowed_groups.clone()),
        Some(vec!["staff".to_owned()])
    );

    dir.write("default.toml", "[providers.Corp]\nclient_id = \"x\"\n");
    let SettingsError(error) = load_with(base_vars()).expect_err("upper case in a file");
    assert!(error.contains("[providers.corp]"), "{error}");
    assert!(!error.contains('\n'));
}

#[test]
fn the_binary_names_an_invalid_provider_in_one_line() {
    let mut vars = base_vars();
    vars.insert(
        "GATEHOUSE__PROVIDERS__CORP_EU__CLIENT_ID".into(),
        "x".into(),
    );
    let dir = TempDir::new();
    let mut child = Running(
        gatehouse_binary(&vars, &dir)
            .spawn()
            .expect("binary starts"),
    );
    let status = child.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(2), "{status:?}");
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr read");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr:?}");
    assert!(lines[0].contains("\"corp_eu\""), "{stderr:?}");
    assert!(lines[0].contains("letters and digits"), "{stderr:?}");
}
