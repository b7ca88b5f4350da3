//! OAuth2 authentication: XOAUTH2 and OAUTHBEARER with a token from a
//! command, the `--auth` choice, refused tokens and helpful refusals, in
//! every mode that sends.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::*;
use crate::support::cmd::{Mailsend, Run, account_config};

/// The token the test server accepts.
const TOKEN: &str = "ya29.a0AfH6SMB-good-Token_0123456789";
/// A token it refuses (expired).
const OLD_TOKEN: &str = "ya29.a0AfH6SMB-expired-Tok_9876543210";

/// A submission server that also takes XOAUTH2 and OAUTHBEARER with TOKEN.
fn oauth_server(extra: Behaviour) -> TestServer {
    TestServer::start(Behaviour {
        oauth_token: Some(TOKEN.into()),
        ..with_auth(extra)
    })
}

/// A token command printing `tokens` one per run (the last one again
/// after that), counting its runs in `runs`.
fn token_command(m: &Mailsend, tokens: &[&str]) -> (String, PathBuf) {
    let runs = m.path().join("token-runs");
    let mut script =
        String::from("n=$(cat \"$RUNS\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$RUNS\"\n");
    for (i, t) in tokens.iter().enumerate() {
        script.push_str(&format!(
            "[ $n -le {} ] && {{ echo '{t}'; exit 0; }}\n",
            i + 1
        ));
    }
    script.push_str(&format!("echo '{}'\n", tokens.last().expect("a token")));
    let file = m.file("token.sh", script);
    (
        format!("RUNS='{}' sh '{}'", runs.display(), file.display()),
        runs,
    )
}

fn runs_of(file: &Path) -> usize {
    std::fs::read_to_string(file)
        .map(|s| s.trim().parse().unwrap_or(0))
        .unwrap_or(0)
}

