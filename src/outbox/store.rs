//! The outbox: messages kept for a later retry, safe across crashes.
//!
//! Layout under the outbox directory (mode 700):
//! `ID/message.eml` + `ID/meta.json` for each queued message, `failed/ID/`
//! for messages that failed for good, `.tmp/` for entries being built or
//! removed, and `.lock` for `flush`. An entry is built complete in `.tmp/`
//! (files fsynced) and renamed into place, and the directory is fsynced;
//! removal is a rename out of the way before deleting. A crash at any
//! instant therefore leaves either no entry or a complete one. Each
//! attempt is recorded (`in_flight`) before the message is sent, and a
//! message whose attempt cannot be recorded is not sent; the one window
//! for a duplicate is a crash (or a disk fault) between the server's 250
//! and recording the outcome, which the next flush finds `in_flight` and
//! sends once more, saying so.
//!
//! Whatever is in the outbox gets mailed with the user's login, so nothing
//! in it is trusted blindly: the directory, `.lock`, `.tmp/`, `failed/` and
//! each entry must belong to the user (or root) and be writable by nobody
//! else (the rule settings files follow, `accounts::refuse_if_foreign`);
//! entry files are opened without following symlinks and must be regular
//! files; the addresses in `meta.json` must be valid envelope addresses.
//! A state rewrite never drops a recipient still owed the message.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::accounts;
use crate::config::Settings;
use crate::exit::{Exit, Failure};
use crate::message::Composed;
use crate::smtp::Rejection;
use crate::term::errln;

const MESSAGE: &str = "message.eml";
const META: &str = "meta.json";

/// The state of one queued message, kept in `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    /// Unix seconds when it was queued.
    pub created: u64,
    pub account: Option<String>,
    pub message_id: String,
    /// The envelope sender.
    pub from: String,
    /// Recipients still to deliver to.
    pub recipients: Vec<String>,
    /// Recipients that already have it.
    #[serde(default)]
    pub delivered: Vec<String>,
    /// Recipients refused for good.
    #[serde(default)]
    pub refused: Vec<Rejection>,
    pub attempts: u32,
    /// Unix seconds of the next attempt `flush` makes.
    pub next_attempt: u64,
    pub last_error: Option<String>,
    /// Why it was moved to `failed/`.
    #[serde(default)]
    pub failed: Option<String>,
    /// Sent with `--all-or-nothing`: to every recipient at once or to none.
    #[serde(default)]
    pub all_or_nothing: bool,
    /// Written (with the attempt counted and the next one scheduled) just
    /// before the message is sent, and cleared when the outcome is
    /// recorded. Found set by a flush: the outcome of that send was never
    /// recorded (a crash, or the disk failed after the server's reply), so
    /// the recipients may already have it.
    #[serde(default)]
    pub in_flight: bool,
    /// Written when the message was delivered but the entry could not be
    /// removed: nobody is owed it any more, the next flush only removes it.
    #[serde(default)]
    pub done: bool,
}

impl Entry {
    /// The addresses must be plain envelope addresses: `meta.json` is a
    /// file on disk, and what it says goes into MAIL FROM and RCPT TO.
    pub fn check(&self) -> std::result::Result<(), String> {
        check_address("sender", &self.from)?;
        // Nobody left to send to is a state only an outcome leads to.
        if self.recipients.is_empty()
            && self.delivered.is_empty()
            && self.refused.is_empty()
            && !self.done
        {
            return Err("no recipient, and no record that anyone got it or refused it".into());
        }
        for r in &self.recipients {
            check_address("recipient", r)?;
        }
        for r in self
            .delivered
            .iter()
            .chain(self.refused.iter().map(|r| &r.address))
        {
            check_address("recipient", r)?;
        }
        Ok(())
    }

    /// A recipient of `self` (the state on disk) that `next` would drop:
    /// neither still owed, nor delivered, nor refused for good.
    fn dropped_by<'a>(&'a self, next: &Entry) -> Option<&'a str> {
        self.recipients
            .iter()
            .find(|r| {
                !next.recipients.contains(r)
                    && !next.delivered.contains(r)
                    && !next.refused.iter().any(|x| &x.address == *r)
            })
            .map(String::as_str)
    }
}

