//! DKIM signing: what the server receives verifies, in every mode, with
//! keys made here; bad keys are refused before anything is sent.
//!
//! The verifier below is written for these tests from RFC 6376 (relaxed
//! header and body canonicalization on the whole message in memory, not
//! mailsend's streaming code) and checks the signature with OpenSSL.
//! When Debian's dkimpy is installed, every message is also checked with
//! it (the interop suite always does).

use std::path::{Path, PathBuf};

use base64::Engine;
use openssl::pkey::{Id, PKey, Private};

use super::*;
use crate::support::cmd::{Mailsend, Run, account_config};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A key pair for the tests: the private key as PEM, the public one as
/// the p= of its DNS record.
pub(crate) struct Key {
    pub(crate) pem: Vec<u8>,
    public: PKey<openssl::pkey::Public>,
    /// `rsa` or `ed25519`, as k= says.
    kind: &'static str,
    p: String,
}

impl Key {
    fn from(key: PKey<Private>, pkcs1: bool) -> Key {
        let public = PKey::public_key_from_der(&key.public_key_to_der().unwrap()).unwrap();
        let (kind, p) = match key.id() {
            Id::ED25519 => ("ed25519", B64.encode(key.raw_public_key().unwrap())),
            _ => ("rsa", B64.encode(key.public_key_to_der().unwrap())),
        };
        let pem = match pkcs1 {
            true => key.rsa().unwrap().private_key_to_pem().unwrap(),
            false => key.private_key_to_pem_pkcs8().unwrap(),
        };
        Key {
            pem,
            public,
            kind,
            p,
        }
    }

    pub(crate) fn rsa(bits: u32) -> Key {
        Key::from(
            PKey::from_rsa(openssl::rsa::Rsa::generate(bits).unwrap()).unwrap(),
            false,
        )
    }

    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    fn rsa_pkcs1() -> Key {
        Key::from(
            PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap(),
            true,
        )
    }

    pub(crate) fn ed25519() -> Key {
        Key::from(PKey::generate_ed25519().unwrap(), false)
    }

    /// Writes the private key (mode 600) into `m`'s directory.
    pub(crate) fn install(&self, m: &Mailsend, name: &str) -> PathBuf {
        m.private_file(name, &self.pem)
    }
}

/// The tags of a DKIM-Signature value.
fn tags(value: &str) -> Vec<(String, String)> {
    value
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_owned(),
                v.chars().filter(|c| !c.is_whitespace()).collect(),
            )
        })
        .collect()
}

pub(crate) fn tag(value: &str, name: &str) -> String {
    tags(value)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name}= in {value}"))
}

/// Header fields as (name, raw text with its continuation lines, no final CRLF).
fn fields(head: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            let last = out.last_mut().expect("a continuation after a field");
            last.1.push_str("\r\n");
            last.1.push_str(line);
        } else {
            let name = line.split(':').next().unwrap().trim().to_ascii_lowercase();
            out.push((name, line.to_owned()));
        }
    }
    out
}

fn collapse(text: &str) -> String {
    text.split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn relaxed_field(raw: &str) -> String {
    let (name, value) = raw.split_once(':').unwrap();
    let unfolded = value.replace("\r\n", "");
    format!(
        "{}:{}",
        name.trim().to_ascii_lowercase(),
        collapse(&unfolded)
    )
}

fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect();
    // The piece after the last CRLF is the last line only if non-empty.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let mut canonical: Vec<Vec<u8>> = lines
        .into_iter()
        .map(|l| {
            let mut out = Vec::new();
            let mut space = false;
            for b in l {
                if b == b' ' || b == b'\t' {
                    space = true;
                } else {
                    if space {
                        out.push(b' ');
                    }
                    space = false;
                    out.push(b);
                }
            }
            out
        })
        .collect();
    while canonical.last().is_some_and(|l| l.is_empty()) {
        canonical.pop();
    }
    canonical
        .into_iter()
        .flat_map(|mut l| {
            l.extend_from_slice(b"\r\n");
            l
        })
        .collect()
}

