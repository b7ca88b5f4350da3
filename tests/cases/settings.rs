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

#[test]
fn config_show_proves_precedence_flag_env_dotenv_account_default() {
    let server = submission();
    let show = |flag: bool, env: bool, dotenv: bool| {
        let mut m = Mailsend::bare();
        m.config(&crate::support::cmd::account_config(&server, ""));
        if dotenv {
            m.file(".env", "MAILSEND_HOST=dotenv.example.com\n");
        }
        if env {
            m.env("MAILSEND_HOST", "env.example.com");
        }
        m.args(["config", "show"]);
        if flag {
            m.args(["--host", "flag.example.com"]);
        }
        let run = m.run().expect(0);
        let out = run.stdout();
        assert!(out.contains("<redacted>"), "password shown redacted: {out}");
        out.lines()
            .find(|l| l.starts_with("host "))
            .expect("host line")
            .to_owned()
    };
    assert!(show(true, true, true).contains("flag.example.com"));
    assert!(show(false, true, true).contains("env.example.com"));
    let dotenv = show(false, false, true);
    assert!(
        dotenv.contains("dotenv.example.com") && dotenv.contains(".env"),
        "{dotenv}"
    );
    let account = show(false, false, false);
    assert!(
        account.contains("127.0.0.1") && account.contains("account main"),
        "{account}"
    );

    let run = Mailsend::bare().args(["config", "show"]).run().expect(0);
    assert!(
        run.stdout().contains("starttls") && run.stdout().contains("(default)"),
        "{}",
        run.stdout()
    );
}

#[test]
fn config_file_typos_and_unknown_accounts_are_config_errors() {
    let mut m = Mailsend::bare();
    m.config("[accounts.main]\nhots = \"smtp.example.com\"\n");
    let run = m
        .args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(78);
    run.error_mentions("hots").error_mentions("config.toml");

    let server = submission();
    let mut m = Mailsend::bare();
    m.config(&crate::support::cmd::account_config(&server, ""));
    m.args(["--account", "nope", "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(78)
        .error_mentions("no account 'nope'");
}

#[test]
fn account_settings_send_without_any_environment() {
    let server = submission();
    let mut m = Mailsend::bare();
    m.config(&crate::support::cmd::account_config(&server, ""));
    m.args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(0);
    let session = only_session(&server);
    assert!(session.authenticated);
    assert_eq!(session.transactions[0].mail_from, USER);
}

#[test]
fn a_dotenv_others_can_write_is_not_read() {
    use std::os::unix::fs::PermissionsExt;
    let mut m = Mailsend::bare();
    let path = m.file(
        ".env",
        "MAILSEND_HOST=attacker.example.com\nMAILSEND_PASSWORD_COMMAND=touch pwned\n",
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let run = m
        .args(["--from", USER, "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(78);
    run.error_mentions("not reading .env");
    assert!(!m.path().join("pwned").exists());
}

#[test]
fn a_malformed_dotenv_line_is_named_not_quoted() {
    let mut m = Mailsend::bare();
    m.private_file(
        ".env",
        format!("MAILSEND_HOST=h.example.com\nMAILSEND_PASSWORD=\"{PASSWORD}\n"),
    );
    let run = m
        .args(["--from", USER, "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(78);
    run.error_mentions("cannot parse env file .env, line 2");
}

#[test]
fn sendmail_mode_ignores_the_callers_dotenv() {
    let server = submission();
    let mut m = Mailsend::sendmail(&server);
    m.private_file(
        ".env",
        "MAILSEND_HOST=elsewhere.example.com\nMAILSEND_PORT=1\n",
    );
    m.args(["-i", "x@example.com"])
        .stdin("Subject: x\n\nx\n")
        .run()
        .expect(0);
    assert!(only_session(&server).authenticated);
}

#[test]
fn a_config_file_others_can_write_is_not_read() {
    use std::os::unix::fs::PermissionsExt;
    let mut m = Mailsend::bare();
    let path = m.config("[accounts.a]\nhost = \"127.0.0.1\"\npassword_command = \"touch pwned; echo pw\"\nuser = \"u@example.com\"\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let run = m
        .args(["--from", USER, "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(78);
    run.error_mentions("others can write it");
    assert!(!m.path().join("pwned").exists(), "its command never ran");
}

#[test]
fn a_fifo_in_place_of_dotenv_is_refused_without_hanging() {
    let mut m = Mailsend::bare();
    let fifo = m.path().join(".env");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let run = m
        .args(["--from", USER, "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(78);
    run.error_mentions("not a regular file");
}

#[test]
fn an_env_file_may_be_a_pipe_the_user_names() {
    let mut m = Mailsend::bare();
    // As with --env-file <(pass show smtp): a pipe that is written later.
    let run = m
        .args([
            "--dry-run",
            "--to",
            "a@example.com",
            "--body",
            "x",
            "--env-file",
            "/dev/stdin",
        ])
        .stdin("MAILSEND_FROM=piped@example.com\n")
        .run()
        .expect(0);
    assert!(
        run.stderr().contains("envelope from: <piped@example.com>"),
        "{}",
        run.stderr()
    );
}
