//! The SMTP dialogue (RFC 5321) over any byte stream: greeting, EHLO,
//! the STARTTLS command, AUTH, and any number of mail transactions, each
//! with a reply for every recipient (PIPELINING when offered).
//!
//! Generic over the stream ([`Wire`]), so every rule here is unit-tested
//! against scripted server bytes; connecting, TLS and deadlines on real
//! sockets are `connect.rs`. Knows nothing of exit codes or the outbox.

use std::io::{self, BufReader, Read, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::auth::Mechanism;
use super::caps::Capabilities;
use super::dotstuff::wire_data;
use super::error::{SmtpError, Stage};
use super::reply::{self, Reply};
use crate::output::errln;
use crate::secret::Redactor;

/// How long the reply to the end of data may take at least (RFC 5321
/// 4.5.3.2.6: 10 minutes): content scanners can be slow, and giving up
/// early makes a retry deliver the message twice.
pub const END_OF_DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// Most AUTH challenges answered before the exchange is called broken.
const MAX_AUTH_STEPS: usize = 8;

/// A byte stream the session can talk over.
pub trait Wire: Read + Write {
    /// Every read from now until the next call must end within `wait`,
    /// however the server trickles its bytes.
    fn set_deadline(&mut self, wait: Duration);
}

/// A recipient the server refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rejection {
    pub address: String,
    pub code: u16,
    pub text: String,
}

impl Rejection {
    /// A 4xx refusal: the same recipient may be accepted later.
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }
}

/// What happened to one message.
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    pub accepted: Vec<String>,
    pub rejected: Vec<Rejection>,
    /// The reply to the end of data, when the message was sent.
    pub reply: Option<Reply>,
    /// All-or-nothing: a recipient was refused, so the message went to none.
    pub aborted: bool,
}

impl Delivery {
    /// Only a 2xx accepts a recipient; a 3xx there breaks the protocol and
    /// counts as a refusal.
    fn record(&mut self, rcpt: &str, reply: Reply) {
        if reply.is_positive() {
            self.accepted.push(rcpt.to_owned());
        } else {
            self.rejected.push(Rejection {
                address: rcpt.to_owned(),
                code: reply.code,
                text: reply.text(),
            });
        }
    }
}

/// Settings of a session that do not depend on the stream.
#[derive(Clone, Debug)]
pub struct Options {
    /// The name we give in EHLO.
    pub helo: String,
    /// Bounds each reply (and the end-of-data reply, with at least
    /// [`END_OF_DATA_TIMEOUT`]).
    pub timeout: Duration,
    /// Print the transcript to stderr.
    pub verbose: bool,
}

/// One SMTP session over `S`.
pub struct Session<S: Wire> {
    reader: BufReader<S>,
    options: Options,
    caps: Capabilities,
    /// What EHLO offered before STARTTLS, once upgraded.
    caps_before_tls: Option<Capabilities>,
    /// The negotiated TLS version, once encrypted.
    tls_version: Option<String>,
    /// Secrets that must never be shown, should the server echo them
    /// (some servers quote the AUTH command in their error reply).
    redactor: Redactor,
    /// The server said 421 (closing): a connection lost after it is
    /// reported as that reply, which says why.
    closing: Option<(Stage, Reply)>,
    /// A transaction was started and not ended: RSET before the next.
    open_transaction: bool,
}

impl<S: Wire> Session<S> {
    /// A session over a connected stream, before the greeting.
    /// `tls_version` is set when the stream is already encrypted.
    pub fn new(stream: S, options: Options, tls_version: Option<String>) -> Session<S> {
        let session = Session {
            reader: BufReader::with_capacity(8192, stream),
            options,
            caps: Capabilities::default(),
            caps_before_tls: None,
            tls_version,
            redactor: Redactor::default(),
            closing: None,
            open_transaction: false,
        };
        session.log_tls();
        session
    }

