//! Sending a campaign: `--concurrency` sessions, each authenticated once
//! and reused for many messages (pipelined where the server offers it),
//! all paced by one `--rate`, every outcome made durable in the journal
//! before it counts.
//!
//! Workers take rows from one shared queue: the list's pending rows in
//! order, and rows refused for now, due again after a backoff. A session
//! that fails hands its unsettled rows back; its worker reconnects after
//! a pause (the whole run slows down after a 421 or a throttling 4xx). A
//! failure of the session itself that every other would share (login
//! refused, certificate untrusted) stops the run with its code.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::data::Row;
use super::journal::{self, Journal, Settled};
use super::lock;
use super::output::{Progress, RowStatus};
use super::render::Campaign;
use crate::deliver::{Outgoing, Transport};
use crate::exit::{self, Exit};
use crate::retry;
use crate::smtp::{Class, Client, Delivery, Message, SmtpError, Stage};

/// Rows composed ahead and pipelined over one session at a time, at
/// most: near the end of the list the rows left are shared out evenly,
/// so that no session is left with 16 while the others idle.
const CHUNK: usize = 16;

/// How many rows a session takes at once when `left` rows remain for
/// `sessions` sessions.
fn chunk(left: usize, sessions: usize) -> usize {
    (left / sessions.max(1)).clamp(1, CHUNK)
}

/// A row waiting to be sent, and how many times it was refused for now.
struct Pending {
    row: Row,
    attempts: u32,
    due: Instant,
    /// When it was first refused for now: `--retry-for` counts from there.
    first: Instant,
    /// Its message as composed (and signed) for the first attempt: every
    /// attempt sends the same bytes (PRODUCT.md). Kept for at most `KEPT`
    /// rows at a time, so that a list refused row after row does not hold
    /// its messages in memory; a row beyond that is composed again (same
    /// Message-ID, a new Date and signature).
    composed: Option<Arc<Outgoing>>,
}

/// Rows refused for now whose composed message is kept for the retry.
const KEPT: usize = 64;

/// What the workers share.
struct Shared<'a> {
    rows: Mutex<Source<'a>>,
    journal: Journal,
    pace: Pace,
    progress: &'a Progress,
    /// A failure that stops the run (every session would fail alike, or
    /// the journal cannot be written).
    fatal: Mutex<Option<anyhow::Error>>,
    /// Sessions open now.
    live: Mutex<usize>,
    /// How long a worker keeps reconnecting while its sessions fail
    /// without settling a row (`--retry-for`).
    retry_for: Duration,
}

/// The rows still to send: refused for now (due again after a backoff),
/// then the list's next ones.
struct Source<'a> {
    retry: VecDeque<Pending>,
    list: Box<dyn Iterator<Item = Result<Row>> + Send + 'a>,
    /// Rows `list` will still yield (as counted before the run).
    left: usize,
    /// Sessions sharing them.
    sessions: usize,
    /// Rows taken by a worker and not settled yet.
    out: usize,
    /// Rows in `retry` whose composed message is kept (at most `KEPT`).
    kept: usize,
}

impl Source<'_> {
    /// `pending`, about to wait in `retry`: its composed message is kept
    /// while fewer than `KEPT` are.
    fn keep(&mut self, mut pending: Pending) -> Pending {
        if pending.composed.is_some() {
            match self.kept < KEPT {
                true => self.kept += 1,
                false => pending.composed = None,
            }
        }
        pending
    }

    /// The first row of `retry`.
    fn pop_retry(&mut self) -> Option<Pending> {
        let pending = self.retry.pop_front()?;
        if pending.composed.is_some() {
            self.kept -= 1;
        }
        Some(pending)
    }
}

/// How a campaign is sent: `--concurrency`, `--rate`, `--retry-for`.
pub struct Options {
    /// Rows the list yields.
    pub total: usize,
    pub concurrency: usize,
    pub pace: Pace,
    pub retry_for: Duration,
}

