//! Configuration layers: flags > environment > .env > defaults.

use super::*;
use crate::support::cmd::Mailsend;

#[test]
fn dotenv_in_the_working_directory_is_read() {
    let server = submission();
    let mut m = Mailsend::bare();
    let ca = crate::support::pki::Pki::shared()
        .ca_file
        .display()
        .to_string();
    m.private_file(
        ".env",
        format!(
            "MAILSEND_HOST=127.0.0.1\nMAILSEND_PORT={}\nMAILSEND_CA_FILE={ca}\nMAILSEND_USER={USER}\nMAILSEND_PASSWORD=\"{PASSWORD}\"\n",
            server.port()
        ),
    );
    m.args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(0);
    assert!(only_session(&server).authenticated);
}

#[test]
fn environment_beats_dotenv_and_flags_beat_environment() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    m.file(
        ".env",
        "MAILSEND_PORT=1\nMAILSEND_FROM=dotenv@example.com\n",
    );
    m.env("MAILSEND_FROM", "env@example.com");
    m.args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(0);
    assert_eq!(only_transaction(&server).mail_from, "env@example.com");

    let server = submission();
    let mut m = Mailsend::to(&server);
    m.env("MAILSEND_FROM", "env@example.com");
    m.args([
        "--from",
        "flag@example.com",
        "--to",
        "a@example.com",
        "--body",
        "x",
    ])
    .run()
    .expect(0);
    assert_eq!(only_transaction(&server).mail_from, "flag@example.com");
}

#[test]
fn explicit_env_file_must_exist() {
    Mailsend::bare()
        .args([
            "--env-file",
            "nope.env",
            "--to",
            "a@example.com",
            "--body",
            "x",
        ])
        .run()
        .expect(66)
        .error_mentions("nope.env");
}

#[test]
fn password_command_supplies_the_password() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    let script = m.file("pw.sh", format!("printf '%s\\n' '{PASSWORD}'\n"));
    m.env_remove("MAILSEND_PASSWORD")
        .env(
            "MAILSEND_PASSWORD_COMMAND",
            &format!("sh {}", script.display()),
        )
        .args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(0);
    assert!(only_session(&server).authenticated);

    let server = submission();
    Mailsend::to(&server)
        .env_remove("MAILSEND_PASSWORD")
        .args([
            "--password-command",
            "exit 1",
            "--to",
            "a@example.com",
            "--body",
            "x",
        ])
        .run()
        .expect(78)
        .error_mentions("password command failed");
}
