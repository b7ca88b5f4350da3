//! The relaxed/relaxed canonicalization of RFC 6376 (3.4.2, 3.4.4): the
//! header fields as they are hashed and signed, and the body, streamed
//! through SHA-256 a piece at a time.

use std::io::{self, Write};

use anyhow::Result;
use openssl::hash::{Hasher, MessageDigest};

use super::SIGNED;
use crate::exit::{Exit, Failure};

/// The h= value: the names joined by `:`, folded before a `:` when the
/// line would pass 76 characters (RFC 6376 allows FWS around each `:`),
/// so that many signed fields never make a line over RFC 5322's limit.
/// `column`: where the value starts on its line.
pub(super) fn fold_names(names: &[String], column: usize) -> String {
    let mut out = String::new();
    let mut column = column;
    for (i, name) in names.iter().enumerate() {
        let piece = if i == 0 {
            name.clone()
        } else {
            format!(":{name}")
        };
        if i > 0 && column + piece.len() > 76 {
            out.push_str("\r\n\t");
            column = 1;
        }
        column += piece.len();
        out.push_str(&piece);
    }
    out
}

/// Folds a base64 value for the header: whitespace in b= is ignored by
/// verifiers.
pub(super) fn fold_b64(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / 36);
    for (i, chunk) in b64.as_bytes().chunks(72).enumerate() {
        if i > 0 {
            out.push_str("\r\n\t");
        }
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    out
}

/// One header field as it is in the message: its name and its raw bytes
/// (name, colon, value, continuation lines, final CRLF).
pub(super) struct Field<'a> {
    pub(super) name: &'a str,
    pub(super) raw: &'a [u8],
}

/// The fields of a header block.
pub(super) fn parse_fields(head: &[u8]) -> Vec<Field<'_>> {
    let mut fields: Vec<Field> = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at < head.len() {
        let end = head[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head.len(), |i| at + i + 1);
        let continuation = matches!(head[at], b' ' | b'\t');
        if !continuation && at > start {
            push_field(&mut fields, &head[start..at]);
            start = at;
        }
        at = end;
    }
    if at > start {
        push_field(&mut fields, &head[start..at]);
    }
    fields
}

pub(super) fn push_field<'a>(fields: &mut Vec<Field<'a>>, raw: &'a [u8]) {
    let Some(colon) = raw.iter().position(|&b| b == b':') else {
        return;
    };
    let Ok(name) = std::str::from_utf8(&raw[..colon]) else {
        return;
    };
    fields.push(Field {
        name: name.trim_matches([' ', '\t']),
        raw,
    });
}

/// The h= list: each signed field present, as often as it is present,
/// the List-* fields present, and From once more.
pub(super) fn signed_names(fields: &[Field]) -> Vec<String> {
    let mut names = Vec::new();
    let count = |name: &str| {
        fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .count()
    };
    for name in SIGNED {
        for _ in 0..count(name) {
            names.push((*name).to_owned());
        }
    }
    let mut lists: Vec<String> = Vec::new();
    for f in fields {
        let lower = f.name.to_ascii_lowercase();
        // A name goes into h= as it is: one with a `;` (legal in a field
        // name, RFC 5322 ftext) or anything but printable ASCII would end
        // or spoil the tag, so such a field is left unsigned.
        let fits = lower.bytes().all(|b| b.is_ascii_graphic() && b != b';');
        if lower.starts_with("list-") && fits && !lists.contains(&lower) {
            lists.push(lower);
        }
    }
    for name in lists {
        for _ in 0..count(&name) {
            names.push(name.clone());
        }
    }
    names.push("from".to_owned());
    names
}

