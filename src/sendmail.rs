//! The sendmail personality: a complete message on stdin, as cron, git,
//! mutt, mdadm and PHP's mail() hand it over.
//!
//! Owns sendmail's options (the ones real callers pass are accepted and
//! the meaningless ones ignored), reading the message (LF or CRLF, the
//! lone-dot rule unless `-i`), recipients from arguments or headers (`-t`),
//! local-name aliases, and the header edits a submission server needs:
//! Bcc removed, From qualified, Date and Message-ID added when missing.
//! Delivery itself is `send::submit`, as for every other mode.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Result;
use clap::Parser;
use lettre::message::Mailbox;
use lettre::message::header::{self, Headers};

use crate::cli::ServerArgs;
use crate::config::{FromPolicy, Settings};
use crate::exit::{Exit, Failure};
use crate::message;
use crate::send::{self, Outgoing};

/// sendmail's command line, as far as callers use it.
#[derive(Debug, Parser)]
#[command(
    name = "sendmail",
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true,
    about = "mailsend's sendmail personality"
)]
struct SendmailArgs {
    /// Read recipients from To, Cc and Bcc (minus those given as arguments)
    #[arg(short = 't')]
    read_recipients: bool,
    /// A line with a single dot does not end the message
    #[arg(short = 'i')]
    ignore_dots: bool,
    /// Envelope sender
    #[arg(short = 'f', visible_short_alias = 'r', value_name = "ADDR")]
    sender: Option<String>,
    /// Full name for a From header that mailsend has to add
    #[arg(short = 'F', value_name = "NAME")]
    full_name: Option<String>,
    /// sendmail -oX options: -oi is -i; the others (-oem, -odi, ...) are ignored
    #[arg(short = 'o', value_name = "OPTION")]
    options: Vec<String>,
    /// -O option=value: ignored
    #[arg(short = 'O', value_name = "OPTION")]
    long_options: Vec<String>,
    /// Body type (7BIT, 8BITMIME): ignored, 8-bit bodies are announced when the server allows
    #[arg(short = 'B', value_name = "TYPE")]
    body_type: Option<String>,
    /// Mode: only -bm (deliver mail, the default) is supported
    #[arg(short = 'b', value_name = "MODE")]
    mode: Option<String>,
    /// DSN options: ignored
    #[arg(short = 'N', value_name = "DSN")]
    dsn: Option<String>,
    /// DSN return: ignored
    #[arg(short = 'R', value_name = "RET")]
    dsn_return: Option<String>,
    /// DSN envelope id: ignored
    #[arg(short = 'V', value_name = "ENVID")]
    dsn_envid: Option<String>,
    /// Hop count: ignored
    #[arg(short = 'h', value_name = "N")]
    hops: Option<String>,
    /// Initial submission: ignored
    #[arg(short = 'U')]
    initial_submission: bool,
    /// Print the SMTP transcript on stderr
    #[arg(short = 'v')]
    verbose: bool,
    /// mailsend config file
    #[arg(short = 'C', value_name = "PATH")]
    config: Option<PathBuf>,
    /// mailsend config-file account
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
    /// Recipients
    recipients: Vec<String>,
}

