//! The sendmail personality, driven the way real callers drive it.

use super::*;
use crate::support::cmd::{Mailsend, account_config};

const CRON_MAIL: &str = "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> run-parts /etc/cron.daily\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\n\nlogrotate: error: bad file\n";

/// (caller, arguments, message, expected recipients)
const CALLERS: &[(&str, &[&str], &str, &[&str])] = &[
    (
        "Debian cron",
        &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
        CRON_MAIL,
        &["admin@example.com"],
    ),
    (
        "cronie",
        &[
            "-FCronDaemon",
            "-i",
            "-odi",
            "-oem",
            "-oi",
            "-t",
            "-f",
            "root",
        ],
        CRON_MAIL,
        &["admin@example.com"],
    ),
    (
        "systemd-cron",
        &["-i", "-B", "8BITMIME", "root"],
        CRON_MAIL,
        &["admin@example.com"],
    ),
    (
        "busybox",
        &["-ti"],
        "To: ops@example.com\nSubject: busybox\n\nhi\n",
        &["ops@example.com"],
    ),
    (
        "mdadm",
        &["-t", "-fmdadm@example.com"],
        "From: mdadm monitoring <mdadm@example.com>\nTo: raid@example.com\nSubject: Fail event\n\nmd0 degraded\n",
        &["raid@example.com"],
    ),
    (
        "anacron",
        &["-FAnacron", "-odi", "root"],
        "Subject: Anacron job\n\noutput\n",
        &["admin@example.com"],
    ),
    (
        "atd",
        &["-i", "www-data"],
        "Subject: Output from your job 42\n\ndone\n",
        &["fallback@example.org"],
    ),
    (
        "git send-email",
        &[
            "-f",
            "dev@example.com",
            "-i",
            "list@example.org",
            "maintainer@example.net",
        ],
        "From: Dev <dev@example.com>\nTo: list@example.org\nCc: maintainer@example.net\nSubject: [PATCH] fix\nMessage-ID: <patch-1@example.com>\nDate: Sat, 28 Nov 2026 10:00:00 +0000\n\n---\n.\n..\n",
        &["list@example.org", "maintainer@example.net"],
    ),
    (
        "mutt",
        &["-oem", "-oi", "--", "friend@example.org"],
        "From: Me <sender@example.com>\nTo: friend@example.org\nSubject: hi\n\n.\n",
        &["friend@example.org"],
    ),
];

#[test]
fn real_callers_invocations_deliver() {
    for (caller, args, message, expected) in CALLERS {
        let server = submission();
        let run = Mailsend::sendmail(&server)
            .args(*args)
            .stdin(*message)
            .run();
        assert_eq!(run.code(), 0, "{caller}: {}", run.stderr());
        let tx = only_transaction(&server);
        assert_eq!(&tx.rcpt_to, expected, "{caller}");
        assert!(header(&tx.data, "date").is_some(), "{caller}: Date");
        assert!(
            header(&tx.data, "message-id").is_some(),
            "{caller}: Message-ID"
        );
        let from = header(&tx.data, "from").expect("From");
        assert!(from.contains('@'), "{caller}: From qualified: {from}");
    }
}

#[test]
fn mailsend_sendmail_subcommand_is_the_same() {
    let server = submission();
    let mut m = Mailsend::bare();
    m.config(&account_config(&server, ""));
    m.args(["sendmail", "-t", "-i"])
        .stdin("To: a@example.com\nSubject: s\n\nbody\n")
        .run()
        .expect(0);
    assert_eq!(only_transaction(&server).rcpt_to, ["a@example.com"]);
}

