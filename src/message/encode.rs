//! Writing header fields: RFC 2047 encoded words, address lists folded
//! within the line limits, RFC 2231 file names.
//!
//! lettre encodes a word only when it holds a byte that is not printable
//! ASCII, so text that merely looks like an encoded word (a subject of
//! `=?utf-8?q?x?=`) goes out raw and every reader decodes it into something
//! else. Here any word that a decoder could take for an encoded word is
//! encoded itself, so decoding gives back exactly what was typed. lettre
//! also writes a list of bare addresses on one line whatever its length;
//! these writers fold between addresses. Every field is folded only
//! before spaces and tabs, never inside a quoted string or an address,
//! and white space a reader would drop or merge (leading, trailing,
//! between encoded words, long runs) is carried inside encoded words, so
//! decoding gives back the text with its spacing. Each works in time
//! linear in its input.

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

/// White space that header writers fold at and readers unfold.
fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// A run of white space longer than this goes inside an encoded word, so
/// that no line is made of white space mostly (or over the limit).
const LONG_SPACE: usize = 40;

/// Bytes of text per encoded word: `=?utf-8?b?` + base64 of 45 bytes
/// (60) + `?=` is 72, within RFC 2047's 75.
const WORD_BYTES: usize = 45;

/// `text` as RFC 2047 encoded words (UTF-8, base64), each holding whole
/// characters, in order; at least one.
fn encoded_words(text: &str) -> Vec<String> {
    use base64::Engine;
    let word = |s: &str| {
        format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if i + c.len_utf8() - start > WORD_BYTES {
            out.push(word(&text[start..i]));
            start = i;
        }
    }
    if start < text.len() || out.is_empty() {
        out.push(word(&text[start..]));
    }
    out
}

/// A header field being written, folded before white space so that lines
/// stay within 76 characters where the pieces allow.
struct Folder {
    out: String,
    line: usize,
    /// Whether a piece was written: no fold right after the name.
    started: bool,
}

impl Folder {
    fn new(name: &str) -> Folder {
        let mut out = String::with_capacity(name.len() + 80);
        out.push_str(name);
        out.push(':');
        Folder {
            line: out.len(),
            out,
            started: false,
        }
    }

    /// Writes the white space `sep` (not empty) and then `piece`, going to
    /// a new line before `sep` when they would not fit on this one.
    fn put(&mut self, sep: &str, piece: &str) {
        if self.started && self.line + sep.len() + piece.len() > LINE {
            self.out.push_str("\r\n");
            self.line = 0;
        }
        self.out.push_str(sep);
        self.out.push_str(piece);
        self.line += sep.len() + piece.len();
        self.started = true;
    }

    fn finish(mut self) -> String {
        self.out.push_str("\r\n");
        self.out
    }
}

/// `Name: value\r\n` for an ASCII structured field (message ids, URLs),
/// where encoded words mean nothing: the words as typed, one space
/// between them (white space there is not content), folded between
/// words.
pub fn structured(name: &str, value: &str) -> String {
    let mut folder = Folder::new(name);
    for word in value.split([' ', '\t']).filter(|w| !w.is_empty()) {
        folder.put(" ", word);
    }
    folder.finish()
}

/// One piece of an unstructured value: a word written as typed, or text
/// (white space included) written as encoded words.
enum Piece<'a> {
    Raw(&'a str),
    Encoded(String),
}

