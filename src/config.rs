//! Settings: flags, the process environment, a `.env` file and a config
//! file account, merged once.
//!
//! Precedence, highest first: flag > process environment > `.env` >
//! account > default.
//! The `.env` file is read into a table of its own and never written into
//! the process environment, so a variable that is already set always wins.
//! Every value remembers where it came from, so an error names the flag or
//! the variable (and file) to fix. Nothing here touches the network.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::accounts::{self, Account};
use crate::cli::ServerArgs;
use crate::dotenv;
use crate::exit::{Exit, Failure};
use crate::secret::Secret;

pub use crate::smtp::{AuthMethod, TlsMode};
pub use crate::token::TokenSource;

pub use crate::password::PasswordSource;

/// What the settings say about DKIM signing (`dkim/` signs with it).
#[derive(Clone, Debug)]
pub struct DkimSettings {
    pub key: PathBuf,
    pub selector: String,
    /// `None`: the domain of the From header.
    pub domain: Option<String>,
}

/// When sendmail mode rewrites or adds the From header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromPolicy {
    /// Only when From is missing or its address has no domain.
    Auto,
    Always,
    Never,
}

/// Everything downstream needs, resolved from all layers.
#[derive(Debug)]
pub struct Settings {
    pub host: Option<String>,
    pub port: u16,
    pub tls: TlsMode,
    pub user: Option<String>,
    pub password: Option<PasswordSource>,
    /// The SASL mechanism asked for (`auth`).
    pub auth: AuthMethod,
    /// Where OAuth2 access tokens come from, if anywhere.
    pub token: Option<TokenSource>,
    pub from: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// TLS client certificate (PEM; may hold the key too) and its key.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub timeout: Duration,
    pub skip_empty: bool,
    pub log: Option<String>,
    /// How long to keep retrying temporary failures in this run; `None`
    /// when not set (a single send then does not retry, a campaign uses
    /// its own default).
    pub retry_for: Option<Duration>,
    /// Keep what still cannot be sent in the outbox.
    pub queue: bool,
    /// The outbox directory, when one is configured or can be derived.
    pub outbox: Option<PathBuf>,
    /// The outbox under XDG_STATE_HOME or HOME, whatever is configured:
    /// messages queued before an `outbox` key was set may wait there.
    pub default_outbox: Option<PathBuf>,
    /// How long a queued message is retried before it is moved to failed/.
    pub queue_lifetime: Duration,
    pub set_from_header: FromPolicy,
    /// The config-file account in use, if any.
    pub account: Option<String>,
    pub aliases: BTreeMap<String, String>,
    /// Every account in the config file (flush visits their outboxes).
    pub account_names: Vec<String>,
    /// The OAuth2 keys of the account (`mailsend auth`, src/oauth/).
    pub oauth: crate::oauth::OAuthSettings,
    /// DKIM signing, when a key is configured; or what is wrong with the
    /// DKIM settings. Only the modes that sign raise it (`Settings::dkim`):
    /// `check` signs nothing and `outbox flush` sends bytes signed when
    /// they were queued, so a DKIM mistake must not stop them.
    dkim: Result<Option<DkimSettings>, Failure>,
    /// Every setting, its value and its origin, for `mailsend config show`.
    pub shown: Vec<(&'static str, String, String)>,
}

impl Settings {
    /// The DKIM settings (None: no signing), or the error of a DKIM setting
    /// that is wrong (78, 64 for a flag): for the modes that sign.
    pub fn dkim(&self) -> Result<Option<&DkimSettings>, Failure> {
        self.dkim.as_ref().map(Option::as_ref).map_err(Clone::clone)
    }
}

/// The layer a value came from, for error messages.
#[derive(Clone, Debug)]
enum Origin {
    Flag(&'static str),
    Env(&'static str),
    DotEnv(&'static str, PathBuf),
    Account(&'static str, String, PathBuf),
}

impl Origin {
    /// A bad flag is a usage error; a bad variable or file is configuration.
    fn exit(&self) -> Exit {
        match self {
            Origin::Flag(_) => Exit::Usage,
            _ => Exit::Config,
        }
    }

    /// Rank of a layer, for choosing between two keys: lower wins.
    fn rank(&self) -> u8 {
        match self {
            Origin::Flag(_) => 0,
            Origin::Env(_) => 1,
            Origin::DotEnv(..) => 2,
            Origin::Account(..) => 3,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "{flag}"),
            Origin::Env(var) => write!(f, "{var}"),
            Origin::DotEnv(var, path) => write!(f, "{var} in {}", path.display()),
            Origin::Account(key, name, path) => {
                write!(f, "{key} of account {name} in {}", path.display())
            }
        }
    }
}

/// A value and the layer it came from. Values are OS strings as they
/// arrive (paths need not be UTF-8); every other setting must be UTF-8.
struct Sourced<T = String> {
    value: T,
    origin: Origin,
}

impl Sourced<OsString> {
    /// The value as text: one that is not UTF-8 is an error naming where it
    /// came from, never silently ignored.
    fn text(self) -> Result<Sourced, Failure> {
        match self.value.into_string() {
            Ok(value) => Ok(Sourced {
                value,
                origin: self.origin,
            }),
            Err(_) => Err(Failure::new(
                self.origin.exit(),
                format!("{} is not valid UTF-8", self.origin),
            )),
        }
    }
}

impl Sourced {
    /// The value is quoted only when it is one plain line: a value that
    /// spans lines may be a `.env` quote left open that swallowed the
    /// lines after it, a password among them.
    fn invalid(&self, what: &str) -> Failure {
        let message = if spans_lines(&self.value) {
            format!("invalid {what} (from {})", self.origin)
        } else {
            format!("invalid {what} '{}' (from {})", self.value, self.origin)
        };
        Failure::new(self.origin.exit(), message)
    }
}

/// A value with a line break or another control character (a tab is
/// fine): not one plain line, so not to be quoted in an error.
fn spans_lines(value: &str) -> bool {
    value.chars().any(|c| c.is_control() && c != '\t')
}

/// One setting's names in each layer.
struct Key {
    flag: &'static str,
    var: &'static str,
    toml: &'static str,
}

const HOST: Key = Key {
    flag: "--host",
    var: "MAILSEND_HOST",
    toml: "host",
};
const PORT: Key = Key {
    flag: "--port",
    var: "MAILSEND_PORT",
    toml: "port",
};
const TLS: Key = Key {
    flag: "--tls",
    var: "MAILSEND_TLS",
    toml: "tls",
};
const USER: Key = Key {
    flag: "--user",
    var: "MAILSEND_USER",
    toml: "user",
};
const PASSWORD: Key = Key {
    flag: "",
    var: "MAILSEND_PASSWORD",
    toml: "password",
};
const PASSWORD_COMMAND: Key = Key {
    flag: "--password-command",
    var: "MAILSEND_PASSWORD_COMMAND",
    toml: "password_command",
};
const AUTH: Key = Key {
    flag: "--auth",
    var: "MAILSEND_AUTH",
    toml: "auth",
};
const OAUTH_TOKEN_COMMAND: Key = Key {
    flag: "--oauth-token-command",
    var: "MAILSEND_OAUTH_TOKEN_COMMAND",
    toml: "oauth_token_command",
};
const FROM: Key = Key {
    flag: "--from",
    var: "MAILSEND_FROM",
    toml: "from",
};
const CA_FILE: Key = Key {
    flag: "--ca-file",
    var: "MAILSEND_CA_FILE",
    toml: "ca_file",
};
const CLIENT_CERT: Key = Key {
    flag: "--client-cert",
    var: "MAILSEND_CLIENT_CERT",
    toml: "client_cert",
};
const CLIENT_KEY: Key = Key {
    flag: "--client-key",
    var: "MAILSEND_CLIENT_KEY",
    toml: "client_key",
};
const TIMEOUT: Key = Key {
    flag: "--timeout",
    var: "MAILSEND_TIMEOUT",
    toml: "timeout",
};
const LOG: Key = Key {
    flag: "--log",
    var: "MAILSEND_LOG",
    toml: "log",
};
const RETRY_FOR: Key = Key {
    flag: "--retry-for",
    var: "MAILSEND_RETRY_FOR",
    toml: "retry_for",
};
const OUTBOX: Key = Key {
    flag: "",
    var: "MAILSEND_OUTBOX",
    toml: "outbox",
};
const QUEUE_LIFETIME: Key = Key {
    flag: "",
    var: "MAILSEND_QUEUE_LIFETIME",
    toml: "queue_lifetime",
};
const SET_FROM_HEADER: Key = Key {
    flag: "",
    var: "MAILSEND_SET_FROM_HEADER",
    toml: "set_from_header",
};
/// The OAuth2 keys (`mailsend auth`, src/oauth/): no flags.
macro_rules! oauth_keys {
    ($($name:ident $toml:literal $var:literal),* $(,)?) => {
        $(const $name: Key = Key { flag: "", var: $var, toml: $toml };)*
    };
}
oauth_keys! {
    OAUTH_PROVIDER "oauth_provider" "MAILSEND_OAUTH_PROVIDER",
    OAUTH_CLIENT_ID "oauth_client_id" "MAILSEND_OAUTH_CLIENT_ID",
    OAUTH_CLIENT_SECRET "oauth_client_secret" "MAILSEND_OAUTH_CLIENT_SECRET",
    OAUTH_CLIENT_SECRET_COMMAND "oauth_client_secret_command" "MAILSEND_OAUTH_CLIENT_SECRET_COMMAND",
    OAUTH_AUTH_URL "oauth_auth_url" "MAILSEND_OAUTH_AUTH_URL",
    OAUTH_TOKEN_URL "oauth_token_url" "MAILSEND_OAUTH_TOKEN_URL",
    OAUTH_DEVICE_URL "oauth_device_url" "MAILSEND_OAUTH_DEVICE_URL",
    OAUTH_REVOCATION_URL "oauth_revocation_url" "MAILSEND_OAUTH_REVOCATION_URL",
    OAUTH_SCOPES "oauth_scopes" "MAILSEND_OAUTH_SCOPES",
    OAUTH_TOKEN_FILE "oauth_token_file" "MAILSEND_OAUTH_TOKEN_FILE",
}
const DKIM_KEY: Key = Key {
    flag: "--dkim-key",
    var: "MAILSEND_DKIM_KEY",
    toml: "dkim_key",
};
const DKIM_SELECTOR: Key = Key {
    flag: "--dkim-selector",
    var: "MAILSEND_DKIM_SELECTOR",
    toml: "dkim_selector",
};
const DKIM_DOMAIN: Key = Key {
    flag: "--dkim-domain",
    var: "MAILSEND_DKIM_DOMAIN",
    toml: "dkim_domain",
};
const ACCOUNT: Key = Key {
    flag: "--account",
    var: "MAILSEND_ACCOUNT",
    toml: "",
};
const CONFIG: Key = Key {
    flag: "--config",
    var: "MAILSEND_CONFIG",
    toml: "",
};

/// The environment, `.env` and account layers.
struct Layers<E> {
    env: E,
    dotenv: HashMap<String, OsString>,
    dotenv_path: PathBuf,
    account: Option<(String, Account, PathBuf)>,
}

impl<E: Fn(&str) -> Option<OsString>> Layers<E> {
    /// Where mailsend keeps its state (the outbox, OAuth2 tokens):
    /// `$XDG_STATE_HOME`, else `$HOME/.local/state`. A relative
    /// XDG_STATE_HOME is ignored, as the XDG spec says: under cron it
    /// would name another place in each working directory.
    fn state_dir(&self) -> Option<PathBuf> {
        let nonempty = |var: &str| (self.env)(var).filter(|v| !v.is_empty());
        nonempty("XDG_STATE_HOME")
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute())
            .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".local/state")))
    }

