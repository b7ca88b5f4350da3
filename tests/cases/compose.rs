//! What arrives: UTF-8, bodies with dots and long lines, HTML, attachments.

use base64::Engine;

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

/// The decoded content of the attachment part whose headers contain `marker`.
fn attachment(message: &[u8], marker: &str) -> Vec<u8> {
    let data = String::from_utf8_lossy(message);
    let ct = header(message, "content-type").expect("content-type");
    let boundary = ct
        .split("boundary=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("boundary");
    let part = data
        .split(&format!("--{boundary}"))
        .find(|p| p.contains(marker))
        .expect("attachment part");
    let (head, body) = part.split_once("\r\n\r\n").expect("part body");
    assert!(head.contains("Content-Transfer-Encoding: base64"), "{head}");
    let encoded: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64")
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
    use std::io::Write;
    use std::process::{Command, Stdio};
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
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3, the independent decoder these tests use");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(message)
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3 output");
    assert!(out.status.success(), "python3 could not read the message");
    serde_json::from_slice(&out.stdout).expect("JSON from python3")
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
