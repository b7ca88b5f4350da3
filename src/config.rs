//! Settings: flags, the process environment and a `.env` file, merged once.
//!
//! Precedence, highest first: flag > process environment > `.env` > default.
//! The `.env` file is read into a table of its own and never written into
//! the process environment, so a variable that is already set always wins.
//! Every value remembers where it came from, so an error names the flag or
//! the variable (and file) to fix. Nothing here touches the network.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cli::Cli;
use crate::exit::{Exit, Failure};
use crate::secret::Secret;

/// How the connection to the server is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connect, then STARTTLS, which the server must offer.
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS at all: local relays only, never with credentials.
    None,
}

impl TlsMode {
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::StartTls => 587,
            TlsMode::Implicit => 465,
            TlsMode::None => 25,
        }
    }
}

/// Where the password comes from; it is only read when it is needed.
#[derive(Clone, Debug)]
pub enum PasswordSource {
    Value(Secret),
    Command(String),
}

/// Everything downstream needs, resolved from all layers.
#[derive(Debug)]
pub struct Settings {
    pub host: Option<String>,
    pub port: u16,
    pub tls: TlsMode,
    pub user: Option<String>,
    pub password: Option<PasswordSource>,
    pub from: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// The layer a value came from, for error messages.
#[derive(Clone, Debug)]
enum Origin {
    Flag(&'static str),
    Env(&'static str),
    DotEnv(&'static str, PathBuf),
}

impl Origin {
    /// A bad flag is a usage error; a bad variable is a configuration error.
    fn exit(&self) -> Exit {
        match self {
            Origin::Flag(_) => Exit::Usage,
            _ => Exit::Config,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "{flag}"),
            Origin::Env(var) => write!(f, "{var}"),
            Origin::DotEnv(var, path) => write!(f, "{var} in {}", path.display()),
        }
    }
}

struct Sourced {
    value: String,
    origin: Origin,
}

impl Sourced {
    fn invalid(&self, what: &str) -> Failure {
        Failure::new(
            self.origin.exit(),
            format!("invalid {what} '{}' (from {})", self.value, self.origin),
        )
    }
}

/// The environment and `.env` layers.
struct Layers<E> {
    env: E,
    dotenv: HashMap<String, String>,
    dotenv_path: PathBuf,
}

impl<E: Fn(&str) -> Option<String>> Layers<E> {
    /// `flag`, else the variable from the environment, else from `.env`.
    /// Empty values count as unset, as a bare `VAR=` line in cron means.
    fn get(
        &self,
        flag: Option<&str>,
        flag_name: &'static str,
        var: &'static str,
    ) -> Option<Sourced> {
        if let Some(v) = flag {
            return Some(Sourced {
                value: v.to_owned(),
                origin: Origin::Flag(flag_name),
            });
        }
        if let Some(v) = (self.env)(var).filter(|v| !v.is_empty()) {
            return Some(Sourced {
                value: v,
                origin: Origin::Env(var),
            });
        }
        self.dotenv
            .get(var)
            .filter(|v| !v.is_empty())
            .map(|v| Sourced {
                value: v.clone(),
                origin: Origin::DotEnv(var, self.dotenv_path.clone()),
            })
    }
}

/// Rank of a layer, for choosing between two variables: lower wins.
fn rank(origin: &Origin) -> u8 {
    match origin {
        Origin::Flag(_) => 0,
        Origin::Env(_) => 1,
        Origin::DotEnv(..) => 2,
    }
}

/// Reads the `.env` file: `--env-file PATH` must exist (66); `./.env` is
/// optional. Only `MAILSEND_*` keys are kept.
fn read_dotenv(explicit: Option<&Path>) -> Result<(HashMap<String, String>, PathBuf)> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(".env"), false),
    };
    let iter = match dotenvy::from_path_iter(&path) {
        Ok(iter) => iter,
        Err(dotenvy::Error::Io(e)) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((HashMap::new(), path));
        }
        Err(e) => {
            return Err(Failure::no_input(format!(
                "cannot read env file {}: {}",
                path.display(),
                io_reason(&e)
            ))
            .into());
        }
    };
    let mut vars = HashMap::new();
    for item in iter {
        let (key, value) = item.map_err(|e| {
            Failure::config(format!("cannot parse env file {}: {e}", path.display()))
        })?;
        if key.starts_with("MAILSEND_") {
            vars.insert(key, value);
        }
    }
    Ok((vars, path))
}