/// The bytes the header hash covers (RFC 6376 3.7): each field named in
/// `names`, relaxed, the n-th mention of a name taking the n-th instance
/// from the bottom (a name with no instance left adds nothing), then the
/// DKIM-Signature field with an empty b=, relaxed, without its final CRLF.
pub(super) fn header_hash_input(fields: &[Field], names: &[String], unsigned: &str) -> Vec<u8> {
    let mut used: Vec<(String, usize)> = Vec::new();
    let mut out = Vec::new();
    for name in names {
        let lower = name.to_ascii_lowercase();
        let n = match used.iter_mut().find(|(n, _)| *n == lower) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                used.push((lower.clone(), 1));
                1
            }
        };
        if let Some(field) = fields
            .iter()
            .rev()
            .filter(|f| f.name.eq_ignore_ascii_case(&lower))
            .nth(n - 1)
        {
            out.extend_from_slice(&relaxed_header(field.raw));
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(&relaxed_header(unsigned.as_bytes()));
    out
}

/// Relaxed header canonicalization of one field (RFC 6376 3.4.2), without
/// its final CRLF: name in lower case, unfolded, runs of white space made
/// one space, white space around the colon and at the end removed.
pub(super) fn relaxed_header(raw: &[u8]) -> Vec<u8> {
    let colon = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
    let name = &raw[..colon];
    let mut out: Vec<u8> = name
        .iter()
        .filter(|b| !matches!(b, b' ' | b'\t'))
        .map(u8::to_ascii_lowercase)
        .collect();
    out.push(b':');
    let mut space = false;
    let mut started = false;
    for &b in raw.get(colon + 1..).unwrap_or_default() {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && started {
                    out.push(b' ');
                }
                space = false;
                started = true;
                out.push(b);
            }
        }
    }
    out
}

/// Reads a message: the header block kept, the body hashed relaxed.
///
/// The bytes are first given the line endings they will have on the wire
/// (`smtp::dotstuff`: a bare CR and a bare LF each become CRLF), so the
/// signature covers the lines the receiver sees: a bare CR hashed as part
/// of its line would not verify once it has become a line break.
pub(super) struct Reader {
    pub(super) head: Vec<u8>,
    /// Still in the header block.
    pub(super) in_head: bool,
    pub(super) body: BodyHasher,
    /// A CR whose next byte (maybe in the next piece) decides what it is.
    pub(super) pending_cr: bool,
    /// The current piece with wire line endings.
    pub(super) wire: Vec<u8>,
}

impl Reader {
    pub(super) fn new() -> Reader {
        Reader {
            head: Vec::new(),
            in_head: true,
            body: BodyHasher::new(),
            pending_cr: false,
            wire: Vec::new(),
        }
    }

    /// The header block (without the empty line) and the body hash.
    pub(super) fn finish(mut self) -> Result<(Vec<u8>, Vec<u8>)> {
        if self.pending_cr {
            self.pending_cr = false;
            self.take(b"\r\n")
                .map_err(|e| Failure::new(Exit::Config, format!("DKIM body hash failed: {e}")))?;
        }
        let hash = self.body.finish()?;
        Ok((self.head, hash))
    }

    /// `bytes` with CRLF for every bare CR and bare LF, into `self.wire`.
    pub(super) fn normalise(&mut self, bytes: &[u8]) {
        self.wire.clear();
        for &b in bytes {
            if self.pending_cr {
                self.pending_cr = false;
                self.wire.extend_from_slice(b"\r\n");
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => self.wire.extend_from_slice(b"\r\n"),
                _ => self.wire.push(b),
            }
        }
    }

    /// Takes bytes that have their wire line endings.
    pub(super) fn take(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut rest = buf;
        while self.in_head && !rest.is_empty() {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            self.head.extend_from_slice(&rest[..end]);
            rest = &rest[end..];
            // The header block ends at the first empty line.
            if self.head.ends_with(b"\n") {
                let last = last_line(&self.head);
                if last == b"\r\n" || last == b"\n" {
                    let keep = self.head.len() - last.len();
                    self.head.truncate(keep);
                    self.in_head = false;
                }
            }
        }
        if !rest.is_empty() {
            self.body.update(rest).map_err(io::Error::other)?;
        }
        Ok(())
    }
}

