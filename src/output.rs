//! What a user sees after a send: one human line or one JSON object on
//! stdout, refusals and errors on stderr.

use std::fmt;
use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::smtp::Rejection;

/// The result of one message, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub message_id: String,
    /// The envelope sender.
    pub from: String,
    pub accepted: Vec<String>,
    pub rejected: Vec<Rejection>,
    /// The server's final reply to the message, e.g. `250 2.0.0 Ok: queued as 4Xyz`.
    pub reply: Option<String>,
    /// The TLS version of the session, `null` on a plain connection.
    pub tls: Option<String>,
    /// Set when the message could not be sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {} to {}",
            self.message_id,
            self.accepted.join(", ")
        )?;
        if let Some(reply) = &self.reply {
            write!(f, " ({reply})")?;
        }
        Ok(())
    }
}

/// Prints a report: JSON when asked; else one line, but only when stdout
/// is a terminal, so cron and scripts stay silent on success (cron would
/// mail any output back).
pub fn print(report: &Report, json: bool) {
    for r in &report.rejected {
        eprintln!(
            "mailsend: error: recipient {} refused: {} {}",
            r.address, r.code, r.text
        );
    }
    let mut out = std::io::stdout().lock();
    let result = if json {
        serde_json::to_writer(&mut out, report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else if report.error.is_none() && !report.accepted.is_empty() && out.is_terminal() {
        writeln!(out, "{report}")
    } else {
        Ok(())
    };
    if let Err(e) = result {
        eprintln!("mailsend: warning: cannot write the result to stdout: {e}");
    }
}
