//! Writing header fields: RFC 2047 encoded words, address lists folded
//! within the line limits, RFC 2231 file names.
//!
//! lettre encodes a word only when it holds a byte that is not printable
//! ASCII, so text that merely looks like an encoded word (a subject of
//! `=?utf-8?q?x?=`) goes out raw and every reader decodes it into something
//! else. Here any word that a decoder could take for an encoded word is
//! encoded itself, so decoding gives back exactly what was typed. lettre
//! also writes a list of bare addresses on one line whatever its length;
//! these writers fold between addresses. Each works in time linear in its
//! input.

use std::fmt::Write;

use email_encoding::headers::writer::EmailWriter;
use email_encoding::headers::{quoted_string, rfc2047};
use lettre::message::Mailbox;
use lettre::message::header::{ContentDisposition, Header, HeaderName, HeaderValue};

/// The line length encoders aim at (RFC 2047 section 2, RFC 5322 2.1.1).
const LINE: usize = 76;

/// Whether free text must go as an encoded word: it holds something that
/// is not printable ASCII (or tab), or it could be read as an encoded
/// word (`=?charset?enc?text?=`), whole or in part: lenient decoders
/// find one anywhere, even across spaces, so both delimiters count.
pub fn needs_encoding(text: &str) -> bool {
    text.bytes()
        .any(|b| !(b == b'\t' || (32..127).contains(&b)))
        || text.contains("=?")
        || text.contains("?=")
}

/// `Name: text\r\n` for free text (RFC 5322 unstructured, e.g. Subject):
/// the words that need it are RFC 2047 encoded (adjacent ones together,
/// with the space between them inside the encoded word), the others kept
/// as typed; folded at spaces.
pub fn unstructured(name: &str, text: &str) -> String {
    let mut out = String::with_capacity(name.len() + text.len() * 2 + 4);
    out.push_str(name);
    out.push_str(": ");
    {
        let mut w = EmailWriter::new(&mut out, name.len() + 2, 0, false);
        let mut pending = String::new();
        for word in text.split_inclusive(' ') {
            if needs_encoding(word) {
                pending.push_str(word);
            } else {
                flush_encoded(&mut pending, &mut w);
                // Writing to a String cannot fail.
                let _ = w.folding().write_str(word);
            }
        }
        flush_encoded(&mut pending, &mut w);
    }
    out.push_str("\r\n");
    out
}

fn flush_encoded(pending: &mut String, w: &mut EmailWriter<'_>) {
    if pending.is_empty() {
        return;
    }
    let words = pending.trim_end_matches(' ');
    let _ = rfc2047::encode(words, w);
    for _ in words.len()..pending.len() {
        w.space();
    }
    pending.clear();
}

/// `Name: a, B <b@x>, ...\r\n` for an address list: display names as atoms,
/// quoted strings or RFC 2047 encoded words (a name holding `=` or `?` is
/// always encoded), addresses as given, folded between mailboxes so that
/// lines stay within 76 characters where the parts allow.
pub fn address_list(name: &str, list: &[Mailbox]) -> String {
    let mut out = String::with_capacity(name.len() + 4 + list.len() * 32);
    out.push_str(name);
    out.push(':');
    let mut line = out.len();
    for (i, mailbox) in list.iter().enumerate() {
        let text = mailbox_text(mailbox);
        let first = text.split("\r\n").next().unwrap_or_default().len();
        if i > 0 {
            out.push(',');
            line += 1;
            if line + 1 + first > LINE {
                out.push_str("\r\n");
                line = 0;
            }
        }
        out.push(' ');
        out.push_str(&text);
        line = match text.rfind("\r\n") {
            Some(at) => text.len() - at - 2,
            None => line + 1 + text.len(),
        };
    }
    out.push_str("\r\n");
    out
}

/// One mailbox, encoded as if it started a continuation line (after one
/// space), its own folds included.
fn mailbox_text(mailbox: &Mailbox) -> String {
    let address: &str = mailbox.email.as_ref();
    let mut text = String::with_capacity(address.len() + 2);
    let Some(name) = mailbox.name.as_deref().filter(|n| !n.trim().is_empty()) else {
        text.push_str(address);
        return text;
    };
    {
        let mut w = EmailWriter::new(&mut text, 1, 0, false);
        let _ = quoted_string::encode(name, &mut w);
        w.space();
        // In one piece: a quoted local part may hold spaces, and folding
        // there would be legal but needlessly fragile.
        let angle = format!("<{address}>");
        if w.projected_line_len() + angle.len() > LINE {
            let _ = w.new_line();
        }
        let _ = w.write_str(&angle);
    }
    text
}

/// `Content-Disposition: attachment; filename=...` with the name as
/// typed: RFC 2231 (percent-encoded UTF-8) for a name that is not
/// printable ASCII or that looks like an RFC 2047 encoded word (many
/// readers decode those even inside a quoted parameter), else quoted.
#[derive(Debug, Clone)]
pub struct Disposition(HeaderValue);

