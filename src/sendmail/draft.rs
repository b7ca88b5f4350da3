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
//!
//! Streamed: the input is spooled as it came (`input.rs`); the header
//! block is read line by line and held (at most 8 MiB: a longer header
//! block, a header line over 8 MiB, or a first line over 8 MiB that starts
//! with `From `, is refused with 65; a longer text line is read a piece at
//! a time, `LongLine`); the body is read twice, a piece at a time, never
//! held: once to learn what the repairs need (`Facts`), once to write it,
//! repaired, after the header into the outgoing spool. `draft/reference.rs` keeps the former
//! in-memory reading, and the tests check both give the same bytes.

use anyhow::Result;
use lettre::message::Mailbox;
use lettre::message::header::{self, Headers};

use super::address::{quoted, rfind_unquoted, strip_comments};
use super::input::{self, Event, Line, Lines, Raw};
use super::lines;
use crate::config::FromPolicy;
use crate::exit::Failure;
use crate::message::{self, Composed, Spool};

#[cfg(test)]
pub use super::input::BOM;

#[cfg(test)]
pub mod reference;

/// The most the header block may hold, and the longest line before the
/// first empty line.
const HEAD_CAP: usize = 8 << 20;

/// Output is put into the spool in pieces of about this size.
const OUT_PIECE: usize = 64 * 1024;

/// The header fields, each with its continuation lines, CRLF-terminated;
/// no NUL, CR or LF other than those line ends.
pub struct Head {
    pub(super) fields: Vec<Vec<u8>>,
}

/// The message read from stdin: its header block in memory, its body
/// where it lies in the spool.
pub struct Draft<'a> {
    head: Head,
    raw: &'a Raw,
    ignore_dots: bool,
    /// Where the body's first line starts; `None` when there is no body.
    body_at: Option<u64>,
    facts: Facts,
}

impl std::ops::Deref for Draft<'_> {
    type Target = Head;
    fn deref(&self) -> &Head {
        &self.head
    }
}

impl std::ops::DerefMut for Draft<'_> {
    fn deref_mut(&mut self) -> &mut Head {
        &mut self.head
    }
}

/// Where the header block stands while it is read.
enum Block {
    /// Nothing read yet.
    Start,
    /// Every candidate so far is in the header block.
    Fields,
    /// A line that is neither a field nor a continuation line: the body
    /// starts there, unless a field-like line follows before the first
    /// empty line, which makes it a broken header line (65).
    Text {
        number: usize,
        line: Vec<u8>,
        at: u64,
    },
}

