//! Never lose a message: retries, the outbox, and flush surviving kill -9.

use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::support::cmd::Mailsend;

fn send_args() -> [&'static str; 6] {
    [
        "--to",
        "a@example.com",
        "--subject",
        "queued",
        "--body",
        "keep me",
    ]
}

/// mailsend for `port` with HOME (and so the outbox) in `home`.
fn at(port: u16, home: &Path) -> Mailsend {
    let mut m = Mailsend::to_port(port);
    m.home(home);
    m
}

/// `mailsend outbox flush` with `extra` flags, for `port` with HOME in `home`.
fn flush(port: u16, home: &Path, extra: &[&str]) -> crate::support::cmd::Run {
    at(port, home).args(["outbox", "flush"]).args(extra).run()
}

/// What `mailsend outbox list` prints.
fn outbox_list(port: u16, home: &Path) -> String {
    at(port, home)
        .args(["outbox", "list"])
        .run()
        .expect(0)
        .stdout()
}

/// Queues `n` messages while nothing listens on `port`; returns the entry
/// directories, oldest first.
fn queue_some(port: u16, home: &Path, n: usize) -> Vec<std::path::PathBuf> {
    for _ in 0..n {
        at(port, home)
            .args(["--queue"])
            .args(send_args())
            .run()
            .expect(0);
    }
    let outbox = home.join(".local/state/mailsend/outbox");
    let mut dirs: Vec<_> = std::fs::read_dir(&outbox)
        .expect("outbox")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Queues one all-or-nothing message to a@ and c@example.com while
/// nothing listens on `port`.
fn queue_all_or_nothing_to_a_and_c(port: u16, home: &Path) {
    at(port, home)
        .args(["--queue", "--all-or-nothing"])
        .args(["--to", "a@example.com,c@example.com", "--body", "x"])
        .run()
        .expect(0);
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A submission server whose first session ends the message with `reply`;
/// later sessions accept it, as a server does once it recovers.
fn replying_once(reply: &str) -> TestServer {
    TestServer::start(with_auth(Behaviour {
        data_reply: Some(reply.into()),
        fault_sessions: Some(1),
        ..Behaviour::default()
    }))
}

/// No transaction the server saw went without a recipient.
fn assert_every_transaction_had_a_recipient(server: &TestServer) {
    for s in server.sessions() {
        for t in &s.transactions {
            assert!(
                !t.rcpt_to.is_empty(),
                "a transaction with no recipient: {:?}",
                s.lines()
            );
        }
    }
}

fn message_ids(server: &TestServer) -> Vec<String> {
    server
        .sessions()
        .iter()
        .flat_map(|s| s.transactions.iter())
        .filter(|t| t.reply.starts_with("250"))
        .filter_map(|t| header(&t.data, "message-id"))
        .collect()
}

#[test]
fn temporary_failure_then_success_within_retry_for() {
    let server = replying_once("451 4.3.0 Try again later");
    Mailsend::to(&server)
        .args(["--retry-for", "20s"])
        .args(send_args())
        .run()
        .expect(0);
    let sessions = server.wait_sessions(2, Duration::from_secs(20));
    assert_eq!(sessions.len(), 2);
    let first = header(&sessions[0].transactions[0].data, "message-id");
    let second = header(&sessions[1].transactions[0].data, "message-id");
    assert_eq!(first, second, "the retry sends the same message");
    assert!(sessions[1].transactions[0].reply.starts_with("250"));
}

#[test]
fn without_retry_for_a_temporary_failure_fails_fast() {
    let server = replying_once("451 4.3.0 Try again later");
    Mailsend::to(&server).args(send_args()).run().expect(75);
    assert_eq!(server.wait_sessions(1, Duration::from_secs(10)).len(), 1);
}

#[test]
fn permanent_failure_is_never_retried() {
    let server = replying_once("554 5.7.1 rejected");
    Mailsend::to(&server)
        .args(["--retry-for", "20s"])
        .args(send_args())
        .run()
        .expect(69);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.sessions().len(), 1);
}

#[test]
fn dropped_during_data_is_retried() {
    let server = TestServer::start(with_auth(Behaviour {
        drop_during_data: true,
        fault_sessions: Some(1),
        ..Behaviour::default()
    }));
    Mailsend::to(&server)
        .args(["--retry-for", "20s"])
        .args(send_args())
        .run()
        .expect(0);
    assert_eq!(message_ids(&server).len(), 1);
}

#[test]
fn only_recipients_refused_for_now_are_retried() {
    let server = TestServer::start(with_auth(Behaviour {
        rcpt_replies: vec![("b@example.com".into(), "451 4.2.1 mailbox busy".into())],
        fault_sessions: Some(1),
        ..Behaviour::default()
    }));
    Mailsend::to(&server)
        .args([
            "--retry-for",
            "20s",
            "--to",
            "a@example.com,b@example.com",
            "--body",
            "x",
        ])
        .run()
        .expect(0);
    let sessions = server.wait_sessions(2, Duration::from_secs(20));
    assert_eq!(sessions[0].transactions[0].rcpt_to, ["a@example.com"]);
    assert_eq!(sessions[1].transactions[0].rcpt_to, ["b@example.com"]);
}

#[test]
fn queued_while_down_then_flushed_exactly_once() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let run = at(port, home.path())
        .args(["--queue", "--json"])
        .args(send_args())
        .run()
        .expect(0);
    let json: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
    let id = json["queued"].as_str().expect("queued id").to_owned();
    assert!(
        run.stderr().contains(&format!("queued as {id}")),
        "{}",
        run.stderr()
    );

    let list = outbox_list(port, home.path());
    assert!(list.contains(&id) && list.contains("queued"), "{}", list);
    let shown = at(port, home.path())
        .args(["outbox", "show", &id])
        .run()
        .expect(0);
    assert!(shown.stdout().contains("keep me"));

    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    flush(port, home.path(), &[]).expect(0);
    assert_eq!(
        message_ids(&server),
        [json["message_id"].as_str().expect("id").to_owned()]
    );
    let tx = only_transaction(&server);
    assert_eq!(body(&tx.data), b"keep me\r\n");

    flush(port, home.path(), &["--all"]).expect(0);
    assert_eq!(server.sessions().len(), 1, "a second flush sends nothing");
    let list = outbox_list(port, home.path());
    assert_eq!(list, "");
}

#[test]
fn permanent_failure_at_flush_moves_to_failed() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    at(port, home.path())
        .args(["--queue"])
        .args(send_args())
        .run()
        .expect(0);
    let _server = TestServer::start_on(
        with_auth(Behaviour {
            rcpt_replies: vec![("a@example.com".into(), "550 5.1.1 no such user".into())],
            ..Behaviour::default()
        }),
        port,
    );
    let run = flush(port, home.path(), &[]).expect(69);
    assert!(
        run.stderr().contains("moved to failed/"),
        "{}",
        run.stderr()
    );
    let list = outbox_list(port, home.path());
    assert!(
        list.contains("failed") && list.contains("550 5.1.1"),
        "{}",
        list
    );
}