fn xoauth2(user: &str, token: &str) -> String {
    BASE64.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

fn oauthbearer(user: &str, port: u16, token: &str) -> String {
    BASE64.encode(format!(
        "n,a={user},\x01host=127.0.0.1\x01port={port}\x01auth=Bearer {token}\x01\x01"
    ))
}

/// Neither token, nor their base64 forms, nor the initial responses
/// appear anywhere in `texts`.
fn assert_no_token(port: u16, texts: &[String]) {
    for token in [TOKEN, OLD_TOKEN] {
        let forms = [
            token.to_owned(),
            BASE64.encode(token),
            xoauth2(USER, token),
            oauthbearer(USER, port, token),
        ];
        for text in texts {
            for form in &forms {
                assert!(
                    !text.contains(&form[..12]),
                    "token leaked ({form}):\n{text}"
                );
            }
            assert!(
                !text.contains(&token[10..22]),
                "token fragment leaked:\n{text}"
            );
        }
    }
}

fn send(m: &mut Mailsend) -> Run {
    m.args(["--to", "a@example.com", "--subject", "s", "--body", "b"])
        .run()
}

/// The AUTH command lines the server saw, in order.
fn auth_lines(server: &TestServer) -> Vec<String> {
    server
        .sessions()
        .iter()
        .flat_map(|s| s.commands.clone())
        .map(|c| c.line)
        .filter(|l| l.starts_with("AUTH"))
        .collect()
}

#[test]
fn xoauth2_presents_the_token_of_the_command_and_never_shows_it() {
    let server = oauth_server(Behaviour::default());
    let mut m = Mailsend::to(&server);
    let (command, runs) = token_command(&m, &[TOKEN]);
    let log = m.path().join("mail.log");
    m.env("MAILSEND_OAUTH_TOKEN_COMMAND", &command)
        .args(["--auth", "xoauth2", "-v", "--json", "--log"])
        .args([log.as_os_str()]);
    let run = send(&mut m).expect(0);
    let session = only_session(&server);
    assert!(session.authenticated);
    assert_eq!(session.auth, Some((USER.to_owned(), TOKEN.to_owned())));
    assert_eq!(
        auth_lines(&server),
        [format!("AUTH XOAUTH2 {}", xoauth2(USER, TOKEN))]
    );
    assert_eq!(session.transactions.len(), 1);
    assert_eq!(runs_of(&runs), 1);
    assert!(
        run.stderr().contains("-> AUTH XOAUTH2 <redacted>"),
        "{}",
        run.stderr()
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert_no_token(server.port(), &[run.stdout(), run.stderr(), logged]);
}

#[test]
fn auto_prefers_oauthbearer_with_host_and_port_when_a_token_command_is_set() {
    let server = oauth_server(Behaviour::default());
    let mut m = Mailsend::to(&server);
    let (command, _) = token_command(&m, &[TOKEN]);
    m.args(["--oauth-token-command", &command]);
    let run = send(&mut m).expect(0);
    assert_eq!(
        auth_lines(&server),
        [format!(
            "AUTH OAUTHBEARER {}",
            oauthbearer(USER, server.port(), TOKEN)
        )]
    );
    assert_no_token(server.port(), &[run.stdout(), run.stderr()]);
}

#[test]
fn auto_without_a_token_source_logs_in_with_the_password() {
    let server = oauth_server(Behaviour::default());
    send(&mut Mailsend::to(&server)).expect(0);
    let lines = auth_lines(&server);
    assert!(lines[0].starts_with("AUTH PLAIN "), "{lines:?}");
}

#[test]
fn auto_with_a_server_without_oauth_uses_the_password() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    let (command, _) = token_command(&m, &[TOKEN]);
    m.env("MAILSEND_OAUTH_TOKEN_COMMAND", &command);
    send(&mut m).expect(0);
    assert!(auth_lines(&server)[0].starts_with("AUTH PLAIN "));
}

#[test]
fn a_refused_token_is_77_with_the_decoded_error_in_one_line() {
    for (auth, decoded, answer) in [
        (
            "xoauth2",
            "(token error: status=401 schemes=bearer scope=https://mail.example.com/)",
            "",
        ),
        ("oauthbearer", "(token error: status=invalid_token)", "AQ=="),
    ] {
        let server = oauth_server(Behaviour::default());
        let mut m = Mailsend::to(&server);
        let (command, runs) = token_command(&m, &[OLD_TOKEN]);
        let log = m.path().join("mail.log");
        m.env("MAILSEND_OAUTH_TOKEN_COMMAND", &command)
            .env("MAILSEND_AUTH", auth)
            .args(["-v", "--json", "--log"])
            .args([log.as_os_str()]);
        let run = send(&mut m).expect(77);
        let json: serde_json::Value =
            serde_json::from_str(run.stdout().trim()).expect("one JSON object");
        assert!(
            json["error"].as_str().is_some_and(|e| e.contains(decoded)),
            "{json}"
        );
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(logged.contains(decoded), "{logged}");
        assert_no_token(server.port(), &[logged]);
        run.error_mentions(&format!(
            "server refused AUTH {}: 535 5.7.8 Error: authentication failed {decoded}",
            auth.to_uppercase()
        ));
        let errors = run
            .stderr()
            .lines()
            .filter(|l| l.starts_with("mailsend: error:"))
            .count();
        assert_eq!(errors, 1, "{}", run.stderr());
        assert!(
            run.stderr().contains("auth login"),
            "a hint: {}",
            run.stderr()
        );
        // The challenge was answered as the mechanism wants.
        let session = only_session(&server);
        assert!(session.violations.is_empty(), "{:?}", session.violations);
        let commands = session.lines();
        let at = commands
            .iter()
            .position(|l| l.starts_with("AUTH"))
            .expect("AUTH");
        assert_eq!(commands[at + 1], answer, "{commands:?}");
        // The command ran again once; it gave the same token: no retry.
        assert_eq!(runs_of(&runs), 2);
        assert_no_token(server.port(), &[run.stdout(), run.stderr()]);
        // The error line quotes the decoded error, never the base64.
        let error = run
            .stderr()
            .lines()
            .find(|l| l.starts_with("mailsend: error:"))
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(!error.contains("eyJzdGF0dXMi"), "{error}");
    }
}

#[test]
fn an_expired_token_is_fetched_again_once_and_the_new_one_used() {
    let server = oauth_server(Behaviour::default());
    let mut m = Mailsend::to(&server);
    let (command, runs) = token_command(&m, &[OLD_TOKEN, TOKEN]);
    m.env("MAILSEND_OAUTH_TOKEN_COMMAND", &command)
        .args(["--auth", "xoauth2"]);
    send(&mut m).expect(0);
    assert_eq!(runs_of(&runs), 2);
    let sessions = server.wait_sessions(2, std::time::Duration::from_secs(10));
    assert_eq!(sessions.len(), 2);
    assert!(!sessions[0].authenticated && sessions[1].authenticated);
    assert_eq!(sessions[1].transactions.len(), 1);
}

#[test]
fn a_failing_token_command_is_78_with_a_hint_and_connects_nowhere() {
    let server = oauth_server(Behaviour::default());
    let mut m = Mailsend::to(&server);
    m.env(
        "MAILSEND_OAUTH_TOKEN_COMMAND",
        "echo not-this-token >&2; exit 3",
    )
    .args(["--auth", "oauthbearer"]);
    let run = send(&mut m).expect(78);
    run.error_mentions("OAuth2 token command failed: it exited with exit status: 3");
    assert!(run.stderr().contains("MAILSEND_OAUTH_TOKEN_COMMAND"));
    assert!(server.sessions().is_empty());
    // A command that prints nothing is a failure too, and one too slow.
    let mut m = Mailsend::to(&server);
    m.env("MAILSEND_OAUTH_TOKEN_COMMAND", "true");
    send(&mut m).expect(78).error_mentions("it printed nothing");
    let mut m = Mailsend::to(&server);
    m.env("MAILSEND_OAUTH_TOKEN_COMMAND", "sleep 10")
        .env("MAILSEND_TIMEOUT", "300ms");
    send(&mut m)
        .expect(78)
        .error_mentions("no answer within 300ms");
    assert!(server.sessions().is_empty());
}

#[test]
fn a_mechanism_the_server_does_not_offer_is_76() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    let (command, _) = token_command(&m, &[TOKEN]);
    m.env("MAILSEND_OAUTH_TOKEN_COMMAND", &command)
        .args(["--auth", "xoauth2"]);
    send(&mut m)
        .expect(76)
        .error_mentions("server does not offer AUTH XOAUTH2 (offers PLAIN LOGIN)");
    // A server that takes tokens only, and no token source: 76, with a hint.
    let server = oauth_server(Behaviour {
        auth_mechanisms: Some("XOAUTH2".into()),
        ..Behaviour::default()
    });
    let run = send(&mut Mailsend::to(&server)).expect(76);
    run.error_mentions("server does not offer AUTH PLAIN or LOGIN (offers XOAUTH2)");
    assert!(
        run.stderr().contains("MAILSEND_OAUTH_TOKEN_COMMAND"),
        "{}",
        run.stderr()
    );
}

