//! The message on stdin, spooled once as it came (`Raw`: memory up to
//! 1 MiB, then an unnamed temporary file, as `message::Spool`), and read
//! back as many times as needed, a chunk at a time: whole lines for the
//! header block (`Lines::line`, bounded), pieces of lines for the body
//! (`body`), so that no message is ever held whole in memory.
//!
//! The line rules are `draft.rs`'s: lines end at LF, or at CR in input
//! that has no LF at all; without `-i`, an LF line holding only `.` (one
//! CR before the LF allowed) ends the message.

use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;

use anyhow::Result;

use crate::exit::{Exit, Failure};
use crate::message::{Composed, Spool};

/// A UTF-8 byte order mark, dropped at the start of the input.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Octets read back at a time.
const CHUNK: usize = 64 * 1024;

/// The longest line read whole (one before the first empty line).
pub const LINE_CAP: usize = 8 << 20;

/// The input as read from stdin, byte for byte.
pub struct Raw {
    data: Composed,
    /// Where the message starts: after a byte order mark.
    start: u64,
    /// The line end: LF, or CR when the input holds no LF at all.
    sep: u8,
    /// The input after `start` when it is this short (a lone `.` or CR).
    tiny: Option<Vec<u8>>,
    /// Read-back sizes: the buffer, and a piece of a body line.
    buffer: usize,
    chunk: usize,
    /// The longest line read whole.
    cap: usize,
}

impl Raw {
    /// Reads `input` to its end into a spool. A read error is 66 (the
    /// message cannot be read), a spool that cannot be written 75.
    pub fn read(input: &mut dyn Read) -> Result<Raw> {
        let mut spool = Spool::new();
        let mut buf = vec![0u8; CHUNK];
        let mut first: Vec<u8> = Vec::new();
        let mut has_lf = false;
        let mut len = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Failure::no_input(format!(
                        "cannot read the message on standard input: {e}"
                    ))
                    .into());
                }
            };
            let chunk = &buf[..n];
            let want = 8usize.saturating_sub(first.len()).min(n);
            first.extend_from_slice(&chunk[..want]);
            has_lf = has_lf || chunk.contains(&b'\n');
            spool.put(chunk)?;
            len += n as u64;
        }
        let start = if first.starts_with(BOM) { BOM.len() } else { 0 };
        let tiny = (len <= start as u64 + 2).then(|| first[start..].to_vec());
        Ok(Raw {
            data: spool.finish()?,
            start: start as u64,
            sep: if has_lf { b'\n' } else { b'\r' },
            tiny,
            buffer: CHUNK,
            chunk: CHUNK,
            cap: LINE_CAP,
        })
    }

    /// Where the message starts (after a byte order mark).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Tests: read back `buffer` octets at a time, body lines in pieces of
    /// `chunk` (at least 3, so that a lone-dot line is always whole).
    #[cfg(test)]
    pub fn with_sizes(mut self, buffer: usize, chunk: usize) -> Raw {
        self.buffer = buffer.max(1);
        self.chunk = chunk.max(3);
        self
    }

    /// Tests: lines longer than `cap` (at least 256) are long.
    #[cfg(test)]
    pub fn with_line_cap(mut self, cap: usize) -> Raw {
        self.cap = cap.max(256);
        self
    }

    /// Tests: whether the input went to a temporary file.
    #[cfg(test)]
    pub fn in_file(&self) -> bool {
        matches!(self.data, Composed::File { .. })
    }
}

/// The spool read back from an offset.
struct At<'a> {
    data: &'a Composed,
    at: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.data {
            Composed::Memory(bytes) => {
                let rest = usize::try_from(self.at)
                    .ok()
                    .and_then(|at| bytes.get(at..))
                    .unwrap_or_default();
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                n
            }
            Composed::File { file, len } => {
                let left = len.saturating_sub(self.at);
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                file.read_at(&mut buf[..want], self.at)?
            }
        };
        self.at += n as u64;
        Ok(n)
    }
}

fn read_back_error(e: io::Error) -> anyhow::Error {
    Failure::new(
        Exit::TempFail,
        format!("cannot read the message back from its temporary file: {e}"),
    )
    .into()
}

/// How a piece of a line ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Got {
    /// At the line end (consumed).
    End,
    /// At the size asked for: the line goes on.
    Full,
    /// At the end of the input.
    Eof,
}

/// The lines of the input from an offset.
pub struct Lines<'a> {
    reader: BufReader<At<'a>>,
    sep: u8,
    /// The lone-dot rule applies: LF lines, no `-i`.
    dots: bool,
    /// Offset of the next octet to read.
    offset: u64,
    /// A lone dot or the end of the input was reached.
    done: bool,
    chunk: usize,
    cap: usize,
}

