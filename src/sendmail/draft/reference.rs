//! The in-memory reading of the message that sendmail mode used before it
//! streamed (kept for the tests only): the whole input split into lines,
//! the body held as a list of lines. The streaming path in `draft.rs` must
//! give the same bytes, the same errors and the same exit codes for every
//! input; `props.rs` checks that against this code.

use anyhow::Result;

use super::{
    BOM, Head, header_pieces, is_field_start, is_mbox_from, looks_like_field, not_a_field,
    strip_crs,
};
use crate::message::Composed;
use crate::sendmail::lines;

pub struct Draft {
    pub head: Head,
    /// The body's lines, without line endings, CR or LF.
    pub body: Vec<Vec<u8>>,
}

impl std::ops::Deref for Draft {
    type Target = Head;
    fn deref(&self) -> &Head {
        &self.head
    }
}

impl std::ops::DerefMut for Draft {
    fn deref_mut(&mut self) -> &mut Head {
        &mut self.head
    }
}

impl crate::sendmail::Message for Draft {
    fn body_is_empty(&self) -> bool {
        self.body.iter().flatten().all(u8::is_ascii_whitespace)
    }

    fn finish(self) -> Result<Composed> {
        Ok(Composed::Memory(self.into_bytes()?))
    }
}

impl Draft {
    /// Splits `input` into header fields and body (see `draft::Draft::parse`).
    pub fn parse(input: &[u8], ignore_dots: bool) -> Result<Draft> {
        let input = input.strip_prefix(BOM).unwrap_or(input);
        let mut raw: Vec<&[u8]> = input
            .split_inclusive(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\n").unwrap_or(l))
            .collect();
        if !ignore_dots && let Some(end) = raw.iter().position(|l| *l == b"." || *l == b".\r") {
            raw.truncate(end);
        }
        if !input.contains(&b'\n') {
            let text = raw.first().copied().unwrap_or_default();
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            raw = if text.is_empty() {
                Vec::new()
            } else {
                text.split(|b| *b == b'\r').collect()
            };
        }
        let mut first_number = 1;
        let separator = |l: &&[u8]| {
            is_mbox_from(l)
                || (l.starts_with(b"From ")
                    && !is_field_start(l)
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
        let mut head: Vec<(usize, Vec<u8>)> = Vec::new();
        for (n, line) in lines[..blank].iter().enumerate() {
            let clean: Vec<u8> = line.iter().copied().filter(|b| *b != 0).collect();
            head.extend(header_pieces(&clean).into_iter().map(|p| (n, p)));
        }
        let head_len = header_length(&head);

        let mut fields: Vec<Vec<u8>> = Vec::new();
        for (n, line) in &head[..head_len] {
            let continued = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
            if continued && !fields.is_empty() && line.iter().all(|b| *b == b' ' || *b == b'\t') {
                continue;
            }
            let number = n + first_number;
            let line = [line.as_slice(), b"\r\n"].concat();
            match fields.last_mut() {
                Some(field) if continued => field.extend_from_slice(&line),
                _ if is_field_start(&line) => {
                    super::check_name_length(&line, number)?;
                    fields.push(line)
                }
                _ => return Err(not_a_field(number, lines[*n])),
            }
        }
        let body_start = match head.get(head_len) {
            Some((n, _)) => *n,
            None => blank + 1,
        };
        let body = lines
            .get(body_start..)
            .unwrap_or_default()
            .iter()
            .flat_map(|line| line.split(|b| *b == b'\r'))
            .map(|line| line.to_vec())
            .collect();
        Ok(Draft {
            head: Head { fields },
            body,
        })
    }

    /// The message for the wire (see `draft::Draft::finish`).
    pub fn into_bytes(mut self) -> Result<Vec<u8>> {
        let needs_repair = self
            .body
            .iter()
            .any(|l| lines::too_long(l) || l.contains(&0));
        let body = if !needs_repair {
            self.body
        } else if self.head.plain_body() {
            let text: Vec<u8> = self.body.concat();
            self.head
                .mark_quoted_printable(text.is_ascii(), std::str::from_utf8(&text).is_ok());
            lines::quoted_printable(&self.body)
        } else {
            let mut out = Vec::with_capacity(self.body.len() + 8);
            for line in &self.body {
                lines::break_body_line(line, &mut out);
            }
            out
        };
        let mut out = Vec::new();
        self.head.write_to(&mut out)?;
        for line in &body {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        Ok(out)
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