#[test]
fn bad_auth_values_and_missing_tokens_are_refused_before_connecting() {
    let server = submission();
    send(Mailsend::to(&server).args(["--auth", "cram-md5"]))
        .expect(64)
        .error_mentions("invalid authentication mechanism 'cram-md5' (from --auth)");
    send(Mailsend::to(&server).env("MAILSEND_AUTH", "gssapi"))
        .expect(78)
        .error_mentions("MAILSEND_AUTH");
    let mut m = Mailsend::bare();
    m.config(&account_config(&server, "auth = \"ntlm\""));
    send(&mut m)
        .expect(78)
        .error_mentions("auth of account main");
    send(Mailsend::to(&server).args(["--auth", "xoauth2"]))
        .expect(78)
        .error_mentions("auth xoauth2 needs an OAuth2 access token");
    send(
        Mailsend::to(&server)
            .env_remove("MAILSEND_USER")
            .env_remove("MAILSEND_PASSWORD")
            .env("MAILSEND_OAUTH_TOKEN_COMMAND", "echo t"),
    )
    .expect(78)
    .error_mentions("an OAuth2 token command is configured but no user name");
    send(
        Mailsend::to(&server)
            .env("MAILSEND_TLS", "none")
            .env_remove("MAILSEND_PASSWORD")
            .env("MAILSEND_OAUTH_TOKEN_COMMAND", "echo t"),
    )
    .expect(78)
    .error_mentions("TLS mode is none");
    assert!(server.sessions().is_empty());
}

#[test]
fn providers_that_refuse_passwords_get_a_hint_naming_oauth2() {
    for (refusal, code, needle) in [
        (
            "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
            77,
            "--auth xoauth2",
        ),
        (
            "550 5.7.30 Basic authentication is not supported for Client Submission.",
            77,
            "mailsend auth login",
        ),
        (
            "534-5.7.9 Application-specific password required.\r\n534 5.7.9 Learn more",
            77,
            "app password",
        ),
    ] {
        let server = TestServer::start(with_auth(Behaviour {
            auth_refusal: Some(refusal.into()),
            ..Behaviour::default()
        }));
        let run = send(Mailsend::to(&server).env("MAILSEND_PASSWORD", "wrong")).expect(code);
        let stderr = run.stderr();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{stderr}");
        assert!(lines[0].starts_with("mailsend: error: "), "{stderr}");
        assert!(lines[0].contains("server refused AUTH"), "{stderr}");
        assert!(lines[1].starts_with("mailsend: hint: "), "{stderr}");
        assert!(lines[1].contains(needle), "{stderr}");
    }
}

