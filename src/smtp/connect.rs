//! Reaching the server: name resolution, TCP with one deadline for all
//! addresses, implicit TLS or STARTTLS, and deadlines on every read.
//! [`Client`] is a [`Session`] over such a connection, with the password
//! login the send paths use.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use openssl::ssl::SslStream;

use super::auth;
use super::caps::Capabilities;
use super::content::Content;
use super::error::{SmtpError, Stage};
use super::peer::{CertSummary, TlsInfo};
use super::session::{Delivery, Message, Options, Session, Wire};
use super::tls::{Seen, TlsConfig};
use crate::term::errln;

/// How the connection to the server is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connect, then STARTTLS, which the server must offer.
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS at all: local relays only, never with credentials.
    None,
}

impl TlsMode {
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::StartTls => 587,
            TlsMode::Implicit => 465,
            TlsMode::None => 25,
        }
    }
}

/// A TCP stream whose reads all end by one deadline, however the server
/// trickles its bytes: each read waits only for the time that is left.
/// Writes are bounded per call by the socket's write timeout instead, so a
/// large message on a slow link is not cut off while it makes progress.
pub struct Timed {
    tcp: TcpStream,
    deadline: Instant,
    /// Writes must be done by then, however slowly the server reads.
    write_deadline: Instant,
    /// The longest a single write may wait for the server to read.
    stall: Duration,
}

