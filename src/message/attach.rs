//! Attachments: where their bytes come from, and their MIME part,
//! streamed into the spool in base64 a block at a time, so a file of any
//! size costs one block of memory.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use lettre::message::header::{
    ContentDisposition, ContentId, ContentTransferEncoding, ContentType,
};
use lettre::message::{Body, SinglePart};

use super::encode;
use super::spool::Spool;
use crate::exit::Failure;

/// Input bytes per block: a multiple of 57, the bytes of one 76-character
/// base64 line, so that blocks join into the lines one encoding of the
/// whole file would give.
const BLOCK: usize = 57 * 1024;

/// A file to attach: its name as the receiver sees it, its type, and
/// where its bytes are read from when the message is composed.
#[derive(Debug)]
pub struct Attachment {
    pub filename: String,
    pub content_type: ContentType,
    source: Source,
    /// An inline image of the HTML (`--inline`): Content-ID `<filename>`,
    /// disposition inline.
    inline: bool,
}

#[derive(Debug)]
enum Source {
    /// Checked when the flags are read, so a missing file fails before
    /// anything else happens; opened and read when the message is
    /// composed, one attachment after the other: any number of them
    /// costs one file descriptor, and named pipes are read in the order
    /// their writer fills them.
    File(PathBuf),
    /// Standard input: the bytes already read (to see whether it is
    /// empty), then the rest.
    Stdin(Vec<u8>),
    #[cfg(test)]
    Bytes(Vec<u8>),
}

