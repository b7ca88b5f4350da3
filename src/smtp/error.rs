//! What can go wrong in an SMTP session, where, and of which kind.
//!
//! The protocol reports a [`Class`]; only `exit.rs` turns it into an exit
//! code, and only the caller decides what a class means for retries and
//! the outbox.

use std::fmt;
use std::io;
use std::time::Duration;

use super::reply::Reply;

/// The kinds of failure, as far as what to do next is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// May work later: unreachable, timed out, connection lost, 4xx.
    Temporary,
    /// Refused for good (5xx to the mail).
    Permanent,
    /// The server does not accept our credentials.
    Auth,
    /// The server's certificate is not trusted for the host.
    Trust,
    /// The server and mailsend cannot agree on the protocol (a missing
    /// extension, a broken reply, a TLS failure).
    Protocol,
    /// The host name does not exist.
    NoSuchHost,
    /// Our own configuration cannot be used (a CA file).
    Config,
}

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
    #[error("server does not offer AUTH {wanted}{}", if offered.is_empty() { String::new() } else { format!(" (offers {offered})") })]
    NoAuth {
        wanted: &'static str,
        offered: String,
    },
    /// An OAuth2 mechanism failed; `error` is the server's JSON error
    /// challenge, decoded (never the base64 it came in).
    #[error("server refused AUTH {mechanism}: {reply} (token error: {error})")]
    TokenRefused {
        mechanism: &'static str,
        reply: Reply,
        error: String,
    },
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
    TooBig { size: u64, limit: u64 },
    #[error("cannot use CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot read the message: {0}")]
    Content(io::Error),
    #[error("no recipient to send the message to")]
    NoRecipients,
    /// The caller stopped the session while a message waited to send its
    /// content after the server's 354: the content never left, and the
    /// session must be dropped, not ended with QUIT (the server discards
    /// a message whose DATA the connection's end cuts short).
    #[error("the message was abandoned before its content was sent")]
    Abandoned,
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
                | SmtpError::TokenRefused { .. }
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
            | SmtpError::TokenRefused { .. }
            | SmtpError::NoAuth { .. } => true,
            _ => self.server_unreachable(),
        }
    }

    /// What kind of failure this is; `exit.rs` turns the class into an
    /// exit code (PRODUCT.md's table).
    pub fn class(&self) -> Class {
        match self {
            SmtpError::TokenRefused { reply, .. } => SmtpError::Refused {
                stage: Stage::Auth,
                reply: reply.clone(),
            }
            .class(),
            SmtpError::Resolve {
                no_such_host: true, ..
            } => Class::NoSuchHost,
            SmtpError::Resolve { .. }
            | SmtpError::Connect { .. }
            | SmtpError::Timeout { .. }
            | SmtpError::Closed { .. }
            | SmtpError::Io { .. } => Class::Temporary,
            SmtpError::Refused { reply, .. } if reply.is_transient() => Class::Temporary,
            // Below 400 where that reply is not the one due: the server
            // broke the protocol (a 3xx to MAIL, a 250 to AUTH).
            SmtpError::Refused { reply, .. } if reply.code < 400 => Class::Protocol,
            // 504: the mechanism is not supported, a protocol mismatch
            // rather than a refused login.
            SmtpError::Refused {
                stage: Stage::Auth,
                reply,
            } if reply.code == 504 => Class::Protocol,
            SmtpError::Refused {
                stage: Stage::Auth, ..
            } => Class::Auth,
            SmtpError::Refused {
                stage: Stage::StartTls,
                ..
            } => Class::Protocol,
            // 500-504: the server did not understand EHLO; anything else
            // (554 "your address is blocked") is a refusal like any other.
            SmtpError::Refused {
                stage: Stage::Ehlo,
                reply,
            } if (500..=504).contains(&reply.code) => Class::Protocol,
            SmtpError::Refused { .. } | SmtpError::TooBig { .. } => Class::Permanent,
            SmtpError::NoStartTls { .. }
            | SmtpError::NoAuth { .. }
            | SmtpError::MissingExtension { .. }
            | SmtpError::Tls { .. }
            | SmtpError::TlsSession { .. }
            | SmtpError::Protocol { .. } => Class::Protocol,
            SmtpError::Untrusted { .. } => Class::Trust,
            SmtpError::NoRecipients => Class::Permanent,
            SmtpError::Abandoned => Class::Temporary,
            // Local, and maybe passing (a disk error): try again later.
            SmtpError::Content(_) => Class::Temporary,
            SmtpError::CaFile { .. } => Class::Config,
        }
    }

    /// A second line telling the user what to try.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            SmtpError::Untrusted { host, reason } if reason.contains("mismatch") => format!(
                "the certificate does not name {host} in its subjectAltName; connect with a name it lists"
            ),
            SmtpError::Untrusted { .. } => {
                "if the server uses a private CA, trust it with --ca-file or MAILSEND_CA_FILE"
                    .into()
            }
            SmtpError::CaFile { .. } => {
                "MAILSEND_CA_FILE / --ca-file must name a PEM file of CA certificates".into()
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
                    || reason.contains("handshake failure")
                    || reason.contains("right after the TLS handshake") =>
            {
                "the server may require a client certificate (one it trusts): set --client-cert and --client-key (MAILSEND_CLIENT_CERT, MAILSEND_CLIENT_KEY)".into()
            }
            SmtpError::Refused {
                stage: Stage::Auth,
                reply,
            } if basic_auth_disabled(reply) => {
                "the provider no longer takes passwords here: use OAuth2, with --auth xoauth2 and a token command (MAILSEND_OAUTH_TOKEN_COMMAND) or `mailsend auth login`".into()
            }
            SmtpError::Refused {
                stage: Stage::Auth,
                reply,
            } if reply.text().starts_with("5.7.9") => {
                "Gmail takes an app password (with 2-Step Verification on), or OAuth2: --auth xoauth2 with a token command (MAILSEND_OAUTH_TOKEN_COMMAND) or `mailsend auth login`".into()
            }
            SmtpError::Refused {
                stage: Stage::Auth,
                reply,
            } if !reply.is_transient() => {
                "check MAILSEND_USER and the password; Gmail needs an app password".into()
            }
            SmtpError::TokenRefused { reply, .. } if !reply.is_transient() => {
                "the access token was refused (expired, revoked, or without the mail scope): check MAILSEND_OAUTH_TOKEN_COMMAND, or run `mailsend auth login` again".into()
            }
            SmtpError::NoAuth { offered, .. }
                if ["XOAUTH2", "OAUTHBEARER"].iter().any(|m| offered.split(' ').any(|o| o == *m))
                    && !offered.split(' ').any(|o| o == "PLAIN" || o == "LOGIN") =>
            {
                "the server takes OAuth2 tokens only: set MAILSEND_OAUTH_TOKEN_COMMAND (or run `mailsend auth login`)".into()
            }
            SmtpError::NoAuth { wanted, offered }
                if *wanted == "XOAUTH2 or OAUTHBEARER" && !offered.is_empty() =>
            {
                "it takes no OAuth2 token: configure a password (MAILSEND_PASSWORD or MAILSEND_PASSWORD_COMMAND)".into()
            }
            SmtpError::NoAuth { offered, .. } if !offered.is_empty() => {
                "choose a mechanism it offers with --auth (MAILSEND_AUTH), or auto".into()
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

/// 535 5.7.139 (Outlook.com: basic authentication is disabled) or 550
/// 5.7.30 (Exchange Online: basic authentication is not supported for
/// client submission).
fn basic_auth_disabled(reply: &Reply) -> bool {
    let text = reply.text();
    (reply.code == 535 && text.starts_with("5.7.139"))
        || (reply.code == 550 && text.starts_with("5.7.30"))
        || text
            .to_ascii_lowercase()
            .contains("basic authentication is")
}
