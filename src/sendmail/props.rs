//! Property tests of `compose`, the path from the bytes on stdin to the
//! message that goes on the wire: whatever comes in, what goes out has no
//! Bcc, no NUL, no bare CR or LF and no line over 998 octets (dot-stuffed
//! or not); and a well-formed message comes back intact through an
//! independent parser (mailparse).

use std::collections::BTreeMap;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::input::{LINE_CAP, Raw};
use super::{Job, compose};
use crate::config::FromPolicy;
use crate::exit::Exit;
use crate::smtp::wire_data;

const MARKER: &[u8] = b"hidden";

fn aliases() -> BTreeMap<String, String> {
    [
        ("root".to_owned(), "admin@example.com".to_owned()),
        ("default".to_owned(), "fallback@example.org".to_owned()),
    ]
    .into()
}

/// Runs `compose` as sendmail mode would, with `-t` or one argument.
fn run(
    input: &[u8],
    read_recipients: bool,
    ignore_dots: bool,
) -> anyhow::Result<Option<crate::deliver::Outgoing>> {
    run_as(input, read_recipients, ignore_dots, "x@example.com")
}

/// `run`, with `argument` as the recipient when not `-t`.
fn run_as(
    input: &[u8],
    read_recipients: bool,
    ignore_dots: bool,
    argument: &str,
) -> anyhow::Result<Option<crate::deliver::Outgoing>> {
    let aliases = aliases();
    let arguments = if read_recipients {
        vec![]
    } else {
        vec![argument.to_owned()]
    };
    let job = Job {
        ignore_dots,
        read_recipients,
        arguments: &arguments,
        aliases: &aliases,
        skip_empty: false,
        account_from: Some("Server <server@example.com>"),
        sender: None,
        from_policy: FromPolicy::Auto,
        full_name: None,
    };
    compose(&Raw::read(&mut &input[..])?, &job)
}

fn lines_of(message: &[u8]) -> Vec<&[u8]> {
    let text = message.strip_suffix(b"\r\n").unwrap_or(message);
    text.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}

/// The name of the field `line` starts, as RFC 5322 reads it: what is
/// before the first colon, without the SP and HTAB the obsolete syntax
/// allows there (and nothing else: no other white space is trimmed).
/// Written here on its own, not with the implementation's helpers.
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|b| *b == b':')?;
    let mut name = &line[..colon];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    Some(name)
}

/// Whether `line` starts a Bcc or Resent-Bcc field, in any case, with
/// SP or HTAB before the colon or not.
fn is_bcc_field(line: &[u8]) -> bool {
    field_name(line).is_some_and(|name| {
        name.eq_ignore_ascii_case(b"bcc") || name.eq_ignore_ascii_case(b"resent-bcc")
    })
}

/// `Name:` with an RFC 5322 field name (printable ASCII but `:`), and
/// optionally SP or HTAB before the colon.
fn is_valid_field(line: &[u8]) -> bool {
    field_name(line)
        .is_some_and(|name| !name.is_empty() && name.iter().all(|b| (b'!'..=b'~').contains(b)))
}

/// What must hold of any message mailsend puts on the wire.
fn check_message(message: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(!message.contains(&0), "NUL");
    prop_assert!(message.ends_with(b"\r\n"));
    for (i, b) in message.iter().enumerate() {
        match b {
            b'\r' => prop_assert_eq!(message.get(i + 1), Some(&b'\n'), "bare CR at {}", i),
            b'\n' => prop_assert!(i > 0 && message[i - 1] == b'\r', "bare LF at {}", i),
            _ => {}
        }
    }
    let lines = lines_of(message);
    for line in &lines {
        prop_assert!(line.len() <= 998, "a line of {} octets", line.len());
    }
    let wire = wire_data(message);
    let wire_lines = lines_of(&wire);
    prop_assert_eq!(
        wire_lines.len(),
        lines.len() + 1,
        "the wire adds only the final dot"
    );
    for line in &wire_lines {
        prop_assert!(line.len() <= 998, "a stuffed line of {} octets", line.len());
    }
    let head_end = lines.iter().position(|l| l.is_empty());
    prop_assert!(head_end.is_some(), "an empty line ends the header");
    let head = &lines[..head_end.unwrap_or(0)];
    prop_assert!(!head.is_empty());
    for (i, line) in head.iter().enumerate() {
        let continued = line[0] == b' ' || line[0] == b'\t';
        if continued {
            prop_assert!(i > 0, "the header starts with a continuation");
            prop_assert!(
                line.iter().any(|b| *b != b' ' && *b != b'\t'),
                "a blank header line"
            );
        } else {
            prop_assert!(
                is_valid_field(line),
                "not a field: {:?}",
                String::from_utf8_lossy(line)
            );
            prop_assert!(
                !is_bcc_field(line),
                "a Bcc field: {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
    Ok(())
}

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Field names, the dangerous ones in many spellings.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "Bcc",
            "bcc",
            "BCC",
            "bCc",
            "Resent-Bcc",
            "resent-bcc",
            "RESENT-BCC",
            "To",
            "Cc",
            "Resent-To",
            "Resent-Cc",
            "Resent-Date",
            "Subject",
            "From",
            "Date",
            "Message-ID",
            "Content-Type",
            "Content-Transfer-Encoding",
            "MIME-Version",
            "X-Y",
        ])
        .prop_map(bytes),
        "[!-9;-~]{1,12}".prop_map(|s| bytes(&s)),
        vec(any::<u8>(), 1..6),
    ]
}

