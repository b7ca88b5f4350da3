//! In-process SMTP server for integration tests (std + native-tls + base64).
//!
//! `TestServer::start(Behaviour::default())` listens on `127.0.0.1:<random>`,
//! serves every connection on its own thread and records a [`Session`] per
//! connection. TLS uses [`Pki::shared`] (trust it via `Pki::shared().ca_file`).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::prelude::*;
use native_tls::{TlsAcceptor, TlsStream};

pub use super::pki::Cert;
use super::pki::Pki;

const READ_TIMEOUT: Duration = Duration::from_secs(30);
const SILENT_FOR: Duration = Duration::from_secs(60);
const MAX_LINE: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Security {
    /// Never TLS; AUTH is offered and accepted in clear.
    Plain,
    /// Plain connect, STARTTLS offered (see `offer_starttls`).
    #[default]
    StartTls,
    /// TLS handshake right after accept (SMTPS, "port 465").
    ImplicitTls,
}

/// How the server behaves. Start from `Behaviour::default()` and override fields.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub security: Security,
    pub cert: Cert,
    /// false: never advertise or accept STARTTLS, even in `StartTls` mode.
    pub offer_starttls: bool,
    /// Some((user, pass)): AUTH PLAIN/LOGIN required before MAIL (530 otherwise);
    /// advertised and accepted only under TLS unless `allow_auth_without_tls`
    /// or `Security::Plain` (else 538).
    pub auth: Option<(String, String)>,
    /// With `auth`: XOAUTH2 and OAUTHBEARER are offered too, and accept
    /// the user with this access token; another token gets the 334 JSON
    /// error challenge Dovecot sends, then (once answered) 535.
    pub oauth_token: Option<String>,
    /// With `auth`: the mechanisms advertised (and accepted), instead of
    /// "PLAIN LOGIN" (plus "XOAUTH2 OAUTHBEARER" with `oauth_token`).
    pub auth_mechanisms: Option<String>,
    /// With `auth`: the reply to wrong credentials instead of 535 5.7.8
    /// (a provider that refuses passwords: 535 5.7.139, 550 5.7.30).
    pub auth_refusal: Option<String>,
    pub allow_auth_without_tls: bool,
    pub pipelining: bool,
    /// Advertise `SIZE n` and enforce it (MAIL SIZE= param and actual data: 552).
    pub size: Option<usize>,
    /// Accept TCP and never send anything; hold the socket until the client closes (or 60 s).
    pub silent: bool,
    /// Greeting line; anything not starting with "220" is sent and the connection closed.
    pub greeting: String,
    pub mail_reply: Option<String>,
    /// (address, reply) overrides for RCPT; others get "250 2.1.5 Ok". A reply
    /// not starting with '2' counts as refused.
    pub rcpt_replies: Vec<(String, String)>,
    /// Reply after end-of-data (default "250 2.0.0 Ok: queued as TEST<n>").
    pub data_reply: Option<String>,
    /// Close the connection without a reply after the first chunk of DATA content.
    pub drop_during_data: bool,
    /// Verb (e.g. "MAIL", "DATA"; case-insensitive) on whose arrival the server
    /// goes silent without replying; "." means after the message content, before
    /// the end-of-data reply.
    pub delay_reply_after: Option<String>,
    /// Some(n): the faults above (greeting, silence, replies, drop, delay)
    /// apply to the first n sessions only; later ones behave normally, as a
    /// server does once it recovers.
    pub fault_sessions: Option<usize>,
    /// Some(d): send the greeting one byte every `d`, as a stalling server
    /// (or a tarpit) would.
    pub trickle_greeting: Option<Duration>,
    /// Refuse AUTH with a 501 that quotes the client's command, as some
    /// servers do (the quote holds the credentials).
    pub echo_auth: bool,
    /// With `echo_auth`: leave this many characters off the end of the
    /// echoed credentials, as a server that cuts its quote does.
    pub echo_auth_cut: usize,
    /// Advertise neither 8BITMIME nor SMTPUTF8, as an old server would.
    pub seven_bit_only: bool,
    /// Answer EHLO with 502, as a server that predates ESMTP does.
    pub helo_only: bool,
    /// Runs just before the reply to end-of-data is sent: a test breaks
    /// something on the client's side at the worst moment (a fault).
    pub before_data_reply: Option<Hook>,
}

