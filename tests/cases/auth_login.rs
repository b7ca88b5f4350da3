//! `mailsend auth`: the built-in OAuth2 sign-in against the test double in
//! tests/support/oauth_server.rs, driven end to end without a browser.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::cmd::{Mailsend, Run};
use crate::support::oauth_server::{ACCESS_PREFIX, OAuthServer, Options, REFRESH_PREFIX, http_get};
use crate::support::pki::{Cert, Pki};

const CLIENT_SECRET: &str = "CS-s3cret-value";

fn mailsend_for(server: &OAuthServer) -> Mailsend {
    let mut m = Mailsend::bare();
    for (k, v) in server.env() {
        m.env(k, &v);
    }
    m
}

/// The default token file of the default account under the test's HOME.
fn token_file(m: &Mailsend) -> PathBuf {
    m.path().join(".local/state/mailsend/oauth/default.json")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// No token, secret or code appears in anything mailsend printed.
fn assert_no_tokens(stdout: &str, stderr: &str) {
    for text in [stdout, stderr] {
        for secret in [ACCESS_PREFIX, REFRESH_PREFIX, CLIENT_SECRET, "dev-code-1"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
    }
}

fn checked(run: Run, code: i32) -> Run {
    let run = run.expect(code);
    assert_no_tokens(&run.stdout(), &run.stderr());
    run
}

/// A running `auth login` and the lines of its stderr.
struct Login {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Login {
    fn start(m: &mut Mailsend, extra: &[&str]) -> Login {
        let mut args = vec!["auth", "login"];
        args.extend_from_slice(extra);
        m.args(args);
        let mut child = m.spawn_with(Stdio::piped(), Stdio::piped());
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Login {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first stderr line that satisfies `pick`.
    fn line(&mut self, pick: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| {
                    panic!("no such line; stderr so far:\n{}", self.seen.join("\n"))
                });
            self.seen.push(line.clone());
            if pick(&line) {
                return line;
            }
        }
    }

    /// Waits for the end: exit code, stdout, all of stderr.
    fn finish(mut self) -> (i32, String, String) {
        let status = self.child.wait().expect("wait");
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let err = self.seen.join("\n");
        assert_no_tokens(&out, &err);
        (status.code().expect("exited"), out, err)
    }
}

/// Runs `auth login --no-browser` up to the redirect: returns the login
/// and the redirect the double's authorize endpoint answered with.
fn sign_in_until_redirect(m: &mut Mailsend, server: &OAuthServer) -> (Login, String) {
    let mut login = Login::start(m, &["--no-browser"]);
    let url = login.line(|l| l.starts_with("http://"));
    assert!(url.starts_with(&server.url("/authorize")), "{url}");
    let (status, location, _) = http_get(&url);
    assert_eq!(status, 302, "authorize answered {status}");
    let location = location.expect("Location");
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    (login, location)
}

#[test]
fn login_stores_the_tokens_privately() {
    let server = OAuthServer::start(Options {
        client_secret: Some(CLIENT_SECRET.into()),
        ..Options::default()
    });
    let mut m = mailsend_for(&server);
    m.env(
        "MAILSEND_OAUTH_CLIENT_SECRET_COMMAND",
        &format!("printf {CLIENT_SECRET}"),
    );
    let (login, redirect) = sign_in_until_redirect(&mut m, &server);
    let (status, _, page) = http_get(&redirect);
    assert_eq!(status, 200);
    assert!(page.contains("Signed in"), "{page}");
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("signed in to custom for account default"),
        "{stderr}"
    );

    // PKCE S256 was asked for, and the verifier the double checked matched.
    let authorize = &server.authorize_requests()[0];
    assert_eq!(authorize["code_challenge_method"], "S256");
    assert_eq!(authorize["scope"], "mail.send offline_access");
    assert!(authorize["redirect_uri"].starts_with("http://127.0.0.1:"));
    let requests = server.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["grant_type"], "authorization_code");
    assert!(requests[0]["code_verifier"].len() >= 43);
    assert_eq!(requests[0]["client_secret"], CLIENT_SECRET);

    let file = token_file(&m);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(
        stored["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with(REFRESH_PREFIX)
    );
    assert!(
        stored["access_token"]
            .as_str()
            .unwrap()
            .starts_with(ACCESS_PREFIX)
    );
    assert_eq!(stored["provider"], "custom");
    assert!(stored["expires_at"].as_u64().unwrap() > 1_700_000_000);
}

#[test]
fn a_redirect_with_the_wrong_state_is_never_exchanged() {
    let server = OAuthServer::start(Options::default());
    let mut m = mailsend_for(&server);
    let (login, redirect) = sign_in_until_redirect(&mut m, &server);
    let forged = match redirect.split_once("&state=") {
        Some((head, _)) => format!("{head}&state=forged"),
        None => panic!("no state in {redirect}"),
    };
    let (status, _, page) = http_get(&forged);
    assert_eq!(status, 400);
    assert!(page.contains("nothing was done"), "{page}");
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 77, "{stderr}");
    assert!(
        stderr.contains("mailsend: error: the sign-in redirect carried the wrong state"),
        "{stderr}"
    );
    assert!(server.token_requests().is_empty(), "the code was exchanged");
    assert!(!token_file(&m).exists());
}

#[test]
fn a_pkce_mismatch_is_refused_by_the_server_and_nothing_is_stored() {
    let server = OAuthServer::start(Options {
        break_pkce: true,
        ..Options::default()
    });
    let mut m = mailsend_for(&server);
    let (login, redirect) = sign_in_until_redirect(&mut m, &server);
    let (_, _, page) = http_get(&redirect);
    assert!(page.contains("sign-in failed"), "{page}");
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 77, "{stderr}");
    assert!(stderr.contains("invalid_grant"), "{stderr}");
    assert_eq!(server.token_requests().len(), 1);
    assert!(!token_file(&m).exists());
}

