//! Self-test of the SMTP test server in `tests/support/`.
mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::prelude::*;
use native_tls::{TlsConnector, TlsStream};
use support::pki::{Cert, Pki};
use support::server::{Behaviour, Security, Session, TestServer};

const WAIT: Duration = Duration::from_secs(10);

/// Minimal SMTP client over any stream.
struct Client<S: Read + Write> {
    r: BufReader<S>,
}

impl<S: Read + Write> Client<S> {
    fn new(s: S) -> Self {
        Client {
            r: BufReader::new(s),
        }
    }

    fn send(&mut self, text: &str) {
        self.r
            .get_mut()
            .write_all(text.as_bytes())
            .expect("client write");
    }

    /// Reads one (possibly multi-line) reply, lines joined with '\n'.
    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).expect("client read");
            assert!(n > 0, "EOF while waiting for a reply after {lines:?}");
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n"));
        self.reply()
    }

    fn into_inner(self) -> S {
        assert!(
            self.r.buffer().is_empty(),
            "unread bytes before TLS upgrade"
        );
        self.r.into_inner()
    }
}

fn connect(server: &TestServer) -> Client<TcpStream> {
    let tcp = TcpStream::connect(server.addr).expect("connect to test server");
    tcp.set_read_timeout(Some(WAIT)).expect("set_read_timeout");
    Client::new(tcp)
}

fn connector() -> TlsConnector {
    TlsConnector::builder()
        .add_root_certificate(Pki::shared().ca_certificate())
        .build()
        .expect("TLS connector")
}

fn upgrade(c: Client<TcpStream>, host: &str) -> Client<TlsStream<TcpStream>> {
    Client::new(
        connector()
            .connect(host, c.into_inner())
            .expect("TLS handshake"),
    )
}

fn one_session(server: &TestServer) -> Session {
    server.wait_sessions(1, WAIT).remove(0)
}

#[test]
fn starttls_auth_pipelined_transaction() {
    let server = TestServer::start(Behaviour {
        auth: Some(("user".into(), "s3cret".into())),
        size: Some(1000),
        rcpt_replies: vec![(
            "c@example.com".into(),
            "550 5.1.1 <c@example.com>: Recipient address rejected".into(),
        )],
        ..Behaviour::default()
    });
    let mut c = connect(&server);
    assert_eq!(c.reply(), "220 localhost ESMTP test");
    let ehlo = c.cmd("EHLO client.test");
    assert!(
        ehlo.contains("250-STARTTLS") && ehlo.contains("SIZE 1000"),
        "{ehlo}"
    );
    assert!(!ehlo.contains("AUTH"), "AUTH offered before TLS: {ehlo}");
    assert_eq!(c.cmd("STARTTLS"), "220 2.0.0 Ready to start TLS");

    let mut c = upgrade(c, "localhost");
    let ehlo = c.cmd("EHLO client.test");
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert!(ehlo.ends_with("250 SMTPUTF8"), "{ehlo}");
    let token = BASE64_STANDARD.encode("\0user\0s3cret");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {token}")),
        "235 2.7.0 Authentication successful"
    );

    c.send(concat!(
        "MAIL FROM:<a@example.com> SIZE=100\r\n",
        "RCPT TO:<b@example.com>\r\n",
        "RCPT TO:<c@example.com>\r\n",
        "DATA\r\n",
    ));
    assert_eq!(c.reply(), "250 2.1.0 Ok");
    assert_eq!(c.reply(), "250 2.1.5 Ok");
    assert!(c.reply().starts_with("550 5.1.1"));
    assert_eq!(c.reply(), "354 End data with <CR><LF>.<CR><LF>");
    c.send("Subject: hi\r\n\r\n..leading dot\r\n..\r\nend\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as TEST"));
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");

    let s = one_session(&server);
    assert!(
        s.tls && s.authenticated && s.reached_data && s.error.is_none(),
        "{s:?}"
    );
    assert!(s.violations.is_empty(), "{s:?}");
    assert_eq!(s.auth, Some(("user".into(), "s3cret".into())));
    let tls_flags: Vec<_> = s.commands.iter().map(|c| c.tls).collect();
    assert_eq!(
        tls_flags,
        [false, false, true, true, true, true, true, true, true]
    );
    assert_eq!(s.commands[3].line, format!("AUTH PLAIN {token}"));
    let [t] = &s.transactions[..] else {
        panic!("one transaction expected: {s:?}")
    };
    assert_eq!(
        (t.mail_from.as_str(), t.mail_params.as_str()),
        ("a@example.com", "SIZE=100")
    );
    assert_eq!(t.rcpt_to, ["b@example.com"]);
    assert_eq!(t.rcpt_refused, ["c@example.com"]);
    assert_eq!(
        t.raw_data,
        b"Subject: hi\r\n\r\n..leading dot\r\n..\r\nend\r\n"
    );
    assert_eq!(t.data, b"Subject: hi\r\n\r\n.leading dot\r\n.\r\nend\r\n");
    assert!(t.reply.starts_with("250 2.0.0 Ok: queued as TEST"));
}

