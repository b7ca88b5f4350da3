//! Delivering a composed message: the server, credentials and TLS set up
//! once ([`Transport`]), sessions opened from it, retries of temporary
//! failures by `retry.rs`'s policy. Used by every mode that sends (a
//! single send, sendmail mode, the outbox flush); knows nothing of the
//! outbox.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::config::{PasswordSource, Settings, TlsMode};
use crate::exit::{self, Exit, Failure};
use crate::message::Composed;
use crate::output::Report;
use crate::password::run_password_command;
use crate::retry;
use crate::secret::Secret;
use crate::smtp::{
    AuthMethod, Class, Client, Content, Credentials, Endpoint, Rejection, SmtpError, Stamp,
    TlsConfig,
};
use crate::sync::lock;
use crate::term::errln;
use crate::token;

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

/// What a session logs in with: the password and the OAuth2 access
/// token the chosen mechanism may use (`None` without a user name).
pub struct LoginSecrets {
    pub password: Option<Secret>,
    pub token: Option<Secret>,
}

/// The login secrets, as every session of this run uses them: the password
/// command and the token source run here, once. Settings that cannot log
/// in (a mechanism without what it needs) are 78 before connecting.
pub fn login_secrets(settings: &Settings) -> Result<LoginSecrets> {
    let auth = settings.auth;
    let token_source = settings.token.as_ref().filter(|_| auth.may_use_token());
    // (A token source without a user name is `check_auth`'s to refuse.)
    if let Some(token::TokenSource::BuiltIn(_)) = token_source
        && settings.tls == TlsMode::None
    {
        return Err(Failure::config(
            "the account signs in with OAuth2 (oauth_* keys) but the TLS mode is none: the token would cross the network in clear",
        )
        .with_hint("use --tls starttls or --tls tls")
        .into());
    }
    if let (Some(user), Some(_)) = (&settings.user, token_source)
        && user.chars().any(char::is_control)
    {
        // XOAUTH2 separates its fields with ^A and has no escape for it:
        // such a name would let the user field forge the others.
        return Err(Failure::config(format!(
            "the user name {} holds a control character, which XOAUTH2 and OAUTHBEARER cannot carry",
            crate::term::printable(user)
        ))
        .with_hint("check MAILSEND_USER (or the account's user)")
        .into());
    }
    check_auth(
        auth,
        settings.user.is_some(),
        settings.password.is_some(),
        token_source.is_some(),
    )?;
    let mut secrets = LoginSecrets {
        password: None,
        token: None,
    };
    if settings.user.is_some() {
        secrets.password = match (&settings.password, auth.may_use_password()) {
            (Some(PasswordSource::Value(p)), true) => Some(p.clone()),
            (Some(PasswordSource::Command(c)), true) => {
                Some(run_password_command(c, settings.timeout)?)
            }
            _ => None,
        };
        if let Some(source) = token_source {
            secrets.token = Some(token::access_token(source, settings.timeout)?);
        }
    }
    Ok(secrets)
}

