//! The SMTP dialogue against servers that misbehave byte for byte: each
//! test scripts the server's side and checks what the client did with it.

use std::process::Stdio;
use std::time::Duration;

use super::with_auth;
use crate::support::cmd::Mailsend;
use crate::support::script::{Peer, Scripted};
use crate::support::server::{Behaviour, Cert, TestServer};

/// mailsend aimed at a scripted plain-text server (no TLS, no AUTH).
fn plain(server: &Scripted) -> Mailsend {
    let mut m = Mailsend::bare();
    m.env("MAILSEND_HOST", "127.0.0.1")
        .env("MAILSEND_PORT", &server.port().to_string())
        .env("MAILSEND_TLS", "none")
        .env("MAILSEND_FROM", "me@example.com")
        .env("MAILSEND_TIMEOUT", "5s");
    m
}

/// `--json` result of a send to a@ and b@example.com, which must exit `code`.
fn json_of_send_to_two(server: &Scripted, code: i32) -> serde_json::Value {
    let run = plain(server)
        .args(["--to", "a@example.com", "--to", "b@example.com"])
        .args(["--body", "x", "--json"])
        .run()
        .expect(code);
    serde_json::from_str(run.stdout().trim()).expect("json")
}

/// The rest of a polite session: QUIT answered.
fn bye(peer: &mut Peer) {
    while let Some(line) = peer.line() {
        if line.eq_ignore_ascii_case("QUIT") {
            peer.send("221 bye\r\n");
            return;
        }
        peer.send("250 ok\r\n");
    }
}

#[test]
fn a_pipelined_mail_refused_with_421_and_a_hang_up_is_quoted() {
    let server = Scripted::start(|peer| {
        peer.hello(&["PIPELINING"]);
        peer.lines(3); // MAIL, RCPT, DATA in one group
        peer.send("421 4.7.0 Too many connections from your address\r\n");
        // and the server hangs up
    });
    let run = plain(&server)
        .args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(75);
    run.error_mentions("421 4.7.0 Too many connections from your address");
    assert!(
        !run.stderr().contains("closed the connection"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_3xx_reply_to_rcpt_is_a_refusal() {
    let server = Scripted::start(|peer| {
        peer.hello(&["PIPELINING"]);
        peer.lines(4); // MAIL, 2 RCPT, DATA
        peer.send("250 ok\r\n250 ok\r\n354 you are not supposed to say this\r\n354 go\r\n");
        peer.data();
        peer.send("250 2.0.0 queued\r\n");
        bye(peer);
    });
    let json = json_of_send_to_two(&server, 76);
    assert_eq!(json["accepted"], serde_json::json!(["a@example.com"]));
    assert_eq!(json["rejected"][0]["address"], "b@example.com");
    assert_eq!(json["rejected"][0]["code"], 354);
}

#[test]
fn an_over_long_reply_line_never_shifts_the_replies() {
    // The first refusal is longer than the 4096 bytes a line may keep; its
    // tail, were it taken for a reply, would accept b@ and shift the rest.
    let mut long = "550 5.1.1 no such user ".to_string();
    long.push_str(&"x".repeat(4096 - long.len()));
    long.push_str("250 2.1.5 fake acceptance\r\n");
    let server = Scripted::start(move |peer| {
        peer.hello(&["PIPELINING"]);
        peer.lines(4);
        peer.send(format!(
            "250 ok\r\n{long}550 5.1.1 no such user b\r\n554 no valid recipients\r\n"
        ));
        bye(peer);
    });
    let json = json_of_send_to_two(&server, 69);
    assert_eq!(json["accepted"], serde_json::json!([]));
    assert_eq!(json["rejected"][1]["text"], "5.1.1 no such user b");
    let received = server.received();
    assert!(
        !received.contains("\r\n.\r\n"),
        "no message content was sent: {received}"
    );
}

#[test]
fn server_text_reaches_the_terminal_escaped() {
    let server = Scripted::start(|peer| {
        peer.hello(&[]);
        peer.line();
        peer.send("250 ok\r\n");
        peer.line();
        peer.send("550 5.1.1 \x1b]0;owned\x07\x1b[2J bad\rFAKE \u{202e}olleh\r\n");
        bye(peer);
    });
    let run = plain(&server)
        .args(["--to", "a@example.com", "--body", "x", "-v"])
        .run()
        .expect(69);
    let stderr = run.stderr();
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\x07'),
        "{stderr:?}"
    );
    assert!(!stderr.contains('\u{202e}'), "{stderr:?}");
    assert!(!stderr.replace("\r\n", "\n").contains('\r'), "{stderr:?}");
    assert!(stderr.contains(r"\u{1b}[2J bad\u{d}FAKE"), "{stderr}");
}

#[test]
fn a_slow_content_scanner_gets_more_than_the_command_timeout() {
    let server = Scripted::start(|peer| {
        peer.hello(&["PIPELINING"]);
        peer.lines(3);
        peer.send("250 ok\r\n250 ok\r\n354 go\r\n");
        peer.data();
        std::thread::sleep(Duration::from_millis(2500));
        peer.send("250 2.0.0 scanned and queued\r\n");
        bye(peer);
    });
    plain(&server)
        .args(["--timeout", "1s", "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(0);
}

#[test]
fn a_certificate_naming_the_host_only_in_its_cn_is_refused() {
    let server = TestServer::start(with_auth(Behaviour {
        cert: Cert::CnOnly,
        ..Behaviour::default()
    }));
    let run = Mailsend::to(&server)
        .env("MAILSEND_HOST", "localhost")
        .args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(77);
    run.error_mentions("not trusted");
}

#[test]
fn a_server_demanding_a_client_certificate_is_not_a_temporary_failure() {
    let server = Scripted::start(|peer| {
        peer.hello(&["STARTTLS"]);
        peer.line(); // STARTTLS
        if peer.start_tls_demanding_client_cert().is_ok() {
            bye(peer);
        }
    });
    let run = Mailsend::to_port(server.port())
        .env("MAILSEND_HOST", "localhost")
        .args(["--to", "a@example.com", "--body", "x"])
        .run();
    assert!(
        [76, 77].contains(&run.code()),
        "exit {}: {}",
        run.code(),
        run.stderr()
    );
    run.assert_no_password();
    assert!(
        run.stderr().contains("client certificate"),
        "{}",
        run.stderr()
    );
}

/// `mailsend -v ... 2>&1 | head -2`: the reader goes away; the message
/// must still be sent and the exit code tell the truth.
#[test]
fn closed_stdout_and_stderr_do_not_stop_a_delivery() {
    for json in [false, true] {
        let server = super::submission();
        let mut m = Mailsend::to(&server);
        m.args(["--to", "a@example.com", "--body", "x", "-v"]);
        if json {
            m.args(["--json"]);
        }
        let mut child = m.spawn_with(Stdio::piped(), Stdio::piped());
        // Close both read ends at once: every write gets EPIPE.
        drop(child.stdout.take());
        drop(child.stderr.take());
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "json={json}: {status:?}");
        let tx = super::only_transaction(&server);
        assert!(tx.reply.starts_with("250"), "{tx:?}");
    }
}
