//! TLS client certificates: presented in STARTTLS and implicit TLS, from
//! flags, variables or account keys; the key file is a secret file; every
//! bad combination is one configuration error (78) before connecting.

use crate::support::ccert::{CertServer, ClientPki};
use crate::support::cmd::{Mailsend, Run};
use crate::support::pki::Pki;

/// `mailsend` for `server`, trusting the test CA, without AUTH credentials.
fn to(server: &CertServer) -> Mailsend {
    let mut m = Mailsend::bare();
    m.env("MAILSEND_HOST", "127.0.0.1")
        .env("MAILSEND_PORT", &server.port().to_string())
        .env("MAILSEND_CA_FILE", Pki::shared().ca_file.to_str().unwrap())
        .env("MAILSEND_TIMEOUT", "5s");
    m
}

fn send(m: &mut Mailsend) -> Run {
    m.args(["--from", "a@example.com", "--to", "b@example.com"])
        .args(["--subject", "cert", "--body", "hello"])
        .run()
}

fn delivered_with_client_cert(server: &CertServer) {
    let seen = server.seen(1);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].client_subject.as_deref(),
        Some("mailsend test client"),
        "{seen:?}"
    );
    assert!(
        String::from_utf8_lossy(&seen[0].data).contains("hello"),
        "{seen:?}"
    );
}

#[test]
fn the_flags_present_the_certificate_with_starttls() {
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, false);
    let mut m = to(&server);
    m.arg_paths(&pki);
    send(&mut m).expect(0);
    delivered_with_client_cert(&server);
}

trait ArgPaths {
    fn arg_paths(&mut self, pki: &ClientPki) -> &mut Self;
}

impl ArgPaths for Mailsend {
    fn arg_paths(&mut self, pki: &ClientPki) -> &mut Self {
        self.args(["--client-cert".as_ref(), pki.cert.as_os_str()])
            .args(["--client-key".as_ref(), pki.key.as_os_str()])
    }
}

#[test]
fn the_variables_present_the_certificate_with_implicit_tls() {
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, true);
    let mut m = to(&server);
    m.env("MAILSEND_TLS", "tls")
        .env_os("MAILSEND_CLIENT_CERT", &pki.cert)
        .env_os("MAILSEND_CLIENT_KEY", &pki.key);
    send(&mut m).expect(0);
    delivered_with_client_cert(&server);
}

#[test]
fn account_keys_and_a_combined_pem_file_work() {
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, false);
    let mut m = Mailsend::bare();
    m.config(&format!(
        "[accounts.relay]\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\n\
         client_cert = \"{}\"\ntimeout = \"5s\"\n",
        server.port(),
        Pki::shared().ca_file.display(),
        pki.combined.display(),
    ));
    send(&mut m).expect(0);
    delivered_with_client_cert(&server);

    let server = CertServer::start(&pki, false);
    let mut m = Mailsend::bare();
    m.config(&format!(
        "[accounts.relay]\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\n\
         client_cert = \"{}\"\nclient_key = \"{}\"\ntimeout = \"5s\"\n",
        server.port(),
        Pki::shared().ca_file.display(),
        pki.cert.display(),
        pki.key.display(),
    ));
    send(&mut m).expect(0);
    delivered_with_client_cert(&server);
}

#[test]
fn without_a_certificate_the_server_hangs_up_76_with_the_hint() {
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, false);
    let run = send(&mut to(&server)).expect(76);
    assert!(
        run.stderr().contains("client certificate") && run.stderr().contains("--client-cert"),
        "{}",
        run.stderr()
    );
    let seen = server.seen(1);
    assert!(seen[0].handshake_error.is_some(), "{seen:?}");
    assert!(!seen[0].commands.iter().any(|c| c.starts_with("MAIL")));
}

/// Refused before connecting: 78, one error line naming `needle`.
fn refused(m: &mut Mailsend, server: &CertServer, needle: &str) -> Run {
    let run = send(m).expect(78);
    run.error_mentions(needle);
    let errors = run
        .stderr()
        .lines()
        .filter(|l| l.starts_with("mailsend: error:"))
        .count();
    assert_eq!(errors, 1, "{}", run.stderr());
    assert!(server.seen(0).is_empty(), "the server was contacted");
    run
}

#[test]
fn a_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, false);
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut m = to(&server);
    m.arg_paths(&pki);
    let run = refused(&mut m, &server, "readable by others");
    assert!(run.stderr().contains("chmod 600"), "{}", run.stderr());
}

/// With `--tls none` a client certificate would never be presented: a
/// configuration error (78) before connecting, not silently ignored
/// (review N9).
#[test]
fn a_client_certificate_with_tls_none_is_refused() {
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, false);
    let mut m = to(&server);
    m.env("MAILSEND_TLS", "none");
    m.arg_paths(&pki);
    refused(&mut m, &server, "TLS mode is none");
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, false);
    let mut m = to(&server);
    m.args(["--client-cert".as_ref(), pki.cert.as_os_str()])
        .args(["--client-key".as_ref(), pki.other_key.as_os_str()]);
    refused(&mut m, &server, "does not belong to the certificate");
}

