//! The SMTP client dialogue (RFC 5321) over TCP or TLS.
//!
//! Owns connecting, the greeting, EHLO, required STARTTLS, AUTH, and one
//! mail transaction with a reply for every recipient (PIPELINING when the
//! server offers it). Every read is bounded by the timeout; every failure
//! is a typed [`SmtpError`] whose exit code is chosen in `exit.rs`.
//! Message composition and output formatting live elsewhere; reading a
//! reply off the stream is `reply.rs`, the DATA framing `dotstuff.rs`.

mod dotstuff;
mod reply;

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use openssl::ssl::SslStream;
use serde::{Deserialize, Serialize};

use crate::config::TlsMode;
use crate::exit::Exit;
use crate::output::errln;
use crate::secret::{Redactor, Secret};
use crate::tls::{self, TlsConfig};

pub use dotstuff::wire_data;
pub use reply::{Reply, printable};

/// How long the reply to the end of data may take at least (RFC 5321
/// 4.5.3.2.6: 10 minutes): content scanners can be slow, and giving up
/// early makes a retry deliver the message twice.
const END_OF_DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// Where in the dialogue something happened, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Connect,
    TlsHandshake,
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    Message,
    EndOfData,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::TlsHandshake => "TLS handshake",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Message => "sending the message",
            Stage::EndOfData => "end of data",
        })
    }
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
#[derive(Clone, Debug)]
pub struct Delivery {
    pub accepted: Vec<String>,
    pub rejected: Vec<Rejection>,
    /// The reply to the end of data, when the message was sent.
    pub reply: Option<Reply>,
    /// All-or-nothing: a recipient was refused, so the message went to none.
    pub aborted: bool,
}

impl Delivery {
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

/// Everything that can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("cannot resolve host '{host}': {reason}")]
    Resolve {
        host: String,
        reason: String,
        no_such_host: bool,
    },
    #[error("cannot connect to {addr}: {cause}")]
    Connect { addr: String, cause: io::Error },
    #[error("no answer from the server within {} ({stage})", humantime::format_duration(*after))]
    Timeout { stage: Stage, after: Duration },
    #[error("the server closed the connection ({stage})")]
    Closed { stage: Stage },
    #[error("network error ({stage}): {cause}")]
    Io { stage: Stage, cause: io::Error },
    #[error("server refused {stage}: {reply}")]
    Refused { stage: Stage, reply: Reply },
    #[error("server {host} does not offer STARTTLS; not sending anything in clear")]
    NoStartTls { host: String },
    #[error("server does not offer AUTH PLAIN or LOGIN{}", if offered.is_empty() { String::new() } else { format!(" (offers {offered})") })]
    NoAuth { offered: String },
    #[error("TLS certificate of {host} not trusted: {reason}")]
    Untrusted { host: String, reason: String },
    #[error("TLS with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    /// The TLS layer failed after the handshake, e.g. the server's alert
    /// that it wants a client certificate (TLS 1.3 sends it only then).
    #[error("TLS session failed ({stage}): {reason}")]
    TlsSession { stage: Stage, reason: String },
    #[error("the server does not offer {name}, and {why}")]
    MissingExtension {
        name: &'static str,
        why: &'static str,
    },
    #[error("message is {size} bytes, over the server's limit of {limit} bytes")]
    TooBig { size: usize, limit: u64 },
    #[error("server broke the protocol ({stage}): {detail}")]
    Protocol { stage: Stage, detail: String },
}

impl SmtpError {
    /// The server is still talking to us (it refused something), so the
    /// session can end with a polite QUIT.
    pub fn server_still_there(&self) -> bool {
        matches!(
            self,
            SmtpError::Refused { .. }
                | SmtpError::TooBig { .. }
                | SmtpError::NoAuth { .. }
                | SmtpError::MissingExtension { .. }
        )
    }

    /// The server could not be reached or would not start a session: other
    /// messages for it would fail the same way right now.
    pub fn server_unreachable(&self) -> bool {
        match self {
            SmtpError::Resolve { .. } | SmtpError::Connect { .. } => true,
            SmtpError::Timeout { stage, .. } | SmtpError::Closed { stage } => {
                matches!(
                    stage,
                    Stage::Connect | Stage::TlsHandshake | Stage::Greeting | Stage::Ehlo
                )
            }
            SmtpError::Refused { stage, .. } => *stage == Stage::Greeting,
            _ => false,
        }
    }

