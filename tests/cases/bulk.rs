//! Campaigns (`mailsend bulk`) up to delivery: the CSV list,
//! templates, the check of every row before anything is sent, and the
//! dry run (stdout, or one .eml file per row).
use super::*;
use crate::support::cmd::Mailsend;

use std::path::Path;

/// `mailsend bulk` over list.csv from news@example.com.
const CAMPAIGN: [&str; 5] = ["bulk", "--data", "list.csv", "--from", "news@example.com"];

/// The least a campaign needs: `mailsend bulk` over list.csv, a sender
/// and a body.
const MINIMAL: [&str; 7] = [
    "bulk",
    "--data",
    "list.csv",
    "--from",
    "n@example.com",
    "--body",
    "x",
];

/// A BOM, CRLF line endings, UTF-8, quoted fields holding commas, quotes
/// and a line break (row 2 spans lines 3 and 4).
const LIST: &str = "\u{feff}email,name,id,city\r\n\
\"Zoë Müller <zoe@example.com>\",\"Müller, Zoë\",1,Köln\r\n\
bob@example.org,\"Bob \"\"The Builder\"\"\",2,\"Line one\nline two\"\r\n\
carol@example.net,Carol & <Co>,3,Paris\r\n";

/// A campaign over `LIST` with every kind of template, run in `m`'s
/// directory; the attachment of row N is files/N.txt holding "file N".
fn campaign(m: &mut Mailsend) -> &mut Mailsend {
    m.file("list.csv", LIST);
    m.file("letter.txt", "Dear {{ name }},\nCity: {{ city }}\n");
    m.file("letter.html", "<p>Hi {{ name }}</p>\n");
    std::fs::create_dir(m.path().join("files")).expect("mkdir");
    for id in 1..=3 {
        m.file(&format!("files/{id}.txt"), format!("file {id}\n"));
    }
    m.args([
        "bulk",
        "--data",
        "list.csv",
        "--from",
        "News <news@example.com>",
        "--subject",
        "Hello {{ name }}",
        "--body-file",
        "letter.txt",
        "--html",
        "letter.html",
        "--attach",
        "files/{{ id }}.txt",
        "--header",
        "X-Customer: {{ id }}",
        "--unsubscribe-url",
        "https://example.com/u?id={{ id }}&c={{ city | urlencode }}",
        "--unsubscribe-mailto",
        "unsubscribe@example.com",
        "--list-id",
        "News <news.example.com>",
    ])
}

