//! Campaigns (`mailsend bulk`) sent: sessions reused, every row once, the
//! journal making a second run send only what is left.

use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::support::cmd::{Mailsend, Run};

/// A list of `n` rows: `user{i}@example.com`, name `User {i}`.
fn list(n: usize) -> String {
    let mut text = String::from("email,name\n");
    for i in 1..=n {
        text.push_str(&format!("user{i}@example.com,User {i}\n"));
    }
    text
}

/// `mailsend bulk` for `server` in `dir` (list.csv there), plus `extra`.
fn bulk(server_port: u16, dir: &Path, extra: &[&str]) -> Run {
    let mut m = Mailsend::to_port(server_port);
    m.home(dir)
        .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
        .args(["--subject", "Hello {{ name }}", "--body", "Dear {{ name }}"])
        .args(["--unsubscribe-url", "https://example.com/u?e={{ email }}"])
        .args(["--yes", "--json"])
        .args(extra);
    m.run()
}

/// A submission server that refuses user2@example.com for good.
fn refusing_user2() -> TestServer {
    TestServer::start(with_auth(Behaviour {
        rcpt_replies: vec![("user2@example.com".into(), "550 5.1.1 no such user".into())],
        ..Behaviour::default()
    }))
}

/// The JSON lines of a run: the row objects by row number, and the summary.
fn results(run: &Run) -> (HashMap<u64, serde_json::Value>, serde_json::Value) {
    let mut rows = HashMap::new();
    let mut summary = serde_json::Value::Null;
    for line in run.stdout().lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        match value.get("summary") {
            Some(s) => summary = s.clone(),
            None => {
                let row = value["row"].as_u64().expect("row");
                assert!(rows.insert(row, value).is_none(), "row {row} twice");
            }
        }
    }
    (rows, summary)
}

/// Every recipient the server got a message for, with how many times.
fn delivered(server: &TestServer) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for session in server.sessions() {
        for tx in session
            .transactions
            .iter()
            .filter(|t| t.reply.starts_with("250"))
        {
            for rcpt in &tx.rcpt_to {
                *seen.entry(rcpt.clone()).or_default() += 1;
            }
        }
    }
    seen
}

#[test]
fn a_campaign_goes_out_once_per_row_over_reused_sessions_and_resumes() {
    let server = submission();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(40)).expect("list");
    let run = bulk(server.port(), dir.path(), &["--concurrency", "2"]).expect(0);
    let (rows, summary) = results(&run);
    assert_eq!(rows.len(), 40);
    assert_eq!(summary["sent"], 40, "{summary}");
    assert!(rows.values().all(|r| r["status"] == "sent"));
    let seen = delivered(&server);
    assert_eq!(seen.len(), 40);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    let sessions = server.sessions();
    assert!(sessions.len() <= 2, "{} sessions", sessions.len());
    // Each message: its own row's name, only its own recipient in To.
    for tx in sessions.iter().flat_map(|s| &s.transactions) {
        let rcpt = &tx.rcpt_to[0];
        let i = rcpt
            .trim_start_matches("user")
            .trim_end_matches("@example.com");
        assert_eq!(
            header(&tx.data, "subject").as_deref(),
            Some(&*format!("Hello User {i}"))
        );
        assert_eq!(header(&tx.data, "to").as_deref(), Some(rcpt.as_str()));
        assert!(header(&tx.data, "list-unsubscribe-post").is_some());
    }
    let journal = std::fs::read_to_string(dir.path().join("list.csv.journal")).expect("journal");
    assert_eq!(journal.lines().count(), 41, "a head and one line per row");

    // The same command again: nothing left to send.
    let again = bulk(server.port(), dir.path(), &["--concurrency", "2"]).expect(0);
    let (_, summary) = results(&again);
    assert_eq!(summary["skipped"], 40, "{summary}");
    assert_eq!(summary["sent"], 0);
    assert_eq!(delivered(&server).values().sum::<usize>(), 40);
}

#[test]
fn limit_sends_the_next_rows_and_refusals_are_settled_or_deferred() {
    let server = TestServer::start(with_auth(Behaviour {
        rcpt_replies: vec![
            ("user2@example.com".into(), "550 5.1.1 no such user".into()),
            ("user3@example.com".into(), "451 4.7.1 try later".into()),
        ],
        ..Behaviour::default()
    }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(6)).expect("list");
    let run = bulk(
        server.port(),
        dir.path(),
        &["--limit", "4", "--retry-for", "1s"],
    )
    .expect(75);
    let (rows, summary) = results(&run);
    assert_eq!(rows[&1]["status"], "sent");
    assert_eq!(rows[&2]["status"], "refused");
    assert!(
        rows[&2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("550 5.1.1"))
    );
    assert_eq!(rows[&3]["status"], "deferred");
    assert_eq!(rows[&4]["status"], "sent");
    assert!(!rows.contains_key(&5), "--limit 4");
    assert_eq!(summary["deferred"], 1);
    assert!(run.stderr().contains("row 2"), "{}", run.stderr());

    // Next run: rows 1, 2 and 4 are settled; 3 is tried again, 5 and 6 go.
    let again = bulk(server.port(), dir.path(), &["--retry-for", "1s"]).expect(75);
    let (rows, summary) = results(&again);
    assert_eq!(summary["skipped"], 3, "{summary}");
    assert_eq!(rows[&3]["status"], "deferred");
    assert_eq!(rows[&5]["status"], "sent");
    assert_eq!(rows[&6]["status"], "sent");
    let seen = delivered(&server);
    for i in [1, 4, 5, 6] {
        assert_eq!(seen[&format!("user{i}@example.com")], 1, "{seen:?}");
    }
}

#[test]
fn a_refused_login_stops_the_campaign_with_77_and_settles_nothing() {
    let server = submission();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(5)).expect("list");
    let mut m = Mailsend::to(&server);
    m.home(dir.path())
        .env("MAILSEND_PASSWORD", "wrong password")
        .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
        .args(["--body", "x", "--yes", "--json"]);
    let run = m.run().expect(77);
    assert!(delivered(&server).is_empty());
    // Every row still gets its JSON line (deferred: the next run sends
    // it), and stderr one error for the run, not one per row.
    let (rows, summary) = results(&run);
    assert_eq!(rows.len(), 5, "{}", run.stdout());
    assert!(rows.values().all(|r| r["status"] == "deferred"), "{rows:?}");
    assert_eq!(rows[&3]["to"], "user3@example.com", "{rows:?}");
    assert_eq!(summary["deferred"], 5, "{summary}");
    assert_eq!(
        run.stderr().matches("mailsend: error:").count(),
        1,
        "{}",
        run.stderr()
    );
    let journal = std::fs::read_to_string(dir.path().join("list.csv.journal")).expect("journal");
    assert_eq!(journal.lines().count(), 1, "only the head: {journal}");
}

