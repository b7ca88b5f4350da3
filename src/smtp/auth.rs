//! SASL mechanisms for SMTP AUTH (RFC 4954). The session runs the
//! exchange (`AUTH`, 334 challenges, 235); a mechanism only says what to
//! answer, so a new one (XOAUTH2, OAUTHBEARER) plugs in without touching
//! the dialogue.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::caps::Capabilities;
use super::error::SmtpError;
use crate::secret::Secret;

/// One SASL mechanism, as the session drives it.
pub trait Mechanism {
    /// The name sent with AUTH, e.g. `PLAIN`.
    fn name(&self) -> &'static str;

    /// Everything this mechanism will send that must never be shown: the
    /// session hides these (and fragments of them) from every reply, the
    /// transcript and every error.
    fn secrets(&self) -> Vec<String>;

    /// The initial response sent with the AUTH command, base64-encoded,
    /// if the mechanism has one.
    fn initial_response(&mut self) -> Option<Secret>;

    /// The base64-encoded answer to the server's `challenge` (the decoded
    /// text of a 334 reply); `None` cancels the exchange (`*`).
    fn respond(&mut self, challenge: &[u8]) -> Option<Secret>;
}

/// PLAIN (RFC 4616): user and password in the initial response.
pub struct Plain {
    token: Secret,
    password: Secret,
}

impl Plain {
    pub fn new(user: &str, password: &Secret) -> Plain {
        Plain {
            token: Secret::new(BASE64.encode(format!("\0{user}\0{}", password.expose()))),
            password: password.clone(),
        }
    }
}

impl Mechanism for Plain {
    fn name(&self) -> &'static str {
        "PLAIN"
    }

    fn secrets(&self) -> Vec<String> {
        password_secrets(&self.password, Some(&self.token))
    }

    fn initial_response(&mut self) -> Option<Secret> {
        Some(self.token.clone())
    }

    fn respond(&mut self, _challenge: &[u8]) -> Option<Secret> {
        None // everything was in the initial response
    }
}

/// LOGIN (draft-murchison-sasl-login): user, then password, each asked
/// for by a 334 challenge.
pub struct Login {
    user: String,
    password: Secret,
    step: u8,
}

impl Login {
    pub fn new(user: &str, password: &Secret) -> Login {
        Login {
            user: user.to_owned(),
            password: password.clone(),
            step: 0,
        }
    }
}

impl Mechanism for Login {
    fn name(&self) -> &'static str {
        "LOGIN"
    }

    fn secrets(&self) -> Vec<String> {
        password_secrets(&self.password, None)
    }

    fn initial_response(&mut self) -> Option<Secret> {
        None
    }

    fn respond(&mut self, _challenge: &[u8]) -> Option<Secret> {
        self.step += 1;
        match self.step {
            1 => Some(Secret::new(BASE64.encode(&self.user))),
            2 => Some(Secret::new(BASE64.encode(self.password.expose()))),
            _ => None,
        }
    }
}

/// The password, raw and base64-encoded, and the token carrying it.
fn password_secrets(password: &Secret, token: Option<&Secret>) -> Vec<String> {
    let mut secrets = vec![
        password.expose().to_owned(),
        BASE64.encode(password.expose()),
    ];
    secrets.extend(token.map(|t| t.expose().to_owned()));
    secrets
}

/// The password mechanism to use with this server: PLAIN when offered
/// (one round trip), else LOGIN.
pub fn password_mechanism(
    caps: &Capabilities,
    user: &str,
    password: &Secret,
) -> Result<Box<dyn Mechanism>, SmtpError> {
    if caps.offers_auth("PLAIN") {
        Ok(Box::new(Plain::new(user, password)))
    } else if caps.offers_auth("LOGIN") {
        Ok(Box::new(Login::new(user, password)))
    } else {
        Err(SmtpError::NoAuth {
            offered: caps.auth.join(" "),
        })
    }
}
