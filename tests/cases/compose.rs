//! What arrives: UTF-8, bodies with dots and long lines, HTML, attachments.
use super::*;
use crate::support::cmd::Mailsend;

#[test]
fn utf8_subject_names_and_body() {
    let server = submission();
    Mailsend::to(&server)
        .args([
            "--to",
            "Zoë Müller <z@example.com>",
            "--subject",
            "Grüße aus Köln ☕",
            "--body",
            "Überweisung: 5 €\n",
        ])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    let subject = header(&tx.data, "subject").expect("subject");
    assert!(
        subject.starts_with("=?utf-8?"),
        "RFC 2047 encoded: {subject}"
    );
    assert!(tx.data.is_ascii(), "the message itself is 7-bit");
    assert_eq!(
        header(&tx.data, "content-transfer-encoding").as_deref(),
        Some("quoted-printable")
    );
    let body = String::from_utf8(body(&tx.data)).expect("ascii");
    assert_eq!(body, "=C3=9Cberweisung: 5 =E2=82=AC\r\n");
}

#[test]
fn dots_from_lines_long_lines_and_line_endings() {
    let server = submission();
    let long = "y".repeat(10_000);
    let input = format!(".\n..two\n.three\nFrom the start\r\n{long}\nend without newline");
    Mailsend::to(&server)
        .args(["--to", "a@example.com", "--body", &input])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    let raw = String::from_utf8_lossy(&tx.raw_data);
    assert!(
        raw.lines().all(|l| l.len() <= 998),
        "lines within 998 octets"
    );
    // Dot-stuffed on the wire, restored by the server.
    let data = String::from_utf8_lossy(&tx.data);
    assert!(
        raw.contains("\r\n..\r\n") || raw.contains("\r\n..=\r\n") || raw.contains("\r\n...two"),
        "{raw}"
    );
    assert_eq!(
        tx.raw_data.len() - tx.data.len(),
        raw.lines().filter(|l| l.starts_with('.')).count()
    );
    let decoded = decode_qp_or_plain(&tx.data);
    assert_eq!(
        decoded,
        format!(".\r\n..two\r\n.three\r\nFrom the start\r\n{long}\r\nend without newline\r\n")
    );
    assert!(!data.contains("\r\r"));
}

