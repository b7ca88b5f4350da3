//! Documentation generated from the flags themselves: shell completions
//! (clap_complete) and the manual page (clap_mangen), so neither can drift
//! from `--help`.

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Exit;

/// Prints the completion script for `shell` on stdout. A reader that went
/// away (`| head`) is not an error.
pub fn completions(shell: clap_complete::Shell) {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mailsend", &mut out);
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &out);
}

/// Settings read from the environment, as docs/REFERENCE.md's "Configuration"
/// lists them.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("MAILSEND_HOST", "SMTP server (--host)"),
    (
        "MAILSEND_PORT",
        "port (--port; default 587, 465 with --tls tls, 25 with --tls none)",
    ),
    (
        "MAILSEND_TLS",
        "starttls (default), tls, or none (local relays only)",
    ),
    ("MAILSEND_USER", "login name (--user)"),
    (
        "MAILSEND_PASSWORD",
        "password; never a flag (a .env file must then be private)",
    ),
    (
        "MAILSEND_PASSWORD_COMMAND",
        "command whose output is the password (--password-command)",
    ),
    (
        "MAILSEND_AUTH",
        "auto (default), plain, login, xoauth2 or oauthbearer (--auth)",
    ),
    (
        "MAILSEND_OAUTH_TOKEN_COMMAND",
        "command whose output is an OAuth2 access token (--oauth-token-command)",
    ),
    ("MAILSEND_FROM", "sender address (--from)"),
    (
        "MAILSEND_CA_FILE",
        "extra trusted CA certificates, PEM (--ca-file)",
    ),
    (
        "MAILSEND_TIMEOUT",
        "bound of each reply (--timeout, default 30s)",
    ),
    (
        "MAILSEND_RETRY_FOR",
        "retry temporary failures this long (--retry-for)",
    ),
    (
        "MAILSEND_QUEUE_LIFETIME",
        "how long the outbox keeps trying (default 5d)",
    ),
    ("MAILSEND_OUTBOX", "outbox directory"),
    ("MAILSEND_LOG", "log file, or syslog (--log)"),
    ("MAILSEND_ACCOUNT", "config file account (--account)"),
    ("MAILSEND_CONFIG", "config file (--config)"),
    (
        "MAILSEND_SET_FROM_HEADER",
        "sendmail mode: when to set the From header",
    ),
    (
        "MAILSEND_CLIENT_CERT",
        "TLS client certificate, PEM (--client-cert)",
    ),
    (
        "MAILSEND_CLIENT_KEY",
        "its private key, PEM, private file (--client-key)",
    ),
    (
        "MAILSEND_DKIM_KEY",
        "DKIM private key, PEM, RSA 2048+ or Ed25519, private file (--dkim-key)",
    ),
    ("MAILSEND_DKIM_SELECTOR", "DKIM selector (--dkim-selector)"),
    (
        "MAILSEND_DKIM_DOMAIN",
        "DKIM signing domain (--dkim-domain; default the From domain)",
    ),
    // OAuth2 sign-in (`mailsend auth`).
    ("MAILSEND_OAUTH_PROVIDER", "google, microsoft or custom"),
    (
        "MAILSEND_OAUTH_CLIENT_ID",
        "OAuth2 client id you registered",
    ),
    ("MAILSEND_OAUTH_CLIENT_SECRET", "its secret, if it has one"),
    (
        "MAILSEND_OAUTH_CLIENT_SECRET_COMMAND",
        "command whose output is the client secret",
    ),
    (
        "MAILSEND_OAUTH_AUTH_URL",
        "authorization endpoint (custom provider)",
    ),
    (
        "MAILSEND_OAUTH_TOKEN_URL",
        "token endpoint (custom provider)",
    ),
    (
        "MAILSEND_OAUTH_DEVICE_URL",
        "device authorization endpoint (auth login --device)",
    ),
    (
        "MAILSEND_OAUTH_REVOCATION_URL",
        "revocation endpoint (auth logout)",
    ),
    ("MAILSEND_OAUTH_SCOPES", "space-separated scopes"),
    (
        "MAILSEND_OAUTH_TOKEN_FILE",
        "where the tokens are kept (default under XDG_STATE_HOME or HOME)",
    ),
];

/// sysexits.h codes, as docs/REFERENCE.md's "Exit codes" explains them.
const EXIT_STATUS: &[(u8, &str)] = &[
    (
        0,
        "sent to every recipient, queued (--queue), or nothing to send (--skip-empty)",
    ),
    (64, "bad flags or arguments"),
    (
        65,
        "bad data (address, header), or sent to some recipients and refused for good to others",
    ),
    (66, "an input file is missing or unreadable"),
    (68, "the server's host name does not exist"),
    (
        69,
        "refused for good (5xx) for every recipient, or the message",
    ),
    (
        75,
        "temporary failure: try again later (4xx, timeout, connection lost)",
    ),
    (
        76,
        "the server broke the protocol or lacks a required extension; TLS session failed",
    ),
    (
        77,
        "authentication refused, or the certificate is not trusted",
    ),
    (
        78,
        "configuration missing or invalid, or a secret-holding file others can read",
    ),
];

/// `text` for roff: backslashes and hyphens escaped, no line starting
/// with a control character.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    match escaped.starts_with(['.', '\'']) {
        true => format!("\\&{escaped}"),
        false => escaped,
    }
}

/// Prints the manual page (roff) on stdout: the flags and subcommands
/// from clap, then the environment and the exit status.
pub fn man() -> Result<Exit> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    let mut extra = String::from(".SH ENVIRONMENT\n");
    for (name, what) in ENVIRONMENT {
        extra.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(name), roff(what)));
    }
    extra.push_str(".SH \"EXIT STATUS\"\n");
    for (code, what) in EXIT_STATUS {
        extra.push_str(&format!(".TP\n\\fB{code}\\fR\n{}\n", roff(what)));
    }
    extra.push_str(".SH FILES\n.TP\n~/.config/mailsend/config.toml, /etc/mailsend/config.toml\naccounts and aliases (must not be readable by others when they hold a password)\n.TP\n~/.local/state/mailsend/outbox\nmessages queued for a later retry\n");
    out.extend_from_slice(extra.as_bytes());
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &out);
    Ok(Exit::Ok)
}
