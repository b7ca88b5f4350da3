//! Review O: the newest features used together, as a demanding user
//! combines them: DKIM with the built-in OAuth2 sign-in in a campaign,
//! the outbox, sendmail mode, `check`, inline images and big attachments,
//! retries; exit codes when several things fail at once; secrets in no
//! output of any combination.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use mailparse::MailHeaderMap;

use super::dkim::{Key, signed_headers, tag, verify};
use super::*;
use crate::support::cmd::{Mailsend, Run};
use crate::support::oauth_server::{ACCESS_PREFIX, OAuthServer, Options, REFRESH_PREFIX};

use super::auth_login::seed;

/// A recording server taking `token` by OAuth2 (and the test password),
/// and mailsend pointed at it and at the OAuth2 double, without a password.
fn oauth_pair(oauth: &OAuthServer, token: &str) -> (TestServer, Mailsend) {
    let smtp = TestServer::start(Behaviour {
        oauth_token: Some(token.into()),
        ..with_auth(Behaviour::default())
    });
    let mut m = Mailsend::to(&smtp);
    m.env_remove("MAILSEND_PASSWORD");
    for (k, v) in oauth.env() {
        m.env(k, &v);
    }
    (smtp, m)
}

/// No token, refresh token or private key material in anything printed.
fn assert_no_secrets(run: &Run, key: Option<&Key>, extra: &[&str]) {
    for text in [run.stdout(), run.stderr()] {
        for secret in [ACCESS_PREFIX, REFRESH_PREFIX].iter().chain(extra) {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        if let Some(key) = key {
            let pem = String::from_utf8_lossy(&key.pem).into_owned();
            for line in pem.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!text.contains(line), "key material leaked:\n{text}");
            }
        }
    }
}

fn all_data(server: &TestServer, sessions: usize) -> Vec<Vec<u8>> {
    server
        .wait_sessions(sessions, Duration::from_secs(20))
        .iter()
        .flat_map(|s| &s.transactions)
        .map(|t| t.data.clone())
        .collect()
}

#[test]
fn a_signed_campaign_over_oauth2_refreshes_once_and_every_row_verifies() {
    let oauth = OAuthServer::start(Options::default());
    let old = format!("{REFRESH_PREFIX}seed");
    oauth.add_refresh_token(&old);
    let (smtp, mut m) = oauth_pair(&oauth, &format!("{ACCESS_PREFIX}1"));
    seed(&m, &old, 30);
    let key = Key::ed25519();
    let path = key.install(&m, "dkim.pem");
    let rows: String = (1..=8)
        .map(|i| format!("u{i}@example.com,N{i}\n"))
        .collect();
    m.file("list.csv", format!("email,name\n{rows}"));
    let log = m.path().join("send.log");
    let run = m
        .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
        .args(["--subject", "Hi {{ name }}", "--body", "Dear {{ name }}"])
        .args(["--unsubscribe-url", "https://example.com/u?e={{ email }}"])
        .args([
            "--list-id",
            "News <news.example.com>",
            "--yes",
            "--json",
            "-v",
        ])
        .args(["--concurrency", "3", "--auth", "xoauth2"])
        .args(["--log", log.to_str().unwrap()])
        .args([
            "--dkim-key",
            path.to_str().unwrap(),
            "--dkim-selector",
            "s1",
        ])
        .run()
        .expect(0);
    assert_no_secrets(&run, Some(&key), &[]);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!logged.contains(ACCESS_PREFIX) && !logged.contains(REFRESH_PREFIX));
    assert_eq!(
        oauth.token_requests().len(),
        1,
        "one refresh for all sessions"
    );
    let data = all_data(&smtp, 1);
    assert_eq!(data.len(), 8);
    for d in &data {
        let value = verify(d, &key);
        let h = signed_headers(&value);
        for name in ["list-unsubscribe", "list-unsubscribe-post", "list-id"] {
            assert!(h.contains(&name.to_owned()), "{name} not signed: {h:?}");
        }
    }
    for s in smtp.sessions() {
        assert_eq!(
            s.auth.as_ref().map(|(_, t)| t.clone()),
            Some(format!("{ACCESS_PREFIX}1"))
        );
    }
}

