//! The command line of `gatehouse login | token | logout`, parsed by hand: three commands and
//! four options do not justify an argument-parsing crate and its build time.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

pub const USAGE: &str = "usage: gatehouse login --server URL [--no-browser] [--store PATH] \
                         [--timeout SECONDS] | gatehouse token --server URL [--store PATH] | \
                         gatehouse logout --server URL [--store PATH]";

/// How long `login` waits for the browser by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Login(Login),
    Token(Target),
    Logout(Target),
    Help,
}

/// Which gatehouse, and where its tokens are kept here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub server: Url,
    /// `--store`; `None` = the default place (see `store::Store::locate`).
    pub store: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub target: Target,
    pub no_browser: bool,
    pub timeout: Duration,
}

/// A command line we cannot run; the text is one line, the usage follows it on `--help`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} ({USAGE})")]
pub struct UsageError(pub String);

fn usage(text: impl Into<String>) -> UsageError {
    UsageError(text.into())
}

/// Parses `args` (the subcommand first, as typed after `gatehouse`).
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let Some((command, rest)) = args.split_first() else {
        return Err(usage("a command is missing"));
    };
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Command::Help);
    }
    let options = Options::collect(rest)?;
    let command = match command.as_str() {
        "login" => {
            options.only(&["--server", "--store", "--no-browser", "--timeout"])?;
            let timeout = match options.value("--timeout") {
                None => DEFAULT_TIMEOUT,
                Some(text) => match text.parse::<u64>() {
                    Ok(secs) if (1..=86_400).contains(&secs) => Duration::from_secs(secs),
                    _ => {
                        return Err(usage(
                            "--timeout must be a whole number of seconds, 1 to 86400",
                        ))
                    }
                },
            };
            Command::Login(Login {
                target: options.target()?,
                no_browser: options.flag("--no-browser"),
                timeout,
            })
        }
        "token" => {
            options.only(&["--server", "--store"])?;
            Command::Token(options.target()?)
        }
        "logout" => {
            options.only(&["--server", "--store"])?;
            Command::Logout(options.target()?)
        }
        other => return Err(usage(format!("unknown command {other:?}"))),
    };
    Ok(command)
}

/// Options as given: `--name value`, `--name=value`, or a bare flag.
struct Options {
    given: Vec<(String, Option<String>)>,
}

const FLAGS: &[&str] = &["--no-browser"];

impl Options {
    fn collect(args: &[String]) -> Result<Options, UsageError> {
        let mut given: Vec<(String, Option<String>)> = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if !arg.starts_with("--") {
                return Err(usage(format!("unexpected argument {arg:?}")));
            }
            let (name, value) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None if FLAGS.contains(&arg.as_str()) => (arg.clone(), None),
                None => {
                    let value = args
                        .next()
                        .ok_or_else(|| usage(format!("{arg} needs a value")))?;
                    (arg.clone(), Some(value.clone()))
                }
            };
            if FLAGS.contains(&name.as_str()) && value.is_some() {
                return Err(usage(format!("{name} takes no value")));
            }
            if given.iter().any(|(n, _)| *n == name) {
                return Err(usage(format!("{name} is given twice")));
            }
            given.push((name, value));
        }
        Ok(Options { given })
    }

    fn only(&self, allowed: &[&str]) -> Result<(), UsageError> {
        match self
            .given
            .iter()
            .find(|(n, _)| !allowed.contains(&n.as_str()))
        {
            Some((name, _)) => Err(usage(format!("unknown option {name}"))),
            None => Ok(()),
        }
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.given
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn flag(&self, name: &str) -> bool {
        self.given.iter().any(|(n, _)| n == name)
    }

    fn target(&self) -> Result<Target, UsageError> {
        let server = self
            .value("--server")
            .ok_or_else(|| usage("--server URL is required"))?;
        let store = match self.value("--store") {
            Some("") => return Err(usage("--store needs a path")),
            Some(path) => Some(PathBuf::from(path)),
            None => None,
        };
        Ok(Target {
            server: server_url(server)?,
            store,
        })
    }
}

/// gatehouse's URL: it tells us which provider to trust, so it must come over https (plain http
/// only to this machine, e.g. a development setup).
fn server_url(text: &str) -> Result<Url, UsageError> {
    let url = Url::parse(text).map_err(|_| {
        usage(format!(
            "--server {text:?} is not a URL such as https://gate.example.com"
        ))
    })?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(usage(
            "--server must be a plain URL (no query, fragment or user)",
        ));
    }
    if !trustworthy(&url) {
        return Err(usage(format!(
            "--server {text:?} must be https:// (http:// only to this machine)"
        )));
    }
    Ok(url)
}

/// https, or http to a loopback address: where a network attacker cannot answer for the host.
pub fn trustworthy(url: &Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_every_command_and_both_option_spellings() {
        let login = parse(&args(
            "login --server https://gate.example --no-browser --store=/tmp/t.json --timeout 5",
        ))
        .expect("parses");
        assert_eq!(
            login,
            Command::Login(Login {
                target: Target {
                    server: Url::parse("https://gate.example").expect("url"),
                    store: Some(PathBuf::from("/tmp/t.json")),
                },
                no_browser: true,
                timeout: Duration::from_secs(5),
            })
        );
        let Ok(Command::Login(defaults)) = parse(&args("login --server http://127.0.0.1:8080"))
        else {
            panic!("login parses");
        };
        assert_eq!(defaults.timeout, DEFAULT_TIMEOUT);
        assert!(!defaults.no_browser && defaults.target.store.is_none());
        assert!(matches!(
            parse(&args("token --server=https://g.example/base")),
            Ok(Command::Token(_))
        ));
        assert!(matches!(
            parse(&args("logout --server https://g.example --store s")),
            Ok(Command::Logout(_))
        ));
        assert_eq!(parse(&args("token --help")), Ok(Command::Help));
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        for line in [
            "login",
            "login --server",
            "login --server https://g.example --timeout 0",
            "login --server https://g.example --timeout soon",
            "login --server https://g.example --no-browser=yes",
            "login --server https://g.example --server https://h.example",
            "token --server https://g.example --no-browser",
            "token --server https://g.example extra",
            "token --server https://g.example --store=",
            "logout --server https://g.example --verbose",
            "frobnicate --server https://g.example",
            "token --server http://gate.example",
            "token --server ftp://gate.example",
            "token --server https://gate.example/?x=1",
            "token --server https://user@gate.example",
            "token --server not-a-url",
        ] {
            assert!(parse(&args(line)).is_err(), "{line}");
        }
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        let ok = |u: &str| trustworthy(&Url::parse(u).expect("url"));
        assert!(ok("https://gate.example"));
        assert!(ok("http://127.0.0.1:8080"));
        assert!(ok("http://[::1]:8080"));
        assert!(ok("http://localhost:8080"));
        assert!(!ok("http://gate.example"));
        assert!(!ok("http://10.1.2.3"));
    }
}
