//! The SMTP dialogue (RFC 5321) over any byte stream: greeting, EHLO,
//! the STARTTLS command, AUTH, and any number of mail transactions, each
//! with a reply for every recipient (PIPELINING when offered).
//!
//! Generic over the stream ([`Wire`]), so every rule here is unit-tested
//! against scripted server bytes; connecting, TLS and deadlines on real
//! sockets are `connect.rs`. Knows nothing of exit codes or the outbox.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::auth::Mechanism;
use super::caps::Capabilities;
use super::content::{Content, Facts};
use super::dotstuff::{SourceError, write_data_from};
use super::error::{SmtpError, Stage};
use super::reply::{self, Reply};
use crate::secret::Redactor;
use crate::term::errln;

/// How long the reply to the end of data may take at least (RFC 5321
/// 4.5.3.2.6: 10 minutes): content scanners can be slow, and giving up
/// early makes a retry deliver the message twice.
pub const END_OF_DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// Most commands written before their replies are read (RFC 2920 5:
/// the client must not deadlock on a full TCP window).
pub const MAX_GROUP: usize = 100;

/// Most AUTH challenges answered before the exchange is called broken.
const MAX_AUTH_STEPS: usize = 8;

/// A byte stream the session can talk over.
pub trait Wire: Read + Write {
    /// Every read from now until the next call must end within `wait`,
    /// however the server trickles its bytes.
    fn set_deadline(&mut self, wait: Duration);

    /// Every write from now until the next call must end within `budget`,
    /// however slowly the server reads.
    fn set_write_deadline(&mut self, budget: Duration);
}

/// The slowest a server may read what we write: a write of N bytes may
/// take `--timeout` plus N / this many seconds, so a server that reads a
/// little just often enough cannot hold a session open for days.
pub const MIN_WRITE_RATE: u64 = 10 * 1024;

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

/// One message for [`Session::send_many`].
pub struct Message<'a> {
    pub from: &'a str,
    pub recipients: &'a [String],
    /// The message (RFC 5322), before dot-stuffing.
    pub content: Content<'a>,
}

/// A message whose DATA was answered 354: its content goes at the head of
/// the next group, and the end-of-data reply settles it.
struct InFlight<'a> {
    /// None: the content is empty and ends a DATA the server started
    /// for a refused transaction; its outcome does not matter.
    index: Option<usize>,
    /// The message, dot-stuffed only as it is written.
    content: Content<'a>,
    delivery: Delivery,
}

impl InFlight<'_> {
    /// Ends, with no content, a DATA the server started (354) for a
    /// transaction that has nobody to deliver to.
    fn discarded() -> InFlight<'static> {
        InFlight {
            index: None,
            content: Content::Bytes(b""),
            delivery: Delivery::default(),
        }
    }

    /// Hands the outcome to `settle`, once the end-of-data reply is in.
    fn settle(self, reply: Reply, settle: &mut impl FnMut(usize, Result<Delivery, SmtpError>)) {
        let Some(index) = self.index else { return };
        let outcome = if reply.is_positive() {
            let mut delivery = self.delivery;
            delivery.reply = Some(reply);
            Ok(delivery)
        } else {
            Err(SmtpError::Refused {
                stage: Stage::EndOfData,
                reply,
            })
        };
        settle(index, outcome);
    }
}

/// Whether an address field of the header block (From, To, Cc, Reply-To,
/// Sender and their Resent- forms), folded lines included, holds a byte
/// that is not ASCII. A display name is RFC 2047-encoded when mailsend
/// composes; raw UTF-8 there means an internationalised address.
fn address_fields_hold_utf8(head: &[u8]) -> bool {
    const FIELDS: &[&[u8]] = &[b"from", b"to", b"cc", b"reply-to", b"sender"];
    let mut in_address_field = false;
    for line in head.split(|&b| b == b'\n') {
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let name = name.trim_ascii().to_ascii_lowercase();
            let name = name.strip_prefix(b"resent-").unwrap_or(&name);
            in_address_field = FIELDS.contains(&name);
        }
        if in_address_field && !line.is_ascii() {
            return true;
        }
    }
    false
}