/// Delivers every row `rows` yields; returns the exit code of the run.
pub fn run<'a>(
    campaign: &Campaign,
    transport: &Transport,
    journal: Journal,
    rows: Box<dyn Iterator<Item = Result<Row>> + Send + 'a>,
    options: Options,
    progress: &Progress,
) -> Result<Exit> {
    let Options {
        total,
        concurrency,
        pace,
        retry_for,
    } = options;
    let shared = Shared {
        rows: Mutex::new(Source {
            retry: VecDeque::new(),
            list: rows,
            left: total,
            sessions: concurrency.max(1),
            out: 0,
            kept: 0,
        }),
        journal,
        pace,
        progress,
        fatal: Mutex::new(None),
        live: Mutex::new(0),
        retry_for,
    };
    std::thread::scope(|scope| {
        for _ in 0..concurrency.max(1) {
            scope.spawn(|| worker(campaign, transport, &shared));
        }
    });
    if let Some(err) = lock(&shared.fatal).take() {
        defer_the_rest(campaign, &shared, &format!("{err:#}"));
        return Err(err);
    }
    Ok(progress.exit())
}

/// The run stopped (the server kept failing past `--retry-for`, the
/// journal could not be written, the login was refused): every row not
/// settled counts as deferred, with a JSON line each, as the next run
/// sends it.
fn defer_the_rest(campaign: &Campaign, shared: &Shared, why: &str) {
    let mut source = lock(&shared.rows);
    let retry = std::mem::take(&mut source.retry);
    source.kept = 0;
    let rows = retry
        .into_iter()
        .map(|p| Ok(p.row))
        .chain(&mut source.list)
        .map_while(Result::ok);
    for row in rows {
        // The Message-ID the row keeps (the next run sends it with that).
        let (to, message_id) = match shared.progress.prints_rows() {
            true => campaign
                .render(&row)
                .map(|d| (d.recipients().join(", "), d.message_id.clone()))
                .unwrap_or_default(),
            false => Default::default(),
        };
        shared.progress.not_tried(row.number, &to, &message_id, why);
    }
}

/// One session after another until no row is left.
fn worker(campaign: &Campaign, transport: &Transport, shared: &Shared) {
    // Sessions failed in a row, and since when (reset by a session that
    // settled a row).
    let mut failures = 0u32;
    let mut failing_since = None;
    loop {
        if stopped(shared) {
            return;
        }
        let mut client = match transport.open() {
            Ok(client) => client,
            Err(err) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if !connect_failed(shared, err, &mut failures, since) {
                    return;
                }
                continue;
            }
        };
        *lock(&shared.live) += 1;
        let (settled, lost) = session(campaign, &mut client, shared);
        let others = {
            let mut live = lock(&shared.live);
            *live -= 1;
            *live > 0
        };
        match lost {
            None => {
                client.quit();
                return;
            }
            Some(err) => {
                // The session ended early: its unsettled rows went back.
                let smtp = err.chain().find_map(|c| c.downcast_ref::<SmtpError>());
                if smtp.is_some_and(SmtpError::session_level) {
                    fail_run(shared, err);
                    return;
                }
                if settled > 0 {
                    failures = 0;
                    failing_since = None;
                }
                let since = *failing_since.get_or_insert_with(Instant::now);
                failures += 1;
                shared.pace.slow_down();
                let delay = retry::SEND.next(failures);
                if since.elapsed() + delay > shared.retry_for {
                    // Failing past --retry-for: the other sessions take
                    // its rows; the last one stops the run (75).
                    if others {
                        shared
                            .progress
                            .note(&format!("one connection fewer: {err:#}"));
                    } else {
                        fail_run(shared, err);
                    }
                    return;
                }
                shared
                    .progress
                    .note(&format!("the session ended ({err:#}); reconnecting"));
                sleep_within(shared, delay);
            }
        }
    }
}

