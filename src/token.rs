//! Where OAuth2 access tokens come from, for XOAUTH2 and OAUTHBEARER.
//!
//! Either a command (`oauth_token_command`, `MAILSEND_OAUTH_TOKEN_COMMAND`,
//! `--oauth-token-command`): any program that prints a token (oama,
//! pizauth, a cloud CLI), run like the password command; or mailsend's
//! own sign-in (`mailsend auth login`, src/oauth/): the stored access
//! token, refreshed when it runs out.

use std::time::Duration;

use anyhow::Result;

use crate::oauth::{self, OAuthSettings};
use crate::password::run_secret_command;
use crate::secret::Secret;

/// A source of OAuth2 access tokens.
#[derive(Clone, Debug)]
pub enum TokenSource {
    /// A command whose standard output (trimmed) is the access token.
    Command(String),
    /// The account's own sign-in (its `oauth_*` keys).
    BuiltIn(Box<OAuthSettings>),
}

/// An access token from `source`, within `timeout`. A failing command is
/// 78 with a hint naming the setting to check; the built-in sign-in's
/// failures are classed by their kind (`oauth::OAuthError`) (78 not signed in, 77
/// revoked, 75 provider unreachable).
pub fn access_token(source: &TokenSource, timeout: Duration) -> Result<Secret> {
    obtain(source, timeout, false)
}

/// After the server refused the token (it may have expired early, or
/// been revoked): the command runs again; the built-in sign-in refreshes
/// whatever the stored expiry says.
pub fn fresh_token(source: &TokenSource, timeout: Duration) -> Result<Secret> {
    obtain(source, timeout, true)
}

fn obtain(source: &TokenSource, timeout: Duration, fresh: bool) -> Result<Secret> {
    match source {
        TokenSource::BuiltIn(cfg) => Ok(match fresh {
            true => oauth::force_refresh(cfg, timeout)?,
            false => oauth::access_token(cfg, timeout)?,
        }),
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