#[test]
fn a_deferred_signed_row_keeps_its_message_id_on_resume_and_verifies() {
    let key = Key::rsa(2048);
    let server = TestServer::start(with_auth(Behaviour {
        rcpt_replies: vec![("u2@example.com".into(), "450 4.2.0 later".into())],
        ..Behaviour::default()
    }));
    let mut m = Mailsend::to(&server);
    let path = key.install(&m, "dkim.pem");
    m.file("list.csv", "email\nu1@example.com\nu2@example.com\n");
    let args = |m: &mut Mailsend| {
        m.args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
            .args(["--subject", "Hi", "--body", "x", "--yes", "--json"])
            .args(["--retry-for", "0s"])
            .args([
                "--dkim-key",
                path.to_str().unwrap(),
                "--dkim-selector",
                "s1",
            ]);
    };
    args(&mut m);
    let first = m.run().expect(75);
    let deferred: serde_json::Value = first
        .stdout()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|j| j["status"] == "deferred")
        .expect("a deferred row");
    drop(server);
    let server = TestServer::start(with_auth(Behaviour::default()));
    let mut again = Mailsend::to(&server);
    again.home(m.path());
    args(&mut again);
    again.run().expect(0);
    let data = all_data(&server, 1);
    assert_eq!(data.len(), 1);
    verify(&data[0], &key);
    assert_eq!(
        header(&data[0], "message-id").map(|v| v.trim_matches(['<', '>']).to_owned()),
        deferred["message_id"]
            .as_str()
            .map(|v| v.trim_matches(['<', '>']).to_owned())
    );
}

#[test]
fn check_refreshes_an_expired_stored_token_and_ignores_the_dkim_key() {
    let oauth = OAuthServer::start(Options::default());
    let old = format!("{REFRESH_PREFIX}seed");
    oauth.add_refresh_token(&old);
    let (smtp, mut m) = oauth_pair(&oauth, &format!("{ACCESS_PREFIX}1"));
    seed(&m, &old, -10);
    // A key that is no key at all, and unsafe: check sends no mail.
    let bad = m.file("dkim.pem", "not a key");
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = m
        .env("MAILSEND_DKIM_KEY", bad.to_str().unwrap())
        .env("MAILSEND_DKIM_SELECTOR", "s1")
        .args(["check", "--json", "-v"])
        .run();
    assert_no_secrets(&run, None, &[]);
    let run = run.expect(0);
    let j: serde_json::Value = serde_json::from_str(&run.stdout()).expect("JSON");
    assert_eq!(j["auth"]["accepted"], true, "{j:#}");
    assert_eq!(j["ok"], true, "{j:#}");
    assert_eq!(oauth.token_requests().len(), 1);
    assert!(smtp.sessions().iter().all(|s| s.transactions.is_empty()));
}

/// A sign-in that fails otherwise than revoked (the provider errs) stops
/// `check` as it stops a send, after one request to the provider: the
/// check used to ask it again through `login_secrets` (two timeouts when
/// the provider does not answer).
#[test]
fn check_asks_a_failing_provider_once() {
    let oauth = OAuthServer::start(Options {
        error_code: Some("server_error".into()),
        ..Options::default()
    });
    let (smtp, mut m) = oauth_pair(&oauth, &format!("{ACCESS_PREFIX}1"));
    // A refresh token the double does not know: an error response, whose
    // code it says is `server_error`.
    seed(&m, &format!("{REFRESH_PREFIX}unknown"), -10);
    let run = m.args(["check", "--json"]).run();
    assert_no_secrets(&run, None, &[]);
    assert_ne!(run.code(), 0, "{}", run.stderr());
    assert_eq!(oauth.token_requests().len(), 1, "{}", run.stderr());
    assert!(
        smtp.sessions().is_empty(),
        "connected after the sign-in failed"
    );
}

#[test]
fn check_with_a_revoked_sign_in_is_77_with_accepted_false() {
    let oauth = OAuthServer::start(Options::default());
    let (_smtp, mut m) = oauth_pair(&oauth, &format!("{ACCESS_PREFIX}1"));
    seed(&m, &format!("{REFRESH_PREFIX}revoked"), -10);
    let run = m.args(["check", "--json"]).run();
    assert_no_secrets(&run, None, &[]);
    let run = run.expect(77);
    let j: serde_json::Value = serde_json::from_str(&run.stdout()).expect("JSON");
    assert_eq!(j["auth"]["accepted"], false, "{j:#}");
    assert_eq!(j["ok"], false, "{j:#}");
    // The server was still checked: a diagnosis, not a stop at the token.
    assert!(j["greeting"].is_string(), "{j:#}");
    assert!(j["tls"]["version"].is_string(), "{j:#}");
    run.error_mentions("invalid_grant");
}

#[test]
fn check_xoauth2_against_a_plain_only_server_is_76_in_json() {
    let server = TestServer::start(with_auth(Behaviour {
        auth_mechanisms: Some("PLAIN".into()),
        ..Behaviour::default()
    }));
    let mut m = Mailsend::to(&server);
    let cmd = m.file("tok.sh", format!("#!/bin/sh\necho {ACCESS_PREFIX}x\n"));
    std::fs::set_permissions(&cmd, std::fs::Permissions::from_mode(0o700)).unwrap();
    let run = m
        .env("MAILSEND_OAUTH_TOKEN_COMMAND", cmd.to_str().unwrap())
        .args(["check", "--json", "--auth", "xoauth2"])
        .run();
    assert_no_secrets(&run, None, &[]);
    let run = run.expect(76);
    let j: serde_json::Value = serde_json::from_str(&run.stdout()).expect("JSON");
    assert_eq!(j["ok"], false, "{j:#}");
    assert_eq!(j["auth"]["offered"], serde_json::json!(["PLAIN"]), "{j:#}");
}