impl<'a> Draft<'a> {
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
    ///
    /// Only the header block is held; the body is read twice from `raw`
    /// (`Facts` here, the output in `finish`).
    pub fn parse(raw: &'a Raw, ignore_dots: bool) -> Result<Draft<'a>> {
        let mut lines = Lines::new(raw, raw.start(), ignore_dots);
        // Each line with where it starts and where the next one does.
        let mut ahead = std::collections::VecDeque::new();
        ahead.extend(next_line(&mut lines)?);
        // The second line decides on a loose mbox separator only.
        if ahead
            .front()
            .is_some_and(|(_, l, _)| l.bytes.starts_with(b"From "))
        {
            ahead.extend(next_line(&mut lines)?);
            if ahead.iter().any(|(_, l, _)| l.long) {
                return Err(line_too_long());
            }
        }
        let mut first_number = 1;
        // An mbox separator: a real one (`From addr ctime-date`), or any
        // `From ` line right above a header field (other mbox flavours
        // write other dates). Kept, it would turn the header, Bcc
        // included, into body text.
        let separator = |l: &[u8]| {
            is_mbox_from(l)
                || (l.starts_with(b"From ")
                    && !is_field_start(l) // `From : x` is the obsolete From field
                    && ahead.get(1).is_some_and(|(_, next, _)| is_field_start(&next.bytes)))
        };
        if ahead.front().is_some_and(|(_, l, _)| separator(&l.bytes)) {
            ahead.pop_front();
            first_number = 2;
        }

        let mut head = Head { fields: Vec::new() };
        let mut size = 0usize;
        let mut block = Block::Start;
        let mut body_at = None;
        let mut n = 0;
        'lines: while let Some((at, read, end)) = match ahead.pop_front() {
            Some(line) => Some(line),
            None => next_line(&mut lines)?,
        } {
            let number = n + first_number;
            n += 1;
            if read.long {
                // Too long to hold: only its first piece, and whether a
                // later one starts a field, can keep it out of the header.
                let long = LongLine::read(&read.bytes, &mut lines)?;
                // The line as an error shows it: without the CRs that end it.
                let prefix = match long.more_text {
                    true => read.bytes,
                    false => strip_crs(&read.bytes).to_vec(),
                };
                match &block {
                    _ if long.blank => {
                        body_at = Some(match &block {
                            Block::Text { at, .. } => *at,
                            _ => lines.offset(),
                        });
                        break;
                    }
                    Block::Start if !long.field_like => {
                        body_at = Some(at);
                        break;
                    }
                    Block::Fields if long.field_like && !long.field_start => {
                        return Err(not_a_field(number, &prefix));
                    }
                    Block::Start | Block::Fields if long.field_like || long.continued => {
                        return Err(line_too_long());
                    }
                    Block::Start | Block::Fields => {
                        if long.later_field_start {
                            return Err(not_a_field(number, &prefix));
                        }
                        block = Block::Text {
                            number,
                            line: prefix,
                            at,
                        };
                    }
                    Block::Text { number, line, .. } => {
                        if long.field_like || long.later_field_start {
                            return Err(not_a_field(*number, line));
                        }
                    }
                }
                continue;
            }
            let raw_line = read.bytes;
            let line = strip_crs(&raw_line);
            if line.is_empty() {
                // The empty line ends the header block.
                body_at = Some(match &block {
                    Block::Text { at, .. } => *at,
                    _ => end,
                });
                break;
            }
            let clean: Vec<u8> = line.iter().copied().filter(|b| *b != 0).collect();
            for piece in header_pieces(&clean) {
                let continued = piece.first().is_some_and(|b| *b == b' ' || *b == b'\t');
                match &block {
                    Block::Start if !looks_like_field(&piece) => {
                        // Not a header field first: no header block.
                        body_at = Some(at);
                        break 'lines;
                    }
                    Block::Start | Block::Fields if looks_like_field(&piece) => {
                        let field = [piece.as_slice(), b"\r\n"].concat();
                        if !is_field_start(&field) {
                            return Err(not_a_field(number, line));
                        }
                        check_name_length(&field, number)?;
                        size += field.len();
                        head.fields.push(field);
                        block = Block::Fields;
                    }
                    Block::Start | Block::Fields if continued => {
                        // A line of white space only carries nothing, and
                        // some readers take it for the end of the header
                        // block.
                        if piece.iter().all(|b| *b == b' ' || *b == b'\t') {
                            continue;
                        }
                        if let Some(field) = head.fields.last_mut() {
                            field.extend_from_slice(&piece);
                            field.extend_from_slice(b"\r\n");
                            size += piece.len() + 2;
                        }
                    }
                    Block::Start | Block::Fields => {
                        block = Block::Text {
                            number,
                            line: line.to_vec(),
                            at,
                        };
                    }
                    Block::Text { number, line, .. } => {
                        if looks_like_field(&piece) {
                            return Err(not_a_field(*number, line));
                        }
                    }
                }
                if size > HEAD_CAP {
                    return Err(Failure::data(format!(
                        "sendmail mode: the header block is larger than {} MiB",
                        HEAD_CAP >> 20
                    ))
                    .with_hint("an empty line must end the header block")
                    .into());
                }
            }
        }
        if let (None, Block::Text { at, .. }) = (body_at, &block) {
            // No empty line: the text after the last field is the body.
            body_at = Some(*at);
        }
        let mut draft = Draft {
            head,
            raw,
            ignore_dots,
            body_at,
            facts: Facts::new(),
        };
        let mut facts = Facts::new();
        draft.body(&mut |event| {
            facts.feed(event);
            Ok(())
        })?;
        facts.finish();
        draft.facts = facts;
        Ok(draft)
    }

