//! Sending: body sources, recipients, envelope, transport modes, outputs.

use super::*;
use crate::support::cmd::Mailsend;
use crate::support::server::Security;

#[test]
fn body_flag_goes_over_starttls_with_auth() {
    let server = submission();
    let run = Mailsend::to(&server)
        .args([
            "--to",
            "ops@example.com",
            "--subject",
            "disk report",
            "--body",
            "all good",
        ])
        .run()
        .expect(0);
    assert_eq!(
        run.stdout(),
        "",
        "silent on success when stdout is not a terminal"
    );

    let session = only_session(&server);
    assert!(session.tls, "TLS was established");
    assert_eq!(session.auth, Some((USER.to_owned(), PASSWORD.to_owned())));
    assert!(session.authenticated);
    let tx = &session.transactions[0];
    assert_eq!(tx.mail_from, USER);
    assert_eq!(tx.rcpt_to, ["ops@example.com"]);
    assert_eq!(header(&tx.data, "from").as_deref(), Some(USER));
    assert_eq!(header(&tx.data, "to").as_deref(), Some("ops@example.com"));
    assert_eq!(header(&tx.data, "subject").as_deref(), Some("disk report"));
    assert!(header(&tx.data, "date").is_some(), "Date header");
    let id = header(&tx.data, "message-id").expect("Message-ID header");
    assert!(id.starts_with('<') && id.ends_with("@example.com>"), "{id}");
    assert_eq!(body(&tx.data), b"all good\r\n");
}

#[test]
fn body_from_a_pipe() {
    let server = submission();
    Mailsend::to(&server)
        .args(["--to", "me@example.com", "--subject", "nightly build"])
        .stdin("line 1\nline 2\n")
        .run()
        .expect(0);
    assert_eq!(
        body(&only_transaction(&server).data),
        b"line 1\r\nline 2\r\n"
    );
}

#[test]
fn body_file_and_dash_for_stdin() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    let path = m.file("report.txt", "from a file\n");
    m.args(["--to", "a@example.com", "--body-file"])
        .args([&path])
        .stdin("NOT READ")
        .run()
        .expect(0);
    assert_eq!(body(&only_transaction(&server).data), b"from a file\r\n");

    let server = submission();
    Mailsend::to(&server)
        .args(["--to", "a@example.com", "--body-file", "-"])
        .stdin("from stdin")
        .run()
        .expect(0);
    assert_eq!(body(&only_transaction(&server).data), b"from stdin\r\n");
}

#[test]
fn empty_stdin_sends_an_empty_message_and_skip_empty_sends_none() {
    let server = submission();
    Mailsend::to(&server)
        .args(["--to", "a@example.com", "--subject", "cron"])
        .stdin("")
        .run()
        .expect(0);
    assert_eq!(body(&only_transaction(&server).data), b"");

    let server = submission();
    Mailsend::to(&server)
        .args(["--to", "a@example.com", "--skip-empty"])
        .stdin("\n")
        .run()
        .expect(0);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.sessions().is_empty(),
        "--skip-empty must not connect"
    );
}

#[test]
fn recipients_cc_bcc_and_names() {
    let server = submission();
    Mailsend::to(&server)
        .args([
            "--to",
            "Zoë Müller <z@example.com>, b@example.org",
            "--cc",
            "c@example.net",
            "--bcc",
            "hidden@example.org",
            "--bcc",
            "also-hidden@example.test",
            "--reply-to",
            "replies@example.com",
            "--from",
            "Reports Bot <sender@example.com>",
            "--body",
            "x",
        ])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert_eq!(
        tx.rcpt_to,
        [
            "z@example.com",
            "b@example.org",
            "c@example.net",
            "hidden@example.org",
            "also-hidden@example.test"
        ]
    );
    assert_eq!(
        header(&tx.data, "to").as_deref(),
        Some("=?utf-8?b?Wm/DqyBNw7xsbGVy?= <z@example.com>, b@example.org")
    );
    assert_eq!(header(&tx.data, "cc").as_deref(), Some("c@example.net"));
    assert_eq!(
        header(&tx.data, "reply-to").as_deref(),
        Some("replies@example.com")
    );
    assert_eq!(
        header(&tx.data, "from").as_deref(),
        Some("\"Reports Bot\" <sender@example.com>")
    );
    let wire = String::from_utf8_lossy(&tx.raw_data).to_ascii_lowercase();
    assert!(
        !has_bcc_line(&tx.raw_data),
        "no Bcc line may be transmitted:\n{wire}"
    );
    assert!(
        !wire.contains("hidden@"),
        "no Bcc address may be transmitted:\n{wire}"
    );
}