/// `--rate` holds over the whole run, across connections: 12 messages at
/// 20/s over 3 connections take at least 11 intervals.
#[test]
fn the_rate_holds_across_connections() {
    let server = submission();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(12)).expect("list");
    let started = std::time::Instant::now();
    bulk(
        server.port(),
        dir.path(),
        &["--rate", "20/s", "--concurrency", "3"],
    )
    .expect(0);
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(550), "{took:?}");
    assert_eq!(delivered(&server).len(), 12);
}

/// `kill -9` at random points (and right after a delivery), then the same
/// command again until it completes: every row arrives, and a row arrives
/// twice only when its 250 raced a kill (at most one per connection per
/// kill).
#[test]
fn a_campaign_survives_kill_9_and_sends_each_row_once() {
    const ROWS: usize = 1000;
    const CONCURRENCY: usize = 2;
    let server = submission();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(ROWS)).expect("list");
    let command = |m: &mut Mailsend| {
        m.home(dir.path())
            .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
            .args(["--body", "Dear {{ name }}", "--yes", "--concurrency", "2"])
            .args(["--unsubscribe-mailto", "u@example.com"]);
    };
    let total = |server: &TestServer| delivered(server).values().sum::<usize>();
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut kills = 0;
    while kills < 25 && total(&server) < ROWS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let before = total(&server);
        let mut m = Mailsend::to(&server);
        command(&mut m);
        let mut child = m.spawn();
        if rng.is_multiple_of(2) {
            std::thread::sleep(std::time::Duration::from_micros(rng % 150_000));
        } else {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while total(&server) == before && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        kills += 1;
    }
    let mut m = Mailsend::to(&server);
    command(&mut m);
    m.run().expect(0);
    let seen = delivered(&server);
    let missing: Vec<usize> = (1..=ROWS)
        .filter(|i| !seen.contains_key(&format!("user{i}@example.com")))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("bulk kill -9 test: {ROWS} rows, {kills} kills, {duplicates} duplicates");
    assert!(kills >= 5, "only {kills} kills: too few to mean much");
    assert!(
        duplicates <= kills * CONCURRENCY,
        "{duplicates} duplicates after {kills} kills"
    );
}

/// Three shards of one list, each with its own journal, as three hosts
/// would run them: every row delivered exactly once.
#[test]
fn three_shards_deliver_every_row_exactly_once() {
    let server = submission();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(31)).expect("list");
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let journal = format!("shard{k}.journal");
        let run = bulk(
            server.port(),
            dir.path(),
            &["--shard", &shard, "--journal", &journal],
        )
        .expect(0);
        let (rows, _) = results(&run);
        assert!(
            rows.keys().all(|r| r % 3 == k - 1),
            "shard {k}: {:?}",
            rows.keys()
        );
    }
    let seen = delivered(&server);
    assert_eq!(seen.len(), 31);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
}

/// A plain SMTP sink for campaigns (PIPELINING, many connections) that can
/// refuse connections beyond `max_sessions` with a 421 greeting, and end
/// one session with a 421 in place of the `close_at`-th end-of-data reply
/// (that message not accepted), as a throttling server does; with
/// `per_session`, each session takes that many messages, then answers the
/// next MAIL with a 421 and closes (a per-connection message limit).
struct Sink {
    port: u16,
    state: std::sync::Arc<std::sync::Mutex<SinkState>>,
}

#[derive(Default)]
struct SinkState {
    delivered: Vec<String>,
    /// When each message was accepted (its 250 sent).
    accepted_at: Vec<std::time::Instant>,
    sessions: usize,
    refused: usize,
    open: usize,
    ends: usize,
}

impl Sink {
    fn start(max_sessions: usize, close_at: Option<usize>) -> Sink {
        Sink::start_with(max_sessions, close_at, None)
    }

