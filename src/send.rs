//! Sending one message: gather the parts, then dry-run or deliver.
//!
//! Reads the body and attachments (before any connection, so bad input
//! costs no session), asks `message.rs` to compose, `smtp.rs` to deliver,
//! and `output.rs` to report. Decides the exit code of a delivery that
//! some recipients refused.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::SystemTime;

use anyhow::Result;

use crate::cli::SendArgs;
use crate::config::{PasswordSource, Settings, TlsMode, run_password_command};
use crate::exit::{self, Exit, Failure};
use crate::message::{self, Attachment, Draft};
use crate::output::{self, Report};
use crate::smtp::{Client, Endpoint};
use crate::tls::TlsConfig;

/// Runs a send as the flags ask; returns the exit code.
pub fn run(args: &SendArgs) -> Result<Exit> {
    let settings = Settings::resolve(&args.server, None)?;
    let Some(draft) = draft(args, &settings)? else {
        if args.verbose {
            eprintln!("mailsend: body is empty and --skip-empty is set: nothing sent");
        }
        return Ok(Exit::Ok);
    };
    let outgoing = Outgoing {
        message_id: draft.message_id.clone(),
        from: draft.from.email.to_string(),
        recipients: draft.recipients(),
        bytes: draft.compose()?.formatted(),
    };
    if args.dry_run {
        outgoing.print_dry_run()?;
        return Ok(Exit::Ok);
    }
    submit(&settings, &outgoing, args.json, args.verbose)
}

/// A message ready to go: envelope and bytes.
pub struct Outgoing {
    pub message_id: String,
    pub from: String,
    pub recipients: Vec<String>,
    pub bytes: Vec<u8>,
}

impl Outgoing {
    /// `--dry-run`: the message on stdout, the envelope on stderr.
    pub fn print_dry_run(&self) -> Result<()> {
        std::io::stdout().write_all(&self.bytes)?;
        eprintln!("envelope from: <{}>", self.from);
        for r in &self.recipients {
            eprintln!("envelope to: <{r}>");
        }
        Ok(())
    }
}

/// Delivers `outgoing`, reports and logs the result, and returns the exit
/// code; shared by every mode that sends.
pub fn submit(settings: &Settings, outgoing: &Outgoing, json: bool, verbose: bool) -> Result<Exit> {
    let mut report = Report {
        message_id: outgoing.message_id.clone(),
        from: outgoing.from.clone(),
        accepted: vec![],
        rejected: vec![],
        reply: None,
        tls: None,
        error: None,
        exit_code: None,
    };
    let result = deliver(settings, verbose, outgoing, &mut report);
    let code = match &result {
        Ok(()) => {
            let codes: Vec<u16> = report.rejected.iter().map(|r| r.code).collect();
            exit::for_recipients(report.accepted.len(), &codes)
        }
        Err(err) => {
            report.error = Some(format!("{err:#}"));
            exit::code_for(err)
        }
    };
    if let Some(target) = &settings.log {
        output::log(
            target,
            settings.account.as_deref(),
            outgoing.bytes.len(),
            &outgoing.recipients,
            &report,
            code,
        );
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
            }
            Err(err.context("message not sent"))
        }
    }
}

/// Connects, authenticates and sends; fills in `report` as it goes.
fn deliver(
    settings: &Settings,
    verbose: bool,
    outgoing: &Outgoing,
    report: &mut Report,
) -> Result<()> {
    let host = settings.host.as_deref().ok_or_else(|| {
        Failure::config("no SMTP server configured")
            .with_hint("set MAILSEND_HOST (environment or .env, see .env.example), pass --host, or add a config file account")
    })?;
    let credentials = match (&settings.user, &settings.password) {
        (None, _) => None,
        (Some(user), Some(PasswordSource::Value(p))) => Some((user, p.clone())),
        (Some(user), Some(PasswordSource::Command(c))) => {
            Some((user, run_password_command(c, settings.timeout)?))
        }
        (Some(_), None) => {
            return Err(Failure::config("a user name is configured but no password")
                .with_hint("set MAILSEND_PASSWORD or MAILSEND_PASSWORD_COMMAND")
                .into());
        }
    };
    let tls = match settings.tls {
        TlsMode::None => None,
        _ => Some(TlsConfig::new(settings.ca_file.as_deref())?),
    };
    let endpoint = Endpoint {
        host,
        port: settings.port,
        mode: settings.tls,
        tls: tls.as_ref(),
        timeout: settings.timeout,
        verbose,
    };
    let mut client = Client::connect(&endpoint)?;
    report.tls = client.tls_version().map(str::to_owned);
    if let Some((user, password)) = credentials {
        client.login(user, &password)?;
    }
    let delivery = client.send(&outgoing.from, &outgoing.recipients, &outgoing.bytes)?;
    client.quit();
    report.accepted = delivery.accepted;
    report.rejected = delivery.rejected;
    report.reply = delivery.reply.map(|r| r.to_string());
    Ok(())
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
    let html = match &cli.html {
        Some(path) => Some(utf8_text(read_file("HTML file", path)?, "HTML file")?),
        None => None,
    };
    let attachments = cli
        .attach
        .iter()
        .map(|p| Attachment::load(p))
        .collect::<Result<Vec<_>>>()?;

    let text = utf8_text(read_body(cli, html.is_some())?, "message body")?;
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
        headers,
        date: SystemTime::now(),
        message_id,
        boundary: None,
    }))
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
        eprintln!("Type the message; end it with Ctrl-D on a line of its own.");
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
