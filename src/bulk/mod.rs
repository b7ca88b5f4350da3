//! `mailsend bulk`: one personalised message per row of a CSV list.
//!
//! The files, dependencies pointing down this list: `mod.rs` (this file:
//! the run, from flags to a dry run or a send) → `send.rs` (sessions,
//! pace, retries) → `journal.rs` (what each row became, durable) and
//! `output.rs` (JSON Lines, progress, summary, exit code) → `check.rs`
//! (every row checked before anything is sent) → `render.rs` (a row → a
//! validated `message::Draft`, with the List-* headers) → `template.rs`
//! (the minijinja templates) → `data.rs` (the CSV list, streamed). The
//! values of `--rate` and `--shard` are parsed in `cli/values.rs`.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Result;
use lettre::message::Mailbox;

use crate::cli::BulkArgs;
use crate::config::Settings;
use crate::deliver::{Outgoing, Transport};
use crate::exit::{Exit, Failure};
use crate::message;
use crate::term::errln;

mod check;
mod data;
mod journal;
mod output;
mod render;
mod send;
mod template;

use data::{List, Row};
use journal::Journal;
use output::Progress;
use render::{Campaign, Spec};

use crate::sync::lock;

/// Runs `mailsend bulk` as the flags ask; returns the exit code.
pub fn run(args: &BulkArgs) -> Result<Exit> {
    refuse_single_send_flags(args)?;
    let settings = Settings::resolve(&args.server, None)?;
    let from = sender(&settings)?;
    let spec = spec(args)?;
    let list = List::open(&args.data)?;
    let mut campaign = Campaign::new(&spec, from, list.columns())?;
    campaign.signer = crate::dkim::Signer::from_settings(settings.dkim()?)?;
    let columns = list.columns().names().to_vec();
    if !campaign.has_unsubscribe() {
        errln!(
            "mailsend: warning: no --unsubscribe-url or --unsubscribe-mailto: recipients get no \
List-Unsubscribe header, which large mailbox providers require of bulk senders"
        );
    }
    if !args.dry_run {
        // Rows an earlier run settled are not checked again (their
        // attachments may be gone since): see `deliver`.
        let journal = Journal::open(&journal_path(args), &columns, &spec.fingerprint())?;
        campaign.keep_message_ids(&journal.1.campaign);
        let mut seen = journal::Seen::default();
        check::check(&campaign, list, |row| {
            settled_before(&journal.1, &campaign, row, &mut seen).is_some()
        })?;
        return deliver(args, &settings, &campaign, journal);
    }
    let checked = check::check(&campaign, list, |_| false)?;
    match &args.out {
        Some(dir) => write_all(args, &campaign, dir),
        None => print_first(args, &campaign, checked.rows),
    }
}

/// A row's earlier fate: by its values, else by its number and
/// recipients (rendered only when its number was settled with other
/// values).
fn settled_before(
    done: &journal::Done,
    campaign: &Campaign,
    row: &Row,
    seen: &mut journal::Seen,
) -> Option<(journal::Settled, bool)> {
    let data = journal::fingerprint(row.values());
    let to = || {
        let draft = campaign.render(row).ok()?;
        Some(send::recipients_fingerprint(&draft.recipients()))
    };
    done.settled(row.number, data, to, seen)
}

