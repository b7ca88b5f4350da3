//! The list: a CSV file (RFC 4180, a header row, UTF-8, a BOM is fine)
//! read one row at a time with the `csv` crate, so memory does not grow
//! with its length; and `--shard K/N`, which rows this run takes.
//!
//! Rows are numbered from 1 (the first data row); errors name the CSV
//! line where a row starts (the header is line 1), which differs from
//! the row number when a quoted field holds line breaks.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use crate::exit::Failure;

/// The header row: column names, and where each is.
#[derive(Debug)]
pub struct Columns {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Columns {
    fn new(names: Vec<String>) -> Result<Columns, String> {
        let mut index = HashMap::new();
        // A column with no name is no variable (a trailing comma in the
        // header row): several of them are no conflict.
        for (i, name) in names.iter().enumerate().filter(|(_, n)| !n.is_empty()) {
            if index.insert(name.clone(), i).is_some() {
                return Err(format!("column '{}' appears twice", name.escape_debug()));
            }
        }
        Ok(Columns { names, index })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The names as an error message lists them: `email, name`.
    pub fn listed(&self) -> String {
        self.names.join(", ")
    }

    #[cfg(test)]
    pub fn of(names: &[&str]) -> Arc<Columns> {
        Arc::new(Columns::new(names.iter().map(|s| s.to_string()).collect()).expect("unique"))
    }
}

/// One data row: its values by column name.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1 for the first data row.
    pub number: u64,
    /// The CSV line where the row starts (the header is line 1).
    pub line: u64,
    columns: Arc<Columns>,
    record: csv::StringRecord,
}

impl Row {
    /// The value of column `name`, or `None` when there is no such column.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.columns
            .index
            .get(name)
            .and_then(|&i| self.record.get(i))
    }

    pub fn columns(&self) -> &Arc<Columns> {
        &self.columns
    }

    /// The values in column order (e.g. for a journal's fingerprint).
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.record.iter()
    }

    /// A row of `columns` with every value `value` (the shape a template
    /// gives any row).
    pub fn neutral(columns: &Arc<Columns>, value: &str) -> Row {
        Row {
            number: 0,
            line: 0,
            columns: Arc::clone(columns),
            record: columns.names().iter().map(|_| value).collect(),
        }
    }

    #[cfg(test)]
    pub fn of(columns: &Arc<Columns>, number: u64, values: &[&str]) -> Row {
        Row {
            number,
            line: number + 1,
            columns: Arc::clone(columns),
            record: csv::StringRecord::from(values.to_vec()),
        }
    }
}

/// A row that cannot be read: malformed or not UTF-8, or the file could
/// not be read any further (`fatal`: no row follows).
#[derive(Debug)]
pub struct BadRow {
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "delivery reports rows by number")
    )]
    pub number: u64,
    pub line: u64,
    pub message: String,
    pub fatal: bool,
}

/// An open list, its header row read.
pub struct List {
    path: PathBuf,
    reader: csv::Reader<File>,
    /// The same file, read by offset to find where a row starts.
    lines: File,
    columns: Arc<Columns>,
}

impl List {
    /// Opens the list and reads its header row. A missing or unreadable
    /// file is 66; no header, a duplicate column name or a header that is
    /// not UTF-8 is 65.
    pub fn open(path: &Path) -> Result<List> {
        let cannot =
            |why: String| Failure::no_input(format!("cannot read list {}: {why}", path.display()));
        let file = File::open(path).map_err(|e| cannot(e.kind().to_string()))?;
        let meta = file.metadata().map_err(|e| cannot(e.kind().to_string()))?;
        if meta.is_dir() {
            return Err(cannot("is a directory".into()).into());
        }
        // The list is read twice (checked, then sent), and its lines are
        // found again by offset: a pipe can do neither.
        if !meta.is_file() {
            return Err(Failure::no_input(format!(
                "the list {} is not a regular file (a campaign reads it twice: checked, then sent)",
                path.display()
            ))
            .with_hint("save it to a file first")
            .into());
        }
        let lines = file.try_clone().map_err(|e| cannot(e.kind().to_string()))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(file);
        let header = |why: String| Failure::data(format!("{}: line 1: {why}", path.display()));
        let names = match reader.headers() {
            Ok(record) => record.iter().map(str::to_owned).collect::<Vec<_>>(),
            Err(e) => {
                return Err(match e.kind() {
                    csv::ErrorKind::Io(io) => cannot(io.kind().to_string()),
                    csv::ErrorKind::Utf8 { .. } => header("the header row is not UTF-8".into()),
                    _ => header(e.to_string()),
                }
                .into());
            }
        };
        if names.is_empty() || names.iter().all(String::is_empty) {
            return Err(Failure::data(format!(
                "{} has no header row: the first line must name the columns, e.g. email,name",
                path.display()
            ))
            .into());
        }
        let columns = Columns::new(names).map_err(header)?;
        Ok(List {
            path: path.to_owned(),
            reader,
            lines,
            columns: Arc::new(columns),
        })
    }

    pub fn columns(&self) -> &Arc<Columns> {
        &self.columns
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data rows, one at a time.
    pub fn rows(self) -> Rows {
        Rows {
            reader: self.reader,
            lines: self.lines,
            columns: self.columns,
            number: 0,
            done: false,
        }
    }
}

/// The data rows of a list, read as they are asked for.
pub struct Rows {
    reader: csv::Reader<File>,
    lines: File,
    columns: Arc<Columns>,
    number: u64,
    done: bool,
}

impl Iterator for Rows {
    type Item = Result<Row, BadRow>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut record = csv::StringRecord::new();
        match self.reader.read_record(&mut record) {
            Ok(false) => {
                self.done = true;
                None
            }
            Ok(true) => {
                self.number += 1;
                let line = self.line(record.position());
                Some(Ok(Row {
                    number: self.number,
                    line,
                    columns: Arc::clone(&self.columns),
                    record,
                }))
            }
            Err(e) => {
                self.number += 1;
                let line = self.line(e.position());
                let (message, fatal) = self.describe(&e);
                self.done = fatal;
                Some(Err(BadRow {
                    number: self.number,
                    line,
                    message,
                    fatal,
                }))
            }
        }
    }
}