/// A closure a test runs inside the server (see `before_data_reply`).
#[derive(Clone)]
pub struct Hook(pub Arc<dyn Fn() + Send + Sync>);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hook")
    }
}

impl Behaviour {
    /// The same server with every fault cleared.
    fn recovered(&self) -> Behaviour {
        let normal = Behaviour::default();
        Behaviour {
            silent: false,
            greeting: normal.greeting,
            mail_reply: None,
            rcpt_replies: Vec::new(),
            data_reply: None,
            drop_during_data: false,
            delay_reply_after: None,
            trickle_greeting: None,
            before_data_reply: None,
            ..self.clone()
        }
    }
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            security: Security::StartTls,
            cert: Cert::Good,
            offer_starttls: true,
            auth: None,
            oauth_token: None,
            auth_mechanisms: None,
            auth_refusal: None,
            allow_auth_without_tls: false,
            pipelining: true,
            size: None,
            silent: false,
            greeting: "220 localhost ESMTP test".into(),
            mail_reply: None,
            rcpt_replies: Vec::new(),
            data_reply: None,
            drop_during_data: false,
            delay_reply_after: None,
            fault_sessions: None,
            trickle_greeting: None,
            echo_auth: false,
            echo_auth_cut: 0,
            seven_bit_only: false,
            helo_only: false,
            before_data_reply: None,
        }
    }
}

/// One line the client sent outside DATA content (without CRLF).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub line: String,
    /// TLS was up when the line arrived.
    pub tls: bool,
    /// Which read from the socket brought it: lines with the same number
    /// came in one read, i.e. the client did not wait for a reply between
    /// them (PIPELINING).
    pub read: usize,
}

/// Everything recorded about one connection.
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// Every line outside DATA content, AUTH continuation lines included.
    pub commands: Vec<Command>,
    /// TLS was established at some point.
    pub tls: bool,
    /// Decoded credentials the client presented (even if rejected, or sent before TLS).
    pub auth: Option<(String, String)>,
    pub authenticated: bool,
    /// One per accepted MAIL; `reply` is empty if end-of-data was never reached.
    pub transactions: Vec<Transaction>,
    /// The client sent a DATA command.
    pub reached_data: bool,
    /// Protocol violations noticed (e.g. bytes pipelined after STARTTLS).
    pub violations: Vec<String>,
    /// Why the session ended abnormally (TLS handshake failure, I/O error, timeout).
    pub error: Option<String>,
    /// The connection is over.
    pub ended: bool,
}

impl Session {
    /// The command lines, for easy asserting.
    pub fn lines(&self) -> Vec<&str> {
        self.commands.iter().map(|c| c.line.as_str()).collect()
    }
}

#[derive(Clone, Default)]
pub struct Transaction {
    /// The address inside `<>` of MAIL FROM; `mail_params` is whatever followed `>`.
    pub mail_from: String,
    pub mail_params: String,
    /// Recipients the server accepted / refused.
    pub rcpt_to: Vec<String>,
    pub rcpt_refused: Vec<String>,
    /// Bytes between the 354 and the terminating ".\r\n" line (the last
    /// line's CRLF included), still dot-stuffed.
    pub raw_data: Vec<u8>,
    /// `raw_data` with dot-stuffing removed.
    pub data: Vec<u8>,
    /// Reply to end-of-data; empty if never reached.
    pub reply: String,
}

impl Transaction {
    pub fn data_str(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

impl fmt::Debug for Transaction {
    // Data can be tens of MB: show only its start.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = String::from_utf8_lossy(&self.data[..self.data.len().min(2000)]);
        f.debug_struct("Transaction")
            .field("mail_from", &self.mail_from)
            .field("mail_params", &self.mail_params)
            .field("rcpt_to", &self.rcpt_to)
            .field("rcpt_refused", &self.rcpt_refused)
            .field("data_len", &self.data.len())
            .field("data_head", &head)
            .field("reply", &self.reply)
            .finish()
    }
}

#[derive(Default)]
struct State {
    sessions: Vec<Session>,
    ended: usize,
    /// Per session id, for shutting connections down (taken when it ends).
    streams: Vec<Option<TcpStream>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    stop: AtomicBool,
    queued: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("test server state lock poisoned")
    }
}