/// A session could not be opened. The run stops when every session would
/// fail alike (login refused, certificate untrusted) or, with no other
/// session open, when the retry time is over; while other sessions work,
/// this one gives up quietly (a server that limits connections gets
/// fewer). Returns whether to try again.
fn connect_failed(shared: &Shared, err: anyhow::Error, failures: &mut u32, since: Instant) -> bool {
    let smtp = err.chain().find_map(|c| c.downcast_ref::<SmtpError>());
    let temporary = exit::code_for(&err) == Exit::TempFail;
    let others = *lock(&shared.live) > 0;
    if smtp.is_some_and(|e| e.session_level() && !e.server_unreachable()) || !temporary {
        fail_run(shared, err);
        return false;
    }
    if others {
        shared
            .progress
            .note(&format!("one connection fewer: {err:#}"));
        return false;
    }
    *failures += 1;
    let delay = retry::SEND.next(*failures);
    if since.elapsed() + delay > shared.retry_for {
        fail_run(shared, err);
        return false;
    }
    shared
        .progress
        .note(&format!("cannot connect ({err:#}); trying again"));
    sleep_within(shared, delay);
    true
}

/// Sends chunks over `client` until no row is left (`None`) or the
/// session fails (its error; the unsettled rows are back in the queue).
/// Also returns how many rows the server answered.
fn session(
    campaign: &Campaign,
    client: &mut Client,
    shared: &Shared,
) -> (usize, Option<anyhow::Error>) {
    let mut answered = 0;
    // Composed rows not sent yet: a pipelined run stops where the pace
    // says wait (see `send_chunk`), and the next one starts with them.
    let mut ready: Vec<Taken> = Vec::new();
    loop {
        if stopped(shared) {
            give_back(shared, ready.into_iter().map(Taken::into_pending).collect());
            return (answered, None);
        }
        if ready.is_empty() {
            let Some(chunk) = take(campaign, shared) else {
                return (answered, None);
            };
            ready = chunk;
        }
        let (n, lost, untried) = send_chunk(client, shared, std::mem::take(&mut ready));
        answered += n;
        ready = untried;
        if let Some(err) = lost.or_else(|| client.closed().map(Into::into)) {
            give_back(shared, ready.into_iter().map(Taken::into_pending).collect());
            return (answered, Some(err));
        }
    }
}

/// A row taken to be sent, its message composed.
struct Taken {
    pending: Pending,
    outgoing: Arc<Outgoing>,
    data: u64,
}

impl Taken {
    /// The row as it waits again, with its composed message.
    fn into_pending(self) -> Pending {
        Pending {
            composed: Some(self.outgoing),
            ..self.pending
        }
    }
}

/// Takes up to `CHUNK` due rows and composes them; `None` when nothing is
/// left (or the run stopped). Waits for a row refused for now when only
/// such rows are left.
fn take(campaign: &Campaign, shared: &Shared) -> Option<Vec<Taken>> {
    loop {
        if stopped(shared) {
            return None;
        }
        let mut batch = Vec::new();
        let mut next_due = None;
        {
            let mut source = lock(&shared.rows);
            let chunk = chunk(source.left, source.sessions);
            while batch.len() < chunk {
                let now = Instant::now();
                match source.retry.front() {
                    Some(p) if p.due <= now => {
                        batch.extend(source.pop_retry());
                        continue;
                    }
                    Some(p) => next_due = Some(p.due),
                    None => {}
                }
                match source.list.next() {
                    Some(Ok(row)) => {
                        source.left = source.left.saturating_sub(1);
                        batch.push(Pending {
                            row,
                            attempts: 0,
                            due: now,
                            first: now,
                            composed: None,
                        })
                    }
                    Some(Err(err)) => {
                        drop(source);
                        fail_run(shared, err);
                        return None;
                    }
                    None => break,
                }
            }
            source.out += batch.len();
            if batch.is_empty() && source.retry.is_empty() && source.out == 0 {
                return None;
            }
        }
        if batch.is_empty() {
            // Only rows refused for now (or rows other sessions hold).
            let wait = next_due
                .map(|due| due.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(5))
                .min(Duration::from_secs(1));
            std::thread::sleep(wait);
            if lock(&shared.rows).out == 0 && lock(&shared.rows).retry.is_empty() {
                return None;
            }
            continue;
        }
        let mut taken = Vec::with_capacity(batch.len());
        for pending in batch {
            let data = journal::fingerprint(pending.row.values());
            let composed = match pending.composed.clone() {
                Some(outgoing) => Ok(outgoing),
                None => super::outgoing(campaign, &pending.row).map(Arc::new),
            };
            match composed {
                Ok(outgoing) => taken.push(Taken {
                    pending,
                    outgoing,
                    data,
                }),
                Err(err) => {
                    // The list or a file changed since the check: the row
                    // is reported, not journaled (fixed, it goes next time).
                    lock(&shared.rows).out -= 1;
                    let text = format!("{err:#}");
                    shared
                        .progress
                        .row(pending.row.number, "", "", RowStatus::Refused, &text);
                }
            }
        }
        if !taken.is_empty() {
            return Some(taken);
        }
    }
}

