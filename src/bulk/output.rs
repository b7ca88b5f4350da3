//! What a campaign says while it runs: with `--json` one JSON object per
//! row on stdout as it settles, then a summary object; on stderr a
//! progress bar when it is a terminal, errors for refused rows, notes with
//! `-v`, and one summary line at the end.

use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::lock;
use crate::exit::Exit;
use crate::output::JsonLines;
use crate::term::{errln, printable};

/// A row's fate in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowStatus {
    Sent,
    /// Refused for good (or its data turned bad since the check).
    Refused,
    /// Refused for now until `--retry-for` ran out: the next run sends it.
    Deferred,
    /// Settled in an earlier run.
    Skipped,
}

impl RowStatus {
    fn word(self) -> &'static str {
        match self {
            RowStatus::Sent => "sent",
            RowStatus::Refused => "refused",
            RowStatus::Deferred => "deferred",
            RowStatus::Skipped => "skipped",
        }
    }
}

#[derive(Serialize)]
struct RowLine<'a> {
    row: u64,
    to: &'a str,
    message_id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// The last line of `--json`, keys in PRODUCT.md's order.
#[derive(Serialize)]
struct Summary {
    summary: SummaryCounts,
}

#[derive(Serialize)]
struct SummaryCounts {
    sent: u64,
    refused: u64,
    deferred: u64,
    skipped: u64,
    elapsed_s: f64,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    sent: u64,
    refused: u64,
    deferred: u64,
    skipped: u64,
    /// Of the skipped rows, those an earlier run refused for good.
    refused_before: u64,
}

/// The run's reporter, shared by every session.
pub struct Progress {
    json: bool,
    verbose: bool,
    counts: Mutex<Counts>,
    lines: JsonLines,
    bar: ProgressBar,
    started: Instant,
}

impl Progress {
    /// The bar's length is set once the rows to try are counted
    /// (`set_total`).
    pub fn new(json: bool, verbose: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress {
            json,
            verbose,
            counts: Mutex::new(Counts::default()),
            lines: JsonLines::default(),
            bar,
            started: Instant::now(),
        }
    }

    /// The rows this run will try, for the bar.
    pub fn set_total(&self, total: u64) {
        self.bar.set_length(total);
    }

    /// One row settled: counted, and printed as JSON when asked; a
    /// refused or deferred row also gets an error line on stderr.
    pub fn row(&self, row: u64, to: &str, message_id: &str, status: RowStatus, text: &str) {
        self.settle(row, to, message_id, status, text, true);
    }

    /// A row the run stopped before trying: deferred (the next run sends
    /// it), with its JSON line but no error line of its own (the run's
    /// one error says why; a list of 100,000 rows gets one line, not
    /// 100,000).
    pub fn not_tried(&self, row: u64, to: &str, message_id: &str, why: &str) {
        self.settle(row, to, message_id, RowStatus::Deferred, why, false);
    }

    /// Whether rows are printed (`--json`): then their recipients are
    /// worth rendering for rows not sent.
    pub fn prints_rows(&self) -> bool {
        self.json
    }

    fn settle(
        &self,
        row: u64,
        to: &str,
        message_id: &str,
        status: RowStatus,
        text: &str,
        say: bool,
    ) {
        let text = printable(text);
        {
            let mut counts = lock(&self.counts);
            match status {
                RowStatus::Sent => counts.sent += 1,
                RowStatus::Refused => counts.refused += 1,
                RowStatus::Deferred => counts.deferred += 1,
                RowStatus::Skipped => counts.skipped += 1,
            }
            let c = *counts;
            self.bar.set_message(format!(
                "sent {}, refused {}, deferred {}",
                c.sent, c.refused, c.deferred
            ));
        }
        if status != RowStatus::Skipped {
            self.bar.inc(1);
        }
        match status {
            RowStatus::Refused | RowStatus::Deferred if say => self.bar.suspend(|| {
                errln!(
                    "mailsend: error: row {row} ({}): {} {text}",
                    printable(to),
                    status.word()
                )
            }),
            _ => {}
        }
        if self.json {
            let sent = status == RowStatus::Sent;
            let line = RowLine {
                row,
                to,
                message_id,
                status: status.word(),
                reply: (sent && !text.is_empty()).then_some(&*text),
                error: (!sent && !text.is_empty()).then_some(&*text),
            };
            self.bar.suspend(|| self.lines.write(&line));
        }
    }

    /// A row an earlier run settled: skipped now, and remembered for the
    /// exit code when it was refused for good (it was never sent).
    pub fn skipped(&self, row: u64, to: &str, refused: bool) {
        self.row(row, to, "", RowStatus::Skipped, "");
        if refused {
            lock(&self.counts).refused_before += 1;
        }
    }

    /// A warning, always shown.
    pub fn warning(&self, text: &str) {
        self.bar
            .suspend(|| errln!("mailsend: warning: {}", printable(text)));
    }

    /// A note shown with `-v` only.
    pub fn note(&self, text: &str) {
        if self.verbose {
            self.bar.suspend(|| errln!("mailsend: {}", printable(text)));
        }
    }

    /// The summary: a line on stderr, and with `--json` the last object.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        let c = *lock(&self.counts);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = match elapsed > 0.0 {
            true => c.sent as f64 / elapsed,
            false => 0.0,
        };
        errln!(
            "mailsend: {} sent, {} refused, {} deferred, {} already done; {elapsed:.1} s, {rate:.1} messages/s",
            c.sent,
            c.refused,
            c.deferred,
            c.skipped
        );
        if self.json {
            self.lines.write(&Summary {
                summary: SummaryCounts {
                    sent: c.sent,
                    refused: c.refused,
                    deferred: c.deferred,
                    skipped: c.skipped,
                    elapsed_s: (elapsed * 1000.0).round() / 1000.0,
                },
            });
        }
    }

    /// The run's exit code (PRODUCT.md): 0 when every row is sent (now or
    /// before), 75 when some are deferred, 69 when every row was refused
    /// (now or before), 65 when some were.
    pub fn exit(&self) -> Exit {
        let c = *lock(&self.counts);
        let refused = c.refused + c.refused_before;
        let sent = c.sent + (c.skipped - c.refused_before);
        if c.deferred > 0 {
            Exit::TempFail
        } else if refused > 0 && sent == 0 {
            Exit::Unavailable
        } else if refused > 0 {
            Exit::DataErr
        } else {
            Exit::Ok
        }
    }
}
