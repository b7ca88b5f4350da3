//! The token file: refresh token, access token, expiry, scopes and
//! provider, as JSON. Private (mode 600, in a directory created mode 700),
//! written atomically (a temporary file in the same directory, fsync,
//! rename), and refreshed under a lock (`FILE.lock`, flock) so that two
//! processes refreshing at once do not lose a rotated refresh token.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::OAuthError;
use crate::accounts;

/// What the file holds. Tokens only ever leave it to a token request or
/// an AUTH command.
#[derive(Serialize, Deserialize)]
pub struct Tokens {
    pub provider: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Unix seconds when the access token runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("provider", &self.provider)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads the token file; `Ok(None)` when there is none. A file that
/// others can read is refused, as a password file is.
pub fn load(path: &Path) -> Result<Option<Tokens>, OAuthError> {
    let cannot =
        |e: std::io::Error| OAuthError::io(format!("cannot read {}: {}", path.display(), e.kind()));
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // O_NOFOLLOW: a symbolic link is refused for good, not "try later".
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(OAuthError::config(format!(
                "{} is a symbolic link: mailsend keeps OAuth2 tokens only in a regular file",
                path.display()
            ))
            .hint("point oauth_token_file (MAILSEND_OAUTH_TOKEN_FILE) at the real file"));
        }
        Err(e) => return Err(cannot(e)),
    };
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(OAuthError::config(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(OAuthError::config(format!(
            "{} belongs to another user",
            path.display()
        )));
    }
    accounts::refuse_if_shared(path, &meta, "holds OAuth2 tokens")
        .map_err(OAuthError::from_setting)?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(accounts::MAX_SETTINGS_FILE)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    serde_json::from_slice(&bytes).map(Some).map_err(|_| {
        OAuthError::config(format!("{} is not a mailsend token file", path.display()))
            .hint("run `mailsend auth login` again")
    })
}

/// Refuses, before anyone signs in, a token path that [`save`] could not
/// replace or [`load`] would refuse: a directory, a symbolic link, any
/// other non-file (78). A missing file, or one that is not a token file
/// (login is the remedy for that), is fine.
pub fn check_replaceable(path: &Path) -> Result<(), OAuthError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => {
            let what = if meta.file_type().is_symlink() {
                "a symbolic link"
            } else if meta.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            Err(OAuthError::config(format!(
                "{} is {what}: the tokens cannot be saved there",
                path.display()
            ))
            .hint("remove it, or point oauth_token_file (MAILSEND_OAUTH_TOKEN_FILE) elsewhere"))
        }
        _ => Ok(()),
    }
}

/// Creates the directory of `path` (mode 700) if it is missing.
fn make_dir(path: &Path) -> Result<&Path, OAuthError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            OAuthError::io(format!(
                "cannot create the directory {}: {}",
                dir.display(),
                e.kind()
            ))
        })?;
    Ok(dir)
}

/// Replaces the file with `tokens`, atomically: a reader sees the old
/// file or the new one, never a part; a crash leaves one of the two.
pub fn save(path: &Path, tokens: &Tokens) -> Result<(), OAuthError> {
    let dir = make_dir(path)?;
    let cannot = |e: std::io::Error| {
        OAuthError::io(format!("cannot write {}: {}", path.display(), e.kind()))
    };
    let json = serde_json::to_vec_pretty(tokens)
        .map_err(|e| OAuthError::io(format!("cannot encode tokens: {e}")))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".mailsend-token-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(cannot)?;
    temp.write_all(&json).map_err(cannot)?;
    temp.write_all(b"\n").map_err(cannot)?;
    temp.as_file().sync_all().map_err(cannot)?;
    temp.persist(path).map_err(|e| cannot(e.error))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Deletes the file; whether there was one.
pub fn remove(path: &Path) -> Result<bool, OAuthError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            let _ = std::fs::remove_file(lock_path(path));
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(OAuthError::io(format!(
            "cannot delete {}: {}",
            path.display(),
            e.kind()
        ))),
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Waits for the lock of `path` (at most `wait`): an exclusive lock on
/// the token file's lock file, held until the returned file is dropped.
pub fn lock(path: &Path, wait: std::time::Duration) -> Result<File, OAuthError> {
    make_dir(path)?;
    let lock = lock_path(path);
    let cannot =
        |e: std::io::Error| OAuthError::io(format!("cannot lock {}: {}", lock.display(), e.kind()));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock)
        .map_err(cannot)?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(cannot(e)),
        }
        if std::time::Instant::now() >= deadline {
            return Err(OAuthError::network(format!(
                "another mailsend kept {} locked for longer than the timeout",
                lock.display()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saved_private_and_refused_when_shared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/acct.json");
        let tokens = Tokens {
            provider: "custom".into(),
            scopes: vec!["mail".into()],
            refresh_token: Some("r1".into()),
            access_token: None,
            expires_at: Some(5),
        };
        save(&path, &tokens).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        let back = load(&path).unwrap().unwrap();
        assert_eq!(back.refresh_token.as_deref(), Some("r1"));
        assert!(!format!("{back:?}").contains("r1"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.to_string().contains("readable by others"), "{err}");
        assert!(remove(&path).unwrap());
        assert!(load(&path).unwrap().is_none());
        let _held = lock(&path, std::time::Duration::from_secs(1)).unwrap();
        assert!(lock(&path, std::time::Duration::from_millis(50)).is_err());
    }
}
