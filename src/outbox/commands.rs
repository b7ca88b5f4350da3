//! `mailsend outbox list|show|flush|drop|retry`: working the outbox.
//!
//! The storage and its crash-safety are `store.rs`; this file decides
//! what to send when and what a result means for an entry. Every outbox
//! in use is visited: the default one and those of config-file accounts
//! that set their own `outbox`. Commands that only look never create one.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::cli::ServerArgs;
use crate::config::Settings;
use crate::deliver::{Attempt, Transport};
use crate::exit::{self, Exit, Failure};
use crate::outbox::{self, Entry, Outbox, merge, now};
use crate::output::{EntryStatus, FlushReporter};
use crate::retry;
use crate::smtp::{Class, Client, Content, Delivery, Message, Rejection, SmtpError, Stamp};
use crate::term::{errln, outln, printable};

/// The outbox directories in use (the default one under XDG_STATE_HOME or
/// HOME, the default settings' and every account's), and the exit code of
/// any account that could not be read.
fn outbox_dirs(args: &ServerArgs) -> Result<(Vec<PathBuf>, Exit)> {
    let base = Settings::resolve(args, None)?;
    let mut code = Exit::Ok;
    let mut dirs: Vec<PathBuf> = base
        .outbox
        .iter()
        .chain(&base.default_outbox)
        .cloned()
        .collect();
    for name in &base.account_names {
        let account = ServerArgs {
            account: Some(name.clone()),
            ..args.clone()
        };
        match Settings::resolve(&account, None) {
            Ok(settings) => dirs.extend(settings.outbox),
            Err(err) => {
                errln!("mailsend: error: account {name}: {err:#}");
                code = merge(code, exit::code_for(&err));
            }
        }
    }
    dirs.sort();
    dirs.dedup();
    if dirs.is_empty() {
        Outbox::open(&base)?; // says what to configure
    }
    Ok((dirs, code))
}

/// The outboxes that already exist, for commands that only look; one that
/// is refused (someone else's, or writable by others) is reported and its
/// code merged.
fn existing_outboxes(args: &ServerArgs) -> Result<(Vec<Outbox>, Exit)> {
    let (dirs, mut code) = outbox_dirs(args)?;
    let mut outboxes = Vec::new();
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        match Outbox::existing(dir) {
            Ok(outbox) => outboxes.push(outbox),
            Err(err) => {
                outbox::report("", &err);
                code = merge(code, exit::code_for(&err));
            }
        }
    }
    Ok((outboxes, code))
}

/// `list`: one line per queued and failed message.
pub fn list(args: &ServerArgs) -> Result<Exit> {
    let now = now();
    let (outboxes, mut code) = existing_outboxes(args)?;
    for outbox in outboxes {
        let queued = outbox.entries()?;
        let failed = outbox.failed()?;
        code = merge(merge(code, queued.code), failed.code);
        for (state, listing) in [("queued", queued), ("failed", failed)] {
            // Entries that cannot be used are listed too (and in the exit
            // code): a message nobody sees would wait forever.
            for d in &listing.damaged {
                outln!("{}  damaged  {}", d.id, printable(&d.why));
            }
            for e in listing.entries {
                let next = match state {
                    "failed" => "-".to_owned(),
                    _ if e.next_attempt <= now => "due".to_owned(),
                    _ => format!(
                        "in {}",
                        humantime::format_duration(Duration::from_secs(e.next_attempt - now))
                    ),
                };
                // Server text, stored as it came (or by an older version):
                // shown escaped.
                let why = printable(
                    e.failed
                        .as_deref()
                        .or(e.last_error.as_deref())
                        .unwrap_or_default(),
                );
                outln!(
                    "{}  {state}  attempts={}  next={next}  from={}  to={}  {why}",
                    e.id,
                    e.attempts,
                    e.from,
                    e.recipients.join(",")
                );
            }
        }
    }
    Ok(code)
}