fn unreachable_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_bad_dkim_key_and_an_unreachable_server_is_78_in_every_mode() {
    let port = unreachable_port();
    let mut probe = Mailsend::to_port(port);
    let bad = probe.private_file(
        "dkim.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let dir = probe.path().to_owned();
    let bad = bad.to_str().unwrap().to_owned();
    let base = |m: &mut Mailsend| {
        m.home(&dir)
            .env("MAILSEND_DKIM_KEY", &bad)
            .env("MAILSEND_DKIM_SELECTOR", "s1");
    };
    std::fs::write(dir.join("list.csv"), "email\nu1@example.com\n").unwrap();
    let mut send = Mailsend::to_port(port);
    base(&mut send);
    let run = send
        .args([
            "--from",
            "a@example.com",
            "--to",
            "b@example.net",
            "--body",
            "x",
        ])
        .args(["--json", "--retry-for", "5s"])
        .run()
        .expect(78);
    assert!(!run.stderr().contains("AAAA"));
    let mut bulk = Mailsend::to_port(port);
    base(&mut bulk);
    bulk.args(["bulk", "--data", "list.csv", "--from", "a@example.com"])
        .args(["--subject", "s", "--body", "x", "--yes", "--json"])
        .run()
        .expect(78);
    let mut queue = Mailsend::to_port(port);
    base(&mut queue);
    queue
        .args([
            "--from",
            "a@example.com",
            "--to",
            "b@example.net",
            "--body",
            "x",
        ])
        .args(["--queue"])
        .run()
        .expect(78);
    let _ = probe.args(["--version"]).run();
}

#[test]
fn inline_attach_html_and_a_5_mib_attachment_are_signed_whole() {
    let key = Key::rsa(2048);
    let server = submission();
    let mut m = Mailsend::to(&server);
    let path = key.install(&m, "dkim.pem");
    let big: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let big_path = m.file("big.bin", &big);
    let logo = m.file("logo.png", b"\x89PNG\r\n\x1a\n-not-really");
    let html = m.file("page.html", "<p>Hi <img src=\"cid:logo.png\"></p>\n");
    m.args(["--from", "me@example.com", "--to", "a@example.net"])
        .args(["--subject", "Grüße", "--body", "Text ünicode\n"])
        .args(["--html", html.to_str().unwrap()])
        .args(["--inline", logo.to_str().unwrap()])
        .args(["--attach", big_path.to_str().unwrap()])
        .args([
            "--dkim-key",
            path.to_str().unwrap(),
            "--dkim-selector",
            "big",
        ])
        .run()
        .expect(0);
    let data = only_transaction(&server).data;
    verify(&data, &key);
    let mail = mailparse::parse_mail(&data).unwrap();
    assert_eq!(mail.ctype.mimetype, "multipart/mixed");
    let kinds: Vec<String> = mail
        .subparts
        .iter()
        .map(|p| p.ctype.mimetype.clone())
        .collect();
    assert_eq!(kinds[0], "multipart/alternative", "{kinds:?}");
    assert_eq!(mail.subparts[1].get_body_raw().unwrap(), big);
    assert!(mail.headers.get_first_value("DKIM-Signature").is_some());
}

#[test]
fn a_queued_signed_message_flushes_with_the_account_it_was_queued_for() {
    let key = Key::ed25519();
    let port = unreachable_port();
    let mut m = Mailsend::bare();
    let dir = m.path().to_owned();
    let path = key.install(&m, "dkim.pem");
    let cmd = m.file("tok.sh", format!("#!/bin/sh\necho {ACCESS_PREFIX}oa\n"));
    std::fs::set_permissions(&cmd, std::fs::Permissions::from_mode(0o700)).unwrap();
    let ca = crate::support::pki::Pki::shared()
        .ca_file
        .display()
        .to_string();
    let other = TestServer::start(with_auth(Behaviour::default()));
    m.config(&format!(
        r#"[accounts.main]
default = true
host = "127.0.0.1"
port = {other}
user = "{user}"
password = "{pw}"
from = "{user}"
ca_file = "{ca}"
timeout = "5s"

[accounts.oa]
host = "127.0.0.1"
port = {port}
user = "{user}"
auth = "xoauth2"
oauth_token_command = "{cmd}"
from = "news@example.com"
ca_file = "{ca}"
timeout = "5s"
dkim_key = "{key}"
dkim_selector = "oa"
"#,
        other = other.port(),
        user = crate::support::cmd::USER,
        pw = crate::support::cmd::PASSWORD,
        cmd = cmd.display(),
        key = path.display(),
    ));
    let run = m
        .args(["--account", "oa", "--to", "a@example.net", "--subject", "s"])
        .args(["--body", "queued body\n", "--json", "--queue"])
        .run()
        .expect(0);
    let j: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
    assert!(j["queued"].is_string(), "{j}");
    let server = TestServer::start_on(
        Behaviour {
            oauth_token: Some(format!("{ACCESS_PREFIX}oa")),
            ..with_auth(Behaviour::default())
        },
        port,
    );
    let mut flush = Mailsend::bare();
    flush.config(&std::fs::read_to_string(dir.join(".config/mailsend/config.toml")).unwrap());
    let run = flush
        .home(&dir)
        .args(["outbox", "flush", "--account", "main", "--json", "-v"])
        .run()
        .expect(0);
    assert_no_secrets(&run, Some(&key), &[]);
    let tx = only_transaction(&server);
    verify(&tx.data, &key);
    assert_eq!(tag(&verify(&tx.data, &key), "s"), "oa");
    assert!(other.sessions().is_empty(), "went with the other account");
}

#[test]
fn sendmail_t_8bit_input_with_bcc_is_signed_as_sent_and_never_downgraded() {
    let key = Key::rsa(2048);
    let input = "From: Jorg <a@example.com>\nTo: x@example.com\nBcc: hidden@example.org\n\
Subject: 8bit   input\nContent-Type: text/plain; charset=utf-8\n\
Content-Transfer-Encoding: 8bit\n\nGr\u{fc}\u{df}e \u{2615}  \n.\n..\n";
    for seven_bit_only in [false, true] {
        let server = TestServer::start(with_auth(Behaviour {
            seven_bit_only,
            ..Behaviour::default()
        }));
        let mut m = Mailsend::sendmail(&server);
        let path = key.install(&m, "dkim.pem");
        m.config(&crate::support::cmd::account_config(
            &server,
            &format!(
                "dkim_key = \"{}\"\ndkim_selector = \"mail\"\n",
                path.display()
            ),
        ));
        m.args(["-t", "-i"]).stdin(input);
        if seven_bit_only {
            // Converting after signing would break the signature: refused.
            m.run().expect(76).error_mentions("8BITMIME");
            assert!(server.sessions().iter().all(|s| s.transactions.is_empty()));
            continue;
        }
        m.run().expect(0);
        let tx = only_transaction(&server);
        assert!(!has_bcc_line(&tx.data));
        let value = verify(&tx.data, &key);
        assert!(!signed_headers(&value).contains(&"bcc".to_owned()));
        assert_eq!(tx.rcpt_to.len(), 2, "{:?}", tx.rcpt_to);
    }
}

#[test]
fn a_signed_single_send_with_list_headers_and_attach_stdin_verifies() {
    let key = Key::ed25519();
    let server = submission();
    let mut m = Mailsend::to(&server);
    let path = key.install(&m, "dkim.pem");
    let run = m
        .args(["--from", "me@example.com", "--to", "a@example.net"])
        .args([
            "--subject",
            "s",
            "--body",
            "b\n",
            "--attach-stdin",
            "data.csv",
        ])
        .args(["--header", "List-Unsubscribe: <https://example.com/u>"])
        .args([
            "--header",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        ])
        .args(["--dkim-key", path.to_str().unwrap(), "--dkim-selector", "s"])
        .args(["--json", "-v"])
        .stdin("a,b\n1,2\n")
        .run()
        .expect(0);
    assert_no_secrets(&run, Some(&key), &[]);
    let tx = only_transaction(&server);
    let value = verify(&tx.data, &key);
    let h = signed_headers(&value);
    assert!(h.contains(&"list-unsubscribe".to_owned()), "{h:?}");
    assert!(h.contains(&"list-unsubscribe-post".to_owned()), "{h:?}");
}

/// kill -9 at the worst instant (the first row's 250 not yet read) of a
/// signed campaign over the built-in sign-in: the run again uses the
/// token the first one refreshed (saved, not lost), and the row sent
/// twice carries the same Message-ID and a valid signature both times.
#[test]
fn a_signed_oauth2_campaign_killed_before_a_250_resumes_with_the_same_message_id() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let oauth = OAuthServer::start(Options::default());
    let old = format!("{REFRESH_PREFIX}seed");
    oauth.add_refresh_token(&old);
    let pid = std::sync::Arc::new(AtomicU32::new(0));
    let victim = pid.clone();
    let smtp = TestServer::start(Behaviour {
        oauth_token: Some(format!("{ACCESS_PREFIX}1")),
        before_data_reply: Some(crate::support::server::Hook(std::sync::Arc::new(
            move || {
                let pid = victim.swap(0, Ordering::SeqCst);
                if pid != 0 {
                    // SAFETY: kill(2) on the pid of a child this test spawned.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    std::thread::sleep(Duration::from_millis(200));
                }
            },
        ))),
        ..with_auth(Behaviour::default())
    });
    let key = Key::rsa(2048);
    let mut first = Mailsend::to(&smtp);
    let dir = first.path().to_owned();
    seed(&first, &old, 30);
    let path = key.install(&first, "dkim.pem");
    std::fs::write(
        dir.join("list.csv"),
        "email\nu1@example.com\nu2@example.com\n",
    )
    .unwrap();
    let args = |m: &mut Mailsend| {
        m.env_remove("MAILSEND_PASSWORD");
        for (k, v) in oauth.env() {
            m.env(k, &v);
        }
        m.home(&dir)
            .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
            .args(["--subject", "Hi", "--body", "x", "--yes", "--json"])
            .args(["--concurrency", "1", "--list-id", "N <n.example.com>"])
            .args(["--dkim-key", path.to_str().unwrap(), "--dkim-selector", "k"]);
    };
    args(&mut first);
    let mut child = first.spawn();
    pid.store(child.id(), Ordering::SeqCst);
    let _ = child.wait();
    let mut again = Mailsend::to(&smtp);
    args(&mut again);
    let run = again.run().expect(0);
    assert_no_secrets(&run, Some(&key), &[]);
    assert_eq!(
        oauth.token_requests().len(),
        1,
        "the refreshed token was kept"
    );
    let copies: Vec<Vec<u8>> = smtp
        .sessions()
        .iter()
        .flat_map(|s| s.transactions.clone())
        .filter(|t| t.rcpt_to == ["u1@example.com"])
        .map(|t| t.data)
        .collect();
    assert_eq!(copies.len(), 2, "sent twice (the kill raced its 250)");
    for c in &copies {
        verify(c, &key);
    }
    assert_eq!(
        header(&copies[0], "message-id"),
        header(&copies[1], "message-id")
    );
}

