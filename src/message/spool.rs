//! Where a message is composed: in memory while it is small, then in an
//! unnamed temporary file (under `TMPDIR`, mode 0600, gone when the
//! process ends), so that attachments of any size cost the same memory.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use anyhow::Result;
use tempfile::{SpooledData, SpooledTempFile};

use crate::exit::{Exit, Failure};

/// A message up to this size stays in memory.
const IN_MEMORY: usize = 1 << 20;

/// Bytes written to the spool at a time.
const BUFFER: usize = 64 * 1024;

/// A composed message: RFC 5322, CRLF line endings, before dot-stuffing.
#[derive(Debug)]
pub enum Composed {
    Memory(Vec<u8>),
    /// An unnamed temporary file that only this process can reach.
    File {
        file: File,
        len: u64,
    },
}

impl Composed {
    pub fn len(&self) -> u64 {
        match self {
            Composed::Memory(bytes) => bytes.len() as u64,
            Composed::File { len, .. } => *len,
        }
    }

    /// Writes the whole message to `out`, a piece at a time.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        match self {
            Composed::Memory(bytes) => out.write_all(bytes),
            Composed::File { file, len } => {
                let mut buf = vec![0u8; BUFFER];
                let mut at = 0u64;
                while at < *len {
                    let want = buf.len().min((*len - at) as usize);
                    let n = match file.read_at(&mut buf[..want], at) {
                        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    out.write_all(&buf[..n])?;
                    at += n as u64;
                }
                Ok(())
            }
        }
    }

    /// `head` followed by this message (a DKIM-Signature field in front).
    /// A message in a file is copied into a new one by the kernel
    /// (`copy_file_range`), never through memory.
    pub fn prepend(self, head: &[u8]) -> Result<Composed> {
        match self {
            Composed::Memory(bytes) => {
                let mut out = Vec::with_capacity(head.len() + bytes.len());
                out.extend_from_slice(head);
                out.extend_from_slice(&bytes);
                Ok(Composed::Memory(out))
            }
            Composed::File { file, len } => {
                use std::io::{Read, Seek, SeekFrom};
                let mut out = tempfile::tempfile_in(spool_dir()).map_err(spool_error)?;
                out.write_all(head).map_err(spool_error)?;
                let mut from = &file;
                from.seek(SeekFrom::Start(0)).map_err(spool_error)?;
                let copied = io::copy(&mut from.take(len), &mut out).map_err(spool_error)?;
                if copied != len {
                    return Err(spool_error(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(Composed::File {
                    file: out,
                    len: len + head.len() as u64,
                })
            }
        }
    }

    /// The whole message in memory (tests compare messages).
    #[cfg(test)]
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Composed::Memory(bytes) => bytes,
            other => {
                let mut out = Vec::new();
                other.write_to(&mut out).expect("spool readable");
                out
            }
        }
    }
}

/// The writer a message is composed into.
pub struct Spool {
    out: BufWriter<SpooledTempFile>,
    len: u64,
}

impl Spool {
    pub fn new() -> Spool {
        Spool::with_limit(IN_MEMORY)
    }

    fn with_limit(in_memory: usize) -> Spool {
        Spool {
            out: BufWriter::with_capacity(
                BUFFER,
                tempfile::spooled_tempfile_in(in_memory, spool_dir()),
            ),
            len: 0,
        }
    }

    pub fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(spool_error)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// The message as composed.
    pub fn finish(self) -> Result<Composed> {
        let len = self.len;
        let spooled = self
            .out
            .into_inner()
            .map_err(|e| spool_error(e.into_error()))?;
        Ok(match spooled.into_inner() {
            SpooledData::InMemory(cursor) => Composed::Memory(cursor.into_inner()),
            SpooledData::OnDisk(file) => Composed::File { file, len },
        })
    }
}

/// A spool that cannot be written (no room, `TMPDIR` not writable) is a
/// local condition that may pass: 75.
///
/// A file size limit (`ulimit -f`) below the message's size is EFBIG
/// (SIGXFSZ is ignored, see `main`): the hint names the limit.
/// `TMPDIR`, or `/tmp` when it is unset or empty (an empty one would
/// mean the current directory).
fn spool_dir() -> PathBuf {
    dir_from(std::env::var_os("TMPDIR"))
}

fn dir_from(tmpdir: Option<std::ffi::OsString>) -> PathBuf {
    tmpdir
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

fn spool_error(e: io::Error) -> anyhow::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EFBIG) => "the file size limit (ulimit -f) is below the message's size",
        _ => "set TMPDIR to a directory with room for the message",
    };
    Failure::new(
        Exit::TempFail,
        format!(
            "cannot write the message to a temporary file in {}: {e}",
            spool_dir().display()
        ),
    )
    .with_hint(hint)
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_or_empty_tmpdir_is_tmp() {
        assert_eq!(dir_from(None), PathBuf::from("/tmp"));
        assert_eq!(dir_from(Some("".into())), PathBuf::from("/tmp"));
        assert_eq!(dir_from(Some("/var/tmp".into())), PathBuf::from("/var/tmp"));
    }

    #[test]
    fn a_small_message_stays_in_memory() {
        let mut spool = Spool::new();
        spool.put(b"Subject: x\r\n\r\nhi\r\n").unwrap();
        let composed = spool.finish().unwrap();
        assert!(matches!(composed, Composed::Memory(_)));
        assert_eq!(composed.into_bytes(), b"Subject: x\r\n\r\nhi\r\n");
    }

    #[test]
    fn a_large_message_goes_to_a_file_and_reads_back_whole() {
        let mut spool = Spool::with_limit(1000);
        let piece: Vec<u8> = (0..=255u8).cycle().take(70_001).collect();
        for _ in 0..3 {
            spool.put(&piece).unwrap();
        }
        let composed = spool.finish().unwrap();
        assert!(matches!(composed, Composed::File { len: 210_003, .. }));
        assert_eq!(composed.len(), 210_003);
        let mut out = Vec::new();
        composed.write_to(&mut out).unwrap();
        assert_eq!(out, [piece.clone(), piece.clone(), piece].concat());
    }

    #[test]
    fn prepend_puts_bytes_in_front_in_memory_and_in_a_file() {
        let composed = Composed::Memory(b"body".to_vec())
            .prepend(b"H: 1\r\n")
            .unwrap();
        assert_eq!(composed.into_bytes(), b"H: 1\r\nbody");
        let mut spool = Spool::with_limit(10);
        let piece: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        spool.put(&piece).unwrap();
        let composed = spool.finish().unwrap().prepend(b"H: 1\r\n").unwrap();
        assert!(matches!(composed, Composed::File { len: 100_006, .. }));
        assert_eq!(composed.into_bytes(), [&b"H: 1\r\n"[..], &piece].concat());
    }

    #[test]
    fn an_unwritable_tmpdir_is_a_temporary_failure_with_a_hint() {
        let err = spool_error(io::Error::from(io::ErrorKind::StorageFull));
        assert_eq!(crate::exit::code_for(&err), Exit::TempFail);
        assert!(err.to_string().contains("cannot write the message"));
    }
}
