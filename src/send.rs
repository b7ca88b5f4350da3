//! Sending one message: gather the parts, then dry-run or deliver.
//!
//! Reads the body and attachments (before any connection, so bad input
//! costs no session), asks `message.rs` to compose, `smtp.rs` to deliver,
//! and `output.rs` to report. Decides the exit code of a delivery that
//! some recipients refused.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;

use crate::cli::SendArgs;
use crate::config::{PasswordSource, Settings, TlsMode};
use crate::exit::{self, Exit, Failure};
use crate::message::{self, Attachment, Draft};
use crate::outbox::{self, Outbox};
use crate::output::{self, Report};
use crate::password::run_password_command;
use crate::retry;
use crate::secret::Secret;
use crate::smtp::TlsConfig;
use crate::smtp::{Client, Content, Endpoint, Rejection};
use crate::term::errln;

/// Runs a send as the flags ask; returns the exit code.
pub fn run(args: &SendArgs) -> Result<Exit> {
    let settings = Settings::resolve(&args.server, None)?;
    let Some(draft) = draft(args, &settings)? else {
        if args.verbose {
            errln!("mailsend: body is empty and --skip-empty is set: nothing sent");
        }
        return Ok(Exit::Ok);
    };
    let outgoing = Outgoing {
        message_id: draft.message_id.clone(),
        from: draft.from.email.to_string(),
        recipients: draft.recipients(),
        bytes: draft.compose()?,
        all_or_nothing: args.all_or_nothing,
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
    /// Send only if every recipient is accepted (`--all-or-nothing`).
    pub all_or_nothing: bool,
}

impl Outgoing {
    /// `--dry-run`: the message on stdout, the envelope on stderr.
    /// A reader that went away (`| head`) is not an error.
    pub fn print_dry_run(&self) -> Result<()> {
        let _ = std::io::stdout().write_all(&self.bytes);
        // One write for the whole envelope, however long the list.
        let mut envelope = format!("envelope from: <{}>\n", self.from);
        for r in &self.recipients {
            envelope.push_str(&format!("envelope to: <{r}>\n"));
        }
        let _ = std::io::stderr().write_all(envelope.as_bytes());
        Ok(())
    }
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
        let (size, recipients) = (outgoing.bytes.len(), &outgoing.recipients);
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
    let id = Outbox::open(settings)?.add(entry, &outgoing.bytes)?;
    Ok((id, recipients.len()))
}

/// What one session with the server achieved.
pub struct Attempt {
    pub accepted: Vec<String>,
    pub rejected: Vec<Rejection>,
    pub reply: Option<String>,
    pub tls: Option<String>,
    /// All-or-nothing: someone was refused, so nobody got it.
    pub aborted: bool,
}

/// The server, the credentials and the TLS configuration, prepared once
/// for any number of sessions (the password command runs only once).
pub struct Transport<'a> {
    settings: &'a Settings,
    host: &'a str,
    credentials: Option<(&'a str, Secret)>,
    tls: Option<TlsConfig>,
    verbose: bool,
}

impl<'a> Transport<'a> {
    pub fn new(settings: &'a Settings, verbose: bool) -> Result<Transport<'a>> {
        let host = settings.host.as_deref().ok_or_else(|| {
            Failure::config("no SMTP server configured").with_hint(
                "set MAILSEND_HOST (environment or .env, see .env.example), pass --host, or add a config file account",
            )
        })?;
        let credentials = match (&settings.user, &settings.password) {
            (None, _) => None,
            (Some(user), Some(PasswordSource::Value(p))) => Some((user.as_str(), p.clone())),
            (Some(user), Some(PasswordSource::Command(c))) => {
                Some((user.as_str(), run_password_command(c, settings.timeout)?))
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
        Ok(Transport {
            settings,
            host,
            credentials,
            tls,
            verbose,
        })
    }

    /// One session: connect, authenticate, send to `recipients`.
    pub fn attempt(&self, outgoing: &Outgoing, recipients: &[String]) -> Result<Attempt> {
        self.attempt_then(outgoing, recipients, |_| ())
            .map(|(attempt, ())| attempt)
    }

    /// Like `attempt`, and runs `settle` as soon as the server has replied
    /// to the message, before QUIT, returning what it returns: the outbox
    /// records the outcome there, keeping the window for a duplicate as
    /// short as it can be.
    pub fn attempt_then<T>(
        &self,
        outgoing: &Outgoing,
        recipients: &[String],
        settle: impl FnOnce(&Attempt) -> T,
    ) -> Result<(Attempt, T)> {
        let mut client = Client::connect(&self.endpoint())?;
        let tls = client.tls_version().map(str::to_owned);
        let session = |client: &mut Client| {
            client.check_size(outgoing.bytes.len() as u64)?;
            if let Some((user, password)) = &self.credentials {
                client.login(user, password)?;
            }
            client.send(
                &outgoing.from,
                recipients,
                Content::Bytes(&outgoing.bytes),
                outgoing.all_or_nothing,
            )
        };
        let delivery = match session(&mut client) {
            Ok(delivery) => delivery,
            Err(err) => {
                if err.server_still_there() {
                    client.quit();
                }
                return Err(err.into());
            }
        };
        let attempt = Attempt {
            accepted: delivery.accepted,
            rejected: delivery.rejected,
            reply: delivery.reply.map(|r| r.to_string()),
            tls,
            aborted: delivery.aborted,
        };
        let settled = settle(&attempt);
        client.quit();
        Ok((attempt, settled))
    }

    fn endpoint(&self) -> Endpoint<'_> {
        Endpoint {
            host: self.host,
            port: self.settings.port,
            mode: self.settings.tls,
            tls: self.tls.as_ref(),
            timeout: self.settings.timeout,
            verbose: self.verbose,
        }
    }

    /// A session, connected and logged in, for any number of messages.
    pub fn open(&self) -> Result<Client> {
        let mut client = Client::connect(&self.endpoint())?;
        if let Some((user, password)) = &self.credentials
            && let Err(err) = client.login(user, password)
        {
            if err.server_still_there() {
                client.quit();
            }
            return Err(err.into());
        }
        Ok(client)
    }

    /// Sessions until every recipient accepted or refused for good, or
    /// until `retry_for` runs out: temporary failures (connection, timeout,
    /// 4xx, connection lost before the reply to DATA) are retried with
    /// exponential backoff and jitter, only for recipients not yet served.
    /// Permanent failures are never retried.
    fn deliver_with_retries(&self, outgoing: &Outgoing, report: &mut Report) -> Result<()> {
        let deadline = Instant::now() + self.settings.retry_for;
        let mut attempt = 0;
        let mut pending = outgoing.recipients.clone();
        // Refused for now in an earlier session: reported if no later one
        // settles them.
        let mut refused_for_now: Vec<Rejection> = Vec::new();
        loop {
            attempt += 1;
            let delay = retry::SEND.next(attempt);
            let result = self.attempt(outgoing, &pending);
            let temporary: Vec<Rejection> = match result {
                Ok(attempt) => {
                    report.tls = attempt.tls.or(report.tls.take());
                    report.reply = attempt.reply.or(report.reply.take());
                    report.accepted.extend(attempt.accepted);
                    report.aborted = attempt.aborted;
                    let (temporary, permanent): (Vec<Rejection>, Vec<Rejection>) = attempt
                        .rejected
                        .into_iter()
                        .partition(Rejection::is_temporary);
                    // All-or-nothing with a permanent refusal can never succeed.
                    let settled =
                        temporary.is_empty() || (attempt.aborted && !permanent.is_empty());
                    report.rejected.extend(permanent);
                    if settled {
                        report.rejected.extend(temporary);
                        return Ok(());
                    }
                    temporary
                }
                Err(err) if exit::code_for(&err) != Exit::TempFail => {
                    report.rejected.append(&mut refused_for_now);
                    return Err(err);
                }
                Err(err) => {
                    if Instant::now() + delay > deadline {
                        report.rejected.append(&mut refused_for_now);
                        return Err(err);
                    }
                    self.wait(&err.to_string(), delay);
                    continue;
                }
            };
            if Instant::now() + delay > deadline {
                report.rejected.extend(temporary);
                return Ok(());
            }
            if !report.aborted {
                pending = temporary.iter().map(|r| r.address.clone()).collect();
            }
            refused_for_now = temporary;
            self.wait(&format!("{} refused for now", pending.join(", ")), delay);
        }
    }

    fn wait(&self, why: &str, delay: Duration) {
        if self.verbose {
            errln!(
                "mailsend: {why}; retrying in {}",
                humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
            );
        }
        std::thread::sleep(delay);
    }
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
    let mut attachments = cli
        .attach
        .iter()
        .map(|p| Attachment::load(p))
        .collect::<Result<Vec<_>>>()?;
    if let Some(name) = &cli.attach_stdin {
        check_attachment_name(name)?;
        if cli.body_file.as_deref() == Some(Path::new("-")) {
            return Err(Failure::usage(
                "--attach-stdin and --body-file - both want standard input",
            )
            .into());
        }
        let bytes = read_stdin()?;
        // With --skip-empty, nothing on stdin is nothing to attach.
        if !(settings.skip_empty && bytes.is_empty()) {
            attachments.push(Attachment::named(name.clone(), bytes));
        }
    }

    let text = match &cli.attach_stdin {
        Some(_) if cli.body.is_none() && cli.body_file.is_none() => String::new(),
        _ => utf8_text(read_body(cli, html.is_some())?, "message body")?,
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