    /// The flag, else the variable from the environment, else from `.env`,
    /// else the account's key. Empty values count as unset, as a bare
    /// `VAR=` line in cron means.
    fn get(&self, flag: Option<&OsStr>, key: &Key) -> Option<Sourced<OsString>> {
        if let Some(v) = flag {
            return Some(Sourced {
                value: v.to_owned(),
                origin: Origin::Flag(key.flag),
            });
        }
        if let Some(v) = (self.env)(key.var).filter(|v| !v.is_empty()) {
            return Some(Sourced {
                value: v,
                origin: Origin::Env(key.var),
            });
        }
        if let Some(v) = self.dotenv.get(key.var).filter(|v| !v.is_empty()) {
            return Some(Sourced {
                value: v.clone(),
                origin: Origin::DotEnv(key.var, self.dotenv_path.clone()),
            });
        }
        let (name, account, path) = self.account.as_ref()?;
        let value = match key.toml {
            "host" => account.host.clone(),
            "port" => account.port.map(|p| p.to_string()),
            "tls" => account.tls.clone(),
            "user" => account.user.clone(),
            "password" => account.password.clone(),
            "password_command" => account.password_command.clone(),
            "auth" => account.auth.clone(),
            "oauth_token_command" => account.oauth_token_command.clone(),
            "from" => account.from.clone(),
            "ca_file" => return self.account_path(account.ca_file.as_ref(), key),
            "client_cert" => return self.account_path(account.client_cert.as_ref(), key),
            "client_key" => return self.account_path(account.client_key.as_ref(), key),
            "timeout" => account.timeout.clone(),
            "log" => account.log.clone(),
            "retry_for" => account.retry_for.clone(),
            "outbox" => return self.account_path(account.outbox.as_ref(), key),
            "queue_lifetime" => account.queue_lifetime.clone(),
            "set_from_header" => account.set_from_header.clone(),
            "oauth_provider" => account.oauth_provider.clone(),
            "oauth_client_id" => account.oauth_client_id.clone(),
            "oauth_client_secret" => account.oauth_client_secret.clone(),
            "oauth_client_secret_command" => account.oauth_client_secret_command.clone(),
            "oauth_auth_url" => account.oauth_auth_url.clone(),
            "oauth_token_url" => account.oauth_token_url.clone(),
            "oauth_device_url" => account.oauth_device_url.clone(),
            "oauth_revocation_url" => account.oauth_revocation_url.clone(),
            "oauth_scopes" => account.oauth_scopes.clone(),
            "oauth_token_file" => return self.account_path(account.oauth_token_file.as_ref(), key),
            "dkim_key" => return self.account_path(account.dkim_key.as_ref(), key),
            "dkim_selector" => account.dkim_selector.clone(),
            "dkim_domain" => account.dkim_domain.clone(),
            _ => None,
        }?;
        Some(Sourced {
            value: value.into(),
            origin: Origin::Account(key.toml, name.clone(), path.clone()),
        })
    }

