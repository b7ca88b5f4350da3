//! OAuth2 providers: the Google and Microsoft presets, and the endpoints
//! of an account (its own keys override a preset's).

use std::fmt;

use super::{OAuthError, OAuthSettings};

/// `oauth_provider`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Google,
    Microsoft,
    Custom,
}

impl Provider {
    pub fn parse(text: &str) -> Option<Provider> {
        match text.trim().to_ascii_lowercase().as_str() {
            "google" | "gmail" => Some(Provider::Google),
            "microsoft" | "outlook" | "office365" => Some(Provider::Microsoft),
            "custom" => Some(Provider::Custom),
            _ => None,
        }
    }

    fn preset(self) -> Option<Preset> {
        match self {
            Provider::Google => Some(Preset {
                auth: "https://accounts.google.com/o/oauth2/v2/auth",
                token: "https://oauth2.googleapis.com/token",
                device: None,
                revocation: Some("https://oauth2.googleapis.com/revoke"),
                scopes: "https://mail.google.com/",
            }),
            Provider::Microsoft => Some(Preset {
                auth: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
                token: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
                device: Some("https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"),
                // Microsoft's identity platform has no RFC 7009 endpoint.
                revocation: None,
                scopes: "https://outlook.office.com/SMTP.Send offline_access",
            }),
            Provider::Custom => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Google => "google",
            Provider::Microsoft => "microsoft",
            Provider::Custom => "custom",
        })
    }
}

struct Preset {
    auth: &'static str,
    token: &'static str,
    device: Option<&'static str>,
    revocation: Option<&'static str>,
    scopes: &'static str,
}

/// Where to sign in and get tokens, checked: https, or http on loopback.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub provider: Provider,
    pub auth: Option<String>,
    pub token: String,
    pub device: Option<String>,
    pub revocation: Option<String>,
    pub scopes: Vec<String>,
}

impl Endpoints {
    pub fn resolve(cfg: &OAuthSettings) -> Result<Endpoints, OAuthError> {
        let provider = match cfg.provider {
            Some(p) => p,
            None if cfg.token_url.is_some() => Provider::Custom,
            None => {
                return Err(OAuthError::config(format!(
                    "no OAuth2 provider is configured for account {}",
                    cfg.account
                ))
                .hint("set oauth_provider (google or microsoft) and oauth_client_id in the account, or MAILSEND_OAUTH_PROVIDER and MAILSEND_OAUTH_CLIENT_ID"));
            }
        };
        let preset = provider.preset();
        let pick = |own: &Option<String>, preset: Option<&'static str>| {
            own.clone().or_else(|| preset.map(str::to_owned))
        };
        let token = pick(&cfg.token_url, preset.as_ref().map(|p| p.token)).ok_or_else(|| {
            OAuthError::config("the custom OAuth2 provider has no token endpoint")
                .hint("set oauth_token_url (MAILSEND_OAUTH_TOKEN_URL)")
        })?;
        let scopes = cfg
            .scopes
            .clone()
            .or_else(|| preset.as_ref().map(|p| p.scopes.to_owned()))
            .unwrap_or_default();
        let endpoints = Endpoints {
            provider,
            auth: pick(&cfg.auth_url, preset.as_ref().map(|p| p.auth)),
            token,
            device: pick(&cfg.device_url, preset.as_ref().and_then(|p| p.device)),
            revocation: pick(
                &cfg.revocation_url,
                preset.as_ref().and_then(|p| p.revocation),
            ),
            scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        };
        for (key, url) in [
            ("oauth_auth_url", endpoints.auth.as_deref()),
            ("oauth_token_url", Some(endpoints.token.as_str())),
            ("oauth_device_url", endpoints.device.as_deref()),
            ("oauth_revocation_url", endpoints.revocation.as_deref()),
        ] {
            if let Some(url) = url {
                check_url(key, url)?;
            }
        }
        Ok(endpoints)
    }
}

/// An endpoint must be https; plain http only on this machine (tests, a
/// local identity provider): a token must never cross a network in clear.
pub fn check_url(key: &str, url: &str) -> Result<(), OAuthError> {
    let bad = |why: &str| {
        OAuthError::config(format!("{key} {url:?} {why}"))
            .hint("use an https:// URL (http:// only on 127.0.0.1, ::1 or localhost)")
    };
    let parsed = oauth2::url::Url::parse(url).map_err(|_| bad("is not a URL"))?;
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" => match parsed.host() {
            Some(oauth2::url::Host::Domain("localhost")) => Ok(()),
            Some(oauth2::url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(oauth2::url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            _ => Err(bad("is plain http to another machine")),
        },
        _ => Err(bad("is not an https URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_may_be_plain_http() {
        assert!(check_url("k", "https://login.example.com/token").is_ok());
        assert!(check_url("k", "http://127.0.0.1:8080/token").is_ok());
        assert!(check_url("k", "http://[::1]:8080/token").is_ok());
        assert!(check_url("k", "http://localhost/token").is_ok());
        assert!(check_url("k", "http://login.example.com/token").is_err());
        assert!(check_url("k", "http://10.0.0.1/token").is_err());
        assert!(check_url("k", "ftp://example.com/").is_err());
        assert!(check_url("k", "token").is_err());
    }

    #[test]
    fn presets_and_overrides() {
        let mut cfg = OAuthSettings::for_tests(Some(Provider::Microsoft));
        let e = Endpoints::resolve(&cfg).unwrap();
        assert_eq!(
            e.scopes,
            ["https://outlook.office.com/SMTP.Send", "offline_access"]
        );
        assert!(e.device.is_some() && e.revocation.is_none());
        cfg.provider = Some(Provider::Google);
        cfg.token_url = Some("http://127.0.0.1:1/token".into());
        let e = Endpoints::resolve(&cfg).unwrap();
        assert_eq!(e.token, "http://127.0.0.1:1/token");
        assert_eq!(e.scopes, ["https://mail.google.com/"]);
        assert_eq!(
            e.revocation.as_deref(),
            Some("https://oauth2.googleapis.com/revoke")
        );
        cfg.provider = None;
        cfg.token_url = None;
        assert!(Endpoints::resolve(&cfg).is_err());
    }
}