/// The provider is down when the message goes (the token cannot be
/// refreshed: temporary), so the signed message is queued; the flush,
/// once the provider is back, refreshes once and sends the queued bytes,
/// which still verify. A 421 on the first attempt of the flush changes
/// nothing in them either.
#[test]
fn a_signed_message_queued_while_the_provider_is_down_flushes_intact() {
    let oauth = OAuthServer::start(Options::default());
    let old = format!("{REFRESH_PREFIX}seed");
    oauth.add_refresh_token(&old);
    let smtp = TestServer::start(Behaviour {
        oauth_token: Some(format!("{ACCESS_PREFIX}1")),
        data_reply: Some("421 4.3.2 shutting down".into()),
        fault_sessions: Some(1),
        ..with_auth(Behaviour::default())
    });
    let key = Key::ed25519();
    let mut m = Mailsend::to(&smtp);
    let dir = m.path().to_owned();
    seed(&m, &old, -10);
    let path = key.install(&m, "dkim.pem");
    let setup = |m: &mut Mailsend| {
        m.env_remove("MAILSEND_PASSWORD");
        for (k, v) in oauth.env() {
            m.env(k, &v);
        }
        m.home(&dir)
            .env("MAILSEND_DKIM_KEY", path.to_str().unwrap())
            .env("MAILSEND_DKIM_SELECTOR", "q");
    };
    setup(&mut m);
    let down = format!("http://127.0.0.1:{}/token", unreachable_port());
    let run = m
        .env("MAILSEND_OAUTH_TOKEN_URL", &down)
        .args(["--from", "me@example.com", "--to", "a@example.net"])
        .args(["--subject", "s", "--body", "queued\n", "--queue", "--json"])
        .run()
        .expect(0);
    assert_no_secrets(&run, Some(&key), &[]);
    let j: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
    let id = j["queued"].as_str().expect("queued").to_owned();
    assert!(smtp.sessions().is_empty());
    let mut show = Mailsend::to(&smtp);
    setup(&mut show);
    let shown = show.args(["outbox", "show", &id]).run().expect(0).stdout();
    let queued = shown
        .split_once("\n\n")
        .expect("state, message")
        .1
        .to_owned();

    let mut flush = Mailsend::to(&smtp);
    setup(&mut flush);
    let run = flush
        .args(["outbox", "flush", "--all", "--json", "-v"])
        .run();
    assert_no_secrets(&run, Some(&key), &[]);
    let code = run.code();
    // The 421: the entry waits (75), the next flush sends it.
    if code == 75 {
        let mut flush = Mailsend::to(&smtp);
        setup(&mut flush);
        let run = flush.args(["outbox", "flush", "--all", "--json"]).run();
        assert_no_secrets(&run, Some(&key), &[]);
        run.expect(0);
    } else {
        run.expect(0);
    }
    assert_eq!(oauth.token_requests().len(), 1, "one refresh");
    let data: Vec<Vec<u8>> = smtp
        .sessions()
        .iter()
        .flat_map(|s| s.transactions.clone())
        .map(|t| t.data)
        .collect();
    assert_eq!(data.len(), 2, "the 421 attempt and the one taken");
    for d in &data {
        assert_eq!(String::from_utf8_lossy(d), queued);
        verify(d, &key);
    }
}