#[test]
fn temporary_failure_at_flush_stays_queued_and_backs_off() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    at(port, home.path())
        .args(["--queue"])
        .args(send_args())
        .run()
        .expect(0);
    // Still down: the entry stays, its next attempt moves into the future.
    flush(port, home.path(), &[]).expect(75);
    let list = outbox_list(port, home.path());
    assert!(
        list.contains("attempts=2") && list.contains("next=in "),
        "{}",
        list
    );
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    flush(port, home.path(), &[]).expect(0);
    assert!(
        server.sessions().is_empty(),
        "not due yet: flush waits for the backoff"
    );
    flush(port, home.path(), &["--all"]).expect(0);
    assert_eq!(message_ids(&server).len(), 1);
}

#[test]
fn a_second_flush_does_not_wait_for_the_first() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    at(port, home.path())
        .args(["--queue"])
        .args(send_args())
        .run()
        .expect(0);
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    let lock = home.path().join(".local/state/mailsend/outbox/.lock");
    // As mailsend makes it (flock(1) would follow the umask, and a lock
    // file others can write is refused).
    std::fs::write(&lock, "").expect("lock file");
    chmod(&lock, 0o600);
    // util-linux flock holds the outbox lock as a running flush would.
    // -o: flock itself holds the lock, so killing it releases the lock.
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .expect("util-linux flock");
    std::thread::sleep(Duration::from_millis(300));
    let run = flush(port, home.path(), &["-v"]).expect(0);
    assert!(
        run.stderr().contains("another outbox flush is running"),
        "{}",
        run.stderr()
    );
    assert!(server.sessions().is_empty());
    holder.kill().expect("kill");
    let _ = holder.wait();
    flush(port, home.path(), &[]).expect(0);
    assert_eq!(message_ids(&server).len(), 1);
}

#[test]
fn drop_removes_an_entry_and_unknown_ids_are_noinput() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let run = at(port, home.path())
        .args(["--queue", "--json"])
        .args(send_args())
        .run()
        .expect(0);
    let json: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
    let id = json["queued"].as_str().expect("id").to_owned();
    at(port, home.path())
        .args(["outbox", "drop", &id])
        .run()
        .expect(0);
    at(port, home.path())
        .args(["outbox", "show", &id])
        .run()
        .expect(66);
    at(port, home.path())
        .args(["outbox", "drop", "../../etc"])
        .run()
        .expect(66);
}

#[test]
fn permanent_refusal_is_not_queued() {
    let home = tempfile::tempdir().expect("home");
    let server = TestServer::start(with_auth(Behaviour {
        data_reply: Some("554 5.7.1 spam".into()),
        ..Behaviour::default()
    }));
    at(server.port(), home.path())
        .args(["--queue"])
        .args(send_args())
        .run()
        .expect(69);
    let list = outbox_list(server.port(), home.path());
    assert_eq!(list, "");
}

/// kill -9 of `outbox flush` at random instants, many times: afterwards
/// every message was delivered or is still queued; none is lost. Half of
/// the kills land at a random time, half right after the server accepted a
/// message (the one window where a duplicate is possible).
#[test]
fn flush_survives_kill_9_at_random_points() {
    const MESSAGES: usize = 100;
    const KILLS: usize = 50;
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let mut queued_ids = Vec::new();
    for i in 0..MESSAGES {
        let run = at(port, home.path())
            .args([
                "--queue",
                "--json",
                "--to",
                "a@example.com",
                "--body",
                &format!("message {i}"),
            ])
            .run()
            .expect(0);
        let json: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
        queued_ids.push(json["message_id"].as_str().expect("id").to_owned());
    }
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    let mut rng = 0x9E3779B97F4A7C15u64;
    let mut kills = 0;
    while kills < KILLS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let before = message_ids(&server).len();
        let mut child = at(port, home.path())
            .args(["outbox", "flush", "--all"])
            .spawn();
        if rng.is_multiple_of(2) {
            std::thread::sleep(Duration::from_micros(rng % 20_000));
        } else {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while message_ids(&server).len() == before && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        kills += 1;
        // What is left must always be complete, readable entries.
        let list = at(port, home.path())
            .args(["outbox", "list"])
            .run()
            .expect(0);
        assert!(
            !list.stderr().contains("warning"),
            "after a kill: {}",
            list.stderr()
        );
        if list.stdout().is_empty() {
            break;
        }
    }
    let delivered_while_killing = message_ids(&server).len();
    flush(port, home.path(), &["--all"]).expect(0);
    let list = outbox_list(port, home.path());
    assert_eq!(list, "", "everything delivered in the end");

    let mut delivered: HashMap<String, usize> = HashMap::new();
    for id in message_ids(&server) {
        *delivered.entry(id).or_default() += 1;
    }
    let lost: Vec<&String> = queued_ids
        .iter()
        .filter(|id| !delivered.contains_key(*id))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    let duplicates: usize = delivered.values().map(|n| n - 1).sum();
    eprintln!(
        "kill -9 test: {MESSAGES} messages, {kills} kills, {delivered_while_killing} deliveries while killing, {duplicates} duplicates"
    );
    assert!(
        delivered_while_killing > 0,
        "the kills interrupted flushes that were delivering"
    );
    assert!(
        kills >= KILLS / 2,
        "the outbox emptied after {kills} kills: too few to mean much"
    );
    assert!(
        duplicates <= kills,
        "at most one duplicate per kill (the 250-to-removal window)"
    );
}

#[test]
fn a_local_problem_stops_flush_and_keeps_every_entry() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    at(port, home.path())
        .args(["--queue"])
        .args(send_args())
        .run()
        .expect(0);
    let run = at(port, home.path())
        .env_remove("MAILSEND_HOST")
        .args(["outbox", "flush"])
        .run()
        .expect(78);
    run.error_mentions("no SMTP server configured");
    let list = outbox_list(port, home.path());
    assert!(
        list.contains("queued") && list.contains("attempts=1"),
        "{}",
        list
    );
}

#[test]
fn damaged_and_half_updated_entries_do_not_block_the_others() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let dirs = queue_some(port, home.path(), 2);
    std::fs::write(dirs[0].join("meta.json"), "").expect("damage one entry");
    std::fs::write(dirs[1].join(".meta.json.tmp"), "left by a crash").expect("stale temp file");

    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    // The exit code reports the damaged entry (65: bad data, which no
    // retry mends).
    let run = flush(port, home.path(), &[]).expect(65);
    assert!(run.stderr().contains("is damaged"), "{}", run.stderr());
    assert_eq!(
        message_ids(&server).len(),
        1,
        "the healthy entry was delivered"
    );
    assert!(
        dirs[0].exists(),
        "the damaged entry is left in place for a human"
    );
    let list = at(port, home.path())
        .args(["outbox", "list"])
        .run()
        .expect(65);
    let id = dirs[0]
        .file_name()
        .expect("id")
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        list.stdout()
            .lines()
            .filter(|l| l.starts_with(&format!("{id}  damaged  ")))
            .count(),
        1,
        "{}",
        list.stdout()
    );
}