/// The outbox that holds entry `id` (NOINPUT if none does; the refusal
/// if the entry is there but refused as untrusted).
fn holding(args: &ServerArgs, id: &str) -> Result<Outbox> {
    let (outboxes, code) = existing_outboxes(args)?;
    let mut last = None;
    for outbox in outboxes {
        match outbox.locate(id) {
            Ok(_) => return Ok(outbox),
            Err(e) if exit::code_for(&e) == Exit::NoInput => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    if code == Exit::Config {
        return Err(Failure::config(format!(
            "no message '{id}' in the outboxes mailsend may use"
        ))
        .into());
    }
    Err(last
        .unwrap_or_else(|| Failure::no_input(format!("no message '{id}' in the outbox")).into()))
}

/// Runs `change` on the outbox holding `id`, under its flush lock, so
/// that no flush is sending the message meanwhile.
fn while_locked(
    args: &ServerArgs,
    id: &str,
    change: impl FnOnce(&Outbox) -> Result<()>,
) -> Result<()> {
    let outbox = holding(args, id)?;
    let Some(_lock) = outbox.try_lock()? else {
        return Err(Failure::new(
            Exit::TempFail,
            "an outbox flush is running; try again when it ends",
        )
        .into());
    };
    change(&outbox)
}

/// `show ID`: the state as JSON, a blank line, the message.
pub fn show(args: &ServerArgs, id: &str) -> Result<Exit> {
    let outbox = holding(args, id)?;
    // Both read before anything is printed: an entry refused halfway
    // prints nothing.
    let meta = outbox.meta(id)?;
    let message = outbox.message(id)?;
    // A reader that went away (`| head`) is not an error of ours.
    let mut out = std::io::stdout().lock();
    let _ = [&meta[..], b"\n\n", &message[..]]
        .iter()
        .try_for_each(|part| out.write_all(part));
    Ok(Exit::Ok)
}

/// `drop ID`: deletes a queued or failed message.
pub fn drop_entry(args: &ServerArgs, id: &str) -> Result<Exit> {
    while_locked(args, id, |outbox| outbox.remove(id))?;
    errln!("mailsend: dropped {id}");
    Ok(Exit::Ok)
}

/// `retry ID`: puts a failed message back in the queue, due now.
pub fn retry(args: &ServerArgs, id: &str) -> Result<Exit> {
    while_locked(args, id, |outbox| outbox.retry(id))?;
    errln!("mailsend: {id} queued again");
    Ok(Exit::Ok)
}

/// `flush`: one attempt for every message that is due (every message with
/// `all`), in every outbox, each under its lock so that runs from cron
/// never overlap (a second flush leaves a locked outbox alone and exits 0).
///
/// Messages go account by account: the password command runs once per
/// account. When a server cannot be reached, or refuses the session itself
/// (login, certificate, STARTTLS), its other messages wait for the next
/// flush and nothing moves to `failed/`; that only happens to a message the
/// server refused, or one still failing past the queue lifetime. A problem
/// on this side (an unknown account, a failing password command, an
/// unreadable entry) is reported and skipped; the others still go. The exit
/// code merges them all (see `outbox::merge`).
pub fn flush(args: &ServerArgs, all: bool, out: &FlushReporter) -> Result<Exit> {
    let (dirs, mut code) = outbox_dirs(args)?;
    for dir in dirs {
        let outbox = match Outbox::at(dir) {
            Ok(outbox) => outbox,
            Err(err) => {
                outbox::report("", &err);
                code = merge(code, exit::code_for(&err));
                continue;
            }
        };
        let lock = match outbox.try_lock() {
            Ok(lock) => lock,
            Err(err) => {
                outbox::report("", &err);
                code = merge(code, exit::code_for(&err));
                continue;
            }
        };
        let Some(_lock) = lock else {
            out.note("another outbox flush is running");
            continue;
        };
        outbox.clean_leftovers();
        code = merge(code, flush_outbox(&outbox, args, all, out)?);
    }
    out.summary();
    Ok(code)
}

fn flush_outbox(
    outbox: &Outbox,
    args: &ServerArgs,
    all: bool,
    out: &FlushReporter,
) -> Result<Exit> {
    let listing = outbox.entries()?;
    for d in &listing.damaged {
        out.damaged(&d.id, &d.why);
    }
    let mut code = listing.code;
    let due: Vec<Entry> = listing
        .entries
        .into_iter()
        .filter(|e| all || e.next_attempt <= now())
        .collect();
    let mut accounts: Vec<Option<String>> = due.iter().map(|e| e.account.clone()).collect();
    accounts.sort();
    accounts.dedup();
    for account in accounts {
        let entries: Vec<Entry> = due
            .iter()
            .filter(|e| e.account == account)
            .cloned()
            .collect();
        let account_args = ServerArgs {
            account: account.clone().or_else(|| args.account.clone()),
            ..args.clone()
        };
        let who = account
            .as_deref()
            .unwrap_or("the default settings")
            .to_owned();
        let mut skip = |err: anyhow::Error| {
            out.error(&format!(
                "{} messages for {who} wait: {err:#}",
                entries.len()
            ));
            // Said once above for all of them; in JSON, a line each.
            let why = format!("{err:#}");
            for e in &entries {
                out.waiting(&e.id, &e.message_id, &why);
            }
            code = merge(code, exit::code_for(&err));
        };
        let settings = match Settings::resolve(&account_args, None) {
            Ok(settings) => settings,
            Err(err) => {
                skip(err);
                continue;
            }
        };
        let transport = match Transport::new(&settings, out.verbose()) {
            Ok(transport) => transport,
            Err(err) => {
                skip(err);
                continue;
            }
        };
        code = merge(
            code,
            flush_account(outbox, &transport, &settings, entries, out),
        );
    }
    Ok(code)
}

/// At most this many message files are opened ahead per chunk (each is
/// read as it is sent, so memory does not grow with message size); few
/// enough for a low limit on open files. Each chunk costs one more round
/// trip (its last message's content goes alone), so not too few either.
const CHUNK_ENTRIES: usize = 64;

/// Descriptors a flush needs besides its chunk's message files.
const RESERVED_DESCRIPTORS: libc::rlim_t = 16;

/// Message files given back when the limit on open files is reached while
/// a chunk is opened: recording an attempt opens and writes files too.
const DESCRIPTORS_SPARED: usize = 4;

/// The entries of a chunk: `CHUNK_ENTRIES`, or fewer under a low limit on
/// open files (`ulimit -n`): half of what is left of the soft limit once
/// `RESERVED_DESCRIPTORS` are set aside (at least one), so that a limit of
/// 64, 32 or even 10 still leaves room for the standard streams, the
/// socket, the lock and the files written to record each attempt.
fn chunk_entries() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, a local.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !known || limit.rlim_cur == libc::RLIM_INFINITY {
        return CHUNK_ENTRIES;
    }
    let spare = limit.rlim_cur.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    usize::try_from(spare)
        .unwrap_or(CHUNK_ENTRIES)
        .clamp(1, CHUNK_ENTRIES)
}

/// Whether `err` is the process (or the system) out of file descriptors.
fn out_of_descriptors(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|code| code == libc::EMFILE || code == libc::ENFILE)
    })
}