/// Runs sendmail mode with `args` (everything after the program name).
pub fn run(args: &[String]) -> Result<Exit> {
    let opts = SendmailArgs::try_parse_from(args).map_err(|e| {
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("invalid arguments")
            .trim_start_matches("error: ");
        Failure::usage(format!("sendmail mode: {first}"))
    })?;
    if let Some(mode) = opts.mode.as_deref().filter(|m| *m != "m") {
        return Err(Failure::usage(format!(
            "sendmail mode: -b{mode} is not supported (only -bm)"
        ))
        .into());
    }
    let ignore_dots = opts.ignore_dots || opts.options.iter().any(|o| o == "i");
    let sender = opts
        .sender
        .as_deref()
        .filter(|s| !s.is_empty() && *s != "<>");
    let qualified_sender = sender.filter(|s| s.contains('@'));

    let server = ServerArgs {
        config: opts.config.clone(),
        account: opts.account.clone(),
        ignore_cwd_dotenv: true,
        ..ServerArgs::default()
    };
    let settings = Settings::resolve(&server, qualified_sender)?;

    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut input)
        .map_err(|e| {
            Failure::no_input(format!("cannot read the message on standard input: {e}"))
        })?;
    let mut draft = RawMessage::parse(&input, ignore_dots);
    if settings.skip_empty && draft.body_is_empty() {
        return Ok(Exit::Ok);
    }

    let account_from = match settings.from.as_deref() {
        Some(f) => Some(message::parse_mailbox("the account's from", f)?),
        None => None,
    };
    let sender_mailbox = match qualified_sender {
        Some(s) => Some(message::parse_mailbox("-f", s)?),
        None => None,
    };
    // The address a From header is qualified with: the account's, else -f's.
    let Some(from_mailbox) = account_from.or_else(|| sender_mailbox.clone()) else {
        return Err(Failure::config("no sender address for sendmail mode")
            .with_hint("set `from` in the config file account or MAILSEND_FROM, or pass -f ADDR")
            .into());
    };
    let envelope_from = sender_mailbox
        .as_ref()
        .unwrap_or(&from_mailbox)
        .email
        .to_string();

    let mut recipients = Vec::new();
    let arg_recipients: Vec<&str> = opts
        .recipients
        .iter()
        .flat_map(|r| message::split_list(r))
        .collect();
    if opts.read_recipients {
        let excluded: Vec<String> = arg_recipients
            .iter()
            .map(|r| resolve_recipient(r, &settings.aliases))
            .collect::<Result<Vec<_>>>()?
            .concat();
        for name in ["to", "cc", "bcc"] {
            for value in draft.values(name) {
                for item in message::split_list(&value) {
                    for addr in resolve_recipient(item, &settings.aliases)? {
                        if !excluded.iter().any(|e| e.eq_ignore_ascii_case(&addr)) {
                            recipients.push(addr);
                        }
                    }
                }
            }
        }
    } else {
        for item in arg_recipients {
            recipients.extend(resolve_recipient(item, &settings.aliases)?);
        }
    }
    dedup_ignore_case(&mut recipients);
    if recipients.is_empty() {
        return Err(Failure::usage(
            "sendmail mode: no recipients (give addresses, or -t with To/Cc/Bcc headers)",
        )
        .into());
    }

    draft.remove("bcc");
    draft.remove("resent-bcc");
    draft.fix_from(
        settings.set_from_header,
        &from_mailbox,
        opts.full_name.as_deref(),
    )?;
    if draft.values("date").is_empty() {
        draft.add(&format_header(header::Date::new(SystemTime::now())));
    }
    let message_id = match draft.values("message-id").first() {
        Some(id) => id.trim().to_owned(),
        None => {
            let sender: Mailbox = envelope_from
                .parse()
                .map_err(|_| Failure::data("invalid sender"))?;
            let id = message::new_message_id(&sender);
            draft.add(&format!("Message-ID: {id}\r\n"));
            id
        }
    };

    let outgoing = Outgoing {
        message_id,
        from: envelope_from,
        recipients,
        bytes: draft.into_bytes(),
        all_or_nothing: false,
    };
    send::submit(&settings, &outgoing, false, opts.verbose)
}

/// One recipient item: an address (`Name <a@b>` allowed), or a local name
/// (`root`) that the aliases table maps, falling back to its `default`.
fn resolve_recipient(item: &str, aliases: &BTreeMap<String, String>) -> Result<Vec<String>> {
    let (bare, _) = strip_comments(item);
    let bare = without_group_syntax(&bare);
    if bare.is_empty() {
        return Ok(vec![]); // e.g. the empty group `undisclosed-recipients:;`
    }
    if bare.contains('@') {
        let mailbox = message::parse_mailbox("recipient", bare)?;
        return Ok(vec![mailbox.email.to_string()]);
    }
    let local = bare.trim_start_matches('<').trim_end_matches('>');
    let target = aliases.get(local).or_else(|| aliases.get("default")).ok_or_else(|| {
        Failure::data(format!("recipient '{local}' has no domain and no alias"))
            .with_hint(format!("add `{local} = \"you@example.com\"` (or `default = ...`) under [aliases] in the config file"))
    })?;
    let mut out = Vec::new();
    for item in message::split_list(target) {
        if !item.contains('@') {
            return Err(Failure::config(format!(
                "alias {local} = '{target}' must map to addresses with a domain"
            ))
            .into());
        }
        out.push(message::parse_mailbox("alias", item)?.email.to_string());
    }
    Ok(out)
}