#[test]
fn an_unreachable_server_is_tried_once_per_flush() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    queue_some(port, home.path(), 3);
    let run = flush(port, home.path(), &["-v"]).expect(75);
    assert!(
        run.stderr()
            .contains("2 more messages for this server wait for the next flush"),
        "{}",
        run.stderr()
    );
    let list = outbox_list(port, home.path());
    assert_eq!(list.matches("attempts=2").count(), 1, "{}", list);
    assert_eq!(list.matches("attempts=1").count(), 2, "{}", list);
}

#[test]
fn a_partial_delivery_then_failure_says_who_got_it() {
    let server = TestServer::start(with_auth(Behaviour {
        rcpt_replies: vec![("b@example.com".into(), "451 4.2.1 busy".into())],
        ..Behaviour::default()
    }));
    let mut m = Mailsend::to(&server);
    m.args([
        "--retry-for",
        "1500ms",
        "--to",
        "a@example.com,b@example.com",
        "--body",
        "x",
    ]);
    let run = std::thread::spawn(move || m.run());
    // a gets the message, b is refused for now; then the server goes away
    // while mailsend waits to retry b.
    server.wait_sessions(1, Duration::from_secs(20));
    drop(server);
    let run = run.join().expect("mailsend ran").expect(75);
    run.error_mentions("message delivered to a@example.com, but not to the other recipients")
        .error_mentions("recipient b@example.com refused: 451 4.2.1 busy");
}

#[test]
fn all_or_nothing_holds_at_flush_too() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    queue_all_or_nothing_to_a_and_c(port, home.path());
    let server = TestServer::start_on(
        with_auth(Behaviour {
            rcpt_replies: vec![("c@example.com".into(), "550 5.1.1 no such user".into())],
            ..Behaviour::default()
        }),
        port,
    );
    flush(port, home.path(), &[]).expect(69);
    assert!(
        server.sessions().iter().all(|s| !s.reached_data),
        "nobody got it"
    );
    assert!(outbox_list(port, home.path()).contains("failed"));
}

#[test]
fn a_refused_login_at_flush_keeps_the_queue() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    queue_some(port, home.path(), 3);
    let server = TestServer::start_on(
        Behaviour {
            auth: Some((
                crate::support::cmd::USER.into(),
                "a different password".into(),
            )),
            ..Behaviour::default()
        },
        port,
    );
    let run = flush(port, home.path(), &["--all"]).expect(77);
    run.error_mentions("535");
    assert_eq!(
        server.sessions().len(),
        1,
        "one login attempt, not one per message"
    );
    let list = outbox_list(port, home.path());
    assert_eq!(
        list.matches("queued").count(),
        3,
        "nothing moved to failed/: {list}"
    );
}

#[test]
fn an_unreadable_entry_does_not_block_the_others() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let dirs = queue_some(port, home.path(), 2);
    let outbox = home.path().join(".local/state/mailsend/outbox");
    std::fs::remove_file(dirs[0].join("message.eml")).expect("lose one message file");
    std::fs::create_dir(outbox.join("copy-of-something")).expect("stray dir");
    std::fs::write(outbox.join("copy-of-something/meta.json"), "{}").expect("stray meta");
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    let run = flush(port, home.path(), &[]).expect(75);
    assert!(
        run.stderr().contains("cannot be read") && run.stderr().contains("not an outbox entry"),
        "{}",
        run.stderr()
    );
    assert_eq!(message_ids(&server).len(), 1, "the healthy entry went");
}

#[test]
fn an_accounts_own_outbox_is_flushed_and_failed_entries_can_be_retried() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let own = home.path().join("spool");
    let config = home.path().join(".config/mailsend/config.toml");
    std::fs::create_dir_all(config.parent().expect("dir")).expect("mkdir");
    let account = crate::support::cmd::account_config(&TestServer::start(Behaviour::default()), "");
    std::fs::write(
        &config,
        format!("{account}outbox = \"{}\"\n", own.display()),
    )
    .expect("config");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config_home = |args: &[&str]| {
        let mut m = at(port, home.path());
        m.env_remove("MAILSEND_CONFIG").args(args).run()
    };
    config_home(&["--queue", "--to", "a@example.com", "--body", "x"]).expect(0);
    assert!(
        own.read_dir()
            .expect("own outbox")
            .flatten()
            .any(|e| e.path().join("meta.json").is_file())
    );

    let server = TestServer::start_on(
        with_auth(Behaviour {
            rcpt_replies: vec![("a@example.com".into(), "550 5.1.1 no such user".into())],
            fault_sessions: Some(1),
            ..Behaviour::default()
        }),
        port,
    );
    config_home(&["outbox", "flush"]).expect(69);
    let list = config_home(&["outbox", "list"]).expect(0).stdout();
    let id = list.split_whitespace().next().expect("an entry").to_owned();
    assert!(list.contains("failed"), "{list}");
    config_home(&["outbox", "retry", &id]).expect(0);
    config_home(&["outbox", "flush"]).expect(0);
    assert_eq!(message_ids(&server).len(), 1, "delivered after the retry");
}

#[test]
fn refusals_reported_at_send_time_do_not_fail_the_flush() {
    let home = tempfile::tempdir().expect("home");
    let server = TestServer::start(with_auth(Behaviour {
        rcpt_replies: vec![
            ("b@example.com".into(), "550 5.1.1 no such user".into()),
            ("c@example.com".into(), "450 4.2.1 busy".into()),
        ],
        fault_sessions: Some(1),
        ..Behaviour::default()
    }));
    let port = server.port();
    let run = at(port, home.path())
        .args([
            "--queue",
            "--to",
            "a@example.com,b@example.com,c@example.com",
            "--body",
            "x",
        ])
        .run()
        .expect(65);
    run.error_mentions("b@example.com refused: 550");
    // c is accepted now: the flush delivered everything it had to.
    flush(port, home.path(), &["--all"]).expect(0);
    assert_eq!(
        outbox_list(port, home.path()),
        "",
        "nothing left, nothing in failed/"
    );
    let sessions = server.wait_sessions(2, Duration::from_secs(10));
    assert_eq!(sessions[1].transactions[0].rcpt_to, ["c@example.com"]);
}

#[test]
fn an_outbox_that_cannot_be_opened_does_not_stop_the_others() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    queue_some(port, home.path(), 1);
    let config = home.path().join(".config/mailsend/config.toml");
    std::fs::create_dir_all(config.parent().expect("dir")).expect("mkdir");
    // An account whose outbox lies under a file: it can never be created.
    std::fs::write(
        &config,
        "[accounts.broken]\nhost = \"127.0.0.1\"\noutbox = \"/dev/null/outbox\"\n",
    )
    .expect("config");
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    let mut m = at(port, home.path());
    let run = m
        .env_remove("MAILSEND_CONFIG")
        .args(["outbox", "flush"])
        .run()
        .expect(78);
    run.error_mentions("cannot create outbox /dev/null/outbox");
    assert_eq!(
        message_ids(&server).len(),
        1,
        "the default outbox was still flushed"
    );
}

