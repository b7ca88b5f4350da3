//! SASL mechanisms for SMTP AUTH (RFC 4954). The session runs the
//! exchange (`AUTH`, 334 challenges, 235); a mechanism only says what to
//! answer: PLAIN, LOGIN, and the OAuth2 ones, XOAUTH2 and OAUTHBEARER.
//! [`choose`] picks one for `--auth`.

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

    /// Like `secrets`, for long random ones (tokens): hidden whole and in
    /// fragments of [`Redactor::LONG_WINDOW`] characters.
    ///
    /// [`Redactor::LONG_WINDOW`]: crate::secret::Redactor::LONG_WINDOW
    fn long_secrets(&self) -> Vec<String> {
        Vec::new()
    }

    /// The initial response sent with the AUTH command, base64-encoded,
    /// if the mechanism has one.
    fn initial_response(&mut self) -> Option<Secret>;

    /// The base64-encoded answer to the server's `challenge` (the decoded
    /// text of a 334 reply); `None` cancels the exchange (`*`).
    fn respond(&mut self, challenge: &[u8]) -> Option<Secret>;

    /// The error the server explained in a challenge, once the exchange
    /// failed (XOAUTH2 and OAUTHBEARER send one as JSON, RFC 7628 3.2.2).
    fn server_error(&self) -> Option<String> {
        None
    }
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

/// The base64 of `secret` as it reads inside a longer base64 text that
/// holds it 1 or 2 bytes after a 3-byte boundary (a server quoting the
/// token in its JSON error): the characters that depend on the secret
/// alone, without the ones its neighbours change.
fn shifted_base64(secret: &str) -> Vec<String> {
    [1usize, 2]
        .iter()
        .map(|&shift| {
            let mut bytes = vec![0u8; shift];
            bytes.extend_from_slice(secret.as_bytes());
            let encoded = BASE64.encode(&bytes);
            // Skip the group the padding bytes share with the secret's
            // start, and the last group (its end depends on what follows).
            let end = encoded.len().saturating_sub(4);
            encoded.get(4..end).unwrap_or_default().to_owned()
        })
        .collect()
}

/// OAuth2 bearer token mechanisms: XOAUTH2 (Google's, also Microsoft's)
/// and OAUTHBEARER (RFC 7628). A refused token makes the server send a
/// 334 challenge holding a JSON error; the client must answer it (an
/// empty line for XOAUTH2, `%x01` for OAUTHBEARER) before the final 535.
pub struct Bearer {
    name: &'static str,
    token: Secret,
    initial: Secret,
    error: Option<String>,
}

impl Bearer {
    /// XOAUTH2: `user=U^Aauth=Bearer T^A^A`.
    pub fn xoauth2(user: &str, token: &Secret) -> Bearer {
        let raw = format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose());
        Bearer::new("XOAUTH2", token, raw)
    }

    /// OAUTHBEARER (RFC 7628 3.1): `n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A`.
    /// A `,` or `=` in the user name is escaped as the GS2 header wants.
    pub fn oauthbearer(user: &str, host: &str, port: u16, token: &Secret) -> Bearer {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let raw = format!(
            "n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
            token.expose()
        );
        Bearer::new("OAUTHBEARER", token, raw)
    }

    fn new(name: &'static str, token: &Secret, raw: String) -> Bearer {
        Bearer {
            name,
            token: token.clone(),
            initial: Secret::new(BASE64.encode(raw)),
            error: None,
        }
    }
}

impl Mechanism for Bearer {
    fn name(&self) -> &'static str {
        self.name
    }

    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }

    fn long_secrets(&self) -> Vec<String> {
        let mut secrets = password_secrets(&self.token, Some(&self.initial));
        secrets.extend(shifted_base64(self.token.expose()));
        secrets
    }

    fn initial_response(&mut self) -> Option<Secret> {
        Some(self.initial.clone())
    }

    fn respond(&mut self, challenge: &[u8]) -> Option<Secret> {
        if self.error.is_some() {
            return None; // a second challenge: nothing more to say
        }
        self.error = Some(describe_oauth_error(challenge));
        Some(Secret::new(match self.name {
            "OAUTHBEARER" => BASE64.encode([1u8]),
            _ => String::new(),
        }))
    }

    /// Always some: a server may refuse the token with a 535 at once,
    /// without the error challenge (Microsoft does), and that is a refused
    /// token all the same, not a refused password.
    fn server_error(&self) -> Option<String> {
        Some(
            self.error
                .clone()
                .unwrap_or_else(|| "none given, the server answered at once".to_owned()),
        )
    }
}