/// Sends one account's due entries over one session (a new one after a
/// dropped connection), each outcome recorded as soon as the server
/// gives it, before anything else is sent or read. A failure of the
/// session itself (login, certificate, unreachable) is recorded on the
/// first waiting entry; the others wait for the next flush.
fn flush_account(
    outbox: &Outbox,
    transport: &Transport,
    settings: &Settings,
    entries: Vec<Entry>,
    out: &FlushReporter,
) -> Exit {
    let mut code = Exit::Ok;
    let mut waiting: VecDeque<Entry> = VecDeque::new();
    for mut entry in entries {
        if entry.recipients.is_empty() {
            // Nobody is owed it any more (a removal or a move to failed/
            // was interrupted after the server's reply): done, and never
            // sent again, least of all in a transaction with no recipient.
            // Only with an outcome on record (`Entry::check` refuses an
            // entry without one as damaged; this is the last guard).
            let recorded = entry.done || !entry.delivered.is_empty() || !entry.refused.is_empty();
            let done = match recorded {
                true => finish(outbox, &mut entry, None, out),
                false => Err(Failure::data(
                    "outbox entry is damaged (no recipient, and no record that anyone got it); left in place",
                )
                .into()),
            };
            code = merge(code, done.unwrap_or_else(|e| report(&entry, e, out)));
            continue;
        }
        if entry.in_flight {
            // A send whose outcome was never recorded (a crash, or the
            // disk failed right after the server's reply): the one window
            // for a duplicate. It is sent once more, and says so.
            out.warning(&format!(
                "{}: an earlier flush sent it but could not record the server's answer; sending it again (its recipients may get it twice)",
                entry.id
            ));
            entry.in_flight = false;
        }
        waiting.push_back(entry);
    }
    // Why the entries still waiting at the end were not tried.
    let mut why_waiting = String::new();
    while !waiting.is_empty() {
        let mut client = match transport.open() {
            Ok(client) => client,
            Err(err) => {
                why_waiting = format!("{err:#}");
                let failed = failed_session(outbox, settings, &mut waiting, err, true, out);
                code = merge(code, failed.0);
                break;
            }
        };
        let (chunk_code, lost) = send_chunks(outbox, &mut client, settings, &mut waiting, out);
        code = merge(code, chunk_code);
        match lost {
            None => {
                client.quit();
                break;
            }
            Some((err, charged)) => {
                why_waiting = format!("{err:#}");
                let (failed, stop) =
                    failed_session(outbox, settings, &mut waiting, err, charged, out);
                code = merge(code, failed);
                if stop {
                    break;
                }
            }
        }
    }
    // Left for the next flush by a failed session: each has its line too.
    for entry in &waiting {
        out.waiting(&entry.id, &entry.message_id, &why_waiting);
    }
    code
}