impl Timed {
    pub fn new(tcp: TcpStream, timeout: Duration) -> Timed {
        Timed {
            tcp,
            deadline: Instant::now() + timeout,
            write_deadline: Instant::now() + timeout,
            stall: timeout,
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
        let left = self
            .write_deadline
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.tcp.set_write_timeout(Some(left.min(self.stall)))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// A connection to the server, in clear or encrypted.
pub enum Stream {
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

    /// Sends TLS close_notify, if encrypted.
    fn close(self) {
        if let Stream::Tls(mut s) = self {
            let _ = s.shutdown();
        }
    }
}

impl Wire for Stream {
    fn set_deadline(&mut self, wait: Duration) {
        self.timed().restart(wait);
    }

    fn set_write_deadline(&mut self, budget: Duration) {
        self.timed().write_deadline = Instant::now() + budget;
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

/// What a connection showed of the server on the way, kept also when it
/// failed at some step (for `mailsend check`).
#[derive(Debug, Default)]
pub struct Trace {
    /// The greeting, as `220 text`.
    pub greeting: Option<String>,
    /// What the first EHLO offered (in clear, unless implicit TLS).
    pub first_capabilities: Option<Capabilities>,
    /// The TLS session, once the handshake succeeded.
    pub tls: Option<TlsInfo>,
    /// The chain the server presented, as verification saw it: set even
    /// when the certificate was refused.
    pub presented: Vec<CertSummary>,
}

/// An open, greeted, and (unless `TlsMode::None`) encrypted session.
pub struct Client {
    session: Session<Stream>,
    /// What the TLS handshake told about the server; `None` in clear.
    tls: Option<TlsInfo>,
    /// The SASL mechanism of the last `login`, once chosen.
    mechanism: Option<&'static str>,
}

impl Client {
    /// Connects, reads the greeting, says EHLO and, in STARTTLS mode,
    /// upgrades to TLS (refusing to go on if the server does not offer it).
    pub fn connect(ep: &Endpoint) -> Result<Client, SmtpError> {
        Self::connect_traced(ep, &mut None)
    }

    /// Like [`Client::connect`], recording in `trace` (when given) what the
    /// server showed at each step, however far it got.
    pub fn connect_traced(ep: &Endpoint, trace: &mut Option<Trace>) -> Result<Client, SmtpError> {
        let tcp = connect_tcp(ep.host, ep.port, ep.timeout)?;
        let helo = match tcp.local_addr() {
            Ok(SocketAddr::V4(a)) => format!("[{}]", a.ip()),
            Ok(SocketAddr::V6(a)) => format!("[IPv6:{}]", a.ip()),
            Err(_) => "localhost".into(),
        };
        let options = Options {
            helo,
            timeout: ep.timeout,
            verbose: ep.verbose,
        };
        // The handshake; what it told about the server is kept in `tls`,
        // and `-v` shows it right away (before the session's "TLS
        // established").
        let mut tls = None;
        let seen: Option<Seen> = trace.as_ref().map(|_| Seen::default());
        let mut handshake = |tcp: Timed| -> Result<(Stream, String), SmtpError> {
            let config = ep.tls.ok_or_else(|| SmtpError::Tls {
                host: ep.host.to_owned(),
                reason: "no TLS configuration".into(),
            })?;
            let s = config.connect_seeing(ep.host, tcp, ep.timeout, seen.clone())?;
            let info = TlsInfo::of(s.ssl());
            if ep.verbose {
                errln!("== TLS: {}", info.summary(SystemTime::now()));
            }
            let version = info.version.clone();
            tls = Some(info);
            Ok((Stream::Tls(Box::new(s)), version))
        };
        let tcp = Timed::new(tcp, ep.timeout);
        let result = (|| {
            let mut session = match ep.mode {
                TlsMode::Implicit => {
                    let (stream, version) = handshake(tcp)?;
                    Session::new(stream, options, Some(version))
                }
                _ => Session::new(Stream::Plain(tcp), options, None),
            };
            let greeting = session.greeting().map_err(|e| {
                // A greeting that refuses (421, 554) is the server's own
                // diagnosis: `check` reports it.
                if let (Some(trace), SmtpError::Refused { reply, .. }) = (trace.as_mut(), &e) {
                    trace.greeting = Some(reply.to_string());
                }
                match ep.mode {
                    TlsMode::Implicit => closed_after_handshake(e),
                    _ => e,
                }
            })?;
            if let Some(trace) = trace.as_mut() {
                trace.greeting = Some(greeting.to_string());
            }
            // A plain relay that predates ESMTP may only know HELO (RFC 5321
            // 4.1.1.1); with TLS or AUTH required, EHLO is a must.
            session.ehlo(ep.mode == TlsMode::None)?;
            if let Some(trace) = trace.as_mut() {
                trace.first_capabilities = Some(session.capabilities().clone());
            }
            if ep.mode == TlsMode::StartTls {
                if !session.capabilities().starttls {
                    return Err(SmtpError::NoStartTls {
                        host: ep.host.to_owned(),
                    });
                }
                session = session
                    .starttls(|stream| match stream {
                        Stream::Plain(tcp) => handshake(tcp),
                        Stream::Tls(_) => Err(SmtpError::Protocol {
                            stage: Stage::StartTls,
                            detail: "STARTTLS on an encrypted connection".into(),
                        }),
                    })
                    .map_err(closed_after_handshake)?;
            }
            Ok(session)
        })();
        if let Some(trace) = trace.as_mut() {
            trace.tls.clone_from(&tls);
            if let Some(seen) = &seen
                && let Ok(mut presented) = seen.lock()
            {
                trace.presented = std::mem::take(&mut *presented);
            }
        }
        Ok(Client {
            session: result?,
            tls,
            mechanism: None,
        })
    }

    /// The negotiated TLS version, or `None` on a plain connection.
    pub fn tls_version(&self) -> Option<&str> {
        self.session.tls_version()
    }

    /// The TLS session (version, cipher, the server's certificate chain),
    /// or `None` on a plain connection.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// What the server offers now (after STARTTLS: under TLS).
    pub fn capabilities(&self) -> &Capabilities {
        self.session.capabilities()
    }

    /// What the server offered in clear, before STARTTLS; `None` without
    /// STARTTLS (implicit TLS or none).
    pub fn capabilities_before_tls(&self) -> Option<&Capabilities> {
        self.session.capabilities_before_tls()
    }

    /// Authenticates with the mechanism `method` asks for (see
    /// [`auth::choose`]). Only ever called on a TLS connection: `config.rs`
    /// refuses credentials with `TlsMode::None`.
    pub fn login(
        &mut self,
        method: auth::AuthMethod,
        creds: &auth::Credentials,
    ) -> Result<(), SmtpError> {
        if self.session.tls_version().is_none() {
            return Err(SmtpError::Protocol {
                stage: Stage::Auth,
                detail: "credentials are only ever sent under TLS".into(),
            });
        }
        let mut mechanism = auth::choose(self.session.capabilities(), method, creds)?;
        self.mechanism = Some(mechanism.name());
        self.session.authenticate(mechanism.as_mut())
    }

    /// The SASL mechanism of the last [`Client::login`], once chosen
    /// (also when the server refused it).
    pub fn mechanism(&self) -> Option<&'static str> {
        self.mechanism
    }

    /// Whether the last `login` presented an OAuth2 token.
    pub fn used_token(&self) -> bool {
        matches!(self.mechanism, Some("XOAUTH2" | "OAUTHBEARER"))
    }

    /// Refuses a message over the server's SIZE before sending anything.
    pub fn check_size(&self, message_len: u64) -> Result<(), SmtpError> {
        self.session.check_size(message_len)
    }

    /// One mail transaction; see [`Session::send`].
    pub fn send(
        &mut self,
        from: &str,
        recipients: &[String],
        content: Content<'_>,
        all_or_nothing: bool,
    ) -> Result<Delivery, SmtpError> {
        self.session.send(from, recipients, content, all_or_nothing)
    }

    /// Many messages, each settled as soon as the server answers; see
    /// [`Session::send_many`].
    pub fn send_many<'a>(
        &mut self,
        messages: impl IntoIterator<Item = Message<'a>>,
        settle: impl FnMut(usize, Result<Delivery, SmtpError>),
    ) -> Result<(), SmtpError> {
        self.session.send_many(messages, settle)
    }

    /// See [`Session::send_many_unless`].
    pub fn send_many_unless<'a>(
        &mut self,
        messages: impl IntoIterator<Item = Message<'a>>,
        settle: impl FnMut(usize, Result<Delivery, SmtpError>),
        abandon: impl Fn() -> bool,
    ) -> Result<(), SmtpError> {
        self.session.send_many_unless(messages, settle, abandon)
    }

    /// The server closed the session with a 421 (see [`Session::closed`]).
    pub fn closed(&self) -> Option<SmtpError> {
        self.session.closed()
    }

    /// QUIT, then TLS close_notify.
    pub fn quit(self) {
        self.session.quit().close();
    }
}

/// A server that hangs up right after the TLS handshake, before its
/// first reply, refused the TLS session (typically: it requires a client
/// certificate; TLS 1.3 tells the client only then, and the alert can be
/// lost to the reset). Retrying will not help, so it is not temporary.
fn closed_after_handshake(e: SmtpError) -> SmtpError {
    match e {
        SmtpError::Closed { stage } if matches!(stage, Stage::Greeting | Stage::Ehlo) => {
            SmtpError::TlsSession {
                stage,
                reason: "the server closed the connection right after the TLS handshake".into(),
            }
        }
        e => e,
    }
}

/// The host as a name or an IP address: an address literal loses its
/// brackets and `IPv6:` tag (`[IPv6:::1]` is `::1`).
pub fn bare_host(host: &str) -> &str {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.strip_prefix("IPv6:").unwrap_or(bare)
}

/// The addresses of `host` (a name, an IP address or an `[address]`
/// literal). Whether the name does not exist is told by the resolver's
/// error code (EAI_NONAME, EAI_NODATA), never by its message, which
/// differs between C libraries and languages.
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, SmtpError> {
    use dns_lookup::{AddrInfoHints, LookupErrorKind};
    let bare = bare_host(host);
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
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread::JoinHandle;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::ssl::{SslAcceptor, SslMethod};
    use openssl::x509::X509;

    use super::super::peer::tests::certificate;
    use super::*;

    /// A root the client trusts (in a PEM file) and a `localhost` leaf.
    struct Pki {
        dir: tempfile::TempDir,
        leaf: X509,
        key: PKey<Private>,
    }

    fn pki() -> Pki {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let valid = (now - 3600, now + 30 * 24 * 3600);
        let (root, root_key) = certificate(&[("CN", "Root")], &[], None, valid);
        let (leaf, key) = certificate(
            &[("CN", "localhost")],
            &["localhost", "127.0.0.1"],
            Some((&root, &root_key)),
            valid,
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let pem = root.to_pem().expect("PEM");
        std::fs::write(dir.path().join("root.pem"), pem).expect("write root");
        Pki { dir, leaf, key }
    }

    fn line(s: &mut impl Read) -> String {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while s.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {
            out.push(byte[0]);
        }
        String::from_utf8_lossy(&out).trim_end().to_owned()
    }

    /// Greets, and answers `ehlo` to EHLO.
    fn dialogue(s: &mut (impl Read + Write), ehlo: &str) {
        s.write_all(b"220 localhost ESMTP\r\n").expect("greet");
        assert!(line(s).starts_with("EHLO "));
        s.write_all(ehlo.as_bytes()).expect("ehlo");
    }

    /// One SMTP session, implicit TLS or STARTTLS, offering SIZE 1000 in
    /// clear and SIZE 2000 under TLS.
    fn serve(pki: &Pki, implicit: bool) -> (u16, JoinHandle<()>) {
        let mut acceptor =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
        acceptor.set_private_key(&pki.key).expect("key");
        acceptor.set_certificate(&pki.leaf).expect("cert");
        let acceptor = acceptor.build();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().expect("accept");
            let mut tls = if implicit {
                let mut tls = acceptor.accept(tcp).expect("TLS");
                dialogue(&mut tls, "250-localhost\r\n250 SIZE 2000\r\n");
                tls
            } else {
                dialogue(
                    &mut tcp,
                    "250-localhost\r\n250-STARTTLS\r\n250 SIZE 1000\r\n",
                );
                assert_eq!(line(&mut tcp), "STARTTLS");
                tcp.write_all(b"220 go ahead\r\n").expect("220");
                let mut tls = acceptor.accept(tcp).expect("TLS");
                assert!(line(&mut tls).starts_with("EHLO "));
                tls.write_all(b"250-localhost\r\n250 SIZE 2000\r\n")
                    .expect("ehlo");
                tls
            };
            assert_eq!(line(&mut tls), "QUIT");
            let _ = tls.write_all(b"221 bye\r\n");
        });
        (port, server)
    }

    fn connect(pki: &Pki, port: u16, mode: TlsMode) -> Client {
        let config = TlsConfig::new(Some(&pki.dir.path().join("root.pem"))).expect("config");
        let ep = Endpoint {
            host: "127.0.0.1",
            port,
            mode,
            tls: Some(&config),
            timeout: Duration::from_secs(10),
            verbose: false,
        };
        Client::connect(&ep).expect("connect")
    }

    fn check_tls_info(client: &Client, pki: &Pki) {
        let info = client.tls_info().expect("TLS info");
        assert_eq!(Some(info.version.as_str()), client.tls_version());
        assert!(!info.cipher.is_empty());
        let leaf = info.leaf().expect("leaf");
        let fingerprint = pki.leaf.digest(MessageDigest::sha256()).expect("digest");
        let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(leaf.sha256, hex);
        assert_eq!(leaf.subject_cn.as_deref(), Some("localhost"));
        assert_eq!(leaf.issuer_cn.as_deref(), Some("Root"));
        assert_eq!(info.chain.len(), 1);
    }

    #[test]
    fn starttls_keeps_the_session_facts_and_what_was_offered_in_clear() {
        let pki = pki();
        let (port, server) = serve(&pki, false);
        let client = connect(&pki, port, TlsMode::StartTls);
        check_tls_info(&client, &pki);
        assert_eq!(client.capabilities().size, Some(2000));
        let before = client.capabilities_before_tls().expect("caps in clear");
        assert!(before.starttls);
        assert_eq!(before.size, Some(1000));
        client.quit();
        server.join().expect("server");
    }

    #[test]
    fn implicit_tls_keeps_the_session_facts() {
        let pki = pki();
        let (port, server) = serve(&pki, true);
        let client = connect(&pki, port, TlsMode::Implicit);
        check_tls_info(&client, &pki);
        assert_eq!(client.capabilities().size, Some(2000));
        assert!(client.capabilities_before_tls().is_none());
        client.quit();
        server.join().expect("server");
    }
}