/// Pipelines rows of `chunk` back to back; settles each as the server
/// answers it, and hands the rows it sent but did not settle back to the
/// queue. The first row waits for its slot of the pace; the next ones go
/// only while their slot has come, since a pipelined message's content
/// leaves with the next one's envelope: waiting for that slot would hold
/// the content (and the server, after its 354) for a whole interval.
/// Returns how many rows were answered, the error that ended the
/// session, if one did, and the rows not tried.
fn send_chunk(
    client: &mut Client,
    shared: &Shared,
    chunk: Vec<Taken>,
) -> (usize, Option<anyhow::Error>, Vec<Taken>) {
    let mut contents = Vec::with_capacity(chunk.len());
    for taken in &chunk {
        match taken.outgoing.content() {
            Ok(content) => contents.push(content),
            Err(err) => {
                fail_run(shared, err);
                give_back(shared, chunk.into_iter().map(Taken::into_pending).collect());
                return (0, None, Vec::new());
            }
        }
    }
    // `sent[k]`: the chunk index of the k-th message sent.
    let sent = RefCell::new(Vec::with_capacity(chunk.len()));
    let settled = RefCell::new(vec![false; chunk.len()]);
    let messages = (0..chunk.len()).map_while(|i| {
        if stopped(shared) {
            return None;
        }
        if i == 0 {
            shared.pace.wait();
        } else if !shared.pace.ready() {
            return None;
        }
        sent.borrow_mut().push(i);
        Some(Message {
            from: &chunk[i].outgoing.from,
            recipients: &chunk[i].outgoing.recipients,
            content: contents[i],
        })
    });
    let settle = |k: usize, outcome: Result<Delivery, SmtpError>| {
        let Some(i) = sent.borrow().get(k).copied() else {
            return;
        };
        settled.borrow_mut()[i] = true;
        settle_row(shared, &chunk[i], outcome);
    };
    let result = client.send_many_unless(messages, settle, || stopped(shared));
    drop(contents);
    let tried = sent.into_inner().len();
    let settled = settled.into_inner();
    let answered = settled.iter().filter(|&&done| done).count();
    let mut back = Vec::new();
    let mut untried = Vec::new();
    for (i, (taken, done)) in chunk.into_iter().zip(settled).enumerate() {
        match (done, i < tried) {
            (true, _) => {}
            (false, true) => back.push(taken.into_pending()),
            (false, false) => untried.push(taken),
        }
    }
    give_back(shared, back);
    (answered, result.err().map(Into::into), untried)
}