/// Verifies the first DKIM-Signature of `message` with `key`; returns the
/// signature's value (unfolded) for more checks.
pub(crate) fn verify(message: &[u8], key: &Key) -> String {
    let split = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = std::str::from_utf8(&message[..split]).expect("an ASCII header");
    let body = &message[split + 4..];
    let fields = fields(head);
    let (_, signature) = fields
        .iter()
        .find(|(n, _)| n == "dkim-signature")
        .unwrap_or_else(|| panic!("no DKIM-Signature in:\n{head}"));
    let value = signature.split_once(':').unwrap().1.replace("\r\n", "");
    assert_eq!(tag(&value, "v"), "1");
    assert_eq!(tag(&value, "c"), "relaxed/relaxed");
    let algorithm = tag(&value, "a");
    let bh = openssl::sha::sha256(&relaxed_body(body));
    assert_eq!(B64.encode(bh), tag(&value, "bh"), "body hash");

    let mut data = String::new();
    let mut used: Vec<String> = Vec::new();
    for name in tag(&value, "h").split(':') {
        let name = name.trim().to_ascii_lowercase();
        let n = used.iter().filter(|u| **u == name).count();
        used.push(name.clone());
        if let Some((_, raw)) = fields
            .iter()
            .filter(|(f, _)| *f != "dkim-signature")
            .rev()
            .filter(|(f, _)| *f == name)
            .nth(n)
        {
            data.push_str(&relaxed_field(raw));
            data.push_str("\r\n");
        }
    }
    // The signature field with b='s value emptied.
    let emptied: Vec<String> = signature
        .split(';')
        .map(|t| match t.trim_start().strip_prefix("b=") {
            Some(_) => format!("{}b=", &t[..t.len() - t.trim_start().len()]),
            None => t.to_owned(),
        })
        .collect();
    data.push_str(&relaxed_field(&emptied.join(";")));
    let b = B64.decode(tag(&value, "b")).expect("base64 b=");
    let ok = match algorithm.as_str() {
        "rsa-sha256" => {
            let mut v =
                openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key.public)
                    .unwrap();
            v.update(data.as_bytes()).unwrap();
            v.verify(&b).unwrap()
        }
        "ed25519-sha256" => {
            let mut v = openssl::sign::Verifier::new_without_digest(&key.public).unwrap();
            v.verify_oneshot(&b, &openssl::sha::sha256(data.as_bytes()))
                .unwrap()
        }
        other => panic!("algorithm {other}"),
    };
    assert!(ok, "the signature does not verify; signed data:\n{data}");
    if let Some(verdict) = dkimpy(message, key) {
        assert!(verdict, "dkimpy does not verify it");
    }
    value
}

/// dkimpy's verdict, with the key served by its `dnsfunc` hook, or `None`
/// when Debian's python3-dkim is not installed.
fn dkimpy(message: &[u8], key: &Key) -> Option<bool> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let python = Path::new("/usr/bin/python3");
    let has = Command::new(python)
        .args(["-c", "import dkim"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        return None;
    }
    let record = format!("v=DKIM1; k={}; p={}", key.kind, key.p);
    let script = "import sys, dkim\n\
record = sys.argv[1].encode()\n\
print(dkim.verify(sys.stdin.buffer.read(), dnsfunc=lambda name, timeout=5: record))\n";
    let mut child = Command::new(python)
        .args(["-c", script, &record])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(message).ok()?;
    let out = child.wait_with_output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim() == "True")
}

pub(crate) fn signed_headers(value: &str) -> Vec<String> {
    tag(value, "h").split(':').map(str::to_owned).collect()
}

fn with_key(m: &mut Mailsend, key: &Key, selector: &str) -> PathBuf {
    let path = key.install(m, "dkim.pem");
    m.args([
        "--dkim-key",
        path.to_str().unwrap(),
        "--dkim-selector",
        selector,
    ]);
    path
}