/// One envelope address, with no control character (CR, LF, NUL...):
/// either exactly what the address parser of composition gives back for
/// it (so a quoted local part such as `"a<b"@example.com` is kept, as it
/// was sent), or, as before, a plain `local@domain` lettre accepts with no
/// angle bracket (entries queued by older versions, address literals).
fn check_address(what: &str, address: &str) -> std::result::Result<(), String> {
    // An older version may have queued a UTF-8 domain, which the parser
    // now turns into its A-label; anything else must come back unchanged
    // (no comment, no second address, nothing around it).
    let older_idn = !address.is_ascii() && !address.contains([' ', '(', ')', ',', '<', '>']);
    let bare = |m: &lettre::message::Mailbox| {
        m.name.is_none() && (m.email.to_string() == address || older_idn)
    };
    let parsed = || crate::message::parse_mailbox(what, address).is_ok_and(|m| bare(&m));
    let plain = || !address.contains(['<', '>']) && address.parse::<lettre::Address>().is_ok();
    if !address.is_empty() && !address.chars().any(char::is_control) && (parsed() || plain()) {
        Ok(())
    } else {
        Err(format!("invalid {what} '{}'", address.escape_debug()))
    }
}

const DIR_HINT: &str = "an outbox and everything in it must be yours (or root's) and writable by nobody else: chmod 700 it, or use an outbox of your own";

/// Refuses a directory of the outbox that is not a real directory (a
/// symlink in its place is refused, unless `follow`: the outbox itself may
/// be a symlink the user made) or that someone else controls.
fn check_dir(path: &Path, follow: bool) -> Result<()> {
    let meta = match follow {
        true => fs::metadata(path),
        false => fs::symlink_metadata(path),
    }
    .with_context(|| format!("reading outbox {}", path.display()))?;
    let not = |why: &str| -> anyhow::Error {
        Failure::config(format!("not using outbox {}: {why}", path.display()))
            .with_hint(DIR_HINT)
            .into()
    };
    if meta.file_type().is_symlink() {
        return Err(not("it is a symbolic link"));
    }
    if !meta.is_dir() {
        return Err(not("it is not a directory"));
    }
    accounts::refuse_if_foreign(path, &meta, "not using outbox", DIR_HINT)
}

/// Refuses an outbox that someone else could swap for another directory:
/// every directory above it (along the path as given, and along the real
/// path when that goes through symlinks) must belong to the user or root
/// and be writable by nobody else, unless it has the sticky bit (`/tmp`),
/// as ssh's StrictModes asks of `~/.ssh`. Paths are opened again by name
/// at each use, so this is what keeps them meaning the same directory.
fn check_ancestors(root: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut paths = Vec::new();
    if root.is_absolute() {
        paths.push(root.to_path_buf());
    }
    if let Ok(real) = fs::canonicalize(root) {
        paths.push(real);
    }
    for path in &paths {
        for dir in path.ancestors().skip(1) {
            if dir.as_os_str().is_empty() {
                continue;
            }
            let meta = fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
            let owner_ok = meta.uid() == me || meta.uid() == 0;
            let mode = meta.mode();
            let writable_ok = mode & 0o022 == 0 || mode & 0o1000 != 0;
            if !(owner_ok && writable_ok) {
                return Err(Failure::config(format!(
                    "not using outbox {}: {} above it belongs to another user or others can write it (without the sticky bit), so it could be swapped",
                    root.display(),
                    dir.display()
                ))
                .with_hint(
                    "keep the outbox under directories only you (or root) can write, e.g. the default under your home",
                )
                .into());
            }
        }
    }
    Ok(())
}