/// A server's OAuth2 error challenge, decoded, for the error line:
/// `status=401 schemes=bearer scope=...` from its JSON (status, schemes
/// and scope first), else its text as sent.
fn describe_oauth_error(challenge: &[u8]) -> String {
    const MOST: usize = 300;
    let text = String::from_utf8_lossy(challenge);
    if text.trim().is_empty() {
        return "an empty or undecodable error challenge".to_owned();
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&text) else {
        return text.trim().chars().take(MOST).collect();
    };
    let known = ["status", "schemes", "scope"];
    let mut keys: Vec<&String> = known
        .iter()
        .filter_map(|k| map.get_key_value(*k).map(|(k, _)| k))
        .collect();
    keys.extend(map.keys().filter(|k| !known.contains(&k.as_str())));
    keys.iter()
        .map(|k| match &map[k.as_str()] {
            serde_json::Value::String(v) => format!("{k}={v}"),
            v => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MOST)
        .collect()
}

/// Which mechanism to use (`--auth`, `MAILSEND_AUTH`, account `auth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMethod {
    /// The strongest both sides support: OAuth2 when a token is at hand
    /// and the server offers it (OAUTHBEARER, else XOAUTH2), else PLAIN,
    /// else LOGIN, with the password.
    #[default]
    Auto,
    Plain,
    Login,
    XOauth2,
    OAuthBearer,
}

impl AuthMethod {
    /// The names users write, as accepted by [`AuthMethod::parse`].
    pub const NAMES: &'static str = "auto, plain, login, xoauth2 or oauthbearer";

    pub fn parse(text: &str) -> Option<AuthMethod> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "auto" => AuthMethod::Auto,
            "plain" => AuthMethod::Plain,
            "login" => AuthMethod::Login,
            "xoauth2" => AuthMethod::XOauth2,
            "oauthbearer" => AuthMethod::OAuthBearer,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Auto => "auto",
            AuthMethod::Plain => "plain",
            AuthMethod::Login => "login",
            AuthMethod::XOauth2 => "xoauth2",
            AuthMethod::OAuthBearer => "oauthbearer",
        }
    }

    /// Whether this choice may use an OAuth2 token.
    pub fn may_use_token(self) -> bool {
        matches!(
            self,
            AuthMethod::Auto | AuthMethod::XOauth2 | AuthMethod::OAuthBearer
        )
    }

    /// Whether this choice may use the password.
    pub fn may_use_password(self) -> bool {
        matches!(
            self,
            AuthMethod::Auto | AuthMethod::Plain | AuthMethod::Login
        )
    }
}

/// What the client can authenticate with.
pub struct Credentials<'a> {
    pub user: &'a str,
    pub password: Option<&'a Secret>,
    pub token: Option<&'a Secret>,
    /// The server's name and port, for OAUTHBEARER.
    pub host: &'a str,
    pub port: u16,
}

/// The mechanism `method` asks for, given what the server offers and the
/// credentials at hand. A mechanism asked for by name that the server does
/// not offer is [`SmtpError::NoAuth`] (76): sending it anyway would only
/// earn a 504.
pub fn choose(
    caps: &Capabilities,
    method: AuthMethod,
    creds: &Credentials,
) -> Result<Box<dyn Mechanism>, SmtpError> {
    let offers = |name| caps.offers_auth(name);
    let missing = |wanted: &'static str| SmtpError::NoAuth {
        wanted,
        offered: caps.auth.join(" "),
    };
    let oauth = |name: &str, token: &Secret| -> Box<dyn Mechanism> {
        match name {
            "OAUTHBEARER" => Box::new(Bearer::oauthbearer(
                creds.user, creds.host, creds.port, token,
            )),
            _ => Box::new(Bearer::xoauth2(creds.user, token)),
        }
    };
    match method {
        AuthMethod::Auto => {
            if let Some(token) = creds.token {
                // The IETF standard first; a server offering both checks
                // the same token either way.
                for name in ["OAUTHBEARER", "XOAUTH2"] {
                    if offers(name) {
                        return Ok(oauth(name, token));
                    }
                }
            }
            match creds.password {
                Some(password) => password_mechanism(caps, creds.user, password),
                None => Err(missing("XOAUTH2 or OAUTHBEARER")),
            }
        }
        AuthMethod::XOauth2 | AuthMethod::OAuthBearer => {
            let name = match method {
                AuthMethod::XOauth2 => "XOAUTH2",
                _ => "OAUTHBEARER",
            };
            match (offers(name), creds.token) {
                (true, Some(token)) => Ok(oauth(name, token)),
                _ => Err(missing(name)),
            }
        }
        AuthMethod::Plain | AuthMethod::Login => {
            let (name, password) = match method {
                AuthMethod::Plain => ("PLAIN", creds.password),
                _ => ("LOGIN", creds.password),
            };
            match (offers(name), password) {
                (true, Some(p)) if name == "PLAIN" => Ok(Box::new(Plain::new(creds.user, p))),
                (true, Some(p)) => Ok(Box::new(Login::new(creds.user, p))),
                _ => Err(missing(name)),
            }
        }
    }
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
            wanted: "PLAIN or LOGIN",
            offered: caps.auth.join(" "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_challenge_that_says_nothing_is_described_as_such() {
        let token = Secret::new("ya29.tok".into());
        let mut m = Bearer::xoauth2("me@example.com", &token);
        // Not base64 (the session hands over nothing), or only blanks.
        m.respond(b"");
        let said = m.server_error().unwrap_or_default();
        assert!(said.contains("empty"), "{said:?}");
        let mut m = Bearer::oauthbearer("me@example.com", "h", 587, &token);
        m.respond(b"  \r\n");
        let said = m.server_error().unwrap_or_default();
        assert!(said.contains("empty"), "{said:?}");
    }
}
