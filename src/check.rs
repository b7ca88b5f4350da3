//! `mailsend check`: connects as a send would (same settings, same TLS
//! and credentials) and reports each step in plain words, or as one JSON
//! object: the addresses of the host, the greeting, what the server offers
//! in clear and under TLS, the TLS session and the server's certificate
//! (described even when it is refused), the AUTH mechanisms and whether
//! the login is accepted. Never sends MAIL: the session ends with QUIT
//! right after AUTH.
//!
//! The exit code is the one a send would have had at the first failing
//! step (`exit.rs`); a certificate that expires within
//! [`EXPIRY_WARNING_DAYS`] is a warning. When a step fails the way a port
//! mix-up does (no greeting on a STARTTLS port, a TLS handshake that meets
//! a greeting in clear), a second connection finds out what the server
//! speaks, and the hint names the setting to use.

use std::time::SystemTime;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{CheckArgs, Delivery, ServerArgs};
use crate::config::TokenSource;
use crate::config::{Settings, TlsMode};
use crate::deliver::login_secrets;
use crate::exit::{self, Exit, Failure};
use crate::oauth;
use crate::smtp::{
    self, CertSummary, Client, Credentials, Endpoint, SmtpError, Stage, TlsConfig, TlsInfo, Trace,
    rfc3339,
};
use crate::term::{errln, outln, printable};

/// A certificate that expires within this many days is a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

const DAY: i64 = 24 * 3600;

/// What `--json` prints: one object, also when a step failed.
#[derive(Debug, Default, Serialize)]
struct Report {
    host: Option<String>,
    port: Option<u16>,
    /// `starttls`, `tls` or `none`, as configured.
    tls_mode: Option<&'static str>,
    addresses: Vec<String>,
    greeting: Option<String>,
    /// What EHLO offered in clear, before STARTTLS (`null` without it).
    capabilities_before_tls: Option<Vec<String>>,
    /// What EHLO offered last: under TLS, unless the mode is `none`.
    capabilities: Option<Vec<String>>,
    tls: Option<TlsReport>,
    certificate: Option<CertReport>,
    /// Every certificate the server presented, its own first.
    chain: Vec<ChainEntry>,
    /// The subject of the configured client certificate, presented to a
    /// server that asks for one.
    client_certificate: Option<String>,
    auth: AuthReport,
    warnings: Vec<String>,
    errors: Vec<String>,
    /// What to change, when a step failed.
    hint: Option<String>,
    ok: bool,
    exit_code: u8,
}

#[derive(Debug, Serialize)]
struct TlsReport {
    version: String,
    cipher: String,
}

#[derive(Debug, Serialize)]
struct CertReport {
    subject: String,
    issuer: String,
    /// subjectAltName DNS names and IP addresses.
    names: Vec<String>,
    not_before: Option<String>,
    not_after: Option<String>,
    /// Whole days until notAfter (negative once expired).
    days_left: Option<i64>,
    /// Seconds until notAfter, for the human report.
    #[serde(skip)]
    seconds_left: Option<i64>,
    verified: bool,
    /// Why verification refused it.
    error: Option<String>,
    sha256: String,
}

#[derive(Debug, Serialize)]
struct ChainEntry {
    subject: String,
    issuer: String,
    not_after: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct AuthReport {
    offered: Vec<String>,
    /// The mechanism mailsend uses with the configured credentials;
    /// `null` without credentials or when none offered fits.
    chosen: Option<&'static str>,
    /// Whether the credentials were accepted; `null` when not tried.
    accepted: Option<bool>,
    /// The server put the login off (4xx): neither accepted nor refused.
    #[serde(skip)]
    unsettled: bool,
}

/// A failed step: the error (its exit code comes from its type) and the
/// hint to show, when a port mix-up explains it better than the error's own.
struct Failed {
    error: anyhow::Error,
    hint: Option<String>,
}

impl<E: Into<anyhow::Error>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed {
            error: e.into(),
            hint: None,
        }
    }
}