#[test]
fn text_html_and_attachments_are_signed_with_rsa_and_ed25519() {
    for key in [Key::rsa(2048), Key::ed25519(), Key::rsa_pkcs1()] {
        let server = submission();
        let mut m = Mailsend::to(&server);
        let html = m.file("page.html", "<p>Hello   <b>there</b></p>\n");
        let attachment = m.file(
            "data.bin",
            (0..=255u8).cycle().take(5000).collect::<Vec<_>>(),
        );
        with_key(&mut m, &key, "sel2026");
        m.args(["--from", "Zoë <news@example.com>", "--to", "a@example.net"])
            .args(["--cc", "b@example.org", "--reply-to", "r@example.com"])
            .args([
                "--subject",
                "Grüße, a long subject line that will be folded by the encoder for sure",
            ])
            .args(["--body", "Text  with   spaces \t\n\n\n"])
            .args(["--html", html.to_str().unwrap()])
            .args(["--attach", attachment.to_str().unwrap()])
            .run()
            .expect(0);
        let tx = only_transaction(&server);
        let value = verify(&tx.data, &key);
        assert_eq!(tag(&value, "a"), format!("{}-sha256", key.kind));
        assert_eq!(tag(&value, "d"), "example.com");
        assert_eq!(tag(&value, "s"), "sel2026");
        assert_eq!(
            signed_headers(&value),
            [
                "from",
                "to",
                "cc",
                "subject",
                "date",
                "message-id",
                "mime-version",
                "content-type",
                "reply-to",
                "from"
            ]
        );
        assert!(tx.data.starts_with(b"DKIM-Signature: "));
    }
}

#[test]
fn a_large_message_in_a_spool_file_is_signed_whole() {
    let key = Key::ed25519();
    let server = submission();
    let mut m = Mailsend::to(&server);
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let attachment = m.file("big.bin", &big);
    with_key(&mut m, &key, "s");
    m.args([
        "--from",
        "me@example.com",
        "--to",
        "a@example.net",
        "--body",
        "big",
    ])
    .args(["--attach", attachment.to_str().unwrap()])
    .run()
    .expect(0);
    let tx = only_transaction(&server);
    verify(&tx.data, &key);
    assert_eq!(attachment_of(&tx.data), big);
}

fn attachment_of(data: &[u8]) -> Vec<u8> {
    // The DKIM-Signature field comes first; the helper reads Content-Type.
    super::attachment(data, "big.bin")
}

#[test]
fn sendmail_mode_signs_8bit_input_from_the_account_keys() {
    let key = Key::rsa(2048);
    let server = submission();
    let mut m = Mailsend::sendmail(&server);
    let path = key.install(&m, "dkim.pem");
    m.config(&account_config(
        &server,
        &format!(
            "dkim_key = \"{}\"\ndkim_selector = \"mail\"\n",
            path.display()
        ),
    ));
    m.args(["-i", "x@example.com"])
        .stdin(
            "From: Jörg <a@example.com>\nTo: x@example.com\nSubject: 8bit   input\n\
List-Id: Ops <ops.example.com>\nContent-Type: text/plain; charset=utf-8\n\
Content-Transfer-Encoding: 8bit\n\nGrüße ☕  \n\n\n",
        )
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    let value = verify(&tx.data, &key);
    assert_eq!(
        signed_headers(&value),
        [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "content-type",
            "list-id",
            "from"
        ]
    );
    // sendmail mode takes the flags too, and the variables.
    let server = submission();
    let mut m = Mailsend::sendmail(&server);
    let path = key.install(&m, "other.pem");
    m.env("MAILSEND_DKIM_SELECTOR", "viaenv")
        .args(["--dkim-key", path.to_str().unwrap(), "-i", "x@example.com"])
        .stdin("From: a@example.com\nSubject: x\n\nbody\n")
        .run()
        .expect(0);
    let value = verify(&only_transaction(&server).data, &key);
    assert_eq!(tag(&value, "s"), "viaenv");
}