#[test]
fn cron_message_keeps_its_headers_and_gets_a_qualified_from() {
    let server = submission();
    Mailsend::sendmail(&server)
        .args(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"])
        .stdin(CRON_MAIL)
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert_eq!(tx.mail_from, USER, "envelope sender is the account's");
    let data = tx.data_str();
    let head = data.split("\r\n\r\n").next().expect("head");
    assert!(
        head.starts_with("From: \"Cron Daemon\" <sender@example.com>\r\n"),
        "{head}"
    );
    for kept in [
        "To: root\r\n",
        "Subject: Cron <root@host> run-parts /etc/cron.daily\r\n",
        "Content-Transfer-Encoding: 8bit\r\n",
        "X-Cron-Env: <SHELL=/bin/sh>\r\n",
    ] {
        assert!(head.contains(kept), "kept byte for byte: {kept:?}\n{head}");
    }
    assert!(
        data.ends_with("\r\n\r\nlogrotate: error: bad file\r\n"),
        "{data}"
    );
}

#[test]
fn headers_are_added_only_when_missing_and_bcc_is_stripped() {
    let server = submission();
    let message = "From: Dev <dev@example.com>\r\nTo: a@example.com\r\nBcc: secret@example.org\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <given@example.com>\r\nSubject: s\r\n\r\nbody\r\n";
    Mailsend::sendmail(&server)
        .args(["-t", "-i"])
        .stdin(message)
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert_eq!(tx.rcpt_to, ["a@example.com", "secret@example.org"]);
    assert_eq!(
        tx.data_str(),
        "From: Dev <dev@example.com>\r\nTo: a@example.com\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <given@example.com>\r\nSubject: s\r\n\r\nbody\r\n"
    );
    assert!(!has_bcc_line(&tx.raw_data));
}

#[test]
fn t_excludes_argument_recipients() {
    let server = submission();
    Mailsend::sendmail(&server)
        .args(["-t", "b@example.com"])
        .stdin("To: a@example.com, b@example.com\nCc: c@example.com\n\nx\n")
        .run()
        .expect(0);
    assert_eq!(
        only_transaction(&server).rcpt_to,
        ["a@example.com", "c@example.com"]
    );
}

#[test]
fn dots_mbox_from_lines_and_line_endings() {
    let body_in = "From: a@example.com\nSubject: d\n\n.leading\n..two\nFrom here\nend";
    let server = submission();
    Mailsend::sendmail(&server)
        .args(["-i", "x@example.com"])
        .stdin(format!(
            "From MAILER-DAEMON Sat Nov 28 10:00:00 2026\n{body_in}\n.\nafter the dot\n"
        ))
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert!(
        tx.data_str()
            .ends_with("\r\n\r\n.leading\r\n..two\r\nFrom here\r\nend\r\n.\r\nafter the dot\r\n"),
        "{}",
        tx.data_str()
    );
    assert!(
        !tx.data_str().contains("MAILER-DAEMON"),
        "mbox From_ line dropped"
    );
    assert!(
        String::from_utf8_lossy(&tx.raw_data).contains("\r\n...two\r\n"),
        "dot-stuffed on the wire"
    );

    // Without -i, a lone dot ends the message, as in sendmail.
    let server = submission();
    Mailsend::sendmail(&server)
        .args(["x@example.com"])
        .stdin(format!("{body_in}\n.\nafter the dot\n"))
        .run()
        .expect(0);
    assert!(
        only_transaction(&server)
            .data_str()
            .ends_with("\r\nend\r\n")
    );
}

#[test]
fn eight_bit_body_is_sent_as_is() {
    let server = submission();
    Mailsend::sendmail(&server)
        .args(["-i", "x@example.com"])
        .stdin("From: a@example.com\nSubject: 8bit\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße ☕\n")
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert!(tx.data_str().ends_with("\r\n\r\nGrüße ☕\r\n"));
    assert!(
        tx.mail_params.contains("BODY=8BITMIME"),
        "announced: {}",
        tx.mail_params
    );
}

#[test]
fn usage_errors() {
    let server = submission();
    for args in [&["-Q", "x@example.com"][..], &["-bs"][..], &[][..]] {
        let run = Mailsend::sendmail(&server)
            .args(args)
            .stdin("Subject: x\n\nx\n")
            .run()
            .expect(64);
        run.error_mentions("sendmail mode");
    }
    let run = Mailsend::sendmail(&server)
        .args(["nobody-known"])
        .stdin("Subject: x\n\nx\n")
        .run();
    assert_eq!(
        run.code(),
        0,
        "default alias catches unknown local names: {}",
        run.stderr()
    );
}

#[test]
fn account_is_chosen_by_envelope_sender() {
    let main = submission();
    let other = submission();
    let mut m = Mailsend::sendmail(&main);
    let text = format!(
        "{}\n[accounts.other]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\npassword = \"{}\"\nfrom = \"alerts@example.net\"\nca_file = \"{}\"\n",
        account_config(&main, ""),
        other.port(),
        crate::support::cmd::PASSWORD,
        crate::support::pki::Pki::shared().ca_file.display()
    );
    m.config(&text);
    m.args(["-f", "alerts@example.net", "x@example.com"])
        .stdin("Subject: x\n\nx\n")
        .run()
        .expect(0);
    assert_eq!(only_transaction(&other).mail_from, "alerts@example.net");
    assert!(main.sessions().is_empty());
}

#[test]
fn failure_says_not_sent_and_exits_non_zero() {
    let server = TestServer::start(with_auth(Behaviour {
        data_reply: Some("451 4.3.0 try later".into()),
        ..Behaviour::default()
    }));
    let run = Mailsend::sendmail(&server)
        .args(["-i", "x@example.com"])
        .stdin("Subject: x\n\nx\n")
        .run()
        .expect(75);
    run.error_mentions("message not sent");
}

#[test]
fn works_under_crons_bare_environment() {
    // env -i HOME=... PATH=/usr/bin:/bin, cwd /, no terminal.
    let server = submission();
    let mut m = Mailsend::sendmail(&server);
    m.env("PATH", "/usr/bin:/bin")
        .current_dir(std::path::Path::new("/"));
    m.args(["-FCronDaemon", "-i", "-oem", "root"])
        .stdin(CRON_MAIL)
        .run()
        .expect(0);
    assert_eq!(only_transaction(&server).rcpt_to, ["admin@example.com"]);
}

#[test]
fn log_file_gets_one_line_per_message_without_the_password() {
    let server = submission();
    let mut m = Mailsend::sendmail(&server);
    let log = m.path().join("mail.log");
    m.config(&account_config(
        &server,
        &format!("log = \"{}\"", log.display()),
    ));
    m.args(["-i", "x@example.com"])
        .stdin("Subject: x\n\nx\n")
        .run()
        .expect(0);
    let text = std::fs::read_to_string(&log).expect("log written");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("account=main")
            && text.contains("to=x@example.com")
            && text.contains("result=sent"),
        "{text}"
    );
    assert!(!text.contains(crate::support::cmd::PASSWORD));
}

