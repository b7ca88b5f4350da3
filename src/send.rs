//! Sending one message: gather the parts, then dry-run or deliver.
//!
//! Reads the body and attachments (before any connection, so bad input
//! costs no session), asks `message` to compose, `deliver.rs` to deliver
//! (with retries), the outbox to keep what is left, and `output.rs` to
//! report. Decides the exit code of a delivery that some recipients
//! refused.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::time::SystemTime;

use anyhow::Result;

use crate::cli::SendArgs;
use crate::config::Settings;
use crate::deliver::{Outgoing, Transport};
use crate::dkim::Signer;
use crate::exit::{self, Exit, Failure};
use crate::message::{self, Attachment, Draft};
use crate::outbox::{self, Outbox};
use crate::output::{self, Report};
use crate::term::errln;

/// Runs a send as the flags ask; returns the exit code.
pub fn run(args: &SendArgs) -> Result<Exit> {
    let settings = Settings::resolve(&args.server, None)?;
    let signer = Signer::from_settings(settings.dkim()?)?;
    let Some(draft) = draft(args, &settings)? else {
        if args.verbose {
            errln!("mailsend: body is empty and --skip-empty is set: nothing sent");
        }
        return Ok(Exit::Ok);
    };
    let mut outgoing = Outgoing {
        message_id: draft.message_id.clone(),
        from: draft.from.email.to_string(),
        recipients: draft.recipients(),
        message: draft.compose()?,
        all_or_nothing: args.all_or_nothing,
    };
    if let Some(signer) = &signer {
        signer.sign_outgoing(&mut outgoing)?;
    }
    if args.dry_run {
        outgoing.print_dry_run()?;
        return Ok(Exit::Ok);
    }
    submit(&settings, &outgoing, args.json, args.verbose)
}

/// Delivers `outgoing` (retrying temporary failures within `retry_for`,
/// then queueing what is left when the outbox is on), reports and logs the
/// result, and returns the exit code; shared by every mode that sends.
pub fn submit(settings: &Settings, outgoing: &Outgoing, json: bool, verbose: bool) -> Result<Exit> {
    let mut report = Report::new(&outgoing.message_id, &outgoing.from);
    let mut result = Transport::new(settings, verbose)
        .and_then(|t| t.deliver_with_retries(outgoing, &mut report));
    let mut code = match &result {
        Ok(()) => report.exit(),
        Err(err) => exit::code_for(err),
    };
    if code == Exit::TempFail && settings.queue {
        match queue(settings, outgoing, &mut report, &result) {
            Ok((id, queued)) => {
                errln!(
                    "mailsend: queued as {id}: {}",
                    report.error.as_deref().unwrap_or_default()
                );
                report.queued = Some(id);
                code =
                    exit::for_recipients(report.accepted.len() + queued, &report.permanent_codes());
                result = Ok(());
            }
            Err(e) => {
                // Still a temporary failure of the message: say both why it
                // was not sent and why it could not be kept.
                let why = result
                    .as_ref()
                    .err()
                    .map(|r| format!("{r:#}"))
                    .unwrap_or_else(|| "some recipients refused for now".into());
                let mut failure = Failure::new(
                    Exit::TempFail,
                    format!("{why}; and it could not be queued: {e:#}"),
                );
                failure.hint = exit::hint_for(&e);
                result = Err(failure.into());
            }
        }
    }
    if let Err(err) = &result {
        report.error = Some(format!("{err:#}"));
    }
    if let Some(target) = &settings.log {
        let account = settings.account.as_deref();
        let (size, recipients) = (outgoing.message.len(), &outgoing.recipients);
        output::log(target, account, size, recipients, &report, code);
    }
    match result {
        Ok(()) => {
            output::print(&report, json);
            Ok(code)
        }
        Err(err) => {
            if json {
                report.exit_code = Some(code as u8);
                output::print(&report, true);
            } else {
                output::print_rejections(&report);
            }
            Err(match report.accepted.is_empty() {
                true => err.context("message not sent"),
                false => err.context(format!(
                    "message delivered to {}, but not to the other recipients",
                    report.accepted.join(", ")
                )),
            })
        }
    }
}