fn outbox_dir(home: &Path) -> std::path::PathBuf {
    home.join(".local/state/mailsend/outbox")
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every command line any session of `server` saw.
fn all_lines(server: &TestServer) -> Vec<String> {
    server
        .sessions()
        .iter()
        .flat_map(|s| s.lines().into_iter().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

#[test]
fn an_outbox_others_can_write_is_refused() {
    for (what, mode) in [
        ("outbox", 0o770),
        ("outbox/failed", 0o777),
        ("outbox/.tmp", 0o722),
    ] {
        let home = tempfile::tempdir().expect("home");
        let port = free_port();
        let dirs = queue_some(port, home.path(), 1);
        let target = outbox_dir(home.path())
            .parent()
            .expect("state dir")
            .join(what);
        chmod(&target, mode);
        let server = TestServer::start_on(with_auth(Behaviour::default()), port);
        let run = flush(port, home.path(), &["--all"]).expect(78);
        run.error_mentions("others can write it");
        assert!(server.sessions().is_empty(), "{what}: nothing sent");
        assert!(dirs[0].join("message.eml").is_file(), "{what}: entry kept");
        at(port, home.path())
            .args(["outbox", "list"])
            .run()
            .expect(78)
            .error_mentions("others can write it");
        // The user's fix is the one the hint names.
        chmod(&target, 0o700);
        flush(port, home.path(), &["--all"]).expect(0);
        assert_eq!(message_ids(&server).len(), 1, "{what}");
    }
}

#[test]
fn a_lock_file_others_can_write_is_refused() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    queue_some(port, home.path(), 1);
    let lock = outbox_dir(home.path()).join(".lock");
    std::fs::write(&lock, "").expect("lock file");
    chmod(&lock, 0o666);
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    flush(port, home.path(), &["--all"])
        .expect(78)
        .error_mentions(".lock");
    assert!(server.sessions().is_empty());
}

#[test]
fn entry_files_are_never_read_through_symlinks() {
    const SECRET: &str = "the victim's private key material";
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let dirs = queue_some(port, home.path(), 3);
    let private = home.path().join("private.txt");
    std::fs::write(&private, format!("Subject: x\r\n\r\n{SECRET}\r\n")).expect("private");
    chmod(&private, 0o600);
    // Entry 0: its message is a symlink to the private file.
    std::fs::remove_file(dirs[0].join("message.eml")).expect("rm");
    std::os::unix::fs::symlink(&private, dirs[0].join("message.eml")).expect("symlink");
    // Entry 1: its whole directory is a symlink to a directory elsewhere
    // whose message is the private file.
    let elsewhere = home.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    std::fs::copy(dirs[1].join("meta.json"), elsewhere.join("meta.json")).expect("cp");
    std::fs::copy(&private, elsewhere.join("message.eml")).expect("cp");
    std::fs::remove_dir_all(&dirs[1]).expect("rm");
    std::os::unix::fs::symlink(&elsewhere, &dirs[1]).expect("symlink");

    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    let run = flush(port, home.path(), &["--all"]).expect(78);
    run.error_mentions("symbolic link");
    let leaked = server
        .sessions()
        .iter()
        .flat_map(|s| s.transactions.iter())
        .any(|t| t.data_str().contains(SECRET));
    assert!(!leaked, "a private file was mailed");
    assert_eq!(message_ids(&server).len(), 1, "the healthy entry went");
    for id in [&dirs[0], &dirs[1]] {
        let id = id.file_name().expect("id").to_string_lossy().into_owned();
        let show = at(port, home.path()).args(["outbox", "show", &id]).run();
        assert!(
            !show.stdout().contains(SECRET),
            "show read through a symlink"
        );
    }
}

#[test]
fn an_injected_address_in_meta_json_never_reaches_the_wire() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let dirs = queue_some(port, home.path(), 4);
    let edit = |dir: &Path, key: &str, value: serde_json::Value| {
        let path = dir.join("meta.json");
        let mut meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("meta")).expect("JSON");
        meta[key] = value;
        std::fs::write(&path, serde_json::to_vec(&meta).expect("JSON")).expect("write");
    };
    edit(
        &dirs[0],
        "recipients",
        serde_json::json!(["a@example.com>\r\nRCPT TO:<x@example.net"]),
    );
    edit(
        &dirs[1],
        "from",
        serde_json::json!("a@example.com>\r\nRCPT TO:<x@example.net>\r\nX:<y"),
    );
    edit(
        &dirs[2],
        "recipients",
        serde_json::json!(["a b@example.com"]),
    );
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    let run = flush(port, home.path(), &["--all"]).expect(65);
    assert!(run.stderr().contains("invalid"), "{}", run.stderr());
    assert!(
        !run.stderr().contains("\r\nRCPT"),
        "the error line is one line: {}",
        run.stderr()
    );
    let lines = all_lines(&server);
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("x@example.net") && !l.contains("a b@")),
        "{lines:?}"
    );
    assert_eq!(message_ids(&server).len(), 1, "the healthy entry went");
    assert!(
        dirs[0].exists() && dirs[1].exists() && dirs[2].exists(),
        "kept for a human"
    );
}

/// The server accepts the message, then `break_it` makes the outbox's next
/// write fail (the disk, not the server, is at fault); a second flush
/// once it is repaired.
fn delivered_then_local_fault(
    recipients: &str,
    rcpt_replies: Vec<(String, String)>,
    break_it: fn(&Path),
    repair: fn(&Path),
) -> (TestServer, tempfile::TempDir, u16, String) {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    at(port, home.path())
        .args(["--queue", "--to", recipients, "--bcc", "hidden@example.org"])
        .args(["--body", "x"])
        .run()
        .expect(0);
    let outbox = outbox_dir(home.path());
    let hook_outbox = outbox.clone();
    let server = TestServer::start_on(
        with_auth(Behaviour {
            rcpt_replies,
            fault_sessions: Some(1),
            before_data_reply: Some(crate::support::server::Hook(std::sync::Arc::new(
                move || break_it(&hook_outbox),
            ))),
            ..Behaviour::default()
        }),
        port,
    );
    let first = flush(port, home.path(), &["--all"]).expect(75);
    repair(&outbox);
    (server, home, port, first.stderr())
}

/// Replaces directory `name` of the outbox by a file (rename into it fails).
fn break_dir(outbox: &Path, name: &str) {
    std::fs::rename(outbox.join(name), outbox.join(format!("{name}.away"))).expect("mv");
    std::fs::write(outbox.join(name), "").expect("file in its place");
}

fn repair_dir(outbox: &Path, name: &str) {
    std::fs::remove_file(outbox.join(name)).expect("rm");
    std::fs::rename(outbox.join(format!("{name}.away")), outbox.join(name)).expect("mv");
}

