//! Configuration layers: flags > environment > .env > defaults.

use std::path::PathBuf;
use std::time::Duration;

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

/// A server that accepts exactly `password` for USER.
fn server_for_password(password: &str) -> crate::support::server::TestServer {
    crate::support::server::TestServer::start(crate::support::server::Behaviour {
        auth: Some((USER.into(), password.into())),
        ..Default::default()
    })
}

#[test]
fn dotenv_values_arrive_byte_for_byte_with_no_substitution() {
    let ca = crate::support::pki::Pki::shared()
        .ca_file
        .display()
        .to_string();
    // Each password holds what a shell or dotenv would expand or unescape.
    for (password, written) in [
        ("Xy$9abc$HOME!", "Xy$9abc$HOME!".to_owned()),
        (
            r#"Xy$9abc$HOME!\q${PATH}"'"#,
            r#"Xy$9abc$HOME!\q${PATH}"'"#.to_owned(),
        ),
        (
            r#"Xy$9abc$HOME!\q${PATH}" #x"#,
            r#"'Xy$9abc$HOME!\q${PATH}" #x'"#.to_owned(),
        ),
        (
            r#"Xy$9abc$HOME!\n$(id)' #x"#,
            r#""Xy$9abc$HOME!\n$(id)' #x""#.to_owned(),
        ),
    ] {
        let server = server_for_password(password);
        let m = Mailsend::bare();
        m.private_file(
            ".env",
            format!(
                "MAILSEND_HOST=127.0.0.1\nMAILSEND_PORT={}\nMAILSEND_CA_FILE={ca}\nMAILSEND_USER={USER}\nMAILSEND_PASSWORD={written}\n",
                server.port()
            ),
        );
        let mut m = m;
        m.args(["--to", "a@example.com", "--body", "x"])
            .run()
            .expect(0);
        let session = only_session(&server);
        assert_eq!(
            session.auth,
            Some((USER.to_owned(), password.to_owned())),
            "written as {written}"
        );
        assert!(session.authenticated);
    }
}

#[test]
fn a_malformed_env_file_that_is_a_fifo_fails_at_once() {
    let mut m = Mailsend::bare();
    let fifo = m.path().join("settings.env");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let writer = fifo.clone();
    std::thread::spawn(move || {
        // Blocks until mailsend opens the FIFO; then one write and EOF.
        let _ = std::fs::write(writer, "MAILSEND_HOST=h.example.com\nMAILSEND_FROM=\"x\n");
    });
    let mut child = m
        .args([
            "--dry-run",
            "--to",
            "a@example.com",
            "--body",
            "x",
            "--env-file",
        ])
        .args([&fifo])
        .args(["--timeout", "1s"])
        .spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mailsend still runs 10 s after its env file ended");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(78));
}

#[test]
fn a_readable_dotenv_that_ever_assigns_the_password_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    for name in [".env", "named.env"] {
        let mut m = Mailsend::bare();
        let path = m.file(
            name,
            format!("MAILSEND_USER={USER}\nMAILSEND_PASSWORD={PASSWORD}\nMAILSEND_PASSWORD=\n"),
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        if name != ".env" {
            m.args(["--env-file", name]);
        }
        m.args(["--dry-run", "--to", "a@example.com", "--body", "x"])
            .run()
            .expect(78)
            .error_mentions("readable by others");
    }
}

/// A directory whose name is not UTF-8, holding the test CA and files.
fn non_utf8_dir(m: &Mailsend) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let dir = m.path().join(std::ffi::OsStr::from_bytes(b"dir\xff"));
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::copy(
        &crate::support::pki::Pki::shared().ca_file,
        dir.join("ca.pem"),
    )
    .expect("copy");
    dir
}