/// Field values: addresses, MIME values that steer the body's handling,
/// long ones with and without white space, and any octets.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            " a@example.com",
            " root",
            " Root <root>",
            " hidden@example.org",
            " multipart/mixed; boundary=b",
            " message/rfc822",
            " text/plain; charset=utf-8",
            " quoted-printable",
            " base64",
            " 8bit",
            " 1.0",
            "",
        ])
        .prop_map(bytes),
        (1..700usize).prop_map(|n| b" word".repeat(n)),
        (900..2500usize, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        vec(any::<u8>(), 0..40),
    ]
}

/// One line of mail-like input, without its line ending.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (name(), "[ \t]{0,2}", value())
            .prop_map(|(n, ws, v)| [n, bytes(&ws), b":".to_vec(), v].concat()),
        2 => (prop::sample::select(vec![" ", "\t", "  "]), value())
            .prop_map(|(ws, v)| [bytes(ws), v].concat()),
        1 => vec(any::<u8>(), 0..60),
        1 => Just(vec![]),
        1 => prop::sample::select(vec![".", "..", ".x", "From x", "--b", "--b--"]).prop_map(bytes),
        1 => (990..2100usize, prop::sample::select(vec![b'.', b'x', b' ', 0xc3, 0]))
            .prop_map(|(n, b)| vec![b; n]),
    ]
}

fn end_of_line() -> impl Strategy<Value = Vec<u8>> {
    separator().prop_map(bytes)
}

/// Mail-like input: lines of the kinds above, any line endings.
fn input() -> impl Strategy<Value = Vec<u8>> {
    (vec((line(), end_of_line()), 0..14), any::<bool>()).prop_map(|(lines, last_eol)| {
        let mut out = Vec::new();
        let count = lines.len();
        for (i, (line, eol)) in lines.into_iter().enumerate() {
            out.extend(line);
            if i + 1 < count || last_eol {
                out.extend(eol);
            }
        }
        out
    })
}

/// A Bcc or Resent-Bcc field that names the marker, folded or not.
fn bcc_field() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![
            "Bcc",
            "bcc",
            "BCC",
            "Resent-Bcc",
            "resent-BCC",
            "B\0cc",
        ]),
        "[ \t]{0,3}",
        prop::sample::select(vec![
            " hidden@example.org",
            "\n hidden@example.org",
            "\r\n\thidden@example.org",
            " a@example.com,\n hidden@example.org",
            " Hidden <hidden@example.org>",
            " hidden",
        ]),
    )
        .prop_map(|(n, ws, v)| [bytes(n), bytes(&ws), b":".to_vec(), bytes(v)].concat())
}

/// A valid field that names no recipient and no marker: any name but
/// To, Cc, Bcc, From and Resent-*, a value of any octets but CR and LF.
fn other_field() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        3 => vec(any::<u8>().prop_filter("one line", |b| *b != b'\r' && *b != b'\n'), 0..60),
        1 => (1..400usize).prop_map(|n| b" word".repeat(n)),
        1 => (900..2500usize, prop::sample::select(vec![b'x', b' ', b'\t', 0xc3, 0]))
            .prop_map(|(n, b)| vec![b; n]),
    ];
    (
        prop_oneof![
            prop::sample::select(vec![
                "Subject",
                "Comments",
                "X-Y",
                "Content-Type",
                "Content-Transfer-Encoding",
                "MIME-Version",
                "Received",
                "Date",
                "Reply-To",
            ])
            .prop_map(bytes),
            "[!-9;-~]{1,12}".prop_map(|s| bytes(&s)),
        ],
        "[ \t]{0,2}",
        value,
    )
        .prop_map(|(n, ws, v)| [n, bytes(&ws), b":".to_vec(), v].concat())
        .prop_filter("names no recipient, no marker", |f| {
            let name = field_name(f).unwrap_or_default().to_ascii_lowercase();
            !["to", "cc", "bcc", "from", "message-id"]
                .contains(&String::from_utf8_lossy(&name).as_ref())
                && !name.starts_with(b"resent-")
                && !f
                    .windows(MARKER.len())
                    .any(|w| w.eq_ignore_ascii_case(MARKER))
        })
}