/// Undoes quoted-printable (soft breaks and =XX) when the body uses it.
fn decode_qp_or_plain(message: &[u8]) -> String {
    let body = body(message);
    let qp = header(message, "content-transfer-encoding").as_deref() == Some("quoted-printable");
    if !qp {
        return String::from_utf8(body).expect("utf-8");
    }
    let text = String::from_utf8(body).expect("ascii");
    let mut out = Vec::new();
    let bytes = text.replace("=\r\n", "").into_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() + 1 {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex digit"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn html_alternative_and_html_only() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    let html = m.file("mail.html", "<p>Hello <b>world</b></p>\n");
    m.args(["--to", "a@example.com", "--body", "Hello world", "--html"])
        .args([&html])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    let ct = header(&tx.data, "content-type").expect("content-type");
    assert!(ct.starts_with("multipart/alternative;"), "{ct}");
    let data = tx.data_str();
    let plain = data.find("Content-Type: text/plain").expect("text part");
    let html_at = data.find("Content-Type: text/html").expect("html part");
    assert!(
        plain < html_at,
        "text before HTML (RFC 2046: last is preferred)"
    );

    let server = submission();
    let mut m = Mailsend::to(&server);
    let html = m.file("mail.html", "<p>only</p>");
    m.args(["--to", "a@example.com", "--html"])
        .args([&html])
        .stdin("")
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert_eq!(
        header(&tx.data, "content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
}

#[test]
fn attachments_are_binary_exact_with_guessed_types_and_rfc2231_names() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    let bytes: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let bin = m.file("data.bin", &bytes);
    let csv = m.file("Bericht März.csv", "a,b\n1,2\n");
    m.args([
        "--to",
        "a@example.com",
        "--subject",
        "report",
        "--body",
        "see attached",
        "--attach",
    ])
    .args([&bin])
    .args(["--attach"])
    .args([&csv])
    .run()
    .expect(0);
    let tx = only_transaction(&server);
    let data = tx.data_str();
    assert!(
        header(&tx.data, "content-type")
            .expect("ct")
            .starts_with("multipart/mixed;")
    );
    assert!(
        data.contains("filename*0*=utf-8''Bericht%20M%C3%A4rz.csv"),
        "RFC 2231 name"
    );
    assert!(
        data.contains("Content-Type: text/csv"),
        "type guessed from the name"
    );

    let decoded = attachment(&tx.data, "filename=\"data.bin\"");
    assert!(decoded == bytes, "attachment round-trips byte for byte");
}

#[test]
fn ascii_attachments_keep_their_line_endings() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    let lf = m.file("x.bin", "a\nb\n");
    let mixed = m.file("table.csv", "a,b\n1,2\r\n3\rend");
    m.args(["--to", "a@example.com", "--body", "x", "--attach"])
        .args([&lf])
        .args(["--attach"])
        .args([&mixed]);
    m.run().expect(0);
    let tx = only_transaction(&server);
    assert_eq!(attachment(&tx.data, "x.bin"), b"a\nb\n");
    assert_eq!(attachment(&tx.data, "table.csv"), b"a,b\n1,2\r\n3\rend");
}

#[test]
fn extra_headers_are_added() {
    let server = submission();
    Mailsend::to(&server)
        .args([
            "--to",
            "a@example.com",
            "--body",
            "x",
            "--header",
            "X-Ticket: 42",
            "--header",
            "List-Unsubscribe: <https://example.com/u>",
        ])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert_eq!(header(&tx.data, "x-ticket").as_deref(), Some("42"));
    assert_eq!(
        header(&tx.data, "list-unsubscribe").as_deref(),
        Some("<https://example.com/u>")
    );
}

/// What an independent reader makes of a message: Python's `email`
/// package (policy `default`, RFC 2047/2231 aware) decodes the subject,
/// the address headers and the attachment file names.
pub fn decoded(message: &[u8]) -> serde_json::Value {
    const SCRIPT: &str = r#"
import email, email.policy, json, sys
m = email.message_from_binary_file(sys.stdin.buffer, policy=email.policy.default)
def addresses(name):
    h = m[name]
    return [[a.display_name, a.addr_spec] for a in h.addresses] if h is not None else []
print(json.dumps({
    "subject": str(m["subject"]) if m["subject"] is not None else None,
    "from": addresses("from"), "to": addresses("to"), "cc": addresses("cc"),
    "reply-to": addresses("reply-to"),
    "files": [p.get_filename() for p in m.iter_attachments()],
}))
"#;
    python_json(SCRIPT, message)
}

#[test]
fn text_that_looks_like_an_encoded_word_arrives_as_typed() {
    let subject = "Re: =?utf-8?q?x?= and Grüße =?utf-8?b?eQ==?= end";
    let to_name = "=?utf-8?q?T=C3=B6?= Team";
    let from_name = "=?iso-8859-1?q?F?=";
    let file = "=?utf-8?q?Zo=C3=AB?=.txt";
    let server = submission();
    let mut m = Mailsend::to(&server);
    let path = m.file(file, "a\n");
    m.args([
        "--subject",
        subject,
        "--to",
        &format!("\"{to_name}\" <a@example.com>"),
        "--from",
        &format!("{from_name} <sender@example.com>"),
        "--body",
        "x",
        "--attach",
    ])
    .args([&path])
    .run()
    .expect(0);
    let tx = only_transaction(&server);
    assert!(tx.data.is_ascii());
    let got = decoded(&tx.data);
    assert_eq!(got["subject"], subject, "{}", tx.data_str());
    assert_eq!(got["to"][0][0], to_name, "{}", tx.data_str());
    assert_eq!(got["from"][0][0], from_name, "{}", tx.data_str());
    assert_eq!(got["files"][0], file, "{}", tx.data_str());
    // Lines stay within RFC 2047's 76 characters.
    let head = tx.data_str();
    let head = head.split("\r\n\r\n").next().expect("header block");
    assert!(head.lines().all(|l| l.len() <= 78), "{head}");
}

#[test]
fn an_idn_domain_goes_out_as_its_a_label() {
    let server = submission();
    Mailsend::to(&server)
        .args([
            "--from",
            "Bücher <me@bücher.example>",
            "--to",
            "shop@bücher.test, plain@example.com",
            "--body",
            "x",
        ])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert_eq!(tx.mail_from, "me@xn--bcher-kva.example");
    assert_eq!(tx.rcpt_to, ["shop@xn--bcher-kva.test", "plain@example.com"]);
    assert_eq!(
        tx.mail_params, "",
        "an ASCII envelope and message need no SMTPUTF8"
    );
    let id = header(&tx.data, "message-id").expect("Message-ID");
    assert!(
        id.starts_with('<') && id.ends_with("@xn--bcher-kva.example>"),
        "{id}"
    );
    assert_eq!(
        header(&tx.data, "from").as_deref(),
        Some("=?utf-8?b?QsO8Y2hlcg==?= <me@xn--bcher-kva.example>")
    );
    assert_eq!(
        header(&tx.data, "to").as_deref(),
        Some("shop@xn--bcher-kva.test, plain@example.com")
    );
    assert!(tx.data.is_ascii(), "{}", tx.data_str());

    // A non-ASCII local part still needs SMTPUTF8; its domain is ASCII.
    let server = submission();
    Mailsend::to(&server)
        .args(["--from", "me@bücher.example", "--to", "zoë@bücher.test"])
        .args(["--body", "x"])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert_eq!(tx.mail_from, "me@xn--bcher-kva.example");
    assert_eq!(tx.rcpt_to, ["zoë@xn--bcher-kva.test"]);
    assert!(tx.mail_params.contains("SMTPUTF8"), "{}", tx.mail_params);
}

#[test]
fn an_invalid_idn_domain_is_bad_data() {
    for address in [
        "a@bü_cher.test",
        "a@xn--bcher-kv.test",
        "a@-bücher.test",
        "a@bücher..test",
    ] {
        let mut m = Mailsend::bare();
        let run = m
            .args(["--dry-run", "--from", "me@example.com", "--to", address])
            .args(["--body", "x"])
            .run()
            .expect(65);
        run.error_mentions(address);
        assert!(run.stdout().is_empty());
    }
}

#[test]
fn extra_headers_that_would_leak_or_lie_are_refused() {
    for h in [
        "Resent-Bcc: hidden@example.com",
        "resent-bcc: hidden@example.com",
        "RESENT-BCC : hidden@example.com",
        "Resent-To: a@example.com",
        "Resent-Cc: a@example.com",
        "Resent-From: a@example.com",
        "Return-Path: <a@example.com>",
        "Content-Disposition: inline",
        "Content-Transfer-Encoding: 8bit",
        "BCC: hidden@example.com",
    ] {
        let server = submission();
        let run = Mailsend::to(&server)
            .args(["--to", "a@example.com", "--body", "x", "--header", h])
            .run()
            .expect(64);
        let name = h.split(':').next().unwrap_or_default().trim();
        run.error_mentions(&format!("--header cannot set {name}"));
        assert!(server.sessions().is_empty(), "nothing sent for {h}");
    }
}

#[test]
fn repeated_extra_headers_are_all_kept() {
    let mut m = Mailsend::bare();
    let run = m
        .args([
            "--dry-run",
            "--from",
            "me@example.com",
            "--to",
            "a@example.com",
        ])
        .args([
            "--header",
            "X-Tag: one",
            "--header",
            "X-Tag: two",
            "--body",
            "x",
        ])
        .run()
        .expect(0);
    let tags: Vec<String> = headers(&run.output.stdout)
        .into_iter()
        .filter(|(n, _)| n == "x-tag")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(tags, ["one", "two"]);
}

/// `tar c dir | mailsend --attach-stdin dir.tar --body ...`: standard
/// input becomes an attachment byte for byte, the text comes from --body.
#[test]
fn attach_stdin_sends_standard_input_as_a_named_file() {
    let server = submission();
    let bytes: Vec<u8> = (0..200_000u32).map(|i| ((i * 7919) >> 3) as u8).collect();
    Mailsend::to(&server)
        .args(["--to", "a@example.com", "--subject", "backup"])
        .args(["--body", "the archive", "--attach-stdin", "dir.tar"])
        .stdin(bytes.clone())
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert!(tx.data_str().contains("the archive"));
    assert!(
        tx.data_str().contains("Content-Type: application/x-tar"),
        "type from the name"
    );
    assert!(attachment(&tx.data, "filename=\"dir.tar\"") == bytes);
}

/// `cmd | mailsend --attach /dev/stdin`: the attachment is the piped
/// input, as before attachments were streamed, not the text body (which
/// left the attachment empty, or refused binary input as a text body).
/// Another reader of standard input with it is a usage error (see
/// `attach_stdin_refuses_bad_names_and_a_second_reader_of_stdin`).
#[test]
fn attach_dev_stdin_takes_the_piped_input_not_the_body() {
    const TEXT: &str = r#"
import email, email.policy, json, sys
m = email.message_from_binary_file(sys.stdin.buffer, policy=email.policy.default)
print(json.dumps([p.get_content() for p in m.walk() if p.get_content_type() == "text/plain"]))
"#;
    let server = submission();
    let bytes: Vec<u8> = (0..200_000u32).map(|i| ((i * 7919) >> 3) as u8).collect();
    for path in ["/dev/stdin", "/dev/fd/0"] {
        let run = Mailsend::to(&server)
            .args(["--to", "a@example.com", "--dry-run", "--attach", path])
            .stdin(bytes.clone())
            .run()
            .expect(0);
        let message = run.output.stdout;
        assert!(attachment(&message, "filename=") == bytes, "{path}");
        assert_eq!(python_json(TEXT, &message), serde_json::json!([""]));
    }
    assert!(server.sessions().is_empty());
}

#[test]
fn attach_stdin_refuses_bad_names_and_a_second_reader_of_stdin() {
    let server = submission();
    for (args, needle) in [
        (vec!["--attach-stdin", "../x"], "plain file name"),
        (vec!["--attach-stdin", ""], "plain file name"),
        (
            vec!["--attach-stdin", "a.txt", "--body-file", "-"],
            "both want standard input",
        ),
        (
            vec!["--attach", "/dev/stdin", "--body-file", "-"],
            "both want standard input",
        ),
        (
            vec!["--attach", "/dev/stdin", "--attach-stdin", "x.bin"],
            "both want standard input",
        ),
    ] {
        Mailsend::to(&server)
            .args(["--to", "a@example.com"])
            .args(args)
            .stdin("x")
            .run()
            .expect(64)
            .error_mentions(needle);
    }
    assert!(server.sessions().is_empty());
}

/// A message over the in-memory limit is composed in an unnamed file
/// under TMPDIR: `--dry-run` prints it whole, and a TMPDIR that cannot
/// take it is a temporary failure (75) that names the directory, before
/// any connection; a small message never needs one.
#[test]
fn large_messages_spool_to_tmpdir_and_an_unwritable_one_is_75() {
    let server = submission();
    let m = Mailsend::to(&server);
    let bytes: Vec<u8> = (0..2_500_000u32).map(|i| (i % 253) as u8).collect();
    let big = m.file("big.bin", &bytes);
    let spool = tempfile::tempdir().expect("spool dir");
    let run = Mailsend::to(&server)
        .env_os("TMPDIR", spool.path())
        .args([
            "--to",
            "a@example.com",
            "--body",
            "x",
            "--dry-run",
            "--attach",
        ])
        .args([&big])
        .run()
        .expect(0);
    let printed = run.stdout();
    assert!(attachment(printed.as_bytes(), "big.bin") == bytes);
    assert_eq!(
        std::fs::read_dir(spool.path()).expect("spool").count(),
        0,
        "the spool file has no name"
    );

    let missing = spool.path().join("gone");
    for (attach, code) in [(true, 75), (false, 0)] {
        let mut m = Mailsend::to(&server);
        m.env_os("TMPDIR", &missing)
            .args(["--to", "a@example.com", "--body", "small"]);
        if attach {
            m.args(["--attach"]).args([&big]);
        }
        let run = m.run().expect(code);
        if attach {
            run.error_mentions("cannot write the message to a temporary file")
                .error_mentions("gone");
            assert!(run.stderr().contains("TMPDIR"), "{}", run.stderr());
        }
    }
    assert_eq!(server.sessions().len(), 1, "only the small message went");
}

/// Under a file size limit (`ulimit -f`, systemd's LimitFSIZE) smaller
/// than the message, the spool cannot hold it: one error line naming the
/// limit and 75, not a death by SIGXFSZ without a word; nothing is sent.
#[test]
fn a_file_size_limit_below_the_message_is_75_not_a_signal() {
    let server = submission();
    let m = Mailsend::to(&server);
    let big = m.file("big.bin", vec![7u8; 3_000_000]);
    let spool = tempfile::tempdir().expect("spool dir");
    let run = Mailsend::to(&server)
        .env_os("TMPDIR", spool.path())
        .file_size_limit(1 << 20)
        .args(["--to", "a@example.com", "--body", "x", "--attach"])
        .args([&big])
        .run();
    assert!(
        run.output.status.code().is_some(),
        "killed by a signal: {:?}",
        run.output.status
    );
    let run = run.expect(75);
    run.error_mentions("cannot write the message to a temporary file");
    assert!(run.stderr().contains("ulimit -f"), "{}", run.stderr());
    assert!(server.sessions().is_empty());
}

/// More attachments than the process may hold open files (`logs/*`
/// under the usual limit of 1024): each is opened only while it is read.
#[test]
fn more_attachments_than_open_files_allowed_are_all_attached() {
    let mut m = Mailsend::bare();
    let paths: Vec<_> = (0..100)
        .map(|i| m.file(&format!("f{i}.txt"), format!("file {i}\n")))
        .collect();
    m.env("MAILSEND_FROM", "me@example.com")
        .open_files_limit(40)
        .args(["--to", "a@example.com", "--body", "x", "--dry-run"]);
    for p in &paths {
        m.args(["--attach".as_ref(), p.as_os_str()]);
    }
    let run = m.run().expect(0);
    let message = run.output.stdout;
    for i in [0, 41, 99] {
        let marker = format!("filename=\"f{i}.txt\"");
        assert_eq!(
            attachment(&message, &marker),
            format!("file {i}\n").into_bytes()
        );
    }
}

/// Named pipes are read one after the other, as they were before
/// attachments were streamed: a writer that fills `p1` and only then
/// opens `p2` must not wait for a reader of `p1` that waits for `p2`.
#[test]
fn named_pipes_written_one_after_the_other_do_not_deadlock() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut m = Mailsend::bare();
    let (p1, p2) = (m.path().join("p1"), m.path().join("p2"));
    for p in [&p1, &p2] {
        let made = Command::new("mkfifo").arg(p).status().expect("mkfifo");
        assert!(made.success());
    }
    let one: Vec<u8> = (0..200_000u32).map(|i| ((i * 31) >> 2) as u8).collect();
    let two: Vec<u8> = (0..100_000u32).map(|i| ((i * 17) >> 3) as u8).collect();
    let (w1, w2, b1, b2) = (p1.clone(), p2.clone(), one.clone(), two.clone());
    std::thread::spawn(move || {
        let _ = std::fs::write(&w1, &b1);
        let _ = std::fs::write(&w2, &b2);
    });
    let mut child = m
        .env("MAILSEND_FROM", "me@example.com")
        .args(["--to", "a@example.com", "--body", "x", "--dry-run"])
        .args(["--attach".as_ref(), p1.as_os_str()])
        .args(["--attach".as_ref(), p2.as_os_str()])
        .spawn_with(Stdio::piped(), Stdio::null());
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("mailsend still waits for the second pipe after 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let message = reader.join().expect("stdout");
    assert!(attachment(&message, "filename=\"p1\"") == one);
    assert!(attachment(&message, "filename=\"p2\"") == two);
}

/// `--dry-run` into a stdout that cannot take it (a full disk) is an
/// error (75), not a silent success; a reader that goes away is fine.
#[test]
fn dry_run_into_a_full_stdout_is_75() {
    let m = Mailsend::bare();
    let big = m.file("big.bin", vec![7u8; 1_500_000]);
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    let child = Mailsend::bare()
        .env("MAILSEND_FROM", "me@example.com")
        .args([
            "--to",
            "a@example.com",
            "--body",
            "x",
            "--dry-run",
            "--attach",
        ])
        .args([&big])
        .spawn_with(full.into(), std::process::Stdio::piped());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("cannot write the message to standard output"),
        "{stderr}"
    );
}

