//! Secure by default: TLS required and verified before AUTH, no header
//! injection, no Bcc on the wire, no password in any output.

use super::*;
use crate::support::cmd::Mailsend;
use crate::support::pki::{Cert, Pki};
use crate::support::server::Security;

fn no_auth_sent(session: &Session) {
    for c in &session.commands {
        let upper = c.line.to_ascii_uppercase();
        assert!(
            !upper.starts_with("AUTH"),
            "AUTH sent: {:?}",
            session.lines()
        );
    }
    assert!(session.auth.is_none(), "credentials reached the server");
}

#[test]
fn no_starttls_means_no_credentials() {
    let server = TestServer::start(with_auth(Behaviour {
        offer_starttls: false,
        allow_auth_without_tls: true,
        ..Behaviour::default()
    }));
    let run = Mailsend::to(&server)
        .args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(76);
    run.error_mentions("does not offer STARTTLS");
    let session = only_session(&server);
    no_auth_sent(&session);
    assert!(
        session.transactions.is_empty(),
        "nothing may be sent in clear"
    );
}

#[test]
fn auth_is_only_ever_sent_under_tls() {
    let server = submission();
    Mailsend::to(&server)
        .args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(0);
    let session = only_session(&server);
    let auth: Vec<_> = session
        .commands
        .iter()
        .filter(|c| c.line.to_ascii_uppercase().starts_with("AUTH"))
        .collect();
    assert!(!auth.is_empty());
    assert!(auth.iter().all(|c| c.tls), "{:?}", session.commands);
}

#[test]
fn bad_certificates_stop_before_auth() {
    for (cert, reason) in [
        (Cert::Untrusted, "unable to get local issuer certificate"),
        (Cert::WrongHost, "mismatch"),
        (Cert::Expired, "expired"),
    ] {
        for security in [Security::StartTls, Security::ImplicitTls] {
            let server = TestServer::start(with_auth(Behaviour {
                cert,
                security,
                ..Behaviour::default()
            }));
            let tls = if security == Security::ImplicitTls {
                "tls"
            } else {
                "starttls"
            };
            let run = Mailsend::to(&server)
                .args(["--tls", tls, "--to", "a@example.com", "--body", "x"])
                .run()
                .expect(77);
            run.error_mentions("not trusted").error_mentions(reason);
            // A wrong name is not fixed by trusting a CA: the hint says so.
            let hint = match cert {
                Cert::WrongHost => "subjectAltName",
                _ => "--ca-file",
            };
            assert!(
                run.stderr().contains(hint),
                "hint about {hint}: {}",
                run.stderr()
            );
            no_auth_sent(&only_session(&server));
        }
    }
}

#[test]
fn system_roots_alone_do_not_trust_the_test_ca() {
    let server = submission();
    Mailsend::to(&server)
        .env_remove("MAILSEND_CA_FILE")
        .args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(77);
    no_auth_sent(&only_session(&server));
}

#[test]
fn server_is_verified_by_name_or_by_address() {
    // The good certificate names localhost and 127.0.0.1 (IP SAN); the
    // wrong-host case above proves a name mismatch is refused.
    for host in ["localhost", "127.0.0.1"] {
        let server = submission();
        Mailsend::to(&server)
            .env("MAILSEND_HOST", host)
            .args(["--to", "a@example.com", "--body", "x"])
            .run()
            .expect(0);
        assert!(only_session(&server).tls);
    }
}

#[test]
fn header_injection_is_refused() {
    let server = submission();
    let attempts: &[&[&str]] = &[
        &["--subject", "hi\r\nBcc: victim@example.com"],
        &["--subject", "hi\nX-Injected: yes"],
        &["--header", "X-Ok: fine\r\nBcc: victim@example.com"],
        &["--to", "a@example.com\r\nBcc: victim@example.com"],
        &["--from", "Evil\r\nBcc: victim@example.com <e@example.com>"],
        &["--reply-to", "r@example.com\nX-Injected: yes"],
    ];
    for extra in attempts {
        Mailsend::to(&server)
            .args(["--to", "a@example.com", "--body", "x"])
            .args(*extra)
            .run()
            .expect(65);
    }
    Mailsend::to(&server)
        .args([
            "--to",
            "a@example.com",
            "--body",
            "x",
            "--header",
            "Bcc: victim@example.com",
        ])
        .run()
        .expect(64);
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.sessions().is_empty());
}

#[test]
fn names_with_quotes_and_commas_stay_in_their_header() {
    let server = submission();
    Mailsend::to(&server)
        .args([
            "--to",
            "\"Doe, John \\\"JD\\\"\" <jd@example.com>",
            "--subject",
            "Q3: \"numbers\"",
            "--body",
            "x",
        ])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert_eq!(tx.rcpt_to, ["jd@example.com"]);
    let names: Vec<String> = headers(&tx.data).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "from",
            "date",
            "message-id",
            "to",
            "subject",
            "mime-version",
            "content-type",
            "content-transfer-encoding"
        ]
    );
}