/// Puts what could not be delivered yet into the outbox: every recipient
/// not yet accepted after a failed session, or those refused for now.
/// Returns the outbox id and how many recipients wait there.
fn queue(
    settings: &Settings,
    outgoing: &Outgoing,
    report: &mut Report,
    result: &Result<()>,
) -> Result<(String, usize)> {
    let recipients: Vec<String> = match result {
        Ok(()) if report.aborted => outgoing.recipients.clone(),
        Ok(()) => report
            .rejected
            .iter()
            .filter(|r| r.is_temporary())
            .map(|r| r.address.clone())
            .collect(),
        Err(_) => outgoing
            .recipients
            .iter()
            .filter(|r| {
                !report.accepted.contains(r)
                    && !report
                        .rejected
                        .iter()
                        .any(|x| &x.address == *r && !x.is_temporary())
            })
            .cloned()
            .collect(),
    };
    let last_error = match result {
        Ok(()) => report
            .rejected
            .iter()
            .find(|r| r.is_temporary())
            .map(|r| format!("{} {} {}", r.address, r.code, r.text)),
        Err(e) => Some(format!("{e:#}")),
    };
    report.error = last_error.clone();
    report.rejected.retain(|r| !r.is_temporary());
    let now = outbox::now();
    let entry = outbox::Entry {
        id: String::new(),
        created: now,
        account: settings.account.clone(),
        message_id: outgoing.message_id.clone(),
        from: outgoing.from.clone(),
        recipients: recipients.clone(),
        delivered: report.accepted.clone(),
        // Refused for good at send time: already reported, and not the
        // outbox's to fail again.
        refused: Vec::new(),
        attempts: 1,
        next_attempt: now,
        last_error,
        failed: None,
        all_or_nothing: outgoing.all_or_nothing,
        in_flight: false,
        done: false,
    };
    let id = Outbox::open(settings)?.add(entry, &outgoing.message)?;
    Ok((id, recipients.len()))
}