/// Sends the waiting entries over `client`, chunk by chunk, removing each
/// one from `waiting` as it is settled. Returns the merged exit code and
/// the error that ended the session early, if one did.
fn send_chunks(
    outbox: &Outbox,
    client: &mut Client,
    settings: &Settings,
    waiting: &mut VecDeque<Entry>,
    out: &FlushReporter,
) -> (Exit, Option<(anyhow::Error, bool)>) {
    let mut code = Exit::Ok;
    let tls = client.tls_version().map(str::to_owned);
    while !waiting.is_empty() {
        // Open a chunk of messages (read as they are sent); an entry that
        // cannot be opened is reported and left in place.
        let mut entries = Vec::new();
        let mut files: Vec<(File, Stamp)> = Vec::new();
        let chunk = chunk_entries();
        while entries.len() < chunk {
            let Some(entry) = waiting.pop_front() else {
                break;
            };
            let opened = outbox.open_message(&entry.id).and_then(|file| {
                let stamp = Stamp::of(&file)?;
                Ok((file, stamp))
            });
            match opened {
                Ok(file) => {
                    entries.push(entry);
                    files.push(file);
                }
                Err(err) if out_of_descriptors(&err) && !entries.is_empty() => {
                    // The chunk is as full as the limit on open files
                    // allows: this entry waits for the next one, and so do
                    // the last ones opened, to leave descriptors for
                    // recording each attempt.
                    waiting.push_front(entry);
                    for _ in 0..DESCRIPTORS_SPARED {
                        if entries.len() < 2 {
                            break;
                        }
                        files.pop();
                        if let Some(last) = entries.pop() {
                            waiting.push_front(last);
                        }
                    }
                    break;
                }
                Err(err) => code = merge(code, unreadable(&entry, &err, out)),
            }
        }
        let contents: Vec<Content> = files
            .iter()
            .map(|(f, stamp)| Content::File(f, *stamp))
            .collect();
        let envelopes: Vec<(String, Vec<String>, bool)> = entries
            .iter()
            .map(|e| (e.from.clone(), e.recipients.clone(), e.all_or_nothing))
            .collect();
        let settled = RefCell::new(vec![false; entries.len()]);
        let entries = RefCell::new(entries);
        let chunk_code = Cell::new(code);
        // Before an entry is sent: its attempt is recorded (see
        // `mark_sending`); one whose record fails is not sent.
        let mark = |i: usize| -> bool {
            let entry = &mut entries.borrow_mut()[i];
            match mark_sending(outbox, entry, out) {
                Ok(()) => true,
                Err(held) => {
                    settled.borrow_mut()[i] = true;
                    chunk_code.set(merge(chunk_code.get(), held));
                    false
                }
            }
        };
        let record = |i: usize, outcome: Result<Delivery, SmtpError>| {
            let entry = &mut entries.borrow_mut()[i];
            settled.borrow_mut()[i] = true;
            // The outcome is known: whatever is written next records it.
            entry.in_flight = false;
            let done = match outcome {
                Ok(delivery) => {
                    let attempt = Attempt {
                        accepted: delivery.accepted,
                        rejected: delivery.rejected,
                        reply: delivery.reply.map(|r| r.to_string()),
                        tls: tls.clone(),
                        aborted: delivery.aborted,
                    };
                    settle(outbox, settings, entry, &attempt, out)
                }
                // Only a refusal of the message moves it to `failed/`: a
                // server that broke the protocol on it (a 3xx where a 2xx
                // is due) keeps it queued, as a broken session does.
                Err(err) => {
                    let keep = err.class() != Class::Permanent;
                    requeue(outbox, settings, entry, err.into(), keep, out)
                }
            };
            let done = done.unwrap_or_else(|e| report(entry, e, out));
            chunk_code.set(merge(chunk_code.get(), done));
        };
        // All-or-nothing messages one at a time (DATA waits for every
        // RCPT reply); the others pipelined back to back. `lost`: the
        // session failure, and the entry it hit.
        let mut lost = None;
        for (i, ((from, recipients, all_or_nothing), content)) in
            envelopes.iter().zip(contents.iter().copied()).enumerate()
        {
            if *all_or_nothing {
                if !mark(i) {
                    continue;
                }
                match client.send(from, recipients, content, true) {
                    Ok(delivery) => record(i, Ok(delivery)),
                    Err(err) if err.server_still_there() => record(i, Err(err)),
                    Err(err) => {
                        lost = Some((err, Some(i)));
                        break;
                    }
                }
                // A 421 answered this message (recorded above): the
                // session is over, and charges nobody else.
                if let Some(closed) = client.closed() {
                    lost = Some((closed, None));
                    break;
                }
            }
        }
        let others: Vec<usize> = (0..envelopes.len()).filter(|&i| !envelopes[i].2).collect();
        if lost.is_none() {
            // Marked one by one as send_many takes them (just before each
            // envelope leaves); `sent[k]` is the chunk index of message k.
            let sent = RefCell::new(Vec::new());
            let messages = others.iter().filter(|&&i| mark(i)).map(|&i| {
                sent.borrow_mut().push(i);
                Message {
                    from: &envelopes[i].0,
                    recipients: &envelopes[i].1,
                    content: contents[i],
                }
            });
            let settle = |k: usize, outcome| {
                let i = sent.borrow().get(k).copied();
                if let Some(i) = i {
                    record(i, outcome);
                }
            };
            if let Err(err) = client.send_many(messages, settle) {
                // Messages settle in order: the first one not settled is
                // the one in flight when the session failed.
                let hit = others.iter().copied().find(|&i| !settled.borrow()[i]);
                lost = Some((err, hit));
            }
        }
        code = chunk_code.get();
        // Entries the session did not settle wait again, in order, the
        // one the failure hit first (it records the failure).
        let hit = lost.as_ref().and_then(|(_, hit)| *hit);
        let mut hit_entry = None;
        let unsettled = entries.into_inner().into_iter().zip(settled.into_inner());
        for (i, (entry, done)) in unsettled.enumerate().rev() {
            match (done, Some(i) == hit) {
                (true, _) => {}
                (false, true) => hit_entry = Some(entry),
                (false, false) => waiting.push_front(entry),
            }
        }
        if let Some(entry) = hit_entry {
            waiting.push_front(entry);
        }
        if let Some((err, hit)) = lost {
            return (code, Some((err.into(), hit.is_some())));
        }
    }
    (code, None)
}