/// `Name: text\r\n` for free text (RFC 5322 unstructured: Subject, most
/// `--header` fields), so that a reader decodes exactly `text`: the words
/// that need it are RFC 2047 encoded, adjacent ones together with the
/// white space between them inside the encoded word (a decoder drops
/// white space between encoded words); leading and trailing white space,
/// which readers drop, and runs longer than 40 characters go inside an
/// encoded word too. Other words and white space are written as typed,
/// and the field is folded before white space (tabs included), so every
/// line stays within 998 octets as long as no word is longer than 900.
pub fn unstructured(name: &str, text: &str) -> String {
    let mut tokens: Vec<(bool, &str)> = Vec::new(); // (is white space, text)
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let space = is_wsp(c);
        if chars.peek().is_none_or(|&(_, n)| is_wsp(n) != space) {
            let end = i + c.len_utf8();
            tokens.push((space, &text[start..end]));
            start = end;
        }
    }
    let mut folder = Folder::new(name);
    if tokens.is_empty() {
        folder.out.push(' ');
        return folder.finish();
    }
    if tokens.iter().all(|t| t.0) {
        for word in encoded_words(text) {
            folder.put(" ", &word);
        }
        return folder.finish();
    }
    // Which words are encoded.
    let mut encode: Vec<bool> = tokens
        .iter()
        .map(|&(space, t)| !space && needs_encoding(t))
        .collect();
    let last = tokens.len() - 1;
    for (i, &(space, t)) in tokens.iter().enumerate() {
        if space && (i == 0 || i == last || t.len() > LONG_SPACE) {
            if i > 0 {
                encode[i - 1] = true;
            }
            if i < last {
                encode[i + 1] = true;
            }
        }
    }
    // Pieces, each with the white space before it.
    let mut pieces: Vec<(&str, Piece)> = Vec::new();
    let mut space_before = " ";
    // Whether the white space just seen went inside the last encoded piece.
    let mut inside = false;
    for (i, &(space, t)) in tokens.iter().enumerate() {
        if space {
            let next_encoded = i == last || encode[i + 1];
            match pieces.last_mut() {
                None => {
                    pieces.push((" ", Piece::Encoded(t.to_owned())));
                    inside = true;
                }
                Some((_, Piece::Encoded(e))) if next_encoded => {
                    e.push_str(t);
                    inside = true;
                }
                _ => space_before = t,
            }
            continue;
        }
        match pieces.last_mut() {
            Some((_, Piece::Encoded(e))) if inside => e.push_str(t),
            _ => {
                let piece = match encode[i] {
                    true => Piece::Encoded(t.to_owned()),
                    false => Piece::Raw(t),
                };
                pieces.push((space_before, piece));
            }
        }
        space_before = " ";
        inside = false;
    }
    for (sep, piece) in &pieces {
        match piece {
            Piece::Raw(word) => folder.put(sep, word),
            Piece::Encoded(text) => {
                let mut sep = *sep;
                for word in encoded_words(text) {
                    folder.put(sep, &word);
                    sep = " ";
                }
            }
        }
    }
    folder.finish()
}