fn header_field() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => bcc_field(), 3 => other_field()]
}

proptest! {
    #![proptest_config(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    })]

    /// Whatever comes in, what goes out is clean; what is refused is
    /// refused as bad input (65) or for want of a recipient (64), never
    /// for anything else.
    #[test]
    fn any_bytes_give_a_clean_message_or_an_error(
        input in prop_oneof![input(), vec(any::<u8>(), 0..600)],
        read_recipients in any::<bool>(),
        ignore_dots in any::<bool>(),
    ) {
        match run(&input, read_recipients, ignore_dots) {
            Ok(Some(out)) => check_message(out.bytes())?,
            Ok(None) => return Err(TestCaseError::fail("skipped without skip_empty")),
            Err(e) => prop_assert!(
                matches!(crate::exit::code_for(&e), Exit::DataErr | Exit::Usage),
                "{:#}",
                e
            ),
        }
    }
}

/// Every way to end a line, or break one, with CR and LF: bare CRs alone,
/// doubled, before LF and after it.
fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "\n", "\r\n", "\r", "\0\n", "\r\r\n", "\n\r", "\r\n\r", "\r\r", "\r\r\r\n", "\n\r\r",
        "\r\0\r\n",
    ])
}

proptest! {
    #![proptest_config(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    })]

    /// A Bcc anywhere in the header block, however written and whatever
    /// the line ends, never shows: not in the header, not pushed into the
    /// body; the message is sent (every field is valid); and with `-t` the
    /// Bcc's recipients are in the envelope.
    #[test]
    fn bcc_never_reaches_the_wire(
        first in prop::sample::select(vec!["To: a@example.com", "Subject: s\nCc: root", "Resent-To: root"]),
        fields in vec((header_field(), separator()), 0..10),
        body in vec("[ -~]{0,100}", 0..5),
        read_recipients in any::<bool>(),
    ) {
        let mut input = bytes(first);
        input.extend(b"\n");
        let mut bccs = 0;
        for (field, eol) in fields {
            bccs += usize::from(field.windows(MARKER.len()).any(|w| w.eq_ignore_ascii_case(MARKER)));
            input.extend(field);
            input.extend(eol.as_bytes());
        }
        input.extend(b"\n\n");
        input.extend(body.join("\n").as_bytes());
        let out = match run(&input, read_recipients, true) {
            Ok(Some(out)) => out,
            Ok(None) => return Err(TestCaseError::fail("skipped")),
            Err(e) => return Err(TestCaseError::fail(format!("{e:#}"))),
        };
        check_message(out.bytes())?;
        prop_assert!(
            !out.bytes().windows(MARKER.len()).any(|w| w.eq_ignore_ascii_case(MARKER)),
            "{}",
            String::from_utf8_lossy(out.bytes())
        );
        // Without a resent block (which takes over -t), every Bcc is served.
        let resent = input.windows(7).any(|w| w.eq_ignore_ascii_case(b"resent-"));
        if read_recipients && bccs > 0 && !resent {
            let hidden = ["hidden@example.org", "fallback@example.org"];
            prop_assert!(
                out.recipients.iter().any(|r| hidden.contains(&r.as_str())),
                "{:?} from {:?}",
                out.recipients,
                String::from_utf8_lossy(&input)
            );
        }
    }
}