/// A session failed. When it hit an entry (`charged`: the first waiting
/// one), that entry records why, with its attempt counted, and backs off;
/// it moves to `failed/` only when the server refused that message for
/// good. Returns the code, and whether the account's other entries must
/// wait for the next flush (the failure is the session's: login,
/// certificate, unreachable); otherwise a new session takes them.
fn failed_session(
    outbox: &Outbox,
    settings: &Settings,
    waiting: &mut VecDeque<Entry>,
    err: anyhow::Error,
    charged: bool,
    out: &FlushReporter,
) -> (Exit, bool) {
    let smtp = err.chain().find_map(|c| c.downcast_ref::<SmtpError>());
    let stop = smtp.is_some_and(SmtpError::session_level);
    // A lost connection, a broken reply or a 421 says nothing about the
    // message itself: it keeps its place (a refused MAIL does not).
    let keep = stop || smtp.is_none_or(|e| e.class() != Class::Permanent);
    let entry = match charged {
        true => waiting.pop_front(),
        false => None,
    };
    let Some(mut entry) = entry else {
        out.note(&format!(
            "the session ended ({err:#}); a new one takes the rest"
        ));
        return (Exit::Ok, stop);
    };
    // Counted already if it was marked as being sent in this session.
    if !entry.in_flight {
        entry.attempts = entry.attempts.saturating_add(1);
    }
    entry.in_flight = false;
    let done = requeue(outbox, settings, &mut entry, err, keep, out);
    let code = done.unwrap_or_else(|e| report(&entry, e, out));
    if stop && !waiting.is_empty() {
        out.note(&format!(
            "{} more messages for this server wait for the next flush",
            waiting.len()
        ));
    }
    (code, stop)
}

