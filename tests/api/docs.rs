//! docs/configuration.md's settings table, config/default.toml and the loader's known keys agree;
//! docs/benchmark.md quotes the newest report of scripts/bench (docs/bench/*.txt) verbatim: the
//! published figures are the measured ones, never a hand-edited table.

use std::collections::BTreeSet;
use std::path::Path;

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

const BENCH_BEGIN: &str = "<!-- bench-output:begin ";
const BENCH_END: &str = "<!-- bench-output:end -->";

#[test]
fn the_performance_page_quotes_the_newest_report_verbatim() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmark.md"))
            .expect("docs/benchmark.md");
    let mut reports: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench"))
            .expect("docs/bench")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".txt"))
            .collect();
    reports.sort();
    let newest = format!("docs/bench/{}", reports.last().expect("a report"));

    let start = page.find(BENCH_BEGIN).expect("the begin marker");
    let named = page[start + BENCH_BEGIN.len()..]
        .split(" -->")
        .next()
        .expect("the quoted file's name");
    assert_eq!(named, newest, "the page quotes the newest report");
    let report = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&newest))
        .expect("the report");
    let quoted = format!("{BENCH_BEGIN}{newest} -->\n```text\n{report}```\n{BENCH_END}");
    assert!(
        page.contains(&quoted),
        "docs/benchmark.md does not quote {newest} verbatim: run `scripts/bench publish`"
    );
}