/// `mailsend check`.
pub fn run(args: &CheckArgs) -> Result<Exit> {
    let server = ServerArgs::from_parts(
        Delivery::default(),
        args.connection.clone(),
        args.location.clone(),
    );
    let mut report = Report::default();
    let outcome = check(&server, args.verbose, &mut report);
    let code = match &outcome {
        Ok(()) => Exit::Ok,
        Err(failed) => exit::code_for(&failed.error),
    };
    report.ok = outcome.is_ok();
    report.exit_code = code as u8;
    if let Err(failed) = &outcome {
        report.errors.push(format!("{:#}", failed.error));
        report.hint = failed
            .hint
            .clone()
            .or_else(|| exit::hint_for(&failed.error));
    }
    if args.json {
        match serde_json::to_string(&report) {
            Ok(line) => outln!("{line}"),
            Err(e) => errln!("mailsend: warning: cannot write the report: {e}"),
        }
    } else {
        print_human(&report);
    }
    for warning in &report.warnings {
        errln!("mailsend: warning: {warning}");
    }
    if let Some(error) = report.errors.first() {
        errln!("mailsend: error: {error}");
        if let Some(hint) = &report.hint {
            errln!("mailsend: hint: {hint}");
        }
    }
    Ok(code)
}

fn check(server: &ServerArgs, verbose: bool, r: &mut Report) -> Result<(), Failed> {
    let settings = Settings::resolve(server, None)?;
    r.host.clone_from(&settings.host);
    r.port = Some(settings.port);
    r.tls_mode = Some(mode_name(settings.tls));
    let host = settings.host.as_deref().ok_or_else(|| {
        Failure::config("no SMTP server configured").with_hint(
            "set MAILSEND_HOST (environment or .env), pass --host, or add a config file account",
        )
    })?;
    // A sign-in the provider no longer accepts (a revoked or expired
    // refresh token) is credentials refused: the server is still checked,
    // and the report says `accepted: false` at the login step. Anything
    // else that stops a send before it connects stops the check here.
    let secrets = match sign_in_revoked(&settings)? {
        Some(revoked) => Err(revoked),
        None => Ok(login_secrets(&settings)?),
    };
    let tls = match settings.tls {
        TlsMode::None => None,
        _ => Some(
            TlsConfig::new(settings.ca_file.as_deref())?
                .with_client(crate::client_cert::load(&settings)?),
        ),
    };
    if let Some(client) = tls
        .as_ref()
        .and_then(TlsConfig::client)
        .map(|c| c.summary())
    {
        // The user's own certificate runs out as surely as the server's:
        // warned about the same way (a server may not check it, so it is
        // not an error).
        if let Some(left) = client.not_after.map(|t| t - unix_now()) {
            let days = left.div_euclid(DAY);
            if left < 0 {
                r.warnings.push(format!(
                    "the client certificate {} has expired ({}): a server that checks it will refuse the session",
                    client.subject,
                    client.not_after.map(rfc3339).unwrap_or_default()
                ));
            } else if days < EXPIRY_WARNING_DAYS {
                r.warnings.push(format!(
                    "the client certificate {} expires in {days} day{}",
                    client.subject,
                    if days == 1 { "" } else { "s" },
                ));
            }
        }
        r.client_certificate = Some(client.subject);
    }

    let addresses = smtp::resolve(host, settings.port)?;
    r.addresses = addresses.iter().map(|a| a.ip().to_string()).collect();

    let endpoint = Endpoint {
        host,
        port: settings.port,
        mode: settings.tls,
        tls: tls.as_ref(),
        timeout: settings.timeout,
        verbose,
    };
    let mut trace = Some(Trace::default());
    let connected = Client::connect_traced(&endpoint, &mut trace);
    let trace = trace.unwrap_or_default();
    r.greeting.clone_from(&trace.greeting);
    let now = unix_now();
    let mut client = match connected {
        Ok(client) => client,
        Err(e) => {
            if settings.tls == TlsMode::StartTls {
                r.capabilities_before_tls = trace.first_capabilities.map(|c| c.extensions);
            } else {
                r.capabilities = trace.first_capabilities.map(|c| c.extensions);
            }
            describe_tls(r, trace.tls.as_ref(), &trace.presented, now);
            if let (Some(cert), SmtpError::Untrusted { reason, .. }) = (&mut r.certificate, &e) {
                cert.error = Some(reason.clone());
            }
            let hint = port_mixup(&settings, host, tls.as_ref(), &e);
            return Err(Failed {
                error: e.into(),
                hint,
            });
        }
    };
    r.capabilities_before_tls = client
        .capabilities_before_tls()
        .map(|c| c.extensions.clone());
    r.capabilities = Some(client.capabilities().extensions.clone());
    describe_tls(r, client.tls_info(), &trace.presented, now);
    if settings.tls == TlsMode::None && client.capabilities().starttls {
        r.warnings.push(
            "the server offers STARTTLS but the TLS mode is none: use --tls starttls to encrypt"
                .into(),
        );
    }

    r.auth.offered = client.capabilities().auth.clone();
    if let Some(user) = settings.user.as_deref() {
        let secrets = match secrets {
            Ok(secrets) => secrets,
            Err(e) => {
                r.auth.accepted = Some(false);
                client.quit();
                return Err(e.into());
            }
        };
        let credentials = Credentials {
            user,
            password: secrets.password.as_ref(),
            token: secrets.token.as_ref(),
            host,
            port: settings.port,
        };
        let result = client.login(settings.auth, &credentials);
        r.auth.chosen = client.mechanism();
        if let Err(e) = result {
            // A 5xx refuses the credentials (password or token); a 4xx
            // (454 "temporary authentication failure", 421) says nothing
            // about them.
            if let SmtpError::Refused { reply, .. } | SmtpError::TokenRefused { reply, .. } = &e {
                if reply.is_transient() {
                    r.auth.unsettled = true;
                } else {
                    r.auth.accepted = Some(false);
                }
            }
            // AUTH offered in clear but not under TLS: mailsend never
            // sends credentials in clear, and "does not offer AUTH" alone
            // contradicts the "in clear" line of the report.
            let hint = match (&e, client.capabilities_before_tls()) {
                (SmtpError::NoAuth { .. }, Some(clear))
                    if !clear.auth.is_empty() && client.capabilities().auth.is_empty() =>
                {
                    Some(format!(
                        "the server offers AUTH ({}) only in clear, before STARTTLS, and \
                         none under TLS: mailsend never sends credentials in clear; the \
                         server's configuration must offer AUTH under TLS (or, if it wants \
                         a client certificate instead, drop the login: MAILSEND_USER, --user, account user)",
                        clear.auth.join(" ")
                    ))
                }
                _ => None,
            };
            if e.server_still_there() {
                client.quit();
            }
            return Err(Failed {
                error: e.into(),
                hint,
            });
        }
        r.auth.accepted = Some(true);
    }
    client.quit();
    Ok(())
}