#[test]
fn every_campaign_message_is_signed_with_its_list_headers() {
    let key = Key::ed25519();
    let server = submission();
    let mut m = Mailsend::to(&server);
    m.file(
        "list.csv",
        "email,name\nu1@example.com,One\nu2@example.com,Two\n",
    );
    let path = key.install(&m, "dkim.pem");
    let dir = m.path().to_owned();
    m.home(&dir)
        .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
        .args(["--subject", "Hello {{ name }}", "--body", "Dear {{ name }}"])
        .args(["--unsubscribe-url", "https://example.com/u?e={{ email }}"])
        .args(["--list-id", "News <news.example.com>", "--yes"])
        .env("MAILSEND_DKIM_KEY", path.to_str().unwrap())
        .env("MAILSEND_DKIM_SELECTOR", "bulk")
        .run()
        .expect(0);
    let sessions = server.wait_sessions(1, std::time::Duration::from_secs(20));
    let txs: Vec<_> = sessions.iter().flat_map(|s| &s.transactions).collect();
    assert_eq!(txs.len(), 2);
    for tx in txs {
        let value = verify(&tx.data, &key);
        let h = signed_headers(&value);
        for name in ["list-unsubscribe", "list-unsubscribe-post", "list-id"] {
            assert!(h.contains(&name.to_owned()), "{name} not signed: {h:?}");
        }
        assert_eq!(h.last().map(String::as_str), Some("from"));
    }
}

#[test]
fn a_queued_message_is_flushed_with_the_signature_it_had() {
    let key = Key::rsa(2048);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut m = Mailsend::to_port(port);
    let home = m.path().to_owned();
    with_key(&mut m, &key, "q");
    let run = m
        .home(&home)
        .args([
            "--queue",
            "--json",
            "--from",
            "me@example.com",
            "--to",
            "a@example.net",
        ])
        .args(["--body", "keep me"])
        .run()
        .expect(0);
    let json: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
    let id = json["queued"].as_str().expect("queued").to_owned();
    let shown = Mailsend::to_port(port)
        .home(&home)
        .args(["outbox", "show", &id])
        .run()
        .expect(0)
        .stdout();
    // `outbox show`: the entry's state, a blank line, the message as queued.
    let queued = shown
        .split_once("\n\n")
        .expect("state, then message")
        .1
        .to_owned();
    assert!(queued.starts_with("DKIM-Signature: "), "{shown}");

    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    // The flush is configured with no key at all: it sends what was queued.
    Mailsend::to_port(port)
        .home(&home)
        .args(["outbox", "flush"])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    let value = verify(&tx.data, &key);
    assert_eq!(tag(&value, "s"), "q");
    assert_eq!(
        tx.data_str(),
        queued,
        "the queued bytes, signature included"
    );
    assert_eq!(tx.data_str().matches("DKIM-Signature:").count(), 1);
}

#[test]
fn every_attempt_carries_the_same_signed_bytes() {
    let key = Key::ed25519();
    let server = TestServer::start(with_auth(Behaviour {
        data_reply: Some("451 4.3.0 try again".into()),
        fault_sessions: Some(1),
        ..Behaviour::default()
    }));
    let mut m = Mailsend::to(&server);
    with_key(&mut m, &key, "s");
    m.args([
        "--from",
        "me@example.com",
        "--to",
        "a@example.net",
        "--body",
        "x",
    ])
    .args(["--retry-for", "20s"])
    .run()
    .expect(0);
    let sessions = server.wait_sessions(2, std::time::Duration::from_secs(20));
    let data: Vec<&Vec<u8>> = sessions
        .iter()
        .flat_map(|s| &s.transactions)
        .map(|t| &t.data)
        .collect();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0], data[1]);
    verify(data[1], &key);
}

/// A run with `key` that must fail before connecting anywhere.
fn refused(m: &mut Mailsend) -> Run {
    m.args([
        "--from",
        "me@example.com",
        "--to",
        "a@example.net",
        "--body",
        "x",
    ])
    .run()
}