#[test]
fn password_never_appears_in_any_output() {
    let server = submission();
    let runs = [
        Mailsend::to(&server)
            .args(["--to", "a@example.com", "--body", "x", "-v", "--json"])
            .run(),
        Mailsend::to(&server)
            .args(["--to", "a@example.com", "--body", "x", "--dry-run", "-v"])
            .run(),
        Mailsend::to(&server)
            .args(["--to", "bad", "--body", "x", "-v", "--json"])
            .run(),
    ];
    for run in runs {
        run.assert_no_password();
    }
    let wrong = TestServer::start(Behaviour {
        auth: Some((USER.into(), "other".into())),
        ..Behaviour::default()
    });
    Mailsend::to(&wrong)
        .args(["--to", "a@example.com", "--body", "x", "-v", "--json"])
        .run()
        .expect(77);
}

#[test]
fn credentials_with_tls_none_are_refused_before_connecting() {
    let server = TestServer::start(Behaviour {
        security: Security::Plain,
        ..Behaviour::default()
    });
    let run = Mailsend::to(&server)
        .args(["--tls", "none", "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(78);
    run.error_mentions("TLS mode is none");
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.sessions().is_empty());
}

/// A server that quotes the AUTH command back, whole or cut short (most
/// of the token is still most of the password): nothing of it reaches
/// stdout, stderr, --json or the log.
#[test]
fn credentials_echoed_by_the_server_are_redacted_everywhere() {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASSWORD}"));
    for cut in [0, 4, 9] {
        let server = TestServer::start(with_auth(Behaviour {
            echo_auth: true,
            echo_auth_cut: cut,
            ..Behaviour::default()
        }));
        let mut m = Mailsend::to(&server);
        let log = m.path().join("mail.log");
        let run = m
            .args(["--to", "a@example.com", "--body", "x", "-v", "--json"])
            .args(["--log".as_ref(), log.as_os_str()])
            .run();
        assert_eq!(run.code(), 77, "{}", run.stderr());
        let log_text = std::fs::read_to_string(&log).expect("log written");
        let fragment = &token[8..token.len() - cut];
        for (name, text) in [
            ("stdout", run.stdout()),
            ("stderr", run.stderr()),
            ("log", log_text),
        ] {
            assert!(
                !text.contains(fragment),
                "cut {cut}: AUTH token leaked on {name}:\n{text}"
            );
            assert!(
                !text.contains(&PASSWORD[..PASSWORD.len() - 1]),
                "password leaked on {name}"
            );
        }
        assert!(
            run.stderr()
                .contains("syntax error in AUTH PLAIN <redacted>"),
            "{}",
            run.stderr()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).expect("log").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the log is private: {mode:o}");
    }
}