#[test]
fn a_local_fault_after_delivery_never_sends_to_nobody_or_again() {
    let (server, home, port, stderr) = delivered_then_local_fault(
        "a@example.com",
        Vec::new(),
        |o| break_dir(o, ".tmp"),
        |o| repair_dir(o, ".tmp"),
    );
    assert!(
        stderr.contains(
            "delivered, but the outbox entry could not be removed (the next flush removes it)"
        ),
        "{stderr}"
    );
    assert_eq!(message_ids(&server).len(), 1);
    flush(port, home.path(), &["--all"]).expect(0);
    assert_every_transaction_had_a_recipient(&server);
    assert_eq!(message_ids(&server).len(), 1, "not sent twice");
    assert_eq!(outbox_list(port, home.path()), "", "done, removed");
}

#[test]
fn a_local_fault_while_failing_an_entry_keeps_who_is_owed_it() {
    // a and the Bcc get it, c is refused for good; then failed/ cannot
    // be written.
    let (server, home, port, stderr) = delivered_then_local_fault(
        "a@example.com,c@example.com",
        vec![("c@example.com".into(), "550 5.1.1 no such user".into())],
        |o| break_dir(o, "failed"),
        |o| repair_dir(o, "failed"),
    );
    assert!(stderr.contains("to failed/"), "{stderr}");
    let shown = at(port, home.path())
        .args(["outbox", "list"])
        .run()
        .expect(0)
        .stdout();
    assert!(
        shown.contains("queued"),
        "still in the queue until moved: {shown}"
    );
    // 65: delivered to some, refused for good for another.
    flush(port, home.path(), &["--all"]).expect(65);
    assert_every_transaction_had_a_recipient(&server);
    assert_eq!(message_ids(&server).len(), 1, "not sent twice");
    let list = outbox_list(port, home.path());
    assert!(
        list.contains("failed") && list.contains("550 5.1.1"),
        "{list}"
    );
    // retry sends to c only: a and the Bcc already have it.
    let id = list.split_whitespace().next().expect("id").to_owned();
    at(port, home.path())
        .args(["outbox", "retry", &id])
        .run()
        .expect(0);
    flush(port, home.path(), &["--all"]).expect(0);
    let sessions = server.sessions();
    let last = sessions.last().expect("a session");
    assert_eq!(last.transactions[0].rcpt_to, ["c@example.com"]);
}

#[test]
fn all_or_nothing_retry_goes_to_everyone() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    queue_all_or_nothing_to_a_and_c(port, home.path());
    let server = TestServer::start_on(
        with_auth(Behaviour {
            rcpt_replies: vec![("c@example.com".into(), "550 5.1.1 no such user".into())],
            fault_sessions: Some(1),
            ..Behaviour::default()
        }),
        port,
    );
    flush(port, home.path(), &[]).expect(69);
    let list = outbox_list(port, home.path());
    let id = list.split_whitespace().next().expect("id").to_owned();
    assert!(
        list.contains("to=a@example.com,c@example.com"),
        "nobody got it, all owed: {list}"
    );
    at(port, home.path())
        .args(["outbox", "retry", &id])
        .run()
        .expect(0);
    flush(port, home.path(), &[]).expect(0);
    let tx = message_ids(&server);
    assert_eq!(tx.len(), 1);
    let sessions = server.sessions();
    let delivered = sessions
        .iter()
        .flat_map(|s| s.transactions.iter())
        .find(|t| t.reply.starts_with("250"))
        .expect("delivered");
    assert_eq!(delivered.rcpt_to, ["a@example.com", "c@example.com"]);
}

#[test]
fn an_outbox_or_entry_of_another_user_is_refused() {
    // Part 1, for everyone: an entry others can write (its directory, or
    // its meta.json) is refused, and only the user's own healthy entry goes.
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let dirs = queue_some(port, home.path(), 3);
    chmod(&dirs[0], 0o770);
    chmod(&dirs[1].join("meta.json"), 0o666);
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    let run = flush(port, home.path(), &["--all"]).expect(78);
    run.error_mentions("others can write it");
    assert_eq!(message_ids(&server).len(), 1, "only the safe entry went");
    assert!(dirs[0].join("message.eml").exists() && dirs[1].join("message.eml").exists());

    // Part 2, the owner (uid) rule: only root can give a file away, so
    // only root can build this case. Anyone else must fail to (EPERM),
    // which is checked, so that this part is never passed by accident.
    let given = std::os::unix::fs::chown(&dirs[0], Some(65534), None);
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        let err = given.expect_err("a non-root user cannot chown");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
        eprintln!("not root: the owner part of this test was not run (mode part passed)");
        return;
    }
    given.expect("chown as root");
    chmod(&dirs[0], 0o700);
    chmod(&dirs[1].join("meta.json"), 0o600);
    let run = flush(port, home.path(), &["--all"]).expect(78);
    run.error_mentions("belongs to another user");
    assert_eq!(
        message_ids(&server).len(),
        2,
        "the user's own entry went, the other's did not"
    );
    assert!(
        dirs[0].join("message.eml").exists(),
        "the other one is left alone"
    );

    let outbox = outbox_dir(home.path());
    std::os::unix::fs::chown(&outbox, Some(65534), None).expect("chown");
    flush(port, home.path(), &["--all"])
        .expect(78)
        .error_mentions("not using outbox");
    assert_eq!(message_ids(&server).len(), 2, "nothing more sent");
}

/// A server's refusal kept in the outbox is shown escaped by `outbox
/// list`, and a reader that goes away (`| head -0`) is no error.
#[test]
fn outbox_list_shows_server_text_escaped_and_survives_a_closed_stdout() {
    let server = TestServer::start(with_auth(Behaviour {
        data_reply: Some("451 4.3.0 \x1b]0;pwned\x07 try \x1b[2Jlater".into()),
        ..Behaviour::default()
    }));
    let home = tempfile::tempdir().expect("home");
    at(server.port(), home.path())
        .args(["--queue"])
        .args(send_args())
        .run()
        .expect(0);
    let listed = outbox_list(server.port(), home.path());
    assert!(listed.contains(r"try \u{1b}[2Jlater"), "{listed}");
    assert!(
        !listed.contains('\x1b') && !listed.contains('\x07'),
        "{listed:?}"
    );
    let mut child = at(server.port(), home.path())
        .args(["outbox", "list"])
        .spawn_with(std::process::Stdio::piped(), std::process::Stdio::piped());
    drop(child.stdout.take());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// `outbox flush` sends all of an account's due entries over one session
/// (one login), each exactly once.
#[test]
fn flush_sends_every_entry_over_one_session() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    queue_some(port, home.path(), 6);
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    flush(port, home.path(), &[]).expect(0);
    let sessions = server.wait_sessions(1, std::time::Duration::from_secs(20));
    assert_eq!(sessions.len(), 1, "one session for the whole queue");
    let session = &sessions[0];
    assert_eq!(session.transactions.len(), 6, "{:?}", session.lines());
    let auths = session
        .lines()
        .iter()
        .filter(|l| l.to_ascii_uppercase().starts_with("AUTH"))
        .count();
    assert_eq!(auths, 1);
    let ids = message_ids(&server);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(
        (ids.len(), unique.len()),
        (6, 6),
        "each exactly once: {ids:?}"
    );
    assert_eq!(outbox_list(port, home.path()), "");
}

