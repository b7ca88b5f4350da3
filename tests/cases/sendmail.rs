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