#[test]
fn non_utf8_paths_work_as_flags_and_variables() {
    // --ca-file and MAILSEND_CA_FILE
    for by_flag in [true, false] {
        let server = submission();
        let mut m = Mailsend::to(&server);
        let ca = non_utf8_dir(&m).join("ca.pem");
        m.env_remove("MAILSEND_CA_FILE");
        if by_flag {
            m.args([std::ffi::OsStr::new("--ca-file"), ca.as_os_str()]);
        } else {
            m.env_os("MAILSEND_CA_FILE", &ca);
        }
        m.args(["--to", "a@example.com", "--body", "x"])
            .run()
            .expect(0);
        assert!(only_session(&server).authenticated);
    }
    // --config and MAILSEND_CONFIG, with the CA beside it
    for by_flag in [true, false] {
        let server = submission();
        let mut m = Mailsend::bare();
        let dir = non_utf8_dir(&m);
        let config = dir.join("config.toml");
        m.private_file(
            "plain.toml",
            crate::support::cmd::account_config(&server, ""),
        );
        std::fs::rename(m.path().join("plain.toml"), &config).expect("move");
        if by_flag {
            m.args([std::ffi::OsStr::new("--config"), config.as_os_str()]);
        } else {
            m.env_os("MAILSEND_CONFIG", &config);
        }
        m.args(["--to", "a@example.com", "--body", "x"])
            .run()
            .expect(0);
        assert!(only_session(&server).authenticated);
    }
    // --env-file
    let server = submission();
    let mut m = Mailsend::to(&server);
    let dir = non_utf8_dir(&m);
    let env_file = dir.join("settings.env");
    std::fs::write(&env_file, "MAILSEND_FROM=envfile@example.com\n").expect("write");
    m.args([std::ffi::OsStr::new("--env-file"), env_file.as_os_str()])
        .args(["--to", "a@example.com", "--body", "x"])
        .run()
        .expect(0);
    assert_eq!(only_transaction(&server).mail_from, "envfile@example.com");
}

#[test]
fn a_non_utf8_value_is_an_error_naming_its_variable() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"x\xff");
    for var in [
        "MAILSEND_FROM",
        "MAILSEND_USER",
        "MAILSEND_TIMEOUT",
        "MAILSEND_TLS",
        "MAILSEND_HOST",
        "MAILSEND_LOG",
        "MAILSEND_ACCOUNT",
        "MAILSEND_OUTBOX",
    ] {
        let mut m = Mailsend::bare();
        if var != "MAILSEND_USER" {
            m.env("MAILSEND_USER", "me@example.com");
        }
        m.env_os(var, bad)
            .args(["--dry-run", "--to", "a@example.com", "--body", "x"]);
        let run = m.run();
        if var == "MAILSEND_OUTBOX" {
            // A path: used as it is, not refused.
            assert_eq!(run.code(), 0, "{}", run.stderr());
            continue;
        }
        run.expect(78).error_mentions(var).error_mentions("UTF-8");
    }
}

#[test]
fn config_show_lists_every_setting_with_its_origin() {
    let run = Mailsend::bare().args(["config", "show"]).run().expect(0);
    let out = run.stdout();
    for key in [
        "config",
        "host",
        "port",
        "tls",
        "user",
        "password",
        "password_command",
        "from",
        "ca_file",
        "timeout",
        "retry_for",
        "queue",
        "skip_empty",
        "log",
        "outbox",
        "queue_lifetime",
        "set_from_header",
    ] {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} line:\n{out}"));
        assert!(line.ends_with(')'), "{line}");
    }
    let line = |key: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .expect("line")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("queue"), "queue false (default)");
    assert_eq!(line("skip_empty"), "skip_empty false (default)");
    assert_eq!(line("retry_for"), "retry_for 0s (default)");
    assert_eq!(line("queue_lifetime"), "queue_lifetime 5days (default)");
    assert_eq!(line("set_from_header"), "set_from_header auto (default)");

    let mut m = Mailsend::bare();
    m.config("[accounts.a]\nhost = \"h.example.com\"\nskip_empty = true\n");
    let run = m
        .args(["config", "show", "--queue", "--retry-for", "2m"])
        .run()
        .expect(0);
    let out = run.stdout();
    let find = |key: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(find("queue"), "queue true (--queue)");
    assert_eq!(find("retry_for"), "retry_for 2m (--retry-for)");
    assert!(
        find("skip_empty").starts_with("skip_empty true (skip_empty of account a in "),
        "{out}"
    );
}

