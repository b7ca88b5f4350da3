mod auth_login;
mod bulk;
mod bulk_send;
mod check;
mod client_cert;
mod combined;
mod compose;
mod dkim;
mod docs;
mod errors;
mod inline;
mod oauth;
mod outbox;
mod protocol;
mod security;
mod send;
mod sendmail;
mod settings;

use base64::Engine;
use std::time::Duration;

use crate::support::cmd::{PASSWORD, USER};
use crate::support::server::{Behaviour, Session, TestServer, Transaction};

/// A STARTTLS server with AUTH, as a submission port would be.
pub fn submission() -> TestServer {
    TestServer::start(with_auth(Behaviour::default()))
}

pub fn with_auth(b: Behaviour) -> Behaviour {
    Behaviour {
        auth: Some((USER.into(), PASSWORD.into())),
        ..b
    }
}

/// The one session the server saw, once it ended.
pub fn only_session(server: &TestServer) -> Session {
    let sessions = server.wait_sessions(1, Duration::from_secs(20));
    assert_eq!(sessions.len(), 1, "expected one session: {sessions:?}");
    sessions.into_iter().next().expect("one session")
}

/// The one transaction of the one session.
pub fn only_transaction(server: &TestServer) -> Transaction {
    let session = only_session(server);
    assert_eq!(
        session.transactions.len(),
        1,
        "commands: {:?}",
        session.lines()
    );
    session
        .transactions
        .into_iter()
        .next()
        .expect("one transaction")
}

/// The header block of a message, unfolded, as (lowercase name, value).
pub fn headers(data: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(data);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    out
}

pub fn header(data: &[u8], name: &str) -> Option<String> {
    headers(data)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// Whether any line of `data` is a Bcc header (any case). Not a search
/// for "bcc" anywhere: a random Message-ID can hold those hex digits.
pub fn has_bcc_line(data: &[u8]) -> bool {
    String::from_utf8_lossy(data).split("\r\n").any(|line| {
        line.to_ascii_lowercase().starts_with("bcc:")
            || line.to_ascii_lowercase().starts_with("bcc :")
    })
}

/// The body after the header block.
pub fn body(data: &[u8]) -> Vec<u8> {
    let pos = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header/body separator");
    data[pos + 4..].to_vec()
}

/// The decoded content of the attachment part whose headers contain `marker`.
pub fn attachment(message: &[u8], marker: &str) -> Vec<u8> {
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

/// Runs `script` in python3 (the independent decoder these tests use) with
/// `input` on its stdin; the JSON it prints.
pub fn python_json(script: &str, input: &[u8]) -> serde_json::Value {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3, the independent decoder these tests use");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3 output");
    assert!(out.status.success(), "python3 could not read its input");
    serde_json::from_slice(&out.stdout).expect("JSON from python3")
}
