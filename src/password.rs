//! The password command (`password_command`, `MAILSEND_PASSWORD_COMMAND`):
//! run bounded by the timeout, cron-safe, its output a [`Secret`]. The
//! OAuth2 token command (`token.rs`) runs the same way.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::exit::Failure;
use crate::secret::Secret;

/// Where a password (or an OAuth2 client secret) comes from; it is only
/// read when it is needed.
#[derive(Clone, Debug)]
pub enum PasswordSource {
    Value(Secret),
    Command(String),
}

/// Runs the password command (`sh -c`), bounded by `timeout`; its standard
/// output, without trailing white space, is the password.
pub fn run_password_command(command: &str, timeout: Duration) -> Result<Secret> {
    run_secret_command(
        command,
        timeout,
        "password command",
        "check MAILSEND_PASSWORD_COMMAND / --password-command",
    )
}

/// Runs a command whose output is a secret (a password, an OAuth2 access
/// token), as the password command runs: `what` names it in the error,
/// `hint` follows a failure (78).
pub fn run_secret_command(
    command: &str,
    timeout: Duration,
    what: &str,
    hint: &str,
) -> Result<Secret> {
    let fail = |why: String| Failure::config(format!("{what} failed: {why}")).with_hint(hint);
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
}