    /// Feeds the body to `sink`, from the spool.
    fn body(&self, sink: &mut dyn FnMut(Event<'_>) -> Result<()>) -> Result<()> {
        match self.body_at {
            Some(at) => input::body(self.raw, at, self.ignore_dots, sink),
            None => Ok(()),
        }
    }
}

/// The next line before the first empty line, with where it starts and
/// where the next one does (or, for a long line, where its rest does).
fn next_line(lines: &mut Lines) -> Result<Option<(u64, Line, u64)>> {
    let at = lines.offset();
    Ok(lines.line()?.map(|l| (at, l, lines.offset())))
}

fn line_too_long() -> anyhow::Error {
    Failure::data(format!(
        "sendmail mode: a line before the first empty line is longer than {} MiB",
        input::LINE_CAP >> 20
    ))
    .with_hint("an empty line must end the header block")
    .into()
}

/// What decides the header block of a line too long to hold, read a piece
/// at a time: as `header_pieces` would split it (NULs dropped, at CR), its
/// first candidate, and whether a later piece starts a field.
#[derive(Default)]
struct LongLine {
    /// Only CRs: an empty line.
    blank: bool,
    field_like: bool,
    field_start: bool,
    continued: bool,
    later_field_start: bool,
    /// Something but CRs after the first piece: the line as shown in an
    /// error keeps the first piece's trailing CRs (else they end the line).
    more_text: bool,
}

impl LongLine {
    /// Reads the line that starts with `start` to its end.
    fn read(start: &[u8], lines: &mut Lines) -> Result<LongLine> {
        let mut scan = Scan::default();
        scan.feed(start);
        let mut more_text = false;
        lines.rest_of_line(&mut |piece| {
            more_text |= piece.iter().any(|b| *b != b'\r');
            scan.feed(piece)
        })?;
        scan.end_piece();
        let (field_like, field_start, continued) = scan.first.unwrap_or_default();
        Ok(LongLine {
            blank: !scan.not_blank,
            field_like,
            field_start,
            continued,
            later_field_start: scan.later_field_start,
            more_text,
        })
    }
}

#[derive(Default)]
struct Scan {
    not_blank: bool,
    /// The first non-empty piece: field-like, a valid field, continued.
    first: Option<(bool, bool, bool)>,
    later_field_start: bool,
    /// The current piece: its length, first octet, and name so far.
    length: usize,
    lead: u8,
    name: Name,
}

/// A piece's field name as read so far (see `field_name`).
#[derive(Default, Clone, Copy)]
enum Name {
    #[default]
    Empty,
    /// Name octets, all printable ASCII or not.
    Text(bool),
    /// SP or HTAB after the name.
    Trailing(bool),
    /// The colon: a field, valid or not.
    Colon(bool),
    /// No field: white space inside the name, or no name.
    Dead,
}

impl Scan {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.not_blank = self.not_blank || b != b'\r';
            match b {
                0 => {}
                b'\r' => self.end_piece(),
                _ => {
                    if self.length == 0 {
                        self.lead = b;
                    }
                    self.length += 1;
                    let space = b == b' ' || b == b'\t';
                    let printable = (33..=126).contains(&b);
                    self.name = match (self.name, b) {
                        (Name::Empty, b':') => Name::Dead,
                        (Name::Empty, _) if space => Name::Dead,
                        (Name::Empty, _) => Name::Text(printable),
                        (Name::Text(p) | Name::Trailing(p), b':') => Name::Colon(p),
                        (Name::Text(p) | Name::Trailing(p), _) if space => Name::Trailing(p),
                        (Name::Text(p), _) => Name::Text(p && printable),
                        (Name::Trailing(_), _) => Name::Dead,
                        (done, _) => done,
                    };
                }
            }
        }
    }

    fn end_piece(&mut self) {
        if self.length > 0 {
            let like = matches!(self.name, Name::Colon(_));
            let start = matches!(self.name, Name::Colon(true));
            match self.first {
                None => self.first = Some((like, start, self.lead == b' ' || self.lead == b'\t')),
                Some(_) => self.later_field_start = self.later_field_start || start,
            }
        }
        self.length = 0;
        self.name = Name::Empty;
    }
}