/// Gathers and validates everything the message needs. `None` means the
/// body was empty and `--skip-empty` asks to send nothing.
fn draft(cli: &SendArgs, settings: &Settings) -> Result<Option<Draft>> {
    let from_text = settings.from.as_deref().ok_or_else(|| {
        Failure::config("no sender address").with_hint("pass --from or set MAILSEND_FROM")
    })?;
    let from = message::parse_mailbox("--from", from_text)?;
    let to = message::parse_mailboxes("--to", &cli.to)?;
    let cc = message::parse_mailboxes("--cc", &cli.cc)?;
    let bcc = message::parse_mailboxes("--bcc", &cli.bcc)?;
    let reply_to = message::parse_mailboxes("--reply-to", &cli.reply_to)?;
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(Failure::usage("no recipient: give --to, --cc or --bcc").into());
    }
    if let Some(subject) = &cli.subject {
        message::check_header_text("subject", subject)?;
    }
    let headers = cli
        .header
        .iter()
        .map(|h| message::parse_header(h))
        .collect::<Result<Vec<_>>>()?;
    if !cli.inline.is_empty() && cli.html.is_none() {
        return Err(Failure::usage(
            "--inline needs --html: inline images are shown by the HTML part",
        )
        .into());
    }
    let html = match &cli.html {
        Some(path) => Some(utf8_text(read_file("HTML file", path)?, "HTML file")?),
        None => None,
    };
    let inline = cli
        .inline
        .iter()
        .map(|p| Attachment::open_inline(p))
        .collect::<Result<Vec<_>>>()?;
    for (i, image) in inline.iter().enumerate() {
        if inline[..i]
            .iter()
            .any(|other| other.filename == image.filename)
        {
            return Err(Failure::usage(format!(
                "--inline: two files named {}: their Content-IDs (cid:{}) would be the same",
                image.filename, image.filename
            ))
            .into());
        }
    }
    let mut attachments = cli
        .attach
        .iter()
        .map(|p| Attachment::open(p))
        .collect::<Result<Vec<_>>>()?;
    // `--attach /dev/stdin`: standard input is that attachment's, read
    // when the message is composed; nothing may read it before.
    let stdin_attachment = cli
        .attach
        .iter()
        .zip(&attachments)
        .find(|(_, a)| a.reads_stdin())
        .map(|(path, _)| path.display().to_string());
    if let Some(path) = &stdin_attachment {
        let other = match (&cli.attach_stdin, cli.body_file.as_deref()) {
            (Some(_), _) => Some("--attach-stdin"),
            (None, Some(f)) if f == Path::new("-") => Some("--body-file -"),
            _ => None,
        };
        if let Some(other) = other {
            return Err(Failure::usage(format!(
                "--attach {path} and {other} both want standard input"
            ))
            .into());
        }
    }
    if let Some(name) = &cli.attach_stdin {
        check_attachment_name(name)?;
        if cli.body_file.as_deref() == Some(Path::new("-")) {
            return Err(Failure::usage(
                "--attach-stdin and --body-file - both want standard input",
            )
            .into());
        }
        let attachment = Attachment::stdin(name.clone())?;
        // With --skip-empty, nothing on stdin is nothing to attach.
        if !(settings.skip_empty && attachment.is_empty_stdin()) {
            attachments.push(attachment);
        }
    }

    let stdin_taken = cli.attach_stdin.is_some() || stdin_attachment.is_some();
    let text = match stdin_taken && cli.body.is_none() && cli.body_file.is_none() {
        true => String::new(),
        false => utf8_text(read_body(cli, html.is_some())?, "message body")?,
    };
    if settings.skip_empty && text.trim().is_empty() && html.is_none() && attachments.is_empty() {
        return Ok(None);
    }
    let text = match (text.is_empty(), &html) {
        (true, Some(_)) => None,
        _ => Some(message::normalize_text(text)),
    };
    let message_id = message::new_message_id(&from);
    Ok(Some(Draft {
        from,
        to,
        cc,
        bcc,
        reply_to,
        subject: cli.subject.clone(),
        text,
        html,
        attachments,
        inline,
        headers,
        date: SystemTime::now(),
        message_id,
        boundary: None,
    }))
}

/// A name for `--attach-stdin`: a plain file name, as receivers save it.
fn check_attachment_name(name: &str) -> Result<()> {
    let bad = name.trim().is_empty()
        || name.contains(['/', '\\'])
        || name == "."
        || name == ".."
        || name.chars().any(char::is_control);
    if bad {
        return Err(Failure::usage(format!(
            "--attach-stdin needs a plain file name, not '{}'",
            name.escape_debug()
        ))
        .into());
    }
    Ok(())
}

/// The body: `--body`, `--body-file` (`-` is stdin), or stdin. At a
/// terminal it prompts like mailx, unless an HTML part makes text optional;
/// when stdin is not a terminal (pipe, /dev/null, cron) it reads to EOF.
fn read_body(cli: &SendArgs, has_html: bool) -> Result<Vec<u8>> {
    if let Some(body) = &cli.body {
        return Ok(body.clone().into_bytes());
    }
    match cli.body_file.as_deref() {
        Some(path) if path != Path::new("-") => return read_file("body file", path),
        Some(_) => return read_stdin(),
        None => {}
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        if has_html {
            return Ok(Vec::new());
        }
        errln!("Type the message; end it with Ctrl-D on a line of its own.");
    }
    read_stdin()
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut buf)
        .map_err(|e| Failure::no_input(format!("cannot read standard input: {e}")))?;
    Ok(buf)
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Failure::no_input(format!(
            "cannot read {what} {}: {}",
            path.display(),
            e.kind()
        ))
        .into()
    })
}

fn utf8_text(bytes: Vec<u8>, what: &str) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        Failure::data(format!(
            "{what} is not valid UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        ))
        .with_hint("send binary data with --attach FILE")
        .into()
    })
}