    /// The failure is about the session, not one message (login refused,
    /// certificate not trusted, a required extension missing): every
    /// message for this server would fail the same way until it is fixed.
    pub fn session_level(&self) -> bool {
        match self {
            SmtpError::Refused { stage, .. } => {
                matches!(
                    stage,
                    Stage::Greeting | Stage::Ehlo | Stage::StartTls | Stage::Auth
                )
            }
            SmtpError::Protocol { stage, .. } => {
                matches!(
                    stage,
                    Stage::Greeting | Stage::Ehlo | Stage::StartTls | Stage::TlsHandshake
                )
            }
            SmtpError::Untrusted { .. }
            | SmtpError::Tls { .. }
            | SmtpError::TlsSession { .. }
            | SmtpError::NoStartTls { .. }
            | SmtpError::NoAuth { .. } => true,
            _ => self.server_unreachable(),
        }
    }

    /// The exit code this failure means (PRODUCT.md's table).
    pub fn exit(&self) -> Exit {
        match self {
            SmtpError::Resolve {
                no_such_host: true, ..
            } => Exit::NoHost,
            SmtpError::Resolve { .. }
            | SmtpError::Connect { .. }
            | SmtpError::Timeout { .. }
            | SmtpError::Closed { .. }
            | SmtpError::Io { .. } => Exit::TempFail,
            SmtpError::Refused { reply, .. } if reply.is_transient() => Exit::TempFail,
            // 504: the mechanism is not supported, a protocol mismatch
            // rather than a refused login.
            SmtpError::Refused {
                stage: Stage::Auth,
                reply,
            } if reply.code == 504 => Exit::Protocol,
            SmtpError::Refused {
                stage: Stage::Auth, ..
            } => Exit::NoPerm,
            SmtpError::Refused {
                stage: Stage::StartTls,
                ..
            } => Exit::Protocol,
            // 500-504: the server did not understand EHLO; anything else
            // (554 "your address is blocked") is a refusal like any other.
            SmtpError::Refused {
                stage: Stage::Ehlo,
                reply,
            } if (500..=504).contains(&reply.code) => Exit::Protocol,
            SmtpError::Refused { reply, .. } if reply.code < 400 => Exit::Protocol,
            SmtpError::Refused { .. } | SmtpError::TooBig { .. } => Exit::Unavailable,
            SmtpError::NoStartTls { .. }
            | SmtpError::NoAuth { .. }
            | SmtpError::MissingExtension { .. }
            | SmtpError::Tls { .. }
            | SmtpError::TlsSession { .. }
            | SmtpError::Protocol { .. } => Exit::Protocol,
            SmtpError::Untrusted { .. } => Exit::NoPerm,
        }
    }

    /// A second line telling the user what to try.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            SmtpError::Untrusted { .. } => {
                "if the server uses a private CA, trust it with --ca-file or MAILSEND_CA_FILE"
                    .into()
            }
            SmtpError::NoStartTls { .. } => {
                "use --tls tls if the server speaks TLS from the start (port 465)".into()
            }
            SmtpError::Timeout { stage: Stage::EndOfData, .. } | SmtpError::Closed { stage: Stage::EndOfData } => {
                "the whole message was sent: the server may have accepted it, so a retry can deliver it twice".into()
            }
            SmtpError::Timeout { .. } => "check host and port, or raise --timeout".into(),
            SmtpError::Tls { reason, .. } | SmtpError::TlsSession { reason, .. }
                if reason.contains("certificate required")
                    || reason.contains("handshake failure") =>
            {
                "the server may require a client certificate, which mailsend does not send".into()
            }
            SmtpError::Refused {
                stage: Stage::Auth,
                reply,
            } if !reply.is_transient() => {
                "check MAILSEND_USER and the password; Gmail needs an app password".into()
            }
            _ => return None,
        })
    }

    /// Classifies an I/O error: a read timeout surfaces as `WouldBlock`
    /// (EAGAIN) on Linux, not as `TimedOut`; an error of the TLS layer
    /// (an alert from the server) is a TLS failure, not a network blip
    /// worth retrying.
    pub fn from_io(stage: Stage, e: &io::Error, after: Duration) -> SmtpError {
        let ssl = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<openssl::ssl::Error>())
            .and_then(openssl::ssl::Error::ssl_error);
        if let Some(stack) = ssl {
            let reason = stack
                .errors()
                .first()
                .and_then(|e| e.reason().map(str::to_owned))
                .unwrap_or_else(|| stack.to_string());
            return SmtpError::TlsSession { stage, reason };
        }
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                SmtpError::Timeout { stage, after }
            }
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => SmtpError::Closed { stage },
            kind => SmtpError::Io {
                stage,
                cause: io::Error::new(kind, e.to_string()),
            },
        }
    }
}