#[test]
fn auth_refused_before_tls_but_recorded() {
    let server = TestServer::start(Behaviour {
        auth: Some(("user".into(), "pw".into())),
        ..Behaviour::default()
    });
    let mut c = connect(&server);
    c.reply();
    c.cmd("EHLO x");
    let token = BASE64_STANDARD.encode("\0user\0pw");
    assert!(
        c.cmd(&format!("AUTH PLAIN {token}"))
            .starts_with("538 5.7.11")
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.com>"),
        "530 5.7.0 Authentication required"
    );
    c.cmd("QUIT");
    let s = one_session(&server);
    assert_eq!(s.auth, Some(("user".into(), "pw".into())));
    assert!(!s.authenticated && !s.tls && s.commands.iter().all(|c| !c.tls));
    assert!(s.transactions.is_empty());
}

#[test]
fn plain_mode_auth_login_and_plain_continuation() {
    let server = TestServer::start(Behaviour {
        security: Security::Plain,
        auth: Some(("u".into(), "p".into())),
        pipelining: false,
        ..Behaviour::default()
    });
    let mut c = connect(&server);
    c.reply();
    let ehlo = c.cmd("EHLO x");
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert!(!ehlo.contains("PIPELINING"), "{ehlo}");
    assert_eq!(
        c.cmd("STARTTLS"),
        "502 5.5.1 Error: command not implemented"
    );
    assert_eq!(c.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd(&BASE64_STANDARD.encode("u")), "334 UGFzc3dvcmQ6");
    assert_eq!(
        c.cmd(&BASE64_STANDARD.encode("wrong")),
        "535 5.7.8 Error: authentication failed"
    );
    assert_eq!(c.cmd("AUTH PLAIN"), "334");
    let ok = c.cmd(&BASE64_STANDARD.encode("\0u\0p"));
    assert_eq!(ok, "235 2.7.0 Authentication successful");
    assert_eq!(c.cmd("FOO"), "502 5.5.2 Error: command not recognized");
    drop(c); // no QUIT: close ends the session too
    let s = one_session(&server);
    assert!(s.authenticated && s.error.is_none());
    assert_eq!(s.auth, Some(("u".into(), "p".into())));
    assert_eq!(s.commands.len(), 8, "{:?}", s.lines());
}

#[test]
fn pki_writes_both_ca_files() {
    let pki = Pki::new();
    assert!(pki.ca_file.exists() && pki.untrusted_ca_file.exists());
}

#[test]
fn certificates_checked_by_native_tls_client() {
    for (cert, host, ok) in [
        (Cert::Good, "localhost", true),
        (Cert::Good, "127.0.0.1", true),
        (Cert::WrongHost, "localhost", false),
        (Cert::Expired, "localhost", false),
        (Cert::Untrusted, "localhost", false),
    ] {
        let server = TestServer::start(Behaviour {
            security: Security::ImplicitTls,
            cert,
            ..Behaviour::default()
        });
        let tcp = TcpStream::connect(server.addr).expect("connect");
        match connector().connect(host, tcp) {
            Ok(tls) => {
                assert!(ok, "{cert:?} accepted for {host}");
                let mut c = Client::new(tls);
                assert_eq!(c.reply(), "220 localhost ESMTP test");
                assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
            }
            Err(e) => assert!(!ok, "{cert:?} rejected for {host}: {e}"),
        }
        let s = one_session(&server);
        assert_eq!(s.tls, ok, "{cert:?}: {s:?}");
        assert_eq!(s.error.is_some(), !ok, "{cert:?}: {s:?}");
    }
}

#[test]
fn plaintext_pipelined_after_starttls_is_a_violation() {
    let server = TestServer::start(Behaviour::default());
    let mut c = connect(&server);
    c.reply();
    c.cmd("EHLO x");
    c.send("STARTTLS\r\nMAIL FROM:<evil@example.com>\r\n");
    assert_eq!(c.reply(), "220 2.0.0 Ready to start TLS");
    let mut c = upgrade(c, "localhost");
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.com>"),
        "503 5.5.1 Error: send HELO/EHLO first"
    );
    c.cmd("QUIT");
    let s = one_session(&server);
    assert_eq!(s.violations.len(), 1, "{s:?}");
    assert!(s.violations[0].contains("evil@example.com"));
    assert!(s.transactions.is_empty());
}