/// With --skip-empty, nothing on standard input is nothing to send.
#[test]
fn attach_stdin_with_skip_empty_and_empty_input_sends_nothing() {
    let server = submission();
    Mailsend::to(&server)
        .args([
            "--to",
            "a@example.com",
            "--skip-empty",
            "--attach-stdin",
            "out.log",
        ])
        .stdin("")
        .run()
        .expect(0);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(server.sessions().is_empty());
}

/// Decodes many messages with Python's `email` package in one run. For
/// each: the subject and the `X-Prop` header (policy `default`), the To
/// address and its display name read the RFC way (a quoted string
/// unquoted; encoded words joined with the white space between adjacent
/// ones ignored, RFC 2047 6.2, which the legacy `decode_header` does and
/// the `default` policy does not for phrases), and the longest line of
/// the header block.
fn decode_many(messages: &[Vec<u8>]) -> Vec<serde_json::Value> {
    const SCRIPT: &str = r#"
import email, email.policy, email.header, json, re, sys
out = []
for text in json.load(sys.stdin):
    raw = text.encode("latin-1")
    m = email.message_from_bytes(raw, policy=email.policy.default)
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    to = re.search(r"(?:^|\r\n)To:(.*?)(?=\r\n[^ \t]|$)", head, re.S).group(1).replace("\r\n", "")
    name, _, addr = to.strip().rpartition("<")
    name = name.strip()
    if name.startswith('"'):
        # One or more quoted strings, read joined by one space.
        name = " ".join(re.sub(r'\\(.)', r'\1', q) for q in re.findall(r'"((?:[^"\\]|\\.)*)"', name))
    elif name:
        name = str(email.header.make_header(email.header.decode_header(name)))
    out.append({
        "subject": str(m["subject"]) if m["subject"] is not None else None,
        "x-prop": str(m["x-prop"]) if m["x-prop"] is not None else None,
        "to-name": name, "to-addr": addr.rstrip(">"),
        "to-default": [[a.display_name, a.addr_spec] for a in m["to"].addresses],
        "longest": max(len(l) for l in head.split("\r\n")),
    })
print(json.dumps(out))
"#;
    let input: Vec<String> = messages
        .iter()
        .map(|m| m.iter().map(|&b| b as char).collect())
        .collect();
    let decoded = python_json(SCRIPT, &serde_json::to_vec(&input).expect("JSON"));
    serde_json::from_value(decoded).expect("a list from python3")
}