fn rcpt_commands(recipients: &[String]) -> impl Iterator<Item = (Stage, String)> + '_ {
    recipients
        .iter()
        .map(|r| (Stage::RcptTo, format!("RCPT TO:<{r}>")))
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
    /// The server said 421 (closing), or refused MAIL: a connection lost
    /// after it is reported as that reply, which says why. A later
    /// positive reply clears a MAIL refusal (the session went on).
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
        for secret in mechanism.long_secrets() {
            self.redactor
                .add_with_window(&secret, crate::secret::Redactor::LONG_WINDOW);
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
            let (reply, raw) = self.read_reply_keeping_raw(Stage::Auth, self.options.timeout)?;
            match reply.code {
                235 => return Ok(()),
                334 => {
                    use base64::Engine;
                    // Decoded from the text as sent: redaction could cut it.
                    let challenge = base64::engine::general_purpose::STANDARD
                        .decode(raw.trim())
                        .unwrap_or_default();
                    match mechanism.respond(&challenge) {
                        Some(answer) => self.secret_command(answer.expose(), "<redacted>")?,
                        None => return self.cancel_auth(&reply),
                    }
                }
                _ => {
                    return Err(match mechanism.server_error() {
                        // The server's own words: they may quote the token.
                        Some(error) => SmtpError::TokenRefused {
                            mechanism: name,
                            reply,
                            error: crate::term::printable(&self.redactor.redact(&error)),
                        },
                        None => SmtpError::Refused {
                            stage: Stage::Auth,
                            reply,
                        },
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
    pub fn check_size(&self, message_len: u64) -> Result<(), SmtpError> {
        match self.caps.size {
            Some(limit) if message_len > limit => Err(SmtpError::TooBig {
                size: message_len,
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// One mail transaction. Every recipient gets its own reply; the
    /// message goes to those accepted. With PIPELINING, MAIL, every RCPT
    /// and DATA leave in one write (in groups of at most [`MAX_GROUP`]
    /// commands). With `all_or_nothing`, DATA is sent only once every
    /// recipient was accepted (so it is not pipelined); otherwise the
    /// session is reset. May be called again on the same session for the
    /// next message.
    pub fn send<'c>(
        &mut self,
        from: &str,
        recipients: &[String],
        content: impl Into<Content<'c>>,
        all_or_nothing: bool,
    ) -> Result<Delivery, SmtpError> {
        let one = Message {
            from,
            recipients,
            content: content.into(),
        };
        if !all_or_nothing {
            let mut outcome = None;
            self.send_many([one], |_, result| outcome = Some(result))?;
            return outcome.unwrap_or(Err(SmtpError::NoRecipients));
        }
        let mail = self.prepare(&one)?;
        let mut delivery = Delivery::default();
        self.new_transaction();
        let reset = self.open_transaction;
        let mut commands = Vec::with_capacity(recipients.len() + 2);
        if reset {
            commands.push((Stage::MailFrom, "RSET".to_owned()));
        }
        commands.push((Stage::MailFrom, mail));
        commands.extend(rcpt_commands(recipients));
        self.open_transaction = true;
        let replies = self.exchange(None, &commands, |_| ())?;
        let mut replies = replies.into_iter();
        if reset {
            replies.next(); // RSET's reply; a failure shows in MAIL's
        }
        let mail_reply = replies.next().ok_or(SmtpError::NoRecipients)?;
        if !mail_reply.is_positive() {
            return Err(SmtpError::Refused {
                stage: Stage::MailFrom,
                reply: mail_reply,
            });
        }
        for (rcpt, reply) in recipients.iter().zip(replies) {
            delivery.record(rcpt, reply);
        }
        if !delivery.rejected.is_empty() {
            // Nobody gets it: those the server accepted are simply not sent.
            self.reset();
            delivery.accepted.clear();
            delivery.aborted = true;
            return Ok(delivery);
        }
        self.command(Stage::Data, "DATA")?;
        let data_reply = self.read_reply(Stage::Data)?;
        if data_reply.code != 354 {
            return Err(SmtpError::Refused {
                stage: Stage::Data,
                reply: data_reply,
            });
        }
        self.log_content(one.content.len());
        self.write_parts(Stage::Message, Some(one.content), b"")?;
        let reply = self.end_of_data_reply()?;
        delivery.reply = Some(reply);
        Ok(delivery)
    }

    /// Sends `messages` one transaction each, and calls `settle` with
    /// each one's outcome as soon as the server has given it, before
    /// anything else happens. With PIPELINING, a message's content leaves
    /// in the same write as the next message's MAIL, RCPTs and DATA (RFC
    /// 2920 3.1), so each message costs about one round trip.
    ///
    /// An outcome is an error when the message was refused (MAIL, DATA or
    /// the end of data) or cannot be sent to this server (too big, needs
    /// an extension); the session goes on with the next message. When the
    /// session itself fails (connection lost, timeout, a broken reply, a
    /// 421), that error is returned, and the message it hit and those
    /// after it are not settled: their fate is unknown or untouched.
    pub fn send_many<'a>(
        &mut self,
        messages: impl IntoIterator<Item = Message<'a>>,
        settle: impl FnMut(usize, Result<Delivery, SmtpError>),
    ) -> Result<(), SmtpError> {
        self.send_many_unless(messages, settle, || false)
    }

    /// Like [`Session::send_many`]; `abandon` is asked when the messages
    /// run out while the last one waits to send its content: when it says
    /// so, the content never leaves and the result is
    /// [`SmtpError::Abandoned`] (drop the session: the server discards the
    /// message when the connection ends inside its DATA). A campaign whose
    /// journal stopped working must not have a message accepted that it
    /// cannot record.
    pub fn send_many_unless<'a>(
        &mut self,
        messages: impl IntoIterator<Item = Message<'a>>,
        mut settle: impl FnMut(usize, Result<Delivery, SmtpError>),
        abandon: impl Fn() -> bool,
    ) -> Result<(), SmtpError> {
        let mut in_flight: Option<InFlight<'a>> = None;
        for (index, message) in messages.into_iter().enumerate() {
            self.new_transaction();
            let mail = match self.prepare(&message) {
                Ok(mail) => mail,
                Err(e) => {
                    settle(index, Err(e));
                    continue;
                }
            };
            let mut commands = Vec::with_capacity(message.recipients.len() + 3);
            let reset = self.open_transaction && in_flight.is_none();
            if reset {
                commands.push((Stage::MailFrom, "RSET".to_owned()));
            }
            commands.push((Stage::MailFrom, mail));
            commands.extend(rcpt_commands(message.recipients));
            if self.caps.pipelining {
                commands.push((Stage::Data, "DATA".to_owned()));
            }
            let head = in_flight.take();
            let content = head.as_ref().map(|h| h.content);
            let replies = self.exchange(content, &commands, |reply| {
                // The first reply of the group ends the previous message.
                if let Some(done) = head {
                    done.settle(reply, &mut settle);
                }
            })?;
            self.open_transaction = true;
            let mut replies = replies.into_iter();
            if reset {
                replies.next(); // RSET's reply; a failure shows in MAIL's
            }
            let mail_reply = replies.next().ok_or(SmtpError::NoRecipients)?;
            let mut delivery = Delivery::default();
            for rcpt in message.recipients {
                if let Some(reply) = replies.next() {
                    delivery.record(rcpt, reply);
                }
            }
            if !mail_reply.is_positive() {
                if replies.next().is_some_and(|r| r.code == 354) {
                    in_flight = Some(InFlight::discarded());
                }
                if mail_reply.code == 421 {
                    return Err(SmtpError::Refused {
                        stage: Stage::MailFrom,
                        reply: mail_reply,
                    });
                }
                self.open_transaction = false;
                settle(
                    index,
                    Err(SmtpError::Refused {
                        stage: Stage::MailFrom,
                        reply: mail_reply,
                    }),
                );
                continue;
            }
            let data_reply = match replies.next() {
                Some(reply) => reply,
                None if delivery.accepted.is_empty() => {
                    settle(index, Ok(delivery));
                    continue; // RSET at the head of the next group
                }
                None => {
                    self.command(Stage::Data, "DATA")?;
                    self.read_reply(Stage::Data)?
                }
            };
            if delivery.accepted.is_empty() {
                if data_reply.code == 354 {
                    // A server may start DATA even with no recipient: end it empty.
                    in_flight = Some(InFlight::discarded());
                }
                settle(index, Ok(delivery));
                continue;
            }
            if data_reply.code != 354 {
                if data_reply.code == 421 {
                    return Err(SmtpError::Refused {
                        stage: Stage::Data,
                        reply: data_reply,
                    });
                }
                settle(
                    index,
                    Err(SmtpError::Refused {
                        stage: Stage::Data,
                        reply: data_reply,
                    }),
                );
                continue;
            }
            in_flight = Some(InFlight {
                index: Some(index),
                content: message.content,
                delivery,
            });
            if !self.caps.pipelining {
                // Without PIPELINING nothing may follow the content.
                let done = in_flight.take();
                if let Some(done) = done {
                    self.log_content(done.content.len());
                    self.write_parts(Stage::Message, Some(done.content), b"")?;
                    let reply = self.read_end_of_data()?;
                    done.settle(reply, &mut settle);
                }
            }
        }
        if let Some(done) = in_flight {
            if done.index.is_some() && abandon() {
                return Err(SmtpError::Abandoned);
            }
            self.log_content(done.content.len());
            self.write_parts(Stage::Message, Some(done.content), b"")?;
            let reply = self.read_end_of_data()?;
            done.settle(reply, &mut settle);
        }
        Ok(())
    }

    /// Writes `head` (a message's content, if any) and `commands`, in
    /// groups of at most [`MAX_GROUP`] commands (one at a time without
    /// PIPELINING), and reads the replies: the end of data's first when
    /// `head` is given, then one per command. A group is small enough
    /// that its replies fit in the TCP buffers, so neither side can block
    /// the other however many recipients a message has.
    fn exchange(
        &mut self,
        head: Option<Content>,
        commands: &[(Stage, String)],
        end_of_data: impl FnOnce(Reply),
    ) -> Result<Vec<Reply>, SmtpError> {
        let group = if self.caps.pipelining { MAX_GROUP } else { 1 };
        let mut replies = Vec::with_capacity(commands.len() + 1);
        let mut head = head;
        let mut end_of_data = Some(end_of_data);
        for chunk in commands.chunks(group) {
            let mut bytes = Vec::new();
            if let Some(content) = head {
                self.log_content(content.len());
            }
            for (_, line) in chunk {
                bytes.extend_from_slice(line.as_bytes());
                bytes.extend_from_slice(b"\r\n");
            }
            let stage = chunk.first().map_or(Stage::MailFrom, |(s, _)| *s);
            let stage = if head.is_some() {
                Stage::Message
            } else {
                stage
            };
            self.write_parts(stage, head, &bytes)?;
            // Logged once written, after the content's final dot.
            for (_, line) in chunk {
                self.log_client(line);
            }
            if head.take().is_some() {
                let reply = self.read_end_of_data()?;
                if let Some(f) = end_of_data.take() {
                    f(reply);
                }
            }
            for (stage, line) in chunk {
                let reply = self.read_reply(*stage)?;
                // One command at a time: after a refused MAIL, nothing
                // else of this transaction is worth sending.
                let refused_mail = line.starts_with("MAIL") && !reply.is_positive();
                replies.push(reply);
                if refused_mail && group == 1 {
                    return Ok(replies);
                }
            }
        }
        Ok(replies)
    }

    /// A new transaction starts: a refused MAIL of an earlier one says
    /// nothing about it any more (only a 421 lasts for the session).
    fn new_transaction(&mut self) {
        if self.closing.as_ref().is_some_and(|(_, r)| r.code != 421) {
            self.closing = None;
        }
    }

    /// The server closed the session with a 421: nothing more can be sent
    /// in it; the error says so, quoting the 421.
    pub fn closed(&self) -> Option<SmtpError> {
        match &self.closing {
            Some((stage, reply)) if reply.code == 421 => Some(SmtpError::Refused {
                stage: *stage,
                reply: reply.clone(),
            }),
            _ => None,
        }
    }

    /// The reply to the end of data, awaited at least 10 minutes; it ends
    /// the transaction whatever it says.
    fn read_end_of_data(&mut self) -> Result<Reply, SmtpError> {
        let wait = self.options.timeout.max(END_OF_DATA_TIMEOUT);
        let reply = self.read_reply_within(Stage::EndOfData, wait)?;
        self.open_transaction = false;
        Ok(reply)
    }

    /// The reply to the end of data; anything but 2xx is a refusal.
    fn end_of_data_reply(&mut self) -> Result<Reply, SmtpError> {
        let reply = self.read_end_of_data()?;
        if reply.is_positive() {
            Ok(reply)
        } else {
            Err(SmtpError::Refused {
                stage: Stage::EndOfData,
                reply,
            })
        }
    }

    /// Checks a message against what the server offers and returns its
    /// MAIL command.
    fn prepare(&self, message: &Message) -> Result<String, SmtpError> {
        if message.recipients.is_empty() {
            return Err(SmtpError::NoRecipients);
        }
        let facts = message.content.facts().map_err(SmtpError::Content)?;
        self.check_size(facts.len)?;
        self.mail_command(message.from, message.recipients, &facts)
    }

    /// The transcript's line for a message's content; its final dot is
    /// logged once it has been written.
    fn log_content(&self, len: u64) {
        self.log_client(&format!("<{len} bytes of message data>"));
    }

    /// The MAIL command for this message, with the parameters it needs;
    /// refuses what the server cannot take (8-bit data, UTF-8 addresses).
    fn mail_command(
        &self,
        from: &str,
        recipients: &[String],
        facts: &Facts,
    ) -> Result<String, SmtpError> {
        let mut mail = format!("MAIL FROM:<{from}>");
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", facts.len));
        }
        let head = facts.head.as_slice();
        // A UTF-8 address, in the envelope or in an address field of the
        // header (a Reply-To is in no envelope), needs SMTPUTF8 (RFC 6531).
        let utf8_envelope = !from.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        let utf8_addresses = utf8_envelope || address_fields_hold_utf8(head);
        if utf8_addresses && !self.caps.smtputf8 {
            return Err(SmtpError::MissingExtension {
                name: "SMTPUTF8",
                why: match utf8_envelope {
                    true => "an address is not ASCII",
                    false => {
                        "an address field of the header (From, To, Cc, Reply-To, Sender) is not ASCII"
                    }
                },
            });
        }
        if facts.eight_bit {
            if !self.caps.eightbitmime {
                return Err(SmtpError::MissingExtension {
                    name: "8BITMIME",
                    why: "the message has 8-bit data",
                });
            }
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8_addresses || (self.caps.smtputf8 && !head.is_ascii()) {
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

    /// Writes `bytes`, within a deadline that grows with their size. Any
    /// byte from the server not yet read means it answered something we
    /// did not ask (or answered twice): going on would pair every later
    /// reply with the wrong command.
    fn write(&mut self, stage: Stage, bytes: &[u8]) -> Result<(), SmtpError> {
        self.write_parts(stage, None, bytes)
    }

    /// Writes a message's `content` as it goes after DATA (CRLF,
    /// dot-stuffed and ended, on the way, never copied whole), then
    /// `bytes`; see [`Session::write`].
    fn write_parts(
        &mut self,
        stage: Stage,
        content: Option<Content>,
        bytes: &[u8],
    ) -> Result<(), SmtpError> {
        if !self.reader.buffer().is_empty() {
            // A server that limits messages per connection may send its
            // 421 with the last reply: that is its closing, not a fault.
            let mut unasked = self.reader.buffer();
            if let Ok(reply) = reply::read(&mut unasked, &self.redactor)
                && reply.code == 421
                && unasked.is_empty()
            {
                self.reader.consume(self.reader.buffer().len());
                for line in reply.wire_lines() {
                    self.log_server(&line);
                }
                self.closing = Some((stage, reply.clone()));
                return Err(SmtpError::Refused { stage, reply });
            }
            return Err(SmtpError::Protocol {
                stage,
                detail: format!(
                    "the server sent more than was asked for: '{}'",
                    crate::term::printable(&String::from_utf8_lossy(self.reader.buffer()))
                ),
            });
        }
        let size = content.map_or(0, |c| c.len()) + bytes.len() as u64;
        let budget = self.options.timeout + Duration::from_secs(size / MIN_WRITE_RATE);
        let stream = self.reader.get_mut();
        stream.set_write_deadline(budget);
        let result = match content {
            Some(content) => write_data_from(&mut *stream, content.reader(), bytes),
            None => stream.write_all(bytes),
        }
        .and_then(|()| stream.flush());
        if result.is_ok() && content.is_some() {
            self.log_client(".");
        }
        result.map_err(|e| match SourceError::take(e) {
            // The message could not be read halfway through DATA: the
            // session must end without the final dot (the server then
            // drops what it got), never with a cut message delivered.
            Ok(source) => SmtpError::Content(source),
            Err(e) => self.lost(stage, &e, budget),
        })
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
        self.read_reply_keeping_raw(stage, wait)
            .map(|(reply, _)| reply)
    }

    /// Like `read_reply_within`, and the text as sent (see
    /// [`reply::read_keeping_raw`]).
    fn read_reply_keeping_raw(
        &mut self,
        stage: Stage,
        wait: Duration,
    ) -> Result<(Reply, String), SmtpError> {
        self.reader.get_mut().set_deadline(wait);
        let (reply, raw) = match reply::read_keeping_raw(&mut self.reader, &self.redactor) {
            Ok(read) => read,
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
        if reply.code == 421 || (stage == Stage::MailFrom && reply.code >= 400) {
            self.closing = Some((stage, reply.clone()));
        } else if reply.is_positive() && self.closing.as_ref().is_some_and(|(_, r)| r.code != 421) {
            self.closing = None;
        }
        Ok((reply, raw))
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
