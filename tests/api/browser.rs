//! The whole journey in a real browser: headless Chromium (Debian's `chromium` package) driven
//! by `playwright-core` (pinned in tests/browser/package-lock.json; no browser download), through
//! a real nginx with the shipped snippet, gatehouse and the development provider. The journeys
//! themselves are in tests/browser/journeys.mjs; this test sets up the stack, runs them with
//! the addresses in environment variables, and fails unless they all pass.
//!
//! Run alone: `cargo test --test api browser -- --nocapture`. Without Chromium (or without
//! `npm ci` in tests/browser) the test is skipped with a message, except in CI (`CI` set), where
//! that is a failure: scripts/test installs both.
//!
//! The signed-in page's screenshot goes to a temporary file (or to
//! `$GATEHOUSE_BROWSER_SCREENSHOT_OUT`): a test never rewrites a tracked file.
//! `scripts/update-screenshot` runs this test and copies it over docs/screenshots/signed-in.png.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::helpers::*;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// Bound on the whole browser run (it takes a few seconds).
const RUN_BOUND: Duration = Duration::from_secs(240);
/// The product name the stack is configured with; the journeys expect it on the pages.
const TITLE: &str = "Acme sign-in";

fn chromium() -> PathBuf {
    std::env::var_os("GATEHOUSE_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What the browser run needs, or why it cannot run here.
fn missing() -> Option<String> {
    let chromium = chromium();
    if !chromium.is_file() {
        return Some(format!(
            "{} not found (apt-get install chromium chromium-driver, or set GATEHOUSE_TEST_CHROMIUM)",
            chromium.display()
        ));
    }
    let driver = Path::new(MANIFEST_DIR).join("tests/browser/node_modules/playwright-core");
    if !driver.is_dir() {
        return Some("playwright-core is not installed (npm ci in tests/browser)".to_owned());
    }
    None
}

/// True when the browser run cannot happen: a skip outside CI, a failure in CI.
fn skip_without_browser() -> bool {
    let Some(why) = missing() else {
        return false;
    };
    if std::env::var_os("CI").is_some() {
        panic!("the browser journeys cannot run in CI: {why} (scripts/test installs them)");
    }
    println!("SKIPPED: browser journeys: {why}; scripts/test installs what they need");
    true
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(MANIFEST_DIR).join("target"))
}

#[tokio::test]
async fn browser_journeys_in_headless_chromium_through_nginx() {
    if skip_without_browser() {
        return;
    }
    // Provider logout on: signing out ends the provider's session too, so the next visit shows
    // its login form (and the sign-out form's CSP must allow the provider's origin).
    let stack = direct_and_behind_nginx(&[
        ("GATEHOUSE__SIGNOUT__PROVIDER_LOGOUT", "true"),
        ("GATEHOUSE__UI__TITLE", TITLE),
    ])
    .await;
    let screenshots = target_dir().join("browser-screenshots");
    std::fs::create_dir_all(&screenshots).expect("screenshot folder");
    let scratch = TempDir::new();
    let signed_in_shot = std::env::var_os("GATEHOUSE_BROWSER_SCREENSHOT_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| scratch.path.join("signed-in.png"));

    let started = Instant::now();
    let mut node = tokio::process::Command::new("node");
    node.arg("journeys.mjs")
        .current_dir(Path::new(MANIFEST_DIR).join("tests/browser"))
        .env("GATEHOUSE_BROWSER_CHROMIUM", chromium())
        .env("GATEHOUSE_BROWSER_APP", &stack.nginx.origin)
        .env("GATEHOUSE_BROWSER_GATEHOUSE", &stack.direct)
        .env("GATEHOUSE_BROWSER_IDP", &idp().issuer)
        .env("GATEHOUSE_BROWSER_TITLE", TITLE)
        .env("GATEHOUSE_BROWSER_SCREENSHOTS", &screenshots)
        .env("GATEHOUSE_BROWSER_README_SCREENSHOT", &signed_in_shot)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(RUN_BOUND, node.output())
        .await
        .unwrap_or_else(|_| panic!("the browser journeys took over {RUN_BOUND:?}"))
        .expect("node runs tests/browser/journeys.mjs");
    println!(
        "{}{}(browser run: {:.1} s; screenshots of failures in {})",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        started.elapsed().as_secs_f64(),
        screenshots.display()
    );
    let nginx_trouble: Vec<String> = stack
        .nginx
        .error_log()
        .lines()
        .filter(|l| {
            ["[warn]", "[error]", "[crit]", "[alert]", "[emerg]"]
                .iter()
                .any(|t| l.contains(t))
        })
        .map(str::to_owned)
        .collect();
    assert!(
        out.status.success(),
        "browser journeys failed ({}); nginx's warnings and errors:\n{}",
        out.status,
        nginx_trouble.join("\n")
    );
    let png = std::fs::read(&signed_in_shot).expect("the signed-in page's screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG",
        signed_in_shot.display()
    );
}