    fn account_path(&self, value: Option<&PathBuf>, key: &Key) -> Option<Sourced<OsString>> {
        let (name, _, path) = self.account.as_ref()?;
        Some(Sourced {
            value: value?.clone().into_os_string(),
            origin: Origin::Account(key.toml, name.clone(), path.clone()),
        })
    }

    /// Like `get`, for a setting that must be text.
    fn text(&self, flag: Option<&str>, key: &Key) -> Result<Option<Sourced>, Failure> {
        self.get(flag.map(OsStr::new), key)
            .map(Sourced::text)
            .transpose()
    }
}

/// The variables whose value is a secret: a `.env` file that names one
/// anywhere must be private, whatever its assignments say.
const SECRET_KEYS: &[&str] = &["MAILSEND_PASSWORD", "MAILSEND_OAUTH_CLIENT_SECRET"];

/// The first secret key named anywhere in `bytes` as a whole word (so
/// `MAILSEND_PASSWORD_COMMAND` does not count): in an assignment, in a
/// comment, or in a line an unclosed quote swallowed into another value.
fn secret_key_named_in(bytes: &[u8]) -> Option<&'static str> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
    SECRET_KEYS.iter().copied().find(|key| {
        let key = key.as_bytes();
        bytes.windows(key.len()).enumerate().any(|(at, w)| {
            w == key
                && (at == 0 || !word(bytes[at - 1]))
                && bytes.get(at + key.len()).is_none_or(|&b| !word(b))
        })
    })
}

/// How long to wait for a settings file to reach its end (it may be a
/// FIFO or a pipe): the timeout when it is already known, else 30 s. A
/// value that does not parse is reported later, where it is used.
fn settings_wait(found: Option<Sourced<OsString>>) -> Duration {
    found
        .and_then(|s| s.value.to_str().and_then(parse_duration))
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(30))
}

/// Reads the `.env` file: `--env-file PATH` must exist (66); `./.env` is
/// optional. Only `MAILSEND_*` keys are kept. A file that names a secret
/// key must not be readable by others. The file is read once, whole,
/// before it is parsed: it may be a pipe (`--env-file <(pass show smtp)`),
/// which could not be read again to report an error; a FIFO or pipe that
/// gives no end of file within `wait` is an error (66), not a hang.
fn read_dotenv(args: &ServerArgs, wait: Duration) -> Result<(HashMap<String, OsString>, PathBuf)> {
    let (path, required) = match args.env_file.as_deref() {
        Some(p) => (p.to_path_buf(), true),
        None if args.ignore_cwd_dotenv => return Ok((HashMap::new(), PathBuf::new())),
        None => (PathBuf::from(".env"), false),
    };
    let cannot = |e: std::io::Error| {
        Failure::no_input(format!(
            "cannot read env file {}: {}",
            path.display(),
            e.kind()
        ))
    };
    let file = match accounts::open_settings_file(&path) {
        Ok(file) => file,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((HashMap::new(), path));
        }
        Err(e) => return Err(cannot(e).into()),
    };
    // Checked on the open file: the path cannot be swapped in between.
    // ./.env comes from whatever directory mailsend runs in, so it must be
    // the user's own; a file named with --env-file is the user's choice.
    let meta = file.metadata().map_err(cannot)?;
    if !required {
        accounts::refuse_if_untrusted(&path, &meta, false)?;
    }
    let bytes = accounts::read_settings_file(&file, wait, accounts::MAX_SETTINGS_FILE).map_err(
        |e| match e {
            accounts::ReadError::Io(e) => cannot(e),
            accounts::ReadError::TimedOut(wait) => Failure::no_input(format!(
                "env file {}: no end of data within {} (a FIFO or pipe nobody writes to or closes?)",
                path.display(),
                humantime::format_duration(wait)
            ))
            .with_hint("the wait is --timeout (MAILSEND_TIMEOUT), 30s by default"),
            accounts::ReadError::TooLarge => Failure::config(format!(
                "env file {} is larger than {} KiB",
                path.display(),
                accounts::MAX_SETTINGS_FILE / 1024
            )),
        },
    )?;
    // Before parsing, on the raw bytes: an unclosed quote can turn the
    // password line into part of another value, and a shared file that
    // holds it must be refused all the same.
    if let Some(key) = secret_key_named_in(&bytes) {
        accounts::refuse_if_shared(&path, &meta, &format!("holds {key}"))?;
    }
    // The error names the line, never its text: it may hold a password.
    let assignments = dotenv::parse(&bytes)
        .map_err(|e| Failure::config(format!("cannot parse env file {}, {e}", path.display())))?;
    let vars = assignments
        .into_iter()
        .filter(|a| a.key.starts_with("MAILSEND_"))
        .map(|a| (a.key, a.value))
        .collect();
    Ok((vars, path))
}