fn io_reason(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::Io(io) => io.kind().to_string(),
        other => other.to_string(),
    }
}

impl Settings {
    /// Resolves settings from flags, the process environment and `.env`.
    pub fn resolve(cli: &Cli) -> Result<Settings> {
        Self::resolve_with(cli, |var| std::env::var(var).ok())
    }

    fn resolve_with(cli: &Cli, env: impl Fn(&str) -> Option<String>) -> Result<Settings> {
        let (dotenv, dotenv_path) = read_dotenv(cli.env_file.as_deref())?;
        let layers = Layers {
            env,
            dotenv,
            dotenv_path,
        };

        let tls = match layers.get(cli.tls.as_deref(), "--tls", "MAILSEND_TLS") {
            None => TlsMode::StartTls,
            Some(s) => match s.value.to_ascii_lowercase().as_str() {
                "starttls" => TlsMode::StartTls,
                "tls" | "ssl" | "smtps" => TlsMode::Implicit,
                "none" | "plain" => TlsMode::None,
                _ => {
                    return Err(s
                        .invalid("TLS mode")
                        .with_hint("use starttls, tls or none")
                        .into());
                }
            },
        };
        let port = match layers.get(cli.port.as_deref(), "--port", "MAILSEND_PORT") {
            None => tls.default_port(),
            Some(s) => match s.value.trim().parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(s.invalid("port").into()),
            },
        };
        let timeout = match layers.get(cli.timeout.as_deref(), "--timeout", "MAILSEND_TIMEOUT") {
            None => Duration::from_secs(30),
            Some(s) => parse_duration(&s.value).ok_or_else(|| {
                s.invalid("timeout")
                    .with_hint("use a duration such as 30s, 500ms or 2m")
            })?,
        };

        let user = layers
            .get(cli.user.as_deref(), "--user", "MAILSEND_USER")
            .map(|s| s.value);
        let password = {
            let value = layers.get(None, "", "MAILSEND_PASSWORD");
            let command = layers.get(
                cli.password_command.as_deref(),
                "--password-command",
                "MAILSEND_PASSWORD_COMMAND",
            );
            match (value, command) {
                (Some(v), Some(c)) if rank(&c.origin) < rank(&v.origin) => {
                    Some(PasswordSource::Command(c.value))
                }
                (Some(v), _) => Some(PasswordSource::Value(Secret::new(v.value))),
                (None, Some(c)) => Some(PasswordSource::Command(c.value)),
                (None, None) => None,
            }
        };

        if tls == TlsMode::None && (user.is_some() || password.is_some()) {
            return Err(Failure::config(
                "credentials are configured but the TLS mode is none: they would cross the network in clear",
            )
            .with_hint(
                "use --tls starttls or --tls tls, or unset MAILSEND_USER and MAILSEND_PASSWORD for a local relay",
            )
            .into());
        }
        if password.is_some() && user.is_none() {
            return Err(Failure::config("a password is configured but no user name")
                .with_hint("set MAILSEND_USER")
                .into());
        }

        let from = layers
            .get(cli.from.as_deref(), "--from", "MAILSEND_FROM")
            .map(|s| s.value)
            .or_else(|| user.clone().filter(|u| u.contains('@')));
        let host = layers
            .get(cli.host.as_deref(), "--host", "MAILSEND_HOST")
            .map(|s| s.value);
        let ca_file = layers
            .get(
                cli.ca_file.as_deref().and_then(Path::to_str),
                "--ca-file",
                "MAILSEND_CA_FILE",
            )
            .map(|s| PathBuf::from(s.value));

        Ok(Settings {
            host,
            port,
            tls,
            user,
            password,
            from,
            ca_file,
            timeout,
        })
    }
}

/// `30s`, `500ms`, `2m`, or a bare number of seconds; zero is refused.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let d = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text).ok()?,
    };
    (!d.is_zero()).then_some(d)
}