#[test]
fn bad_keys_and_settings_are_refused_before_sending() {
    use std::os::unix::fs::PermissionsExt;
    let server = submission();

    // Readable by others: 78, with the chmod hint.
    let mut m = Mailsend::to(&server);
    let path = with_key(&mut m, &Key::ed25519(), "s");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = refused(&mut m).expect(78);
    run.error_mentions("readable by others");
    assert!(run.stderr().contains("chmod 600"), "{}", run.stderr());

    // RSA under 2048 bits.
    let mut m = Mailsend::to(&server);
    with_key(&mut m, &Key::rsa(1024), "s");
    refused(&mut m).expect(78).error_mentions("1024-bit");

    // A key without a selector, and a selector without a key.
    let mut m = Mailsend::to(&server);
    let path = Key::ed25519().install(&m, "k.pem");
    m.args(["--dkim-key", path.to_str().unwrap()]);
    refused(&mut m).expect(78).error_mentions("no selector");
    let mut m = Mailsend::to(&server);
    m.env("MAILSEND_DKIM_SELECTOR", "s");
    refused(&mut m)
        .expect(78)
        .error_mentions("MAILSEND_DKIM_SELECTOR");

    // Not a key, and a missing file.
    let mut m = Mailsend::to(&server);
    let path = m.private_file("k.pem", "hello");
    m.args(["--dkim-key", path.to_str().unwrap(), "--dkim-selector", "s"]);
    refused(&mut m)
        .expect(78)
        .error_mentions("not a PEM private key");
    let mut m = Mailsend::to(&server);
    m.args(["--dkim-key", "/nonexistent/k.pem", "--dkim-selector", "s"]);
    refused(&mut m)
        .expect(78)
        .error_mentions("cannot read DKIM key");

    // A selector that is no DNS label.
    let mut m = Mailsend::to(&server);
    with_key(&mut m, &Key::ed25519(), "bad selector");
    refused(&mut m).expect(64).error_mentions("DKIM selector");

    assert!(server.sessions().is_empty(), "nothing was sent");
}

#[test]
fn a_from_domain_outside_the_signing_domain_gets_one_warning() {
    let key = Key::ed25519();
    let server = submission();
    let mut m = Mailsend::to(&server);
    with_key(&mut m, &key, "s");
    let run = m
        .args(["--dkim-domain", "other.example", "--from", "me@example.com"])
        .args(["--to", "a@example.net", "--body", "x"])
        .run()
        .expect(0);
    let warnings: Vec<&str> = run
        .stderr()
        .lines()
        .filter(|l| l.starts_with("mailsend: warning:"))
        .map(|_| "w")
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr());
    assert!(run.stderr().contains("DMARC"), "{}", run.stderr());
    let value = verify(&only_transaction(&server).data, &key);
    assert_eq!(tag(&value, "d"), "other.example");

    // A subdomain of the signing domain aligns: no warning.
    let server = submission();
    let mut m = Mailsend::to(&server);
    with_key(&mut m, &key, "s");
    let run = m
        .args([
            "--dkim-domain",
            "example.com",
            "--from",
            "me@news.example.com",
        ])
        .args(["--to", "a@example.net", "--body", "x"])
        .run()
        .expect(0);
    assert!(!run.stderr().contains("warning"), "{}", run.stderr());
    verify(&only_transaction(&server).data, &key);
}

#[test]
fn a_dry_run_shows_the_signed_message() {
    let key = Key::ed25519();
    let mut m = Mailsend::bare();
    with_key(&mut m, &key, "s");
    let run = m
        .args([
            "--dry-run",
            "--from",
            "me@example.com",
            "--to",
            "a@example.net",
        ])
        .args(["--body", "x"])
        .run()
        .expect(0);
    verify(&run.output.stdout, &key);
}

/// The DATA writer turns a bare CR into CRLF; the signature must be over
/// those lines, not over the composed bytes.
#[test]
fn a_body_with_bare_carriage_returns_is_signed_as_it_goes_on_the_wire() {
    for key in [Key::rsa(2048), Key::ed25519()] {
        let server = submission();
        let mut m = Mailsend::to(&server);
        let text = m.file("cr.txt", "x\ry  \r\nz\t\r\r\n\r");
        let html = m.file("cr.html", "<p>a\rb</p>\r");
        with_key(&mut m, &key, "s");
        m.args(["--from", "me@example.com", "--to", "a@example.net"])
            .args(["--body-file", text.to_str().unwrap()])
            .args(["--html", html.to_str().unwrap()])
            .run()
            .expect(0);
        let tx = only_transaction(&server);
        assert!(!tx.data.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'));
        verify(&tx.data, &key);
    }
}

#[test]
fn a_key_path_that_is_a_fifo_is_refused_at_once() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    let fifo = m.path().join("k.pem");
    let status = std::process::Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    m.args(["--dkim-key", fifo.to_str().unwrap(), "--dkim-selector", "s"]);
    refused(&mut m)
        .expect(78)
        .error_mentions("not a regular file");
    assert!(server.sessions().is_empty());
}