/// What cron mails: its fixed header, with the job's command in Subject
/// and the environment in X-Cron-Env (any octets but LF), then whatever
/// the job printed.
fn cron_mail() -> impl Strategy<Value = Vec<u8>> {
    let text = || {
        prop_oneof![
            3 => vec(any::<u8>().prop_filter("one line", |b| *b != b'\n'), 0..80),
            1 => vec(prop::sample::select(vec![b'\r', b'x', b':', b' ', b'.', 0xe9, 0]), 0..80),
        ]
    };
    let output = prop_oneof![
        3 => vec(any::<u8>(), 0..400),
        2 => vec(
            prop::sample::select(vec![
                &b"\n"[..], b"\r", b"\r\n", b"\r\r\n", b"\n\r", b".", b".\n", b"From ",
                b"Bcc: x@example.org", b"progress 10%", b"\0", b"\xff",
            ]),
            0..60,
        )
        .prop_map(|parts| parts.concat()),
        1 => (990..3000usize, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ];
    (text(), vec(("[A-Z_]{1,8}", text()), 0..4), output).prop_map(|(command, env, output)| {
        let mut mail = b"From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> ".to_vec();
        mail.extend(command);
        mail.extend(b"\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n");
        for (name, value) in env {
            mail.extend(format!("X-Cron-Env: <{name}=").as_bytes());
            mail.extend(value);
            mail.extend(b">\n");
        }
        mail.extend(b"\n");
        mail.extend(output);
        mail
    })
}

/// Whether a bare CR in the header block of `mail` comes before a field
/// that names recipients (`...\rTo: x`): with `-t`, that is a recipient
/// field as on the wire, and a garbage address there is rightly refused.
fn cr_before_a_recipient_field(mail: &[u8]) -> bool {
    let head_end = mail
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(mail.len());
    mail[..head_end]
        .split(|b| *b == b'\r')
        .skip(1)
        .any(|piece| {
            let piece: Vec<u8> = piece.iter().copied().filter(|b| *b != 0).collect();
            field_name(&piece).is_some_and(|name| {
                let name = name.to_ascii_lowercase();
                [&b"to"[..], b"cc", b"bcc"].contains(&name.as_slice())
                    || name.starts_with(b"resent-")
            })
        })
}

proptest! {
    #![proptest_config(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    })]

    /// cron's mail is never refused, whatever the job's command, its
    /// environment and its output hold; and what goes out is clean.
    #[test]
    fn crons_mail_is_never_refused(
        mail in cron_mail(),
        read_recipients in any::<bool>(),
        ignore_dots in any::<bool>(),
    ) {
        // Debian cron passes the user (root here), cronie -t; anacron no -i.
        prop_assume!(!read_recipients || !cr_before_a_recipient_field(&mail));
        let out = match run_as(&mail, read_recipients, ignore_dots, "root") {
            Ok(Some(out)) => out,
            Ok(None) => return Err(TestCaseError::fail("skipped")),
            Err(e) => return Err(TestCaseError::fail(format!("{e:#}"))),
        };
        check_message(out.bytes())?;
        prop_assert_eq!(&out.recipients, &["admin@example.com"]);
    }
}

/// A well-formed field: a plain name and a value of words.
fn good_field() -> impl Strategy<Value = (String, String)> {
    (
        "X-[A-Z][a-z]{0,8}|Subject|Comments|Keywords",
        vec("[!-~]{1,30}", 1..120),
    )
        .prop_map(|(name, words)| (name, words.join(" ")))
}

/// A body line: any octets but CR and LF, some of them long.
fn good_body_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>().prop_filter("no line break", |b| *b != b'\r' && *b != b'\n'), 0..120),
        1 => (990..3000usize, "[ -~]").prop_map(|(n, c)| c.repeat(n).into_bytes()),
        1 => Just(b".".to_vec()),
    ]
}

proptest! {
    #![proptest_config(Config {
        cases: 150,
        failure_persistence: None,
        ..Config::default()
    })]

    /// What goes in comes out, as mailparse reads both: every field but Bcc
    /// (unfolded), and the body decoded, even when it had to be re-encoded.
    #[test]
    fn a_well_formed_message_round_trips(
        fields in vec(good_field(), 0..6),
        eight_bit in any::<bool>(),
        body in vec(good_body_line(), 0..8),
    ) {
        let mut input = b"From: Me <me@example.com>\r\nTo: you@example.com\r\nBcc: hidden@example.org\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p@example.com>\r\n".to_vec();
        if eight_bit {
            input.extend(b"Content-Transfer-Encoding: 8bit\r\n");
        }
        for (name, value) in &fields {
            input.extend(format!("{name}: {value}\r\n").as_bytes());
        }
        input.extend(b"\r\n");
        for line in &body {
            input.extend(line);
            input.extend(b"\r\n");
        }
        let out = match run(&input, true, true) {
            Ok(Some(out)) => out,
            Ok(None) => return Err(TestCaseError::fail("skipped")),
            Err(e) => return Err(TestCaseError::fail(format!("{e:#}"))),
        };
        check_message(out.bytes())?;
        prop_assert_eq!(&out.recipients, &["you@example.com", "hidden@example.org"]);

        let unfolded = |v: &[u8]| String::from_utf8_lossy(v).replace("\r\n", "");
        let mime = ["content-transfer-encoding", "mime-version", "content-type", "bcc"];
        let sent = mailparse::parse_mail(out.bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let given = mailparse::parse_mail(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let fields_of = |m: &mailparse::ParsedMail| -> Vec<(String, String)> {
            m.headers
                .iter()
                .map(|h| (h.get_key().to_ascii_lowercase(), unfolded(h.get_value_raw())))
                .filter(|(k, _)| !mime.contains(&k.as_str()))
                .collect()
        };
        prop_assert_eq!(fields_of(&sent), fields_of(&given));
        prop_assert_eq!(
            sent.get_body_raw().map_err(|e| TestCaseError::fail(e.to_string()))?,
            body.iter().flat_map(|l| [l.as_slice(), b"\r\n"].concat()).collect::<Vec<u8>>()
        );
    }
}

/// Recipient items: address-like text with the characters that matter to
/// the parser, or any string at all.
fn recipient_item() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(
            prop::sample::select(vec![
                "root",
                "Root",
                "a@example.com",
                "<",
                ">",
                "\"",
                "\\",
                "(",
                ")",
                ":",
                ";",
                ",",
                " ",
                "@",
                "x",
                "\r\n",
                "\0",
                "é",
                "=?utf-8?q?x?=",
            ]),
            0..12
        )
        .prop_map(|parts| parts.concat()),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    })]

    /// The address parser never panics, and what it gives for the envelope
    /// is one address: a domain, no space or control character that could
    /// end an SMTP command or add an argument to it.
    #[test]
    fn recipients_resolve_to_clean_addresses_or_an_error(item in recipient_item()) {
        if let Ok(addresses) = super::address::resolve_recipient(&item, &aliases()) {
            for address in addresses {
                prop_assert!(address.contains('@'), "{address:?}");
                prop_assert!(
                    !address.chars().any(|c| c.is_control() || c.is_ascii_whitespace()),
                    "{address:?}"
                );
            }
        }
    }
}