/// Pieces that broke composition before: tabs, runs of spaces between
/// encoded words, quote and backslash runs, encoded-word look-alikes,
/// Unicode separators and invisible characters, long runs.
const HOSTILE: &[&str] = &[
    "a",
    "Zoë",
    " ",
    "  ",
    "   ",
    "\t",
    "\"",
    "\\",
    "\\\\\"\"",
    "=?",
    "?=",
    "=?utf-8?q?x?=",
    "\u{2028}",
    "\u{2029}",
    "\u{3000}",
    "\u{205f}",
    "\u{a0}",
    "\u{200b}",
    "\u{feff}",
    "\u{ff20}",
    "é",
    ".",
    "J.R.",
    "(",
    ")",
    ",",
    "<",
    ">",
    "@",
    ";",
    ":",
];

fn hostile_text(rng: &mut fastrand::Rng, max: usize) -> String {
    let len = rng.usize(1..=max);
    let mut text: String = (0..len)
        .map(|_| HOSTILE[rng.usize(..HOSTILE.len())])
        .collect();
    if rng.usize(..6) == 0 {
        // A long run somewhere: must still fold within 998 octets.
        // (Up to 800 octets: a run of more than 900 without a space or tab
        // is refused, as the next test shows.)
        let run = ["x", "\\", "\"", "é", "\t"][rng.usize(..5)].repeat(rng.usize(100..400));
        text.push_str(&run);
        text.push_str(HOSTILE[rng.usize(..HOSTILE.len())]);
    }
    text
}