/// `Name: a, B <b@x>, ...\r\n` for an address list: display names as
/// atoms, quoted strings or RFC 2047 encoded words (see
/// [`display_name`]), addresses as given, folded between mailboxes so
/// that lines stay within 76 characters where the parts allow (and within
/// 998 octets always: an address is at most 254).
pub fn address_list(name: &str, list: &[Mailbox]) -> String {
    let mut out = String::with_capacity(name.len() + 4 + list.len() * 32);
    out.push_str(name);
    out.push(':');
    let mut line = out.len();
    for (i, mailbox) in list.iter().enumerate() {
        // The first one starts after `Name: `, the others on a new line
        // (after one space) unless they fit where the line is.
        let text = mailbox_text(mailbox, if i == 0 { line + 1 } else { 1 });
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

/// One mailbox, written from `column` (1 on a continuation line, after
/// its space), its own folds included. The display name is an atom, a quoted
/// string that fits on a line (never folded inside), or encoded words;
/// `<address>` is never folded inside (a quoted local part may hold
/// spaces).
fn mailbox_text(mailbox: &Mailbox, column: usize) -> String {
    let address: &str = mailbox.email.as_ref();
    let Some(name) = mailbox.name.as_deref().filter(|n| !n.trim().is_empty()) else {
        return address.to_owned();
    };
    let mut text = String::with_capacity(name.len() + address.len() + 8);
    let mut line = column;
    for (i, piece) in display_name(name).iter().enumerate() {
        if i > 0 {
            if line + 1 + piece.len() > LINE {
                text.push_str("\r\n");
                line = 0;
            }
            text.push(' ');
            line += 1;
        }
        text.push_str(piece);
        line += piece.len();
    }
    let angle = format!("<{address}>");
    if line + 1 + angle.len() > LINE {
        text.push_str("\r\n");
    }
    text.push(' ');
    text.push_str(&angle);
    text
}

/// The longest quoted display name written as such; a longer one is
/// sent as encoded words, which fold.
const LONG_QUOTED: usize = 70;

/// A display name as RFC 5322 phrase pieces, to be joined by white space
/// that is not part of the name: one atom (only atext: `Jo`), one quoted
/// string (`"J. R. Doe"`, `"."`: never obs-phrase, RFC 5322 4.1), or
/// encoded words for a name that is not printable ASCII, that looks like
/// an encoded word, or whose quoted form would not fit on a line
/// (RFC 2047 section 5: a decoder ignores the space between them).
fn display_name(name: &str) -> Vec<String> {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if needs_encoding(name) {
        return encoded_words(name);
    }
    if name.len() <= LONG_QUOTED && name.chars().all(atext) {
        return vec![name.to_owned()];
    }
    let quoted = quote(name);
    if quoted.len() <= LONG_QUOTED {
        return vec![quoted];
    }
    // Several quoted strings, split where the name has a single space
    // (that space is the white space between them: a reader joins the
    // words of a phrase with one space).
    let parts: Vec<&str> = name.split(' ').collect();
    let mut chunks: Vec<String> = Vec::new();
    let mut current = String::from(parts[0]);
    for pair in parts.windows(2) {
        let (before, part) = (pair[0], pair[1]);
        let may_split = !before.is_empty() && !part.is_empty();
        if may_split && quoted_len(&current) + 1 + quoted_len(part) - 2 > LONG_QUOTED {
            chunks.push(quote(&current));
            current = part.to_owned();
        } else {
            current.push(' ');
            current.push_str(part);
        }
    }
    chunks.push(quote(&current));
    match chunks.iter().all(|c| c.len() <= LONG_QUOTED) {
        true => chunks,
        false => encoded_words(name),
    }
}

/// `text` as a quoted string, `"` and `\\` escaped.
pub(super) fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// The length of `text` as a quoted string.
fn quoted_len(text: &str) -> usize {
    text.len() + 2 + text.chars().filter(|&c| c == '"' || c == '\\').count()
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

    /// An independent decoder: mailparse unfolds and decodes RFC 2047.
    fn decode(header: &str) -> String {
        // Unfolding is removing each CRLF (RFC 5322 2.2.3); mailparse
        // would turn CRLF + tab into a space.
        let unfolded = header.trim_end_matches("\r\n").replace("\r\n", "");
        let (h, _) = mailparse::parse_header(unfolded.as_bytes()).unwrap();
        h.get_value()
    }

    #[test]
    fn white_space_arrives_as_typed() {
        for text in [
            "é  é",
            "é \t é",
            "Müller  a\u{a0}.?",
            "é=?)  (=?",
            "a  b\tc",
            "é",
            "x é  é y",
            &format!("a{}b", " ".repeat(1500)),
            &format!("é{}é", "\t".repeat(300)),
        ] {
            let header = unstructured("Subject", text);
            assert_eq!(decode(&header), text, "{header}");
            assert!(header.split("\r\n").all(|l| l.len() <= 998), "{header}");
        }
    }

    #[test]
    fn hostile_text_round_trips_within_the_limits() {
        let pieces = [
            "a",
            "Zoë",
            " ",
            "  ",
            "\t",
            " \t ",
            "\"",
            "\\",
            "=?",
            "?=",
            "=?utf-8?q?x?=",
            "?",
            "=",
            "\u{2028}",
            "\u{2029}",
            "\u{3000}",
            "\u{205f}",
            "\u{a0}",
            "\u{200b}",
            "\u{feff}",
            "\u{ff20}",
            "é",
            ".",
            "(",
            ")",
            ",",
            "<",
            ">",
            "@",
            ";",
            "😀",
        ];
        let mut rng = fastrand::Rng::with_seed(2047);
        for _ in 0..20_000 {
            let mut text: String = (0..rng.usize(1..10))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            if rng.usize(..8) == 0 {
                let run = ["x", " ", "é", "\t", "😀"][rng.usize(..5)];
                text.push_str(&run.repeat(rng.usize(30..200)));
                text.push_str(pieces[rng.usize(..pieces.len())]);
            }
            let header = unstructured("X-Prop", &text);
            assert_eq!(decode(&header), text, "{header}");
            for line in header.trim_end_matches("\r\n").split("\r\n") {
                assert!(line.len() <= 998, "{header}");
                // Only a word longer than the line is over it.
                assert!(
                    line.len() <= LINE || line.split([' ', '\t']).any(|w| w.len() > 60),
                    "{header}"
                );
                assert!(
                    line.contains(|c: char| c != ' ' && c != '\t'),
                    "a blank line: {header:?}"
                );
            }
            assert!(header.is_ascii());
        }
    }

    #[test]
    fn hostile_display_names_round_trip_within_the_limits() {
        let pieces = [
            "a",
            "Zoë",
            " ",
            "  ",
            "\"",
            "\\",
            "=?",
            "?=",
            "=?utf-8?q?x?=",
            "?",
            "=",
            ".",
            "J.R.",
            "\u{3000}",
            "\u{a0}",
            "\u{200b}",
            "\u{ff20}",
            "é",
            "(",
            ")",
            ",",
            "<",
            ">",
            "@",
            ";",
        ];
        let mut rng = fastrand::Rng::with_seed(5322);
        for _ in 0..5_000 {
            let mut name: String = (0..rng.usize(1..10))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            if rng.usize(..6) == 0 {
                let run = ["x", "\\", "\"", "é", "w "][rng.usize(..5)];
                name.push_str(&run.repeat(rng.usize(20..300)));
            }
            let name = format!("N{name}N");
            let typed = format!(
                "\"{}\" <\"a b\"@example.com>",
                name.replace('\\', "\\\\").replace('"', "\\\"")
            );
            let list = crate::message::address::parse_list(&typed).unwrap();
            let header = address_list("To", &list);
            for line in header.trim_end_matches("\r\n").split("\r\n") {
                assert!(line.len() <= LINE, "{header}");
            }
            let (h, _) = mailparse::parse_header(header.as_bytes()).unwrap();
            match &mailparse::addrparse_header(&h).unwrap()[0] {
                mailparse::MailAddr::Single(info) => {
                    assert_eq!(
                        info.display_name.as_deref(),
                        Some(name.as_str()),
                        "{header}"
                    );
                    assert_eq!(info.addr, "\"a b\"@example.com", "{header}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn leading_and_trailing_white_space_is_kept() {
        // Readers drop white space after the colon and before the end.
        for text in [" hi", "  hi", " ", "\thi", "hi ", " é ", "a\t"] {
            let header = unstructured("Subject", text);
            let value = header
                .trim_end_matches("\r\n")
                .strip_prefix("Subject:")
                .unwrap();
            assert!(!value.trim_start().starts_with(char::is_whitespace));
            assert!(!value.ends_with(char::is_whitespace), "{header:?}");
        }
    }

    #[test]
    fn long_text_folds_within_the_limit() {
        let text = (0..300)
            .map(|i| format!("f{i}"))
            .collect::<Vec<_>>()
            .join("\t");
        let header = unstructured("Subject", &text);
        assert!(header.split("\r\n").all(|l| l.len() <= 78), "{header}");
        assert_eq!(decode(&header), text);
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
    fn display_names_need_no_obs_phrase_and_fold() {
        let one =
            |s: &str| -> Mailbox { crate::message::address::parse_list(s).unwrap().remove(0) };
        assert_eq!(
            address_list("To", &[one("\". \" <a@example.com>")]),
            "To: \".\" <a@example.com>\r\n"
        );
        assert_eq!(
            address_list("To", &[one("\"J.R.\" <a@example.com>")]),
            "To: \"J.R.\" <a@example.com>\r\n"
        );
        assert_eq!(
            address_list("To", &[one("J. R. Doe <a@example.com>")]),
            "To: \"J. R. Doe\" <a@example.com>\r\n"
        );
        assert_eq!(
            address_list("To", &[one("Jo <a@example.com>")]),
            "To: Jo <a@example.com>\r\n"
        );
        let long = format!("\"{}\" <a@example.com>", "\\\\".repeat(850));
        let header = address_list("To", &[one(&long)]);
        assert!(header.split("\r\n").all(|l| l.len() <= LINE), "{header}");
        // A long name with spaces goes as several quoted strings, each on
        // a line; one that cannot be split so as encoded words.
        let long = "Reports from the nightly build of the project, sent by the CI robot, daily";
        let header = address_list("To", &[one(&format!("\"{long}\" <a@example.com>"))]);
        assert!(header.split("\r\n").all(|l| l.len() <= LINE), "{header}");
        assert!(header.starts_with("To: \"Reports from"), "{header}");
        let (h, _) = mailparse::parse_header(header.as_bytes()).unwrap();
        let got = mailparse::addrparse_header(&h).unwrap();
        match &got[0] {
            mailparse::MailAddr::Single(info) => {
                assert_eq!(info.display_name.as_deref(), Some(long), "{header}")
            }
            other => panic!("{other:?}"),
        }
        // A quoted string is never folded.
        let long = format!("\"{} {}\" <a@example.com>", "x".repeat(70), "y".repeat(30));
        let header = address_list("To", &[one(&long)]);
        assert!(
            header
                .split("\r\n")
                .all(|l| l.matches('"').count() % 2 == 0),
            "{header}"
        );
    }

    #[test]
    fn display_names() {
        let m = |s: &str| -> Mailbox { crate::message::address::parse_list(s).unwrap().remove(0) };
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
