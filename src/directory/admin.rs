//! The operators' commands: `gatehouse migrate`, `gatehouse users block|unblock|list`,
//! `gatehouse sessions revoke --subject S`, `gatehouse audit [--subject S] [--since T]`.
//!
//! Same settings as the server. Results go to stdout (JSON lines where there are rows); an
//! error is one line on stderr and a non-zero exit: 2 for a wrong command line or setting, 1
//! when the work itself failed.

use std::io::Write;

use serde::Serialize;

use super::{AuditEvent, AuditFilter, Directory, DirectoryError, EventKind, SessionEnder};
use crate::config::{env_name, Settings, Sources};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// Rows fetched per query when printing a list.
const PAGE: u32 = 1000;

const USAGE: &str = "usage: gatehouse migrate | users block SUBJECT | users unblock SUBJECT | \
users list | sessions revoke --subject SUBJECT | audit [--subject SUBJECT] [--since UNIX_SECONDS]";

/// The first words that belong to these commands (`src/main.rs` dispatches on them).
pub const COMMANDS: &[&str] = &["migrate", "users", "sessions", "audit"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Migrate,
    Block(String),
    Unblock(String),
    ListUsers,
    RevokeSessions(String),
    Audit(AuditArgs),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditArgs {
    pub subject: Option<String>,
    pub since: Option<u64>,
}

/// Parses the words after `gatehouse`.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["migrate"] => Ok(Command::Migrate),
        ["users", "block", subject] => Ok(Command::Block(subject_arg(subject)?)),
        ["users", "unblock", subject] => Ok(Command::Unblock(subject_arg(subject)?)),
        ["users", "list"] => Ok(Command::ListUsers),
        ["sessions", "revoke", rest @ ..] => match flags(rest, &["--subject"])?.as_slice() {
            [(_, subject)] => Ok(Command::RevokeSessions(subject_arg(subject)?)),
            _ => Err("sessions revoke needs --subject SUBJECT".into()),
        },
        ["audit", rest @ ..] => {
            let mut audit = AuditArgs::default();
            for (flag, value) in flags(rest, &["--subject", "--since"])? {
                match flag {
                    "--subject" => audit.subject = Some(subject_arg(value)?),
                    _ => {
                        audit.since =
                            Some(value.parse().map_err(|_| {
                                format!("--since must be unix seconds, got {value:?}")
                            })?)
                    }
                }
            }
            Ok(Command::Audit(audit))
        }
        _ => Err(USAGE.into()),
    }
}

fn subject_arg(value: &str) -> Result<String, String> {
    if value.is_empty() || value.starts_with("--") {
        return Err(format!("a subject was expected, got {value:?}"));
    }
    Ok(value.to_owned())
}

