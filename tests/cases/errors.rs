//! Failures: each gets its exit code and one `mailsend: error:` line.

use std::time::Instant;

use super::*;
use crate::support::cmd::Mailsend;
use crate::support::server::Security;

fn send(server: &TestServer, code: i32) -> crate::support::cmd::Run {
    Mailsend::to(server)
        .args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(code)
}

#[test]
fn connection_refused_is_tempfail() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let run = Mailsend::bare()
        .env("MAILSEND_HOST", "127.0.0.1")
        .env("MAILSEND_PORT", &port.to_string())
        .args([
            "--from",
            "me@example.com",
            "--to",
            "a@example.com",
            "--body",
            "x",
        ])
        .run()
        .expect(75);
    run.error_mentions("Connection refused");
}

#[test]
fn silent_server_costs_at_most_the_timeout() {
    for security in [Security::StartTls, Security::ImplicitTls] {
        let server = TestServer::start(Behaviour {
            silent: true,
            security,
            ..Behaviour::default()
        });
        let tls = if security == Security::ImplicitTls {
            "tls"
        } else {
            "starttls"
        };
        let started = Instant::now();
        let run = Mailsend::to(&server)
            .args([
                "--tls",
                tls,
                "--timeout",
                "1s",
                "--to",
                "a@example.com",
                "--body",
                "x",
            ])
            .run()
            .expect(75);
        // A correctness bound, not a benchmark: without the timeout this hangs for 60 s.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        run.error_mentions("no answer from the server within 1s");
    }
}