/// The process holds the password: it must not be dumpable (no core file,
/// no ptrace by other processes of the user). The kernel shows a process
/// that is not dumpable by giving its /proc entry to root, so mailsend
/// runs as another user (nobody when the tests run as root) and the test
/// watches who owns its /proc entry while it waits for its body.
#[test]
fn the_process_is_never_dumpable() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("mailsend"));
    cmd.env_clear()
        .env("MAILSEND_CONFIG", "/dev/null")
        .env("HOME", "/nonexistent")
        .current_dir("/")
        .args([
            "--dry-run",
            "--from",
            "me@example.com",
            "--to",
            "a@example.com",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let runs_as = if me == 0 {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        65534
    } else {
        me
    };
    let mut child = cmd.spawn().expect("spawn mailsend");
    let proc_dir = format!("/proc/{}/status", child.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut owner = runs_as;
    while std::time::Instant::now() < deadline {
        owner = std::fs::metadata(&proc_dir).map_or(owner, |m| m.uid());
        if owner != runs_as {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        owner, 0,
        "/proc entry of a dumpable process (uid {runs_as})"
    );
}

/// A .env readable by others whose password line was swallowed by an open
/// quote on the line before: refused as holding the password, and the
/// password appears nowhere.
#[test]
fn a_shared_dotenv_that_names_the_password_key_anywhere_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    for text in [
        format!(
            "MAILSEND_USER={USER}\nMAILSEND_FROM=\"Me <{USER}>\nMAILSEND_PASSWORD={PASSWORD}\"\n"
        ),
        format!(
            "MAILSEND_USER={USER}\nMAILSEND_FROM='x\n  export MAILSEND_PASSWORD = {PASSWORD}'\n"
        ),
        format!("MAILSEND_USER={USER}\n# MAILSEND_PASSWORD={PASSWORD}\n"),
    ] {
        let mut m = Mailsend::bare();
        let path = m.file(".env", &text);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let run = m
            .args(["--dry-run", "--to", "a@example.com", "--body", "x"])
            .run()
            .expect(78);
        run.error_mentions(".env holds MAILSEND_PASSWORD and is readable by others");
    }
}

/// Only the key itself counts: a shared .env with a password command and
/// no password is still read.
#[test]
fn a_shared_dotenv_with_only_a_password_command_is_read() {
    use std::os::unix::fs::PermissionsExt;
    let mut m = Mailsend::bare();
    let path = m.file(
        ".env",
        format!("MAILSEND_USER={USER}\nMAILSEND_PASSWORD_COMMAND=echo x\nXMAILSEND_PASSWORD=1\n"),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = m.args(["config", "show"]).run().expect(0);
    assert!(run.stdout().contains("echo x"), "{}", run.stdout());
}

/// A password from .env is never quoted, even in an error about itself.
#[test]
fn a_bad_password_value_from_dotenv_is_never_quoted() {
    let mut m = Mailsend::bare();
    let mut text = format!("MAILSEND_USER={USER}\nMAILSEND_PASSWORD={PASSWORD}").into_bytes();
    text.extend_from_slice(b"\xff\n");
    m.private_file(".env", text);
    let run = m
        .args(["--dry-run", "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(78);
    run.error_mentions("MAILSEND_PASSWORD in .env is not valid UTF-8");
}

/// `YYYY-MM-DD` of an OpenSSL time as it prints it (`Nov 30 18:40:00
/// 2027 GMT`): worked out apart from mailsend's own calendar code.
fn iso_date(time: &openssl::asn1::Asn1TimeRef) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let text = time.to_string();
    let words: Vec<&str> = text.split_whitespace().collect();
    let month = MONTHS
        .iter()
        .position(|m| *m == words[0])
        .expect("month name")
        + 1;
    let day: u32 = words[1].parse().expect("day");
    format!("{}-{month:02}-{day:02}", words[3])
}

/// The `-v` transcript says, once and right after the handshake, what it
/// negotiated and which certificate the server showed: its subject, its
/// issuer and when it expires, read off the test server's certificate.
#[test]
fn verbose_shows_the_tls_session_and_the_servers_certificate() {
    let cert = openssl::x509::X509::from_pem(&Pki::shared().good.cert_pem).expect("test cert");
    let expires = iso_date(cert.not_after());
    let days = openssl::asn1::Asn1Time::days_from_now(0)
        .expect("now")
        .diff(cert.not_after())
        .expect("diff")
        .days;
    for (security, tls) in [
        (Security::StartTls, "starttls"),
        (Security::ImplicitTls, "tls"),
    ] {
        let server = TestServer::start(with_auth(Behaviour {
            security,
            ..Behaviour::default()
        }));
        let run = Mailsend::to(&server)
            .args(["--tls", tls, "--to", "a@example.com", "--body", "x", "-v"])
            .run()
            .expect(0);
        let err = run.stderr();
        let lines: Vec<&str> = err.lines().collect();
        let found: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with("== TLS: "))
            .collect();
        assert_eq!(found.len(), 1, "{tls}: one TLS line:\n{err}");
        let (at, line) = (found[0], lines[found[0]]);
        // Right after the handshake: after STARTTLS's 220, or first of
        // all with implicit TLS; then the session says it is established.
        let previous = at.checked_sub(1).map(|i| lines[i]);
        if security == Security::StartTls {
            assert!(previous.is_some_and(|p| p.starts_with("<- 220 ")), "{err}");
        } else {
            assert_eq!(previous, None, "{err}");
        }
        assert!(lines[at + 1].starts_with("== TLS established"), "{err}");

        let rest = line.strip_prefix("== TLS: ").expect("prefix");
        let (session, certificate) = rest.split_once("; ").expect("two parts");
        let (version, cipher) = session.split_once(' ').expect("version and cipher");
        assert!(
            ["TLSv1.2", "TLSv1.3"].contains(&version),
            "{tls}: version in {line}"
        );
        // An OpenSSL cipher name: TLS_AES_256_GCM_SHA384, ECDHE-...
        assert!(
            cipher.len() > 8
                && cipher
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"_-".contains(&b)),
            "{tls}: cipher in {line}"
        );
        // The clock may pass a whole second between the two counts.
        let expected = |n: i32| {
            format!(
                "certificate CN=localhost, issued by CN=mailsend test CA, \
                 expires {expires} (in {n} days)"
            )
        };
        assert!(
            certificate == expected(days) || certificate == expected(days - 1),
            "{tls}: expected the test certificate, expiring {expires} in {days} days: {line}"
        );
        // The same version as `--json` reports.
        assert!(
            err.contains(&format!("== TLS established ({version})")),
            "{err}"
        );
    }
}

/// No TLS, no TLS line.
#[test]
fn verbose_in_clear_has_no_tls_line() {
    let server = TestServer::start(Behaviour {
        security: Security::Plain,
        ..Behaviour::default()
    });
    let run = Mailsend::to(&server)
        .env_remove("MAILSEND_USER")
        .env_remove("MAILSEND_PASSWORD")
        .args(["--tls", "none", "--from", "me@example.com"])
        .args(["--to", "a@example.com", "--body", "x", "-v"])
        .run()
        .expect(0);
    let err = run.stderr();
    assert!(err.contains("-> EHLO"), "{err}");
    assert!(!err.contains("== TLS"), "{err}");
}
