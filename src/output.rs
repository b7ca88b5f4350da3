//! What a user sees after a send: one human line or one JSON object on
//! stdout, refusals and errors on stderr.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::SystemTime;

use serde::Serialize;

use crate::exit::Exit;
use crate::smtp::Rejection;
use crate::term::errln;

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
    /// The outbox id, when the message was queued instead of sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<String>,
    /// Set when the message could not be sent (or was queued: why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    /// `--all-or-nothing` withheld the message because of a refusal.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub aborted: bool,
}

impl Report {
    pub fn new(message_id: &str, from: &str) -> Report {
        Report {
            message_id: message_id.to_owned(),
            from: from.to_owned(),
            accepted: vec![],
            rejected: vec![],
            reply: None,
            tls: None,
            queued: None,
            error: None,
            exit_code: None,
            aborted: false,
        }
    }

    /// The codes of recipients refused for good.
    pub fn permanent_codes(&self) -> Vec<u16> {
        self.rejected
            .iter()
            .filter(|r| !r.is_temporary())
            .map(|r| r.code)
            .collect()
    }

    /// The exit code of a finished session (see `exit::for_recipients`);
    /// a withheld all-or-nothing message is 69 if a refusal is permanent,
    /// else 75.
    pub fn exit(&self) -> Exit {
        if self.aborted {
            return match self.permanent_codes().is_empty() {
                true => Exit::TempFail,
                false => Exit::Unavailable,
            };
        }
        let codes: Vec<u16> = self.rejected.iter().map(|r| r.code).collect();
        crate::exit::for_recipients(self.accepted.len(), &codes)
    }
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
    print_rejections(report);
    if json {
        return json_line(report);
    }
    let mut out = std::io::stdout().lock();
    let result = if report.queued.is_none()
        && report.error.is_none()
        && !report.accepted.is_empty()
        && out.is_terminal()
    {
        writeln!(out, "{report}")
    } else {
        Ok(())
    };
    if let Err(e) = result {
        errln!("mailsend: warning: cannot write the result to stdout: {e}");
    }
}

/// One error line on stderr per refused recipient.
pub fn print_rejections(report: &Report) {
    for r in &report.rejected {
        errln!(
            "mailsend: error: recipient {} refused: {} {}",
            r.address,
            r.code,
            crate::term::printable(&r.text)
        );
    }
}

/// Appends one line about a message to the log file, or to syslog when
/// `target` is `syslog`. Never holds the password: only the envelope, the
/// size and the outcome. A log that cannot be written is a warning, not a
/// reason to report a delivered message as failed.
pub fn log(
    target: &str,
    account: Option<&str>,
    size: u64,
    recipients: &[String],
    report: &Report,
    code: Exit,
) {
    let outcome = match (&report.queued, &report.error, code) {
        (Some(id), error, _) => format!(
            "result=queued id={id} error={:?}",
            error.as_deref().unwrap_or_default()
        ),
        (None, Some(error), _) => format!("result=failed exit={} error={error:?}", code as u8),
        (None, None, Exit::Ok) => format!(
            "result=sent reply={:?}",
            report.reply.as_deref().unwrap_or_default()
        ),
        (None, None, _) => format!(
            "result=partial exit={} refused={} reply={:?}",
            code as u8,
            report
                .rejected
                .iter()
                .map(|r| format!("{}:{}", log_word(&r.address), r.code))
                .collect::<Vec<_>>()
                .join(","),
            report.reply.as_deref().unwrap_or_default()
        ),
    };
    let line = format!(
        "account={} from={} to={} size={size} message_id={:?} {outcome}",
        log_word(account.unwrap_or("-")),
        log_word(&report.from),
        recipients
            .iter()
            .map(|r| log_word(r))
            .collect::<Vec<_>>()
            .join(","),
        report.message_id,
    );
    if target == "syslog" {
        syslog(code == Exit::Ok, &line);
        return;
    }
    let stamped = format!(
        "{} {line}\n",
        humantime::format_rfc3339_seconds(SystemTime::now())
    );
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(target)
        .and_then(|mut f| f.write_all(stamped.as_bytes()));
    if let Err(e) = written {
        errln!("mailsend: warning: cannot write log file {target}: {e}");
    }
}