    fn start_with(
        max_sessions: usize,
        close_at: Option<usize>,
        per_session: Option<usize>,
    ) -> Sink {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(SinkState::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    let mut out = stream.try_clone().expect("clone");
                    {
                        let mut s = state.lock().expect("lock");
                        if s.open >= max_sessions {
                            s.refused += 1;
                            let _ = out.write_all(b"421 4.7.0 too many connections\r\n");
                            return;
                        }
                        s.open += 1;
                        s.sessions += 1;
                    }
                    let _ = out.write_all(b"220 sink ESMTP\r\n");
                    let mut reader = BufReader::new(stream);
                    let mut rcpts = Vec::new();
                    let mut taken = 0;
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 {
                        let cmd = line.trim_end().to_ascii_uppercase();
                        let reply: &[u8] = if cmd.starts_with("EHLO") {
                            b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                        } else if cmd.starts_with("RCPT TO:<") {
                            rcpts.push(line.trim_end()[9..].trim_end_matches('>').to_owned());
                            b"250 ok\r\n"
                        } else if cmd == "DATA" {
                            let _ = out.write_all(b"354 go\r\n");
                            let mut data = String::new();
                            while reader.read_line(&mut data).unwrap_or(0) > 0 && data != ".\r\n" {
                                data.clear();
                            }
                            let mut s = state.lock().expect("lock");
                            s.ends += 1;
                            if Some(s.ends) == close_at {
                                let _ = out.write_all(b"421 4.7.0 slow down\r\n");
                                break;
                            }
                            s.delivered.append(&mut rcpts);
                            s.accepted_at.push(std::time::Instant::now());
                            taken += 1;
                            b"250 queued\r\n"
                        } else if cmd.starts_with("MAIL") && per_session.is_some_and(|n| taken >= n)
                        {
                            let _ =
                                out.write_all(b"421 4.7.0 too many messages in this session\r\n");
                            break;
                        } else if cmd == "QUIT" {
                            let _ = out.write_all(b"221 bye\r\n");
                            break;
                        } else {
                            if cmd.starts_with("MAIL") || cmd == "RSET" {
                                rcpts.clear();
                            }
                            b"250 ok\r\n"
                        };
                        let _ = out.write_all(reply);
                        line.clear();
                    }
                    state.lock().expect("lock").open -= 1;
                });
            }
        });
        Sink { port, state }
    }

    /// How many times each address was accepted.
    fn counts(&self) -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for rcpt in &self.state.lock().expect("lock").delivered {
            *seen.entry(rcpt.clone()).or_default() += 1;
        }
        seen
    }
}

/// `mailsend bulk` against a plain sink, no login.
fn bulk_plain(port: u16, dir: &Path, extra: &[&str]) -> Run {
    let mut m = Mailsend::bare();
    m.home(dir)
        .env("MAILSEND_HOST", "127.0.0.1")
        .env("MAILSEND_PORT", &port.to_string())
        .env("MAILSEND_TLS", "none")
        .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
        .args(["--body", "Dear {{ name }}", "--yes", "--json"])
        .args(["--unsubscribe-mailto", "u@example.com"])
        .args(extra);
    m.run()
}

/// A server that takes two connections at a time gets two: the others
/// are refused with a 421 greeting and the run goes on without them.
#[test]
fn a_server_that_limits_connections_gets_fewer_not_errors() {
    let sink = Sink::start(2, None);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(40)).expect("list");
    let run = bulk_plain(sink.port, dir.path(), &["--concurrency", "4"]).expect(0);
    let seen = sink.counts();
    assert_eq!(seen.len(), 40, "{}", run.stderr());
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    let state = sink.state.lock().expect("lock");
    assert!(state.refused >= 1, "the limit was reached");
    assert!(!run.stderr().contains("error"), "{}", run.stderr());
}

/// A 421 in place of an end-of-data reply: that message was not taken;
/// the run reconnects and sends it again, and every row arrives once.
#[test]
fn a_421_mid_campaign_reconnects_and_skips_no_row() {
    let sink = Sink::start(10, Some(7));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(30)).expect("list");
    let run = bulk_plain(sink.port, dir.path(), &["--concurrency", "1"]).expect(0);
    let (rows, summary) = results(&run);
    assert_eq!(summary["sent"], 30, "{}", run.stderr());
    assert!(rows.values().all(|r| r["status"] == "sent"));
    let seen = sink.counts();
    assert_eq!(seen.len(), 30);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert!(
        sink.state.lock().expect("lock").sessions >= 2,
        "it reconnected"
    );
}

/// `--rate` paces when messages are accepted, not only when their
/// envelopes leave: a pipelined message's content is not held back for
/// the next message's slot (the last two would then be accepted together).
#[test]
fn the_rate_paces_each_acceptance() {
    let sink = Sink::start(10, None);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(5)).expect("list");
    bulk_plain(
        sink.port,
        dir.path(),
        &["--rate", "5/s", "--concurrency", "1"],
    )
    .expect(0);
    let times = sink.state.lock().expect("lock").accepted_at.clone();
    assert_eq!(times.len(), 5);
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= std::time::Duration::from_millis(150),
            "{gap:?} between two acceptances"
        );
    }
}

/// A server that answers every MAIL FROM with 421 (a daily quota, say):
/// the run gives up once `--retry-for` is over, exit 75, and says every
/// row it could not send as deferred, instead of reconnecting forever.
#[test]
fn a_server_that_always_says_421_ends_the_run_deferred_when_retry_for_is_over() {
    let server = TestServer::start(with_auth(Behaviour {
        mail_reply: Some("421 4.7.0 too many messages, try tomorrow".into()),
        ..Behaviour::default()
    }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(20)).expect("list");
    let started = std::time::Instant::now();
    let run = bulk(
        server.port(),
        dir.path(),
        &["--concurrency", "2", "--retry-for", "2s"],
    )
    .expect(75);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let (rows, summary) = results(&run);
    assert_eq!(rows.len(), 20, "one line per row: {}", run.stdout());
    assert!(rows.values().all(|r| r["status"] == "deferred"), "{rows:?}");
    assert_eq!(summary["deferred"], 20, "{summary}");
    assert_eq!(delivered(&server).len(), 0);
    let journal = std::fs::read_to_string(dir.path().join("list.csv.journal")).expect("journal");
    assert_eq!(journal.lines().count(), 1, "only the head: {journal}");
}

/// A journal that cannot be created where it was asked (a directory, a
/// missing directory) is a setting to fix (78), not a failure that
/// passes (75: "run again" would fail alike); nothing is sent.
#[test]
fn a_journal_path_that_cannot_be_a_file_is_a_configuration_error() {
    let server = submission();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(2)).expect("list");
    std::fs::create_dir(dir.path().join("adir")).expect("dir");
    for journal in ["adir", "missing/list.journal"] {
        let run = bulk(server.port(), dir.path(), &["--journal", journal]).expect(78);
        assert!(run.stderr().contains("--journal"), "{}", run.stderr());
    }
    assert!(delivered(&server).is_empty());
}