impl Rows {
    /// The line a row starts on. The reader's position is where it
    /// started reading the row: before the blank lines it skipped, and
    /// before the LF of a CRLF that ended the row before. So count the
    /// line breaks from there to the row's first byte.
    fn line(&self, position: Option<&csv::Position>) -> u64 {
        let Some(position) = position else { return 0 };
        let (mut line, mut at) = (position.line(), position.byte());
        let mut buf = [0u8; 256];
        loop {
            let n = match self.lines.read_at(&mut buf, at) {
                Ok(0) | Err(_) => return line,
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                match b {
                    b'\n' => line += 1,
                    b'\r' => {}
                    _ => return line,
                }
            }
            at += n as u64;
        }
    }

    fn describe(&self, e: &csv::Error) -> (String, bool) {
        match e.kind() {
            csv::ErrorKind::Io(io) => (format!("cannot read the list any further: {io}"), true),
            csv::ErrorKind::Utf8 { err, .. } => {
                let field = err.field();
                let column = self
                    .columns
                    .names
                    .get(field)
                    .map(|n| format!(" (column {n})"))
                    .unwrap_or_default();
                (
                    format!(
                        "field {}{column} is not UTF-8 text (save the list as UTF-8)",
                        field + 1
                    ),
                    false,
                )
            }
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => (
                format!(
                    "{len} field{}, but the header has {expected_len} columns",
                    if *len == 1 { "" } else { "s" }
                ),
                false,
            ),
            _ => (e.to_string(), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.csv");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    #[test]
    fn bom_quotes_commas_and_line_breaks() {
        let (_dir, path) = list(
            "\u{feff}email,name,note\r\na@example.com,\"Müller, Zoë\",\"two\nlines\"\r\nb@example.com,,\"say \"\"hi\"\"\"\n"
                .as_bytes(),
        );
        let list = List::open(&path).unwrap();
        assert_eq!(list.columns().names(), ["email", "name", "note"]);
        let rows: Vec<Row> = list.rows().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].number, rows[0].line), (1, 2));
        assert_eq!(rows[0].get("name"), Some("Müller, Zoë"));
        assert_eq!(rows[0].get("note"), Some("two\nlines"));
        // The first row spans lines 2 and 3.
        assert_eq!((rows[1].number, rows[1].line), (2, 4));
        assert_eq!(rows[1].get("name"), Some(""));
        assert_eq!(rows[1].get("note"), Some("say \"hi\""));
        assert_eq!(rows[1].get("nope"), None);
    }

    #[test]
    fn line_numbers_with_crlf_blank_lines_and_line_breaks_in_fields() {
        for eol in ["\n", "\r\n"] {
            let text = [
                "h1,h2", "a,1", "", "b,\"x", "y\"", "", "", "c,3", "d", "e,5", "",
            ]
            .join(eol);
            let (_dir, path) = list(text.as_bytes());
            let got: Vec<(u64, u64)> = List::open(&path)
                .unwrap()
                .rows()
                .map(|r| match r {
                    Ok(row) => (row.number, row.line),
                    Err(bad) => (bad.number, bad.line),
                })
                .collect();
            assert_eq!(got, [(1, 2), (2, 4), (3, 8), (4, 9), (5, 10)], "{eol:?}");
        }
    }

    #[test]
    fn a_pipe_is_refused() {
        let err = List::open(Path::new("/dev/null")).err().unwrap();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Exit::NoInput);
    }

    #[test]
    fn bad_rows_are_reported_and_reading_goes_on() {
        let (_dir, path) =
            list(b"email,name\na@example.com\nb@example.com,\xff\xfe\nc@example.com,C\n");
        let rows: Vec<_> = List::open(&path).unwrap().rows().collect();
        assert_eq!(rows.len(), 3);
        let short = rows[0].as_ref().unwrap_err();
        assert_eq!((short.number, short.line), (1, 2));
        assert!(
            short.message.contains("1 field, but the header has 2"),
            "{}",
            short.message
        );
        let utf8 = rows[1].as_ref().unwrap_err();
        assert_eq!(utf8.line, 3);
        assert!(
            utf8.message.contains("field 2 (column name) is not UTF-8"),
            "{}",
            utf8.message
        );
        let ok = rows[2].as_ref().unwrap();
        assert_eq!((ok.number, ok.line, ok.get("name")), (3, 4, Some("C")));
    }

    #[test]
    fn header_problems() {
        let (_dir, path) = list(b"");
        let err = List::open(&path).err().unwrap();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Exit::DataErr);
        let (_dir, path) = list(b"email,name,email\n");
        let err = List::open(&path).err().unwrap();
        assert!(
            err.to_string()
                .contains("line 1: column 'email' appears twice"),
            "{err}"
        );
        let (_dir, path) = list(b"email,,\na@example.com,1,2\n");
        let list = List::open(&path).unwrap();
        assert_eq!(list.columns().names(), ["email", "", ""]);
        let err = List::open(Path::new("/nonexistent/list.csv"))
            .err()
            .unwrap();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Exit::NoInput);
    }
}