/// Opens a file of the outbox without following a symlink (nor blocking on
/// a FIFO) and checks the open file: a regular file of the user's (or
/// root's) that nobody else can write.
fn open_checked(path: &Path, options: &mut fs::OpenOptions) -> Result<File> {
    let not = |why: &str| -> anyhow::Error {
        Failure::config(format!("not reading {}: {why}", path.display()))
            .with_hint(DIR_HINT)
            .into()
    };
    let file = match options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(not("it is a symbolic link"));
        }
        // A FIFO with no reader (ENXIO), a directory (EISDIR), a socket...:
        // refused like any file that is not what it should be.
        Err(e) if fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) => {
            let _ = e;
            return Err(not("it is not a regular file"));
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        return Err(not("it is not a regular file"));
    }
    accounts::refuse_if_foreign(path, &meta, "not reading", DIR_HINT)?;
    Ok(file)
}

/// The bytes of an entry file, read as `open_checked` says.
fn read_checked(path: &Path) -> Result<Vec<u8>> {
    let mut file = open_checked(path, fs::OpenOptions::new().read(true))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes)
}

/// Prints an error that does not end the command: its line, then its hint
/// line if it has one (as `main` does for the one that ends it).
pub fn report(prefix: &str, err: &anyhow::Error) {
    errln!("mailsend: error: {prefix}{err:#}");
    if let Some(hint) = crate::exit::hint_for(err) {
        errln!("mailsend: hint: {hint}");
    }
}

/// Whether `err` says a file is gone (e.g. moved away by a concurrent flush).
fn is_not_found(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    })
}

/// An entry that cannot be used: its state is damaged or unreadable.
pub struct Damaged {
    pub id: String,
    pub why: String,
}

/// The entries of a directory of the outbox.
pub struct Listing {
    /// The usable ones, oldest first.
    pub entries: Vec<Entry>,
    /// Those left in place because their state is damaged or unreadable
    /// (reported on stderr).
    pub damaged: Vec<Damaged>,
    /// What the problems found call for: 78 for an entry refused as
    /// untrusted, 65 for a damaged one, 75 for one that could not be read.
    pub code: Exit,
}