#[test]
fn empty_and_large_messages_and_size_limit() {
    let server = TestServer::start(Behaviour {
        security: Security::Plain,
        size: Some(20_000_000),
        ..Behaviour::default()
    });
    let mut c = connect(&server);
    c.reply();
    c.cmd("HELO x");
    // Empty message, with QUIT pipelined right after the terminator.
    c.send("MAIL FROM:<>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
    assert_eq!([c.reply(), c.reply()], ["250 2.1.0 Ok", "250 2.1.5 Ok"]);
    assert!(c.reply().starts_with("354"));
    c.send(".\r\nMAIL FROM:<a@example.com> SIZE=20000001\r\n");
    assert!(c.reply().starts_with("250 2.0.0"));
    assert!(c.reply().starts_with("552 5.3.4"));
    // ~24 MB message: over the limit.
    let line = format!(".{}\r\n", "x".repeat(998));
    let body = line.repeat(24_000);
    assert_eq!(c.cmd("MAIL FROM:<a@example.com>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<b@example.com>"), "250 2.1.5 Ok");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(&body);
    c.send(".\r\n");
    assert_eq!(c.reply(), "552 5.3.4 Message size exceeds fixed limit");
    c.cmd("QUIT");
    let s = one_session(&server);
    let t = &s.transactions;
    assert_eq!(t.len(), 2, "{s:?}");
    assert!(t[0].raw_data.is_empty() && t[0].data.is_empty() && t[0].reply.starts_with("250"));
    assert_eq!(t[1].raw_data.len(), body.len());
    assert_eq!(t[1].data.len(), body.len() - 24_000);
}

#[test]
fn failure_behaviours() {
    // Greeting refusal closes the connection.
    let server = TestServer::start(Behaviour {
        greeting: "421 4.3.2 Service not available".into(),
        ..Behaviour::default()
    });
    let mut c = connect(&server);
    assert_eq!(c.reply(), "421 4.3.2 Service not available");
    assert_eq!(c.r.read(&mut [0u8; 16]).expect("read"), 0, "expected EOF");
    one_session(&server);

    // Silent server: nothing ever arrives; the session ends when we close.
    let server = TestServer::start(Behaviour {
        silent: true,
        ..Behaviour::default()
    });
    let tcp = TcpStream::connect(server.addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let err = (&tcp)
        .read(&mut [0u8; 16])
        .expect_err("silent server sent data");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    drop(tcp);
    one_session(&server);

    // Drop during DATA: connection closed without a reply.
    let server = TestServer::start(Behaviour {
        security: Security::Plain,
        drop_during_data: true,
        ..Behaviour::default()
    });
    let mut c = connect(&server);
    c.reply();
    c.cmd("EHLO x");
    c.cmd("MAIL FROM:<a@example.com>");
    c.cmd("RCPT TO:<b@example.com>");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send("Subject: x\r\n\r\nbody\r\n.\r\n");
    // Closed with our bytes unread: EOF or a reset, never a reply.
    assert!(
        matches!(c.r.read(&mut [0u8; 16]), Ok(0) | Err(_)),
        "expected no reply"
    );
    let s = one_session(&server);
    assert!(s.reached_data && s.transactions[0].reply.is_empty());

    // Going silent after MAIL; dropping the server closes our connection.
    let server = TestServer::start(Behaviour {
        security: Security::Plain,
        delay_reply_after: Some("mail".into()),
        mail_reply: Some("451 4.3.0 never sent".into()),
        ..Behaviour::default()
    });
    let mut c = connect(&server);
    c.reply();
    c.cmd("EHLO x");
    c.send("MAIL FROM:<a@example.com>\r\n");
    c.r.get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let err =
        c.r.read(&mut [0u8; 16])
            .expect_err("server replied to MAIL");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    let s = server.sessions();
    assert_eq!(s[0].lines(), ["EHLO x", "MAIL FROM:<a@example.com>"]);
    assert!(!s[0].ended);
    drop(server);
    c.r.get_ref().set_read_timeout(Some(WAIT)).expect("timeout");
    assert_eq!(c.r.read(&mut [0u8; 16]).expect("read after server drop"), 0);
}
