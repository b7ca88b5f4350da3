//! The session against scripted server bytes: every protocol rule checked
//! without a socket.

use std::io::{self, Read, Write};
use std::time::Duration;

use super::auth::{Bearer, Login, Plain};
use super::caps::Capabilities;
use super::session::{Options, Session, Wire};
use super::*;
use crate::secret::Secret;

/// A server that has already said everything it will say: reads hand out
/// `server` at most `chunk` bytes at a time, and never past the end of a
/// segment (by default each reply is one, as a server sends them); every
/// write is recorded as one entry, so a test sees which commands left
/// together.
struct Script {
    segments: std::collections::VecDeque<Vec<u8>>,
    chunk: usize,
    writes: Vec<Vec<u8>>,
    deadlines: Vec<Duration>,
    write_deadlines: Vec<Duration>,
}

impl Script {
    fn new(server: &str, chunk: usize) -> Script {
        let mut segments = std::collections::VecDeque::new();
        let mut current = Vec::new();
        for line in server.split_inclusive('\n') {
            current.extend_from_slice(line.as_bytes());
            if line.as_bytes().get(3) != Some(&b'-') {
                segments.push_back(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            segments.push_back(current);
        }
        Script::segments(segments.into(), chunk)
    }

    /// The server's bytes in the segments given (one TCP read can bring
    /// at most one).
    fn segments(segments: Vec<Vec<u8>>, chunk: usize) -> Script {
        Script {
            segments: segments.into(),
            chunk,
            writes: Vec::new(),
            deadlines: Vec::new(),
            write_deadlines: Vec::new(),
        }
    }

    /// The client's writes, as text.
    fn sent(&self) -> Vec<String> {
        self.writes
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(segment) = self.segments.front_mut() else {
            return Ok(0);
        };
        let n = buf.len().min(self.chunk).min(segment.len());
        buf[..n].copy_from_slice(&segment[..n]);
        segment.drain(..n);
        if segment.is_empty() {
            self.segments.pop_front();
        }
        Ok(n)
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Wire for Script {
    fn set_deadline(&mut self, wait: Duration) {
        self.deadlines.push(wait);
    }

    fn set_write_deadline(&mut self, budget: Duration) {
        self.write_deadlines.push(budget);
    }
}

fn options() -> Options {
    Options {
        helo: "[192.0.2.1]".into(),
        timeout: Duration::from_secs(30),
        verbose: false,
    }
}

const GREETING_EHLO: &str = "220 mx.example.com ESMTP\r\n\
    250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n\
    250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n";

/// A greeted session over `server` bytes (which start after EHLO's reply).
fn session(server: &str, chunk: usize) -> Session<Script> {
    let mut s = Session::new(
        Script::new(&format!("{GREETING_EHLO}{server}"), chunk),
        options(),
        Some("TLSv1.3".into()),
    );
    s.greeting().expect("greeting");
    s.ehlo(false).expect("ehlo");
    s
}

/// A plain session over `script`, greeted and past EHLO.
fn greeted(script: Script) -> Session<Script> {
    let mut s = Session::new(script, options(), None);
    s.greeting().expect("greeting");
    s.ehlo(false).expect("ehlo");
    s
}

/// The server's bytes in the segments given.
fn segmented(segments: &[&str]) -> Script {
    Script::segments(
        segments.iter().map(|s| s.as_bytes().to_vec()).collect(),
        4096,
    )
}

fn to(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn replies_split_across_reads_and_multi_line_ehlo() {
    for chunk in [1, 3, 7, 4096] {
        let s = session("", chunk);
        let caps = s.capabilities();
        assert!(caps.pipelining && caps.starttls && caps.eightbitmime);
        assert_eq!(caps.size, Some(100_000));
        assert_eq!(caps.auth, ["PLAIN", "LOGIN"]);
    }
}

#[test]
fn a_code_that_changes_mid_reply_is_a_protocol_error() {
    let mut s = Session::new(
        Script::new("220 hi\r\n250-mx\r\n251 PIPELINING\r\n", 5),
        options(),
        None,
    );
    s.greeting().expect("greeting");
    let err = s.ehlo(false).unwrap_err();
    assert!(
        matches!(&err, SmtpError::Protocol { stage: Stage::Ehlo, detail } if detail.contains("changed")),
        "{err:?}"
    );
}

#[test]
fn one_session_carries_many_messages_with_pipelining() {
    let per_message = "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n250 2.0.0 queued\r\n";
    let mut s = session(
        &format!("{per_message}{per_message}{per_message}221 bye\r\n"),
        64,
    );
    for i in 0..3 {
        let d = s
            .send(
                "me@example.com",
                &to(&["a@example.com"]),
                format!("Subject: {i}\r\n\r\nbody\r\n").as_bytes(),
                false,
            )
            .expect("sent");
        assert_eq!(d.accepted, ["a@example.com"]);
        assert_eq!(d.reply.map(|r| r.code), Some(250));
    }
    let script = s.quit();
    let sent = script.sent();
    // EHLO, then per message: one write with MAIL+RCPT+DATA, one with the
    // content; then QUIT. No RSET between clean transactions.
    assert_eq!(sent.len(), 1 + 3 * 2 + 1, "{sent:?}");
    assert_eq!(
        sent[1],
        "MAIL FROM:<me@example.com> SIZE=20\r\nRCPT TO:<a@example.com>\r\nDATA\r\n"
    );
    assert_eq!(sent[2], "Subject: 0\r\n\r\nbody\r\n.\r\n");
    assert!(sent.iter().all(|w| !w.starts_with("RSET")), "{sent:?}");
    assert_eq!(sent[7], "QUIT\r\n");
}

#[test]
fn a_failed_transaction_is_reset_before_the_next_one() {
    // The first message is refused after DATA's 354 was never reached
    // (DATA refused): the next one starts with RSET.
    let server = "250 ok\r\n250 ok\r\n554 5.5.1 no\r\n\
                  250 2.0.0 reset\r\n\
                  250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n";
    let mut s = session(server, 4096);
    let err = s
        .send("me@example.com", &to(&["a@example.com"]), b"x\r\n", false)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SmtpError::Refused {
                stage: Stage::Data,
                ..
            }
        ),
        "{err:?}"
    );
    s.send("me@example.com", &to(&["a@example.com"]), b"y\r\n", false)
        .expect("second message");
    let sent = s.quit().sent();
    assert!(
        sent[2].starts_with("RSET\r\nMAIL FROM:"),
        "RSET leads the next group: {sent:?}"
    );
}

#[test]
fn bytes_after_the_starttls_220_abort_the_session() {
    let segments = [
        "220 hi\r\n",
        "250-mx\r\n250 STARTTLS\r\n",
        "220 go ahead\r\n250 injected\r\n",
    ];
    let s = Session::new(segmented(&segments), options(), None);
    let mut s = s;
    s.greeting().expect("greeting");
    s.ehlo(false).expect("ehlo");
    let mut handshook = false;
    let err = s
        .starttls(|stream| {
            handshook = true;
            Ok((stream, "TLSv1.3".to_string()))
        })
        .err()
        .expect("refused");
    assert!(!handshook, "no handshake after injected bytes");
    assert!(
        matches!(&err, SmtpError::Protocol { stage: Stage::StartTls, detail } if detail.contains("before the TLS handshake")),
        "{err:?}"
    );
}

#[test]
fn starttls_says_ehlo_again_and_keeps_what_was_offered_in_clear() {
    let s = greeted(Script::new(
        "220 hi\r\n250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n250-mx\r\n250 AUTH PLAIN\r\n",
        1,
    ));
    let s = s
        .starttls(|stream| Ok((stream, "TLSv1.3".to_string())))
        .expect("upgraded");
    assert_eq!(s.tls_version(), Some("TLSv1.3"));
    assert!(s.capabilities().offers_auth("PLAIN"));
    assert!(!s.capabilities().starttls);
    assert!(s.capabilities_before_tls().is_some_and(|c| c.starttls));
}

#[test]
fn auth_login_answers_each_challenge_and_hides_the_secrets() {
    let password = Secret::new("s3cr3t-Pa55".into());
    // The server quotes most of the password back in its refusal.
    let server = "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n535 5.7.8 bad czNjcjN0LVBhNT\r\n";
    let mut s = session(server, 3);
    let err = s
        .authenticate(&mut Login::new("me@example.com", &password))
        .unwrap_err();
    let sent = s.quit().sent();
    assert_eq!(sent[1], "AUTH LOGIN\r\n");
    assert_eq!(sent[2], "bWVAZXhhbXBsZS5jb20=\r\n");
    assert_eq!(sent[3], "czNjcjN0LVBhNTU=\r\n");
    let shown = err.to_string();
    assert!(shown.contains("535 5.7.8 bad <redacted>"), "{shown}");
    assert!(!shown.contains("czNjcjN0"), "{shown}");
}

#[test]
fn auth_plain_in_one_line_and_504_is_a_protocol_failure() {
    let password = Secret::new("pw".into());
    let mut s = session("504 5.5.4 Unrecognized authentication type\r\n", 4096);
    let err = s
        .authenticate(&mut Plain::new("me", &password))
        .unwrap_err();
    assert_eq!(err.class(), Class::Protocol);
    let sent = s.quit().sent();
    assert_eq!(sent[1], "AUTH PLAIN AG1lAHB3\r\n");
}

#[test]
fn a_3xx_where_2xx_is_due_is_not_success() {
    // Without PIPELINING: MAIL answered with 354.
    let mut s = greeted(Script::new("220 hi\r\n250 mx\r\n354 what\r\n", 4096));
    let err = s
        .send("me@example.com", &to(&["a@example.com"]), b"x", false)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SmtpError::Refused {
                stage: Stage::MailFrom,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), Class::Protocol);
}

#[test]
fn no_recipient_never_reaches_the_server() {
    let mut s = session("", 4096);
    let err = s.send("me@example.com", &[], b"x", false).unwrap_err();
    assert!(matches!(err, SmtpError::NoRecipients), "{err:?}");
    assert_eq!(s.quit().sent().len(), 2, "only EHLO and QUIT");
}

#[test]
fn the_end_of_data_reply_may_take_ten_minutes() {
    let mut s = session("250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n", 4096);
    s.send("me@example.com", &to(&["a@example.com"]), b"x", false)
        .expect("sent");
    // Only the end-of-data reply gets 10 minutes; every other read the
    // command timeout (QUIT's reply: 2 s at most).
    let deadlines = s.quit().deadlines;
    let long: Vec<_> = deadlines
        .iter()
        .filter(|d| **d > options().timeout)
        .collect();
    assert_eq!(long, [&Duration::from_secs(600)], "{deadlines:?}");
}

#[test]
fn a_large_write_gets_a_deadline_that_grows_with_its_size() {
    let content = vec![b'x'; 90 << 10]; // under the SIZE of 100000
    let mut s = session("250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n", 4096);
    s.send("me@example.com", &to(&["a@example.com"]), &content, false)
        .expect("sent");
    let script = s.quit();
    // 90 KiB at the slowest rate allowed: 30 s + 9 s; commands 30 s.
    let longest = script.write_deadlines.iter().max().copied();
    assert_eq!(longest, Some(Duration::from_secs(30 + 9)));
    assert!(
        script
            .write_deadlines
            .iter()
            .filter(|d| **d == Duration::from_secs(30))
            .count()
            >= 2
    );
}

#[test]
fn a_surplus_reply_never_shifts_the_next_ones() {
    // No PIPELINING: MAIL is answered twice; the second 250 would pass
    // for RCPT's reply and RCPT's 550 for DATA's.
    let segments = [
        "220 hi\r\n",
        "250 mx\r\n",
        "250 ok\r\n250 ok again\r\n",
        "550 no such user\r\n",
    ];
    let mut s = greeted(segmented(&segments));
    let err = s
        .send("me@example.com", &to(&["a@example.com"]), b"x", false)
        .unwrap_err();
    assert!(
        matches!(&err, SmtpError::Protocol { detail, .. } if detail.contains("more than was asked")),
        "{err:?}"
    );
}

/// A 421 (to MAIL, or to an RCPT) and the server hangs up: the error is
/// that 421, at its stage, and temporary.
#[test]
fn a_421_then_a_hang_up_is_reported_as_the_421() {
    for (server, at) in [
        ("421 4.3.2 shutting down\r\n", Stage::MailFrom),
        (
            "250 ok\r\n421 4.7.0 too many errors, closing\r\n",
            Stage::RcptTo,
        ),
    ] {
        let mut s = session(server, 4096);
        let rcpt = to(&["a@example.com", "b@example.com"]);
        let err = s.send("me@example.com", &rcpt, b"x", false).unwrap_err();
        match &err {
            SmtpError::Refused { stage, reply } => {
                assert_eq!((*stage, reply.code), (at, 421), "{err:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.class(), Class::Temporary);
    }
}

fn message<'a>(from: &'a str, recipients: &'a [String], content: &'a [u8]) -> session::Message<'a> {
    session::Message {
        from,
        recipients,
        content: content.into(),
    }
}

#[test]
fn send_many_pipelines_each_content_with_the_next_envelope() {
    let ok = "250 ok\r\n250 ok\r\n354 go\r\n";
    // Group 1: env 1. Group 2: content 1 + env 2 (its EOD reply first).
    // Group 3: content 2 + env 3, refused at MAIL. Then env 4, content 4.
    let server = format!(
        "{ok}250 q1\r\n{ok}250 q2\r\n550 5.7.1 sender refused\r\n503 no\r\n503 no\r\n{ok}250 q4\r\n221 bye\r\n"
    );
    let mut s = session(&server, 13);
    let rcpt = to(&["a@example.com"]);
    let contents: Vec<Vec<u8>> = (1..=4).map(|i| format!("m{i}\r\n").into_bytes()).collect();
    let mut outcomes = Vec::new();
    s.send_many(
        contents.iter().map(|c| message("me@example.com", &rcpt, c)),
        |i, r| {
            outcomes.push((
                i,
                r.map(|d| d.reply.map(|r| r.text()))
                    .map_err(|e| e.to_string()),
            ))
        },
    )
    .expect("session survives a refused message");
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    assert_eq!(outcomes[0], (0, Ok(Some("q1".into()))));
    assert_eq!(outcomes[1], (1, Ok(Some("q2".into()))));
    assert_eq!(outcomes[2].0, 2);
    assert!(
        outcomes[2]
            .1
            .as_ref()
            .is_err_and(|e| e.contains("550 5.7.1")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[3], (3, Ok(Some("q4".into()))));
    let sent = s.quit().sent();
    assert!(sent[2].starts_with("m1\r\n.\r\nMAIL FROM:"), "{sent:?}");
    assert!(sent[3].starts_with("m2\r\n.\r\nMAIL FROM:"), "{sent:?}");
    // Message 3 was refused: its content is never sent.
    assert!(sent.iter().all(|w| !w.contains("m3")), "{sent:?}");
    assert!(sent[4].starts_with("MAIL FROM:"), "{sent:?}");
    assert_eq!(sent[5], "m4\r\n.\r\n");
}

#[test]
fn a_lost_connection_leaves_the_message_in_flight_unsettled() {
    // Message 1's content goes out with message 2's envelope; the server
    // then vanishes: neither may be reported as delivered or refused.
    let mut s = session("250 ok\r\n250 ok\r\n354 go\r\n", 4096);
    let rcpt = to(&["a@example.com"]);
    let mut settled = Vec::new();
    let err = s
        .send_many(
            [
                message("me@example.com", &rcpt, b"1"),
                message("me@example.com", &rcpt, b"2"),
            ],
            |i, _| settled.push(i),
        )
        .unwrap_err();
    assert!(settled.is_empty(), "{settled:?}");
    assert_eq!(err.class(), Class::Temporary);
}

#[test]
fn thousands_of_recipients_go_in_bounded_groups() {
    let n = 250;
    let recipients: Vec<String> = (0..n).map(|i| format!("r{i}@example.com")).collect();
    let mut server = String::from("250 ok\r\n");
    server.push_str(&"250 ok\r\n".repeat(n));
    server.push_str("354 go\r\n250 queued\r\n");
    let mut s = session(&server, 4096);
    let d = s
        .send("me@example.com", &recipients, b"x", false)
        .expect("sent");
    assert_eq!(d.accepted.len(), n);
    let sent = s.quit().sent();
    // 251 commands + DATA = 252: groups of 100, 100 and 52.
    let groups: Vec<usize> = sent[1..4]
        .iter()
        .map(|w| w.matches("\r\n").count())
        .collect();
    assert_eq!(groups, [100, 100, 52], "{sent:?}");
}

#[test]
fn without_pipelining_one_command_at_a_time() {
    let mut s = greeted(Script::new(
        "220 hi\r\n250 mx\r\n250 ok\r\n550 no\r\n250 ok\r\n354 go\r\n250 queued\r\n",
        4096,
    ));
    let d = s
        .send(
            "me@example.com",
            &to(&["a@example.com", "b@example.com"]),
            b"x",
            false,
        )
        .expect("sent");
    assert_eq!(d.accepted, ["b@example.com"]);
    assert_eq!(d.rejected[0].code, 550);
    let sent = s.quit().sent();
    assert_eq!(
        sent[1..6],
        [
            "MAIL FROM:<me@example.com>\r\n",
            "RCPT TO:<a@example.com>\r\n",
            "RCPT TO:<b@example.com>\r\n",
            "DATA\r\n",
            "x\r\n.\r\n"
        ]
    );
}

#[test]
fn a_refused_mail_then_a_hang_up_is_quoted() {
    let mut s = session("554 5.7.1 you are blocked\r\n", 4096);
    let err = s
        .send("me@example.com", &to(&["a@example.com"]), b"x", false)
        .unwrap_err();
    assert!(
        err.to_string().contains("554 5.7.1 you are blocked"),
        "{err}"
    );
    assert_eq!(err.class(), Class::Permanent);
}

#[test]
fn a_utf8_address_in_a_header_needs_smtputf8() {
    // No SMTPUTF8 offered (8BITMIME is): a Reply-To with a UTF-8 local
    // part must not go out; a UTF-8 subject line (sendmail input) may.
    let mut s = session("250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n", 4096);
    let rcpt = to(&["a@example.com"]);
    let err = s
        .send(
            "me@example.com",
            &rcpt,
            "Reply-To: zo\u{eb}@example.com\r\n\r\nhi\r\n".as_bytes(),
            false,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            SmtpError::MissingExtension {
                name: "SMTPUTF8",
                ..
            }
        ),
        "{err:?}"
    );
    let folded = "To: a@example.com,\r\n zo\u{eb}@example.com\r\n\r\nhi\r\n";
    assert!(
        s.send("me@example.com", &rcpt, folded.as_bytes(), false)
            .is_err()
    );
    s.send(
        "me@example.com",
        &rcpt,
        "Subject: gr\u{fc}\u{df}e\r\n\r\nhi\r\n".as_bytes(),
        false,
    )
    .expect("an 8-bit subject goes with BODY=8BITMIME");
    let sent = s.quit().sent();
    assert!(
        sent[1].contains("BODY=8BITMIME") && !sent[1].contains("SMTPUTF8"),
        "{sent:?}"
    );
}

#[test]
fn an_all_or_nothing_message_after_a_refused_data_starts_with_rset() {
    // Message 1: DATA refused, the transaction stays open at the server.
    // Message 2 must not meet "503 nested MAIL".
    let server = "250 ok\r\n250 ok\r\n554 no\r\n\
                  250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n";
    let mut s = session(server, 4096);
    let rcpt = to(&["a@example.com"]);
    assert!(s.send("me@example.com", &rcpt, b"1", true).is_err());
    s.send("me@example.com", &rcpt, b"2", true)
        .expect("second message");
    let sent = s.quit().sent();
    assert!(sent[3].starts_with("RSET\r\nMAIL FROM:"), "{sent:?}");
}

#[test]
fn a_refused_mail_is_not_charged_to_the_next_message() {
    // Message 1's MAIL is refused (550); message 2 then meets a dropped
    // connection: that is a lost session, not message 1's 550 again.
    let mut s = session("550 5.7.1 not you\r\n503 no\r\n503 no\r\n", 4096);
    let rcpt = to(&["a@example.com"]);
    let first = s.send("me@example.com", &rcpt, b"1", false).unwrap_err();
    assert_eq!(first.class(), Class::Permanent);
    let second = s.send("me@example.com", &rcpt, b"2", false).unwrap_err();
    assert!(matches!(second, SmtpError::Closed { .. }), "{second:?}");
    assert_eq!(second.class(), Class::Temporary);
}

#[test]
fn a_421_sent_with_the_last_250_closes_the_session() {
    // A server that limits messages per connection: "250 queued" and
    // "421 closing" in one segment, without PIPELINING.
    let segments = [
        "220 hi\r\n",
        "250 mx\r\n",
        "250 ok\r\n",
        "250 ok\r\n",
        "354 go\r\n",
        "250 queued\r\n421 4.7.0 too many messages, closing\r\n",
    ];
    let mut s = greeted(segmented(&segments));
    let rcpt = to(&["a@example.com"]);
    s.send("me@example.com", &rcpt, b"1", false)
        .expect("first message");
    let err = s.send("me@example.com", &rcpt, b"2", false).unwrap_err();
    assert!(
        matches!(&err, SmtpError::Refused { reply, .. } if reply.code == 421),
        "{err:?}"
    );
    assert_eq!(err.class(), Class::Temporary);
    assert!(s.closed().is_some());
}

#[test]
fn a_message_file_that_changes_while_sent_never_gets_its_final_dot() {
    use std::io::Write as _;
    let file = tempfile::tempfile().expect("temp file");
    (&file)
        .write_all(b"Subject: s\r\n\r\nfirst version\r\n")
        .expect("write");
    let stamp = super::Stamp::of(&file).expect("stamp");
    std::thread::sleep(Duration::from_millis(20));
    (&file).write_all(b"appended later\r\n").expect("write");
    let mut s = session("250 ok\r\n250 ok\r\n354 go\r\n", 4096);
    let rcpt = to(&["a@example.com"]);
    let err = s
        .send("me@example.com", &rcpt, Content::File(&file, stamp), false)
        .unwrap_err();
    assert!(matches!(err, SmtpError::Content(_)), "{err:?}");
    assert_eq!(err.class(), Class::Temporary);
    let sent = s.quit().sent().concat();
    assert!(!sent.contains("\r\n.\r\n"), "no final dot: {sent:?}");
}

/// A caller that stops (its journal failed) while the last message waits
/// for its content: the content never leaves, and nothing is settled.
#[test]
fn an_abandoned_message_never_sends_its_content() {
    let ok = "250 ok\r\n250 ok\r\n354 go\r\n";
    let mut s = session(&format!("{ok}250 q1\r\n{ok}"), 4096);
    let rcpt = to(&["a@example.com"]);
    let stop = std::cell::Cell::new(false);
    let mut settled = Vec::new();
    let err = s
        .send_many_unless(
            [
                message("me@example.com", &rcpt, b"first\r\n"),
                message("me@example.com", &rcpt, b"second\r\n"),
            ],
            |i, _| {
                settled.push(i);
                stop.set(true);
            },
            || stop.get(),
        )
        .unwrap_err();
    assert!(matches!(err, SmtpError::Abandoned), "{err:?}");
    assert_eq!(settled, [0]);
    let sent = s.quit().sent().concat();
    assert!(sent.contains("first\r\n.\r\n"), "{sent:?}");
    assert!(!sent.contains("second"), "{sent:?}");
}

const OAUTH_EHLO: &str = "220 mx.example.com ESMTP\r\n\
    250-mx.example.com\r\n250-AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n250 8BITMIME\r\n";

/// A greeted session offering the OAuth2 mechanisms, over `server`.
fn oauth_session(server: &str, chunk: usize, verbose: bool) -> Session<Script> {
    let mut s = Session::new(
        Script::new(&format!("{OAUTH_EHLO}{server}"), chunk),
        Options {
            verbose,
            ..options()
        },
        Some("TLSv1.3".into()),
    );
    s.greeting().expect("greeting");
    s.ehlo(false).expect("ehlo");
    s
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn xoauth2_sends_the_token_in_the_initial_response() {
    let token = Secret::new("ya29.Tok-EN_123".into());
    let mut s = oauth_session("235 2.7.0 Accepted\r\n", 4096, false);
    s.authenticate(&mut Bearer::xoauth2("me@example.com", &token))
        .expect("accepted");
    let sent = s.quit().sent();
    let initial = b64(b"user=me@example.com\x01auth=Bearer ya29.Tok-EN_123\x01\x01");
    assert_eq!(sent[1], format!("AUTH XOAUTH2 {initial}\r\n"));
}

#[test]
fn oauthbearer_sends_the_gs2_header_host_and_port() {
    let token = Secret::new("tok".into());
    let mut s = oauth_session("235 2.7.0 Accepted\r\n", 4096, false);
    s.authenticate(&mut Bearer::oauthbearer(
        "a,b=c@example.com",
        "smtp.example.com",
        587,
        &token,
    ))
    .expect("accepted");
    let sent = s.quit().sent();
    let initial = b64(
        b"n,a=a=2Cb=3Dc@example.com,\x01host=smtp.example.com\x01port=587\x01auth=Bearer tok\x01\x01",
    );
    assert_eq!(sent[1], format!("AUTH OAUTHBEARER {initial}\r\n"));
}

#[test]
fn a_refused_xoauth2_token_answers_the_challenge_and_decodes_the_error() {
    let token = Secret::new("ya29.expired-token-value".into());
    let json = br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;
    let server = format!(
        "334 {}\r\n535 5.7.8 Username and Password not accepted\r\n",
        b64(json)
    );
    let mut s = oauth_session(&server, 5, false);
    let err = s
        .authenticate(&mut Bearer::xoauth2("me@example.com", &token))
        .unwrap_err();
    let sent = s.quit().sent();
    assert_eq!(
        sent[2], "\r\n",
        "XOAUTH2 answers the error challenge with an empty line"
    );
    assert_eq!(err.class(), Class::Auth);
    let shown = err.to_string();
    assert_eq!(
        shown,
        "server refused AUTH XOAUTH2: 535 5.7.8 Username and Password not accepted \
         (token error: status=401 schemes=bearer scope=https://mail.google.com/)"
    );
    assert!(!shown.contains(&b64(json)[..12]), "{shown}");
}

#[test]
fn a_refused_oauthbearer_token_is_answered_with_ctrl_a() {
    let token = Secret::new("bad-token".into());
    let server = format!(
        "334 {}\r\n535 5.7.8 Error: authentication failed\r\n",
        b64(br#"{"status":"invalid_token"}"#)
    );
    let mut s = oauth_session(&server, 4096, false);
    let err = s
        .authenticate(&mut Bearer::oauthbearer("me", "mx", 465, &token))
        .unwrap_err();
    let sent = s.quit().sent();
    assert_eq!(sent[2], "AQ==\r\n");
    assert!(
        err.to_string()
            .ends_with("(token error: status=invalid_token)"),
        "{err}"
    );
    assert!(err.hint().is_some_and(|h| h.contains("auth login")));
}

#[test]
fn a_second_error_challenge_cancels_the_exchange() {
    let token = Secret::new("tok".into());
    let challenge = b64(br#"{"status":"401"}"#);
    let server = format!("334 {challenge}\r\n334 {challenge}\r\n501 cancelled\r\n");
    let mut s = oauth_session(&server, 4096, false);
    let err = s
        .authenticate(&mut Bearer::xoauth2("me", &token))
        .unwrap_err();
    assert_eq!(err.class(), Class::Protocol);
    assert_eq!(s.quit().sent()[3], "*\r\n");
}

#[test]
fn the_token_never_shows_even_when_the_server_echoes_it() {
    let token = Secret::new("ya29.SECRETSECRETSECRET".into());
    // A hostile server quotes the token in its JSON error and its reply.
    let json = br#"{"status":"401","token":"ya29.SECRETSECRETSECRET"}"#;
    let initial = b64(b"user=me\x01auth=Bearer ya29.SECRETSECRETSECRET\x01\x01");
    let server = format!(
        "334 {}\r\n535 5.7.8 bad ya29.SECRETSECRETSECRET {}\r\n",
        b64(json),
        &initial[..30]
    );
    let mut s = oauth_session(&server, 4096, false);
    let err = s
        .authenticate(&mut Bearer::xoauth2("me", &token))
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(!shown.contains(&initial[..30]), "{shown}");
    assert!(shown.contains("status=401"), "{shown}");
}

#[test]
fn auto_prefers_oauthbearer_then_xoauth2_then_plain() {
    use super::auth::{AuthMethod, Credentials, choose};
    let (password, token) = (Secret::new("pw".into()), Secret::new("tok".into()));
    let caps = |offer: &str| {
        let reply = Reply {
            code: 250,
            lines: vec!["mx".into(), format!("AUTH {offer}")],
        };
        Capabilities::parse(&reply)
    };
    let creds = |password, token| Credentials {
        user: "me",
        password,
        token,
        host: "mx",
        port: 587,
    };
    let both = creds(Some(&password), Some(&token));
    let pick = |offer: &str, method, creds: &Credentials| {
        choose(&caps(offer), method, creds).map(|m| m.name())
    };
    let auto = AuthMethod::Auto;
    assert_eq!(
        pick("PLAIN XOAUTH2 OAUTHBEARER", auto, &both).unwrap(),
        "OAUTHBEARER"
    );
    assert_eq!(pick("LOGIN PLAIN XOAUTH2", auto, &both).unwrap(), "XOAUTH2");
    assert_eq!(pick("LOGIN PLAIN", auto, &both).unwrap(), "PLAIN");
    assert_eq!(pick("LOGIN", auto, &both).unwrap(), "LOGIN");
    let password_only = creds(Some(&password), None);
    assert_eq!(
        pick("PLAIN XOAUTH2", auto, &password_only).unwrap(),
        "PLAIN"
    );
    let err = pick("XOAUTH2", auto, &password_only).unwrap_err();
    assert_eq!(err.class(), Class::Protocol);
    assert!(
        err.hint()
            .is_some_and(|h| h.contains("OAUTH_TOKEN_COMMAND")),
        "{err}"
    );
    let token_only = creds(None, Some(&token));
    let err = pick("PLAIN LOGIN", auto, &token_only).unwrap_err();
    assert_eq!(
        err.to_string(),
        "server does not offer AUTH XOAUTH2 or OAUTHBEARER (offers PLAIN LOGIN)"
    );
    assert!(
        err.hint()
            .is_some_and(|h| h.contains("configure a password"))
    );
    // Asked for by name: used when offered, a clear error (76) when not.
    assert_eq!(
        pick("PLAIN XOAUTH2 OAUTHBEARER", AuthMethod::XOauth2, &both).unwrap(),
        "XOAUTH2"
    );
    assert_eq!(
        pick("PLAIN LOGIN", AuthMethod::Login, &both).unwrap(),
        "LOGIN"
    );
    let err = pick("PLAIN XOAUTH2", AuthMethod::OAuthBearer, &both).unwrap_err();
    assert_eq!(
        err.to_string(),
        "server does not offer AUTH OAUTHBEARER (offers PLAIN XOAUTH2)"
    );
    assert_eq!(
        crate::exit::for_class(err.class()),
        crate::exit::Exit::Protocol
    );
}

#[test]
fn refusals_of_basic_auth_name_what_to_do() {
    let refused = |code, text: &str| SmtpError::Refused {
        stage: Stage::Auth,
        reply: Reply {
            code,
            lines: vec![text.into()],
        },
    };
    for err in [
        refused(
            535,
            "5.7.139 Authentication unsuccessful, basic authentication is disabled.",
        ),
        refused(
            550,
            "5.7.30 Basic authentication is not supported for Client Submission.",
        ),
    ] {
        assert_eq!(
            crate::exit::for_class(err.class()),
            crate::exit::Exit::NoPerm
        );
        let hint = err.hint().expect("a hint");
        assert!(hint.contains("--auth xoauth2"), "{hint}");
        assert!(hint.contains("mailsend auth login"), "{hint}");
    }
    let gmail = refused(
        534,
        "5.7.9 Application-specific password required. Learn more at https://support.google.com/mail/?p=InvalidSecondFactor",
    );
    let hint = gmail.hint().expect("a hint");
    assert!(
        hint.contains("app password") && hint.contains("xoauth2"),
        "{hint}"
    );
    let plain = refused(535, "5.7.8 Error: authentication failed");
    assert!(
        plain
            .hint()
            .is_some_and(|h| h.contains("check MAILSEND_USER"))
    );
}

/// Microsoft answers a refused XOAUTH2 token with a 535 at once, without
/// the error challenge: still a refused token (its hint), not a password.
#[test]
fn a_refused_token_without_an_error_challenge_is_still_a_token_refusal() {
    let token = Secret::new("ya29.Tok-EN_123".into());
    let mut s = oauth_session("535 5.7.3 Authentication unsuccessful\r\n", 4096, false);
    let err = s
        .authenticate(&mut Bearer::xoauth2("me@example.com", &token))
        .unwrap_err();
    assert!(
        matches!(err, SmtpError::TokenRefused { .. }),
        "{err:?}: {err}"
    );
    assert_eq!(err.class(), Class::Auth);
    let hint = err.hint().unwrap_or_default();
    assert!(hint.contains("access token"), "{hint}");
    assert!(!hint.contains("password"), "{hint}");
}

/// A server that quotes the token inside a larger base64 text (at any
/// offset, so not the token's own base64) shows none of it: not in the
/// error, and not in the transcript (the same redactor).
#[test]
fn a_token_quoted_inside_base64_at_any_offset_is_redacted() {
    let token = Secret::new("ya29.a0AfH6SMB-echoed-Token_0123456789".into());
    for prefix in ["", "x", "xy"] {
        let blob = b64(format!(r#"{{"echo":"{prefix}{}"}}"#, token.expose()).as_bytes());
        let server = format!("334 {blob}\r\n535 5.7.8 refused {blob}\r\n");
        let mut s = oauth_session(&server, 4096, false);
        let err = s
            .authenticate(&mut Bearer::xoauth2("me@example.com", &token))
            .unwrap_err();
        let shown = err.to_string();
        // The part of the blob that encodes the token alone.
        let inner = &blob[16..blob.len() - 8];
        assert!(!shown.contains(inner), "{prefix:?}: {shown}");
        assert!(!shown.contains("echoed"), "{prefix:?}: {shown}");
    }
}