#[test]
fn one_refused_recipient_does_not_sink_the_others() {
    let server = TestServer::start(with_auth(Behaviour {
        rcpt_replies: vec![(
            "c@example.com".into(),
            "550 5.1.1 <c@example.com>: Recipient address rejected".into(),
        )],
        ..Behaviour::default()
    }));
    let run = Mailsend::to(&server)
        .args([
            "--to",
            "a@example.com,b@example.com,c@example.com",
            "--body",
            "x",
            "--json",
        ])
        .run()
        .expect(65);
    run.error_mentions("c@example.com")
        .error_mentions("550 5.1.1");
    let tx = only_transaction(&server);
    assert_eq!(tx.rcpt_to, ["a@example.com", "b@example.com"]);
    assert_eq!(body(&tx.data), b"x\r\n");
    let json: serde_json::Value =
        serde_json::from_str(run.stdout().trim()).expect("one JSON object");
    assert_eq!(
        json["accepted"],
        serde_json::json!(["a@example.com", "b@example.com"])
    );
    assert_eq!(json["rejected"][0]["address"], "c@example.com");
    assert_eq!(json["rejected"][0]["code"], 550);
}

#[test]
fn every_recipient_refused_is_unavailable_and_temporary_is_tempfail() {
    let refuse_all = |code: &str| {
        TestServer::start(with_auth(Behaviour {
            rcpt_replies: vec![
                ("a@example.com".into(), format!("{code} no")),
                ("b@example.com".into(), format!("{code} no")),
            ],
            ..Behaviour::default()
        }))
    };
    for (code, exit) in [("550", 69), ("451", 75)] {
        let server = refuse_all(code);
        Mailsend::to(&server)
            .args(["--to", "a@example.com,b@example.com", "--body", "x"])
            .run()
            .expect(exit);
        let session = only_session(&server);
        assert!(
            session.transactions.iter().all(|t| t.data.is_empty()),
            "no message content was sent"
        );
    }
}

/// The reads in which MAIL, the RCPTs and DATA reached the server.
fn transaction_reads(session: &Session) -> Vec<usize> {
    session
        .commands
        .iter()
        .filter(|c| {
            ["MAIL", "RCPT", "DATA"]
                .iter()
                .any(|v| c.line.to_ascii_uppercase().starts_with(v))
        })
        .map(|c| c.read)
        .collect()
}

#[test]
fn pipelining_sends_the_envelope_in_one_round_trip() {
    let server = submission();
    let three = "a@example.com,b@example.com,c@example.com";
    Mailsend::to(&server)
        .args(["--to", three, "--body", "x"])
        .run()
        .expect(0);
    let reads = transaction_reads(&only_session(&server));
    assert_eq!(reads.len(), 5, "MAIL, 3 RCPT, DATA");
    assert!(
        reads.iter().all(|r| *r == reads[0]),
        "one write, one round trip: {reads:?}"
    );
}

#[test]
fn without_pipelining_each_command_waits_for_its_reply() {
    let server = TestServer::start(with_auth(Behaviour {
        pipelining: false,
        ..Behaviour::default()
    }));
    Mailsend::to(&server)
        .args(["--to", "a@example.com,b@example.com", "--body", "x"])
        .run()
        .expect(0);
    let session = only_session(&server);
    assert!(session.violations.is_empty(), "{:?}", session.violations);
    assert_eq!(session.transactions[0].rcpt_to.len(), 2);
    let reads = transaction_reads(&session);
    let mut distinct = reads.clone();
    distinct.dedup();
    assert_eq!(
        distinct, reads,
        "each command in its own round trip: {reads:?}"
    );
}