impl<'a> Lines<'a> {
    pub fn new(raw: &'a Raw, at: u64, ignore_dots: bool) -> Lines<'a> {
        // Input without LF is one line, cut by the lone-dot rule when it is
        // a `.` alone; CRs split what is left after one CR at its end.
        let done = at == raw.start
            && raw.sep == b'\r'
            && raw.tiny.as_deref().is_some_and(|tiny| {
                tiny == b"\r" || (!ignore_dots && (tiny == b"." || tiny == b".\r"))
            });
        Lines {
            reader: BufReader::with_capacity(
                raw.buffer,
                At {
                    data: &raw.data,
                    at,
                },
            ),
            sep: raw.sep,
            dots: raw.sep == b'\n' && !ignore_dots,
            offset: at,
            done,
            chunk: raw.chunk,
            cap: raw.cap,
        }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Appends the line's next octets to `out`, up to `max` in all.
    fn piece(&mut self, out: &mut Vec<u8>, max: usize) -> Result<Got> {
        loop {
            if out.len() >= max {
                return Ok(Got::Full);
            }
            let buf = self.reader.fill_buf().map_err(read_back_error)?;
            if buf.is_empty() {
                return Ok(Got::Eof);
            }
            let window = &buf[..buf.len().min(max - out.len())];
            if let Some(i) = window.iter().position(|b| *b == self.sep) {
                out.extend_from_slice(&window[..i]);
                self.reader.consume(i + 1);
                self.offset += i as u64 + 1;
                return Ok(Got::End);
            }
            let n = window.len();
            out.extend_from_slice(window);
            self.reader.consume(n);
            self.offset += n as u64;
        }
    }

    /// Whether the whole line `line` ends the message.
    fn is_dot(&self, line: &[u8]) -> bool {
        self.dots && (line == b"." || line == b".\r")
    }

    /// The next line, without its line end; `None` at the end of the
    /// message. A line longer than the cap (8 MiB) comes as its first
    /// octets, `long`: the rest is then `rest_of_line`'s.
    pub fn line(&mut self) -> Result<Option<Line>> {
        if self.done {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        let long = match self.piece(&mut bytes, self.cap.saturating_add(1))? {
            Got::Eof if bytes.is_empty() => {
                self.done = true;
                return Ok(None);
            }
            got => got == Got::Full,
        };
        if !long && self.is_dot(&bytes) {
            self.done = true;
            return Ok(None);
        }
        Ok(Some(Line { bytes, long }))
    }

    /// Feeds what is left of a long line to `sink`, a piece at a time.
    pub fn rest_of_line(&mut self, sink: &mut dyn FnMut(&[u8])) -> Result<()> {
        let mut buf = Vec::with_capacity(self.chunk);
        loop {
            buf.clear();
            let got = self.piece(&mut buf, self.chunk)?;
            sink(&buf);
            if got != Got::Full {
                return Ok(());
            }
        }
    }
}

/// A line read whole, or the start of one too long for that.
pub struct Line {
    pub bytes: Vec<u8>,
    pub long: bool,
}

/// What the body is made of, in order.
pub enum Event<'a> {
    /// Octets of the current line: no CR, no LF, never empty.
    Text(&'a [u8]),
    /// The end of a line.
    End,
}

/// Feeds the body lines that start at `at` to `sink`: the lines from
/// there, the CRs at the end of each dropped (part of its line end) and
/// any other CR a line break; up to the lone dot or the end.
pub fn body(
    raw: &Raw,
    at: u64,
    ignore_dots: bool,
    sink: &mut dyn FnMut(Event<'_>) -> Result<()>,
) -> Result<()> {
    let mut lines = Lines::new(raw, at, ignore_dots);
    if lines.done {
        return Ok(());
    }
    let mut buf = Vec::with_capacity(raw.chunk);
    loop {
        buf.clear();
        let mut got = lines.piece(&mut buf, raw.chunk)?;
        if got == Got::Eof && buf.is_empty() {
            return Ok(());
        }
        if got != Got::Full && lines.is_dot(&buf) {
            return Ok(());
        }
        // CRs seen but not yet known to be inside the line.
        let mut crs = 0usize;
        loop {
            let mut rest = buf.as_slice();
            while !rest.is_empty() {
                let text = rest.iter().position(|b| *b == b'\r').unwrap_or(rest.len());
                if text > 0 {
                    for _ in 0..crs {
                        sink(Event::End)?;
                    }
                    crs = 0;
                    sink(Event::Text(&rest[..text]))?;
                }
                if text < rest.len() {
                    crs += 1;
                    rest = &rest[text + 1..];
                } else {
                    rest = &[];
                }
            }
            if got != Got::Full {
                break;
            }
            buf.clear();
            got = lines.piece(&mut buf, raw.chunk)?;
        }
        sink(Event::End)?;
        if got == Got::Eof {
            return Ok(());
        }
    }
}