/// The default signing domain is the From address's, never a domain
/// inside a comment or display name, nor a later address of the list.
#[test]
fn the_default_domain_is_the_from_address_not_a_comment() {
    let key = Key::ed25519();
    for from in [
        "a@example.com (Joe <joe@evil.test>)",
        "a@example.com, b@evil.test",
        "\"x@evil.test\" <a@example.com>",
    ] {
        let server = submission();
        let mut m = Mailsend::sendmail(&server);
        with_key(&mut m, &key, "s");
        let run = m
            .args(["-f", "a@example.com", "-i", "x@example.com"])
            .stdin(format!(
                "From: {from}\nTo: x@example.com\nSubject: s\n\nbody\n"
            ))
            .run()
            .expect(0);
        assert!(!run.stderr().contains("warning"), "{}", run.stderr());
        let value = verify(&only_transaction(&server).data, &key);
        assert_eq!(tag(&value, "d"), "example.com", "From: {from}");
    }
}

/// A List-* field name that cannot stand in h= (a `;` ends the tag) is
/// sent unsigned instead of breaking the signature.
#[test]
fn a_list_field_whose_name_cannot_be_in_h_is_left_unsigned() {
    let key = Key::rsa(2048);
    let server = submission();
    let mut m = Mailsend::to(&server);
    with_key(&mut m, &key, "s");
    m.args(["--from", "me@example.com", "--to", "a@example.net"])
        .args(["--body", "x", "--header", "List-X;y: 1"])
        .args(["--header", "List-Id: x <x.example.com>"])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert!(tx.data_str().contains("\r\nList-X;y: 1\r\n"));
    let value = verify(&tx.data, &key);
    assert!(signed_headers(&value).contains(&"list-id".to_owned()));
}

/// Many signed fields make a long h=: it is folded, so no line of the
/// DKIM-Signature field passes the 998 characters of RFC 5322 2.1.1.
#[test]
fn a_long_signed_header_list_is_folded() {
    let key = Key::ed25519();
    let server = submission();
    let mut m = Mailsend::sendmail(&server);
    with_key(&mut m, &key, "s");
    let mut input = String::from("From: a@example.com\n");
    for i in 0..400 {
        input.push_str(&format!("To: x{i}@example.com\n"));
    }
    input.push_str("Subject: s\n\nbody\n");
    m.args(["-f", "a@example.com", "-i", "x@example.com"])
        .stdin(input)
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    let longest = tx.data_str().split("\r\n").map(str::len).max().unwrap();
    assert!(longest <= 998, "a line of {longest} characters");
    let value = verify(&tx.data, &key);
    // From, 400 To, Subject, Date, Message-ID, From again.
    assert_eq!(signed_headers(&value).len(), 405);
}

/// A From field the address parser cannot read (a group, a stray `;`)
/// still gives a plain domain name for d=, never text that adds or
/// breaks tags of the DKIM-Signature field.
#[test]
fn a_from_field_cannot_inject_tags_into_the_signature() {
    let key = Key::ed25519();
    for from in ["a@example.com; x=y", "Team: a@example.com, b@example.org;"] {
        let server = submission();
        let mut m = Mailsend::sendmail(&server);
        with_key(&mut m, &key, "s");
        m.args(["-f", "a@example.com", "-i", "x@example.com"])
            .stdin(format!(
                "From: {from}\nTo: x@example.com\nSubject: s\n\nbody\n"
            ))
            .run()
            .expect(0);
        let value = verify(&only_transaction(&server).data, &key);
        assert_eq!(tag(&value, "d"), "example.com", "From: {from}");
        assert!(!value.contains("x=y") && !value.contains(";;"), "{value}");
    }
}