/// Writes a token file as `auth login` would have, mode 600.
pub(super) fn seed(m: &Mailsend, refresh: &str, expires_in: i64) -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let file = token_file(m);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        format!(
            r#"{{"provider":"custom","scopes":["mail.send"],"refresh_token":"{refresh}","access_token":"{ACCESS_PREFIX}old","expires_at":{}}}"#,
            now + expires_in
        ),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    file
}

fn stored(file: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

#[test]
fn an_expiring_access_token_is_refreshed_and_the_rotated_refresh_token_saved() {
    let server = OAuthServer::start(Options::default());
    let old = format!("{REFRESH_PREFIX}seed");
    server.add_refresh_token(&old);
    let mut m = mailsend_for(&server);
    // 30 s left: less than the minute mailsend wants.
    let file = seed(&m, &old, 30);
    let run = checked(m.args(["auth", "refresh", "--if-needed"]).run(), 0);
    assert!(
        run.stdout().contains("access token:  valid until"),
        "{}",
        run.stdout()
    );
    let requests = server.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["grant_type"], "refresh_token");
    assert_eq!(requests[0]["refresh_token"], old);
    let now = stored(&file);
    let rotated = now["refresh_token"].as_str().unwrap();
    assert!(rotated.starts_with(REFRESH_PREFIX) && rotated != old);
    assert_eq!(server.valid_refresh_tokens(), [rotated.to_owned()]);
    assert_ne!(now["access_token"], format!("{ACCESS_PREFIX}old"));
    assert_eq!(mode(&file), 0o600);

    // Now valid for an hour: the cached token is used, nothing is asked.
    let mut again = mailsend_for(&server);
    again.env("HOME", m.path().to_str().unwrap());
    checked(again.args(["auth", "refresh", "--if-needed"]).run(), 0);
    assert_eq!(server.token_requests().len(), 1);
}