/// Records durably, before `entry` is sent, that it is being sent: the
/// attempt counted, the next one scheduled (so a lost outcome is retried
/// at the backoff's pace, not at every flush) and `in_flight` set. An entry
/// whose record fails is not sent (its outcome could not be recorded
/// either, and every later flush would send it again): it is reported and
/// stays queued, and the code is 75 (78 if it was refused as untrusted).
fn mark_sending(
    outbox: &Outbox,
    entry: &mut Entry,
    out: &FlushReporter,
) -> std::result::Result<(), Exit> {
    let before = entry.clone();
    // Marked before, in an earlier session of this flush: already counted.
    if !entry.in_flight {
        entry.attempts = entry.attempts.saturating_add(1);
    }
    entry.next_attempt = now() + retry::OUTBOX.next(entry.attempts).as_secs();
    entry.in_flight = true;
    match outbox.update(entry) {
        Ok(()) => Ok(()),
        Err(err) => {
            *entry = before;
            out.entry(
                &entry.id,
                &entry.message_id,
                EntryStatus::Error,
                &format!(
                    "not sent: the outbox could not record the attempt ({err:#}); it stays queued"
                ),
            );
            Err(match exit::code_for(&err) {
                Exit::Config => Exit::Config,
                _ => Exit::TempFail,
            })
        }
    }
}

/// A local failure handling `entry`: reported, and its exit code.
fn report(entry: &Entry, e: anyhow::Error, out: &FlushReporter) -> Exit {
    out.entry(
        &entry.id,
        &entry.message_id,
        EntryStatus::Error,
        &format!("{e:#}"),
    );
    exit::code_for(&e)
}

/// An entry whose message cannot be read: left in place, reported.
/// Only a warning unless it is a configuration problem (someone else's
/// file): an I/O fault may pass.
fn unreadable(entry: &Entry, err: &anyhow::Error, out: &FlushReporter) -> Exit {
    let code = exit::code_for(err);
    let why = format!("cannot be read ({err:#}); left in place");
    out.unreadable(&entry.id, &entry.message_id, &why, code != Exit::Config);
    code
}

/// After a session that reached the recipients: records who got it and who
/// was refused, then the entry is done (removed), failed for good, or kept
/// for the recipients refused for now. An error is a local one (writing
/// the outbox), never a refusal.
fn settle(
    outbox: &Outbox,
    settings: &Settings,
    entry: &mut Entry,
    attempt: &Attempt,
    out: &FlushReporter,
) -> Result<Exit> {
    let (temporary, permanent): (Vec<Rejection>, Vec<Rejection>) = attempt
        .rejected
        .iter()
        .cloned()
        .partition(Rejection::is_temporary);
    let for_good = |r: &String| permanent.iter().any(|x| &x.address == r);
    if attempt.aborted {
        // All-or-nothing: nobody got it, so everyone is still owed it. A
        // permanent refusal fails the whole message; after a temporary one
        // every recipient is tried again.
        if !permanent.is_empty() {
            entry.refused.extend(permanent.iter().cloned());
            entry.refused.extend(temporary.iter().cloned());
        }
    } else {
        entry.delivered.extend(attempt.accepted.iter().cloned());
        entry.refused.extend(permanent.iter().cloned());
        // Owed: whoever neither got it nor was refused for good, including
        // anyone the server did not answer for.
        entry
            .recipients
            .retain(|r| !attempt.accepted.contains(r) && !for_good(r));
    }
    let refused_for_now =
        |r: &Rejection| format!("{} refused for now: {} {}", r.address, r.code, r.text);
    let retry = match (attempt.aborted, temporary.first()) {
        (true, Some(r)) if permanent.is_empty() => Some(refused_for_now(r)),
        (true, _) => None,
        (false, Some(r)) => Some(refused_for_now(r)),
        // A recipient the server did not answer for is still owed it.
        (false, None) => entry
            .recipients
            .first()
            .map(|r| format!("no reply from the server for {r}")),
    };
    match retry {
        Some(why) => {
            let why = Failure::new(Exit::TempFail, why);
            requeue(outbox, settings, entry, why.into(), false, out)
        }
        None => finish(outbox, entry, attempt.reply.as_deref(), out),
    }
}

