//! mailsend: send an email from a shell, a pipe or cron, securely.
//!
//! The path of a message through the files:
//! `cli/` (flags and their value types) → `config.rs` (flags + environment + `.env` via
//! `dotenv.rs` + `accounts.rs`' config file into `Settings`) → `send.rs`
//! (reads body and attachments; or `sendmail/`, which reads a whole
//! message) → `message/` (composes the RFC 5322 message into a spool,
//! streaming attachments) → `deliver.rs`
//! (sessions and retries) → `smtp/` (the SMTP client: `connect.rs` reaches
//! the server over TCP and `tls.rs`, `session.rs` holds the dialogue:
//! STARTTLS, AUTH, one reply per recipient, many messages per session) →
//! `output.rs` (human line or JSON, log line). What cannot be sent yet
//! waits in `outbox/` (`store.rs`), which `outbox/commands.rs` works
//! (`mailsend outbox`). `bulk/` runs a campaign (`mailsend bulk`): the
//! CSV list and templates render one `message::Draft` per row, all checked
//! before the first is sent. `check.rs` (`mailsend check`) connects as a
//! send would and reports each step, sending no mail; `client_cert.rs`
//! loads the TLS client certificate for both. `dkim/` signs a composed
//! message once, before its first attempt. `token.rs` gives OAuth2 access
//! tokens, from a command or from `oauth/` (the built-in sign-in and
//! refresh; `auth.rs` is its `mailsend auth` command). `exit.rs` turns any
//! error (or SMTP error class) into one sysexits.h code; `secret.rs` keeps
//! passwords out of every output, `password.rs` runs the password command,
//! `retry.rs` says when to try again, `term.rs` writes to the terminal,
//! `docs.rs` prints the completions and man page. No module depends on
//! one that depends on it (docs/DEVELOPMENT.md lists the layers).

// Every line to stdout or stderr goes through `output::outln!`/`errln!`,
// which never panic on a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod accounts;
mod auth;
mod bulk;
mod check;
mod cli;
mod client_cert;
mod config;
mod deliver;
mod dkim;
mod docs;
mod dotenv;
mod exit;
mod message;
mod oauth;
mod outbox;
mod output;
mod password;
mod retry;
mod secret;
mod send;
mod sendmail;
mod smtp;
mod sync;
mod term;
mod token;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command, ConfigAction, Delivery, OutboxAction, ServerArgs};
use crate::exit::{Exit, Failure};
use crate::output::FlushReporter;
use crate::term::errln;

fn main() -> ExitCode {
    forbid_core_dumps();
    survive_file_size_limit();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str());
    let result = if invoked_as == Some("sendmail") {
        strings(&argv[1..]).and_then(|args| sendmail::run(&args))
    } else {
        match Cli::try_parse_from(&argv) {
            Ok(cli) => dispatch(cli),
            Err(e) => {
                let _ = e.print();
                return if e.use_stderr() {
                    Exit::Usage
                } else {
                    Exit::Ok
                }
                .into();
            }
        }
    };
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            errln!("mailsend: error: {err:#}");
            if let Some(hint) = exit::hint_for(&err) {
                errln!("mailsend: hint: {hint}");
            }
            exit::code_for(&err).into()
        }
    }
}

fn dispatch(cli: Cli) -> Result<Exit> {
    match cli.command {
        None => send::run(&cli.send),
        Some(Command::Sendmail { args }) => sendmail::run(&args),
        Some(Command::Config {
            action: ConfigAction::Show { server },
        }) => config::show(&server),
        Some(Command::Completions { shell }) => {
            docs::completions(shell);
            Ok(Exit::Ok)
        }
        Some(Command::Man) => docs::man(),
        Some(Command::Bulk(args)) => bulk::run(&args),
        Some(Command::Auth { action }) => auth::command(&action),
        Some(Command::Check(args)) => check::run(&args),
        Some(Command::Outbox { action }) => match action {
            OutboxAction::List { location } => outbox::commands::list(&location.into()),
            OutboxAction::Show { id, location } => outbox::commands::show(&location.into(), &id),
            OutboxAction::Flush {
                all,
                verbose,
                json,
                connection,
                location,
            } => {
                let server = ServerArgs::from_parts(Delivery::default(), *connection, location);
                outbox::commands::flush(&server, all, &FlushReporter::new(verbose, json))
            }
            OutboxAction::Retry { id, location } => outbox::commands::retry(&location.into(), &id),
            OutboxAction::Drop { id, location } => {
                outbox::commands::drop_entry(&location.into(), &id)
            }
        },
    }
}

/// The process may hold a password: it must never end up in a core file
/// (a crash, or `kill -ABRT`), nor be readable by another process of the
/// same user through ptrace. Not dumpable covers both, whatever the
/// core size limit or a piped `core_pattern` say.
fn forbid_core_dumps() {
    // SAFETY: prctl with PR_SET_DUMPABLE takes one integer argument and
    // touches no memory of ours.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
    }
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass, which outlives the call.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &none);
    }
}

/// A file size limit (`ulimit -f`, systemd's LimitFSIZE) below a
/// message's size must end in one error line and its exit code: with
/// SIGXFSZ ignored the write fails with EFBIG, which the spool and the
/// outbox report; by default the signal kills without a word.
fn survive_file_size_limit() {
    // SAFETY: sets the disposition of one signal to SIG_IGN; no handler
    // of ours ever runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Arguments as UTF-8; sendmail callers never pass anything else.
fn strings(args: &[OsString]) -> Result<Vec<String>> {
    args.iter()
        .map(|a| {
            a.to_str().map(str::to_owned).ok_or_else(|| {
                Failure::usage(format!("argument is not UTF-8: {}", a.to_string_lossy())).into()
            })
        })
        .collect()
}