/// An open outbox directory.
pub struct Outbox {
    root: PathBuf,
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Outbox {
    /// Opens (creating if needed) the outbox the settings name.
    pub fn open(settings: &Settings) -> Result<Outbox> {
        let root = settings.outbox.clone().ok_or_else(|| {
            Failure::config("no outbox directory: HOME and XDG_STATE_HOME are unset").with_hint(
                "set `outbox = \"/var/spool/mailsend\"` in the config file account, or MAILSEND_OUTBOX",
            )
        })?;
        Self::at(root)
    }

    /// An outbox that exists already, opened without creating anything.
    pub fn existing(root: PathBuf) -> Result<Outbox> {
        check_dir(&root, true)?;
        check_ancestors(&root)?;
        for dir in [root.join(".tmp"), root.join("failed")] {
            if fs::symlink_metadata(&dir).is_ok() {
                check_dir(&dir, false)?;
            }
        }
        Ok(Outbox { root })
    }

    /// Opens (creating if needed) the outbox in `root`.
    pub fn at(root: PathBuf) -> Result<Outbox> {
        for dir in [root.clone(), root.join(".tmp"), root.join("failed")] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| {
                    Failure::config(format!("cannot create outbox {}: {e}", dir.display()))
                })?;
        }
        Self::existing(root)
    }

    /// Queues a message; returns its id.
    pub fn add(&self, mut entry: Entry, message: &Composed) -> Result<String> {
        entry.check().map_err(Failure::data)?;
        if entry.recipients.is_empty() {
            return Err(Failure::data("nothing to queue: no recipient").into());
        }
        let id = format!(
            "{:x}-{:08x}",
            entry
                .created
                .max(1)
                .saturating_mul(1000)
                .saturating_add(u64::from(fastrand::u16(..))),
            fastrand::u32(..)
        );
        entry.id = id.clone();
        let tmp = self.root.join(".tmp").join(&id);
        fs::DirBuilder::new().mode(0o700).create(&tmp)?;
        let built = (|| {
            write_synced(&tmp.join(MESSAGE), |f| message.write_to(f))?;
            let meta = serde_json::to_vec_pretty(&entry)?;
            write_synced(&tmp.join(META), |f| f.write_all(&meta))?;
            sync_dir(&tmp)?;
            fs::rename(&tmp, self.root.join(&id))?;
            Ok::<(), anyhow::Error>(())
        })();
        if let Err(e) = built {
            // A partial copy of a large message would hold the disk until
            // a flush swept `.tmp/` (see `clean_leftovers`).
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        sync_dir(&self.root)?;
        Ok(id)
    }

    /// Queued entries, oldest first, with those that cannot be used and
    /// the exit code the problems call for (see `Listing`).
    pub fn entries(&self) -> Result<Listing> {
        Self::read_entries(&self.root)
    }

    /// Entries in `failed/`, oldest first, as `entries`.
    pub fn failed(&self) -> Result<Listing> {
        Self::read_entries(&self.root.join("failed"))
    }

    /// Entries under `dir`, oldest first. One that cannot be read (its
    /// meta.json damaged by hand or by a disk fault, or an address in it
    /// invalid) is reported and left in place, so that it never stops the
    /// others; one that is a symlink or someone else's is reported as an
    /// error (`Exit::Config`) and never read. A damaged entry makes the
    /// code 65 (its data is bad, no retry mends it: a human must look),
    /// one that could not be read 75 (an I/O fault may pass).
    fn read_entries(dir: &Path) -> Result<Listing> {
        let mut entries = Vec::new();
        let mut damaged = Vec::new();
        let mut code = Exit::Ok;
        let items = match fs::read_dir(dir) {
            Ok(items) => items,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Listing {
                    entries,
                    damaged,
                    code,
                });
            }
            Err(e) => return Err(e).with_context(|| format!("reading outbox {}", dir.display())),
        };
        for item in items {
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            let path = item.path();
            let kind = item.file_type()?;
            if name.starts_with('.') || name == "failed" || !(kind.is_dir() || kind.is_symlink()) {
                continue;
            }
            if !is_id(&name) {
                errln!(
                    "mailsend: warning: {} is not an outbox entry; left alone",
                    path.display()
                );
                continue;
            }
            let parsed = match check_dir(&path, false).and_then(|()| read_checked(&path.join(META)))
            {
                Ok(bytes) => serde_json::from_slice::<Entry>(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|entry| entry.check().map(|()| entry))
                    .map_err(|why| (Exit::DataErr, format!("is damaged ({why})"))),
                // Moved away by a concurrent flush between read_dir and here.
                Err(e) if is_not_found(&e) => continue,
                Err(e) if crate::exit::code_for(&e) == Exit::Config => {
                    report(&format!("outbox entry {name} left alone: "), &e);
                    code = merge(code, Exit::Config);
                    continue;
                }
                Err(e) => Err((Exit::TempFail, format!("cannot be read ({e:#})"))),
            };
            match parsed {
                Ok(mut entry) => {
                    // The directory name is the id, whatever meta.json says.
                    entry.id = name;
                    entries.push(entry);
                }
                Err((why_code, why)) => {
                    errln!(
                        "mailsend: error: outbox entry {} {why}; left in place",
                        path.display()
                    );
                    code = merge(code, why_code);
                    damaged.push(Damaged { id: name, why });
                }
            }
        }
        entries.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        damaged.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Listing {
            entries,
            damaged,
            code,
        })
    }

    /// The directory of entry `id`, queued or failed; a malformed or
    /// unknown id is `NOINPUT` (66), an entry that is a symlink or someone
    /// else's is `CONFIG` (78).
    pub fn locate(&self, id: &str) -> Result<PathBuf> {
        let candidates = [self.root.join(id), self.root.join("failed").join(id)];
        let found = candidates.into_iter().find(|p| {
            is_id(id)
                && fs::symlink_metadata(p).is_ok()
                && fs::symlink_metadata(p.join(META)).is_ok()
        });
        match found {
            Some(dir) => {
                check_dir(&dir, false)?;
                Ok(dir)
            }
            None => Err(Failure::no_input(format!(
                "no message '{id}' in the outbox {}",
                self.root.display()
            ))
            .into()),
        }
    }

    /// The message file of entry `id`.
    pub fn message(&self, id: &str) -> Result<Vec<u8>> {
        read_checked(&self.locate(id)?.join(MESSAGE))
    }

    /// The message file of entry `id`, opened with the same checks as
    /// [`Outbox::message`], to be read as it is sent.
    pub fn open_message(&self, id: &str) -> Result<File> {
        open_checked(
            &self.locate(id)?.join(MESSAGE),
            fs::OpenOptions::new().read(true),
        )
    }

    /// The raw `meta.json` of entry `id` (for `outbox show`).
    pub fn meta(&self, id: &str) -> Result<Vec<u8>> {
        read_checked(&self.locate(id)?.join(META))
    }

    /// The state of entry `id` in `dir`, checked.
    fn read_entry(dir: &Path, id: &str) -> Result<Entry> {
        let path = dir.join(META);
        let mut entry: Entry = serde_json::from_slice(&read_checked(&path)?)
            .with_context(|| format!("outbox entry {} is damaged", path.display()))?;
        entry.check().map_err(|why| {
            Failure::data(format!("outbox entry {} is damaged: {why}", path.display()))
        })?;
        entry.id = id.to_owned();
        Ok(entry)
    }

    /// Rewrites a queued entry's state atomically. Refuses (and writes
    /// nothing) if that would drop a recipient still owed the message.
    pub fn update(&self, entry: &Entry) -> Result<()> {
        let dir = self.root.join(&entry.id);
        let current = Self::read_entry(&dir, &entry.id)?;
        if let Some(lost) = current.dropped_by(entry) {
            return Err(anyhow::anyhow!(
                "internal error: not rewriting outbox entry {}: it would drop recipient {lost}",
                entry.id
            ));
        }
        write_meta(&dir, entry)
    }

    /// Removes a queued entry (it was delivered, or the user dropped it).
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.locate(id)?;
        let gone = self
            .root
            .join(".tmp")
            .join(format!("{id}.removed-{:08x}", fastrand::u32(..)));
        fs::rename(&dir, &gone).with_context(|| format!("removing {}", dir.display()))?;
        sync_dir(dir.parent().unwrap_or(&self.root))?;
        fs::remove_dir_all(&gone)?;
        Ok(())
    }

    /// Moves an entry to `failed/`, recording why. Never deletes it.
    pub fn fail(&self, entry: &mut Entry, reason: String) -> Result<()> {
        entry.failed = Some(reason);
        self.update(entry)?;
        fs::rename(
            self.root.join(&entry.id),
            self.root.join("failed").join(&entry.id),
        )
        .with_context(|| format!("moving {} to failed/", entry.id))?;
        sync_dir(&self.root.join("failed"))?;
        sync_dir(&self.root)
    }

    /// Moves an entry from `failed/` back into the queue, due now; a message
    /// that failed because recipients were refused is retried for them.
    pub fn retry(&self, id: &str) -> Result<()> {
        let dir = self.locate(id)?;
        if dir.parent() != Some(self.root.join("failed").as_path()) {
            return Err(Failure::usage(format!("{id} is queued, not failed")).into());
        }
        let mut entry = Self::read_entry(&dir, id)?;
        // Everyone still owed it, and everyone refused: all are tried again.
        for refused in entry.refused.drain(..) {
            if !entry.recipients.contains(&refused.address) {
                entry.recipients.push(refused.address);
            }
        }
        if entry.recipients.is_empty() {
            return Err(Failure::usage(format!(
                "{id} has no recipient left to send to; drop it instead"
            ))
            .into());
        }
        entry.failed = None;
        entry.in_flight = false;
        entry.done = false;
        entry.next_attempt = now();
        // A new lease of life: the queue lifetime counts from now.
        entry.created = now();
        write_meta(&dir, &entry)?;
        fs::rename(&dir, self.root.join(id))?;
        sync_dir(&self.root.join("failed"))?;
        sync_dir(&self.root)
    }

    /// Takes the flush lock without waiting; `None` if another flush holds it.
    pub fn try_lock(&self) -> Result<Option<File>> {
        let file = open_checked(
            &self.root.join(".lock"),
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600),
        )?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }

    /// Deletes leftovers of adds and removals that a crash interrupted.
    /// Only call under the flush lock; fresh ones may be an add in progress.
    pub fn clean_leftovers(&self) {
        let Ok(items) = fs::read_dir(self.root.join(".tmp")) else {
            return;
        };
        for item in items.flatten() {
            let old = item
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(600));
            let removed = item.file_name().to_string_lossy().contains(".removed-");
            if old || removed {
                // Neither follows a symlink: only the link would go.
                let _ = fs::remove_dir_all(item.path()).or_else(|_| fs::remove_file(item.path()));
            }
        }
    }
}