#[test]
fn concurrent_refreshes_do_not_lose_the_rotated_token() {
    let server = OAuthServer::start(Options {
        token_delay: Duration::from_millis(300),
        ..Options::default()
    });
    let old = format!("{REFRESH_PREFIX}seed");
    server.add_refresh_token(&old);
    let m = mailsend_for(&server);
    let file = seed(&m, &old, 0);
    let children: Vec<Child> = (0..3)
        .map(|_| {
            let mut c = mailsend_for(&server);
            c.env("HOME", m.path().to_str().unwrap());
            c.args(["auth", "refresh", "--if-needed"]);
            c.spawn_with(Stdio::null(), Stdio::piped())
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(server.token_requests().len(), 1, "each process refreshed");
    let now = stored(&file);
    assert_eq!(
        server.valid_refresh_tokens(),
        [now["refresh_token"].as_str().unwrap().to_owned()]
    );
}

#[test]
fn a_revoked_refresh_token_is_77_with_the_hint_to_sign_in_again() {
    let server = OAuthServer::start(Options::default());
    let mut m = mailsend_for(&server);
    seed(&m, &format!("{REFRESH_PREFIX}revoked"), -10);
    let run = checked(m.args(["auth", "refresh"]).run(), 77);
    run.error_mentions("invalid_grant");
    assert!(run.stderr().contains("mailsend: hint: the sign-in was revoked or has expired: run `mailsend auth login` again"), "{}", run.stderr());
}

#[test]
fn without_a_sign_in_the_token_source_is_78_naming_auth_login() {
    let server = OAuthServer::start(Options::default());
    let mut m = mailsend_for(&server);
    let run = checked(m.args(["auth", "refresh", "--if-needed"]).run(), 78);
    run.error_mentions("is not signed in");
    assert!(
        run.stderr().contains("hint: run `mailsend auth login`"),
        "{}",
        run.stderr()
    );
    assert!(server.token_requests().is_empty());
}

#[test]
fn device_flow_polls_while_pending_then_stores_the_tokens() {
    let server = OAuthServer::start(Options {
        device_pending: 1,
        ..Options::default()
    });
    let mut m = mailsend_for(&server);
    let mut login = Login::start(&mut m, &["--device"]);
    let prompt = login.line(|l| l.contains("enter the code"));
    assert!(
        prompt.contains("WDJB-MJHT") && prompt.contains(&server.url("/activate")),
        "{prompt}"
    );
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 0, "{stderr}");
    let grants: Vec<String> = server
        .token_requests()
        .iter()
        .map(|r| r["grant_type"].clone())
        .collect();
    assert_eq!(grants, ["urn:ietf:params:oauth:grant-type:device_code"; 2]);
    let file = token_file(&m);
    assert_eq!(mode(&file), 0o600);
    assert!(
        stored(&file)["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with(REFRESH_PREFIX)
    );
}

#[test]
fn device_flow_with_the_google_preset_is_refused() {
    let mut m = Mailsend::bare();
    m.env("MAILSEND_OAUTH_PROVIDER", "google")
        .env("MAILSEND_OAUTH_CLIENT_ID", "x.apps.googleusercontent.com");
    let run = checked(m.args(["auth", "login", "--device"]).run(), 78);
    run.error_mentions("Google refuses the device-code flow");
}

#[test]
fn status_says_what_is_stored_and_never_a_token() {
    let server = OAuthServer::start(Options::default());
    let mut m = mailsend_for(&server);
    let file = seed(&m, &format!("{REFRESH_PREFIX}seed"), 1800);
    let run = checked(m.args(["auth", "status"]).run(), 0);
    let out = run.stdout();
    for needle in [
        "account:       default",
        "provider:      custom",
        "scopes:        mail.send",
        "access token:  valid until ",
        "refresh token: stored",
    ] {
        assert!(out.contains(needle), "{needle}:\n{out}");
    }
    assert!(out.contains(&file.display().to_string()), "{out}");

    std::fs::remove_file(&file).unwrap();
    let mut m2 = mailsend_for(&server);
    m2.env("HOME", m.path().to_str().unwrap());
    let run = checked(m2.args(["auth", "status"]).run(), 78);
    run.error_mentions("is not signed in");
    assert!(run.stderr().contains("hint: run `mailsend auth login`"));
}

#[test]
fn a_token_file_readable_by_others_is_refused() {
    let server = OAuthServer::start(Options::default());
    let mut m = mailsend_for(&server);
    let file = seed(&m, &format!("{REFRESH_PREFIX}seed"), 1800);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = checked(m.args(["auth", "status"]).run(), 78);
    run.error_mentions("readable by others");
    assert!(run.stderr().contains("chmod 600"), "{}", run.stderr());
}

#[test]
fn logout_revokes_and_deletes() {
    // The oauth2 crate revokes over https only.
    let server = OAuthServer::start(Options {
        tls: Some(Cert::Good),
        ..Options::default()
    });
    let refresh = format!("{REFRESH_PREFIX}seed");
    server.add_refresh_token(&refresh);
    let mut m = mailsend_for(&server);
    m.env(
        "MAILSEND_CA_FILE",
        &Pki::shared().ca_file.display().to_string(),
    );
    let file = seed(&m, &refresh, 1800);
    let run = checked(m.args(["auth", "logout"]).run(), 0);
    assert!(!file.exists());
    let revocations = server.revocations();
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0]["token"], refresh);
    assert!(
        run.stdout().contains("revoked the refresh token"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout().contains("deleted the stored tokens"),
        "{}",
        run.stdout()
    );
    assert!(server.valid_refresh_tokens().is_empty());

    // Nothing stored: nothing to do, said so.
    let mut again = mailsend_for(&server);
    again.env("HOME", m.path().to_str().unwrap());
    let run = checked(again.args(["auth", "logout"]).run(), 0);
    assert!(run.stdout().contains("nothing to do"), "{}", run.stdout());
    assert_eq!(server.revocations().len(), 1);
}

#[test]
fn without_home_or_state_dir_the_token_file_must_be_set() {
    let mut m = Mailsend::bare();
    m.env_remove("HOME")
        .env("MAILSEND_OAUTH_PROVIDER", "microsoft")
        .env("MAILSEND_OAUTH_CLIENT_ID", "id");
    let run = checked(m.args(["auth", "login", "--no-browser"]).run(), 78);
    run.error_mentions("neither XDG_STATE_HOME nor HOME is set");
    assert!(
        run.stderr().contains("oauth_token_file"),
        "{}",
        run.stderr()
    );
}

#[test]
fn the_token_endpoint_must_be_trusted_and_ca_file_applies_to_it() {
    let old = format!("{REFRESH_PREFIX}seed");
    let ca = Pki::shared().ca_file.display().to_string();
    let untrusted = OAuthServer::start(Options {
        tls: Some(Cert::Untrusted),
        ..Options::default()
    });
    untrusted.add_refresh_token(&old);
    let mut m = mailsend_for(&untrusted);
    m.env("MAILSEND_CA_FILE", &ca);
    seed(&m, &old, 0);
    let run = checked(m.args(["auth", "refresh"]).run(), 77);
    run.error_mentions("refreshing the access token");
    assert!(untrusted.token_requests().is_empty());

    let good = OAuthServer::start(Options {
        tls: Some(Cert::Good),
        ..Options::default()
    });
    good.add_refresh_token(&old);
    let mut m = mailsend_for(&good);
    m.env("MAILSEND_CA_FILE", &ca);
    seed(&m, &old, 0);
    checked(m.args(["auth", "refresh"]).run(), 0);
    assert_eq!(good.token_requests().len(), 1);
}

#[test]
fn plain_http_endpoints_elsewhere_than_loopback_are_refused() {
    let mut m = Mailsend::bare();
    m.env("MAILSEND_OAUTH_PROVIDER", "custom")
        .env("MAILSEND_OAUTH_CLIENT_ID", "id")
        .env("MAILSEND_OAUTH_AUTH_URL", "https://idp.example.com/auth")
        .env("MAILSEND_OAUTH_TOKEN_URL", "http://idp.example.com/token");
    let run = checked(m.args(["auth", "login", "--no-browser"]).run(), 78);
    run.error_mentions("oauth_token_url");
}

#[test]
fn a_refused_sign_in_is_77_and_nothing_is_exchanged() {
    let server = OAuthServer::start(Options {
        deny: true,
        ..Options::default()
    });
    let mut m = mailsend_for(&server);
    let (login, redirect) = sign_in_until_redirect(&mut m, &server);
    let (_, _, page) = http_get(&redirect);
    assert!(page.contains("refused"), "{page}");
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 77, "{stderr}");
    assert!(
        stderr.contains("refused the sign-in: access_denied"),
        "{stderr}"
    );
    assert!(server.token_requests().is_empty());

    let mut m = mailsend_for(&server);
    let login = Login::start(&mut m, &["--device"]);
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 77, "{stderr}");
    assert!(stderr.contains("access_denied"), "{stderr}");
    assert!(!token_file(&m).exists());
}

