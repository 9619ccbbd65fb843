//! docs/benchmark.md quotes the newest report of scripts/bench (docs/bench/*.txt) verbatim:
//! the published figures are the measured ones, never a hand-edited table.

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BEGIN: &str = "<!-- bench-output:begin ";
const END: &str = "<!-- bench-output:end -->";

#[test]
fn the_performance_page_quotes_the_newest_report_verbatim() {
    let page = std::fs::read_to_string(Path::new(ROOT).join("docs/benchmark.md"))
        .expect("docs/benchmark.md");
    let mut reports: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("docs/bench"))
        .expect("docs/bench")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".txt"))
        .collect();
    reports.sort();
    let newest = format!("docs/bench/{}", reports.last().expect("a report"));

    let start = page.find(BEGIN).expect("the begin marker");
    let named = page[start + BEGIN.len()..]
        .split(" -->")
        .next()
        .expect("the quoted file's name");
    assert_eq!(named, newest, "the page quotes the newest report");
    let report = std::fs::read_to_string(Path::new(ROOT).join(&newest)).expect("the report");
    let quoted = format!("{BEGIN}{newest} -->\n```text\n{report}```\n{END}");
    assert!(
        page.contains(&quoted),
        "docs/benchmark.md does not quote {newest} verbatim: run `scripts/bench publish`"
    );
}
