//! mailsend's own OAuth2 sign-in (`mailsend auth`) and the token source
//! for sends.
//!
//! `provider.rs` knows the Google and Microsoft presets and checks
//! endpoints, `http.rs` is the HTTPS client the `oauth2` crate calls,
//! `store.rs` keeps the tokens in a private file, `flow.rs` runs the
//! sign-in (authorization code with PKCE and a loopback redirect, or the
//! device code). For sends the one entry point is [`access_token`] (and
//! [`force_refresh`] once after a 535 for an expired token). Every error
//! is an [`OAuthError`], whose kind sets the exit code it leaves with.

mod flow;
pub use flow::login;
mod http;
mod provider;
mod store;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, ErrorResponseType, HttpRequest, HttpResponse, RedirectUrl,
    RefreshToken, RequestTokenError, RevocationUrl, StandardErrorResponse, TokenResponse, TokenUrl,
};

use crate::exit::{Exit, Failure};
use crate::password::PasswordSource;
use crate::secret::{Redactor, Secret};
use crate::term::outln;

use provider::Endpoints;
pub use provider::Provider;

/// The account name used for the token file when no config-file account
/// is in use (settings from flags, variables or `.env` only).
pub const DEFAULT_ACCOUNT: &str = "default";

/// An access token is refreshed when it has less than this left.
const MARGIN_SECS: u64 = 60;

/// The OAuth2 keys of the account in use (`oauth_*`, `MAILSEND_OAUTH_*`),
/// as `config.rs` found them; presets apply when they are used.
#[derive(Debug, Clone, Default)]
pub struct OAuthSettings {
    /// The account name (the token file's default name).
    pub account: String,
    pub provider: Option<Provider>,
    pub client_id: Option<String>,
    pub client_secret: Option<PasswordSource>,
    pub auth_url: Option<String>,
    pub token_url: Option<String>,
    pub device_url: Option<String>,
    pub revocation_url: Option<String>,
    /// Space-separated.
    pub scopes: Option<String>,
    /// `oauth_token_file`, else the default under XDG_STATE_HOME or HOME;
    /// `None` when neither is set.
    pub token_file: Option<PathBuf>,
    /// `ca_file`: trusted for the OAuth2 endpoints too.
    pub ca_file: Option<PathBuf>,
}

impl OAuthSettings {
    #[cfg(test)]
    pub fn for_tests(provider: Option<Provider>) -> Self {
        OAuthSettings {
            account: "test".into(),
            provider,
            client_id: Some("client".into()),
            ..Default::default()
        }
    }

    /// Whether the account uses mailsend's own OAuth2 sign-in (any of
    /// provider, client id or token endpoint is set): then, without a
    /// token command, it is the send's token source (`config.rs`).
    pub fn is_configured(&self) -> bool {
        self.provider.is_some() || self.client_id.is_some() || self.token_url.is_some()
    }

    fn token_path(&self) -> Result<&Path, OAuthError> {
        self.token_file.as_deref().ok_or_else(|| {
            OAuthError::config(format!(
                "no place to keep the OAuth2 tokens of account {}: neither XDG_STATE_HOME nor HOME is set",
                self.account
            ))
            .hint("set oauth_token_file in the account (or MAILSEND_OAUTH_TOKEN_FILE), e.g. under /var/lib")
        })
    }

    fn login_hint(&self) -> String {
        if self.account == DEFAULT_ACCOUNT {
            "run `mailsend auth login`".to_owned()
        } else {
            format!("run `mailsend auth login --account {}`", self.account)
        }
    }
}

/// What went wrong, as far as the exit code is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthKind {
    /// No stored tokens: `auth login` was never run (78).
    NotSignedIn,
    /// The provider no longer accepts the refresh token (77).
    Revoked,
    /// The provider or the user refused (access_denied, wrong state) (77).
    Refused,
    /// The endpoint's certificate is not trusted (77).
    Untrusted,
    /// A setting is missing or wrong (78).
    Config,
    /// Unreachable, timed out, busy: may work later (75).
    Network,
    /// An answer that is not OAuth2 (76).
    Protocol,
    /// The token file could not be read or written (75).
    Io,
}