#[test]
fn implicit_tls_on_its_own_port() {
    let server = TestServer::start(with_auth(Behaviour {
        security: Security::ImplicitTls,
        ..Behaviour::default()
    }));
    let run = Mailsend::to(&server)
        .args([
            "--tls",
            "tls",
            "--to",
            "a@example.com",
            "--body",
            "x",
            "--json",
        ])
        .run()
        .expect(0);
    let session = only_session(&server);
    assert!(session.tls && session.authenticated);
    let json: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
    assert!(
        json["tls"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLSv1.")),
        "{json}"
    );
}

#[test]
fn plain_mode_for_a_local_relay_sends_no_auth() {
    let server = TestServer::start(Behaviour {
        security: Security::Plain,
        ..Behaviour::default()
    });
    let mut m = Mailsend::to(&server);
    m.env_remove("MAILSEND_USER")
        .env_remove("MAILSEND_PASSWORD")
        .env("MAILSEND_FROM", "cron@example.com");
    let run = m
        .args([
            "--tls",
            "none",
            "--to",
            "a@example.com",
            "--body",
            "x",
            "--json",
        ])
        .run()
        .expect(0);
    let session = only_session(&server);
    assert!(!session.tls);
    assert!(
        session
            .lines()
            .iter()
            .all(|l| !l.to_ascii_uppercase().starts_with("AUTH"))
    );
    let json: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
    assert_eq!(json["tls"], serde_json::Value::Null);
}

#[test]
fn json_reports_the_result() {
    let server = submission();
    let run = Mailsend::to(&server)
        .args(["--to", "a@example.com", "--body", "x", "--json"])
        .run()
        .expect(0);
    let json: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
    let tx = only_transaction(&server);
    assert_eq!(
        json["message_id"].as_str(),
        header(&tx.data, "message-id").as_deref()
    );
    assert_eq!(json["from"], USER);
    assert_eq!(json["accepted"], serde_json::json!(["a@example.com"]));
    assert_eq!(json["rejected"], serde_json::json!([]));
    assert_eq!(json["reply"].as_str(), Some(tx.reply.as_str()));
    assert!(
        json["tls"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLSv1."))
    );
}

#[test]
fn dry_run_prints_message_and_envelope_and_connects_nowhere() {
    let mut m = Mailsend::bare();
    let run = m
        .args([
            "--dry-run",
            "--from",
            "me@example.com",
            "--to",
            "a@example.com",
            "--bcc",
            "b@example.com",
        ])
        .args(["--subject", "hi", "--body", "text"])
        .run()
        .expect(0);
    let out = run.output.stdout.clone();
    assert!(
        out.windows(2).filter(|w| w == b"\r\n").count() >= 8,
        "CRLF line endings"
    );
    assert!(
        !out.windows(2)
            .enumerate()
            .any(|(i, w)| w[1] == b'\n' && (i == 0 || w[0] != b'\r'))
    );
    assert_eq!(header(&out, "subject").as_deref(), Some("hi"));
    assert!(header(&out, "bcc").is_none());
    assert_eq!(body(&out), b"text\r\n");
    let err = run.stderr();
    assert!(err.contains("envelope from: <me@example.com>"), "{err}");
    assert!(
        err.contains("envelope to: <a@example.com>")
            && err.contains("envelope to: <b@example.com>"),
        "{err}"
    );
}

#[test]
fn verbose_transcript_redacts_auth() {
    let server = submission();
    let run = Mailsend::to(&server)
        .args(["--to", "a@example.com", "--body", "x", "-v"])
        .run()
        .expect(0);
    let err = run.stderr();
    assert!(err.contains("-> AUTH PLAIN <redacted>"), "{err}");
    assert!(err.contains("<- 235"), "{err}");
    assert!(
        err.contains("-> STARTTLS") && err.contains("== TLS established"),
        "{err}"
    );
    let token = base64_of(&format!("\0{USER}\0{PASSWORD}"));
    assert!(!err.contains(&token), "AUTH token leaked:\n{err}");
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn at_a_terminal_the_body_is_typed_and_ends_at_ctrl_d() {
    // util-linux `script` gives the binary a real pseudo-terminal as stdin.
    let bin = assert_cmd::cargo::cargo_bin("mailsend");
    let command = format!(
        "{} --dry-run --from me@example.com --to a@example.com -s typed",
        bin.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"typed at the terminal\n\x04")?;
            child.wait_with_output()
        })
        .expect("util-linux `script` runs");
    let screen = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains("end it with Ctrl-D"),
        "prompt on the terminal: {screen}"
    );
    assert!(
        screen.contains("\n\ntyped at the terminal\n"),
        "typed body sent: {screen}"
    );
}