/// The streaming path and the former in-memory one (`draft::reference`)
/// on the same input and job, with the same clock and Message-ID; the
/// spool read back `buffer` octets at a time and body lines in pieces of
/// `chunk`, lines over `cap` before the first empty line read as long
/// ones. Below the real cap (8 MiB) the streaming path may refuse a long
/// line where the in-memory one did not, and a line over the cap before
/// the first empty line is classified by a simpler rule (see below);
/// nothing else may differ.
fn oracle(
    input: &[u8],
    job: &Job,
    (buffer, chunk, cap): (usize, usize, usize),
) -> Result<(), TestCaseError> {
    use std::time::{Duration, SystemTime};

    use super::compose_draft;
    use super::draft::{Draft, reference};

    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let new_id = |m: &lettre::message::Mailbox| format!("<fixed@{}>", m.email.domain());
    let raw = Raw::read(&mut &input[..])
        .map_err(|e| TestCaseError::fail(format!("{e:#}")))?
        .with_sizes(buffer, chunk)
        .with_line_cap(cap);
    let streamed = Draft::parse(&raw, job.ignore_dots)
        .and_then(|draft| compose_draft(draft, job, now, new_id));
    let expected = reference::Draft::parse(input, job.ignore_dots)
        .and_then(|draft| compose_draft(draft, job, now, new_id));
    let show = |e: &anyhow::Error| {
        (
            format!("{e:#}"),
            crate::exit::code_for(e),
            e.downcast_ref::<crate::exit::Failure>()
                .map(|f| format!("{f:?}")),
        )
    };
    let capped = |e: &anyhow::Error| {
        let text = format!("{e:#}");
        text.starts_with("sendmail mode: a line before the first empty line is longer than")
            || text.starts_with("sendmail mode: the header block is larger than")
    };
    // A line over the cap before the first empty line is classified by
    // the streaming path's own simpler rule (it cannot hold the line): the
    // two paths may then disagree on where the header ends, but what the
    // streaming path gives must be a valid message or a clean refusal.
    if cap < LINE_CAP && long_header_line(input, cap) {
        return match streamed {
            Ok(Some(got)) => check_message(&got.message.into_bytes()),
            Ok(None) => Ok(()),
            Err(e) => {
                // Bad data, or no recipient once the header ends elsewhere.
                let code = crate::exit::code_for(&e);
                prop_assert!(
                    matches!(code, crate::exit::Exit::DataErr | crate::exit::Exit::Usage),
                    "{:?}: {:#}",
                    code,
                    e
                );
                Ok(())
            }
        };
    }
    match (streamed, expected) {
        (Err(e), _) if cap < LINE_CAP && capped(&e) => {}
        (Ok(None), Ok(None)) => {}
        (Ok(Some(got)), Ok(Some(want))) => {
            prop_assert_eq!(&got.message_id, &want.message_id);
            prop_assert_eq!(&got.from, &want.from);
            prop_assert_eq!(&got.recipients, &want.recipients);
            prop_assert_eq!(got.message.len(), want.message.len());
            let got = got.message.into_bytes();
            let want = want.message.into_bytes();
            prop_assert!(
                got == want,
                "streamed:\n{}\nexpected:\n{}",
                String::from_utf8_lossy(&got).escape_debug(),
                String::from_utf8_lossy(&want).escape_debug()
            );
        }
        (Err(got), Err(want)) => prop_assert_eq!(show(&got), show(&want)),
        (got, want) => {
            return Err(TestCaseError::fail(format!(
                "streamed {:?}, expected {:?}",
                got.map(|o| o.map(|o| o.message.into_bytes()))
                    .map_err(|e| show(&e)),
                want.map(|o| o.map(|o| o.message.into_bytes()))
                    .map_err(|e| show(&e)),
            )));
        }
    }
    Ok(())
}

/// Whether a line before the first empty one is longer than `cap`.
fn long_header_line(input: &[u8], cap: usize) -> bool {
    for line in input.split(|b| *b == b'\n') {
        if line.len() > cap {
            return true;
        }
        if line.iter().all(|b| *b == b'\r') {
            return false;
        }
    }
    false
}