impl Write for Reader {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.normalise(buf);
        let wire = std::mem::take(&mut self.wire);
        let taken = self.take(&wire);
        self.wire = wire;
        taken?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The last line of `bytes` (which ends with LF), with its line ending.
pub(super) fn last_line(bytes: &[u8]) -> &[u8] {
    let body = &bytes[..bytes.len() - 1];
    match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => &bytes[i + 1..],
        None => bytes,
    }
}

/// Relaxed body canonicalization (RFC 6376 3.4.4) into SHA-256, a piece at
/// a time: white space at line ends removed, runs of it made one space,
/// empty lines at the end dropped, a final CRLF added to a last line
/// without one.
pub(super) struct BodyHasher {
    pub(super) hasher: Hasher,
    pub(super) out: Vec<u8>,
    /// Empty lines seen and not yet written (they vanish at the end).
    pub(super) empty_lines: u64,
    /// White space seen in this line and not yet written.
    pub(super) space: bool,
    /// This line has something besides white space.
    pub(super) content: bool,
    /// A CR was seen: a line ending if LF follows.
    pub(super) cr: bool,
}

impl BodyHasher {
    pub(super) fn new() -> BodyHasher {
        BodyHasher {
            hasher: Hasher::new(MessageDigest::sha256()).expect("SHA-256 is always available"),
            out: Vec::with_capacity(64 * 1024),
            empty_lines: 0,
            space: false,
            content: false,
            cr: false,
        }
    }

    pub(super) fn byte(&mut self, b: u8) -> Result<(), openssl::error::ErrorStack> {
        match b {
            b' ' | b'\t' => self.space = true,
            b'\n' => {
                if self.content {
                    self.out.extend_from_slice(b"\r\n");
                } else {
                    self.empty_lines += 1;
                }
                self.space = false;
                self.content = false;
            }
            _ => {
                if !self.content {
                    // Hashed as they go: a long run of empty lines
                    // costs no memory.
                    for _ in 0..self.empty_lines {
                        self.out.extend_from_slice(b"\r\n");
                        if self.out.len() >= 60 * 1024 {
                            self.hasher.update(&self.out)?;
                            self.out.clear();
                        }
                    }
                    self.empty_lines = 0;
                }
                if self.space {
                    self.out.push(b' ');
                }
                self.space = false;
                self.content = true;
                self.out.push(b);
            }
        }
        Ok(())
    }

    pub(super) fn update(&mut self, bytes: &[u8]) -> Result<(), openssl::error::ErrorStack> {
        let plain = |b: u8| !matches!(b, b' ' | b'\t' | b'\r' | b'\n');
        let mut at = 0;
        while at < bytes.len() {
            let b = bytes[at];
            if self.cr {
                self.cr = false;
                if b != b'\n' {
                    self.byte(b'\r')?;
                }
            }
            if b == b'\r' {
                self.cr = true;
                at += 1;
            } else if plain(b) {
                // A run of bytes that need no care (a base64 line): the
                // first as any byte, the others as they are.
                let end = bytes[at..]
                    .iter()
                    .position(|&c| !plain(c))
                    .map_or(bytes.len(), |n| at + n);
                self.byte(b)?;
                self.out.extend_from_slice(&bytes[at + 1..end]);
                at = end;
            } else {
                self.byte(b)?;
                at += 1;
            }
            if self.out.len() >= 60 * 1024 {
                self.hasher.update(&self.out)?;
                self.out.clear();
            }
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<Vec<u8>> {
        let failed = |e| Failure::new(Exit::Config, format!("DKIM body hash failed: {e}"));
        if self.cr {
            self.cr = false;
            self.byte(b'\r').map_err(failed)?;
        }
        if self.content {
            self.out.extend_from_slice(b"\r\n");
        }
        self.hasher.update(&self.out).map_err(failed)?;
        Ok(self.hasher.finish().map_err(failed)?.to_vec())
    }
}

/// The body hash of `body`, relaxed (tests).
#[cfg(test)]
pub(super) fn body_hash(body: &[u8]) -> Vec<u8> {
    let mut h = BodyHasher::new();
    h.update(body).unwrap();
    h.finish().unwrap()
}