/// A quoted string holding `name`, as a user would type it.
fn quoted(name: &str) -> String {
    let mut q = String::from("\"");
    for c in name.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

#[test]
fn hostile_subjects_names_and_header_values_arrive_as_typed() {
    let mut rng = fastrand::Rng::with_seed(2047);
    let mut cases = Vec::new();
    let mut messages = Vec::new();
    for _ in 0..150 {
        // Subjects keep everything, leading and trailing white space too.
        let subject = hostile_text(&mut rng, 8);
        // A display name or --header value starts and ends with a letter:
        // the outer white space of those is not content.
        let name = format!("N{}N", hostile_text(&mut rng, 6).replace('\t', " "));
        let value = format!("v{}v", hostile_text(&mut rng, 6));
        let run = Mailsend::bare()
            .args(["--dry-run", "--from", "me@example.com", "--body", "x"])
            .args(["--subject", &subject])
            .args(["--to", &format!("{} <a@example.com>", quoted(&name))])
            .args(["--header", &format!("X-Prop: {value}")])
            .run();
        assert_eq!(
            run.code(),
            0,
            "subject {subject:?} name {name:?} value {value:?}: {}",
            run.stderr()
        );
        messages.push(run.output.stdout.clone());
        cases.push((subject, name, value));
    }
    let decoded = decode_many(&messages);
    for (i, ((subject, name, value), got)) in cases.iter().zip(&decoded).enumerate() {
        let shown = String::from_utf8_lossy(&messages[i]).into_owned();
        assert!(
            got["longest"].as_u64().unwrap() <= 998,
            "a header line over 998 octets:\n{shown}"
        );
        assert_eq!(got["subject"], subject.as_str(), "{shown}");
        assert_eq!(got["x-prop"], value.as_str(), "{shown}");
        assert_eq!(got["to-name"], name.as_str(), "{shown}");
        assert_eq!(got["to-addr"], "a@example.com", "{shown}");
        assert_eq!(got["to-default"][0][1], "a@example.com", "{shown}");
    }
}

#[test]
fn tab_separated_subjects_and_headers_fold_within_998_octets() {
    let row = (0..200)
        .map(|i| format!("field{i}"))
        .collect::<Vec<_>>()
        .join("\t");
    let two = format!("{}\t{}", "a".repeat(800), "a".repeat(800));
    for text in [row, two] {
        let run = Mailsend::bare()
            .args([
                "--dry-run",
                "--from",
                "me@example.com",
                "--to",
                "b@example.com",
            ])
            .args(["--body", "x", "--subject", &text])
            .args(["--header", &format!("X-Prop: {text}")])
            .run()
            .expect(0);
        let out = run.output.stdout.clone();
        let head = run.stdout();
        let head = head.split("\r\n\r\n").next().unwrap().to_owned();
        assert!(head.split("\r\n").all(|l| l.len() <= 998), "{head}");
        let got = &decode_many(&[out])[0];
        assert_eq!(got["subject"], text.as_str());
        assert_eq!(got["x-prop"], text.as_str());
    }
}

#[test]
fn long_escaped_or_dotted_display_names_stay_valid() {
    let names = [
        "\\".repeat(850),
        "\"".repeat(850),
        format!("{} {}", "\\\"".repeat(300), "x".repeat(80)),
        ".".into(),
        ". ".into(),
        ".a".into(),
        "..".into(),
        "J.R.".into(),
        "J. R. Doe".into(),
        "Reports from the nightly build of the \"project\", sent by the CI robot, daily".into(),
        format!("{} {}  {}", "w".repeat(60), "\\".repeat(30), "z".repeat(69)),
    ];
    let mut messages = Vec::new();
    for name in &names {
        let mailbox = format!("{} <a@example.com>", quoted(name));
        let run = Mailsend::bare()
            .args(["--dry-run", "--body", "x"])
            .args(["--from", &mailbox, "--to", &mailbox, "--cc", &mailbox])
            .args(["--reply-to", &mailbox])
            .run()
            .expect(0);
        let head = run.stdout();
        let head = head.split("\r\n\r\n").next().unwrap().to_owned();
        assert!(head.split("\r\n").all(|l| l.len() <= 998), "{head}");
        // No obs-phrase: a name with a dot goes quoted or encoded.
        assert!(!head.contains("To: J.R."), "{head}");
        assert!(!head.contains("To: . "), "{head}");
        messages.push(run.output.stdout);
    }
    for (name, got) in names.iter().zip(decode_many(&messages)) {
        assert_eq!(got["to-name"], name.trim(), "{name:?}");
        assert_eq!(got["to-default"][0][1], "a@example.com", "{name:?}");
        if name.starts_with("Reports") {
            // Split into quoted strings, not encoded words: even readers
            // that space out adjacent encoded words in names get it.
            assert_eq!(got["to-default"][0][0], name.as_str());
        }
    }
}

#[test]
fn unicode_spaces_invisibles_and_lookalike_at_signs_are_refused_in_local_parts() {
    let bad = [
        '\u{2028}', '\u{2029}', '\u{3000}', '\u{205f}', '\u{a0}', '\u{200b}', '\u{feff}',
        '\u{ff20}', '\u{fe6b}', '\u{2060}', '\u{202e}', '\u{1680}', '\u{85}',
    ];
    for c in bad {
        for address in [
            format!("a{c}b@example.com"),
            format!("{c}a@example.com"),
            format!("a{c}@example.com"),
            format!("\"x{c}y\"@example.com"),
            format!("\"x{c}Bcc: evil@example.net\"@example.com"),
            format!("Name <a{c}b@example.com>"),
            format!("ceo{c}bank.example@example.org"),
        ] {
            for flag in ["--to", "--from"] {
                let mut m = Mailsend::bare();
                m.args(["--dry-run", "--body", "x"]);
                if flag == "--to" {
                    m.args(["--from", "me@example.com"]);
                } else {
                    m.args(["--to", "a@example.com"]);
                }
                let run = m.args([flag, &address]).run();
                assert_eq!(run.code(), 65, "{flag} {address:?}: {}", run.stderr());
                let stderr = run.stderr();
                assert_eq!(stderr.lines().count(), 1, "{address:?}: {stderr}");
                assert!(!stderr.contains(c), "raw {c:?} in the error: {stderr}");
                assert!(
                    stderr.contains(&format!("\\u{{{:x}}}", c as u32)),
                    "the character is named escaped: {stderr}"
                );
                assert!(run.stdout().is_empty());
            }
        }
    }
}

#[test]
fn errors_about_domains_never_hold_raw_separators() {
    for c in ['\u{2028}', '\u{feff}', '\u{3000}', '\u{200b}', '\u{85}'] {
        let run = Mailsend::bare()
            .args(["--dry-run", "--from", "me@example.com", "--body", "x"])
            .args(["--to", &format!("a@exam{c}ple.com")])
            .run()
            .expect(65);
        let stderr = run.stderr();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!stderr.contains(c), "raw {c:?}: {stderr}");
    }
}