#[test]
fn skip_empty_from_the_account() {
    let server = submission();
    let mut m = Mailsend::sendmail(&server);
    m.config(&account_config(&server, "skip_empty = true"));
    m.args(["-i", "x@example.com"])
        .stdin("Subject: nothing\n\n\n")
        .run()
        .expect(0);
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.sessions().is_empty());
}

#[test]
fn group_syntax_and_a_from_made_from_dash_f() {
    // A local relay account with no `from` and no user: From comes from -f.
    let server = TestServer::start(Behaviour {
        security: crate::support::server::Security::Plain,
        ..Behaviour::default()
    });
    let mut m = Mailsend::sendmail(&server);
    m.config(&format!(
        "[accounts.relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        server.port()
    ));
    m.args(["-t", "-i", "-f", "ops@example.com", "-F", "Ops Team"])
        .stdin(
            "To: team: a@example.com, b@example.com;, undisclosed-recipients:;\nSubject: g\n\nx\n",
        )
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert_eq!(tx.rcpt_to, ["a@example.com", "b@example.com"]);
    assert_eq!(tx.mail_from, "ops@example.com");
    assert_eq!(
        header(&tx.data, "from").as_deref(),
        Some("\"Ops Team\" <ops@example.com>")
    );
}

#[test]
fn eight_bit_data_needs_a_server_that_takes_it() {
    let server = TestServer::start(with_auth(Behaviour {
        seven_bit_only: true,
        ..Behaviour::default()
    }));
    let run = Mailsend::sendmail(&server)
        .args(["-i", "x@example.com"])
        .stdin("Subject: s\n\nGrüße\n")
        .run()
        .expect(76);
    run.error_mentions("does not offer 8BITMIME");
    assert!(only_session(&server).transactions.is_empty());
}

/// Sends `message` in sendmail mode with `args`; the one transaction.
fn send_sendmail(args: &[&str], message: impl Into<Vec<u8>>) -> Transaction {
    let server = submission();
    Mailsend::sendmail(&server)
        .args(args)
        .stdin(message)
        .run()
        .expect(0);
    only_transaction(&server)
}