#[test]
fn a_trickling_server_cannot_stretch_the_timeout() {
    let server = TestServer::start(Behaviour {
        trickle_greeting: Some(Duration::from_millis(300)),
        ..Behaviour::default()
    });
    let started = Instant::now();
    let run = Mailsend::to(&server)
        .args(["--timeout", "1s", "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(75);
    // The whole greeting would take ~8 s; each byte arrives well within 1 s.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    run.error_mentions("no answer from the server within 1s (greeting)");
}

/// The reply to the end of data may take RFC 5321's 10 minutes (content
/// scanners): giving up after `--timeout` would make a retry deliver twice.
#[test]
fn the_end_of_data_reply_is_awaited_beyond_the_timeout() {
    let server = TestServer::start(with_auth(Behaviour {
        delay_reply_after: Some(".".into()),
        ..Behaviour::default()
    }));
    let mut child = Mailsend::to(&server)
        .args(["--timeout", "1s", "--to", "a@example.com", "--body", "x"])
        .spawn();
    std::thread::sleep(Duration::from_millis(3000));
    let waiting = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(waiting, "gave up on the end-of-data reply after --timeout");
}

#[test]
fn auth_rejected_is_noperm_with_server_text() {
    let server = TestServer::start(Behaviour {
        auth: Some((USER.into(), "another password".into())),
        ..Behaviour::default()
    });
    send(&server, 77).error_mentions("535 5.7.8");
    let session = only_session(&server);
    assert!(session.transactions.is_empty());
    assert_eq!(
        session.lines().last(),
        Some(&"QUIT"),
        "a refused session still ends politely"
    );
}

/// Server replies and the exit code each must give, quoted in the error.
#[test]
fn server_refusals_map_to_exit_codes() {
    let cases: [(Behaviour, i32, &str); 4] = [
        (
            Behaviour {
                greeting: "421 4.3.2 Service not available".into(),
                ..Behaviour::default()
            },
            75,
            "421 4.3.2 Service not available",
        ),
        (
            Behaviour {
                data_reply: Some("554 5.7.1 Message rejected as spam".into()),
                ..Behaviour::default()
            },
            69,
            "554 5.7.1 Message rejected as spam",
        ),
        (
            Behaviour {
                data_reply: Some("451 4.3.0 Try again later".into()),
                ..Behaviour::default()
            },
            75,
            "451 4.3.0 Try again later",
        ),
        (
            Behaviour {
                mail_reply: Some("553 5.7.1 Sender address rejected: not owned by user".into()),
                ..Behaviour::default()
            },
            69,
            "553 5.7.1 Sender address rejected",
        ),
    ];
    for (behaviour, code, reply) in cases {
        let server = TestServer::start(with_auth(behaviour));
        send(&server, code).error_mentions(reply);
    }
}

#[test]
fn connection_dropped_during_data_is_tempfail() {
    let server = TestServer::start(with_auth(Behaviour {
        drop_during_data: true,
        ..Behaviour::default()
    }));
    send(&server, 75);
}

#[test]
fn message_over_advertised_size_is_refused_locally() {
    let server = TestServer::start(with_auth(Behaviour {
        size: Some(1000),
        ..Behaviour::default()
    }));
    let run = Mailsend::to(&server)
        .args(["--to", "a@example.com", "--body", &"x".repeat(5000)])
        .run()
        .expect(69);
    run.error_mentions("limit of 1000 bytes");
    let session = only_session(&server);
    assert!(!session.reached_data);
    assert!(session.auth.is_none(), "checked before logging in");
    assert_eq!(session.lines().last(), Some(&"QUIT"));
}

#[test]
fn unknown_host_is_nohost() {
    Mailsend::bare()
        .env("MAILSEND_HOST", "no-such-host.invalid")
        .args([
            "--from",
            "me@example.com",
            "--to",
            "a@example.com",
            "--body",
            "x",
        ])
        .run()
        .expect(68)
        .error_mentions("no-such-host.invalid");
}

#[test]
fn missing_configuration_is_config() {
    Mailsend::bare()
        .args([
            "--from",
            "me@example.com",
            "--to",
            "a@example.com",
            "--body",
            "x",
        ])
        .run()
        .expect(78)
        .error_mentions("no SMTP server");
    Mailsend::bare()
        .env("MAILSEND_HOST", "127.0.0.1")
        .args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(78)
        .error_mentions("no sender");
}

#[test]
fn bad_input_fails_before_any_connection() {
    let server = submission();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--to", "not-an-address"], 65, "not-an-address"),
        (
            &["--to", "a@example.com", "--cc", "x@@example.com"],
            65,
            "x@@example.com",
        ),
        (
            &["--to", "a@example.com", "--attach", "missing.pdf"],
            66,
            "missing.pdf",
        ),
        (
            &["--to", "a@example.com", "--body-file", "missing.txt"],
            66,
            "missing.txt",
        ),
        (
            &["--to", "a@example.com", "--html", "missing.html"],
            66,
            "missing.html",
        ),
        (
            &["--to", "a@example.com", "--header", "NoColon"],
            64,
            "NoColon",
        ),
        (&["--subject", "x"], 64, "no recipient"),
        (&["--to", "a@example.com", "--port", "http"], 64, "--port"),
        (&["--to", "a@example.com", "--tls", "maybe"], 64, "--tls"),
        (
            &["--to", "a@example.com", "--timeout", "soon"],
            64,
            "--timeout",
        ),
    ];
    for (args, code, needle) in cases {
        let mut m = Mailsend::to(&server);
        m.args(*args);
        if !args.contains(&"--body-file") {
            m.args(["--body", "x"]);
        }
        let run = m.run().expect(*code);
        let stderr = run.stderr();
        assert!(stderr.contains(needle), "error names {needle:?}: {stderr}");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.sessions().is_empty(),
        "bad input must not open a session"
    );
}

#[test]
fn non_utf8_body_is_dataerr_with_hint() {
    let server = submission();
    let run = Mailsend::to(&server)
        .args(["--to", "a@example.com"])
        .stdin(vec![0x66, 0xff, 0xfe])
        .run()
        .expect(65);
    run.error_mentions("not valid UTF-8");
    assert!(run.stderr().contains("--attach"), "{}", run.stderr());
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.sessions().is_empty());
}

#[test]
fn usage_errors_help_and_version() {
    Mailsend::bare().args(["--no-such-flag"]).run().expect(64);
    Mailsend::bare().args(["--password", "x"]).run().expect(64);
    let help = Mailsend::bare().args(["--help"]).run().expect(0);
    assert!(help.stdout().contains("--password-command"));
    assert!(
        !help.stdout().contains("--password "),
        "there is no --password flag"
    );
    let version = Mailsend::bare().args(["--version"]).run().expect(0);
    assert!(version.stdout().starts_with("mailsend "));
}