/// The provider's refusal of the stored sign-in (a revoked or expired
/// refresh token), when the account signs in by itself and the chosen
/// mechanism may use a token: `Ok(Some(..))`, the server is still checked.
/// Any other failure of the sign-in stops the check here, as it stops a
/// send (and is not tried a second time by `login_secrets`). On success
/// the fresh token is in the token file, where `login_secrets` finds it
/// without asking the provider again.
fn sign_in_revoked(settings: &Settings) -> Result<Option<anyhow::Error>> {
    match &settings.token {
        Some(TokenSource::BuiltIn(cfg)) if settings.auth.may_use_token() => {
            match oauth::access_token(cfg, settings.timeout) {
                Ok(_) => Ok(None),
                Err(e) if e.kind == oauth::OAuthKind::Revoked => Ok(Some(e.into())),
                Err(e) => Err(e.into()),
            }
        }
        _ => Ok(None),
    }
}

/// Fills `tls`, `certificate` and `chain` from the session (when the
/// handshake succeeded) or from what verification was shown.
fn describe_tls(r: &mut Report, info: Option<&TlsInfo>, presented: &[CertSummary], now: i64) {
    if let Some(info) = info {
        r.tls = Some(TlsReport {
            version: info.version.clone(),
            cipher: info.cipher.clone(),
        });
    }
    let chain = match info {
        Some(info) if !info.chain.is_empty() => &info.chain[..],
        _ => presented,
    };
    r.chain = chain
        .iter()
        .map(|c| ChainEntry {
            subject: c.subject.clone(),
            issuer: c.issuer.clone(),
            not_after: c.not_after.map(rfc3339),
        })
        .collect();
    r.certificate = chain.first().map(|leaf| CertReport {
        subject: leaf.subject.clone(),
        issuer: leaf.issuer.clone(),
        names: leaf
            .dns_names
            .iter()
            .cloned()
            .chain(leaf.ip_addresses.iter().map(ToString::to_string))
            .collect(),
        not_before: leaf.not_before.map(rfc3339),
        not_after: leaf.not_after.map(rfc3339),
        days_left: leaf.not_after.map(|t| (t - now).div_euclid(DAY)),
        seconds_left: leaf.not_after.map(|t| t - now),
        // A finished handshake is a verified one (verification is never off).
        verified: info.is_some(),
        error: None,
        sha256: leaf.sha256.clone(),
    });
    if let Some(cert) = &r.certificate
        && cert.verified
        && let Some(days) = cert.days_left
        && days < EXPIRY_WARNING_DAYS
    {
        r.warnings.push(format!(
            "the server's certificate expires in {days} day{} ({})",
            if days == 1 { "" } else { "s" },
            cert.not_after.as_deref().unwrap_or("?"),
        ));
    }
}

