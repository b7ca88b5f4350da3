//! Keeping every line of a message within RFC 5322's 998 octets: folding
//! header lines, breaking body lines as Postfix does, and quoted-printable
//! for a plain body that needs re-encoding.
//!
//! A line that starts with `.` gets one more on the wire (dot-stuffing,
//! RFC 5321 4.5.2), so such a line is kept to 997 octets here: what crosses
//! the wire stays within 998 octets even before the receiver unstuffs it.

use anyhow::Result;

use crate::exit::Failure;

/// The most octets a line may hold, CRLF excluded (RFC 5322 2.1.1).
pub const MAX_LINE: usize = 998;

/// How long `line` may be here, given the dot-stuffing ahead of it.
pub fn limit(line: &[u8]) -> usize {
    if line.first() == Some(&b'.') {
        MAX_LINE - 1
    } else {
        MAX_LINE
    }
}

pub fn too_long(line: &[u8]) -> bool {
    line.len() > limit(line)
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Appends one physical header line with CRLF, folded when it is too long:
/// before white space where there is some (the unfolded value is then the
/// same), else hard-broken with CRLF SP, after a whole UTF-8 character if
/// one ends near the limit, and never inside an RFC 2047 encoded word
/// (before it instead, which is between two encoded words when they are
/// adjacent). `keep` is how many leading octets must stay on the first
/// line (a field's name and colon). No output line is blank.
///
/// Refused (65): `keep` octets that do not fit on a line, and an encoded
/// word that alone is longer than a line (breaking it would make it
/// undecodable; RFC 2047 allows 75 octets).
pub fn fold_header_line(line: &[u8], keep: usize, out: &mut Vec<u8>) -> Result<()> {
    if !too_long(line) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        return Ok(());
    }
    if keep > limit(line) {
        return Err(Failure::data(format!(
            "sendmail mode: a header field name of {} octets does not fit on a line ({MAX_LINE} octets)",
            keep.saturating_sub(1)
        ))
        .into());
    }
    // Trailing white space would end up alone on a line.
    let end = line.iter().rposition(|b| !is_wsp(*b)).map_or(0, |i| i + 1);
    let line = &line[..end];
    let mut pos = 0; // start of what is left to write
    let mut lead = false; // a hard break left a space to write before it
    let mut min = keep; // the first fold point allowed, relative to pos
    loop {
        let rest = &line[pos..];
        let room = if lead { MAX_LINE - 1 } else { limit(rest) };
        if rest.len() <= room {
            push_line(out, lead, rest);
            return Ok(());
        }
        // A fold point: white space with something else before it on the line.
        let first_text = rest.iter().position(|b| !is_wsp(*b)).unwrap_or(rest.len());
        let floor = min.max(first_text + 1).max(1);
        let fold = (floor..=room.min(rest.len() - 1))
            .rev()
            .find(|&i| is_wsp(rest[i]));
        if let Some(at) = fold {
            push_line(out, lead, &rest[..at]);
            pos += at;
            lead = false;
            // A run of white space longer than a line would make a blank one.
            let run = line[pos..].iter().take_while(|b| is_wsp(**b)).count();
            if run >= MAX_LINE - 1 {
                pos += run - 1;
            }
        } else if first_text >= room {
            // Only white space would fit: one octet of the run is enough.
            pos += first_text - usize::from(!lead);
        } else {
            let floor = first_text.max(min) + 1;
            let mut at = char_boundary(rest, room, floor);
            if let Some(start) = encoded_word_around(rest, at) {
                if start < floor {
                    return Err(Failure::data(
                        "sendmail mode: a header holds an encoded word (=?charset?enc?text?=) longer than a line may hold (998 octets)",
                    )
                    .with_hint("RFC 2047 allows 75 octets per encoded word; split the text into several encoded words")
                    .into());
                }
                at = start;
            }
            push_line(out, lead, &rest[..at]);
            pos += at;
            lead = true;
        }
        min = 0;
    }
}

/// The start of the RFC 2047 encoded word (`=?charset?B?text?=`) that
/// `at` falls strictly inside of, if any.
fn encoded_word_around(text: &[u8], at: usize) -> Option<usize> {
    (0..at)
        .rev()
        .filter(|&s| text[s..].starts_with(b"=?"))
        .find_map(|s| encoded_word_end(text, s).map(|end| (s, end)))
        .filter(|&(_, end)| end > at)
        .map(|(s, _)| s)
}

/// Where the encoded word starting at `start` ends (after its `?=`).
fn encoded_word_end(text: &[u8], start: usize) -> Option<usize> {
    let token = |b: &u8| b.is_ascii_graphic() && *b != b'?';
    let rest = text.get(start + 2..)?;
    let charset = rest.iter().take_while(|b| token(b)).count();
    if charset == 0 || rest.get(charset) != Some(&b'?') {
        return None;
    }
    let rest = &rest[charset + 1..];
    if !matches!(rest.first(), Some(b'B' | b'b' | b'Q' | b'q')) || rest.get(1) != Some(&b'?') {
        return None;
    }
    let rest = &rest[2..];
    let encoded = rest.iter().take_while(|b| token(b)).count();
    if !rest[encoded..].starts_with(b"?=") {
        return None;
    }
    Some(start + 2 + charset + 1 + 2 + encoded + 2)
}