/// `oracle` with a job made of these switches.
fn oracle_with(
    input: &[u8],
    (read_recipients, ignore_dots, skip_empty, policy): (bool, bool, bool, FromPolicy),
    sizes: (usize, usize, usize),
) -> Result<(), TestCaseError> {
    let aliases = aliases();
    let arguments = if read_recipients {
        vec![]
    } else {
        vec!["x@example.com".to_owned()]
    };
    let job = Job {
        ignore_dots,
        read_recipients,
        arguments: &arguments,
        aliases: &aliases,
        skip_empty,
        account_from: Some("Server <server@example.com>"),
        sender: None,
        from_policy: policy,
        full_name: None,
    };
    oracle(input, &job, sizes)
}

/// What may come before a message: a byte order mark, mbox separators.
fn preamble() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        &b""[..],
        b"\xEF\xBB\xBF",
        b"\xEF\xBB",
        b"From x Sat Nov 28 10:00:00 2026\n",
        b"From x Sat Nov 28 10:00:00 2026\r\n",
        b"From x\n",
        b"From \n",
        b"\xEF\xBB\xBFFrom x Sat Nov 28 10:00:00 2026\n",
        b".\n",
        b"\n",
    ])
    .prop_map(<[u8]>::to_vec)
}

/// A message: a header block of fields of every kind, any line ends, a
/// body of any lines; or the bare inputs of the other tests.
/// Lines longer than the oracle's small line caps, of the kinds that
/// decide the header block: fields, continuation lines, text, with bare
/// CRs before fields further on, and lines of CRs only (empty lines).
fn long_head_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (
            prop::sample::select(vec!["", " ", "\t", "\r", "\0", " \t"]),
            prop::sample::select(vec!["X-A: ", "x", "Bcc: hidden@example.org", "no field", "B\0cc:", "x\x0c:", "X :"]),
            (250..1300usize, prop::sample::select(vec![b'a', b' ', b'\r', 0, b':', 0xc3])),
            prop::sample::select(vec!["", "\rTo: a@example.com", "\r\0Bcc: x", "\r b", "\r\r\r", "\rno: field"]),
        )
            .prop_map(|(lead, start, (n, fill), end)| {
                [bytes(lead), bytes(start), vec![fill; n], bytes(end)].concat()
            }),
        1 => (250..1300usize).prop_map(|n| vec![b'\r'; n]),
    ]
}

/// A message: a header block of fields of every kind, any line ends, a
/// body of any lines.
fn structured_message() -> impl Strategy<Value = Vec<u8>> {
    (
        preamble(),
        vec(
            (
                prop_oneof![
                    3 => header_field(),
                    1 => prop::sample::select(vec![
                        "Content-Type: multipart/mixed; boundary=b",
                        "Content-Type: message/rfc822",
                        "Content-Type: text/plain; charset=utf-8",
                        "Content-Type: Multipart/Alternative (x)",
                        "Content-Transfer-Encoding: base64",
                        "Content-Transfer-Encoding: 8bit",
                        "Content-Transfer-Encoding: 7BIT (c)",
                        "MIME-Version: 1.0",
                        "From: root (Cron Daemon)",
                        "To: root, a@example.com",
                    ])
                    .prop_map(bytes),
                ],
                separator(),
            ),
            0..8,
        ),
        vec(
            (
                prop_oneof![3 => line(), 2 => long_head_line()],
                end_of_line(),
            ),
            0..4,
        ),
        prop::sample::select(vec!["\n", "\r\n", "", "\r", "\n\n", " \n"]),
        vec(
            (
                prop_oneof![
                    4 => good_body_line(),
                    2 => line(),
                    // Long lines of multi-octet characters, at any offset.
                    1 => (
                        0..4usize,
                        prop::sample::select(vec!["\u{e9}", "\u{20ac}", "\u{1f600}", ". "]),
                        300..1200usize,
                    )
                        .prop_map(|(offset, c, n)| {
                            [b"a".repeat(offset), c.repeat(n).into_bytes()].concat()
                        }),
                    1 => prop::sample::select(vec![
                        &b"."[..], b".\r", b"..", b"", b" \t", b"\0", b"\xc3", b"\xa9", b"\xe2\x82",
                        b"--b", b"From x Sat Nov 28 10:00:00 2026",
                    ])
                    .prop_map(<[u8]>::to_vec),
                ],
                separator(),
            ),
            0..10,
        ),
        any::<bool>(),
    )
        .prop_map(|(pre, fields, lines, gap, body, last_eol)| {
            let mut out = pre;
            for (field, eol) in fields {
                out.extend(field);
                out.extend(eol.as_bytes());
            }
            for (line, eol) in lines {
                out.extend(line);
                out.extend(eol);
            }
            out.extend(gap.as_bytes());
            let count = body.len();
            for (i, (line, eol)) in body.into_iter().enumerate() {
                out.extend(line);
                if i + 1 < count || last_eol {
                    out.extend(eol.as_bytes());
                }
            }
            out
        })
}

