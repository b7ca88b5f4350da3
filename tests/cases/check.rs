//! `mailsend check`: each step reported, the certificate described even
//! when refused, port mix-ups explained, the exit code a send would have
//! had, and never a MAIL command.

use serde_json::Value;

use super::*;
use crate::support::cmd::{Mailsend, Run};
use crate::support::server::{Cert, Security};

/// Every session the server saw ended without MAIL, RCPT or DATA.
fn never_mailed(server: &TestServer, sessions: usize) -> Vec<Session> {
    let seen = server.wait_sessions(sessions, Duration::from_secs(20));
    for s in &seen {
        for line in s.lines() {
            let verb = line
                .split([' ', ':'])
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            assert!(
                !["MAIL", "RCPT", "DATA"].contains(&verb.as_str()),
                "check sent {line:?}: {:?}",
                s.lines()
            );
        }
        assert!(s.transactions.is_empty() && !s.reached_data, "{s:?}");
    }
    seen
}

fn check_json(m: &mut Mailsend, code: i32) -> (Run, Value) {
    let run = m.args(["check", "--json"]).run().expect(code);
    let json: Value = serde_json::from_str(run.stdout().trim())
        .unwrap_or_else(|e| panic!("one JSON object on stdout ({e}): {}", run.stdout()));
    assert_eq!(json["ok"], Value::Bool(code == 0), "{json:#}");
    assert_eq!(json["exit_code"], code, "{json:#}");
    for key in [
        "host",
        "port",
        "addresses",
        "greeting",
        "capabilities",
        "tls",
        "certificate",
        "auth",
        "warnings",
        "errors",
        "ok",
    ] {
        assert!(json.get(key).is_some(), "no key {key}: {json:#}");
    }
    (run, json)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

#[test]
fn a_good_server_is_described_and_the_login_tried_without_mail() {
    let server = submission();
    let (run, j) = check_json(&mut Mailsend::to(&server), 0);
    assert_eq!(j["host"], "127.0.0.1");
    assert_eq!(j["port"], server.port());
    assert_eq!(strings(&j["addresses"]), ["127.0.0.1"]);
    assert_eq!(j["greeting"], "220 localhost ESMTP test");
    let clear = strings(&j["capabilities_before_tls"]);
    assert!(clear.contains(&"STARTTLS".to_owned()), "{clear:?}");
    assert!(!clear.iter().any(|c| c.starts_with("AUTH")), "{clear:?}");
    let caps = strings(&j["capabilities"]);
    assert!(caps.contains(&"AUTH PLAIN LOGIN".to_owned()), "{caps:?}");
    assert!(!caps.contains(&"STARTTLS".to_owned()), "{caps:?}");
    assert!(j["tls"]["version"].as_str().unwrap().starts_with("TLSv1."));
    assert!(!j["tls"]["cipher"].as_str().unwrap().is_empty());
    let cert = &j["certificate"];
    assert_eq!(cert["subject"], "CN=localhost");
    assert_eq!(cert["issuer"], "CN=mailsend test CA");
    assert_eq!(strings(&cert["names"]), ["localhost", "127.0.0.1", "::1"]);
    assert_eq!(cert["verified"], true);
    assert_eq!(cert["error"], Value::Null);
    let days = cert["days_left"].as_i64().unwrap();
    assert!((363..=365).contains(&days), "{days}");
    assert!(cert["not_after"].as_str().unwrap().ends_with('Z'));
    assert_eq!(strings(&j["auth"]["offered"]), ["PLAIN", "LOGIN"]);
    assert_eq!(j["auth"]["chosen"], "PLAIN");
    assert_eq!(j["auth"]["accepted"], true);
    assert!(strings(&j["warnings"]).is_empty() && strings(&j["errors"]).is_empty());
    assert_eq!(run.stderr(), "");
    let session = never_mailed(&server, 1).remove(0);
    assert!(session.authenticated && session.tls);
    assert_eq!(session.lines().last(), Some(&"QUIT"));
}

#[test]
fn the_human_report_has_one_line_per_step() {
    let server = submission();
    let run = Mailsend::to(&server).args(["check"]).run().expect(0);
    let out = run.stdout();
    for want in [
        "greeting     220 localhost ESMTP test",
        "in clear     ",
        "certificate  CN=localhost, issued by CN=mailsend test CA",
        "names        localhost, 127.0.0.1, ::1",
        "verified     yes",
        "auth         offered PLAIN LOGIN; mailsend uses PLAIN; credentials accepted",
        "result       ok",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    never_mailed(&server, 1);
}

/// The certificate is refused (77) but still described, and nothing
/// goes past the handshake.
fn refused_certificate(cert: Cert, host: &str, error: &str) -> Value {
    let server = TestServer::start(with_auth(Behaviour {
        cert,
        ..Behaviour::default()
    }));
    let (run, j) = check_json(Mailsend::to(&server).env("MAILSEND_HOST", host), 77);
    let c = &j["certificate"];
    assert_eq!(c["verified"], false, "{j:#}");
    assert!(
        c["error"].as_str().unwrap().contains(error),
        "{error}: {j:#}"
    );
    assert!(!strings(&c["names"]).is_empty(), "{j:#}");
    assert!(
        c["not_after"].is_string() && c["days_left"].is_i64(),
        "{j:#}"
    );
    assert_eq!(j["auth"]["accepted"], Value::Null);
    assert!(strings(&j["errors"])[0].contains("not trusted"), "{j:#}");
    run.error_mentions("not trusted");
    let session = never_mailed(&server, 1).remove(0);
    assert!(session.auth.is_none(), "{session:?}");
    j
}

#[test]
fn an_expired_certificate_is_described() {
    let j = refused_certificate(Cert::Expired, "127.0.0.1", "expired");
    assert!(j["certificate"]["days_left"].as_i64().unwrap() < 0);
    assert_eq!(j["certificate"]["subject"], "CN=localhost");
}

#[test]
fn a_wrong_host_certificate_is_described() {
    let j = refused_certificate(Cert::WrongHost, "localhost", "mismatch");
    assert_eq!(
        strings(&j["certificate"]["names"]),
        ["wrong-host.example.net"]
    );
    assert!(
        j["hint"].as_str().unwrap().contains("subjectAltName"),
        "{j:#}"
    );
}

#[test]
fn an_untrusted_certificate_is_described() {
    let j = refused_certificate(Cert::Untrusted, "127.0.0.1", "issuer");
    assert_eq!(j["certificate"]["issuer"], "CN=untrusted test CA");
    assert!(j["hint"].as_str().unwrap().contains("--ca-file"), "{j:#}");
}

#[test]
fn a_server_without_starttls_is_76_with_what_it_offered() {
    let server = TestServer::start(with_auth(Behaviour {
        offer_starttls: false,
        allow_auth_without_tls: true,
        ..Behaviour::default()
    }));
    let (run, j) = check_json(&mut Mailsend::to(&server), 76);
    let clear = strings(&j["capabilities_before_tls"]);
    assert!(clear.contains(&"AUTH PLAIN LOGIN".to_owned()), "{clear:?}");
    assert_eq!(j["tls"], Value::Null);
    assert_eq!(j["certificate"], Value::Null);
    run.error_mentions("does not offer STARTTLS");
    let session = never_mailed(&server, 1).remove(0);
    assert!(session.auth.is_none(), "credentials sent in clear");
}

#[test]
fn implicit_tls_on_the_starttls_port_is_named() {
    let server = TestServer::start(with_auth(Behaviour {
        security: Security::ImplicitTls,
        ..Behaviour::default()
    }));
    let (run, j) = check_json(
        Mailsend::to(&server)
            .env("MAILSEND_TLS", "starttls")
            .env("MAILSEND_TIMEOUT", "2s"),
        75,
    );
    let hint = j["hint"].as_str().unwrap();
    assert!(hint.contains("--tls tls"), "{hint}");
    assert!(
        run.stderr().contains("mailsend: hint: "),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("--tls tls"), "{}", run.stderr());
    never_mailed(&server, 2);
}

#[test]
fn starttls_on_the_implicit_tls_port_is_named() {
    let server = submission();
    let (run, j) = check_json(Mailsend::to(&server).env("MAILSEND_TLS", "tls"), 76);
    let hint = j["hint"].as_str().unwrap();
    assert!(hint.contains("--tls starttls"), "{hint}");
    assert!(run.stderr().contains("--tls starttls"), "{}", run.stderr());
    // The probe greeted and asked EHLO in clear, nothing more.
    let sessions = never_mailed(&server, 2);
    assert!(sessions.iter().all(|s| s.auth.is_none()), "{sessions:?}");
}

#[test]
fn refused_credentials_are_77_and_said() {
    let server = submission();
    let (run, j) = check_json(
        Mailsend::to(&server).env("MAILSEND_PASSWORD", "wrong-password"),
        77,
    );
    assert_eq!(j["auth"]["chosen"], "PLAIN");
    assert_eq!(j["auth"]["accepted"], false);
    assert_eq!(j["certificate"]["verified"], true);
    assert!(strings(&j["errors"])[0].contains("535"), "{j:#}");
    run.error_mentions("535");
    never_mailed(&server, 1);
}

#[test]
fn without_credentials_no_login_is_tried() {
    let server = TestServer::start(Behaviour::default());
    let (_, j) = check_json(
        Mailsend::to(&server)
            .env_remove("MAILSEND_USER")
            .env_remove("MAILSEND_PASSWORD"),
        0,
    );
    assert_eq!(j["auth"]["chosen"], Value::Null);
    assert_eq!(j["auth"]["accepted"], Value::Null);
    never_mailed(&server, 1);
}

#[test]
fn a_certificate_expiring_within_two_weeks_is_a_warning() {
    let server = TestServer::start(with_auth(Behaviour {
        cert: Cert::ExpiringSoon,
        ..Behaviour::default()
    }));
    let (run, j) = check_json(&mut Mailsend::to(&server), 0);
    assert_eq!(j["certificate"]["days_left"], 5);
    assert_eq!(j["certificate"]["verified"], true);
    let warnings = strings(&j["warnings"]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("expires in 5 days"), "{warnings:?}");
    assert!(
        run.stderr()
            .contains("mailsend: warning: the server's certificate expires in 5 days"),
        "{}",
        run.stderr()
    );
    never_mailed(&server, 1);
}

#[test]
fn a_missing_host_still_prints_the_object() {
    let (run, j) = check_json(&mut Mailsend::bare(), 78);
    assert_eq!(j["host"], Value::Null);
    run.error_mentions("no SMTP server configured");
}

#[test]
fn a_temporary_auth_failure_is_not_reported_as_refused_credentials() {
    // 454 4.7.0 says nothing about the password: the login is not settled,
    // so `accepted` is null (as for "not tried"), and the human report
    // does not tell the user their credentials were refused.
    let b = || {
        with_auth(Behaviour {
            auth_refusal: Some("454 4.7.0 Temporary authentication failure".into()),
            ..Behaviour::default()
        })
    };
    let server = TestServer::start(b());
    let (_, j) = check_json(
        Mailsend::to(&server).env("MAILSEND_PASSWORD", "wrong-password"),
        75,
    );
    assert_eq!(j["auth"]["chosen"], "PLAIN");
    assert_eq!(j["auth"]["accepted"], Value::Null, "{j:#}");
    assert!(strings(&j["errors"])[0].contains("454"), "{j:#}");
    never_mailed(&server, 1);

    let server = TestServer::start(b());
    let run = Mailsend::to(&server)
        .env("MAILSEND_PASSWORD", "wrong-password")
        .args(["check"])
        .run()
        .expect(75);
    assert!(!run.stdout().contains("REFUSED"), "{}", run.stdout());
    assert!(run.stdout().contains("temporary"), "{}", run.stdout());
    never_mailed(&server, 1);
}

#[test]
fn a_refused_oauth_token_is_accepted_false_and_never_printed() {
    let server = TestServer::start(Behaviour {
        oauth_token: Some("the-right-token".into()),
        ..with_auth(Behaviour::default())
    });
    let mut m = Mailsend::to(&server);
    m.env_remove("MAILSEND_PASSWORD")
        .env("MAILSEND_AUTH", "xoauth2")
        .env("MAILSEND_OAUTH_TOKEN_COMMAND", "echo a-stale-token-9f3e");
    let (run, j) = check_json(&mut m, 77);
    assert_eq!(j["auth"]["chosen"], "XOAUTH2");
    assert_eq!(j["auth"]["accepted"], false, "{j:#}");
    assert!(
        !run.stdout().contains("a-stale-token-9f3e"),
        "{}",
        run.stdout()
    );
    assert!(
        !run.stderr().contains("a-stale-token-9f3e"),
        "{}",
        run.stderr()
    );
    never_mailed(&server, 1);
}

#[test]
fn a_greeting_that_refuses_is_still_reported() {
    // The server's own words are the diagnosis: "554 no service for your
    // network" or "421 too busy" must reach the report, not only the error.
    for (greeting, code) in [
        ("554 5.7.1 no service for 127.0.0.1", 69),
        ("421 4.3.2 too busy, try later", 75),
    ] {
        let server = TestServer::start(Behaviour {
            greeting: greeting.into(),
            ..Behaviour::default()
        });
        let (_, j) = check_json(&mut Mailsend::to(&server), code);
        assert_eq!(j["greeting"], greeting, "{j:#}");
        never_mailed(&server, 1);
    }
}

#[test]
fn the_human_report_counts_whole_days_since_expiry() {
    // The test certificate expired a day (and the seconds this test took)
    // ago: that is "1 day ago", not 2.
    let server = TestServer::start(Behaviour {
        cert: Cert::Expired,
        ..Behaviour::default()
    });
    let run = Mailsend::to(&server)
        .env("MAILSEND_HOST", "127.0.0.1")
        .args(["check"])
        .run()
        .expect(77);
    let validity = run
        .stdout()
        .lines()
        .find(|l| l.starts_with("validity"))
        .unwrap_or_else(|| panic!("no validity line: {}", run.stdout()))
        .to_owned();
    assert!(validity.ends_with("(1 day ago)"), "{validity}");
    never_mailed(&server, 1);
}

#[test]
fn the_chain_of_a_refused_certificate_is_what_the_server_presented() {
    // The test servers present their leaf alone. Verification builds a
    // chain up to the CA of --ca-file: that CA was never presented by the
    // server and must not be listed as if it had been (a good handshake
    // lists only what the server sent, too).
    for (cert, host) in [
        (Cert::Expired, "127.0.0.1"),
        (Cert::WrongHost, "127.0.0.1"),
        (Cert::Good, "127.0.0.1"),
    ] {
        let server = TestServer::start(with_auth(Behaviour {
            cert,
            ..Behaviour::default()
        }));
        let code = if cert == Cert::Good { 0 } else { 77 };
        let (_, j) = check_json(Mailsend::to(&server).env("MAILSEND_HOST", host), code);
        let chain = j["chain"].as_array().expect("chain");
        assert_eq!(chain.len(), 1, "{cert:?}: {j:#}");
        assert_eq!(chain[0]["subject"], j["certificate"]["subject"], "{j:#}");
        never_mailed(&server, 1);
    }
}

#[test]
fn credentials_echoed_by_the_server_never_reach_the_report() {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASSWORD}"));
    for json in [true, false] {
        let server = TestServer::start(with_auth(Behaviour {
            echo_auth: true,
            ..Behaviour::default()
        }));
        let mut m = Mailsend::to(&server);
        m.args(["check", "-v"]);
        if json {
            m.args(["--json"]);
        }
        let run = m.run().expect(77);
        for (name, text) in [("stdout", run.stdout()), ("stderr", run.stderr())] {
            assert!(!text.contains(&token[8..]), "token on {name}:\n{text}");
            assert!(
                !text.contains(&PASSWORD[..PASSWORD.len() - 1]),
                "password on {name}:\n{text}"
            );
        }
        never_mailed(&server, 1);
    }
}