/// One item of a list, without RFC 5322 group syntax around it: the
/// `team:` label before a group's first member and the `;` after its last.
fn without_group_syntax(item: &str) -> &str {
    let item = item.trim().trim_end_matches(';').trim_end();
    match find_unquoted(item, ':') {
        Some(colon) if !item[..colon].contains(['<', '@']) => item[colon + 1..].trim(),
        _ => item,
    }
}

/// The byte index of the first `wanted` outside a quoted string.
fn find_unquoted(text: &str, wanted: char) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ if c == wanted && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// The byte index of the last `wanted` outside a quoted string.
fn rfind_unquoted(text: &str, wanted: char) -> Option<usize> {
    let mut found = None;
    let mut rest = 0;
    while let Some(i) = find_unquoted(&text[rest..], wanted) {
        found = Some(rest + i);
        rest += i + wanted.len_utf8();
    }
    found
}

fn dedup_ignore_case(list: &mut Vec<String>) {
    let mut seen: Vec<String> = Vec::new();
    list.retain(|a| {
        let new = !seen.iter().any(|s| s.eq_ignore_ascii_case(a));
        if new {
            seen.push(a.clone());
        }
        new
    });
}

/// Removes `(comments)` outside quotes; returns the rest and the first
/// comment's text (cron's `root (Cron Daemon)` carries the name there).
fn strip_comments(value: &str) -> (String, Option<String>) {
    let (mut out, mut comment, mut first) = (String::new(), String::new(), None);
    let (mut depth, mut quoted, mut escaped) = (0u32, false, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth > 0 {
                comment.push(c)
            } else {
                out.push(c)
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => {
                if depth > 0 {
                    comment.push(c);
                }
                depth += 1;
            }
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    first.get_or_insert_with(|| comment.trim().to_owned());
                    comment.clear();
                } else {
                    comment.push(c);
                }
            }
            _ if depth > 0 => comment.push(c),
            _ => out.push(c),
        }
    }
    (out, first.filter(|c| !c.is_empty()))
}

/// A header rendered by lettre (RFC 2047 encoding, folding), with CRLF.
fn format_header<H: header::Header>(h: H) -> String {
    let mut headers = Headers::new();
    headers.set(h);
    headers.to_string()
}

/// The message as read: header fields kept line for line, byte for byte,
/// so that what mailsend does not need to change goes out exactly as it
/// came in.
struct RawMessage {
    /// Each field with its continuation lines, CRLF-terminated.
    fields: Vec<Vec<u8>>,
    body: Vec<u8>,
}