/// `--retry-for 0s` means no retry at all (it used to mean the campaign's
/// default of 10 minutes, the flag's "not given"): the first 421 defers
/// every row at once.
#[test]
fn retry_for_zero_defers_at_the_first_temporary_refusal() {
    let server = TestServer::start(with_auth(Behaviour {
        mail_reply: Some("421 4.7.0 too many messages, try tomorrow".into()),
        ..Behaviour::default()
    }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(6)).expect("list");
    let started = std::time::Instant::now();
    let run = bulk(server.port(), dir.path(), &["--retry-for", "0s"]).expect(75);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let (rows, summary) = results(&run);
    assert_eq!(summary["deferred"], 6, "{summary}");
    assert!(rows.values().all(|r| r["status"] == "deferred"), "{rows:?}");
}

/// A row refused for good in an earlier run is not sent: running the
/// campaign again does not say "every row sent" (0) but 65, and 69 when
/// every row was refused (now or before).
#[test]
fn a_rerun_after_rows_were_refused_for_good_does_not_exit_0() {
    let server = refusing_user2();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(3)).expect("list");
    bulk(server.port(), dir.path(), &[]).expect(65);
    let again = bulk(server.port(), dir.path(), &[]).expect(65);
    let (rows, summary) = results(&again);
    assert_eq!(summary["skipped"], 3, "{summary}");
    assert!(rows.values().all(|r| r["status"] == "skipped"), "{rows:?}");
    assert_eq!(rows[&2]["to"], "user2@example.com", "{rows:?}");
    assert_eq!(delivered(&server).len(), 2);

    let all_refused = TestServer::start(with_auth(Behaviour {
        rcpt_replies: vec![("user1@example.com".into(), "550 5.1.1 no such user".into())],
        ..Behaviour::default()
    }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(1)).expect("list");
    bulk(all_refused.port(), dir.path(), &[]).expect(69);
    bulk(all_refused.port(), dir.path(), &[]).expect(69);
}

/// `--retry-for` is each row's time to be retried, not a clock started
/// with the run: a row refused for now late in a long campaign is tried
/// again, not deferred at once.
#[test]
fn a_row_refused_for_now_late_in_the_run_is_still_retried() {
    let server = TestServer::start(with_auth(Behaviour {
        rcpt_replies: vec![("user6@example.com".into(), "451 4.7.1 try later".into())],
        ..Behaviour::default()
    }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(6)).expect("list");
    // At 2/s, row 6 first goes out 2.5 s after the start, past a run-wide
    // 2 s; its own 2 s leave room for a retry (the first after ~1 s).
    let run = bulk(
        server.port(),
        dir.path(),
        &["--rate", "2/s", "--concurrency", "1", "--retry-for", "2s"],
    )
    .expect(75);
    let (rows, _) = results(&run);
    assert_eq!(rows[&6]["status"], "deferred");
    let tries = server
        .sessions()
        .iter()
        .flat_map(|s| &s.transactions)
        .filter(|t| t.rcpt_refused.iter().any(|r| r == "user6@example.com"))
        .count();
    assert!(tries >= 2, "row 6 tried {tries} time(s)");
}

/// A campaign with nothing left to send connects nowhere: no session,
/// no login, and no wait for a server that is down.
#[test]
fn a_campaign_with_nothing_left_connects_nowhere() {
    let server = submission();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(3)).expect("list");
    bulk(server.port(), dir.path(), &[]).expect(0);
    let sessions = server.sessions().len();
    let again = bulk(server.port(), dir.path(), &[]).expect(0);
    assert_eq!(results(&again).1["skipped"], 3);
    assert_eq!(server.sessions().len(), sessions, "no new session");
    // The server gone: still nothing to do, 0 at once.
    let port = server.port();
    drop(server);
    let started = std::time::Instant::now();
    bulk(port, dir.path(), &["--retry-for", "20s"]).expect(0);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// A journal that cannot be written (here: a file size limit; a full
/// disk alike) stops the run with 75; every row has its line: the rows
/// recorded as sent, and the others deferred, including those the
/// server accepted but the journal could not record (the next run sends
/// them again). No row is counted as sent unless it is in the journal.
#[test]
fn a_journal_that_cannot_be_written_stops_the_run_and_every_row_is_said() {
    let server = submission();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(40)).expect("list");
    let mut m = Mailsend::to_port(server.port());
    m.home(dir.path())
        .file_size_limit(1500)
        .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
        .args(["--subject", "Hello {{ name }}", "--body", "Dear {{ name }}"])
        .args(["--unsubscribe-url", "https://example.com/u?e={{ email }}"])
        .args(["--yes", "--json", "--concurrency", "2"]);
    let run = m.run().expect(75);
    let (rows, summary) = results(&run);
    assert_eq!(rows.len(), 40, "one line per row: {}", run.stdout());
    let journal = std::fs::read_to_string(dir.path().join("list.csv.journal")).expect("journal");
    let recorded: Vec<u64> = journal
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["row"].as_u64())
        .collect();
    let sent: Vec<u64> = rows
        .values()
        .filter(|r| r["status"] == "sent")
        .filter_map(|r| r["row"].as_u64())
        .collect();
    assert!(
        sent.iter().all(|r| recorded.contains(r)),
        "{sent:?} {recorded:?}"
    );
    assert_eq!(summary["sent"], sent.len() as u64);
    assert_eq!(
        summary["sent"].as_u64().unwrap() + summary["deferred"].as_u64().unwrap(),
        40,
        "{summary}"
    );
    let accepted_unrecorded = rows
        .values()
        .filter(|r| r["status"] == "deferred")
        .filter(|r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.contains("not recorded"))
        })
        .count();
    assert!(accepted_unrecorded >= 1, "{}", run.stdout());
    assert_eq!(
        delivered(&server).len(),
        sent.len() + accepted_unrecorded,
        "what the server took is either recorded or said as not recorded"
    );
}