/// Rows a session took and did not settle: first in line again.
fn give_back(shared: &Shared, rows: Vec<Pending>) {
    let mut source = lock(&shared.rows);
    source.out -= rows.len();
    for pending in rows.into_iter().rev() {
        let pending = source.keep(pending);
        source.retry.push_front(pending);
    }
}

/// Records what the server said of one row: sent or refused for good (in
/// the journal first, then counted), or refused for now (tried again
/// after a backoff, within `--retry-for`).
fn settle_row(shared: &Shared, taken: &Taken, outcome: Result<Delivery, SmtpError>) {
    let (status, text) = match outcome {
        Ok(delivery) if !delivery.accepted.is_empty() && delivery.reply.is_some() => {
            let mut reply = delivery.reply.map(|r| r.to_string()).unwrap_or_default();
            // Sent to the others: a refused recipient is said, not dropped.
            for r in &delivery.rejected {
                let refusal = format!("{} refused: {} {}", r.address, r.code, r.text);
                shared.progress.warning(&format!(
                    "row {}: sent, but {refusal}",
                    taken.pending.row.number
                ));
                reply.push_str("; ");
                reply.push_str(&refusal);
            }
            (Settled::Sent, reply)
        }
        Ok(delivery) => {
            let temporary = delivery.rejected.iter().any(|r| r.is_temporary());
            let text = delivery
                .rejected
                .iter()
                .map(|r| format!("{} {} {}", r.address, r.code, r.text))
                .collect::<Vec<_>>()
                .join("; ");
            if temporary || delivery.rejected.is_empty() {
                return defer(shared, taken, &text, false);
            }
            if delivery.rejected.iter().all(|r| r.text.starts_with("5.7.")) {
                // A policy refusal (RFC 3463 5.7.x: relay access denied,
                // sender not authorised) says more of the sender's setup
                // than of the recipient: refused now, not settled, so
                // that once the setup is fixed the same command sends it.
                lock(&shared.rows).out -= 1;
                return report(shared, taken, RowStatus::Refused, &text);
            }
            (Settled::Refused, text)
        }
        Err(err @ SmtpError::MissingExtension { .. }) => {
            // This server cannot take this message as it is (a UTF-8
            // address and no SMTPUTF8): retrying cannot help. Refused,
            // but not settled: through a server that offers it, the same
            // command sends it.
            lock(&shared.rows).out -= 1;
            return report(shared, taken, RowStatus::Refused, &err.to_string());
        }
        Err(err) if refuses_the_sender(&err) || err.class() == Class::Protocol => {
            // Every row would be refused alike (the sender refused: 69),
            // or the server broke the protocol (76): the run stops, and
            // no row is settled, so that the same command sends them all
            // once the sender or the server is fixed.
            let text = err.to_string();
            fail_run(shared, err.into());
            lock(&shared.rows).out -= 1;
            let to = taken.outgoing.recipients.join(", ");
            return shared.progress.not_tried(
                taken.pending.row.number,
                &to,
                &taken.outgoing.message_id,
                &text,
            );
        }
        Err(err) => {
            let text = err.to_string();
            match err.class() {
                Class::Permanent => (Settled::Refused, text),
                _ => {
                    let throttled = matches!(&err, SmtpError::Refused { reply, .. }
                        if matches!(reply.code, 421 | 451 | 454));
                    return defer(shared, taken, &text, throttled);
                }
            }
        }
    };
    let row = taken.pending.row.number;
    let written = shared.journal.record(
        row,
        status,
        (
            taken.data,
            recipients_fingerprint(&taken.outgoing.recipients),
        ),
        &taken.outgoing.message_id,
        &text,
    );
    if let Err(err) = written {
        // Not counted as settled: the next run sends it again, which
        // its line says (the run stops).
        let text = format!("{text}; not recorded ({err:#}): the next run sends it again");
        fail_run(shared, err);
        lock(&shared.rows).out -= 1;
        return report(shared, taken, RowStatus::Deferred, &text);
    }
    lock(&shared.rows).out -= 1;
    if status == Settled::Sent {
        shared.pace.speed_up();
    }
    let status = match status {
        Settled::Sent => RowStatus::Sent,
        Settled::Refused => RowStatus::Refused,
    };
    report(shared, taken, status, &text);
}