impl super::Message for Draft<'_> {
    fn body_is_empty(&self) -> bool {
        self.facts.blank
    }

    /// The message for the wire, in a spool: every line within 998 octets
    /// (997 when it starts with a dot), no NUL, CRLF line endings.
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
    fn finish(mut self) -> Result<Composed> {
        let mut writer = if !self.facts.repair {
            Writer::Same
        } else if self.head.plain_body() {
            self.head
                .mark_quoted_printable(self.facts.ascii, self.facts.utf8);
            Writer::QuotedPrintable(lines::QuotedPrintable::default())
        } else {
            Writer::Broken(lines::LineBreaker::default())
        };
        let mut out = Vec::with_capacity(OUT_PIECE);
        self.head.write_to(&mut out)?;
        let mut spool = Spool::new();
        self.body(&mut |event| {
            writer.write(event, &mut out);
            if out.len() >= OUT_PIECE {
                spool.put(&out)?;
                out.clear();
            }
            Ok(())
        })?;
        spool.put(&out)?;
        spool.finish()
    }
}

/// How the body's lines go out.
enum Writer {
    /// As they came.
    Same,
    QuotedPrintable(lines::QuotedPrintable),
    /// Broken as Postfix breaks them, NULs dropped.
    Broken(lines::LineBreaker),
}

impl Writer {
    fn write(&mut self, event: Event<'_>, out: &mut Vec<u8>) {
        match (self, event) {
            (Writer::Same, Event::Text(text)) => out.extend_from_slice(text),
            (Writer::Same, Event::End) => out.extend_from_slice(b"\r\n"),
            (Writer::QuotedPrintable(qp), Event::Text(text)) => qp.push(text, out),
            (Writer::QuotedPrintable(qp), Event::End) => qp.end_line(out),
            (Writer::Broken(breaker), Event::Text(text)) => breaker.push(text, out),
            (Writer::Broken(breaker), Event::End) => breaker.end_line(out),
        }
    }
}

/// What writing the body needs to know of all of it beforehand.
struct Facts {
    /// A line too long or a NUL: the body must be repaired.
    repair: bool,
    /// Every octet is ASCII.
    ascii: bool,
    /// The lines joined are valid UTF-8.
    utf8: bool,
    /// Every octet is ASCII white space.
    blank: bool,
    /// The current line's length and first octet.
    length: usize,
    first: u8,
    /// The start of a UTF-8 character that the next octets complete.
    partial: Vec<u8>,
}

impl Facts {
    fn new() -> Facts {
        Facts {
            repair: false,
            ascii: true,
            utf8: true,
            blank: true,
            length: 0,
            first: 0,
            partial: Vec::new(),
        }
    }

    fn feed(&mut self, event: Event<'_>) {
        match event {
            Event::Text(text) => {
                if self.length == 0 {
                    self.first = text.first().copied().unwrap_or_default();
                }
                self.length += text.len();
                self.repair = self.repair || text.contains(&0);
                self.blank = self.blank && text.iter().all(u8::is_ascii_whitespace);
                if !text.is_ascii() {
                    self.ascii = false;
                }
                if self.utf8 && (!self.partial.is_empty() || !text.is_ascii()) {
                    self.check_utf8(text);
                }
            }
            Event::End => {
                let limit = if self.first == b'.' {
                    lines::MAX_LINE - 1
                } else {
                    lines::MAX_LINE
                };
                self.repair = self.repair || self.length > limit;
                self.length = 0;
            }
        }
    }

    /// UTF-8 across pieces: a character may start in one and end in the
    /// next (the lines are checked joined, without their line ends).
    fn check_utf8(&mut self, mut text: &[u8]) {
        while !self.partial.is_empty() {
            let Some((&b, rest)) = text.split_first() else {
                return;
            };
            text = rest;
            self.partial.push(b);
            match std::str::from_utf8(&self.partial) {
                Ok(_) => self.partial.clear(),
                Err(e) if e.error_len().is_none() => {}
                Err(_) => {
                    self.utf8 = false;
                    return;
                }
            }
        }
        if let Err(e) = std::str::from_utf8(text) {
            match e.error_len() {
                None => self.partial = text[e.valid_up_to()..].to_vec(),
                Some(_) => self.utf8 = false,
            }
        }
    }

    fn finish(&mut self) {
        if !self.partial.is_empty() {
            self.utf8 = false;
        }
    }
}

impl Head {
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
    /// The header edits that go with a body re-encoded as quoted-printable;
    /// `ascii` and `utf8` say what the body's text is.
    fn mark_quoted_printable(&mut self, ascii: bool, utf8: bool) {
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
        // MIME's default, text/plain in US-ASCII, fits a 7-bit body.
        if self.values("content-type").is_empty() && !ascii {
            let charset = if utf8 { "utf-8" } else { "unknown-8bit" }; // RFC 1428
            self.add(&format!("Content-Type: text/plain; charset={charset}\r\n"));
        }
    }