/// Sends the rows not settled by an earlier run (see `send.rs`).
fn deliver(
    args: &BulkArgs,
    settings: &Settings,
    campaign: &Campaign,
    (journal, done): (Journal, journal::Done),
) -> Result<Exit> {
    let progress = Progress::new(args.json, args.verbose);
    if done.templates_changed {
        progress.warning(&format!(
            "the templates changed since {} rows were settled; those rows are not sent again",
            done.len()
        ));
    }
    let earlier = |row: &Row, seen: &mut journal::Seen| settled_before(&done, campaign, row, seen);
    let pending = || -> Result<_> {
        let mut seen = journal::Seen::default();
        Ok(selected(args)?
            .filter(move |item| match item {
                Ok(row) => earlier(row, &mut seen).is_none(),
                Err(_) => true,
            })
            .take(limit(args)))
    };
    // One pass over the list: rows an earlier run settled are skipped,
    // with a warning when the row changed since; the others are counted.
    let mut total = 0u64;
    let mut aliases = Vec::new();
    let mut seen = journal::Seen::default();
    for item in selected(args)? {
        let row = item?;
        match earlier(&row, &mut seen) {
            Some((settled, changed)) => {
                if changed {
                    progress.warning(&format!(
                        "row {} (line {}) changed since it was settled; it is not sent again",
                        row.number, row.line
                    ));
                }
                let to = match args.json {
                    true => send::recipients(campaign, &row),
                    false => String::new(),
                };
                progress.skipped(row.number, &to, settled == journal::Settled::Refused);
                if changed {
                    aliases.push(row);
                }
            }
            None => total += 1,
        }
    }
    let total = total.min(args.limit.unwrap_or(u64::MAX));
    if total > 0 && !args.yes && !confirm(settings, total)? {
        errln!("mailsend: nothing sent");
        return Ok(Exit::Ok);
    }
    // A changed row's new values are journaled as sent too, so that it is
    // still known if rows move later.
    for row in aliases {
        let to = campaign
            .render(&row)
            .map(|draft| send::recipients_fingerprint(&draft.recipients()))
            .unwrap_or_default();
        journal.record(
            row.number,
            journal::Settled::Sent,
            (journal::fingerprint(row.values()), to),
            "",
            "sent before with other values; not sent again",
        )?;
    }
    progress.set_total(total);
    if total == 0 {
        // Nothing left: no session, no login, no wait for a server.
        progress.finish();
        return Ok(progress.exit());
    }
    let transport = Transport::new(settings, args.verbose)?;
    let result = send::run(
        campaign,
        &transport,
        journal,
        Box::new(pending()?),
        send::Options {
            total: total.try_into().unwrap_or(usize::MAX),
            // No more sessions than rows to send: each one logs in.
            concurrency: (args.concurrency as usize).min(total.try_into().unwrap_or(usize::MAX)),
            pace: send::Pace::new(args.rate.map(|r| r.interval())),
            retry_for: settings.retry_for.unwrap_or(DEFAULT_RETRY_FOR),
        },
        &progress,
    );
    progress.finish();
    result
}

/// A campaign retries rows refused for now this long unless `--retry-for`
/// says otherwise (PRODUCT.md).
const DEFAULT_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(600);

fn limit(args: &BulkArgs) -> usize {
    args.limit
        .map_or(usize::MAX, |n| n.try_into().unwrap_or(usize::MAX))
}

/// At a terminal (stdin and stderr), says what will be sent and asks.
fn confirm(settings: &Settings, total: u64) -> Result<bool> {
    use std::io::{BufRead, IsTerminal};
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Ok(true);
    }
    errln!(
        "mailsend: about to send {total} message{} from {} through {}:{}. Send? [y/N]",
        if total == 1 { "" } else { "s" },
        settings.from.as_deref().unwrap_or_default(),
        settings.host.as_deref().unwrap_or_default(),
        settings.port,
    );
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}

/// The journal's path: `--journal`, else the list's path + `.journal`
/// (`list.csv.journal`, beside the list).
pub fn journal_path(args: &BulkArgs) -> PathBuf {
    args.journal.clone().unwrap_or_else(|| {
        let mut name = OsString::from(args.data.as_os_str());
        name.push(".journal");
        PathBuf::from(name)
    })
}

/// Single-send flags that mean nothing for a campaign are usage errors,
/// not flags silently ignored.
fn refuse_single_send_flags(args: &BulkArgs) -> Result<()> {
    if args.server.queue {
        return Err(Failure::usage(
            "--queue does not apply to a campaign: its journal keeps what is not sent yet, and running the same command again resumes",
        )
        .into());
    }
    if args.server.skip_empty {
        return Err(Failure::usage("--skip-empty does not apply to a campaign").into());
    }
    if args.body_file.as_deref() == Some(Path::new("-")) {
        return Err(Failure::usage(
            "--body-file -: a campaign reads its templates from files, not standard input",
        )
        .into());
    }
    Ok(())
}

fn sender(settings: &Settings) -> Result<Mailbox> {
    let from = settings.from.as_deref().ok_or_else(|| {
        Failure::config("no sender address").with_hint("pass --from or set MAILSEND_FROM")
    })?;
    message::parse_mailbox("--from", from)
}

/// The template sources: the flags, and the files --body-file and --html
/// name (missing: 66; not UTF-8: 65).
fn spec(args: &BulkArgs) -> Result<Spec> {
    let text = match (&args.body, &args.body_file) {
        (Some(body), _) => Some((body.clone(), "--body")),
        (None, Some(path)) => Some((read_template("--body-file", path)?, "--body-file")),
        (None, None) => None,
    };
    let html = match &args.html {
        Some(path) => Some(read_template("--html", path)?),
        None => None,
    };
    Ok(Spec {
        subject: args.subject.clone(),
        text,
        html,
        to: args.to.clone(),
        attach: args.attach.clone(),
        inline: args.inline.clone(),
        headers: args.header.clone(),
        unsubscribe_url: args.unsubscribe_url.clone(),
        unsubscribe_mailto: args.unsubscribe_mailto.clone(),
        list_id: args.list_id.clone(),
    })
}

