//! Runs the built `mailsend` binary the way a user would, but in a clean
//! room: an empty temporary working directory and HOME, no inherited
//! environment (so no stray `.env`, `MAILSEND_*` or `SSL_CERT_*` leaks in).

use std::path::{Path, PathBuf};
use std::process::Output;

use std::process::{Child, Command, Stdio};

use super::pki::Pki;
use super::server::TestServer;

/// The password every test server expects; tests assert it never shows.
pub const PASSWORD: &str = "s3cr3t-Pa55word!";
pub const USER: &str = "sender@example.com";

pub struct Mailsend {
    pub dir: tempfile::TempDir,
    cmd: Command,
    stdin: Vec<u8>,
}

impl Mailsend {
    /// `mailsend` with no configuration at all.
    pub fn bare() -> Mailsend {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::in_dir(dir, Command::new(assert_cmd::cargo::cargo_bin("mailsend")))
    }

    /// The binary run under the name `sendmail` (a symlink), as cron,
    /// git or mutt would find it, with a config file account for `server`.
    pub fn sendmail(server: &TestServer) -> Mailsend {
        let dir = tempfile::tempdir().expect("temp dir");
        let link = dir.path().join("sendmail");
        std::os::unix::fs::symlink(assert_cmd::cargo::cargo_bin("mailsend"), &link)
            .expect("symlink");
        let mut m = Self::in_dir(dir, Command::new(link));
        m.config(&account_config(server, ""));
        m
    }

    /// Writes `~/.config/mailsend/config.toml` (mode 600).
    /// Writes `~/.config/mailsend/config.toml` (mode 600) and lets
    /// mailsend look for it.
    pub fn config(&mut self, text: &str) -> PathBuf {
        std::fs::create_dir_all(self.dir.path().join(".config/mailsend")).expect("mkdir");
        self.cmd.env_remove("MAILSEND_CONFIG");
        self.private_file(".config/mailsend/config.toml", text)
    }

    fn in_dir(dir: tempfile::TempDir, mut cmd: Command) -> Mailsend {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            // Never the machine's /etc/mailsend/config.toml: an empty file.
            .env("MAILSEND_CONFIG", "/dev/null")
            .current_dir(dir.path());
        Mailsend {
            dir,
            cmd,
            stdin: Vec::new(),
        }
    }

    /// `mailsend` configured for `server` through MAILSEND_* variables,
    /// with credentials, trusting the test CA.
    pub fn to(server: &TestServer) -> Mailsend {
        Self::to_port(server.port())
    }

    /// Like `to`, for a port where nothing may be listening (yet).
    pub fn to_port(port: u16) -> Mailsend {
        let mut m = Mailsend::bare();
        m.env("MAILSEND_HOST", "127.0.0.1")
            .env("MAILSEND_PORT", &port.to_string())
            .env(
                "MAILSEND_CA_FILE",
                Pki::shared().ca_file.to_str().expect("utf-8 path"),
            )
            .env("MAILSEND_USER", USER)
            .env("MAILSEND_PASSWORD", PASSWORD)
            .env("MAILSEND_TIMEOUT", "5s");
        m
    }

    /// Uses `dir` as HOME and working directory, so that several runs
    /// share one outbox and config.
    pub fn home(&mut self, dir: &Path) -> &mut Self {
        self.cmd.env("HOME", dir).current_dir(dir);
        self
    }

    pub fn current_dir(&mut self, dir: &Path) -> &mut Self {
        self.cmd.current_dir(dir);
        self
    }

    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.cmd.env(key, value);
        self
    }

    /// Like `env`, for a value that need not be UTF-8.
    pub fn env_os(&mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(&mut self, key: &str) -> &mut Self {
        self.cmd.env_remove(key);
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Runs it under a file size limit (`ulimit -f`), in bytes.
    pub fn file_size_limit(&mut self, bytes: u64) -> &mut Self {
        self.soft_limit(libc::RLIMIT_FSIZE, bytes)
    }

    /// Runs it with at most `n` open file descriptors (`ulimit -n`).
    pub fn open_files_limit(&mut self, n: u64) -> &mut Self {
        self.soft_limit(libc::RLIMIT_NOFILE, n)
    }

    fn soft_limit(&mut self, resource: libc::__rlimit_resource_t, value: u64) -> &mut Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only getrlimit and setrlimit run,
        // which are async-signal-safe and touch only this stack's struct.
        unsafe {
            self.cmd.pre_exec(move || {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(resource, &mut limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                limit.rlim_cur = value.min(limit.rlim_max);
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self
    }

    pub fn stdin(&mut self, input: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = input.into();
        self
    }

    /// Writes a file into the working directory; returns its path.
    pub fn file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write test file");
        path
    }

    /// Writes a private (mode 600) file, as one holding a secret must be.
    pub fn private_file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.file(name, content);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts it in the background (stdin empty), to control it directly,
    /// e.g. to kill it.
    pub fn spawn(&mut self) -> Child {
        self.cmd
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn mailsend")
    }

    /// Like `spawn`, with stdout and stderr as given (e.g. pipes whose
    /// read ends the test closes).
    pub fn spawn_with(&mut self, stdout: Stdio, stderr: Stdio) -> Child {
        self.cmd.stdout(stdout).stderr(stderr);
        self.spawn()
    }

    /// Runs it to the end (at most 60 s); never panics on a non-zero exit.
    pub fn run(&mut self) -> Run {
        let cmd = std::mem::replace(&mut self.cmd, Command::new("false"));
        let output = assert_cmd::Command::from_std(cmd)
            .timeout(std::time::Duration::from_secs(60))
            .write_stdin(std::mem::take(&mut self.stdin))
            .output()
            .expect("run mailsend");
        Run { output }
    }
}

/// A config file whose default account `main` sends to `server`, with
/// aliases for `root` and a `default`; `extra` is appended to the account.
pub fn account_config(server: &TestServer, extra: &str) -> String {
    format!(
        r#"[aliases]
root = "admin@example.com"
default = "fallback@example.org"

[accounts.main]
default = true
host = "127.0.0.1"
port = {port}
user = "{USER}"
password = "{PASSWORD}"
from = "Server <{USER}>"
ca_file = "{ca}"
timeout = "5s"
{extra}
"#,
        port = server.port(),
        ca = Pki::shared().ca_file.display(),
    )
}

/// What one run printed and returned.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().expect("exited, not killed")
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts the exit code, showing the output when it differs, and that
    /// the password appears in no output.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self.assert_no_password();
        self
    }

    pub fn assert_no_password(&self) {
        for (name, text) in [("stdout", self.stdout()), ("stderr", self.stderr())] {
            assert!(
                !text.contains(PASSWORD),
                "password leaked on {name}:\n{text}"
            );
        }
    }

    /// Asserts an error run: one `mailsend: error:` line containing `needle`.
    pub fn error_mentions(&self, needle: &str) -> &Self {
        let stderr = self.stderr();
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("mailsend: error: "))
            .collect();
        assert!(
            errors.iter().any(|l| l.contains(needle)),
            "no error line mentions {needle:?}:\n{stderr}"
        );
        self
    }
}