#[test]
fn a_key_without_a_certificate_and_the_reverse_are_refused() {
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, false);
    let mut m = to(&server);
    m.env_os("MAILSEND_CLIENT_KEY", &pki.key);
    refused(&mut m, &server, "no client certificate");

    let mut m = to(&server);
    m.env_os("MAILSEND_CLIENT_CERT", &pki.cert);
    refused(&mut m, &server, "holds no private key");

    let mut m = to(&server);
    m.env_os("MAILSEND_CLIENT_CERT", pki.dir.path().join("missing.pem"))
        .env_os("MAILSEND_CLIENT_KEY", &pki.key);
    refused(&mut m, &server, "cannot read client certificate");

    let mut m = to(&server);
    m.env_os("MAILSEND_CLIENT_CERT", &pki.key)
        .env_os("MAILSEND_CLIENT_KEY", &pki.key);
    refused(&mut m, &server, "no PEM certificate");
}

#[test]
fn check_reports_the_client_certificate_and_sends_no_mail() {
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, false);
    let mut m = to(&server);
    let run = m.args(["check", "--json"]).arg_paths(&pki).run().expect(0);
    let j: serde_json::Value = serde_json::from_str(run.stdout().trim()).unwrap();
    assert_eq!(j["client_certificate"], "CN=mailsend test client", "{j:#}");
    assert_eq!(j["ok"], true);
    let seen = server.seen(1);
    assert_eq!(
        seen[0].client_subject.as_deref(),
        Some("mailsend test client")
    );
    assert!(
        !seen[0].commands.iter().any(|c| c.starts_with("MAIL")),
        "{seen:?}"
    );
}

#[test]
fn a_certificate_the_server_does_not_trust_is_76() {
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, false);
    let mut m = to(&server);
    m.args(["--client-cert".as_ref(), pki.rogue_cert.as_os_str()])
        .args(["--client-key".as_ref(), pki.rogue_key.as_os_str()]);
    send(&mut m).expect(76);
    assert!(server.seen(1)[0].handshake_error.is_some());
}

#[test]
fn check_without_a_certificate_is_76_and_still_verified_the_server() {
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, false);
    let run = to(&server).args(["check", "--json"]).run().expect(76);
    let j: serde_json::Value = serde_json::from_str(run.stdout().trim()).unwrap();
    assert_eq!(j["ok"], false);
    // TLS 1.3: the client's handshake ends before the server refuses.
    assert_eq!(j["certificate"]["verified"], true, "{j:#}");
    assert_eq!(j["certificate"]["subject"], "CN=localhost", "{j:#}");
    assert!(
        j["hint"].as_str().unwrap().contains("--client-cert"),
        "{j:#}"
    );
    assert_eq!(j["client_certificate"], serde_json::Value::Null);
}

#[test]
fn check_warns_when_the_client_certificate_expires_within_two_weeks() {
    // The user's own certificate is the one most easily forgotten: the
    // cron job that watches the server's expiry must hear about it too.
    let pki = ClientPki::new();
    let server = CertServer::start(&pki, false);
    let mut m = to(&server);
    m.args(["check", "--json"])
        .args(["--client-cert".as_ref(), pki.expiring_cert.as_os_str()])
        .args(["--client-key".as_ref(), pki.expiring_key.as_os_str()]);
    let run = m.run().expect(0);
    let j: serde_json::Value = serde_json::from_str(run.stdout().trim()).unwrap();
    assert_eq!(j["ok"], true, "{j:#}");
    let warnings: Vec<&str> = j["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    assert_eq!(
        warnings,
        ["the client certificate CN=mailsend expiring client expires in 3 days"],
        "{j:#}"
    );
    assert!(
        run.stderr().contains(
            "mailsend: warning: the client certificate CN=mailsend expiring client expires in 3 days"
        ),
        "{}",
        run.stderr()
    );
    let seen = server.seen(1);
    assert!(
        !seen[0].commands.iter().any(|c| c.starts_with("MAIL")),
        "{seen:?}"
    );
}

#[test]
fn check_explains_auth_offered_only_in_clear() {
    // The server wants a client certificate and offers AUTH only before
    // STARTTLS, where mailsend never sends a password: "does not offer
    // AUTH" alone leaves the user puzzled at the AUTH line of "in clear".
    let pki = ClientPki::new();
    let server = CertServer::start_with_auth_in_clear(&pki);
    let mut m = to(&server);
    m.args(["check", "--json"])
        .arg_paths(&pki)
        .env("MAILSEND_USER", "joe")
        .env("MAILSEND_PASSWORD", "a-password-never-sent");
    let run = m.run().expect(76);
    let j: serde_json::Value = serde_json::from_str(run.stdout().trim()).unwrap();
    let hint = j["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("only in clear"), "{j:#}");
    assert!(run.stderr().contains("only in clear"), "{}", run.stderr());
    let seen = server.seen(1);
    assert!(
        !seen[0]
            .commands
            .iter()
            .any(|c| c.starts_with("AUTH") || c.starts_with("MAIL")),
        "{seen:?}"
    );
}