impl Settings {
    /// Resolves settings from flags, the process environment, `.env` and
    /// the config file. `sender` (sendmail's `-f`) picks the account whose
    /// `from` matches, when no account is named.
    pub fn resolve(args: &ServerArgs, sender: Option<&str>) -> Result<Settings> {
        Self::resolve_with(args, sender, |var| std::env::var_os(var))
    }

    fn resolve_with(
        args: &ServerArgs,
        sender: Option<&str>,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Settings> {
        let mut layers = Layers {
            env,
            dotenv: HashMap::new(),
            dotenv_path: PathBuf::new(),
            account: None,
        };
        // The timeout also bounds the wait for a settings file that is a
        // FIFO or a pipe: from the flag or the environment for `.env`,
        // and from `.env` too for the config file.
        let wait = settings_wait(layers.get(args.timeout.as_deref().map(OsStr::new), &TIMEOUT));
        (layers.dotenv, layers.dotenv_path) = read_dotenv(args, wait)?;
        let wait = settings_wait(layers.get(args.timeout.as_deref().map(OsStr::new), &TIMEOUT));
        // Where each setting that was found came from, for `config show`.
        let origins: RefCell<HashMap<&'static str, String>> = RefCell::default();

        let config_found = layers.get(args.config.as_deref().map(OsStr::new), &CONFIG);
        if let Some(s) = &config_found {
            origins.borrow_mut().insert("config", s.origin.to_string());
        }
        let config_path = config_found.map(|s| PathBuf::from(s.value));
        let env_fn = |var: &str| (layers.env)(var);
        let mut aliases = BTreeMap::new();
        let mut account_names = Vec::new();
        let explicit = config_path.is_some();
        let located = accounts::locate(config_path, &env_fn)?;
        let loaded = match &located {
            Some(path) => accounts::load(path, explicit, wait)?,
            None => None,
        };
        let account_name = layers.text(args.account.as_deref(), &ACCOUNT)?;
        let mut config_shown = None;
        if let (Some(path), Some(loaded)) = (located, loaded) {
            if let Some(s) = &account_name {
                origins.borrow_mut().insert("account", s.origin.to_string());
            }
            let chosen = loaded.choose(account_name.as_ref().map(|s| s.value.as_str()), sender)?;
            config_shown = Some(path.clone());
            if let Some((name, account)) = chosen {
                layers.account = Some((name, account, path));
            }
            account_names = loaded.file.accounts.keys().cloned().collect();
            aliases = loaded.file.aliases;
        } else if let Some(name) = account_name {
            return Err(Failure::config(format!(
                "account '{}' requested but no config file found",
                name.value
            ))
            .with_hint(format!(
                "create {} or pass --config",
                accounts::SYSTEM_CONFIG
            ))
            .into());
        }

        let record = |found: &Option<Sourced<OsString>>, key: &Key| {
            if let Some(s) = found {
                origins.borrow_mut().insert(key.toml, s.origin.to_string());
            }
        };
        let text = |flag: Option<&str>, key: &Key| -> Result<Option<Sourced>, Failure> {
            let found = layers.get(flag.map(OsStr::new), key);
            record(&found, key);
            found.map(Sourced::text).transpose()
        };

        let tls = match text(args.tls.as_deref(), &TLS)? {
            None => TlsMode::StartTls,
            Some(s) => match s.value.to_ascii_lowercase().as_str() {
                "starttls" => TlsMode::StartTls,
                "tls" | "ssl" | "smtps" => TlsMode::Implicit,
                "none" | "plain" => TlsMode::None,
                _ => {
                    return Err(s
                        .invalid("TLS mode")
                        .with_hint("use starttls, tls or none")
                        .into());
                }
            },
        };
        let port = match text(args.port.as_deref(), &PORT)? {
            None => tls.default_port(),
            Some(s) => match s.value.trim().parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(s.invalid("port").into()),
            },
        };
        let duration =
            |found: Option<Sourced>, what: &str, default: Duration, zero_ok: bool| match found {
                None => Ok(default),
                Some(s) => parse_duration(&s.value)
                    .filter(|d| zero_ok || !d.is_zero())
                    .ok_or_else(|| {
                        s.invalid(what)
                            .with_hint("use a duration such as 30s, 500ms, 10m or 5d")
                    }),
            };
        let timeout = duration(
            text(args.timeout.as_deref(), &TIMEOUT)?,
            "timeout",
            Duration::from_secs(30),
            false,
        )?;
        // None when not given anywhere: a campaign has its own default.
        let retry_for = match text(args.retry_for.as_deref(), &RETRY_FOR)? {
            None => None,
            found => Some(duration(found, "retry time", Duration::ZERO, true)?),
        };
        let queue_lifetime = duration(
            text(None, &QUEUE_LIFETIME)?,
            "queue lifetime",
            Duration::from_secs(5 * 24 * 3600),
            false,
        )?;
        let set_from_header = match text(None, &SET_FROM_HEADER)? {
            None => FromPolicy::Auto,
            Some(s) => match s.value.as_str() {
                "auto" => FromPolicy::Auto,
                "always" => FromPolicy::Always,
                "never" => FromPolicy::Never,
                _ => {
                    return Err(s
                        .invalid("set_from_header")
                        .with_hint("use auto, always or never")
                        .into());
                }
            },
        };

        let user = text(args.user.as_deref(), &USER)?.map(|s| s.value);
        let password_value = text(None, &PASSWORD)?;
        let password_command = text(args.password_command.as_deref(), &PASSWORD_COMMAND)?;
        let has_password = password_value.is_some();
        let command = password_command.as_ref().map(|c| c.value.clone());
        let password = match (password_value, password_command) {
            (Some(v), Some(c)) if c.origin.rank() < v.origin.rank() => {
                Some(PasswordSource::Command(c.value))
            }
            (Some(v), _) => Some(PasswordSource::Value(Secret::new(v.value))),
            (None, Some(c)) => Some(PasswordSource::Command(c.value)),
            (None, None) => None,
        };

        let auth = match text(args.auth.as_deref(), &AUTH)? {
            None => AuthMethod::Auto,
            Some(s) => AuthMethod::parse(&s.value).ok_or_else(|| {
                s.invalid("authentication mechanism")
                    .with_hint(format!("use {}", AuthMethod::NAMES))
            })?,
        };
        let token_command = text(args.oauth_token_command.as_deref(), &OAUTH_TOKEN_COMMAND)?;
        let token_shown = token_command.as_ref().map(|c| c.value.clone());
        let token = token_command.map(|c| TokenSource::Command(c.value));

        if tls == TlsMode::None && (user.is_some() || password.is_some() || token.is_some()) {
            return Err(Failure::config(
                "credentials are configured but the TLS mode is none: they would cross the network in clear",
            )
            .with_hint("use --tls starttls or --tls tls, or unset MAILSEND_USER and MAILSEND_PASSWORD for a local relay")
            .into());
        }
        if password.is_some() && user.is_none() {
            return Err(Failure::config("a password is configured but no user name")
                .with_hint("set MAILSEND_USER")
                .into());
        }
        if token.is_some() && user.is_none() {
            return Err(
                Failure::config("an OAuth2 token command is configured but no user name")
                    .with_hint(
                        "set MAILSEND_USER: XOAUTH2 and OAUTHBEARER present it with the token",
                    )
                    .into(),
            );
        }

        let from_set = text(args.from.as_deref(), &FROM)?;
        // A sender that spans lines from a variable or a file may be a
        // `.env` quote left open that swallowed the lines after it: it is
        // named, never quoted. (A flag is checked, and quoted, later.)
        if let Some(s) = &from_set
            && !matches!(s.origin, Origin::Flag(_))
            && spans_lines(&s.value)
        {
            return Err(s.invalid("sender").into());
        }
        let from_set = from_set.map(|s| s.value);
        let from_is_user = from_set.is_none();
        let from = from_set.or_else(|| user.clone().filter(|u| u.contains('@')));
        let host = text(args.host.as_deref(), &HOST)?.map(|s| s.value);
        let ca_file = {
            let found = layers.get(args.ca_file.as_deref().map(OsStr::new), &CA_FILE);
            record(&found, &CA_FILE);
            found.map(|s| PathBuf::from(s.value))
        };
        let path_of = |flag: &Option<PathBuf>, key: &Key| {
            let found = layers.get(flag.as_deref().map(OsStr::new), key);
            record(&found, key);
            found.map(|s| PathBuf::from(s.value))
        };
        let client_cert = path_of(&args.client_cert, &CLIENT_CERT);
        let client_key = path_of(&args.client_key, &CLIENT_KEY);
        if client_key.is_some() && client_cert.is_none() {
            return Err(
                Failure::config("a client key is configured but no client certificate")
                    .with_hint("set --client-cert (MAILSEND_CLIENT_CERT, account client_cert) too")
                    .into(),
            );
        }
        if tls == TlsMode::None && client_cert.is_some() {
            return Err(Failure::config(
                "a client certificate is configured but the TLS mode is none: it would never be presented",
            )
            .with_hint("use --tls starttls or --tls tls, or unset MAILSEND_CLIENT_CERT")
            .into());
        }
        let log = text(args.log.as_deref(), &LOG)?.map(|s| s.value);
        let default_outbox = layers
            .state_dir()
            .map(|state| state.join("mailsend/outbox"));
        let outbox = {
            let found = layers.get(None, &OUTBOX);
            record(&found, &OUTBOX);
            found.map(|s| PathBuf::from(s.value))
        }
        .or_else(|| default_outbox.clone());
        // Flags that can only turn a setting on; else the account's key.
        let switch = |flag: bool, name: &'static str, key: fn(&Account) -> Option<bool>| {
            if flag {
                origins
                    .borrow_mut()
                    .insert(name, format!("--{}", name.replace('_', "-")));
                return true;
            }
            let Some((account, a, path)) = &layers.account else {
                return false;
            };
            let value = key(a);
            if value.is_some() {
                origins.borrow_mut().insert(
                    name,
                    Origin::Account(name, account.clone(), path.clone()).to_string(),
                );
            }
            value.unwrap_or(false)
        };
        let dkim = {
            let found = layers.get(args.dkim.dkim_key.as_deref().map(OsStr::new), &DKIM_KEY);
            record(&found, &DKIM_KEY);
            let key = found.map(|s| PathBuf::from(s.value));
            let selector = text(args.dkim.dkim_selector.as_deref(), &DKIM_SELECTOR)?;
            let domain = text(args.dkim.dkim_domain.as_deref(), &DKIM_DOMAIN)?;
            dkim_settings(key, selector, domain)
        };
        let queue = switch(args.queue, "queue", |a| a.queue);
        let skip_empty = switch(args.skip_empty, "skip_empty", |a| a.skip_empty);
        let account = layers.account.as_ref().map(|(name, ..)| name.clone());
        let oauth = resolve_oauth(
            &text,
            &layers,
            &|found| {
                record(
                    &Some(Sourced {
                        value: found.value.clone(),
                        origin: found.origin.clone(),
                    }),
                    &OAUTH_TOKEN_FILE,
                )
            },
            account.as_deref(),
            ca_file.clone(),
        )?;
        // Without a token command, the account's own sign-in (its oauth_*
        // keys, `mailsend auth login`) is the token source of a send
        // (`deliver::login_secrets` checks it has a user name and TLS).
        let token = match token {
            None if oauth.is_configured() => Some(TokenSource::BuiltIn(Box::new(oauth.clone()))),
            token => token,
        };