/// Entry ids are hex digits and dashes: never a path.
fn is_id(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Writes `meta.json` in `dir` atomically: temp file, fsync, rename, fsync.
fn write_meta(dir: &Path, entry: &Entry) -> Result<()> {
    let tmp = dir.join(".meta.json.tmp");
    // Left by a crash during an earlier update: it never became meta.json.
    let _ = fs::remove_file(&tmp);
    let meta = serde_json::to_vec_pretty(entry)?;
    write_synced(&tmp, |f| f.write_all(&meta))?;
    fs::rename(&tmp, dir.join(META))?;
    sync_dir(dir)
}

/// Creates `path` (0600, never an existing file), fills it with `write`
/// and makes it durable.
fn write_synced(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    write(&mut f)?;
    f.sync_all()?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The exit code of many results (outbox flush): a permanent failure
/// outranks a temporary one, which outranks success; the first permanent
/// failure's code is kept.
pub fn merge(a: Exit, b: Exit) -> Exit {
    let rank = |e: Exit| match e {
        Exit::Ok => 0,
        Exit::TempFail => 1,
        _ => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("outbox");
        for d in [root.clone(), root.join(".tmp"), root.join("failed")] {
            fs::create_dir_all(d).unwrap();
        }
        (dir, Outbox { root })
    }

    fn entry() -> Entry {
        Entry {
            id: String::new(),
            created: now(),
            account: None,
            message_id: "<m@example.com>".into(),
            from: "a@example.com".into(),
            recipients: vec!["b@example.com".into()],
            delivered: vec![],
            refused: vec![],
            attempts: 0,
            next_attempt: now(),
            last_error: Some("421 try later".into()),
            failed: None,
            all_or_nothing: false,
            in_flight: false,
            done: false,
        }
    }

    /// An add that fails half way (no room for the message) leaves no
    /// partial copy behind: a large message would keep the disk full
    /// until a flush swept `.tmp/`, at least ten minutes later.
    #[test]
    fn a_failed_add_leaves_nothing_in_tmp() {
        use std::io::Write;
        let (_d, ob) = outbox();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[b'x'; 100_000]).unwrap();
        // Reading it back ends early, as a spool whose disk failed would.
        let message = Composed::File { file, len: 200_000 };
        assert!(ob.add(entry(), &message).is_err());
        let left: Vec<_> = fs::read_dir(ob.root.join(".tmp")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(ob.entries().unwrap().entries.is_empty());
    }

    #[test]
    fn add_list_update_fail_remove() {
        let (_d, ob) = outbox();
        let id = ob
            .add(
                entry(),
                &Composed::Memory(b"Subject: x\r\n\r\nbody\r\n".to_vec()),
            )
            .unwrap();
        assert_eq!(ob.message(&id).unwrap(), b"Subject: x\r\n\r\nbody\r\n");
        let mut e = ob.entries().unwrap().entries.remove(0);
        assert_eq!(e.id, id);
        e.attempts = 3;
        ob.update(&e).unwrap();
        assert_eq!(ob.entries().unwrap().entries[0].attempts, 3);
        ob.fail(&mut e, "550 no such user".into()).unwrap();
        assert!(ob.entries().unwrap().entries.is_empty());
        assert_eq!(
            ob.failed().unwrap().entries[0].failed.as_deref(),
            Some("550 no such user")
        );
        let id2 = ob.add(entry(), &Composed::Memory(b"x".to_vec())).unwrap();
        ob.remove(&id2).unwrap();
        assert!(ob.entries().unwrap().entries.is_empty());
        assert!(ob.locate("../etc").is_err());
    }

    #[test]
    fn an_update_never_drops_a_recipient_still_owed() {
        let (_d, ob) = outbox();
        let mut e = entry();
        e.recipients = vec!["b@example.com".into(), "c@example.com".into()];
        let id = ob.add(e, &Composed::Memory(b"x".to_vec())).unwrap();
        let mut e = ob.entries().unwrap().entries.remove(0);
        e.recipients.clear();
        assert!(ob.update(&e).is_err(), "c would be lost");
        e.delivered.push("b@example.com".into());
        e.recipients.push("c@example.com".into());
        ob.update(&e).unwrap();
        let on_disk = ob.entries().unwrap().entries.remove(0);
        assert_eq!(on_disk.id, id);
        assert_eq!(on_disk.recipients, ["c@example.com"]);
    }

    #[test]
    fn envelope_addresses_are_checked() {
        for good in [
            "a@example.com",
            "\"a b\"@example.com",
            "\"a<b\"@example.com",
            "ü@example.com",
            "a@bücher.example",
            "a@[127.0.0.1]",
        ] {
            assert!(check_address("recipient", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a@example.com\r\nRCPT TO:<x@example.net>",
            "a@example.com>",
            "<a@example.com",
            "a b@example.com",
            "a@example.com\0",
            "a@exa mple.com",
            "no-at-sign",
            "\"a\r\n\"@example.com",
        ] {
            assert!(check_address("recipient", bad).is_err(), "{bad:?}");
        }
        let mut e = entry();
        e.from = "a@example.com\r\nRSET".into();
        assert!(
            e.check().unwrap_err().contains("\\r\\n"),
            "escaped in the message"
        );
    }

    #[test]
    fn an_entry_naming_nobody_needs_a_recorded_outcome() {
        let mut e = entry();
        e.recipients.clear();
        assert!(e.check().unwrap_err().contains("no recipient"));
        e.done = true;
        assert!(e.check().is_ok());
        e.done = false;
        e.delivered.push("b@example.com".into());
        assert!(e.check().is_ok());
    }

    #[test]
    fn a_lock_that_is_a_directory_or_fifo_is_a_config_refusal() {
        let (_d, ob) = outbox();
        fs::create_dir(ob.root.join(".lock")).unwrap();
        let err = ob.try_lock().unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Config, "{err:#}");
        fs::remove_dir(ob.root.join(".lock")).unwrap();
        let fifo =
            std::ffi::CString::new(ob.root.join(".lock").into_os_string().into_encoded_bytes())
                .unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = ob.try_lock().unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Config, "{err:#}");
    }

    #[test]
    fn entry_files_and_the_lock_are_not_followed_through_symlinks() {
        let (d, ob) = outbox();
        let id = ob.add(entry(), &Composed::Memory(b"x".to_vec())).unwrap();
        let private = d.path().join("private");
        fs::write(&private, "secret").unwrap();
        let message = ob.root.join(&id).join(MESSAGE);
        fs::remove_file(&message).unwrap();
        std::os::unix::fs::symlink(&private, &message).unwrap();
        let err = ob.message(&id).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Config);
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        std::os::unix::fs::symlink(&private, ob.root.join(".lock")).unwrap();
        assert!(ob.try_lock().is_err());
        assert_eq!(fs::read(&private).unwrap(), b"secret");
    }

    #[test]
    fn lock_is_exclusive() {
        let (_d, ob) = outbox();
        let held = ob.try_lock().unwrap();
        assert!(held.is_some());
        assert!(ob.try_lock().unwrap().is_none());
        drop(held);
        assert!(ob.try_lock().unwrap().is_some());
    }

    #[test]
    fn merge_rule() {
        assert_eq!(merge(Exit::Ok, Exit::TempFail), Exit::TempFail);
        assert_eq!(merge(Exit::TempFail, Exit::Unavailable), Exit::Unavailable);
        assert_eq!(merge(Exit::Unavailable, Exit::TempFail), Exit::Unavailable);
        assert_eq!(merge(Exit::NoPerm, Exit::Unavailable), Exit::NoPerm);
        assert_eq!(merge(Exit::Ok, Exit::Ok), Exit::Ok);
    }
}