/// `--name value` or `--name=value` pairs, each name at most once, only from `known`.
fn flags<'a>(words: &[&'a str], known: &[&'a str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut found: Vec<(&str, &str)> = Vec::new();
    let mut rest = words.iter();
    while let Some(word) = rest.next() {
        let (name, value) = match word.split_once('=') {
            Some((name, value)) => (name, value),
            None => (
                *word,
                *rest.next().ok_or_else(|| format!("{word} needs a value"))?,
            ),
        };
        let Some(name) = known.iter().find(|k| **k == name) else {
            return Err(format!("unknown argument {word:?}; {USAGE}"));
        };
        if found.iter().any(|(n, _)| n == name) {
            return Err(format!("{name} given twice"));
        }
        found.push((name, value));
    }
    Ok(found)
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Directory(#[from] DirectoryError),
    #[error("{0}")]
    Failed(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// The process entry point for these commands: parses `args` (the words after `gatehouse`),
/// loads the settings, runs the command, prints, and returns the exit status.
/// `session_ender` builds the session index's [`SessionEnder`] from the settings; it is called
/// only by the commands that end sessions.
pub fn main<E, F>(args: &[String], session_ender: F) -> i32
where
    E: SessionEnder,
    F: FnOnce(&Settings) -> Result<E, String>,
{
    let command = match parse(args) {
        Ok(command) => command,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    let loaded = match Settings::load(Sources::from_process()) {
        Ok(loaded) => loaded,
        Err(e) => return fail(EXIT_USAGE, &e.to_string()),
    };
    for warning in &loaded.warnings {
        eprintln!("gatehouse: warning: {warning}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(EXIT_FAILED, &format!("cannot start: {e}")),
    };
    let settings = loaded.settings;
    let outcome: Result<(), AdminError> = runtime.block_on(async {
        let directory = Directory::open(&settings.database)?;
        // As the server would at start-up: a fresh install works before the server first ran.
        if settings.database.migrate && command != Command::Migrate {
            directory.migrate().await?;
        }
        let mut out = std::io::stdout().lock();
        let result = match &command {
            Command::Block(_) | Command::RevokeSessions(_) => {
                let ender = session_ender(&settings).map_err(AdminError::Failed)?;
                run(&command, &directory, &ender, &mut out).await
            }
            _ => run(&command, &directory, &Unwired, &mut out).await,
        };
        directory.close().await;
        result
    });
    match outcome {
        Ok(()) => EXIT_OK,
        // `gatehouse audit | head`: the reader has what it wanted.
        Err(AdminError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e @ AdminError::Directory(_)) => {
            let text = e.to_string();
            let setting = env_name("database.url");
            if text.contains(&setting) {
                fail(EXIT_FAILED, &text)
            } else {
                fail(EXIT_FAILED, &format!("the database ({setting}): {text}"))
            }
        }
        Err(e) => fail(EXIT_FAILED, &e.to_string()),
    }
}

fn fail(status: i32, message: &str) -> i32 {
    eprintln!("gatehouse: {message}");
    status
}

/// Ends no session: for the commands that need none (and a build without a session index).
pub struct Unwired;

impl SessionEnder for Unwired {
    async fn end_all_for_subject(&self, _: &str) -> Result<usize, super::SessionEndError> {
        Err(super::SessionEndError(
            "no session index is available to end sessions".into(),
        ))
    }
}

#[derive(Serialize)]
struct ListedUser<'a> {
    subject: &'a str,
    email: Option<&'a str>,
    name: Option<&'a str>,
    first_seen_at: Option<u64>,
    last_seen_at: Option<u64>,
    signin_count: u64,
    blocked: bool,
}

/// Runs one command against `directory`, printing to `out`.
pub async fn run(
    command: &Command,
    directory: &Directory,
    sessions: &impl SessionEnder,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    match command {
        Command::Migrate => {
            let version = directory.migrate().await?;
            writeln!(out, "{}", serde_json::json!({ "schema_version": version }))?;
        }
        Command::Block(subject) => {
            // Blocked first: from here on a new sign-in is refused, so a session cannot appear
            // behind the sweep below.
            directory
                .block(subject, crate::identity::now_unix())
                .await?;
            let ended = sessions.end_all_for_subject(subject).await;
            let event = AuditEvent::new(EventKind::UserBlocked).subject(subject);
            let audited = directory.write_events(&[event]).await;
            let ended = ended.map_err(|e| {
                AdminError::Failed(format!(
                    "{subject} is blocked (new sign-ins are refused), but their sessions \
                     could not be ended: {e}"
                ))
            })?;
            audited?;
            writeln!(
                out,
                "{}",
                serde_json::json!({ "subject": subject, "blocked": true, "sessions_ended": ended })
            )?;
        }
        Command::Unblock(subject) => {
            if !directory.unblock(subject).await? {
                return Err(AdminError::Failed(format!(
                    "no user with subject {subject:?} in the directory"
                )));
            }
            let event = AuditEvent::new(EventKind::UserUnblocked).subject(subject);
            directory.write_events(&[event]).await?;
            writeln!(
                out,
                "{}",
                serde_json::json!({ "subject": subject, "blocked": false })
            )?;
        }
        Command::RevokeSessions(subject) => {
            let ended = sessions
                .end_all_for_subject(subject)
                .await
                .map_err(|e| AdminError::Failed(format!("sessions could not be ended: {e}")))?;
            let event = AuditEvent::new(EventKind::SessionRevoked).subject(subject);
            directory.write_events(&[event]).await.map_err(|e| {
                AdminError::Failed(format!(
                    "{ended} sessions ended, but the audit event could not be written: {e}"
                ))
            })?;
            writeln!(
                out,
                "{}",
                serde_json::json!({ "subject": subject, "sessions_ended": ended })
            )?;
        }
        Command::ListUsers => {
            let mut after: Option<String> = None;
            loop {
                let page = directory.users_page(after.as_deref(), PAGE).await?;
                for u in &page {
                    let line = serde_json::to_string(&ListedUser {
                        subject: &u.subject,
                        email: u.email.as_deref(),
                        name: u.name.as_deref(),
                        first_seen_at: u.first_seen_at,
                        last_seen_at: u.last_seen_at,
                        signin_count: u.signin_count,
                        blocked: u.blocked,
                    })
                    .map_err(|e| AdminError::Failed(e.to_string()))?;
                    writeln!(out, "{line}")?;
                }
                match page.last() {
                    Some(last) if page.len() == PAGE as usize => after = Some(last.subject.clone()),
                    _ => break,
                }
            }
        }
        Command::Audit(args) => {
            let filter = AuditFilter {
                subject: args.subject.clone(),
                since: args.since,
            };
            let mut after = None;
            loop {
                let page = directory.audit_page(&filter, after.as_ref(), PAGE).await?;
                for record in &page {
                    let line = serde_json::to_string(record)
                        .map_err(|e| AdminError::Failed(e.to_string()))?;
                    writeln!(out, "{line}")?;
                }
                match page.last() {
                    Some(last) if page.len() == PAGE as usize => after = Some(last.clone()),
                    _ => break,
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse(&words("migrate")), Ok(Command::Migrate));
        assert_eq!(
            parse(&words("users block alice")),
            Ok(Command::Block("alice".into()))
        );
        assert_eq!(
            parse(&words("users unblock alice")),
            Ok(Command::Unblock("alice".into()))
        );
        assert_eq!(parse(&words("users list")), Ok(Command::ListUsers));
        assert_eq!(
            parse(&words("sessions revoke --subject alice")),
            Ok(Command::RevokeSessions("alice".into()))
        );
        assert_eq!(
            parse(&words("sessions revoke --subject=alice")),
            Ok(Command::RevokeSessions("alice".into()))
        );
        assert_eq!(
            parse(&words("audit")),
            Ok(Command::Audit(AuditArgs::default()))
        );
        assert_eq!(
            parse(&words("audit --since 100 --subject bob")),
            Ok(Command::Audit(AuditArgs {
                subject: Some("bob".into()),
                since: Some(100)
            }))
        );
    }

    #[test]
    fn bad_command_lines_are_refused_with_a_reason() {
        for bad in [
            "",
            "users",
            "users block",
            "users block a b",
            "users frobnicate x",
            "sessions revoke",
            "sessions revoke --subject",
            "sessions revoke --subject --since",
            "audit --since yesterday",
            "audit --since -5",
            "audit --subject a --subject b",
            "audit --until 5",
            "migrate now",
        ] {
            assert!(parse(&words(bad)).is_err(), "{bad:?}");
        }
    }
}
