//! Secrets: a string type that never prints, and the password command
//! that produces one.

use std::fmt;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::exit::Failure;

/// Holds a secret; `Debug` and `Display` print `<redacted>`, so no log line,
/// error message, `--json` output or panic can show what it holds.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Hides secrets in text that came from elsewhere (a server's reply),
/// including fragments of them: a server that quotes most of an AUTH
/// token must not put most of the password on a terminal or in a log.
/// Every run of text that shares [`Redactor::WINDOW`] or more consecutive
/// bytes with a secret becomes `<redacted>` (a shorter secret only when it
/// appears whole). Errs on the side of hiding too much.
#[derive(Default)]
pub struct Redactor {
    windows: std::collections::HashSet<[u8; Redactor::WINDOW]>,
    short: Vec<String>,
}

impl Redactor {
    /// The length of a fragment that counts as part of a secret.
    pub const WINDOW: usize = 4;

    /// Hides `secret` (and any fragment of it) from now on.
    pub fn add(&mut self, secret: &str) {
        let bytes = secret.as_bytes();
        if bytes.len() < Self::WINDOW {
            if !secret.is_empty() {
                self.short.push(secret.to_owned());
            }
            return;
        }
        for w in bytes.windows(Self::WINDOW) {
            if let Ok(w) = <[u8; Self::WINDOW]>::try_from(w) {
                self.windows.insert(w);
            }
        }
    }

    /// `text` with every part of a secret replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        if self.windows.is_empty() && self.short.is_empty() {
            return text.to_owned();
        }
        let bytes = text.as_bytes();
        let mut hidden = vec![false; bytes.len()];
        for (i, w) in bytes.windows(Self::WINDOW).enumerate() {
            if <[u8; Self::WINDOW]>::try_from(w).is_ok_and(|w| self.windows.contains(&w)) {
                hidden[i..i + Self::WINDOW].fill(true);
            }
        }
        for s in &self.short {
            for (i, _) in text.match_indices(s.as_str()) {
                hidden[i..i + s.len()].fill(true);
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut in_secret = false;
        for (i, c) in text.char_indices() {
            if hidden[i..i + c.len_utf8()].iter().any(|&h| h) {
                if !in_secret {
                    out.push_str("<redacted>");
                }
                in_secret = true;
            } else {
                out.push(c);
                in_secret = false;
            }
        }
        out
    }
}

/// Runs the password command (`sh -c`), bounded by `timeout`; its standard
/// output, without trailing white space, is the password.
pub fn run_password_command(command: &str, timeout: Duration) -> Result<Secret> {
    let fail = |why: String| {
        Failure::config(format!("password command failed: {why}"))
            .with_hint("check MAILSEND_PASSWORD_COMMAND / --password-command")
    };
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Without a terminal (cron, daemons) the command gets a process group of
    // its own, so that a timeout ends its children too. At a terminal it
    // stays in the foreground group: it may prompt there (gpg, age, pass).
    let own_group = std::fs::File::open("/dev/tty").is_err();
    if own_group {
        sh.process_group(0);
    }
    let mut child = sh
        .spawn()
        .map_err(|e| fail(format!("cannot start sh: {e}")))?;
    let end = |child: &mut std::process::Child| match own_group {
        true => kill_group(child.id()),
        false => {
            let _ = child.kill();
        }
    };
    let mut stdout = child.stdout.take().expect("stdout was piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = tx.send(stdout.read_to_end(&mut out).map(|_| out));
    });
    let deadline = Instant::now() + timeout;
    let too_slow = || {
        fail(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        ))
    };
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            end(&mut child);
            let _ = child.wait();
            return Err(too_slow().into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if !status.success() {
        return Err(fail(format!("it exited with {status}")).into());
    }
    // A background child of the command may still hold its stdout open.
    let out = rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .map_err(|_| {
            end(&mut child);
            too_slow()
        })?
        .map_err(|e| fail(format!("cannot read its output: {e}")))?;
    let text = String::from_utf8(out).map_err(|_| fail("its output is not UTF-8".into()))?;
    let password = text.trim_end_matches(['\r', '\n', ' ', '\t']).to_owned();
    if password.is_empty() {
        return Err(fail("it printed nothing".into()).into());
    }
    Ok(Secret::new(password))
}

/// Ends the password command and everything it started.
fn kill_group(pid: u32) {
    // SAFETY: signals only the process group created for the command.
    unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_its_value() {
        let s = Secret::new("hunter2".into());
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "<redacted> <redacted> Some(<redacted>)"
        );
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn password_command_output_is_trimmed() {
        let p = run_password_command("printf 's3cret\\n'", Duration::from_secs(5)).unwrap();
        assert_eq!(p.expose(), "s3cret");
        let err = run_password_command("exit 3", Duration::from_secs(5)).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Exit::Config);
        let err = run_password_command("sleep 5", Duration::from_millis(100)).unwrap_err();
        assert!(err.to_string().contains("no answer"), "{err}");
        let err =
            run_password_command("sleep 5 & echo pw", Duration::from_millis(300)).unwrap_err();
        assert!(err.to_string().contains("no answer"), "{err}");
    }

    #[test]
    fn redacts_whole_and_partial_echoes() {
        let mut r = Redactor::default();
        r.add("AHNlbmRlcgBzM2NyM3Q="); // base64 of "\0sender\0s3cr3t"
        r.add("s3cr3t");
        r.add("ab");
        let token = "AHNlbmRlcgBzM2NyM3Q=";
        for echo in [token, &token[..token.len() - 4], &token[2..], &token[5..9]] {
            let out = r.redact(&format!("501 5.5.2 syntax error in AUTH PLAIN {echo} end"));
            assert_eq!(
                out, "501 5.5.2 syntax error in AUTH PLAIN <redacted> end",
                "{echo}"
            );
        }
        assert_eq!(
            r.redact("535 bad s3cr3 ab"),
            "535 bad <redacted> <redacted>"
        );
        assert_eq!(r.redact("535 5.7.8 failed"), "535 5.7.8 failed");
        // Multi-byte characters next to a secret stay whole.
        r.add("pässwörd");
        assert_eq!(r.redact("é pässw é"), "é <redacted> é");
    }
}