/// The lines of the data as it crossed the wire (dot-stuffed), each
/// without its CRLF; asserts that every line ended in CRLF.
fn wire_lines(tx: &Transaction) -> Vec<&[u8]> {
    let raw = tx.raw_data.strip_suffix(b"\r\n").expect("ends in CRLF");
    let lines: Vec<&[u8]> = raw.split(|b| *b == b'\n').collect();
    for line in &lines[..lines.len() - 1] {
        assert!(line.ends_with(b"\r"), "a bare LF on the wire");
    }
    lines
        .into_iter()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .inspect(|l| assert!(!l.contains(&b'\r'), "a bare CR on the wire"))
        .collect()
}

fn longest_wire_line(tx: &Transaction) -> usize {
    wire_lines(tx).iter().map(|l| l.len()).max().unwrap_or(0)
}

#[test]
fn aliases_apply_to_the_address_of_a_named_mailbox() {
    // Named mailboxes, comments and any case: all find the `root` alias,
    // none falls through to the default alias.
    let message =
        "To: Root <root>\nCc: \"Doe, J\" <ROOT> (admin), Root (the boss) <root>\nSubject: x\n\nx\n";
    let tx = send_sendmail(&["-t", "-i"], message);
    assert_eq!(tx.rcpt_to, ["admin@example.com"]);
    let tx = send_sendmail(&["-i", "Root <root>"], "Subject: x\n\nx\n");
    assert_eq!(tx.rcpt_to, ["admin@example.com"]);
}

#[test]
fn a_broken_header_line_cannot_push_bcc_into_the_body() {
    // A line in the header block that is not a header field (8-bit name,
    // no colon) is refused (65) rather than ending the header block and
    // publishing the Bcc below it as body text; nothing is sent.
    for message in [
        "To: a@example.com\nS\u{fc}bject: caf\u{e9}\nBcc: secret@example.org\n\nbody\n",
        "To: a@example.com\nthis is no header\nBcc: secret@example.org\n\nbody\n",
        "To: a@example.com\nthis is no header\nbcc : secret@example.org\n",
    ] {
        let server = submission();
        let run = Mailsend::sendmail(&server)
            .args(["-t", "-i"])
            .stdin(message)
            .run()
            .expect(65);
        run.error_mentions("line 2");
        std::thread::sleep(Duration::from_millis(200));
        assert!(server.sessions().is_empty(), "{message:?}");
    }
}

#[test]
fn header_block_edges_that_stay_accepted() {
    // A UTF-8 byte order mark before the first header is dropped.
    let tx = send_sendmail(
        &["-t", "-i"],
        "\u{feff}To: a@example.com\nBcc: secret@example.org\nSubject: bom\n\nbody\n",
    );
    assert_eq!(tx.rcpt_to, ["a@example.com", "secret@example.org"]);
    assert!(!has_bcc_line(&tx.raw_data));
    assert!(
        tx.data_str().contains("\r\nTo: a@example.com\r\n"),
        "{}",
        tx.data_str()
    );
    assert!(!tx.data_str().contains('\u{feff}'));

    // A bare CR ends a line, as it would on the wire: the Bcc after it is
    // a field, removed and served.
    let tx = send_sendmail(
        &["-t", "-i"],
        "To: a@example.com\rBcc: hidden@example.org\r\rbody\r",
    );
    assert_eq!(tx.rcpt_to, ["a@example.com", "hidden@example.org"]);
    assert!(!tx.data_str().contains("hidden"), "{}", tx.data_str());
    assert_eq!(body(&tx.data), b"body\r\n");

    // Text after the last header with no empty line between is the body,
    // as in sendmail; so is input that starts with no header at all.
    let tx = send_sendmail(
        &["-i", "x@example.com"],
        "Subject: s\nhello: world? no, body\n",
    );
    assert_eq!(header(&tx.data, "hello"), Some("world? no, body".into()));
    let tx = send_sendmail(
        &["-i", "x@example.com"],
        "Subject: s\nsee you at 10:30\nbye\n",
    );
    assert_eq!(body(&tx.data), b"see you at 10:30\r\nbye\r\n");
    assert_eq!(header(&tx.data, "subject").as_deref(), Some("s"));
    let tx = send_sendmail(&["-i", "x@example.com"], "Backup done\nErrors: none\n");
    assert_eq!(body(&tx.data), b"Backup done\r\nErrors: none\r\n");
}