/// When `error` looks like a port mix-up, asks the server in the other
/// way (one more connection, bounded by the timeout, no MAIL) and says
/// which setting fits.
fn port_mixup(
    settings: &Settings,
    host: &str,
    tls: Option<&TlsConfig>,
    error: &SmtpError,
) -> Option<String> {
    use crate::smtp::SmtpError::{Closed, Protocol, Timeout, Tls, TlsSession};
    let port = settings.port;
    let probe = |mode: TlsMode, tls: Option<&TlsConfig>| {
        Client::connect(&Endpoint {
            host,
            port,
            mode,
            tls,
            timeout: settings.timeout,
            verbose: false,
        })
    };
    let no_greeting = matches!(
        error,
        Timeout { stage, .. } | Closed { stage } | Protocol { stage, .. }
            if *stage == Stage::Greeting
    );
    match settings.tls {
        TlsMode::StartTls | TlsMode::None if no_greeting => {
            let own;
            let config = match tls {
                Some(tls) => tls,
                None => {
                    own = TlsConfig::new(settings.ca_file.as_deref()).ok()?;
                    &own
                }
            };
            let speaks_tls = match probe(TlsMode::Implicit, Some(config)) {
                Ok(client) => {
                    client.quit();
                    true
                }
                // It answered the handshake: TLS it is, whatever the
                // certificate or the session's end.
                Err(SmtpError::Untrusted { .. } | TlsSession { .. }) => true,
                Err(_) => false,
            };
            speaks_tls.then(|| {
                format!(
                    "the server on port {port} speaks TLS from its first byte (implicit TLS, \
                     as on port 465): use --tls tls (MAILSEND_TLS=tls, account tls = \"tls\")"
                )
            })
        }
        TlsMode::Implicit
            if matches!(error, Tls { .. })
                || matches!(error, Timeout { stage, .. } | Closed { stage } | TlsSession { stage, .. }
                    if *stage == Stage::TlsHandshake) =>
        {
            let client = probe(TlsMode::None, None).ok()?;
            let starttls = client.capabilities().starttls;
            client.quit();
            Some(if starttls {
                format!(
                    "the server on port {port} greets in clear and offers STARTTLS (as on port \
                     587): use --tls starttls (MAILSEND_TLS=starttls, account tls = \"starttls\")"
                )
            } else {
                format!(
                    "the server on port {port} greets in clear and offers no TLS: it is not an \
                     implicit-TLS port (check --port, or --tls none for a local relay)"
                )
            })
        }
        _ => None,
    }
}

fn mode_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::StartTls => "starttls",
        TlsMode::Implicit => "tls",
        TlsMode::None => "none",
    }
}

fn unix_now() -> i64 {
    smtp::unix_seconds(SystemTime::now())
}