    /// What the server offered in its last EHLO reply.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// What it offered in clear, before STARTTLS (for diagnostics).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn capabilities_before_tls(&self) -> Option<&Capabilities> {
        self.caps_before_tls.as_ref()
    }

    /// The negotiated TLS version, or `None` on a plain connection.
    pub fn tls_version(&self) -> Option<&str> {
        self.tls_version.as_deref()
    }

    /// Reads the greeting (220).
    pub fn greeting(&mut self) -> Result<Reply, SmtpError> {
        self.expect(Stage::Greeting, |r| r.code == 220)
    }

    /// EHLO, and what it offers. With `helo_fallback`, a server that does
    /// not know EHLO (500-504) is greeted with HELO (RFC 5321 4.1.1.1);
    /// only for plain relays, as TLS and AUTH need EHLO.
    pub fn ehlo(&mut self, helo_fallback: bool) -> Result<(), SmtpError> {
        let ehlo = format!("EHLO {}", self.options.helo);
        self.command(Stage::Ehlo, &ehlo)?;
        match self.expect(Stage::Ehlo, |r| r.code == 250) {
            Ok(reply) => self.caps = Capabilities::parse(&reply),
            Err(SmtpError::Refused { reply, .. })
                if helo_fallback && (500..=504).contains(&reply.code) =>
            {
                let helo = format!("HELO {}", self.options.helo);
                self.command(Stage::Ehlo, &helo)?;
                self.expect(Stage::Ehlo, |r| r.code == 250)?;
                self.caps = Capabilities::default();
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// STARTTLS (RFC 3207): the command, then `handshake` turns the
    /// stream into an encrypted one (returning it and the TLS version),
    /// then EHLO again, since what was said in clear no longer counts.
    /// Bytes the server sent after its 220 would pass as TLS-protected
    /// (a command injection), so they abort the session.
    pub fn starttls<T: Wire>(
        mut self,
        handshake: impl FnOnce(S) -> Result<(T, String), SmtpError>,
    ) -> Result<Session<T>, SmtpError> {
        self.command(Stage::StartTls, "STARTTLS")?;
        self.expect(Stage::StartTls, |r| r.code == 220)?;
        if !self.reader.buffer().is_empty() {
            return Err(SmtpError::Protocol {
                stage: Stage::StartTls,
                detail: "data sent before the TLS handshake".into(),
            });
        }
        let mut plain = self.reader.into_inner();
        plain.set_deadline(self.options.timeout);
        let (stream, version) = handshake(plain)?;
        let mut session = Session::new(stream, self.options, Some(version));
        session.caps_before_tls = Some(self.caps);
        session.ehlo(false)?;
        Ok(session)
    }

    /// AUTH with `mechanism`: its initial response, then an answer to
    /// each 334 challenge, until 235. Everything the mechanism sends is
    /// redacted from the transcript and from every later reply.
    pub fn authenticate(&mut self, mechanism: &mut dyn Mechanism) -> Result<(), SmtpError> {
        for secret in mechanism.secrets() {
            self.redactor.add(&secret);
        }
        let name = mechanism.name();
        match mechanism.initial_response() {
            Some(initial) => self.secret_command(
                &format!("AUTH {name} {}", initial.expose()),
                &format!("AUTH {name} <redacted>"),
            )?,
            None => self.command(Stage::Auth, &format!("AUTH {name}"))?,
        }
        for _ in 0..MAX_AUTH_STEPS {
            let reply = self.read_reply(Stage::Auth)?;
            match reply.code {
                235 => return Ok(()),
                334 => {
                    use base64::Engine;
                    let challenge = base64::engine::general_purpose::STANDARD
                        .decode(reply.text().trim())
                        .unwrap_or_default();
                    match mechanism.respond(&challenge) {
                        Some(answer) => self.secret_command(answer.expose(), "<redacted>")?,
                        None => return self.cancel_auth(&reply),
                    }
                }
                _ => {
                    return Err(SmtpError::Refused {
                        stage: Stage::Auth,
                        reply,
                    });
                }
            }
        }
        Err(SmtpError::Protocol {
            stage: Stage::Auth,
            detail: format!("more than {MAX_AUTH_STEPS} AUTH challenges"),
        })
    }

    /// Ends an exchange the mechanism cannot continue (RFC 4954 4: `*`).
    fn cancel_auth(&mut self, challenge: &Reply) -> Result<(), SmtpError> {
        self.command(Stage::Auth, "*")?;
        let _ = self.read_reply(Stage::Auth);
        Err(SmtpError::Protocol {
            stage: Stage::Auth,
            detail: format!("unexpected AUTH challenge: {challenge}"),
        })
    }

    /// Refuses, before anything is sent, a message larger than the SIZE the
    /// server advertised (RFC 1870): the server would refuse it with 552.
    pub fn check_size(&self, message_len: usize) -> Result<(), SmtpError> {
        match self.caps.size {
            Some(limit) if message_len as u64 > limit => Err(SmtpError::TooBig {
                size: message_len,
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// One mail transaction. Every recipient gets its own reply; the
    /// message goes to those accepted. With PIPELINING, MAIL, every RCPT
    /// and DATA leave in one write. With `all_or_nothing`, DATA is sent only
    /// once every recipient was accepted (so it is not pipelined);
    /// otherwise the session is reset. May be called again on the same
    /// session for the next message.
    pub fn send(
        &mut self,
        from: &str,
        recipients: &[String],
        message: &[u8],
        all_or_nothing: bool,
    ) -> Result<Delivery, SmtpError> {
        if recipients.is_empty() {
            return Err(SmtpError::NoRecipients);
        }
        self.check_size(message.len())?;
        let mail = self.mail_command(from, recipients, message)?;
        if self.open_transaction {
            self.reset();
        }
        let data = wire_data(message);
        let rcpts: Vec<String> = recipients
            .iter()
            .map(|r| format!("RCPT TO:<{r}>"))
            .collect();

        let mut delivery = Delivery::default();
        self.open_transaction = true;
        // DATA joins the pipelined batch unless it may have to be withheld.
        let pipeline_data = !all_or_nothing;
        let data_reply = if self.caps.pipelining {
            let mut batch = String::new();
            let data = pipeline_data.then(|| "DATA".to_owned());
            for line in std::iter::once(&mail).chain(&rcpts).chain(data.as_ref()) {
                batch.push_str(line);
                batch.push_str("\r\n");
                self.log_client(line);
            }
            self.write(Stage::MailFrom, batch.as_bytes())?;
            let mail_reply = self.read_reply(Stage::MailFrom)?;
            let refused_mail = || SmtpError::Refused {
                stage: Stage::MailFrom,
                reply: mail_reply.clone(),
            };
            // A server that refused MAIL may close at once (421): say what
            // it said, not that the connection went away.
            let rest = self
                .collect_rcpt_replies(recipients, &mut delivery)
                .and_then(|()| match pipeline_data {
                    true => self.read_reply(Stage::Data).map(Some),
                    false => Ok(None),
                });
            let data_reply = match rest {
                Ok(reply) => reply,
                Err(e) if !mail_reply.is_positive() && !e.server_still_there() => {
                    return Err(refused_mail());
                }
                Err(e) => return Err(e),
            };
            if !mail_reply.is_positive() {
                if data_reply.is_some_and(|r| r.code == 354) {
                    self.write(Stage::Data, b".\r\n")?;
                    let _ = self.read_reply(Stage::EndOfData);
                }
                return Err(refused_mail());
            }
            data_reply
        } else {
            self.command(Stage::MailFrom, &mail)?;
            self.expect(Stage::MailFrom, Reply::is_positive)?;
            for (rcpt, line) in recipients.iter().zip(&rcpts) {
                self.command(Stage::RcptTo, line)?;
                let reply = self.read_reply(Stage::RcptTo)?;
                delivery.record(rcpt, reply);
            }
            None
        };
        if all_or_nothing && !delivery.rejected.is_empty() {
            // Nobody gets it: those the server accepted are simply not sent.
            self.reset();
            delivery.accepted.clear();
            delivery.aborted = true;
            return Ok(delivery);
        }
        let data_reply = match data_reply {
            Some(reply) => reply,
            None if delivery.accepted.is_empty() => {
                self.reset();
                return Ok(delivery);
            }
            None => {
                self.command(Stage::Data, "DATA")?;
                self.read_reply(Stage::Data)?
            }
        };

        if delivery.accepted.is_empty() {
            if data_reply.code == 354 {
                // A server may start DATA even with no recipient: end it empty.
                self.write(Stage::Data, b".\r\n")?;
                let _ = self.read_reply(Stage::EndOfData);
            }
            self.reset();
            return Ok(delivery);
        }
        if data_reply.code != 354 {
            return Err(SmtpError::Refused {
                stage: Stage::Data,
                reply: data_reply,
            });
        }
        self.log_client(&format!("<{} bytes of message data>", message.len()));
        self.log_client(".");
        self.write(Stage::Message, &data)?;
        let wait = self.options.timeout.max(END_OF_DATA_TIMEOUT);
        let reply = self.read_reply_within(Stage::EndOfData, wait)?;
        self.open_transaction = false;
        if !reply.is_positive() {
            return Err(SmtpError::Refused {
                stage: Stage::EndOfData,
                reply,
            });
        }
        delivery.reply = Some(reply);
        Ok(delivery)
    }

    /// The MAIL command for this message, with the parameters it needs;
    /// refuses what the server cannot take (8-bit data, UTF-8 addresses).
    fn mail_command(
        &self,
        from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<String, SmtpError> {
        let mut mail = format!("MAIL FROM:<{from}>");
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", message.len()));
        }
        let utf8_envelope = !from.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        if utf8_envelope && !self.caps.smtputf8 {
            return Err(SmtpError::MissingExtension {
                name: "SMTPUTF8",
                why: "an address is not ASCII",
            });
        }
        if !message.is_ascii() {
            if !self.caps.eightbitmime {
                return Err(SmtpError::MissingExtension {
                    name: "8BITMIME",
                    why: "the message has 8-bit data",
                });
            }
            mail.push_str(" BODY=8BITMIME");
        }
        let head_end = message
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(message.len());
        if utf8_envelope || (self.caps.smtputf8 && !message[..head_end].is_ascii()) {
            mail.push_str(" SMTPUTF8");
        }
        Ok(mail)
    }

    /// Ends the session politely; errors no longer matter here, and a
    /// server slow to say goodbye costs at most two seconds. Returns the
    /// stream, e.g. to close TLS.
    pub fn quit(mut self) -> S {
        self.options.timeout = self.options.timeout.min(Duration::from_secs(2));
        if self.command(Stage::Ehlo, "QUIT").is_ok() {
            let _ = self.read_reply(Stage::Ehlo);
        }
        self.reader.into_inner()
    }

    /// Reads the replies to pipelined RCPT commands, in order.
    fn collect_rcpt_replies(
        &mut self,
        recipients: &[String],
        delivery: &mut Delivery,
    ) -> Result<(), SmtpError> {
        for rcpt in recipients {
            let reply = self.read_reply(Stage::RcptTo)?;
            delivery.record(rcpt, reply);
        }
        Ok(())
    }

    /// RSET, ending any transaction; a failure shows in the next command.
    pub fn reset(&mut self) {
        if self.command(Stage::MailFrom, "RSET").is_ok()
            && self
                .read_reply(Stage::MailFrom)
                .is_ok_and(|r| r.is_positive())
        {
            self.open_transaction = false;
        }
    }

    fn command(&mut self, stage: Stage, line: &str) -> Result<(), SmtpError> {
        self.log_client(line);
        self.write(stage, format!("{line}\r\n").as_bytes())
    }

    /// Sends a line holding a secret; the transcript shows `shown` instead.
    fn secret_command(&mut self, line: &str, shown: &str) -> Result<(), SmtpError> {
        self.log_client(shown);
        self.write(Stage::Auth, format!("{line}\r\n").as_bytes())
    }

    fn write(&mut self, stage: Stage, bytes: &[u8]) -> Result<(), SmtpError> {
        let stream = self.reader.get_mut();
        let result = stream.write_all(bytes).and_then(|()| stream.flush());
        result.map_err(|e| self.lost(stage, &e, self.options.timeout))
    }

    /// The error for a failed read or write: after a 421, that reply.
    fn lost(&self, stage: Stage, e: &io::Error, after: Duration) -> SmtpError {
        match (&self.closing, SmtpError::from_io(stage, e, after)) {
            (Some((stage, reply)), SmtpError::Closed { .. } | SmtpError::Io { .. }) => {
                SmtpError::Refused {
                    stage: *stage,
                    reply: reply.clone(),
                }
            }
            (_, error) => error,
        }
    }

    /// Reads a reply and fails unless `ok` accepts it.
    fn expect(&mut self, stage: Stage, ok: impl Fn(&Reply) -> bool) -> Result<Reply, SmtpError> {
        let reply = self.read_reply(stage)?;
        if ok(&reply) {
            Ok(reply)
        } else {
            Err(SmtpError::Refused { stage, reply })
        }
    }

    /// Reads one (possibly multi-line) reply, all of it within the timeout.
    fn read_reply(&mut self, stage: Stage) -> Result<Reply, SmtpError> {
        self.read_reply_within(stage, self.options.timeout)
    }

    fn read_reply_within(&mut self, stage: Stage, wait: Duration) -> Result<Reply, SmtpError> {
        self.reader.get_mut().set_deadline(wait);
        let reply = match reply::read(&mut self.reader, &self.redactor) {
            Ok(reply) => reply,
            Err(reply::ReadError::Io(e)) => return Err(self.lost(stage, &e, wait)),
            Err(reply::ReadError::Closed) => {
                let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
                return Err(self.lost(stage, &eof, wait));
            }
            Err(reply::ReadError::Malformed(detail)) => {
                return Err(SmtpError::Protocol { stage, detail });
            }
        };
        for line in reply.wire_lines() {
            self.log_server(&line);
        }
        if reply.code == 421 {
            self.closing = Some((stage, reply.clone()));
        }
        Ok(reply)
    }

    fn log_client(&self, line: &str) {
        if self.options.verbose {
            errln!("-> {line}");
        }
    }

    fn log_server(&self, line: &str) {
        if self.options.verbose {
            errln!("<- {line}");
        }
    }

    fn log_tls(&self) {
        if let (true, Some(v)) = (self.options.verbose, &self.tls_version) {
            errln!("== TLS established ({v}), certificate verified");
        }
    }
}