/// An OAuth2 failure: one line, an optional hint; never a token. It
/// becomes an `anyhow::Error` only as an `exit::Failure` carrying the exit
/// code of its kind (no `std::error::Error` impl, so that no path can
/// turn it into an error without one).
#[derive(Debug)]
pub struct OAuthError {
    pub kind: OAuthKind,
    pub message: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<OAuthError> for anyhow::Error {
    fn from(e: OAuthError) -> anyhow::Error {
        // PRODUCT.md "Authentication": not signed in or a bad setting is
        // 78; a revoked sign-in, a refusal or an untrusted endpoint 77.
        let exit = match e.kind {
            OAuthKind::NotSignedIn | OAuthKind::Config => Exit::Config,
            OAuthKind::Revoked | OAuthKind::Refused | OAuthKind::Untrusted => Exit::NoPerm,
            OAuthKind::Network | OAuthKind::Io => Exit::TempFail,
            OAuthKind::Protocol => Exit::Protocol,
        };
        let failure = Failure::new(exit, e.message);
        match e.hint {
            Some(hint) => failure.with_hint(hint).into(),
            None => failure.into(),
        }
    }
}

impl OAuthError {
    pub fn new(kind: OAuthKind, message: impl Into<String>) -> Self {
        OAuthError {
            kind,
            message: message.into(),
            hint: None,
        }
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(OAuthKind::Config, message)
    }
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(OAuthKind::Io, message)
    }
    pub fn network(message: impl Into<String>) -> Self {
        Self::new(OAuthKind::Network, message)
    }
    /// A configuration error from the shared rules (`accounts`,
    /// `password`), its line and hint kept.
    pub fn from_setting(e: anyhow::Error) -> Self {
        let hint = crate::exit::hint_for(&e);
        OAuthError {
            hint,
            ..Self::config(format!("{e:#}"))
        }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The access token for a send: the stored one while it has more than a
/// minute left, else a fresh one from the refresh token (a rotated
/// refresh token is saved). No stored sign-in is 78, a revoked one 77.
pub fn access_token(cfg: &OAuthSettings, timeout: Duration) -> Result<Secret, OAuthError> {
    obtain(cfg, timeout, false)
}

/// A fresh access token whatever the stored one's expiry says: for the
/// one retry after the server refused the token (535) as expired.
pub fn force_refresh(cfg: &OAuthSettings, timeout: Duration) -> Result<Secret, OAuthError> {
    obtain(cfg, timeout, true)
}

fn fresh(tokens: &store::Tokens) -> Option<Secret> {
    let left = tokens.expires_at.unwrap_or(0);
    let token = tokens.access_token.as_ref()?;
    (left > store::now() + MARGIN_SECS).then(|| Secret::new(token.clone()))
}

fn not_signed_in(cfg: &OAuthSettings, path: &Path) -> OAuthError {
    OAuthError::new(
        OAuthKind::NotSignedIn,
        format!(
            "account {} is not signed in with OAuth2 (no tokens in {})",
            cfg.account,
            path.display()
        ),
    )
    .hint(cfg.login_hint())
}

fn obtain(cfg: &OAuthSettings, timeout: Duration, force: bool) -> Result<Secret, OAuthError> {
    let path = cfg.token_path()?;
    let before = store::load(path)?.ok_or_else(|| not_signed_in(cfg, path))?;
    if !force && let Some(token) = fresh(&before) {
        return Ok(token);
    }
    // Under the lock, read again: another process may have refreshed
    // (and rotated the refresh token) meanwhile.
    let _lock = store::lock(path, timeout)?;
    let mut tokens = store::load(path)?.ok_or_else(|| not_signed_in(cfg, path))?;
    if let Some(token) = fresh(&tokens)
        && (!force || tokens.access_token != before.access_token)
    {
        return Ok(token);
    }
    let refresh = tokens.refresh_token.clone().ok_or_else(|| {
        OAuthError::new(
            OAuthKind::NotSignedIn,
            format!(
                "no refresh token is stored for account {}: its access token cannot be renewed",
                cfg.account
            ),
        )
        .hint(cfg.login_hint())
    })?;
    let endpoints = Endpoints::resolve(cfg)?;
    let client = Client::new(cfg, &endpoints, None, timeout)?;
    client.hide(&refresh);
    let answer = client
        .inner
        .exchange_refresh_token(&RefreshToken::new(refresh.clone()))
        .request(&|r| client.call(r))
        .map_err(|e| client.classify(e, "refreshing the access token", cfg))?;
    let access = answer.access_token().secret().clone();
    tokens.access_token = Some(access.clone());
    tokens.expires_at = Some(expires_at(answer.expires_in()));
    if let Some(rotated) = answer.refresh_token() {
        tokens.refresh_token = Some(rotated.secret().clone());
    }
    if let Some(scopes) = answer.scopes() {
        tokens.scopes = scopes.iter().map(|s| s.to_string()).collect();
    }
    store::save(path, &tokens)?;
    Ok(Secret::new(access))
}

/// The longest an access token is trusted to live, whatever the provider
/// says (an `expires_in` near u64::MAX must not overflow, nor make a token
/// last forever).
const MAX_LIFETIME_SECS: u64 = 366 * 24 * 3600;

/// When an access token runs out (Unix seconds): as the provider said,
/// else in an hour; at most [`MAX_LIFETIME_SECS`] from now.
fn expires_at(expires_in: Option<Duration>) -> u64 {
    let secs = expires_in.map_or(3600, |d| d.as_secs());
    store::now().saturating_add(secs.min(MAX_LIFETIME_SECS))
}

type Inner =
    BasicClient<EndpointMaybeSet, EndpointMaybeSet, EndpointNotSet, EndpointMaybeSet, EndpointSet>;

/// An `oauth2` client for the account, with its HTTP client and the
/// secrets to keep out of any message.
struct Client {
    inner: Inner,
    http: http::Http,
    /// The client secret, and the grant of the request under way (refresh
    /// token, code, verifier, device code): a provider may quote them.
    redactor: std::cell::RefCell<Redactor>,
}

impl Client {
    fn new(
        cfg: &OAuthSettings,
        endpoints: &Endpoints,
        redirect: Option<String>,
        timeout: Duration,
    ) -> Result<Client, OAuthError> {
        let client_id = cfg.client_id.clone().ok_or_else(|| {
            OAuthError::config(format!(
                "no OAuth2 client id is configured for account {}",
                cfg.account
            ))
            .hint("set oauth_client_id in the account (or MAILSEND_OAUTH_CLIENT_ID); docs/GUIDE.md#oauth2-sign-in says how to register one")
        })?;
        let url = |what: &str, e| OAuthError::config(format!("invalid {what}: {e}"));
        let mut inner = BasicClient::new(ClientId::new(client_id))
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri_option(
                endpoints
                    .auth
                    .clone()
                    .map(AuthUrl::new)
                    .transpose()
                    .map_err(|e| url("oauth_auth_url", e))?,
            )
            .set_token_uri(
                TokenUrl::new(endpoints.token.clone()).map_err(|e| url("oauth_token_url", e))?,
            )
            .set_device_authorization_url_option(
                endpoints
                    .device
                    .clone()
                    .map(DeviceAuthorizationUrl::new)
                    .transpose()
                    .map_err(|e| url("oauth_device_url", e))?,
            )
            .set_revocation_url_option(
                endpoints
                    .revocation
                    .clone()
                    .map(RevocationUrl::new)
                    .transpose()
                    .map_err(|e| url("oauth_revocation_url", e))?,
            );
        let mut redactor = Redactor::default();
        if let Some(redirect) = redirect {
            inner = inner
                .set_redirect_uri(RedirectUrl::new(redirect).map_err(|e| url("redirect URL", e))?);
        }
        if let Some(source) = &cfg.client_secret {
            let secret = match source {
                PasswordSource::Value(s) => s.clone(),
                PasswordSource::Command(c) => client_secret_command(c, timeout)?,
            };
            redactor.add(secret.expose());
            inner = inner.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        Ok(Client {
            inner,
            http: http::Http {
                ca_file: cfg.ca_file.clone(),
                timeout,
                tls: std::cell::OnceCell::new(),
            },
            redactor: std::cell::RefCell::new(redactor),
        })
    }

    /// Hides `secret` (a grant sent to the provider) from its answers.
    fn hide(&self, secret: &str) {
        self.redactor
            .borrow_mut()
            .add_with_window(secret, Redactor::LONG_WINDOW);
    }

    /// One HTTP exchange; a busy or failing server (429, 5xx) is a
    /// temporary failure, whatever its body says.
    fn call(&self, request: HttpRequest) -> Result<HttpResponse, http::HttpError> {
        let host = request.uri().host().unwrap_or_default().to_owned();
        let response = self.http.call(request)?;
        let status = response.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(http::HttpError {
                kind: http::HttpFailure::Network,
                message: format!("{host} answered HTTP {status}"),
            });
        }
        if (300..400).contains(&status) {
            // Never followed: the grant would go wherever it points.
            let to = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    format!(
                        " to {}",
                        crate::term::printable(&v.chars().take(200).collect::<String>())
                    )
                })
                .unwrap_or_default();
            return Err(http::HttpError {
                kind: http::HttpFailure::Protocol,
                message: format!(
                    "{host} answered HTTP {status}, a redirect{to}, which mailsend does not follow: check the endpoint URL"
                ),
            });
        }
        Ok(response)
    }