/// One line per step, `label  value`, text from the server escaped.
fn print_human(r: &Report) {
    let line = |label: &str, value: &str| outln!("{label:<13}{}", printable(value));
    if let Some(host) = &r.host {
        let port = r.port.map(|p| p.to_string()).unwrap_or_default();
        line(
            "server",
            &format!("{host} port {port}, tls {}", r.tls_mode.unwrap_or("?")),
        );
    }
    if !r.addresses.is_empty() {
        line("addresses", &r.addresses.join(", "));
    }
    if let Some(greeting) = &r.greeting {
        line("greeting", greeting);
    }
    if let Some(caps) = &r.capabilities_before_tls {
        line("in clear", &list(caps));
    }
    if let Some(tls) = &r.tls {
        line("tls", &format!("{} {}", tls.version, tls.cipher));
    }
    if let Some(cert) = &r.certificate {
        line(
            "certificate",
            &format!("{}, issued by {}", cert.subject, cert.issuer),
        );
        line("names", &names(&cert.names));
        if let (Some(not_after), Some(seconds)) = (&cert.not_after, cert.seconds_left) {
            line("validity", &validity(not_after, seconds));
        }
        let verified = match (&cert.error, cert.verified) {
            (_, true) => "yes".to_owned(),
            (Some(error), false) => format!("NO: {error}"),
            (None, false) => "no".to_owned(),
        };
        line("verified", &verified);
    }
    if let Some(client) = &r.client_certificate {
        line(
            "client cert",
            &format!("{client} (presented when the server asks)"),
        );
    }
    if let Some(caps) = &r.capabilities {
        line("offers", &list(caps));
    }
    if r.capabilities.is_some() {
        let chosen = r.auth.chosen.unwrap_or("-");
        let accepted = match r.auth.accepted {
            Some(true) => "credentials accepted",
            Some(false) => "credentials REFUSED",
            None if r.auth.unsettled => "login failed for now (temporary error, try again later)",
            None => "no login tried",
        };
        let offered = if r.auth.offered.is_empty() {
            "none".to_owned()
        } else {
            r.auth.offered.join(" ")
        };
        line(
            "auth",
            &format!("offered {offered}; mailsend uses {chosen}; {accepted}"),
        );
    }
    for warning in &r.warnings {
        line("warning", warning);
    }
    for error in &r.errors {
        line("error", error);
    }
    if let Some(hint) = &r.hint {
        line("hint", hint);
    }
    line(
        "result",
        &if r.ok {
            "ok: sending would work".to_owned()
        } else {
            format!("FAILED (exit {})", r.exit_code)
        },
    );
}

/// "expires T (in N days)" or "expired T (N days ago)", N in whole days
/// (rounded down both ways: a day and an hour ago is "1 day ago").
fn validity(not_after: &str, seconds_left: i64) -> String {
    let days = |n: i64| format!("{n} day{}", if n == 1 { "" } else { "s" });
    if seconds_left >= 0 {
        format!("expires {not_after} (in {})", days(seconds_left / DAY))
    } else {
        format!("expired {not_after} ({} ago)", days(-seconds_left / DAY))
    }
}

/// The certificate's names, the first [`HUMAN_NAMES`] of them: a
/// certificate may list hundreds (a shared host's), which would make one
/// line of many kilobytes; `--json` has them all.
fn names(names: &[String]) -> String {
    if names.len() <= HUMAN_NAMES {
        return list(names);
    }
    format!(
        "{}, and {} more (--json lists them all)",
        names[..HUMAN_NAMES].join(", "),
        names.len() - HUMAN_NAMES
    )
}

const HUMAN_NAMES: usize = 20;

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(nothing)".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_human_names_line_is_bounded() {
        let many: Vec<String> = (0..300).map(|i| format!("n{i}.example.com")).collect();
        let line = names(&many);
        assert!(
            line.starts_with("n0.example.com, n1.example.com, "),
            "{line}"
        );
        assert!(
            line.ends_with("n19.example.com, and 280 more (--json lists them all)"),
            "{line}"
        );
        assert_eq!(names(&many[..20]), many[..20].join(", "));
        assert_eq!(names(&[]), "(nothing)");
    }

    #[test]
    fn validity_counts_whole_days_both_ways() {
        let t = "2030-01-01T00:00:00Z";
        assert_eq!(
            validity(t, 5 * DAY + 3600),
            format!("expires {t} (in 5 days)")
        );
        assert_eq!(validity(t, DAY), format!("expires {t} (in 1 day)"));
        assert_eq!(validity(t, 10), format!("expires {t} (in 0 days)"));
        assert_eq!(validity(t, -10), format!("expired {t} (0 days ago)"));
        assert_eq!(validity(t, -DAY - 3600), format!("expired {t} (1 day ago)"));
        assert_eq!(
            validity(t, -3 * DAY - 240),
            format!("expired {t} (3 days ago)")
        );
    }
}