#[test]
fn a_long_plain_body_line_goes_out_quoted_printable() {
    // cron mails a job's output whatever it is: one 5000-octet line here.
    let line = "x".repeat(2500) + " = caf\u{e9} " + &"y".repeat(2500);
    let message = format!("From: root (Cron Daemon)\nTo: root\nSubject: long\n\n.{line}\nshort\n");
    let tx = send_sendmail(&["-i", "root"], message);
    assert!(
        longest_wire_line(&tx) <= 998,
        "longest {}",
        longest_wire_line(&tx)
    );
    let data = tx.data_str();
    let head = format!("{}\r\n", data.split("\r\n\r\n").next().unwrap_or_default());
    assert!(
        head.contains("\r\nContent-Transfer-Encoding: quoted-printable\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nMIME-Version: 1.0\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
        "{head}"
    );
    let parsed = mailparse::parse_mail(&tx.data).expect("parses");
    assert_eq!(
        parsed.get_body_raw().expect("decodes"),
        format!(".{line}\r\nshort\r\n").as_bytes()
    );
    assert!(tx.data.is_ascii(), "the encoded message is 7-bit");
}

#[test]
fn a_long_line_in_an_encoded_or_multipart_body_is_broken() {
    let long = "QUJD".repeat(400); // 1600 octets of base64, no line breaks
    let message = format!(
        "From: a@example.com\nSubject: m\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n{long}\n--b--\n"
    );
    let tx = send_sendmail(&["-i", "x@example.com"], message);
    assert!(longest_wire_line(&tx) <= 998);
    assert!(!String::from_utf8_lossy(&tx.data).contains("quoted-printable"));
    // Broken as Postfix breaks it: CRLF and a space, which base64 ignores.
    let expected = format!("{}\r\n {}", &long[..998], &long[998..]);
    assert!(tx.data_str().contains(&expected), "{}", tx.data_str());
    let parsed = mailparse::parse_mail(&tx.data).expect("parses");
    assert_eq!(
        parsed.subparts[0].get_body_raw().expect("base64"),
        "ABC".repeat(400).as_bytes()
    );
}

#[test]
fn dot_stuffing_keeps_lines_within_the_limit() {
    // 998 octets starting with a dot would be 999 once stuffed.
    let dotted = format!(".{}", "d".repeat(997));
    let message = format!(
        "From: a@example.com\nSubject: d\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n{dotted}\n"
    );
    let tx = send_sendmail(&["-i", "x@example.com"], message);
    assert!(longest_wire_line(&tx) <= 998, "{}", longest_wire_line(&tx));
}

#[test]
fn long_header_lines_are_folded() {
    let words = vec!["word"; 500].join(" "); // 2499 octets with spaces
    let token = "t".repeat(2100); // no white space at all
    let message = format!("From: a@example.com\nSubject: {words}\nX-Token: {token}\n\nbody\n");
    let tx = send_sendmail(&["-i", "x@example.com"], message);
    assert!(longest_wire_line(&tx) <= 998);
    let parsed = mailparse::parse_mail(&tx.data).expect("parses");
    let subject = parsed
        .headers
        .iter()
        .find(|h| h.get_key() == "Subject")
        .expect("Subject");
    assert_eq!(
        subject.get_value(),
        words,
        "folded at white space: same value"
    );
    let x = header(&tx.data, "x-token").expect("X-Token");
    assert_eq!(x.replace(' ', ""), token, "hard-broken, nothing lost");
    assert_eq!(body(&tx.data), b"body\r\n");
}

#[test]
fn nul_bytes_never_reach_the_wire() {
    // Plain text: the body is re-encoded and the NUL kept as =00.
    let tx = send_sendmail(
        &["-i", "x@example.com"],
        &b"From: a@example.com\nSubject: n\0ul\nBcc\0: s@example.org\n\nbefore\0after\n"[..],
    );
    assert!(!tx.raw_data.contains(&0));
    assert_eq!(header(&tx.data, "subject").as_deref(), Some("nul"));
    assert!(!has_bcc_line(&tx.raw_data));
    assert_eq!(body(&tx.data), b"before=00after\r\n");
    // Already encoded: the NUL is dropped.
    let tx = send_sendmail(
        &["-i", "x@example.com"],
        &b"From: a@example.com\nContent-Transfer-Encoding: base64\n\nQUJD\0\n"[..],
    );
    assert!(!tx.raw_data.contains(&0));
    assert_eq!(body(&tx.data), b"QUJD\r\n");
}

#[test]
fn t_reads_the_newest_resent_block() {
    let message = "Resent-Date: Sun, 29 Nov 2026 10:00:00 +0000\nResent-From: fwd@example.com\nResent-To: new@example.com\nResent-Cc: Copy <copy@example.net>\nResent-Bcc: hidden@example.org\nReceived: from x by y; Sat, 28 Nov 2026 11:00:00 +0000\nResent-Date: Sat, 28 Nov 2026 10:00:00 +0000\nResent-From: old@example.com\nResent-To: older@example.com\nFrom: a@example.com\nTo: orig@example.com\nBcc: origbcc@example.com\nSubject: r\n\nx\n";
    let tx = send_sendmail(&["-t", "-i"], message);
    assert_eq!(
        tx.rcpt_to,
        ["new@example.com", "copy@example.net", "hidden@example.org"]
    );
    let data = tx.data_str();
    assert!(!data.to_ascii_lowercase().contains("resent-bcc"), "{data}");
    assert!(
        !data.contains("hidden@example.org") && !data.contains("origbcc"),
        "{data}"
    );
    assert!(
        data.contains("Resent-To: older@example.com\r\n"),
        "older blocks are kept"
    );

    // Two blocks with nothing between them: the second Resent-Date starts the older one.
    let tx = send_sendmail(
        &["-t", "-i", "new2@example.com"],
        "Resent-Date: Sun, 29 Nov 2026 10:00:00 +0000\nResent-To: new1@example.com, new2@example.com\nResent-Date: Sat, 28 Nov 2026 10:00:00 +0000\nResent-To: older@example.com\nTo: orig@example.com\n\nx\n",
    );
    assert_eq!(tx.rcpt_to, ["new1@example.com"]);
}

/// A quoted local part given with -f is an address like any other: the
/// envelope carries it and the added Message-ID uses its domain.
#[test]
fn a_quoted_sender_address_gets_a_message_id() {
    let tx = send_sendmail(
        &["-f", "\"a b\"@example.com", "a@example.com"],
        "Subject: quoted\n\nbody\n",
    );
    assert_eq!(tx.mail_from, "\"a b\"@example.com");
    let id = header(&tx.data, "message-id").expect("Message-ID added");
    assert!(id.ends_with("@example.com>"), "{id}");
}

/// Sends `message` in sendmail mode with `args` and expects it refused
/// with `code`, naming `mention`; nothing reaches the server.
fn refused(args: &[&str], message: impl Into<Vec<u8>>, code: i32, mention: &str) {
    let server = submission();
    let run = Mailsend::sendmail(&server)
        .args(args)
        .stdin(message)
        .run()
        .expect(code);
    run.error_mentions(mention);
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.sessions().is_empty());
}

