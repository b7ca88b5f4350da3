//! The message content as it goes after DATA (RFC 5321 4.5.2): CRLF line
//! endings and dot-stuffing, and the terminating `.` line, written as it
//! is produced.

use std::io::{self, Read, Write};

/// A failure to read the message (not to write it), told apart so that
/// the caller never takes it for a lost connection.
#[derive(Debug)]
pub struct SourceError(io::Error);

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceError {}

impl SourceError {
    /// The read error inside `e`, or `e` itself if it is not one.
    pub fn take(e: io::Error) -> Result<io::Error, io::Error> {
        if e.get_ref().is_some_and(|inner| inner.is::<SourceError>()) {
            let inner = e.into_inner().expect("checked above");
            match inner.downcast::<SourceError>() {
                Ok(source) => Ok(source.0),
                Err(other) => Err(io::Error::other(other)),
            }
        } else {
            Err(e)
        }
    }
}

/// How much of the wire form is built before it is written.
const CHUNK: usize = 64 * 1024;

/// Turns message bytes, fed in pieces of any size, into their wire form:
/// CRLF line ends (a bare LF or CR becomes CRLF), a dot doubled at the
/// start of a line.
#[derive(Default)]
struct Stuffer {
    mid_line: bool,
    /// A CR whose next byte (maybe in the next piece) decides what it is.
    pending_cr: bool,
}

impl Stuffer {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                out.extend_from_slice(b"\r\n");
                self.mid_line = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.mid_line = false;
                }
                _ => {
                    if !self.mid_line && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    self.mid_line = true;
                }
            }
        }
    }

    /// The end: the last line ended, then the lone dot.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr || self.mid_line {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Writes the message read from `message` as it goes on the wire after
/// DATA: CRLF line endings (bare LF and CR normalised), dot-stuffed (RFC
/// 5321 4.5.2), ending with CRLF and the terminating `.` line. Reads about
/// [`CHUNK`] bytes at a time, so memory use does not grow with the message.
/// `then` (the next commands, with PIPELINING) goes in the same last write
/// as the end of the message. A read error comes back as a
/// [`SourceError`] inside the `io::Error`.
pub fn write_data_from(
    out: &mut impl Write,
    mut message: impl Read,
    then: &[u8],
) -> io::Result<()> {
    let mut input = vec![0u8; CHUNK];
    let mut buf = Vec::with_capacity(2 * CHUNK + 8);
    let mut stuffer = Stuffer::default();
    loop {
        let n = match message.read(&mut input) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io::Error::other(SourceError(e))),
        };
        stuffer.feed(&input[..n], &mut buf);
        if buf.len() >= CHUNK {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    stuffer.finish(&mut buf);
    buf.extend_from_slice(then);
    out.write_all(&buf)
}

/// The wire form of `message` in memory (tests).
#[cfg(test)]
pub fn wire_data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_data_from(&mut out, message, b"").expect("writing to a Vec");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_data_stuffs_dots_and_normalises_line_endings() {
        assert_eq!(wire_data(b"a\r\n.\r\n..b\r\n"), b"a\r\n..\r\n...b\r\n.\r\n");
        assert_eq!(
            wire_data(b".start\nmid\n.\nend"),
            b"..start\r\nmid\r\n..\r\nend\r\n.\r\n"
        );
        assert_eq!(wire_data(b""), b".\r\n");
        assert_eq!(wire_data(b"x\r"), b"x\r\n.\r\n");
    }

    /// A reader that hands out at most `n` bytes per read.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn chunk_boundaries_change_nothing() {
        // Lines that start with a dot and CRLFs on both sides of a chunk
        // boundary.
        let mut message = Vec::new();
        while message.len() < 3 * CHUNK {
            message.extend_from_slice(b".x\r\n..\ry\nz");
        }
        let mut expected = Vec::new();
        for line in String::from_utf8_lossy(&message)
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .split('\n')
        {
            if line.starts_with('.') {
                expected.push(b'.');
            }
            expected.extend_from_slice(line.as_bytes());
            expected.extend_from_slice(b"\r\n");
        }
        expected.extend_from_slice(b".\r\n");
        assert!(wire_data(&message) == expected);
    }

    /// An independent reading of the wire form: split at CRLF, undo the
    /// stuffing, stop at the lone dot.
    fn unstuff(wire: &[u8]) -> Option<Vec<Vec<u8>>> {
        let text = wire.strip_suffix(b".\r\n")?;
        let mut lines = Vec::new();
        if text.is_empty() {
            return Some(lines);
        }
        let text = text.strip_suffix(b"\r\n")?;
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.contains(&b'\r') {
                return None; // a bare CR
            }
            match line.strip_prefix(b".") {
                Some(rest) => lines.push(rest.to_vec()),
                None => lines.push(line.to_vec()),
            }
        }
        Some(lines)
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Read in pieces of any size, the wire form is the same: a
            /// CR at the end of one piece and an LF at the start of the
            /// next are one line end.
            #[test]
            fn pieces_of_any_size_give_the_same_wire_form(
                bytes in proptest::collection::vec(
                    prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..300),
                piece in 1usize..7,
            ) {
                let mut out = Vec::new();
                write_data_from(&mut out, Trickle(&bytes, piece), b"NEXT").expect("vec");
                let mut expected = wire_data(&bytes);
                expected.extend_from_slice(b"NEXT");
                prop_assert_eq!(out, expected);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Whatever the bytes, the wire form has only CRLF line ends,
            /// no line that is a lone dot before the end, and unstuffs back
            /// to the input's lines (any of CRLF, LF or CR ending a line).
            #[test]
            fn stuffing_round_trips(bytes in proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..400)) {
                let wire = wire_data(&bytes);
                prop_assert!(wire.ends_with(b".\r\n"));
                for (i, &b) in wire.iter().enumerate() {
                    if b == b'\n' { prop_assert!(i > 0 && wire[i - 1] == b'\r'); }
                    if b == b'\r' { prop_assert!(wire.get(i + 1) == Some(&b'\n')); }
                }
                let body = &wire[..wire.len() - 3];
                prop_assert!(!body.windows(5).any(|w| w == b"\r\n.\r\n") && !body.starts_with(b".\r\n"));
                // The input's lines: CRLF, then lone CR or LF, end a line.
                let mut expected: Vec<Vec<u8>> = Vec::new();
                let mut line = Vec::new();
                let mut i = 0;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\r' | b'\n' => {
                            expected.push(std::mem::take(&mut line));
                            if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') { i += 1; }
                        }
                        b => line.push(b),
                    }
                    i += 1;
                }
                if !line.is_empty() { expected.push(line); }
                prop_assert_eq!(unstuff(&wire), Some(expected));
            }
        }
    }
}