#[test]
fn other_requests_to_the_loopback_are_answered_and_ignored() {
    let server = OAuthServer::start(Options::default());
    let mut m = mailsend_for(&server);
    let (login, redirect) = sign_in_until_redirect(&mut m, &server);
    let base = redirect.split_once('?').unwrap().0;
    let (status, _, _) = http_get(&format!("{base}favicon.ico"));
    assert_eq!(status, 404);
    let (status, _, page) = http_get(&redirect);
    assert_eq!(status, 200, "{page}");
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_shared_env_file_with_the_client_secret_is_refused() {
    let server = OAuthServer::start(Options::default());
    let mut m = mailsend_for(&server);
    let env = m.file(
        ".env",
        format!("MAILSEND_OAUTH_CLIENT_SECRET={CLIENT_SECRET}\n"),
    );
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = checked(m.args(["auth", "status"]).run(), 78);
    run.error_mentions("MAILSEND_OAUTH_CLIENT_SECRET");
}

#[test]
fn a_failing_client_secret_command_is_78_and_sends_nothing() {
    let server = OAuthServer::start(Options::default());
    let mut m = mailsend_for(&server);
    m.env("MAILSEND_OAUTH_CLIENT_SECRET_COMMAND", "exit 3");
    seed(&m, &format!("{REFRESH_PREFIX}seed"), 0);
    let run = checked(m.args(["auth", "refresh"]).run(), 78);
    run.error_mentions("oauth_client_secret_command failed: it exited with");
    assert!(server.token_requests().is_empty());
}

// --- Sending with the built-in sign-in ------------------------------------
//
// The account's oauth_* keys (here the double's variables) make the stored
// sign-in the token source of every send: the recording SMTP server takes
// exactly one token, and only the double issues new ones.

/// An SMTP server taking XOAUTH2/OAUTHBEARER with `token` only (and
/// PLAIN/LOGIN with the test password), and mailsend pointed at it and
/// at the OAuth2 double.
fn smtp_and_mailsend(
    oauth: &OAuthServer,
    token: &str,
) -> (crate::support::server::TestServer, Mailsend) {
    use crate::support::server::{Behaviour, TestServer};
    let smtp = TestServer::start(Behaviour {
        oauth_token: Some(token.into()),
        ..super::with_auth(Behaviour::default())
    });
    let mut m = Mailsend::to(&smtp);
    for (k, v) in oauth.env() {
        m.env(k, &v);
    }
    m.args(["--to", "a@example.com", "--subject", "s", "--body", "b"]);
    (smtp, m)
}

/// The token each session presented with AUTH.
fn presented(smtp: &crate::support::server::TestServer) -> Vec<Option<String>> {
    smtp.sessions()
        .iter()
        .map(|s| s.auth.as_ref().map(|(_, secret)| secret.clone()))
        .collect()
}

#[test]
fn a_send_uses_the_stored_access_token_while_it_is_valid() {
    let oauth = OAuthServer::start(Options::default());
    let stored_token = format!("{ACCESS_PREFIX}old");
    let (smtp, mut m) = smtp_and_mailsend(&oauth, &stored_token);
    seed(&m, &format!("{REFRESH_PREFIX}seed"), 3600);
    checked(m.run(), 0);
    assert_eq!(presented(&smtp), [Some(stored_token)]);
    let session = &smtp.sessions()[0];
    assert!(session.authenticated);
    assert_eq!(session.transactions.len(), 1);
    assert!(
        session
            .lines()
            .iter()
            .any(|l| l.starts_with("AUTH OAUTHBEARER")),
        "{:?}",
        session.lines()
    );
    assert!(oauth.token_requests().is_empty(), "refreshed for nothing");
}

#[test]
fn a_send_refreshes_an_access_token_about_to_run_out_and_keeps_the_rotated_one() {
    let oauth = OAuthServer::start(Options::default());
    let old = format!("{REFRESH_PREFIX}seed");
    oauth.add_refresh_token(&old);
    // The double's first issued token.
    let (smtp, mut m) = smtp_and_mailsend(&oauth, &format!("{ACCESS_PREFIX}1"));
    let file = seed(&m, &old, 30);
    checked(m.run(), 0);
    assert_eq!(presented(&smtp), [Some(format!("{ACCESS_PREFIX}1"))]);
    assert_eq!(oauth.token_requests().len(), 1);
    let now = stored(&file);
    assert_eq!(now["access_token"], format!("{ACCESS_PREFIX}1"));
    assert_ne!(now["refresh_token"], old.as_str(), "rotation not saved");
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn a_token_the_server_refuses_is_refreshed_once_and_the_send_goes() {
    let oauth = OAuthServer::start(Options::default());
    let old = format!("{REFRESH_PREFIX}seed");
    oauth.add_refresh_token(&old);
    // The stored token looks valid for an hour, but the server says no
    // (revoked early, say): one forced refresh, a new session.
    let (smtp, mut m) = smtp_and_mailsend(&oauth, &format!("{ACCESS_PREFIX}1"));
    seed(&m, &old, 3600);
    checked(m.run(), 0);
    assert_eq!(
        presented(&smtp),
        [
            Some(format!("{ACCESS_PREFIX}old")),
            Some(format!("{ACCESS_PREFIX}1"))
        ]
    );
    assert_eq!(oauth.token_requests().len(), 1);
    assert_eq!(smtp.sessions()[1].transactions.len(), 1);
}

#[test]
fn a_send_before_any_sign_in_is_78_naming_auth_login_and_sends_nothing() {
    let oauth = OAuthServer::start(Options::default());
    let (smtp, mut m) = smtp_and_mailsend(&oauth, &format!("{ACCESS_PREFIX}1"));
    let run = checked(m.run(), 78);
    assert!(
        run.stderr().contains("mailsend auth login"),
        "{}",
        run.stderr()
    );
    assert!(smtp.sessions().is_empty(), "connected without a token");
}

#[test]
fn a_send_with_a_revoked_sign_in_is_77_and_a_campaign_sends_nothing() {
    let oauth = OAuthServer::start(Options::default());
    let (smtp, mut m) = smtp_and_mailsend(&oauth, &format!("{ACCESS_PREFIX}1"));
    seed(&m, &format!("{REFRESH_PREFIX}revoked"), -10);
    let run = checked(m.run(), 77);
    run.error_mentions("invalid_grant");

    // A campaign of the same account: stopped before its first session.
    let mut bulk = Mailsend::to(&smtp);
    for (k, v) in oauth.env() {
        bulk.env(k, &v);
    }
    bulk.env("HOME", m.path().to_str().expect("utf-8"));
    std::fs::write(m.path().join("list.csv"), "email\nb@example.com\n").expect("list");
    bulk.current_dir(m.path()).args([
        "bulk",
        "--data",
        "list.csv",
        "--from",
        "news@example.com",
        "--body",
        "x",
        "--yes",
    ]);
    checked(bulk.run(), 77);
    assert!(smtp.sessions().is_empty());
}

// ---- review-l: adversarial provider answers ----

#[test]
fn a_provider_quoting_the_secrets_in_its_errors_shows_none_of_them() {
    let server = OAuthServer::start(Options {
        echo_secrets: true,
        ..Options::default()
    });
    // A revoked refresh token: the error quotes it.
    let mut m = mailsend_for(&server);
    seed(&m, &format!("{REFRESH_PREFIX}revoked"), -10);
    let run = checked(m.args(["auth", "refresh"]).run(), 77);
    run.error_mentions("invalid_grant");
    assert!(run.stderr().contains("<redacted>"), "{}", run.stderr());

    // A refused code exchange: the error quotes the code and the verifier.
    let server = OAuthServer::start(Options {
        break_pkce: true,
        echo_secrets: true,
        ..Options::default()
    });
    let mut m = mailsend_for(&server);
    let (login, redirect) = sign_in_until_redirect(&mut m, &server);
    let _ = http_get(&redirect);
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 77, "{stderr}");
    let sent = &server.token_requests()[0];
    for secret in [&sent["code"], &sent["code_verifier"]] {
        assert!(
            !stderr.contains(secret.as_str()),
            "{secret} leaked:\n{stderr}"
        );
    }
}

#[test]
fn a_provider_error_code_with_control_characters_stays_on_one_line() {
    let server = OAuthServer::start(Options {
        error_code: Some("weird\\u001b[31m\\nmailsend: error: forged line".into()),
        ..Options::default()
    });
    let mut m = mailsend_for(&server);
    seed(&m, &format!("{REFRESH_PREFIX}revoked"), -10);
    let run = checked(m.args(["auth", "refresh"]).run(), 76);
    let stderr = run.stderr();
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("mailsend: error:"))
            .count(),
        1,
        "{stderr}"
    );
}