    /// The one place where a failed OAuth2 request gets its kind.
    fn classify<T: ErrorResponseType + AsRef<str> + std::fmt::Display + 'static>(
        &self,
        error: RequestTokenError<http::HttpError, StandardErrorResponse<T>>,
        doing: &str,
        cfg: &OAuthSettings,
    ) -> OAuthError {
        match error {
            RequestTokenError::ServerResponse(answer) => {
                let code = answer.error().as_ref().to_owned();
                let said = match answer.error_description() {
                    Some(d) => format!("{code}: {d}"),
                    None => code.clone(),
                };
                // The provider's words, on one line, with nothing it
                // quoted of what was sent, and no terminal controls.
                let said: String = crate::term::printable(
                    &self
                        .redactor
                        .borrow()
                        .redact(said.lines().next().unwrap_or("")),
                )
                .chars()
                .take(300)
                .collect();
                let (kind, hint) = match code.as_str() {
                    "invalid_grant" => (
                        OAuthKind::Revoked,
                        Some(format!(
                            "the sign-in was revoked or has expired: {} again",
                            cfg.login_hint()
                        )),
                    ),
                    "access_denied" => (OAuthKind::Refused, None),
                    "expired_token" => (
                        OAuthKind::Network,
                        Some(
                            "the code expired before the sign-in was completed; try again"
                                .to_owned(),
                        ),
                    ),
                    "invalid_client" | "unauthorized_client" => (
                        OAuthKind::Config,
                        Some(
                            "check oauth_client_id and oauth_client_secret (or its command)"
                                .to_owned(),
                        ),
                    ),
                    "invalid_scope" | "invalid_request" | "unsupported_grant_type" => (
                        OAuthKind::Config,
                        Some("check the account's oauth_* settings".to_owned()),
                    ),
                    _ => (OAuthKind::Protocol, None),
                };
                let e = OAuthError::new(kind, format!("{doing}: the provider refused: {said}"));
                match hint {
                    Some(h) => e.hint(h),
                    None => e,
                }
            }
            RequestTokenError::Request(e) => {
                let kind = match e.kind {
                    http::HttpFailure::Untrusted => OAuthKind::Untrusted,
                    http::HttpFailure::Network => OAuthKind::Network,
                    http::HttpFailure::Protocol => OAuthKind::Protocol,
                    http::HttpFailure::Config => OAuthKind::Config,
                };
                let error = OAuthError::new(kind, format!("{doing}: {}", e.message));
                if kind == OAuthKind::Untrusted {
                    error.hint(
                        "for a private identity provider, add its CA to ca_file (MAILSEND_CA_FILE)",
                    )
                } else {
                    error
                }
            }
            RequestTokenError::Parse(..) => OAuthError::new(
                OAuthKind::Protocol,
                format!("{doing}: the provider's answer is not an OAuth2 token response"),
            ),
            RequestTokenError::Other(why) => {
                OAuthError::new(OAuthKind::Protocol, format!("{doing}: {why}"))
            }
        }
    }
}

