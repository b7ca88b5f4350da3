//! The message as sendmail mode reads it from stdin: header fields kept
//! line for line, byte for byte, so that what mailsend does not need to
//! change goes out exactly as it came in; and the repairs that make any
//! input fit for the wire (no NUL, no bare CR or LF, no line over 998
//! octets, no Bcc).
//!
//! Where the header block ends. Sendmail, Postfix and Exim end it at the
//! first line that is not a header field, and a `Bcc:` below such a line
//! then travels as body text, in view of every recipient. Here the header
//! block runs to the first empty line when the input starts with a header
//! field, except that lines after its last header field (and that field's
//! continuation lines) are the body, as in sendmail (`Subject: x` followed
//! by text and no empty line). So every field-like line before the first
//! empty line is inside the header block, where Bcc is removed. A line
//! there that is not a valid field (a name with 8-bit or control octets,
//! no colon) is refused (65) with its line number: mailsend cannot tell
//! what it was meant to be, and guessing could publish a header or lose
//! text. Input that does not start with a header field has no header block
//! at all (`echo hi | sendmail root`), as in sendmail.

use anyhow::Result;
use lettre::message::Mailbox;
use lettre::message::header::{self, Headers};

use super::address::{quoted, rfind_unquoted, strip_comments};
use super::lines;
use crate::config::FromPolicy;
use crate::exit::Failure;
use crate::message;

const BOM: &[u8] = b"\xEF\xBB\xBF";

pub struct Draft {
    /// Each field with its continuation lines, CRLF-terminated; no NUL,
    /// CR or LF other than those line ends.
    fields: Vec<Vec<u8>>,
    /// The body's lines, without line endings, CR or LF.
    body: Vec<Vec<u8>>,
}

