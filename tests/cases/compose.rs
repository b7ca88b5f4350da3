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