#[test]
fn over_long_paths_and_non_ldh_ascii_domains_are_refused() {
    let label = "d".repeat(60);
    let domain = format!("{label}.{label}.{label}.{label}.example"); // 252 octets
    let long = format!("{}@{}", "l".repeat(64), &domain[..247]);
    for address in [
        long.as_str(),
        "a@ex_ample.com",
        "a@1.2.3.4.5",
        "a@123",
        "a@-example.com",
        "a@example-.com",
    ] {
        Mailsend::bare()
            .args(["--dry-run", "--from", "me@example.com", "--body", "x"])
            .args(["--to", address])
            .run()
            .expect(65)
            .error_mentions("invalid address in --to");
    }
    // At the limit: 64 + 1 + 189.
    let ok = format!(
        "{}@{}",
        "l".repeat(64),
        &domain[..189].trim_end_matches('.')
    );
    Mailsend::bare()
        .args(["--dry-run", "--from", "me@example.com", "--body", "x"])
        .args([
            "--to",
            &ok,
            "--to",
            "a@mail-1.example.com",
            "--to",
            "b@192.example",
        ])
        .run()
        .expect(0);
}

#[test]
fn structured_header_values_with_addresses_use_a_labels() {
    let run = Mailsend::bare()
        .args([
            "--dry-run",
            "--from",
            "me@example.com",
            "--to",
            "b@example.com",
        ])
        .args(["--body", "x"])
        .args(["--header", "Sender: Zoë <z@bücher.example>"])
        .args([
            "--header",
            "Disposition-Notification-To: \"Doe, J.\" <j@bücher.example>, k@example.org",
        ])
        .args(["--header", "X-A: =?utf-8?q?x?="])
        .args(["--header", "In-Reply-To: <a.1@example.com>"])
        .run()
        .expect(0);
    let head = run.stdout();
    assert!(head.is_ascii(), "{head}");
    const SCRIPT: &str = r#"
import email, email.policy, json, sys
m = email.message_from_binary_file(sys.stdin.buffer, policy=email.policy.default)
def a(n):
    return [[x.display_name, x.addr_spec] for x in m[n].addresses]
import email.utils
dnt = [list(x) for x in email.utils.getaddresses([str(m["disposition-notification-to"])])]
print(json.dumps({"sender": a("sender"), "dnt": dnt,
    "x-a": str(m["x-a"]), "irt": str(m["in-reply-to"])}))
"#;
    let got = python_json(SCRIPT, &run.output.stdout);
    assert_eq!(
        got["sender"],
        serde_json::json!([["Zoë", "z@xn--bcher-kva.example"]])
    );
    assert_eq!(
        got["dnt"],
        serde_json::json!([
            ["Doe, J.", "j@xn--bcher-kva.example"],
            ["", "k@example.org"]
        ])
    );
    assert_eq!(got["x-a"], "=?utf-8?q?x?=");
    assert_eq!(got["irt"], "<a.1@example.com>");
    // Bad addresses, two senders and non-ASCII in a field that cannot
    // carry encoded words are refused.
    for header in [
        "Sender: not an address",
        "Sender: a@example.com, b@example.com",
        "Disposition-Notification-To: a\u{2028}b@example.com",
        "List-Post: <mailto:zoë@example.com>",
        "In-Reply-To: <ü@example.com>",
    ] {
        let run = Mailsend::bare()
            .args([
                "--dry-run",
                "--from",
                "me@example.com",
                "--to",
                "b@example.com",
            ])
            .args(["--body", "x", "--header", header])
            .run()
            .expect(65);
        assert!(!run.stderr().contains('\u{2028}'));
        assert_eq!(run.stderr().lines().count(), 1, "{}", run.stderr());
    }
}

/// A file of /proc or /sys says a size (0, 4096) that is not its content's:
/// it is attached whole, as before attachments were streamed, not refused
/// as "changed while it was read" (review J2: `--attach /proc/mdstat`).
#[test]
fn proc_and_sys_files_are_attached_whole() {
    for path in ["/proc/version", "/sys/class/net/lo/address"] {
        let Ok(want) = std::fs::read(path) else {
            continue;
        };
        let out = Mailsend::bare()
            .env("MAILSEND_FROM", "me@example.com")
            .args(["--to", "a@example.com", "--body", "x", "--dry-run"])
            .args(["--attach", path])
            .run()
            .expect(0);
        let name = path.rsplit('/').next().unwrap_or(path);
        let got = attachment(out.stdout().as_bytes(), &format!("filename=\"{name}\""));
        assert_eq!(got, want, "{path}");
    }
}