impl Attachment {
    /// Opens `path`; the content type is guessed from its name. A missing
    /// or unreadable file is `NOINPUT` (66).
    pub fn open(path: &Path) -> Result<Attachment> {
        let cannot = |e: io::Error| {
            Failure::no_input(format!(
                "cannot read attachment {}: {}",
                path.display(),
                e.kind()
            ))
        };
        let meta = std::fs::metadata(path).map_err(cannot)?;
        if meta.is_dir() {
            return Err(cannot(io::ErrorKind::IsADirectory.into()).into());
        }
        // Opened once to see that it can be read; not a named pipe:
        // opening one waits for its writer, and closing it again could
        // leave that writer without a reader.
        if !meta.file_type().is_fifo() {
            File::open(path).map_err(cannot)?;
        }
        let filename = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Failure::no_input(format!("attachment {} is not a file", path.display()))
            })?;
        Ok(Attachment::with_source(
            filename,
            Source::File(path.to_owned()),
        ))
    }

    /// An attachment named `filename` read from standard input. Its first
    /// block is read now, to know whether stdin holds anything at all.
    pub fn stdin(filename: String) -> Result<Attachment> {
        let mut first = vec![0u8; BLOCK];
        let n = read_block(&mut io::stdin().lock(), &mut first).map_err(stdin_error)?;
        first.truncate(n);
        Ok(Attachment::with_source(filename, Source::Stdin(first)))
    }

    /// The attachment is the pipe or socket that standard input reads
    /// (`--attach /dev/stdin`): it is read when the message is composed,
    /// so nothing else may read standard input first. A regular file on
    /// standard input is not shared: opened again, it has its own offset.
    pub fn reads_stdin(&self) -> bool {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let Source::File(path) = &self.source else {
            return false;
        };
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        if !(meta.file_type().is_fifo() || meta.file_type().is_socket()) {
            return false;
        }
        let stdin = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .and_then(|fd| File::from(fd).metadata());
        matches!(stdin, Ok(s) if (s.dev(), s.ino()) == (meta.dev(), meta.ino()))
    }

    /// Standard input held nothing.
    pub fn is_empty_stdin(&self) -> bool {
        matches!(&self.source, Source::Stdin(first) if first.is_empty())
    }

    #[cfg(test)]
    pub fn named(filename: &str, bytes: Vec<u8>) -> Attachment {
        Attachment::with_source(filename.to_owned(), Source::Bytes(bytes))
    }

    fn with_source(filename: String, source: Source) -> Attachment {
        let mime = mime_guess::from_path(&filename).first_or_octet_stream();
        let content_type = ContentType::parse(mime.essence_str())
            .unwrap_or(ContentType::parse("application/octet-stream").expect("valid MIME type"));
        Attachment {
            filename,
            content_type,
            source,
            inline: false,
        }
    }

    /// `--inline FILE`: opened like `--attach` (66 when it cannot be
    /// read); its name becomes the Content-ID, so it must be a name that
    /// can stand in one and in a `cid:` URL unchanged (64 otherwise): not
    /// `%` (a URL escape), `#` (a fragment) or `?` (a query), RFC 2392.
    pub fn open_inline(path: &Path) -> Result<Attachment> {
        let mut attachment = Attachment::open(path)?;
        let name = &attachment.filename;
        let usable = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!$&'*+-/=^_`{|}~.".contains(&b));
        if !usable {
            return Err(Failure::usage(format!(
                "--inline {}: the file name becomes the Content-ID (cid:NAME), so it may hold only ASCII letters, digits and !$&'*+-/=^_`{{|}}~. (not %, # or ?, which a cid: URL reads as an escape, a fragment or a query)",
                path.display()
            ))
            .with_hint("copy or link the file under a plain name, e.g. logo.png")
            .into());
        }
        attachment.inline = true;
        Ok(attachment)
    }

    #[cfg(test)]
    pub fn named_inline(filename: &str, bytes: Vec<u8>) -> Attachment {
        let mut a = Attachment::named(filename, bytes);
        a.inline = true;
        a
    }

    /// The MIME part: headers, base64 body, CRLF; as lettre would write
    /// it, without the whole file in memory. Always base64: ASCII content
    /// sent as 7bit would have its line endings rewritten on the way;
    /// base64 keeps every attachment byte for byte.
    pub fn write_part(self, out: &mut Spool) -> Result<()> {
        let builder = match self.inline {
            true => SinglePart::builder()
                .header(ContentDisposition::inline_with_name(&self.filename))
                .header(ContentId::from(format!("<{}>", self.filename))),
            false => SinglePart::builder().header(encode::Disposition::attachment(&self.filename)),
        };
        let headers = builder
            .header(self.content_type)
            .body(
                Body::new_with_encoding(Vec::new(), ContentTransferEncoding::Base64)
                    .map_err(|_| Failure::data("cannot encode an attachment"))?,
            )
            .headers()
            .to_string();
        out.put(headers.as_bytes())?;
        out.put(b"\r\n")?;
        let mut encoder = Encoder::default();
        match self.source {
            Source::File(path) => {
                let cannot = |e: io::Error| {
                    Failure::no_input(format!(
                        "cannot read attachment {}: {}",
                        path.display(),
                        e.kind()
                    ))
                };
                let mut file = File::open(&path).map_err(cannot)?;
                let before = Stamp::of(&file).map_err(cannot)?;
                let read = encoder.stream(&mut file, out, cannot)?;
                // A regular file written to while it was read would go
                // out cut or mixed: refused, as the outbox refuses an
                // entry rewritten while it is sent.
                let after = Stamp::of(&file).map_err(cannot)?;
                let cut = after.sized && read != after.len;
                if before.regular && (before != after || cut) {
                    return Err(Failure::no_input(format!(
                        "attachment {} changed while it was read; nothing was sent",
                        path.display()
                    ))
                    .into());
                }
            }
            Source::Stdin(first) => {
                encoder.block(&first, out)?;
                if first.len() == BLOCK {
                    encoder.stream(&mut io::stdin().lock(), out, stdin_error)?;
                }
            }
            #[cfg(test)]
            Source::Bytes(bytes) => {
                for block in bytes.chunks(BLOCK) {
                    encoder.block(block, out)?;
                }
            }
        }
        out.put(b"\r\n")
    }
}

/// What a file was like: a regular file's length and modification time.
#[derive(PartialEq, Eq)]
struct Stamp {
    regular: bool,
    len: u64,
    modified: Option<std::time::SystemTime>,
    /// Its length is that of its content: it has blocks on disk. A file
    /// of /proc or /sys has none and says a length (0, 4096) that is not
    /// what reading it gives.
    sized: bool,
}