#[test]
fn no_mix_of_cr_and_lf_ends_the_header_block_early() {
    // `\r\r\n` and `\n\r` once made an empty line: the Bcc below it went out
    // as body text, to everyone, and its recipient was not served.
    for message in [
        &b"To: a@example.com\r\r\nBcc: secret@example.org\r\r\nSubject: s\r\r\n\r\r\nbody\r\r\n"[..],
        b"To: a@example.com\n\rBcc: secret@example.org\nSubject: s\n\nbody\n",
        b"To: a@example.com\r\n\rBcc: secret@example.org\r\n\rSubject: s\r\n\r\nbody\r\n",
        b"To: a@example.com\r\r\r\nBcc: secret@example.org\r\rSubject: s\n\nbody\n",
        b"To: a@example.com\nSubject: s\r\r\nBcc: x@example.org\r\r\n\r\r\nbody\n",
    ] {
        let tx = send_sendmail(&["-t", "-i"], message);
        let secret = if message.windows(6).any(|w| w == b"secret") {
            "secret@example.org"
        } else {
            "x@example.org"
        };
        assert_eq!(tx.rcpt_to, ["a@example.com", secret], "{message:?}");
        assert!(!tx.data_str().contains(secret), "{}", tx.data_str());
        assert!(!has_bcc_line(&tx.raw_data));
        assert_eq!(header(&tx.data, "subject").as_deref(), Some("s"));
        assert_eq!(body(&tx.data), b"body\r\n", "{}", tx.data_str());
    }
    // A bare CR before a second Bcc address: one Bcc field, not a body line.
    let tx = send_sendmail(
        &["-t", "-i"],
        "To: a@example.com\nBcc: x@example.org,\ry@example.org\n\nbody\n",
    );
    assert_eq!(
        tx.rcpt_to,
        ["a@example.com", "x@example.org", "y@example.org"]
    );
    assert!(
        !tx.data_str().contains("y@example.org"),
        "{}",
        tx.data_str()
    );
    // Inside the header, a bare CR before a field still starts that field.
    let tx = send_sendmail(
        &["-t", "-i"],
        "To: a@example.com\nSubject: hi\rBcc: s@example.org\n\nbody\n",
    );
    assert_eq!(tx.rcpt_to, ["a@example.com", "s@example.org"]);
    assert_eq!(header(&tx.data, "subject").as_deref(), Some("hi"));
    assert!(!tx.data_str().contains("s@example.org"));
}