/// A row refused for good whose data was corrected since (a typo in the
/// address fixed) goes on the next run: only rows already *sent* are
/// never sent again when they change.
#[test]
fn a_refused_row_corrected_in_the_list_is_sent_on_the_next_run() {
    let server = refusing_user2();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(3)).expect("list");
    bulk(server.port(), dir.path(), &[]).expect(65);
    let fixed = list(3).replace("user2@example.com", "fixed2@example.com");
    let fixed = fixed.replace("user1@example.com,User 1", "user1@example.com,User One");
    std::fs::write(dir.path().join("list.csv"), fixed).expect("list");
    let again = bulk(server.port(), dir.path(), &[]).expect(0);
    let (rows, summary) = results(&again);
    assert_eq!(rows[&2]["status"], "sent", "{}", again.stdout());
    assert_eq!(summary["skipped"], 2, "{summary}");
    // Row 1 was sent: changed since, it is not sent again (a warning).
    assert!(again.stderr().contains("row 1"), "{}", again.stderr());
    let seen = delivered(&server);
    assert_eq!(seen.get("fixed2@example.com"), Some(&1), "{seen:?}");
    assert_eq!(seen.get("user1@example.com"), Some(&1), "{seen:?}");
}

/// A server that takes only a few messages per connection (421 to the
/// next MAIL, then it closes) is a limit, not an outage: the campaign
/// reconnects and keeps its pace, instead of halving it at each reconnect
/// for good (it crawled at one message per 10 s after a few sessions).
#[test]
fn a_server_with_a_per_connection_limit_does_not_slow_the_run_for_good() {
    let sink = Sink::start_with(10, None, Some(5));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(60)).expect("list");
    let started = std::time::Instant::now();
    let run = bulk_plain(sink.port, dir.path(), &["--concurrency", "2"]).expect(0);
    let took = started.elapsed();
    let (_, summary) = results(&run);
    assert_eq!(summary["sent"], 60, "{}", run.stderr());
    let seen = sink.counts();
    assert_eq!(seen.len(), 60);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert!(took < std::time::Duration::from_secs(40), "{took:?}");
}

/// A row with several recipients, one of them refused: the message went
/// to the others (sent), and the refused one is said, on stderr and in
/// the row's JSON reply, not dropped without a word.
#[test]
fn a_recipient_refused_in_a_row_with_several_is_said() {
    let server = TestServer::start(with_auth(Behaviour {
        rcpt_replies: vec![("bad@example.com".into(), "550 5.1.1 no such user".into())],
        ..Behaviour::default()
    }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("list.csv"),
        "email,name,cc\nuser1@example.com,One,bad@example.com\n",
    )
    .expect("list");
    let run = bulk(
        server.port(),
        dir.path(),
        &["--to", "{{ email }}, {{ cc }}"],
    )
    .expect(0);
    let (rows, _) = results(&run);
    assert_eq!(rows[&1]["status"], "sent");
    let reply = rows[&1]["reply"].as_str().unwrap_or_default();
    assert!(
        reply.contains("bad@example.com") && reply.contains("550"),
        "{reply}"
    );
    assert!(run.stderr().contains("bad@example.com"), "{}", run.stderr());
    assert_eq!(delivered(&server).len(), 1);
}

/// Rows are known by their values (and recipients), not only by their
/// number: a sent row whose values were edited (same recipient) is not
/// sent again, with a warning; deleting a row above later moves the
/// others up, and every row still goes exactly once.
#[test]
fn an_edited_sent_row_does_not_go_again_and_rows_moved_by_a_deletion_go_once() {
    let server = submission();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("list.csv");
    std::fs::write(&path, list(6)).expect("list");
    bulk(server.port(), dir.path(), &["--limit", "3"]).expect(0);
    // Row 2's name edited in place (same address): not sent again.
    let edited = list(6).replace("User 2", "User Two");
    std::fs::write(&path, &edited).expect("list");
    let run = bulk(server.port(), dir.path(), &["--limit", "1"]).expect(0);
    let (rows, summary) = results(&run);
    assert_eq!(summary["sent"], 1, "{summary}");
    assert_eq!(rows[&4]["status"], "sent");
    assert!(
        run.stderr().contains("row 2 (line 3) changed since"),
        "{}",
        run.stderr()
    );
    // Row 1 deleted: the others move up a number; rows 5 and 6 go.
    std::fs::write(&path, edited.replace("user1@example.com,User 1\n", "")).expect("list");
    let run = bulk(server.port(), dir.path(), &[]).expect(0);
    let (_, summary) = results(&run);
    assert_eq!(summary["sent"], 2, "{summary}");
    assert_eq!(summary["skipped"], 3, "{summary}");
    let seen = delivered(&server);
    for i in 1..=6 {
        assert_eq!(
            seen.get(&format!("user{i}@example.com")),
            Some(&1),
            "{seen:?}"
        );
    }
}

/// A journal from another list (other columns) is refused before anything
/// is sent; changed templates get a warning and rows already sent stay
/// sent.
#[test]
fn a_journal_of_another_list_is_refused_and_changed_templates_are_said() {
    let server = submission();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("list.csv");
    std::fs::write(&path, list(3)).expect("list");
    bulk(server.port(), dir.path(), &[]).expect(0);

    std::fs::write(&path, "email,city\nuser9@example.com,Paris\n").expect("other list");
    let mut m = Mailsend::to(&server);
    m.home(dir.path())
        .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
        .args([
            "--body",
            "Hi",
            "--yes",
            "--unsubscribe-mailto",
            "u@example.com",
        ]);
    m.run().expect(65).error_mentions("other columns");

    std::fs::write(&path, list(3)).expect("list");
    let mut m = Mailsend::to(&server);
    m.home(dir.path())
        .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
        .args([
            "--subject",
            "Hello again {{ name }}",
            "--body",
            "Dear {{ name }}",
        ])
        .args(["--unsubscribe-url", "https://example.com/u?e={{ email }}"])
        .args(["--yes", "--json"]);
    let run = m.run().expect(0);
    assert!(
        run.stderr().contains("templates changed"),
        "{}",
        run.stderr()
    );
    let (_, summary) = results(&run);
    assert_eq!(summary["skipped"], 3, "{summary}");
    assert_eq!(delivered(&server).values().sum::<usize>(), 3);
}

/// Fewer rows than `--concurrency`: no more sessions (and logins) than rows.
#[test]
fn no_more_sessions_than_rows() {
    let server = submission();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(2)).expect("list");
    bulk(server.port(), dir.path(), &["--concurrency", "8"]).expect(0);
    assert_eq!(delivered(&server).len(), 2);
    assert!(
        server.sessions().len() <= 2,
        "{} sessions",
        server.sessions().len()
    );
}