fn any_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => structured_message(),
        // No LF at all: CR is the line end.
        1 => structured_message().prop_map(|m| m.into_iter().map(|b| if b == b'\n' { b'\r' } else { b }).collect()),
        2 => (preamble(), input()).prop_map(|(p, i)| [p, i].concat()),
        1 => vec(any::<u8>(), 0..600),
        1 => vec(prop::sample::select(vec![b'\r', b'\n', b'.', 0, b' ', b':', b'a', 0xc3]), 0..40),
        1 => cron_mail(),
    ]
}

fn switches() -> impl Strategy<Value = (bool, bool, bool, FromPolicy)> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![
            FromPolicy::Auto,
            FromPolicy::Always,
            FromPolicy::Never,
        ]),
    )
}

proptest! {
    #![proptest_config(Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    })]

    /// The streaming path gives, for any input, byte for byte the message
    /// (and envelope) the in-memory path gave, or the same error with the
    /// same exit code; whatever the sizes the spool is read back in.
    #[test]
    fn streaming_gives_what_the_in_memory_path_gave(
        input in any_message(),
        switches in switches(),
        buffer in prop_oneof![1..40usize, Just(64 * 1024)],
        chunk in prop_oneof![3..40usize, Just(64 * 1024)],
        cap in prop_oneof![256..1200usize, Just(LINE_CAP)],
    ) {
        oracle_with(&input, switches, (buffer, chunk, cap))?;
    }
}

/// `oracle_with` over the usual switches, at the real read-back sizes and
/// at small ones.
fn check_all(input: &[u8]) {
    for switches in [
        (false, false, false, FromPolicy::Auto),
        (true, true, true, FromPolicy::Auto),
        (true, false, false, FromPolicy::Never),
    ] {
        for sizes in [
            (64 * 1024, 64 * 1024, LINE_CAP),
            (7, 5, LINE_CAP),
            (4096, 1000, LINE_CAP),
            (4096, 1000, 300),
        ] {
            if let Err(e) = oracle_with(input, switches, sizes) {
                panic!("{switches:?} {sizes:?}: {e}");
            }
        }
    }
}

/// A body of `size` octets in lines of `line` octets (`line - 1` and LF).
fn filler(size: usize, line: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let mut i = 0u8;
    while out.len() < size {
        if out.len() % line == line - 1 {
            out.push(b'\n');
        } else {
            out.push(b'a' + i % 26);
            i = i.wrapping_add(1);
        }
    }
    out
}

#[test]
fn inputs_around_the_spool_threshold_come_out_the_same() {
    const MIB: usize = 1 << 20;
    for head in [
        &b"To: a@example.com\nSubject: s\n\n"[..],
        b"Content-Type: multipart/mixed; boundary=b\n\n",
        b"no header\n",
    ] {
        for size in [MIB - 1, MIB, MIB + 1] {
            for (tail, line) in [(&b""[..], 80), (b"\n.\nafter\n", 80), (b"\0x\n", 1500)] {
                let mut input = head.to_vec();
                input.extend(filler(size - head.len() - tail.len(), line));
                input.extend(tail);
                assert_eq!(input.len(), size);
                let raw = Raw::read(&mut &input[..]).unwrap();
                assert_eq!(raw.in_file(), size > MIB, "{size}");
                check_all(&input);
            }
        }
    }
}

#[test]
fn lines_across_read_boundaries_come_out_the_same() {
    const K64: usize = 64 * 1024;
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for at in [K64 - 3, K64 - 2, K64 - 1, K64, K64 + 1, 2 * K64 - 1] {
        for piece in [
            &b"\r\n"[..],
            b"\r\r\n",
            b"\r",
            b"\n.\n",
            b"\n.\r\n",
            b"\n\n",
            b"\xc3\xa9",
            b"\0",
            b"\r.\r",
        ] {
            for head in [&b"Subject: s\n\n"[..], b"Subject: s\n"] {
                let mut input = head.to_vec();
                input.resize(at, b'x');
                input.extend(piece);
                input.extend(b"yz\n");
                inputs.push(input);
            }
        }
    }
    // A header line across the boundary, and a body line far longer.
    let mut input = b"Subject: ".to_vec();
    input.extend(vec![b'w'; K64 + 10]);
    input.extend(b"\r\nTo: b@example.com\n\n");
    input.extend(vec![b'.'; 3 * K64]);
    input.extend(b"\r\r\n");
    inputs.push(input);
    for input in &inputs {
        check_all(input);
    }
}