#[test]
fn a_bare_cr_inside_a_header_value_is_a_space_not_a_refusal() {
    let message = "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@h> job\nX-Cron-Env: <PATH=/usr/bin\r>\nX-Cron-Env: <HOME=/root>\n\nout\n";
    let tx = send_sendmail(
        &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
        message,
    );
    assert!(
        tx.data_str()
            .contains("\r\nX-Cron-Env: <PATH=/usr/bin >\r\nX-Cron-Env: <HOME=/root>\r\n"),
        "{}",
        tx.data_str()
    );
    assert_eq!(body(&tx.data), b"out\r\n");
    // The last field too: its tail is not moved into the body.
    let tx = send_sendmail(&["-i", "root"], "Subject: a\rb\n\nout\n");
    assert_eq!(header(&tx.data, "subject").as_deref(), Some("a b"));
    assert_eq!(body(&tx.data), b"out\r\n");
}

#[test]
fn the_lone_dot_rule_sees_lf_lines_only() {
    // A `.` between bare CRs is no line of its own: nothing is cut.
    let tx = send_sendmail(
        &["-FAnacron", "-odi", "root"],
        "Subject: s\n\nline one\r.\rline two\nline three\n",
    );
    assert_eq!(
        body(&tx.data),
        b"line one\r\n.\r\nline two\r\nline three\r\n",
        "{}",
        tx.data_str()
    );
    // `.` with CRLF, or with CR CR LF (only one CR is part of the line end
    // for this rule, as in Postfix): only the first ends the message.
    let tx = send_sendmail(&["root"], "Subject: s\n\na\r\n.\r\r\nb\r\n.\r\nc\r\n");
    assert_eq!(body(&tx.data), b"a\r\n.\r\nb\r\n");
}

#[test]
fn only_space_and_tab_may_precede_the_colon() {
    refused(
        &["-t", "-i"],
        "To\x0c: a@example.com\nBcc\x0c: s@example.org\nSubject: s\n\nbody\n",
        65,
        "line 1",
    );
    refused(
        &["-i", "x@example.com"],
        "Subject: s\nX-Y\x0b: v\n\nbody\n",
        65,
        "line 2",
    );
    // Space and tab stay accepted (the obsolete `Bcc : x` form).
    let tx = send_sendmail(&["-t", "-i"], "To \t: a@example.com\nSubject: s\n\nbody\n");
    assert_eq!(tx.rcpt_to, ["a@example.com"]);
}

#[test]
fn only_a_real_mbox_from_line_is_dropped() {
    let tx = send_sendmail(&["root"], "From the backup job: 3 files failed\n");
    assert_eq!(body(&tx.data), b"From the backup job: 3 files failed\r\n");
    let tx = send_sendmail(
        &["root"],
        "From : Alice <alice@example.com>\nSubject: s\n\nx\n",
    );
    assert!(
        tx.data_str()
            .starts_with("From : Alice <alice@example.com>\r\nSubject: s\r\n"),
        "{}",
        tx.data_str()
    );
    for line in [
        "From MAILER-DAEMON Sat Nov 28 10:00:00 2026",
        "From root@host.example.com  Mon Jan  1 00:00:00 2026",
        "From <> Tue Dec 01 12:34:56 2026 +0000",
    ] {
        let tx = send_sendmail(&["root"], format!("{line}\nSubject: s\n\nx\n"));
        assert!(!tx.data_str().contains(&line[5..]), "{line}");
        assert_eq!(header(&tx.data, "subject").as_deref(), Some("s"));
    }
}