/// `check` signs nothing and `outbox flush` sends bytes signed when they
/// were queued: a DKIM setting that is wrong (a selector without a key,
/// a key without a selector, a bad selector) stops neither. A send still
/// refuses it (78) before connecting.
#[test]
fn a_wrong_dkim_setting_stops_no_check_and_no_flush_but_every_send() {
    let server = submission();
    for (name, value) in [
        ("MAILSEND_DKIM_SELECTOR", "s1"),
        ("MAILSEND_DKIM_DOMAIN", "example.com"),
    ] {
        let run = Mailsend::to(&server)
            .env(name, value)
            .args(["check", "--json"])
            .run()
            .expect(0);
        let j: serde_json::Value = serde_json::from_str(&run.stdout()).expect("JSON");
        assert_eq!(j["auth"]["accepted"], true, "{j:#}");
    }

    // A signed message queued while the server was down...
    let key = Key::ed25519();
    let port = unreachable_port();
    let mut m = Mailsend::to_port(port);
    let dir = m.path().to_owned();
    let path = key.install(&m, "dkim.pem");
    let run = m
        .env("MAILSEND_DKIM_KEY", path.to_str().unwrap())
        .env("MAILSEND_DKIM_SELECTOR", "old")
        .args(["--from", "me@example.com", "--to", "a@example.net"])
        .args(["--body", "x", "--queue", "--json"])
        .run()
        .expect(0);
    assert!(run.stdout().contains("\"queued\""), "{}", run.stdout());
    // ...then the key is retired, its selector left behind by mistake.
    std::fs::remove_file(&path).unwrap();
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    let mut send = Mailsend::to_port(port);
    send.home(&dir)
        .env("MAILSEND_DKIM_SELECTOR", "old")
        .args([
            "--from",
            "me@example.com",
            "--to",
            "b@example.net",
            "--body",
            "y",
        ])
        .run()
        .expect(78)
        .error_mentions("DKIM");
    assert!(
        server.sessions().is_empty(),
        "connected with a bad DKIM setting"
    );
    Mailsend::to_port(port)
        .home(&dir)
        .env("MAILSEND_DKIM_SELECTOR", "old")
        .args(["outbox", "flush"])
        .run()
        .expect(0);
    verify(&only_transaction(&server).data, &key);
}