        // Every setting, found or not, for `config show`.
        let origins = origins.into_inner();
        let mut shown = Vec::new();
        let mut show = |key: &'static str, value: Option<String>, default: &str| {
            let (value, origin) = match (value, origins.get(key)) {
                (Some(value), Some(origin)) => (value, origin.clone()),
                (Some(value), None) => (value, default.to_owned()),
                (None, _) => ("-".to_owned(), "not set".to_owned()),
            };
            shown.push((key, value, origin));
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let span = |d: Duration| Some(humantime::format_duration(d).to_string());
        show("config", path(&config_shown), "found");
        show("account", account.clone(), "chosen in the config file");
        show("host", host.clone(), "");
        show("port", Some(port.to_string()), "default");
        show(
            "tls",
            Some(
                match tls {
                    TlsMode::StartTls => "starttls",
                    TlsMode::Implicit => "tls",
                    TlsMode::None => "none",
                }
                .to_owned(),
            ),
            "default",
        );
        show("user", user.clone(), "");
        show(
            "password",
            has_password.then(|| "<redacted>".to_owned()),
            "",
        );
        show("password_command", command, "");
        show("auth", Some(auth.as_str().to_owned()), "default");
        show("oauth_token_command", token_shown, "");
        let from_origin = if from_is_user {
            "default: the user name"
        } else {
            ""
        };
        show("from", from.clone(), from_origin);
        show(
            "ca_file",
            path(&ca_file).or_else(|| Some("system roots".to_owned())),
            "default",
        );
        show("client_cert", path(&client_cert), "");
        show("client_key", path(&client_key), "");
        show("timeout", span(timeout), "default");
        show("retry_for", span(retry_for.unwrap_or_default()), "default");
        show("queue", Some(queue.to_string()), "default");
        show("skip_empty", Some(skip_empty.to_string()), "default");
        show("log", log.clone(), "");
        show(
            "outbox",
            path(&outbox),
            "default: under XDG_STATE_HOME or HOME",
        );
        show("queue_lifetime", span(queue_lifetime), "default");
        // The OAuth2 keys only when one is set (most setups have none).
        let oauth_keys = [
            &OAUTH_PROVIDER,
            &OAUTH_CLIENT_ID,
            &OAUTH_CLIENT_SECRET,
            &OAUTH_CLIENT_SECRET_COMMAND,
            &OAUTH_AUTH_URL,
            &OAUTH_TOKEN_URL,
            &OAUTH_DEVICE_URL,
            &OAUTH_REVOCATION_URL,
            &OAUTH_SCOPES,
            &OAUTH_TOKEN_FILE,
        ];
        if oauth_keys.iter().any(|k| origins.contains_key(k.toml)) {
            for key in oauth_keys {
                let value = match key.toml {
                    "oauth_client_secret" => layers.get(None, key).map(|_| "<redacted>".to_owned()),
                    "oauth_token_file" => path(&oauth.token_file),
                    _ => layers
                        .get(None, key)
                        .map(|s| s.value.to_string_lossy().into_owned()),
                };
                show(key.toml, value, "default: under XDG_STATE_HOME or HOME");
            }
        }
        show(
            "dkim_key",
            dkim.as_ref()
                .ok()
                .and_then(Option::as_ref)
                .map(|d| d.key.display().to_string()),
            "",
        );
        show(
            "dkim_selector",
            dkim.as_ref()
                .ok()
                .and_then(Option::as_ref)
                .map(|d| d.selector.clone()),
            "",
        );
        show(
            "dkim_domain",
            dkim.as_ref()
                .ok()
                .and_then(Option::as_ref)
                .map(|d| d.domain.clone().unwrap_or_else(|| "the From domain".into())),
            "default",
        );
        show(
            "set_from_header",
            Some(
                match set_from_header {
                    FromPolicy::Auto => "auto",
                    FromPolicy::Always => "always",
                    FromPolicy::Never => "never",
                }
                .to_owned(),
            ),
            "default",
        );