/// What the server said it supports in its EHLO reply.
#[derive(Debug, Default)]
struct Capabilities {
    starttls: bool,
    pipelining: bool,
    smtputf8: bool,
    eightbitmime: bool,
    size: Option<u64>,
    auth: Vec<String>,
}

impl Capabilities {
    fn parse(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
            match keyword.as_str() {
                "STARTTLS" => caps.starttls = true,
                "PIPELINING" => caps.pipelining = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "8BITMIME" => caps.eightbitmime = true,
                "SIZE" => caps.size = words.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0),
                "AUTH" => caps.auth.extend(words.map(str::to_ascii_uppercase)),
                // The pre-RFC 4954 form some old servers still send.
                k if k.starts_with("AUTH=") => caps.auth.extend(
                    std::iter::once(&k[5..])
                        .chain(words)
                        .map(str::to_ascii_uppercase),
                ),
                _ => {}
            }
        }
        caps
    }
}

/// A TCP stream whose reads all end by one deadline, however the server
/// trickles its bytes: each read waits only for the time that is left.
/// Writes are bounded per call by the socket's write timeout instead, so a
/// large message on a slow link is not cut off while it makes progress.
pub struct Timed {
    tcp: TcpStream,
    deadline: Instant,
}

impl Timed {
    pub fn new(tcp: TcpStream, timeout: Duration) -> Timed {
        Timed {
            tcp,
            deadline: Instant::now() + timeout,
        }
    }