#[test]
fn an_absurd_expires_in_is_no_panic_and_status_shows_it() {
    let server = OAuthServer::start(Options {
        access_ttl: u64::MAX,
        ..Options::default()
    });
    let old = format!("{REFRESH_PREFIX}seed");
    server.add_refresh_token(&old);
    let mut m = mailsend_for(&server);
    let file = seed(&m, &old, -10);
    let run = checked(m.args(["auth", "refresh"]).run(), 0);
    assert!(
        run.stdout().contains("access token:  valid until"),
        "{}",
        run.stdout()
    );
    let at = stored(&file)["expires_at"].as_u64().unwrap();
    assert!(at < 4_102_444_800, "expires_at {at} is past 2100");

    // A token file (hand-edited, or written by an older mailsend) with an
    // expiry no calendar holds.
    let text = std::fs::read_to_string(&file).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let edited = text.replace(&json["expires_at"].to_string(), &u64::MAX.to_string());
    std::fs::write(&file, edited).unwrap();
    let mut again = mailsend_for(&server);
    again.env("HOME", m.path().to_str().unwrap());
    let run = checked(again.args(["auth", "status"]).run(), 0);
    assert!(
        run.stdout().contains("access token:  valid until"),
        "{}",
        run.stdout()
    );
}

#[test]
fn device_flow_with_interval_0_still_waits_between_polls() {
    let server = OAuthServer::start(Options {
        device_interval: 0,
        device_pending: 2,
        ..Options::default()
    });
    let mut m = mailsend_for(&server);
    let started = std::time::Instant::now();
    let login = Login::start(&mut m, &["--device"]);
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(server.token_requests().len(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "3 polls in {:?}: the provider was hammered",
        started.elapsed()
    );
}

#[test]
fn device_flow_with_an_absurd_interval_is_76_at_once_not_a_panic_or_a_hang() {
    let server = OAuthServer::start(Options {
        device_interval: u64::MAX,
        device_slow_down: 1,
        device_pending: 0,
        ..Options::default()
    });
    let mut m = mailsend_for(&server);
    let started = std::time::Instant::now();
    let run = checked(m.args(["auth", "login", "--device"]).run(), 76);
    run.error_mentions("interval");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!token_file(&m).exists());
}