/// What python3's email package (an independent reader) makes of each
/// message: subject, To, the text and HTML parts, attachments.
fn decoded(messages: &[Vec<u8>]) -> Vec<serde_json::Value> {
    const SCRIPT: &str = r#"
import email, email.policy, json, sys
out = []
for text in json.load(sys.stdin):
    m = email.message_from_bytes(text.encode("latin-1"), policy=email.policy.default)
    text = m.get_body(("plain",))
    html = m.get_body(("html",))
    out.append({
        "subject": str(m["subject"]),
        "to": [[a.display_name, a.addr_spec] for a in m["to"].addresses],
        "message-id": str(m["message-id"]),
        "date": str(m["date"]),
        "text": text.get_content() if text else None,
        "html": html.get_content() if html else None,
        "files": [[p.get_filename(), p.get_payload(decode=True).decode()] for p in m.iter_attachments()],
        "defects": len(m.defects),
    })
print(json.dumps(out))
"#;
    let input: Vec<String> = messages
        .iter()
        .map(|m| m.iter().map(|&b| b as char).collect())
        .collect();
    serde_json::from_value(python_json(
        SCRIPT,
        &serde_json::to_vec(&input).expect("JSON"),
    ))
    .expect("a list from python3")
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn dry_run_out_writes_one_personalised_message_per_row() {
    let mut m = Mailsend::bare();
    let run = campaign(&mut m)
        .args(["--dry-run", "--out", "out/eml"])
        .run()
        .expect(0);
    assert_eq!(run.stdout(), "", "the messages go to files only");
    assert!(
        run.stderr()
            .contains("3 messages written to out/eml; nothing sent"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("warning"), "{}", run.stderr());
    let dir = m.path().join("out/eml");
    assert_eq!(names(&dir), ["00001.eml", "00002.eml", "00003.eml"]);
    let messages: Vec<Vec<u8>> = (1..=3)
        .map(|n| std::fs::read(dir.join(format!("0000{n}.eml"))).expect("eml"))
        .collect();

    for (i, message) in messages.iter().enumerate() {
        let id = i + 1;
        let text = String::from_utf8_lossy(message);
        assert!(message.is_ascii(), "7-bit: {text}");
        assert!(
            !text.replace("\r\n", "").contains('\n') && !text.replace("\r\n", "").contains('\r'),
            "CRLF line endings only"
        );
        // The list headers, exactly, and each message's own.
        let city = ["K%C3%B6ln", "Line%20one%0Aline%20two", "Paris"][i];
        let list_headers: Vec<(String, String)> = headers(message)
            .into_iter()
            .filter(|(n, _)| n.starts_with("list-") || n == "x-customer")
            .collect();
        assert_eq!(
            list_headers,
            [
                ("x-customer".to_owned(), id.to_string()),
                ("list-id".to_owned(), "News <news.example.com>".to_owned()),
                (
                    "list-unsubscribe".to_owned(),
                    format!(
                        "<https://example.com/u?id={id}&c={city}>, <mailto:unsubscribe@example.com>"
                    )
                ),
                (
                    "list-unsubscribe-post".to_owned(),
                    "List-Unsubscribe=One-Click".to_owned()
                ),
            ],
            "{text}"
        );
        assert!(!has_bcc_line(message));
    }

    let got = decoded(&messages);
    let want = [
        (
            "Müller, Zoë",
            ["Zoë Müller", "zoe@example.com"],
            "Köln",
            "Müller, Zoë",
        ),
        (
            "Bob \"The Builder\"",
            ["", "bob@example.org"],
            "Line one\nline two",
            "Bob &quot;The Builder&quot;",
        ),
        (
            "Carol & <Co>",
            ["", "carol@example.net"],
            "Paris",
            "Carol &amp; &lt;Co&gt;",
        ),
    ];
    for (i, (name, to, city, html_name)) in want.into_iter().enumerate() {
        let g = &got[i];
        assert_eq!(g["subject"], format!("Hello {name}"), "{g}");
        assert_eq!(
            g["to"],
            serde_json::json!([to]),
            "only its own recipient: {g}"
        );
        let city = city.replace('\n', "\r\n");
        assert_eq!(
            g["text"],
            format!("Dear {name},\r\nCity: {city}\r\n"),
            "{g}"
        );
        assert_eq!(g["html"], format!("<p>Hi {html_name}</p>\r\n"), "{g}");
        assert_eq!(
            g["files"],
            serde_json::json!([[format!("{}.txt", i + 1), format!("file {}\n", i + 1)]]),
            "{g}"
        );
        assert_eq!(g["defects"], 0, "{g}");
        assert!(g["date"].as_str().is_some_and(|d| !d.is_empty()), "{g}");
    }
    let ids: std::collections::HashSet<&str> = got
        .iter()
        .map(|g| g["message-id"].as_str().expect("Message-ID"))
        .collect();
    assert_eq!(ids.len(), 3, "a Message-ID of its own per message: {ids:?}");
}

#[test]
fn dry_run_prints_the_first_message_and_its_envelope() {
    let mut m = Mailsend::bare();
    let run = campaign(&mut m).args(["--dry-run"]).run().expect(0);
    let stdout = run.output.stdout.clone();
    assert_eq!(
        header(&stdout, "to").as_deref(),
        Some("=?utf-8?b?Wm/DqyBNw7xsbGVy?= <zoe@example.com>")
    );
    let got = decoded(&[stdout]);
    assert_eq!(got[0]["subject"], "Hello Müller, Zoë");
    let stderr = run.stderr();
    let envelope: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("envelope"))
        .collect();
    assert_eq!(
        envelope,
        [
            "envelope from: <news@example.com>",
            "envelope to: <zoe@example.com>"
        ]
    );
    assert!(
        stderr.contains("all 3 rows checked; above is row 1 (line 2); nothing sent"),
        "{stderr}"
    );
    assert!(!m.path().join("out").exists());
}

#[test]
fn shard_and_limit_choose_the_rows() {
    let mut m = Mailsend::bare();
    let list: String = std::iter::once("email,id\n".to_owned())
        .chain((1..=10).map(|i| format!("r{i}@example.com,{i}\n")))
        .collect();
    m.file("list.csv", list);
    let base = [
        "bulk",
        "--data",
        "list.csv",
        "--from",
        "news@example.com",
        "--body",
        "row {{ id }}",
        "--unsubscribe-mailto",
        "u@example.com",
        "--dry-run",
    ];
    // Row number modulo N is K-1: shard 2/3 takes rows 1, 4, 7, 10.
    m.args(base)
        .args(["--shard", "2/3", "--out", "s2"])
        .run()
        .expect(0);
    assert_eq!(
        names(&m.path().join("s2")),
        ["00001.eml", "00004.eml", "00007.eml", "00010.eml"]
    );
    let mut m2 = Mailsend::bare();
    m2.home(m.path())
        .args(base)
        .args(["--shard", "1/3", "--limit", "2", "--out", "s1"])
        .run()
        .expect(0);
    assert_eq!(names(&m.path().join("s1")), ["00003.eml", "00006.eml"]);
    let message = std::fs::read(m.path().join("s1/00006.eml")).expect("eml");
    assert_eq!(header(&message, "to").as_deref(), Some("r6@example.com"));
    assert_eq!(body(&message), b"row 6\r\n");
}

#[test]
fn every_bad_row_is_listed_and_nothing_is_written() {
    let mut m = Mailsend::bare();
    m.file(
        "list.csv",
        "email,name,id,url\n\
a@example.com,A,1,https://example.com/u/1\n\
not-an-address,B,2,https://example.com/u/2\n\
c@example.com,\"C\r\nBcc: evil@example.com\",3,https://example.com/u/3\n\
d@example.com,D,4,http://example.com/u/4\n\
e@example.com,E,99,https://example.com/u/5\n\
f@example.com,F,6\n\
g@example.com,G,7,https://example.com/u/7\n",
    );
    std::fs::create_dir(m.path().join("files")).expect("mkdir");
    for id in [1, 2, 3, 4, 6, 7] {
        m.file(&format!("files/{id}.pdf"), "%PDF");
    }
    let run = m
        .args(CAMPAIGN)
        .args([
            "--subject",
            "Hi {{ name }}",
            "--body",
            "x",
            "--attach",
            "files/{{ id }}.pdf",
            "--unsubscribe-url",
            "{{ url }}",
            "--dry-run",
            "--out",
            "out",
        ])
        .run()
        .expect(65);
    let stderr = run.stderr();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("mailsend: error: "))
        .collect();
    assert_eq!(
        errors,
        [
            "mailsend: error: line 3: invalid address in --to (column email): 'not-an-address': not an address: no @",
            "mailsend: error: line 4: --subject (column name) contains a line break or control character: 'Hi C\\u{d}\\u{a}Bcc: evil@example.com'",
            "mailsend: error: line 6: --unsubscribe-url (column url): must be an https URL: one-click unsubscribe (RFC 8058) needs https: 'http://example.com/u/4'",
            "mailsend: error: line 7: --attach (column id): cannot read attachment files/99.pdf: entity not found",
            "mailsend: error: line 8: 3 fields, but the header has 4 columns",
            "mailsend: error: 5 of 7 rows are bad in list.csv; nothing was sent",
        ],
        "{stderr}"
    );
    assert!(!m.path().join("out").exists(), "nothing written");
}