impl RawMessage {
    /// Splits `input` into header fields and body. Lines may end in LF or
    /// CRLF; a leading mbox `From ` line is dropped; without `ignore_dots`
    /// a line holding only `.` ends the message, as in sendmail. A bare CR
    /// inside the header block becomes a space: the wire turns it into a
    /// line break, and so it could start a header (a `Bcc:`) unseen here.
    fn parse(input: &[u8], ignore_dots: bool) -> RawMessage {
        let mut lines: Vec<&[u8]> = input
            .split_inclusive(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\n").unwrap_or(l))
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .collect();
        if lines.first().is_some_and(|l| l.starts_with(b"From ")) {
            lines.remove(0);
        }
        if !ignore_dots && let Some(end) = lines.iter().position(|l| *l == b".") {
            lines.truncate(end);
        }
        let mut fields: Vec<Vec<u8>> = Vec::new();
        let mut rest = lines.as_slice();
        while let Some((line, tail)) = rest.split_first() {
            if line.is_empty() {
                rest = tail;
                break;
            }
            let mut clean: Vec<u8> = line
                .iter()
                .map(|&b| if b == b'\r' { b' ' } else { b })
                .collect();
            clean.extend_from_slice(b"\r\n");
            if line[0] == b' ' || line[0] == b'\t' {
                match fields.last_mut() {
                    Some(field) => field.extend_from_slice(&clean),
                    None => break,
                }
            } else if is_field_start(line) {
                fields.push(clean);
            } else {
                break; // not a header: the body starts here
            }
            rest = tail;
        }
        let mut body = Vec::with_capacity(input.len());
        for line in rest {
            body.extend_from_slice(line);
            body.extend_from_slice(b"\r\n");
        }
        RawMessage { fields, body }
    }

    fn body_is_empty(&self) -> bool {
        self.body.iter().all(u8::is_ascii_whitespace)
    }

    /// The field's name and unfolded value, as text for parsing.
    fn split(field: &[u8]) -> Option<(String, String)> {
        let text = String::from_utf8_lossy(field);
        let (name, value) = text.split_once(':')?;
        Some((
            name.trim().to_ascii_lowercase(),
            value.replace("\r\n", "").trim().to_owned(),
        ))
    }

    /// Unfolded values of every field called `name` (case-insensitive).
    fn values(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter_map(|f| Self::split(f))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    fn remove(&mut self, name: &str) {
        self.fields
            .retain(|f| !Self::split(f).is_some_and(|(n, _)| n.eq_ignore_ascii_case(name)));
    }

    fn add(&mut self, field: &str) {
        self.fields.push(field.as_bytes().to_vec());
    }

    /// Applies the From policy: a missing From is added and one whose
    /// address has no domain (`root (Cron Daemon)`) is rewritten to
    /// `sender`'s address, keeping its display name as written (encoded
    /// words and quotes included); `always` rewrites any.
    fn fix_from(
        &mut self,
        policy: FromPolicy,
        sender: &Mailbox,
        full_name: Option<&str>,
    ) -> Result<()> {
        if policy == FromPolicy::Never {
            return Ok(());
        }
        let current = self.values("from");
        let (needs, kept) = match current.first() {
            None => (true, None),
            Some(value) => {
                let (bare, comment) = strip_comments(value);
                let phrase = rfind_unquoted(&bare, '<').map(|at| bare[..at].trim().to_owned());
                let kept = phrase
                    .filter(|p| !p.is_empty())
                    .or_else(|| comment.map(|c| quoted(&c)));
                (policy == FromPolicy::Always || !bare.contains('@'), kept)
            }
        };
        if !needs {
            return Ok(());
        }
        let field = match kept {
            // Already in header syntax, from a header line: kept verbatim.
            Some(raw) if raw.is_ascii() => format!("From: {raw} <{}>\r\n", sender.email),
            other => {
                let name = other
                    .map(|n| n.trim_matches('"').to_owned())
                    .or_else(|| full_name.map(str::to_owned))
                    .filter(|n| !n.trim().is_empty())
                    .or_else(|| sender.name.clone());
                message::check_header_text(
                    "the From display name",
                    name.as_deref().unwrap_or_default(),
                )?;
                let mailbox = Mailbox::new(name, sender.email.clone());
                format_header(header::From::from(lettre::message::Mailboxes::from(
                    mailbox,
                )))
            }
        };
        self.remove("from");
        self.fields.insert(0, field.into_bytes());
        Ok(())
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut out: Vec<u8> = self.fields.concat();
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// `text` as an RFC 5322 quoted string.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `Name:` at the start of a line, with a valid RFC 5322 field name;
/// white space before the colon is the obsolete but legal `Bcc : x` form.
fn is_field_start(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    !name.is_empty() && name.iter().all(|b| (33..=126).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lf_input_and_keeps_fields_exact() {
        let m = RawMessage::parse(
            b"From root  Mon Jan 1\nSubject: caf\xe9\n  folded\nTo: x@example.com\n\nbody\n.\nafter\n",
            false,
        );
        assert_eq!(
            m.fields,
            [
                b"Subject: caf\xe9\r\n  folded\r\n".to_vec(),
                b"To: x@example.com\r\n".to_vec()
            ]
        );
        assert_eq!(m.body, b"body\r\n");
        assert_eq!(m.values("to"), ["x@example.com"]);
        let m = RawMessage::parse(b"Subject: a\r\n\r\nbody\r\n.\r\nafter", true);
        assert_eq!(m.body, b"body\r\n.\r\nafter\r\n");
    }

    #[test]
    fn no_header_can_hide_from_bcc_removal() {
        let mut m = RawMessage::parse(
            b"To: a@example.com\nSubject: hi\rBcc: s@example.org\nBcc : t@example.org\n\nx\n",
            true,
        );
        m.remove("bcc");
        let out = m.into_bytes();
        assert_eq!(
            out,
            b"To: a@example.com\r\nSubject: hi Bcc: s@example.org\r\n\r\nx\r\n"
        );
        assert_eq!(
            crate::smtp::wire_data(&out)
                .windows(5)
                .filter(|w| w.eq_ignore_ascii_case(b"\nbcc"))
                .count(),
            0
        );
    }

    #[test]
    fn display_names_are_kept_as_written() {
        let sender: Mailbox = "server@example.com".parse().unwrap();
        for (from, expected) in [
            (
                "=?UTF-8?B?WsO2ZQ==?= <root>",
                "=?UTF-8?B?WsO2ZQ==?= <server@example.com>",
            ),
            ("\"Doe, <J>\" <root>", "\"Doe, <J>\" <server@example.com>"),
            (
                "root (Cron \"Daemon\")",
                "\"Cron \\\"Daemon\\\"\" <server@example.com>",
            ),
        ] {
            let mut m = RawMessage::parse(format!("From: {from}\n\nx\n").as_bytes(), false);
            m.fix_from(FromPolicy::Auto, &sender, None).unwrap();
            assert_eq!(m.values("from"), [expected]);
        }
    }

    #[test]
    fn cron_from_is_qualified_keeping_its_name() {
        let account: Mailbox = "Server <server@example.com>".parse().unwrap();
        let mut m = RawMessage::parse(
            b"From: root (Cron Daemon)\nTo: root\nSubject: x\n\nout\n",
            false,
        );
        m.fix_from(FromPolicy::Auto, &account, None).unwrap();
        assert_eq!(m.values("from"), ["\"Cron Daemon\" <server@example.com>"]);

        let mut m = RawMessage::parse(b"From: Me <me@example.org>\n\nx\n", false);
        m.fix_from(FromPolicy::Auto, &account, None).unwrap();
        assert_eq!(
            m.values("from"),
            ["Me <me@example.org>"],
            "a qualified From stays"
        );
        m.fix_from(FromPolicy::Always, &account, None).unwrap();
        assert_eq!(m.values("from"), ["Me <server@example.com>"]);

        let mut m = RawMessage::parse(b"Subject: x\n\nx\n", false);
        m.fix_from(FromPolicy::Auto, &account, Some("Anacron"))
            .unwrap();
        assert_eq!(m.values("from"), ["Anacron <server@example.com>"]);
    }

    #[test]
    fn full_name_cannot_inject_a_header() {
        let account: Mailbox = "server@example.com".parse().unwrap();
        let mut m = RawMessage::parse(b"Subject: x\n\nx\n", false);
        assert!(
            m.fix_from(
                FromPolicy::Auto,
                &account,
                Some("Evil\r\nBcc: v@example.com")
            )
            .is_err()
        );
    }

    #[test]
    fn recipients_and_aliases() {
        let aliases: BTreeMap<String, String> = [(
            "root".to_owned(),
            "admin@example.com, ops@example.com".to_owned(),
        )]
        .into();
        assert_eq!(
            resolve_recipient("root", &aliases).unwrap(),
            ["admin@example.com", "ops@example.com"]
        );
        assert_eq!(
            resolve_recipient("Zoë <z@example.com>", &aliases).unwrap(),
            ["z@example.com"]
        );
        assert!(
            resolve_recipient("undisclosed-recipients:;", &aliases)
                .unwrap()
                .is_empty()
        );
        assert!(resolve_recipient("nobody", &aliases).is_err());
        let with_default: BTreeMap<String, String> =
            [("default".to_owned(), "all@example.com".to_owned())].into();
        assert_eq!(
            resolve_recipient("www-data", &with_default).unwrap(),
            ["all@example.com"]
        );
    }

    #[test]
    fn comments_are_stripped() {
        assert_eq!(
            strip_comments("root (Cron Daemon)"),
            ("root ".to_owned(), Some("Cron Daemon".to_owned()))
        );
        assert_eq!(strip_comments("\"a (b)\" <x@y>").0, "\"a (b)\" <x@y>");
    }
}