/// The stored access token looks valid for an hour but the server refuses
/// it (revoked early): the campaign's sessions, all refused at once,
/// share one forced refresh; with a provider that rotates refresh tokens,
/// a second refresh with the old one would be refused (invalid_grant).
#[test]
fn a_campaign_whose_stored_token_is_refused_refreshes_once_for_all_sessions() {
    let oauth = OAuthServer::start(Options::default());
    let old = format!("{REFRESH_PREFIX}seed");
    oauth.add_refresh_token(&old);
    let (smtp, mut m) = oauth_pair(&oauth, &format!("{ACCESS_PREFIX}1"));
    seed(&m, &old, 3600);
    let key = Key::ed25519();
    let path = key.install(&m, "dkim.pem");
    let rows: String = (1..=12).map(|i| format!("u{i}@example.com\n")).collect();
    m.file("list.csv", format!("email\n{rows}"));
    let run = m
        .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
        .args(["--subject", "Hi", "--body", "x", "--yes", "--json"])
        .args(["--concurrency", "4", "--list-id", "N <n.example.com>"])
        .args([
            "--dkim-key",
            path.to_str().unwrap(),
            "--dkim-selector",
            "s1",
        ])
        .run();
    assert_no_secrets(&run, Some(&key), &[]);
    run.expect(0);
    assert_eq!(
        oauth.token_requests().len(),
        1,
        "one refresh for all sessions"
    );
    let data: Vec<Vec<u8>> = smtp
        .sessions()
        .iter()
        .flat_map(|s| s.transactions.clone())
        .map(|t| t.data)
        .collect();
    assert_eq!(data.len(), 12);
    for d in &data {
        verify(d, &key);
    }
}