/// `oauth_client_secret_command`, run like the password command.
fn client_secret_command(command: &str, timeout: Duration) -> Result<Secret, OAuthError> {
    crate::password::run_secret_command(
        command,
        timeout,
        "oauth_client_secret_command",
        "check oauth_client_secret_command (MAILSEND_OAUTH_CLIENT_SECRET_COMMAND)",
    )
    .map_err(OAuthError::from_setting)
}

fn when(secs: u64) -> String {
    // 9999-12-31T23:59:59Z: RFC 3339 has no later time (a token file may
    // hold any number).
    let at = std::time::UNIX_EPOCH + Duration::from_secs(secs.min(253_402_300_799));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `auth status`: what is stored, never a token.
/// `mailsend auth status`: what is stored, never a token.
pub fn status(cfg: &OAuthSettings) -> Result<(), OAuthError> {
    let path = cfg.token_path()?;
    let tokens = store::load(path)?.ok_or_else(|| not_signed_in(cfg, path))?;
    let now = store::now();
    let access = match (&tokens.access_token, tokens.expires_at) {
        (Some(_), Some(at)) if at > now => format!(
            "valid until {} (in {})",
            when(at),
            humantime::format_duration(Duration::from_secs(at - now))
        ),
        (Some(_), Some(at)) => format!("expired at {}", when(at)),
        (Some(_), None) => "stored, expiry unknown".to_owned(),
        (None, _) => "none".to_owned(),
    };
    let refresh = if tokens.refresh_token.is_some() {
        "stored"
    } else {
        "not stored"
    };
    outln!("account:       {}", cfg.account);
    // Both came from the file (the scopes from the provider's answer).
    let printable = crate::term::printable;
    outln!("provider:      {}", printable(&tokens.provider));
    outln!("scopes:        {}", printable(&tokens.scopes.join(" ")));
    outln!("access token:  {access}");
    outln!("refresh token: {refresh}");
    outln!("token file:    {}", path.display());
    if tokens.refresh_token.is_none() && fresh(&tokens).is_none() {
        return Err(OAuthError::new(
            OAuthKind::NotSignedIn,
            format!(
                "account {} has no usable OAuth2 sign-in (no refresh token, and the access token has run out)",
                cfg.account
            ),
        )
        .hint(cfg.login_hint()));
    }
    Ok(())
}

/// `auth logout`: revoke the refresh token where the provider can, then
/// delete the file; says what was done.
/// `mailsend auth logout`: revoke where the provider can, then delete.
pub fn logout(cfg: &OAuthSettings, timeout: Duration) -> Result<(), OAuthError> {
    let path = cfg.token_path()?;
    let Some(tokens) = store::load(path)? else {
        outln!(
            "account {} has no stored OAuth2 tokens ({}): nothing to do",
            cfg.account,
            path.display()
        );
        return Ok(());
    };
    let revoked = match &tokens.refresh_token {
        None => Ok("no refresh token was stored, nothing to revoke".to_owned()),
        Some(refresh) => revoke(cfg, refresh, timeout),
    };
    store::remove(path)?;
    outln!(
        "deleted the stored tokens of account {} ({})",
        cfg.account,
        path.display()
    );
    match revoked {
        Ok(what) => {
            outln!("{what}");
            Ok(())
        }
        Err(e) => Err(OAuthError {
            message: format!("the tokens were deleted, but {}", e.message),
            ..e
        }),
    }
}

fn revoke(cfg: &OAuthSettings, refresh: &str, timeout: Duration) -> Result<String, OAuthError> {
    let endpoints = Endpoints::resolve(cfg)?;
    if endpoints.revocation.is_none() {
        return Ok(format!(
            "{} has no revocation endpoint: the refresh token stays valid there until it expires or you remove mailsend's access in the account's security settings",
            endpoints.provider
        ));
    }
    let client = Client::new(cfg, &endpoints, None, timeout)?;
    client.hide(refresh);
    let token = oauth2::StandardRevocableToken::RefreshToken(RefreshToken::new(refresh.to_owned()));
    client
        .inner
        .revoke_token(token)
        .map_err(|e| OAuthError::config(format!("cannot revoke: {e}")))?
        .request(&|r| client.call(r))
        .map_err(|e| client.classify(e, "revoking the refresh token", cfg))?;
    Ok(format!(
        "revoked the refresh token at {}",
        endpoints.provider
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{code_for, hint_for};

    #[test]
    fn oauth_failures_follow_the_contract() {
        let code = |kind| {
            let err: anyhow::Error = OAuthError::new(kind, "x").into();
            code_for(&err.context("send"))
        };
        assert_eq!(code(OAuthKind::NotSignedIn), Exit::Config);
        assert_eq!(code(OAuthKind::Config), Exit::Config);
        assert_eq!(code(OAuthKind::Revoked), Exit::NoPerm);
        assert_eq!(code(OAuthKind::Refused), Exit::NoPerm);
        assert_eq!(code(OAuthKind::Untrusted), Exit::NoPerm);
        assert_eq!(code(OAuthKind::Network), Exit::TempFail);
        assert_eq!(code(OAuthKind::Io), Exit::TempFail);
        assert_eq!(code(OAuthKind::Protocol), Exit::Protocol);
        let err: anyhow::Error = OAuthError::new(OAuthKind::Revoked, "x")
            .hint("log in")
            .into();
        assert_eq!(hint_for(&err).as_deref(), Some("log in"));
        assert_eq!(format!("{err:#}"), "x");
    }
}