#[test]
fn subcommands_refuse_flags_that_mean_nothing_to_them() {
    for args in [
        &["outbox", "list", "--queue"][..],
        &["outbox", "list", "--skip-empty"],
        &["outbox", "list", "--from", "x@example.com"],
        &["outbox", "list", "--host", "h.example.com"],
        &["outbox", "show", "ID", "--timeout", "5s"],
        &["outbox", "drop", "ID", "--retry-for", "1m"],
        &["outbox", "retry", "ID", "--log", "syslog"],
        &["outbox", "flush", "--skip-empty"],
        &["outbox", "flush", "--queue"],
        &["outbox", "flush", "--from", "x@example.com"],
        &["outbox", "flush", "--retry-for", "1m"],
    ] {
        let run = Mailsend::bare().args(args).run();
        assert_eq!(run.code(), 64, "{args:?} was accepted: {}", run.stderr());
    }
    // What locates the outbox, or makes a session, still works.
    let m = Mailsend::bare();
    m.private_file("s.env", "MAILSEND_TIMEOUT=5s\n");
    let mut m = m;
    m.args([
        "outbox",
        "list",
        "--env-file",
        "s.env",
        "--config",
        "/dev/null",
    ])
    .run()
    .expect(0);
    Mailsend::bare()
        .args([
            "outbox",
            "flush",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
            "--tls",
            "tls",
            "--timeout",
            "1s",
            "--user",
            USER,
            "--password-command",
            "echo x",
            "--ca-file",
            "/dev/null",
            "--env-file",
            "/dev/null",
        ])
        .run()
        .expect(0);
}

/// Makes a FIFO in the test's directory.
fn fifo(m: &Mailsend, name: &str) -> PathBuf {
    let path = m.path().join(name);
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    path
}

/// Runs `m` and waits at most `bound` for it: (exit code, stderr, how long).
fn run_within(m: &mut Mailsend, bound: Duration) -> (i32, String, Duration) {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut child = m.spawn_with(std::process::Stdio::null(), std::process::Stdio::piped());
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mailsend still runs after {bound:?}: it hangs on its settings file");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("stderr");
    (status.code().expect("exited"), stderr, started.elapsed())
}

/// Opens `path` for writing (which waits for a reader), writes `text` and
/// keeps it open for a minute: a writer that never finishes.
fn writer_that_never_closes(path: PathBuf, text: &'static str) {
    std::thread::spawn(move || {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
            let _ = f.write_all(text.as_bytes());
            std::thread::sleep(Duration::from_secs(60));
        }
    });
}

#[test]
fn an_env_file_fifo_nobody_writes_to_fails_within_the_timeout() {
    let mut m = Mailsend::bare();
    let path = fifo(&m, "settings.env");
    m.args(["--dry-run", "--to", "a@example.com", "--body", "x"])
        .args(["--timeout", "1s", "--env-file"])
        .args([&path]);
    let (code, stderr, took) = run_within(&mut m, Duration::from_secs(10));
    assert_eq!(code, 66, "{stderr}");
    assert!(
        stderr.starts_with("mailsend: error: env file ")
            && stderr.contains("settings.env")
            && stderr.contains("within 1s"),
        "{stderr}"
    );
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

#[test]
fn an_env_file_whose_writer_never_closes_fails_within_the_timeout() {
    let mut m = Mailsend::bare();
    let path = fifo(&m, "settings.env");
    writer_that_never_closes(path.clone(), "MAILSEND_FROM=piped@example.com\n");
    m.args(["--dry-run", "--to", "a@example.com", "--body", "x"])
        .env("MAILSEND_TIMEOUT", "1s")
        .args(["--env-file"])
        .args([&path]);
    let (code, stderr, _) = run_within(&mut m, Duration::from_secs(10));
    assert_eq!(code, 66, "{stderr}");
    assert!(stderr.contains("within 1s"), "{stderr}");
}

#[test]
fn a_config_fifo_nobody_writes_to_or_never_closes_fails_within_the_timeout() {
    // --config, with the timeout from the flag.
    let mut m = Mailsend::bare();
    let path = fifo(&m, "config.toml");
    m.args(["--dry-run", "--to", "a@example.com", "--body", "x"])
        .args(["--from", USER, "--timeout", "1s", "--config"])
        .args([&path]);
    let (code, stderr, _) = run_within(&mut m, Duration::from_secs(10));
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.starts_with("mailsend: error: config file ") && stderr.contains("within 1s"),
        "{stderr}"
    );
    // MAILSEND_CONFIG, with the timeout from .env.
    let mut m = Mailsend::bare();
    let path = fifo(&m, "config.toml");
    writer_that_never_closes(path.clone(), "[aliases]\n");
    m.private_file(".env", "MAILSEND_TIMEOUT=1s\n");
    m.env_os("MAILSEND_CONFIG", &path)
        .args(["--dry-run", "--to", "a@example.com", "--body", "x"])
        .args(["--from", USER]);
    let (code, stderr, _) = run_within(&mut m, Duration::from_secs(10));
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("within 1s"), "{stderr}");
}

