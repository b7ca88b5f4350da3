//! The `.env` format, parsed from bytes already read (the file is read
//! once: it may be a pipe).
//!
//! Values arrive exactly as written: there is no variable substitution
//! (`$HOME`, `${X}`) and no backslash escape anywhere, so a password
//! holding `$`, `\` or `!` needs no quoting at all.
//!
//! - `KEY=VALUE`, with an optional `export ` prefix; white space around
//!   the key, the `=` and an unquoted value is ignored. A key is
//!   `[A-Za-z_][A-Za-z0-9_.]*`.
//! - Unquoted: the value runs to the end of the line, or to a `#` that
//!   follows white space (a comment; `KEY= # note` is an empty value).
//! - `'...'` and `"..."`: what is between the quotes, byte for byte, line
//!   breaks included (a quoted value may span lines). The first matching
//!   quote ends the value; after it only white space and a comment may
//!   follow. A value holding `'` goes in double quotes, one holding `"` in
//!   single quotes. A later line of a quoted value that reads like
//!   `MAILSEND_KEY=` is an error at the line the quote opened: a closing
//!   quote is missing, and the value would swallow that setting.
//! - Blank lines and lines starting with `#` are skipped; CRLF line ends
//!   and a UTF-8 byte order mark are accepted.
//!
//! An error names the line number and what is wrong, never the text of
//! the line: it may hold a password.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;

/// One `KEY=VALUE` line, in file order (a key may appear more than once).
#[derive(Debug, PartialEq, Eq)]
pub struct Assignment {
    pub key: String,
    pub value: OsString,
    pub line: usize,
}

/// A malformed line: its number and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Parses a whole `.env` file.
pub fn parse(bytes: &[u8]) -> Result<Vec<Assignment>, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut out = Vec::new();
    let mut p = Parser {
        s: bytes,
        i: 0,
        line: 1,
    };
    while !p.at_end() {
        let line = p.line;
        let err = |reason| ParseError { line, reason };
        p.skip_blanks();
        if p.at_line_end() || p.peek() == Some(b'#') {
            p.skip_line();
            continue;
        }
        let mut key = p.word();
        if key == b"export" && p.peek().is_some_and(is_blank) {
            p.skip_blanks();
            key = p.word();
        }
        if !valid_key(key) {
            return Err(err(
                "expected KEY=VALUE with a name of letters, digits and _",
            ));
        }
        let key = String::from_utf8_lossy(key).into_owned();
        p.skip_blanks();
        if p.peek() != Some(b'=') {
            return Err(err("expected KEY=VALUE"));
        }
        p.i += 1;
        p.skip_blanks();
        let value = match p.peek() {
            Some(q @ (b'\'' | b'"')) => {
                p.i += 1;
                let start = p.i;
                let Some(len) = p.s[start..].iter().position(|&b| b == q) else {
                    return Err(err("the quote is never closed"));
                };
                p.i = start + len + 1;
                let raw = &p.s[start..start + len];
                // `A="x` with its closing quote forgotten would swallow the
                // lines up to the next quote, a password line among them.
                if raw.split(|&b| b == b'\n').skip(1).any(looks_like_setting) {
                    return Err(err(
                        "the quote opened here runs into a later MAILSEND_ line (a closing quote missing?)",
                    ));
                }
                p.line += raw.iter().filter(|&&b| b == b'\n').count();
                p.skip_blanks();
                if !(p.at_line_end() || p.peek() == Some(b'#')) {
                    return Err(err("text after the closing quote"));
                }
                p.skip_line();
                // A line break inside quotes is a line break, CRLF or LF.
                let mut value = Vec::with_capacity(raw.len());
                for (n, &b) in raw.iter().enumerate() {
                    if !(b == b'\r' && raw.get(n + 1) == Some(&b'\n')) {
                        value.push(b);
                    }
                }
                value
            }
            _ => {
                let start = p.i;
                let mut end = start;
                while !p.at_line_end() {
                    let b = p.s[p.i];
                    if b == b'#' && is_blank(p.s[p.i - 1]) {
                        break;
                    }
                    p.i += 1;
                    if !is_blank(b) {
                        end = p.i;
                    }
                }
                let value = p.s[start..end].to_vec();
                p.skip_line();
                value
            }
        };
        out.push(Assignment {
            key,
            value: OsString::from_vec(value),
            line,
        });
    }
    Ok(out)
}