/// A 5xx to MAIL FROM refuses the sender, not the row (a From the
/// server does not allow, a sender blocked): the run stops at once with
/// 69, no row is settled as refused for good, and once the sender is
/// fixed the same campaign sends every row. (It used to settle every row
/// of the list as refused: the rerun with a good --from sent nothing and
/// exited 69 for good.) A 552 to MAIL (the declared size) stays a refusal
/// of that row alone.
#[test]
fn a_sender_refused_at_mail_from_settles_no_row() {
    let refusing = TestServer::start(with_auth(Behaviour {
        mail_reply: Some("553 5.7.1 sender not allowed".into()),
        pipelining: true,
        ..Behaviour::default()
    }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(40)).expect("list");
    let run = bulk(refusing.port(), dir.path(), &[]).expect(69);
    let (rows, summary) = results(&run);
    assert_eq!(rows.len(), 40, "one line per row: {}", run.stdout());
    assert_eq!(summary["refused"], 0, "{summary}");
    assert_eq!(summary["deferred"], 40, "{summary}");
    assert!(
        run.stderr().matches("mailsend: error:").count() == 1,
        "one error for the run, not one per row: {}",
        run.stderr()
    );
    let journal = std::fs::read_to_string(dir.path().join("list.csv.journal")).expect("journal");
    assert_eq!(journal.lines().count(), 1, "only the head: {journal}");

    let server = submission();
    let again = bulk(server.port(), dir.path(), &[]).expect(0);
    let (_, summary) = results(&again);
    assert_eq!(summary["sent"], 40, "{summary}");
    assert_eq!(delivered(&server).len(), 40);

    let too_big = TestServer::start(with_auth(Behaviour {
        mail_reply: Some("552 5.3.4 message too big".into()),
        ..Behaviour::default()
    }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(2)).expect("list");
    let run = bulk(too_big.port(), dir.path(), &[]).expect(69);
    let (_, summary) = results(&run);
    assert_eq!(summary["refused"], 2, "{summary}");
}

/// When the journal cannot be written any more (a file size limit; a
/// full disk alike), a row said `deferred` ("the next run sends it
/// again") is not in the journal, so that the next run does send it:
/// sessions whose lines were written whole before another's write failed
/// got their fsync (and count as sent) instead of an error, and the
/// failed write's partial line is cut off. (Rows said deferred were found
/// whole in the journal and skipped by the next run as already done: the
/// two runs' counts did not add up to what the server got.)
#[test]
fn a_row_said_deferred_when_the_journal_fails_is_not_in_the_journal() {
    for round in 0..4 {
        let sink = Sink::start(16, None);
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("list.csv"), list(300)).expect("list");
        let mut m = Mailsend::bare();
        m.home(dir.path())
            .file_size_limit(6000 + round * 1000)
            .env("MAILSEND_HOST", "127.0.0.1")
            .env("MAILSEND_PORT", &sink.port.to_string())
            .env("MAILSEND_TLS", "none")
            .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
            .args(["--body", "Dear {{ name }}", "--yes", "--json"])
            .args([
                "--unsubscribe-mailto",
                "u@example.com",
                "--concurrency",
                "8",
            ]);
        let run = m.run().expect(75);
        let (rows, _) = results(&run);
        let journal =
            std::fs::read_to_string(dir.path().join("list.csv.journal")).expect("journal");
        let recorded: Vec<u64> = journal
            .lines()
            .skip(1)
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["row"].as_u64())
            .collect();
        let deferred_but_recorded: Vec<u64> = rows
            .values()
            .filter(|r| r["status"] == "deferred")
            .filter_map(|r| r["row"].as_u64())
            .filter(|r| recorded.contains(r))
            .collect();
        assert!(
            deferred_but_recorded.is_empty(),
            "round {round}: said deferred, yet in the journal: {deferred_but_recorded:?}"
        );
        // The next run sends exactly the rows not said sent.
        let again = bulk_plain(sink.port, dir.path(), &[]).expect(0);
        let (_, summary) = results(&again);
        let sent_before = rows.values().filter(|r| r["status"] == "sent").count();
        assert_eq!(
            summary["sent"].as_u64().unwrap() as usize,
            300 - sent_before,
            "round {round}: {summary}"
        );
    }
}

