//! The journal: what became of each row, appended and made durable before
//! it counts, so that running the same command again sends only what is
//! left, and a `kill -9` at any instant loses nothing.
//!
//! One JSON object per line (`list.csv.journal`, mode 0600: it holds
//! addresses). The first line says which campaign it belongs to: the
//! list's columns and a fingerprint of the templates. Then one line per
//! row settled for good: `{"row":N,"status":"sent"|"refused","data":H,
//! "message_id":..,"reply":..}`, `H` a fingerprint of the row's values.
//! A row refused for now is not written: the next run tries it again.
//! A last line cut by a crash (no newline) never counted: it is removed
//! when the journal is opened again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::exit::{Exit, Failure};

/// A row's fate, as the journal keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Settled {
    Sent,
    Refused,
}

#[derive(Serialize, Deserialize)]
struct Head {
    journal: u32,
    columns: Vec<String>,
    templates: String,
    /// A random name of this campaign, from which each row's Message-ID
    /// is made: a row sent again (its 250 lost) is the same message.
    /// Empty in a journal written before it was kept.
    #[serde(default)]
    campaign: String,
}

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    row: u64,
    status: Settled,
    data: String,
    #[serde(borrow)]
    message_id: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    reply: std::borrow::Cow<'a, str>,
    /// A fingerprint of the row's recipients: a row whose values changed
    /// is told from another row that moved to its number.
    #[serde(default)]
    to: String,
}

/// What an earlier run settled: row number → fate and the fingerprints
/// of its data and recipients; and the fate of each data fingerprint,
/// wherever its row stood (about 70 bytes a row, not the row).
pub struct Done {
    rows: HashMap<u64, (Settled, u64, Option<u64>)>,
    /// Each data fingerprint's fate, and how many rows settled with it
    /// (two rows of a list may hold the same values).
    by_data: HashMap<u64, (Settled, u32)>,
    /// The templates changed since those rows were settled.
    pub templates_changed: bool,
    /// The campaign's name in the journal head (see `Head`).
    pub campaign: String,
}

impl Done {
    /// The earlier fate of row `number`, and whether its data has changed
    /// since (`data`: its fingerprint now).
    #[cfg(test)]
    pub fn get(&self, number: u64, data: u64) -> Option<(Settled, bool)> {
        self.rows
            .get(&number)
            .map(|(settled, then, _)| (*settled, *then != data))
    }