/// A line inside a quoted value that reads like `MAILSEND_KEY=`, with
/// optional white space, `#` and `export `: no real value (a PEM block, a
/// JSON text) holds one, a forgotten closing quote does.
fn looks_like_setting(line: &[u8]) -> bool {
    let trim = |s: &[u8]| -> usize { s.iter().take_while(|&&b| is_blank(b)).count() };
    let mut rest = &line[trim(line)..];
    // A commented-out setting counts too: `# MAILSEND_PASSWORD=...`.
    if let Some(after) = rest.strip_prefix(b"#") {
        rest = &after[trim(after)..];
    }
    if let Some(after) = rest.strip_prefix(b"export") {
        let blanks = trim(after);
        if blanks > 0 {
            rest = &after[blanks..];
        }
    }
    let Some(after) = rest.strip_prefix(b"MAILSEND_") else {
        return false;
    };
    let name = after
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'.')
        .count();
    let after = &after[name..];
    after[trim(after)..].first() == Some(&b'=')
}

fn valid_key(key: &[u8]) -> bool {
    match key.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
        }
        None => false,
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// At `\n`, `\r\n` or the end of the input.
    fn at_line_end(&self) -> bool {
        match self.peek() {
            None | Some(b'\n') => true,
            Some(b'\r') => matches!(self.s.get(self.i + 1), None | Some(b'\n')),
            _ => false,
        }
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.i += 1;
        }
    }

    /// Past the next line break (or to the end).
    fn skip_line(&mut self) {
        match self.s[self.i..].iter().position(|&b| b == b'\n') {
            Some(n) => {
                self.i += n + 1;
                self.line += 1;
            }
            None => self.i = self.s.len(),
        }
    }

    /// The bytes up to white space, `=` or the end of the line.
    fn word(&mut self) -> &'a [u8] {
        let s = self.s;
        let start = self.i;
        while !self.at_line_end() && !matches!(self.s[self.i], b' ' | b'\t' | b'=') {
            self.i += 1;
        }
        &s[start..self.i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &[u8]) -> Vec<(String, Vec<u8>)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|a| (a.key, a.value.into_vec()))
            .collect()
    }

    fn one(text: &str) -> Vec<u8> {
        let all = pairs(text.as_bytes());
        assert_eq!(all.len(), 1, "{text:?}: {all:?}");
        all.into_iter().next().unwrap().1
    }

    #[test]
    fn values_arrive_byte_for_byte() {
        assert_eq!(one("P=Xy$9abc$HOME!"), b"Xy$9abc$HOME!");
        assert_eq!(one("P='Xy$9abc$HOME!'"), b"Xy$9abc$HOME!");
        assert_eq!(one("P=\"Xy$9abc$HOME!\""), b"Xy$9abc$HOME!");
        assert_eq!(
            one("P=\"${HOME} $(id) `id` \\n \\\\\""),
            b"${HOME} $(id) `id` \\n \\\\"
        );
        assert_eq!(one("P=a\\b\\\"c"), b"a\\b\\\"c");
        assert_eq!(one("P=\"it's\""), b"it's");
        assert_eq!(one("P='say \"hi\"'"), b"say \"hi\"");
        assert_eq!(one("P=ab#cd"), b"ab#cd");
        assert_eq!(one("P=#cd"), b"#cd");
        assert_eq!(one("P= #cd"), b"");
        assert_eq!(one("P=ab\"c'd"), b"ab\"c'd");
        assert_eq!(one("P=\" padded \""), b" padded ");
        assert_eq!(one("P="), b"");
        assert_eq!(one("P=''"), b"");
        assert_eq!(pairs(b"P=\xff\xfe\n"), [("P".into(), b"\xff\xfe".to_vec())]);
    }

    #[test]
    fn comments_blanks_export_and_white_space() {
        let text = "\u{feff}# a comment\n\n  \t\nexport A=1\n  B = two words  # note\r\nC='x' # c\nD=\"y\"\t#\nE=v#not-a-comment\nexport=3\n";
        assert_eq!(
            pairs(text.as_bytes()),
            [
                ("A".into(), b"1".to_vec()),
                ("B".into(), b"two words".to_vec()),
                ("C".into(), b"x".to_vec()),
                ("D".into(), b"y".to_vec()),
                ("E".into(), b"v#not-a-comment".to_vec()),
                ("export".into(), b"3".to_vec()),
            ]
        );
    }

    #[test]
    fn crlf_is_a_line_end_and_never_part_of_a_value() {
        assert_eq!(
            pairs(b"A=1\r\nB='2'\r\nC=\"3\"\r\n"),
            [
                ("A".into(), b"1".to_vec()),
                ("B".into(), b"2".to_vec()),
                ("C".into(), b"3".to_vec()),
            ]
        );
        assert_eq!(one("A=x\r"), b"x");
        assert_eq!(one("A=x\ry"), b"x\ry");
    }

    #[test]
    fn quoted_values_may_span_lines_and_lines_are_counted() {
        let all = parse(b"K=\"-----BEGIN\r\nabc\n-----END\"\nA=1\nB=\"x\n").unwrap_err();
        assert_eq!(all.line, 5);
        let all = parse(b"K=\"-----BEGIN\r\nabc\n-----END\"\nA=1\n").unwrap();
        assert_eq!(all[0].value, OsString::from("-----BEGIN\nabc\n-----END"));
        assert_eq!((all[1].key.as_str(), all[1].line), ("A", 4));
    }

    #[test]
    fn a_quote_that_runs_into_a_mailsend_line_is_an_error_at_its_opening_line() {
        for text in [
            "A=1\nMAILSEND_FROM=\"Me <me@example.com>\nMAILSEND_PASSWORD=hunter2\"\n",
            "A=1\nMAILSEND_FROM='x\r\n\n  export  MAILSEND_PASSWORD = hunter2'\n",
            "A=1\nB=\"x\n\tMAILSEND_PASSWORD=hunter2\"\n",
            "A=1\nB=\"x\nMAILSEND_USER=\"\n",
            "A=1\nMAILSEND_FROM=\"x\n# MAILSEND_PASSWORD=hunter2\n\"\n",
            "A=1\nMAILSEND_FROM=\"x\n  #export MAILSEND_PASSWORD=hunter2\n\"\n",
        ] {
            let err = parse(text.as_bytes()).unwrap_err();
            assert_eq!(err.line, 2, "{text:?}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        // Other lines inside quotes are kept: a PEM block, a base64 line
        // ending in `=`, a word and `=` that is not a MAILSEND_ key.
        let pem = "K=\"-----BEGIN KEY-----\nAQAB=\nexport X=1\nMAILSEND\n-----END KEY-----\"\n";
        assert_eq!(
            one(pem),
            b"-----BEGIN KEY-----\nAQAB=\nexport X=1\nMAILSEND\n-----END KEY-----"
        );
        // On the first line of the value it is the value itself.
        assert_eq!(one("K=\"MAILSEND_X=1\""), b"MAILSEND_X=1");
    }

    #[test]
    fn a_key_may_repeat_and_every_assignment_is_kept() {
        let all = parse(b"P=secret\nP=\n").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].value.len(), all[1].value.len()), (6, 0));
        assert_eq!((all[0].line, all[1].line), (1, 2));
    }

    #[test]
    fn malformed_lines_name_the_line_never_the_text() {
        for (text, line) in [
            ("A=1\nhunter2\n", 2),
            ("A=1\n\n=hunter2\n", 3),
            ("1A=hunter2\n", 1),
            ("A-B=hunter2\n", 1),
            ("A=1\nP=\"hunter2\n", 2),
            ("P='hunter2'x\n", 1),
            ("P=\"hunter2\" x\n", 1),
            ("export hunter2\n", 1),
            ("A B=hunter2\n", 1),
            ("P=\"a\"b\"\n", 1),
        ] {
            let err = parse(text.as_bytes()).unwrap_err();
            assert_eq!(err.line, line, "{text:?}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}