impl Stamp {
    fn of(file: &File) -> io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        Ok(Stamp {
            regular: meta.is_file(),
            len: meta.len(),
            modified: meta.modified().ok(),
            sized: meta.blocks() > 0,
        })
    }
}

fn stdin_error(e: io::Error) -> Failure {
    Failure::no_input(format!("cannot read standard input: {e}"))
}

/// Base64 in 76-character lines joined by CRLF, the last line without
/// one (RFC 2045 6.8), written a block at a time.
#[derive(Default)]
struct Encoder {
    text: String,
    started: bool,
}

impl Encoder {
    /// Encodes everything `from` holds, block by block; returns how many
    /// bytes that was.
    fn stream(
        &mut self,
        from: &mut dyn Read,
        out: &mut Spool,
        error: impl Fn(io::Error) -> Failure,
    ) -> Result<u64> {
        let mut buf = vec![0u8; BLOCK];
        let mut total = 0;
        loop {
            let n = read_block(from, &mut buf).map_err(&error)?;
            self.block(&buf[..n], out)?;
            total += n as u64;
            if n < BLOCK {
                return Ok(total);
            }
        }
    }

    /// One block: `BLOCK` bytes, or fewer for the last one.
    fn block(&mut self, bytes: &[u8], out: &mut Spool) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.text.clear();
        if self.started {
            self.text.push_str("\r\n");
        }
        email_encoding::body::base64::encode(bytes, &mut self.text)
            .map_err(|_| Failure::data("cannot encode an attachment"))?;
        self.started = true;
        out.put(self.text.as_bytes())
    }
}

/// Fills `buf` unless the input ends first; returns how much it read.
fn read_block(from: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match from.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part as lettre writes it from the whole file in memory.
    fn lettre_part(name: &str, bytes: &[u8]) -> Vec<u8> {
        SinglePart::builder()
            .header(encode::Disposition::attachment(name))
            .header(ContentType::parse("application/octet-stream").unwrap())
            .body(Body::new_with_encoding(bytes.to_vec(), ContentTransferEncoding::Base64).unwrap())
            .formatted()
    }

    fn streamed_part(name: &str, bytes: &[u8], from_file: bool) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let attachment = match from_file {
            true => {
                let path = dir.path().join(name);
                std::fs::write(&path, bytes).unwrap();
                Attachment::open(&path).unwrap()
            }
            false => Attachment::named(name, bytes.to_vec()),
        };
        let mut spool = Spool::new();
        attachment.write_part(&mut spool).unwrap();
        spool.finish().unwrap().into_bytes()
    }

    #[test]
    fn streamed_parts_are_byte_for_byte_what_lettre_writes() {
        let sizes = [
            0,
            1,
            56,
            57,
            58,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK,
            3 * BLOCK + 5,
            1_500_000,
        ];
        for size in sizes {
            let bytes: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
            let want = lettre_part("data.bin", &bytes);
            for from_file in [false, true] {
                let got = streamed_part("data.bin", &bytes, from_file);
                assert!(
                    got == want,
                    "size {size}, from file {from_file}: {} bytes, want {}",
                    got.len(),
                    want.len()
                );
            }
        }
    }

    /// A file appended to while it is encoded is refused (66), not sent
    /// cut: the writer appends a byte every millisecond until the compose
    /// is over, so the file changes between its open and its end.
    #[test]
    fn a_file_changing_while_it_is_read_is_refused() {
        use std::io::Write;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("growing.log");
        std::fs::write(&path, vec![b'x'; 8 << 20]).unwrap();
        let attachment = Attachment::open(&path).unwrap();
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let writer = {
            let (done, path) = (done.clone(), path.clone());
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
                while !done.load(Ordering::Relaxed) {
                    f.write_all(b"y").unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            })
        };
        let mut spool = Spool::new();
        let result = attachment.write_part(&mut spool);
        done.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        let err = result.unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Exit::NoInput);
        assert!(
            err.to_string().contains("changed while it was read"),
            "{err}"
        );
    }

    #[test]
    fn a_directory_is_not_an_attachment() {
        let dir = tempfile::tempdir().unwrap();
        let err = Attachment::open(dir.path()).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Exit::NoInput);
        assert!(err.to_string().contains("is a directory"), "{err}");
    }
}
