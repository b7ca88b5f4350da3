//! A message's bytes as the session sends them: in memory, or in a file
//! (an outbox entry, a spool file) read as it is sent, so that a message
//! of any size costs the same memory.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// How much is read at a time when a file is scanned.
const CHUNK: usize = 64 * 1024;

/// Longest header block looked at for UTF-8 address fields.
const MAX_HEAD: usize = 8 << 20;

/// Where a message's bytes are.
#[derive(Clone, Copy, Debug)]
pub enum Content<'a> {
    Bytes(&'a [u8]),
    /// Read from the start with positioned reads (the file's own cursor
    /// is never used), as long as it is as it was when `Stamp` was taken.
    File(&'a File, Stamp),
}

/// A file's length and modification time when it was opened: reading it
/// ends in an error if either has changed, so a file rewritten while it is
/// sent (longer, shorter, or other bytes of the same length) never goes
/// out cut or mixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    /// The file's stamp now.
    pub fn of(file: &File) -> io::Result<Stamp> {
        let meta = file.metadata()?;
        Ok(Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

impl<'a> From<&'a [u8]> for Content<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Content::Bytes(bytes)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Content<'a> {
    fn from(bytes: &'a [u8; N]) -> Self {
        Content::Bytes(bytes)
    }
}

impl<'a> From<&'a Vec<u8>> for Content<'a> {
    fn from(bytes: &'a Vec<u8>) -> Self {
        Content::Bytes(bytes)
    }
}

/// What the dialogue must know of a message before sending it.
#[derive(Debug, PartialEq, Eq)]
pub struct Facts {
    pub len: u64,
    /// A byte outside ASCII somewhere (BODY=8BITMIME).
    pub eight_bit: bool,
    /// The header block, up to the first empty line (at most 1 MiB).
    pub head: Vec<u8>,
}

impl<'a> Content<'a> {
    /// The message in a file, as it is now.
    #[cfg(test)]
    pub fn file(file: &'a File) -> io::Result<Content<'a>> {
        Ok(Content::File(file, Stamp::of(file)?))
    }

    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::File(_, stamp) => stamp.len,
        }
    }

    /// A reader over the whole message, from its first byte.
    pub fn reader(&self) -> impl Read + 'a {
        match *self {
            Content::Bytes(b) => Source::Bytes(b),
            Content::File(file, stamp) => Source::File {
                file,
                stamp,
                at: 0,
                left: stamp.len,
            },
        }
    }

    /// Length, 8-bit data and header block, in one pass over the message.
    pub fn facts(&self) -> io::Result<Facts> {
        let mut facts = Facts {
            len: 0,
            eight_bit: false,
            head: Vec::new(),
        };
        let mut in_head = true;
        let mut reader = self.reader();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let piece = &buf[..n];
            facts.len += n as u64;
            facts.eight_bit |= !piece.is_ascii();
            if in_head {
                let from = facts.head.len().saturating_sub(3);
                facts.head.extend_from_slice(piece);
                if let Some(end) = facts.head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                    facts.head.truncate(from + end);
                    in_head = false;
                } else if facts.head.len() > MAX_HEAD {
                    facts.head.truncate(MAX_HEAD);
                    in_head = false;
                }
            }
        }
        Ok(facts)
    }
}

/// The reader behind [`Content::reader`].
enum Source<'a> {
    Bytes(&'a [u8]),
    File {
        file: &'a File,
        stamp: Stamp,
        at: u64,
        left: u64,
    },
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Bytes(b) => b.read(buf),
            Source::File {
                file,
                stamp,
                at,
                left,
            } => {
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                if want == 0 {
                    // The end: only if the file is still what was measured.
                    if buf.is_empty() || Stamp::of(file)? == *stamp {
                        return Ok(0);
                    }
                    return Err(io::Error::other(
                        "the message file changed while it was read",
                    ));
                }
                let n = file.read_at(&mut buf[..want], *at)?;
                if n == 0 {
                    // The file shrank while it was being sent: sending
                    // less than was announced would deliver a cut message.
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the message file got shorter while it was sent",
                    ));
                }
                *at += n as u64;
                *left -= n as u64;
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_and_its_bytes_give_the_same_facts_and_bytes() {
        let mut message = b"Subject: gr\xc3\xbc\xc3\x9fe\r\nTo: a@example.com\r\n\r\n".to_vec();
        message.extend(std::iter::repeat_n(b'x', 3 * CHUNK + 17));
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(&message).expect("write");
        let from_file = Content::file(&file).expect("metadata");
        let from_bytes = Content::Bytes(&message);
        let facts = from_file.facts().expect("facts");
        assert_eq!(facts, from_bytes.facts().expect("facts"));
        assert_eq!(facts.len, message.len() as u64);
        assert!(facts.eight_bit);
        assert_eq!(
            facts.head,
            b"Subject: gr\xc3\xbc\xc3\x9fe\r\nTo: a@example.com"
        );
        let mut read = Vec::new();
        from_file.reader().read_to_end(&mut read).expect("read");
        assert!(read == message);
    }

    #[test]
    fn a_file_that_shrinks_while_it_is_sent_is_an_error() {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(b"0123456789").expect("write");
        let content = Content::File(
            &file,
            Stamp {
                len: 20,
                ..Stamp::of(&file).expect("stamp")
            },
        );
        let mut read = Vec::new();
        let err = content.reader().read_to_end(&mut read).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_file_rewritten_while_it_is_read_is_an_error() {
        let file = tempfile::tempfile().expect("temp file");
        (&file).write_all(b"0123456789").expect("write");
        let content = Content::file(&file).expect("stamp");
        // Longer, and other bytes of the same length.
        std::thread::sleep(std::time::Duration::from_millis(20));
        (&file).write_all(b"more").expect("write");
        let mut read = Vec::new();
        assert!(content.reader().read_to_end(&mut read).is_err(), "grown");
        let file = tempfile::tempfile().expect("temp file");
        file.write_all_at(b"0123456789", 0).expect("write");
        let content = Content::file(&file).expect("stamp");
        std::thread::sleep(std::time::Duration::from_millis(20));
        file.write_all_at(b"X", 3).expect("write");
        let mut read = Vec::new();
        assert!(
            content.reader().read_to_end(&mut read).is_err(),
            "rewritten"
        );
    }

    #[test]
    fn a_header_split_across_reads_is_found() {
        let mut message = vec![b'h'; CHUNK - 2];
        message.extend_from_slice(b"\r\n\r\nbody \xc3\xa9");
        let facts = Content::Bytes(&message).facts().expect("facts");
        assert_eq!(facts.head.len(), CHUNK - 2);
        assert!(facts.eight_bit);
    }
}