fn push_line(out: &mut Vec<u8>, lead: bool, text: &[u8]) {
    if lead {
        out.push(b' ');
    }
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

/// `at`, moved back to the start of the UTF-8 character it falls in, if
/// that start is at `floor` or later.
fn char_boundary(text: &[u8], at: usize, floor: usize) -> usize {
    let mut i = at;
    while i > floor && i > at.saturating_sub(3) && text.get(i).is_some_and(|b| b & 0xC0 == 0x80) {
        i -= 1;
    }
    if text.get(i).is_some_and(|b| b & 0xC0 == 0x80) {
        at
    } else {
        i
    }
}

/// A body line broken as Postfix breaks it (`smtp_line_length_limit`):
/// CRLF SP every 998 octets, which MIME bodies (base64 in particular) take
/// with the least damage. NUL octets are dropped. Each piece is appended to
/// `out` without its line ending. (The streaming form is `LineBreaker`.)
#[cfg(test)]
pub fn break_body_line(line: &[u8], out: &mut Vec<Vec<u8>>) {
    let clean: Vec<u8> = line.iter().copied().filter(|b| *b != 0).collect();
    let mut rest = clean.as_slice();
    let mut lead = false;
    loop {
        let room = if lead { MAX_LINE - 1 } else { limit(rest) };
        let at = if rest.len() <= room {
            rest.len()
        } else {
            char_boundary(rest, room, 1)
        };
        let mut piece = Vec::with_capacity(at + 1);
        if lead {
            piece.push(b' ');
        }
        piece.extend_from_slice(&rest[..at]);
        out.push(piece);
        rest = &rest[at..];
        if rest.is_empty() {
            return;
        }
        lead = true;
    }
}

/// Encoded lines are at most this long (RFC 2045 6.7, rule 5).
const QP_LINE: usize = 76;

/// `lines` (a body, one line each, no line endings) as quoted-printable
/// lines. Everything but printable ASCII is encoded, so the result is
/// 7-bit; so are a `.` that would start a line and white space that would
/// end one. (The streaming form is `QuotedPrintable`.)
#[cfg(test)]
pub fn quoted_printable(lines: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let mut current: Vec<u8> = Vec::with_capacity(QP_LINE);
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            // Room for the octet encoded (the worst case), and for the
            // soft break `=` after it unless it ends the line.
            if current.len() + 3 + usize::from(!last) > QP_LINE {
                current.push(b'=');
                out.push(std::mem::take(&mut current));
            }
            let literal = match b {
                b'=' => false,
                b' ' | b'\t' => !last,
                b'.' => !current.is_empty(),
                33..=126 => true,
                _ => false,
            };
            if literal {
                current.push(b);
            } else {
                current.extend_from_slice(format!("={b:02X}").as_bytes());
            }
        }
        out.push(current);
    }
    out
}

/// `break_body_line`, a piece of a line at a time: each output line is
/// appended to `out` with CRLF.
#[derive(Default)]
pub struct LineBreaker {
    /// What is left of the current line, NULs dropped.
    rest: Vec<u8>,
    /// A break was made in the current line.
    lead: bool,
}

impl LineBreaker {
    pub fn push(&mut self, text: &[u8], out: &mut Vec<u8>) {
        self.rest.extend(text.iter().filter(|b| **b != 0));
        let mut pos = 0;
        loop {
            let rest = &self.rest[pos..];
            let room = if self.lead { MAX_LINE - 1 } else { limit(rest) };
            // Only when more than fits is known is there a break to make.
            if rest.len() <= room {
                break;
            }
            let at = char_boundary(rest, room, 1);
            broken_line(out, self.lead, &rest[..at]);
            pos += at;
            self.lead = true;
        }
        self.rest.drain(..pos);
    }

    pub fn end_line(&mut self, out: &mut Vec<u8>) {
        broken_line(out, self.lead, &self.rest);
        self.rest.clear();
        self.lead = false;
    }
}