#[test]
fn long_field_names_and_encoded_words_are_never_broken_inside() {
    let name = format!("X-{}", "N".repeat(1200));
    refused(
        &["-i", "x@example.com"],
        format!("Subject: s\n{name}: v\n\nbody\n"),
        65,
        "line 2",
    );
    // Encoded words with no white space between: broken between them.
    let word = "=?UTF-8?B?w6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqQ==?=";
    let words = word.repeat(40);
    let tx = send_sendmail(
        &["-i", "x@example.com"],
        format!("Subject: {words}\n\nbody\n"),
    );
    assert!(longest_wire_line(&tx) <= 998);
    let subject = header(&tx.data, "subject").expect("Subject");
    for piece in subject.split(' ') {
        assert!(
            piece.is_empty() || piece.len() % word.len() == 0,
            "broken inside an encoded word: {piece}"
        );
    }
    // One encoded word longer than a line: refused, not made undecodable.
    let long = format!("=?UTF-8?B?{}?=", "w6n".repeat(500));
    refused(
        &["-i", "x@example.com"],
        format!("Subject: {long}\n\nbody\n"),
        65,
        "encoded word",
    );
}

#[test]
fn excluding_many_argument_recipients_takes_linear_time() {
    // -t minus the arguments: 30,000 header addresses, all but one also
    // given as arguments (their domains in another case: a local part is
    // case-sensitive). This once took minutes.
    let to: Vec<String> = (0..30_000).map(|i| format!("u{i}@example.com")).collect();
    let message = format!(
        "To: {}\nCc: keep@example.com\nSubject: s\n\nx\n",
        to.join(", ")
    );
    let mut args = vec!["-t".to_owned(), "-i".to_owned()];
    args.extend((0..30_000).map(|i| format!("u{i}@EXAMPLE.COM")));
    let server = submission();
    let started = std::time::Instant::now();
    Mailsend::sendmail(&server)
        .args(&args)
        .stdin(message)
        .run()
        .expect(0);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(only_transaction(&server).rcpt_to, ["keep@example.com"]);
}

#[test]
fn every_spelling_of_ignore_dots_is_honoured() {
    for args in [
        &["-oitrue", "a@example.com"][..],
        &["-oi", "a@example.com"],
        &["-O", "IgnoreDots", "a@example.com"],
        &["-OIgnoreDots=true", "a@example.com"],
        &["-O", "ignoredots=yes", "a@example.com"],
    ] {
        let tx = send_sendmail(args, "To: a@example.com\n\nl1\n.\nl2\n");
        assert_eq!(body(&tx.data), b"l1\r\n.\r\nl2\r\n", "{args:?}");
    }
    let tx = send_sendmail(
        &["-O", "IgnoreDots=false", "a@example.com"],
        "To: a@example.com\n\nl1\n.\nl2\n",
    );
    assert_eq!(body(&tx.data), b"l1\r\n");
}

/// A leading `From ` line of another mbox flavour (not sendmail's ctime
/// date) above a header is still a separator: the header stays a header,
/// and its Bcc is served, never published in the body.
#[test]
fn a_loose_mbox_from_line_above_a_header_is_dropped() {
    let tx = send_sendmail(
        &["-t"],
        "From x Mon Nov 30 10:00 2026\nTo: a@example.com\nBcc: hidden@example.org\nSubject: s\n\nbody\n",
    );
    assert!(
        !tx.data_str().contains("hidden@example.org"),
        "{}",
        tx.data_str()
    );
    assert!(
        tx.rcpt_to.contains(&"hidden@example.org".to_owned()),
        "{:?}",
        tx.rcpt_to
    );
    assert_eq!(header(&tx.data, "subject").as_deref(), Some("s"));
}

/// A recipient quoted in an error is shown escaped: no terminal escape
/// sequence reaches the screen.
#[test]
fn an_unknown_local_recipient_is_shown_escaped() {
    let server = submission();
    let mut m = Mailsend::sendmail(&server);
    // The same account, without the `default` alias.
    let config = crate::support::cmd::account_config(&server, "")
        .replace("default = \"fallback@example.org\"\n", "");
    m.config(&config);
    let run = m
        .args(["-i", "ro\x1b]0;x\x07ot"])
        .stdin("Subject: s\n\nbody\n")
        .run()
        .expect(65);
    assert!(!run.stderr().contains('\x1b'), "{:?}", run.stderr());
    run.error_mentions(r"ro\u{1b}]0;x\u{7}ot");
}