/// A row the server cannot take as it is (a UTF-8 address, and no
/// SMTPUTF8 offered) is refused at once, not retried for --retry-for and
/// deferred run after run (75 for ever); and it is not settled: the same
/// campaign through a server that offers SMTPUTF8 sends it.
#[test]
fn a_row_that_needs_an_extension_the_server_lacks_is_refused_not_retried() {
    let old = TestServer::start(with_auth(Behaviour {
        seven_bit_only: true,
        ..Behaviour::default()
    }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("list.csv"),
        "email,name\nzoë@example.com,Zoe\nuser2@example.com,Bob\n",
    )
    .expect("list");
    // The unsubscribe URL of `bulk` holds the address: a mailto one here.
    let bulk = |port: u16, dir: &Path, extra: &[&str]| {
        let mut m = Mailsend::to_port(port);
        m.home(dir)
            .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
            .args(["--body", "Dear {{ name }}", "--yes", "--json"])
            .args(["--unsubscribe-mailto", "u@example.com"])
            .args(extra);
        m.run()
    };
    let started = std::time::Instant::now();
    let run = bulk(old.port(), dir.path(), &["--retry-for", "20s"]).expect(65);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "retried: {:?}",
        started.elapsed()
    );
    let (rows, _) = results(&run);
    assert_eq!(rows[&1]["status"], "refused", "{rows:?}");
    assert!(
        rows[&1]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("SMTPUTF8"),
        "{rows:?}"
    );
    assert_eq!(rows[&2]["status"], "sent", "{rows:?}");

    let server = submission();
    let again = bulk(server.port(), dir.path(), &[]).expect(0);
    let (rows, _) = results(&again);
    assert_eq!(rows[&1]["status"], "sent", "{rows:?}");
    assert_eq!(rows[&2]["status"], "skipped", "{rows:?}");
}

/// A server that breaks the protocol on a message (here a 3xx to MAIL)
/// stops the run with 76, as PRODUCT.md says of protocol failures, and
/// settles no row; it used to retry every row against the broken server
/// for --retry-for (10 minutes by default) and end with 75.
#[test]
fn a_server_that_breaks_the_protocol_stops_the_run_with_76() {
    let broken = TestServer::start(with_auth(Behaviour {
        mail_reply: Some("354 go ahead".into()),
        ..Behaviour::default()
    }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(10)).expect("list");
    let started = std::time::Instant::now();
    let run = bulk(broken.port(), dir.path(), &["--retry-for", "8s"]).expect(76);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let (rows, summary) = results(&run);
    assert_eq!(rows.len(), 10, "{}", run.stdout());
    assert_eq!(summary["deferred"], 10, "{summary}");
    let journal = std::fs::read_to_string(dir.path().join("list.csv.journal")).expect("journal");
    assert_eq!(journal.lines().count(), 1, "only the head: {journal}");
    let server = submission();
    bulk(server.port(), dir.path(), &[]).expect(0);
    assert_eq!(delivered(&server).len(), 10);
}

/// Two rows with the same values are two rows: a run stopped after the
/// first (here by --limit; a kill alike) sends the second on the next
/// run, as one uninterrupted run does, instead of skipping it as
/// "already done" (it was never sent).
#[test]
fn a_row_that_repeats_an_earlier_one_is_not_skipped_by_a_resumed_run() {
    let list = "email,name\na@example.com,A\na@example.com,A\nb@example.com,B\n";
    let sink = Sink::start(8, None);
    let whole = tempfile::tempdir().expect("dir");
    std::fs::write(whole.path().join("list.csv"), list).expect("list");
    bulk_plain(sink.port, whole.path(), &[]).expect(0);
    assert_eq!(sink.counts()["a@example.com"], 2, "one run sends both");

    let sink = Sink::start(8, None);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list).expect("list");
    bulk_plain(sink.port, dir.path(), &["--limit", "1"]).expect(0);
    let run = bulk_plain(sink.port, dir.path(), &[]).expect(0);
    let (rows, summary) = results(&run);
    assert_eq!(rows[&1]["status"], "skipped", "{rows:?}");
    assert_eq!(rows[&2]["status"], "sent", "{rows:?}");
    assert_eq!(summary["skipped"], 1, "{summary}");
    assert_eq!(sink.counts()["a@example.com"], 2, "resumed, the same");
    // A third run sends nothing: both are settled.
    let run = bulk_plain(sink.port, dir.path(), &[]).expect(0);
    assert_eq!(results(&run).1["skipped"], 3);
    assert_eq!(sink.counts()["a@example.com"], 2);
}