impl Disposition {
    pub fn attachment(filename: &str) -> Disposition {
        if !needs_encoding(filename) {
            return Disposition(ContentDisposition::attachment(filename).display());
        }
        let mut encoded = String::from("attachment;");
        // One line per segment: ` filename*N*=` + chunk (+ `;`).
        let mut units = filename.chars().map(percent_encoded).peekable();
        let mut index = 0;
        while units.peek().is_some() {
            let mut line = format!("\r\n filename*{index}*=");
            if index == 0 {
                line.push_str("utf-8''");
            }
            let start = line.len() - 2;
            while let Some(unit) = units.peek() {
                if line.len() - 2 > start && line.len() - 2 + unit.len() + 1 > LINE {
                    break;
                }
                line.push_str(unit);
                units.next();
            }
            if units.peek().is_some() {
                line.push(';');
            }
            encoded.push_str(&line);
            index += 1;
        }
        let raw = format!("attachment; filename=\"{filename}\"");
        Disposition(HeaderValue::dangerous_new_pre_encoded(
            Self::name(),
            raw,
            encoded,
        ))
    }
}

/// A character as RFC 2231 `attribute-char`s: letters, digits and
/// `-_.` as they are, anything else as `%XX` per UTF-8 byte.
fn percent_encoded(c: char) -> String {
    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
        return c.to_string();
    }
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect()
}

impl Header for Disposition {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Content-Disposition")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Err("mailsend writes Content-Disposition itself".into())
    }

    fn display(&self) -> HeaderValue {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_word_lookalikes_are_encoded() {
        assert_eq!(
            unstructured("Subject", "hello world"),
            "Subject: hello world\r\n"
        );
        assert_eq!(
            unstructured("Subject", "=?utf-8?q?x?="),
            "Subject: =?utf-8?b?PT91dGYtOD9xP3g/PQ==?=\r\n"
        );
        // Plain words stay plain, the lookalike and its neighbour go
        // together, with the space between them inside the encoded word.
        assert_eq!(
            unstructured("Subject", "Re: =?a?b?c?= Grüße ok"),
            "Subject: Re: =?utf-8?b?PT9hP2I/Yz89IEdyw7zDn2U=?= ok\r\n"
        );
        assert!(!needs_encoding("a = b? c"));
        assert!(needs_encoding("a=?b"));
        assert!(needs_encoding("b?=c"));
    }

    #[test]
    fn long_text_folds_within_the_limit() {
        let text = "word ".repeat(100) + &"Grüße ".repeat(40);
        let header = unstructured("Subject", &text);
        assert!(header.split("\r\n").all(|l| l.len() <= 78), "{header}");
    }

    #[test]
    fn address_lists_fold_between_mailboxes() {
        let list: Vec<Mailbox> = (0..200)
            .map(|i| format!("user-{i}@example.com").parse().unwrap())
            .collect();
        let header = address_list("To", &list);
        assert!(header.split("\r\n").all(|l| l.len() <= LINE), "{header}");
        let unfolded = header.replace("\r\n ", " ");
        assert!(unfolded.starts_with("To: user-0@example.com, user-1@example.com, "));
        assert!(unfolded.ends_with(", user-199@example.com\r\n"));
    }

    #[test]
    fn a_quoted_local_part_is_never_folded() {
        let mut m: Mailbox = "x@example.com".parse().unwrap();
        m.name = Some("A rather long display name that is long enough to need a fold".into());
        m.email = lettre::Address::new("\"a b c d e f\"", "example.com").unwrap();
        let header = address_list("To", &[m]);
        assert!(
            header.contains("\r\n <\"a b c d e f\"@example.com>"),
            "{header}"
        );
        assert!(header.split("\r\n").all(|l| l.len() <= LINE), "{header}");
    }

    #[test]
    fn display_names() {
        let m = |s: &str| -> Mailbox { s.parse().unwrap() };
        assert_eq!(
            address_list("From", &[m("Reports Bot <a@example.com>")]),
            "From: \"Reports Bot\" <a@example.com>\r\n"
        );
        assert_eq!(
            address_list("To", &[m("Zoë <z@example.com>"), m("b@example.org")]),
            "To: =?utf-8?b?Wm/Dqw==?= <z@example.com>, b@example.org\r\n"
        );
        let mut lookalike = m("a@example.com");
        lookalike.name = Some("=?utf-8?q?x?=".into());
        assert_eq!(
            address_list("To", &[lookalike]),
            "To: =?utf-8?b?PT91dGYtOD9xP3g/PQ==?= <a@example.com>\r\n"
        );
    }

    fn disposition(name: &str) -> String {
        let mut headers = lettre::message::header::Headers::new();
        headers.set(Disposition::attachment(name));
        headers.to_string()
    }

    #[test]
    fn file_names() {
        assert_eq!(
            disposition("report.pdf"),
            "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
        );
        assert_eq!(
            disposition("=?utf-8?q?x?=.txt"),
            "Content-Disposition: attachment;\r\n filename*0*=utf-8''%3D%3Futf-8%3Fq%3Fx%3F%3D.txt\r\n"
        );
        let long = disposition(&format!("=?{}", "ä".repeat(60)));
        assert!(long.split("\r\n").all(|l| l.len() <= LINE), "{long}");
        assert!(long.contains(";\r\n filename*1*=%C3%A4"), "{long}");
    }
}