        Ok(Settings {
            host,
            port,
            tls,
            user,
            password,
            auth,
            token,
            from,
            ca_file,
            client_cert,
            client_key,
            timeout,
            skip_empty,
            log,
            retry_for,
            queue,
            outbox,
            default_outbox,
            queue_lifetime,
            set_from_header,
            account,
            aliases,
            account_names,
            oauth,
            dkim,
            shown,
        })
    }
}

/// `resolve_with`'s lookup of a text setting (flag, then the layers).
type FindText<'a> = dyn Fn(Option<&str>, &Key) -> Result<Option<Sourced>, Failure> + 'a;

/// The OAuth2 keys; the token file defaults to
/// `$XDG_STATE_HOME/mailsend/oauth/ACCOUNT.json`, else under
/// `~/.local/state` (ACCOUNT: the config-file account, else `default`).
fn resolve_oauth<E: Fn(&str) -> Option<OsString>>(
    text: &FindText,
    layers: &Layers<E>,
    record: &dyn Fn(&Sourced<OsString>),
    account: Option<&str>,
    ca_file: Option<PathBuf>,
) -> Result<crate::oauth::OAuthSettings, Failure> {
    use crate::oauth::{DEFAULT_ACCOUNT, OAuthSettings, Provider};
    let value = |key: &Key| text(None, key).map(|found| found.map(|s| s.value));
    let provider = match text(None, &OAUTH_PROVIDER)? {
        None => None,
        Some(s) => Some(Provider::parse(&s.value).ok_or_else(|| {
            s.invalid("OAuth2 provider")
                .with_hint("use google, microsoft or custom")
        })?),
    };
    let secret = text(None, &OAUTH_CLIENT_SECRET)?;
    let secret_command = text(None, &OAUTH_CLIENT_SECRET_COMMAND)?;
    let client_secret = match (secret, secret_command) {
        (Some(v), Some(c)) if c.origin.rank() < v.origin.rank() => {
            Some(PasswordSource::Command(c.value))
        }
        (Some(v), _) => Some(PasswordSource::Value(Secret::new(v.value))),
        (None, Some(c)) => Some(PasswordSource::Command(c.value)),
        (None, None) => None,
    };
    let account = account.unwrap_or(DEFAULT_ACCOUNT).to_owned();
    let token_file = match layers.get(None, &OAUTH_TOKEN_FILE) {
        Some(found) => {
            record(&found);
            Some(PathBuf::from(found.value))
        }
        None => {
            // A name that is not a plain file name is made one.
            let file: String = account
                .chars()
                .map(|c| match c {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' | '@' | '+' => c,
                    _ => '_',
                })
                .collect();
            let file = file
                .strip_prefix('.')
                .map_or(file.clone(), |f| format!("_{f}"));
            layers
                .state_dir()
                .map(|state| state.join("mailsend/oauth").join(format!("{file}.json")))
        }
    };
    Ok(OAuthSettings {
        account,
        provider,
        client_id: value(&OAUTH_CLIENT_ID)?,
        client_secret,
        auth_url: value(&OAUTH_AUTH_URL)?,
        token_url: value(&OAUTH_TOKEN_URL)?,
        device_url: value(&OAUTH_DEVICE_URL)?,
        revocation_url: value(&OAUTH_REVOCATION_URL)?,
        scopes: value(&OAUTH_SCOPES)?,
        token_file,
        ca_file,
    })
}