fn broken_line(out: &mut Vec<u8>, lead: bool, text: &[u8]) {
    if lead {
        out.push(b' ');
    }
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

/// `quoted_printable`, a piece of a line at a time: each encoded line is
/// appended to `out` with CRLF.
#[derive(Default)]
pub struct QuotedPrintable {
    /// The encoded line being made.
    current: Vec<u8>,
    /// The last octet given, not encoded yet: how depends on whether it
    /// ends the line.
    held: Option<u8>,
}

impl QuotedPrintable {
    pub fn push(&mut self, text: &[u8], out: &mut Vec<u8>) {
        for &b in text {
            if let Some(previous) = self.held.replace(b) {
                self.encode(previous, false, out);
            }
        }
    }

    pub fn end_line(&mut self, out: &mut Vec<u8>) {
        if let Some(b) = self.held.take() {
            self.encode(b, true, out);
        }
        out.extend_from_slice(&self.current);
        out.extend_from_slice(b"\r\n");
        self.current.clear();
    }

    fn encode(&mut self, b: u8, last: bool, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        // Room for the octet encoded (the worst case), and for the soft
        // break `=` after it unless it ends the line.
        if self.current.len() + 3 + usize::from(!last) > QP_LINE {
            out.extend_from_slice(&self.current);
            out.extend_from_slice(b"=\r\n");
            self.current.clear();
        }
        let literal = match b {
            b'=' => false,
            b' ' | b'\t' => !last,
            b'.' => !self.current.is_empty(),
            33..=126 => true,
            _ => false,
        };
        if literal {
            self.current.push(b);
        } else {
            self.current.extend_from_slice(&[
                b'=',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(line: &[u8], keep: usize) -> Vec<u8> {
        let mut out = Vec::new();
        fold_header_line(line, keep, &mut out).unwrap();
        out
    }

    fn check_lines(out: &[u8]) {
        for l in out.strip_suffix(b"\r\n").unwrap().split(|b| *b == b'\n') {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            assert!(l.len() <= limit(l), "{} octets", l.len());
            assert!(l.iter().any(|b| !is_wsp(*b)), "blank line");
        }
    }

    #[test]
    fn short_header_lines_are_untouched() {
        assert_eq!(fold(b"Subject: x ", 8), b"Subject: x \r\n");
        let exact = [b"X: ".as_slice(), &[b'a'; 995]].concat();
        assert_eq!(fold(&exact, 2), [exact.as_slice(), b"\r\n"].concat());
    }

    #[test]
    fn header_lines_fold_at_white_space() {
        let line = [b"Subject:".as_slice(), &b" word".repeat(400)].concat();
        let out = fold(&line, 8);
        check_lines(&out);
        assert!(out.starts_with(b"Subject: word"));
        assert_eq!(
            String::from_utf8(out).unwrap().replace("\r\n", ""),
            String::from_utf8(line).unwrap()
        );
    }

    #[test]
    fn header_lines_without_white_space_are_hard_broken() {
        let line = [b"X-T: ".as_slice(), &[b't'; 2500]].concat();
        let out = fold(&line, 4);
        check_lines(&out);
        assert_eq!(
            String::from_utf8(out)
                .unwrap()
                .replace("\r\n", "")
                .replace(' ', ""),
            String::from_utf8(line).unwrap().replace(' ', "")
        );
        // Never inside a UTF-8 character.
        let line = [b"X-U:".as_slice(), &"é".repeat(1500).into_bytes()].concat();
        let out = fold(&line, 4);
        check_lines(&out);
        for piece in String::from_utf8(out).unwrap().split("\r\n ") {
            assert!(!piece.is_empty());
        }
    }

    #[test]
    fn white_space_runs_never_make_a_blank_line() {
        for line in [
            [b"X: a".as_slice(), &[b' '; 3000], b"b"].concat(),
            [b"X: a".as_slice(), &[b' '; 3000]].concat(),
            [b"X:".as_slice(), &[b'\t'; 999], &[b'c'; 999]].concat(),
            [b".X:".as_slice(), &[b'd'; 1200]].concat(),
        ] {
            check_lines(&fold(&line, 1));
        }
    }

    #[test]
    fn body_lines_break_as_postfix_breaks_them() {
        let mut out = Vec::new();
        break_body_line(&[b'a'; 2000], &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].len(), 998);
        assert_eq!(out[1], [b" ".as_slice(), &[b'a'; 997]].concat());
        assert_eq!(out[2], b" aaaaa");
        out.clear();
        break_body_line(&[b".".as_slice(), &[b'b'; 997], b"\0"].concat(), &mut out);
        assert_eq!(
            out,
            [[b".".as_slice(), &[b'b'; 996]].concat(), b" b".to_vec()]
        );
    }

    #[test]
    fn quoted_printable_lines() {
        let encoded = quoted_printable(&[
            b"caf\xc3\xa9 = ok \0".to_vec(),
            b".dot. end ".to_vec(),
            vec![],
            [b'x'; 100].to_vec(),
        ]);
        assert_eq!(encoded[0], b"caf=C3=A9 =3D ok =00");
        assert_eq!(encoded[1], b"=2Edot. end=20");
        assert_eq!(encoded[2], b"");
        assert_eq!(encoded[3], [[b'x'; 73].as_slice(), b"="].concat());
        assert_eq!(encoded[4], [b'x'; 27]);
    }
}