#[test]
fn a_utf8_address_needs_smtputf8() {
    let old = TestServer::start(with_auth(Behaviour {
        seven_bit_only: true,
        ..Behaviour::default()
    }));
    Mailsend::to(&old)
        .args(["--to", "zoë@example.com", "--body", "x"])
        .run()
        .expect(76)
        .error_mentions("SMTPUTF8");
    let new = submission();
    Mailsend::to(&new)
        .args(["--to", "zoë@example.com", "--body", "x"])
        .run()
        .expect(0);
    assert!(only_transaction(&new).mail_params.contains("SMTPUTF8"));
}

#[test]
fn all_or_nothing_sends_to_nobody_when_one_is_refused() {
    for (reply, code) in [("550 5.1.1 no such user", 69), ("451 4.2.1 busy", 75)] {
        let server = TestServer::start(with_auth(Behaviour {
            rcpt_replies: vec![("c@example.com".into(), reply.into())],
            ..Behaviour::default()
        }));
        let run = Mailsend::to(&server)
            .args([
                "--all-or-nothing",
                "--json",
                "--to",
                "a@example.com,b@example.com,c@example.com",
                "--body",
                "x",
            ])
            .run()
            .expect(code);
        let session = only_session(&server);
        assert!(
            !session.reached_data,
            "DATA is withheld: {:?}",
            session.lines()
        );
        assert!(session.lines().contains(&"RSET"));
        let json: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
        assert_eq!(json["accepted"], serde_json::json!([]));
        assert_eq!(json["rejected"][0]["address"], "c@example.com");
    }
}

#[test]
fn all_or_nothing_retries_everyone_together() {
    let server = TestServer::start(with_auth(Behaviour {
        rcpt_replies: vec![("c@example.com".into(), "451 4.2.1 busy".into())],
        fault_sessions: Some(1),
        ..Behaviour::default()
    }));
    Mailsend::to(&server)
        .args([
            "--all-or-nothing",
            "--retry-for",
            "20s",
            "--to",
            "a@example.com,b@example.com,c@example.com",
        ])
        .args(["--body", "x"])
        .run()
        .expect(0);
    let sessions = server.wait_sessions(2, Duration::from_secs(20));
    assert!(sessions[0].transactions.iter().all(|t| t.data.is_empty()));
    assert_eq!(
        sessions[1].transactions[0].rcpt_to,
        ["a@example.com", "b@example.com", "c@example.com"]
    );
    // The envelope is still pipelined; only DATA waits for the verdict.
    let reads = transaction_reads(&sessions[1]);
    assert_eq!(reads[..4], [reads[0]; 4]);
    assert_ne!(reads[4], reads[0]);
}