/// A 5xx to MAIL FROM: the sender is refused (not allowed to send as
/// that address, blocked), not this row; but a 552 there is this
/// message's declared size, its own refusal.
fn refuses_the_sender(err: &SmtpError) -> bool {
    matches!(err, SmtpError::Refused { stage: Stage::MailFrom, reply }
        if reply.code >= 500 && reply.code != 552)
}

/// A row refused for now: queued again after a backoff, or reported as
/// deferred once `--retry-for` is over (not in the journal: the next run
/// sends it).
fn defer(shared: &Shared, taken: &Taken, why: &str, throttled: bool) {
    if throttled {
        shared.pace.slow_down();
    }
    let attempts = taken.pending.attempts + 1;
    let delay = retry::SEND.next(attempts);
    let first = match taken.pending.attempts {
        0 => Instant::now(),
        _ => taken.pending.first,
    };
    let mut source = lock(&shared.rows);
    source.out -= 1;
    if Instant::now() + delay > first + shared.retry_for {
        drop(source);
        return report(shared, taken, RowStatus::Deferred, why);
    }
    let due = Instant::now() + delay;
    let at = source.retry.partition_point(|p| p.due <= due);
    let pending = source.keep(Pending {
        row: taken.pending.row.clone(),
        attempts,
        due,
        first,
        composed: Some(taken.outgoing.clone()),
    });
    source.retry.insert(at, pending);
}

fn report(shared: &Shared, taken: &Taken, status: RowStatus, text: &str) {
    shared.progress.row(
        taken.pending.row.number,
        &taken.outgoing.recipients.join(", "),
        &taken.outgoing.message_id,
        status,
        text,
    );
}

/// A row's recipients as its JSON line shows them (empty when it no
/// longer renders).
pub fn recipients(campaign: &Campaign, row: &Row) -> String {
    campaign
        .render(row)
        .map(|draft| draft.recipients().join(", "))
        .unwrap_or_default()
}

/// The fingerprint of a row's recipients, as the journal keeps it.
pub fn recipients_fingerprint(recipients: &[String]) -> u64 {
    journal::fingerprint(recipients.iter().map(String::as_str))
}

fn stopped(shared: &Shared) -> bool {
    lock(&shared.fatal).is_some()
}

fn fail_run(shared: &Shared, err: anyhow::Error) {
    let mut fatal = lock(&shared.fatal);
    if fatal.is_none() {
        *fatal = Some(err);
    }
}