/// A value for a `key=value` log line: as it is when it is a plain word
/// (an ordinary address), else quoted and escaped, so that a quoted local
/// part such as `"x result=sent"@example.com` cannot forge a field, split
/// the recipient list or break the line.
fn log_word(value: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@.-_+'/!#$%&*?^`{|}~[]".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        value.into()
    } else {
        format!("{value:?}").into()
    }
}

/// One message to the system log, facility mail.
fn syslog(ok: bool, line: &str) {
    let Ok(text) = std::ffi::CString::new(line.replace('\0', " ")) else {
        return;
    };
    let priority = libc::LOG_MAIL | if ok { libc::LOG_INFO } else { libc::LOG_ERR };
    // SAFETY: static NUL-terminated ident and format strings; `text` is a
    // valid C string that outlives the call; "%s" takes exactly it.
    unsafe {
        libc::openlog(c"mailsend".as_ptr(), libc::LOG_PID, libc::LOG_MAIL);
        libc::syslog(priority, c"%s".as_ptr(), text.as_ptr());
        libc::closelog();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_words_cannot_forge_fields() {
        assert_eq!(log_word("a.b+c@example.com"), "a.b+c@example.com");
        assert_eq!(
            log_word("\"x result=sent\"@example.com"),
            r#""\"x result=sent\"@example.com""#
        );
        assert_eq!(log_word("\"a,b\"@example.com"), r#""\"a,b\"@example.com""#);
        assert_eq!(
            log_word("a\u{2028}b@example.com"),
            r#""a\u{2028}b@example.com""#
        );
        assert_eq!(log_word(""), r#""""#);
    }
}

/// What became of one outbox entry in a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStatus {
    /// Every recipient has it; the entry is removed.
    Sent,
    /// Kept for a later flush. `loud`: the reason is an error the user
    /// must see without `-v` (a session refused for a reason a person
    /// must fix, such as a wrong password).
    Deferred { loud: bool },
    /// Moved to `failed/`.
    Failed,
    /// A problem on this side (the outbox could not be read or written):
    /// left in place.
    Error,
}

impl EntryStatus {
    /// Its word in JSON, and its place in the summary's counts.
    fn word_and_index(self) -> (&'static str, usize) {
        match self {
            EntryStatus::Sent => ("sent", 0),
            EntryStatus::Deferred { .. } => ("deferred", 1),
            EntryStatus::Failed => ("failed", 2),
            EntryStatus::Error => ("error", 3),
        }
    }
}

/// One line of `outbox flush --json`.
#[derive(Serialize)]
struct EntryLine<'a> {
    id: &'a str,
    /// `null` for an entry whose state cannot be read.
    message_id: Option<&'a str>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// What `outbox flush` says: on stderr, errors always and the routine
/// (delivered, still queued, notes) with `-v`; with `--json`, one JSON
/// object per entry on stdout as it is settled, then a summary object.
pub struct FlushReporter {
    verbose: bool,
    json: bool,
    counts: std::cell::Cell<[usize; 4]>,
    /// Stdout could not be written (its reader is gone: `| head -1`):
    /// said once, and no more JSON is written.
    lines: JsonLines,
}

/// The last line of `outbox flush --json`, its keys in this order.
#[derive(Serialize)]
struct SummaryLine {
    summary: Counts,
}

#[derive(Serialize)]
struct Counts {
    sent: usize,
    deferred: usize,
    failed: usize,
    error: usize,
}

impl FlushReporter {
    pub fn new(verbose: bool, json: bool) -> FlushReporter {
        FlushReporter {
            verbose,
            json,
            counts: std::cell::Cell::new([0; 4]),
            lines: JsonLines::default(),
        }
    }

    pub fn verbose(&self) -> bool {
        self.verbose
    }

    /// The outcome of entry `id`: `text` is the server's reply for a sent
    /// one, else why.
    pub fn entry(&self, id: &str, message_id: &str, status: EntryStatus, text: &str) {
        let text = crate::term::printable(text);
        match status {
            EntryStatus::Sent if self.verbose => errln!("mailsend: {id} delivered ({text})"),
            EntryStatus::Deferred { loud } => {
                if loud {
                    errln!("mailsend: error: {id}: {text}");
                }
                if self.verbose {
                    errln!("mailsend: {id} still queued: {text}");
                }
            }
            EntryStatus::Failed => errln!("mailsend: error: {id} moved to failed/: {text}"),
            EntryStatus::Error => errln!("mailsend: error: {id}: {text}"),
            EntryStatus::Sent => {}
        }
        self.count_and_print(id, Some(message_id), status, &text);
    }

    /// An entry of a session that failed before its turn (unreachable
    /// server, login refused): still queued, `deferred` in JSON. Nothing
    /// on stderr: the session's failure was said there once.
    pub fn waiting(&self, id: &str, message_id: &str, why: &str) {
        let status = EntryStatus::Deferred { loud: false };
        self.count_and_print(id, Some(message_id), status, &crate::term::printable(why));
    }

    /// An entry whose state cannot be read at all (already reported on
    /// stderr as the outbox was read): `error` in JSON, message_id null.
    pub fn damaged(&self, id: &str, why: &str) {
        let why = crate::term::printable(why);
        self.count_and_print(id, None, EntryStatus::Error, &why);
    }

    /// Counts the outcome and, with `--json`, prints its line.
    fn count_and_print(&self, id: &str, message_id: Option<&str>, status: EntryStatus, text: &str) {
        let (word, index) = status.word_and_index();
        let mut counts = self.counts.get();
        counts[index] += 1;
        self.counts.set(counts);
        if self.json {
            let sent = status == EntryStatus::Sent;
            self.json_line(&EntryLine {
                id,
                message_id,
                status: word,
                reply: sent.then_some(text),
                error: (!sent).then_some(text),
            });
        }
    }

    fn json_line(&self, value: &impl Serialize) {
        self.lines.write(value);
    }

    /// An entry whose files cannot be read: a warning (or an error when
    /// `warning` is false) on stderr, status `error` in JSON.
    pub fn unreadable(&self, id: &str, message_id: &str, why: &str, warning: bool) {
        let level = if warning { "warning" } else { "error" };
        errln!(
            "mailsend: {level}: outbox entry {id} {}",
            crate::term::printable(why)
        );
        self.count_and_print(id, Some(message_id), EntryStatus::Error, why);
    }

    /// An error about the run, not about one entry, always shown.
    pub fn error(&self, text: &str) {
        errln!("mailsend: error: {}", crate::term::printable(text));
    }

    /// A warning about the run, always shown.
    pub fn warning(&self, text: &str) {
        errln!("mailsend: warning: {text}");
    }

    /// A note shown with `-v` only.
    pub fn note(&self, text: &str) {
        if self.verbose {
            errln!("mailsend: {text}");
        }
    }

    /// With `--json`, the counts of the run as one last object.
    pub fn summary(&self) {
        if self.json {
            let [sent, deferred, failed, error] = self.counts.get();
            self.json_line(&SummaryLine {
                summary: Counts {
                    sent,
                    deferred,
                    failed,
                    error,
                },
            });
        }
    }
}

/// One JSON object and a newline on stdout.
fn json_line(value: &impl Serialize) {
    if let Err(e) = write_json_line(value) {
        errln!("mailsend: warning: cannot write the result to stdout: {e}");
    }
}

/// JSON Lines on stdout, one object per line, from any thread; when
/// stdout fails (a reader gone, `| head`), that is said once and nothing
/// more is written there.
#[derive(Default)]
pub struct JsonLines {
    failed: std::sync::atomic::AtomicBool,
}

impl JsonLines {
    pub fn write(&self, value: &impl Serialize) {
        use std::sync::atomic::Ordering;
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = write_json_line(value)
            && !self.failed.swap(true, Ordering::Relaxed)
        {
            errln!("mailsend: warning: cannot write the result to stdout: {e}");
        }
    }
}

fn write_json_line(value: &impl Serialize) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value).map_err(std::io::Error::from)?;
    writeln!(out)
}