/// A recipient refused for a policy reason (enhanced status 5.7.x: relay
/// access denied, sender not authorised) is refused for this run, not
/// settled for good: it says more of the sender's setup than of the
/// recipient, and once that is fixed the same command sends the row.
/// (Every row of a campaign sent through a relay that wanted a login was
/// settled as refused: the rerun with the login sent nothing, 69.) A
/// 5.1.1 (no such user) stays settled.
#[test]
fn a_policy_refusal_of_a_recipient_is_not_settled_for_good() {
    let relay = TestServer::start(with_auth(Behaviour {
        rcpt_replies: vec![
            (
                "user1@example.com".into(),
                "554 5.7.1 <user1@example.com>: Relay access denied".into(),
            ),
            ("user2@example.com".into(), "550 5.1.1 no such user".into()),
        ],
        ..Behaviour::default()
    }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(3)).expect("list");
    let run = bulk(relay.port(), dir.path(), &[]).expect(65);
    let (rows, _) = results(&run);
    assert_eq!(rows[&1]["status"], "refused", "{rows:?}");
    assert_eq!(rows[&2]["status"], "refused", "{rows:?}");
    let server = submission();
    let again = bulk(server.port(), dir.path(), &[]).expect(65);
    let (rows, _) = results(&again);
    assert_eq!(rows[&1]["status"], "sent", "{rows:?}");
    assert_eq!(rows[&2]["status"], "skipped", "{rows:?}");
    assert_eq!(rows[&3]["status"], "skipped", "{rows:?}");
}

/// The check before sending is of the rows this run would send: a row
/// an earlier run sent is not checked again. Resuming an invoice
/// campaign after the invoices already sent were moved away sends the
/// rest; it used to stop with 66 ("cannot read attachment") for a row
/// that was sent long ago.
#[test]
fn a_resumed_campaign_does_not_check_the_rows_already_sent() {
    let server = submission();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(3)).expect("list");
    std::fs::create_dir(dir.path().join("inv")).expect("dir");
    for i in 1..=3 {
        std::fs::write(dir.path().join(format!("inv/User {i}.txt")), "invoice\n").expect("file");
    }
    let attach = ["--attach", "inv/{{ name }}.txt"];
    bulk(
        server.port(),
        dir.path(),
        &[&attach[..], &["--limit", "1"]].concat(),
    )
    .expect(0);
    std::fs::remove_file(dir.path().join("inv/User 1.txt")).expect("rm");
    let run = bulk(server.port(), dir.path(), &attach).expect(0);
    let (rows, summary) = results(&run);
    assert_eq!(summary["sent"], 2, "{summary}");
    assert_eq!(rows[&1]["status"], "skipped", "{rows:?}");
    // A row not sent yet is still checked: nothing goes.
    std::fs::remove_file(dir.path().join("inv/User 3.txt")).expect("rm");
    std::fs::write(dir.path().join("list.csv"), list(4)).expect("list");
    bulk(server.port(), dir.path(), &attach).expect(66);
    assert_eq!(delivered(&server).len(), 3);
}

/// A row keeps its Message-ID from one attempt to the next, within a
/// run and from run to run of the same campaign (its journal): when a
/// copy the server took is sent again (its 250 raced a kill -9: the one
/// duplicate the journal allows), the recipient's mail store can tell it
/// is the same message. Two rows, or two campaigns, never share one.
#[test]
fn a_row_is_sent_again_with_the_same_message_id() {
    use std::sync::atomic::{AtomicU32, Ordering};
    // The first message's 250 leaves only once mailsend is killed.
    let pid = std::sync::Arc::new(AtomicU32::new(0));
    let victim = pid.clone();
    let server = TestServer::start(with_auth(Behaviour {
        before_data_reply: Some(crate::support::server::Hook(std::sync::Arc::new(
            move || {
                let pid = victim.swap(0, Ordering::SeqCst);
                if pid != 0 {
                    // SAFETY: kill(2) on the pid of a child this test spawned.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            },
        ))),
        ..Behaviour::default()
    }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("list.csv"), list(2)).expect("list");
    let mut m = Mailsend::to_port(server.port());
    m.home(dir.path())
        .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
        .args(["--subject", "Hello {{ name }}", "--body", "Dear {{ name }}"])
        .args(["--unsubscribe-url", "https://example.com/u?e={{ email }}"])
        .args(["--yes", "--json", "--concurrency", "1"]);
    let mut child = m.spawn();
    pid.store(child.id(), Ordering::SeqCst);
    let _ = child.wait();
    let run = bulk(server.port(), dir.path(), &["--concurrency", "1"]).expect(0);
    let (rows, _) = results(&run);
    let message_id = |data: &[u8]| {
        String::from_utf8_lossy(data)
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: ").map(str::to_owned))
            .expect("a Message-ID")
    };
    let copies: Vec<String> = server
        .sessions()
        .iter()
        .flat_map(|s| s.transactions.clone())
        .filter(|t| t.rcpt_to == ["user1@example.com"] && t.reply.starts_with("250"))
        .map(|t| message_id(&t.data))
        .collect();
    assert_eq!(
        copies.len(),
        2,
        "sent twice (the kill raced its 250): {copies:?}"
    );
    assert_eq!(copies[0], copies[1], "one message, one Message-ID");
    assert_eq!(rows[&1]["message_id"], copies[1].as_str());
    assert_ne!(rows[&1]["message_id"], rows[&2]["message_id"]);

    // Another campaign (its own journal) over the same list: other IDs.
    let other = submission();
    let run = bulk(other.port(), dir.path(), &["--journal", "other.journal"]).expect(0);
    let (again, _) = results(&run);
    assert_ne!(again[&1]["message_id"], rows[&1]["message_id"]);
}