/// An entry nobody is owed any more (or an all-or-nothing one refused for
/// good): removed when nobody refused it, else moved to `failed/`.
fn finish(
    outbox: &Outbox,
    entry: &mut Entry,
    reply: Option<&str>,
    out: &FlushReporter,
) -> Result<Exit> {
    if entry.refused.is_empty() {
        if let Err(err) = outbox.remove(&entry.id) {
            // Delivered, but still on disk: say that nobody is owed it, so
            // that the next flush removes it without sending it again.
            let marked = match entry.recipients.is_empty() {
                true => {
                    entry.done = true;
                    entry.in_flight = false;
                    outbox.update(entry).is_ok()
                }
                false => false,
            };
            let then = match marked {
                true => "the next flush removes it",
                // Its record still says in_flight: not sent again while the
                // outbox cannot be written, once more when it can.
                false => {
                    "nor marked done: it is not sent again while the outbox cannot be written; once it can, a flush sends it once more"
                }
            };
            return Err(err.context(format!(
                "delivered, but the outbox entry could not be removed ({then})"
            )));
        }
        out.entry(
            &entry.id,
            &entry.message_id,
            EntryStatus::Sent,
            reply.unwrap_or_default(),
        );
        return Ok(Exit::Ok);
    }
    let refused: Vec<String> = entry
        .refused
        .iter()
        .map(|r| format!("{}: {} {}", r.address, r.code, r.text))
        .collect();
    let reason = format!("refused: {}", refused.join("; "));
    let codes: Vec<u16> = entry.refused.iter().map(|r| r.code).collect();
    let code = match entry.all_or_nothing {
        true => Exit::Unavailable,
        false => exit::for_recipients(entry.delivered.len(), &codes),
    };
    // Said once it is true: a failed move is reported as an error instead.
    outbox.fail(entry, reason.clone())?;
    out.entry(&entry.id, &entry.message_id, EntryStatus::Failed, &reason);
    Ok(code)
}

/// After a failed attempt: back off and keep the entry, or move it to
/// `failed/` when the message itself was refused, or it is too old. A
/// failure of the session (`session`: login, certificate, unreachable)
/// keeps it: fixing the configuration must not need `outbox retry`.
fn requeue(
    outbox: &Outbox,
    settings: &Settings,
    entry: &mut Entry,
    error: anyhow::Error,
    session: bool,
    out: &FlushReporter,
) -> Result<Exit> {
    let code = exit::code_for(&error);
    let reason = format!("{error:#}");
    let expired = now().saturating_sub(entry.created) > settings.queue_lifetime.as_secs();
    let temporary = code == Exit::TempFail || session;
    if !temporary || expired {
        let reason = match expired && temporary {
            true => format!(
                "gave up after {}: {reason}",
                humantime::format_duration(settings.queue_lifetime)
            ),
            false => reason,
        };
        outbox.fail(entry, reason.clone())?;
        out.entry(&entry.id, &entry.message_id, EntryStatus::Failed, &reason);
        return Ok(if code == Exit::TempFail {
            Exit::Unavailable
        } else {
            code
        });
    }
    entry.last_error = Some(reason.clone());
    entry.in_flight = false;
    entry.next_attempt = now() + retry::OUTBOX.next(entry.attempts).as_secs();
    outbox.update(entry)?;
    let loud = session && code != Exit::TempFail;
    out.entry(
        &entry.id,
        &entry.message_id,
        EntryStatus::Deferred { loud },
        &reason,
    );
    Ok(code)
}