/// The server, the credentials and the TLS configuration, prepared once
/// for any number of sessions (the password and token commands run only
/// once).
pub struct Transport<'a> {
    settings: &'a Settings,
    host: &'a str,
    /// The login name, when the server is to be logged in to.
    user: Option<&'a str>,
    password: Option<Secret>,
    /// The OAuth2 access token, shared by every session (bulk opens
    /// several at once), and how many times it was fetched again.
    token: Option<Mutex<(Secret, u32)>>,
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
        let user = settings.user.as_deref();
        let LoginSecrets { password, token } = login_secrets(settings)?;
        let token = token.map(|t| Mutex::new((t, 0)));
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
            user,
            password,
            token,
            tls,
            verbose,
        })
    }

    /// The token in use, and its generation.
    fn token(&self) -> Option<(Secret, u32)> {
        self.token.as_ref().map(|t| lock(t).clone())
    }

    /// After the server refused the token of generation `seen`: a fresh
    /// one (the command runs again, once per refusal however many sessions
    /// saw it), or `None` when the source gives the same token again.
    fn fresh_token(&self, seen: u32) -> Result<Option<(Secret, u32)>> {
        let (Some(shared), Some(source)) = (&self.token, &self.settings.token) else {
            return Ok(None);
        };
        let mut current = lock(shared);
        if current.1 != seen {
            return Ok(Some(current.clone())); // another session refreshed it
        }
        let fresh = token::fresh_token(source, self.settings.timeout)?;
        if fresh == current.0 {
            return Ok(None);
        }
        *current = (fresh, seen + 1);
        Ok(Some(current.clone()))
    }

    /// A session, connected, checked by `check` and logged in. A refused
    /// OAuth2 token (it may have just expired) is fetched again once and,
    /// if the source gives a new one, tried in a new session.
    fn session(&self, check: impl Fn(&Client) -> Result<(), SmtpError>) -> Result<Client> {
        let token = self.token();
        let (err, used_token) = match self.login(token.as_ref().map(|t| &t.0), &check)? {
            Ok(client) => return Ok(client),
            Err(failed) => failed,
        };
        if !used_token || err.class() != Class::Auth {
            return Err(err.into());
        }
        let Some((fresh, _)) = self.fresh_token(token.map_or(0, |t| t.1))? else {
            return Err(err.into());
        };
        if self.verbose {
            errln!("mailsend: the token was refused; trying the one the token source gives now");
        }
        self.login(Some(&fresh), &check)?
            .map_err(|(err, _)| err.into())
    }

    /// Connects, runs `check`, and logs in (with `token` for OAuth2).
    /// A failure after connecting is `Ok(Err((error, whether a token was
    /// presented)))`, the session already ended.
    fn login(
        &self,
        token: Option<&Secret>,
        check: &impl Fn(&Client) -> Result<(), SmtpError>,
    ) -> Result<Result<Client, (SmtpError, bool)>> {
        let mut client = Client::connect(&self.endpoint())?;
        let result = check(&client).and_then(|()| match self.user {
            None => Ok(()),
            Some(user) => client.login(
                self.settings.auth,
                &Credentials {
                    user,
                    password: self.password.as_ref(),
                    token,
                    host: self.host,
                    port: self.settings.port,
                },
            ),
        });
        Ok(match result {
            Ok(()) => Ok(client),
            Err(err) => {
                let used_token = client.used_token();
                if err.server_still_there() {
                    client.quit();
                }
                Err((err, used_token))
            }
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
        let mut client = self.session(|client| client.check_size(content.len()))?;
        let tls = client.tls_version().map(str::to_owned);
        let delivery =
            match client.send(&outgoing.from, recipients, content, outgoing.all_or_nothing) {
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
        self.session(|_| Ok(()))
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

/// Refuses, before connecting, an `auth` choice the credentials cannot
/// serve: OAuth2 without a token source, a password mechanism without a
/// password, a token source without the user name XOAUTH2 and OAUTHBEARER
/// present (78).
fn check_auth(auth: AuthMethod, user: bool, password: bool, token: bool) -> Result<(), Failure> {
    let token_hint = "set MAILSEND_OAUTH_TOKEN_COMMAND (or --oauth-token-command, account key oauth_token_command)";
    if token && !user {
        return Err(
            Failure::config("an OAuth2 token source is configured but no user name")
                .with_hint("set MAILSEND_USER: XOAUTH2 and OAUTHBEARER present it with the token"),
        );
    }
    if !user {
        return match auth {
            AuthMethod::Auto => Ok(()),
            _ => Err(Failure::config(format!(
                "auth {} is asked for but no user name is configured",
                auth.as_str()
            ))
            .with_hint("set MAILSEND_USER")),
        };
    }
    if !auth.may_use_token() || !token {
        if auth.may_use_password() && !password {
            return Err(
                Failure::config("a user name is configured but no password").with_hint(format!(
                    "set MAILSEND_PASSWORD or MAILSEND_PASSWORD_COMMAND, or for OAuth2 {token_hint}"
                )),
            );
        }
        if !auth.may_use_password() {
            return Err(Failure::config(format!(
                "auth {} needs an OAuth2 access token, and no token source is configured",
                auth.as_str()
            ))
            .with_hint(token_hint));
        }
    }
    Ok(())
}