    fn restart(&mut self, timeout: Duration) {
        self.deadline = Instant::now() + timeout;
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.tcp.set_read_timeout(Some(left))?;
        self.tcp.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

enum Stream {
    Plain(Timed),
    Tls(Box<SslStream<Timed>>),
}

impl Stream {
    fn timed(&mut self) -> &mut Timed {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_mut(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Where and how to connect.
pub struct Endpoint<'a> {
    pub host: &'a str,
    pub port: u16,
    pub mode: TlsMode,
    pub tls: Option<&'a TlsConfig>,
    pub timeout: Duration,
    /// Print the transcript to stderr.
    pub verbose: bool,
}

/// An open, greeted, and (unless `TlsMode::None`) encrypted session.
pub struct Client {
    reader: BufReader<Stream>,
    caps: Capabilities,
    timeout: Duration,
    verbose: bool,
    helo: String,
    tls_version: Option<String>,
    /// Secrets that must never be shown, should the server echo them
    /// (some servers quote the AUTH command in their error reply).
    redactor: Redactor,
    /// The server said 421 (closing): a connection lost after it is
    /// reported as that reply, which says why.
    closing: Option<(Stage, Reply)>,
}

impl Client {
    /// Connects, reads the greeting, says EHLO and, in STARTTLS mode,
    /// upgrades to TLS (refusing to go on if the server does not offer it).
    pub fn connect(ep: &Endpoint) -> Result<Client, SmtpError> {
        let tcp = connect_tcp(ep.host, ep.port, ep.timeout)?;
        let helo = match tcp.local_addr() {
            Ok(SocketAddr::V4(a)) => format!("[{}]", a.ip()),
            Ok(SocketAddr::V6(a)) => format!("[IPv6:{}]", a.ip()),
            Err(_) => "localhost".into(),
        };
        let tls_config = || ep.tls.expect("a TLS mode has a TLS configuration");
        let tcp = Timed::new(tcp, ep.timeout);
        let (stream, tls_version) = match ep.mode {
            TlsMode::Implicit => {
                let s = tls_config().connect(ep.host, tcp, ep.timeout)?;
                let v = tls::version(&s);
                (Stream::Tls(Box::new(s)), Some(v))
            }
            _ => (Stream::Plain(tcp), None),
        };
        let mut client = Client {
            reader: BufReader::with_capacity(8192, stream),
            caps: Capabilities::default(),
            timeout: ep.timeout,
            verbose: ep.verbose,
            helo,
            tls_version,
            redactor: Redactor::default(),
            closing: None,
        };
        client.log_tls();
        client.expect(Stage::Greeting, |r| r.code == 220)?;
        // A plain relay that predates ESMTP may only know HELO (RFC 5321
        // 4.1.1.1); with TLS or AUTH required, EHLO is a must.
        client.ehlo(ep.mode == TlsMode::None)?;
        if ep.mode == TlsMode::StartTls {
            if !client.caps.starttls {
                return Err(SmtpError::NoStartTls {
                    host: ep.host.to_owned(),
                });
            }
            client.command(Stage::StartTls, "STARTTLS")?;
            client.expect(Stage::StartTls, |r| r.code == 220)?;
            if !client.reader.buffer().is_empty() {
                return Err(SmtpError::Protocol {
                    stage: Stage::StartTls,
                    detail: "data sent before the TLS handshake".into(),
                });
            }
            let Stream::Plain(mut tcp) = client.reader.into_inner() else {
                unreachable!("STARTTLS is only sent on a plain stream")
            };
            tcp.restart(ep.timeout);
            let s = tls_config().connect(ep.host, tcp, ep.timeout)?;
            client.tls_version = Some(tls::version(&s));
            client.reader = BufReader::with_capacity(8192, Stream::Tls(Box::new(s)));
            client.log_tls();
            client.ehlo(false)?;
        }
        Ok(client)
    }

    /// The negotiated TLS version, or `None` on a plain connection.
    pub fn tls_version(&self) -> Option<&str> {
        self.tls_version.as_deref()
    }

    /// Authenticates with PLAIN (preferred) or LOGIN. Only ever called on a
    /// TLS connection: `config.rs` refuses credentials with `TlsMode::None`.
    pub fn login(&mut self, user: &str, password: &Secret) -> Result<(), SmtpError> {
        assert!(
            self.tls_version.is_some(),
            "credentials are only sent under TLS"
        );
        let offers = |m: &str| self.caps.auth.iter().any(|a| a == m);
        let token = BASE64.encode(format!("\0{user}\0{}", password.expose()));
        for secret in [&token, &BASE64.encode(password.expose()), password.expose()] {
            self.redactor.add(secret);
        }
        if offers("PLAIN") {
            self.secret_command(&format!("AUTH PLAIN {token}"), "AUTH PLAIN <redacted>")?;
        } else if offers("LOGIN") {
            self.command(Stage::Auth, "AUTH LOGIN")?;
            self.expect(Stage::Auth, |r| r.code == 334)?;
            self.secret_command(&BASE64.encode(user), "<redacted>")?;
            self.expect(Stage::Auth, |r| r.code == 334)?;
            self.secret_command(&BASE64.encode(password.expose()), "<redacted>")?;
        } else {
            return Err(SmtpError::NoAuth {
                offered: self.caps.auth.join(" "),
            });
        }
        self.expect(Stage::Auth, |r| r.code == 235)?;
        Ok(())
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
    /// otherwise the session is reset.
    pub fn send(
        &mut self,
        from: &str,
        recipients: &[String],
        message: &[u8],
        all_or_nothing: bool,
    ) -> Result<Delivery, SmtpError> {
        self.check_size(message.len())?;
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
        let data = wire_data(message);
        let rcpts: Vec<String> = recipients
            .iter()
            .map(|r| format!("RCPT TO:<{r}>"))
            .collect();

        let mut delivery = Delivery {
            accepted: Vec::new(),
            rejected: Vec::new(),
            reply: None,
            aborted: false,
        };
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
        let wait = self.timeout.max(END_OF_DATA_TIMEOUT);
        let reply = self.read_reply_within(Stage::EndOfData, wait)?;
        if !reply.is_positive() {
            return Err(SmtpError::Refused {
                stage: Stage::EndOfData,
                reply,
            });
        }
        delivery.reply = Some(reply);
        Ok(delivery)
    }

    /// Ends the session politely; errors no longer matter here, and a
    /// server slow to say goodbye costs at most two seconds.
    pub fn quit(mut self) {
        self.timeout = self.timeout.min(Duration::from_secs(2));
        if self.command(Stage::Ehlo, "QUIT").is_ok() {
            let _ = self.read_reply(Stage::Ehlo);
        }
        if let Stream::Tls(s) = self.reader.get_mut() {
            let _ = s.shutdown();
        }
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

    fn reset(&mut self) {
        if self.command(Stage::MailFrom, "RSET").is_ok() {
            let _ = self.read_reply(Stage::MailFrom);
        }
    }

    fn ehlo(&mut self, helo_fallback: bool) -> Result<(), SmtpError> {
        let ehlo = format!("EHLO {}", self.helo);
        self.command(Stage::Ehlo, &ehlo)?;
        match self.expect(Stage::Ehlo, |r| r.code == 250) {
            Ok(reply) => self.caps = Capabilities::parse(&reply),
            Err(SmtpError::Refused { reply, .. })
                if helo_fallback && (500..=504).contains(&reply.code) =>
            {
                let helo = format!("HELO {}", self.helo);
                self.command(Stage::Ehlo, &helo)?;
                self.expect(Stage::Ehlo, |r| r.code == 250)?;
                self.caps = Capabilities::default();
            }
            Err(e) => return Err(e),
        }
        Ok(())
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
        result.map_err(|e| self.lost(stage, &e, self.timeout))
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
        self.read_reply_within(stage, self.timeout)
    }

    fn read_reply_within(&mut self, stage: Stage, wait: Duration) -> Result<Reply, SmtpError> {
        self.reader.get_mut().timed().restart(wait);
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
        if self.verbose {
            errln!("-> {line}");
        }
    }

    fn log_server(&self, line: &str) {
        if self.verbose {
            errln!("<- {line}");
        }
    }

    fn log_tls(&self) {
        if let (true, Some(v)) = (self.verbose, &self.tls_version) {
            errln!("== TLS established ({v}), certificate verified");
        }
    }
}

/// The addresses of `host` (a name, an IP address or an `[address]`
/// literal). Whether the name does not exist is told by the resolver's
/// error code (EAI_NONAME, EAI_NODATA), never by its message, which
/// differs between C libraries and languages.
fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, SmtpError> {
    use dns_lookup::{AddrInfoHints, LookupErrorKind};
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let bare = bare.strip_prefix("IPv6:").unwrap_or(bare);
    let hints = AddrInfoHints {
        socktype: libc::SOCK_STREAM,
        ..AddrInfoHints::default()
    };
    let failed = |reason: String, no_such_host: bool| SmtpError::Resolve {
        host: host.to_owned(),
        reason,
        no_such_host,
    };
    let found = dns_lookup::getaddrinfo(Some(bare), None, Some(hints)).map_err(|e| {
        let no_such_host = matches!(e.kind(), LookupErrorKind::NoName | LookupErrorKind::NoData);
        failed(io::Error::from(e).to_string(), no_such_host)
    })?;
    let mut addrs = Vec::new();
    for info in found {
        let mut addr = info.map_err(|e| failed(e.to_string(), false))?.sockaddr;
        addr.set_port(port);
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    Ok(addrs)
}

/// Resolves `host` and connects to the first address that answers, each
/// attempt bounded by `timeout`. Sets TCP_NODELAY: the SMTP dialogue is
/// small writes waiting for replies, which Nagle would hold back ~40 ms.
fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, SmtpError> {
    let addrs = resolve(host, port)?;
    let mut last = None;
    let deadline = Instant::now() + timeout;
    for addr in &addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(tcp) => {
                let setup = |e: io::Error| SmtpError::from_io(Stage::Connect, &e, timeout);
                tcp.set_nodelay(true).map_err(setup)?;
                tcp.set_read_timeout(Some(timeout)).map_err(setup)?;
                tcp.set_write_timeout(Some(timeout)).map_err(setup)?;
                return Ok(tcp);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                last = Some(SmtpError::Timeout {
                    stage: Stage::Connect,
                    after: timeout,
                });
            }
            Err(e) => {
                last = Some(SmtpError::Connect {
                    addr: addr.to_string(),
                    cause: e,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| SmtpError::Resolve {
        host: host.to_owned(),
        reason: "no address".into(),
        no_such_host: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_ehlo() {
        let reply = Reply {
            code: 250,
            lines: [
                "mx.example.com",
                "PIPELINING",
                "SIZE 1000",
                "STARTTLS",
                "AUTH PLAIN login",
                "SMTPUTF8",
            ]
            .map(String::from)
            .to_vec(),
        };
        let caps = Capabilities::parse(&reply);
        assert!(caps.pipelining && caps.starttls && caps.smtputf8);
        assert_eq!(caps.size, Some(1000));
        assert_eq!(caps.auth, ["PLAIN", "LOGIN"]);
    }

    #[test]
    fn exit_codes_follow_the_reply_class() {
        let refused = |stage, code| SmtpError::Refused {
            stage,
            reply: Reply {
                code,
                lines: vec![],
            },
        };
        assert_eq!(refused(Stage::Auth, 535).exit(), Exit::NoPerm);
        assert_eq!(refused(Stage::Auth, 454).exit(), Exit::TempFail);
        assert_eq!(refused(Stage::Auth, 504).exit(), Exit::Protocol);
        assert_eq!(refused(Stage::EndOfData, 554).exit(), Exit::Unavailable);
        assert_eq!(refused(Stage::Greeting, 421).exit(), Exit::TempFail);
        assert_eq!(refused(Stage::StartTls, 502).exit(), Exit::Protocol);
        assert_eq!(refused(Stage::Ehlo, 502).exit(), Exit::Protocol);
        assert_eq!(refused(Stage::Ehlo, 554).exit(), Exit::Unavailable);
    }
}