#[test]
fn a_plain_relay_that_only_knows_helo() {
    let relay = TestServer::start(Behaviour {
        security: Security::Plain,
        helo_only: true,
        ..Behaviour::default()
    });
    let mut m = Mailsend::to(&relay);
    m.env_remove("MAILSEND_USER")
        .env_remove("MAILSEND_PASSWORD")
        .env("MAILSEND_FROM", "cron@example.com");
    m.args(["--tls", "none", "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(0);
    let lines = only_session(&relay)
        .lines()
        .iter()
        .map(|l| l.split(' ').next().unwrap_or("").to_owned())
        .collect::<Vec<_>>();
    assert_eq!(lines[..2], ["EHLO", "HELO"]);

    // With TLS required there is no falling back: EHLO is needed for STARTTLS.
    let old = TestServer::start(Behaviour {
        helo_only: true,
        ..Behaviour::default()
    });
    Mailsend::to(&old)
        .args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(76);
}

#[test]
fn quoted_local_parts_are_addresses() {
    let server = submission();
    Mailsend::to(&server)
        .args([
            "--from",
            "Me <\"m e\"@example.com>",
            "--to",
            "\"a b\"@example.com, Team <\"x,y\"@example.org>",
            "--cc",
            r#""q\"uote"@example.net"#,
            "--bcc",
            "\"h i\"@example.net",
            "--reply-to",
            "\"r s\"@example.com",
            "--body",
            "x",
        ])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert_eq!(tx.mail_from, "\"m e\"@example.com");
    assert_eq!(
        tx.rcpt_to,
        [
            "\"a b\"@example.com",
            "\"x,y\"@example.org",
            r#""q\"uote"@example.net"#,
            "\"h i\"@example.net"
        ]
    );
    assert!(!tx.mail_params.contains("SMTPUTF8"));
    assert_eq!(
        header(&tx.data, "to").as_deref(),
        Some("\"a b\"@example.com, Team <\"x,y\"@example.org>")
    );
    // An independent reader gets the same addresses back.
    let got = super::compose::decoded(&tx.data);
    assert_eq!(got["from"][0][1], "\"m e\"@example.com");
    assert_eq!(got["to"][0][1], "\"a b\"@example.com");
    assert_eq!(got["to"][1][1], "\"x,y\"@example.org");
    assert_eq!(got["cc"][0][1], r#""q\"uote"@example.net"#);
    assert_eq!(got["reply-to"][0][1], "\"r s\"@example.com");
    assert!(!tx.data_str().contains("h i"), "Bcc stays hidden");
    // Quotes that are not needed are dropped (RFC 5321 4.1.2).
    let mut m = Mailsend::bare();
    let run = m
        .args(["--dry-run", "--from", "me@example.com"])
        .args(["--to", "\"plain\"@example.com", "--body", "x"])
        .run()
        .expect(0);
    assert!(run.stderr().contains("envelope to: <plain@example.com>"));
}

#[test]
fn invalid_quoted_local_parts_are_bad_data() {
    for (address, why) in [
        ("\"a b@example.com", "unbalanced quote"),
        ("\"a\rb\"@example.com", "control character"),
        ("\"a\nBcc: x@example.com\"@example.com", "control character"),
        ("\"\"@example.com", "empty local part"),
        ("a b@example.com", "space in the local part"),
    ] {
        let mut m = Mailsend::bare();
        let run = m
            .args(["--dry-run", "--from", "me@example.com", "--to", address])
            .args(["--body", "x"])
            .run()
            .expect(65);
        run.error_mentions("invalid address in --to")
            .error_mentions(why);
        assert!(run.stdout().is_empty());
    }
}

#[test]
fn twenty_thousand_recipients_take_linear_time() {
    // Each address flag used to re-parse and re-encode the whole list
    // (lettre's builder), and the envelope was de-duplicated pairwise:
    // 4,000 --bcc took 197 s in a debug build. Now 20,000 take well under
    // a second; the bound leaves a wide margin for a loaded machine.
    let n = 20_000;
    let mut m = Mailsend::bare();
    m.args(["--dry-run", "--from", "me@example.com", "--body", "x"]);
    for i in 0..n {
        m.args(["--bcc", &format!("user{i}@example.com")]);
    }
    // The same address with its domain in another case is a duplicate.
    m.args(["--to", "a@example.com", "--bcc", "user7@EXAMPLE.com"]);
    let started = std::time::Instant::now();
    let run = m.run().expect(0);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "{n} recipients took {elapsed:?}"
    );
    let stderr = run.stderr();
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("envelope to:"))
            .count(),
        n + 1,
        "each once, the duplicate with its domain in another case dropped"
    );
    assert!(!has_bcc_line(&run.output.stdout));
}

#[test]
fn long_recipient_lists_are_folded_within_998_octets() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    let to: Vec<String> = (0..150).map(|i| format!("user{i}@example.com")).collect();
    m.args([
        "--to",
        &to.join(", "),
        "--cc",
        &to[..60].join(","),
        "--body",
        "x",
    ]);
    m.run().expect(0);
    let tx = only_transaction(&server);
    let data = tx.data_str();
    assert!(
        data.split("\r\n").all(|l| l.len() <= 998),
        "a header line over 998 octets"
    );
    assert_eq!(header(&tx.data, "to"), Some(to.join(", ")));
    assert_eq!(tx.rcpt_to, to);
}

#[test]
fn the_local_part_is_case_sensitive_when_removing_duplicates() {
    // RFC 5321 2.4: only the domain is case-insensitive; a server may
    // deliver Ops@ and ops@ to different people.
    let server = submission();
    Mailsend::to(&server)
        .args(["--to", "Ops@example.com", "--to", "ops@example.com"])
        .args([
            "--cc",
            "ops@EXAMPLE.COM, \"A B\"@example.com, \"a b\"@Example.com",
        ])
        .args(["--bcc", "Ops@Example.Com", "--body", "x"])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    assert_eq!(
        tx.rcpt_to,
        [
            "Ops@example.com",
            "ops@example.com",
            "\"A B\"@example.com",
            "\"a b\"@Example.com"
        ]
    );
}