    /// Whether row `number` (the fingerprint of its values now: `data`;
    /// of its recipients: `to()`, asked only when needed) is settled for
    /// this run, its fate, and whether it changed since:
    /// - its values were settled, at this number or another (rows moved
    ///   when one above was deleted or added): settled, unchanged; as
    ///   many rows with these values as were settled (`seen` counts them
    ///   in list order: one per pass over the list), the next ones not;
    /// - the row at this number was sent to the same recipients with
    ///   other values: settled and changed (never sent twice);
    /// - it was refused, and its values changed (an address corrected):
    ///   not settled, it goes again;
    /// - another recipient at this number (rows moved): a row of its own,
    ///   not settled.
    pub fn settled(
        &self,
        number: u64,
        data: u64,
        to: impl FnOnce() -> Option<u64>,
        seen: &mut Seen,
    ) -> Option<(Settled, bool)> {
        if let Some(&(fate, count)) = self.by_data.get(&data) {
            let earlier = seen.0.entry(data).or_default();
            if *earlier < count {
                *earlier += 1;
                return Some((fate, false));
            }
        }
        match self.rows.get(&number) {
            Some((Settled::Sent, _, Some(then_to))) if to() == Some(*then_to) => {
                Some((Settled::Sent, true))
            }
            // A journal line without recipients (not written by this
            // version): its number decides, as it always did.
            Some((Settled::Sent, _, None)) => Some((Settled::Sent, true)),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }
}

/// The rows with settled values met so far in one pass over the list
/// (see [`Done::settled`]).
#[derive(Default)]
pub struct Seen(HashMap<u64, u32>);

/// The open journal, appended to as rows settle.
pub struct Journal {
    file: File,
    path: PathBuf,
    /// Lines written and lines made durable (group commit: one fsync
    /// covers every line written before it started, whichever session
    /// wrote it).
    state: Mutex<Durability>,
    synced: Condvar,
}

#[derive(Default)]
struct Durability {
    written: u64,
    synced: u64,
    syncing: bool,
    /// A write failed (disk full, file too large): no line is written
    /// any more, but the lines written whole before still get their
    /// fsync (their rows count).
    failed: bool,
    /// An fsync failed: no line written since is known durable.
    sync_failed: bool,
    /// The length of the file's whole lines: a failed write's partial
    /// line is cut back to it.
    len: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path` for a campaign with these
    /// columns and template fingerprint; returns it with what earlier runs
    /// settled. A journal of a list with other columns is refused (65):
    /// it belongs to another campaign.
    pub fn open(path: &Path, columns: &[String], templates: &str) -> Result<(Journal, Done)> {
        let cannot = |e: io::Error| {
            Failure::new(
                Exit::TempFail,
                format!("cannot use the journal {}: {e}", path.display()),
            )
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => Failure::config(format!(
                    "the journal {} is a symbolic link; give the real path with --journal",
                    path.display()
                )),
                // Not a passing failure: the same command would fail
                // alike, so not 75 (run again) but a setting to fix.
                Some(
                    libc::EACCES
                    | libc::EPERM
                    | libc::EISDIR
                    | libc::ENOENT
                    | libc::ENOTDIR
                    | libc::EROFS,
                ) => Failure::config(format!(
                    "cannot use the journal {}: {e}; give a writable file with --journal",
                    path.display()
                )),
                _ => cannot(e),
            })?;
        let meta = file.metadata().map_err(cannot)?;
        if meta.is_file() {
            lock_file(&file, path)?;
        }
        if !meta.is_file() {
            return Err(Failure::config(format!(
                "the journal {} is not a regular file",
                path.display()
            ))
            .into());
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        if meta.uid() != unsafe { libc::geteuid() } || meta.mode() & 0o022 != 0 {
            return Err(Failure::config(format!(
                "the journal {} is not yours alone (another user could write it)",
                path.display()
            ))
            .with_hint(format!("chmod 600 {}", path.display()))
            .into());
        }
        let mut journal = Journal {
            file,
            path: path.to_owned(),
            state: Mutex::new(Durability::default()),
            synced: Condvar::new(),
        };
        let (done, complete) = match meta.len() {
            0 => (None, 0),
            len => journal.read(columns, templates, len)?,
        };
        // A last line cut by a crash goes: the next one starts anew.
        if complete < meta.len() {
            journal.file.set_len(complete).map_err(cannot)?;
        }
        let done = match done {
            Some(done) => done,
            // New, or its head was cut by a crash before anything else.
            None => {
                let mut random = [0u8; 16];
                openssl::rand::rand_bytes(&mut random)?;
                let campaign: String = random.iter().map(|b| format!("{b:02x}")).collect();
                let head = Head {
                    journal: 1,
                    columns: columns.to_vec(),
                    templates: templates.to_owned(),
                    campaign: campaign.clone(),
                };
                journal.append(&serde_json::to_vec(&head)?)?;
                Done {
                    campaign,
                    rows: HashMap::new(),
                    by_data: HashMap::new(),
                    templates_changed: false,
                }
            }
        };
        journal.lock().len = journal.file.metadata().map_err(cannot)?.len();
        Ok((journal, done))
    }

    /// Reads what earlier runs settled (the file is `len` bytes long); also
    /// returns where the last complete line ends. `None`: the head itself
    /// was cut (a crash at the first write): the journal is as new.
    fn read(
        &mut self,
        columns: &[String],
        templates: &str,
        len: u64,
    ) -> Result<(Option<Done>, u64)> {
        let damaged = |line: usize, why: &str| {
            Failure::data(format!(
                "the journal {} is damaged at line {line}: {why}",
                self.path.display()
            ))
            .with_hint("it is not this campaign's, or it was edited; give another with --journal")
        };
        let mut reader = BufReader::new(&self.file);
        reader.seek(SeekFrom::Start(0))?;
        let mut lines = reader.split(b'\n').enumerate().peekable();
        let mut complete = 0u64;
        let head: Head = match lines.next() {
            Some((_, Ok(bytes))) => {
                complete += bytes.len() as u64 + 1;
                if complete > len {
                    return Ok((None, 0));
                }
                serde_json::from_slice(&bytes).map_err(|_| damaged(1, "not a journal head"))?
            }
            _ => return Err(damaged(1, "no head").into()),
        };
        if head.columns != columns {
            return Err(Failure::data(format!(
                "the journal {} belongs to a list with other columns ({}); this list has {}",
                self.path.display(),
                head.columns.join(", "),
                columns.join(", ")
            ))
            .with_hint("give this campaign its own journal with --journal FILE")
            .into());
        }
        let mut rows = HashMap::new();
        let mut by_data = HashMap::new();
        while let Some((index, bytes)) = lines.next() {
            let bytes = bytes?;
            let last = lines.peek().is_none();
            complete += bytes.len() as u64 + 1;
            // A last line with no newline was cut while it was written,
            // even when what is there parses: it never counted, and the
            // next line must not be glued to it.
            if last && complete > len {
                complete -= bytes.len() as u64 + 1;
                break;
            }
            let parsed = serde_json::from_slice::<Line>(&bytes)
                .ok()
                .and_then(|line| {
                    Some((
                        line.row,
                        line.status,
                        u64::from_str_radix(&line.data, 16).ok()?,
                        u64::from_str_radix(&line.to, 16).ok(),
                    ))
                });
            match parsed {
                Some((row, status, data, to)) => {
                    let again = rows
                        .insert(row, (status, data, to))
                        .is_some_and(|(_, before, _)| before == data);
                    let entry = by_data.entry(data).or_insert((status, 0));
                    entry.0 = status;
                    if !again {
                        entry.1 += 1;
                    }
                }
                // Cut by a crash while it was written: never counted.
                None if last => complete -= bytes.len() as u64 + 1,
                None => return Err(damaged(index + 1, "not a row's record").into()),
            }
        }
        if rows.is_empty() && head.templates != templates {
            // No row settled under the templates of its head: the journal
            // is as new, and takes this run's (else the rows this run
            // settles would read as settled under other templates).
            return Ok((None, 0));
        }
        let done = Done {
            campaign: head.campaign,
            templates_changed: head.templates != templates && !rows.is_empty(),
            rows,
            by_data,
        };
        Ok((Some(done), complete))
    }

    /// Records row `row`'s fate durably (written and fsynced) before it
    /// returns: only then may the row count as done. Sessions record at
    /// the same time; one fsync makes all their lines durable.
    pub fn record(
        &self,
        row: u64,
        status: Settled,
        (data, to): (u64, u64),
        message_id: &str,
        reply: &str,
    ) -> Result<()> {
        let line = Line {
            row,
            status,
            data: format!("{data:016x}"),
            message_id: message_id.into(),
            reply: reply.into(),
            to: format!("{to:016x}"),
        };
        let mut text = serde_json::to_vec(&line)?;
        text.push(b'\n');
        let mine = {
            let mut state = self.lock();
            if state.failed {
                return Err(self.failed(io::ErrorKind::Other.into()));
            }
            if let Err(e) = (&self.file).write_all(&text) {
                state.failed = true;
                // The partial line goes (it would be in the middle of the
                // journal if a later line were written).
                let _ = self.file.set_len(state.len);
                return Err(self.failed(e));
            }
            state.len += text.len() as u64;
            state.written += 1;
            state.written
        };
        self.sync_to(mine)
    }

    /// Waits until line `mine` is durable, running the fsync when no
    /// other session is.
    fn sync_to(&self, mine: u64) -> Result<()> {
        let mut state = self.lock();
        loop {
            if state.synced >= mine {
                return Ok(());
            }
            if state.sync_failed {
                return Err(self.failed(io::ErrorKind::Other.into()));
            }
            if !state.syncing {
                break;
            }
            state = self
                .synced
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.syncing = true;
        let target = state.written;
        drop(state);
        let result = self.file.sync_data();
        let mut state = self.lock();
        state.syncing = false;
        match &result {
            Ok(()) => state.synced = state.synced.max(target),
            Err(_) => {
                state.failed = true;
                state.sync_failed = true;
            }
        }
        drop(state);
        self.synced.notify_all();
        result.map_err(|e| self.failed(e))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Durability> {
        super::lock(&self.state)
    }

    fn failed(&self, e: io::Error) -> anyhow::Error {
        Failure::new(
            Exit::TempFail,
            format!("cannot write the journal {}: {e}", self.path.display()),
        )
        .into()
    }

    /// One line, written and made durable (the head, before any session).
    fn append(&mut self, json: &[u8]) -> Result<()> {
        let mut line = Vec::with_capacity(json.len() + 1);
        line.extend_from_slice(json);
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.failed(e))
    }
}

/// Takes the journal for this run alone (an advisory `flock`, let go when
/// the process ends, even by `kill -9`): two runs of one campaign at once
/// would each send every row. The second is refused (75: run it again
/// once the first is over).
fn lock_file(file: &File, path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this `File` owns; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    let message = match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => format!(
            "the journal {} is in use by another run of this campaign",
            path.display()
        ),
        _ => format!("cannot lock the journal {}: {e}", path.display()),
    };
    Err(Failure::new(Exit::TempFail, message)
        .with_hint("wait for the other run to end; shards run at once need one --journal each")
        .into())
}

/// A stable fingerprint (the first 64 bits of SHA-256) of some strings,
/// each length-prefixed so that no two lists of values share one.
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut hasher = openssl::sha::Sha256::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<String> {
        vec!["email".into(), "name".into()]
    }

    #[test]
    fn settled_rows_survive_a_reopen_and_a_cut_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.csv.journal");
        let (j, done) = Journal::open(&path, &columns(), "t1").unwrap();
        assert_eq!(done.len(), 0);
        j.record(1, Settled::Sent, (0xaa, 0), "<1@x>", "250 ok")
            .unwrap();
        j.record(3, Settled::Refused, (0xcc, 0), "<3@x>", "550 no")
            .unwrap();
        drop(j);
        // A crash in the middle of the next line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"row\":4,\"sta").unwrap();
        drop(f);

        let (j, done) = Journal::open(&path, &columns(), "t1").unwrap();
        assert_eq!(done.get(1, 0xaa), Some((Settled::Sent, false)));
        assert_eq!(done.get(1, 0x1), Some((Settled::Sent, true)));
        assert_eq!(done.get(3, 0xcc), Some((Settled::Refused, false)));
        assert_eq!(done.get(2, 0xbb), None);
        assert_eq!(done.get(4, 0xdd), None, "the cut line never counted");
        assert!(!done.templates_changed);
        j.record(4, Settled::Sent, (0xdd, 0), "<4@x>", "250 ok")
            .unwrap();
        drop(j);

        let (_, done) = Journal::open(&path, &columns(), "t2").unwrap();
        assert_eq!(done.get(4, 0xdd), Some((Settled::Sent, false)));
        assert!(done.templates_changed);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "the cut line is gone: {text}");
        assert!(text.ends_with("\n"));
    }

    #[test]
    fn a_journal_of_other_columns_or_damaged_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (j, _) = Journal::open(&path, &columns(), "t").unwrap();
        j.record(1, Settled::Sent, (0xaa, 0), "<1@x>", "250")
            .unwrap();
        drop(j);
        let other = vec!["mail".to_owned()];
        let err = Journal::open(&path, &other, "t").err().unwrap();
        assert_eq!(crate::exit::code_for(&err), Exit::DataErr);
        assert!(err.to_string().contains("other columns"), "{err}");

        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(
            b"garbage\n{\"row\":2,\"status\":\"sent\",\"data\":\"x\",\"message_id\":\"m\"}\n",
        )
        .unwrap();
        drop(f);
        let err = Journal::open(&path, &columns(), "t").err().unwrap();
        assert!(err.to_string().contains("damaged at line 3"), "{err}");
    }

    #[test]
    fn a_journal_others_can_write_or_a_symlink_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        drop(Journal::open(&path, &columns(), "t").unwrap());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = Journal::open(&path, &columns(), "t").err().unwrap();
        assert_eq!(crate::exit::code_for(&err), Exit::Config);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let err = Journal::open(&link, &columns(), "t").err().unwrap();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn sessions_recording_at_once_lose_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (j, _) = Journal::open(&path, &columns(), "t").unwrap();
        std::thread::scope(|scope| {
            for t in 0..8u64 {
                let j = &j;
                scope.spawn(move || {
                    for i in 0..50u64 {
                        let row = t * 50 + i + 1;
                        j.record(row, Settled::Sent, (row, 0), "<m@x>", "250 ok")
                            .unwrap();
                    }
                });
            }
        });
        let state = j.lock();
        assert_eq!((state.written, state.synced), (400, 400));
        drop(state);
        drop(j);
        let (_, done) = Journal::open(&path, &columns(), "t").unwrap();
        assert_eq!(done.len(), 400);
        assert!((1..=400).all(|row| done.get(row, row) == Some((Settled::Sent, false))));
    }

    #[test]
    fn a_last_line_cut_just_before_its_newline_never_counts_nor_glues_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (j, _) = Journal::open(&path, &columns(), "t").unwrap();
        j.record(1, Settled::Sent, (0xaa, 0), "<1@x>", "250")
            .unwrap();
        drop(j);
        // A write cut one byte short: the JSON is whole, the newline missing.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"row\":2,\"status\":\"sent\",\"data\":\"bb\",\"message_id\":\"m\"}")
            .unwrap();
        drop(f);
        let (j, done) = Journal::open(&path, &columns(), "t").unwrap();
        assert_eq!(done.get(2, 0xbb), None, "not durable: never counted");
        j.record(3, Settled::Sent, (0xcc, 0), "<3@x>", "250")
            .unwrap();
        drop(j);
        let (_, done) = Journal::open(&path, &columns(), "t").unwrap();
        assert_eq!(done.get(3, 0xcc), Some((Settled::Sent, false)));
        assert_eq!(done.get(1, 0xaa), Some((Settled::Sent, false)));

        // A crash in the very first write: the head cut, the journal as new.
        for cut in [
            &b"{\"journal\":1,\"colu"[..],
            b"{\"journal\":1,\"columns\":[\"email\",\"name\"],\"templates\":\"t\"}",
        ] {
            std::fs::write(&path, cut).unwrap();
            let (j, done) = Journal::open(&path, &columns(), "t").unwrap();
            assert_eq!(done.len(), 0);
            j.record(1, Settled::Sent, (0xaa, 0), "<1@x>", "250")
                .unwrap();
            drop(j);
            let (_, done) = Journal::open(&path, &columns(), "t").unwrap();
            assert_eq!(done.get(1, 0xaa), Some((Settled::Sent, false)));
        }
    }

    #[test]
    fn a_journal_in_use_by_another_run_is_refused_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (first, _) = Journal::open(&path, &columns(), "t").unwrap();
        let err = Journal::open(&path, &columns(), "t").err().unwrap();
        assert_eq!(crate::exit::code_for(&err), Exit::TempFail);
        assert!(err.to_string().contains("in use"), "{err}");
        drop(first);
        assert!(Journal::open(&path, &columns(), "t").is_ok());
    }

    #[test]
    fn fingerprints_are_stable_and_unambiguous() {
        const PINNED: u64 = 0xcf6ab613e3942391;
        // Journals on disk hold these: the value is pinned, not only
        // compared with itself (a new hash would make every row of a
        // resumed campaign look new).
        assert_eq!(fingerprint(["a", "b"]), PINNED);
        assert_ne!(fingerprint(["ab", ""]), fingerprint(["a", "b"]));
        assert_ne!(fingerprint([]), fingerprint([""]));
    }

    #[test]
    fn a_journal_with_no_row_settled_takes_the_templates_of_the_run_that_settles_one() {
        // Run 1 (server down) settled nothing under templates t1; run 2
        // sends a row under t2; run 3 (t2 still) must not say that the
        // templates changed.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.csv.journal");
        drop(Journal::open(&path, &columns(), "t1").unwrap());
        let (j, done) = Journal::open(&path, &columns(), "t2").unwrap();
        assert!(!done.templates_changed);
        j.record(1, Settled::Sent, (0xaa, 0), "<1@x>", "250 ok")
            .unwrap();
        drop(j);
        let (_, done) = Journal::open(&path, &columns(), "t2").unwrap();
        assert!(!done.templates_changed, "no row was settled under t1");
        assert_eq!(done.get(1, 0xaa), Some((Settled::Sent, false)));
        let (_, done) = Journal::open(&path, &columns(), "t3").unwrap();
        assert!(done.templates_changed, "row 1 was settled under t2");
    }
}
