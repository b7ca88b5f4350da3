//! Server replies (RFC 5321 4.2): reading them off any byte stream, and
//! making their text safe to show.
//!
//! Owns the framing rules a hostile or broken server cannot bend: every
//! reply is read to its last line, an over-long line is cut and its tail
//! discarded (never taken for the next reply, which would shift every
//! pipelined reply onto the wrong command), a code that changes within a
//! reply is refused, and control characters in the text are escaped before
//! anything can print them. Knows nothing of sessions, stages or exit codes.

use std::fmt;
use std::io::{self, BufRead};

use crate::secret::Redactor;
use crate::term::printable;

/// Longest reply line kept (RFC 5321 allows 512; servers exceed it). The
/// rest of a longer line is read and discarded.
pub const MAX_LINE: usize = 4096;
/// Most lines in one reply.
pub const MAX_LINES: usize = 200;

/// One server reply: a code and its text lines, already redacted and
/// escaped (see [`printable`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx: the command succeeded. A 3xx where 2xx is due is not success.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The text, lines joined by spaces.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// The reply as the server sent it, one string per line (for `-v`).
    pub fn wire_lines(&self) -> impl Iterator<Item = String> + '_ {
        let last = self.lines.len().saturating_sub(1);
        self.lines.iter().enumerate().map(move |(i, text)| {
            let sep = if i == last { ' ' } else { '-' };
            format!("{}{sep}{text}", self.code)
        })
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// Why no reply could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The stream failed (or timed out: the caller's stream decides).
    Io(io::Error),
    /// The server closed the connection before the reply was complete.
    Closed,
    /// The bytes are not an SMTP reply; the detail quotes them, escaped.
    Malformed(String),
}

/// Reads one (possibly multi-line) reply. Its text is redacted by
/// `redactor` (all lines together, so a secret split over lines is found
/// too), then escaped with [`printable`], before it is kept or quoted in
/// an error.
pub fn read<R: BufRead>(reader: &mut R, redactor: &Redactor) -> Result<Reply, ReadError> {
    read_keeping_raw(reader, redactor).map(|(reply, _)| reply)
}

