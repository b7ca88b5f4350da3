//! `mailsend auth login|status|logout|refresh`: the command line of the
//! built-in OAuth2 sign-in. The sign-in itself (flows, token file,
//! refresh) is `oauth/`, which knows nothing of flags or exit codes.

use anyhow::Result;

use crate::cli::AuthAction;
use crate::config::Settings;
use crate::exit::Exit;
use crate::oauth;

/// `mailsend auth ...`.
pub fn command(action: &AuthAction) -> Result<Exit> {
    let settings = Settings::resolve(&action.location().clone().into(), None)?;
    let cfg = &settings.oauth;
    let timeout = settings.timeout;
    match action {
        AuthAction::Login {
            device, no_browser, ..
        } => oauth::login(cfg, timeout, *device, *no_browser)?,
        AuthAction::Status { .. } => oauth::status(cfg)?,
        AuthAction::Logout { .. } => oauth::logout(cfg, timeout)?,
        AuthAction::Refresh { if_needed, .. } => {
            match if_needed {
                true => oauth::access_token(cfg, timeout)?,
                false => oauth::force_refresh(cfg, timeout)?,
            };
            oauth::status(cfg)?;
        }
    }
    Ok(Exit::Ok)
}