#[test]
fn device_flow_user_code_with_terminal_controls_is_shown_escaped() {
    let server = OAuthServer::start(Options {
        device_user_code: "AB\\u001b]0;owned\\u0007CD".into(),
        ..Options::default()
    });
    let mut m = mailsend_for(&server);
    let login = Login::start(&mut m, &["--device"]);
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr:?}"
    );
}

#[test]
fn a_symlink_at_the_token_path_is_78_not_a_temporary_failure() {
    let server = OAuthServer::start(Options::default());
    let mut m = mailsend_for(&server);
    let file = seed(&m, &format!("{REFRESH_PREFIX}seed"), 1800);
    let real = file.with_extension("real");
    std::fs::rename(&file, &real).unwrap();
    std::os::unix::fs::symlink(&real, &file).unwrap();
    let run = checked(m.args(["auth", "status"]).run(), 78);
    run.error_mentions("symbolic link");
}

#[test]
fn status_shows_what_the_provider_stored_without_terminal_controls() {
    let server = OAuthServer::start(Options::default());
    let mut m = mailsend_for(&server);
    let file = seed(&m, &format!("{REFRESH_PREFIX}seed"), 1800);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(r#""mail.send""#, r#""mail\u001b[2J\nmailsend: forged""#);
    std::fs::write(&file, text).unwrap();
    let run = checked(m.args(["auth", "status"]).run(), 0);
    let out = run.stdout();
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(!out.lines().any(|l| l.starts_with("mailsend:")), "{out}");
}

#[test]
fn device_flow_polling_an_untrusted_token_endpoint_is_77_at_once() {
    let device = OAuthServer::start(Options {
        device_expires_in: 6,
        ..Options::default()
    });
    let untrusted = OAuthServer::start(Options {
        tls: Some(Cert::Untrusted),
        ..Options::default()
    });
    let mut m = mailsend_for(&device);
    m.env("MAILSEND_OAUTH_TOKEN_URL", &untrusted.url("/token"))
        .env(
            "MAILSEND_CA_FILE",
            &Pki::shared().ca_file.display().to_string(),
        );
    let started = std::time::Instant::now();
    let run = checked(m.args(["auth", "login", "--device"]).run(), 77);
    run.error_mentions("not trusted");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(!token_file(&m).exists());
}

#[test]
fn a_token_endpoint_that_redirects_is_76_naming_the_redirect_and_it_is_not_followed() {
    let elsewhere = OAuthServer::start(Options::default());
    let server = OAuthServer::start(Options {
        token_redirect: Some(elsewhere.url("/token")),
        ..Options::default()
    });
    let mut m = mailsend_for(&server);
    seed(&m, &format!("{REFRESH_PREFIX}seed"), -10);
    let run = checked(m.args(["auth", "refresh"]).run(), 76);
    run.error_mentions("HTTP 307");
    assert_eq!(server.token_requests().len(), 1);
    assert!(
        elsewhere.token_requests().is_empty(),
        "the redirect was followed"
    );
}

#[test]
fn a_refused_device_sign_in_quoting_the_device_code_shows_none_of_it() {
    let server = OAuthServer::start(Options {
        deny: true,
        echo_secrets: true,
        ..Options::default()
    });
    let mut m = mailsend_for(&server);
    // `checked` finds no "dev-code-1" (the device code) in any output.
    let run = checked(m.args(["auth", "login", "--device"]).run(), 77);
    run.error_mentions("access_denied");
    assert!(run.stderr().contains("<redacted>"), "{}", run.stderr());
}

#[test]
fn login_refuses_a_directory_or_symlink_at_the_token_path_before_anyone_signs_in() {
    let server = OAuthServer::start(Options::default());
    for kind in ["dir", "symlink"] {
        let mut m = mailsend_for(&server);
        let file = token_file(&m);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        match kind {
            "dir" => std::fs::create_dir(&file).unwrap(),
            _ => std::os::unix::fs::symlink("/dev/null", &file).unwrap(),
        }
        let mut login = Login::start(&mut m, &["--no-browser"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while login.child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = login.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (code, _, stderr) = login.finish();
        assert_eq!(code, 78, "{kind}: {stderr}");
        assert!(!stderr.contains("open this address"), "{kind}: {stderr}");
    }
    assert!(server.authorize_requests().is_empty());
}

#[test]
fn a_send_with_the_sign_in_but_no_user_name_is_78_before_connecting() {
    let oauth = OAuthServer::start(Options::default());
    let (smtp, mut m) = smtp_and_mailsend(&oauth, &format!("{ACCESS_PREFIX}old"));
    seed(&m, &format!("{REFRESH_PREFIX}seed"), 3600);
    m.env_remove("MAILSEND_USER")
        .env_remove("MAILSEND_PASSWORD")
        .env("MAILSEND_FROM", "me@example.com");
    let run = checked(m.run(), 78);
    run.error_mentions("token source is configured but no user name");
    assert!(smtp.sessions().is_empty(), "connected without a user name");
    assert!(oauth.token_requests().is_empty());
}