/// DKIM settings: a key needs a selector, and a selector or domain means
/// nothing without a key (78, or 64 for a flag). Selector and domain must
/// be domain-name labels (the domain is kept as an A-label).
fn dkim_settings(
    key: Option<PathBuf>,
    selector: Option<Sourced>,
    domain: Option<Sourced>,
) -> Result<Option<DkimSettings>, Failure> {
    let Some(key) = key else {
        if let Some(s) = selector.as_ref().or(domain.as_ref()) {
            return Err(Failure::config(format!(
                "{} is set but no DKIM key is configured",
                s.origin
            ))
            .with_hint("set dkim_key (--dkim-key, MAILSEND_DKIM_KEY) too, or unset it"));
        }
        return Ok(None);
    };
    let Some(selector) = selector else {
        return Err(
            Failure::config("a DKIM key is configured but no selector").with_hint(
                "set dkim_selector (--dkim-selector, MAILSEND_DKIM_SELECTOR), e.g. mail2026",
            ),
        );
    };
    let labels = |value: &str| {
        !value.is_empty()
            && value.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if !labels(selector.value.trim()) {
        return Err(selector
            .invalid("DKIM selector")
            .with_hint("letters, digits, hyphens and dots, e.g. mail2026"));
    }
    let domain = match domain {
        None => None,
        Some(d) => {
            let ascii = idna::domain_to_ascii(d.value.trim().trim_end_matches('.'))
                .ok()
                .filter(|a| labels(a) && a.contains('.'));
            match ascii {
                Some(a) => Some(a),
                None => return Err(d.invalid("DKIM domain")),
            }
        }
    };
    Ok(Some(DkimSettings {
        key,
        selector: selector.value.trim().to_owned(),
        domain,
    }))
}

/// `mailsend config show`: every setting, its value and where it came
/// from (a flag, a variable, `.env`, the config file, or the default),
/// the password redacted.
pub fn show(args: &ServerArgs) -> Result<Exit> {
    let settings = Settings::resolve(args, None)?;
    settings.dkim()?;
    let mut out = String::new();
    for (key, value, origin) in &settings.shown {
        out.push_str(&format!("{key:<17} {value:<40} ({origin})\n"));
    }
    for (name, target) in &settings.aliases {
        out.push_str(&format!("alias {name:<11} {target}\n"));
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(Exit::Ok)
}

/// `30s`, `500ms`, `2m`, `5d`, or a bare number of seconds; at most a
/// year (longer makes no sense here, and would overflow clock arithmetic).
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let d = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text).ok()?,
    };
    (d <= Duration::from_secs(366 * 24 * 3600)).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> ServerArgs {
        let mut full = vec![
            "mailsend",
            "--env-file",
            "/dev/null",
            "--config",
            "/dev/null",
        ];
        full.extend_from_slice(args);
        crate::cli::Cli::parse_from(full).send.server
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn defaults_follow_tls_mode() {
        let s = Settings::resolve_with(&cli(&[]), None, env(&[])).unwrap();
        assert_eq!(
            (s.tls, s.port, s.timeout),
            (TlsMode::StartTls, 587, Duration::from_secs(30))
        );
        let s = Settings::resolve_with(&cli(&["--tls", "tls"]), None, env(&[])).unwrap();
        assert_eq!(s.port, 465);
        let s = Settings::resolve_with(&cli(&[]), None, env(&[("MAILSEND_TLS", "none")])).unwrap();
        assert_eq!(s.port, 25);
    }

    #[test]
    fn flag_beats_environment() {
        let e = env(&[
            ("MAILSEND_HOST", "env.example.com"),
            ("MAILSEND_PORT", "2525"),
        ]);
        let s = Settings::resolve_with(&cli(&["--host", "flag.example.com"]), None, e).unwrap();
        assert_eq!(s.host.as_deref(), Some("flag.example.com"));
        assert_eq!(s.port, 2525);
    }

    #[test]
    fn bad_values_name_their_origin_and_code() {
        let err = Settings::resolve_with(&cli(&["--port", "99999"]), None, env(&[])).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Usage);
        assert!(err.to_string().contains("--port"), "{err}");
        let err = Settings::resolve_with(&cli(&[]), None, env(&[("MAILSEND_TIMEOUT", "soon")]))
            .unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Config);
        assert!(err.to_string().contains("MAILSEND_TIMEOUT"), "{err}");
    }

    #[test]
    fn credentials_with_plain_transport_are_refused() {
        let e = env(&[
            ("MAILSEND_USER", "u@example.com"),
            ("MAILSEND_PASSWORD", "pw"),
        ]);
        let err = Settings::resolve_with(&cli(&["--tls", "none"]), None, e).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Config);
    }

    #[test]
    fn from_defaults_to_user_address() {
        let s =
            Settings::resolve_with(&cli(&[]), None, env(&[("MAILSEND_USER", "me@example.org")]))
                .unwrap();
        assert_eq!(s.from.as_deref(), Some("me@example.org"));
        let s = Settings::resolve_with(&cli(&[]), None, env(&[("MAILSEND_USER", "me")])).unwrap();
        assert_eq!(s.from, None);
    }

    #[test]
    fn password_command_flag_beats_password_variable() {
        let e = env(&[("MAILSEND_USER", "me"), ("MAILSEND_PASSWORD", "pw")]);
        let s = Settings::resolve_with(&cli(&["--password-command", "echo x"]), None, e).unwrap();
        assert!(matches!(s.password, Some(PasswordSource::Command(_))));
    }

    #[test]
    fn auth_and_token_command_follow_the_layers() {
        let e = env(&[
            ("MAILSEND_USER", "me@example.com"),
            ("MAILSEND_AUTH", "OAuthBearer"),
            ("MAILSEND_OAUTH_TOKEN_COMMAND", "oama access me"),
        ]);
        let s = Settings::resolve_with(&cli(&[]), None, e).unwrap();
        assert_eq!(s.auth, AuthMethod::OAuthBearer);
        assert!(
            matches!(&s.token, Some(TokenSource::Command(c)) if c == "oama access me"),
            "{:?}",
            s.token
        );
        let e = env(&[("MAILSEND_AUTH", "xoauth2")]);
        let s = Settings::resolve_with(&cli(&["--auth", "plain"]), None, e).unwrap();
        assert_eq!(s.auth, AuthMethod::Plain);
        assert!(s.token.is_none());
        let s = Settings::resolve_with(&cli(&[]), None, env(&[])).unwrap();
        assert_eq!(s.auth, AuthMethod::Auto);
        let err = Settings::resolve_with(&cli(&["--auth", "md5"]), None, env(&[])).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Usage);
    }

    #[test]
    fn non_utf8_text_is_refused_and_non_utf8_paths_are_kept() {
        use std::os::unix::ffi::OsStrExt;
        let bad = |name: &'static str| {
            move |k: &str| (k == name).then(|| OsStr::from_bytes(b"a\xff").to_owned())
        };
        for var in [
            "MAILSEND_HOST",
            "MAILSEND_PORT",
            "MAILSEND_PASSWORD_COMMAND",
        ] {
            let err = Settings::resolve_with(&cli(&[]), None, bad(var)).unwrap_err();
            assert_eq!(crate::exit::code_for(&err), Exit::Config);
            assert_eq!(err.to_string(), format!("{var} is not valid UTF-8"));
        }
        let s = Settings::resolve_with(&cli(&[]), None, bad("MAILSEND_CA_FILE")).unwrap();
        assert_eq!(
            s.ca_file.as_deref().map(|p| p.as_os_str().as_bytes()),
            Some(&b"a\xff"[..])
        );
    }

    #[test]
    fn oauth_keys_from_variables_and_the_default_token_file() {
        let e = env(&[
            ("MAILSEND_OAUTH_PROVIDER", "Microsoft"),
            ("MAILSEND_OAUTH_CLIENT_ID", "cid"),
            ("MAILSEND_OAUTH_CLIENT_SECRET", "cs"),
            ("XDG_STATE_HOME", "/state"),
            ("HOME", "/home/u"),
        ]);
        let s = Settings::resolve_with(&cli(&[]), None, e).unwrap();
        let o = &s.oauth;
        assert_eq!(o.provider, Some(crate::oauth::Provider::Microsoft));
        assert_eq!(o.client_id.as_deref(), Some("cid"));
        assert!(matches!(&o.client_secret, Some(PasswordSource::Value(v)) if v.expose() == "cs"));
        assert_eq!(o.account, "default");
        assert_eq!(
            o.token_file.as_deref(),
            Some(std::path::Path::new("/state/mailsend/oauth/default.json"))
        );
        let shown = s.shown.iter().find(|(k, ..)| *k == "oauth_client_secret");
        assert_eq!(shown.map(|(_, v, _)| v.as_str()), Some("<redacted>"));
        let s = Settings::resolve_with(&cli(&[]), None, env(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(
            s.oauth.token_file.as_deref(),
            Some(std::path::Path::new(
                "/home/u/.local/state/mailsend/oauth/default.json"
            ))
        );
        // A relative XDG_STATE_HOME is ignored (XDG spec): the tokens and
        // the outbox stay under HOME whatever the working directory.
        let s = Settings::resolve_with(
            &cli(&[]),
            None,
            env(&[("XDG_STATE_HOME", "state"), ("HOME", "/home/u")]),
        )
        .unwrap();
        assert_eq!(
            s.oauth.token_file.as_deref(),
            Some(std::path::Path::new(
                "/home/u/.local/state/mailsend/oauth/default.json"
            ))
        );
        assert_eq!(
            s.outbox.as_deref(),
            Some(std::path::Path::new("/home/u/.local/state/mailsend/outbox"))
        );
        let s = Settings::resolve_with(&cli(&[]), None, env(&[])).unwrap();
        assert_eq!(s.oauth.token_file, None);
        let err = Settings::resolve_with(
            &cli(&[]),
            None,
            env(&[("MAILSEND_OAUTH_PROVIDER", "yahoo")]),
        )
        .unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Config);
        assert!(err.to_string().contains("MAILSEND_OAUTH_PROVIDER"), "{err}");
    }

    #[test]
    fn oauth_keys_from_an_account() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(
            "[accounts.\"../work\"]\noauth_provider = \"google\"\noauth_client_id = \"g\"\noauth_client_secret_command = \"echo s\"\noauth_scopes = \"a b\"\n",
            0o644,
        );
        let args = crate::cli::Cli::parse_from([
            "mailsend",
            "--env-file",
            "/dev/null",
            "--config",
            path.to_str().unwrap(),
        ])
        .send
        .server;
        let s = Settings::resolve_with(&args, None, env(&[("HOME", "/h")])).unwrap();
        let o = &s.oauth;
        assert_eq!(o.provider, Some(crate::oauth::Provider::Google));
        assert!(matches!(&o.client_secret, Some(PasswordSource::Command(c)) if c == "echo s"));
        assert_eq!(o.scopes.as_deref(), Some("a b"));
        // The account name is made a plain file name.
        assert_eq!(
            o.token_file.as_deref(),
            Some(std::path::Path::new(
                "/h/.local/state/mailsend/oauth/_._work.json"
            ))
        );
        write(
            "[accounts.w]\noauth_provider = \"google\"\noauth_client_secret = \"x\"\noauth_token_file = \"/t/w.json\"\n",
            0o644,
        );
        let err = Settings::resolve_with(&args, None, env(&[])).unwrap_err();
        assert!(err.to_string().contains("OAuth2 client secret"), "{err}");
        write(
            "[accounts.w]\noauth_provider = \"google\"\noauth_client_secret = \"x\"\noauth_token_file = \"/t/w.json\"\n",
            0o600,
        );
        let s = Settings::resolve_with(&args, None, env(&[])).unwrap();
        assert_eq!(s.oauth.account, "w");
        assert_eq!(
            s.oauth.token_file.as_deref(),
            Some(std::path::Path::new("/t/w.json"))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("18446744073709551615"), None);
    }
}
