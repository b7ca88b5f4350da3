//! The config file: named accounts and aliases, in TOML.
//!
//! Owns finding the file, parsing it strictly (unknown keys are errors that
//! name the key, line and file), refusing a file that holds a password and
//! is readable by others, and choosing the account. Merging its values
//! with flags and the environment is `config.rs`'s job.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Deserialize;

use crate::exit::Failure;

/// The system-wide file, for cron and daemons; found even with HOME unset.
pub const SYSTEM_CONFIG: &str = "/etc/mailsend/config.toml";

/// What the config file may hold at the top level.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub accounts: BTreeMap<String, Account>,
    /// Local user names (`root`, `ops`) to addresses, plus `default`.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
}

/// One `[accounts.NAME]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    #[serde(default)]
    pub default: bool,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_command: Option<String>,
    pub auth: Option<String>,
    pub oauth_token_command: Option<String>,
    pub from: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub timeout: Option<String>,
    pub set_from_header: Option<String>,
    pub skip_empty: Option<bool>,
    pub log: Option<String>,
    pub retry_for: Option<String>,
    pub queue: Option<bool>,
    pub outbox: Option<PathBuf>,
    pub queue_lifetime: Option<String>,
    // OAuth2 sign-in (`mailsend auth`, src/oauth/).
    pub oauth_provider: Option<String>,
    pub oauth_client_id: Option<String>,
    pub oauth_client_secret: Option<String>,
    pub oauth_client_secret_command: Option<String>,
    pub oauth_auth_url: Option<String>,
    pub oauth_token_url: Option<String>,
    pub oauth_device_url: Option<String>,
    pub oauth_revocation_url: Option<String>,
    pub oauth_scopes: Option<String>,
    pub oauth_token_file: Option<PathBuf>,
    pub dkim_key: Option<PathBuf>,
    pub dkim_selector: Option<String>,
    pub dkim_domain: Option<String>,
}

/// More than any settings file needs: a larger one (`--env-file
/// /dev/zero`) is refused rather than read into memory.
pub const MAX_SETTINGS_FILE: u64 = 1 << 20;

/// A loaded config file.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub file: ConfigFile,
}