#[test]
fn only_missing_files_exit_66() {
    let mut m = Mailsend::bare();
    m.file("list.csv", "email,id\na@example.com,1\nb@example.com,2\n");
    m.file("1.txt", "one");
    m.args(CAMPAIGN)
        .args(["--body", "x", "--attach", "{{ id }}.txt", "--dry-run"])
        .run()
        .expect(66)
        .error_mentions("line 3: --attach (column id): cannot read attachment 2.txt");
}

#[test]
fn a_variable_that_is_no_column_fails_every_row() {
    let mut m = Mailsend::bare();
    m.file("list.csv", "email,name\na@example.com,A\nb@example.com,\n");
    let run = m
        .args(CAMPAIGN)
        .args([
            "--subject",
            "Hi {{ nmae }}",
            "--body",
            "Hello {{ name }}",
            "--dry-run",
        ])
        .run()
        .expect(65);
    for line in [2, 3] {
        run.error_mentions(&format!(
            "line {line}: --subject: variable 'nmae' is not a column of the list (columns: email, name)"
        ));
    }
    run.error_mentions("2 of 2 rows are bad");
    assert_eq!(run.stdout(), "");
}

#[test]
fn an_empty_field_is_a_value() {
    let mut m = Mailsend::bare();
    m.file("list.csv", "email,name\na@example.com,\n");
    let run = m
        .args(CAMPAIGN)
        .args(["--subject", "Hi [{{ name }}]", "--body", "x", "--dry-run"])
        .run()
        .expect(0);
    assert_eq!(
        header(&run.output.stdout, "subject").as_deref(),
        Some("Hi []")
    );
}