fn read_template(flag: &str, path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| {
        Failure::no_input(format!(
            "cannot read {flag} {}: {}",
            path.display(),
            e.kind()
        ))
    })?;
    String::from_utf8(bytes).map_err(|e| {
        Failure::data(format!(
            "{flag} {} is not valid UTF-8 text (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
        .into()
    })
}

/// The rows this run takes, in order: its shard's, at most `--limit`.
/// The list was checked: a row that fails now (the file changed since)
/// fails the run.
fn selected(args: &BulkArgs) -> Result<impl Iterator<Item = Result<Row>>> {
    let shard = args.shard;
    let rows = List::open(&args.data)?
        .rows()
        .map(|item| {
            item.map_err(|bad| {
                Failure::data(format!(
                    "{}: line {}: {}",
                    args.data.display(),
                    bad.line,
                    bad.message
                ))
                .into()
            })
        })
        .filter(move |item| match (item, shard) {
            (Ok(row), Some(shard)) => shard.takes(row.number),
            _ => true,
        });
    Ok(rows)
}

/// A row's message, composed.
fn outgoing(campaign: &Campaign, row: &Row) -> Result<Outgoing> {
    let draft = campaign.render(row).map_err(|problem| {
        Failure::new(
            problem.exit,
            format!("line {}: {}", row.line, problem.message),
        )
    })?;
    let mut outgoing = Outgoing {
        message_id: draft.message_id.clone(),
        from: draft.from.email.to_string(),
        recipients: draft.recipients(),
        message: draft.compose()?,
        all_or_nothing: false,
    };
    if let Some(signer) = &campaign.signer {
        signer.sign_outgoing(&mut outgoing)?;
    }
    Ok(outgoing)
}

/// `--dry-run`: the first message this run would send on stdout, its
/// envelope on stderr.
fn print_first(args: &BulkArgs, campaign: &Campaign, rows: u64) -> Result<Exit> {
    let Some(row) = selected(args)?.take(limit(args)).next().transpose()? else {
        errln!(
            "mailsend: dry run: all {rows} rows checked; shard {} takes none of them",
            args.shard.map(|s| s.to_string()).unwrap_or_default()
        );
        return Ok(Exit::Ok);
    };
    outgoing(campaign, &row)?.print_dry_run()?;
    errln!(
        "mailsend: dry run: all {rows} rows checked; above is row {} (line {}); nothing sent",
        row.number,
        row.line
    );
    Ok(Exit::Ok)
}

/// `--dry-run --out DIR`: one `.eml` file per row this run takes, named
/// by its row number (`00001.eml`); DIR is created if missing.
fn write_all(args: &BulkArgs, campaign: &Campaign, dir: &Path) -> Result<Exit> {
    let cannot = |what: &Path, e: std::io::Error| {
        // A path that cannot be a directory of files (a file in the way,
        // no permission, read-only) fails alike next time: a setting to
        // fix (78), as for the journal; a full disk may pass (75).
        let lasting = matches!(
            e.raw_os_error(),
            Some(
                libc::EEXIST
                    | libc::ENOTDIR
                    | libc::EISDIR
                    | libc::EACCES
                    | libc::EPERM
                    | libc::EROFS
                    | libc::ENOENT
            )
        );
        let message = format!("cannot write {}: {e}", what.display());
        match lasting {
            true => Failure::config(message).with_hint("give --out a directory you can write"),
            false => Failure::new(Exit::TempFail, message),
        }
    };
    std::fs::create_dir_all(dir).map_err(|e| cannot(dir, e))?;
    let mut written = 0u64;
    for row in selected(args)?.take(limit(args)) {
        let row = row?;
        let outgoing = outgoing(campaign, &row)?;
        let path = dir.join(format!("{:05}.eml", row.number));
        let file = File::create(&path).map_err(|e| cannot(&path, e))?;
        let mut out = BufWriter::new(file);
        outgoing
            .message
            .write_to(&mut out)
            .and_then(|()| out.flush())
            .map_err(|e| cannot(&path, e))?;
        written += 1;
    }
    errln!(
        "mailsend: dry run: {written} message{} written to {}; nothing sent",
        if written == 1 { "" } else { "s" },
        dir.display()
    );
    Ok(Exit::Ok)
}