/// The file to read: `explicit` (`--config`/`MAILSEND_CONFIG`) must exist;
/// otherwise the first of the XDG, home and system paths that exists.
pub fn locate(
    explicit: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Option<PathBuf>> {
    if let Some(path) = explicit {
        if !path.exists() {
            return Err(
                Failure::config(format!("config file {} does not exist", path.display())).into(),
            );
        }
        return Ok(Some(path));
    }
    let nonempty = |var: &str| env(var).filter(|v| !v.is_empty());
    let candidates = [
        nonempty("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("mailsend/config.toml")),
        nonempty("HOME").map(|h| PathBuf::from(h).join(".config/mailsend/config.toml")),
        Some(PathBuf::from(SYSTEM_CONFIG)),
    ];
    Ok(candidates.into_iter().flatten().find(|p| p.is_file()))
}

/// Reads and checks the file at `path`. A file found by searching (not
/// named by `--config`) that the user may not read is skipped: it is
/// another user's, e.g. root's mode-600 `/etc/mailsend/config.toml`.
pub fn load(path: &Path, explicit: bool, wait: Duration) -> Result<Option<Loaded>> {
    let cannot = |e: std::io::Error| {
        Failure::config(format!(
            "cannot read config file {}: {}",
            path.display(),
            e.kind()
        ))
    };
    let handle = match open_settings_file(path) {
        Ok(handle) => handle,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(cannot(e).into()),
    };
    let meta = handle.metadata().map_err(cannot)?;
    refuse_if_untrusted(path, &meta, explicit)?;
    let bytes = read_settings_file(&handle, wait, MAX_SETTINGS_FILE).map_err(|e| match e {
        ReadError::Io(e) => cannot(e),
        ReadError::TimedOut(wait) => Failure::config(format!(
            "config file {}: no end of data within {} (a FIFO or pipe nobody writes to or closes?)",
            path.display(),
            humantime::format_duration(wait)
        ))
        .with_hint("the wait is --timeout (MAILSEND_TIMEOUT), 30s by default"),
        ReadError::TooLarge => Failure::config(format!(
            "config file {} is larger than {} KiB",
            path.display(),
            MAX_SETTINGS_FILE / 1024
        )),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::config(format!("config file {} is not valid UTF-8", path.display()))
    })?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| format!(", line {}", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_default();
        Failure::config(format!(
            "config file {}{line}: {}",
            path.display(),
            without_values(e.message())
        ))
    })?;
    if file.accounts.values().any(|a| a.password.is_some()) {
        refuse_if_shared(path, &meta, "holds a password")?;
    }
    if file
        .accounts
        .values()
        .any(|a| a.oauth_client_secret.is_some())
    {
        refuse_if_shared(path, &meta, "holds an OAuth2 client secret")?;
    }
    let defaults: Vec<&String> = file
        .accounts
        .iter()
        .filter(|(_, a)| a.default)
        .map(|(n, _)| n)
        .collect();
    if defaults.len() > 1 {
        return Err(Failure::config(format!(
            "config file {}: more than one account has default = true ({})",
            path.display(),
            defaults
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    Ok(Some(Loaded {
        path: path.to_path_buf(),
        file,
    }))
}

/// A TOML error message on one line, without the offending value, which
/// may be a password (`invalid type: integer `1234`, expected a string`).
/// Key names (`unknown field `hots``) are kept.
fn without_values(message: &str) -> String {
    let message = message.trim().replace('\n', " ");
    if !(message.starts_with("invalid type") || message.starts_with("invalid value")) {
        return message;
    }
    let mut out = String::new();
    for (i, part) in message.split('`').enumerate() {
        out.push_str(if i % 2 == 1 { "…" } else { part });
    }
    out
}

/// A file that holds a secret must not be readable by group or others.
/// The metadata is the open file's, so the path cannot be swapped between
/// the check and the read.
pub fn refuse_if_shared(path: &Path, meta: &Metadata, why: &str) -> Result<()> {
    let mode = meta.mode();
    if meta.is_file() && mode & 0o077 != 0 {
        return Err(Failure::config(format!(
            "{} {why} and is readable by others (mode {:o})",
            path.display(),
            mode & 0o777
        ))
        .with_hint(chmod_600_hint(path))
        .into());
    }
    Ok(())
}

/// A settings file can name the server, the CA to trust and a command to
/// run: read it only when it is a regular file that belongs to the user
/// (or root) and that nobody else can write. A file the user named on
/// purpose (`--config /dev/null`) may be something else.
pub fn refuse_if_untrusted(path: &Path, meta: &Metadata, named: bool) -> Result<()> {
    let hint =
        "make it a regular file of yours (or root's), not writable by others, e.g. chmod 600";
    if !meta.is_file() {
        return if named {
            Ok(())
        } else {
            Err(Failure::config(format!(
                "not reading {}: it is not a regular file",
                path.display()
            ))
            .with_hint(hint)
            .into())
        };
    }
    refuse_if_foreign(path, meta, "not reading", hint)
}

/// The owner rule for anything mailsend acts on without asking (settings
/// files, the outbox and its entries): it belongs to the user or root and
/// neither group nor others can write it. `doing` starts the error line
/// ("not reading"), `hint` says how to fix it.
pub fn refuse_if_foreign(path: &Path, meta: &Metadata, doing: &str, hint: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !(meta.uid() == me || meta.uid() == 0) || meta.mode() & 0o022 != 0 {
        return Err(Failure::config(format!(
            "{doing} {}: it belongs to another user or others can write it",
            path.display()
        ))
        .with_hint(hint.to_owned())
        .into());
    }
    Ok(())
}

/// Opens a settings file, always without blocking: a FIFO that nobody
/// writes to would otherwise hang in open(2). A file found by searching
/// has its type checked on the open file right after; one the user named
/// may be a pipe on purpose (`--env-file <(pass show smtp)`), and
/// [`read_settings_file`] bounds the wait for it.
pub fn open_settings_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// Why a settings file could not be read whole.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    /// No end of file within the wait: a FIFO or pipe whose writer never
    /// wrote or never closed it.
    TimedOut(Duration),
    /// Longer than the limit.
    TooLarge,
}

/// Reads a file opened by [`open_settings_file`] to its end, at most
/// `limit` bytes, within `wait` for the whole read: a FIFO with no writer,
/// or a writer that never closes (`<(sleep 100)`, a `pass` waiting for a
/// pinentry under cron), ends in [`ReadError::TimedOut`], not a hang.
pub fn read_settings_file(file: &File, wait: Duration, limit: u64) -> Result<Vec<u8>, ReadError> {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + wait;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::TimedOut(wait));
        }
        let mut fds = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Rounded up, so that less than a millisecond left is not a busy loop.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd, for a descriptor `file` keeps open.
        let ready = unsafe { libc::poll(&mut fds, 1, ms) };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(ReadError::Io(e));
        }
        if ready == 0 {
            continue;
        }
        // Ready (data, end of file or an error): a read does not block.
        match (&*file).read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => {
                bytes.extend_from_slice(&chunk[..n]);
                if bytes.len() as u64 > limit {
                    return Err(ReadError::TooLarge);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// `chmod 600 PATH` as a command a shell runs on exactly that file, or
/// `None` when the name cannot be printed as such (not UTF-8, or holding
/// a control character).
pub fn chmod_600_command(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    if text.is_empty() || text.chars().any(char::is_control) {
        return None;
    }
    // A name starting with `-` would read as an option.
    let text = if text.starts_with('-') {
        format!("./{text}")
    } else {
        text.to_owned()
    };
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b));
    Some(if plain {
        format!("chmod 600 {text}")
    } else {
        format!("chmod 600 '{}'", text.replace('\'', r"'\''"))
    })
}

/// The hint for a file that must be made private.
pub fn chmod_600_hint(path: &Path) -> String {
    match chmod_600_command(path) {
        Some(command) => format!("run: {command}"),
        None => "chmod 600 the file (its name cannot be shown as a command)".to_owned(),
    }
}

impl Loaded {
    /// The account to use: `name` if given (it must exist); else the one
    /// whose `from` address is `sender`; else the one marked default; else
    /// the only one.
    pub fn choose(
        &self,
        name: Option<&str>,
        sender: Option<&str>,
    ) -> Result<Option<(String, Account)>> {
        let accounts = &self.file.accounts;
        if let Some(name) = name {
            return match accounts.get(name) {
                Some(a) => Ok(Some((name.to_owned(), a.clone()))),
                None => Err(Failure::config(format!(
                    "no account '{name}' in {} (accounts: {})",
                    self.path.display(),
                    accounts.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
                .into()),
            };
        }
        let by_sender = sender.and_then(|s| {
            accounts.iter().find(|(_, a)| {
                a.from
                    .as_deref()
                    .and_then(address_of)
                    .is_some_and(|f| f.eq_ignore_ascii_case(s))
            })
        });
        let chosen = by_sender
            .or_else(|| accounts.iter().find(|(_, a)| a.default))
            .or_else(|| {
                (accounts.len() == 1)
                    .then(|| accounts.iter().next())
                    .flatten()
            });
        Ok(chosen.map(|(n, a)| (n.clone(), a.clone())))
    }
}

/// The bare address in `Name <addr>` or `addr`.
fn address_of(mailbox: &str) -> Option<&str> {
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(l), Some(r)) if l < r => Some(mailbox[l + 1..r].trim()),
        _ => Some(mailbox.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn the_chmod_command_is_quoted_for_a_shell() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let cmd = |p: &str| chmod_600_command(Path::new(p));
        assert_eq!(cmd(".env").as_deref(), Some("chmod 600 .env"));
        assert_eq!(
            cmd("/home/me/a-b_c.env").as_deref(),
            Some("chmod 600 /home/me/a-b_c.env")
        );
        assert_eq!(
            cmd("my dir/it's $HOME.env").as_deref(),
            Some(r"chmod 600 'my dir/it'\''s $HOME.env'")
        );
        assert_eq!(cmd("-x.env").as_deref(), Some("chmod 600 ./-x.env"));
        assert_eq!(cmd("a\nb"), None);
        assert_eq!(
            chmod_600_command(Path::new(OsStr::from_bytes(b"e\xff.env"))),
            None
        );
        assert!(chmod_600_hint(Path::new(OsStr::from_bytes(b"e\xff.env"))).contains("the file"));
    }

    const TWO: &str = r#"
[aliases]
root = "admin@example.com"
default = "ops@example.com"

[accounts.work]
default = true
host = "smtp.example.com"
from = "Work <me@example.com>"

[accounts.alerts]
host = "smtp.example.net"
port = 465
tls = "tls"
from = "alerts@example.net"
password_command = "pass show alerts"
"#;

    #[test]
    fn chooses_by_name_sender_default() {
        let (_d, path) = write(TWO, 0o644);
        let loaded = load(&path, true, Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(loaded.choose(None, None).unwrap().unwrap().0, "work");
        assert_eq!(
            loaded
                .choose(None, Some("ALERTS@example.net"))
                .unwrap()
                .unwrap()
                .0,
            "alerts"
        );
        assert_eq!(
            loaded
                .choose(Some("alerts"), Some("me@example.com"))
                .unwrap()
                .unwrap()
                .0,
            "alerts"
        );
        let err = loaded.choose(Some("nope"), None).unwrap_err();
        assert!(err.to_string().contains("accounts: alerts, work"), "{err}");
        assert_eq!(loaded.file.aliases["root"], "admin@example.com");
    }

    #[test]
    fn unknown_keys_name_key_line_and_file() {
        let (_d, path) = write("[accounts.a]\nhost = \"x\"\nhots = \"y\"\n", 0o600);
        let err = load(&path, true, Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hots") && err.contains("line 3") && err.contains("config.toml"),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn type_errors_do_not_echo_the_value() {
        let (_d, path) = write("[accounts.a]\npassword = 12345678\n", 0o600);
        let err = load(&path, true, Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("12345678") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_password_in_a_shared_file_is_refused() {
        let (_d, path) = write("[accounts.a]\npassword = \"pw\"\n", 0o640);
        let err = load(&path, true, Duration::from_secs(5)).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Exit::Config);
        assert!(crate::exit::hint_for(&err).unwrap().contains("chmod 600"));
        let (_d, path) = write("[accounts.a]\npassword = \"pw\"\n", 0o600);
        assert!(load(&path, true, Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn locate_prefers_xdg_then_home() {
        let dir = tempfile::tempdir().unwrap();
        let xdg = dir.path().join("xdg");
        let home = dir.path().join("home");
        std::fs::create_dir_all(xdg.join("mailsend")).unwrap();
        std::fs::create_dir_all(home.join(".config/mailsend")).unwrap();
        std::fs::write(home.join(".config/mailsend/config.toml"), "").unwrap();
        let (x, h) = (xdg.clone().into_os_string(), home.clone().into_os_string());
        let env = move |k: &str| match k {
            "XDG_CONFIG_HOME" => Some(x.clone()),
            "HOME" => Some(h.clone()),
            _ => None,
        };
        assert_eq!(
            locate(None, &env).unwrap(),
            Some(home.join(".config/mailsend/config.toml"))
        );
        std::fs::write(xdg.join("mailsend/config.toml"), "").unwrap();
        assert_eq!(
            locate(None, &env).unwrap(),
            Some(xdg.join("mailsend/config.toml"))
        );
        assert!(locate(Some(dir.path().join("missing.toml")), &env).is_err());
    }
}