/// The server drops the connection in the middle of the flush: what was
/// delivered stays delivered, the entry that was in flight is kept (its
/// fate is unknown), and a new session sends the rest.
#[test]
fn a_dropped_connection_mid_flush_gets_a_new_session_for_the_rest() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    queue_some(port, home.path(), 3);
    let server = TestServer::start_on(
        with_auth(Behaviour {
            drop_during_data: true,
            fault_sessions: Some(1),
            ..Behaviour::default()
        }),
        port,
    );
    flush(port, home.path(), &[]).expect(75);
    let sessions = server.wait_sessions(2, std::time::Duration::from_secs(20));
    assert_eq!(sessions.len(), 2, "a new session after the drop");
    // The first message's content was cut: it stays queued for later;
    // the other two went through the second session.
    assert_eq!(message_ids(&server).len(), 2);
    let list = outbox_list(port, home.path());
    assert_eq!(list.lines().count(), 1, "{list}");
    flush(port, home.path(), &["--all"]).expect(0);
    assert_eq!(message_ids(&server).len(), 3);
    assert_eq!(outbox_list(port, home.path()), "");
}

/// The server's 250 arrives, and then the entry can neither be removed
/// nor marked "owed to nobody", and that fault lasts: no later flush
/// sends the message again while the outbox cannot record an outcome.
///
/// The entry's directory has a name so long that the removal's rename
/// (to `.tmp/NAME.removed-XXXXXXXX`) fails with ENAMETOOLONG, and the
/// hook puts a directory where `meta.json`'s temporary file goes, so no
/// rewrite of the state succeeds either; reading still works. (Root, which
/// runs these tests, ignores mode bits: this breaks writes for it too.)
#[test]
fn an_outcome_that_cannot_be_recorded_is_never_sent_again_while_the_fault_lasts() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let dirs = queue_some(port, home.path(), 1);
    let outbox = outbox_dir(home.path());
    let id = dirs[0]
        .file_name()
        .expect("id")
        .to_string_lossy()
        .into_owned();
    let long = format!("{id}-{}", "f".repeat(250 - id.len() - 1));
    let entry = outbox.join(&long);
    std::fs::rename(&dirs[0], &entry).expect("rename to a long id");
    let hook_entry = entry.clone();
    let server = TestServer::start_on(
        with_auth(Behaviour {
            fault_sessions: Some(1),
            before_data_reply: Some(crate::support::server::Hook(std::sync::Arc::new(
                move || {
                    std::fs::create_dir_all(hook_entry.join(".meta.json.tmp")).expect("mkdir");
                },
            ))),
            ..Behaviour::default()
        }),
        port,
    );
    let first = flush(port, home.path(), &["--all"]).expect(75);
    assert!(
        first
            .stderr()
            .contains("could not be removed (nor marked done"),
        "{}",
        first.stderr()
    );
    assert_eq!(message_ids(&server).len(), 1);
    // cron keeps running flush while the fault lasts.
    for _ in 0..3 {
        let again = flush(port, home.path(), &["--all"]).expect(75);
        assert!(
            again.stderr().contains("not sent"),
            "says why it is held back: {}",
            again.stderr()
        );
    }
    assert_eq!(
        message_ids(&server).len(),
        1,
        "not sent again while its outcome cannot be recorded"
    );
    // Repaired: the one known duplicate window (its outcome was never
    // recorded) is sent once more, with a warning, and then it is done.
    std::fs::remove_dir(entry.join(".meta.json.tmp")).expect("repair");
    std::fs::rename(&entry, &dirs[0]).expect("rename back");
    let repaired = flush(port, home.path(), &["--all"]).expect(0);
    assert!(
        repaired.stderr().contains("may get it twice"),
        "{}",
        repaired.stderr()
    );
    assert_eq!(message_ids(&server).len(), 2, "once more, not more");
    assert_eq!(outbox_list(port, home.path()), "");
    flush(port, home.path(), &["--all"]).expect(0);
    assert_eq!(message_ids(&server).len(), 2);
}

/// An entry that names nobody and records no outcome (a hand-edited or
/// corrupted meta.json) is damaged: never said to be delivered, never
/// removed, and reported by `flush` and `list` in their exit code.
#[test]
fn an_entry_with_no_recipient_and_no_outcome_is_damaged_not_delivered() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let dirs = queue_some(port, home.path(), 1);
    let path = dirs[0].join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("meta")).expect("JSON");
    meta["recipients"] = serde_json::json!([]);
    meta["delivered"] = serde_json::json!([]);
    std::fs::write(&path, serde_json::to_vec(&meta).expect("JSON")).expect("write");
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    let run = flush(port, home.path(), &["--all", "-v"]).expect(65);
    assert!(!run.stderr().contains("delivered ("), "{}", run.stderr());
    assert!(run.stderr().contains("damaged"), "{}", run.stderr());
    assert!(dirs[0].join("message.eml").is_file(), "kept for a human");
    assert!(server.sessions().iter().all(|s| s.transactions.is_empty()));
    let list = at(port, home.path())
        .args(["outbox", "list"])
        .run()
        .expect(65);
    let id = dirs[0]
        .file_name()
        .expect("id")
        .to_string_lossy()
        .into_owned();
    assert!(
        list.stdout().contains(&format!("{id}  damaged  ")),
        "{}",
        list.stdout()
    );
}

/// A FIFO or a directory where `.lock` goes is refused like any other
/// untrusted file of the outbox (78), not taken for a passing fault.
#[test]
fn a_lock_that_is_not_a_regular_file_is_refused() {
    for kind in ["fifo", "dir"] {
        let home = tempfile::tempdir().expect("home");
        let port = free_port();
        queue_some(port, home.path(), 1);
        let lock = outbox_dir(home.path()).join(".lock");
        match kind {
            "fifo" => {
                let made = std::process::Command::new("mkfifo")
                    .arg("-m600")
                    .arg(&lock)
                    .status()
                    .expect("mkfifo");
                assert!(made.success());
            }
            _ => std::fs::create_dir(&lock).expect("mkdir"),
        }
        let server = TestServer::start_on(with_auth(Behaviour::default()), port);
        flush(port, home.path(), &["--all"])
            .expect(78)
            .error_mentions("not a regular file");
        assert!(server.sessions().is_empty(), "{kind}");
    }
}

/// A directory above the outbox that others can write (without the
/// sticky bit) would let them swap the outbox: refused (78), nothing
/// sent; with the sticky bit, as /tmp has, it is fine.
#[test]
fn an_outbox_under_a_directory_others_can_write_is_refused() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let dirs = queue_some(port, home.path(), 1);
    let state = home.path().join(".local/state");
    chmod(&state, 0o777);
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    flush(port, home.path(), &["--all"])
        .expect(78)
        .error_mentions("could be swapped");
    at(port, home.path())
        .args(["outbox", "list"])
        .run()
        .expect(78);
    assert!(server.sessions().is_empty());
    assert!(dirs[0].join("message.eml").is_file());
    chmod(&state, 0o1777);
    flush(port, home.path(), &["--all"]).expect(0);
    assert_eq!(message_ids(&server).len(), 1);
}