#[test]
fn campaign_wide_mistakes_are_usage_errors() {
    let run = |extra: &[&str], code: i32, needle: &str| {
        let mut m = Mailsend::bare();
        m.file("list.csv", "email\na@example.com\n");
        m.args(MINIMAL)
            .args(extra)
            .run()
            .expect(code)
            .error_mentions(needle);
    };
    run(
        &["--unsubscribe-url", "http://example.com/u", "--dry-run"],
        64,
        "--unsubscribe-url must be an https URL",
    );
    run(
        &["--header", "Bcc: {{ email }}", "--dry-run"],
        64,
        "--header cannot set Bcc",
    );
    run(
        &["--header", "List-Id: <a.example>", "--dry-run"],
        64,
        "use --list-id",
    );
    run(
        &["--subject", "{{ oops", "--dry-run"],
        65,
        "--subject: template error: syntax error",
    );
    run(&["--queue", "--dry-run"], 64, "--queue does not apply");
}

#[test]
fn missing_inputs_exit_66() {
    let mut m = Mailsend::bare();
    m.args([
        "bulk",
        "--data",
        "nope.csv",
        "--from",
        "n@example.com",
        "--body",
        "x",
        "--dry-run",
    ])
    .run()
    .expect(66)
    .error_mentions("cannot read list nope.csv");
    let mut m = Mailsend::bare();
    m.file("list.csv", "email\na@example.com\n");
    m.args([
        "bulk",
        "--data",
        "list.csv",
        "--from",
        "n@example.com",
        "--body-file",
        "letter.txt",
        "--dry-run",
    ])
    .run()
    .expect(66)
    .error_mentions("cannot read --body-file letter.txt");
}

#[test]
fn flags_are_validated() {
    for (flag, value) in [
        ("--rate", "10"),
        ("--rate", "0/s"),
        ("--rate", "10/fortnight"),
        ("--shard", "0/3"),
        ("--shard", "4/3"),
        ("--concurrency", "0"),
        ("--limit", "0"),
    ] {
        let mut m = Mailsend::bare();
        m.file("list.csv", "email\na@example.com\n");
        let run = m.args(MINIMAL).args([flag, value, "--dry-run"]).run();
        assert_eq!(run.code(), 64, "{flag} {value}: {}", run.stderr());
    }
    let mut m = Mailsend::bare();
    m.file("list.csv", "email\na@example.com\n");
    let run = m
        .args(MINIMAL)
        .args([
            "--rate",
            "600/min",
            "--shard",
            "1/1",
            "--concurrency",
            "8",
            "--limit",
            "5",
        ])
        .args(["--journal", "j", "--yes", "--json", "--dry-run"])
        .run()
        .expect(0);
    assert!(run.stdout().contains("To: a@example.com\r\n"));
    // --out only with --dry-run.
    let mut m = Mailsend::bare();
    m.file("list.csv", "email\na@example.com\n");
    let run = m.args(MINIMAL).args(["--out", "dir"]).run();
    assert_eq!(run.code(), 64, "{}", run.stderr());
}