/// Like [`read`], and also the text as sent, lines joined by nothing
/// (neither redacted nor escaped): for decoding an AUTH challenge, whose
/// base64 redaction could cut. Never to be shown.
pub fn read_keeping_raw<R: BufRead>(
    reader: &mut R,
    redactor: &Redactor,
) -> Result<(Reply, String), ReadError> {
    let mut texts = Vec::new();
    let mut code = None;
    loop {
        let raw = read_line(reader)?;
        let shown = || printable(&redactor.redact(&String::from_utf8_lossy(&raw)));
        let malformed = || ReadError::Malformed(format!("malformed reply '{}'", shown()));
        let this_code = raw
            .get(..3)
            .filter(|c| c.iter().all(u8::is_ascii_digit))
            .and_then(|c| std::str::from_utf8(c).ok()?.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(malformed)?;
        if *code.get_or_insert(this_code) != this_code {
            return Err(ReadError::Malformed(format!(
                "reply code changed within a reply: '{}'",
                shown()
            )));
        }
        let sep = raw.get(3).copied();
        if !matches!(sep, None | Some(b' ' | b'-')) {
            return Err(malformed());
        }
        // The text after "NNN" and its separator.
        texts.push(String::from_utf8_lossy(raw.get(4..).unwrap_or_default()).into_owned());
        if sep != Some(b'-') {
            let lines = redactor
                .redact_lines(&texts)
                .iter()
                .map(|t| printable(t))
                .collect();
            let raw = texts.concat();
            return Ok((
                Reply {
                    code: this_code,
                    lines,
                },
                raw,
            ));
        }
        if texts.len() >= MAX_LINES {
            return Err(ReadError::Malformed(format!(
                "reply longer than {MAX_LINES} lines"
            )));
        }
    }
}

/// One line without its CRLF (or bare LF). At most [`MAX_LINE`] bytes are
/// kept; the rest of a longer line is consumed and dropped, so the next
/// read starts at the next line whatever the server sent.
fn read_line<R: BufRead>(reader: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut line = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        if buf.is_empty() {
            return Err(ReadError::Closed);
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        reader.consume(used);
        if found {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Vec<Result<Reply, String>> {
        let mut reader = io::BufReader::with_capacity(16, bytes);
        let mut out = Vec::new();
        loop {
            match read(&mut reader, &Redactor::default()) {
                Ok(r) => out.push(Ok(r)),
                Err(ReadError::Closed) => return out,
                Err(ReadError::Malformed(m)) => out.push(Err(m)),
                Err(ReadError::Io(e)) => panic!("io error from a slice: {e}"),
            }
        }
    }

    fn reply(code: u16, lines: &[&str]) -> Reply {
        Reply {
            code,
            lines: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn multi_line_reply_split_across_reads() {
        let got = parse_all(b"250-mx.example.com\r\n250-PIPELINING\r\n250 SIZE 10\r\n354 go\n");
        assert_eq!(
            got,
            [
                Ok(reply(250, &["mx.example.com", "PIPELINING", "SIZE 10"])),
                Ok(reply(354, &["go"]))
            ]
        );
    }

    #[test]
    fn a_code_that_changes_mid_reply_is_refused() {
        let got = parse_all(b"250-a\r\n251 b\r\n");
        assert!(
            matches!(&got[0], Err(m) if m.contains("changed")),
            "{got:?}"
        );
    }

    #[test]
    fn an_over_long_line_never_shifts_the_replies_after_it() {
        let mut bytes = b"550 5.1.1 ".to_vec();
        // The tail would look like a reply of its own if it were kept.
        bytes.extend(std::iter::repeat_n(b'x', MAX_LINE - 10));
        bytes.extend_from_slice(b"250 ok as a fake reply\r\n250 2.1.5 real\r\n");
        let got = parse_all(&bytes);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_ref().map(|r| r.code), Ok(550));
        assert_eq!(got[1], Ok(reply(250, &["2.1.5 real"])));
    }

    #[test]
    fn a_reply_without_end_is_closed() {
        let mut reader = &b"250-a\r\n250-b"[..];
        assert!(matches!(
            read(&mut reader, &Redactor::default()),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn invisible_characters_are_escaped() {
        for c in [
            '\u{61c}',
            '\u{2028}',
            '\u{2029}',
            '\u{feff}',
            '\u{200b}',
            '\u{e0041}',
        ] {
            let shown = printable(&format!("a{c}b"));
            assert_eq!(shown, format!("a{}b", c.escape_unicode()), "{c:?}");
        }
        assert_eq!(printable("Grüße, 東京"), "Grüße, 東京");
    }

    #[test]
    fn control_characters_are_escaped() {
        let got = parse_all(b"554 \x1b[31mred\rhidden\x07\t\xc2\x9b\xe2\x80\xae\r\n");
        assert_eq!(
            got,
            [Ok(reply(
                554,
                &["\\u{1b}[31mred\\u{d}hidden\\u{7}\t\\u{9b}\\u{202e}"]
            ))]
        );
    }

    #[test]
    fn malformed_replies() {
        for bad in [
            &b"hello\r\n"[..],
            b"2500 x\r\n",
            b"199 x\r\n",
            b"25\r\n",
            b"+50 x\r\n",
            b"250x\r\n",
        ] {
            let got = parse_all(bad);
            assert!(
                matches!(&got[0], Err(m) if m.contains("malformed")),
                "{bad:?}: {got:?}"
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn arb_reply() -> impl Strategy<Value = Reply> {
            (200u16..600, proptest::collection::vec("[ -~]{0,40}", 1..5))
                .prop_map(|(code, lines)| Reply { code, lines })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Arbitrary bytes never panic, and every reply read is
            /// bounded and printable.
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
                for r in parse_all(&bytes).into_iter().flatten() {
                    prop_assert!((200..600).contains(&r.code));
                    prop_assert!(r.lines.len() <= MAX_LINES);
                    for l in &r.lines {
                        prop_assert!(!l.chars().any(|c| c.is_control() && c != '\t'));
                    }
                }
            }

            /// Replies written as a server writes them come back the same,
            /// whatever the read size, and over-long lines only shorten the
            /// line they are in.
            #[test]
            fn round_trip(replies in proptest::collection::vec(arb_reply(), 1..6), long in 0usize..3) {
                let mut bytes = Vec::new();
                let mut expected = replies.clone();
                for r in &replies {
                    for l in r.wire_lines() {
                        bytes.extend_from_slice(l.as_bytes());
                        bytes.extend_from_slice(b"\r\n");
                    }
                }
                // One more reply with an over-long line: only its own text
                // is cut.
                let long_line = format!("451 {}", "y".repeat(MAX_LINE * long));
                bytes.extend_from_slice(long_line.as_bytes());
                bytes.extend_from_slice(b"\r\n");
                let kept = &long_line[4..long_line.len().min(MAX_LINE)];
                expected.push(Reply { code: 451, lines: vec![kept.to_owned()] });
                let got: Vec<_> = parse_all(&bytes)
                    .into_iter()
                    .collect::<Result<_, _>>()
                    .map_err(TestCaseError::fail)?;
                prop_assert_eq!(got, expected);
            }
        }
    }
}