/// A provider that quotes the secrets of the request in its errors: none
/// of them reaches the log file, the JSON or the transcript of a signed
/// send, a campaign's JSON Lines, or check's report.
#[test]
fn a_provider_quoting_secrets_leaks_nothing_into_log_json_or_transcript() {
    let oauth = OAuthServer::start(Options {
        echo_secrets: true,
        client_secret: Some("CS-s3cret-combined".into()),
        ..Options::default()
    });
    let (smtp, mut m) = oauth_pair(&oauth, &format!("{ACCESS_PREFIX}1"));
    seed(&m, &format!("{REFRESH_PREFIX}revoked"), -10);
    let key = Key::ed25519();
    let path = key.install(&m, "dkim.pem");
    let log = m.path().join("mail.log");
    m.file("list.csv", "email\nu1@example.com\n");
    m.env("MAILSEND_OAUTH_CLIENT_SECRET", "CS-s3cret-combined")
        .env("MAILSEND_DKIM_KEY", path.to_str().unwrap())
        .env("MAILSEND_DKIM_SELECTOR", "s")
        .env("MAILSEND_LOG", log.to_str().unwrap());
    let secrets = ["CS-s3cret-combined"];
    let runs = [m
        .args(["--from", "me@example.com", "--to", "a@example.net"])
        .args(["--body", "x", "--json", "-v", "--queue"])
        .run()];
    let mut bulk = Mailsend::to(&smtp);
    bulk.home(m.path());
    bulk.env_remove("MAILSEND_PASSWORD");
    for (k, v) in oauth.env() {
        bulk.env(k, &v);
    }
    bulk.env("MAILSEND_OAUTH_CLIENT_SECRET", "CS-s3cret-combined")
        .env("MAILSEND_DKIM_KEY", path.to_str().unwrap())
        .env("MAILSEND_DKIM_SELECTOR", "s")
        .env("MAILSEND_LOG", log.to_str().unwrap());
    let b = bulk
        .args(["bulk", "--data", "list.csv", "--from", "me@example.com"])
        .args(["--subject", "s", "--body", "x", "--yes", "--json", "-v"])
        .run();
    let mut check = Mailsend::to(&smtp);
    check.home(m.path());
    check.env_remove("MAILSEND_PASSWORD");
    for (k, v) in oauth.env() {
        check.env(k, &v);
    }
    let c = check
        .env("MAILSEND_OAUTH_CLIENT_SECRET", "CS-s3cret-combined")
        .args(["check", "--json", "-v"])
        .run();
    for run in runs.iter().chain([&b, &c]) {
        assert_no_secrets(run, Some(&key), &secrets);
        assert_eq!(run.code(), 77, "{}", run.stderr());
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    for s in [ACCESS_PREFIX, REFRESH_PREFIX, secrets[0]] {
        assert!(!logged.contains(s), "{s} in the log:\n{logged}");
    }
}

/// sendmail mode from a system-wide style config account (no HOME): a
/// client certificate and DKIM from the account keys, 8-bit input; the
/// server sees the certificate, the message verifies, and -v shows no
/// byte of either private key.
#[test]
fn sendmail_t_with_a_client_certificate_and_dkim_from_the_account() {
    use crate::support::ccert::{CertServer, ClientPki};
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, false);
    let key = Key::rsa(2048);
    let mut m = Mailsend::bare();
    let path = key.install(&m, "dkim.pem");
    let config = m.private_file(
        "etc-config.toml",
        format!(
            "[accounts.relay]\ndefault = true\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\n\
             client_cert = \"{}\"\nclient_key = \"{}\"\ntimeout = \"5s\"\n\
             dkim_key = \"{}\"\ndkim_selector = \"relay\"\nfrom = \"cron@example.com\"\n",
            server.port(),
            crate::support::pki::Pki::shared().ca_file.display(),
            pki.cert.display(),
            pki.key.display(),
            path.display(),
        ),
    );
    let run = m
        .env("MAILSEND_CONFIG", config.to_str().unwrap())
        .env_remove("HOME")
        .args(["sendmail", "-t", "-v"])
        .stdin("To: root@example.com\nSubject: Cron <root@host> run-parts\n\nDateien gelöscht: 3\n")
        .run()
        .expect(0);
    let client_key = std::fs::read_to_string(&pki.key).unwrap();
    for text in [run.stdout(), run.stderr()] {
        for line in client_key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line), "client key leaked:\n{text}");
        }
    }
    assert_no_secrets(&run, Some(&key), &[]);
    let seen = server.seen(1);
    assert_eq!(
        seen[0].client_subject.as_deref(),
        Some("mailsend test client")
    );
    let value = verify(&seen[0].data, &key);
    assert_eq!(tag(&value, "s"), "relay");
}

/// A text-only message (no --html: one part, not multipart) whose body
/// file holds a bare CR, signed: no bare CR goes on the wire (RFC 5321
/// 2.3.8), and the signature verifies with dkimpy too.
#[test]
fn a_signed_text_only_body_with_a_bare_cr_verifies() {
    for attach in [false, true] {
        let key = Key::ed25519();
        let server = submission();
        let mut m = Mailsend::to(&server);
        let path = key.install(&m, "dkim.pem");
        let text = m.file("cr.txt", "line1\r\nbare\rcr\n\n\n");
        m.args(["--from", "me@example.com", "--to", "a@example.net"])
            .args(["--body-file", text.to_str().unwrap()])
            .args(["--dkim-key", path.to_str().unwrap(), "--dkim-selector", "s"]);
        if attach {
            m.args(["--attach", text.to_str().unwrap()]);
        }
        m.run().expect(0);
        let tx = only_transaction(&server);
        assert!(
            !tx.data.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'),
            "a bare CR on the wire: {}",
            tx.data_str()
        );
        verify(&tx.data, &key);
    }
}