#[test]
fn a_config_fifo_that_is_written_and_closed_is_read() {
    let mut m = Mailsend::bare();
    let path = fifo(&m, "config.toml");
    let writer = path.clone();
    std::thread::spawn(move || {
        let _ = std::fs::write(writer, "[aliases]\nroot = \"admin@example.com\"\n");
    });
    let run = m
        .args(["config", "show", "--config"])
        .args([&path])
        .run()
        .expect(0);
    assert!(run.stdout().contains("alias root"), "{}", run.stdout());
}

#[test]
fn a_quote_left_open_before_a_mailsend_line_is_an_error_naming_its_line() {
    let mut m = Mailsend::bare();
    m.private_file(
        ".env",
        format!(
            "MAILSEND_USER={USER}\nMAILSEND_FROM=\"Me <{USER}>\nMAILSEND_PASSWORD={PASSWORD}\"\n"
        ),
    );
    m.args(["--dry-run", "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(78)
        .error_mentions("cannot parse env file .env, line 2");
}

#[test]
fn the_chmod_hint_is_a_command_that_works() {
    use std::os::unix::fs::PermissionsExt;
    let mut m = Mailsend::bare();
    std::fs::create_dir(m.path().join("my dir")).expect("mkdir");
    let path = m.file(
        "my dir/it's $HOME.env",
        format!("MAILSEND_USER={USER}\nMAILSEND_PASSWORD={PASSWORD}\n"),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = m
        .args(["--dry-run", "--to", "a@example.com", "--body", "x"])
        .args(["--env-file", "my dir/it's $HOME.env"])
        .run()
        .expect(78);
    let stderr = run.stderr();
    let command = stderr
        .lines()
        .find_map(|l| l.strip_prefix("mailsend: hint: run: "))
        .unwrap_or_else(|| panic!("no chmod hint:\n{stderr}"));
    let ran = std::process::Command::new("sh")
        .args(["-c", command])
        .current_dir(m.path())
        .status()
        .expect("sh");
    assert!(ran.success(), "{command}");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{command}");
    // Now private, the same file is accepted.
    Mailsend::bare()
        .current_dir(m.path())
        .args(["--dry-run", "--to", "a@example.com", "--body", "x"])
        .args(["--env-file", "my dir/it's $HOME.env"])
        .run()
        .expect(0);
}

#[test]
fn the_chmod_hint_never_names_a_wrong_file() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let mut m = Mailsend::bare();
    let name = std::ffi::OsStr::from_bytes(b"e\xff.env");
    let path = m.path().join(name);
    std::fs::write(&path, format!("MAILSEND_PASSWORD={PASSWORD}\n")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = m
        .args([
            "--dry-run",
            "--to",
            "a@example.com",
            "--body",
            "x",
            "--env-file",
        ])
        .args([name])
        .run()
        .expect(78);
    let stderr = run.stderr();
    let hint = stderr
        .lines()
        .find(|l| l.starts_with("mailsend: hint: "))
        .unwrap_or_else(|| panic!("no hint:\n{stderr}"));
    assert!(!hint.contains('\u{fffd}'), "{hint}");
    assert!(hint.contains("chmod 600 the file"), "{hint}");
}

#[test]
fn a_bad_value_spanning_lines_is_named_not_quoted() {
    let mut m = Mailsend::bare();
    m.private_file(".env", format!("MAILSEND_TLS=\"tls\n{PASSWORD}\"\n"));
    let run = m
        .args(["--dry-run", "--to", "a@example.com", "--body", "x"])
        .args(["--from", USER])
        .run()
        .expect(78);
    run.error_mentions("invalid TLS mode (from MAILSEND_TLS in .env)");
    assert_eq!(run.stderr().lines().count(), 2, "{}", run.stderr());
}

#[test]
fn a_sender_from_a_file_or_variable_that_spans_lines_is_named_not_quoted() {
    // A quote left open swallows the next lines, a commented-out password.
    let mut m = Mailsend::bare();
    m.private_file(
        ".env",
        format!(
            "MAILSEND_FROM=\"Me <{USER}>\nX=1\n\"\nMAILSEND_HOST=h.example.com\n# {PASSWORD}\n"
        ),
    );
    m.args(["--dry-run", "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(78)
        .error_mentions("invalid sender (from MAILSEND_FROM in .env)");
    let mut m = Mailsend::bare();
    m.env("MAILSEND_FROM", &format!("Me <{USER}>\r\n{PASSWORD}"))
        .args(["--dry-run", "--to", "a@example.com", "--body", "x"])
        .run()
        .expect(78)
        .error_mentions("invalid sender (from MAILSEND_FROM)");
}