impl Draft {
    /// Splits `input` into header fields and body.
    ///
    /// Lines end at LF (at CR in input that has no LF at all, where the
    /// lone-dot rule below sees one line only); CRs just before an LF are part of the line end
    /// (`\r+\n`, and CRs at the very end of the input). A bare CR (one not
    /// before LF) never makes an empty line and so never ends the header
    /// block: in the header block, a bare CR followed by a valid field
    /// (`Subject: hi\rBcc: x`) starts that field, as the line break the
    /// wire would make of it (so that Bcc is removed too), and any other
    /// bare CR is a space; in the body it is a line break. A UTF-8 byte
    /// order mark and a leading mbox `From ` line (`From addr Mon Jan 1
    /// ...`) are dropped; without `ignore_dots` an LF-delimited line
    /// holding only `.` (one CR before the LF allowed) ends the message,
    /// as in sendmail, before any bare CR is looked at. NUL octets are
    /// removed from the header block.
    pub fn parse(input: &[u8], ignore_dots: bool) -> Result<Draft> {
        let input = input.strip_prefix(BOM).unwrap_or(input);
        let mut raw: Vec<&[u8]> = input
            .split_inclusive(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\n").unwrap_or(l))
            .collect();
        // The lone dot: on LF lines, before any CR is looked at, so that
        // nothing is cut that sendmail or Postfix would not cut.
        if !ignore_dots && let Some(end) = raw.iter().position(|l| *l == b"." || *l == b".\r") {
            raw.truncate(end);
        }
        if !input.contains(&b'\n') {
            // No LF at all: CR is the line end (old Mac files), and no
            // mix of CR and LF can be misread.
            let text = raw.first().copied().unwrap_or_default();
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            raw = if text.is_empty() {
                Vec::new()
            } else {
                text.split(|b| *b == b'\r').collect()
            };
        }
        let mut first_number = 1;
        // An mbox separator: a real one (`From addr ctime-date`), or any
        // `From ` line right above a header field (other mbox flavours
        // write other dates). Kept, it would turn the header, Bcc
        // included, into body text.
        let separator = |l: &&[u8]| {
            is_mbox_from(l)
                || (l.starts_with(b"From ")
                    && !is_field_start(l) // `From : x` is the obsolete From field
                    && raw.get(1).is_some_and(|next| is_field_start(next)))
        };
        if raw.first().is_some_and(separator) {
            raw.remove(0);
            first_number = 2;
        }
        let lines: Vec<&[u8]> = raw.iter().map(|l| strip_crs(l)).collect();
        let blank = lines
            .iter()
            .position(|l| l.is_empty())
            .unwrap_or(lines.len());
        // The header-block candidates, each with the index of the LF line
        // it comes from.
        let mut head: Vec<(usize, Vec<u8>)> = Vec::new();
        for (n, line) in lines[..blank].iter().enumerate() {
            let clean: Vec<u8> = line.iter().copied().filter(|b| *b != 0).collect();
            head.extend(header_pieces(&clean).into_iter().map(|p| (n, p)));
        }
        let head_len = header_length(&head);

        let mut fields: Vec<Vec<u8>> = Vec::new();
        for (n, line) in &head[..head_len] {
            let continued = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
            // A line of white space only carries nothing, and some
            // readers take it for the end of the header block.
            if continued && !fields.is_empty() && line.iter().all(|b| *b == b' ' || *b == b'\t') {
                continue;
            }
            let number = n + first_number;
            let line = [line.as_slice(), b"\r\n"].concat();
            match fields.last_mut() {
                Some(field) if continued => field.extend_from_slice(&line),
                _ if is_field_start(&line) => {
                    check_name_length(&line, number)?;
                    fields.push(line)
                }
                _ => return Err(not_a_field(number, lines[*n])),
            }
        }
        // The header block ends at an LF line: a bare CR is split off only
        // before a field, and a field is part of the block.
        let body_start = match head.get(head_len) {
            Some((n, _)) => *n, // text after the last field: the body
            None => blank + 1,  // after the empty line
        };
        let body = lines
            .get(body_start..)
            .unwrap_or_default()
            .iter()
            .flat_map(|line| line.split(|b| *b == b'\r'))
            .map(|line| line.to_vec())
            .collect();
        Ok(Draft { fields, body })
    }

    pub fn body_is_empty(&self) -> bool {
        self.body.iter().flatten().all(u8::is_ascii_whitespace)
    }

    /// The field's lowercase name and unfolded value, as text for parsing.
    fn split(field: &[u8]) -> Option<(String, String)> {
        let text = String::from_utf8_lossy(field);
        let (name, value) = text.split_once(':')?;
        Some((
            name.trim().to_ascii_lowercase(),
            value.replace("\r\n", "").trim().to_owned(),
        ))
    }

    fn name_is(field: &[u8], name: &str) -> bool {
        Self::split(field).is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Unfolded values of every field called `name` (case-insensitive).
    pub fn values(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter_map(|f| Self::split(f))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|f| !Self::name_is(f, name));
    }

    pub fn add(&mut self, field: &str) {
        self.fields.push(field.as_bytes().to_vec());
    }

    /// The values of Resent-To, Resent-Cc and Resent-Bcc in the newest
    /// resent block that has any of them; `None` when no block has.
    ///
    /// A resent block (RFC 5322 3.6.6) is a run of adjacent Resent-*
    /// fields; blocks are added on top, so the first is the newest. A
    /// second Resent-Date, -From, -Sender or -Message-ID in a run (fields
    /// a block has once) starts the next, older block.
    pub fn newest_resent_recipients(&self) -> Option<Vec<String>> {
        const ONCE: [&str; 4] = [
            "resent-date",
            "resent-from",
            "resent-sender",
            "resent-message-id",
        ];
        const DESTINATIONS: [&str; 3] = ["resent-to", "resent-cc", "resent-bcc"];
        let mut blocks: Vec<Vec<(String, String)>> = Vec::new();
        let mut in_run = false;
        for (name, value) in self.fields.iter().filter_map(|f| Self::split(f)) {
            if !name.starts_with("resent-") {
                in_run = false;
                continue;
            }
            let repeated = blocks.last().is_some_and(|b| {
                ONCE.contains(&name.as_str()) && b.iter().any(|(n, _)| *n == name)
            });
            if !in_run || repeated {
                blocks.push(Vec::new());
            }
            in_run = true;
            if let Some(block) = blocks.last_mut() {
                block.push((name, value));
            }
        }
        blocks
            .into_iter()
            .find(|b| b.iter().any(|(n, _)| DESTINATIONS.contains(&n.as_str())))
            .map(|b| {
                b.into_iter()
                    .filter(|(n, _)| DESTINATIONS.contains(&n.as_str()))
                    .map(|(_, v)| v)
                    .collect()
            })
    }

    /// Applies the From policy: a missing From is added and one whose
    /// address has no domain (`root (Cron Daemon)`) is rewritten to
    /// `sender`'s address, keeping its display name as written (encoded
    /// words and quotes included); `always` rewrites any.
    pub fn fix_from(
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

    /// The message for the wire: every line within 998 octets (997 when it
    /// starts with a dot), no NUL, CRLF line endings.
    ///
    /// A single-part body that is not already encoded (no Content-Type
    /// `multipart/*` or `message/*`; Content-Transfer-Encoding absent,
    /// `7bit` or `8bit`) and has a line too long or a NUL is re-encoded as
    /// quoted-printable, which gives back every octet; the header then
    /// says so, with MIME-Version and, if missing, a Content-Type whose
    /// charset fits the text. Any other body has its NULs dropped and its
    /// long lines broken with CRLF SP, as Postfix does. Long header lines
    /// are folded.
    /// Refused (65): an encoded word too long for a line (see
    /// `lines::fold_header_line`).
    pub fn into_bytes(mut self) -> Result<Vec<u8>> {
        let needs_repair = self
            .body
            .iter()
            .any(|l| lines::too_long(l) || l.contains(&0));
        let body = if !needs_repair {
            self.body
        } else if self.plain_body() {
            self.mark_quoted_printable();
            lines::quoted_printable(&self.body)
        } else {
            let mut out = Vec::with_capacity(self.body.len() + 8);
            for line in &self.body {
                lines::break_body_line(line, &mut out);
            }
            out
        };

        let size = self.fields.iter().map(Vec::len).sum::<usize>()
            + body.iter().map(|l| l.len() + 2).sum::<usize>()
            + 2;
        let mut out = Vec::with_capacity(size);
        for field in &self.fields {
            let field = field.strip_suffix(b"\r\n").unwrap_or(field);
            let keep = field.iter().position(|b| *b == b':').map_or(0, |c| c + 1);
            for (i, line) in field.split(|b| *b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                lines::fold_header_line(line, if i == 0 { keep } else { 0 }, &mut out)?;
            }
        }
        out.extend_from_slice(b"\r\n");
        for line in &body {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        Ok(out)
    }

    /// Whether the body is one text part that mailsend may re-encode.
    fn plain_body(&self) -> bool {
        let media = self
            .values("content-type")
            .first()
            .map(|v| strip_comments(v).0.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let encoding = self
            .values("content-transfer-encoding")
            .first()
            .map(|v| strip_comments(v).0.trim().to_ascii_lowercase())
            .unwrap_or_default();
        !media.starts_with("multipart/")
            && !media.starts_with("message/")
            && ["", "7bit", "8bit"].contains(&encoding.as_str())
    }

    /// The header edits that go with a body re-encoded as quoted-printable.
    fn mark_quoted_printable(&mut self) {
        let cte = b"Content-Transfer-Encoding: quoted-printable\r\n".to_vec();
        match self
            .fields
            .iter()
            .position(|f| Self::name_is(f, "content-transfer-encoding"))
        {
            Some(first) => {
                // Any later ones go; none before `first`, so it stays put.
                let mut i = 0;
                self.fields.retain(|f| {
                    i += 1;
                    i - 1 == first || !Self::name_is(f, "content-transfer-encoding")
                });
                self.fields[first] = cte;
            }
            None => self.fields.push(cte),
        }
        if self.values("mime-version").is_empty() {
            self.add("MIME-Version: 1.0\r\n");
        }
        if self.values("content-type").is_empty() {
            let text: Vec<u8> = self.body.concat();
            // MIME's default, text/plain in US-ASCII, fits a 7-bit body.
            if !text.is_ascii() {
                let charset = match std::str::from_utf8(&text) {
                    Ok(_) => "utf-8",
                    Err(_) => "unknown-8bit", // RFC 1428
                };
                self.add(&format!("Content-Type: text/plain; charset={charset}\r\n"));
            }
        }
    }
}

/// How many of the header-block candidates `head` (the lines before the
/// first empty line) form the header block: none unless the first is a
/// header field; else up to the last field-like line and its continuation
/// lines.
fn header_length(head: &[(usize, Vec<u8>)]) -> usize {
    if !head.first().is_some_and(|(_, l)| looks_like_field(l)) {
        return 0;
    }
    let last = head
        .iter()
        .rposition(|(_, l)| looks_like_field(l))
        .unwrap_or(0);
    let continuation = head[last + 1..]
        .iter()
        .take_while(|(_, l)| l.first().is_some_and(|b| *b == b' ' || *b == b'\t'))
        .count();
    last + 1 + continuation
}

/// `line` without the CRs at its end (part of its line end).
fn strip_crs(line: &[u8]) -> &[u8] {
    let end = line.iter().rposition(|b| *b != b'\r').map_or(0, |i| i + 1);
    &line[..end]
}

/// The lines a header-block line makes, split at its bare CRs: a bare CR
/// before a valid field starts that field; any other is a space. A bare CR
/// never makes an empty line (which would end the header block).
fn header_pieces(line: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for piece in line.split(|b| *b == b'\r') {
        match out.last_mut() {
            _ if piece.is_empty() => {}
            Some(last) if !is_field_start(piece) => {
                last.push(b' ');
                last.extend_from_slice(piece);
            }
            _ => out.push(piece.to_vec()),
        }
    }
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}

/// Whether `line` is an mbox `From ` line, as sendmail's `eatfrom` reads
/// one: `From `, a sender, then somewhere a ctime date (`Mon Jan  1
/// 00:00:00`). `From the backup job: ...` and `From : x` are not.
fn is_mbox_from(line: &[u8]) -> bool {
    const DAYS: [&[u8]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let Some(mut rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    loop {
        // Skip a word, then the spaces after it.
        let word = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
        rest = &rest[word..];
        let spaces = rest.iter().take_while(|b| **b == b' ').count();
        rest = &rest[spaces..];
        if rest.len() < 17 {
            return false;
        }
        if rest[3] == b' '
            && rest[13] == b':'
            && rest[16] == b':'
            && DAYS.contains(&&rest[..3])
            && MONTHS.contains(&&rest[4..7])
        {
            return true;
        }
    }
}

/// Refuses a field whose name and colon do not fit on one line: no fold
/// could keep it whole, and a name broken in two ends the header block.
fn check_name_length(line: &[u8], number: usize) -> Result<()> {
    let colon = line.iter().position(|b| *b == b':').unwrap_or(0);
    if colon + 1 > lines::limit(line) {
        return Err(Failure::data(format!(
            "sendmail mode: header line {number}: the field name is {colon} octets long, more than a line may hold ({} octets with its colon)",
            lines::limit(line)
        ))
        .into());
    }
    Ok(())
}

/// `Name:` at the start of a line, with a valid RFC 5322 field name;
/// SP or HTAB before the colon is the obsolete but legal `Bcc : x` form
/// (no other white space: `To\x0c:` is no field).
fn is_field_start(line: &[u8]) -> bool {
    field_name(line).is_some_and(|name| name.iter().all(|b| (33..=126).contains(b)))
}

/// A line meant as a field, valid or not: a name without white space in
/// it (any octets, 8-bit or control included), then a colon.
fn looks_like_field(line: &[u8]) -> bool {
    field_name(line).is_some_and(|name| !name.iter().any(|b| *b == b' ' || *b == b'\t'))
}

/// What comes before the first colon, without the SP and HTAB that may
/// end it; `None` when there is no colon or nothing before it.
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = &line[..colon];
    let end = name
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(0, |i| i + 1);
    Some(&name[..end]).filter(|n| !n.is_empty())
}

fn not_a_field(number: usize, line: &[u8]) -> anyhow::Error {
    let text = String::from_utf8_lossy(line);
    let shown: String = text.chars().take(60).collect();
    let more = if shown.len() < text.len() { "..." } else { "" };
    Failure::data(format!(
        "sendmail mode: header line {number} is not a valid header field: '{}{more}'",
        shown.escape_debug()
    ))
    .with_hint("a header field is an ASCII name, a colon and a value; an empty line must end the header block")
    .into()
}

/// A header rendered by lettre (RFC 2047 encoding, folding), with CRLF.
pub fn format_header<H: header::Header>(h: H) -> String {
    let mut headers = Headers::new();
    headers.set(h);
    headers.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Draft {
        Draft::parse(input, true).unwrap()
    }

    #[test]
    fn parses_lf_input_and_keeps_fields_exact() {
        let m = Draft::parse(
            b"From root  Mon Jan  1 00:00:00 2026\nSubject: caf\xe9\n  folded\nTo: x@example.com\n\nbody\n.\nafter\n",
            false,
        )
        .unwrap();
        assert_eq!(
            m.fields,
            [
                b"Subject: caf\xe9\r\n  folded\r\n".to_vec(),
                b"To: x@example.com\r\n".to_vec()
            ]
        );
        assert_eq!(m.body, [b"body".to_vec()]);
        assert_eq!(m.values("to"), ["x@example.com"]);
        let m = parse(b"Subject: a\r\n\r\nbody\r\n.\r\nafter");
        assert_eq!(
            m.into_bytes().unwrap(),
            b"Subject: a\r\n\r\nbody\r\n.\r\nafter\r\n"
        );
    }

    #[test]
    fn no_header_can_hide_from_bcc_removal() {
        let mut m = parse(
            b"To: a@example.com\nSubject: hi\rBcc: s@example.org\nBcc : t@example.org\nB\0cc: u@example.org\n\nx\n",
        );
        m.remove("bcc");
        let out = m.into_bytes().unwrap();
        assert_eq!(out, b"To: a@example.com\r\nSubject: hi\r\n\r\nx\r\n");
        assert_eq!(
            crate::smtp::wire_data(&out)
                .windows(5)
                .filter(|w| w.eq_ignore_ascii_case(b"\nbcc"))
                .count(),
            0
        );
    }

    #[test]
    fn where_the_header_block_ends() {
        // Text after the last field, with no empty line: the body.
        let m = parse(b"To: a@example.com\nSubject: s\nsee you at 10:30\n\nmore\n");
        assert_eq!(m.fields.len(), 2);
        assert_eq!(m.body, [&b"see you at 10:30"[..], b"", b"more"]);
        // No header at all.
        let m = parse(b"Backup done\nErrors: none\n");
        assert!(m.fields.is_empty());
        assert_eq!(m.body, [&b"Backup done"[..], b"Errors: none"]);
        let m = parse(b"\nBcc: x@example.com\n");
        assert!(m.fields.is_empty());
        // A field-like line below a broken one: refused, with its number.
        for (input, number) in [
            (
                &b"To: a@example.com\nno header\nBcc: s@example.org\n\nx\n"[..],
                2,
            ),
            (
                b"From x Sat Nov 28 10:00:00 2026\nTo: a\nS\xc3\xbcbject: x\n\nb\n",
                3,
            ),
            (b"X\x01Y: z\n\nb\n", 1),
            (b"To: a\n\x00\x00\nCc: b\n", 2),
        ] {
            let err = Draft::parse(input, true).err().expect("refused");
            assert!(
                format!("{err:#}").contains(&format!("header line {number} ")),
                "{err:#}"
            );
            assert_eq!(crate::exit::code_for(&err), crate::exit::Exit::DataErr);
        }
        // A byte order mark is no part of the first field's name.
        let m = parse(b"\xEF\xBB\xBFTo: a@example.com\n\nx\n");
        assert_eq!(m.values("to"), ["a@example.com"]);
    }

    #[test]
    fn cr_only_input_uses_cr_as_line_end_but_never_cuts_at_a_dot() {
        let m = Draft::parse(b"To: a\rBcc: b\r\rx\r.\ry\r", false).unwrap();
        assert_eq!(m.fields, [b"To: a\r\n".to_vec(), b"Bcc: b\r\n".to_vec()]);
        assert_eq!(m.body, [&b"x"[..], b".", b"y"]);
        let m = Draft::parse(b"From x Sat Nov 28 10:00:00 2026\rSubject: s\r\rb", false).unwrap();
        assert_eq!(m.fields, [b"Subject: s\r\n".to_vec()]);
        assert_eq!(m.body, [b"b"]);
    }

    #[test]
    fn bare_cr_in_the_body_is_a_line_break_and_blank_continuations_go() {
        // CRs before LF are all part of the line end.
        let m = parse(b"Subject: s\n \t\n  x\n\na\rb\r\r\n\rc\n");
        assert_eq!(m.fields, [b"Subject: s\r\n  x\r\n".to_vec()]);
        assert_eq!(m.body, [&b"a"[..], b"b", b"", b"c"]);
    }

    #[test]
    fn newest_resent_block() {
        let m = parse(
            b"Resent-From: a@example.com\nResent-To: one@example.com\nResent-Bcc: two@example.com\nResent-From: b@example.com\nResent-To: old@example.com\nTo: orig@example.com\n\nx\n",
        );
        assert_eq!(
            m.newest_resent_recipients().unwrap(),
            ["one@example.com", "two@example.com"]
        );
        let m =
            parse(b"Resent-Date: x\nReceived: y\nResent-Date: z\nResent-Cc: c@example.com\n\nx\n");
        assert_eq!(m.newest_resent_recipients().unwrap(), ["c@example.com"]);
        assert!(
            parse(b"To: a@example.com\n\nx\n")
                .newest_resent_recipients()
                .is_none()
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
            let mut m = parse(format!("From: {from}\n\nx\n").as_bytes());
            m.fix_from(FromPolicy::Auto, &sender, None).unwrap();
            assert_eq!(m.values("from"), [expected]);
        }
    }

    #[test]
    fn cron_from_is_qualified_keeping_its_name() {
        let account: Mailbox = "Server <server@example.com>".parse().unwrap();
        let mut m = parse(b"From: root (Cron Daemon)\nTo: root\nSubject: x\n\nout\n");
        m.fix_from(FromPolicy::Auto, &account, None).unwrap();
        assert_eq!(m.values("from"), ["\"Cron Daemon\" <server@example.com>"]);

        let mut m = parse(b"From: Me <me@example.org>\n\nx\n");
        m.fix_from(FromPolicy::Auto, &account, None).unwrap();
        assert_eq!(
            m.values("from"),
            ["Me <me@example.org>"],
            "a qualified From stays"
        );
        m.fix_from(FromPolicy::Always, &account, None).unwrap();
        assert_eq!(m.values("from"), ["Me <server@example.com>"]);

        let mut m = parse(b"Subject: x\n\nx\n");
        m.fix_from(FromPolicy::Auto, &account, Some("Anacron"))
            .unwrap();
        assert_eq!(m.values("from"), ["Anacron <server@example.com>"]);
    }

    #[test]
    fn full_name_cannot_inject_a_header() {
        let account: Mailbox = "server@example.com".parse().unwrap();
        let mut m = parse(b"Subject: x\n\nx\n");
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
    fn a_plain_body_is_re_encoded_only_when_it_must() {
        let long = "y".repeat(1200);
        let out = parse(format!("Subject: s\n\nshort\n{long}\n").as_bytes())
            .into_bytes()
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "Subject: s\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\nshort\r\n"
            ),
            "{text}"
        );
        // An existing 8bit declaration is replaced in place; charset kept.
        let out = parse(
            b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\nMIME-Version: 1.0\n\ncaf\xe9\0\n",
        )
        .into_bytes().unwrap();
        assert_eq!(
            out,
            b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\ncaf=E9=00\r\n"
        );
        // Invalid UTF-8 and no Content-Type: unknown-8bit.
        let out = parse(b"Subject: s\n\n\xff\0\n").into_bytes().unwrap();
        assert!(
            String::from_utf8_lossy(&out)
                .contains("\r\nContent-Type: text/plain; charset=unknown-8bit\r\n")
        );
        // Nothing to repair: byte for byte.
        let out = parse(b"Subject: s\n\ncaf\xc3\xa9\n").into_bytes().unwrap();
        assert_eq!(out, b"Subject: s\r\n\r\ncaf\xc3\xa9\r\n");
        // message/rfc822 may not be encoded (RFC 2046 5.2.1): broken instead.
        let out = parse(format!("Content-Type: message/rfc822\n\n{long}\n").as_bytes())
            .into_bytes()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out).contains("quoted-printable"));
        assert!(String::from_utf8_lossy(&out).contains("\r\n yyy"));
    }
}