#[test]
fn no_unsubscribe_is_a_warning_and_bulk_is_listed_in_help() {
    let mut m = Mailsend::bare();
    m.file("list.csv", "email\na@example.com\n");
    let run = m
        .args([
            "bulk",
            "--data",
            "list.csv",
            "--from",
            "n@example.com",
            "--body",
            "x",
            "--dry-run",
        ])
        .run()
        .expect(0);
    let warnings: Vec<String> = run
        .stderr()
        .lines()
        .filter(|l| l.starts_with("mailsend: warning: "))
        .map(str::to_owned)
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr());
    assert!(warnings[0].contains("no --unsubscribe-url or --unsubscribe-mailto"));
    let help = Mailsend::bare().args(["--help"]).run().expect(0).stdout();
    assert!(help.contains("bulk"), "{help}");
}

/// Peak RSS (KiB) of one `mailsend bulk --dry-run` over `rows` rows.
/// Measured by python3, which runs mailsend as its own child: a child
/// forked straight from this test process would count the test process's
/// pages (as big as the other tests running beside it make it) in its
/// peak before it execs.
fn peak_rss_kib(rows: usize) -> i64 {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("dir");
    let mut list =
        std::io::BufWriter::new(std::fs::File::create(dir.path().join("list.csv")).expect("list"));
    writeln!(list, "email,name,id").expect("write");
    for i in 1..=rows {
        writeln!(list, "\"Person {i} <p{i}@example.com>\",\"Name, {i}\",{i}").expect("write");
    }
    list.flush().expect("flush");
    drop(list);
    const MEASURE: &str = "import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
assert r.returncode == 0, r.returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
    let out = std::process::Command::new("python3")
        .args(["-c", MEASURE])
        .arg(assert_cmd::cargo::cargo_bin("mailsend"))
        .args(CAMPAIGN)
        .args([
            "--subject",
            "Hello {{ name }}",
            "--body",
            "Dear {{ name }}, your id is {{ id }}.",
            "--unsubscribe-url",
            "https://example.com/u?id={{ id }}",
            "--dry-run",
        ])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("MAILSEND_CONFIG", "/dev/null")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn checking_a_100000_row_list_takes_no_more_memory_than_100_rows() {
    let small = peak_rss_kib(100);
    let large = peak_rss_kib(100_000);
    assert!(
        large < small + 4 * 1024,
        "peak RSS {large} KiB for 100,000 rows, {small} KiB for 100"
    );
}

#[test]
fn at_most_100_bad_rows_are_listed_then_counted() {
    let mut m = Mailsend::bare();
    let list: String = std::iter::once("email\n".to_owned())
        .chain((1..=250).map(|i| format!("bad{i}\n")))
        .collect();
    m.file("list.csv", list);
    let run = m.args(MINIMAL).args(["--dry-run"]).run().expect(65);
    let stderr = run.stderr();
    let rows: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("mailsend: error: line "))
        .collect();
    assert_eq!(rows.len(), 100, "{stderr}");
    assert!(
        rows[0]
            .starts_with("mailsend: error: line 2: invalid address in --to (column email): 'bad1'")
    );
    assert!(rows[99].starts_with("mailsend: error: line 101: "));
    run.error_mentions(
        "250 of 250 rows are bad in list.csv (the first 100 are listed above); nothing was sent",
    );
}

/// `--out` that cannot be a directory (a file is there, or a file is on
/// its path) is a setting to fix (78), like a journal path that cannot be
/// a file: not 75, which says "run it again" and would fail alike.
#[test]
fn dry_run_out_that_cannot_be_a_directory_is_78() {
    for out in ["taken", "taken/eml"] {
        let mut m = Mailsend::bare();
        m.file("taken", "a file, not a directory\n");
        let run = campaign(&mut m)
            .args(["--dry-run", "--out", out])
            .run()
            .expect(78);
        assert!(
            run.stderr().contains(&format!("cannot write {out}")),
            "{}",
            run.stderr()
        );
        assert_eq!(
            std::fs::read_to_string(m.path().join("taken")).expect("file"),
            "a file, not a directory\n"
        );
    }
}
