//! Delivering a composed message: the server, credentials and TLS set up
//! once ([`Transport`]), sessions opened from it, retries of temporary
//! failures by `retry.rs`'s policy. Used by every mode that sends (a
//! single send, sendmail mode, the outbox flush); knows nothing of the
//! outbox.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::config::{PasswordSource, Settings, TlsMode};
use crate::exit::{self, Exit, Failure};
use crate::message::Composed;
use crate::output::Report;
use crate::password::run_password_command;
use crate::retry;
use crate::secret::Secret;
use crate::smtp::{Client, Content, Endpoint, Rejection, Stamp, TlsConfig};
use crate::term::errln;

/// A message ready to go: envelope and message.
pub struct Outgoing {
    pub message_id: String,
    pub from: String,
    pub recipients: Vec<String>,
    pub message: Composed,
    /// Send only if every recipient is accepted (`--all-or-nothing`).
    pub all_or_nothing: bool,
}

impl Outgoing {
    /// `--dry-run`: the message on stdout, the envelope on stderr.
    /// A reader that went away (`| head`) is not an error; a stdout that
    /// cannot take the message (a full disk) is 75.
    pub fn print_dry_run(&self) -> Result<()> {
        let mut out = std::io::stdout().lock();
        match self.message.write_to(&mut out).and_then(|()| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(Failure::new(
                    Exit::TempFail,
                    format!("cannot write the message to standard output: {e}"),
                )
                .into());
            }
            _ => {}
        }
        // One write for the whole envelope, however long the list.
        let mut envelope = format!("envelope from: <{}>\n", self.from);
        for r in &self.recipients {
            envelope.push_str(&format!("envelope to: <{r}>\n"));
        }
        let _ = std::io::stderr().write_all(envelope.as_bytes());
        Ok(())
    }
}

impl Outgoing {
    /// The message, when it is in memory (tests look at it).
    #[cfg(test)]
    pub fn bytes(&self) -> &[u8] {
        match &self.message {
            Composed::Memory(bytes) => bytes,
            Composed::File { .. } => panic!("a test message in a file"),
        }
    }

    /// The message as the session reads it.
    pub fn content(&self) -> Result<Content<'_>> {
        Ok(match &self.message {
            Composed::Memory(bytes) => Content::Bytes(bytes),
            Composed::File { file, .. } => Content::File(
                file,
                Stamp::of(file).map_err(|e| {
                    Failure::new(
                        Exit::TempFail,
                        format!("cannot read the composed message back: {e}"),
                    )
                })?,
            ),
        })
    }
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
            _ => Some(
                TlsConfig::new(settings.ca_file.as_deref())?
                    .with_client(crate::client_cert::load(settings)?),
            ),
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
        let content = outgoing.content()?;
        let mut client = Client::connect(&self.endpoint())?;
        let tls = client.tls_version().map(str::to_owned);
        let session = |client: &mut Client| {
            client.check_size(content.len())?;
            if let Some((user, password)) = &self.credentials {
                client.login(user, password)?;
            }
            client.send(&outgoing.from, recipients, content, outgoing.all_or_nothing)
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
    pub fn deliver_with_retries(&self, outgoing: &Outgoing, report: &mut Report) -> Result<()> {
        let deadline = Instant::now() + self.settings.retry_for.unwrap_or_default();
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