/// `--dry-run` prints the exact message that would be sent: a body file
/// with a bare CR (text only, so 7bit) shows it as the wire carries it
/// (a line break), and the signature it prints verifies on those bytes.
#[test]
fn a_signed_dry_run_of_a_body_with_a_bare_cr_is_what_is_sent() {
    let key = Key::ed25519();
    let server = submission();
    let mut m = Mailsend::to(&server);
    let path = key.install(&m, "dkim.pem");
    let text = m.file("cr.txt", "line1\r\nbare\rcr\n\nend\r");
    let run = m
        .args(["--from", "me@example.com", "--to", "a@example.net"])
        .args(["--body-file", text.to_str().unwrap(), "--dry-run"])
        .args(["--dkim-key", path.to_str().unwrap(), "--dkim-selector", "s"])
        .run()
        .expect(0);
    let printed = run.output.stdout.clone();
    assert!(
        !printed.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'),
        "a bare CR in the dry run: {printed:?}"
    );
    verify(&printed, &key);
}

/// A run stopped by a session-level failure (a refused login, with a
/// signed campaign) prints every row it did not try as deferred, each with
/// the Message-ID it keeps: the one the next run sends it with.
#[test]
fn rows_not_tried_after_a_refused_login_carry_the_message_id_they_keep() {
    let key = Key::ed25519();
    let server = TestServer::start(with_auth(Behaviour::default()));
    let mut m = Mailsend::to(&server);
    let dir = m.path().to_owned();
    let path = key.install(&m, "dkim.pem");
    m.file("list.csv", "email\nu1@example.com\nu2@example.com\n");
    let args = |m: &mut Mailsend| {
        m.home(&dir)
            .args(["bulk", "--data", "list.csv", "--from", "me@example.com"])
            .args(["--subject", "s", "--body", "x", "--yes", "--json"])
            .args(["--dkim-key", path.to_str().unwrap(), "--dkim-selector", "s"]);
    };
    args(&mut m);
    let run = m.env("MAILSEND_PASSWORD", "wrong").run().expect(77);
    let lines: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let ids: Vec<String> = lines
        .iter()
        .filter(|j| j["status"] == "deferred")
        .map(|j| j["message_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{lines:?}");
    assert!(ids.iter().all(|id| id.starts_with('<')), "{ids:?}");
    let mut again = Mailsend::to(&server);
    args(&mut again);
    again.run().expect(0);
    let mut sent: Vec<String> = server
        .sessions()
        .iter()
        .flat_map(|s| s.transactions.clone())
        .map(|t| {
            verify(&t.data, &key);
            header(&t.data, "message-id").unwrap_or_default()
        })
        .collect();
    // Several sessions: the order they took the rows in is theirs.
    let mut ids = ids;
    sent.sort();
    ids.sort();
    assert_eq!(sent, ids);
}

/// PRODUCT: a message is signed once, before its first attempt, so every
/// attempt carries the same bytes; in a campaign too, when a 421 sends a
/// row round again within the run.
#[test]
fn a_campaign_row_retried_after_421_carries_the_same_signed_bytes() {
    let key = Key::ed25519();
    let server = TestServer::start(with_auth(Behaviour {
        data_reply: Some("421 4.3.2 closing".into()),
        fault_sessions: Some(1),
        ..Behaviour::default()
    }));
    let mut m = Mailsend::to(&server);
    let path = key.install(&m, "dkim.pem");
    m.file("list.csv", "email\nu1@example.com\n");
    let html = m.file("page.html", "<p>x</p>");
    m.args(["bulk", "--data", "list.csv", "--from", "me@example.com"])
        .args([
            "--subject",
            "s",
            "--body",
            "x",
            "--yes",
            "--concurrency",
            "1",
        ])
        // An HTML part: every composition draws new MIME boundaries, so a
        // message composed again can never match the first by chance.
        .args(["--html", html.to_str().unwrap()])
        .args(["--retry-for", "30s"])
        .args(["--dkim-key", path.to_str().unwrap(), "--dkim-selector", "s"])
        .run()
        .expect(0);
    let data = all_data(&server, 2);
    assert_eq!(data.len(), 2);
    verify(&data[1], &key);
    assert_eq!(
        String::from_utf8_lossy(&data[0]),
        String::from_utf8_lossy(&data[1])
    );
}
