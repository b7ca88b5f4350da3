//! SMTP client (RFC 5321): everything between a composed message and
//! the server's reply to it.
//!
//! - `reply.rs`: reading a reply off any stream; escaping server text.
//! - `caps.rs`: what EHLO offers.
//! - `auth.rs`: SASL mechanisms (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER) the
//!   session drives, and the choice among them (`--auth`).
//! - `dotstuff.rs`: the DATA framing.
//! - `session.rs`: the dialogue over any byte stream, many messages per
//!   session, unit-tested on scripted bytes.
//! - `connect.rs`: resolution, TCP, deadlines, TLS; [`Client`].
//! - `tls.rs`: the trust store and certificate checks.
//! - `peer.rs`: [`TlsInfo`], what the handshake told about the server
//!   (version, cipher, its certificate chain), owned.
//! - `error.rs`: [`SmtpError`], where it happened ([`Stage`]) and its
//!   [`Class`]; `exit.rs` turns a class into an exit code.
//!
//! Message composition, output and the outbox live elsewhere.

mod auth;
mod caps;
mod connect;
mod content;
mod dotstuff;
mod error;
mod peer;
mod reply;
mod session;
mod tls;

pub use auth::{AuthMethod, Credentials};
pub use connect::{Client, Endpoint, TlsMode, Trace, resolve};
pub use content::{Content, Stamp};
pub use error::{Class, SmtpError, Stage};
pub use peer::{CertSummary, TlsInfo, rfc3339, unix_seconds};
pub use session::{Delivery, Message, Rejection};
pub use tls::{ClientIdentity, IdentityError, TlsConfig, has_private_key};

#[cfg(test)]
pub use {dotstuff::wire_data, reply::Reply};

#[cfg(test)]
mod tests;