/// Sleeps `delay`, or less when the run stops.
fn sleep_within(shared: &Shared, delay: Duration) {
    let end = Instant::now() + delay;
    while Instant::now() < end && !stopped(shared) {
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
}

/// `--rate`, held over the whole run: one slot per message, shared by
/// every session; slowed down after throttling replies.
pub struct Pace {
    next: Mutex<(Instant, Duration)>,
    /// The interval `--rate` asks for (zero: as fast as the server takes).
    base: Duration,
}

/// The least interval after a slow-down; below it the pace is back to `--rate`.
const SLOWEST_FIRST: Duration = Duration::from_millis(100);

impl Pace {
    pub fn new(interval: Option<Duration>) -> Pace {
        let base = interval.unwrap_or_default();
        Pace {
            next: Mutex::new((Instant::now(), base)),
            base,
        }
    }

    /// Waits for this message's slot.
    fn wait(&self) {
        let at = {
            let mut next = lock(&self.next);
            let now = Instant::now();
            let at = next.0.max(now);
            next.0 = at + next.1;
            at
        };
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
    }

    /// Takes this message's slot if it has come; never waits.
    fn ready(&self) -> bool {
        let mut next = lock(&self.next);
        let now = Instant::now();
        if next.0 > now {
            return false;
        }
        next.0 = now + next.1;
        true
    }

    /// After a 421 or a throttling refusal: half the pace (at least
    /// 100 ms between messages, at most 10 s, never faster than `--rate`).
    fn slow_down(&self) {
        let mut next = lock(&self.next);
        next.1 = (next.1 * 2)
            .clamp(SLOWEST_FIRST, Duration::from_secs(10))
            .max(self.base);
    }

    /// After a message accepted: an eighth faster, back to `--rate` in
    /// the end (a slow-down lasts while the server keeps pushing back).
    fn speed_up(&self) {
        let mut next = lock(&self.next);
        if next.1 > self.base {
            let faster = next.1 * 7 / 8;
            next.1 = match faster < SLOWEST_FIRST {
                true => self.base,
                false => faster.max(self.base),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(pace: &Pace) -> Duration {
        lock(&pace.next).1
    }

    #[test]
    fn the_composed_messages_of_rows_waiting_again_are_kept_up_to_a_bound() {
        let columns = super::super::data::Columns::of(&["email"]);
        let mut source = Source {
            retry: VecDeque::new(),
            list: Box::new(std::iter::empty()),
            left: 0,
            sessions: 1,
            out: 0,
            kept: 0,
        };
        let now = Instant::now();
        let pending = |n| Pending {
            row: Row::of(&columns, n, &["a@example.com"]),
            attempts: 1,
            due: now,
            first: now,
            composed: Some(Arc::new(Outgoing {
                message_id: format!("<{n}@example.com>"),
                from: "news@example.com".into(),
                recipients: vec!["a@example.com".into()],
                message: crate::message::Composed::Memory(b"x".to_vec()),
                all_or_nothing: false,
            })),
        };
        for n in 1..=(KEPT as u64 + 10) {
            let kept = source.keep(pending(n));
            source.retry.push_back(kept);
        }
        // The first KEPT rows keep their bytes; the rest are composed again.
        assert_eq!(source.kept, KEPT);
        let kept = source.retry.iter().filter(|p| p.composed.is_some()).count();
        assert_eq!(kept, KEPT);
        // Taking them again lets go of the count, so later rows keep theirs.
        while source.pop_retry().is_some() {}
        assert_eq!(source.kept, 0);
        assert!(source.keep(pending(1)).composed.is_some());
    }

    #[test]
    fn the_end_of_the_list_is_shared_out_between_the_sessions() {
        // Plenty left: full chunks.
        assert_eq!(chunk(10_000, 4), CHUNK);
        // 40 rows for 4 sessions: 10 each, not 16 + 16 + 8 + nothing.
        assert_eq!(chunk(40, 4), 10);
        // Fewer rows than sessions: one each.
        assert_eq!(chunk(3, 4), 1);
        assert_eq!(chunk(0, 4), 1);
        assert_eq!(chunk(7, 0), 7);
    }

    #[test]
    fn a_slow_down_never_goes_faster_than_the_rate_and_passes() {
        // --rate 100/h: 36 s between messages; a throttling reply must not
        // make it 10 s.
        let slow = Pace::new(Some(Duration::from_secs(36)));
        slow.slow_down();
        assert_eq!(interval(&slow), Duration::from_secs(36));

        let free = Pace::new(None);
        for _ in 0..10 {
            free.slow_down();
        }
        assert_eq!(interval(&free), Duration::from_secs(10));
        for _ in 0..40 {
            free.speed_up();
        }
        assert_eq!(interval(&free), Duration::ZERO, "back to no cap");

        let rated = Pace::new(Some(Duration::from_millis(50)));
        rated.slow_down();
        assert_eq!(interval(&rated), SLOWEST_FIRST);
        for _ in 0..10 {
            rated.speed_up();
        }
        assert_eq!(
            interval(&rated),
            Duration::from_millis(50),
            "back to --rate"
        );
    }
}