/// A 421 to an all-or-nothing message ends the session: that message
/// waits, and a new session takes the others (they are not charged with
/// the 421 without ever being sent).
#[test]
fn a_421_to_an_all_or_nothing_message_ends_the_session_not_the_others() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    for _ in 0..3 {
        at(port, home.path())
            .args(["--queue", "--all-or-nothing"])
            .args(send_args())
            .run()
            .expect(0);
    }
    let server = TestServer::start_on(
        with_auth(Behaviour {
            mail_reply: Some("421 4.7.0 try again later, closing".into()),
            fault_sessions: Some(1),
            ..Behaviour::default()
        }),
        port,
    );
    flush(port, home.path(), &["--all"]).expect(75);
    let sessions = server.wait_sessions(2, std::time::Duration::from_secs(20));
    let mails = |s: &crate::support::server::Session| {
        s.lines().iter().filter(|l| l.starts_with("MAIL")).count()
    };
    assert_eq!(mails(&sessions[0]), 1, "{:?}", sessions[0].lines());
    assert_eq!(message_ids(&server).len(), 2);
    assert_eq!(outbox_list(port, home.path()).lines().count(), 1);
}

/// A message composed in a spool file (an attachment over the in-memory
/// limit) is queued whole, and the flush sends exactly the bytes queued.
#[test]
fn a_large_spooled_message_is_queued_whole_and_flushed_byte_for_byte() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let m = at(port, home.path());
    let bytes: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let big = m.file("big.bin", &bytes);
    at(port, home.path())
        .args(["--queue"])
        .args(send_args())
        .args(["--attach"])
        .args([&big])
        .run()
        .expect(0);
    let outbox = home.path().join(".local/state/mailsend/outbox");
    let entry = std::fs::read_dir(&outbox)
        .expect("outbox")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("meta.json").is_file())
        .expect("an entry");
    let queued = std::fs::read(entry.join("message.eml")).expect("message file");
    assert!(queued.len() > 4_000_000, "{} bytes queued", queued.len());
    assert!(attachment(&queued, "big.bin") == bytes);

    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    flush(port, home.path(), &[]).expect(0);
    let tx = only_transaction(&server);
    assert!(tx.data == queued, "the flush sends the queued bytes");
}

/// `outbox flush --json`: one object per entry as it is settled (sent,
/// deferred, failed), then the counts; the human error lines stay on
/// stderr.
#[test]
fn flush_json_reports_each_entry_and_a_summary() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let mut ids = HashMap::new();
    for to in ["a@example.com", "b@example.com", "c@example.com"] {
        let run = at(port, home.path())
            .args(["--queue", "--json", "--to", to, "--body", "x"])
            .run()
            .expect(0);
        let json: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
        ids.insert(json["queued"].as_str().expect("id").to_owned(), to);
    }
    let _server = TestServer::start_on(
        with_auth(Behaviour {
            rcpt_replies: vec![
                ("b@example.com".into(), "451 4.3.0 try later".into()),
                ("c@example.com".into(), "550 5.1.1 no such user".into()),
            ],
            ..Behaviour::default()
        }),
        port,
    );
    let run = flush(port, home.path(), &["--json"]).expect(69);
    let lines: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout());
    let mut seen = HashMap::new();
    for line in &lines[..3] {
        let to = ids[line["id"].as_str().expect("id")];
        assert!(
            line["message_id"]
                .as_str()
                .is_some_and(|m| m.starts_with('<'))
        );
        seen.insert(to, line.clone());
    }
    assert_eq!(seen["a@example.com"]["status"], "sent");
    assert!(
        seen["a@example.com"]["reply"]
            .as_str()
            .is_some_and(|r| r.starts_with("250"))
    );
    assert_eq!(seen["b@example.com"]["status"], "deferred");
    assert!(
        seen["b@example.com"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("451 4.3.0"))
    );
    assert_eq!(seen["c@example.com"]["status"], "failed");
    assert!(
        seen["c@example.com"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("550 5.1.1"))
    );
    assert_eq!(
        lines[3],
        serde_json::json!({"summary": {"sent": 1, "deferred": 1, "failed": 1, "error": 0}})
    );
    assert!(
        run.stderr().contains("moved to failed/"),
        "{}",
        run.stderr()
    );
}

/// A low limit on open files (`ulimit -n 64`, the chunk size, and 32)
/// shortens the chunks: every message goes, once, and the flush exits 0.
#[test]
fn flush_under_a_low_open_files_limit_sends_everything_once() {
    const MESSAGES: usize = 90;
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    let mut queued = Vec::new();
    for limit in [64, 32] {
        // Queued while the server is elsewhere (nothing listens on 1).
        for i in 0..MESSAGES {
            let run = at(1, home.path())
                .args(["--queue", "--json", "--to", "a@example.com", "--body"])
                .args([format!("{limit} {i}")])
                .run()
                .expect(0);
            let json: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
            queued.push(json["message_id"].as_str().expect("id").to_owned());
        }
        let before = message_ids(&server).len();
        let mut flush = at(port, home.path());
        let run = flush
            .open_files_limit(limit)
            .args(["outbox", "flush", "--all", "--json"])
            .run();
        assert_eq!(run.code(), 0, "ulimit -n {limit}: {}", run.stderr());
        assert_eq!(outbox_list(port, home.path()), "", "ulimit -n {limit}");
        assert_eq!(
            message_ids(&server).len() - before,
            MESSAGES,
            "ulimit -n {limit}"
        );
        let sent = run
            .stdout()
            .lines()
            .filter(|l| l.contains("\"status\":\"sent\""))
            .count();
        assert_eq!(sent, MESSAGES, "ulimit -n {limit}");
    }
    let mut delivered = message_ids(&server);
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 2 * MESSAGES, "none twice");
    assert!(queued.iter().all(|id| delivered.contains(id)));
}

/// The JSON lines of a flush: every object, the summary last.
fn flush_lines(run: &crate::support::cmd::Run) -> Vec<serde_json::Value> {
    run.stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("only JSON on stdout"))
        .collect()
}

/// The ids of the queued entries, in the order they were queued.
fn queued_ids(port: u16, home: &Path, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let run = at(port, home)
                .args(["--queue", "--json", "--to", "a@example.com", "--body"])
                .args([format!("m{i}")])
                .run()
                .expect(0);
            let json: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
            json["queued"].as_str().expect("id").to_owned()
        })
        .collect()
}