#[test]
fn sendmail_mode_uses_the_account_token_command() {
    let server = oauth_server(Behaviour::default());
    let mut m = Mailsend::sendmail(&server);
    let (command, _) = token_command(&m, &[TOKEN]);
    m.config(&account_config(
        &server,
        &format!("auth = \"xoauth2\"\noauth_token_command = \"{command}\""),
    ));
    m.args(["-t", "-i"])
        .stdin("To: a@example.com\nSubject: cron\n\nhi\n")
        .run()
        .expect(0);
    assert_eq!(
        auth_lines(&server),
        [format!("AUTH XOAUTH2 {}", xoauth2(USER, TOKEN))]
    );
    assert_eq!(only_transaction(&server).rcpt_to, ["a@example.com"]);
}

#[test]
fn outbox_flush_uses_the_token_command() {
    let home = tempfile::tempdir().expect("home");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let mut m = Mailsend::to_port(port);
    let (command, runs) = token_command(&m, &[TOKEN]);
    m.home(home.path())
        .env("MAILSEND_OAUTH_TOKEN_COMMAND", &command)
        .args(["--queue"]);
    send(&mut m).expect(0);
    let server = TestServer::start_on(
        Behaviour {
            oauth_token: Some(TOKEN.into()),
            ..with_auth(Behaviour::default())
        },
        port,
    );
    let mut m = Mailsend::to_port(port);
    m.home(home.path())
        .env("MAILSEND_OAUTH_TOKEN_COMMAND", &command)
        .args(["outbox", "flush"]);
    let run = m.run().expect(0);
    assert_eq!(
        auth_lines(&server),
        [format!(
            "AUTH OAUTHBEARER {}",
            oauthbearer(USER, port, TOKEN)
        )]
    );
    assert_eq!(only_transaction(&server).rcpt_to, ["a@example.com"]);
    assert_eq!(runs_of(&runs), 2, "once to queue, once to flush");
    assert_no_token(port, &[run.stdout(), run.stderr()]);
}

#[test]
fn bulk_fetches_the_token_once_for_all_its_sessions() {
    let server = oauth_server(Behaviour::default());
    let mut m = Mailsend::to(&server);
    let (command, runs) = token_command(&m, &[TOKEN]);
    let mut list = String::from("email,name\n");
    for i in 1..=6 {
        list.push_str(&format!("user{i}@example.com,User {i}\n"));
    }
    m.file("list.csv", list);
    m.env("MAILSEND_OAUTH_TOKEN_COMMAND", &command)
        .args(["bulk", "--auth", "xoauth2", "--data", "list.csv"])
        .args(["--from", "news@example.com", "--subject", "Hi {{ name }}"])
        .args(["--body", "Dear {{ name }}", "--concurrency", "3"])
        .args(["--unsubscribe-url", "https://example.com/u?e={{ email }}"])
        .args(["--yes", "--json"]);
    let run = m.run().expect(0);
    let lines = auth_lines(&server);
    assert!(lines.len() >= 2, "several sessions: {lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| *l == format!("AUTH XOAUTH2 {}", xoauth2(USER, TOKEN))),
        "{lines:?}"
    );
    assert_eq!(runs_of(&runs), 1);
    assert_no_token(server.port(), &[run.stdout(), run.stderr()]);
}

#[test]
fn a_user_name_that_would_break_the_oauth2_framing_is_78_and_connects_nowhere() {
    let server = oauth_server(Behaviour::default());
    for (auth, user) in [
        ("xoauth2", "me\u{1}auth=Bearer forged\u{1}\u{1}"),
        ("oauthbearer", "me\u{1}host=elsewhere"),
        ("auto", "me\u{1}x"),
    ] {
        let mut m = Mailsend::to(&server);
        let (command, _) = token_command(&m, &[TOKEN]);
        m.env("MAILSEND_OAUTH_TOKEN_COMMAND", &command)
            .env("MAILSEND_USER", user)
            .env("MAILSEND_FROM", "me@example.com")
            .args(["--auth", auth]);
        let run = send(&mut m).expect(78);
        run.error_mentions("user name");
    }
    assert!(server.sessions().is_empty());
}

#[test]
fn check_with_a_refused_token_says_the_credentials_were_not_accepted() {
    let server = oauth_server(Behaviour::default());
    let mut m = Mailsend::to(&server);
    let (command, _) = token_command(&m, &[OLD_TOKEN]);
    m.env("MAILSEND_OAUTH_TOKEN_COMMAND", &command)
        .args(["check", "--json"]);
    let run = m.run().expect(77);
    let j: serde_json::Value = serde_json::from_str(&run.stdout()).expect("JSON");
    assert_eq!(j["auth"]["chosen"], "OAUTHBEARER", "{j:#}");
    assert_eq!(j["auth"]["accepted"], false, "{j:#}");
    assert_no_token(server.port(), &[run.stdout(), run.stderr()]);
}