/// Runs the password command (`sh -c`), bounded by `timeout`; its standard
/// output, without trailing white space, is the password.
pub fn run_password_command(command: &str, timeout: Duration) -> Result<Secret> {
    let fail = |why: String| {
        Failure::config(format!("password command failed: {why}"))
            .with_hint("check MAILSEND_PASSWORD_COMMAND / --password-command")
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| fail(format!("cannot start sh: {e}")))?;
    let mut stdout = child.stdout.take().expect("stdout was piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if !status.success() {
        return Err(fail(format!("it exited with {status}")).into());
    }
    let out = reader
        .join()
        .map_err(|_| fail("reader thread failed".into()))?
        .map_err(|e| fail(format!("cannot read its output: {e}")))?;
    let text = String::from_utf8(out).map_err(|_| fail("its output is not UTF-8".into()))?;
    let password = text.trim_end_matches(['\r', '\n', ' ', '\t']).to_owned();
    if password.is_empty() {
        return Err(fail("it printed nothing".into()).into());
    }
    Ok(Secret::new(password))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        let mut full = vec!["mailsend", "--env-file", "/dev/null"];
        full.extend_from_slice(args);
        Cli::parse_from(full)
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_follow_tls_mode() {
        let s = Settings::resolve_with(&cli(&[]), env(&[])).unwrap();
        assert_eq!(
            (s.tls, s.port, s.timeout),
            (TlsMode::StartTls, 587, Duration::from_secs(30))
        );
        let s = Settings::resolve_with(&cli(&["--tls", "tls"]), env(&[])).unwrap();
        assert_eq!(s.port, 465);
        let s = Settings::resolve_with(&cli(&[]), env(&[("MAILSEND_TLS", "none")])).unwrap();
        assert_eq!(s.port, 25);
    }

    #[test]
    fn flag_beats_environment() {
        let e = env(&[
            ("MAILSEND_HOST", "env.example.com"),
            ("MAILSEND_PORT", "2525"),
        ]);
        let s = Settings::resolve_with(&cli(&["--host", "flag.example.com"]), e).unwrap();
        assert_eq!(s.host.as_deref(), Some("flag.example.com"));
        assert_eq!(s.port, 2525);
    }

    #[test]
    fn bad_values_name_their_origin_and_code() {
        let err = Settings::resolve_with(&cli(&["--port", "99999"]), env(&[])).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Usage);
        assert!(err.to_string().contains("--port"), "{err}");
        let err =
            Settings::resolve_with(&cli(&[]), env(&[("MAILSEND_TIMEOUT", "soon")])).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Config);
        assert!(err.to_string().contains("MAILSEND_TIMEOUT"), "{err}");
    }

    #[test]
    fn credentials_with_plain_transport_are_refused() {
        let e = env(&[
            ("MAILSEND_USER", "u@example.com"),
            ("MAILSEND_PASSWORD", "pw"),
        ]);
        let err = Settings::resolve_with(&cli(&["--tls", "none"]), e).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Config);
    }

    #[test]
    fn from_defaults_to_user_address() {
        let s =
            Settings::resolve_with(&cli(&[]), env(&[("MAILSEND_USER", "me@example.org")])).unwrap();
        assert_eq!(s.from.as_deref(), Some("me@example.org"));
        let s = Settings::resolve_with(&cli(&[]), env(&[("MAILSEND_USER", "me")])).unwrap();
        assert_eq!(s.from, None);
    }

    #[test]
    fn password_command_flag_beats_password_variable() {
        let e = env(&[("MAILSEND_USER", "me"), ("MAILSEND_PASSWORD", "pw")]);
        let s = Settings::resolve_with(&cli(&["--password-command", "echo x"]), e).unwrap();
        assert!(matches!(s.password, Some(PasswordSource::Command(_))));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn password_command_output_is_trimmed() {
        let p = run_password_command("printf 's3cret\\n'", Duration::from_secs(5)).unwrap();
        assert_eq!(p.expose(), "s3cret");
        let err = run_password_command("exit 3", Duration::from_secs(5)).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Config);
        let err = run_password_command("sleep 5", Duration::from_millis(100)).unwrap_err();
        assert!(err.to_string().contains("no answer"), "{err}");
    }
}
