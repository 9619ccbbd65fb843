//! docs/configuration.md's settings table, config/default.toml and the loader's known keys agree.

use std::collections::BTreeSet;

use gatehouse::config::{env_name, KNOWN_KEYS};

fn default_toml_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
        .expect("config/default.toml");
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.split_once('=') {
            keys.insert(format!("{section}.{}", key.trim()));
        }
    }
    keys
}

#[test]
fn default_toml_lists_exactly_the_known_settings() {
    let known: BTreeSet<String> = KNOWN_KEYS.iter().map(|k| k.to_string()).collect();
    assert_eq!(default_toml_keys(), known);
}

#[test]
fn docs_document_every_setting() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    let documented: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("| `GATEHOUSE__"))
        .filter_map(|l| l.split('`').next())
        .map(|name| format!("GATEHOUSE__{name}"))
        .collect();
    // Settings under a name of the operator's choosing are documented as patterns.
    let (patterns, documented): (BTreeSet<String>, BTreeSet<String>) =
        documented.into_iter().partition(|name| name.contains('<'));
    for pattern in [
        "GATEHOUSE__PROVIDERS__<NAME>__<KEY>",
        "GATEHOUSE__PROVIDERS__<NAME>__DISPLAY_NAME",
        "GATEHOUSE__PROVIDERS__<NAME>__ACCESS__<KEY>",
    ] {
        assert!(patterns.contains(pattern), "{pattern} is documented");
    }
    let expected: BTreeSet<String> = default_toml_keys().iter().map(|k| env_name(k)).collect();
    assert_eq!(
        documented, expected,
        "docs/configuration.md settings table vs config/default.toml"
    );
}