    /// The header block for the wire, with the empty line that ends it:
    /// long lines folded. Refused (65): an encoded word too long for a
    /// line (see `lines::fold_header_line`).
    fn write_to(&self, out: &mut Vec<u8>) -> Result<()> {
        for field in &self.fields {
            let field = field.strip_suffix(b"\r\n").unwrap_or(field);
            let keep = field.iter().position(|b| *b == b':').map_or(0, |c| c + 1);
            for (i, line) in field.split(|b| *b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                lines::fold_header_line(line, if i == 0 { keep } else { 0 }, out)?;
            }
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
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
    use super::reference::Draft;
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

#[cfg(test)]
mod streamed {
    use super::reference;
    use super::*;
    use crate::sendmail::Message;

    /// The fields and the message, or the error.
    type Reading = Result<(Vec<Vec<u8>>, Vec<u8>), String>;

    /// `Reading` of both ways.
    fn both(input: &[u8], ignore_dots: bool) -> [Reading; 2] {
        let raw = Raw::read(&mut &input[..]).unwrap();
        let streamed = Draft::parse(&raw, ignore_dots).and_then(|d| {
            let fields = d.fields.clone();
            Ok((fields, d.finish()?.into_bytes()))
        });
        let reference = reference::Draft::parse(input, ignore_dots).and_then(|d| {
            let fields = d.fields.clone();
            Ok((fields, d.into_bytes()?))
        });
        [streamed, reference].map(|r| r.map_err(|e| format!("{e:#}")))
    }

    /// The inputs of the unit tests above (which read them in memory),
    /// read streaming: the same fields, message and errors.
    #[test]
    fn the_unit_tests_inputs_read_the_same_streaming() {
        let long = "y".repeat(1200);
        let inputs: Vec<Vec<u8>> = vec![
            b"From root  Mon Jan  1 00:00:00 2026\nSubject: caf\xe9\n  folded\nTo: x@example.com\n\nbody\n.\nafter\n".to_vec(),
            b"Subject: a\r\n\r\nbody\r\n.\r\nafter".to_vec(),
            b"To: a@example.com\nSubject: hi\rBcc: s@example.org\nBcc : t@example.org\nB\0cc: u@example.org\n\nx\n".to_vec(),
            b"To: a@example.com\nSubject: s\nsee you at 10:30\n\nmore\n".to_vec(),
            b"Backup done\nErrors: none\n".to_vec(),
            b"\nBcc: x@example.com\n".to_vec(),
            b"To: a@example.com\nno header\nBcc: s@example.org\n\nx\n".to_vec(),
            b"From x Sat Nov 28 10:00:00 2026\nTo: a\nS\xc3\xbcbject: x\n\nb\n".to_vec(),
            b"X\x01Y: z\n\nb\n".to_vec(),
            b"To: a\n\x00\x00\nCc: b\n".to_vec(),
            b"\xEF\xBB\xBFTo: a@example.com\n\nx\n".to_vec(),
            b"To: a\rBcc: b\r\rx\r.\ry\r".to_vec(),
            b"From x Sat Nov 28 10:00:00 2026\rSubject: s\r\rb".to_vec(),
            b"Subject: s\n \t\n  x\n\na\rb\r\r\n\rc\n".to_vec(),
            format!("Subject: s\n\nshort\n{long}\n").into_bytes(),
            b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\nMIME-Version: 1.0\n\ncaf\xe9\0\n".to_vec(),
            b"Subject: s\n\n\xff\0\n".to_vec(),
            b"Subject: s\n\ncaf\xc3\xa9\n".to_vec(),
            format!("Content-Type: message/rfc822\n\n{long}\n").into_bytes(),
            b".".to_vec(),
            b".\r".to_vec(),
            b"\r".to_vec(),
            b"\xEF\xBB\xBF.\r".to_vec(),
            b"".to_vec(),
        ];
        for input in &inputs {
            for ignore_dots in [false, true] {
                let [streamed, reference] = both(input, ignore_dots);
                assert_eq!(streamed, reference, "{:?}", String::from_utf8_lossy(input));
            }
        }
    }
}