/// Dropping it stops the accept loop and shuts down open connections.
pub struct TestServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(b: Behaviour) -> TestServer {
        Self::start_on(b, 0)
    }

    /// Starts on a chosen port (0: any), e.g. where a test first found
    /// nothing listening.
    pub fn start_on(b: Behaviour, port: u16) -> TestServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind test SMTP server");
        let addr = listener.local_addr().expect("local_addr");
        let acceptor = (b.security != Security::Plain)
            .then(|| TlsAcceptor::new(Pki::shared().identity(b.cert)).expect("build TlsAcceptor"));
        let (b, shared) = (Arc::new(b), Arc::new(Shared::default()));
        let sh = shared.clone();
        let accept_thread = std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = tcp else { continue };
                let id = {
                    let mut st = sh.lock();
                    st.streams.push(tcp.try_clone().ok());
                    st.sessions.push(Session::default());
                    st.sessions.len() - 1
                };
                let b = match b.fault_sessions {
                    Some(n) if id >= n => Arc::new(b.recovered()),
                    _ => b.clone(),
                };
                let (sh, acceptor) = (sh.clone(), acceptor.clone());
                std::thread::spawn(move || {
                    let mut smtp = Smtp::new(tcp, &b, acceptor.as_ref(), &sh, id);
                    if let Err(e) = smtp.run() {
                        smtp.s.error = Some(e);
                    }
                    if let Stream::Tls(tls) = &mut smtp.conn.stream {
                        let _ = tls.shutdown(); // close_notify
                    }
                    smtp.s.ended = true;
                    smtp.publish();
                    let mut st = sh.lock();
                    if let Some(tcp) = st.streams[id].take() {
                        let _ = tcp.shutdown(Shutdown::Both);
                    }
                    st.ended += 1;
                    sh.cond.notify_all();
                });
            }
        });
        TestServer {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Snapshot of all sessions (ended and ongoing), in accept order.
    pub fn sessions(&self) -> Vec<Session> {
        self.shared.lock().sessions.clone()
    }

    /// Waits until at least `n` sessions have ended; panics on timeout.
    pub fn wait_sessions(&self, n: usize, timeout: Duration) -> Vec<Session> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while st.ended < n {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                let lines: Vec<_> = st.sessions.iter().map(Session::lines).collect();
                panic!(
                    "{} of {n} sessions ended after {timeout:?}; commands: {lines:?}",
                    st.ended
                );
            };
            st = self
                .shared
                .cond
                .wait_timeout(st, left)
                .expect("state lock poisoned")
                .0;
        }
        st.sessions.clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        for s in self
            .shared
            .lock()
            .streams
            .iter_mut()
            .filter_map(Option::take)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Closed,
}

impl Stream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref()),
            Stream::Closed => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Closed => Ok(()),
        }
    }
}

/// Buffered connection; `buf[pos..]` are received but unconsumed bytes.
struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    /// Reads that returned data so far.
    reads: usize,
}

