//! Where OAuth2 access tokens come from, for XOAUTH2 and OAUTHBEARER.
//!
//! Today a command (`oauth_token_command`, `MAILSEND_OAUTH_TOKEN_COMMAND`,
//! `--oauth-token-command`): any program that prints a token (oama,
//! pizauth, a cloud CLI), run like the password command. Another source
//! (mailsend's own sign-in and refresh) plugs in as a variant here.

use std::time::Duration;

use anyhow::Result;

use crate::password::run_secret_command;
use crate::secret::Secret;

/// A source of OAuth2 access tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// A command whose standard output (trimmed) is the access token.
    Command(String),
}

/// A fresh access token from `source`, within `timeout`. A failure is 78
/// with a hint naming the setting to check.
pub fn access_token(source: &TokenSource, timeout: Duration) -> Result<Secret> {
    match source {
        TokenSource::Command(command) => run_secret_command(
            command,
            timeout,
            "OAuth2 token command",
            "check MAILSEND_OAUTH_TOKEN_COMMAND / --oauth-token-command (it must print an access token)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_command_runs_like_the_password_command() {
        let source = TokenSource::Command("printf 'ya29.tok\\n'".into());
        let token = access_token(&source, Duration::from_secs(5)).unwrap();
        assert_eq!(token.expose(), "ya29.tok");
        let err = access_token(
            &TokenSource::Command("exit 2".into()),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Exit::Config);
        assert!(
            err.to_string().starts_with("OAuth2 token command failed"),
            "{err}"
        );
        assert!(
            crate::exit::hint_for(&err).is_some_and(|h| h.contains("MAILSEND_OAUTH_TOKEN_COMMAND"))
        );
        let err = access_token(
            &TokenSource::Command("sleep 5".into()),
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no answer"), "{err}");
    }
}
