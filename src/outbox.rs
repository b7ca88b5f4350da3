//! The outbox: messages kept for a later retry, safe across crashes.
//!
//! Layout under the outbox directory (mode 700):
//! `ID/message.eml` + `ID/meta.json` for each queued message, `failed/ID/`
//! for messages that failed for good, `.tmp/` for entries being built or
//! removed, and `.lock` for `flush`. An entry is built complete in `.tmp/`
//! (files fsynced) and renamed into place, and the directory is fsynced;
//! removal is a rename out of the way before deleting. A crash at any
//! instant therefore leaves either no entry or a complete one. The one
//! window for a duplicate is a crash between the server's 250 and the
//! removal rename.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::exit::{Exit, Failure};
use crate::smtp::Rejection;

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
    pub fn existing(root: PathBuf) -> Outbox {
        Outbox { root }
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
        Ok(Outbox { root })
    }

    /// Queues a message; returns its id.
    pub fn add(&self, mut entry: Entry, message: &[u8]) -> Result<String> {
        let id = format!(
            "{:x}-{:08x}",
            entry.created.max(1) * 1000 + u64::from(fastrand::u16(..)),
            fastrand::u32(..)
        );
        entry.id = id.clone();
        let tmp = self.root.join(".tmp").join(&id);
        fs::DirBuilder::new().mode(0o700).create(&tmp)?;
        write_synced(&tmp.join(MESSAGE), message)?;
        write_synced(&tmp.join(META), &serde_json::to_vec_pretty(&entry)?)?;
        sync_dir(&tmp)?;
        fs::rename(&tmp, self.root.join(&id))?;
        sync_dir(&self.root)?;
        Ok(id)
    }

    /// Queued entries, oldest first.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        Self::read_entries(&self.root)
    }

    /// Entries in `failed/`, oldest first.
    pub fn failed(&self) -> Result<Vec<Entry>> {
        Self::read_entries(&self.root.join("failed"))
    }

    /// Entries under `dir`, oldest first. One that cannot be read (its
    /// meta.json damaged by hand or by a disk fault) is reported and left in
    /// place, so that it never stops the others.
    fn read_entries(dir: &Path) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let items = match fs::read_dir(dir) {
            Ok(items) => items,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
            Err(e) => return Err(e).with_context(|| format!("reading outbox {}", dir.display())),
        };
        for item in items {
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "failed" || !item.path().is_dir() {
                continue;
            }
            if !is_id(&name) {
                eprintln!(
                    "mailsend: warning: {} is not an outbox entry; left alone",
                    item.path().display()
                );
                continue;
            }
            let meta = item.path().join(META);
            let parsed = match fs::read(&meta) {
                Ok(bytes) => serde_json::from_slice::<Entry>(&bytes).map_err(|e| e.to_string()),
                // Moved away by a concurrent flush between read_dir and here.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => Err(e.to_string()),
            };
            match parsed {
                Ok(mut entry) => {
                    // The directory name is the id, whatever meta.json says.
                    entry.id = name;
                    entries.push(entry);
                }
                Err(why) => eprintln!(
                    "mailsend: warning: outbox entry {} is damaged ({why}); left in place",
                    item.path().display()
                ),
            }
        }
        entries.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(entries)
    }

    /// The directory of entry `id`, queued or failed; a malformed or
    /// unknown id is `NOINPUT` (66).
    pub fn locate(&self, id: &str) -> Result<PathBuf> {
        let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        let candidates = [self.root.join(id), self.root.join("failed").join(id)];
        match candidates
            .into_iter()
            .find(|p| valid && p.join(META).is_file())
        {
            Some(dir) => Ok(dir),
            None => Err(Failure::no_input(format!(
                "no message '{id}' in the outbox {}",
                self.root.display()
            ))
            .into()),
        }
    }

    pub fn message(&self, id: &str) -> Result<Vec<u8>> {
        let path = self.locate(id)?.join(MESSAGE);
        fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Rewrites a queued entry's state atomically.
    pub fn update(&self, entry: &Entry) -> Result<()> {
        write_meta(&self.root.join(&entry.id), entry)
    }

    /// Removes a queued entry (it was delivered, or the user dropped it).
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.locate(id)?;
        let gone = self
            .root
            .join(".tmp")
            .join(format!("{id}.removed-{:08x}", fastrand::u32(..)));
        fs::rename(&dir, &gone)?;
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
        )?;
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
        let mut entry: Entry = serde_json::from_slice(&fs::read(dir.join(META))?)?;
        if entry.recipients.is_empty() {
            entry.recipients = entry.refused.drain(..).map(|r| r.address).collect();
        }
        entry.id = id.to_owned();
        entry.failed = None;
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
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.root.join(".lock"))?;
        // SAFETY: flock on a file descriptor we own for the call's duration.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(file));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(err.into())
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
                let _ = fs::remove_dir_all(item.path());
            }
        }
    }
}

/// Entry ids are hex digits and dashes: never a path.
fn is_id(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The delay before attempt `attempts + 1`: 1 min, doubling, at most 1 h,
/// with ±20 % jitter so that many queued messages do not retry in step.
pub fn backoff(attempts: u32) -> Duration {
    let base = 60u64
        .saturating_mul(1 << attempts.saturating_sub(1).min(6))
        .min(3600);
    Duration::from_secs(base).mul_f64(0.8 + fastrand::f64() * 0.4)
}

/// Writes `meta.json` in `dir` atomically: temp file, fsync, rename, fsync.
fn write_meta(dir: &Path, entry: &Entry) -> Result<()> {
    let tmp = dir.join(".meta.json.tmp");
    // Left by a crash during an earlier update: it never became meta.json.
    let _ = fs::remove_file(&tmp);
    write_synced(&tmp, &serde_json::to_vec_pretty(entry)?)?;
    fs::rename(&tmp, dir.join(META))?;
    sync_dir(dir)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
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
        }
    }

    #[test]
    fn add_list_update_fail_remove() {
        let (_d, ob) = outbox();
        let id = ob.add(entry(), b"Subject: x\r\n\r\nbody\r\n").unwrap();
        assert_eq!(ob.message(&id).unwrap(), b"Subject: x\r\n\r\nbody\r\n");
        let mut e = ob.entries().unwrap().remove(0);
        assert_eq!(e.id, id);
        e.attempts = 3;
        ob.update(&e).unwrap();
        assert_eq!(ob.entries().unwrap()[0].attempts, 3);
        ob.fail(&mut e, "550 no such user".into()).unwrap();
        assert!(ob.entries().unwrap().is_empty());
        assert_eq!(
            ob.failed().unwrap()[0].failed.as_deref(),
            Some("550 no such user")
        );
        let id2 = ob.add(entry(), b"x").unwrap();
        ob.remove(&id2).unwrap();
        assert!(ob.entries().unwrap().is_empty());
        assert!(ob.locate("../etc").is_err());
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

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!((48..=72).contains(&backoff(1).as_secs()));
        assert!((96..=144).contains(&backoff(2).as_secs()));
        assert!(backoff(30).as_secs() <= 4320);
    }
}