impl Conn {
    /// Reads more bytes into `buf`; Ok(0) at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        self.buf.drain(..self.pos);
        self.pos = 0;
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        self.reads += usize::from(n > 0);
        Ok(n)
    }

    fn read_line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(i) = self.buf[self.pos..].iter().position(|&c| c == b'\n') {
                let line = &self.buf[self.pos..self.pos + i];
                let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
                self.pos += i + 1;
                return Ok(Some(line.into_owned()));
            }
            if self.buf.len() - self.pos > MAX_LINE {
                return Err(io::Error::other("command line too long"));
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    /// DATA content up to (excluding) "\r\n.\r\n"; None on EOF first. Linear time.
    fn read_data(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut scanned = 0;
        loop {
            let data = &self.buf[self.pos..];
            let end = if data.starts_with(b".\r\n") {
                Some(0)
            } else {
                find_end(data, scanned)
            };
            if let Some(end) = end {
                // The CRLF before the final "." ends the message's last line
                // (RFC 5321 4.1.1.4): it belongs to the content.
                let keep = if end == 0 { 0 } else { end + 2 };
                let content = data[..keep].to_vec();
                self.pos += if end == 0 { 3 } else { end + 5 };
                return Ok(Some(content));
            }
            scanned = data.len().saturating_sub(4);
            // `fill` moves buf[pos..] to the front, keeping `scanned` valid.
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    fn send(&mut self, reply: &str) -> io::Result<()> {
        self.stream.write_all(format!("{reply}\r\n").as_bytes())?;
        self.stream.flush()
    }

    /// Say nothing; swallow input until EOF, error or `SILENT_FOR`.
    fn go_silent(&mut self) {
        let deadline = Instant::now() + SILENT_FOR;
        if let Some(tcp) = self.stream.tcp() {
            let _ = tcp.set_read_timeout(Some(SILENT_FOR));
        }
        let mut sink = [0u8; 8192];
        while Instant::now() < deadline {
            match self.stream.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    }
}

/// Index of the first "\r\n.\r\n" starting at or after `from`. Only looks
/// at newlines, which is much faster than `windows(5)` in debug builds.
fn find_end(data: &[u8], from: usize) -> Option<usize> {
    let mut k = from + 1;
    while let Some(j) = data.get(k..)?.iter().position(|&c| c == b'\n') {
        let nl = k + j;
        if data[nl - 1] == b'\r' && data[nl + 1..].starts_with(b".\r\n") {
            return Some(nl - 1);
        }
        k = nl + 1;
    }
    None
}

fn unstuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, line) in raw.split(|&c| c == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

/// Splits "FROM:<a@b> SIZE=1" (after the verb) into ("a@b", "SIZE=1").
fn parse_path(arg: &str, keyword: &str) -> Option<(String, String)> {
    let head = arg.get(..keyword.len())?;
    let rest = head
        .eq_ignore_ascii_case(keyword)
        .then(|| arg[keyword.len()..].trim_start())?;
    let (addr, params) = rest.strip_prefix('<')?.split_once('>')?;
    Some((addr.to_string(), params.trim().to_string()))
}

fn b64(s: &str) -> Option<String> {
    String::from_utf8(BASE64_STANDARD.decode(s.trim()).ok()?).ok()
}

/// Decodes a SASL PLAIN response "authzid\0user\0pass".
fn plain_creds(s: &str) -> Option<(String, String)> {
    let decoded = b64(s)?;
    let mut parts = decoded.split('\0').skip(1);
    Some((parts.next()?.to_string(), parts.next()?.to_string()))
}

struct Smtp<'a> {
    conn: Conn,
    b: &'a Behaviour,
    acceptor: Option<&'a TlsAcceptor>,
    shared: &'a Shared,
    id: usize,
    s: Session,
    ehlo: bool,
    authed: bool,
    /// Index in `s.transactions` of the open transaction.
    tx: Option<usize>,
}

type Res = Result<(), String>;

impl<'a> Smtp<'a> {
    fn new(
        tcp: TcpStream,
        b: &'a Behaviour,
        acceptor: Option<&'a TlsAcceptor>,
        shared: &'a Shared,
        id: usize,
    ) -> Self {
        // Replies to a pipelined batch are written one by one: without
        // TCP_NODELAY the second waits ~40 ms for the client's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_read_timeout(Some(READ_TIMEOUT));
        let _ = tcp.set_write_timeout(Some(READ_TIMEOUT));
        let conn = Conn {
            stream: Stream::Tcp(tcp),
            buf: Vec::new(),
            pos: 0,
            reads: 0,
        };
        let s = Session::default();
        Smtp {
            conn,
            b,
            acceptor,
            shared,
            id,
            s,
            ehlo: false,
            authed: false,
            tx: None,
        }
    }

    /// Makes the session so far visible to the test. Commands and
    /// transactions only grow and only the last transaction changes, so
    /// only what is new (and that last one) is copied: a session of
    /// thousands of messages (the benchmarks' sink) costs linear time,
    /// not quadratic.
    fn publish(&self) {
        let mut shared = self.shared.lock();
        let out = &mut shared.sessions[self.id];
        // Every field named: a new one is a compile error until copied.
        let Session {
            commands,
            tls,
            auth,
            authenticated,
            transactions,
            reached_data,
            violations,
            error,
            ended,
        } = &self.s;
        out.commands
            .extend_from_slice(&commands[out.commands.len().min(commands.len())..]);
        let keep = out
            .transactions
            .len()
            .min(transactions.len())
            .saturating_sub(1);
        out.transactions.truncate(keep);
        out.transactions.extend_from_slice(&transactions[keep..]);
        out.tls = *tls;
        out.auth.clone_from(auth);
        out.authenticated = *authenticated;
        out.reached_data = *reached_data;
        out.violations.clone_from(violations);
        out.error.clone_from(error);
        out.ended = *ended;
    }

    fn send(&mut self, reply: &str) -> Res {
        self.conn
            .send(reply)
            .map_err(|e| format!("write failed: {e}"))
    }

    /// Next line, recorded in `commands`; Ok(None) at EOF.
    fn next_line(&mut self) -> Result<Option<String>, String> {
        let line = self
            .conn
            .read_line()
            .map_err(|e| format!("read failed: {e}"))?;
        if let Some(line) = &line {
            let tls = matches!(self.conn.stream, Stream::Tls(_));
            self.s.commands.push(Command {
                line: line.clone(),
                tls,
                read: self.conn.reads,
            });
            self.publish();
        }
        Ok(line)
    }

    fn start_tls(&mut self) -> Res {
        let acceptor = self.acceptor.ok_or("no TLS acceptor")?;
        let Stream::Tcp(tcp) = std::mem::replace(&mut self.conn.stream, Stream::Closed) else {
            return Err("TLS already active".into());
        };
        let tls = acceptor
            .accept(tcp)
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        self.conn.stream = Stream::Tls(Box::new(tls));
        self.s.tls = true;
        self.publish();
        Ok(())
    }

    fn tls(&self) -> bool {
        matches!(self.conn.stream, Stream::Tls(_))
    }

    fn auth_allowed(&self) -> bool {
        self.tls() || self.b.allow_auth_without_tls || self.b.security == Security::Plain
    }

    fn run(&mut self) -> Res {
        if self.b.silent {
            self.conn.go_silent();
            return Ok(());
        }
        if self.b.security == Security::ImplicitTls {
            self.start_tls()?;
        }
        if let Some(pause) = self.b.trickle_greeting {
            for byte in format!("{}\r\n", self.b.greeting).bytes() {
                std::thread::sleep(pause);
                if self
                    .conn
                    .stream
                    .write_all(&[byte])
                    .and_then(|()| self.conn.stream.flush())
                    .is_err()
                {
                    return Ok(()); // the client gave up, as it should
                }
            }
        } else {
            self.send(&self.b.greeting.clone())?;
        }
        if !self.b.greeting.starts_with("220") {
            return Ok(());
        }
        while let Some(line) = self.next_line()? {
            let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
            let verb = verb.to_ascii_uppercase();
            if self
                .b
                .delay_reply_after
                .as_ref()
                .is_some_and(|d| d.eq_ignore_ascii_case(&verb))
            {
                self.conn.go_silent();
                return Ok(());
            }
            let done = self.command(&verb, arg.trim())?;
            self.publish();
            if done {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Handles one command; Ok(true) ends the session.
    fn command(&mut self, verb: &str, arg: &str) -> Result<bool, String> {
        let need_ehlo = matches!(verb, "MAIL" | "RCPT" | "DATA" | "AUTH" | "STARTTLS");
        if need_ehlo && !self.ehlo {
            self.send("503 5.5.1 Error: send HELO/EHLO first")?;
            return Ok(false);
        }
        match verb {
            "EHLO" | "HELO" if arg.is_empty() => self.send("501 5.5.4 Syntax: EHLO hostname")?,
            "HELO" => {
                (self.ehlo, self.tx) = (true, None);
                self.send("250 localhost")?;
            }
            "EHLO" if self.b.helo_only => self.send("502 5.5.2 Error: command not recognized")?,
            "EHLO" => {
                (self.ehlo, self.tx) = (true, None);
                let b = self.b;
                let mut ext = vec!["localhost".to_string()];
                ext.extend(b.pipelining.then(|| "PIPELINING".into()));
                ext.extend(b.size.map(|n| format!("SIZE {n}")));
                let starttls = b.security == Security::StartTls && b.offer_starttls && !self.tls();
                ext.extend(starttls.then(|| "STARTTLS".into()));
                let auth = b.auth.is_some() && self.auth_allowed();
                ext.extend(auth.then(|| format!("AUTH {}", self.mechanisms())));
                if !self.b.seven_bit_only {
                    ext.extend(["8BITMIME".into(), "SMTPUTF8".into()]);
                }
                let last = ext.len() - 1;
                let lines: Vec<_> = ext
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("250{}{e}", if i == last { ' ' } else { '-' }))
                    .collect();
                self.send(&lines.join("\r\n"))?;
            }
            "STARTTLS" if self.tls() => self.send("554 5.5.1 Error: TLS already active")?,
            "STARTTLS" if self.b.security != Security::StartTls || !self.b.offer_starttls => {
                self.send("502 5.5.1 Error: command not implemented")?
            }
            "STARTTLS" => {
                self.send("220 2.0.0 Ready to start TLS")?;
                let pending = self.conn.buf.len() - self.conn.pos;
                if pending > 0 {
                    let bytes = String::from_utf8_lossy(&self.conn.buf[self.conn.pos..]);
                    self.s
                        .violations
                        .push(format!("plaintext pipelined after STARTTLS: {bytes:?}"));
                    self.conn.pos = self.conn.buf.len(); // discard, never treat as TLS-protected
                }
                self.start_tls()?;
                (self.ehlo, self.authed, self.tx) = (false, false, None);
            }
            "AUTH" => self.auth(arg)?,
            "MAIL" => self.mail(arg)?,
            "RCPT" => {
                let Some(tx) = self.tx else {
                    self.send("503 5.5.1 Error: need MAIL command")?;
                    return Ok(false);
                };
                let Some((addr, _)) = parse_path(arg, "TO:") else {
                    self.send("501 5.5.4 Syntax: RCPT TO:<address>")?;
                    return Ok(false);
                };
                let reply = self
                    .b
                    .rcpt_replies
                    .iter()
                    .find(|(a, _)| a.eq_ignore_ascii_case(&addr));
                let reply = reply.map_or("250 2.1.5 Ok".to_string(), |(_, r)| r.clone());
                let t = &mut self.s.transactions[tx];
                let list = if reply.starts_with('2') {
                    &mut t.rcpt_to
                } else {
                    &mut t.rcpt_refused
                };
                list.push(addr);
                self.send(&reply)?;
            }
            "DATA" => return self.data(),
            "RSET" => {
                self.tx = None;
                self.send("250 2.0.0 Ok")?;
            }
            "NOOP" => self.send("250 2.0.0 Ok")?,
            "QUIT" => {
                self.send("221 2.0.0 Bye")?;
                return Ok(true);
            }
            _ => self.send("502 5.5.2 Error: command not recognized")?,
        }
        Ok(false)
    }

    fn auth(&mut self, arg: &str) -> Res {
        let (mech, initial) = arg.split_once(' ').unwrap_or((arg, ""));
        let (mech, initial) = (mech.to_ascii_uppercase(), initial.trim());
        let Some((user, pass)) = self.b.auth.clone() else {
            return self.send("503 5.5.1 Error: authentication not enabled");
        };
        if self.authed {
            return self.send("503 5.5.1 Error: already authenticated");
        }
        if !self.auth_allowed() {
            // Still decode what leaked in clear so tests can see it.
            if mech == "PLAIN" && !initial.is_empty() {
                self.s.auth = plain_creds(initial);
            } else if mech == "LOGIN" && !initial.is_empty() {
                self.s.auth = b64(initial).map(|u| (u, String::new()));
            }
            return self
                .send("538 5.7.11 Encryption required for requested authentication mechanism");
        }
        if !self.offers(&mech) {
            return self.send("504 5.5.4 Unsupported authentication mechanism");
        }
        let creds = match mech.as_str() {
            "PLAIN" => {
                let Some(resp) = self.response(initial, "334 ")? else {
                    return Ok(());
                };
                plain_creds(&resp)
            }
            "LOGIN" => {
                let Some(u) = self.response(initial, "334 VXNlcm5hbWU6")? else {
                    return Ok(());
                };
                let Some(p) = self.response("", "334 UGFzc3dvcmQ6")? else {
                    return Ok(());
                };
                b64(&u).zip(b64(&p))
            }
            "XOAUTH2" | "OAUTHBEARER" if self.b.oauth_token.is_some() => {
                return self.oauth(&mech, initial, &user);
            }
            _ => return self.send("504 5.5.4 Unsupported authentication mechanism"),
        };
        let Some(creds) = creds else {
            return self.send("501 5.5.2 Error: invalid base64 or SASL response");
        };
        if self.b.echo_auth {
            let quoted = &initial[..initial.len().saturating_sub(self.b.echo_auth_cut)];
            return self.send(&format!("501 5.5.2 syntax error in AUTH {mech} {quoted}"));
        }
        let ok = creds == (user, pass);
        self.s.auth = Some(creds);
        if ok {
            (self.authed, self.s.authenticated) = (true, true);
            self.send("235 2.7.0 Authentication successful")
        } else {
            let refusal = self.b.auth_refusal.clone();
            self.send(
                refusal
                    .as_deref()
                    .unwrap_or("535 5.7.8 Error: authentication failed"),
            )
        }
    }

    /// The AUTH mechanisms advertised.
    fn mechanisms(&self) -> String {
        match (&self.b.auth_mechanisms, &self.b.oauth_token) {
            (Some(m), _) => m.clone(),
            (None, Some(_)) => "PLAIN LOGIN XOAUTH2 OAUTHBEARER".into(),
            (None, None) => "PLAIN LOGIN".into(),
        }
    }

    fn offers(&self, mech: &str) -> bool {
        self.mechanisms()
            .split(' ')
            .any(|m| m.eq_ignore_ascii_case(mech))
    }

    /// XOAUTH2 (`user=U^Aauth=Bearer T^A^A`) or OAUTHBEARER (`n,a=U,^A...
    /// auth=Bearer T^A^A`): a wrong token gets the JSON error challenge, as
    /// Dovecot sends it, and 535 once the client answered it.
    fn oauth(&mut self, mech: &str, initial: &str, user: &str) -> Res {
        let Some(resp) = self.response(initial, "334 ")? else {
            return Ok(());
        };
        let Some(decoded) = b64(&resp) else {
            return self.send("501 5.5.2 Error: invalid base64 or SASL response");
        };
        let fields: Vec<&str> = decoded.split('\x01').collect();
        let (presented, gs2_ok) = match mech {
            "XOAUTH2" => (
                fields.first().and_then(|f| f.strip_prefix("user=")),
                decoded.ends_with("\x01\x01"),
            ),
            _ => (
                fields
                    .first()
                    .and_then(|f| f.strip_prefix("n,a="))
                    .and_then(|f| f.strip_suffix(',')),
                decoded.ends_with("\x01\x01")
                    && fields.iter().any(|f| f.starts_with("host="))
                    && fields.iter().any(|f| f.starts_with("port=")),
            ),
        };
        let token = fields
            .iter()
            .find_map(|f| f.strip_prefix("auth=Bearer "))
            .unwrap_or_default()
            .to_owned();
        let presented = presented.unwrap_or_default().to_owned();
        let ok = gs2_ok && presented == user && Some(&token) == self.b.oauth_token.as_ref();
        self.s.auth = Some((presented, token));
        if ok {
            (self.authed, self.s.authenticated) = (true, true);
            return self.send("235 2.7.0 Authentication successful");
        }
        let json = match mech {
            "XOAUTH2" => {
                r#"{"status":"401","schemes":"bearer","scope":"https://mail.example.com/"}"#
            }
            _ => r#"{"status":"invalid_token"}"#,
        };
        self.send(&format!("334 {}", BASE64_STANDARD.encode(json)))?;
        let answer = self.next_line()?.ok_or("EOF during AUTH")?;
        let expected = if mech == "XOAUTH2" { "" } else { "AQ==" };
        if answer != expected {
            self.s
                .violations
                .push(format!("{mech} error challenge answered with {answer:?}"));
        }
        self.send("535 5.7.8 Error: authentication failed")
    }

    /// `initial` if non-empty, else prompts and reads a line. Ok(None) if the
    /// client cancelled with "*" (already answered).
    fn response(&mut self, initial: &str, prompt: &str) -> Result<Option<String>, String> {
        if !initial.is_empty() {
            return Ok(Some(initial.to_string()));
        }
        self.send(prompt)?;
        let line = self.next_line()?.ok_or("EOF during AUTH")?;
        if line.trim() == "*" {
            self.send("501 5.7.0 Authentication aborted")?;
            return Ok(None);
        }
        Ok(Some(line))
    }

    fn mail(&mut self, arg: &str) -> Res {
        if self.tx.is_some() {
            return self.send("503 5.5.1 Error: nested MAIL command");
        }
        if self.b.auth.is_some() && !self.authed {
            return self.send("530 5.7.0 Authentication required");
        }
        let Some((mail_from, mail_params)) = parse_path(arg, "FROM:") else {
            return self.send("501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        let declared = mail_params.split(' ').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.eq_ignore_ascii_case("SIZE")
                .then(|| v.parse::<usize>().ok())?
        });
        let reply = match (&self.b.mail_reply, self.b.size, declared) {
            (Some(r), _, _) => r.clone(),
            (None, Some(max), Some(n)) if n > max => {
                "552 5.3.4 Message size exceeds fixed limit".into()
            }
            _ => "250 2.1.0 Ok".into(),
        };
        if reply.starts_with('2') {
            let t = Transaction {
                mail_from,
                mail_params,
                ..Default::default()
            };
            self.s.transactions.push(t);
            self.tx = Some(self.s.transactions.len() - 1);
        }
        self.send(&reply)
    }

    fn data(&mut self) -> Result<bool, String> {
        self.s.reached_data = true;
        let Some(tx) = self.tx else {
            self.send("503 5.5.1 Error: need RCPT command")?;
            return Ok(false);
        };
        if self.s.transactions[tx].rcpt_to.is_empty() {
            self.send("554 5.5.1 Error: no valid recipients")?;
            return Ok(false);
        }
        self.send("354 End data with <CR><LF>.<CR><LF>")?;
        if self.b.drop_during_data {
            if self.conn.pos == self.conn.buf.len() {
                let _ = self.conn.fill();
            }
            return Ok(true);
        }
        let raw = self
            .conn
            .read_data()
            .map_err(|e| format!("read failed in DATA: {e}"))?;
        let raw = raw.ok_or("EOF during DATA")?;
        let data = unstuff(&raw);
        let reply = if self.b.size.is_some_and(|max| data.len() > max) {
            "552 5.3.4 Message size exceeds fixed limit".to_string()
        } else if let Some(r) = &self.b.data_reply {
            r.clone()
        } else {
            let n = self.shared.queued.fetch_add(1, Ordering::SeqCst) + 1;
            format!("250 2.0.0 Ok: queued as TEST{n}")
        };
        let silent = self.b.delay_reply_after.as_deref() == Some(".");
        let t = &mut self.s.transactions[tx];
        (t.raw_data, t.data) = (raw, data);
        if !silent {
            t.reply = reply.clone();
        }
        self.tx = None;
        if silent {
            self.publish();
            self.conn.go_silent();
            return Ok(true);
        }
        if let Some(Hook(hook)) = &self.b.before_data_reply {
            self.publish();
            hook();
        }
        self.send(&reply)?;
        Ok(false)
    }
}
