//! mailsend: send an email from a shell, a pipe or cron, securely.
//!
//! The path of a message through the files:
//! `cli.rs` (flags) → `config.rs` (flags + environment + `.env` into
//! `Settings`) → `send.rs` (reads body and attachments) → `message.rs`
//! (composes the RFC 5322 message with lettre) → `smtp.rs` over `tls.rs`
//! (the SMTP dialogue: STARTTLS, AUTH, one reply per recipient) →
//! `output.rs` (human line or JSON). `exit.rs` turns any error into one
//! sysexits.h code; `secret.rs` keeps passwords out of every output.

mod cli;
mod config;
mod exit;
mod message;
mod output;
mod secret;
mod send;
mod smtp;
mod tls;

use std::process::ExitCode;

use clap::Parser;

use crate::exit::Exit;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            }
            .into();
        }
    };
    match send::run(&cli) {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("mailsend: error: {err:#}");
            if let Some(hint) = exit::hint_for(&err) {
                eprintln!("mailsend: hint: {hint}");
            }
            exit::code_for(&err).into()
        }
    }
}