/// A server nobody can reach: every due entry has its line (deferred), not
/// only the one whose attempt was counted; stderr is the same as without
/// --json.
#[test]
fn flush_json_has_a_line_for_every_entry_left_waiting_by_a_failed_session() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let ids = queued_ids(port, home.path(), 3);
    let run = flush(port, home.path(), &["--all", "--json"]).expect(75);
    let lines = flush_lines(&run);
    assert_eq!(lines.len(), 4, "{}", run.stdout());
    let mut seen: Vec<&str> = lines[..3]
        .iter()
        .map(|l| {
            assert_eq!(l["status"], "deferred", "{l}");
            assert!(
                l["error"].as_str().is_some_and(|e| e.contains("connect")),
                "{l}"
            );
            l["id"].as_str().expect("id")
        })
        .collect();
    seen.sort();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(lines[3]["summary"]["deferred"], 3);
    let human = flush(port, home.path(), &["--all"]).expect(75);
    assert_eq!(human.stderr(), run.stderr());
}

/// A damaged entry (its meta.json unreadable as JSON) has an `error` line
/// (message_id null: it cannot be read), counted in the summary, whose
/// keys come in the documented order.
#[test]
fn flush_json_reports_a_damaged_entry() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let ids = queued_ids(port, home.path(), 2);
    let outbox = home.path().join(".local/state/mailsend/outbox");
    std::fs::write(outbox.join(&ids[0]).join("meta.json"), "{").expect("damage");
    let _server = TestServer::start_on(with_auth(Behaviour::default()), port);
    let run = flush(port, home.path(), &["--all", "--json"]).expect(65);
    let lines = flush_lines(&run);
    assert_eq!(lines.len(), 3, "{}", run.stdout());
    let damaged: Vec<_> = lines
        .iter()
        .filter(|l| l["id"] == ids[0].as_str())
        .collect();
    assert_eq!(damaged.len(), 1, "{}", run.stdout());
    assert_eq!(damaged[0]["status"], "error");
    assert!(damaged[0]["message_id"].is_null());
    assert!(
        damaged[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("damaged"))
    );
    assert_eq!(
        run.stdout().lines().last(),
        Some(r#"{"summary":{"sent":1,"deferred":0,"failed":0,"error":1}}"#)
    );
}

/// A message refused for good whose move to failed/ fails: one line, the
/// error (it was not moved), not "failed" and then "error".
#[test]
fn flush_json_reports_an_entry_once_when_its_move_to_failed_fails() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let ids = queued_ids(port, home.path(), 1);
    let outbox = home.path().join(".local/state/mailsend/outbox");
    // Something already at its place in failed/: the rename fails.
    std::fs::create_dir_all(outbox.join("failed").join(&ids[0]).join("x")).expect("mkdir");
    let _server = TestServer::start_on(
        with_auth(Behaviour {
            mail_reply: Some("550 5.7.1 not you".into()),
            ..Behaviour::default()
        }),
        port,
    );
    let run = flush(port, home.path(), &["--all", "--json"]);
    let lines = flush_lines(&run);
    assert_eq!(lines.len(), 2, "{}", run.stdout());
    assert_eq!(lines[0]["id"], ids[0].as_str());
    assert_eq!(lines[0]["status"], "error", "{}", run.stdout());
    assert_eq!(lines[1]["summary"]["failed"], 0);
    assert_eq!(lines[1]["summary"]["error"], 1);
    assert!(
        !run.stderr().contains("moved to failed/"),
        "{}",
        run.stderr()
    );
    assert!(outbox.join(&ids[0]).is_dir(), "still queued");
}

/// `outbox flush --json | head -1`: a reader gone is said once, not once
/// per entry; every message is still sent and the code is 0.
#[test]
fn flush_json_into_a_closed_pipe_warns_once() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    queued_ids(port, home.path(), 5);
    let server = TestServer::start_on(with_auth(Behaviour::default()), port);
    let mut child = at(port, home.path())
        .args(["outbox", "flush", "--all", "--json"])
        .spawn_with(std::process::Stdio::piped(), std::process::Stdio::piped());
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("cannot write the result to stdout").count(),
        1,
        "{stderr}"
    );
    assert_eq!(message_ids(&server).len(), 5);
    assert_eq!(outbox_list(port, home.path()), "");
}

/// Messages for an account no longer in the config file wait: one error
/// line for all of them on stderr, with -v too (no "still queued" per
/// message), and a `deferred` line each in JSON.
#[test]
fn flush_json_reports_messages_for_an_unknown_account_once_on_stderr() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().expect("home");
    let config = home.path().join("config.toml");
    let account = |name: &str| {
        format!(
            "[accounts.{name}]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nfrom = \"me@example.com\"\n"
        )
    };
    let write = |text: String| {
        std::fs::write(&config, text).expect("config");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    };
    write(account("kept") + &account("gone"));
    let mut ids = Vec::new();
    for _ in 0..2 {
        let run = Mailsend::bare()
            .home(home.path())
            .env_os("MAILSEND_CONFIG", &config)
            .args([
                "--account",
                "gone",
                "--queue",
                "--json",
                "--to",
                "a@example.com",
                "--body",
                "x",
            ])
            .run()
            .expect(0);
        let json: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("JSON");
        ids.push(json["queued"].as_str().expect("id").to_owned());
    }
    write(account("kept"));
    let run = Mailsend::bare()
        .home(home.path())
        .env_os("MAILSEND_CONFIG", &config)
        .args(["outbox", "flush", "--all", "--json", "-v"])
        .run();
    assert_eq!(run.stderr().lines().count(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("2 messages for gone wait"),
        "{}",
        run.stderr()
    );
    let lines = flush_lines(&run);
    assert_eq!(lines.len(), 3, "{}", run.stdout());
    for line in &lines[..2] {
        assert!(ids.iter().any(|id| line["id"] == id.as_str()), "{line}");
        assert_eq!(line["status"], "deferred");
    }
    assert_eq!(lines[2]["summary"]["deferred"], 2);
}

/// A server that breaks the protocol on a message (a 3xx where a 2xx is
/// due, or a 250 to DATA) has not refused that message: the entry stays
/// queued (76), as after any other broken session, and a later flush sends
/// it; it is not moved to `failed/` for `outbox retry` to rescue (review J1).
#[test]
fn a_broken_reply_to_one_message_keeps_it_queued() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    queue_some(port, home.path(), 2);
    let server = TestServer::start_on(
        with_auth(Behaviour {
            mail_reply: Some("354 go ahead".into()),
            fault_sessions: Some(1),
            ..Behaviour::default()
        }),
        port,
    );
    let run = at(port, home.path())
        .args(["outbox", "flush", "--all", "--json"])
        .run()
        .expect(76);
    assert!(
        !run.stderr().contains("moved to failed/"),
        "{}",
        run.stderr()
    );
    let outbox = home.path().join(".local/state/mailsend/outbox");
    let failed = std::fs::read_dir(outbox.join("failed"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(failed, 0, "{}", run.stdout());
    assert!(!outbox_list(port, home.path()).contains("failed"));
    at(port, home.path())
        .args(["outbox", "flush", "--all"])
        .run()
        .expect(0);
    assert_eq!(message_ids(&server).len(), 2);
}