#[test]
fn a_header_block_over_8_mib_is_refused_and_a_long_body_line_is_not() {
    let mut input = b"Subject: s\nX-Big: ".to_vec();
    input.extend(vec![b'v'; 9 << 20]);
    input.extend(b"\n\nbody\n");
    let err = run(&input, false, false).err().expect("refused");
    assert_eq!(crate::exit::code_for(&err), Exit::DataErr);
    assert!(format!("{err:#}").contains("longer than 8 MiB"), "{err:#}");

    let mut input = b"Subject: s\n".to_vec();
    for _ in 0..(9 << 10) {
        input.extend(b"X-Many: ");
        input.extend(vec![b'm'; 1000]);
        input.extend(b"\n");
    }
    input.extend(b"\nbody\n");
    let err = run(&input, false, false).err().expect("refused");
    assert_eq!(crate::exit::code_for(&err), Exit::DataErr);
    assert!(
        format!("{err:#}").contains("header block is larger than 8 MiB"),
        "{err:#}"
    );

    // After the empty line, a line of any length is streamed.
    let mut input = b"Subject: s\n\n".to_vec();
    input.extend(vec![b'b'; 9 << 20]);
    input.extend(b"\n");
    let switches = (false, false, false, FromPolicy::Auto);
    oracle_with(&input, switches, (64 * 1024, 64 * 1024, LINE_CAP)).unwrap();
    oracle_with(&input, switches, (1000, 999, LINE_CAP)).unwrap();
}

#[test]
fn long_lines_before_the_empty_line_decide_as_short_ones_do() {
    let long = |s: &str| [s.as_bytes(), &[b'w'; 400]].concat();
    let crs = vec![b'\r'; 400];
    let cases: Vec<Vec<u8>> = vec![
        // An empty line of CRs only ends the header block.
        [b"Subject: s\n".as_slice(), &crs, b"\nbody\n"].concat(),
        [crs.as_slice(), b"\nBcc: x@example.org\n"].concat(),
        // Text first: no header block, whatever follows.
        [long("text ").as_slice(), b"\nBcc: x@example.org\n\nb\n"].concat(),
        [long("  x: ").as_slice(), b"\nTo: a@example.com\n"].concat(),
        // Text after the fields: the body, unless a field follows.
        [
            b"To: a@example.com\n".as_slice(),
            &long("some text"),
            b"\nmore\n",
        ]
        .concat(),
        [
            b"To: a@example.com\n".as_slice(),
            &long("some text"),
            b"\nBcc: x@example.org\n\nb\n",
        ]
        .concat(),
        [
            b"To: a@example.com\n".as_slice(),
            &long("text"),
            b"\rBcc: x@example.org\n\nb\n",
        ]
        .concat(),
        [
            b"To: a@example.com\nno field\n".as_slice(),
            &long("x\x0c:"),
            b"\n\nb\n",
        ]
        .concat(),
        [
            b"To: a@example.com\nno field\n".as_slice(),
            &long(" x:"),
            b"\n\nb\n",
        ]
        .concat(),
        // A broken field too long to hold.
        [
            b"To: a@example.com\n".as_slice(),
            &long("B\u{e9}cc: "),
            b"\n\nb\n",
        ]
        .concat(),
    ];
    for input in &cases {
        check_all(input);
    }
    // A field or continuation line too long to hold is refused.
    for input in [
        [
            b"To: a@example.com\n".as_slice(),
            &long("X-Long: "),
            b"\n\nb\n",
        ]
        .concat(),
        [
            b"To: a@example.com\n".as_slice(),
            &long(" folded "),
            b"\n\nb\n",
        ]
        .concat(),
        [
            long("From x Sat Nov 28 10:00:00 2026 ").as_slice(),
            b"\nTo: a\n\nb\n",
        ]
        .concat(),
    ] {
        let raw = Raw::read(&mut &input[..]).unwrap().with_line_cap(300);
        let err = super::draft::Draft::parse(&raw, true)
            .err()
            .expect("refused");
        assert_eq!(crate::exit::code_for(&err), Exit::DataErr);
        assert!(format!("{err:#}").contains("longer than 8 MiB"), "{err:#}");
    }
}

/// Found by the oracle: a header-region line longer than the line cap that
/// is not a field and ends in a run of CRs is named in the error without
/// those CRs, as the in-memory path names it.
#[test]
fn a_long_bad_line_ending_in_crs_is_named_without_them() {
    let mut input = b"From x Sat Nov 28 10:00:00 2026\nBcc: hidden@example.org\0\n\x7f:".to_vec();
    input.extend(std::iter::repeat_n(b'\r', 476));
    input.push(b'\n');
    for sizes in [
        (1, 3, 256),
        (4096, 1000, 300),
        (64 * 1024, 64 * 1024, LINE_CAP),
    ] {
        if let Err(e) = oracle_with(&input, (false, false, false, FromPolicy::Auto), sizes) {
            panic!("{sizes:?}: {e}");
        }
    }
}
